"""``mcosup demo``: on a machine without the tools it needs it says exactly what to install; on the real
control plane it tells the whole story (both opt-in forms, a rebuild, a change without a reboot, a bad
image rolled back and then fixed, both opt-outs and the images pruned) and its summary says each
chapter's outcome."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
from pathlib import Path

import pytest


def _descendants(pid: int) -> set[int]:
    """Every process below ``pid`` now (children, their children, ...)."""
    parent_of = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue  # ended meanwhile
        parent_of[int(stat.parent.name)] = int(fields[1])
    found: set[int] = set()
    frontier = {pid}
    while frontier:
        frontier = {p for p, parent in parent_of.items() if parent in frontier} - found
        found |= frontier
    return found


def _alive(pids: set[int]) -> set[int]:
    """Those of ``pids`` still running (a zombie has ended)."""
    running = set()
    for pid in pids:
        try:
            state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
        except OSError:
            continue
        if state != "Z":
            running.add(pid)
    return running


@pytest.mark.timeout(300)
def test_a_terminated_demo_stops_every_process_it_started(tmp_path: Path) -> None:
    """TERM (like Ctrl-C or a closed terminal) mid-story: the registry, the supervisor, the builder and
    every node's daemon stop with the demo, none is left running."""
    demo = subprocess.Popen(
        [sys.executable, "-m", "mcosup", "demo", "--workdir", str(tmp_path / "w")],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        env={**os.environ, "COLUMNS": "200"},
    )
    assert demo.stdout is not None
    seen = []
    for line in demo.stdout:  # until the builder pod runs: every kind of process is up
        seen.append(line)
        if "✓ 2. opt in" in line:
            break
    else:
        pytest.fail("the demo ended before opting in:\n" + "".join(seen[-40:]))
    started = _descendants(demo.pid)
    commands = " ".join(Path(f"/proc/{p}/cmdline").read_text().replace("\0", " ") for p in _alive(started))
    for process in ("docker-registry", "mcosup supervisor", "mcosup builder", "mcosup daemon"):
        assert process in commands, process
    demo.send_signal(signal.SIGTERM)
    rest, _ = demo.communicate(timeout=180)
    assert demo.returncode == 130, rest[-3000:]
    assert "interrupted; the cluster is stopped" in rest
    assert _alive(started) == set()


def test_demo_names_the_packages_to_install_when_tools_are_missing(tmp_path: Path) -> None:
    env = {**os.environ, "PATH": str(tmp_path)}  # neither buildah nor docker-registry on PATH
    done = subprocess.run(
        [sys.executable, "-m", "mcosup", "demo"], env=env, capture_output=True, text=True, timeout=60
    )
    assert done.returncode != 0
    assert done.stdout == "apt-get install -y buildah docker-registry\n"
    assert "buildah" in done.stderr and "docker-registry" in done.stderr


@pytest.mark.slow
@pytest.mark.timeout(600)
def test_demo_on_the_real_control_plane_tells_the_whole_story(tmp_path: Path) -> None:
    done = subprocess.run(
        [sys.executable, "-m", "mcosup", "demo", "--control-plane", "real", "--workdir", str(tmp_path / "w")],
        capture_output=True,
        text=True,
        timeout=570,
        env={**os.environ, "COLUMNS": "200"},
    )
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    out = " ".join(done.stdout.split())  # the console wraps long lines
    assert "starting a real control plane: etcd, kube-apiserver, kube-controller-manager" in out
    for stage in (
        "2. opt in: worker by label, master by MachineOSConfig → builder pod",
        "3. build both pools' images",
        "7. roll the new image",
        "8. rebuild on request (mc/rebuild on MachineOSConfig master)",
        "9. a change without a reboot (node disruption policy)",
        "10. a bad image: one node rolls back, the rollout halts (health gate)",
        "11. the fix rolls on",
        "12. opt out (label removed, MachineOSConfig master deleted) → stock OS",
        "13. the images pruned from the registry",
    ):
        assert f"✓ {stage}: " in out, stage
    # One pool by label, the other by the admin's MachineOSConfig, each built as a MachineOSBuild.
    assert "MachineOSConfig worker made from the label, master the admin's own" in out
    for pool in ("worker", "master"):
        assert re.search(rf"{pool}: MachineOSBuild {pool}-[0-9a-f]{{16}} Succeeded → ", out), pool
    # mc/rebuild: the same config again, a new image, rolled.
    assert re.search(
        r"built again as MachineOSBuild master-[0-9a-f]{16}(-\d+)?: \S+ → \S+; master nodes", out
    )
    # The node disruption policy: every worker current with its reboot count unchanged, the reload run.
    assert len(re.findall(r"worker-\d: reboots (\d+) → \1; ran reload crio\.service", out)) == 3
    assert "3 worker nodes current on" in out
    assert "with no reboot and no cordon; each ran Reload crio.service once" in out
    # The bad image: one node took it and rolled back, the pool halted naming it, no other node was
    # given it (the demo checks the Nodes' whole history); the fix reached every node, the pool Updated.
    bad = re.search(r"rollout halts \(health gate\): (worker-\d) took \S+, was not healthy within 3s", out)
    assert bad, out[-3000:]
    node = bad[1]
    assert f"{node}: daemon Degraded (RolledBack: " in out
    assert re.search(rf"Degraded=True RolloutHalted: rollout of \S+ halted: node {node}: RolledBack: ", out)
    assert "pool worker Degraded, RolloutHalted; the other 2 nodes never given it" in out
    assert re.search(
        r"✓ 11\. the fix rolls on: 3 worker node\(s\) layered, .*?; the new image cleared the halt", out
    )
    # Both opt-outs, then every image built gone from the registry.
    assert "stock OS on every node" in out
    assert "7 images built, all 7 gone from the registry; no MachineOSBuild left" in out
    assert "maxUnavailable=1 held: at most 1 worker node(s) unavailable at once" in out
