"""What the end-to-end stories judge on a node's host: which config files and units its daemon touched.

Shared by ``tests/e2e/test_story.py`` (the layering story by label) and
``tests/e2e/test_machineosconfig.py`` (by MachineOSConfig), so both read the command and daemon logs the
same way.
"""

from __future__ import annotations

import re
from typing import Any

from mcosup.sim.cluster import LocalCluster


def config_paths(rendered: dict[str, Any]) -> set[str]:
    """Every path a rendered config writes: its files, unit files and drop-ins."""
    config = rendered["spec"]["config"]
    paths = {f["path"] for f in (config.get("storage") or {}).get("files") or []}
    for u in (config.get("systemd") or {}).get("units") or []:
        paths.add(f"/etc/systemd/system/{u['name']}")
        paths.update(f"/etc/systemd/system/{u['name']}.d/{d['name']}" for d in u.get("dropins") or [])
    return paths


def log_marks(cluster: LocalCluster, node: str) -> tuple[int, int]:
    """Where the node's command log and daemon log end now: ``since`` for :func:`assert_wrote_no_config`."""
    sim = cluster.nodes[node]
    return len(sim.host.command_log()), len(sim.daemon.log())


def assert_wrote_no_config(
    cluster: LocalCluster,
    node: str,
    since: tuple[int, int],
    rendered: dict[str, Any],
    verbs: tuple[str, ...] = ("write", "remove"),
) -> None:
    """Since ``since`` (command log, daemon log lengths) the daemon rebased, and did none of ``verbs``
    to a file or unit of a MachineConfig, and enabled, disabled, masked or unmasked no unit."""
    sim = cluster.nodes[node]
    commands = [" ".join(c) for c in sim.host.command_log()[since[0] :]]
    assert any(c.startswith("rpm-ostree rebase") for c in commands), (node, commands)
    units = [c for c in commands if re.search(r"^systemctl .*\b(enable|disable|mask|unmask)\b", c)]
    assert units == [], (node, units)
    paths = config_paths(rendered)
    steps = re.findall(rf"\b(?:{'|'.join(verbs)}) (/\S+)", sim.daemon.log()[since[1] :])
    assert [p for p in steps if p in paths] == [], (node, steps)
