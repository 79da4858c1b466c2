"""Builds on the supervisor's /metrics: finished builds by result, and how long they took.

Builds run in the builder pod, which serves no HTTP; their outcome is on the pools, which the supervisor
watches anyway. A build counts when ``BuildSuccess`` or ``BuildFailed`` turns True; its duration runs
from when ``Building`` turned True (as seen by this replica) to then. What was already finished when
this replica started is not counted again.
"""

from __future__ import annotations

import datetime
from collections.abc import Mapping
from typing import Any

from mcosup.model import conditions, names
from mcosup.runtime.metrics import Metrics

_RESULTS = {names.BUILD_SUCCESS: "success", names.BUILD_FAILED: "failure"}


def _time(value: str | None) -> datetime.datetime | None:
    try:
        return datetime.datetime.fromisoformat(str(value).replace("Z", "+00:00")) if value else None
    except ValueError:
        return None


class BuildObserver:
    def __init__(self, metrics: Metrics):
        self.metrics = metrics
        self._finished: dict[str, tuple[str, str]] = {}  # pool -> (condition type, lastTransitionTime)
        self._building_since: dict[str, str] = {}

    def on_pool(self, event: str, pool: Mapping[str, Any]) -> None:
        name = str(pool["metadata"]["name"])
        if event == "DELETED":
            self._finished.pop(name, None)
            self._building_since.pop(name, None)
            return
        conds = (pool.get("status") or {}).get("conditions") or []
        building = conditions.find(conds, names.BUILDING)
        if building is not None and building.get("status") == "True":
            self._building_since[name] = str(building.get("lastTransitionTime", ""))
        done = next(
            (
                (t, str(c.get("lastTransitionTime", "")))
                for t in _RESULTS
                if (c := conditions.find(conds, t)) is not None and c.get("status") == "True"
            ),
            ("", ""),
        )
        first_sight = name not in self._finished
        previous = self._finished.get(name)
        self._finished[name] = done
        if first_sight or not done[0] or done == previous:
            return
        self.metrics.builds.labels(_RESULTS[done[0]]).inc()
        start, end = _time(self._building_since.pop(name, None)), _time(done[1])
        if start is not None and end is not None and end >= start:
            self.metrics.build_duration.observe((end - start).total_seconds())
