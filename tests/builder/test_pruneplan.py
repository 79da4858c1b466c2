"""The pruning decision, by table: which MachineOSBuilds go, and what happens to their images."""

from __future__ import annotations

import datetime as dt
from typing import Any

import pytest

from mcosup.builder import pruneplan
from mcosup.builder.pruneplan import BuildFacts, ImageStep, PrunePlan
from mcosup.model import machineosconfig, names

T0 = dt.datetime(2026, 12, 1, tzinfo=dt.UTC)
NOW = T0 + dt.timedelta(days=1)
REPO = "registry.example.com/os/worker"


def image(n: int) -> str:
    return f"{REPO}@sha256:{n:064x}"


def build(n: int, state: str | None = "Succeeded", *, config: str = "worker", **kw: Any) -> BuildFacts:
    """Build ``worker-<n>``, created ``n`` minutes after T0, Succeeded builds with image ``n``."""
    return BuildFacts(
        name=f"{config}-{n}",
        config=config,
        state=state,
        created=T0 + dt.timedelta(minutes=n),
        image=kw.pop("image", image(n) if state == "Succeeded" else None),
        **kw,
    )


def gone(n: int, *, since: dt.timedelta = dt.timedelta(minutes=1), **kw: Any) -> BuildFacts:
    """Build ``n`` being deleted for ``since``, with the prune finalizer."""
    return build(n, deleting_since=NOW - since, has_finalizer=True, **kw)


def node_uses(n: int, annotation: str = names.CURRENT_IMAGE) -> dict[str, tuple[str, ...]]:
    return {image(n): (f"worker-0 ({annotation})",)}


CASES: list[tuple[str, list[BuildFacts], str | None, str | None, dict[str, tuple[str, ...]], PrunePlan]] = [
    (
        "nothing to prune within the default limit of 3",
        [build(1), build(2), build(3)],
        "worker-3",
        None,
        {},
        PrunePlan(),
    ),
    (
        "the oldest Succeeded beyond the default 3 go, oldest first",
        [build(5), build(1), build(4), build(2), build(3)],
        "worker-5",
        None,
        {},
        PrunePlan(delete=("worker-1", "worker-2")),
    ),
    (
        "a limit of 1 keeps only the newest",
        [build(1), build(2), build(3)],
        "worker-3",
        "1",
        {},
        PrunePlan(delete=("worker-1", "worker-2")),
    ),
    (
        "the current build is kept even beyond the limit (an old build reused)",
        [build(1), build(2), build(3)],
        "worker-1",
        "1",
        {},
        PrunePlan(delete=("worker-2",)),
    ),
    (
        "a build whose image a node boots is kept",
        [build(1), build(2), build(3)],
        "worker-3",
        "1",
        node_uses(1),
        PrunePlan(delete=("worker-2",)),
    ),
    (
        "desired and staging images count as used too",
        [build(1), build(2), build(3)],
        "worker-3",
        "1",
        {**node_uses(1, names.DESIRED_IMAGE), **node_uses(2, names.STAGING_IMAGE)},
        PrunePlan(),
    ),
    (
        "Failed and Interrupted builds go once a newer build exists; they do not count in the limit",
        [build(1, "Failed"), build(2, "Interrupted"), build(3), build(4, "Failed")],
        "worker-4",
        "1",
        {},
        PrunePlan(delete=("worker-1", "worker-2")),
    ),
    (
        "the newest Failed build stays for diagnosis even when it is not current",
        [build(1), build(2, "Failed")],
        "worker-1",
        None,
        {},
        PrunePlan(),
    ),
    (
        "builds under way are never pruned",
        [build(1, "Building"), build(2, "Prepared"), build(3, None), build(4)],
        "worker-4",
        "1",
        {},
        PrunePlan(),
    ),
    (
        "other configs' builds are left alone",
        [build(1, config="infra"), build(2, config="infra"), build(3)],
        "worker-3",
        "1",
        {},
        PrunePlan(),
    ),
    (
        "a build being deleted no longer counts: the next one is kept",
        [gone(3), build(1), build(2)],
        "worker-2",
        "2",
        {},
        PrunePlan(images=(ImageStep("worker-3", "delete", image(3), "no node names it"),)),
    ),
    (
        "an image a node names waits, naming the node",
        [gone(1), build(2)],
        "worker-2",
        None,
        node_uses(1),
        PrunePlan(
            images=(
                ImageStep(
                    "worker-1",
                    "wait",
                    image(1),
                    f"{image(1)} is named by node worker-0 ({names.CURRENT_IMAGE}): "
                    "deleted once no node names it",
                ),
            )
        ),
    ),
    (
        "a build without an image is released",
        [gone(1, state="Failed"), build(2)],
        "worker-2",
        None,
        {},
        PrunePlan(images=(ImageStep("worker-1", "release", None, "no image recorded (build Failed)"),)),
    ),
    (
        "an image a live build also records is kept",
        [gone(1), build(2, image=image(1))],
        "worker-2",
        None,
        {},
        PrunePlan(
            images=(
                ImageStep(
                    "worker-1", "release", image(1), "MachineOSBuild worker-2 records the same image; kept"
                ),
            )
        ),
    ),
    (
        "a build being deleted without the finalizer is not ours to hold",
        [build(1, deleting_since=NOW), build(2)],
        "worker-2",
        None,
        {},
        PrunePlan(),
    ),
    (
        "after an hour of waiting for the registry, the next attempt is the last",
        [gone(1, since=pruneplan.GIVE_UP_AFTER)],
        None,
        None,
        {},
        PrunePlan(images=(ImageStep("worker-1", "delete", image(1), "no node names it", last_try=True),)),
    ),
]


def history(value: str | None) -> tuple[int, str | None]:
    """The history limit the builder reads from MachineOSConfig worker annotated ``value``."""
    annotations = {} if value is None else {names.BUILD_HISTORY_LIMIT: value}
    return machineosconfig.build_history_limit({"metadata": {"name": "worker", "annotations": annotations}})


@pytest.mark.parametrize(
    ("builds", "current", "limit", "in_use", "expected"), [c[1:] for c in CASES], ids=[c[0] for c in CASES]
)
def test_plan_pruning(
    builds: list[BuildFacts],
    current: str | None,
    limit: str | None,
    in_use: dict[str, tuple[str, ...]],
    expected: PrunePlan,
) -> None:
    plan = pruneplan.plan_pruning(
        "worker", builds, current=current, history=history(limit), in_use=in_use, now=NOW
    )
    assert plan == expected


@pytest.mark.parametrize("value", ["0", "-2", "three", "", "1.5"])
def test_a_bad_history_limit_is_reported_and_the_default_used(value: str) -> None:
    builds = [build(n) for n in range(1, 6)]
    plan = pruneplan.plan_pruning(
        "worker", builds, current="worker-5", history=history(value), in_use={}, now=NOW
    )
    assert plan.delete == ("worker-1", "worker-2")
    (problem,) = plan.problems
    assert problem.startswith(f"MachineOSConfig worker annotation {names.BUILD_HISTORY_LIMIT}={value!r}")
    assert "remove it" in problem


def test_facts_from_objects() -> None:
    mosb = {
        "apiVersion": names.API_VERSION,
        "kind": names.MACHINEOSBUILD_KIND,
        "metadata": {
            "name": "worker-abc",
            "creationTimestamp": "2026-12-01T10:00:00Z",
            "deletionTimestamp": "2026-12-01T11:00:00Z",
            "finalizers": [names.PRUNE_IMAGE_FINALIZER],
        },
        "spec": {"machineOSConfig": {"name": "worker"}},
        "status": {
            "conditions": [{"type": "Building", "status": "False"}, {"type": "Succeeded", "status": "True"}],
            "digestedImagePushSpec": image(7),
        },
    }
    assert pruneplan.build_facts(mosb) == BuildFacts(
        name="worker-abc",
        config="worker",
        state="Succeeded",
        created=dt.datetime(2026, 12, 1, 10, tzinfo=dt.UTC),
        image=image(7),
        deleting_since=dt.datetime(2026, 12, 1, 11, tzinfo=dt.UTC),
        has_finalizer=True,
    )
    nodes = [
        {
            "metadata": {
                "name": "worker-0",
                "annotations": {names.CURRENT_IMAGE: image(1), names.DESIRED_IMAGE: image(2)},
            }
        },
        {"metadata": {"name": "worker-1", "annotations": {names.STAGING_IMAGE: image(2)}}},
        {"metadata": {"name": "worker-2"}},
    ]
    assert pruneplan.images_in_use(nodes) == {
        image(1): (f"worker-0 ({names.CURRENT_IMAGE})",),
        image(2): (f"worker-0 ({names.DESIRED_IMAGE})", f"worker-1 ({names.STAGING_IMAGE})"),
    }
