"""The daemon's view of the cluster through the Kubernetes client: three caches and one patch.

Its own Node (field selector ``metadata.name``), the MachineConfigs (rendered configs are looked up by
name), the MachineConfigPools (its pool's ``health-check-seconds``) and the ConfigMaps of the namespace
(``node-certificates``, ``machine-config-osimageurl``). Every cache change wakes the agent; the agent
re-reads everything (level-triggered).
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Mapping

from mcosup.kube import resources as R
from mcosup.kube.cache import Informer
from mcosup.kube.client import Kube
from mcosup.model import health, selectors
from mcosup.model.objects import Obj


class KubeCluster:
    def __init__(self, kube: Kube, *, node_name: str, namespace: str):
        self.kube = kube
        self.node_name = node_name
        self.namespace = namespace
        self.nodes = Informer(kube, R.NODES, field_selector=f"metadata.name={node_name}")
        self.machineconfigs = Informer(kube, R.MACHINECONFIGS)
        self.configmaps = Informer(kube, R.CONFIGMAPS, namespace=namespace)
        self.pools = Informer(kube, R.MACHINECONFIGPOOLS)
        self.informers = (self.nodes, self.machineconfigs, self.configmaps, self.pools)
        self._changed = asyncio.Event()
        for informer in self.informers:
            informer.subscribe(self._on_change)

    def _on_change(self, event_type: str, obj: Obj) -> None:
        self._changed.set()

    async def wait_listed(self) -> None:
        for informer in self.informers:
            await informer.listed.wait()

    def node(self) -> Obj | None:
        return self.nodes.get(self.node_name)

    def machineconfig(self, name: str) -> Obj | None:
        return self.machineconfigs.get(name) if name else None

    def configmap(self, name: str) -> Obj | None:
        return self.configmaps.get(name, self.namespace)

    def health_check_seconds(self) -> int:
        labels = ((self.node() or {}).get("metadata") or {}).get("labels") or {}
        pool = selectors.pool_of_node(labels, self.pools.items())
        return health.health_check_seconds(self.pools.get(pool) if pool else None)

    async def wait_changed(self, seconds: float) -> None:
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(seconds):
                await self._changed.wait()
        self._changed.clear()

    async def patch_node_annotations(self, annotations: Mapping[str, str | None]) -> None:
        await self.kube.patch(R.NODES, self.node_name, {"metadata": {"annotations": dict(annotations)}})
