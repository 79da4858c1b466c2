"""Whether a pool's rollout is halted by a node that rolled back (contract 12.3), and how a resume
undoes it.

Pure: facts in (the pool, its nodes' views, its target), a :class:`Halt` out;
:mod:`mcosup.supervisor.rolloutplan` starts nothing while there is one and
:mod:`mcosup.supervisor.rollout` carries out a resume.

- A pool is halted while one of its nodes that was given the pool's target reports it rolled back
  from that target's image (or, for a legacy pool, its rendered config): no other node gets it.
- A new image or config is a new target: the halt ends by itself, and the rolled-back node is given
  the new target like any other (it is unavailable, so it goes first).
- ``mc/resume-rollout`` on the pool tries the same target again: each rolled-back node is given back
  what it runs (its daemon then stops reporting the failure and reports Done), the annotation is
  removed, and the rollout goes on, the rolled-back node first once its daemon has reported Done.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable

from mcosup.model import health, names
from mcosup.model.node import NodeView, Target
from mcosup.model.objects import ObjView


@dataclasses.dataclass(frozen=True)
class Halt:
    #: The nodes that rolled back from the target, sorted.
    nodes: tuple[str, ...]
    #: The image (or rendered config) they rolled back from.
    what: str
    #: The pool's Degraded message: the nodes, the image, why, and what to do.
    message: str


def halt(pool_name: str, views: Iterable[NodeView], target: Target | None) -> Halt | None:
    """The halt of the pool's rollout of ``target``, or None."""
    if target is None:
        return None
    what = target.image or target.config
    failed = sorted(
        (
            v
            for v in views
            if v.state == names.STATE_DEGRADED and health.rolled_back_from(v) == what and v.at(target)
        ),
        key=lambda v: v.name,
    )
    if not failed:
        return None
    nodes = tuple(v.name for v in failed)
    told = "; ".join(f"node {v.name}: {v.reason}" for v in failed)
    message = (
        f"rollout of {what} halted: {told}. No other node gets it. Fix the image or config (a changed "
        f"MachineConfig gives a new one) or annotate MachineConfigPool {pool_name} with "
        f"{names.RESUME_ROLLOUT} to try it again"
    )
    return Halt(nodes, what, message)


def unacknowledged(views: Iterable[NodeView], target: Target | None) -> set[str]:
    """Nodes given something else since they rolled back from ``target`` (a resume) whose daemon still
    reports the rollback: they get ``target`` again only once it has said it runs what it was given,
    so that it sees the resume and tries the image afresh."""
    if target is None:
        return set()
    what = target.image or target.config
    # Only a Degraded node can report a rollback: the cheap test first (a plan asks this of every node).
    return {
        v.name
        for v in views
        if v.state == names.STATE_DEGRADED and health.rolled_back_from(v) == what and not v.at(target)
    }


def resume_requested(pool: ObjView) -> bool:
    return names.RESUME_ROLLOUT in ((pool.get("metadata") or {}).get("annotations") or {})


def running(view: NodeView) -> Target | None:
    """What a rolled-back node runs, as a target to give it back on resume (None if it never said)."""
    if view.current_config is None:
        return None
    mode = names.MODE_LAYERED if view.current_image else names.MODE_LEGACY
    return Target(mode, view.current_config, view.current_image)
