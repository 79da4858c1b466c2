"""The health gate with a real `mcosup daemon` process against the emulator: the daemon reads its
pool's ``mc/health-check-seconds`` (with its own ServiceAccount's rights), rolls the fake host back from
an image that fails its boot-complete check (the image carries the fake host's unhealthy label, as a
real build can make it), reports ``RolledBack`` on the Node, and applies the next image it is given."""

from __future__ import annotations

from daemon_kit import NODE, Cluster, Registry

from mcosup.kube.resources import MACHINECONFIGPOOLS, NODES
from mcosup.model import names
from mcosup.sim import fakebin, fakehost
from mcosup.sim.fakehost import FakeHost
from waiting import eventually

IMG_A = "127.0.0.1:5000/os/worker@sha256:" + "a" * 64
BAD = "127.0.0.1:5000/os/worker@sha256:" + "b" * 64
IMG_C = "127.0.0.1:5000/os/worker@sha256:" + "c" * 64
ROLE = "node-role.kubernetes.io/worker"


async def test_a_bad_image_is_rolled_back_within_the_pools_health_check_seconds(
    cluster: Cluster, fake: FakeHost, registry: Registry
) -> None:
    fake.set_registry(registry.url)
    for image in (IMG_A, IMG_C):
        registry.push(image)
    registry.push(BAD, {fakebin.UNHEALTHY_LABEL: "the demo's broken config"})
    await cluster.kube.create(
        MACHINECONFIGPOOLS,
        {
            "apiVersion": names.API_VERSION,
            "kind": "MachineConfigPool",
            "metadata": {"name": "worker", "annotations": {names.HEALTH_CHECK_SECONDS: "1"}},
            "spec": {
                "machineConfigSelector": {"matchLabels": {names.ROLE_LABEL: "worker"}},
                "nodeSelector": {"matchLabels": {ROLE: ""}},
                "configuration": {"name": "rendered-worker-1", "source": []},
            },
        },
    )
    await cluster.kube.patch(NODES, NODE, {"metadata": {"labels": {ROLE: ""}}})
    async with fakehost.daemon(fake, NODE, kubeconfig=cluster.kubeconfig):
        await cluster.target(names.MODE_LAYERED, "rendered-worker-1", IMG_A)
        await cluster.done("rendered-worker-1", IMG_A)
        await cluster.target(names.MODE_LAYERED, "rendered-worker-2", BAD)

        async def rolled_back() -> bool:
            reason = (await cluster.annotations()).get(names.REASON) or ""
            # Reported as the rollback starts, so that the pool halts at once; then the host reboots.
            return (
                reason.startswith(f"RolledBack: {BAD} did not become healthy: boot-complete.target")
                and fake.booted_image() == IMG_A
            )

        await eventually(rolled_back, within=60, what="the node rolled back and saying so")
        assert (await cluster.annotations())[names.REASON].endswith("within 1s of booting it")
        assert fake.rollback_image() == BAD and fake.reboots() == 3

        await cluster.target(names.MODE_LAYERED, "rendered-worker-2", IMG_C)
        await cluster.done("rendered-worker-2", IMG_C)
        assert fake.booted_image() == IMG_C
