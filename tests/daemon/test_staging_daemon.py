"""Staging ahead of the node's turn (contract 12.1): a real daemon on the fake host downloads the image
it is asked to stage while the node stays Done, reports it staged, and boots it when its turn comes."""

from __future__ import annotations

from pathlib import Path

from daemon_kit import NODE, Cluster, Registry

from mcosup.kube.resources import NODES
from mcosup.model import names
from mcosup.sim import fakehost
from mcosup.sim.fakehost import FakeHost
from waiting import eventually

IMG_A = "127.0.0.1:5000/os/worker@sha256:" + "a" * 64
IMG_B = "127.0.0.1:5000/os/worker@sha256:" + "b" * 64


async def test_stages_while_done_then_boots_the_staged_image(
    cluster: Cluster, tmp_path: Path, registry: Registry
) -> None:
    host = FakeHost(tmp_path / "host", registry=registry.url)
    host.set_pull_seconds(0.5)  # the download a staged node no longer waits for at its turn
    registry.push(IMG_A)
    async with fakehost.daemon(host, NODE, kubeconfig=cluster.kubeconfig):
        await cluster.target(names.MODE_LAYERED, "rendered-worker-1", IMG_A)
        await cluster.done("rendered-worker-1", IMG_A)
        states: list[str | None] = []

        async def staged() -> bool:
            ann = await cluster.annotations()
            states.append(ann.get(names.STATE))
            return ann.get(names.STAGED_IMAGE) == IMG_B

        # An image the registry does not have: logged, never Degraded, tried again.
        await cluster.kube.patch(NODES, NODE, {"metadata": {"annotations": {names.STAGING_IMAGE: IMG_B}}})
        await eventually(
            lambda: any("--download-only" in c for c in host.command_log()), what="a download attempt"
        )
        registry.push(IMG_B)
        await eventually(staged, what=f"{names.STAGED_IMAGE} = {IMG_B}")
        assert set(states) == {names.STATE_DONE}, "staging never makes the node unavailable"
        assert host.pulled() == [IMG_A, IMG_B]
        assert host.staged_image() is None and host.booted_image() == IMG_A, "downloaded, not deployed"
        assert host.reboots() == 1

        await cluster.target(names.MODE_LAYERED, "rendered-worker-2", IMG_B)
        await cluster.done("rendered-worker-2", IMG_B)
        assert host.booted_image() == IMG_B and host.reboots() == 2
        # The turn came: the supervisor drops the request and the daemon its report.
        await cluster.kube.patch(NODES, NODE, {"metadata": {"annotations": {names.STAGING_IMAGE: None}}})
        await eventually(
            lambda: _no_staged(cluster), what=f"{names.STAGED_IMAGE} removed once the node runs the image"
        )


async def _no_staged(cluster: Cluster) -> bool:
    return names.STAGED_IMAGE not in await cluster.annotations()
