"""The builder's composition root: caches, the build controller, and the wiring between them.

Caches of pools, MachineConfigs, MachineOSConfigs, MachineOSBuilds, Nodes (the images they name, which
pruning keeps) and the namespace's ConfigMaps, Secrets, build Jobs and build Pods; one controller keyed
by pool name; watch events only enqueue pools, the reconciler re-reads everything.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Mapping
from typing import Any

from mcosup.builder import manifests
from mcosup.builder.build import Builder, Caches
from mcosup.control.controller import Controller, by_name
from mcosup.kube import client as kclient
from mcosup.kube.cache import Informer
from mcosup.kube.resources import (
    CONFIGMAPS,
    JOBS,
    MACHINECONFIGPOOLS,
    MACHINECONFIGS,
    MACHINEOSBUILDS,
    MACHINEOSCONFIGS,
    NODES,
    PODS,
    SECRETS,
)
from mcosup.model import names
from mcosup.runtime.settings import BuilderSettings, KubeSettings

log = logging.getLogger(__name__)


async def run(settings: BuilderSettings, kube_settings: KubeSettings) -> None:
    """Run the builder until cancelled.

    The builder pod serves no HTTP, so it keeps no metrics (the supervisor counts builds from the pool
    conditions) and does not import prometheus_client: its start-up is on the path of every first build.
    """
    ns = settings.namespace
    async with (
        kclient.connect(kube_settings, light=True) as kube,
        manifests.registry_session() as http,
    ):
        informers = {
            "pools": Informer(kube, MACHINECONFIGPOOLS),
            "machineconfigs": Informer(kube, MACHINECONFIGS),
            "configmaps": Informer(kube, CONFIGMAPS, namespace=ns),
            "secrets": Informer(kube, SECRETS, namespace=ns),
            "pods": Informer(kube, PODS, namespace=ns, label_selector=names.BUILD_OBJECT_LABEL),
            # One build Job per MachineOSBuild; its Pods carry the same labels.
            "jobs": Informer(kube, JOBS, namespace=ns, label_selector=names.BUILD_OBJECT_LABEL),
            # A pool's build settings: its MachineOSConfig (an admin's, or the one its label stands for).
            "machineosconfigs": Informer(kube, MACHINEOSCONFIGS),
            # The records of the builds, one per build identity, named <MachineOSConfig>-<16 hex>.
            "machineosbuilds": Informer(kube, MACHINEOSBUILDS),
            # The images nodes name: pruning never deletes one of those.
            "nodes": Informer(kube, NODES),
        }
        caches = Caches(**informers)
        builder = Builder(kube, caches, settings, http=http)
        controller: Controller[str] = Controller("builder", builder.reconcile)
        wire(informers, controller)
        async with asyncio.TaskGroup() as tg:
            for name, informer in informers.items():
                tg.create_task(informer.run(), name=f"informer-{name}")
            await asyncio.gather(*(inf.listed.wait() for inf in informers.values()))
            log.info("builder caches listed; reconciling %d pools", len(informers["pools"]))
            for pool in informers["pools"].items():
                controller.enqueue(pool["metadata"]["name"])
            tg.create_task(controller.run(), name="controller-builder")


def wire(informers: Mapping[str, Informer], controller: Controller[str]) -> None:
    """Watch events only enqueue pool names; the reconciler re-reads everything from the caches."""
    pools = informers["pools"]

    def all_pools(_: str, obj: Mapping[str, Any]) -> list[str]:
        return [pool["metadata"]["name"] for pool in pools.items()]

    def rendered_pools(event: str, mc: Mapping[str, Any]) -> list[str]:
        return all_pools(event, mc) if mc["metadata"]["name"].startswith(names.RENDERED_PREFIX) else []

    def target_pool(_: str, pod: Mapping[str, Any]) -> list[str]:
        label = ((pod.get("metadata") or {}).get("labels") or {}).get(names.TARGET_POOL_LABEL)
        # The label holds the pool's name, cut to a label's 63 characters.
        return [
            pool["metadata"]["name"]
            for pool in pools.items()
            if label and names.label_value(pool["metadata"]["name"]) == label
        ]

    controller.watch(pools, by_name)
    controller.watch(informers["machineconfigs"], rendered_pools)
    controller.watch(informers["configmaps"], all_pools)
    controller.watch(informers["secrets"], all_pools)
    controller.watch(informers["pods"], target_pool)
    controller.watch(informers["jobs"], target_pool)
    # A MachineOSConfig is named like the pool it opts in.
    controller.watch(informers["machineosconfigs"], by_name)
    controller.watch(informers["machineosbuilds"], machineosconfig_of)

    def configs_with_builds(_: str, node: Mapping[str, Any]) -> list[str]:
        """A node moving off an image may free it for pruning: every config with builds looks again."""
        names_ = {n for b in informers["machineosbuilds"].items() for n in machineosconfig_of("", b)}
        return sorted(names_)

    controller.watch(informers["nodes"], configs_with_builds)


def machineosconfig_of(_: str, mosb: Mapping[str, Any]) -> list[str]:
    """A MachineOSBuild's pool: its MachineOSConfig's name, which is the pool's."""
    name = ((mosb.get("spec") or {}).get("machineOSConfig") or {}).get("name")
    return [str(name)] if name else []
