"""The opt-in decisions (contract sections 2 and 11): the managed MachineOSConfigs and each pool's readiness.

Pure: cached objects in, steps out; :mod:`~mcosup.supervisor.optin` executes them.

- :func:`managed_steps`: a pool with ``mc/layering-enabled`` and no MachineOSConfig gets one made from
  ``on-cluster-build-config`` and the pool's entry of ``on-cluster-build-custom-dockerfile``
  (:func:`mcosup.model.machineosconfig.from_label`), labelled ``mc/managed-by-label=true`` and ownerless,
  as the MCO's own MachineOSConfigs are. It is kept in step with those ConfigMaps (while they are
  valid: an invalid edit leaves it as it was, and the pool says why in ``LayeringReady``) and deleted
  when the label goes or the pool is deleted. A MachineOSConfig without the managed label is an
  admin's: no step ever names it.
- :func:`settings_problems`: for each opted-in pool, what stops its builds (empty when nothing), from
  the one rule every process uses (:func:`mcosup.model.machineosconfig.pool_settings`).
"""

from __future__ import annotations

import copy
import dataclasses
from collections.abc import Iterable, Mapping

from mcosup.model import buildconfig, machineosconfig, names
from mcosup.model.machineosconfig import Lookup
from mcosup.model.objects import Obj, ObjView


@dataclasses.dataclass(frozen=True)
class Create:
    """Create the managed MachineOSConfig ``body``."""

    body: Obj

    @property
    def name(self) -> str:
        return str(self.body["metadata"]["name"])


@dataclasses.dataclass(frozen=True)
class Update:
    """Replace a managed MachineOSConfig by ``body`` (its metadata kept, with its resourceVersion)."""

    body: Obj

    @property
    def name(self) -> str:
        return str(self.body["metadata"]["name"])


@dataclasses.dataclass(frozen=True)
class Delete:
    """Delete a managed MachineOSConfig (only that very object: ``uid`` is a precondition)."""

    name: str
    uid: str | None
    why: str


Step = Create | Update | Delete


def _name(obj: ObjView) -> str:
    return str((obj.get("metadata") or {}).get("name", ""))


def managed_steps(
    pools: Iterable[ObjView],
    machineosconfigs: Iterable[ObjView],
    configmap: Lookup,
    secret: Lookup,
    namespace: str,
) -> list[Step]:
    """What to create, update and delete so that every labelled pool has its MachineOSConfig."""
    by_pool = {_name(p): p for p in pools}
    moscs = {_name(m): m for m in machineosconfigs}
    config, _ = buildconfig.validate(configmap(names.BUILD_CONFIG_CM), secret, namespace)
    custom_cm = configmap(names.CUSTOM_DOCKERFILE_CM)
    steps: list[Step] = []
    for name, pool in sorted(by_pool.items()):
        if not machineosconfig.labelled(pool) or config is None:
            continue
        existing = moscs.get(name)
        want = machineosconfig.from_label(name, config, machineosconfig.custom_containerfile(custom_cm, name))
        if existing is None:
            steps.append(Create(want))
        elif (
            machineosconfig.is_managed(existing)
            and not (existing.get("metadata") or {}).get("deletionTimestamp")
            and existing.get("spec") != want["spec"]
        ):
            body = copy.deepcopy(dict(existing))
            body["spec"] = want["spec"]
            body.pop("status", None)
            steps.append(Update(body))
    for name, mosc in sorted(moscs.items()):
        if not machineosconfig.is_managed(mosc) or (mosc.get("metadata") or {}).get("deletionTimestamp"):
            continue
        owner = by_pool.get(name)
        why = (
            f"pool {name} is deleted"
            if owner is None
            else f"pool {name} no longer carries {names.LAYERING_ENABLED}"
            if not machineosconfig.labelled(owner)
            else None
        )
        if why is not None:
            steps.append(Delete(name, (mosc.get("metadata") or {}).get("uid"), why))
    return steps


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
