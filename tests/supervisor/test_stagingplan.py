"""Staging ahead of a node's turn (contract 12.1): which nodes download the image, and who goes first."""

from __future__ import annotations

from typing import Any

from mcosup.model import names
from mcosup.model.node import NodeView, Target
from mcosup.supervisor import rolloutplan
from mcosup.supervisor.stagingplan import plan_staging

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
