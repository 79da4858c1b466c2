"""The short version of the story chaos run (``make chaos SEEDS=200`` runs the long one): the layering
story, by label and by MachineOSConfig, under a fixed seed's faults, with no invariant broken over the
whole history and every node converged at the end."""

from __future__ import annotations

import pytest
import story_chaos

pytestmark = [pytest.mark.slow, pytest.mark.timeout(900)]

#: One seed (~3 minutes here): its schedule kills the leader, the builder and daemons, restarts the API
#: server and throttles it, among others (``make chaos`` runs many).
SEEDS = [2]


async def test_the_story_under_a_seeded_fault_schedule_breaks_no_invariant() -> None:
    results, _ = await story_chaos.run(SEEDS, baseline=False)
    summary = story_chaos.render(results)
    assert [r.violations for r in results] == [[] for _ in SEEDS], summary
    injected = {kind for r in results for kind in r.faults}
    assert len(injected) >= 6, summary
