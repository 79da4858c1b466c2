"""The steps a plan is made of, each idempotent; :mod:`mcosup.daemon.executor` carries them out.

Pure. A step serialises to JSON (:meth:`Step.to_json`) because the journal persists a plan before it
runs, so a daemon killed mid-plan resumes where it stopped.
"""

from __future__ import annotations

import base64
import dataclasses
from collections.abc import Mapping
from typing import Any, ClassVar

from mcosup.daemon.hostfacts import Applied

# Steps. Each is idempotent; the executor (mcosup.daemon.executor) carries them out.


@dataclasses.dataclass(frozen=True)
class Step:
    kind: ClassVar[str] = ""

    def describe(self) -> str:
        return self.kind

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {"kind": self.kind}
        for f in dataclasses.fields(self):
            value = getattr(self, f.name)
            if isinstance(value, bytes):
                value = base64.b64encode(value).decode()
            elif isinstance(value, tuple):
                value = list(value)
            elif isinstance(value, Applied):
                value = value.to_json()
            out[f.name] = value
        return out

    @staticmethod
    def from_json(data: Mapping[str, Any]) -> Step:
        cls = STEP_KINDS[data["kind"]]
        kwargs: dict[str, Any] = {}
        for f in dataclasses.fields(cls):
            value = data[f.name]
            if f.type == "bytes":
                value = base64.b64decode(value)
            elif str(f.type).startswith("tuple"):
                value = tuple(value)
            elif f.type == "Applied":
                value = Applied.from_json(value)
            kwargs[f.name] = value
        step: Step = cls(**kwargs)
        return step


@dataclasses.dataclass(frozen=True)
class WriteFile(Step):
    kind: ClassVar[str] = "write-file"
    path: str
    contents: bytes
    mode: int = 0o644
    user: str | None = None
    group: str | None = None

    def describe(self) -> str:
        return f"write {self.path} (mode {self.mode:04o})"


@dataclasses.dataclass(frozen=True)
class RemoveFile(Step):
    kind: ClassVar[str] = "remove-file"
    path: str

    def describe(self) -> str:
        return f"remove {self.path}"


@dataclasses.dataclass(frozen=True)
class RemoveDir(Step):
    kind: ClassVar[str] = "remove-dir"
    path: str

    def describe(self) -> str:
        return f"remove directory {self.path}"


@dataclasses.dataclass(frozen=True)
class Systemctl(Step):
    """``systemctl enable|disable|mask|unmask UNIT...``."""

    kind: ClassVar[str] = "systemctl"
    action: str
    units: tuple[str, ...]

    def describe(self) -> str:
        return f"systemctl {self.action} {' '.join(self.units)}"


@dataclasses.dataclass(frozen=True)
class DaemonReload(Step):
    kind: ClassVar[str] = "daemon-reload"

    def describe(self) -> str:
        return "systemctl daemon-reload"


@dataclasses.dataclass(frozen=True)
class ServiceAction(Step):
    """``systemctl reload|restart UNIT`` on the running host: a node disruption policy's action
    (contract 12.2)."""

    kind: ClassVar[str] = "service"
    action: str
    unit: str

    def describe(self) -> str:
        return f"systemctl {self.action} {self.unit}"


@dataclasses.dataclass(frozen=True)
class SetSshKeys(Step):
    kind: ClassVar[str] = "ssh-keys"
    user: str
    keys: tuple[str, ...]

    def describe(self) -> str:
        return f"write {len(self.keys)} ssh key(s) for user {self.user}"


@dataclasses.dataclass(frozen=True)
class SetPasswordHash(Step):
    kind: ClassVar[str] = "password-hash"
    user: str
    #: None locks the password ("*"), as when a config drops its hash.
    password_hash: str | None

    def describe(self) -> str:
        return f"set the password hash of user {self.user}"


@dataclasses.dataclass(frozen=True)
class Kargs(Step):
    """Kernel arguments to append/delete; the executor skips what the host already has right."""

    kind: ClassVar[str] = "kargs"
    append: tuple[str, ...] = ()
    delete: tuple[str, ...] = ()

    def describe(self) -> str:
        parts = [f"+{a}" for a in self.append] + [f"-{d}" for d in self.delete]
        return f"kernel arguments {' '.join(parts)}"


@dataclasses.dataclass(frozen=True)
class Rebase(Step):
    kind: ClassVar[str] = "rebase"
    image: str

    def describe(self) -> str:
        return f"rebase onto {self.image}"


@dataclasses.dataclass(frozen=True)
class Reboot(Step):
    kind: ClassVar[str] = "reboot"
    reason: str

    def describe(self) -> str:
        return f"reboot ({self.reason})"


@dataclasses.dataclass(frozen=True)
class VerifyImage(Step):
    """After the reboot: the booted deployment must be ``image``."""

    kind: ClassVar[str] = "verify-image"
    image: str

    def describe(self) -> str:
        return f"verify the host booted {self.image}"


@dataclasses.dataclass(frozen=True)
class UpdateCaTrust(Step):
    kind: ClassVar[str] = "update-ca-trust"

    def describe(self) -> str:
        return "update-ca-trust"


@dataclasses.dataclass(frozen=True)
class RecordApplied(Step):
    kind: ClassVar[str] = "record-applied"
    applied: Applied

    def describe(self) -> str:
        return f"record {self.applied.config.name} ({self.applied.mode}) as applied"


STEP_KINDS: dict[str, type[Step]] = {
    cls.kind: cls
    for cls in (
        WriteFile,
        RemoveFile,
        RemoveDir,
        Systemctl,
        DaemonReload,
        ServiceAction,
        SetSshKeys,
        SetPasswordHash,
        Kargs,
        Rebase,
        Reboot,
        VerifyImage,
        UpdateCaTrust,
        RecordApplied,
    )
}
