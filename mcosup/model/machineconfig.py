"""MachineConfig and Ignition validation, shared by the admission webhook and the render controller.

Pure: a MachineConfig object (a plain mapping, as read from the API) in, a list of :class:`Problem` out.
Each problem names the field (``spec.config.storage.files[2].path``) and says how to fix it, so the same
text serves as a denial message at ``kubectl apply`` time and as a ``RenderDegraded`` message later.

What the MCO accepts is the reference: Ignition spec 2.2 (and the 2.0/2.1 configs its parser chains to)
and 3.0 through 3.4; inline ``data:`` contents only; the ``core`` user's ssh keys and password hash only;
no disks, filesystems, RAID, LUKS, directories, links, appends, groups or Ignition kernel arguments.
"""

from __future__ import annotations

import binascii
import re
import zlib
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from itertools import compress, repeat
from operator import itemgetter, not_
from typing import Any
from urllib.parse import unquote_to_bytes

from mcosup.model import names

IGNITION_V2_VERSIONS = ("2.0.0", "2.1.0", "2.2.0")
IGNITION_V3_VERSIONS = ("3.0.0", "3.1.0", "3.2.0", "3.3.0", "3.4.0")
SUPPORTED_IGNITION_VERSIONS = IGNITION_V2_VERSIONS + IGNITION_V3_VERSIONS
NEWEST_IGNITION_VERSION = "3.4.0"
KERNEL_TYPES = ("", "default", "realtime", "64k-pages")
MAX_MODE = 0o777
# A gzip member that inflates past this is refused rather than inflated without bound (a MachineConfig
# is limited to about 1 MiB by etcd, gzip reaches 1000:1, and a file this size belongs in the OS image).
MAX_DECOMPRESSED_BYTES = 64 * 1024 * 1024

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
_BAD_PERCENT = re.compile(rb"%(?![0-9A-Fa-f]{2})")
_BAD_PERCENT_TEXT = re.compile(r"%(?![0-9A-Fa-f]{2})")
_BASE64_ALPHABET = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/"


def _canonical_base64(payload: str) -> bool:
    """True for padded standard base64 (what encoders write); deleting the alphabet in C is fastest."""
    if len(payload) % 4:
        return False
    try:
        encoded = payload.encode("ascii")
    except UnicodeEncodeError:
        return False
    body = encoded.rstrip(b"=")
    return len(encoded) - len(body) <= 2 and not body.translate(None, _BASE64_ALPHABET)


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


def ignition_version(mc: Mapping[str, Any]) -> str | None:
    """The Ignition spec version of ``mc``'s config, or None when it has none or is not a mapping."""
    spec = mc.get("spec") if isinstance(mc, Mapping) else None
    config = spec.get("config") if isinstance(spec, Mapping) else None
    ignition = config.get("ignition") if isinstance(config, Mapping) else None
    version = ignition.get("version") if isinstance(ignition, Mapping) else None
    return version if isinstance(version, str) else None


def is_normalised_absolute(path: str) -> bool:
    """True for ``/a/b``; False for relative paths, ``/``, ``//``, ``.``/``..`` parts or a trailing slash."""
    if not path.startswith("/") or path == "/":
        return False
    if "//" in path or "/./" in path or "/../" in path or "\x00" in path:
        return False
    return not path.endswith(("/", "/.", "/.."))


def normalised(path: str) -> str:
    """The normalised absolute form of ``path`` (for a denial's suggested fix)."""
    stack: list[str] = []
    for part in path.split("/"):
        if part in ("", "."):
            continue
        if part == "..":
            if stack:
                stack.pop()
            continue
        stack.append(part)
    return "/" + "/".join(stack)


def decode_data_url(source: str, compression: str | None = None) -> bytes:
    """Decode an Ignition ``data:`` URL (base64 or percent-encoded, optionally gzip); ValueError says why.

    This is the one decoder every part of mcosup uses — the webhook, render, the builder's build context
    and the legacy daemon — and it accepts what Ignition's own decoder (and the MCO's daemon, which uses
    the same one) accepts: ``;base64`` data is standard base64 with its ``=`` padding (nothing else:
    no whitespace, no URL-safe alphabet, no percent-escapes); other data is percent-decoded.
    """
    if not source[:5].lower() == "data:":
        raise ValueError("not a data: URL")
    header, comma, payload = source[5:].partition(",")
    if not comma:
        raise ValueError("data: URL has no ',' separating the media type from the data")
    if header.rpartition(";")[2].strip().lower() == "base64":
        try:
            data = binascii.a2b_base64(payload.encode("ascii"), strict_mode=True)
        except (UnicodeEncodeError, binascii.Error, ValueError):
            raise ValueError(
                "data: URL is marked ;base64 but its data is not padded standard base64 (Ignition reads "
                "only A-Z a-z 0-9 + / with '=' padding to a multiple of 4; re-encode it, e.g. base64 -w0)"
            ) from None
    else:
        raw = payload.encode("utf-8", "surrogateescape")
        if _BAD_PERCENT.search(raw):
            raise ValueError("data: URL has a '%' that is not followed by two hex digits")
        data = unquote_to_bytes(raw) if b"%" in raw else raw
    if compression == "gzip":
        data = _gunzip(data)
    return data


def check_data_url(source: str, compression: str | None = None) -> None:
    """Raise ValueError (saying why) unless ``source`` decodes; cheaper than decoding when it can be.

    Validation runs for every file of every MachineConfig review, so the common encodings (canonical
    base64, percent-encoding) are checked by pattern without materialising the file.
    """
    if compression != "gzip" and source[:5].lower() == "data:":
        header, comma, payload = source[5:].partition(",")
        if comma:
            if header.rpartition(";")[2].strip().lower() == "base64":
                if _canonical_base64(payload):
                    return
            elif not _BAD_PERCENT_TEXT.search(payload):
                return
    decode_data_url(source, compression)


def _gunzip(data: bytes) -> bytes:
    inflater = zlib.decompressobj(wbits=31)
    chunks: list[bytes] = []
    size = 0
    try:
        pending = data
        while True:
            chunk = inflater.decompress(pending, 1 << 20)
            size += len(chunk)
            if size > MAX_DECOMPRESSED_BYTES:
                raise ValueError(
                    f"gzip contents inflate to more than {MAX_DECOMPRESSED_BYTES // (1024 * 1024)} MiB; "
                    "a file this large belongs in the OS image, not in a MachineConfig"
                )
            chunks.append(chunk)
            pending = inflater.unconsumed_tail
            if not pending:
                break
        if not inflater.eof:
            raise ValueError("gzip contents are truncated")
    except zlib.error as exc:
        raise ValueError(f"contents are marked compression: gzip but are not valid gzip ({exc})") from None
    return b"".join(chunks)


_PLAIN_FILE_KEYS = frozenset(("path", "mode", "contents", "overwrite", "user", "group", "filesystem"))
_PLAIN_CONTENTS_KEYS = frozenset(("source", "verification"))
_BASE64_PREFIX = "data:;base64,"
_PERCENT_PREFIX = "data:,"
# Files are checked in batches of this many: a batch that is valid on sight costs a few C-level scans
# over all its paths and sources; one that is not (a gzip file, a bad path) is checked file by file.
_BATCH = 64
_NONE = type(None)
_AND_3 = (3).__and__
_LAST_TWO = itemgetter(slice(-2, None))
# Searches over paths joined one per line ("\n/a/b\n/c\n"); regular expressions beat str.find here.
_RELATIVE_PATH = re.compile(r"\n[^/]")
# An empty part, a '.' or '..' part (or a dot-file), a trailing slash.
_ODD_PATH = re.compile(r"/[/.\n]")
_UNDELIVERABLE_PATH = re.compile(
    r"\n(?:" + "|".join(map(re.escape, names.IMAGE_UNDELIVERABLE_PREFIXES)) + r")[/\n]"
)
# In the last two characters of each base64 URL (joined one per line): padding followed by data.
_MISPLACED_PADDING = re.compile(r"=[^=\n]")


def _paths_by_line(files: Sequence[Any]) -> tuple[list[str], str] | None:
    """The paths of ``files`` and the same joined one per line, when every file is a dict with a path."""
    if set(map(type, files)) != {dict}:
        return None
    paths: list[Any] = list(map(dict.get, files, repeat("path")))
    if set(map(type, paths)) != {str}:
        return None
    joined = "\n" + "\n".join(paths) + "\n"
    if joined.count("\n") != len(paths) + 1:  # a newline inside a path
        return None
    return paths, joined


def _plain_paths(files: Sequence[Any]) -> list[str] | None:
    """The paths of ``files`` when each is valid on sight (and the paths distinct), else None.

    Validation runs for every file of every MachineConfig review, and nearly all files are an absolute
    path, a plain mode and inline base64 or percent-encoded contents. Those are checked here a batch at
    a time with C-level scans of the joined paths and sources, instead of field by field in Python (see
    ``bench/webhook_latency.py``). Anything else returns None and takes the full check, which accepts
    some of what this refuses (dot-files, gzip, lenient base64) and words the problems.
    """
    by_line = _paths_by_line(files)
    if by_line is None:
        return None
    keys = set().union(*files)
    if not keys <= _PLAIN_FILE_KEYS:
        return None
    paths, joined = by_line
    if (
        _RELATIVE_PATH.search(joined)
        or _ODD_PATH.search(joined)
        or "\x00" in joined
        or len(set(paths)) != len(paths)
    ):
        return None
    if "mode" in keys:
        modes: set[Any] = set(map(dict.get, files, repeat("mode")))
        modes.discard(None)
        if modes and (set(map(type, modes)) != {int} or min(modes) < 0 or max(modes) > MAX_MODE):
            return None
    if "filesystem" in keys and not {None, "root"}.issuperset(map(dict.get, files, repeat("filesystem"))):
        return None
    contents = _given(map(dict.get, files, repeat("contents")), dict)
    if contents is None or not set().union(*contents) <= _PLAIN_CONTENTS_KEYS:
        return None
    sources = _given(map(dict.get, contents, repeat("source")), str)
    if sources is None:
        return None
    is_base64 = list(map(str.startswith, sources, repeat(_BASE64_PREFIX)))
    base64 = list(compress(sources, is_base64))
    percent = list(compress(sources, map(not_, is_base64)))
    return paths if _canonical_base64_urls(base64) and _plain_percent_urls(percent) else None


def _given(values: Iterable[Any], kind: type) -> list[Any] | None:
    """The values that are not None, when all of those are exactly of type ``kind``; else None."""
    given = list(values)
    kinds = set(map(type, given))
    if kinds == {kind}:
        return given
    if not kinds <= {kind, _NONE}:
        return None
    return [value for value in given if value is not None]


def _canonical_base64_urls(sources: list[str]) -> bool:
    """True when every one of ``sources`` (``data:;base64,`` URLs) carries padded standard base64.

    One scan for all: deleting the base64 alphabet from the joined URLs must leave exactly each URL's
    ``:;,`` (from the prefix), its padding and the separator; and every '=' must be in the last two
    characters of its URL, not followed by data.
    """
    if not sources:
        return True
    joined = "\n".join(sources) + "\n"
    if not joined.isascii() or set(map(_AND_3, map(len, sources))) != {len(_BASE64_PREFIX) & 3}:
        return False
    rest = joined.encode("ascii").translate(None, _BASE64_ALPHABET)
    if rest.replace(b"=", b"") != b":;,\n" * len(sources):
        return False
    tails = "\n".join(map(_LAST_TWO, sources))
    return tails.count("=") == rest.count(b"=") and _MISPLACED_PADDING.search(tails) is None


def _plain_percent_urls(sources: list[str]) -> bool:
    """True when every one of ``sources`` is a ``data:,`` URL whose every '%' starts an escape."""
    if not sources:
        return True
    joined = "\n" + "\n".join(sources)
    return (
        joined.count("\n" + _PERCENT_PREFIX) == len(sources)
        and joined.count("\n") == len(sources)
        and _BAD_PERCENT_TEXT.search(joined) is None
    )


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
    for start in range(0, len(files), _BATCH):
        batch = files[start : start + _BATCH]
        paths = _plain_paths(batch)
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
    by_line = _paths_by_line(files)
    if by_line is not None and not (_ODD_PATH.search(by_line[1]) or _UNDELIVERABLE_PATH.search(by_line[1])):
        return []  # the common case, told by two scans of the joined paths
    return [
        (f"spec.config.storage.files[{i}].path", path)
        for i, path in _files(files)
        if path.startswith("/") and _undeliverable(path)
    ]
