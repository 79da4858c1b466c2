"""Opting in with a MachineOSConfig, end to end, on the emulator and on a real control plane (issue 14).

The same cluster as the layering story (:mod:`mcosup.sim.cluster`: supervisor process, kubelet stand-in
running the builder and real buildah, a real registry, a real daemon per node), with fake hosts. An
admin's MachineOSConfig opts the worker pool in with no label: its settings (another repository, no
ConfigMap of its own, a containerFile) are the ones built with, nodes are rebased, and deleting the
object returns them to the stock OS. Meanwhile the label on the master pool makes a managed
MachineOSConfig that follows the ConfigMaps and goes with the label, and the admin's object's spec is
never written by mcosup (only its current build is recorded). On the real control plane every process
runs with nothing but ``deploy/rbac/``.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from mcosup.kube import errors
from mcosup.kube.resources import CONFIGMAPS, MACHINEOSCONFIGS
from mcosup.model import names
from mcosup.sim import objects
from mcosup.sim.backends import KINDS
from mcosup.sim.cluster import ClusterConfig, LocalCluster, missing_tools
from mcosup.sim.invariants import wait_until
from mcosup.sim.registry import read_image

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


async def test_an_admins_machineosconfig_opts_in_builds_rolls_and_opts_out(cluster: LocalCluster) -> None:
    workers = [f"worker-{i}" for i in range(cluster.config.workers)]
    await cluster.wait_converged("worker", layered=False, within=120)
    await cluster.wait_converged("master", layered=False, within=120)
    first = await cluster.rendered_config("worker")

    # 1. Opt in by MachineOSConfig alone: built with its settings and rolled, no label anywhere.
    created = await cluster.kube.create(MACHINEOSCONFIGS, admins_machineosconfig(cluster))
    await cluster.wait_converged("worker", layered=True, within=240)
    pool = await cluster.pool("worker")
    assert names.LAYERING_ENABLED not in (pool["metadata"].get("labels") or {})
    image = await cluster.image("worker")
    assert image is not None and image.startswith(f"{cluster.registry.host}/{ADMIN_REPO}@sha256:"), image
    labels, _ = await asyncio.to_thread(read_image, cluster.registry, ADMIN_REPO, image.partition("@")[2])
    assert labels[ADMIN_LABEL] == "yes"  # its containerFile
    assert labels[names.RENDERED_CONFIG_LABEL] == first["metadata"]["name"]
    for n in workers:
        assert cluster.nodes[n].host.booted_image() == image
    ready = await cluster.condition("worker", names.LAYERING_READY)
    assert ready is not None and ready["status"] == "True", ready

    # 2. The label on another pool: a managed MachineOSConfig, in step with the ConfigMaps.
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
    assert await cluster.image("worker") == image, "the label's coming and going changed the worker pool"
    admins = await machineosconfig(cluster, "worker")
    assert admins is not None
    # Its spec is the admin's (never edited); the builder records its current build, as the MCO does.
    assert admins["metadata"]["generation"] == created["metadata"]["generation"]
    assert admins["spec"] == created["spec"]
    assert admins["status"]["currentImagePullSpec"] == image
    current = admins["metadata"]["annotations"][names.CURRENT_MOSB_ANNOTATION]
    assert admins["status"]["machineOSBuild"]["name"] == current and current.startswith("worker-")
    assert names.MANAGED_BY_LABEL not in (admins["metadata"].get("labels") or {})

    # 3. Deleting it is the opt-out: every worker back on the stock OS, nothing of the builds left.
    await cluster.kube.delete(MACHINEOSCONFIGS, "worker")
    await cluster.wait_converged("worker", layered=False, within=240)

    async def cleaned_up() -> str | None:
        pool = await cluster.pool("worker")
        left = await cluster.build_objects()
        if await cluster.builder_pod() is not None:
            left.append(f"Pod/{names.BUILDER_POD}")
        if names.NEWEST_IMAGE_ANNOTATION in (pool["metadata"].get("annotations") or {}):
            left.append(names.NEWEST_IMAGE_ANNOTATION)
        left += [
            c["type"]
            for c in (pool.get("status") or {}).get("conditions") or []
            if c["type"] in (*names.BUILD_CONDITIONS, names.LAYERING_READY)
        ]
        return f"left: {left}" if left else None

    await wait_until(cleaned_up, within=60, what="no builder pod, build object, condition or image left")
    nodes = {n["metadata"]["name"]: n for n in await cluster.pool_nodes("worker")}
    for n in workers:
        assert names.CURRENT_IMAGE not in nodes[n]["metadata"]["annotations"]
        assert cluster.nodes[n].host.booted_image() == cluster.base_image

    # On the real control plane, which enforces deploy/rbac/, no request of any process was refused.
    assert cluster.forbidden() == []
