"""The fast path of MachineConfig validation: a batch of files checked at once, valid on sight.

Pure. Validation runs for every file of every MachineConfig review, and nearly all files are an absolute
path, a plain mode and inline base64 or percent-encoded contents. :func:`plain_paths` checks those a
batch at a time with C-level scans of the joined paths and sources instead of field by field (see
``bench/webhook_latency.py``); anything else takes :mod:`mcosup.model.machineconfig`'s full check.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from itertools import compress, repeat
from operator import itemgetter, not_
from typing import Any

from mcosup.model import names
from mcosup.model.ignition import BAD_PERCENT_TEXT, BASE64_ALPHABET, MAX_MODE

_PLAIN_FILE_KEYS = frozenset(("path", "mode", "contents", "overwrite", "user", "group", "filesystem"))
_PLAIN_CONTENTS_KEYS = frozenset(("source", "verification"))
_BASE64_PREFIX = "data:;base64,"
_PERCENT_PREFIX = "data:,"
# Files are checked in batches of this many: a batch that is valid on sight costs a few C-level scans
# over all its paths and sources; one that is not (a gzip file, a bad path) is checked file by file.
BATCH = 64
_NONE = type(None)
_AND_3 = (3).__and__
_LAST_TWO = itemgetter(slice(-2, None))
# Searches over paths joined one per line ("\n/a/b\n/c\n"); regular expressions beat str.find here.
_RELATIVE_PATH = re.compile(r"\n[^/]")
# An empty part, a '.' or '..' part (or a dot-file), a trailing slash.
ODD_PATH = re.compile(r"/[/.\n]")
UNDELIVERABLE_PATH = re.compile(
    r"\n(?:" + "|".join(map(re.escape, names.IMAGE_UNDELIVERABLE_PREFIXES)) + r")[/\n]"
)
# In the last two characters of each base64 URL (joined one per line): padding followed by data.
_MISPLACED_PADDING = re.compile(r"=[^=\n]")


def paths_by_line(files: Sequence[Any]) -> tuple[list[str], str] | None:
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


def plain_paths(files: Sequence[Any]) -> list[str] | None:
    """The paths of ``files`` when each is valid on sight (and the paths distinct), else None.

    Validation runs for every file of every MachineConfig review, and nearly all files are an absolute
    path, a plain mode and inline base64 or percent-encoded contents. Those are checked here a batch at
    a time with C-level scans of the joined paths and sources, instead of field by field in Python (see
    ``bench/webhook_latency.py``). Anything else returns None and takes the full check, which accepts
    some of what this refuses (dot-files, gzip, lenient base64) and words the problems.
    """
    by_line = paths_by_line(files)
    if by_line is None:
        return None
    keys = set().union(*files)
    if not keys <= _PLAIN_FILE_KEYS:
        return None
    paths, joined = by_line
    if (
        _RELATIVE_PATH.search(joined)
        or ODD_PATH.search(joined)
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
    rest = joined.encode("ascii").translate(None, BASE64_ALPHABET)
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
        and BAD_PERCENT_TEXT.search(joined) is None
    )
