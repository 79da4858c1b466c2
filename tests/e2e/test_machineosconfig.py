"""Opting in with a MachineOSConfig, end to end, on the emulator and on a real control plane (issue 14).

The same cluster as the layering story (:mod:`mcosup.sim.cluster`: supervisor process, kubelet stand-in
running the builder and real buildah, a real registry, a real daemon per node), with fake hosts. The
admin's story, in order:

1. an admin's MachineOSConfig opts the worker pool in with no label: a MachineOSBuild Succeeds with its
   settings (another repository, no ConfigMap of its own, a containerFile) and its
   ``digestedImagePushSpec`` is the image the nodes are rebased onto;
2. a node added to the pool boots straight into that image, never configured file by file first (the
   MCO's firstboot pivot);
3. the label on the master pool makes a managed MachineOSConfig that follows the ConfigMaps and goes
   with the label, and the admin's object's spec is never written by mcosup (only its current build);
4. ``mc/rebuild`` builds the same rendered config again as a second MachineOSBuild with another
   digest, the nodes roll to it, and the annotation is removed;
5. deleting the object returns every node to the stock OS, and every MachineOSBuild and both images are
   pruned once no node uses them.

On the real control plane every process runs with nothing but ``deploy/rbac/``.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from mcosup.kube import errors
from mcosup.kube.resources import CONFIGMAPS, MACHINEOSBUILDS, MACHINEOSCONFIGS
from mcosup.model import conditions, names
from mcosup.sim import objects
from mcosup.sim.backends import KINDS
from mcosup.sim.cluster import ClusterConfig, LocalCluster, missing_tools
from mcosup.sim.invariants import wait_until
from mcosup.sim.registry import read_image
from storykit import assert_wrote_no_config

pytestmark = [pytest.mark.slow, pytest.mark.timeout(600)]

ADMIN_REPO = "os/admin"
ADMIN_LABEL = "org.mcosup.test.admin"


@pytest.fixture(params=KINDS)
async def cluster(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[LocalCluster]:
    if missing := missing_tools():
        pytest.fail(f"the end-to-end story needs: apt-get install -y {' '.join(missing)}")
    config = ClusterConfig(masters=1, workers=2, max_unavailable=2, control_plane=request.param)
    async with LocalCluster(config, tmp_path / "cluster") as c:
        yield c


def admins_machineosconfig(cluster: LocalCluster) -> dict[str, Any]:
    # The cluster's Secrets, a repository the ConfigMap does not name.
    push_spec = f"{cluster.registry.host}/{ADMIN_REPO}:latest"
    return objects.machineosconfig("worker", push_spec, f'LABEL {ADMIN_LABEL}="yes"\n')


async def machineosconfig(cluster: LocalCluster, name: str) -> dict[str, Any] | None:
    with contextlib.suppress(errors.NotFound):
        return await cluster.kube.get(MACHINEOSCONFIGS, name)
    return None


def workers(cluster: LocalCluster) -> list[str]:
    return sorted(n for n, sim in cluster.nodes.items() if sim.role == "worker")


async def current_build(cluster: LocalCluster) -> dict[str, Any]:
    """The worker MachineOSConfig's current MachineOSBuild, which must have Succeeded."""
    mosc = await machineosconfig(cluster, "worker")
    assert mosc is not None
    name = mosc["metadata"]["annotations"][names.CURRENT_MOSB_ANNOTATION]
    assert mosc["status"]["machineOSBuild"]["name"] == name and name.startswith("worker-")
    build = await cluster.kube.get(MACHINEOSBUILDS, name)
    succeeded = conditions.find(build["status"]["conditions"], names.MOSB_SUCCEEDED)
    assert succeeded is not None and succeeded["status"] == "True", build["status"]
    assert build["spec"]["machineOSConfig"]["name"] == "worker"
    return build


async def assert_workers_boot(cluster: LocalCluster, build: dict[str, Any], rendered: str) -> str:
    """Every worker boots ``build``'s image, built for ``rendered`` and recorded on the pool; returns it."""
    image = str(build["status"]["digestedImagePushSpec"])
    assert image.startswith(f"{cluster.registry.host}/{ADMIN_REPO}@sha256:"), image
    assert build["spec"]["machineConfig"]["name"] == rendered
    assert await cluster.image("worker") == image
    for n in workers(cluster):
        assert cluster.nodes[n].host.booted_image() == image, n
    return image


async def a_new_node_boots_the_image(cluster: LocalCluster, node: str, image: str) -> None:
    """A node joining the layered pool is given the image at once and boots it: the Node never asks for
    legacy mode and its daemon writes no config file before rebasing (the MCO's firstboot pivot)."""
    since = cluster.history_rv()
    await cluster.add_node(node, "worker")
    await cluster.wait_converged("worker", layered=True, within=120)
    rendered = await cluster.rendered_config("worker")
    assert cluster.nodes[node].host.booted_image() == image
    asked = set()
    for _, _, obj in cluster.node_history[since:]:
        meta = obj["metadata"]
        if meta["name"] == node and names.DESIRED_CONFIG in (meta.get("annotations") or {}):
            annotations = meta["annotations"]
            target = (annotations[names.DESIRED_CONFIG], annotations.get(names.DESIRED_IMAGE))
            asked.add((meta["labels"].get(names.DAEMON_MODE), *target))
    assert asked == {(names.MODE_LAYERED, rendered["metadata"]["name"], image)}, asked
    assert_wrote_no_config(cluster, node, (0, 0), rendered)
    rebases = [c for c in cluster.nodes[node].host.command_log() if c[:2] == ["rpm-ostree", "rebase"]]
    assert len(rebases) == 1 and image in rebases[0][-1], rebases


async def the_label_stands_for_a_managed_machineosconfig(cluster: LocalCluster) -> None:
    """The label on master makes a managed MachineOSConfig in step with the ConfigMaps, gone with the
    label; the label on worker, beside the admin's object, changes nothing."""
    await cluster.opt_in("master")

    async def managed_made() -> str | None:
        got = await machineosconfig(cluster, "master")
        return None if got is not None else "no MachineOSConfig master yet"

    await wait_until(managed_made, within=60, what="the managed MachineOSConfig of master")
    managed = await machineosconfig(cluster, "master")
    assert managed is not None
    assert managed["metadata"]["labels"][names.MANAGED_BY_LABEL] == "true"
    assert managed["spec"]["renderedImagePushSpec"] == cluster.pullspec
    assert managed["spec"]["renderedImagePushSecret"] == {"name": "demo-push-secret"}
    await cluster.kube.create(
        CONFIGMAPS,
        {"metadata": {"name": names.CUSTOM_DOCKERFILE_CM}, "data": {"master": "LABEL tier=master\n"}},
        namespace=cluster.ns,
    )

    async def managed_followed() -> str | None:
        got = await machineosconfig(cluster, "master") or {}
        entries = (got.get("spec") or {}).get("containerFile")
        return (
            None
            if entries == [{"containerfileArch": "NoArch", "content": "LABEL tier=master\n"}]
            else (f"containerFile {entries}")
        )

    await wait_until(managed_followed, within=60, what="the managed MachineOSConfig following the ConfigMap")
    # The label on the worker pool too: the admin's object wins and stays as it was made.
    await cluster.opt_in("worker")
    await cluster.opt_in("master", on=False)

    async def managed_gone() -> str | None:
        return None if await machineosconfig(cluster, "master") is None else "still there"

    await wait_until(managed_gone, within=60, what="the managed MachineOSConfig deleted with the label")
    await cluster.wait_converged("master", layered=False, within=240)
    await cluster.opt_in("worker", on=False)
    await cluster.wait_converged("worker", layered=True, within=60)


async def rebuild(cluster: LocalCluster, first: dict[str, Any]) -> dict[str, Any]:
    """``mc/rebuild`` on the MachineOSConfig: its current build is replaced by a new MachineOSBuild of
    the same rendered config, and the annotation removed. Returns the new build once it Succeeded."""
    await cluster.kube.patch(
        MACHINEOSCONFIGS, "worker", {"metadata": {"annotations": {names.REBUILD_ANNOTATION: ""}}}
    )

    async def rebuilt() -> str | None:
        mosc = await machineosconfig(cluster, "worker")
        if mosc is None:
            return "MachineOSConfig worker is gone"
        annotations = mosc["metadata"].get("annotations") or {}
        current = annotations.get(names.CURRENT_MOSB_ANNOTATION)
        if current == first["metadata"]["name"]:
            return f"the current build is still {current}"
        if names.REBUILD_ANNOTATION in annotations:
            return f"{names.REBUILD_ANNOTATION} still on the MachineOSConfig"
        return None if (await cluster.handed_off_image("worker")) else f"{current} has not Succeeded yet"

    await wait_until(rebuilt, within=240, what="a second MachineOSBuild after mc/rebuild")
    return await current_build(cluster)


async def test_an_admins_machineosconfig_opts_in_builds_rolls_and_opts_out(cluster: LocalCluster) -> None:
    await cluster.wait_converged("worker", layered=False, within=120)
    await cluster.wait_converged("master", layered=False, within=120)
    rendered = (await cluster.rendered_config("worker"))["metadata"]["name"]

    # 1. Opt in by MachineOSConfig alone: built with its settings and rolled, no label anywhere.
    created = await cluster.kube.create(MACHINEOSCONFIGS, admins_machineosconfig(cluster))
    await cluster.wait_converged("worker", layered=True, within=240)
    pool = await cluster.pool("worker")
    assert names.LAYERING_ENABLED not in (pool["metadata"].get("labels") or {})
    first = await current_build(cluster)
    image = await assert_workers_boot(cluster, first, rendered)
    labels, _ = await asyncio.to_thread(read_image, cluster.registry, ADMIN_REPO, image.partition("@")[2])
    assert labels[ADMIN_LABEL] == "yes"  # its containerFile
    assert labels[names.RENDERED_CONFIG_LABEL] == rendered
    ready = await cluster.condition("worker", names.LAYERING_READY)
    assert ready is not None and ready["status"] == "True", ready

    # 2. A node joining the layered pool boots straight into its image.
    await a_new_node_boots_the_image(cluster, f"worker-{cluster.config.workers}", image)

    # 3. The label on another pool: a managed MachineOSConfig; the admin's object stays the admin's.
    await the_label_stands_for_a_managed_machineosconfig(cluster)
    assert await cluster.image("worker") == image, "the label's coming and going changed the worker pool"
    admins = await machineosconfig(cluster, "worker")
    assert admins is not None
    # Its spec is the admin's (never edited); the builder records its current build, as the MCO does.
    assert admins["metadata"]["generation"] == created["metadata"]["generation"]
    assert admins["spec"] == created["spec"]
    assert admins["status"]["currentImagePullSpec"] == image
    assert names.MANAGED_BY_LABEL not in (admins["metadata"].get("labels") or {})

    # 4. mc/rebuild: the same rendered config built again, another image, the nodes rolled to it.
    second = await rebuild(cluster, first)
    await cluster.wait_converged("worker", layered=True, within=240)
    image2 = await assert_workers_boot(cluster, second, rendered)
    # Same inputs, same labels; another image all the same (buildah stamps each image's creation time).
    assert image2 != image, "the rebuild pushed the very image it replaced"
    labels2, _ = await asyncio.to_thread(read_image, cluster.registry, ADMIN_REPO, image2.partition("@")[2])
    assert labels2 == labels

    async def replaced_build_pruned() -> str | None:
        with contextlib.suppress(errors.NotFound):
            await cluster.kube.get(MACHINEOSBUILDS, first["metadata"]["name"])
            return f"MachineOSBuild {first['metadata']['name']} still there"
        return (
            f"{image} still in the registry" if await asyncio.to_thread(cluster.registry_has, image) else None
        )

    await wait_until(replaced_build_pruned, within=60, what="the replaced build and its image pruned")

    # 5. Deleting it is the opt-out: every worker back on the stock OS, nothing of the builds left,
    # both images pruned from the registry.
    await cluster.kube.delete(MACHINEOSCONFIGS, "worker")
    await cluster.wait_converged("worker", layered=False, within=240)
    await cluster.wait_cleaned_up("worker", (image, image2))
    nodes = {n["metadata"]["name"]: n for n in await cluster.pool_nodes("worker")}
    for n in workers(cluster):
        assert names.CURRENT_IMAGE not in nodes[n]["metadata"]["annotations"]
        assert cluster.nodes[n].host.booted_image() == cluster.base_image

    # On the real control plane, which enforces deploy/rbac/, no request of any process was refused.
    assert cluster.forbidden() == []
