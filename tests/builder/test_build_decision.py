"""The builder's decision (``buildplan.decide``): facts in, one step out, without a cluster."""

from __future__ import annotations

import dataclasses
from typing import Any

import pytest

from mcosup.builder import buildplan as bp
from mcosup.model import machineosbuild, names, rendering
from mcosup.model.machineosconfig import BuildSettings

RENDERED = "rendered-worker-0123"
PULLSPEC = "registry.example.com:5000/org/os-image:latest"
DIGEST = "sha256:" + "d" * 64
IMAGE = "registry.example.com:5000/org/os-image@" + DIGEST
NOW = 1_000_000.0

INPUTS = bp.BuildInputs(
    pool="worker",
    rendered_name=RENDERED,
    rendered_spec=rendering.render(
        "worker", [{"metadata": {"name": "00-x"}, "spec": {"config": {"ignition": {"version": "3.2.0"}}}}]
    ).spec,
    base_image="registry.example.com/os@sha256:" + "a" * 64,
    custom_containerfile="",
    pullspec=PULLSPEC,
)
PLAN = bp.plan(INPUTS)
MOSB = machineosbuild.name_for("worker", PLAN.identity)
MOSC = {"metadata": {"name": "worker", "uid": "u"}, "spec": {"machineConfigPool": {"name": "worker"}}}


def mosb(
    state: str | None, image: str = IMAGE, rendered: str = RENDERED, job: bool = False
) -> dict[str, Any]:
    status: dict[str, Any] = {"conditions": [vars(c) for c in machineosbuild.conditions_for(state)]}
    if job:
        status["builder"] = machineosbuild.builder_status(machineosbuild.job_name(MOSB), "ns")
    if state == names.MOSB_SUCCEEDED:
        status["digestedImagePushSpec"] = image
    return {"metadata": {"name": MOSB}, "spec": {"machineConfig": {"name": rendered}}, "status": status}


JOB = machineosbuild.job_name(MOSB)


def job(end: str | None = None, reason: str = "", failed: int = 0) -> dict[str, Any]:
    status: dict[str, Any] = {"failed": failed}
    if end:
        status["conditions"] = [{"type": end, "status": "True", "reason": reason}]
    return {"metadata": {"name": JOB}, "status": status}


def pod(n: int, phase: str, *, digest: str = "") -> dict[str, Any]:
    state = {"terminated": {"message": digest}} if phase in ("Succeeded", "Failed") else {}
    return {
        "metadata": {
            "name": f"{JOB}-{n:05d}",
            "creationTimestamp": f"2026-01-01T00:00:{n:02d}Z",
            "ownerReferences": [{"kind": "Job", "name": JOB}],
        },
        "status": {"phase": phase, "containerStatuses": [{"state": state}]},
    }


def facts(**changes: Any) -> bp.Facts:
    build = changes.pop("build", None)
    current = changes.pop("current", None)
    annotations = {names.CURRENT_MOSB_ANNOTATION: current}
    if changes.pop("rebuild", False):
        annotations[names.REBUILD_ANNOTATION] = ""
    mosc = dict(MOSC, metadata={**MOSC["metadata"], "annotations": annotations})
    recorded = changes.pop("recorded", False)
    pool: dict[str, Any] = {"metadata": {"name": "worker"}}
    if recorded:
        pool["metadata"]["annotations"] = {names.NEWEST_IMAGE_ANNOTATION: IMAGE}
        pool["status"] = {"conditions": [{"type": names.BUILD_SUCCESS, "status": "True"}]}
    base = bp.Facts(
        pool=pool,
        opted_in=True,
        rendered=RENDERED,
        rendered_found=True,
        inputs=INPUTS,
        settings=BuildSettings(PULLSPEC, "push", "pull", "", timeout_seconds=2700),
        mosc=mosc if current is not None else MOSC,
        builds=[build] if build is not None else [],
        jobs=[],
        pods=[],
    )
    return dataclasses.replace(base, **changes)


def asked(digest: str | None) -> bp.RegistryAnswer:
    return bp.RegistryAnswer(digest)


STARTED = mosb(names.MOSB_PREPARED, job=True)
BUILDING = mosb(names.MOSB_BUILDING, job=True)

CASES: list[tuple[str, dict[str, Any], bp.Step]] = [
    ("opted out", {"opted_in": False}, bp.StopBuilding()),
    (
        "no render yet",
        {"rendered": ""},
        bp.Report(names.BUILD_PENDING, "WaitingForRender", "the pool has no rendered config yet"),
    ),
    (
        "rendered config not in the cache yet",
        {"rendered_found": False},
        bp.Report(names.BUILD_PENDING, "WaitingForRender", f"rendered config {RENDERED} is not there yet"),
    ),
    (
        "invalid settings",
        {"inputs": "Secret x is missing"},
        bp.Report(names.BUILD_PENDING, "InvalidConfig", "Secret x is missing"),
    ),
    # Nothing built yet: ask the registry, then reuse what it has or start the build.
    ("first look", {}, bp.AskRegistry(PLAN)),
    ("registry has none", {"registry": asked(None)}, bp.Start(PLAN, MOSB)),
    (
        "registry has it",
        {"registry": asked(DIGEST)},
        bp.Record(PLAN, MOSB, IMAGE, "found in the registry, reused without building"),
    ),
    ("record made, Job not yet", {"build": mosb(None)}, bp.Start(PLAN, MOSB)),
    # Following the Job.
    (
        "Job waiting for its Pod",
        {"build": STARTED, "jobs": [job()]},
        bp.Follow(PLAN, MOSB, JOB, running=False),
    ),
    (
        "Job building",
        {"build": STARTED, "jobs": [job()], "pods": [pod(0, "Running")]},
        bp.Follow(PLAN, MOSB, JOB, running=True),
    ),
    (
        "Pod deleted mid-build, the Job's next one pending",
        {"build": BUILDING, "jobs": [job(failed=1)], "pods": [pod(1, "Pending")]},
        bp.Follow(PLAN, MOSB, JOB, running=False),
    ),
    (
        "Pod succeeded with a digest, the Job not yet Complete",
        {"build": BUILDING, "jobs": [job()], "pods": [pod(0, "Succeeded", digest=DIGEST)]},
        bp.Record(PLAN, MOSB, IMAGE, f"built by Job {JOB}"),
    ),
    (
        "Job complete with a digest",
        {
            "build": BUILDING,
            "jobs": [job("Complete")],
            "pods": [pod(0, "Failed"), pod(1, "Succeeded", digest=DIGEST)],
        },
        bp.Record(PLAN, MOSB, IMAGE, f"built by Job {JOB}"),
    ),
    (
        "Job complete, no digest in the cache: the API server's Pods are asked first",
        {"build": BUILDING, "jobs": [job("Complete")], "pods": [pod(0, "Succeeded", digest="oops")]},
        bp.AskPods(PLAN, JOB),
    ),
    (
        "Job complete without a digest",
        {
            "build": BUILDING,
            "jobs": [job("Complete")],
            "pods": [pod(0, "Succeeded", digest="oops")],
            "job_pods": [pod(0, "Succeeded", digest="oops")],
        },
        bp.Failed(PLAN, MOSB, f"Job {JOB} completed without writing the image's digest", f"{JOB}-00000"),
    ),
    # Story chaos seed 4 (a watch cut and 410s while the builder was killed and restarted): the Job's
    # Complete reached the builder's cache before its Pod's success did, and a build that had pushed its
    # image was failed for good ("completed without writing the image's digest"); the pool never got the
    # image of its changed Containerfile.
    (
        "seed 4: Job complete, its Pod's success not in the cache yet",
        {"build": BUILDING, "jobs": [job("Complete")], "pods": [pod(0, "Running")]},
        bp.AskPods(PLAN, JOB),
    ),
    (
        "seed 4: Job complete, the API server lists the Pod with its digest",
        {
            "build": BUILDING,
            "jobs": [job("Complete")],
            "pods": [pod(0, "Running")],
            "job_pods": [pod(0, "Succeeded", digest=DIGEST)],
        },
        bp.Record(PLAN, MOSB, IMAGE, f"built by Job {JOB}"),
    ),
    (
        "Job failed 4 times",
        {"build": BUILDING, "jobs": [job("Failed", "BackoffLimitExceeded", 4)], "pods": [pod(3, "Failed")]},
        bp.Failed(PLAN, MOSB, f"Job {JOB} failed 4 times (BackoffLimitExceeded)", f"{JOB}-00003"),
    ),
    (
        "Job past its deadline",
        {"build": BUILDING, "jobs": [job("Failed", "DeadlineExceeded")]},
        bp.Failed(
            PLAN,
            MOSB,
            f"Job {JOB} ran longer than the build timeout of 0h45m0s ({names.BUILD_TIMEOUT_ANNOTATION} on "
            "MachineOSConfig worker): raise the annotation, or make the build faster",
            None,
        ),
    ),
    # The Job deleted mid-build: Interrupted, then a new MachineOSBuild.
    ("Job deleted mid-build", {"build": BUILDING}, bp.Interrupt(PLAN, MOSB, JOB)),
    (
        "interrupted: start anew",
        {"build": mosb(names.MOSB_INTERRUPTED, job=True)},
        bp.Start(PLAN, f"{MOSB}-1"),
    ),
    (
        "failed for good",
        {"build": mosb(names.MOSB_FAILED, job=True)},
        bp.Report(names.BUILD_FAILED, "BuildFailed", bp.failed_message(PLAN, MOSB, "Build Failed")),
    ),
    # A Succeeded build of this identity.
    ("recorded", {"build": mosb(names.MOSB_SUCCEEDED), "recorded": True}, bp.Recorded(PLAN, MOSB, IMAGE)),
    (
        "current build, pool not written yet (a restart between the writes)",
        {"build": mosb(names.MOSB_SUCCEEDED), "current": MOSB},
        bp.Record(PLAN, MOSB, IMAGE, f"built by MachineOSBuild {MOSB}"),
    ),
    (
        "back to a config seen before",
        {"build": mosb(names.MOSB_SUCCEEDED), "current": "worker-other"},
        bp.AskRegistry(PLAN),
    ),
    (
        "seen before and still in the registry: reused",
        {"build": mosb(names.MOSB_SUCCEEDED), "current": "worker-other", "registry": asked(DIGEST)},
        bp.Record(PLAN, MOSB, IMAGE, f"MachineOSBuild {MOSB} reused: its image is still in the registry"),
    ),
    (
        "seen before, the registry lost it: build again",
        {"build": mosb(names.MOSB_SUCCEEDED), "current": "worker-other", "registry": asked(None)},
        bp.Forget(PLAN, MOSB, "the registry no longer has its image"),
    ),
    # mc/rebuild: the finished build goes, a new one starts without a registry lookup, the annotation goes.
    (
        "rebuild asked",
        {"build": mosb(names.MOSB_SUCCEEDED), "recorded": True, "current": MOSB, "rebuild": True},
        bp.Forget(PLAN, MOSB, f"{names.REBUILD_ANNOTATION} on MachineOSConfig worker"),
    ),
    ("rebuild, old build gone", {"rebuild": True, "current": MOSB}, bp.Start(PLAN, MOSB)),
    (
        "rebuild, new build exists",
        {"build": mosb(None), "rebuild": True, "current": MOSB},
        bp.Rebuilt(PLAN, MOSB),
    ),
]


@pytest.mark.parametrize(("facts_changes", "expected"), [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_decide(facts_changes: dict[str, Any], expected: bp.Step) -> None:
    assert bp.decide(facts(**facts_changes)) == expected


def test_no_machineosconfig_yet_waits_naming_it() -> None:
    step = bp.decide(facts(mosc=None))
    assert isinstance(step, bp.Report) and step.reason == "WaitingForMachineOSConfig"
    assert "MachineOSConfig worker" in step.message and names.LAYERING_ENABLED in step.message


def test_a_path_no_image_can_carry_fails_naming_it() -> None:
    spec = rendering.render(
        "worker",
        [
            {
                "metadata": {"name": "00-x"},
                "spec": {
                    "config": {
                        "ignition": {"version": "3.2.0"},
                        "storage": {"files": [{"path": "/var/lib/x", "contents": {"source": "data:,x"}}]},
                    }
                },
            }
        ],
    ).spec
    step = bp.decide(facts(inputs=dataclasses.replace(INPUTS, rendered_spec=spec)))
    assert isinstance(step, bp.Report) and step.reason == "CannotBuild" and step.drop_builds
    assert "/var/lib/x" in step.message


def deleting(build: dict[str, Any]) -> dict[str, Any]:
    """``build`` being deleted, held by its image's pruning (the finalizer)."""
    meta = {**build["metadata"], "deletionTimestamp": "2026-01-01T00:00:00Z"}
    return {**build, "metadata": {**meta, "finalizers": [names.PRUNE_IMAGE_FINALIZER]}}


@pytest.mark.parametrize(
    ("changes", "expected"),
    [
        # mc/rebuild deleted the build, whose image a node still boots: the new build takes the next name.
        (
            {"build": deleting(mosb(names.MOSB_SUCCEEDED)), "rebuild": True, "current": MOSB},
            bp.Start(PLAN, MOSB + "-1"),
        ),
        # A build being deleted is never reused: the registry is asked, then a new one starts.
        (
            {"build": deleting(mosb(names.MOSB_SUCCEEDED)), "registry": asked(None)},
            bp.Start(PLAN, MOSB + "-1"),
        ),
    ],
    ids=["rebuild", "no reuse"],
)
def test_a_build_being_deleted_is_neither_followed_nor_reused(
    changes: dict[str, Any], expected: bp.Step
) -> None:
    assert bp.decide(facts(**changes)) == expected
