"""What the end-to-end story and the demo judge a cluster by (pure): a node's availability as contract
section 5 defines it, the most nodes ever unavailable at once over a recorded history, and whether a
pool's nodes all run its current config; plus :func:`wait_until`, polling for an outcome.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable, Iterable, Mapping
from typing import Any

from mcosup.model import names


class ClusterError(RuntimeError):
    """Something in the local cluster did not come up or did not happen in time."""


def node_unavailable(obj: Mapping[str, Any]) -> bool:
    """Contract section 5: not Ready, unschedulable, state not Done, or desired* differ from current*."""
    meta = obj.get("metadata") or {}
    ann = meta.get("annotations") or {}
    conditions = (obj.get("status") or {}).get("conditions") or []
    ready = any(c.get("type") == "Ready" and c.get("status") == "True" for c in conditions)
    return (
        not ready
        or bool((obj.get("spec") or {}).get("unschedulable"))
        or ann.get(names.STATE) != names.STATE_DONE
        or ann.get(names.DESIRED_CONFIG) != ann.get(names.CURRENT_CONFIG)
        or ann.get(names.DESIRED_IMAGE) != ann.get(names.CURRENT_IMAGE)
    )


def most_unavailable(
    history: Iterable[tuple[int, str, Mapping[str, Any]]], nodes: Iterable[str], *, since: int = 0
) -> tuple[int, int, list[str]]:
    """The most ``nodes`` unavailable at once at any recorded version after ``since``.

    Replays a history of object versions (:attr:`LocalCluster.node_history`, or the emulator's own):
    returns (count, sequence, names) of the worst version. Nodes not seen yet count as available.
    """
    wanted = set(nodes)
    state: dict[str, bool] = {}
    worst: tuple[int, int, list[str]] = (0, since, [])
    for rv, kind, obj in history:
        if obj.get("kind") != "Node":
            continue
        name = str((obj.get("metadata") or {}).get("name", ""))
        if name not in wanted:
            continue
        state[name] = kind != "DELETED" and node_unavailable(obj)
        if rv <= since:
            continue
        down = sorted(n for n, bad in state.items() if bad)
        if len(down) > worst[0]:
            worst = (len(down), rv, down)
    return worst


def not_converged(
    pool_obj: Mapping[str, Any], nodes: Iterable[Mapping[str, Any]], *, image: str | None, layered: bool
) -> str | None:
    """Why the pool's nodes are not all running its current config (and, when ``layered``, ``image``: the
    pool's image handed off by its current MachineOSBuild), or None when they are."""
    rendered = ((pool_obj.get("spec") or {}).get("configuration") or {}).get("name")
    if not rendered:
        return "pool not rendered yet"
    if not layered:
        image = None
    elif image is None:
        return f"no image built for {rendered} yet"
    mode = names.MODE_LAYERED if layered else names.MODE_LEGACY
    for n in nodes:
        meta = n.get("metadata") or {}
        ann = meta.get("annotations") or {}
        label = (meta.get("labels") or {}).get(names.DAEMON_MODE)
        got = (label, ann.get(names.CURRENT_CONFIG), ann.get(names.CURRENT_IMAGE), ann.get(names.STATE))
        if got != (mode, rendered, image, names.STATE_DONE) or node_unavailable(n):
            return f"node {meta.get('name')}: mode={label} config={got[1]} image={got[2]} state={got[3]}"
    return None


async def wait_until(
    check: Callable[[], Awaitable[str | None]],
    *,
    within: float,
    what: str,
    every: float = 0.2,
) -> None:
    """Poll ``check`` (returns None when satisfied, else why not) until it passes or ``within`` s pass."""
    deadline = time.monotonic() + within
    why: str | None = "not checked yet"
    while True:
        why = await check()
        if why is None:
            return
        if time.monotonic() > deadline:
            raise ClusterError(f"timed out after {within:.0f}s waiting for {what}: {why}")
        await asyncio.sleep(every)
