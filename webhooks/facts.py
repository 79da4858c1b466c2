"""Cluster facts a verdict needs, as plain frozen data.

Pure. The supervisor builds a :class:`ClusterFacts` from its caches (pools, MachineConfigs, Secret
names in its namespace) and hands it to :func:`webhooks.policy.review`; the policy derives the rest
(which opted-in pools select a MachineConfig, which MachineConfigs a pool selects) with the helpers here
and :mod:`mcosup.model.selectors`,
so the supervisor never has to know what a particular verdict looks at.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any

from mcosup.model import machineosconfig, names
from mcosup.model.objects import labels_of
from mcosup.model.selectors import safe_selector_matches

_EMPTY: Mapping[str, Mapping[str, Any]] = MappingProxyType({})


@dataclass(frozen=True, slots=True)
class PoolFacts:
    """What the policy needs to know about one MachineConfigPool."""

    name: str
    machine_config_selector: Mapping[str, Any] | None
    layered: bool
    #: Opted in by an admin's MachineOSConfig (deleting it is the opt-out; the label changes nothing).
    by_machineosconfig: bool = False

    @classmethod
    def from_pool(
        cls, pool: Mapping[str, Any], machineosconfigs: Iterable[Mapping[str, Any]] = ()
    ) -> PoolFacts:
        """``layered``: :func:`mcosup.model.machineosconfig.opted_in` given ``machineosconfigs``."""
        metadata = pool.get("metadata") or {}
        spec = pool.get("spec") or {}
        name = str(metadata.get("name", "")) if isinstance(metadata, Mapping) else ""
        selector = spec.get("machineConfigSelector") if isinstance(spec, Mapping) else None
        return cls(
            name=name,
            machine_config_selector=selector if isinstance(selector, Mapping) else None,
            layered=machineosconfig.opted_in(pool, machineosconfigs),
            by_machineosconfig=bool(name)
            and machineosconfig.admins_machineosconfig(name, machineosconfigs) is not None,
        )

    def selects(self, mc_labels: Mapping[str, str]) -> bool:
        return safe_selector_matches(self.machine_config_selector, mc_labels)


@dataclass(frozen=True, slots=True)
class ClusterFacts:
    """Everything the verdicts read about the cluster, as of the supervisor's caches.

    ``machineconfigs`` maps name to MachineConfig object (read only; the supervisor may pass its cache's
    dicts without copying). ``secret_names`` is None when unknown (no warnings about missing Secrets then).
    """

    namespace: str = names.DEFAULT_NAMESPACE
    pools: tuple[PoolFacts, ...] = ()
    machineconfigs: Mapping[str, Mapping[str, Any]] = field(default_factory=lambda: _EMPTY)
    secret_names: frozenset[str] | None = None
    #: Every MachineOSConfig (read only): an admin's opts its pool in without the label.
    machineosconfigs: tuple[Mapping[str, Any], ...] = ()

    @classmethod
    def from_objects(
        cls,
        *,
        namespace: str = names.DEFAULT_NAMESPACE,
        pools: Iterable[Mapping[str, Any]] = (),
        machineconfigs: Iterable[Mapping[str, Any]] = (),
        machineosconfigs: Iterable[Mapping[str, Any]] = (),
        secrets: Iterable[Mapping[str, Any]] | None = None,
    ) -> ClusterFacts:
        """Facts from cached objects: pools, MachineConfigs, MachineOSConfigs and the Secrets of
        ``namespace``."""
        moscs = tuple(machineosconfigs)
        mcs: dict[str, Mapping[str, Any]] = {}
        for mc in machineconfigs:
            metadata = mc.get("metadata")
            if isinstance(metadata, Mapping) and isinstance(metadata.get("name"), str):
                mcs[metadata["name"]] = mc
        secret_names = None
        if secrets is not None:
            secret_names = frozenset(
                s["metadata"]["name"]
                for s in secrets
                if isinstance(s.get("metadata"), Mapping) and isinstance(s["metadata"].get("name"), str)
            )
        return cls(
            namespace=namespace,
            pools=tuple(PoolFacts.from_pool(p, moscs) for p in pools),
            machineconfigs=MappingProxyType(mcs),
            secret_names=secret_names,
            machineosconfigs=moscs,
        )

    @property
    def supervisor_username(self) -> str:
        return names.service_account_user(self.namespace, names.SUPERVISOR_SA)

    @property
    def daemon_username(self) -> str:
        return names.service_account_user(self.namespace, names.DAEMON_SA)

    def pool(self, name: str) -> PoolFacts | None:
        """The pool named ``name``, None when it does not exist."""
        return next((p for p in self.pools if p.name == name), None)

    def pools_selecting(self, mc_labels: Mapping[str, str]) -> tuple[PoolFacts, ...]:
        """The pools whose ``machineConfigSelector`` selects a MachineConfig with ``mc_labels``."""
        return tuple(p for p in self.pools if p.selects(mc_labels))

    def layered_pools_selecting(self, mc_labels: Mapping[str, str]) -> tuple[PoolFacts, ...]:
        """The opted-in pools that select a MachineConfig with ``mc_labels``."""
        return tuple(p for p in self.pools if p.layered and p.selects(mc_labels))

    def machineconfigs_selected_by(self, selector: Mapping[str, Any] | None) -> list[Mapping[str, Any]]:
        """The MachineConfigs ``selector`` selects, in name order (the render order)."""
        return [
            mc
            for name, mc in sorted(self.machineconfigs.items())
            if safe_selector_matches(selector, labels_of(mc))
        ]
