"""The opt-in controller with MachineOSConfigs, against the emulator (contract sections 2 and 11).

The label makes a managed MachineOSConfig that follows the ConfigMaps and goes with the label; an
admin's MachineOSConfig opts its pool in with no label or ConfigMap, is validated field by field, and is
never written by mcosup.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from test_optin import builder_pods, condition, label, load_fixture_pools, set_pod_phase

from clusterkit import NS, StartSupervisor, install_build_config
from mcosup.kube import client as kclient
from mcosup.kube import errors
from mcosup.kube.resources import CONFIGMAPS, EVENTS, MACHINECONFIGPOOLS, MACHINEOSCONFIGS, SECRETS
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


async def test_the_label_makes_a_managed_machineosconfig_that_follows_the_configmaps(
    cluster: kclient.Kube, start_supervisor: StartSupervisor
) -> None:
    kube = cluster
    await install_build_config(kube)
    await start_supervisor()
    await label(kube, "worker", True)

    async def made() -> bool:
        return await mosc(kube) is not None

    await eventually(made, what="the managed MachineOSConfig")
    obj = await mosc(kube)
    assert obj is not None
    assert obj["metadata"]["labels"] == {names.MANAGED_BY_LABEL: "true"}
    assert not obj["metadata"].get("ownerReferences")
    assert obj["spec"]["machineConfigPool"] == {"name": "worker"}
    assert obj["spec"]["renderedImagePushSpec"] == PUSHSPEC
    assert obj["spec"]["renderedImagePushSecret"] == {"name": "push-secret"}
    assert obj["spec"]["baseImagePullSecret"] == {"name": "pull-secret"}
    assert obj["spec"]["imageBuilder"] == {"imageBuilderType": "Job"}
    assert await mosc(kube, "master") is None

    # The ConfigMaps change: the object follows.
    await install_build_config(kube, pullspec="registry.local:5000/os/other:latest")
    await kube.create(
        CONFIGMAPS,
        {"metadata": {"name": names.CUSTOM_DOCKERFILE_CM}, "data": {"worker": "RUN echo hi\n"}},
        namespace=NS,
    )

    async def followed() -> bool:
        spec = ((await mosc(kube)) or {}).get("spec") or {}
        return spec.get("renderedImagePushSpec") == "registry.local:5000/os/other:latest" and spec.get(
            "containerFile"
        ) == [{"containerfileArch": "NoArch", "content": "RUN echo hi\n"}]

    await eventually(followed, what="the managed MachineOSConfig in step with the ConfigMaps")

    # The label goes: so does the object; back with the label, and gone with the pool.
    await label(kube, "worker", False)

    async def gone() -> bool:
        return await mosc(kube) is None

    await eventually(gone, what="the managed MachineOSConfig deleted with the label")
    await label(kube, "worker", True)
    await eventually(made, what="the managed MachineOSConfig made again")
    await kube.delete(MACHINECONFIGPOOLS, "worker")
    await eventually(gone, what="the managed MachineOSConfig deleted with the pool")


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


async def test_an_admins_machineosconfig_is_never_written_and_wins_over_the_label(
    cluster: kclient.Kube, start_supervisor: StartSupervisor, emulator: Any
) -> None:
    kube = cluster
    await install_build_config(kube)
    await kube.create(
        SECRETS, docker_secret("admin-push", NS, "registry.example.com", ("u", "p")), namespace=NS
    )
    created = await kube.create(MACHINEOSCONFIGS, admins(pull="pull-secret"))
    await start_supervisor()
    # The label on top, a ConfigMap that says otherwise, and a pool with no object of its own.
    await label(kube, "worker", True)
    await label(kube, "master", True)

    async def master_made() -> bool:
        return await mosc(kube, "master") is not None

    await eventually(master_made, what="the master pool's managed MachineOSConfig")
    await eventually(lambda: _count(kube, 1), what="the builder pod")
    await install_build_config(kube, pullspec="registry.local:5000/os/changed:latest")

    async def master_followed() -> bool:
        spec = ((await mosc(kube, "master")) or {}).get("spec") or {}
        return bool(spec.get("renderedImagePushSpec") == "registry.local:5000/os/changed:latest")

    await eventually(master_followed, what="the managed one in step")
    await label(kube, "worker", False)
    await eventually(lambda: _count(kube, 1), what="the builder pod still there")

    obj = await mosc(kube)
    assert obj is not None
    assert obj["metadata"]["resourceVersion"] == created["metadata"]["resourceVersion"]
    assert obj["spec"] == created["spec"]
    writes = [
        (r.method, r.path)
        for r in emulator.requests
        if r.user.startswith("sup-")
        and r.method in ("POST", "PUT", "PATCH", "DELETE")
        and "/machineosconfigs/worker" in r.path
    ]
    assert writes == [], writes

    # Without the label the admin's object still opts the pool in: its layering state stays.
    cond = await condition(kube, "worker", names.LAYERING_READY)
    assert cond is not None


async def _count(kube: kclient.Kube, n: int) -> bool:
    return len(await builder_pods(kube)) == n


async def test_a_managed_machineosconfig_the_api_refuses_is_reported_once_and_the_label_still_works(
    cluster: kclient.Kube, start_supervisor: StartSupervisor
) -> None:
    kube = cluster
    # A pullspec the ConfigMap accepts but the CRD's rule does not (its host has no dot).
    await install_build_config(kube, pullspec="localhost:5000/os/image:latest")
    await start_supervisor()
    await label(kube, "worker", True)

    async def refused() -> bool:
        events, _ = await kube.list(EVENTS, namespace="default")
        return any(
            e["reason"] == "MachineOSConfigRefused" and e["involvedObject"]["name"] == "worker"
            for e in events
        )

    await eventually(refused, what="a Warning Event on the pool")
    assert await mosc(kube) is None
    await eventually(lambda: _count(kube, 1), what="the builder pod: the label form still builds")
    events, _ = await kube.list(EVENTS, namespace="default")
    assert [e.get("count", 1) for e in events if e["reason"] == "MachineOSConfigRefused"] == [1]

    # A pullspec it accepts: made, with an Event on it.
    await install_build_config(kube)

    async def created_event() -> bool:
        events, _ = await kube.list(EVENTS, namespace="default")
        return any(
            e["reason"] == "Created" and e["involvedObject"].get("kind") == "MachineOSConfig" for e in events
        )

    await eventually(created_event, what="the managed MachineOSConfig made, with an Event")
