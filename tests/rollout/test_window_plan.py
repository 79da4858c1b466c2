"""Maintenance windows in the pure rollout plan: the gate a pool's annotation gives at an instant, and
what the plan starts and reports under it."""

from __future__ import annotations

import datetime as dt
from typing import Any

import pytest
from test_rollout_plan import R1, R2, conds, fleet, node, plan, pool

from mcosup.model import names
from mcosup.supervisor import windowplan

MONDAY_0059_PARIS = dt.datetime.fromisoformat("2026-12-07T00:59:00+01:00")
WINDOW = "Mon-Fri 01:00-05:00 Europe/Paris"


def windowed(text: str | None = WINDOW, **kw: Any) -> dict[str, Any]:
    p = pool(**kw)
    if text is not None:
        p["metadata"].setdefault("annotations", {})[names.MAINTENANCE_WINDOW] = text
    return p


def gate_at(text: str | None, when: str, margin: float = 600) -> windowplan.Gate:
    return windowplan.gate(windowed(text), dt.datetime.fromisoformat(when), margin)


def test_a_pool_without_a_window_may_always_start() -> None:
    assert gate_at(None, "2026-12-07T00:59:00+01:00") == windowplan.OPEN


def test_inside_a_window_updates_may_start_until_the_margin_before_its_end() -> None:
    g = gate_at(WINDOW, "2026-12-07T04:00:00+01:00", margin=600)
    assert g.may_start and g.error is None
    assert g.wake_after == 50 * 60  # the gate closes at 04:50, ten minutes before the end


def test_outside_a_window_the_message_names_the_window_and_the_next_start() -> None:
    g = gate_at(WINDOW, "2026-12-07T00:59:00+01:00")
    assert not g.may_start and g.error is None
    assert g.wake_after == 60
    assert f'outside the maintenance window "{WINDOW}"' in g.message
    assert "next window opens at 2026-12-07T01:00:00+01:00" in g.message
    assert "updates already started finish" in g.message


def test_too_late_in_a_window_waits_for_the_next_one() -> None:
    g = gate_at(WINDOW, "2026-12-11T04:55:00+01:00")  # Friday: next is Monday
    assert not g.may_start
    assert f'window "{WINDOW}" closes at 2026-12-11T05:00:00+01:00, too soon' in g.message
    assert "next window opens at 2026-12-14T01:00:00+01:00" in g.message
    assert (
        g.wake_after
        == (
            dt.datetime.fromisoformat("2026-12-14T01:00:00+01:00")
            - dt.datetime.fromisoformat("2026-12-11T04:55:00+01:00")
        ).total_seconds()
    )


def test_windows_shorter_than_the_margin_never_start_an_update_and_say_so() -> None:
    g = gate_at("Mon 01:00-01:05 UTC", "2026-12-07T00:00:00+00:00", margin=600)
    assert not g.may_start and g.wake_after is None
    assert "no window in the next week is open for 600s (MCOSUP_WINDOW_MARGIN) or more" in g.message


@pytest.mark.parametrize(
    ("text", "part"),
    [
        ("Mon-Fry 01:00-05:00 UTC", 'day "Fry" is not a day'),
        (
            "Mon 01:00-05:00 UTC; Tue 01:00-05:00 Mars/Olympus",
            'window 2 ("Tue 01:00-05:00 Mars/Olympus"): time zone',
        ),
        ("", "is empty"),
    ],
)
def test_an_unparsable_window_is_an_error_naming_pool_annotation_and_part(text: str, part: str) -> None:
    g = gate_at(text, "2026-12-07T02:00:00+01:00")
    assert not g.may_start
    assert g.error is not None and part in g.error
    assert g.error.startswith(f"MachineConfigPool worker annotation {names.MAINTENANCE_WINDOW}: ")
    assert g.error.endswith("no node update starts until it is fixed or removed")


# The plan under the gate.


def test_outside_the_window_nothing_starts_and_the_pool_says_when_it_will() -> None:
    p = windowed()
    g = windowplan.gate(p, MONDAY_0059_PARIS, 600)
    result = plan(p, fleet(3), gate=g)
    assert result.start == ()
    c = conds(result)
    for type_ in (names.UPDATED, names.UPDATING):
        assert c[type_]["status"] == "False"
        assert c[type_]["reason"] == names.REASON_OUTSIDE_MAINTENANCE_WINDOW
        assert c[type_]["message"].startswith("0/3 updated; 3 waiting; outside the maintenance window")
    assert c[names.DEGRADED]["status"] == "False"


def test_at_the_opening_updates_start_within_max_unavailable() -> None:
    p = windowed()
    g = windowplan.gate(p, MONDAY_0059_PARIS + dt.timedelta(minutes=1), 600)
    result = plan(p, fleet(3), gate=g)
    assert result.start == ("w00",)
    assert conds(result)[names.UPDATING]["reason"] == "NodesUpdating"


def test_updates_already_started_finish_when_the_window_closes() -> None:
    p = windowed()
    closed = windowplan.gate(p, MONDAY_0059_PARIS, 600)
    nodes = [
        node("w00", ours=True, unschedulable=True),  # cordoned by us, draining
        node("w01", desired=R2, current=R1, state=names.STATE_WORKING),
        node("w02"),
    ]
    result = plan(p, nodes, gate=closed, in_flight=["w00"])
    # The drain goes on to set w00's target; w01's daemon finishes; w02 waits for the next window.
    assert result.start == ("w00",)
    assert result.release == ()
    assert [result.phases[n].value for n in ("w00", "w01", "w02")] == ["draining", "updating", "waiting"]


def test_an_unparsable_window_degrades_the_pool_starts_nothing_and_releases_our_cordons() -> None:
    p = windowed("Mon-Fry 01:00-05:00 UTC")
    g = windowplan.gate(p, MONDAY_0059_PARIS, 600)
    result = plan(p, [node("w09", ours=True, unschedulable=True), *fleet(2)], gate=g)
    assert result.start == ()
    assert result.release == ("w09",)
    deg = conds(result)[names.DEGRADED]
    assert deg["status"] == "True"
    assert deg["reason"] == names.REASON_INVALID_MAINTENANCE_WINDOW
    assert 'day "Fry" is not a day' in deg["message"]
