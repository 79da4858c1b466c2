"""The health gate with a real `mcosup daemon` process against the emulator: the daemon reads its
pool's ``mc/health-check-seconds`` (with its own ServiceAccount's rights), rolls the fake host back from
an image that fails its boot-complete check (the image carries the fake host's unhealthy label, as a
real build can make it), reports ``RolledBack`` on the Node, and applies the next image it is given."""

from __future__ import annotations

import asyncio

from daemon_kit import NODE, Cluster, Registry, rendered

from mcosup.kube.resources import MACHINECONFIGPOOLS, MACHINECONFIGS, NODES
from mcosup.model import names
from mcosup.sim import fakebin, fakehost
from mcosup.sim.fakehost import FakeHost
from waiting import eventually

IMG_A = "127.0.0.1:5000/os/worker@sha256:" + "a" * 64
BAD = "127.0.0.1:5000/os/worker@sha256:" + "b" * 64
IMG_C = "127.0.0.1:5000/os/worker@sha256:" + "c" * 64
IMG_LIVE = "127.0.0.1:5000/os/worker@sha256:" + "d" * 64
ROLE = "node-role.kubernetes.io/worker"
REGISTRIES = "/etc/containers/registries.conf"
POLICY = """
files:
  - path: /etc/containers/registries.conf
    actions: [{type: Reload, reload: {serviceName: crio.service}}]
"""


async def worker_pool(cluster: Cluster, fake: FakeHost, registry: Registry, *good: str) -> None:
    """Pool ``worker`` (health check 1s) with the Node in it; the registry has the ``good`` images and
    BAD, labelled to fail the fake host's boot-complete check."""
    fake.set_registry(registry.url)
    for image in good:
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


async def test_a_bad_image_is_rolled_back_within_the_pools_health_check_seconds(
    cluster: Cluster, fake: FakeHost, registry: Registry
) -> None:
    await worker_pool(cluster, fake, registry, IMG_A, IMG_C)
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


async def test_a_rollback_after_a_live_apply_keeps_the_live_applied_image_staged(
    cluster: Cluster, fake: FakeHost, registry: Registry
) -> None:
    # Contract 12.2 then 12.3: a covered change is applied live (IMG_LIVE staged, not booted); the bad
    # image's rebase replaces that staged deployment and the rollback boots IMG_A: the daemon stages
    # IMG_LIVE again, so the node has what it reports, and the resume needs no reboot.
    for name, text in (("rendered-worker-live-1", "[registries]\n"), ("rendered-worker-live-2", "mirror\n")):
        await cluster.kube.create(MACHINECONFIGS, rendered(name, files={REGISTRIES: (text, 0o644)}))
    await cluster.configmap(names.NODE_DISRUPTION_POLICY_CM, {names.NODE_DISRUPTION_POLICY_KEY: POLICY})
    await worker_pool(cluster, fake, registry, IMG_A, IMG_LIVE)
    async with fakehost.daemon(fake, NODE, kubeconfig=cluster.kubeconfig):
        await cluster.target(names.MODE_LAYERED, "rendered-worker-live-1", IMG_A)
        await cluster.done("rendered-worker-live-1", IMG_A)
        await cluster.target(names.MODE_LAYERED, "rendered-worker-live-2", IMG_LIVE)
        await cluster.done("rendered-worker-live-2", IMG_LIVE)
        assert (fake.booted_image(), fake.staged_image(), fake.reboots()) == (IMG_A, IMG_LIVE, 1)
        await cluster.target(names.MODE_LAYERED, "rendered-worker-live-2", BAD)

        def deployments() -> tuple[str | None, str | None]:
            return fake.booted_image(), fake.staged_image()

        async def rolled_back_and_staged_again() -> bool:
            reason = (await cluster.annotations()).get(names.REASON) or ""
            # Off the loop: the fake rebase holds the host's lock while it asks this test's registry.
            staged = await asyncio.to_thread(deployments)
            return reason.startswith(f"RolledBack: {BAD}") and staged == (IMG_A, IMG_LIVE)

        await eventually(rolled_back_and_staged_again, within=60, what="rolled back, IMG_LIVE staged again")
        ann = await cluster.annotations()
        assert (ann[names.CURRENT_IMAGE], fake.read(REGISTRIES)) == (IMG_LIVE, b"mirror\n")
        # The resume gives the node back what it runs: Done, with no reboot.
        await cluster.target(names.MODE_LAYERED, "rendered-worker-live-2", IMG_LIVE)
        await cluster.done("rendered-worker-live-2", IMG_LIVE)
        assert (fake.booted_image(), fake.staged_image(), fake.reboots()) == (IMG_A, IMG_LIVE, 3)
