"""``mcosup builder``: the Machine OS Builder process (contract section 4).

The composition root: caches of pools, MachineConfigs and the namespace's ConfigMaps, Secrets and build
Pods; one controller keyed by pool name; watch events only enqueue pools. Runs until SIGTERM.

Settings (environment):

- ``MCOSUP_NAMESPACE``: namespace of mcosup and of the build objects.
- ``MCOSUP_BUILDAH_IMAGE``: image of the build Pods (any image with buildah, sh, cat and tar).
- ``MCOSUP_BUILD_TLS_VERIFY``: ``false`` only for a plain-HTTP or self-signed test registry.
- ``MCOSUP_BUILD_CPU_REQUEST``, ``MCOSUP_BUILD_MEMORY_REQUEST``: resource requests of the build Pods.
- ``MCOSUP_BUILD_RETRIES`` (3) and ``MCOSUP_BUILD_RETRY_BACKOFF`` (seconds before the first retry, 30).
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
from collections.abc import Mapping

import aiohttp

from mcosup.builder import buildplan
from mcosup.builder.building import Builder, BuilderSettings, Caches
from mcosup.control.controller import Controller
from mcosup.kube import client as kclient
from mcosup.kube.cache import Informer
from mcosup.kube.client import Obj
from mcosup.kube.resources import CONFIGMAPS, MACHINECONFIGPOOLS, MACHINECONFIGS, PODS, SECRETS
from mcosup.metrics import Metrics
from mcosup.settings import KubeSettings, SettingsError, env_float, env_int, env_str, namespace_from_env
from mcosup.supervisor.command import run_until_signalled
from webhooks import names

HELP = "the Machine OS Builder: builds one OS image per opted-in pool"

log = logging.getLogger(__name__)


def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--kubeconfig", help="kubeconfig path (default: $KUBECONFIG, else in-cluster config)")
    parser.add_argument(
        "--namespace",
        help="namespace of mcosup (default: $MCOSUP_NAMESPACE or openshift-machine-config-operator)",
    )


def settings_from_env(env: Mapping[str, str], namespace: str | None = None) -> BuilderSettings:
    ns = namespace_from_env(env, namespace)
    defaults = buildplan.PodOptions()
    verify = env_str(env, "MCOSUP_BUILD_TLS_VERIFY", "true").lower()
    if verify not in ("true", "false"):
        raise SettingsError(f"MCOSUP_BUILD_TLS_VERIFY={verify!r} must be true or false")
    pod = buildplan.PodOptions(
        namespace=ns,
        buildah_image=env_str(env, "MCOSUP_BUILDAH_IMAGE", defaults.buildah_image),
        tls_verify=verify == "true",
        cpu_request=env_str(env, "MCOSUP_BUILD_CPU_REQUEST", defaults.cpu_request),
        memory_request=env_str(env, "MCOSUP_BUILD_MEMORY_REQUEST", defaults.memory_request),
    )
    return BuilderSettings(
        namespace=ns,
        pod=pod,
        max_retries=env_int(env, "MCOSUP_BUILD_RETRIES", BuilderSettings.max_retries),
        retry_backoff=env_float(env, "MCOSUP_BUILD_RETRY_BACKOFF", BuilderSettings.retry_backoff),
    )


def main(args: argparse.Namespace) -> int:
    try:
        settings = settings_from_env(os.environ, args.namespace)
        kube_settings = KubeSettings.from_env(os.environ, kubeconfig=args.kubeconfig)
    except SettingsError as exc:
        print(f"mcosup builder: {exc}")
        return 2
    return run_until_signalled(run(settings, kube_settings))


async def run(settings: BuilderSettings, kube_settings: KubeSettings) -> None:
    """Run the builder until cancelled."""
    metrics = Metrics()
    ns = settings.namespace
    async with kclient.connect(kube_settings) as kube, aiohttp.ClientSession() as http:
        informers = {
            "pools": Informer(kube, MACHINECONFIGPOOLS, metrics=metrics),
            "machineconfigs": Informer(kube, MACHINECONFIGS, metrics=metrics),
            "configmaps": Informer(kube, CONFIGMAPS, namespace=ns, metrics=metrics),
            "secrets": Informer(kube, SECRETS, namespace=ns, metrics=metrics),
            "pods": Informer(
                kube, PODS, namespace=ns, label_selector=names.BUILD_OBJECT_LABEL, metrics=metrics
            ),
        }
        caches = Caches(**informers)
        builder = Builder(kube, caches, settings, http=http, metrics=metrics)
        controller: Controller[str] = Controller("builder", builder.reconcile, metrics=metrics)
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

    def all_pools(_: str, obj: Obj) -> None:
        for pool in pools.items():
            controller.enqueue(pool["metadata"]["name"])

    def target_pool(_: str, obj: Obj) -> None:
        pool = ((obj.get("metadata") or {}).get("labels") or {}).get(names.TARGET_POOL_LABEL)
        if pool:
            controller.enqueue(pool)

    pools.subscribe(lambda _, obj: controller.enqueue(obj["metadata"]["name"]))
    informers["machineconfigs"].subscribe(
        lambda _, obj: (
            all_pools(_, obj) if obj["metadata"]["name"].startswith(names.RENDERED_PREFIX) else None
        )
    )
    informers["configmaps"].subscribe(all_pools)
    informers["secrets"].subscribe(all_pools)
    informers["pods"].subscribe(target_pool)
