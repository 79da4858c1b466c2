"""The pure rollout plan: targets, unavailability, capacity, order, pause, hold, and pool status."""

from __future__ import annotations

from typing import Any

import pytest

from mcosup.model import machineosbuild, names
from mcosup.model.machineosconfig import labelled
from mcosup.model.node import ZONE_LABEL, NodeView, Target, target_patch
from mcosup.supervisor import rolloutplan
from mcosup.supervisor.rolloutplan import Phase

R0 = "rendered-worker-" + "0" * 32
R1 = "rendered-worker-" + "1" * 32
R2 = "rendered-worker-" + "2" * 32
IMG = "registry.local/os@sha256:" + "a" * 64
OLD_IMG = "registry.local/os@sha256:" + "b" * 64


def pool(
    *,
    rendered: str | None = R2,
    max_unavailable: Any = None,
    paused: bool = False,
    layered: bool = False,
    image: str | None = None,
    build: str | None = None,
    conditions: list[dict[str, Any]] | None = None,
) -> dict[str, Any]:
    spec: dict[str, Any] = {"nodeSelector": {"matchLabels": {"node-role.kubernetes.io/worker": ""}}}
    if rendered:
        spec["configuration"] = {"name": rendered, "source": []}
    if max_unavailable is not None:
        spec["maxUnavailable"] = max_unavailable
    if paused:
        spec["paused"] = True
    meta: dict[str, Any] = {"name": "worker", "resourceVersion": "7", "generation": 3, "labels": {}}
    if layered:
        meta["labels"][names.LAYERING_ENABLED] = ""
    if image:
        meta["annotations"] = {names.NEWEST_IMAGE_ANNOTATION: image}
    conds = list(conditions or [])
    if build:
        conds.append({"type": build, "status": "True", "reason": build, "message": "the builder's words"})
    return {"metadata": meta, "spec": spec, "status": {"conditions": conds}}


def node(
    name: str,
    *,
    desired: str | None = R1,
    current: str | None = None,
    desired_image: str | None = None,
    current_image: str | None = "same",
    mode: str | None = names.MODE_LEGACY,
    state: str | None = names.STATE_DONE,
    ready: bool = True,
    unschedulable: bool = False,
    ours: bool = False,
    zone: str | None = None,
    created: str = "2026-01-01T00:00:00Z",
    reason: str | None = None,
) -> dict[str, Any]:
    current = desired if current is None else current
    current_image = desired_image if current_image == "same" else current_image
    labels = {"node-role.kubernetes.io/worker": ""}
    if mode:
        labels[names.DAEMON_MODE] = mode
    if zone:
        labels[ZONE_LABEL] = zone
    ann: dict[str, str] = {}
    for key, value in (
        (names.DESIRED_CONFIG, desired),
        (names.CURRENT_CONFIG, current),
        (names.DESIRED_IMAGE, desired_image),
        (names.CURRENT_IMAGE, current_image),
        (names.STATE, state),
        (names.REASON, reason),
    ):
        if value is not None:
            ann[key] = value
    if ours:
        ann[names.CORDONED_BY] = names.CORDONED_BY_VALUE
    return {
        "metadata": {
            "name": name,
            "labels": labels,
            "annotations": ann,
            "creationTimestamp": created,
            "resourceVersion": "1",
        },
        "spec": {"unschedulable": True} if unschedulable else {},
        "status": {"conditions": [{"type": "Ready", "status": "True" if ready else "False"}]},
    }


def fleet(n: int, **kw: Any) -> list[dict[str, Any]]:
    return [node(f"w{i:02d}", created=f"2026-01-{i + 1:02d}T00:00:00Z", **kw) for i in range(n)]


def conds(p: rolloutplan.Plan) -> dict[str, Any]:
    return {c.type: {"status": c.status, "reason": c.reason, "message": c.message} for c in p.conditions}


BUILD = "worker-0123456789abcdef"


def handoff(
    p: dict[str, Any], built: tuple[str, str] | None, state: str = names.MOSB_SUCCEEDED, current: str = BUILD
) -> str | None:
    """The pool's image through the hand-off: its MachineOSConfig naming ``current`` as its build, and
    MachineOSBuild ``BUILD`` in ``state`` for ``built`` = (rendered config, digested image)."""
    if built is None:
        return machineosbuild.image_for_pool(p, None, lambda _: None)
    rendered, image = built
    mosb = {
        "metadata": {"name": BUILD},
        "spec": {"machineConfig": {"name": rendered}, "machineOSConfig": {"name": "worker"}},
        "status": {
            "conditions": [vars(c) for c in machineosbuild.conditions_for(state)],
            "digestedImagePushSpec": image,
        },
    }
    mosc = {
        "metadata": {"name": "worker", "annotations": {names.CURRENT_MOSB_ANNOTATION: current}},
        "spec": {"machineConfigPool": {"name": "worker"}},
    }
    return machineosbuild.image_for_pool(p, mosc, {BUILD: mosb}.get)


def plan(
    p: dict[str, Any], nodes: list[dict[str, Any]], built: tuple[str, str] | None = None, **kw: Any
) -> rolloutplan.Plan:
    views = [NodeView.of(n) for n in nodes]
    return rolloutplan.plan_rollout(p, views, image=handoff(p, built), opted_in=labelled(p), **kw)


# maxUnavailable, as Kubernetes and the MCO resolve it.


@pytest.mark.parametrize(
    ("value", "nodes", "expected"),
    [
        (None, 10, 1),
        (3, 10, 3),
        (0, 10, 1),  # 0 cannot stop updates (the CRD says so): it means 1
        ("30%", 10, 3),
        ("25%", 10, 2),  # rounds down
        ("5%", 10, 1),  # rounds down to 0, then at least 1
        ("100%", 7, 7),
        ("0%", 4, 1),
        (20, 5, 20),
    ],
)
def test_max_unavailable(value: Any, nodes: int, expected: int) -> None:
    assert rolloutplan.max_unavailable(pool(max_unavailable=value), nodes) == expected


@pytest.mark.parametrize("value", ["three", "-1%", -1, "3", "1.5%", True, 1.5])
def test_max_unavailable_refuses_bad_values_naming_pool_field_and_fix(value: Any) -> None:
    with pytest.raises(rolloutplan.RolloutError) as err:
        rolloutplan.max_unavailable(pool(max_unavailable=value), 10)
    text = str(err.value)
    assert "MachineConfigPool worker" in text and "spec.maxUnavailable" in text and "20%" in text


def test_bad_max_unavailable_starts_nothing_and_degrades_the_pool() -> None:
    p = plan(pool(max_unavailable="lots"), fleet(3))
    assert p.start == ()
    assert p.error is not None
    deg = conds(p)[names.DEGRADED]
    assert deg["status"] == "True" and "spec.maxUnavailable" in deg["message"]


# Targets.


@pytest.mark.parametrize(
    ("kw", "expected"),
    [
        ({}, Target(names.MODE_LEGACY, R2, None)),
        (
            {"layered": True, "build": names.BUILD_SUCCESS, "built": (R2, IMG)},
            Target(names.MODE_LAYERED, R2, IMG),
        ),
        # The hand-off is the build's field: the pool's annotation and condition words play no part.
        ({"layered": True, "image": OLD_IMG, "built": (R2, IMG)}, Target(names.MODE_LAYERED, R2, IMG)),
        ({"layered": True, "build": names.BUILDING}, None),
        ({"layered": True, "build": names.BUILD_PENDING}, None),
        ({"layered": True, "build": names.BUILD_FAILED}, None),
        # The current build succeeded for the previous config: its image is not this config's image.
        ({"layered": True, "image": OLD_IMG, "build": names.BUILD_SUCCESS, "built": (R1, OLD_IMG)}, None),
        # The current build is still building, failed or was interrupted: nothing to roll out.
        ({"layered": True, "built": (R2, IMG), "state": names.MOSB_BUILDING}, None),
        ({"layered": True, "built": (R2, IMG), "state": names.MOSB_FAILED}, None),
        ({"layered": True, "built": (R2, IMG), "state": names.MOSB_INTERRUPTED}, None),
        # A Succeeded build that is not the MachineOSConfig's current one is not the pool's image.
        ({"layered": True, "built": (R2, IMG), "current": "worker-fedcba9876543210"}, None),
        ({"layered": True, "image": IMG, "build": names.BUILD_SUCCESS}, None),  # no MachineOSBuild
        ({"rendered": None, "layered": True, "built": (R2, IMG)}, None),
        # Opted out with a leftover image annotation and build: legacy, no image.
        (
            {"image": IMG, "build": names.BUILD_SUCCESS, "built": (R2, IMG)},
            Target(names.MODE_LEGACY, R2, None),
        ),
    ],
)
def test_pool_target(kw: dict[str, Any], expected: Target | None) -> None:
    built, state, current = (
        kw.pop("built", None),
        kw.pop("state", names.MOSB_SUCCEEDED),
        kw.pop("current", BUILD),
    )
    p = pool(**kw)
    target, hold = rolloutplan.pool_target(p, handoff(p, built, state, current), labelled(p))
    assert target == expected
    assert (hold is None) == (expected is not None)


def test_holding_for_an_image_changes_no_target_and_says_why() -> None:
    p = plan(pool(layered=True, build=names.BUILDING), fleet(4))
    assert p.target is None and p.start == ()
    assert p.hold is not None and R2 in p.hold and names.BUILDING in p.hold
    upd = conds(p)
    assert upd[names.UPDATING]["status"] == "True" and upd[names.UPDATING]["reason"] == "WaitingForImage"


# Unavailability.


@pytest.mark.parametrize(
    ("kw", "unavailable"),
    [
        ({}, False),
        ({"ready": False}, True),
        ({"unschedulable": True}, True),
        ({"state": names.STATE_WORKING}, True),
        ({"state": names.STATE_REBOOTING}, True),
        ({"state": names.STATE_DEGRADED}, True),
        ({"state": None}, True),
        ({"current": R2}, True),  # the lag before the daemon reacts: desired != current, still "Done"
        ({"desired_image": IMG, "current_image": None}, True),
        ({"desired_image": IMG}, False),
    ],
)
def test_unavailable(kw: dict[str, Any], unavailable: bool) -> None:
    assert NodeView.of(node("n", **kw)).unavailable is unavailable


# Capacity and order.


def test_ten_nodes_max_three_starts_three_oldest() -> None:
    p = plan(pool(max_unavailable=3), fleet(10))
    assert p.start == ("w00", "w01", "w02")
    assert p.status["updatedMachineCount"] == 0 and p.status["machineCount"] == 10


def test_nodes_in_progress_use_slots_across_restarts() -> None:
    # What a restarted supervisor sees: two nodes targeted and working, one cordoned by us.
    nodes = fleet(10)
    nodes[0] = node("w00", desired=R2, current=R1, state=names.STATE_WORKING, unschedulable=True, ours=True)
    nodes[1] = node("w01", desired=R2, current=R1, state=names.STATE_DONE, unschedulable=True, ours=True)
    nodes[2] = node("w02", unschedulable=True, ours=True)  # drain phase: target not set yet
    p = plan(pool(max_unavailable=3), nodes)
    assert p.start == ("w02",), "a resumed drain only; no new node while three are unavailable"
    assert p.unavailable == ("w00", "w01", "w02")


def test_in_flight_writes_count_before_the_cache_shows_them() -> None:
    p = plan(pool(max_unavailable=3), fleet(10), in_flight={"w05", "w07"})
    assert p.start == ("w05", "w07", "w00")


def test_an_unavailable_node_goes_first_and_takes_no_extra_unavailability() -> None:
    nodes = fleet(5)
    nodes[3] = node("w03", ready=False, created="2026-01-04T00:00:00Z")
    p = plan(pool(max_unavailable=1), nodes)
    assert p.start == ("w03",), "w03 is already unavailable: the one slot is used up by it"
    nodes[3] = node("w03", desired=R2, ready=False)  # not ready but already at target
    p = plan(pool(max_unavailable=2), nodes)
    assert p.start == ("w00",)


def test_a_node_failing_on_its_own_waits_for_a_slot_of_its_own() -> None:
    # Three nodes mid-update (cap 3) and w05 not Ready by itself: updating w05 now would leave four
    # unavailable once it comes back, so it waits; when one update finishes, it goes next, alone.
    working: dict[str, Any] = {
        "desired": R2,
        "current": R1,
        "state": names.STATE_WORKING,
        "unschedulable": True,
        "ours": True,
    }
    nodes = fleet(10)
    for i in range(3):
        nodes[i] = node(f"w{i:02d}", **working)
    nodes[5] = node("w05", ready=False)
    p = plan(pool(max_unavailable=3), nodes)
    assert p.start == (), "four unavailable: nothing new, not even the failed node"
    nodes[0] = node("w00", desired=R2)  # finished and uncordoned
    p = plan(pool(max_unavailable=3), nodes)
    assert p.start == ("w05",)


@pytest.mark.parametrize(
    ("kw", "starts_free"),
    [
        ({"ready": False}, False),  # may come back by itself mid-update
        ({"unschedulable": True}, False),  # an admin's cordon
        ({"state": None}, False),  # no daemon report yet: not a reason to drain it now
        ({"state": names.STATE_DEGRADED}, False),
        ({"current": R0, "state": names.STATE_WORKING}, True),  # mid-update to an older target
        ({"current": R0, "state": names.STATE_DONE}, True),  # targeted, daemon not started yet
    ],
)
def test_which_unavailable_nodes_start_without_a_slot(kw: dict[str, Any], starts_free: bool) -> None:
    nodes = [node("w00", **kw), node("w01", desired=R2, current=R1, state=names.STATE_WORKING)]
    p = plan(pool(max_unavailable=1), nodes)
    assert p.start == (("w00",) if starts_free else ())


def test_zone_then_age_order() -> None:
    nodes = [
        node("a", zone=None, created="2026-01-01T00:00:00Z"),
        node("b", zone="z2", created="2026-01-01T00:00:00Z"),
        node("c", zone="z1", created="2026-01-05T00:00:00Z"),
        node("d", zone="z1", created="2026-01-02T00:00:00Z"),
        node("e", zone=None, created="2025-12-01T00:00:00Z"),
    ]
    p = plan(pool(max_unavailable=5), nodes)
    assert p.start == ("d", "c", "b", "e", "a")


def test_percent_capacity_with_an_admin_cordon_taking_a_slot() -> None:
    nodes = fleet(10)
    nodes[9] = node("w09", unschedulable=True, created="2026-01-10T00:00:00Z")  # admin's cordon
    p = plan(pool(max_unavailable="20%"), nodes)
    assert p.capacity == 2
    assert p.start == ("w09", "w00"), "the cordoned node is updated (not uncordoned), one more starts"


def test_a_degraded_node_on_the_target_holds_a_slot() -> None:
    nodes = fleet(4)
    nodes[0] = node("w00", desired=R2, current=R1, state=names.STATE_DEGRADED, reason="rebase failed")
    p = plan(pool(max_unavailable=1), nodes)
    assert p.start == ()
    c = conds(p)
    assert c[names.NODE_DEGRADED]["status"] == "True"
    assert "w00" in c[names.NODE_DEGRADED]["message"] and "rebase failed" in c[names.NODE_DEGRADED]["message"]
    assert c[names.DEGRADED]["status"] == "True"
    assert p.status["degradedMachineCount"] == 1


# Uncordon and release.


def test_done_nodes_we_cordoned_are_uncordoned_admin_cordons_never() -> None:
    nodes = [
        node("ours", desired=R2, unschedulable=True, ours=True),
        node("admins", desired=R2, unschedulable=True),
        node("working", desired=R2, current=R1, state=names.STATE_WORKING, unschedulable=True, ours=True),
    ]
    p = plan(pool(max_unavailable=3), nodes)
    assert p.uncordon == ("ours",)
    assert p.start == ()


def test_paused_pool_changes_no_target_and_releases_unstarted_drains() -> None:
    nodes = fleet(4)
    nodes[0] = node("w00", unschedulable=True, ours=True)  # cordoned, target not yet set
    nodes[1] = node("w01", desired=R2, current=R1, state=names.STATE_WORKING, unschedulable=True, ours=True)
    nodes[2] = node("w02", desired=R2, unschedulable=True, ours=True)  # finished
    p = plan(pool(max_unavailable=3, paused=True), nodes)
    assert p.start == ()
    assert p.release == ("w00",)
    assert p.uncordon == ("w02",)
    c = conds(p)
    assert c[names.UPDATING]["reason"] == "Paused" and c[names.UPDATED]["status"] == "False"


def test_holding_releases_unstarted_drains() -> None:
    p = plan(pool(layered=True, build=names.BUILDING), [node("w00", unschedulable=True, ours=True)])
    assert p.release == ("w00",) and p.start == ()


# Opt-in and opt-out targets.


def test_layered_target_with_image() -> None:
    p = plan(
        pool(layered=True, build=names.BUILD_SUCCESS, max_unavailable=2),
        fleet(3),
        built=(R2, IMG),
    )
    assert p.target == Target(names.MODE_LAYERED, R2, IMG)
    assert p.start == ("w00", "w01")
    view = NodeView.of(fleet(1)[0])
    patch = target_patch(view, p.target)
    assert patch["metadata"]["labels"] == {names.DAEMON_MODE: names.MODE_LAYERED}
    assert patch["metadata"]["annotations"] == {names.DESIRED_CONFIG: R2, names.DESIRED_IMAGE: IMG}


def test_opt_out_returns_layered_nodes_to_legacy_without_image() -> None:
    nodes = fleet(3, desired=R2, desired_image=IMG, mode=names.MODE_LAYERED)
    p = plan(pool(max_unavailable=1), nodes)
    assert p.target == Target(names.MODE_LEGACY, R2, None)
    assert p.start == ("w00",)
    patch = target_patch(NodeView.of(nodes[0]), p.target)
    assert patch["metadata"]["annotations"][names.DESIRED_IMAGE] is None  # removes it
    assert patch["metadata"]["labels"][names.DAEMON_MODE] == names.MODE_LEGACY


# Status.


@pytest.mark.parametrize(
    ("phases", "message"),
    [
        ({"a": Phase.UPDATED}, "1/1 updated"),
        (
            {
                "a": Phase.UPDATED,
                "b": Phase.UPDATED,
                "c": Phase.UPDATED,
                "d": Phase.DRAINING,
                "e": Phase.REBOOTING,
                **{f"x{i}": Phase.WAITING for i in range(5)},
            },
            "3/10 updated; 1 draining, 1 rebooting, 5 waiting",
        ),
        ({"a": Phase.DEGRADED, "b": Phase.NOT_READY}, "0/2 updated; 1 degraded, 1 not ready"),
    ],
)
def test_progress_message(phases: dict[str, Phase], message: str) -> None:
    assert rolloutplan.progress_message(phases) == message


def test_status_counts_mid_rollout() -> None:
    nodes = fleet(10, desired=R2)
    nodes[0] = node("w00", desired=R2, current=R1, state=names.STATE_REBOOTING, unschedulable=True, ours=True)
    nodes[1] = node("w01", unschedulable=True, ours=True)
    nodes[2] = node("w02", desired=R2, ready=False)
    nodes[3] = node("w03", desired=R2, state=names.STATE_DEGRADED, current=R1, reason="disk full")
    p = plan(pool(max_unavailable=4), nodes)
    s = p.status
    assert (s["machineCount"], s["updatedMachineCount"], s["readyMachineCount"]) == (10, 7, 6)
    assert (s["unavailableMachineCount"], s["degradedMachineCount"]) == (4, 1)
    c = conds(p)
    assert c[names.UPDATING]["message"].startswith("7/10 updated; 1 draining, 1 rebooting, 1 degraded")


def test_all_updated() -> None:
    p = plan(pool(), fleet(3, desired=R2))
    c = conds(p)
    assert c[names.UPDATED]["status"] == "True" and c[names.UPDATING]["status"] == "False"
    assert c[names.DEGRADED]["status"] == "False" and c[names.NODE_DEGRADED]["status"] == "False"
    assert p.status["configuration"]["name"] == R2


def test_drain_stuck_degrades_the_pool_naming_pod_and_pdb() -> None:
    stuck = {"w00": "drain of node w00 stuck: pod app/web-1 blocked by PodDisruptionBudget app/web"}
    p = plan(pool(), fleet(2), drain_stuck=stuck)
    deg = conds(p)[names.DEGRADED]
    assert deg["status"] == "True" and deg["reason"] == names.REASON_DRAIN_STUCK
    assert "app/web-1" in deg["message"] and "app/web" in deg["message"]


def test_render_degraded_folds_into_degraded() -> None:
    cond = {"type": names.RENDER_DEGRADED, "status": "True", "reason": "Bad", "message": "mc 99-x: bad path"}
    p = plan(pool(conditions=[cond]), fleet(1, desired=R2))
    deg = conds(p)[names.DEGRADED]
    assert deg["status"] == "True" and "99-x" in deg["message"]


# Pool membership.


@pytest.mark.parametrize(
    ("labels", "expected"),
    [
        ({"node-role.kubernetes.io/worker": ""}, "worker"),
        ({"node-role.kubernetes.io/worker": "", "node-role.kubernetes.io/infra": ""}, "infra"),
        ({"node-role.kubernetes.io/worker": "", "node-role.kubernetes.io/master": ""}, "master"),
        ({"other": "x"}, None),
    ],
)
def test_pool_of_node(labels: dict[str, str], expected: str | None) -> None:
    pools = [
        {
            "metadata": {"name": n},
            "spec": {"nodeSelector": {"matchLabels": {f"node-role.kubernetes.io/{n}": ""}}},
        }
        for n in ("worker", "master", "infra")
    ]
    pools.append({"metadata": {"name": "everything"}, "spec": {"nodeSelector": {}}})
    assert rolloutplan.pool_of_node({"metadata": {"labels": labels}}, pools) == expected


@pytest.mark.parametrize(
    ("expr", "labels", "ok"),
    [
        ({"key": "a", "operator": "In", "values": ["1", "2"]}, {"a": "2"}, True),
        ({"key": "a", "operator": "In", "values": ["1"]}, {"a": "2"}, False),
        ({"key": "a", "operator": "NotIn", "values": ["1"]}, {}, True),
        ({"key": "a", "operator": "NotIn", "values": ["1"]}, {"a": "1"}, False),
        ({"key": "a", "operator": "Exists"}, {"a": ""}, True),
        ({"key": "a", "operator": "DoesNotExist"}, {"a": ""}, False),
        ({"key": "a", "operator": "Bogus"}, {"a": ""}, False),
    ],
)
def test_selector_expressions(expr: dict[str, Any], labels: dict[str, str], ok: bool) -> None:
    assert rolloutplan.selector_matches({"matchExpressions": [expr]}, labels) is ok
