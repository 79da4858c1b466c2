"""Maintenance windows end to end on the emulator: the node controller with a clock the test moves,
the test playing each node's daemon. What is judged is the emulator's whole history of node versions
(nothing cordoned, nothing targeted outside the window), the pool's conditions and its Events."""

from __future__ import annotations

import contextlib
import dataclasses
import datetime as dt
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

from rollout_harness import (
    FAST,
    R0,
    R1,
    FakeDaemons,
    Supervisor,
    create_nodes,
    node_versions,
    pool_body,
    pool_condition,
    running,
)

from mcosup.control.clock import JumpClock
from mcosup.kube import client as kclient
from mcosup.kube.resources import EVENTS, MACHINECONFIGPOOLS, NODES
from mcosup.model import names
from waiting import eventually

WINDOW = "Mon-Fri 01:00-05:00 Europe/Paris"
OPENING = dt.datetime.fromisoformat("2026-12-07T01:00:00+01:00")  # a Monday
#: Only the window's opening may wake the pool: no periodic resync comes to the rescue.
NO_RESYNC = dataclasses.replace(FAST, resync=24 * 3600.0)


def windowed_pool(window: str) -> dict[str, Any]:
    body = pool_body(rendered=R1, max_unavailable=2)
    body["metadata"]["annotations"] = {names.MAINTENANCE_WINDOW: window}
    return body


async def rolled_out(kube: kclient.Kube) -> bool:
    items, _ = await kube.list(NODES)
    done = all(
        (n["metadata"].get("annotations") or {}).get(names.CURRENT_CONFIG) == R1
        and names.CORDONED_BY not in (n["metadata"].get("annotations") or {})
        and not n["spec"].get("unschedulable")
        for n in items
    )
    return done and (await pool_condition(kube, names.UPDATED)).get("status") == "True"


def touched(node: dict[str, Any]) -> bool:
    """Cordoned or targeted: the start of an update."""
    ann = node["metadata"].get("annotations") or {}
    return (
        bool(node["spec"].get("unschedulable"))
        or names.CORDONED_BY in ann
        or ann.get(names.DESIRED_CONFIG) == R1
    )


@contextlib.asynccontextmanager
async def rolling(
    kube: kclient.Kube, admin_kubeconfig: Path, window: str, *, nodes: int, at: dt.datetime
) -> AsyncIterator[JumpClock]:
    """A pool with ``window`` and a new config for its ``nodes``, their fake daemons, and the node
    controller on a clock that starts ``at``."""
    clock = JumpClock(wall=at.timestamp())
    await kube.create(MACHINECONFIGPOOLS, windowed_pool(window))
    await create_nodes(kube, nodes, config=R0)
    async with (
        running(FakeDaemons(kube, seconds=0.05).run),
        Supervisor(admin_kubeconfig, NO_RESYNC, clock=clock),
    ):
        yield clock


async def test_nothing_is_cordoned_outside_the_window_and_updates_start_at_its_opening(
    kube: kclient.Kube, emulator: Any, admin_kubeconfig: Path
) -> None:
    async with rolling(
        kube, admin_kubeconfig, WINDOW, nodes=3, at=OPENING - dt.timedelta(minutes=3)
    ) as clock:

        async def waits_for_the_window() -> bool:
            cond = await pool_condition(kube, names.UPDATING)
            return cond.get("reason") == names.REASON_OUTSIDE_MAINTENANCE_WINDOW

        await eventually(waits_for_the_window, what="the pool to report it is outside its window")
        cond = await pool_condition(kube, names.UPDATING)
        assert cond["status"] == "False"
        assert f'outside the maintenance window "{WINDOW}"' in cond["message"]
        assert "next window opens at 2026-12-07T01:00:00+01:00" in cond["message"]
        closed_until = max(rv for rv, _, _ in emulator.history)

        clock.jump(OPENING.timestamp() - clock.wall())
        await eventually(lambda: rolled_out(kube), what="the rollout once the window opens")

        async def told() -> bool:
            events, _ = await kube.list(EVENTS, namespace="default")
            reasons = {e["reason"] for e in events if e["involvedObject"]["name"] == "worker"}
            return {names.REASON_OUTSIDE_MAINTENANCE_WINDOW, "NodesUpdating"} <= reasons

        await eventually(told, what="Events for the wait and for the start at the opening")

    history = node_versions(emulator.history)
    early = [f"rv {rv}: {n['metadata']['name']}" for rv, _, n in history if rv <= closed_until and touched(n)]
    assert early == [], "a node was cordoned or targeted outside the window"
    assert any(touched(n) for rv, _, n in history if rv > closed_until)


async def test_an_unparsable_window_degrades_the_pool_until_fixed(
    kube: kclient.Kube, emulator: Any, admin_kubeconfig: Path
) -> None:
    bad = "Mon-Fri 01:00-05:00 Europe/Pariss"
    # An hour into the window once it is fixed.
    async with rolling(kube, admin_kubeconfig, bad, nodes=2, at=OPENING + dt.timedelta(hours=1)):

        async def degraded() -> bool:
            cond = await pool_condition(kube, names.DEGRADED)
            return cond.get("reason") == names.REASON_INVALID_MAINTENANCE_WINDOW

        await eventually(degraded, what="Degraded=InvalidMaintenanceWindow")
        message = (await pool_condition(kube, names.DEGRADED))["message"]
        assert f"MachineConfigPool worker annotation {names.MAINTENANCE_WINDOW}: window 1" in message
        assert 'time zone "Europe/Pariss" is unknown' in message
        fixed_at = max(rv for rv, _, _ in emulator.history)
        await kube.patch(
            MACHINECONFIGPOOLS,
            "worker",
            {"metadata": {"annotations": {names.MAINTENANCE_WINDOW: WINDOW}}},
        )
        await eventually(lambda: rolled_out(kube), what="the rollout once the window is fixed")
        assert (await pool_condition(kube, names.DEGRADED))["status"] == "False"
    early = [
        n["metadata"]["name"] for rv, _, n in node_versions(emulator.history) if rv <= fixed_at and touched(n)
    ]
    assert early == [], "a node was cordoned or targeted while the window could not be parsed"
