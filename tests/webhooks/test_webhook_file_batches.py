"""The batched file check is only a shortcut: whatever it accepts, the file-by-file check accepts too.

``problems`` and ``undeliverable_files`` first try to judge a whole batch of files with a few scans of
their joined paths and sources, and fall back to the file-by-file check for any batch that is not valid
on sight. Here random mixes of plain and odd files go through both ways (the shortcut switched off by
patching) and must give exactly the same problems and the same undeliverable paths.
"""

from __future__ import annotations

import base64
import gzip
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from mcosup.model import plainfiles
from mcosup.model.machineconfig import problems, undeliverable_files

PATHS = [
    "/etc/a.conf",
    "/etc/app/b.conf",
    "/etc/app/",
    "/etc//a",
    "/etc/./a",
    "/etc/../var/x",
    "/etc/.hidden",
    "etc/relative",
    "",
    "/",
    "/var",
    "/var/lib/x",
    "/variable/ok",
    "/usr/local",
    "/usr/localx/y",
    "/usr/local/bin/tool",
    "/run/x",
    "/tmp/",
    "/home/core/.bashrc",
    "/root",
    "/etc/a\n/var/b",
    "/etc/nul\x00",
    "/etc/ünïcode",
]
MODES = [None, 0, 0o644, 0o777, 0o1000, -1, True, "420", 1.5]


def _base64_url(data: bytes) -> str:
    return "data:;base64," + base64.b64encode(data).decode()


_SAMPLE = base64.b64encode(b"sample data!").decode()
SOURCES: list[Any] = [
    None,
    42,
    "data:;base64," + _SAMPLE,
    "data:;base64," + base64.b64encode(b"sample").decode().rstrip("="),  # unpadded: Ignition refuses it
    "data:;base64," + _SAMPLE + "=",
    "data:;base64,=" + _SAMPLE,
    "data:;base64," + _SAMPLE[:2] + "=" + _SAMPLE[2:],
    "data:;base64," + base64.urlsafe_b64encode(b"\xfb\xff\xfe").decode(),
    "data:;base64," + _SAMPLE[:4] + "\n" + _SAMPLE[4:],
    "data:;base64," + _SAMPLE + "*",
    "data:;base64,ünï",
    "data:text/plain;charset=utf-8;base64," + _SAMPLE,
    "data:,plain%20text%0A",
    "data:,bad%zz",
    "data:,trailing%",
    "data:,trailing%4",
    "data:,line\nbreak",
    "data:,ünïcode",
    "DATA:,upper",
    "data:no-comma",
    "https://example.com/file",
]


def sources() -> st.SearchStrategy[Any]:
    return st.sampled_from(SOURCES)


@st.composite
def file_entries(draw: st.DrawFn, rarity: int) -> Any:
    """A plain file, or one time in ``rarity`` a file with one odd field: oddities hide in plain batches."""
    entry: dict[str, Any] = {
        "path": f"/etc/app/{draw(st.integers(0, 300))}.conf",
        "mode": 0o644,
        "contents": {"source": _base64_url(draw(st.binary(max_size=12)))},
    }
    odd = draw(st.integers(0, rarity * 6))
    if odd == 0:
        return draw(st.sampled_from(["a string", None, 7, []]))
    if odd == 1:
        entry["path"] = draw(st.sampled_from(PATHS))
    elif odd == 2:
        entry["mode"] = draw(st.sampled_from(MODES))
    elif odd == 3:
        entry["contents"] = draw(
            st.sampled_from(
                [
                    None,
                    {},
                    {"compression": "gzip", "source": _base64_url(gzip.compress(b"zipped"))},
                    {"inline": "butane syntax"},
                    {"source": "data:,x", "verification": {}},
                    "not an object",
                ]
            )
        )
    elif odd == 4:
        entry["contents"] = {"source": draw(sources())}
    elif odd == 5:
        key, value = draw(st.sampled_from([("overwrite", True), ("append", []), ("append", [{}]),
                                           ("filesystem", "root"), ("filesystem", "data"),
                                           ("user", {"name": "core"}), ("bogus", 1)]))  # fmt: skip
        entry[key] = value
    elif odd == 6:
        del entry[draw(st.sampled_from(["path", "mode", "contents"]))]
    return entry


def machineconfig_with(entries: list[Any], version: str) -> dict[str, Any]:
    return {
        "metadata": {"name": "50-batch"},
        "spec": {"config": {"ignition": {"version": version}, "storage": {"files": entries}}},
    }


def file_by_file(monkeypatch: pytest.MonkeyPatch, call: Any, config: dict[str, Any]) -> Any:
    with monkeypatch.context() as patch:
        patch.setattr(plainfiles, "paths_by_line", lambda files: None)
        return call(config)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    entries=st.sampled_from([3, 30, 300]).flatmap(
        lambda rarity: st.lists(file_entries(rarity), max_size=200)
    ),
    version=st.sampled_from(["3.4.0", "3.2.0", "2.2.0"]),
)
def test_batched_check_agrees_with_file_by_file(
    monkeypatch: pytest.MonkeyPatch, entries: list[Any], version: str
) -> None:
    config = machineconfig_with(entries, version)
    assert problems(config) == file_by_file(monkeypatch, problems, config)
    assert undeliverable_files(config) == file_by_file(monkeypatch, undeliverable_files, config)


def _plain_file(i: int) -> dict[str, Any]:
    return {"path": f"/etc/app/{i}.conf", "mode": 0o644, "contents": {"source": _base64_url(b"%d" % i)}}


ODD_FIELDS: list[tuple[str, Any]] = (
    [("path", path) for path in [*PATHS, "/etc/app/3.conf"]]  # the last one repeats an earlier batch's path
    + [("mode", mode) for mode in MODES]
    + [("contents", {"source": source}) for source in SOURCES]
    + [
        ("contents", c)
        for c in [None, {}, {"inline": "x"}, {"source": "data:,x", "verification": {}}, "text"]
    ]
    + [("contents", {"compression": "gzip", "source": _base64_url(gzip.compress(b"zipped", mtime=0))})]
    + [("overwrite", True), ("append", []), ("append", [{}]), ("filesystem", "root"), ("filesystem", "data")]
    + [("user", {"name": "core"}), ("bogus", 1), ("path", None)]
)


@pytest.mark.parametrize("version", ["3.4.0", "2.2.0"])
@pytest.mark.parametrize(("field", "value"), ODD_FIELDS, ids=repr)
def test_one_odd_file_among_plain_ones(
    monkeypatch: pytest.MonkeyPatch, field: str, value: Any, version: str
) -> None:
    entries = [_plain_file(i) for i in range(150)]
    entries[100][field] = value
    config = machineconfig_with(entries, version)
    assert problems(config) == file_by_file(monkeypatch, problems, config)
    assert undeliverable_files(config) == file_by_file(monkeypatch, undeliverable_files, config)


def test_a_batch_of_plain_files_takes_the_shortcut() -> None:
    # Guards the benchmark's assumption: common files (base64 and percent-encoded) are judged in bulk.
    entries = [
        {"path": f"/etc/app/{i}.conf", "mode": 0o644, "overwrite": True, "contents": {"source": source}}
        for i, source in enumerate(
            [_base64_url(b"key=value\n"), "data:,key%3Dvalue%0A", _base64_url(b"ab")] * 30
        )
    ]
    assert plainfiles.plain_paths(entries) == [entry["path"] for entry in entries]
    assert problems(machineconfig_with(entries, "3.4.0")) == []


@pytest.mark.parametrize(
    ("source", "plain"),
    [
        (_base64_url(b"abc"), True),  # no padding needed
        (_base64_url(b"ab"), True),  # one '='
        (_base64_url(b"a"), True),  # two '='
        ("data:;base64,YQ", False),  # unpadded: the full check decides (and refuses, as Ignition does)
        ("data:;base64,YQ=x", False),
        ("data:;base64,Y===", False),
        ("data:;base64,YWJj=YWJj", False),
        ("data:;base64,YW Jj", False),
        ("data:,ok%20", True),
        ("data:,bad%2", False),
    ],
)
def test_base64_and_percent_urls_in_bulk(source: str, plain: bool) -> None:
    entries = [{"path": "/etc/a", "contents": {"source": _base64_url(b"first")}}]
    entries.append({"path": "/etc/b", "contents": {"source": source}})
    assert (plainfiles.plain_paths(entries) is not None) is plain
