"""The opt-in controller with MachineOSConfigs, against the emulator (contract sections 2 and 11).

An admin's MachineOSConfig opts its pool in with no label or ConfigMap, and is validated field by
field.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from test_optin import builder_pods, condition, load_fixture_pools, set_pod_phase

from clusterkit import NS, StartSupervisor
from mcosup.kube import client as kclient
from mcosup.kube import errors
from mcosup.kube.resources import EVENTS, MACHINEOSCONFIGS, SECRETS
from mcosup.model import names
from mcosup.sim.objects import docker_secret
from waiting import eventually

PUSHSPEC = "registry.local:5000/os/image:latest"


def admins(pool: str = "worker", push: str = "admin-push", pull: str | None = None) -> dict[str, Any]:
    spec: dict[str, Any] = {
        "machineConfigPool": {"name": pool},
        "imageBuilder": {"imageBuilderType": "Job"},
        "renderedImagePushSecret": {"name": push},
        "renderedImagePushSpec": "registry.example.com/admin/os:latest",
    }
    if pull is not None:
        spec["baseImagePullSecret"] = {"name": pull}
    return {
        "apiVersion": names.API_VERSION,
        "kind": "MachineOSConfig",
        "metadata": {"name": pool},
        "spec": spec,
    }


async def mosc(kube: kclient.Kube, name: str = "worker") -> dict[str, Any] | None:
    try:
        return await kube.get(MACHINEOSCONFIGS, name)
    except errors.NotFound:
        return None


@pytest.fixture
async def cluster(kube: kclient.Kube, mco_fixtures: Path) -> kclient.Kube:
    await load_fixture_pools(kube, mco_fixtures)
    return kube


async def test_an_admins_machineosconfig_opts_in_with_no_label_nor_configmap(
    cluster: kclient.Kube, start_supervisor: StartSupervisor
) -> None:
    kube = cluster
    await start_supervisor()
    await kube.create(MACHINEOSCONFIGS, admins())

    async def invalid() -> bool:
        cond = await condition(kube, "worker", names.LAYERING_READY)
        return cond is not None and cond["reason"] == names.REASON_INVALID_CONFIG

    await eventually(invalid, what="LayeringReady=False InvalidConfig")
    cond = await condition(kube, "worker", names.LAYERING_READY)
    assert cond["message"].startswith(
        'MachineOSConfig worker spec.renderedImagePushSecret.name: Secret "admin-push" does not exist '
        f"in namespace {NS}"
    ), cond["message"]
    assert "on-cluster-build-config" not in cond["message"]
    assert await builder_pods(kube) == []
    events, _ = await kube.list(EVENTS, namespace="default")
    assert any(e["reason"] == "InvalidConfig" and e["involvedObject"]["name"] == "worker" for e in events)

    # The Secret it names, and nothing else: the builder starts (no baseImagePullSecret: anonymous pull).
    await kube.create(
        SECRETS, docker_secret("admin-push", NS, "registry.example.com", ("u", "p")), namespace=NS
    )

    async def one_builder() -> bool:
        return len(await builder_pods(kube)) == 1

    await eventually(one_builder, what="the builder pod")
    await set_pod_phase(kube, (await builder_pods(kube))[0], "Running")

    async def ready() -> bool:
        cond = await condition(kube, "worker", names.LAYERING_READY)
        return cond is not None and cond["status"] == "True"

    await eventually(ready, what="LayeringReady=True")
    master = await condition(kube, "master", names.LAYERING_READY)
    assert master is None, "a pool nothing opts in got a layering condition"

    # Deleting it is the opt-out: the builder goes, and the pool's layering conditions.
    await kube.delete(MACHINEOSCONFIGS, "worker")

    async def opted_out() -> bool:
        cond = await condition(kube, "worker", names.LAYERING_READY)
        return cond is None and await builder_pods(kube) == []

    await eventually(opted_out, what="no builder pod, no LayeringReady")


async def _count(kube: kclient.Kube, n: int) -> bool:
    return len(await builder_pods(kube)) == n
