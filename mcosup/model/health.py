"""The health gate's wire format (contract 12.3), written and read here only.

- The daemon that rolled a node back reports ``state=Degraded`` with reason
  ``RolledBack: <image or config> did not become healthy: <why>``; the supervisor reads the image (or
  config) back from that reason to halt the pool's rollout of it. :func:`rolled_back` writes it,
  :func:`rolled_back_from` parses it (round-trip tested).
- ``mc/health-check-seconds`` on a pool: how long a node has after booting a new image to become
  healthy before its daemon rolls it back; a whole number ≥ 1, default 600.

Pure.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from mcosup.model import names
from mcosup.model.node import MAX_REASON, NodeView, Report

ROLLED_BACK = "RolledBack"
_PREFIX = f"{ROLLED_BACK}: "
_MIDDLE = " did not become healthy: "
DEFAULT_HEALTH_CHECK_SECONDS = 600


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


class HealthCheckError(ValueError):
    """``mc/health-check-seconds`` is not a whole number ≥ 1; the message names the pool and the fix."""


def health_check_seconds(pool: Mapping[str, Any] | None) -> int:
    """The pool's ``mc/health-check-seconds`` (:data:`DEFAULT_HEALTH_CHECK_SECONDS` without one)."""
    meta = (pool or {}).get("metadata") or {}
    raw = (meta.get("annotations") or {}).get(names.HEALTH_CHECK_SECONDS)
    if raw is None:
        return DEFAULT_HEALTH_CHECK_SECONDS
    text = str(raw).strip()
    if not text.isdigit() or int(text) < 1:
        raise HealthCheckError(
            f"MachineConfigPool {meta.get('name', '?')} annotation {names.HEALTH_CHECK_SECONDS}={raw!r} is "
            f'not a whole number of seconds ≥ 1; set it like "600" or remove it (default '
            f"{DEFAULT_HEALTH_CHECK_SECONDS})"
        )
    return int(text)
