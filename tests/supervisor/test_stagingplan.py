"""Staging ahead of a node's turn (contract 12.1): which nodes download the image, and who goes first."""

from __future__ import annotations

import dataclasses
from typing import Any

import pytest

from mcosup.model import names
from mcosup.model.node import NodeView, Target
from mcosup.supervisor import rolloutplan
from mcosup.supervisor.rolloutplan import Phase
from mcosup.supervisor.stagingplan import Turn, Waits, plan_staging

R0, R1 = "rendered-worker-0", "rendered-worker-1"
IMG0 = "registry.local/os@sha256:" + "0" * 64
IMG1 = "registry.local/os@sha256:" + "1" * 64
TARGET = Target(names.MODE_LAYERED, R1, IMG1)


def view(i: int, *, at: bool = False, staging: str | None = None, staged: str | None = None) -> NodeView:
    config, image = (R1, IMG1) if at else (R0, IMG0)
    return NodeView(
        name=f"w{i:02d}",
        ready=True,
        state=names.STATE_DONE,
        mode=names.MODE_LAYERED,
        desired_config=config,
        current_config=config,
        desired_image=image,
        current_image=image,
        staging_image=staging,
        staged_image=staged,
        created=f"2026-01-01T00:00:{i:02d}Z",
    )


def test_stages_four_per_unavailable_slot_besides_the_updating_oldest_first() -> None:
    views = [view(i) for i in range(12)]
    changes = plan_staging(views, TARGET, capacity=2, updating={"w00"})
    assert changes == {f"w{i:02d}": IMG1 for i in range(1, 9)}


def test_a_download_under_way_keeps_its_place_and_done_nodes_are_cleared() -> None:
    views = [view(0, at=True, staging=IMG1), *(view(i) for i in range(1, 6)), view(6, staging=IMG1)]
    changes = plan_staging(views, TARGET, capacity=1, updating=())
    # w06 keeps its slot; w01-w03 fill the rest; w00 runs the image already.
    assert changes == {"w00": None, "w01": IMG1, "w02": IMG1, "w03": IMG1}


def test_no_image_to_roll_clears_every_staging() -> None:
    views = [view(0, staging=IMG1), view(1)]
    legacy = Target(names.MODE_LEGACY, R1)
    assert plan_staging(views, legacy, capacity=1, updating=()) == {"w00": None}
    assert plan_staging(views, None, capacity=1, updating=()) == {"w00": None}
    assert plan_staging(views, TARGET, capacity=1, updating=("w00",)) == {"w01": IMG1}


def pool(max_unavailable: int) -> dict[str, Any]:
    return {
        "metadata": {"name": "worker", "labels": {names.LAYERING_ENABLED: ""}},
        "spec": {"configuration": {"name": R1}, "maxUnavailable": max_unavailable},
    }


def test_a_nodes_turn_prefers_nodes_that_downloaded_the_image() -> None:
    views = [view(0), view(1, staged=IMG0), view(2, staged=IMG1), view(3, staging=IMG1)]
    plan = rolloutplan.plan_rollout(pool(1), views, image=IMG1, opted_in=True)
    assert plan.start == ("w02",)


# A node's turn waits for its staging (contract 12.1), within the staging timeout.

TIMEOUT = 900.0
LEGACY = Target(names.MODE_LEGACY, R1)


@pytest.mark.parametrize(
    ("node", "target", "waited", "expected"),
    [
        (view(0, staging=IMG1, staged=IMG1), TARGET, 5.0, Turn.READY),
        (view(0, at=True), TARGET, None, Turn.READY),  # runs the image: nothing to download
        (view(0), LEGACY, None, Turn.READY),  # a legacy target has nothing to stage
        (dataclasses.replace(view(0), ready=False), TARGET, None, Turn.READY),  # out of service anyway
        (view(0), TARGET, None, Turn.STAGING),  # not asked yet
        (view(0, staging=IMG1), TARGET, TIMEOUT - 1, Turn.STAGING),
        (view(0, staging=IMG1, staged=IMG0), TARGET, TIMEOUT, Turn.LATE),
    ],
)
def test_turn(node: NodeView, target: Target, waited: float | None, expected: Turn) -> None:
    waits = Waits(TIMEOUT, {} if waited is None else {node.name: waited})
    assert waits.turn(node, target) is expected


def test_the_first_wave_waits_until_its_nodes_have_staged() -> None:
    views = [view(i, staging=IMG1) for i in range(3)]
    plan = rolloutplan.plan_rollout(
        pool(2), views, image=IMG1, opted_in=True, staging=Waits(TIMEOUT, {"w00": 30.0, "w01": 10.0})
    )
    assert plan.start == () and plan.late == {}
    assert [plan.phases[v.name] for v in views] == [Phase.STAGING, Phase.STAGING, Phase.WAITING]
    assert plan.staging_wake == TIMEOUT - 30.0
    updating = next(c for c in plan.conditions if c.type == names.UPDATING)
    assert updating.message.startswith("0/3 updated; 2 staging, 1 waiting")


def test_a_staged_node_takes_the_slot_a_downloading_node_leaves_free() -> None:
    views = [view(0, staging=IMG1), view(1, staging=IMG1, staged=IMG1), view(2, staging=IMG1)]
    plan = rolloutplan.plan_rollout(
        pool(2), views, image=IMG1, opted_in=True, staging=Waits(TIMEOUT, dict.fromkeys(["w00", "w02"], 1.0))
    )
    assert plan.start == ("w01",)


def test_past_the_timeout_a_node_takes_its_turn_unstaged_and_the_plan_says_why() -> None:
    views = [view(0, staging=IMG1), view(1, staging=IMG1)]
    plan = rolloutplan.plan_rollout(
        pool(1), views, image=IMG1, opted_in=True, staging=Waits(TIMEOUT, {"w00": TIMEOUT, "w01": 2.0})
    )
    assert plan.start == ("w00",)
    assert "node w00" in plan.late["w00"] and IMG1 in plan.late["w00"] and "900s" in plan.late["w00"]
    assert "daemon log" in plan.late["w00"]
    assert plan.staging_wake == TIMEOUT - 2.0


def test_without_staging_or_for_an_unavailable_node_nothing_waits() -> None:
    views = [view(0), view(1)]
    assert rolloutplan.plan_rollout(pool(1), views, image=IMG1, opted_in=True).start == ("w00",)
    cordoned = [dataclasses.replace(view(0), unschedulable=True), view(1)]
    plan = rolloutplan.plan_rollout(pool(1), cordoned, image=IMG1, opted_in=True, staging=Waits(TIMEOUT))
    assert plan.start == ("w00",) and plan.late == {}


def test_an_unavailable_node_is_not_asked_to_stage() -> None:
    views = [dataclasses.replace(view(0, staging=IMG1), ready=False), view(1)]
    assert plan_staging(views, TARGET, capacity=1, updating=()) == {"w00": None, "w01": IMG1}
