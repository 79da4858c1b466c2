"""Which pods a drain evicts, and which PodDisruptionBudget it names when an eviction is refused."""

from __future__ import annotations

from typing import Any

import pytest

from mcosup.supervisor import drain, rolloutplan


def pod(
    name: str,
    *,
    node: str = "n1",
    ns: str = "app",
    owner: str | None = None,
    mirror: bool = False,
    terminating: bool = False,
    labels: dict[str, str] | None = None,
) -> dict[str, Any]:
    meta: dict[str, Any] = {"name": name, "namespace": ns, "labels": labels or {}}
    if owner:
        meta["ownerReferences"] = [{"kind": owner, "name": "o", "controller": True}]
    if mirror:
        meta["annotations"] = {rolloutplan.MIRROR_POD_ANNOTATION: "x"}
    if terminating:
        meta["deletionTimestamp"] = "2026-11-26T09:00:00Z"
    return {"metadata": meta, "spec": {"nodeName": node}}


@pytest.mark.parametrize(
    ("p", "ready", "drained"),
    [
        (pod("plain"), True, True),
        (pod("rs", owner="ReplicaSet"), True, True),
        (pod("ds", owner="DaemonSet"), True, False),
        (pod("static", mirror=True), True, False),
        (pod("elsewhere", node="n2"), True, False),
        (pod("going", terminating=True), True, True),  # still waited for: the kubelet finishes it
        (pod("going", terminating=True), False, False),  # no kubelet to finish it: counts as gone
    ],
)
def test_pods_to_drain(p: dict[str, Any], ready: bool, drained: bool) -> None:
    assert bool(drain.pods_to_drain([p], "n1", node_ready=ready)) is drained


def pdb(name: str, selector: dict[str, Any] | None, allowed: int, ns: str = "app") -> dict[str, Any]:
    spec = {} if selector is None else {"selector": selector}
    return {
        "metadata": {"name": name, "namespace": ns},
        "spec": spec,
        "status": {"disruptionsAllowed": allowed},
    }


@pytest.mark.parametrize(
    ("budgets", "expected"),
    [
        ([pdb("web", {"matchLabels": {"app": "web"}}, 0)], "app/web"),
        ([pdb("other", {"matchLabels": {"app": "db"}}, 0)], None),
        ([pdb("web", {"matchLabels": {"app": "web"}}, 0, ns="elsewhere")], None),
        ([pdb("all", {}, 0)], "app/all"),  # policy/v1: an empty selector covers the namespace
        ([pdb("loose", {}, 2), pdb("tight", {"matchLabels": {"app": "web"}}, 0)], "app/tight"),
    ],
)
def test_blocking_budget(budgets: list[dict[str, Any]], expected: str | None) -> None:
    assert drain.blocking_budget(pod("web-1", labels={"app": "web"}), budgets) == expected


def test_stuck_message_names_node_pod_budget_and_the_way_out() -> None:
    stuck = drain.Stuck("n1", "app/web-1", "app/web", "Cannot evict pod", 3600)
    text = stuck.message
    for part in ("n1", "app/web-1", "PodDisruptionBudget app/web", "cordoned", "retried", "3600s"):
        assert part in text
