"""The render controller (contract section 3): one rendered MachineConfig per pool, kept current.

Per pool: merge the MachineConfigs its selector picks (``mcosup.model.rendering``), create the immutable
``rendered-<pool>-<hash>`` if it does not exist, point the pool's ``spec.configuration`` at it, and
collect rendered configs of the pool that nothing references any more (newest few kept, so a rollback
does not have to re-render). Invalid input sets ``RenderDegraded`` naming the MachineConfig and field.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Mapping
from typing import Any

from mcosup.control.controller import Result
from mcosup.control.poolstatus import update_pool_status
from mcosup.kube import errors
from mcosup.kube.cache import Informer
from mcosup.kube.client import Kube
from mcosup.kube.resources import MACHINECONFIGPOOLS, MACHINECONFIGS
from mcosup.model import names, rendering
from mcosup.model.conditions import Condition
from mcosup.model.objects import Obj
from mcosup.runtime.logs import fields

log = logging.getLogger(__name__)

#: Unreferenced rendered configs kept per pool (contract: newest 5).
KEEP_RENDERED = 5


def is_rendered(mc: Mapping[str, Any]) -> bool:
    meta = mc.get("metadata") or {}
    return str(meta.get("name", "")).startswith(names.RENDERED_PREFIX) or any(
        ref.get("kind") == "MachineConfigPool" for ref in meta.get("ownerReferences") or ()
    )


def referenced_configs(pools: Iterable[Obj], nodes: Iterable[Obj]) -> set[str]:
    """Rendered config names something still points at: pools' spec/status, nodes' desired/current."""
    used: set[str] = set()
    for pool in pools:
        for part in ("spec", "status"):
            name = ((pool.get(part) or {}).get("configuration") or {}).get("name")
            if name:
                used.add(name)
    for node in nodes:
        annotations = (node.get("metadata") or {}).get("annotations") or {}
        for key in (names.DESIRED_CONFIG, names.CURRENT_CONFIG):
            if annotations.get(key):
                used.add(annotations[key])
    return used


def collectable(
    pool_name: str, rendered: Iterable[Obj], used: set[str], keep: int = KEEP_RENDERED
) -> list[str]:
    """Names of the pool's rendered configs to delete: unreferenced ones beyond the newest ``keep``."""
    prefix = f"{names.RENDERED_PREFIX}{pool_name}-"
    mine = [mc for mc in rendered if mc["metadata"]["name"].startswith(prefix)]
    unused = [mc for mc in mine if mc["metadata"]["name"] not in used]
    unused.sort(
        key=lambda mc: (mc["metadata"].get("creationTimestamp", ""), mc["metadata"]["name"]), reverse=True
    )
    return [mc["metadata"]["name"] for mc in unused[keep:]]


class RenderController:
    def __init__(
        self, kube: Kube, *, pools: Informer, machineconfigs: Informer, nodes: Informer, namespace: str
    ):
        self.kube = kube
        self.pools = pools
        self.machineconfigs = machineconfigs
        self.nodes = nodes
        self.namespace = namespace

    async def reconcile(self, pool_name: str) -> Result:
        pool = self.pools.get(pool_name)
        if pool is None:
            return Result()  # deleted: its rendered configs go with it (ownerReference GC)
        components = [mc for mc in self.machineconfigs.items() if not is_rendered(mc)]
        try:
            selected = rendering.select(pool, components)
            result = rendering.render(pool, selected)
        except (rendering.RenderError, rendering.SelectorError) as exc:
            log.warning("cannot render pool: %s", exc, extra=fields(pool=pool_name))
            await update_pool_status(
                self.kube,
                pool,
                set_conditions=[Condition(names.RENDER_DEGRADED, "True", "RenderFailed", str(exc))],
                events=True,
            )
            return Result()
        if self.machineconfigs.get(result.name) is None:
            try:
                await self.kube.create(MACHINECONFIGS, result.machineconfig)
                log.info(
                    "rendered %s from %d MachineConfigs",
                    result.name,
                    len(result.sources),
                    extra=fields(pool=pool_name),
                )
            except errors.AlreadyExists:
                pass  # immutable and content-addressed: the existing one is the same config
        current = (pool.get("spec") or {}).get("configuration") or {}
        if current.get("name") != result.name or current.get("source") != result.configuration()["source"]:
            pool = await self.kube.patch(
                MACHINECONFIGPOOLS,
                pool_name,
                {
                    "metadata": {"resourceVersion": pool["metadata"]["resourceVersion"]},
                    "spec": {"configuration": result.configuration()},
                },
            )
            await self.kube.record_event(
                pool,
                reason="RenderedConfigChanged",
                message=f"pool {pool_name} now renders to {result.name}",
            )
        await update_pool_status(
            self.kube,
            pool,
            set_conditions=[
                Condition(names.RENDER_DEGRADED, "False", "Rendered", f"rendered to {result.name}")
            ],
            events=True,
        )
        used = referenced_configs(self.pools.items(), self.nodes.items()) | {result.name}
        for name in collectable(pool_name, self.machineconfigs.items(), used):
            log.info("garbage-collecting unreferenced %s", name, extra=fields(pool=pool_name))
            try:
                await self.kube.delete(MACHINECONFIGS, name)
            except errors.NotFound:
                pass
        return Result()
