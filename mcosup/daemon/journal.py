"""The daemon's persisted intent on the host: what it applied, and the plan it is in the middle of.

One JSON file under the host root, rewritten atomically after every step, so a crash or a reboot at
any point resumes at the first step not recorded as done (steps are idempotent, so the one that was
running when the process died is simply run again). A reboot step records the boot id it was requested
from: after restart, a different boot id means the reboot happened.
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Callable, Mapping
from typing import Any, NoReturn, TypeVar

from mcosup.daemon.host import Host, HostError
from mcosup.daemon.hostfacts import Applied
from mcosup.daemon.plan import Plan
from mcosup.daemon.steps import RecordApplied, Step
from mcosup.model import names
from mcosup.model.hostconfig import HostConfig
from mcosup.model.node import Target

STATE_FILE = "/etc/mco/mcosup-daemon-state.json"
#: The rollback record (contract 12.3) with what the host runs again, kept outside /etc as well: a
#: rollback boots the deployment before with its own /etc as it left it (it makes no new deployment, so
#: no /etc merge), journal included, while /var is every deployment's.
ROLLBACK_FILE = "/var/lib/mcosup/rolled-back.json"
FORMAT = 1
T = TypeVar("T")


@dataclasses.dataclass
class PlanRecord:
    key: str
    target: Target
    steps: tuple[Step, ...]
    revert: bool = False
    done: int = 0
    #: Boot id the plan's reboot was requested from; another boot id means it has happened.
    reboot_from: str | None = None

    @classmethod
    def start(cls, plan: Plan) -> PlanRecord:
        return cls(key=plan.key(), target=plan.target, steps=plan.steps, revert=plan.revert)

    def to_json(self) -> dict[str, Any]:
        return {
            "key": self.key,
            # ``revert`` sits in ``target``, where journals have always had it.
            "target": {**dataclasses.asdict(self.target), "revert": self.revert},
            "steps": [s.to_json() for s in self.steps],
            "done": self.done,
            "rebootFrom": self.reboot_from,
        }

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> PlanRecord:
        target = dict(data["target"])
        revert = bool(target.pop("revert", False))
        return cls(
            key=data["key"],
            target=Target(**target),
            revert=revert,
            steps=tuple(Step.from_json(s) for s in data["steps"]),
            done=int(data["done"]),
            reboot_from=data.get("rebootFrom"),
        )

    def final_applied(self) -> Applied | None:
        for step in self.steps:
            if isinstance(step, RecordApplied):
                return step.applied
        return None


@dataclasses.dataclass
class HealthGate:
    """A plan boots a new image: the node must prove healthy on it before it reports Done
    (contract 12.3), or the host goes back to what it ran before."""

    image: str
    #: What the host ran before the plan: applied again when it rolls back.
    previous: Applied | None
    #: Wall-clock seconds (Unix time) the check began, after the boot: the deadline survives restarts.
    since: float | None = None

    def to_json(self) -> dict[str, Any]:
        previous = None if self.previous is None else self.previous.to_json()
        return {"image": self.image, "previous": previous, "since": self.since}

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> HealthGate:
        previous = None if data.get("previous") is None else Applied.from_json(data["previous"])
        return cls(image=data["image"], previous=previous, since=data.get("since"))


@dataclasses.dataclass
class RolledBack:
    """The host was rolled back from ``image`` (``why``): reported until the node is given another
    target."""

    image: str
    why: str
    #: Boot id the rollback's reboot was requested from; another boot id means it has happened.
    boot_from: str
    #: The rollback command has run (it is not idempotent: a second one would undo the first).
    requested: bool = False
    #: After the rollback's reboot, what the host lacks of what the node reports has been planned (the
    #: plan runs in :attr:`DaemonState.restore`): once per rollback.
    restored: bool = False

    def to_json(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> RolledBack:
        return cls(**data)


@dataclasses.dataclass
class DaemonState:
    applied: Applied | None = None
    #: The config plan (contract 6.1-6.3) in progress.
    plan: PlanRecord | None = None
    #: The certificate plan (6.4) in progress.
    certs: PlanRecord | None = None
    #: The health gate (12.3) of the image the plan boots, until the node proves healthy on it.
    health: HealthGate | None = None
    #: The rollback (12.3) the node reports while its target is still the image it left.
    rolled_back: RolledBack | None = None
    #: After that rollback, the steps giving the host back what the node reports, in progress.
    restore: PlanRecord | None = None

    def to_json(self) -> dict[str, Any]:
        return {
            "format": FORMAT,
            "applied": None if self.applied is None else self.applied.to_json(),
            "plan": None if self.plan is None else self.plan.to_json(),
            "certs": None if self.certs is None else self.certs.to_json(),
            "health": None if self.health is None else self.health.to_json(),
            "rolledBack": None if self.rolled_back is None else self.rolled_back.to_json(),
            "restore": None if self.restore is None else self.restore.to_json(),
        }

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> DaemonState:
        return cls(
            applied=None if data.get("applied") is None else Applied.from_json(data["applied"]),
            plan=None if data.get("plan") is None else PlanRecord.from_json(data["plan"]),
            certs=None if data.get("certs") is None else PlanRecord.from_json(data["certs"]),
            health=None if data.get("health") is None else HealthGate.from_json(data["health"]),
            rolled_back=None if data.get("rolledBack") is None else RolledBack.from_json(data["rolledBack"]),
            restore=None if data.get("restore") is None else PlanRecord.from_json(data["restore"]),
        )

    def abandon_plan(self) -> None:
        """Drop the plan in progress, remembering what it may have written so a later plan removes it."""
        if self.plan is None:
            return
        target = self.plan.final_applied()
        reverting = self.plan.revert
        self.plan = None
        if target is None or target.on_disk is None:
            return
        if self.applied is None:
            # Nothing finished before: remember only what may be on disk (no kargs, keys or hash
            # baseline), and that a revert is still owed if this was one.
            mode = names.MODE_LAYERED if reverting else target.mode
            self.applied = Applied(config=HostConfig(name=""), mode=mode, on_disk=target.on_disk)
            return
        self.applied = dataclasses.replace(self.applied, on_disk=union(self.applied.on_disk, target.on_disk))


def union(a: HostConfig | None, b: HostConfig) -> HostConfig:
    """Files and units of both (``a``'s win): everything the daemon may have left on disk."""
    if a is None:
        return b
    files = {f.path: f for f in b.files} | {f.path: f for f in a.files}
    units = {u.name: u for u in b.units} | {u.name: u for u in a.units}
    return dataclasses.replace(a, files=tuple(files.values()), units=tuple(units.values()))


class Journal:
    def __init__(self, host: Host, path: str = STATE_FILE, rollback_path: str = ROLLBACK_FILE):
        self.host = host
        self.path = path
        self.rollback_path = rollback_path

    def load(self) -> DaemonState:
        data = self._read(self.path)
        state = DaemonState() if data is None else self._parse(self.path, data, DaemonState.from_json)
        rollback = self._read(self.rollback_path)
        if rollback is None:
            return state
        rolled = self._parse(self.rollback_path, rollback.get("rolledBack"), RolledBack.from_json)
        if state.rolled_back is None or state.rolled_back.boot_from != rolled.boot_from:
            # Booted back into the deployment before the bad image, with the journal that deployment's
            # /etc had when it rebooted into that image: its plan and health gate are over.
            applied = rollback.get("applied")
            state.applied = (
                None if applied is None else self._parse(self.rollback_path, applied, Applied.from_json)
            )
            state.rolled_back, state.plan, state.health, state.restore = rolled, None, None, None
        return state

    def save(self, state: DaemonState) -> None:
        body = json.dumps(state.to_json(), sort_keys=True, indent=1).encode()
        self.host.write_file(self.path, body, 0o600)
        if state.rolled_back is None:
            self.host.remove_file(self.rollback_path)
            return
        applied = None if state.applied is None else state.applied.to_json()
        rollback = {"format": FORMAT, "rolledBack": state.rolled_back.to_json(), "applied": applied}
        self.host.write_file(self.rollback_path, json.dumps(rollback, sort_keys=True).encode(), 0o600)

    def _read(self, path: str) -> dict[str, Any] | None:
        current = self.host.read_file(path)
        if current is None:
            return None
        data = self._parse(path, current.contents, json.loads)
        if not isinstance(data, dict) or data.get("format") != FORMAT:
            found = data.get("format") if isinstance(data, dict) else type(data).__name__
            self._unreadable(path, f"format {found!r}, expected {FORMAT}")
        return data

    def _parse(self, path: str, data: Any, parse: Callable[[Any], T]) -> T:
        try:
            return parse(data)
        except (ValueError, KeyError, TypeError) as exc:
            self._unreadable(path, str(exc))

    @staticmethod
    def _unreadable(path: str, why: str) -> NoReturn:
        raise HostError(
            f"daemon state {path} on the host is unreadable ({why}); move it aside and the daemon "
            "re-plans from what the host reports"
        ) from None
