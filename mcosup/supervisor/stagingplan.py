"""Staging ahead of a node's turn (contract 12.1): which nodes download the pool's image now, and
whether a node's turn may start.

Pure: no I/O, no clock reads. :mod:`mcosup.supervisor.rollout` writes :func:`plan_staging`'s answer as
``mc/stagingImage`` on each node; the daemon downloads the image while the node stays schedulable and
available, and reports ``mc/stagedImage``. The rollout plan (:mod:`mcosup.supervisor.rolloutplan`) asks
:meth:`Waits.turn` whether a node may take its turn: a node is unavailable for its drain and reboot only,
never for the download, so its turn waits until it has the image.

Choices: at most 4 nodes per unit of ``maxUnavailable`` stage at a time besides those updating (at most every
node waiting for its turn); nodes already staging the image keep their place (oldest-staged first),
then the rollout's own candidate order fills the rest. A node already unavailable (not Ready, cordoned
by someone, degraded, mid-update) is not asked: its daemon may not be able to stage, and its turn does
not wait (it is out of service anyway). A node that has its turn (or runs the image) no longer needs
the annotation, nor does any node of a pool without an image to roll (a legacy target has nothing to
stage).

The bound: a node asked to stage that has not reported ``mc/stagedImage`` within the rollout's staging
timeout (``MCOSUP_STAGING_TIMEOUT``, default 15 minutes: a multi-GB image over a slow link) takes its
turn unstaged and downloads during it, so a daemon that cannot stage (its download keeps failing, or
an older daemon that does not know the annotation) never blocks a rollout. The supervisor counts the
wait from when it first sees the node asked (its memory: a restarted supervisor starts the count
again). Asked nodes wait side by side, so a pool whose daemons never stage waits one timeout before
its first wave, then rolls at most 4 x ``maxUnavailable`` nodes per timeout.
"""

from __future__ import annotations

import dataclasses
import enum
from collections.abc import Collection, Iterable, Mapping

from mcosup.model.node import NodeView, Target

#: Nodes staging at once, per unit of ``maxUnavailable``.
AHEAD = 4


def plan_staging(
    views: Iterable[NodeView], target: Target | None, *, capacity: int, updating: Collection[str]
) -> dict[str, str | None]:
    """Node name → the ``stagingImage`` to write (None: remove it), for the nodes whose annotation
    must change. ``updating`` are the nodes taking their turn now: neither counted nor changed."""
    image = target.image if target is not None else None
    wanted: dict[str, str] = {}
    others = [v for v in views if v.name not in updating]
    if image is not None and target is not None:
        waiting = [v for v in others if not v.at(target) and not v.unavailable]
        # Already staging this image first (a download under way is never given away), then the
        # rollout's order: by zone (nodes without one last), oldest first.
        waiting.sort(
            key=lambda v: (v.staging_image != image, v.zone is None, v.zone or "", v.created, v.name)
        )
        wanted = {v.name: image for v in waiting[: capacity * AHEAD]}
    return {v.name: wanted.get(v.name) for v in others if v.staging_image != wanted.get(v.name)}


class Turn(enum.Enum):
    """Whether a node's turn may start, as far as staging goes."""

    READY = "ready"  # nothing to download at its turn (staged, runs the image, nothing to stage)
    STAGING = "staging"  # its download is under way or about to be asked for: the turn waits
    LATE = "late"  # asked longer than the staging timeout ago: the turn starts and downloads


@dataclasses.dataclass(frozen=True)
class Waits:
    """What the rollout plan knows of staging when it is in use (contract 12.1)."""

    #: Seconds a node asked to stage may take before its turn starts without it.
    timeout: float
    #: Node → seconds since the supervisor first saw it asked to stage the target's image.
    waited: Mapping[str, float] = dataclasses.field(default_factory=dict)

    def turn(self, view: NodeView, target: Target) -> Turn:
        """Whether ``view`` may take its turn to ``target``."""
        image = target.image
        if image is None or view.unavailable or image in (view.staged_image, view.current_image):
            return Turn.READY
        waited = self.waited.get(view.name)
        if waited is not None and waited >= self.timeout:
            return Turn.LATE
        return Turn.STAGING


def late_message(node: str, image: str, timeout: float) -> str:
    """Why ``node`` takes its turn without the image staged, and what to do."""
    return (
        f"node {node} did not report {image} staged within {timeout:.0f}s (MCOSUP_STAGING_TIMEOUT) of "
        "being asked to download it ahead of its turn; it takes its turn unstaged and downloads the "
        "image while out of service. Read its machine-config-daemon log for the failed download (an older "
        "daemon does not stage at all)"
    )
