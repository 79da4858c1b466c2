"""The health gate end to end on the emulator, the test playing each node's daemon (one image does
not boot healthily): exactly one node takes the bad image and rolls back, the pool halts naming the
node and the image, no other node's desiredImage ever names it (the emulator's whole history), and a
new image or ``mc/resume-rollout`` moves the pool on."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from rollout_harness import (
    IMG,
    R0,
    R1,
    FakeDaemons,
    Supervisor,
    create_nodes,
    node_versions,
    pool_body,
    pool_condition,
    record_build,
    running,
)

from mcosup.kube import client as kclient
from mcosup.kube.resources import EVENTS, MACHINECONFIGPOOLS, NODES
from mcosup.model import names
from waiting import eventually

BAD = "registry.local/os@sha256:" + "b" * 64
FIXED = "registry.local/os@sha256:" + "c" * 64
R2 = "rendered-worker-" + "2" * 32


async def publish(kube: kclient.Kube, config: str, image: str) -> None:
    """What render and the builder do: the pool on ``config``, then a build of it recorded as ``image``."""
    pool = await kube.get(MACHINECONFIGPOOLS, "worker")
    if pool["spec"]["configuration"]["name"] != config:
        await kube.patch(
            MACHINECONFIGPOOLS, "worker", {"spec": {"configuration": {"name": config, "source": []}}}
        )
    await record_build(kube, "worker", config, image)


async def all_on(kube: kclient.Kube, image: str) -> bool:
    items, _ = await kube.list(NODES)
    return all(
        (n["metadata"].get("annotations") or {}).get(names.CURRENT_IMAGE) == image
        and (n["metadata"].get("annotations") or {}).get(names.STATE) == names.STATE_DONE
        and not n["spec"].get("unschedulable")
        for n in items
    )


async def halted(kube: kclient.Kube) -> str:
    """Waits for RolloutHalted; the node that rolled back."""

    async def is_halted() -> bool:
        return (await pool_condition(kube, names.DEGRADED)).get("reason") == names.REASON_ROLLOUT_HALTED

    await eventually(is_halted, what="the pool to halt its rollout")
    items, _ = await kube.list(NODES)
    failed = [
        n["metadata"]["name"]
        for n in items
        if (n["metadata"].get("annotations") or {}).get(names.DESIRED_IMAGE) == BAD
    ]
    assert len(failed) == 1, failed
    message = (await pool_condition(kube, names.DEGRADED))["message"]

    async def staged_nowhere() -> bool:
        items, _ = await kube.list(NODES)
        return all((n["metadata"].get("annotations") or {}).get(names.STAGING_IMAGE) != BAD for n in items)

    # Nodes may have been told to download it ahead of their turn before the halt; not after.
    await eventually(staged_nowhere, what="no node staging the halted image")
    for text in (
        f"rollout of {BAD} halted",
        f"node {failed[0]}: RolledBack: {BAD} did not become healthy",
        names.RESUME_ROLLOUT,
    ):
        assert text in message
    return failed[0]


def took(history: list[tuple[int, str, dict[str, Any]]], image: str) -> set[str]:
    """Every node whose desiredImage ever named ``image``."""
    return {
        n["metadata"]["name"]
        for _, _, n in node_versions(history)
        if (n["metadata"].get("annotations") or {}).get(names.DESIRED_IMAGE) == image
    }


async def start(kube: kclient.Kube) -> None:
    await kube.create(MACHINECONFIGPOOLS, pool_body(rendered=R0, layered=True))
    await create_nodes(kube, 3, config=R0, image=IMG)
    await publish(kube, R0, IMG)
    await publish(kube, R1, BAD)


async def test_a_bad_image_halts_after_one_node_and_a_new_image_rolls_on(
    kube: kclient.Kube, emulator: Any, admin_kubeconfig: Path
) -> None:
    await start(kube)
    async with running(FakeDaemons(kube, seconds=0.05, rolls_back={BAD}).run):
        async with Supervisor(admin_kubeconfig):
            failed = await halted(kube)

            async def told() -> bool:
                events, _ = await kube.list(EVENTS, namespace="default")
                return any(e["reason"] == names.REASON_ROLLOUT_HALTED and BAD in e["message"] for e in events)

            await eventually(told, what="a RolloutHalted Event naming the image")
            await publish(kube, R2, FIXED)
            await eventually(lambda: all_on(kube, FIXED), what="the fixed image on every node")
            assert (await pool_condition(kube, names.DEGRADED))["status"] == "False"
    assert took(emulator.history, BAD) == {failed}


async def test_resume_rollout_tries_the_same_image_again(
    kube: kclient.Kube, emulator: Any, admin_kubeconfig: Path
) -> None:
    await start(kube)
    daemons = FakeDaemons(kube, seconds=0.05, rolls_back={BAD})
    async with running(daemons.run):
        async with Supervisor(admin_kubeconfig):
            failed = await halted(kube)
            assert took(emulator.history, BAD) == {failed}
            daemons.rolls_back.clear()  # say the failure was the host's, not the image's
            await kube.patch(
                MACHINECONFIGPOOLS, "worker", {"metadata": {"annotations": {names.RESUME_ROLLOUT: ""}}}
            )
            await eventually(lambda: all_on(kube, BAD), what="the image on every node after the resume")
            pool = await kube.get(MACHINECONFIGPOOLS, "worker")
            assert names.RESUME_ROLLOUT not in (pool["metadata"].get("annotations") or {})
            assert (await pool_condition(kube, names.DEGRADED))["status"] == "False"
