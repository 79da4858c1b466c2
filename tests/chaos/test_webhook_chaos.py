"""The short version of the webhook chaos run (``make chaos`` runs the long one): hostile bodies against
the HTTPS server in its own process, then certificate rotation under continuous reviews."""

from __future__ import annotations

import webhook_chaos


async def test_hostile_bodies_and_rotation_leave_no_crash_and_no_failed_review() -> None:
    report = await webhook_chaos.run(bodies=2_000, rotations=3, seed=17)
    summary = webhook_chaos.render(report, 17)
    assert report.bodies == 2_000, summary
    assert report.crashes == [], summary
    assert report.failed_during_rotation == [] and report.reviews_during_rotation > 0, summary
    assert report.server_alive, summary
    # Every category was sent and every answer was a verdict or a 400 (or an oversized body cut off).
    assert set(report.by_category) == set(webhook_chaos.CATEGORIES), summary
    assert set(report.outcomes) <= {"verdict", "400", "over the limit, cut off"}, summary
    assert report.outcomes["verdict"] > 0 and report.outcomes["400"] > 0, summary
