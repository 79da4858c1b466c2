"""A planned build Pod, run by the kubelet stand-in with real buildah: a context split over several
ConfigMaps (gzipped) arrives whole in the image, and the digest comes back as the termination message."""

from __future__ import annotations

import asyncio
import base64
import contextlib
import json
import os
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from mcosup.builder import buildplan as bp
from mcosup.kube import client as kclient
from mcosup.kube.resources import CONFIGMAPS, PODS, SECRETS
from mcosup.model import rendering
from mcosup.runtime.settings import KubeSettings
from mcosup.sim.kubelet import Kubelet
from mcosup.sim.registry import Registry, read_image
from waiting import eventually

pytestmark = pytest.mark.slow
NS = "default"


@pytest.fixture
async def kube(admin_kubeconfig: Path) -> AsyncIterator[kclient.Kube]:
    async with kclient.connect(KubeSettings(kubeconfig=str(admin_kubeconfig))) as k:
        yield k


@pytest.fixture
async def kubelet(kube: kclient.Kube, emulator: Any, tmp_path: Path) -> AsyncIterator[Kubelet]:
    k = Kubelet(kube, tmp_path / "kubelet", log_sink=emulator.set_pod_log)
    task = asyncio.create_task(k.run())
    await k.listed.wait()
    yield k
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await task


def secret(name: str, registry: Registry, legacy: bool) -> dict[str, Any]:
    assert registry.credentials is not None
    auths = {registry.host: {"auth": base64.b64encode(":".join(registry.credentials).encode()).decode()}}
    key = ".dockercfg" if legacy else ".dockerconfigjson"
    return {
        "metadata": {"name": name},
        "type": "kubernetes.io/dockercfg" if legacy else "kubernetes.io/dockerconfigjson",
        "data": {key: base64.b64encode(json.dumps(auths if legacy else {"auths": auths}).encode()).decode()},
    }


async def test_split_gzipped_context_builds_and_reports_the_digest(
    kube: kclient.Kube, kubelet: Kubelet, registry: Registry, base_image: str
) -> None:
    blobs = {f"/usr/share/big/{i}": os.urandom(400 * 1024) for i in range(3)}
    mc = {
        "metadata": {"name": "50-big"},
        "spec": {
            "config": {
                "ignition": {"version": "3.2.0"},
                "storage": {
                    "files": [
                        {"path": p, "contents": {"source": "data:;base64," + base64.b64encode(d).decode()}}
                        for p, d in blobs.items()
                    ]
                },
            }
        },
    }
    result = rendering.render("worker", [mc])
    plan = bp.plan(
        bp.BuildInputs(
            "worker", result.name, result.spec, base_image, "", f"{registry.host}/os/worker:latest"
        )
    )
    opts = bp.PodOptions(namespace=NS, buildah_image="quay.io/buildah/stable:test", tls_verify=False)
    cms = bp.configmaps(plan, opts)
    assert len(cms) == 2 and next(iter(cms[0]["binaryData"])).startswith("context.tar.gz.")

    await kube.create(SECRETS, secret("pull", registry, legacy=False), namespace=NS)
    await kube.create(SECRETS, secret("push", registry, legacy=True), namespace=NS)
    for cm in cms:
        await kube.create(CONFIGMAPS, cm, namespace=NS)
    pod = bp.build_pod(
        plan, opts, pull=bp.SecretRef("pull"), push=bp.SecretRef("push", "kubernetes.io/dockercfg")
    )
    await kube.create(PODS, pod, namespace=NS)

    done: dict[str, Any] = {}

    async def finished() -> bool:
        done.update(await kube.get(PODS, plan.name, namespace=NS))
        return done.get("status", {}).get("phase") in ("Succeeded", "Failed")

    await eventually(finished, what="build pod finished", within=90)
    terminated = done["status"]["containerStatuses"][0]["state"]["terminated"]
    assert done["status"]["phase"] == "Succeeded", terminated.get("message")
    digest = terminated["message"].strip()
    repo, tag = plan.target.removeprefix(registry.host + "/").split(":")
    assert await asyncio.to_thread(registry.manifest_digest, repo, tag) == digest
    _, files = await asyncio.to_thread(read_image, registry, repo, digest)
    for path, data in blobs.items():
        assert files[path].data == data
