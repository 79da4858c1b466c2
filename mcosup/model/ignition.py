"""Reading Ignition: spec versions, ``data:`` URLs and file paths, as Ignition itself reads them.

Pure. :func:`decode_data_url` is the one decoder every part of mcosup uses (the webhook, render, the
builder's build context and the legacy daemon), so what is admitted is what is delivered, byte for byte.
"""

from __future__ import annotations

import binascii
import re
import zlib
from collections.abc import Mapping
from typing import Any
from urllib.parse import unquote_to_bytes

IGNITION_V2_VERSIONS = ("2.0.0", "2.1.0", "2.2.0")
IGNITION_V3_VERSIONS = ("3.0.0", "3.1.0", "3.2.0", "3.3.0", "3.4.0")
SUPPORTED_IGNITION_VERSIONS = IGNITION_V2_VERSIONS + IGNITION_V3_VERSIONS
NEWEST_IGNITION_VERSION = "3.4.0"
# A gzip member that inflates past this is refused rather than inflated without bound (a MachineConfig
# is limited to about 1 MiB by etcd, gzip reaches 1000:1, and a file this size belongs in the OS image).
MAX_DECOMPRESSED_BYTES = 64 * 1024 * 1024
MAX_MODE = 0o777
_BAD_PERCENT = re.compile(rb"%(?![0-9A-Fa-f]{2})")
BAD_PERCENT_TEXT = re.compile(r"%(?![0-9A-Fa-f]{2})")
BASE64_ALPHABET = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/"


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
    if compression not in (None, "", "gzip"):
        raise ValueError(f"compression {compression!r} is not supported; use gzip or none")
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
                if canonical_base64(payload):
                    return
            elif not BAD_PERCENT_TEXT.search(payload):
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


def canonical_base64(payload: str) -> bool:
    """True for padded standard base64 (what encoders write); deleting the alphabet in C is fastest."""
    if len(payload) % 4:
        return False
    try:
        encoded = payload.encode("ascii")
    except UnicodeEncodeError:
        return False
    body = encoded.rstrip(b"=")
    return len(encoded) - len(body) <= 2 and not body.translate(None, BASE64_ALPHABET)
