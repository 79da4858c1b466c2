"""Writing MachineConfigPool (and MachineOSConfig) status conditions from several controllers without
clobbering each other.

Conditions are one list, and a merge patch replaces lists whole, so every writer does read-modify-write
with the object's resourceVersion in the patch: a concurrent writer makes it a 409, and we re-read and
apply our change again. Each writer touches only its own condition types.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Mapping
from typing import Any

from mcosup.kube import errors
from mcosup.kube.client import Kube
from mcosup.kube.resources import MACHINECONFIGPOOLS, Resource
from mcosup.model import conditions
from mcosup.model.conditions import Condition
from mcosup.model.objects import Obj

log = logging.getLogger(__name__)


async def update_pool_status(
    kube: Kube,
    pool: Obj,
    *,
    set_conditions: Iterable[Condition] = (),
    remove_conditions: Iterable[str] = (),
    status_fields: Mapping[str, Any] | None = None,
    events: bool = False,
    attempts: int = 5,
    resource: Resource = MACHINECONFIGPOOLS,
) -> Obj:
    """Set/remove conditions (and plain status fields) on ``pool``; returns the pool as written.

    ``resource``: another cluster-scoped kind with status conditions (a MachineOSConfig).

    ``pool`` may be stale (from a cache): a conflict re-reads it. Nothing is written when nothing would
    change. With ``events``, every condition transition is also recorded as an Event.
    """
    updates = list(set_conditions)
    remove = list(remove_conditions)
    name = pool["metadata"]["name"]
    current = pool
    for _ in range(attempts):
        status = current.get("status") or {}
        before = status.get("conditions") or []
        after = conditions.apply(before, updates, remove)
        changed_types = conditions.changed(before, after)
        fields_differ = any(status.get(k) != v for k, v in (status_fields or {}).items())
        if not changed_types and not fields_differ:
            return current
        patch: Obj = {
            "metadata": {"resourceVersion": current["metadata"]["resourceVersion"]},
            "status": {"conditions": after, **(status_fields or {})},
        }
        try:
            written = await kube.patch_status(resource, name, patch)
        except errors.Conflict:
            current = await kube.get(resource, name)
            continue
        if events:
            for cond in updates:
                if cond.type in changed_types:
                    text = f"{cond.type}={cond.status}" + (f": {cond.message}" if cond.message else "")
                    await kube.record_event(
                        written,
                        reason=cond.reason or cond.type,
                        message=text,
                        type_="Warning" if conditions.is_bad(cond) else "Normal",
                    )
        return written
    raise errors.Conflict(409, "Conflict", f"{resource.kind} {name}: status kept changing under us")
