"""Table tests for the daemon's pure plan (contract 6.1-6.4)."""

from __future__ import annotations

import dataclasses
import urllib.parse
from pathlib import Path
from typing import Any

import pytest
import yaml

from mcosup.daemon import plan as p
from mcosup.daemon.certplan import KUBELET_CA_PATH, USER_CA_PATH, plan_certificates
from mcosup.daemon.hostfacts import Applied, Deployment, DiskFile, HostFacts, same_image
from mcosup.daemon.steps import (
    DaemonReload,
    Kargs,
    Rebase,
    Reboot,
    RecordApplied,
    RemoveDir,
    RemoveFile,
    SetSshKeys,
    Step,
    Systemctl,
    UpdateCaTrust,
    WriteFile,
)
from mcosup.model import names
from mcosup.model import node as nodeproto
from mcosup.model.hostconfig import (
    ConfigError,
    Dropin,
    FileSpec,
    HostConfig,
    UnitSpec,
    parse_machineconfig,
)
from mcosup.model.node import NodeView, Target

IMG_A = "registry.local:5000/os/worker@sha256:" + "a" * 64
IMG_B = "registry.local:5000/os/worker@sha256:" + "b" * 64
STOCK = "quay.io/fcos/stock@sha256:" + "5" * 64
KEY1 = "ssh-ed25519 AAAA1 admin@example"

CFG1 = HostConfig(
    name="rendered-worker-1",
    files=(FileSpec("/etc/a.conf", b"a=1\n", 0o644), FileSpec("/etc/old.conf", b"old\n", 0o600)),
    units=(
        UnitSpec(
            "app.service",
            "[Service]\nExecStart=/bin/app\n[Install]\nWantedBy=multi-user.target\n",
            enabled=True,
        ),
        UnitSpec("docker.service", None, enabled=True, dropins=(Dropin("10-opts.conf", "[Service]\n"),)),
    ),
    ssh_keys=(KEY1,),
    kernel_arguments=("nosmt",),
)
CFG2 = HostConfig(
    name="rendered-worker-2",
    files=(FileSpec("/etc/a.conf", b"a=2\n", 0o640),),
    units=(UnitSpec("docker.service", None, enabled=True),),
    ssh_keys=(KEY1,),
    kernel_arguments=("mitigations=off",),
)


def node(mode: str | None, config: str | None, image: str | None = None, **kw: Any) -> NodeView:
    return NodeView(name="worker-0", mode=mode, desired_config=config, desired_image=image, **kw)


def on_disk(cfg: HostConfig) -> dict[str, DiskFile | None]:
    disk: dict[str, DiskFile | None] = {f.path: DiskFile(f.contents, f.mode) for f in cfg.files}
    for u in cfg.units:
        if u.contents is not None:
            disk[u.path] = DiskFile(u.contents.encode(), 0o644)
        for d in u.dropins:
            disk[u.dropin_path(d.name)] = DiskFile(d.contents.encode(), 0o644)
    disk[p.SSH_KEYS_FILE] = DiskFile("".join(k + "\n" for k in cfg.ssh_keys).encode(), 0o600)
    return disk


def booted(image: str | None = STOCK, kargs: tuple[str, ...] = ("rw",)) -> Deployment:
    return Deployment(image=image, kargs=kargs)


def kinds(plan: p.Plan | None) -> list[str]:
    assert plan is not None
    return [s.kind for s in plan.steps]


def test_no_target_no_plan() -> None:
    assert p.plan_config(node(None, None), None, HostFacts()) is None
    assert p.plan_config(node(names.MODE_LEGACY, None), None, HostFacts()) is None


@pytest.mark.parametrize(
    ("view", "rendered", "message"),
    [
        (node(names.MODE_LEGACY, "rendered-worker-9"), None, "rendered MachineConfig rendered-worker-9"),
        (node(names.MODE_LAYERED, "rendered-worker-1"), CFG1, "without machineconfiguration"),
        (node("sideways", "rendered-worker-1"), CFG1, "'sideways'"),
        (
            node(names.MODE_LEGACY, "rendered-worker-1", current_image=IMG_A),
            CFG1,
            "set one of them",
        ),
    ],
)
def test_unplannable_targets_name_the_fix(view: NodeView, rendered: HostConfig | None, message: str) -> None:
    with pytest.raises(p.PlanError, match=message.replace("(", r"\(")):
        p.plan_config(view, rendered, HostFacts(booted=booted()))


def test_legacy_first_apply_writes_everything_and_reboots() -> None:
    plan = p.plan_config(node(names.MODE_LEGACY, CFG1.name), CFG1, HostFacts(booted=booted()))
    assert kinds(plan) == [
        "write-file",
        "write-file",
        "write-file",
        "write-file",
        "daemon-reload",
        "systemctl",
        "ssh-keys",
        "kargs",
        "reboot",
        "record-applied",
    ]
    assert plan is not None
    writes = {s.path: s for s in plan.steps if isinstance(s, WriteFile)}
    assert writes["/etc/old.conf"].mode == 0o600
    assert "/etc/systemd/system/docker.service.d/10-opts.conf" in writes
    assert "/etc/systemd/system/docker.service" not in writes  # an OS unit: only its drop-in is ours
    assert Systemctl("enable", ("app.service", "docker.service")) in plan.steps
    assert Kargs(append=("nosmt",)) in plan.steps
    assert plan.target == Target(names.MODE_LEGACY, CFG1.name)


def test_legacy_already_applied_is_empty() -> None:
    applied = Applied(config=CFG1, mode=names.MODE_LEGACY, on_disk=CFG1)
    facts = HostFacts(booted=booted(kargs=("rw", "nosmt")), applied=applied, disk=on_disk(CFG1))
    plan = p.plan_config(node(names.MODE_LEGACY, CFG1.name), CFG1, facts)
    assert plan is not None and plan.steps == ()


def test_legacy_new_config_removes_what_the_old_had_and_diffs_kargs() -> None:
    applied = Applied(config=CFG1, mode=names.MODE_LEGACY, on_disk=CFG1)
    facts = HostFacts(booted=booted(kargs=("rw", "nosmt", "quiet")), applied=applied, disk=on_disk(CFG1))
    plan = p.plan_config(node(names.MODE_LEGACY, CFG2.name), CFG2, facts)
    assert plan is not None
    steps = plan.steps
    assert Systemctl("disable", ("app.service",)) in steps
    assert RemoveFile("/etc/systemd/system/app.service") in steps
    assert RemoveFile("/etc/systemd/system/docker.service.d/10-opts.conf") in steps
    assert RemoveFile("/etc/old.conf") in steps
    assert WriteFile("/etc/a.conf", b"a=2\n", 0o640) in steps
    # "quiet" was not the old config's: the diff leaves it alone.
    assert Kargs(append=("mitigations=off",), delete=("nosmt",)) in steps
    assert not any(isinstance(s, SetSshKeys) for s in steps)  # same keys, already on disk
    assert isinstance(steps[-1], RecordApplied) and steps[-1].applied.on_disk == CFG2
    assert any(isinstance(s, Reboot) for s in steps)
    # Removals come before writes, the unit is disabled before its file goes.
    order = [s.kind for s in steps]
    assert order.index("remove-file") < order.index("write-file")
    assert steps.index(Systemctl("disable", ("app.service",))) < steps.index(
        RemoveFile("/etc/systemd/system/app.service")
    )


def test_legacy_ssh_keys_only_change_does_not_reboot() -> None:
    applied = Applied(config=CFG1, mode=names.MODE_LEGACY, on_disk=CFG1)
    new = dataclasses.replace(CFG1, name="rendered-worker-3", ssh_keys=(KEY1, "ssh-rsa BBBB two"))
    facts = HostFacts(booted=booted(kargs=("rw", "nosmt")), applied=applied, disk=on_disk(CFG1))
    plan = p.plan_config(node(names.MODE_LEGACY, new.name), new, facts)
    assert kinds(plan) == ["ssh-keys", "record-applied"]


def test_legacy_os_image_url_rebases_when_it_differs() -> None:
    new = dataclasses.replace(CFG2, os_image_url=IMG_B)
    applied = Applied(config=CFG2, mode=names.MODE_LEGACY, on_disk=CFG2)
    facts = HostFacts(booted=booted(kargs=("rw", "mitigations=off")), applied=applied, disk=on_disk(CFG2))
    plan = p.plan_config(node(names.MODE_LEGACY, new.name), new, facts)
    assert kinds(plan) == ["rebase", "reboot", "verify-image", "record-applied"]
    booted_b = Deployment(image="ostree-unverified-registry:" + IMG_B, kargs=("rw", "mitigations=off"))
    again = p.plan_config(node(names.MODE_LEGACY, new.name), new, dataclasses.replace(facts, booted=booted_b))
    assert kinds(again) == ["verify-image", "record-applied"]


def test_layered_rebases_once_and_never_writes_config_files() -> None:
    plan = p.plan_config(node(names.MODE_LAYERED, CFG1.name, IMG_A), CFG1, HostFacts(booted=booted()))
    assert kinds(plan) == ["ssh-keys", "rebase", "kargs", "reboot", "verify-image", "record-applied"]
    assert plan is not None
    assert Rebase(IMG_A) in plan.steps
    assert plan.target == Target(names.MODE_LAYERED, CFG1.name, IMG_A)
    assert not any(isinstance(s, WriteFile | RemoveFile | Systemctl | DaemonReload) for s in plan.steps)


@pytest.mark.parametrize(
    ("facts", "expected"),
    [
        # Already booted into the image, nothing recorded yet (e.g. a daemon upgrade): no rebase, no reboot.
        (
            HostFacts(booted=Deployment(IMG_A, kargs=("rw", "nosmt"))),
            ["ssh-keys", "verify-image", "record-applied"],
        ),
        # Staged but not booted (crash after the rebase): reboot without rebasing again.
        (
            HostFacts(booted=booted(kargs=("rw", "nosmt")), staged=Deployment(IMG_A, kargs=("rw", "nosmt"))),
            ["ssh-keys", "reboot", "verify-image", "record-applied"],
        ),
        # Booted by digest only (bootc prints the digest apart from the reference).
        (
            HostFacts(
                booted=Deployment("registry.local:5000/os/worker:tag", "sha256:" + "a" * 64, ("nosmt",))
            ),
            ["ssh-keys", "verify-image", "record-applied"],
        ),
    ],
)
def test_layered_skips_what_the_host_already_has(facts: HostFacts, expected: list[str]) -> None:
    assert kinds(p.plan_config(node(names.MODE_LAYERED, CFG1.name, IMG_A), CFG1, facts)) == expected


def test_layered_identical_target_is_empty() -> None:
    applied = Applied(config=CFG1, mode=names.MODE_LAYERED, image=IMG_A)
    facts = HostFacts(booted=Deployment(IMG_A, kargs=("nosmt",)), applied=applied, disk=on_disk(CFG1))
    plan = p.plan_config(node(names.MODE_LAYERED, CFG1.name, IMG_A), CFG1, facts)
    assert plan is not None and plan.steps == ()


def test_opt_in_gives_legacy_etc_files_back_to_the_image_just_before_the_reboot() -> None:
    applied = Applied(config=CFG1, mode=names.MODE_LEGACY, on_disk=CFG1)
    disk = on_disk(CFG1)
    # /etc/a.conf overrides a default of the booted deployment: it goes back to that default, so ostree's
    # /etc merge sees it unchanged and takes the image's copy; the others have no default: removed.
    disk["/usr/etc/a.conf"] = DiskFile(b"stock\n", 0o644)
    facts = HostFacts(booted=booted(kargs=("nosmt",)), applied=applied, disk=disk)
    plan = p.plan_config(node(names.MODE_LAYERED, CFG2.name, IMG_B), CFG2, facts)
    assert plan is not None
    assert kinds(plan) == [
        "rebase",
        "kargs",
        "write-file",
        "remove-file",
        "remove-file",
        "remove-file",
        "reboot",
        "verify-image",
        "record-applied",
    ]
    assert plan.steps[2] == WriteFile("/etc/a.conf", b"stock\n", 0o644)
    assert {s.path for s in plan.steps if isinstance(s, RemoveFile)} == {
        "/etc/old.conf",
        "/etc/systemd/system/app.service",
        "/etc/systemd/system/docker.service.d/10-opts.conf",
    }
    assert not any(isinstance(s, Systemctl | DaemonReload) for s in plan.steps)
    assert Kargs(append=("mitigations=off",), delete=("nosmt",)) in plan.steps
    record = plan.steps[-1]
    assert isinstance(record, RecordApplied) and record.applied.on_disk is None
    # What it compares: the /etc files legacy mode wrote and their defaults.
    assert {"/etc/old.conf", "/usr/etc/old.conf", "/usr/etc/a.conf"} <= p.paths_to_read(CFG2, applied)


def test_opt_in_gives_back_nothing_already_at_its_default_and_nothing_once_booted() -> None:
    applied = Applied(config=CFG1, mode=names.MODE_LEGACY, on_disk=CFG1)
    disk = {**on_disk(CFG1), **{"/usr" + k: v for k, v in on_disk(CFG1).items() if k.startswith("/etc/")}}
    facts = HostFacts(booted=booted(kargs=("nosmt",)), applied=applied, disk=disk)
    plan = p.plan_config(node(names.MODE_LAYERED, CFG1.name, IMG_A), CFG1, facts)
    assert kinds(plan) == ["rebase", "reboot", "verify-image", "record-applied"]
    # Booted into the image already (nothing to reboot for): nothing is handed back either.
    facts = dataclasses.replace(facts, booted=Deployment(IMG_A, kargs=("nosmt",)), disk=on_disk(CFG1))
    assert kinds(p.plan_config(node(names.MODE_LAYERED, CFG1.name, IMG_A), CFG1, facts)) == [
        "verify-image",
        "record-applied",
    ]


LEGACY_CFG1 = Applied(config=CFG1, mode=names.MODE_LEGACY, on_disk=CFG1)
#: /etc after the give-back of CFG1 (the deployment a rollback boots keeps its /etc as it left it).
GIVEN_BACK = {
    **{path: None for path in p.config_paths(CFG1)},
    "/etc/a.conf": DiskFile(b"stock\n", 0o644),
    "/usr/etc/a.conf": DiskFile(b"stock\n", 0o644),
}
REWRITE_CFG1 = (
    WriteFile("/etc/a.conf", b"a=1\n", 0o644),
    WriteFile("/etc/old.conf", b"old\n", 0o600),
    WriteFile("/etc/systemd/system/app.service", str(CFG1.units[0].contents).encode(), 0o644),
    WriteFile("/etc/systemd/system/docker.service.d/10-opts.conf", b"[Service]\n", 0o644),
    DaemonReload(),
    Systemctl("enable", ("app.service", "docker.service")),
)


@pytest.mark.parametrize(
    ("previous", "disk", "expected"),
    [
        # Rolled back from a legacy node's first image: every file and unit of its config again.
        (LEGACY_CFG1, GIVEN_BACK, REWRITE_CFG1),
        # One file lost: that one, and the units' state again (no unit file written: no reload).
        (LEGACY_CFG1, {**on_disk(CFG1), "/etc/old.conf": None}, (REWRITE_CFG1[1], REWRITE_CFG1[5])),
        # Nothing lost (no /etc file to give back): nothing to do.
        (LEGACY_CFG1, on_disk(CFG1), ()),
        # A node that never finished anything has nothing to get back.
        (Applied(config=CFG1, mode=names.MODE_LEGACY), GIVEN_BACK, ()),
        (None, GIVEN_BACK, ()),
    ],
)
def test_after_a_rollback_the_legacy_config_given_back_to_the_image_is_written_again(
    previous: Applied | None, disk: dict[str, DiskFile | None], expected: tuple[Step, ...]
) -> None:
    facts = HostFacts(booted=booted(), applied=previous, disk=disk)
    assert p.plan_after_rollback(previous, facts) == expected


def test_after_a_rollback_a_layered_image_lost_is_staged_again() -> None:
    live = Applied(config=CFG1, mode=names.MODE_LAYERED, image=IMG_B)
    assert p.plan_after_rollback(live, HostFacts(booted=booted(IMG_A))) == (Rebase(IMG_B),)
    # What the legacy rewrite compares is what the agent reads for it.
    assert p.config_paths(CFG1) <= p.paths_to_read(None, LEGACY_CFG1)


def test_revert_persists_target_rebases_to_stock_then_reapplies_everything() -> None:
    applied = Applied(config=CFG1, mode=names.MODE_LAYERED, image=IMG_A, on_disk=None)
    facts = HostFacts(booted=Deployment(IMG_A, kargs=("nosmt",)), applied=applied, disk=on_disk(CFG1))
    view = node(names.MODE_LEGACY, CFG1.name, current_image=IMG_A)
    plan = p.plan_config(view, CFG1, facts, stock_image=STOCK)
    assert plan is not None and plan.revert
    order = kinds(plan)
    assert order[:4] == ["write-file", "rebase", "reboot", "verify-image"]
    first = plan.steps[0]
    assert isinstance(first, WriteFile) and first.path == p.REVERT_FILE
    assert Rebase(STOCK) in plan.steps
    after_boot = plan.steps[4:]
    # Every file and unit again, even those the disk has now (they vanish with the image).
    written = {s.path for s in after_boot if isinstance(s, WriteFile)}
    assert written == {
        "/etc/a.conf",
        "/etc/old.conf",
        "/etc/systemd/system/app.service",
        "/etc/systemd/system/docker.service.d/10-opts.conf",
    }
    assert Systemctl("enable", ("app.service", "docker.service")) in after_boot
    assert RemoveFile(p.REVERT_FILE) == plan.steps[-2]
    assert plan.steps[-1] == RecordApplied(Applied(CFG1, names.MODE_LEGACY, None, CFG1))
    assert nodeproto.done(plan.target)[names.CURRENT_IMAGE] is None


def test_revert_prefers_the_rendered_os_image_url() -> None:
    cfg = dataclasses.replace(CFG1, os_image_url=IMG_B)
    applied = Applied(config=CFG1, mode=names.MODE_LAYERED, image=IMG_A)
    plan = p.plan_config(
        node(names.MODE_LEGACY, cfg.name),
        cfg,
        HostFacts(booted=Deployment(IMG_A), applied=applied),
        stock_image=STOCK,
    )
    assert plan is not None and Rebase(IMG_B) in plan.steps


def test_revert_finished_reports_without_steps() -> None:
    applied = Applied(config=CFG1, mode=names.MODE_LEGACY, on_disk=CFG1)
    facts = HostFacts(booted=booted(kargs=("nosmt",)), applied=applied, disk=on_disk(CFG1))
    view = node(names.MODE_LEGACY, CFG1.name, current_image=IMG_A)
    plan = p.plan_config(view, CFG1, facts, stock_image=STOCK)
    assert plan is not None and plan.steps == () and not plan.revert


@pytest.mark.parametrize(
    ("data", "disk", "dirs", "expected"),
    [
        (None, {}, frozenset({"old:5000"}), []),
        (
            {"kubelet-ca.crt": "K", "registry-reg.example.com..5000.crt": "R", "user-ca-bundle.crt": "U"},
            {},
            frozenset(),
            [
                WriteFile(KUBELET_CA_PATH, b"K"),
                WriteFile("/etc/docker/certs.d/reg.example.com:5000/ca.crt", b"R"),
                WriteFile(USER_CA_PATH, b"U"),
                UpdateCaTrust(),
            ],
        ),
        (
            {"registry-reg.example.com.crt": "R"},
            {"/etc/docker/certs.d/reg.example.com/ca.crt": DiskFile(b"R", 0o644)},
            frozenset({"reg.example.com", "gone.example.com:5000"}),
            [RemoveDir("/etc/docker/certs.d/gone.example.com:5000")],
        ),
        (
            {},
            {USER_CA_PATH: DiskFile(b"U", 0o644)},
            frozenset(),
            [RemoveFile(USER_CA_PATH), UpdateCaTrust()],
        ),
        ({"kubelet-ca.crt": "K"}, {KUBELET_CA_PATH: DiskFile(b"K", 0o644)}, frozenset(), []),
    ],
)
def test_certificates(
    data: dict[str, str] | None,
    disk: dict[str, DiskFile | None],
    dirs: frozenset[str],
    expected: list[Step],
) -> None:
    assert list(plan_certificates(data, disk, dirs)) == expected


def test_steps_round_trip_through_json() -> None:
    plan = p.plan_config(node(names.MODE_LEGACY, CFG1.name), CFG1, HostFacts(booted=booted()))
    assert plan is not None
    for step in plan.steps:
        assert Step.from_json(step.to_json()) == step


@pytest.mark.parametrize(
    ("ref", "deployment", "same"),
    [
        (IMG_A, Deployment("ostree-unverified-registry:" + IMG_A), True),
        (IMG_A, Deployment(IMG_B), False),
        (IMG_A, Deployment("other.repo/x:latest", "sha256:" + "a" * 64), True),
        ("quay.io/x:latest", Deployment("docker://quay.io/x:latest"), True),
        (IMG_A, None, False),
        (IMG_A, Deployment(None), False),
    ],
)
def test_same_image(ref: str, deployment: Deployment | None, same: bool) -> None:
    assert same_image(deployment, ref) is same


def test_parse_fixture_machineconfig(mco_fixtures: Path) -> None:
    obj = yaml.safe_load((mco_fixtures / "objects" / "test-config.machineconfig.yaml").read_text())
    cfg = parse_machineconfig(obj)
    assert cfg.kernel_arguments == ("foo=bar", "nosmt")
    assert cfg.os_image_url.startswith("registry.example.com/oscontainer@sha256:")
    update = next(f for f in cfg.files if f.path == "/etc/coreos/update.conf")
    assert update.mode == 0o644 and update.contents.startswith(b"GROUP=stable\n")
    docker = next(u for u in cfg.units if u.name == "docker.service")
    assert docker.contents is None and docker.enabled and docker.dropins[0].name == "10-dockeropts.conf"


def _mc(
    files: list[dict[str, Any]] | None = None, users: list[dict[str, Any]] | None = None
) -> dict[str, Any]:
    config: dict[str, Any] = {"ignition": {"version": "3.2.0"}}
    if files is not None:
        config["storage"] = {"files": files}
    if users is not None:
        config["passwd"] = {"users": users}
    return {"metadata": {"name": "rendered-x"}, "spec": {"config": config}}


@pytest.mark.parametrize(
    ("obj", "message"),
    [
        (
            _mc([{"path": "etc/x", "contents": {"source": "data:,x"}}]),
            "files\\[0\\].path: 'etc/x' is relative: use an absolute path",
        ),
        (_mc([{"path": "/etc/x", "contents": {"source": "https://x"}}]), "inline as a data: URL"),
        (_mc([{"path": "/etc/x", "mode": "0644"}]), "files\\[0\\].mode: must be an integer"),
        (_mc(users=[{"name": "root", "sshAuthorizedKeys": ["k"]}]), "user 'root' is not supported"),
    ],
)
def test_parse_errors_name_object_field_and_fix(obj: dict[str, Any], message: str) -> None:
    with pytest.raises(ConfigError, match="MachineConfig rendered-x") as info:
        parse_machineconfig(obj)
    assert info.match(message)


def test_parse_data_urls() -> None:
    text = "line one\nline two\n"
    obj = _mc(
        [
            {"path": "/etc/pct", "contents": {"source": "data:," + urllib.parse.quote(text)}},
            {
                "path": "/etc/b64",
                "contents": {"source": "data:text/plain;charset=utf-8;base64,aGk="},
                "mode": 384,
            },
            {"path": "/etc/empty"},
        ],
        users=[{"name": "core", "sshAuthorizedKeys": ["k1", "k2"], "passwordHash": "$6$x"}],
    )
    cfg = parse_machineconfig(obj)
    assert [(f.path, f.contents, f.mode) for f in cfg.files] == [
        ("/etc/pct", text.encode(), 0o644),
        ("/etc/b64", b"hi", 0o600),
        ("/etc/empty", b"", 0o644),
    ]
    assert cfg.ssh_keys == ("k1", "k2") and cfg.password_hash == "$6$x"
    assert HostConfig.from_json(cfg.to_json()) == cfg
