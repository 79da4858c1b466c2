"""A whole build cluster on one machine: emulator, supervisor, kubelet stand-in, real buildah, real registry.

Used by the builder's end-to-end tests and by ``bench/build_overhead.py``. Builds can be held at the
door: the build Pods' ``buildah`` is a wrapper that waits while a gate file exists, so a test can act
"mid-build" deterministically instead of racing a fast build.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import yaml

from mcosup.kube import client as kclient
from mcosup.kube import errors
from mcosup.kube.resources import (
    CONFIGMAPS,
    MACHINECONFIGPOOLS,
    MACHINECONFIGS,
    MACHINEOSBUILDS,
    NAMESPACES,
    PODS,
    SECRETS,
)
from mcosup.model import conditions, machineosbuild, names
from mcosup.runtime.settings import KubeSettings, SupervisorSettings
from mcosup.sim.containers import gated_buildah_rule
from mcosup.sim.kubelet import ImageRule, Kubelet, default_image_rules
from mcosup.sim.objects import docker_secret
from mcosup.sim.objects import machineconfig as sim_machineconfig
from mcosup.sim.registry import Registry
from mcosup.supervisor.run import run as run_supervisor

NS = names.DEFAULT_NAMESPACE
REPO = "os/worker"


def machineconfig(
    name: str, files: dict[str, tuple[str, int]], units: list[dict[str, Any]] | None = None
) -> dict[str, Any]:
    """A MachineConfig for the worker pool."""
    return sim_machineconfig(name, "worker", files, units or [])


class Cluster:
    def __init__(self, kube: kclient.Kube, emulator: Any, registry: Registry, base_image: str, workdir: Path):
        self.kube = kube
        self.emulator = emulator
        self.registry = registry
        self.base_image = base_image
        self.workdir = workdir
        self.gate = workdir / "gate"
        self.pullspec = f"{registry.host}/{REPO}:latest"

    # ---- set-up

    async def install(self, mco_fixtures: Path) -> None:
        with contextlib.suppress(errors.AlreadyExists):
            await self.kube.create(NAMESPACES, {"metadata": {"name": NS}})
        # One Secret of each type the contract accepts: the push one is a legacy dockercfg.
        creds = self.registry.credentials or ("anonymous", "")
        host = self.registry.host
        await self.kube.create(SECRETS, docker_secret("pull-secret", NS, host, creds), namespace=NS)
        await self.kube.create(
            SECRETS, docker_secret("push-secret", NS, host, creds, legacy=True), namespace=NS
        )
        await self.kube.create(
            CONFIGMAPS,
            {
                "metadata": {"name": names.BUILD_CONFIG_CM},
                "data": {
                    names.BASE_IMAGE_PULL_SECRET_KEY: "pull-secret",
                    names.FINAL_IMAGE_PUSH_SECRET_KEY: "push-secret",
                    names.FINAL_IMAGE_PULLSPEC_KEY: self.pullspec,
                },
            },
            namespace=NS,
        )
        await self.kube.create(
            CONFIGMAPS,
            {
                "metadata": {"name": names.OSIMAGEURL_CM},
                "data": {names.BASE_OS_CONTAINER_IMAGE_KEY: self.base_image},
            },
            namespace=NS,
        )
        pool = yaml.safe_load((mco_fixtures / "objects" / "worker.machineconfigpool.yaml").read_text())
        pool["metadata"] = {"name": "worker", "labels": pool["metadata"].get("labels") or {}}
        await self.kube.create(MACHINECONFIGPOOLS, pool)

    def kubelet(self) -> Kubelet:
        builder_env = {
            "MCOSUP_BUILD_TLS_VERIFY": "false",
            "MCOSUP_BUILDAH_IMAGE": "quay.io/buildah/stable:test",
        }
        rules: list[ImageRule] = [
            gated_buildah_rule("*buildah*", self.gate, self.workdir / "bin"),
            *default_image_rules(env=builder_env, buildah_images=()),
        ]

        def credentials(ns: str, account: str, node: str | None, target: Path) -> Path:
            result: Path = self.emulator.write_kubeconfig_for_service_account(target, ns, account, node)
            return result

        return Kubelet(
            self.kube,
            self.workdir / "kubelet",
            image_rules=rules,
            credentials=credentials,
            log_sink=self.emulator.set_pod_log,
            namespace=NS,
        )

    # ---- actions

    async def opt_in(self, on: bool = True) -> None:
        await self.kube.patch(
            MACHINECONFIGPOOLS,
            "worker",
            {"metadata": {"labels": {names.LAYERING_ENABLED: "" if on else None}}},
        )

    async def set_custom_containerfile(self, text: str) -> None:
        body = {"metadata": {"name": names.CUSTOM_DOCKERFILE_CM}, "data": {"worker": text}}
        try:
            await self.kube.create(CONFIGMAPS, body, namespace=NS)
        except errors.AlreadyExists:
            await self.kube.patch(
                CONFIGMAPS, names.CUSTOM_DOCKERFILE_CM, {"data": body["data"]}, namespace=NS
            )

    async def add_machineconfig(self, mc: Any) -> None:
        await self.kube.create(MACHINECONFIGS, mc)

    # ---- observations

    async def pool(self) -> dict[str, Any]:
        return await self.kube.get(MACHINECONFIGPOOLS, "worker")

    async def condition(self, type_: str) -> Any:
        pool = await self.pool()
        return conditions.find((pool.get("status") or {}).get("conditions"), type_)

    async def true_build_condition(self) -> tuple[str, str] | None:
        pool = await self.pool()
        for cond in (pool.get("status") or {}).get("conditions") or []:
            if cond["type"] in names.BUILD_CONDITIONS and cond["status"] == "True":
                return cond["type"], cond.get("message", "")
        return None

    async def rendered(self) -> str:
        pool = await self.pool()
        return str(((pool.get("spec") or {}).get("configuration") or {}).get("name") or "")

    async def has_rendered(self) -> bool:
        return bool(await self.rendered())

    async def image(self) -> str | None:
        pool = await self.pool()
        value = (pool["metadata"].get("annotations") or {}).get(names.NEWEST_IMAGE_ANNOTATION)
        return str(value) if value else None

    async def build_objects(self) -> dict[str, list[str]]:
        out: dict[str, list[str]] = {}
        for resource in (PODS, CONFIGMAPS, SECRETS):
            items, _ = await self.kube.list(resource, namespace=NS, label_selector=names.BUILD_OBJECT_LABEL)
            out[resource.kind] = sorted(i["metadata"]["name"] for i in items)
        return out

    async def build_pods(self) -> list[dict[str, Any]]:
        items, _ = await self.kube.list(PODS, namespace=NS, label_selector=names.BUILD_OBJECT_LABEL)
        return items

    async def builder_pod(self) -> dict[str, Any] | None:
        with contextlib.suppress(errors.NotFound):
            return await self.kube.get(PODS, names.BUILDER_POD, namespace=NS)
        return None

    def pods_created(self, label: str, kind: str = "Pod") -> list[str]:
        """Names of Pods (or of objects of ``kind``) ever created with ``label`` (the emulator's history)."""
        return [
            obj["metadata"]["name"]
            for _, event, obj in self.emulator.history
            if event == "ADDED" and obj.get("kind") == kind and label in (obj["metadata"].get("labels") or {})
        ]

    async def machineosbuilds(self) -> list[dict[str, Any]]:
        items, _ = await self.kube.list(MACHINEOSBUILDS)
        return sorted(items, key=lambda b: str(b["metadata"]["name"]))

    def build_states(self, name: str) -> list[str]:
        """Every True condition MachineOSBuild ``name`` showed, in order (from the emulator's history)."""
        seen: list[str] = []
        for _, _, obj in self.emulator.history:
            if obj.get("kind") == "MachineOSBuild" and obj["metadata"]["name"] == name:
                state = machineosbuild.state(obj)
                if state and (not seen or seen[-1] != state):
                    seen.append(state)
        return seen

    def pool_build_states(self) -> list[str]:
        """Every True build condition of the pool, in order (from the emulator's history)."""
        seen: list[str] = []
        for _, _, obj in self.emulator.history:
            if obj.get("kind") == "MachineConfigPool" and obj["metadata"]["name"] == "worker":
                for cond in (obj.get("status") or {}).get("conditions") or []:
                    if cond["type"] in names.BUILD_CONDITIONS and cond["status"] == "True":
                        if not seen or seen[-1] != cond["type"]:
                            seen.append(cond["type"])
        return seen


@contextlib.asynccontextmanager
async def running_cluster(
    emulator: Any,
    admin_kubeconfig: Path,
    registry: Registry,
    base_image: str,
    workdir: Path,
    mco_fixtures: Path,
) -> AsyncIterator[Cluster]:
    """Install the build config and pool, then run the supervisor and the kubelet stand-in."""
    async with kclient.connect(KubeSettings(kubeconfig=str(admin_kubeconfig))) as kube:
        cluster = Cluster(kube, emulator, registry, base_image, workdir)
        await cluster.install(mco_fixtures)
        kubelet = cluster.kubelet()
        sup_kubeconfig = emulator.write_kubeconfig_for_service_account(
            workdir / "supervisor.kubeconfig", NS, names.SUPERVISOR_SA
        )
        settings = SupervisorSettings(
            namespace=NS,
            http_host="127.0.0.1",
            http_port=0,
            identity="sup",
            image="quay.io/mcosup/mcosup:test",
            builder_backoff=0.3,
            webhook_tls="off",  # admission is not what these tests are about (and would bind :9443)
        )
        tasks = [
            asyncio.create_task(kubelet.run(), name="kubelet"),
            asyncio.create_task(
                # One supervisor: the default Lease timings, so a loaded machine cannot make it flap.
                run_supervisor(settings, KubeSettings(kubeconfig=str(sup_kubeconfig), watch_timeout=60)),
                name="supervisor",
            ),
        ]
        try:
            yield cluster
        finally:
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
