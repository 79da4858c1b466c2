"""The node disruption policy (contract 12.2): reading ``policy.yaml`` and classifying a change."""

from __future__ import annotations

import dataclasses

import pytest

from mcosup.model import disruption as d
from mcosup.model import names
from mcosup.model.hostconfig import FileSpec, HostConfig, UnitSpec

REGISTRIES = "/etc/containers/registries.conf"
WHERE = "ConfigMap openshift-machine-config-operator/node-disruption-policy key policy.yaml"

POLICY = d.parse_policy(
    """
files:
  - path: /etc/containers/registries.conf
    actions: [{type: Reload, reload: {serviceName: crio.service}}]
  - path: /etc/app
    actions: [{type: Restart, restart: {serviceName: app.service}}, {type: DaemonReload}]
  - path: /etc/app/drained.conf
    actions: [{type: Drain}, {type: Reload, reload: {serviceName: crio.service}}]
  - path: /etc/app/reboot.conf
    actions: [{type: Reboot}]
  - path: /usr/lib/app.conf
    actions: [{type: None}]
  - path: /etc/quiet.conf
    actions: [{type: None}]
units:
  - name: app.service
    actions: [{type: Restart, restart: {serviceName: app.service}}]
sshkey:
  actions: [{type: Restart, restart: {serviceName: sshd.service}}]
"""
)

OLD = HostConfig(
    name="rendered-worker-a",
    files=(FileSpec(REGISTRIES, b"old"), FileSpec("/etc/app/a.conf", b"1")),
    units=(UnitSpec("app.service", "[Service]\n", enabled=True),),
    ssh_keys=("k1",),
    kernel_arguments=("nosmt",),
)


def new(**changes: object) -> HostConfig:
    return dataclasses.replace(OLD, name="rendered-worker-b", **changes)  # type: ignore[arg-type]


def files(*extra: FileSpec, registries: bytes = b"old", app: bytes = b"1") -> tuple[FileSpec, ...]:
    return (FileSpec(REGISTRIES, registries), FileSpec("/etc/app/a.conf", app), *extra)


def reload(unit: str) -> d.Action:
    return d.Action(d.RELOAD, unit)


def restart(unit: str) -> d.Action:
    return d.Action(d.RESTART, unit)


LIVE_CASES = [
    ("one covered file", new(files=files(registries=b"new")), (reload("crio.service"),)),
    (
        "a file under a covered directory takes its policy",
        new(files=files(app=b"2")),
        (restart("app.service"), d.Action(d.DAEMON_RELOAD)),
    ),
    (
        "the closest path wins over its directory; each action once, in path order",
        new(files=files(FileSpec("/etc/app/drained.conf", b"x"), registries=b"new")),
        (d.Action(d.DRAIN), reload("crio.service")),
    ),
    ("None is nothing to run", new(files=files(FileSpec("/etc/quiet.conf", b"q"))), ()),
    (
        "a removed file counts",
        new(files=(FileSpec(REGISTRIES, b"old"),)),
        (restart("app.service"), d.Action(d.DAEMON_RELOAD)),
    ),
    (
        "a covered unit",
        new(units=(UnitSpec("app.service", "[Service]\nX=1\n", enabled=True),)),
        (restart("app.service"),),
    ),
    ("ssh keys take sshkey's policy", new(ssh_keys=("k1", "k2")), (restart("sshd.service"),)),
    ("the password hash too", new(password_hash="$6$x"), (restart("sshd.service"),)),
    ("nothing changed", new(), ()),
]


@pytest.mark.parametrize(("config", "actions"), [c[1:] for c in LIVE_CASES], ids=[c[0] for c in LIVE_CASES])
@pytest.mark.parametrize("mode", [names.MODE_LEGACY, names.MODE_LAYERED])
def test_changes_applied_live(config: HostConfig, actions: tuple[d.Action, ...], mode: str) -> None:
    change = d.classify(OLD, config, POLICY, old_mode=mode, new_mode=mode, old_image="i1", new_image="i2")
    assert change == d.Change(reboot=None, actions=actions)
    assert change.drain == (d.Action(d.DRAIN) in actions)


REBOOT_CASES = [
    ("kernel arguments", new(kernel_arguments=("nosmt", "quiet")), "kernel arguments"),
    ("kernel type", new(kernel_type="realtime"), "kernel type"),
    ("extensions", new(extensions=("usbguard",)), "extensions"),
    ("FIPS", new(fips=True), "FIPS"),
    ("osImageURL", new(os_image_url="quay.io/os@sha256:" + "1" * 64), "osImageURL"),
    ("a file nobody covers", new(files=files(FileSpec("/etc/other.conf", b"o"))), "/etc/other.conf"),
    ("a policy asking for Reboot", new(files=files(FileSpec("/etc/app/reboot.conf", b"r"))), "reboot"),
    ("a unit nobody covers", new(units=(*OLD.units, UnitSpec("x.service", "[Service]\n"))), "x.service"),
]


@pytest.mark.parametrize(("config", "why"), [c[1:] for c in REBOOT_CASES], ids=[c[0] for c in REBOOT_CASES])
@pytest.mark.parametrize("mode", [names.MODE_LEGACY, names.MODE_LAYERED])
def test_changes_that_reboot(config: HostConfig, why: str, mode: str) -> None:
    change = d.classify(OLD, config, POLICY, old_mode=mode, new_mode=mode, old_image="i1", new_image="i2")
    assert change.reboot is not None and why in change.reboot and change.drain


def test_layered_reboots_outside_etc_and_for_unit_state_legacy_does_not() -> None:
    outside = new(files=files(FileSpec("/usr/lib/app.conf", b"u")))
    disabled = new(units=(UnitSpec("app.service", "[Service]\n", enabled=False),))
    for config, why in ((outside, "/usr/lib/app.conf is outside /etc"), (disabled, "unit app.service")):
        layered = d.classify(OLD, config, POLICY, old_mode="layered", new_mode="layered", new_image="i2")
        assert layered.reboot is not None and why in layered.reboot
        legacy = d.classify(OLD, config, POLICY, old_mode="legacy", new_mode="legacy")
        assert legacy.reboot is None


def test_mode_change_first_config_new_image_alone_and_no_policy_reboot() -> None:
    change = new(files=files(registries=b"new"))
    cases = [
        d.classify(None, change, POLICY, old_mode=None, new_mode="legacy"),
        d.classify(OLD, change, POLICY, old_mode="legacy", new_mode="layered", new_image="i2"),
        d.classify(OLD, OLD, POLICY, old_mode="layered", new_mode="layered", old_image="i1", new_image="i2"),
        d.classify(OLD, change, None, old_mode="legacy", new_mode="legacy"),
    ]
    assert all(c.reboot for c in cases), cases


def test_defaults_apply_without_a_configmap_and_an_admin_entry_replaces_one() -> None:
    policy, error = d.policy_of(None)
    assert error is None and policy is d.DEFAULT_POLICY
    assert policy.for_file("/etc/containers/registries.d/x.yaml") == (reload("crio.service"),)
    assert policy.sshkey == (d.Action(d.NONE),)
    assert policy.for_file("/etc/hosts") is None
    assert POLICY.for_file(REGISTRIES) == (reload("crio.service"),)  # the default drains too
    assert d.DEFAULT_POLICY.for_file(REGISTRIES) == (d.Action(d.DRAIN), reload("crio.service"))
    wrapped = d.parse_policy("nodeDisruptionPolicy:\n  sshkey: {actions: [{type: Drain}]}\n")
    assert wrapped.sshkey == (d.Action(d.DRAIN),)


def test_description_on_the_node() -> None:
    change = d.Change(reboot=None, actions=(reload("crio.service"), restart("kubelet.service")))
    assert (
        d.applied_without_reboot("rendered-worker-ab", change)
        == "rendered-worker-ab: Reload crio.service, Restart kubelet.service"
    )
    assert d.applied_without_reboot("rendered-worker-ab", d.Change(reboot=None)) == "rendered-worker-ab: None"


BAD = [
    ("files: [", "is not valid YAML at line 1"),
    ("- a\n", "must be a mapping with files, units and sshkey, got a list"),
    ("file: []\n", "unknown field 'file'"),
    ("files: {path: /etc/x}\n", "files must be a list of mappings"),
    ("files: [{path: etc/x, actions: [{type: None}]}]\n", "files[0].path must be an absolute path"),
    ("files: [{path: /etc/x}]\n", "files[0].actions must be a non-empty list"),
    ("files: [{path: /etc/x, actions: [{type: Reboots}]}]\n", "files[0].actions[0].type must be one of"),
    (
        "files: [{path: /etc/x, actions: [{type: Reload}]}]\n",
        "files[0].actions[0].reload.serviceName is required",
    ),
    (
        "files: [{path: /etc/x, actions: [{type: Restart, restart: {serviceName: crio}}]}]\n",
        "restart.serviceName is required with type Restart and must be a unit name such as crio.service",
    ),
    (
        "files: [{path: /etc/x, actions: [{type: Drain, reload: {serviceName: a.service}}]}]\n",
        "files[0].actions[0].reload is only allowed with type Reload",
    ),
    (
        "files: [{path: /etc/x, actions: [{type: Reboot}, {type: Drain}]}]\n",
        "files[0].actions: Reboot can only be the only action",
    ),
    ("units: [{name: crio, actions: [{type: None}]}]\n", "units[0].name must be a unit name"),
    ("sshkey: [{type: None}]\n", "sshkey must be a mapping with actions, got a list"),
]


@pytest.mark.parametrize(("text", "message"), BAD, ids=[b[1] for b in BAD])
def test_bad_policy_names_the_field_and_falls_back_to_reboot(text: str, message: str) -> None:
    with pytest.raises(d.PolicyError) as err:
        d.parse_policy(text)
    assert str(err.value).startswith(WHERE) and message in str(err.value)
    configmap = {"metadata": {"namespace": names.DEFAULT_NAMESPACE}, "data": {"policy.yaml": text}}
    policy, error = d.policy_of(configmap)
    assert policy is None and error is not None and error.endswith("until it is fixed every change reboots")
