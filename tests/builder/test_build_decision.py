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


def mosb(state: str | None, image: str = IMAGE, rendered: str = RENDERED) -> dict[str, Any]:
    status: dict[str, Any] = {"conditions": [vars(c) for c in machineosbuild.conditions_for(state)]}
    if state == names.MOSB_SUCCEEDED:
        status["digestedImagePushSpec"] = image
    return {"metadata": {"name": MOSB}, "spec": {"machineConfig": {"name": rendered}}, "status": status}


def pod(attempt: int, phase: str, *, digest: str = "", finished: str | None = None) -> dict[str, Any]:
    term: dict[str, Any] = {"message": digest} if phase in ("Succeeded", "Failed") else {}
    if finished:
        term["finishedAt"] = finished
    state = {"terminated": term} if term or finished else {}
    name = PLAN.name if attempt == 0 else f"{PLAN.name}-retry-{attempt}"
    return {"metadata": {"name": name}, "status": {"phase": phase, "containerStatuses": [{"state": state}]}}


def facts(**changes: Any) -> bp.Facts:
    build = changes.pop("build", None)
    current = changes.pop("current", None)
    mosc = dict(MOSC, metadata={**MOSC["metadata"], "annotations": {names.CURRENT_MOSB_ANNOTATION: current}})
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
        settings=BuildSettings(PULLSPEC, "push", "pull", ""),
        mosc=mosc if current is not None else MOSC,
        machineosbuild={MOSB: build}.get if build is not None else lambda _: None,
        pods=[],
        now=NOW,
        max_retries=3,
        retry_backoff=30.0,
    )
    return dataclasses.replace(base, **changes)


def asked(digest: str | None) -> bp.RegistryAnswer:
    return bp.RegistryAnswer(digest)


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
    # Nothing built yet: ask the registry, then reuse what it has or start the first attempt.
    ("first look", {}, bp.AskRegistry(PLAN)),
    ("registry has none", {"registry": asked(None)}, bp.Start(PLAN, MOSB, attempt=0)),
    (
        "registry has it",
        {"registry": asked(DIGEST)},
        bp.Record(PLAN, MOSB, IMAGE, "found in the registry, reused without building"),
    ),
    # Following the build Pods.
    ("pod pending", {"pods": [pod(0, "Pending")]}, bp.Follow(PLAN, MOSB, PLAN.name, running=False)),
    ("pod running", {"pods": [pod(0, "Running")]}, bp.Follow(PLAN, MOSB, PLAN.name, running=True)),
    (
        "pod succeeded with a digest",
        {"pods": [pod(0, "Succeeded", digest=DIGEST)], "build": mosb(names.MOSB_BUILDING)},
        bp.Record(PLAN, MOSB, IMAGE, f"built by {PLAN.name}"),
    ),
    (
        "pod succeeded without a digest is no result",
        {"pods": [pod(0, "Succeeded", digest="oops"), pod(1, "Running")]},
        bp.Follow(PLAN, MOSB, f"{PLAN.name}-retry-1", running=True),
    ),
    (
        "first failure, inside the backoff",
        {"pods": [pod(0, "Failed", finished="1970-01-12T13:46:30Z")]},  # NOW - 10 s
        bp.Failed(PLAN, MOSB, PLAN.name, 1, retry_at=NOW - 10 + 30),
    ),
    (
        "first failure, backoff over",
        {"pods": [pod(0, "Failed", finished="1970-01-12T13:45:00Z")]},  # NOW - 100 s
        bp.Start(PLAN, MOSB, attempt=1),
    ),
    (
        "fourth failure: give up",
        {"pods": [pod(i, "Failed", finished="1970-01-12T13:45:00Z") for i in range(4)]},
        bp.Failed(PLAN, MOSB, f"{PLAN.name}-retry-3", 4, retry_at=None),
    ),
    (
        "failed for good, objects gone",
        {"build": mosb(names.MOSB_FAILED)},
        bp.Report(
            names.BUILD_FAILED,
            "BuildFailed",
            f"MachineOSBuild {MOSB} failed: Build Failed; giving up until the config changes",
        ),
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
        bp.Forget(PLAN, MOSB),
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
