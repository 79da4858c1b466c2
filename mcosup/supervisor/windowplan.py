"""Whether a pool's node updates may start now: its maintenance windows (contract 12.4), decided.

Pure: the pool and the instant in, a :class:`Gate` out; :mod:`mcosup.supervisor.rolloutplan` obeys it
and :mod:`mcosup.supervisor.rollout` reads the clock and wakes when the gate next changes. The grammar
and the evaluation are :mod:`mcosup.model.maintenancewindow`'s.

A pool without ``mc/maintenance-window`` may always start updates. With one, a node's update (cordon,
drain, reboot) starts only when it can reach its reboot before the window ends: at least ``margin``
(``RolloutSettings.window_margin``) must be left of the window. An update already started finishes;
builds, staging and certificates are not gated. An annotation that does not parse stops every new
update until it is fixed.
"""

from __future__ import annotations

import dataclasses
import datetime as dt

from mcosup.model import maintenancewindow, names
from mcosup.model.objects import ObjView


@dataclasses.dataclass(frozen=True)
class Gate:
    #: A new node update may start now.
    may_start: bool = True
    #: Why not (for the pool's Updating condition): the window and when the next one opens.
    message: str = ""
    #: The annotation does not parse: the message names the pool, the window and the part, and the fix.
    error: str | None = None
    #: Seconds until ``may_start`` changes by time alone (a window opens or closes), or None.
    wake_after: float | None = None


OPEN = Gate()


def gate(pool: ObjView, now: dt.datetime, margin: float) -> Gate:
    """The gate of ``pool`` at ``now`` (an aware datetime)."""
    meta = pool.get("metadata") or {}
    text = (meta.get("annotations") or {}).get(names.MAINTENANCE_WINDOW)
    if text is None:
        return OPEN
    where = f"MachineConfigPool {meta.get('name', '?')} annotation {names.MAINTENANCE_WINDOW}"
    try:
        schedule = maintenancewindow.parse(str(text))
    except maintenancewindow.WindowError as exc:
        error = f"{where}: {exc}; no node update starts until it is fixed or removed"
        return Gate(False, error, error=error)
    lead = dt.timedelta(seconds=margin)
    opening = schedule.opening_at(now)
    if opening is not None and now + lead <= opening.end:
        return Gate(wake_after=(opening.end - lead - now).total_seconds())
    nxt = schedule.next_opening(now, lead)
    if opening is not None:
        closes = opening.end.astimezone(opening.window.zone).isoformat()
        why = f'window "{opening.window.text}" closes at {closes}, too soon for a node update to begin'
    else:
        why = f'outside the maintenance window "{schedule.text}"'
    if nxt is None:
        return Gate(
            False,
            f"{why}; no window in the next week is open for {margin:g}s (MCOSUP_WINDOW_MARGIN) or more: "
            f"no node update starts; lengthen a window in {where}",
        )
    return Gate(
        False,
        f"{why}; node updates start when the next window opens at {nxt.local_start().isoformat()} "
        f'("{nxt.window.text}"); updates already started finish. To update sooner, edit {where}',
        wake_after=(nxt.start - now).total_seconds(),
    )
