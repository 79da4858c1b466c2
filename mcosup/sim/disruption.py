"""PodDisruptionBudget arithmetic for the eviction subresource.

Pure: takes the PDB and the pods it selects, returns the budget and the verdict. It computes the
numbers the disruption controller would publish in the PDB's status (there is no controller in the
emulator, so the eviction handler computes them at eviction time):

- expectedPods: with an integer `minAvailable`, the selected pods that are not terminal
  (Succeeded/Failed); otherwise the scale of the pods' controllers (`expected_scale`), which fails
  for bare pods, as it does on a real cluster (the budget then allows no disruption);
- currentHealthy: those Running, Ready and not being deleted;
- desiredHealthy: `minAvailable` (an int, or a percentage of expectedPods rounded up), or
  expectedPods minus `maxUnavailable` (an int, or a percentage rounded up);
- disruptionsAllowed: max(0, currentHealthy - desiredHealthy).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class Budget:
    expected: int
    current_healthy: int
    desired_healthy: int

    @property
    def disruptions_allowed(self) -> int:
        return max(0, self.current_healthy - self.desired_healthy)

    def status(self, observed_generation: int) -> dict[str, Any]:
        return {
            "observedGeneration": observed_generation,
            "disruptionsAllowed": self.disruptions_allowed,
            "currentHealthy": self.current_healthy,
            "desiredHealthy": self.desired_healthy,
            "expectedPods": self.expected,
        }


class BudgetError(ValueError):
    """The PDB spec cannot be evaluated (e.g. a malformed percentage)."""


def scaled(value: Any, total: int, field: str) -> int:
    """An IntOrString against `total`; percentages round up, as the disruption controller does."""
    if isinstance(value, bool):
        raise BudgetError(f"{field}: {value!r} is not an integer or a percentage")
    if isinstance(value, int):
        return value
    if isinstance(value, str):
        text = value.strip()
        if text.endswith("%"):
            try:
                pct = int(text[:-1])
            except ValueError:
                raise BudgetError(f"{field}: {value!r} is not a valid percentage such as '25%'") from None
            return math.ceil(pct * total / 100)
        try:
            return int(text)
        except ValueError:
            raise BudgetError(f"{field}: {value!r} is not an integer or a percentage") from None
    raise BudgetError(f"{field}: {value!r} is not an integer or a percentage")


def controller_ref(pod: dict[str, Any]) -> dict[str, Any] | None:
    for ref in pod["metadata"].get("ownerReferences") or []:
        if ref.get("controller"):
            return dict(ref)
    return None


def is_terminal(pod: dict[str, Any]) -> bool:
    return (pod.get("status") or {}).get("phase") in ("Succeeded", "Failed")


def is_healthy(pod: dict[str, Any]) -> bool:
    if pod["metadata"].get("deletionTimestamp"):
        return False
    status = pod.get("status") or {}
    if status.get("phase") != "Running":
        return False
    return any(c.get("type") == "Ready" and c.get("status") == "True" for c in status.get("conditions") or [])


def budget(
    pdb: dict[str, Any], pods: list[dict[str, Any]], expected_scale: Callable[[], int] | None = None
) -> Budget:
    """`expected_scale` gives the replicas of the pods' controllers, raising BudgetError when unknown."""
    spec = pdb.get("spec") or {}
    live = [p for p in pods if not is_terminal(p)]
    expected = len(live)
    healthy = sum(1 for p in live if is_healthy(p))
    min_available = spec.get("minAvailable")
    if min_available is not None or spec.get("maxUnavailable") is not None:
        if not (isinstance(min_available, int) and not isinstance(min_available, bool)):
            if expected_scale is None:
                raise BudgetError("the expected scale of the selected pods is unknown")
            expected = expected_scale()
    if min_available is not None:
        desired = scaled(min_available, expected, "spec.minAvailable")
    elif spec.get("maxUnavailable") is not None:
        desired = max(0, expected - scaled(spec["maxUnavailable"], expected, "spec.maxUnavailable"))
    else:
        desired = 1  # neither set: the API defaults minAvailable to 1
    return Budget(expected=expected, current_healthy=healthy, desired_healthy=desired)
