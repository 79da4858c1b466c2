"""Accessors for the MCO's objects, shared by every mcosup process and the webhook (pure: no I/O).

One definition of each question asked of an object — "which rendered config does it point at" — so
that every reader gives the same answer. "Is this pool opted in" needs the MachineOSConfigs too: it is
:func:`mcosup.model.machineosconfig.opted_in`.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

#: An API object as decoded from JSON (the client's answers, objects being built).
Obj = dict[str, Any]
#: An API object only read (callers may pass a cache's objects, which must not be changed).
ObjView = Mapping[str, Any]


def labels_of(obj: Mapping[str, Any] | None) -> Mapping[str, str]:
    """``metadata.labels`` of ``obj``, or an empty mapping (also for malformed objects)."""
    metadata = obj.get("metadata") if isinstance(obj, Mapping) else None
    found = metadata.get("labels") if isinstance(metadata, Mapping) else None
    return found if isinstance(found, Mapping) else {}


def rendered_config(pool: Mapping[str, Any]) -> str | None:
    """The name of the pool's current rendered config (``spec.configuration.name``), or None."""
    spec = pool.get("spec")
    configuration = spec.get("configuration") if isinstance(spec, Mapping) else None
    name = configuration.get("name") if isinstance(configuration, Mapping) else None
    return str(name) if name else None


def annotations_of(obj: Mapping[str, Any] | None) -> Mapping[str, str]:
    """``metadata.annotations`` of ``obj``, or an empty mapping (also for malformed objects)."""
    metadata = obj.get("metadata") if isinstance(obj, Mapping) else None
    found = metadata.get("annotations") if isinstance(metadata, Mapping) else None
    return found if isinstance(found, Mapping) else {}
