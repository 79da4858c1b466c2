"""The health gate in the pure rollout plan: a node that rolled back halts the pool's rollout of that
image, a new image ends the halt, a resume tries it again once the node's daemon has seen it."""

from __future__ import annotations

from typing import Any

import pytest
from test_rollout_plan import IMG, OLD_IMG, R1, R2, conds, node, plan, pool

from mcosup.model import health, names
from mcosup.model.node import NodeView, Target
from mcosup.supervisor import haltplan

NEW_IMG = "registry.local/os@sha256:" + "c" * 64
WHY = "node not Ready within 600s"


def layered_pool(image: str = IMG, **kw: Any) -> dict[str, Any]:
    return pool(layered=True, image=image, build=names.BUILD_SUCCESS, **kw)


def layered_plan(image: str = IMG, nodes: list[dict[str, Any]] | None = None, **kw: Any) -> Any:
    """The plan of a layered pool whose current build of R2 handed off ``image``."""
    max_unavailable = kw.pop("max_unavailable", None)
    return plan(layered_pool(image, max_unavailable=max_unavailable), nodes or [], built=(R2, image), **kw)


def on(image: str | None, config: str = R2, **kw: Any) -> dict[str, Any]:
    return node("", desired=config, desired_image=image, mode=names.MODE_LAYERED, **kw)


def named(name: str, body: dict[str, Any]) -> dict[str, Any]:
    body["metadata"]["name"] = name
    return body


def rolled_back(name: str, *, desired: str = IMG, desired_config: str = R2) -> dict[str, Any]:
    """Given ``desired``, booted it, failed its health check, runs OLD_IMG / R1 again."""
    report = health.rolled_back(desired, WHY)
    return named(
        name,
        node(
            name,
            desired=desired_config,
            current=R1,
            desired_image=desired,
            current_image=OLD_IMG,
            mode=names.MODE_LAYERED,
            state=report[names.STATE],
            reason=report[names.REASON],
            ours=True,
            unschedulable=True,
        ),
    )


def waiting(name: str) -> dict[str, Any]:
    return named(name, on(OLD_IMG, R1))


@pytest.mark.parametrize("what", [IMG, R2])
def test_the_rolled_back_reason_round_trips(what: str) -> None:
    view = NodeView.of(rolled_back("w00", desired=what))
    assert view.reason == f"RolledBack: {what} did not become healthy: {WHY}"
    assert health.rolled_back_from(view) == what


@pytest.mark.parametrize(
    ("state", "reason"),
    [
        (names.STATE_DEGRADED, "step 2/3 (rebase) failed: no such image"),
        (names.STATE_DEGRADED, "RolledBack: without the rest"),
        (names.STATE_DONE, f"RolledBack: {IMG} did not become healthy: {WHY}"),
    ],
)
def test_other_reasons_are_not_a_rollback(state: str, reason: str) -> None:
    assert health.rolled_back_from(NodeView(name="w00", state=state, reason=reason)) is None


def test_a_node_that_rolled_back_halts_the_pool_and_no_other_node_gets_the_image() -> None:
    nodes = [rolled_back("w00"), waiting("w01"), waiting("w02"), named("w03", on(OLD_IMG, R1, ours=True))]
    p = layered_plan(IMG, nodes, in_flight=[])
    assert p.halt is not None and p.halt.nodes == ("w00",) and p.halt.what == IMG
    assert p.start == ()
    assert p.release == ("w03",)  # cordoned for the image, not given it: released
    c = conds(p)
    assert c[names.DEGRADED]["status"] == "True"
    assert c[names.DEGRADED]["reason"] == names.REASON_ROLLOUT_HALTED
    for text in (f"rollout of {IMG} halted", "node w00: RolledBack:", WHY, names.RESUME_ROLLOUT):
        assert text in c[names.DEGRADED]["message"]
    assert c[names.UPDATING]["status"] == "False"
    assert c[names.UPDATING]["reason"] == names.REASON_ROLLOUT_HALTED


def test_the_halted_pool_says_each_nodes_reason_once() -> None:
    broken = named("w01", on(OLD_IMG, R1, state=names.STATE_DEGRADED, reason="step 2/3 (rebase) failed: x"))
    c = conds(layered_plan(IMG, [rolled_back("w00"), broken, waiting("w02")], in_flight=[]))
    message = c[names.DEGRADED]["message"]
    assert message.count(WHY) == 1  # in the halt's text, not again as a degraded node
    assert "1 degraded: node w01 is reporting: step 2/3 (rebase) failed: x" in message
    assert c[names.NODE_DEGRADED]["message"].startswith("2 degraded: node w00 is reporting: RolledBack:")


def test_a_new_image_ends_the_halt_and_the_rolled_back_node_goes_first() -> None:
    nodes = [waiting("w00"), rolled_back("w01"), waiting("w02")]
    p = layered_plan(NEW_IMG, nodes)
    assert p.halt is None
    assert p.start == ("w01",)
    assert p.target == Target(names.MODE_LAYERED, R2, NEW_IMG)


def test_a_legacy_pool_halts_on_its_config() -> None:
    failed = named("w00", node("w00", desired=R2, current=R1, mode=names.MODE_LEGACY))
    report = health.rolled_back(R2, WHY)
    failed["metadata"]["annotations"].update(report)
    p = plan(pool(), [failed, named("w01", node("w01", desired=R1))])
    assert p.halt is not None and p.halt.what == R2 and p.start == ()


def test_after_a_resume_the_node_gets_the_image_again_only_once_its_daemon_reported_done() -> None:
    resumed = rolled_back("w00")
    resumed["metadata"]["annotations"].update(
        {names.DESIRED_CONFIG: R1, names.DESIRED_IMAGE: OLD_IMG}  # given back what it runs
    )
    p = layered_plan(IMG, [resumed, waiting("w01")], max_unavailable=2)
    assert p.halt is None
    assert p.start == ("w01",)  # the rollout goes on; w00 waits for its daemon
    resumed["metadata"]["annotations"].update({names.STATE: names.STATE_DONE, names.REASON: ""})
    assert layered_plan(IMG, [resumed, waiting("w01")], max_unavailable=2).start == ("w00", "w01")


def test_resume_gives_back_what_the_node_runs() -> None:
    assert haltplan.running(NodeView.of(rolled_back("w00"))) == Target(names.MODE_LAYERED, R1, OLD_IMG)
    legacy = NodeView(name="w00", current_config=R1)
    assert haltplan.running(legacy) == Target(names.MODE_LEGACY, R1, None)
    assert haltplan.running(NodeView(name="w00")) is None


@pytest.mark.parametrize(
    ("value", "seconds"), [(None, health.DEFAULT_HEALTH_CHECK_SECONDS), ("1", 1), (" 900 ", 900)]
)
def test_health_check_seconds(value: str | None, seconds: int) -> None:
    p = pool()
    if value is not None:
        p["metadata"]["annotations"] = {names.HEALTH_CHECK_SECONDS: value}
    assert health.health_check_seconds(p) == seconds


@pytest.mark.parametrize("value", ["0", "-5", "10m", "", "1.5"])
def test_bad_health_check_seconds_name_the_pool_the_annotation_and_the_fix(value: str) -> None:
    p = pool()
    p["metadata"]["annotations"] = {names.HEALTH_CHECK_SECONDS: value}
    with pytest.raises(health.HealthCheckError) as exc:
        health.health_check_seconds(p)
    message = str(exc.value)
    assert message.startswith(f"MachineConfigPool worker annotation {names.HEALTH_CHECK_SECONDS}={value!r}")
    assert 'set it like "600" or remove it' in message
