"""Opt-in, the builder pod's life and opt-out, against the emulator (contract section 2)."""

from __future__ import annotations

import asyncio
import datetime
import itertools
from pathlib import Path
from typing import Any

import pytest
import yaml

from clusterkit import NS, StartSupervisor, install_build_config
from mcosup.kube import client as kclient
from mcosup.kube import errors
from mcosup.kube.resources import (
    CONFIGMAPS,
    EVENTS,
    LEASES,
    MACHINECONFIGPOOLS,
    MACHINECONFIGS,
    PODS,
    SECRETS,
)
from mcosup.model import conditions, names
from waiting import eventually


async def load_fixture_pools(kube: kclient.Kube, fixtures: Path) -> None:
    for name in ("master.machineconfigpool.yaml", "worker.machineconfigpool.yaml"):
        pool = yaml.safe_load((fixtures / "objects" / name).read_text())
        pool["metadata"] = {"name": pool["metadata"]["name"], "labels": pool["metadata"].get("labels") or {}}
        pool.pop("status", None)
        await kube.create(MACHINECONFIGPOOLS, pool)


async def label(kube: kclient.Kube, pool: str, on: bool) -> None:
    await kube.patch(
        MACHINECONFIGPOOLS, pool, {"metadata": {"labels": {names.LAYERING_ENABLED: "" if on else None}}}
    )


async def builder_pods(kube: kclient.Kube) -> list[dict[str, Any]]:
    pods, _ = await kube.list(PODS, namespace=NS, label_selector="k8s-app=machine-os-builder")
    return [p for p in pods if not p["metadata"].get("deletionTimestamp")]


async def condition(kube: kclient.Kube, pool: str, type_: str) -> Any:
    obj = await kube.get(MACHINECONFIGPOOLS, pool)
    return conditions.find((obj.get("status") or {}).get("conditions"), type_)


async def set_pod_phase(
    kube: kclient.Kube, pod: dict[str, Any], phase: str, exit_code: int | None = None
) -> None:
    now = datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    state: dict[str, Any] = {"running": {"startedAt": now}}
    if exit_code is not None:
        state = {"terminated": {"exitCode": exit_code, "startedAt": now, "finishedAt": now}}
    status = {
        "phase": phase,
        "startTime": now,
        "containerStatuses": [
            {
                "name": "machine-os-builder",
                "ready": phase == "Running",
                "state": state,
                "restartCount": 0,
                "image": "mcosup:test",
                "imageID": "",
                "started": phase == "Running",
            }
        ],
    }
    await kube.patch_status(PODS, pod["metadata"]["name"], {"status": status}, namespace=NS)


@pytest.fixture
async def cluster(kube: kclient.Kube, mco_fixtures: Path) -> kclient.Kube:
    await load_fixture_pools(kube, mco_fixtures)
    return kube


async def test_opt_in_starts_one_builder_and_opt_out_removes_it(
    cluster: kclient.Kube, start_supervisor: StartSupervisor
) -> None:
    kube = cluster
    await install_build_config(kube)
    await start_supervisor()
    await label(kube, "worker", True)
    await eventually(lambda: _count(kube, 1), what="one builder pod")
    pod = (await builder_pods(kube))[0]
    spec = pod["spec"]
    assert spec["serviceAccountName"] == "machine-os-builder"
    assert spec["restartPolicy"] == "Never"
    assert spec["containers"][0]["command"] == ["mcosup", "builder"]
    assert pod["metadata"]["labels"]["k8s-app"] == "machine-os-builder"

    await set_pod_phase(kube, pod, "Running")

    async def ready(pool: str) -> bool:
        cond = await condition(kube, pool, "LayeringReady")
        return cond is not None and cond["status"] == "True"

    await eventually(lambda: ready("worker"), what="worker LayeringReady=True")
    await label(kube, "master", True)
    await eventually(lambda: ready("master"), what="master LayeringReady=True")
    assert len(await builder_pods(kube)) == 1

    await label(kube, "worker", False)
    await label(kube, "master", False)
    await eventually(lambda: _count(kube, 0), what="builder pod deleted")
    for pool in ("worker", "master"):
        await eventually(lambda p=pool: _no_layering_conditions(kube, p), what=f"{pool} conditions removed")


async def _count(kube: kclient.Kube, n: int) -> bool:
    return len(await builder_pods(kube)) == n


async def _no_layering_conditions(kube: kclient.Kube, pool: str) -> bool:
    obj = await kube.get(MACHINECONFIGPOOLS, pool)
    types = {c["type"] for c in (obj.get("status") or {}).get("conditions") or []}
    return not types & {"LayeringReady", *names.BUILD_CONDITIONS}


@pytest.mark.parametrize(
    ("breakage", "expected"),
    [
        ("no-configmap", "on-cluster-build-config does not exist"),
        ("empty-key", "data.finalImagePullspec is empty"),
        ("missing-secret", "Secret openshift-machine-config-operator/push-secret"),
        ("wrong-type-secret", "must be of type kubernetes.io/dockerconfigjson"),
        ("bad-pullspec", "is not an image reference"),
        ("unknown-builder", "imageBuilderType='buildah-daemon' is not supported"),
    ],
)
async def test_invalid_config_means_no_builder_and_a_named_problem(
    cluster: kclient.Kube, start_supervisor: StartSupervisor, breakage: str, expected: str
) -> None:
    kube = cluster
    await install_build_config(kube)
    if breakage == "no-configmap":
        await kube.delete(CONFIGMAPS, names.BUILD_CONFIG_CM, namespace=NS)
    elif breakage == "empty-key":
        await kube.patch(
            CONFIGMAPS, names.BUILD_CONFIG_CM, {"data": {"finalImagePullspec": ""}}, namespace=NS
        )
    elif breakage == "missing-secret":
        await kube.delete(SECRETS, "push-secret", namespace=NS)
    elif breakage == "wrong-type-secret":
        await kube.delete(SECRETS, "push-secret", namespace=NS)
        await kube.create(
            SECRETS, {"metadata": {"name": "push-secret"}, "type": "Opaque", "data": {}}, namespace=NS
        )
    elif breakage == "bad-pullspec":
        await kube.patch(
            CONFIGMAPS, names.BUILD_CONFIG_CM, {"data": {"finalImagePullspec": "::bad::"}}, namespace=NS
        )
    elif breakage == "unknown-builder":
        await kube.patch(
            CONFIGMAPS, names.BUILD_CONFIG_CM, {"data": {"imageBuilderType": "buildah-daemon"}}, namespace=NS
        )
    await start_supervisor()
    await label(kube, "worker", True)

    async def invalid() -> bool:
        cond = await condition(kube, "worker", "LayeringReady")
        return cond is not None and cond["reason"] == "InvalidConfig"

    await eventually(invalid, what="LayeringReady=False InvalidConfig")
    cond = await condition(kube, "worker", "LayeringReady")
    assert cond["status"] == "False" and expected in cond["message"], cond["message"]
    assert await builder_pods(kube) == []
    events, _ = await kube.list(EVENTS, namespace="default")  # cluster-scoped object's events
    assert any(e["reason"] == "InvalidConfig" and e["involvedObject"]["name"] == "worker" for e in events)

    # Fixing the config alone starts the builder.
    if breakage == "wrong-type-secret":
        await kube.delete(SECRETS, "push-secret", namespace=NS)
    if breakage == "unknown-builder":
        await kube.patch(
            CONFIGMAPS, names.BUILD_CONFIG_CM, {"data": {"imageBuilderType": None}}, namespace=NS
        )
    await install_build_config(kube)
    await eventually(lambda: _count(kube, 1), what="builder pod after the fix")


async def test_builder_pod_is_recreated_with_growing_delays_and_adopted_after_restart(
    cluster: kclient.Kube, start_supervisor: StartSupervisor, emulator: Any
) -> None:
    kube = cluster
    await install_build_config(kube)
    sup = await start_supervisor()
    await label(kube, "worker", True)
    created: list[float] = []
    uids: list[str] = []
    loop = asyncio.get_running_loop()
    for _ in range(4):
        await eventually(lambda: _new_pod(kube, uids), what="a new builder pod")
        created.append(loop.time())
        pod = (await builder_pods(kube))[0]
        await set_pod_phase(kube, pod, "Failed", exit_code=1)
    gaps = [b - a for a, b in itertools.pairwise(created)]
    assert gaps[-1] > gaps[0], f"delays between recreations did not grow: {gaps}"

    async def crashlooping() -> bool:
        cond = await condition(kube, "worker", "LayeringReady")
        return cond is not None and cond["reason"] == "BuilderCrashLooping"

    await eventually(crashlooping, what="BuilderCrashLooping")

    # Deleting the pod behind the supervisor's back: recreated too.
    await eventually(lambda: _new_pod(kube, uids), what="pod after crash loop")
    pod = (await builder_pods(kube))[0]
    await kube.delete(PODS, pod["metadata"]["name"], namespace=NS)
    await eventually(lambda: _new_pod(kube, uids), what="pod recreated after deletion")

    # A restarted supervisor adopts the existing pod instead of creating a second one.
    await sup.stop()
    before = (await builder_pods(kube))[0]["metadata"]["uid"]
    await set_pod_phase(kube, (await builder_pods(kube))[0], "Running")
    await start_supervisor(identity="sup-a")

    async def ready() -> bool:
        cond = await condition(kube, "worker", "LayeringReady")
        return cond is not None and cond["status"] == "True"

    await eventually(ready, what="LayeringReady after restart")
    pods = await builder_pods(kube)
    assert [p["metadata"]["uid"] for p in pods] == [before]
    creates = [
        e
        for e in emulator.history
        if e[1] == "ADDED" and e[2].get("kind") == "Pod" and e[2]["metadata"]["name"] == "machine-os-builder"
    ]
    assert len(creates) == len(set(uids))


async def _new_pod(kube: kclient.Kube, uids: list[str]) -> bool:
    pods = await builder_pods(kube)
    fresh = [
        p
        for p in pods
        if p["metadata"]["uid"] not in uids
        and (p.get("status") or {}).get("phase") not in ("Failed", "Succeeded")
    ]
    if fresh:
        uids.append(fresh[0]["metadata"]["uid"])
        return True
    return False


async def test_two_supervisors_only_one_acts_and_the_other_takes_over(
    cluster: kclient.Kube, start_supervisor: StartSupervisor, emulator: Any
) -> None:
    kube = cluster
    await install_build_config(kube)
    a = await start_supervisor(identity="sup-a")
    b = await start_supervisor(identity="sup-b")
    await label(kube, "worker", True)
    await eventually(lambda: _count(kube, 1), what="one builder pod")
    lease = await kube.get(
        LEASES,
        "mcosup-supervisor",
        namespace=NS,
    )
    leader = lease["spec"]["holderIdentity"]
    assert leader in ("sup-a", "sup-b")
    await eventually(lambda: _ready(kube, "worker", "False"), what="LayeringReady reported")
    assert _writers(emulator) == {leader}, "the standby wrote to the cluster"

    # Kill the leader; the standby takes over and keeps the single pod.
    (a if leader == "sup-a" else b).task.cancel()
    survivor = "sup-b" if leader == "sup-a" else "sup-a"

    async def taken_over() -> bool:
        got = await kube.get(
            LEASES,
            "mcosup-supervisor",
            namespace=NS,
        )
        return bool(got["spec"].get("holderIdentity") == survivor)

    await eventually(taken_over, what="standby takes the lease")
    pod = (await builder_pods(kube))[0]
    await kube.delete(PODS, pod["metadata"]["name"], namespace=NS)
    await eventually(lambda: _count(kube, 1), what="new leader recreates the pod")
    creates = [
        e
        for e in emulator.history
        if e[1] == "ADDED" and e[2].get("kind") == "Pod" and e[2]["metadata"]["name"] == "machine-os-builder"
    ]
    assert len(creates) == 2
    assert _writers(emulator) == {leader, survivor}


def _writers(emulator: Any) -> set[str]:
    """Supervisor identities that wrote anything but their Lease."""
    return {
        r.user
        for r in emulator.requests
        if r.method in ("POST", "PATCH", "PUT", "DELETE")
        and r.user.startswith("sup-")
        and "/leases" not in r.path
    }


async def _ready(kube: kclient.Kube, pool: str, status: str) -> bool:
    cond = await condition(kube, pool, "LayeringReady")
    return cond is not None and cond["status"] == status


async def test_render_creates_rendered_config_and_points_the_pool_at_it(
    cluster: kclient.Kube, start_supervisor: StartSupervisor, mco_fixtures: Path
) -> None:
    kube = cluster
    for name in ("99_openshift-machineconfig_worker.yaml", "test-config.machineconfig.yaml"):
        mc = yaml.safe_load((mco_fixtures / "objects" / name).read_text())
        mc["metadata"] = {"name": mc["metadata"]["name"], "labels": mc["metadata"].get("labels") or {}}
        await kube.create(MACHINECONFIGS, mc)
    await start_supervisor()

    async def rendered() -> bool:
        pool = await kube.get(MACHINECONFIGPOOLS, "worker")
        name = ((pool.get("spec") or {}).get("configuration") or {}).get("name", "")
        return name.startswith("rendered-worker-")

    await eventually(rendered, what="worker rendered")
    pool = await kube.get(MACHINECONFIGPOOLS, "worker")
    name = pool["spec"]["configuration"]["name"]
    mc = await kube.get(MACHINECONFIGS, name)
    assert mc["metadata"]["ownerReferences"][0]["name"] == "worker"
    sources = [s["name"] for s in pool["spec"]["configuration"]["source"]]
    assert sources == sorted(sources) and sources
    # A changed component yields a new rendered config; the old one is kept (referenced by nothing, but
    # among the newest five).
    extra = {
        "apiVersion": "machineconfiguration.openshift.io/v1",
        "kind": "MachineConfig",
        "metadata": {"name": "50-extra", "labels": {names.ROLE_LABEL: "worker"}},
        "spec": {"kernelArguments": ["quiet"]},
    }
    await kube.create(MACHINECONFIGS, extra)

    async def rerendered() -> bool:
        p = await kube.get(MACHINECONFIGPOOLS, "worker")
        return bool(p["spec"]["configuration"]["name"] != name)

    await eventually(rerendered, what="re-render after a new MachineConfig")
    await kube.get(MACHINECONFIGS, name)
    with pytest.raises(errors.NotFound):
        await kube.get(MACHINECONFIGS, "rendered-worker-does-not-exist")
