"""What a rendered MachineConfig puts on a host, parsed into plain frozen values: the one reader of
files, units, drop-ins, user ``core``'s ssh keys and password hash, and kernel arguments.

The legacy daemon writes a :class:`HostConfig` file by file; the builder lays the same one out as an
image's root filesystem; both check it first with the webhook's validation, so all three agree on what
a MachineConfig delivers (``tests/test_image_equals_legacy.py`` keeps them so).

Pure: no I/O. It reads as Ignition does: ``data:`` URLs through :mod:`mcosup.model.ignition`, mode 0644
by default, a drop-in or unit without contents not written. It raises :class:`ConfigError` naming the
MachineConfig, the field and the fix for anything it cannot apply. Fields that land nowhere on disk
(``extensions``, ``kernelType``, ``fips``) are read only so that a change of them can be told apart
(:mod:`mcosup.model.disruption`: it reboots); the webhook refuses what no part of mcosup supports.
"""

from __future__ import annotations

import base64
import dataclasses
from collections.abc import Mapping, Sequence
from typing import Any

from mcosup.model import machineconfig
from mcosup.model.ignition import decode_data_url

#: The one user whose ssh keys and password hash a MachineConfig may set.
CORE_USER = "core"
#: Ignition's default file mode.
DEFAULT_FILE_MODE = 0o644
#: Where systemd units and their drop-ins are written.
UNIT_DIR = "/etc/systemd/system"


class ConfigError(ValueError):
    """A rendered MachineConfig that cannot be applied; the message names the object, field and fix."""


@dataclasses.dataclass(frozen=True)
class FileSpec:
    path: str
    contents: bytes
    mode: int = DEFAULT_FILE_MODE
    #: Owner as a user name or a numeric id in decimal; None = root.
    user: str | None = None
    group: str | None = None


@dataclasses.dataclass(frozen=True)
class Dropin:
    name: str
    contents: str


@dataclasses.dataclass(frozen=True)
class UnitSpec:
    name: str
    #: Unit file text; None = the unit ships with the OS and only its state / drop-ins are managed.
    contents: str | None = None
    #: True enable, False disable, None leave as it is.
    enabled: bool | None = None
    mask: bool = False
    dropins: tuple[Dropin, ...] = ()

    @property
    def path(self) -> str:
        return f"{UNIT_DIR}/{self.name}"

    def dropin_path(self, dropin: str) -> str:
        return f"{UNIT_DIR}/{self.name}.d/{dropin}"


@dataclasses.dataclass(frozen=True)
class HostConfig:
    """The parts of a rendered config that land on a host."""

    name: str
    files: tuple[FileSpec, ...] = ()
    units: tuple[UnitSpec, ...] = ()
    ssh_keys: tuple[str, ...] = ()
    password_hash: str | None = None
    kernel_arguments: tuple[str, ...] = ()
    os_image_url: str = ""
    #: Not applied by the daemon; compared so that changing them reboots (contract 12.2).
    kernel_type: str = ""
    extensions: tuple[str, ...] = ()
    fips: bool = False

    def to_json(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "files": [
                {
                    "path": f.path,
                    "contents": base64.b64encode(f.contents).decode(),
                    "mode": f.mode,
                    "user": f.user,
                    "group": f.group,
                }
                for f in self.files
            ],
            "units": [
                {
                    "name": u.name,
                    "contents": u.contents,
                    "enabled": u.enabled,
                    "mask": u.mask,
                    "dropins": [{"name": d.name, "contents": d.contents} for d in u.dropins],
                }
                for u in self.units
            ],
            "sshKeys": list(self.ssh_keys),
            "passwordHash": self.password_hash,
            "kernelArguments": list(self.kernel_arguments),
            "osImageURL": self.os_image_url,
            "kernelType": self.kernel_type,
            "extensions": list(self.extensions),
            "fips": self.fips,
        }

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> HostConfig:
        return cls(
            name=data["name"],
            files=tuple(
                FileSpec(
                    path=f["path"],
                    contents=base64.b64decode(f["contents"]),
                    mode=int(f["mode"]),
                    user=f.get("user"),
                    group=f.get("group"),
                )
                for f in data.get("files", ())
            ),
            units=tuple(
                UnitSpec(
                    name=u["name"],
                    contents=u.get("contents"),
                    enabled=u.get("enabled"),
                    mask=bool(u.get("mask")),
                    dropins=tuple(Dropin(d["name"], d["contents"]) for d in u.get("dropins", ())),
                )
                for u in data.get("units", ())
            ),
            ssh_keys=tuple(data.get("sshKeys", ())),
            password_hash=data.get("passwordHash"),
            kernel_arguments=tuple(data.get("kernelArguments", ())),
            os_image_url=data.get("osImageURL", ""),
            kernel_type=data.get("kernelType", ""),
            extensions=tuple(data.get("extensions", ())),
            fips=bool(data.get("fips", False)),
        )


def _owner(entry: Any) -> str | None:
    if not isinstance(entry, Mapping):
        return None
    if entry.get("name"):
        return str(entry["name"])
    if entry.get("id") is not None:
        return str(int(entry["id"]))
    return None


def _list(value: Any, *, where: str) -> Sequence[Any]:
    if value is None:
        return ()
    if not isinstance(value, list):
        raise ConfigError(f"{where} must be a list, got {type(value).__name__}")
    return value


def parse_machineconfig(obj: Mapping[str, Any]) -> HostConfig:
    """The host-facing content of a (rendered) MachineConfig object."""
    name = str(obj.get("metadata", {}).get("name", "<unnamed>"))
    spec = obj.get("spec") or {}
    where = f"MachineConfig {name}"
    # The webhook's validation, so the daemon refuses exactly what admission and render refuse.
    problems = machineconfig.problems(obj)
    if problems:
        raise ConfigError(f"{where} {problems[0]}")
    config = spec.get("config") or {}
    storage = config.get("storage") or {}
    files: dict[str, FileSpec] = {}
    for i, entry in enumerate(_list(storage.get("files"), where=f"{where} spec.config.storage.files")):
        at = f"{where} spec.config.storage.files[{i}]"
        path = entry.get("path")
        if not isinstance(path, str) or not path.startswith("/"):
            raise ConfigError(f"{at}.path must be an absolute path, got {path!r}")
        contents = entry.get("contents") or {}
        source = contents.get("source")
        compression = contents.get("compression") or None
        if compression not in (None, "gzip"):
            raise ConfigError(f"{at}.contents.compression {compression!r} unsupported; use gzip")
        try:
            # The webhook's decoder: the daemon writes exactly what admission accepted (Ignition's rules).
            data = b"" if source in (None, "") else decode_data_url(str(source), compression)
        except ValueError as exc:
            raise ConfigError(f"{at}.contents.source: {exc}") from None
        mode = entry.get("mode", DEFAULT_FILE_MODE)
        if not isinstance(mode, int) or not 0 <= mode <= 0o7777:
            raise ConfigError(f"{at}.mode must be an integer file mode (e.g. 420 for 0644), got {mode!r}")
        files[path] = FileSpec(path, data, mode, _owner(entry.get("user")), _owner(entry.get("group")))
    units: dict[str, UnitSpec] = {}
    systemd = config.get("systemd") or {}
    for i, entry in enumerate(_list(systemd.get("units"), where=f"{where} spec.config.systemd.units")):
        at = f"{where} spec.config.systemd.units[{i}]"
        uname = entry.get("name")
        if not isinstance(uname, str) or not uname or "/" in uname:
            raise ConfigError(f"{at}.name must be a unit file name such as foo.service, got {uname!r}")
        # As Ignition: a drop-in without contents is not written.
        dropins = tuple(
            Dropin(str(d.get("name")), str(d["contents"]))
            for d in _list(entry.get("dropins"), where=f"{at}.dropins")
            if d.get("contents") is not None
        )
        for d in dropins:
            if not d.name or "/" in d.name:
                raise ConfigError(f"{at}.dropins: drop-in name {d.name!r} must be a file name like 10-x.conf")
        enabled = entry.get("enabled")
        units[uname] = UnitSpec(
            name=uname,
            contents=entry.get("contents"),
            enabled=None if enabled is None else bool(enabled),
            mask=bool(entry.get("mask")),
            dropins=dropins,
        )
    ssh_keys: list[str] = []
    password_hash: str | None = None
    passwd = config.get("passwd") or {}
    for entry in _list(passwd.get("users"), where=f"{where} spec.config.passwd.users"):
        if entry.get("name") != CORE_USER:
            raise ConfigError(
                f"{where} spec.config.passwd.users: user {entry.get('name')!r} is not supported; "
                f"only {CORE_USER!r} may be configured"
            )
        for key in _list(entry.get("sshAuthorizedKeys"), where=f"{where} passwd.users.sshAuthorizedKeys"):
            if key not in ssh_keys:
                ssh_keys.append(str(key))
        if entry.get("passwordHash"):
            password_hash = str(entry["passwordHash"])
    kargs: list[str] = []
    for karg in _list(spec.get("kernelArguments"), where=f"{where} spec.kernelArguments"):
        for word in str(karg).split():
            if word not in kargs:
                kargs.append(word)
    return HostConfig(
        name=name,
        files=tuple(files.values()),
        units=tuple(units.values()),
        ssh_keys=tuple(ssh_keys),
        password_hash=password_hash,
        kernel_arguments=tuple(kargs),
        os_image_url=str(spec.get("osImageURL") or ""),
        kernel_type="" if spec.get("kernelType") in (None, "default") else str(spec["kernelType"]),
        extensions=tuple(str(e) for e in spec.get("extensions") or ()),
        fips=bool(spec.get("fips")),
    )
