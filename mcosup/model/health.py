"""The health gate's wire format (contract 12.3), written and read here only.

- The daemon that rolled a node back reports ``state=Degraded`` with reason
  ``RolledBack: <image or config> did not become healthy: <why>``; the supervisor reads the image (or
  config) back from that reason to halt the pool's rollout of it. :func:`rolled_back` writes it,
  :func:`rolled_back_from` parses it (round-trip tested).

Pure.
"""

from __future__ import annotations

from mcosup.model import names
from mcosup.model.node import MAX_REASON, NodeView, Report

ROLLED_BACK = "RolledBack"
_PREFIX = f"{ROLLED_BACK}: "
_MIDDLE = " did not become healthy: "


def rolled_back(what: str, why: str) -> Report:
    """The daemon's report after rolling back from ``what`` (an image pullspec or a rendered config)."""
    return {names.STATE: names.STATE_DEGRADED, names.REASON: f"{_PREFIX}{what}{_MIDDLE}{why}"[:MAX_REASON]}


def rolled_back_from(view: NodeView) -> str | None:
    """The image or config a Degraded node reports it rolled back from, or None."""
    reason = view.reason or ""
    if view.state != names.STATE_DEGRADED or not reason.startswith(_PREFIX) or _MIDDLE not in reason:
        return None
    # Pullspecs and config names hold no spaces: the first " did not become healthy: " ends it.
    return reason[len(_PREFIX) : reason.index(_MIDDLE)] or None
