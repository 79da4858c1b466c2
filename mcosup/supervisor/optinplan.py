"""The opt-in decisions (contract sections 2 and 11): each pool's readiness.

Pure: cached objects in, steps out; :mod:`~mcosup.supervisor.optin` executes them.

- :func:`settings_problems`: for each opted-in pool, what stops its builds (empty when nothing), from
  the one rule every process uses (:func:`mcosup.model.machineosconfig.pool_settings`).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping

from mcosup.model import machineosconfig
from mcosup.model.machineosconfig import Lookup
from mcosup.model.objects import ObjView


def _name(obj: ObjView) -> str:
    return str((obj.get("metadata") or {}).get("name", ""))


def settings_problems(
    opted: Iterable[ObjView],
    machineosconfigs: Iterable[ObjView],
    configmap: Lookup,
    secret: Lookup,
    namespace: str,
) -> Mapping[str, list[str]]:
    """Pool name → every problem with its build settings (an empty list when its builds can run)."""
    moscs = list(machineosconfigs)
    out: dict[str, list[str]] = {}
    for pool in opted:
        name = _name(pool)
        _, problems = machineosconfig.pool_settings(name, moscs, configmap, secret, namespace)
        out[name] = problems
    return out
