"""Build Pods as the builder reads them: names and attempts, the container's termination, log tails.

Pure. A build's objects are named after its MachineOSBuild (``build-<pool>-<16 hex>[-<restart>]``), so the
name alone says which build an object belongs to.
"""

from __future__ import annotations

import datetime
from collections.abc import Mapping
from typing import Any


def belongs_to(obj_name: str, build_name: str) -> bool:
    """Whether an object (Pod, ConfigMap, Secret) is one of the build ``build_name``'s."""
    return obj_name == build_name or obj_name.startswith(build_name + "-")


def _container_state(pod: Mapping[str, Any]) -> Mapping[str, Any]:
    statuses = (pod.get("status") or {}).get("containerStatuses") or []
    return (statuses[0].get("state") or {}) if statuses else {}


def termination(pod: Mapping[str, Any]) -> Mapping[str, Any]:
    return _container_state(pod).get("terminated") or {}


def parse_time(text: str | None) -> float | None:
    if not text:
        return None
    try:
        return datetime.datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp()
    except ValueError:
        return None


def rfc3339(epoch: float) -> str:
    return datetime.datetime.fromtimestamp(epoch, datetime.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def tail(text: str, lines: int) -> str:
    kept = [line for line in text.strip().splitlines() if line.strip()][-lines:]
    return "\n".join(kept)
