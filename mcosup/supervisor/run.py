"""The supervisor's composition root: builds shared state and starts every long-lived loop by name.

Caches and HTTP run on every replica (a standby is warm and serves probes and the webhook); the
controllers run only while this replica holds the leader Lease.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Mapping
from typing import Any

from mcosup.control.clock import RealClock
from mcosup.control.controller import Controller, always, by_name
from mcosup.http import probes
from mcosup.http.tls import CertFileReloader
from mcosup.kube import client as kclient
from mcosup.kube import errors
from mcosup.kube.cache import Informer
from mcosup.kube.client import Kube
from mcosup.kube.resources import (
    CONFIGMAPS,
    DEPLOYMENTS,
    MACHINECONFIGPOOLS,
    MACHINECONFIGS,
    MACHINEOSBUILDS,
    MACHINEOSCONFIGS,
    NODES,
    PODS,
    SECRETS,
)
from mcosup.runtime.metrics import Metrics
from mcosup.runtime.settings import KubeSettings, LeaseSettings, RolloutSettings, SupervisorSettings
from mcosup.supervisor import builderpodplan, webhook
from mcosup.supervisor.buildmetrics import BuildObserver
from mcosup.supervisor.leader import LeaderElector
from mcosup.supervisor.nodedisruption import DrainCheck
from mcosup.supervisor.optin import KEY as OPTIN_KEY
from mcosup.supervisor.optin import Caches, OptInController
from mcosup.supervisor.render import RenderController, is_rendered
from mcosup.supervisor.rollout import NodeRollout

log = logging.getLogger(__name__)


async def run(
    settings: SupervisorSettings,
    kube_settings: KubeSettings,
    *,
    lease: LeaseSettings | None = None,
    rollout_settings: RolloutSettings | None = None,
    on_ready: Callable[[int], None] | None = None,
) -> None:
    """Run until cancelled. ``on_ready(http_port)`` is called once the HTTP port is bound."""
    metrics = Metrics()
    ns = settings.namespace
    async with kclient.connect(kube_settings) as kube:
        informers = {
            "pools": Informer(kube, MACHINECONFIGPOOLS, metrics=metrics),
            "machineconfigs": Informer(kube, MACHINECONFIGS, metrics=metrics),
            # The opt-in: an admin's MachineOSConfig, or the one made from a pool's label.
            "machineosconfigs": Informer(kube, MACHINEOSCONFIGS, metrics=metrics),
            "machineosbuilds": Informer(kube, MACHINEOSBUILDS, metrics=metrics),
            "nodes": Informer(kube, NODES, metrics=metrics),
            "configmaps": Informer(kube, CONFIGMAPS, namespace=ns, metrics=metrics),
            "secrets": Informer(kube, SECRETS, namespace=ns, metrics=metrics),
            "pods": Informer(kube, PODS, namespace=ns, metrics=metrics),
            # Every pod of the cluster, for drains (which pods run on a node).
            "all-pods": Informer(kube, PODS, metrics=metrics),
        }
        pools = informers["pools"]
        render = RenderController(
            kube,
            pools=pools,
            machineconfigs=informers["machineconfigs"],
            nodes=informers["nodes"],
            namespace=ns,
        )
        optin = OptInController(
            kube,
            Caches(
                pools=pools,
                configmaps=informers["configmaps"],
                secrets=informers["secrets"],
                pods=informers["pods"],
                machineosconfigs=informers["machineosconfigs"],
                machineosbuilds=informers["machineosbuilds"],
            ),
            namespace=ns,
            pod_spec=builderpodplan.BuilderPodSpec(
                namespace=ns,
                image=settings.image,
                owner=await _own_deployment(kube, settings),
                env=settings.builder_env,
            ),
            clock=RealClock(),
            metrics=metrics,
            backoff=settings.builder_backoff,
        )
        expected = (errors.Conflict,)
        controllers: dict[str, Controller[str]] = {
            "render": Controller(
                "render", render.reconcile, workers=2, metrics=metrics, expected_errors=expected
            ),
            "optin": Controller("optin", optin.reconcile, metrics=metrics, expected_errors=expected),
        }
        _wire(informers, controllers)
        pools.subscribe(BuildObserver(metrics).on_pool)
        nodes = NodeRollout(
            kube,
            pools=pools,
            nodes=informers["nodes"],
            pods=informers["all-pods"],
            machineosconfigs=informers["machineosconfigs"],
            machineosbuilds=informers["machineosbuilds"],
            settings=rollout_settings,
            metrics=metrics,
        )
        nodes.skip_drain = DrainCheck(
            machineconfigs=informers["machineconfigs"],
            configmaps=informers["configmaps"],
            namespace=ns,
            on_invalid=lambda cm, message: nodes.event(
                cm, CONFIGMAPS, "InvalidNodeDisruptionPolicy", message, warning=True
            ),
        ).skip_drain
        elector = LeaderElector(kube, namespace=ns, identity=settings.identity, settings=lease)

        async def lead() -> None:
            # A new term starts from the whole state: every key once, then events.
            for pool in pools.items():
                controllers["render"].enqueue(pool["metadata"]["name"])
            controllers["optin"].enqueue(OPTIN_KEY)
            async with asyncio.TaskGroup() as tg:
                for name, controller in controllers.items():
                    tg.create_task(controller.run(), name=f"controller-{name}")
                tg.create_task(nodes.run(), name="controller-rollout")

        def caches_listed() -> str | None:
            waiting = [name for name, inf in informers.items() if not inf.listed.is_set()]
            return f"waiting for the first list of {', '.join(waiting)}" if waiting else None

        def leader_known() -> str | None:
            return None if elector.known.is_set() else "leader not known yet"

        readiness = {"caches": caches_listed, "leader": leader_known}
        tls: CertFileReloader | None = None
        if settings.webhook_tls != "off":
            tls = CertFileReloader(*webhook.cert_paths(settings))
            readiness["webhook"] = lambda: (
                None if tls is not None and tls.loaded else "webhook TLS not loaded"
            )
        app = probes.probes_app(liveness={"loops": lambda: None}, readiness=readiness, metrics=metrics)
        async with probes.serving(app, settings.http_host, settings.http_port) as port:
            log.info("supervisor serving probes and metrics on %s:%d", settings.http_host, port)
            if on_ready is not None:
                on_ready(port)
            async with asyncio.TaskGroup() as tg:
                for name, informer in informers.items():
                    tg.create_task(informer.run(), name=f"informer-{name}")
                await asyncio.gather(*(inf.listed.wait() for inf in informers.values()))
                tg.create_task(elector.run(lead), name="leader-election")
                if tls is not None:
                    tg.create_task(
                        webhook.serve_webhook(
                            kube,
                            settings,
                            tls=tls,
                            pools=pools,
                            machineconfigs=informers["machineconfigs"],
                            machineosconfigs=informers["machineosconfigs"],
                            secrets=informers["secrets"],
                            is_leader=lambda: elector.leading,
                            metrics=metrics,
                            host=settings.http_host,
                        ),
                        name="webhook",
                    )


def _wire(informers: dict[str, Informer], controllers: dict[str, Controller[str]]) -> None:
    """Watch events only enqueue keys; reconcilers re-read state from the caches."""
    pools = informers["pools"]
    render, optin = controllers["render"], controllers["optin"]

    def pools_to_render(_: str, mc: Mapping[str, Any]) -> list[str]:
        """A source MachineConfig may be selected by any pool; our own rendered ones change nothing."""
        return [] if is_rendered(mc) else [pool["metadata"]["name"] for pool in pools.items()]

    render.watch(pools, by_name)
    render.watch(informers["machineconfigs"], pools_to_render)
    for name in ("pools", "machineosconfigs", "machineosbuilds", "configmaps", "secrets", "pods"):
        optin.watch(informers[name], always(OPTIN_KEY))


async def _own_deployment(kube: Kube, settings: SupervisorSettings) -> tuple[str, str] | None:
    if not settings.deployment:
        return None
    try:
        deployment = await kube.get(DEPLOYMENTS, settings.deployment, namespace=settings.namespace)
    except errors.NotFound:
        log.warning(
            "Deployment %s/%s not found: the builder pod gets no owner",
            settings.namespace,
            settings.deployment,
        )
        return None
    return settings.deployment, deployment["metadata"]["uid"]
