"""For any rendered config, the image the builder lays out and the legacy daemon's writes are the same
files and units (paths, modes, bytes, enablement), and the webhook admits exactly what both deliver.

The three read Ignition through one decoder and one validator now; this property keeps them from
drifting apart again. Paths here are under /etc and /usr (what an image can carry); /var and friends,
which only the legacy daemon can write, are the webhook's business for layered pools (tested there).
"""

from __future__ import annotations

import base64
import gzip
import urllib.parse
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from mcosup.builder import buildplan
from mcosup.model import machineconfig, names
from mcosup.model.hostconfig import ConfigError, parse_machineconfig

UNIT_DIR = "/etc/systemd/system"

paths = st.sampled_from(
    ["/etc/a.conf", "/etc/app/b.conf", "/etc/app/c/d.ini", "/usr/lib/app/e", "/etc/motd.d/10-x"]
)
modes = st.sampled_from([0o600, 0o640, 0o644, 0o700, 0o755])
payloads = st.binary(max_size=64)


@st.composite
def sources(draw: st.DrawFn) -> tuple[dict[str, Any], bytes]:
    data = draw(payloads)
    encoding = draw(st.sampled_from(["base64", "percent", "gzip"]))
    if encoding == "base64":
        return {"source": "data:;base64," + base64.b64encode(data).decode()}, data
    if encoding == "percent":
        return {"source": "data:," + urllib.parse.quote(data, safe="")}, data
    packed = base64.b64encode(gzip.compress(data)).decode()
    return {"source": "data:;base64," + packed, "compression": "gzip"}, data


@st.composite
def files(draw: st.DrawFn) -> list[dict[str, Any]]:
    chosen = draw(st.lists(paths, unique=True, max_size=4))
    # No file may sit where another needs a directory (the builder refuses that, with the path named).
    chosen = [p for p in chosen if not any(o != p and o.startswith(p + "/") for o in chosen)]
    out = []
    for path in chosen:
        contents, _ = draw(sources())
        out.append({"path": path, "mode": draw(modes), "overwrite": True, "contents": contents})
    return out


@st.composite
def units(draw: st.DrawFn) -> list[dict[str, Any]]:
    out = []
    for name in draw(
        st.lists(st.sampled_from(["a.service", "b.service", "c.timer"]), unique=True, max_size=3)
    ):
        unit: dict[str, Any] = {"name": name}
        if draw(st.booleans()):
            wanted = draw(st.sampled_from(["", "WantedBy=multi-user.target\n", "RequiredBy=x.target\n"]))
            unit["contents"] = (
                f"[Unit]\nDescription={name}\n[Service]\nExecStart=/bin/true\n[Install]\n{wanted}"
            )
        state = draw(st.sampled_from(["enabled", "disabled", "unset", "masked"]))
        if state == "masked":
            unit["mask"] = True
        elif state != "unset":
            unit["enabled"] = state == "enabled"
        if draw(st.booleans()):
            unit["dropins"] = [{"name": "10-x.conf", "contents": "[Service]\nEnvironment=X=1\n"}]
        out.append(unit)
    return out


def rendered(file_list: list[dict[str, Any]], unit_list: list[dict[str, Any]]) -> dict[str, Any]:
    return {
        "apiVersion": names.API_VERSION,
        "kind": "MachineConfig",
        "metadata": {"name": "rendered-worker-0123"},
        "spec": {
            "config": {
                "ignition": {"version": "3.4.0"},
                "storage": {"files": file_list},
                "systemd": {"units": unit_list},
            }
        },
    }


def image_view(mc: dict[str, Any]) -> tuple[dict[str, tuple[bytes, int]], set[str], set[str]]:
    """(file path → (bytes, mode), enabled units, masked units) as the builder lays the image out."""
    entries = buildplan.build_context(mc["metadata"]["name"], mc["spec"])
    tree = {e.path: (e.data, e.mode & 0o7777) for e in entries if e.link is None}
    masked = {e.path.rsplit("/", 1)[1] for e in entries if e.link == "/dev/null"}
    enabled = {
        e.path.rsplit("/", 1)[1]
        for e in entries
        if e.link is not None
        and e.link != "/dev/null"
        and e.path.rsplit("/", 2)[1].endswith((".wants", ".requires"))
    }
    return tree, enabled, masked


def legacy_view(mc: dict[str, Any]) -> tuple[dict[str, tuple[bytes, int]], set[str], set[str]]:
    """The same, as the legacy daemon writes it: its files, unit files and drop-ins, and what its
    ``systemctl enable`` and ``mask`` leave enabled or masked."""
    config = parse_machineconfig(mc)
    tree = {f.path: (f.contents, f.mode) for f in config.files}
    for u in config.units:
        if u.contents is not None and not u.mask:
            tree[u.path] = (u.contents.encode(), 0o644)
        for d in u.dropins:
            tree[u.dropin_path(d.name)] = (d.contents.encode(), 0o644)
    # What ``systemctl enable`` leaves enabled: units whose [Install] section links them somewhere
    # (a unit without contents is the stock OS's own, which is wanted by multi-user.target).
    enabled = {
        u.name
        for u in config.units
        if u.enabled and not u.mask and (u.contents is None or _installable(u.contents))
    }
    masked = {u.name for u in config.units if u.mask}
    return tree, enabled, masked


def _installable(contents: str) -> bool:
    install = contents.partition("[Install]")[2]
    return any(line.split("=", 1)[0] in ("WantedBy", "RequiredBy") for line in install.splitlines())


@settings(max_examples=300, deadline=None)
@given(files(), units())
def test_the_image_carries_exactly_what_the_legacy_daemon_writes(
    file_list: list[dict[str, Any]], unit_list: list[dict[str, Any]]
) -> None:
    mc = rendered(file_list, unit_list)
    assert machineconfig.problems(mc) == []
    assert image_view(mc) == legacy_view(mc)


BROKEN_FILES = [
    {"path": "/etc/a", "contents": {"source": "data:;base64,eA"}},  # unpadded base64
    {"path": "/etc/a", "contents": {"source": "data:;base64,e%41=="}},  # percent-escape in base64
    {"path": "/etc/a", "contents": {"source": "data:,100%"}},  # broken percent-escape
    {"path": "/etc/a", "contents": {"source": "https://example.com/a"}},  # not inline
    {"path": "/etc/a", "contents": {"source": "data:;base64,eA==", "compression": "gzip"}},  # not gzip
    {"path": "/etc/../a", "contents": {"source": "data:,x"}},  # not normalised
    {"path": "etc/a", "contents": {"source": "data:,x"}},  # relative
    {"path": "/etc/a", "mode": 0o1777, "contents": {"source": "data:,x"}},  # beyond 0777
]


@given(st.sampled_from(BROKEN_FILES), files())
def test_what_the_webhook_refuses_neither_the_builder_nor_the_daemon_delivers(
    broken: dict[str, Any], file_list: list[dict[str, Any]]
) -> None:
    mc = rendered([broken, *(f for f in file_list if f["path"] != broken["path"])], [])
    assert machineconfig.problems(mc) != []
    try:
        buildplan.build_context(mc["metadata"]["name"], mc["spec"])
    except buildplan.BuildError:
        pass
    else:
        raise AssertionError(f"the builder delivered what the webhook refuses: {broken}")
    try:
        parse_machineconfig(mc)
    except ConfigError:
        pass
    else:
        raise AssertionError(f"the legacy daemon delivered what the webhook refuses: {broken}")
