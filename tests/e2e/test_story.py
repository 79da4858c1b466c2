"""The whole layering story end to end, as ``mcosup demo`` tells it, without the narration (issue 9).

One cluster on this machine (:mod:`mcosup.sim.cluster`): the emulator, the supervisor process, the
kubelet stand-in running the builder and build pods with real buildah, a real registry, and a real
daemon per node on a real ostree sysroot that boots the images built (:mod:`mcosup.sim.ostreehost`:
real deployments, ostree's own /etc merge). Every assertion is on what an administrator could look at: the API
objects, the image in the registry, the hosts' files and booted images, and every Node version a watch
saw. The same story, with the same assertions, runs on the emulator and on a real control plane.
"""

from __future__ import annotations

import asyncio
import re
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from mcosup.kube import errors
from mcosup.model import names
from mcosup.model.ignition import decode_data_url
from mcosup.sim.backends import KINDS
from mcosup.sim.cluster import ClusterConfig, LocalCluster, missing_tools
from mcosup.sim.invariants import most_unavailable, wait_until
from mcosup.sim.objects import machineconfig, unit
from mcosup.sim.ostreehost import OstreeHost, make_removable
from mcosup.sim.registry import read_image
from storykit import assert_wrote_no_config, log_marks

pytestmark = [pytest.mark.slow, pytest.mark.timeout(420)]

WORKERS = 3
MAX_UNAVAILABLE = 2
CHANGE = machineconfig(
    "50-worker-motd",
    "worker",
    {
        "/etc/motd.d/50-layered": ("built into the image\n", 0o644),
        # Not under /usr: on an ostree host /usr is the deployment's (read-only on a real one), so after
        # the opt-out legacy mode could not deliver it; a file-by-file write there is lost at the next
        # deployment.
        "/etc/mcosup-demo/hello.sh": ("#!/bin/sh\n", 0o755),
        # Written file by file before the opt-in, changed while layered: the image's new copy must win.
        "/etc/mcosup-demo/worker.conf": ("role=worker\nlayered=yes\n", 0o644),
    },
    [unit("hello.service", "hello from the image")],
)


@pytest.fixture(params=KINDS)
async def cluster(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[LocalCluster]:
    if missing := missing_tools():
        pytest.fail(f"the end-to-end story needs: apt-get install -y {' '.join(missing)}")
    config = ClusterConfig(
        masters=1,
        workers=WORKERS,
        max_unavailable=MAX_UNAVAILABLE,
        host="ostree",
        control_plane=request.param,
    )
    async with LocalCluster(config, tmp_path / "cluster") as c:
        yield c
    # ostree leaves deployments immutable; pytest removes old temporary directories later.
    make_removable(tmp_path / "cluster")


def expected_image_files(rendered: dict[str, Any]) -> dict[str, tuple[bytes, int]]:
    """Path → (contents, mode) the image must carry for a rendered config: its files and unit files."""
    config = rendered["spec"]["config"]
    out: dict[str, tuple[bytes, int]] = {}
    for f in (config.get("storage") or {}).get("files") or []:
        contents = f.get("contents") or {}
        out[f["path"]] = (
            decode_data_url(contents["source"], contents.get("compression")),
            f.get("mode", 0o644),
        )
    for u in (config.get("systemd") or {}).get("units") or []:
        if "contents" in u:
            out[f"/etc/systemd/system/{u['name']}"] = (u["contents"].encode(), 0o644)
    return out


def enabled_units(rendered: dict[str, Any]) -> list[tuple[str, str]]:
    """(unit, target) for every enabled unit of a rendered config, from its [Install] WantedBy."""
    out = []
    for u in (rendered["spec"]["config"].get("systemd") or {}).get("units") or []:
        if u.get("enabled"):
            for target in re.findall(r"^WantedBy=(.+)$", u.get("contents", ""), re.M):
                out += [(u["name"], t) for t in target.split()]
    return out


async def assert_image_matches(cluster: LocalCluster, image: str, rendered: dict[str, Any]) -> None:
    host_repo, _, digest = image.partition("@")
    assert host_repo == f"{cluster.registry.host}/{cluster.config.repo}"
    assert await asyncio.to_thread(cluster.registry_has, image), f"{image} is not in the registry"
    labels, files = await asyncio.to_thread(read_image, cluster.registry, cluster.config.repo, digest)
    assert labels[names.RENDERED_CONFIG_LABEL] == rendered["metadata"]["name"]
    assert labels[names.POOL_LABEL] == "worker"
    assert "/usr/lib/os-release" in files  # built FROM the stock OS image
    expected = expected_image_files(rendered)
    assert expected, "the rendered config has no files: the story would prove nothing"
    got = {p: (files[p].data, files[p].mode & 0o7777) for p in expected if p in files}
    assert got == expected
    for name, target in enabled_units(rendered):
        link = files.get(f"/etc/systemd/system/{target}.wants/{name}")
        assert link is not None and link.link == f"/etc/systemd/system/{name}", (name, target)


def ostree_host(cluster: LocalCluster, node: str) -> OstreeHost:
    host = cluster.nodes[node].host
    assert isinstance(host, OstreeHost), f"{node} does not run on an ostree host"
    return host


def assert_boots_config_image(cluster: LocalCluster, node: str, rendered: dict[str, Any]) -> None:
    """The node's booted deployment carries the rendered config as its image delivered it."""
    tree = cluster.host_tree(node)
    for path, (data, mode) in expected_image_files(rendered).items():
        assert tree.get(path) == (data, mode), (node, path)
        if path.startswith("/etc/"):
            # In the deployment's default /etc (/usr/etc): the image's copy, not one written on the node.
            assert tree.get("/usr" + path) == (data, mode), (node, "/usr" + path)
    for name, target in enabled_units(rendered):
        link = f"/etc/systemd/system/{target}.wants/{name}"
        assert tree.get(link) == (f"-> /etc/systemd/system/{name}".encode(), 0o120777), (node, link)


async def test_opt_in_build_roll_change_opt_out(cluster: LocalCluster) -> None:
    workers = [f"worker-{i}" for i in range(WORKERS)]

    # 0. Every node runs its pool's rendered config file by file.
    await cluster.wait_converged("master", layered=False, within=120)
    await cluster.wait_converged("worker", layered=False, within=120)
    since = cluster.history_rv()
    legacy_trees = {n: cluster.host_tree(n) for n in cluster.nodes}
    marks = {n: log_marks(cluster, n) for n in workers}
    legacy_units = {n: sorted(cluster.nodes[n].host.state()["enabled"]) for n in cluster.nodes}
    first = await cluster.rendered_config("worker")
    for n in workers:
        tree = legacy_trees[n]
        for path, (data, mode) in expected_image_files(first).items():
            assert tree[path] == (data, mode), (n, path)
        assert cluster.nodes[n].host.booted_image() == cluster.base_image
    assert await cluster.builder_pod() is None

    # 1. Opt in: the builder pod runs, one image is built for the rendered config and pushed.
    await cluster.opt_in("worker")

    async def builder_running() -> str | None:
        pod = await cluster.builder_pod()
        phase = ((pod or {}).get("status") or {}).get("phase")
        return None if phase == "Running" else f"builder pod phase {phase}"

    await wait_until(builder_running, within=60, what="the builder pod running")
    await cluster.wait_converged("worker", layered=True, within=240)
    image1 = await cluster.image("worker")
    assert image1 is not None
    await assert_image_matches(cluster, image1, first)
    ready = await cluster.condition("worker", names.LAYERING_READY)
    assert ready is not None and ready["status"] == "True", ready

    # 2. Rebased: every worker boots the image, and its config files are the image's.
    for n in workers:
        assert cluster.nodes[n].host.booted_image() == image1
        assert_boots_config_image(cluster, n, first)
        assert cluster.host_tree(n) != legacy_trees[n], f"{n} booted {image1} but its tree did not change"
    assert cluster.nodes["master-0"].host.booted_image() == cluster.base_image
    layered_marks = {n: log_marks(cluster, n) for n in workers}

    # The webhook is in the loop: a layered pool cannot be given a file its image cannot deliver.
    with pytest.raises(errors.ApiError) as denied:
        await cluster.apply_machineconfig(
            machineconfig("60-var", "worker", {"/var/lib/app.conf": ("x\n", 0o644)})
        )
    assert "/var/lib/app.conf" in str(denied.value) and "worker" in str(denied.value)

    # 3. A MachineConfig change is built into a new image and rolled out: it reaches the nodes through
    # the image alone.
    await cluster.apply_machineconfig(CHANGE)

    async def re_rendered() -> str | None:
        name = await cluster.rendered("worker")
        return None if name and name != first["metadata"]["name"] else "not re-rendered yet"

    await wait_until(re_rendered, within=30, what="the worker pool re-rendered")
    await cluster.wait_converged("worker", layered=True, within=240)
    second = await cluster.rendered_config("worker")
    image2 = await cluster.image("worker")
    assert image2 is not None and image2 != image1
    await assert_image_matches(cluster, image2, second)
    for n in workers:
        assert cluster.nodes[n].host.booted_image() == image2
        assert_boots_config_image(cluster, n, second)
        assert cluster.nodes[n].host.read("/etc/mcosup-demo/worker.conf") == b"role=worker\nlayered=yes\n"
        # From the opt-in on no file content of a config was written: at the opt-in the daemon only
        # handed back (removed) the /etc files legacy mode wrote, so that the image's copies win the
        # /etc merge (mcosup.daemon's docs); once layered, it touched none at all.
        assert_wrote_no_config(cluster, n, marks[n], second, verbs=("write",))
        assert_wrote_no_config(cluster, n, layered_marks[n], second)
        assert sorted(cluster.nodes[n].host.state()["enabled"]) == legacy_units[n], (
            "units enabled in layered mode"
        )

    async def no_build_objects() -> str | None:
        left = await cluster.build_objects()
        return f"left: {left}" if left else None

    await wait_until(no_build_objects, within=30, what="the ephemeral build objects deleted")
    # Read now: the opt-out prunes the images from the registry.
    _, image_files = await asyncio.to_thread(
        read_image, cluster.registry, cluster.config.repo, image2.partition("@")[2]
    )

    # 4. Opt out: back to the stock OS, files re-applied; no builder, build object or annotation left;
    # the MachineOSBuilds and their images pruned once no node names them.
    await cluster.opt_in("worker", on=False)
    await cluster.wait_converged("worker", layered=False, within=240)

    await cluster.wait_cleaned_up("worker", (image1, image2))
    nodes = {n["metadata"]["name"]: n for n in await cluster.pool_nodes("worker")}
    for n in workers:
        assert names.CURRENT_IMAGE not in nodes[n]["metadata"]["annotations"]
        host = ostree_host(cluster, n)
        assert host.booted_image() == cluster.base_image
        assert host.booted().checksum == host.stock_commit, f"{n} does not boot the stock commit"
        assert host.read("/etc/mco/machineconfig-revert.json") is None, f"{n} kept the revert file"

    # The legacy tree: a node that joins now gets the same config file by file, never layered.
    end = cluster.history_rv()
    await cluster.add_node(f"worker-{WORKERS}", "worker")
    await cluster.wait_converged("worker", layered=False, within=120)
    reference = cluster.host_tree(f"worker-{WORKERS}")
    for path, (data, mode) in expected_image_files(second).items():
        assert reference[path] == (data, mode), path
    ref_host = ostree_host(cluster, f"worker-{WORKERS}")
    assert ref_host.booted().checksum == ref_host.stock_commit
    # What the layered image alone carried (beyond the stock OS and the config): gone from every worker.
    _, stock_files = await asyncio.to_thread(
        read_image, cluster.registry, "os/stock", cluster.base_image.partition("@")[2]
    )
    image_only = set(image_files) - set(stock_files) - set(expected_image_files(second))
    image_only = {p for p in image_only if not image_files[p].is_dir}
    assert image_only, "the image carried nothing of its own: the check below would prove nothing"
    for n in workers:
        host = ostree_host(cluster, n)
        tree = cluster.host_tree(n)
        left = {p for p in image_only if p in tree or "/usr" + p in tree}
        assert not left, f"{n} kept what only the layered image carried: {sorted(left)}"
        assert tree == reference, f"{n} after opt-out differs from a never-layered node"
        assert sorted(host.state()["enabled"]) == sorted(ref_host.state()["enabled"])
        assert host.kargs() == ref_host.kargs()

    # maxUnavailable held at every recorded version of the story.
    history = cluster.node_history
    worst, seq, down = most_unavailable((e for e in history if e[0] <= end), workers, since=since)
    assert worst <= MAX_UNAVAILABLE, f"{down} unavailable at once at recorded Node version {seq}"
    assert worst >= 1, "the history shows no node ever updating: the check above proved nothing"
    worst, seq, down = most_unavailable(history, ["master-0"], since=since)
    assert worst == 0, f"master touched by the worker story: {down} at {seq}"

    # Every process ran the whole story with its own ServiceAccount and nothing but deploy/rbac/: on the
    # real control plane, which enforces RBAC, not one request was refused.
    logs = cluster.process_logs()
    assert any(k.startswith("pod ") and names.BUILDER_POD in k for k in logs), sorted(logs)
    assert cluster.forbidden() == []
