"""The node protocol (contract sections 1, 5 and 6): what the supervisor asks of a node, and what the
node's daemon reports back, all carried on the Node object.

- The supervisor writes the **target** (:class:`Target`: the daemon-mode label and the desired config
  and image annotations, in one patch) and cordons or uncordons the node.
- The daemon writes the **report** (current config and image, state, reason) on its own node.
- Everyone reads a node through one :class:`NodeView`.

Pure. Patches are JSON merge patches; ``None`` deletes a key. The fields each side owns are listed
here, so the webhook's ownership check and the writers cannot drift apart.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from typing import Any

from mcosup.model import names

#: The well-known topology label (not a contract name: Kubernetes owns it).
ZONE_LABEL = "topology.kubernetes.io/zone"

#: Node fields only the supervisor writes, and those only the daemon writes (on its own node).
SUPERVISOR_LABELS = (names.DAEMON_MODE,)
SUPERVISOR_ANNOTATIONS = (names.DESIRED_CONFIG, names.DESIRED_IMAGE, names.CORDONED_BY, names.STAGING_IMAGE)
DAEMON_ANNOTATIONS = (
    names.CURRENT_CONFIG,
    names.CURRENT_IMAGE,
    names.STATE,
    names.REASON,
    names.LAST_APPLIED_WITHOUT_REBOOT,
    names.STAGED_IMAGE,
)

#: The longest reason a daemon reports (an annotation is not a log).
MAX_REASON = 1000

Patch = dict[str, Any]
Report = dict[str, str | None]


@dataclasses.dataclass(frozen=True, slots=True)
class Target:
    """What a node is asked to run: its daemon mode, rendered config and (layered only) image."""

    mode: str
    config: str
    image: str | None = None

    def describe(self) -> str:
        if self.image:
            return f"{self.config} as image {self.image}"
        return f"{self.config} ({self.mode})"


@dataclasses.dataclass(frozen=True, slots=True)
class NodeView:
    """The slice of a Node the supervisor and the daemon read."""

    name: str
    ready: bool = False
    unschedulable: bool = False
    cordoned_by_us: bool = False
    state: str | None = None
    reason: str | None = None
    mode: str | None = None
    desired_config: str | None = None
    current_config: str | None = None
    desired_image: str | None = None
    current_image: str | None = None
    #: Contract 12.1: the image the supervisor asked the node to download ahead of its turn, and the one
    #: its daemon has downloaded.
    staging_image: str | None = None
    staged_image: str | None = None
    zone: str | None = None
    created: str = ""
    resource_version: str = ""
    #: The daemon runs what it was asked to run and says so.
    converged: bool = dataclasses.field(init=False)
    #: Asked to run something it does not run yet.
    mid_update: bool = dataclasses.field(init=False)
    #: Contract section 5: not Ready, unschedulable, not Done, or desired* != current*.
    unavailable: bool = dataclasses.field(init=False)

    def __post_init__(self) -> None:
        # Derived once: a controller keeps a view per version of a node and reads these for every node
        # of a pool on each plan (as properties they were a third of a 2,000-node plan's time).
        mid_update = self.desired_config != self.current_config or self.desired_image != self.current_image
        converged = self.state == names.STATE_DONE and not mid_update
        object.__setattr__(self, "mid_update", mid_update)
        object.__setattr__(self, "converged", converged)
        object.__setattr__(self, "unavailable", not self.ready or self.unschedulable or not converged)

    def standing(self) -> tuple[Any, ...]:
        """What a rollout decides on: every field but the resourceVersion, with the daemon's state kept
        only where it tells phases apart (Working and Done on a node not converged are the same), so a
        controller can tell a change that may alter its decisions from one that cannot."""
        busy = self.state not in (names.STATE_DEGRADED, names.STATE_REBOOTING) and not self.converged
        return (
            self.name,
            self.ready,
            self.unschedulable,
            self.cordoned_by_us,
            None if busy else self.state,
            self.reason,
            self.mode,
            self.desired_config,
            self.current_config,
            self.desired_image,
            self.current_image,
            self.staging_image,
            self.staged_image,
            self.zone,
            self.created,
            self.converged,
            self.mid_update,
            self.unavailable,
        )

    @classmethod
    def of(cls, node: Mapping[str, Any]) -> NodeView:
        meta = node.get("metadata") or {}
        labels = meta.get("labels") or {}
        ann = meta.get("annotations") or {}
        conditions = (node.get("status") or {}).get("conditions") or []
        return cls(
            name=str(meta.get("name", "")),
            ready=any(c.get("type") == "Ready" and c.get("status") == "True" for c in conditions),
            unschedulable=bool((node.get("spec") or {}).get("unschedulable")),
            cordoned_by_us=ann.get(names.CORDONED_BY) == names.CORDONED_BY_VALUE,
            state=ann.get(names.STATE) or None,
            reason=ann.get(names.REASON) or None,
            mode=labels.get(names.DAEMON_MODE),
            desired_config=ann.get(names.DESIRED_CONFIG) or None,
            current_config=ann.get(names.CURRENT_CONFIG) or None,
            desired_image=ann.get(names.DESIRED_IMAGE) or None,
            current_image=ann.get(names.CURRENT_IMAGE) or None,
            staging_image=ann.get(names.STAGING_IMAGE) or None,
            staged_image=ann.get(names.STAGED_IMAGE) or None,
            zone=labels.get(ZONE_LABEL) or None,
            created=str(meta.get("creationTimestamp") or ""),
            resource_version=str(meta.get("resourceVersion") or ""),
        )

    def at(self, target: Target) -> bool:
        """The node has been given ``target`` (whether or not it runs it yet)."""
        return (
            self.mode == target.mode
            and self.desired_config == target.config
            and self.desired_image == target.image
        )


# The supervisor's writes. Each carries the resourceVersion it was decided on, so a write based on a
# stale read is refused (409) and decided again.


def target_patch(view: NodeView, target: Target) -> Patch:
    """Mode label and desired annotations together, in one write (contract section 1)."""
    return {
        "metadata": {
            "resourceVersion": view.resource_version,
            "labels": {names.DAEMON_MODE: target.mode},
            "annotations": {names.DESIRED_CONFIG: target.config, names.DESIRED_IMAGE: target.image},
        }
    }


def staging_patch(view: NodeView, image: str | None) -> Patch:
    """Contract 12.1: download ``image`` ahead of the node's turn (None: nothing to download)."""
    return {
        "metadata": {"resourceVersion": view.resource_version, "annotations": {names.STAGING_IMAGE: image}}
    }


def cordon_patch(view: NodeView) -> Patch:
    return {
        "metadata": {
            "resourceVersion": view.resource_version,
            "annotations": {names.CORDONED_BY: names.CORDONED_BY_VALUE},
        },
        "spec": {"unschedulable": True},
    }


def uncordon_patch(view: NodeView) -> Patch:
    return {
        "metadata": {"resourceVersion": view.resource_version, "annotations": {names.CORDONED_BY: None}},
        "spec": {"unschedulable": None},
    }


# The daemon's reports: the annotations it merges into its Node's.


def done(target: Target) -> Report:
    """The node runs ``target``."""
    return {
        names.CURRENT_CONFIG: target.config,
        names.CURRENT_IMAGE: target.image,
        names.STATE: names.STATE_DONE,
        names.REASON: None,
    }


def working() -> Report:
    return {names.STATE: names.STATE_WORKING, names.REASON: None}


def rebooting() -> Report:
    return {names.STATE: names.STATE_REBOOTING, names.REASON: None}


def degraded(reason: str) -> Report:
    """Degraded with ``reason`` (cut to :data:`MAX_REASON` characters)."""
    return {names.STATE: names.STATE_DEGRADED, names.REASON: reason[:MAX_REASON]}
