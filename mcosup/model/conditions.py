"""Status conditions as Kubernetes conventions want them. Pure.

``lastTransitionTime`` changes only when ``status`` changes; reason and message may change freely.
"""

from __future__ import annotations

import dataclasses
import datetime
from collections.abc import Iterable, Mapping, Sequence
from typing import Any, Literal

from mcosup.model.objects import Obj

Status = Literal["True", "False", "Unknown"]


def now_rfc3339() -> str:
    return datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


@dataclasses.dataclass(frozen=True)
class Condition:
    type: str
    status: Status
    reason: str = ""
    message: str = ""


#: Condition types for which True is bad news; for every other type, False is.
BAD_WHEN_TRUE = frozenset({"Degraded", "NodeDegraded", "RenderDegraded", "BuildFailed"})


def is_bad(cond: Condition) -> bool:
    """Whether ``cond`` reports trouble (its Event is a Warning)."""
    return (cond.status == "True") == (cond.type in BAD_WHEN_TRUE)


def find(conditions: Iterable[Mapping[str, Any]] | None, type_: str) -> Mapping[str, Any] | None:
    for cond in conditions or ():
        if cond.get("type") == type_:
            return cond
    return None


def is_true(obj: Mapping[str, Any], type_: str) -> bool:
    cond = find((obj.get("status") or {}).get("conditions"), type_)
    return cond is not None and cond.get("status") == "True"


def apply(
    existing: Sequence[Mapping[str, Any]] | None,
    updates: Iterable[Condition] = (),
    remove: Iterable[str] = (),
    *,
    now: str | None = None,
) -> list[Obj]:
    """The condition list after setting ``updates`` and dropping the types in ``remove``.

    Conditions of other types (other controllers') are kept as they are, in their order.
    """
    stamp = now or now_rfc3339()
    result: list[Obj] = [dict(c) for c in existing or () if c.get("type") not in set(remove)]
    for update in updates:
        old = next((c for c in result if c.get("type") == update.type), None)
        new: Obj = {
            "type": update.type,
            "status": update.status,
            "reason": update.reason,
            "message": update.message,
            "lastTransitionTime": stamp,
        }
        if old is None:
            result.append(new)
            continue
        if old.get("status") == update.status and old.get("lastTransitionTime"):
            new["lastTransitionTime"] = old["lastTransitionTime"]
        old.clear()
        old.update(new)
    return result


def changed(before: Sequence[Mapping[str, Any]] | None, after: Sequence[Mapping[str, Any]]) -> list[str]:
    """Types whose status, reason or message differ (added and removed ones included)."""

    def view(conds: Sequence[Mapping[str, Any]] | None) -> dict[str, tuple[Any, Any, Any]]:
        return {c.get("type", ""): (c.get("status"), c.get("reason"), c.get("message")) for c in conds or ()}

    old, new = view(before), view(after)
    return sorted(t for t in old.keys() | new.keys() if old.get(t) != new.get(t))
