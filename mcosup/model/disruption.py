"""Node disruption policy (contract 12.2): what a change of rendered config needs instead of a reboot.

Pure: no I/O. Two parts, both used by the daemon (which applies a change) and by the supervisor (which
decides whether a node's turn drains it):

- :func:`parse_policy` reads ConfigMap ``node-disruption-policy`` key ``policy.yaml``, written in the
  shape of the MCO's ``MachineConfiguration.spec.nodeDisruptionPolicy`` (``files`` by path, ``units`` by
  name, ``sshkey``; actions ``Reboot``, ``None``, ``Drain``, ``Reload``, ``Restart``, ``DaemonReload``),
  merged over the MCO's default policies (an admin's entry for a path or unit replaces the default's).
  A policy that cannot be read raises :class:`PolicyError` naming the ConfigMap, the field and the fix;
  callers then fall back to "every change reboots" (:func:`policy_of` does that for them).
- :func:`classify` compares the config a node runs with the one it should run and answers with a
  :class:`Change`: the ordered actions (each once), or the reason a reboot is needed.

Choices, following the MCO's daemon (``calculatePostConfigChangeNodeDisruptionActionFromMCDiffs``):

- A changed file takes the policy of its own path, else of its closest parent directory with one; a
  changed unit (file, drop-in, enablement or mask) takes its unit's policy; a change of ``core``'s ssh
  keys or password hash takes ``sshkey``'s. Anything without a policy reboots; any ``Reboot`` action
  makes the whole change a reboot; ``None`` is dropped when other actions remain.
- Kernel arguments, kernel type, extensions, FIPS and ``osImageURL`` always reboot, as does a change of daemon
  mode, a first configuration, or (layered) a new image for the same config.
- Layered mode: the new image is staged for the next boot and the changed files are written live, so a
  changed path outside ``/etc`` (which only a deployment can deliver) reboots, and so does a change of a
  unit's enablement or mask (the image carries it).
- The MCO's ``Special`` action for ``/etc/containers/registries.conf`` (drain unless the change only adds
  registries) is not in the API an admin writes; mcosup's default for that file is ``Drain`` then
  ``Reload crio.service``: no reboot, always drained.
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Mapping, Sequence
from typing import Any

import yaml

from mcosup.model import names
from mcosup.model.hostconfig import HostConfig, UnitSpec

REBOOT = "Reboot"
NONE = "None"
DRAIN = "Drain"
RELOAD = "Reload"
RESTART = "Restart"
DAEMON_RELOAD = "DaemonReload"
ACTION_TYPES = (REBOOT, NONE, DRAIN, RELOAD, RESTART, DAEMON_RELOAD)
#: Types that name a service, and the field that holds it (``reload: {serviceName: ...}``).
_SERVICE_FIELD = {RELOAD: "reload", RESTART: "restart"}
#: As the MCO's API: ``<name>.<type>`` with one of systemd's unit types.
_UNIT_NAME = re.compile(
    r"^[a-zA-Z0-9:._\\-]+\.(service|socket|device|mount|automount|swap|target|path|timer|snapshot|slice|scope)$"
)
#: The MCO API's limits.
MAX_ENTRIES = 50
MAX_ACTIONS = 10


class PolicyError(ValueError):
    """The policy cannot be used; the message names the ConfigMap, the field and the fix."""


@dataclasses.dataclass(frozen=True)
class Action:
    type: str
    #: The unit a ``Reload`` or ``Restart`` acts on.
    service: str | None = None

    def describe(self) -> str:
        return f"{self.type} {self.service}" if self.service else self.type


@dataclasses.dataclass(frozen=True)
class Policy:
    files: Mapping[str, tuple[Action, ...]]
    units: Mapping[str, tuple[Action, ...]]
    sshkey: tuple[Action, ...]

    def for_file(self, path: str) -> tuple[Action, ...] | None:
        """The policy of ``path`` or of its closest parent directory that has one."""
        probe = path
        while probe not in self.files:
            if probe in ("", "/"):
                return None
            probe = probe.rsplit("/", 1)[0] or "/"
        return self.files[probe]


def _reload(service: str) -> tuple[Action, ...]:
    return (Action(RELOAD, service),)


#: The MCO's default policies (``apihelpers.defaultClusterPolicies``), the ones that apply to a host.
DEFAULT_POLICY = Policy(
    files={
        "/var/lib/kubelet/config.json": (Action(NONE),),
        "/etc/machine-config-daemon/no-reboot/containers-gpg.pub": _reload("crio.service"),
        "/etc/containers/policy.json": _reload("crio.service"),
        "/etc/containers/registries.conf": (Action(DRAIN), Action(RELOAD, "crio.service")),
        "/etc/containers/registries.d": _reload("crio.service"),
        "/etc/crio/policies": _reload("crio.service"),
        "/etc/nmstate/openshift": (Action(NONE),),
        "/etc/pki/ca-trust/source/anchors/openshift-config-user-ca-bundle.crt": (
            Action(RESTART, "coreos-update-ca-trust.service"),
            Action(RESTART, "crio.service"),
        ),
        "/etc/kubernetes/credential-providers": (Action(RESTART, "kubelet.service"),),
    },
    units={},
    sshkey=(Action(NONE),),
)


# Parsing.


def parse_policy(text: str | None, *, namespace: str = names.DEFAULT_NAMESPACE) -> Policy:
    """The policy in ``policy.yaml`` merged over :data:`DEFAULT_POLICY` (None or empty: the defaults)."""
    where = f"ConfigMap {namespace}/{names.NODE_DISRUPTION_POLICY_CM} key {names.NODE_DISRUPTION_POLICY_KEY}"
    if text is None or not text.strip():
        return DEFAULT_POLICY
    try:
        doc = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        at = f" at line {mark.line + 1}" if mark is not None else ""
        raise PolicyError(f"{where} is not valid YAML{at}; fix the syntax") from None
    if isinstance(doc, Mapping) and set(doc) == {"nodeDisruptionPolicy"}:
        doc = doc["nodeDisruptionPolicy"]  # pasted whole from a MachineConfiguration's spec
    if doc is None:
        return DEFAULT_POLICY
    if not isinstance(doc, Mapping):
        raise PolicyError(f"{where} must be a mapping with files, units and sshkey, got {_kind(doc)}")
    unknown = sorted(str(k) for k in doc if k not in ("files", "units", "sshkey"))
    if unknown:
        raise PolicyError(f"{where}: unknown field {unknown[0]!r}; the fields are files, units and sshkey")
    files = dict(DEFAULT_POLICY.files)
    for i, entry in enumerate(_entries(doc.get("files"), f"{where}: files")):
        at = f"{where}: files[{i}]"
        path = entry.get("path")
        if not isinstance(path, str) or not path.startswith("/"):
            raise PolicyError(f"{at}.path must be an absolute path such as /etc/containers/registries.conf")
        files[path.rstrip("/") or "/"] = _actions(entry, at)
    units = dict(DEFAULT_POLICY.units)
    for i, entry in enumerate(_entries(doc.get("units"), f"{where}: units")):
        at = f"{where}: units[{i}]"
        name = entry.get("name")
        if not isinstance(name, str) or not _UNIT_NAME.match(name):
            raise PolicyError(f"{at}.name must be a unit name such as crio.service, got {name!r}")
        units[name] = _actions(entry, at)
    sshkey = DEFAULT_POLICY.sshkey
    if (ssh := doc.get("sshkey")) is not None:
        if not isinstance(ssh, Mapping):
            raise PolicyError(f"{where}: sshkey must be a mapping with actions, got {_kind(ssh)}")
        sshkey = _actions(ssh, f"{where}: sshkey")
    return Policy(files=files, units=units, sshkey=sshkey)


def policy_of(configmap: Mapping[str, Any] | None) -> tuple[Policy | None, str | None]:
    """(policy, None) from the ConfigMap (absent: the defaults), or (None, why) when it is invalid:
    None stands for "every change reboots"."""
    if configmap is None:
        return DEFAULT_POLICY, None
    namespace = str((configmap.get("metadata") or {}).get("namespace") or names.DEFAULT_NAMESPACE)
    text = (configmap.get("data") or {}).get(names.NODE_DISRUPTION_POLICY_KEY)
    try:
        return parse_policy(text, namespace=namespace), None
    except PolicyError as exc:
        return None, f"{exc}; until it is fixed every change reboots"


def _kind(value: Any) -> str:
    return "a list" if isinstance(value, list) else type(value).__name__


def _entries(value: Any, where: str) -> Sequence[Mapping[str, Any]]:
    if value is None:
        return ()
    if not isinstance(value, list) or not all(isinstance(e, Mapping) for e in value):
        raise PolicyError(f"{where} must be a list of mappings, got {_kind(value)}")
    if len(value) > MAX_ENTRIES:
        raise PolicyError(f"{where} has {len(value)} entries; at most {MAX_ENTRIES} are allowed")
    return value


def _actions(entry: Mapping[str, Any], at: str) -> tuple[Action, ...]:
    raw = entry.get("actions")
    if not isinstance(raw, list) or not raw:
        raise PolicyError(f"{at}.actions must be a non-empty list such as [{{type: {NONE}}}]")
    if len(raw) > MAX_ACTIONS:
        raise PolicyError(f"{at}.actions has {len(raw)} entries; at most {MAX_ACTIONS} are allowed")
    out: list[Action] = []
    for j, item in enumerate(raw):
        here = f"{at}.actions[{j}]"
        kind = item.get("type") if isinstance(item, Mapping) else None
        if kind not in ACTION_TYPES:
            raise PolicyError(f"{here}.type must be one of {', '.join(ACTION_TYPES)}, got {kind!r}")
        assert isinstance(item, Mapping)
        for other_type, other in _SERVICE_FIELD.items():
            if other in item and other_type != kind:
                raise PolicyError(f"{here}.{other} is only allowed with type {other_type}; remove it")
        service = None
        if (field := _SERVICE_FIELD.get(kind)) is not None:
            service = (
                (item.get(field) or {}).get("serviceName") if isinstance(item.get(field), Mapping) else None
            )
            if not isinstance(service, str) or not _UNIT_NAME.match(service):
                raise PolicyError(
                    f"{here}.{field}.serviceName is required with type {kind} and must be a unit name "
                    f"such as crio.service, got {service!r}"
                )
        out.append(Action(kind, service))
    for alone in (REBOOT, NONE):
        if len(out) > 1 and any(a.type == alone for a in out):
            raise PolicyError(f"{at}.actions: {alone} can only be the only action; remove the others")
    return tuple(out)


# Classification.


@dataclasses.dataclass(frozen=True)
class Change:
    """What taking a node to a new config needs: ``reboot`` says why a reboot is needed (None: applied
    live); otherwise ``actions`` run in order, each once."""

    reboot: str | None
    actions: tuple[Action, ...] = ()

    @property
    def drain(self) -> bool:
        return self.reboot is not None or any(a.type == DRAIN for a in self.actions)

    def describe(self) -> str:
        """``Reload crio.service, Restart kubelet.service``; ``None`` when nothing runs."""
        return ", ".join(a.describe() for a in self.actions) or NONE


def classify(
    old: HostConfig | None,
    new: HostConfig,
    policy: Policy | None,
    *,
    old_mode: str | None,
    new_mode: str,
    old_image: str | None = None,
    new_image: str | None = None,
) -> Change:
    """The change from ``old`` (what the node runs, in ``old_mode``/``old_image``) to ``new``.
    ``policy`` None (an invalid policy) means every change reboots."""
    if old is None:
        return Change(reboot=f"{new.name} is the node's first configuration")
    if old_mode != new_mode:
        return Change(reboot=f"the node changes from {old_mode or 'no'} mode to {new_mode} mode")
    layered = new_mode == names.MODE_LAYERED
    if layered and old.name == new.name and old_image != new_image:
        return Change(reboot=f"image {new_image} changes the OS beyond {new.name}")
    for what, a, b in (
        ("kernel arguments", old.kernel_arguments, new.kernel_arguments),
        ("kernel type", old.kernel_type, new.kernel_type),
        ("extensions", old.extensions, new.extensions),
        ("FIPS", old.fips, new.fips),
        ("osImageURL", old.os_image_url, new.os_image_url),
    ):
        if a != b:
            return Change(reboot=f"{what} change from {old.name} to {new.name}")
    files = changed_files(old, new)
    units = changed_units(old, new)
    ssh = old.ssh_keys != new.ssh_keys or old.password_hash != new.password_hash
    if not files and not units and not ssh:
        return Change(reboot=None)
    if policy is None:
        return Change(reboot=f"{names.NODE_DISRUPTION_POLICY_CM} is invalid, so every change reboots")
    actions: list[Action] = []
    for path in files:
        if layered and not path.startswith("/etc/"):
            return Change(reboot=f"{path} is outside /etc: only a reboot into the new image delivers it")
        found = policy.for_file(path)
        if found is None:
            return Change(reboot=f"file {path} changed and no node disruption policy covers it")
        actions += found
    for name, state_changed in units.items():
        if layered and state_changed:
            return Change(reboot=f"unit {name} is enabled, disabled or masked by the new image")
        found = policy.units.get(name)
        if found is None:
            return Change(reboot=f"unit {name} changed and no node disruption policy covers it")
        actions += found
    if ssh:
        actions += policy.sshkey
    if any(a.type == REBOOT for a in actions):
        return Change(reboot="the node disruption policy asks for a reboot")
    once: list[Action] = []
    for action in actions:
        if action.type != NONE and action not in once:
            once.append(action)
    return Change(reboot=None, actions=tuple(once))


def changed_files(old: HostConfig, new: HostConfig) -> list[str]:
    """Paths of files added, removed or changed (contents, mode, owner), sorted."""
    a = {f.path: f for f in old.files}
    b = {f.path: f for f in new.files}
    return sorted(p for p in a.keys() | b.keys() if a.get(p) != b.get(p))


def changed_units(old: HostConfig, new: HostConfig) -> dict[str, bool]:
    """Units added, removed or changed, sorted by name → whether their enablement or mask changed."""
    a = {u.name: u for u in old.units}
    b = {u.name: u for u in new.units}
    out: dict[str, bool] = {}
    for name in sorted(a.keys() | b.keys()):
        before, after = a.get(name), b.get(name)
        if before != after:
            out[name] = _state(before) != _state(after)
    return out


def _state(unit: UnitSpec | None) -> tuple[bool | None, bool]:
    return (None, False) if unit is None else (unit.enabled, unit.mask)


# The report on the Node.


def applied_without_reboot(config: str, change: Change) -> str:
    """The value of ``mc/lastAppliedWithoutReboot``: ``rendered-worker-ab…: Reload crio.service``."""
    return f"{config}: {change.describe()}"
