"""A build Job deleted mid-build, on a real control plane (issue 14): kube-controller-manager runs the Job.

The emulator's Job controller is checked against the real one elsewhere, and the builder's handling of
Jobs is tested on the emulator in ``tests/builder``; this proves the one case where the two controllers
meet on a real API server: the Job deleted under a running build (garbage collection of its Pods, the
builder's fresh read before it calls the build Interrupted) leads to an Interrupted MachineOSBuild, a
new one, a success, and no duplicate Job; every process runs with nothing but ``deploy/rbac/``.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from mcosup.kube.resources import JOBS, MACHINEOSBUILDS
from mcosup.model import machineosbuild, names
from mcosup.sim.cluster import ClusterConfig, LocalCluster, missing_tools
from mcosup.sim.invariants import wait_until
from mcosup.sim.recorder import Recorder

pytestmark = [pytest.mark.slow, pytest.mark.timeout(600)]


@pytest.fixture
async def cluster(tmp_path: Path) -> AsyncIterator[LocalCluster]:
    if missing := missing_tools():
        pytest.fail(f"the real control plane needs: apt-get install -y {' '.join(missing)}")
    gate = tmp_path / "gate"
    gate.touch()
    config = ClusterConfig(masters=1, workers=1, control_plane="real", buildah_gate=gate)
    async with LocalCluster(config, tmp_path / "cluster") as c:
        yield c


async def test_build_job_deleted_mid_build_on_a_real_control_plane(
    cluster: LocalCluster, tmp_path: Path
) -> None:
    builds, jobs = Recorder(cluster.kube, MACHINEOSBUILDS), Recorder(cluster.kube, JOBS)
    recorders = [asyncio.create_task(builds.run()), asyncio.create_task(jobs.run())]
    try:
        await builds.listed.wait()
        await jobs.listed.wait()
        await cluster.opt_in("worker")

        async def building() -> str | None:
            items, _ = await cluster.kube.list(MACHINEOSBUILDS)
            states = [machineosbuild.state(b) for b in items]
            return None if states == [names.MOSB_BUILDING] else f"builds: {states}"

        await wait_until(building, within=240, what="the first build Building")
        (first,) = (await cluster.kube.list(MACHINEOSBUILDS))[0]
        first_name = first["metadata"]["name"]
        await cluster.kube.delete(JOBS, machineosbuild.job_name(first_name), namespace=cluster.ns)

        async def restarted() -> str | None:
            made = {o["metadata"]["name"] for _, kind, o in jobs.history if kind == "ADDED"}
            return None if len(made) == 2 else f"jobs created: {sorted(made)}"

        await wait_until(restarted, within=120, what="a new build Job")
        (tmp_path / "gate").unlink()

        async def built() -> str | None:
            image = await cluster.handed_off_image("worker")
            recorded = image is not None and await cluster.image("worker") == image
            return None if recorded else f"pool build state {await cluster.build_state('worker')}"

        await wait_until(built, within=240, what="the new build handed off")
    finally:
        for task in recorders:
            task.cancel()
        await asyncio.gather(*recorders, return_exceptions=True)

    first_states = [
        machineosbuild.state(o) for _, _, o in builds.history if o["metadata"]["name"] == first_name
    ]
    assert first_states[-1] == names.MOSB_INTERRUPTED, first_states
    (second,) = (await cluster.kube.list(MACHINEOSBUILDS))[0]
    assert second["metadata"]["name"] == f"{first_name}-1"
    assert machineosbuild.state(second) == names.MOSB_SUCCEEDED
    created = [o["metadata"]["name"] for _, kind, o in jobs.history if kind == "ADDED"]
    assert created == [
        machineosbuild.job_name(first_name),
        machineosbuild.job_name(second["metadata"]["name"]),
    ]
    assert await cluster.image("worker") == second["status"]["digestedImagePushSpec"]
    assert cluster.forbidden() == []
