"""MachineConfig and Ignition validation, shared by the admission webhook and the render controller.

Pure: a MachineConfig object (a plain mapping, as read from the API) in, a list of :class:`Problem` out.
Each problem names the field (``spec.config.storage.files[2].path``) and says how to fix it, so the same
text serves as a denial message at ``kubectl apply`` time and as a ``RenderDegraded`` message later.

What the MCO accepts is the reference: Ignition spec 2.2 (and the 2.0/2.1 configs its parser chains to)
and 3.0 through 3.4; inline ``data:`` contents only; the ``core`` user's ssh keys and password hash only;
no disks, filesystems, RAID, LUKS, directories, links, appends, groups or Ignition kernel arguments.
"""

from __future__ import annotations

import re
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from mcosup.model import names, plainfiles
from mcosup.model.ignition import (
    IGNITION_V2_VERSIONS,
    MAX_MODE,
    NEWEST_IGNITION_VERSION,
    SUPPORTED_IGNITION_VERSIONS,
    check_data_url,
    is_normalised_absolute,
    normalised,
)

KERNEL_TYPES = ("", "default", "realtime", "64k-pages")

_UNIT_TYPES = (
    "service",
    "socket",
    "device",
    "mount",
    "automount",
    "swap",
    "target",
    "path",
    "timer",
    "snapshot",
    "slice",
    "scope",
)
_UNIT_NAME = re.compile(r"^[A-Za-z0-9:_.\\@-]+\.(?:" + "|".join(_UNIT_TYPES) + r")$")
_DROPIN_NAME = re.compile(r"^[A-Za-z0-9:_.\\@-]+\.conf$")


_CORE_FIELDS = frozenset(("name", "sshAuthorizedKeys", "passwordHash"))

_STORAGE_UNSUPPORTED = {
    "disks": "partitioning disks is only possible at install time; remove storage.disks",
    "raid": "RAID arrays are only possible at install time; remove storage.raid",
    "filesystems": "filesystems are only created at install time; remove storage.filesystems",
    "luks": "LUKS devices are only set up at install time; remove storage.luks",
    "directories": (
        "directories are not supported; files create their parent directories, and an empty directory "
        "can be declared with a tmpfiles.d line ('d /path 0755 root root -') in a file under /etc/tmpfiles.d/"
    ),
    "links": (
        "links are not supported; declare the link with a tmpfiles.d line ('L /link - - - - /target') "
        "in a file under /etc/tmpfiles.d/"
    ),
}


@dataclass(frozen=True, slots=True)
class Problem:
    """One thing wrong with a MachineConfig: ``field`` is a path into the object, ``message`` the fix."""

    field: str
    message: str

    def __str__(self) -> str:
        return f"{self.field}: {self.message}"


def _is_empty(value: object) -> bool:
    return value is None or value == [] or value == {} or value == "" or value is False


def _list(value: object, field: str, out: list[Problem]) -> Sequence[Any]:
    if value is None:
        return ()
    if not isinstance(value, list):
        out.append(Problem(field, f"must be a list, got {type(value).__name__}"))
        return ()
    return value


def _map(value: object, field: str, out: list[Problem]) -> Mapping[str, Any] | None:
    if value is None:
        return None
    if type(value) is not dict and not isinstance(value, Mapping):
        out.append(Problem(field, f"must be an object, got {type(value).__name__}"))
        return None
    return value


def _check_file(
    file: Mapping[str, Any], field: str, v2: bool, seen: dict[str, int], index: int, out: list[Problem]
) -> None:
    path = file.get("path")
    if not isinstance(path, str) or not path:
        out.append(
            Problem(f"{field}.path", "is required: give the absolute path of the file, e.g. /etc/foo.conf")
        )
    elif not path.startswith("/"):
        out.append(
            Problem(
                f"{field}.path", f"{path!r} is relative: use an absolute path such as {normalised(path)!r}"
            )
        )
    elif not is_normalised_absolute(path):
        out.append(
            Problem(
                f"{field}.path",
                f"{path!r} is not normalised (empty, '.' or '..' parts, or a trailing '/'): "
                f"write it as {normalised(path)!r}",
            )
        )
    elif path in seen:
        out.append(
            Problem(
                f"{field}.path",
                f"{path!r} is already declared at files[{seen[path]}]: keep one entry per path",
            )
        )
    else:
        seen[path] = index

    if v2:
        filesystem = file.get("filesystem")
        if filesystem not in (None, "root"):
            out.append(
                Problem(
                    f"{field}.filesystem",
                    f"{filesystem!r} is not supported: files can only be written to the root filesystem; "
                    "use filesystem: root",
                )
            )

    mode = file.get("mode")
    if mode is not None:
        if not isinstance(mode, int) or isinstance(mode, bool):
            out.append(
                Problem(f"{field}.mode", f"must be an integer (decimal, e.g. 420 for 0o644), got {mode!r}")
            )
        elif mode < 0 or mode > MAX_MODE:
            shown = f"{mode} ({oct(mode)})" if mode >= 0 else str(mode)
            out.append(
                Problem(
                    f"{field}.mode",
                    f"{shown} is outside 0..0o777: setuid, setgid and sticky bits are not supported; "
                    f"use permission bits only, e.g. {mode & MAX_MODE} ({oct(mode & MAX_MODE)})"
                    if mode >= 0
                    else f"{shown} is negative: use permission bits, e.g. 420 (0o644)",
                )
            )

    append = file.get("append")
    if (v2 and append is True) or (not v2 and not _is_empty(append)):
        out.append(
            Problem(
                f"{field}.append",
                "appending to a file is not supported: write the complete file with contents.source instead",
            )
        )

    contents = _map(file.get("contents"), f"{field}.contents", out)
    if contents is None:
        return
    if "inline" in contents or "local" in contents:
        key = "inline" if "inline" in contents else "local"
        out.append(
            Problem(
                f"{field}.contents.{key}",
                f"contents.{key} is Butane syntax, not Ignition: transpile the config with butane, "
                "or write contents.source as a data: URL",
            )
        )
    compression = contents.get("compression")
    if compression not in (None, "", "gzip"):
        out.append(
            Problem(
                f"{field}.contents.compression",
                f"{compression!r} is not supported: use gzip, or omit compression for uncompressed data",
            )
        )
        compression = None
    source = contents.get("source")
    if source is None:
        return
    if not isinstance(source, str):
        out.append(
            Problem(
                f"{field}.contents.source", f"must be a string (a data: URL), got {type(source).__name__}"
            )
        )
        return
    if not source[:5].lower() == "data:":
        scheme = source.split(":", 1)[0] if ":" in source else ""
        shown = f"a {scheme}: URL" if scheme else "not a URL"
        out.append(
            Problem(
                f"{field}.contents.source",
                f"is {shown}: a MachineConfig must carry file contents inline as a data: URL "
                "(data:;base64,<base64 of the file>), or omit source for an empty file",
            )
        )
        return
    try:
        check_data_url(source, compression if isinstance(compression, str) else None)
    except ValueError as exc:
        out.append(
            Problem(
                f"{field}.contents.source",
                f"cannot be decoded: {exc}; encode the file as data:;base64,<base64 of the file>",
            )
        )


def _check_files(files: Sequence[Any], v2: bool, out: list[Problem]) -> None:
    seen: dict[str, int] = {}
    for start in range(0, len(files), plainfiles.BATCH):
        batch = files[start : start + plainfiles.BATCH]
        paths = plainfiles.plain_paths(batch)
        if paths is not None and seen.keys().isdisjoint(paths):
            seen.update(zip(paths, range(start, start + len(batch)), strict=True))
            continue
        for i, file in enumerate(batch, start):
            field = f"spec.config.storage.files[{i}]"
            if type(file) is not dict and not isinstance(file, Mapping):
                out.append(Problem(field, "must be an object with a path"))
                continue
            _check_file(file, field, v2, seen, i, out)


def _check_units(systemd: Mapping[str, Any], v2: bool, out: list[Problem]) -> None:
    seen: dict[str, int] = {}
    for i, unit in enumerate(_list(systemd.get("units"), "spec.config.systemd.units", out)):
        field = f"spec.config.systemd.units[{i}]"
        if not isinstance(unit, Mapping):
            out.append(Problem(field, "must be an object with at least a name"))
            continue
        name = unit.get("name")
        if not isinstance(name, str) or not name:
            out.append(Problem(f"{field}.name", "is required: name the unit, e.g. foo.service"))
        elif not _UNIT_NAME.match(name) or len(name) > 255:
            out.append(
                Problem(
                    f"{field}.name",
                    f"{name!r} is not a valid systemd unit name: use letters, digits and ':_.\\@-' "
                    f"ending in a unit type suffix ({', '.join('.' + t for t in _UNIT_TYPES[:4])}, ...)",
                )
            )
        elif name in seen:
            out.append(
                Problem(
                    f"{field}.name",
                    f"{name!r} is already declared at units[{seen[name]}]: keep one entry per unit",
                )
            )
        else:
            seen[name] = i
        contents = unit.get("contents")
        if contents is not None and not isinstance(contents, str):
            out.append(Problem(f"{field}.contents", "must be a string holding the unit file text"))
        for key in ("enabled", "mask", "enable"):
            value = unit.get(key)
            if value is not None and not isinstance(value, bool):
                out.append(Problem(f"{field}.{key}", f"must be true or false, got {value!r}"))
        dropin_seen: set[str] = set()
        for j, dropin in enumerate(_list(unit.get("dropins"), f"{field}.dropins", out)):
            dfield = f"{field}.dropins[{j}]"
            if not isinstance(dropin, Mapping):
                out.append(Problem(dfield, "must be an object with a name and contents"))
                continue
            dname = dropin.get("name")
            if not isinstance(dname, str) or not dname:
                out.append(Problem(f"{dfield}.name", "is required: name the drop-in, e.g. 10-override.conf"))
            elif not _DROPIN_NAME.match(dname):
                out.append(
                    Problem(
                        f"{dfield}.name",
                        f"{dname!r} is not a valid drop-in name: use letters, digits and ':_.\\@-' ending "
                        "in .conf, e.g. 10-override.conf",
                    )
                )
            elif dname in dropin_seen:
                out.append(Problem(f"{dfield}.name", f"{dname!r} is declared twice in this unit: keep one"))
            else:
                dropin_seen.add(dname)
            dcontents = dropin.get("contents")
            if dcontents is not None and not isinstance(dcontents, str):
                out.append(Problem(f"{dfield}.contents", "must be a string holding the drop-in text"))


def _check_passwd(passwd: Mapping[str, Any], out: list[Problem]) -> None:
    if not _is_empty(passwd.get("groups")):
        out.append(
            Problem(
                "spec.config.passwd.groups",
                "groups are not supported: only user core's sshAuthorizedKeys and passwordHash can be set; "
                "remove passwd.groups",
            )
        )
    for i, user in enumerate(_list(passwd.get("users"), "spec.config.passwd.users", out)):
        field = f"spec.config.passwd.users[{i}]"
        if not isinstance(user, Mapping):
            out.append(Problem(field, "must be an object with name: core"))
            continue
        name = user.get("name")
        if name != "core":
            out.append(
                Problem(
                    f"{field}.name",
                    f"user {name!r} is not supported: only user core can be configured "
                    "(sshAuthorizedKeys and passwordHash); add other users in the OS image",
                )
            )
            continue
        for key, value in user.items():
            if key not in _CORE_FIELDS and not _is_empty(value):
                out.append(
                    Problem(
                        f"{field}.{key}",
                        f"{key} of user core is not supported: "
                        "only sshAuthorizedKeys and passwordHash can be set; "
                        f"remove {key}",
                    )
                )
        keys = user.get("sshAuthorizedKeys")
        if keys is not None and (not isinstance(keys, list) or not all(isinstance(k, str) for k in keys)):
            out.append(Problem(f"{field}.sshAuthorizedKeys", "must be a list of public key strings"))
        password_hash = user.get("passwordHash")
        if password_hash is not None and not isinstance(password_hash, str):
            out.append(
                Problem(f"{field}.passwordHash", "must be a string (a crypt(3) hash, e.g. from mkpasswd)")
            )


def _check_config(config: Mapping[str, Any], out: list[Problem]) -> None:
    ignition = _map(config.get("ignition"), "spec.config.ignition", out) or {}
    version = ignition.get("version")
    supported = ", ".join(SUPPORTED_IGNITION_VERSIONS)
    if not isinstance(version, str) or not version:
        out.append(
            Problem(
                "spec.config.ignition.version",
                f"is required: set the Ignition spec version, e.g. {NEWEST_IGNITION_VERSION} "
                f"(supported: {supported})",
            )
        )
        return
    if version not in SUPPORTED_IGNITION_VERSIONS:
        out.append(
            Problem(
                "spec.config.ignition.version",
                f"{version!r} is not supported: use {NEWEST_IGNITION_VERSION} (supported: {supported})",
            )
        )
        return
    v2 = version in IGNITION_V2_VERSIONS

    if not v2 and not _is_empty(config.get("kernelArguments")):
        karg = _map(config.get("kernelArguments"), "spec.config.kernelArguments", out) or {}
        if any(not _is_empty(v) for v in karg.values()):
            out.append(
                Problem(
                    "spec.config.kernelArguments",
                    "Ignition kernelArguments are not supported: list the arguments in the MachineConfig's "
                    "spec.kernelArguments instead",
                )
            )
    if v2 and not _is_empty(config.get("networkd")):
        networkd = config.get("networkd")
        if not (isinstance(networkd, Mapping) and _is_empty(networkd.get("units"))):
            out.append(
                Problem(
                    "spec.config.networkd",
                    "networkd units are not supported: write .network files under /etc/systemd/network/ "
                    "as storage.files, or use NetworkManager keyfiles",
                )
            )

    storage = _map(config.get("storage"), "spec.config.storage", out) or {}
    for key, fix in _STORAGE_UNSUPPORTED.items():
        if not _is_empty(storage.get(key)):
            out.append(Problem(f"spec.config.storage.{key}", fix))
    _check_files(_list(storage.get("files"), "spec.config.storage.files", out), v2, out)

    systemd = _map(config.get("systemd"), "spec.config.systemd", out)
    if systemd:
        _check_units(systemd, v2, out)
    passwd = _map(config.get("passwd"), "spec.config.passwd", out)
    if passwd:
        _check_passwd(passwd, out)


def problems(mc: Mapping[str, Any]) -> list[Problem]:
    """Everything wrong with MachineConfig ``mc``, in field order; empty when it is valid."""
    out: list[Problem] = []
    if not isinstance(mc, Mapping):
        return [Problem("", f"a MachineConfig must be an object, got {type(mc).__name__}")]
    spec = _map(mc.get("spec"), "spec", out)
    if spec is None:
        return out

    kernel_type = spec.get("kernelType")
    if kernel_type is not None and kernel_type not in KERNEL_TYPES:
        out.append(
            Problem(
                "spec.kernelType",
                f"{kernel_type!r} is not a known kernel type: use one of "
                f"{', '.join(repr(k) for k in KERNEL_TYPES[1:])} (or omit it for the default kernel)",
            )
        )
    for key in ("kernelArguments", "extensions"):
        for i, item in enumerate(_list(spec.get(key), f"spec.{key}", out)):
            if not isinstance(item, str) or not item.strip():
                out.append(Problem(f"spec.{key}[{i}]", f"must be a non-empty string, got {item!r}"))
    fips = spec.get("fips")
    if fips is not None and not isinstance(fips, bool):
        out.append(Problem("spec.fips", f"must be true or false, got {fips!r}"))
    os_image = spec.get("osImageURL")
    if os_image is not None and not isinstance(os_image, str):
        out.append(
            Problem("spec.osImageURL", "must be a string: an image pullspec, or empty for the default")
        )

    config = _map(spec.get("config"), "spec.config", out)
    if config:
        _check_config(config, out)
    return out


def _file_list(mc: Mapping[str, Any]) -> list[Any]:
    spec = mc.get("spec") if isinstance(mc, Mapping) else None
    config = spec.get("config") if isinstance(spec, Mapping) else None
    storage = config.get("storage") if isinstance(config, Mapping) else None
    files = storage.get("files") if isinstance(storage, Mapping) else None
    return files if isinstance(files, list) else []


def _files(files: list[Any]) -> Iterator[tuple[int, str]]:
    for i, file in enumerate(files):
        if (type(file) is dict or isinstance(file, Mapping)) and isinstance(file.get("path"), str):
            yield i, file["path"]


def _undeliverable(path: str) -> bool:
    # Cheap rejection first: this runs for every file of every MachineConfig review.
    candidate = path if "/." not in path and "//" not in path else normalised(path)
    return (
        candidate.startswith(names.IMAGE_UNDELIVERABLE_PREFIXES)
        and names.image_undeliverable(candidate) is not None
    )


def undeliverable_paths(mc: Mapping[str, Any]) -> list[str]:
    """Paths of ``mc``'s files an OS image cannot deliver (``names.IMAGE_UNDELIVERABLE_PREFIXES``)."""
    out: list[str] = []
    for _, path in _files(_file_list(mc)):
        if path.startswith("/") and _undeliverable(path) and path not in out:
            out.append(path)
    return out


def undeliverable_files(mc: Mapping[str, Any]) -> list[tuple[str, str]]:
    """``(field, path)`` of each undeliverable file of ``mc`` (field: ``spec.config.storage.files[i]``)."""
    files = _file_list(mc)
    by_line = plainfiles.paths_by_line(files)
    if by_line is not None and not (
        plainfiles.ODD_PATH.search(by_line[1]) or plainfiles.UNDELIVERABLE_PATH.search(by_line[1])
    ):
        return []  # the common case, told by two scans of the joined paths
    return [
        (f"spec.config.storage.files[{i}].path", path)
        for i, path in _files(files)
        if path.startswith("/") and _undeliverable(path)
    ]
