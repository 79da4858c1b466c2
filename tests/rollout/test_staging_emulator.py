"""Staging ahead of a node's turn (contract 12.1) on the emulator, the test playing each node's daemon:
a node's turn waits until it has downloaded the image, so no node is ever unavailable while it
downloads (judged over every node version a watch recorded); a node whose daemon never stages takes
its turn after the staging timeout, and the pool's Event says why."""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

from rollout_harness import (
    FAST,
    IMG,
    R0,
    R1,
    FakeDaemons,
    Supervisor,
    create_nodes,
    most_unavailable,
    node_versions,
    pool_body,
    record_build,
    running,
)

from mcosup.kube import client as kclient
from mcosup.kube.resources import EVENTS, MACHINECONFIGPOOLS, NODES
from mcosup.model.node import NodeView
from mcosup.sim.recorder import Entry, Recorder
from waiting import eventually

NEW = "registry.local/os@sha256:" + "e" * 64


async def layered_pool(kube: kclient.Kube, nodes: int, max_unavailable: int) -> None:
    await kube.create(
        MACHINECONFIGPOOLS, pool_body(rendered=R0, layered=True, max_unavailable=max_unavailable)
    )
    await create_nodes(kube, nodes, config=R0, image=IMG)
    await record_build(kube, "worker", R0, IMG)


async def new_image(kube: kclient.Kube) -> None:
    """What render and the builder do: a new config, and its image built."""
    await kube.patch(MACHINECONFIGPOOLS, "worker", {"spec": {"configuration": {"name": R1, "source": []}}})
    await record_build(kube, "worker", R1, NEW)


async def all_on(kube: kclient.Kube, image: str) -> bool:
    items, _ = await kube.list(NODES)
    views = [NodeView.of(n) for n in items]
    return all(v.current_image == image and not v.unavailable for v in views)


def unavailable_without_image(history: list[Entry], since: int) -> list[tuple[int, str]]:
    """(sequence, node) of each recorded version, after ``since``, of a node out of service while it
    has neither downloaded nor booted :data:`NEW`: a node unavailable during its download."""
    return [
        (seq, v.name)
        for seq, kind, node in node_versions(history)
        if seq > since and kind != "DELETED"
        for v in [NodeView.of(node)]
        if v.unavailable and NEW not in (v.staged_image, v.current_image)
    ]


async def test_the_first_wave_is_cordoned_only_after_staging_and_no_node_is_down_while_downloading(
    kube: kclient.Kube, admin_kubeconfig: Path
) -> None:
    await layered_pool(kube, nodes=5, max_unavailable=2)
    recorder = Recorder(kube, NODES)
    async with running(recorder.run, FakeDaemons(kube, seconds=0.05, pull_seconds=0.3).run):
        await recorder.listed.wait()
        async with Supervisor(admin_kubeconfig):
            await eventually(lambda: all_on(kube, IMG), what="every node Done on the first image")
            since = recorder.mark()
            await new_image(kube)
            await eventually(lambda: all_on(kube, NEW), what="every node Done and available on the new image")

    history = recorder.history
    assert unavailable_without_image(history, since) == []
    first_cordon: dict[str, NodeView] = {}
    downloaded_in_service: set[str] = set()
    for seq, _kind, node in node_versions(history):
        v = NodeView.of(node)
        if seq <= since:
            continue
        if v.cordoned_by_us:
            first_cordon.setdefault(v.name, v)
        if v.staging_image == NEW and v.staged_image != NEW and not v.unavailable:
            downloaded_in_service.add(v.name)
    assert sorted(first_cordon) == [f"w{i:02d}" for i in range(5)]
    assert all(v.staged_image == NEW for v in first_cordon.values()), "every turn began with the image staged"
    assert downloaded_in_service == set(first_cordon), "each node downloaded while Done and schedulable"
    assert most_unavailable(history, since=since) <= 2


async def test_a_node_that_never_stages_takes_its_turn_after_the_timeout_and_the_pool_says_why(
    kube: kclient.Kube, admin_kubeconfig: Path
) -> None:
    await layered_pool(kube, nodes=2, max_unavailable=1)
    recorder = Recorder(kube, NODES)
    daemons = FakeDaemons(kube, seconds=0.05, never_stage={"w00"})  # an older daemon on w00
    settings = dataclasses.replace(FAST, staging_timeout=2.0)
    async with running(recorder.run, daemons.run):
        await recorder.listed.wait()
        async with Supervisor(admin_kubeconfig, settings):
            await eventually(lambda: all_on(kube, IMG), what="every node Done on the first image")
            since = recorder.mark()
            await new_image(kube)
            await eventually(lambda: all_on(kube, NEW), what="every node on the new image, w00 included")

            async def told() -> list[dict[str, Any]]:
                events, _ = await kube.list(EVENTS, namespace="default")
                return [e for e in events if e["reason"] == "StagingTimedOut"]

            await eventually(told, what="a StagingTimedOut Event on the pool")
    (event,) = await told()
    assert event["involvedObject"]["name"] == "worker" and event["type"] == "Warning"
    for text in ("node w00", NEW, "2s", "takes its turn unstaged", "machine-config-daemon log"):
        assert text in event["message"], text
    # w00 downloaded during its turn, as it would have without staging.
    assert {name for _, name in unavailable_without_image(recorder.history, since)} == {"w00"}
