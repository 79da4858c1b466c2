"""The story chaos runner's judgements (pure), each shown catching what it is for on a small history."""

from __future__ import annotations

from typing import Any

import story_invariants as inv

from mcosup.model import names, rendering
from mcosup.sim.objects import base_machineconfigs, pool_object


def node(name: str, *, done: bool = True, cordoned: bool = False) -> dict[str, Any]:
    ann = {names.STATE: names.STATE_DONE if done else names.STATE_WORKING}
    ann |= {names.DESIRED_CONFIG: "rendered-worker-a", names.CURRENT_CONFIG: "rendered-worker-a"}
    if cordoned:
        ann[names.CORDONED_BY] = names.CORDONED_BY_VALUE
    return {
        "kind": "Node",
        "metadata": {"name": name, "annotations": ann, "labels": {names.DAEMON_MODE: names.MODE_LEGACY}},
        "spec": {"unschedulable": cordoned},
        "status": {"conditions": [{"type": "Ready", "status": "True"}]},
    }


def pod(name: str, labels: dict[str, str], phase: str = "Running") -> dict[str, Any]:
    return {
        "kind": "Pod",
        "metadata": {"name": name, "namespace": "ns", "labels": labels},
        "status": {"phase": phase},
    }


def history(*objs: tuple[str, dict[str, Any]]) -> list[tuple[int, str, dict[str, Any]]]:
    return [(i + 1, kind, obj) for i, (kind, obj) in enumerate(objs)]


def test_max_unavailable_over_the_history() -> None:
    nodes = ["w-0", "w-1"]
    one_down = history(("ADDED", node("w-0")), ("ADDED", node("w-1")), ("MODIFIED", node("w-0", done=False)))
    assert inv.max_unavailable(one_down, nodes, 1, since=0) == []
    both = [*one_down, (4, "MODIFIED", node("w-1", done=False))]
    assert inv.max_unavailable(both, nodes, 1, since=0) == [
        "2 worker nodes unavailable at once (w-0, w-1) at Node version 4"
    ]
    assert "proved nothing" in inv.max_unavailable(one_down[:2], nodes, 1, since=0)[0]


def test_two_builder_pods_or_two_builds_of_a_pool_at_once() -> None:
    builder = {names.BUILDER_APP_LABEL: names.BUILDER_APP_VALUE}
    build = {names.BUILD_OBJECT_LABEL: "", names.TARGET_POOL_LABEL: "worker"}
    pods = history(("ADDED", pod("b1", builder)), ("ADDED", pod("b2", builder, "Failed")))
    assert inv.builder_pods(pods) == []
    assert inv.builder_pods([*pods, (3, "MODIFIED", pod("b2", builder))]) != []
    builds = history(
        ("ADDED", pod("x", build)), ("MODIFIED", pod("x", build, "Succeeded")), ("ADDED", pod("y", build))
    )
    assert inv.builds_in_flight(builds) == []
    assert inv.builds_in_flight([*builds, (4, "ADDED", pod("z", build))]) == [
        "pool worker: 2 builds in flight at Pod version 4: ['ns/y', 'ns/z']"
    ]


def test_an_image_recorded_for_a_config_the_pool_no_longer_runs() -> None:
    def pool(config: str, image: str | None) -> dict[str, Any]:
        ann = {names.NEWEST_IMAGE_ANNOTATION: image} if image else {}
        return {
            "metadata": {"name": "worker", "annotations": ann},
            "spec": {"configuration": {"name": config}},
        }

    built_for = {"img-a": "rendered-a", "img-b": "rendered-b"}.get
    fine = history(("ADDED", pool("rendered-a", None)), ("MODIFIED", pool("rendered-a", "img-a")))
    assert inv.images_recorded(fine, built_for) == []
    stale = [
        *fine,
        (3, "MODIFIED", pool("rendered-b", "img-a")),
        (4, "MODIFIED", pool("rendered-c", "img-b")),
    ]
    assert inv.images_recorded(stale, built_for) == [
        "pool worker: image img-b (built for rendered-b) recorded at pool version 4 while its current config "
        "was rendered-c"
    ]


def test_the_end_state() -> None:
    mcs = base_machineconfigs("worker")
    pool = pool_object("worker")
    expected = rendering.render("worker", mcs).name
    pool["spec"]["configuration"] = {"name": expected}
    nodes = [node("w-0")]
    for n in nodes:
        n["metadata"]["annotations"] |= {names.DESIRED_CONFIG: expected, names.CURRENT_CONFIG: expected}
    assert inv.end_state(pool, nodes, mcs, []) == []
    lost = inv.end_state(pool, nodes, mcs[:-1], ["Pod/build-worker-1"])
    assert lost[0] == "left behind: Pod/build-worker-1"
    assert "but its MachineConfigs merge into" in lost[1]
    cordoned = node("w-0", cordoned=True)
    cordoned["metadata"]["annotations"] |= {names.DESIRED_CONFIG: expected, names.CURRENT_CONFIG: expected}
    assert "node w-0 left cordoned" in inv.end_state(pool, [cordoned], mcs, [])


def test_a_crash_in_a_log_is_a_traceback_nothing_said_was_handled() -> None:
    handled = (
        "render: reconcile of worker failed; retrying in 0.05s\nTraceback (most recent call last):\n  x\n"
    )
    assert inv.crash_in_log(handled) is None
    crashed = "INFO started\nTraceback (most recent call last):\nOSError: [Errno 98] address already in use\n"
    assert "Errno 98" in (inv.crash_in_log(crashed) or "")
    assert inv.crash_in_log("Task exception was never retrieved\n") is not None
