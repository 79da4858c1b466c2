"""Staging ahead of a node's turn (contract 12.1): which nodes download the pool's image now.

Pure: no I/O. :mod:`mcosup.supervisor.rollout` writes the answer as ``mc/stagingImage`` on each node;
the daemon downloads the image while the node stays schedulable and available, and reports
``mc/stagedImage``. The rollout plan (:mod:`mcosup.supervisor.rolloutplan`) prefers staged nodes for
the next turns, so a node is unavailable for its drain and reboot only, not for the download.

Choices: at most 4 nodes per unit of ``maxUnavailable`` stage at a time besides those updating (at most every
node waiting for its turn); nodes already staging the image keep their place (oldest-staged first),
then the rollout's own candidate order fills the rest. A node that has its turn (or runs the image)
no longer needs the annotation, nor does any node of a pool without an image to roll.
"""

from __future__ import annotations

from collections.abc import Collection, Iterable

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
        waiting = [v for v in others if not v.at(target)]
        # Already staging this image first (a download under way is never given away), then the
        # rollout's order: by zone (nodes without one last), oldest first.
        waiting.sort(
            key=lambda v: (v.staging_image != image, v.zone is None, v.zone or "", v.created, v.name)
        )
        wanted = {v.name: image for v in waiting[: capacity * AHEAD]}
    return {v.name: wanted.get(v.name) for v in others if v.staging_image != wanted.get(v.name)}
