"""The Machine OS Builder end to end (issue 5): emulator, supervisor, kubelet stand-in, buildah, registry.

Every assertion is something an administrator would see: the pool's conditions and annotation, the
objects in the namespace, the image in the registry and what is inside it.
"""

from __future__ import annotations

import asyncio
import os
import signal
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from cluster import NS, REPO, Cluster, machineconfig, running_cluster

from mcosup.kube import errors
from mcosup.kube.resources import EVENTS, JOBS, MACHINECONFIGS, MACHINEOSBUILDS, MACHINEOSCONFIGS, NODES, PODS
from mcosup.model import conditions, machineosbuild, names
from mcosup.sim.cluster import handed_off_image
from mcosup.sim.registry import Registry, read_image
from waiting import eventually

pytestmark = [pytest.mark.slow, pytest.mark.timeout(240)]

UNIT = (
    "[Unit]\nDescription=hello\n[Service]\nExecStart=/usr/bin/true\n[Install]\nWantedBy=multi-user.target\n"
)
FILES = {"/etc/hello.conf": ("hello\n", 0o600), "/usr/lib/tool": ("#!/bin/sh\n", 0o755)}


@pytest.fixture
async def cluster(
    emulator: Any,
    admin_kubeconfig: Path,
    registry: Registry,
    base_image: str,
    tmp_path: Path,
    mco_fixtures: Path,
) -> AsyncIterator[Cluster]:
    async with running_cluster(emulator, admin_kubeconfig, registry, base_image, tmp_path, mco_fixtures) as c:
        await c.add_machineconfig(
            machineconfig("50-hello", FILES, [{"name": "hello.service", "enabled": True, "contents": UNIT}])
        )
        yield c


async def wait_state(cluster: Cluster, wanted: str, *, containing: str = "", within: float = 60) -> str:
    seen: list[Any] = []

    async def check() -> bool:
        state = await cluster.true_build_condition()
        seen[:] = [state]
        return state is not None and state[0] == wanted and containing in state[1]

    try:
        await eventually(check, within=within, what=f"{wanted} containing {containing!r}")
    except BaseException:
        print("last build condition:", seen)
        raise
    state = seen[0]
    assert state is not None
    return str(state[1])


async def wait_built(cluster: Cluster, rendered: str, *, within: float = 60) -> str:
    """Wait for the structured hand-off of an image built for ``rendered`` (not for any words in a
    condition message); return the pool's BuildSuccess message, for the tests of its wording."""

    async def check() -> bool:
        return (
            await cluster.rendered() == rendered
            and await handed_off_image(cluster.kube, "worker") is not None
            and await cluster.image() == await handed_off_image(cluster.kube, "worker")
        )

    await eventually(check, within=within, what=f"an image handed off for {rendered}")
    return await wait_state(cluster, names.BUILD_SUCCESS)


async def no_build_objects(cluster: Cluster) -> None:
    async def check() -> bool:
        return await cluster.build_objects() == {"Pod": [], "ConfigMap": [], "Secret": []}

    await eventually(check, what="no build objects left")


async def test_opt_in_builds_records_digest_and_cleans_up(cluster: Cluster) -> None:
    await eventually(cluster.has_rendered, what="pool rendered")
    await cluster.opt_in()
    message = await wait_state(cluster, names.BUILD_SUCCESS)
    rendered = await cluster.rendered()
    assert rendered in message

    image = await cluster.image()
    assert image is not None
    repo, digest = image.split("@")
    assert repo == f"{cluster.registry.host}/{REPO}"
    tags = await asyncio.to_thread(cluster.registry.tags, REPO)
    assert len(tags) == 1 and tags[0].startswith("worker-")
    assert await asyncio.to_thread(cluster.registry.manifest_digest, REPO, tags[0]) == digest

    labels, files = await asyncio.to_thread(read_image, cluster.registry, REPO, digest)
    assert labels[names.RENDERED_CONFIG_LABEL] == rendered
    assert labels[names.POOL_LABEL] == "worker"
    assert files["/usr/lib/os-release"].data.startswith(b'NAME="mcosup test OS"')  # the base is there
    for path, (text, mode) in FILES.items():
        assert files[path].data == text.encode()
        assert files[path].mode & 0o7777 == mode
    assert files["/etc/systemd/system/hello.service"].data == UNIT.encode()
    link = files["/etc/systemd/system/multi-user.target.wants/hello.service"]
    assert link.link == "/etc/systemd/system/hello.service"

    await no_build_objects(cluster)
    assert (await cluster.builder_pod()) is not None

    # The record of the build, as `kubectl get machineosbuilds` shows it, and its MachineOSConfig.
    (build,) = (await cluster.kube.list(MACHINEOSBUILDS))[0]
    assert build["metadata"]["name"] == f"worker-{tags[0].removeprefix('worker-')}"
    assert build["spec"] == {
        "machineConfig": {"name": rendered},
        "machineOSConfig": {"name": "worker"},
        "renderedImagePushSpec": f"{cluster.registry.host}/{REPO}:{tags[0]}",
    }
    true = [c["type"] for c in build["status"]["conditions"] if c["status"] == "True"]
    assert true == ["Succeeded"]
    assert conditions.find(build["status"]["conditions"], "Succeeded")["reason"] == "Ready"  # type: ignore[index]
    assert build["status"]["digestedImagePushSpec"] == image
    assert build["status"]["buildStart"] < build["status"]["buildEnd"]
    (owner,) = build["metadata"]["ownerReferences"]
    assert (owner["kind"], owner["name"]) == ("MachineOSConfig", "worker")
    mosc = await cluster.kube.get(MACHINEOSCONFIGS, "worker")
    assert mosc["status"]["currentImagePullSpec"] == image
    assert mosc["status"]["machineOSBuild"]["name"] == build["metadata"]["name"]
    assert mosc["metadata"]["annotations"][names.CURRENT_MOSB_ANNOTATION] == build["metadata"]["name"]

    # Every step was an Event on the pool, as `kubectl describe machineconfigpool worker` shows.
    # (Events about a cluster-scoped object live in the default namespace, as the API server requires.)
    events, _ = await cluster.kube.list(EVENTS, namespace="default")
    reasons = [e["reason"] for e in events if e["involvedObject"]["name"] == "worker"]
    assert reasons.count("BuildStarted") == 1 and reasons.count("BuildSucceeded") == 1, reasons


async def test_new_config_mid_build_supersedes_the_stale_build(cluster: Cluster) -> None:
    cluster.gate.touch()
    await eventually(cluster.has_rendered, what="pool rendered")
    first_rendered = await cluster.rendered()
    await cluster.opt_in()
    await wait_state(cluster, names.BUILDING, containing=first_rendered)
    (old_pod,) = [p["metadata"]["name"] for p in await cluster.build_pods()]
    (old_job,) = cluster.pods_created(names.BUILD_OBJECT_LABEL, kind="Job")

    await cluster.add_machineconfig(machineconfig("60-more", {"/etc/more.conf": ("more\n", 0o644)}))
    await eventually(lambda: _differs(cluster, first_rendered), what="pool re-rendered")
    second_rendered = await cluster.rendered()

    async def superseded() -> bool:
        names_now = [p["metadata"]["name"] for p in await cluster.build_pods()]
        return old_pod not in names_now and len(names_now) == 1

    await eventually(superseded, what="stale build pod replaced by the new one")
    cluster.gate.unlink()
    message = await wait_built(cluster, second_rendered)
    assert first_rendered not in message

    # The new build Job was created before the stale one was deleted.
    history = cluster.emulator.history
    created = {
        o["metadata"]["name"]: rv for rv, kind, o in history if kind == "ADDED" and o.get("kind") == "Job"
    }
    deleted = {
        o["metadata"]["name"]: rv for rv, kind, o in history if kind == "DELETED" and o.get("kind") == "Job"
    }
    new_job = next(n for n in created if n != old_job)
    assert created[new_job] < deleted[old_job]
    # Its record is gone with it; the new one Succeeded.
    assert [b["metadata"]["name"] for b in await cluster.machineosbuilds()] == [
        new_job.removeprefix("build-")
    ]

    # The pool never recorded an image for anything but its current config: one image, the new one.
    recorded = {
        (o["metadata"].get("annotations") or {}).get(names.NEWEST_IMAGE_ANNOTATION)
        for _, _, o in history
        if o.get("kind") == "MachineConfigPool"
    } - {None}
    assert recorded == {await cluster.image()}
    image = await cluster.image()
    assert image is not None
    labels, files = await asyncio.to_thread(read_image, cluster.registry, REPO, image.split("@")[1])
    assert labels[names.RENDERED_CONFIG_LABEL] == second_rendered
    assert "/etc/more.conf" in files
    await no_build_objects(cluster)


async def _differs(cluster: Cluster, rendered: str) -> bool:
    current = await cluster.rendered()
    return bool(current) and current != rendered


async def test_failing_containerfile_retries_three_times_then_fixing_it_builds(cluster: Cluster) -> None:
    # The base image has no shell, so any RUN fails inside buildah.
    await cluster.set_custom_containerfile("RUN /bin/false-and-missing")
    await eventually(cluster.has_rendered, what="pool rendered")
    await cluster.opt_in()
    message = await wait_state(cluster, names.BUILD_FAILED, containing="failed 4 times", within=90)
    assert "false-and-missing" in message or "/bin/sh" in message  # the build log's tail
    assert await cluster.image() is None

    objects = await cluster.build_objects()
    (job,) = cluster.pods_created(names.BUILD_OBJECT_LABEL, kind="Job")
    assert len(objects["Pod"]) == 4 and all(p.startswith(f"{job}-") for p in objects["Pod"])  # the Job's
    assert objects["ConfigMap"] == [f"{job}-context-0"]
    assert objects["Secret"] == []  # credentials are mounted from the config's Secrets, never copied
    (record,) = (await cluster.kube.list(MACHINEOSBUILDS))[0]
    failed = conditions.find(record["status"]["conditions"], "Failed")
    assert failed is not None and failed["status"] == "True" and "false-and-missing" in failed["message"]
    assert record["status"]["builder"]["job"]["name"] == job

    await cluster.set_custom_containerfile("LABEL fixed=yes")
    await wait_state(cluster, names.BUILD_SUCCESS)
    image = await cluster.image()
    assert image is not None
    labels, _ = await asyncio.to_thread(read_image, cluster.registry, REPO, image.split("@")[1])
    assert labels["fixed"] == "yes"
    await no_build_objects(cluster)


async def test_builder_killed_mid_build_then_return_to_earlier_config_reuses_image(cluster: Cluster) -> None:
    await eventually(cluster.has_rendered, what="pool rendered")
    first_rendered = await cluster.rendered()
    await cluster.opt_in()
    first_message = await wait_built(cluster, first_rendered)
    first_image = await cluster.image()

    cluster.gate.touch()
    await cluster.add_machineconfig(machineconfig("60-more", {"/etc/more.conf": ("more\n", 0o644)}))
    await eventually(lambda: _differs(cluster, first_rendered), what="pool re-rendered")
    second_rendered = await cluster.rendered()
    await wait_state(cluster, names.BUILDING, containing=second_rendered)

    builder = await cluster.builder_pod()
    assert builder is not None
    pid = int(builder["status"]["containerStatuses"][0]["containerID"].removeprefix("local://"))
    os.kill(pid, signal.SIGKILL)

    async def replaced() -> bool:
        pod = await cluster.builder_pod()
        return pod is not None and pod["metadata"]["uid"] != builder["metadata"]["uid"]

    await eventually(replaced, what="builder pod recreated by the supervisor", within=60)
    cluster.gate.unlink()
    await wait_built(cluster, second_rendered)
    await no_build_objects(cluster)
    build_pods = cluster.pods_created(names.BUILD_OBJECT_LABEL)
    assert len(build_pods) == 2, build_pods  # one per config: the restart did not start a second build
    tags = await asyncio.to_thread(cluster.registry.tags, REPO)
    assert len(tags) == 2

    # Back to the first config: its image is still in the registry, so it is reused without a build.
    await cluster.kube.delete(MACHINECONFIGS, "60-more")
    await eventually(lambda: _is(cluster, first_rendered), what="pool back on its first config")
    message = await wait_built(cluster, first_rendered)
    assert "reused" in message and message != first_message  # the words say how
    assert await cluster.image() == first_image
    assert cluster.pods_created(names.BUILD_OBJECT_LABEL) == build_pods


async def _is(cluster: Cluster, rendered: str) -> bool:
    return await cluster.rendered() == rendered


async def test_file_under_var_fails_the_build_naming_the_path(cluster: Cluster) -> None:
    await cluster.add_machineconfig(machineconfig("70-var", {"/var/lib/app/state": ("x", 0o644)}))
    await eventually(cluster.has_rendered, what="pool rendered")
    await cluster.opt_in()
    message = await wait_state(cluster, names.BUILD_FAILED, containing="/var/lib/app/state")
    assert "/var" in message
    assert await cluster.image() is None
    assert cluster.pods_created(names.BUILD_OBJECT_LABEL) == []


async def start_held_build(cluster: Cluster) -> None:
    """Opt in with buildah held at the gate; return once the build is Building."""
    cluster.gate.touch()
    await eventually(cluster.has_rendered, what="pool rendered")
    await cluster.opt_in()
    await wait_state(cluster, names.BUILDING)


async def test_build_pod_deleted_mid_build_is_replaced_and_the_build_goes_on(cluster: Cluster) -> None:
    await start_held_build(cluster)
    (pod,) = await cluster.build_pods()
    await cluster.kube.delete(PODS, pod["metadata"]["name"], namespace=NS)

    async def replaced() -> bool:
        return len(cluster.pods_created(names.BUILD_OBJECT_LABEL)) == 2

    await eventually(replaced, what="the Job to start another build Pod")
    cluster.gate.unlink()
    await wait_state(cluster, names.BUILD_SUCCESS)
    (build,) = await cluster.machineosbuilds()
    # The record went straight on: never Failed nor Interrupted, one Job all along.
    assert cluster.build_states(build["metadata"]["name"]) == ["Prepared", "Building", "Succeeded"]
    assert cluster.pods_created(names.BUILD_OBJECT_LABEL, kind="Job") == [
        f"build-{build['metadata']['name']}"
    ]
    assert names.BUILD_FAILED not in cluster.pool_build_states()
    await no_build_objects(cluster)


async def test_build_job_deleted_mid_build_interrupts_and_builds_anew(cluster: Cluster) -> None:
    await start_held_build(cluster)
    (first,) = await cluster.machineosbuilds()
    first_name = first["metadata"]["name"]
    await cluster.kube.delete(JOBS, f"build-{first_name}", namespace=NS)

    async def restarted() -> bool:
        return len(cluster.pods_created(names.BUILD_OBJECT_LABEL, kind="Job")) == 2

    await eventually(restarted, what="a new build Job")
    cluster.gate.unlink()
    await wait_state(cluster, names.BUILD_SUCCESS)
    # The first record ended Interrupted (the pool said so), a new one Succeeded and replaced it.
    assert cluster.build_states(first_name)[-1] == "Interrupted"
    assert names.BUILD_INTERRUPTED in cluster.pool_build_states()
    (second,) = await cluster.machineosbuilds()
    assert second["metadata"]["name"] == f"{first_name}-1"
    assert cluster.build_states(f"{first_name}-1")[-1] == "Succeeded"
    jobs = cluster.pods_created(names.BUILD_OBJECT_LABEL, kind="Job")
    assert jobs == [f"build-{first_name}", f"build-{first_name}-1"]  # no duplicate Job
    assert await cluster.image() == second["status"]["digestedImagePushSpec"]
    await no_build_objects(cluster)


async def test_build_past_its_timeout_fails_naming_the_timeout(cluster: Cluster) -> None:
    cluster.gate.touch()  # held until the deadline passes
    await eventually(cluster.has_rendered, what="pool rendered")
    # An admin's MachineOSConfig with a 2-second timeout (the label's settings otherwise).
    await cluster.kube.create(
        MACHINEOSCONFIGS,
        {
            "metadata": {"name": "worker", "annotations": {names.BUILD_TIMEOUT_ANNOTATION: "2s"}},
            "spec": {
                "machineConfigPool": {"name": "worker"},
                "imageBuilder": {"imageBuilderType": "Job"},
                "baseImagePullSecret": {"name": "pull-secret"},
                "renderedImagePushSecret": {"name": "push-secret"},
                "renderedImagePushSpec": cluster.pullspec,
            },
        },
    )
    message = await wait_state(cluster, names.BUILD_FAILED, containing="timeout", within=90)
    assert names.BUILD_TIMEOUT_ANNOTATION in message and "0h0m2s" in message
    (build,) = await cluster.machineosbuilds()
    failed = conditions.find(build["status"]["conditions"], "Failed")
    assert failed is not None and failed["status"] == "True" and "timeout" in failed["message"]
    assert await cluster.image() is None
    cluster.gate.unlink()


async def test_rebuild_builds_the_same_config_again_across_a_builder_restart(cluster: Cluster) -> None:
    await eventually(cluster.has_rendered, what="pool rendered")
    await cluster.opt_in()
    await wait_state(cluster, names.BUILD_SUCCESS)
    (first,) = await cluster.machineosbuilds()
    first_image = await cluster.image()

    cluster.gate.touch()
    await cluster.kube.patch(
        MACHINEOSCONFIGS, "worker", {"metadata": {"annotations": {names.REBUILD_ANNOTATION: ""}}}
    )

    async def new_build() -> bool:
        builds = await cluster.machineosbuilds()
        return [b["metadata"]["uid"] for b in builds] not in ([], [first["metadata"]["uid"]])

    await eventually(new_build, what="a new MachineOSBuild of the same config")
    builder = await cluster.builder_pod()
    assert builder is not None
    pid = int(builder["status"]["containerStatuses"][0]["containerID"].removeprefix("local://"))
    os.kill(pid, signal.SIGKILL)

    async def annotation_gone() -> bool:
        mosc = await cluster.kube.get(MACHINEOSCONFIGS, "worker")
        return names.REBUILD_ANNOTATION not in (mosc["metadata"].get("annotations") or {})

    await eventually(annotation_gone, what=f"{names.REBUILD_ANNOTATION} removed", within=60)
    cluster.gate.unlink()

    async def rebuilt() -> bool:
        image = await cluster.image()
        return image is not None and image != first_image and await cluster.true_build_condition() is not None

    await eventually(rebuilt, what="the rebuilt image recorded", within=90)
    (second,) = await cluster.machineosbuilds()
    # The same config, the same identity: the same name, or the next restart's when the first record
    # was still held by its image's pruning as the new build started.
    assert machineosbuild.restart_of(second["metadata"]["name"], first["metadata"]["name"]) is not None
    assert second["spec"] == first["spec"]
    assert second["status"]["digestedImagePushSpec"] == await cluster.image()
    # One build Job per MachineOSBuild: the restart started no third one.
    assert len(cluster.pods_created(names.BUILD_OBJECT_LABEL, kind="Job")) == 2
    await no_build_objects(cluster)


# ---- pruning (contract section 11): the builder deletes builds past the history and their images


async def in_registry(cluster: Cluster, image: str) -> bool:
    """A manifest GET of ``image``'s digest answers (False: 404)."""
    digest = image.split("@")[1]
    return await asyncio.to_thread(cluster.registry.manifest_digest, REPO, digest) == digest


async def node_naming(cluster: Cluster, image: str | None) -> None:
    """A node in no pool (nothing rolls it) whose mc/currentImage is ``image``."""
    annotations = {names.CURRENT_IMAGE: image}
    try:
        await cluster.kube.patch(NODES, "old-node", {"metadata": {"annotations": annotations}})
    except errors.NotFound:
        await cluster.kube.create(NODES, {"metadata": {"name": "old-node", "annotations": annotations}})


async def build_names(cluster: Cluster) -> list[str]:
    return [b["metadata"]["name"] for b in await cluster.machineosbuilds()]


async def test_history_limit_prunes_the_older_build_and_its_image_once_no_node_names_it(
    cluster: Cluster,
) -> None:
    await eventually(cluster.has_rendered, what="pool rendered")
    await cluster.opt_in()
    first_rendered = await cluster.rendered()
    await wait_built(cluster, first_rendered)
    (first,) = await cluster.machineosbuilds()
    first_image = first["status"]["digestedImagePushSpec"]
    assert first["metadata"]["finalizers"] == [names.PRUNE_IMAGE_FINALIZER]

    async def set_limit(value: str) -> None:
        patch = {"metadata": {"annotations": {names.BUILD_HISTORY_LIMIT: value}}}
        await cluster.kube.patch(MACHINEOSCONFIGS, "worker", patch)

    await set_limit("none")  # bad input: a Warning naming the object, the annotation and the fix

    async def warned() -> bool:
        events, _ = await cluster.kube.list(EVENTS, namespace="default")
        return any(
            e["reason"] == "InvalidBuildHistoryLimit"
            and e["involvedObject"]["kind"] == names.MACHINEOSCONFIG_KIND
            and "MachineOSConfig worker" in e["message"]
            and names.BUILD_HISTORY_LIMIT in e["message"]
            for e in events
        )

    await eventually(warned, what=f"a Warning about {names.BUILD_HISTORY_LIMIT}")
    await set_limit("1")
    await node_naming(cluster, first_image)

    await cluster.add_machineconfig(machineconfig("60-more", {"/etc/more.conf": ("more\n", 0o644)}))

    async def rerendered() -> bool:
        return await cluster.rendered() not in ("", first_rendered)

    await eventually(rerendered, what="a second rendered config")
    await wait_built(cluster, await cluster.rendered())
    second_image = await cluster.image()
    assert second_image is not None and second_image != first_image
    # Past the history limit, but a node still names its image: the build and the image stay.
    assert first["metadata"]["name"] in await build_names(cluster)
    assert await in_registry(cluster, first_image)

    await node_naming(cluster, second_image)  # the node moves

    async def first_pruned() -> bool:
        return first["metadata"]["name"] not in await build_names(cluster)

    await eventually(first_pruned, what=f"MachineOSBuild {first['metadata']['name']} pruned")
    assert not await in_registry(cluster, first_image)
    assert await in_registry(cluster, second_image)
    (kept,) = await cluster.machineosbuilds()
    assert kept["status"]["digestedImagePushSpec"] == second_image


async def test_opting_out_prunes_every_build_and_image_and_leaves_no_finalizer(cluster: Cluster) -> None:
    await eventually(cluster.has_rendered, what="pool rendered")
    await cluster.opt_in()
    await wait_built(cluster, await cluster.rendered())
    (build,) = await cluster.machineosbuilds()
    image = build["status"]["digestedImagePushSpec"]
    await node_naming(cluster, image)

    await cluster.opt_in(False)

    async def held() -> bool:
        builds = await cluster.machineosbuilds()
        return bool(builds) and all(b["metadata"].get("deletionTimestamp") for b in builds)

    # The MachineOSConfig goes and its build with it, held while the node names the image; the
    # builder pod stays, as only it can release the build.
    await eventually(held, what="the build deleted with its MachineOSConfig, held by its finalizer")
    assert await in_registry(cluster, image)
    assert await cluster.builder_pod() is not None

    await node_naming(cluster, None)  # the node moves back to the stock OS

    async def all_gone() -> bool:
        return await cluster.machineosbuilds() == [] and await cluster.builder_pod() is None

    await eventually(all_gone, what="no MachineOSBuild and no builder pod left")
    assert not await in_registry(cluster, image)
    with pytest.raises(errors.NotFound):
        await cluster.kube.get(MACHINEOSCONFIGS, "worker")
