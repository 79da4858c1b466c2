"""Pruning a deleted MachineOSBuild's image, on the emulator with a real registry (contract section 11).

Each test plays the builder's part by hand: a MachineOSBuild in ``deploy/crds/``'s shape with the
prune finalizer and a Succeeded status naming a real pushed image, a node that may name that image,
then the deletion, the plan and the executor. What a user would see is asserted: whether the object
is still there, whether the registry still serves the image, the Event and the MachineOSConfig's
condition.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import dataclasses
import datetime as dt
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from mcosup.builder import manifests, prune, pruneplan
from mcosup.kube import client as kclient
from mcosup.kube import errors
from mcosup.kube.resources import EVENTS, MACHINEOSBUILDS, MACHINEOSCONFIGS, NODES
from mcosup.kube.transport import Transport
from mcosup.model import conditions, names
from mcosup.model.objects import Obj
from mcosup.runtime.settings import KubeSettings
from mcosup.sim.apiserver import Emulator
from mcosup.sim.objects import machineosconfig
from mcosup.sim.registry import Registry, build_base_image, free_port

DEPLOY_CRDS = Path(__file__).resolve().parents[2] / "deploy" / "crds"
BUILD = "worker-0123456789abcdef"


@pytest.fixture
async def kube(tmp_path: Path) -> AsyncIterator[kclient.Kube]:
    """An admin client of an emulator that serves our own CRDs (``deploy/crds/``)."""
    async with Emulator() as emu:
        for crd in sorted(DEPLOY_CRDS.glob("*.yaml")):
            await emu.create_object(yaml.safe_load(crd.read_text()))
        kubeconfig = emu.write_kubeconfig(tmp_path / "admin.kubeconfig")
        async with kclient.connect(KubeSettings(kubeconfig=str(kubeconfig))) as k:
            yield k


@pytest.fixture
async def http() -> AsyncIterator[Transport]:
    async with manifests.registry_session() as session:
        yield session


def auths_for(registry: Registry) -> dict[str, Any]:
    if registry.credentials is None:
        return {}
    return {registry.host: {"auth": base64.b64encode(":".join(registry.credentials).encode()).decode()}}


async def create_build(kube: kclient.Kube, host: str, image: str) -> tuple[Obj, Obj]:
    """The worker MachineOSConfig and one Succeeded MachineOSBuild of it that recorded ``image``."""
    mosc = await kube.create(
        MACHINEOSCONFIGS, machineosconfig("worker", f"{host}/os/base:latest", push_secret="push-secret")
    )
    await kube.create(
        MACHINEOSBUILDS,
        {
            "apiVersion": names.API_VERSION,
            "kind": names.MACHINEOSBUILD_KIND,
            "metadata": {"name": BUILD, "finalizers": [names.PRUNE_IMAGE_FINALIZER]},
            "spec": {
                "machineConfig": {"name": "rendered-worker-" + "3f2a9c1b" * 4},
                "machineOSConfig": {"name": "worker"},
                "renderedImagePushSpec": f"{host}/os/base:{BUILD}",
            },
        },
    )
    when = "2026-12-01T10:00:00Z"
    conds = [
        {"type": t, "status": str(t == "Succeeded"), "reason": t, "message": t, "lastTransitionTime": when}
        for t in names.MOSB_CONDITIONS
    ]
    status = {"conditions": conds, "digestedImagePushSpec": image, "buildStart": when}
    mosb = await kube.patch_status(MACHINEOSBUILDS, BUILD, {"status": status})
    return mosc, mosb


async def plan_once(kube: kclient.Kube) -> tuple[Obj, Obj, pruneplan.ImageStep]:
    """What the builder reads and decides for the worker MachineOSConfig: the one image step."""
    mosbs, _ = await kube.list(MACHINEOSBUILDS)
    nodes, _ = await kube.list(NODES)
    mosc = await kube.get(MACHINEOSCONFIGS, "worker")
    plan = pruneplan.plan_pruning(
        "worker",
        [pruneplan.build_facts(m) for m in mosbs],
        current=None,
        history=(names.DEFAULT_BUILD_HISTORY_LIMIT, None),
        in_use=pruneplan.images_in_use(nodes),
        now=dt.datetime.now(dt.UTC),
    )
    (step,) = plan.images
    (mosb,) = [m for m in mosbs if m["metadata"]["name"] == step.build]
    return mosb, mosc, step


async def prune_once(kube: kclient.Kube, http: Transport, registry: Registry) -> prune.Pruned:
    """Plan, then execute the image step as the builder does."""
    mosb, mosc, step = await plan_once(kube)
    return await prune.prune_build_image(kube, http, mosb, mosc, step, auths_for(registry), tls_verify=False)


async def build_exists(kube: kclient.Kube) -> bool:
    with contextlib.suppress(errors.NotFound):
        await kube.get(MACHINEOSBUILDS, BUILD)
        return True
    return False


async def test_a_deleted_build_waits_for_its_nodes_then_its_image_is_deleted(
    kube: kclient.Kube, http: Transport, registry: Registry, base_image: str
) -> None:
    digest = base_image.split("@")[1]
    await create_build(kube, registry.host, base_image)
    node = {"metadata": {"name": "worker-0", "annotations": {names.CURRENT_IMAGE: base_image}}}
    await kube.create(NODES, node)

    await kube.delete(MACHINEOSBUILDS, BUILD)
    waiting = await prune_once(kube, http, registry)
    assert (waiting.outcome, waiting.released) == ("waiting", False)
    assert "worker-0" in waiting.message
    assert await build_exists(kube), "the finalizer holds the build while a node boots its image"
    assert await asyncio.to_thread(registry.manifest_digest, "os/base", digest) == digest

    # The node moves off the image: the next pass deletes it and lets the object go.
    await kube.patch(NODES, "worker-0", {"metadata": {"annotations": {names.CURRENT_IMAGE: None}}})
    done = await prune_once(kube, http, registry)
    assert (done.outcome, done.released) == ("deleted", True)
    assert not await build_exists(kube)
    assert await asyncio.to_thread(registry.manifest_digest, "os/base", digest) is None
    mosc = await kube.get(MACHINEOSCONFIGS, "worker")
    assert conditions.is_true(mosc, names.IMAGES_PRUNED)


async def test_a_registry_that_refuses_delete_gives_an_event_and_a_condition_and_nothing_stuck(
    kube: kclient.Kube, http: Transport, tmp_path: Path
) -> None:
    async with Registry(tmp_path / "nodelete", delete_enabled=False) as registry:
        image = await build_base_image(registry)
        digest = image.split("@")[1]
        await create_build(kube, registry.host, image)
        await kube.delete(MACHINEOSBUILDS, BUILD)

        result = await prune_once(kube, http, registry)
        assert (result.outcome, result.released) == ("refused", True)
        assert not await build_exists(kube), "a refusing registry never leaves the build stuck"
        assert await asyncio.to_thread(registry.manifest_digest, "os/base", digest) == digest

        mosc = await kube.get(MACHINEOSCONFIGS, "worker")
        cond = conditions.find(mosc["status"]["conditions"], names.IMAGES_PRUNED)
        assert cond is not None
        assert (cond["status"], cond["reason"]) == ("False", prune.REASON_REFUSED)
        for text in (BUILD, image, registry.host, "HTTP 405", "storage.delete.enabled", "push-secret"):
            assert text in cond["message"], text

        events, _ = await kube.list(EVENTS, namespace="default")
        (event,) = [e for e in events if e["reason"] == prune.REASON_REFUSED]
        assert event["type"] == "Warning"
        assert event["involvedObject"]["kind"] == names.MACHINEOSCONFIG_KIND
        assert event["involvedObject"]["name"] == "worker"
        assert event["message"] == cond["message"]


async def test_an_unreachable_registry_is_retried_then_given_up_on_the_last_try(
    kube: kclient.Kube, http: Transport
) -> None:
    host = f"127.0.0.1:{free_port()}"  # nothing listens there
    image = f"{host}/os/base@sha256:{'c' * 64}"
    await create_build(kube, host, image)
    await kube.delete(MACHINEOSBUILDS, BUILD)

    mosb, mosc, step = await plan_once(kube)
    assert (step.action, step.last_try) == ("delete", False)
    retry = await prune.prune_build_image(kube, http, mosb, mosc, step, {}, tls_verify=False)
    assert (retry.outcome, retry.released) == ("unreachable", False)
    assert await build_exists(kube), "kept for another try while the registry may come back"

    # An hour after the deletion the plan marks the step as the last try (see test_pruneplan).
    last = dataclasses.replace(step, last_try=True)
    given_up = await prune.prune_build_image(kube, http, mosb, mosc, last, {}, tls_verify=False)
    assert (given_up.outcome, given_up.released) == ("unreachable", True)
    assert not await build_exists(kube)
    mosc = await kube.get(MACHINEOSCONFIGS, "worker")
    cond = conditions.find(mosc["status"]["conditions"], names.IMAGES_PRUNED)
    assert cond is not None and (cond["status"], cond["reason"]) == ("False", prune.REASON_UNREACHABLE)
    assert host in cond["message"] and "cannot be reached" in cond["message"]
    events, _ = await kube.list(EVENTS, namespace="default")
    assert [e["reason"] for e in events if e["involvedObject"]["name"] == "worker"] == [
        prune.REASON_UNREACHABLE
    ]
