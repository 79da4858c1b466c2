"""Which MachineOSBuilds and images to prune (contract section 11, "Pruning"). Pure: facts in, a plan out.

:func:`plan_pruning` decides for one MachineOSConfig; :mod:`mcosup.builder.prune` carries the plan out.
The facts are read from objects by :func:`build_facts` and :func:`images_in_use`.

The rules, and why:

- **History.** The newest ``mc/build-history-limit`` (integer >= 1, default 3) Succeeded builds of the
  config are kept; older Succeeded builds are deleted. A bad value is reported, naming the annotation
  and the fix, and the default is used: pruning too little is recoverable, pruning too much is not.
- **Never pruned by history:** the config's current build (it may be an old one reused; it is kept beside
  the newest N), a build whose image a node names in ``mc/currentImage``, ``mc/desiredImage`` or
  ``mc/stagingImage`` (the MCO checks current and desired; a staged download is about to be booted),
  and builds still under way (Prepared, Building, or no condition yet): starting and stopping builds is
  the build reconciler's decision, not pruning's.
- **Failed and Interrupted builds** are deleted once a newer build of the same config exists, as the
  MCO deletes every non-succeeded build of a config when a new one starts. The newest one stays while
  nothing supersedes it, so an admin can read why it failed (its Job and build objects go with it).
- **Images.** A MachineOSBuild being deleted (``metadata.deletionTimestamp``, by pruning, ``mc/rebuild``,
  its MachineOSConfig's deletion or an admin) that carries ``mc/prune-image`` gets one
  :class:`ImageStep`: ``delete`` its ``status.digestedImagePushSpec`` from the registry; ``wait`` while
  a node names that image (the finalizer holds the object, and the step names the nodes); ``release``
  (remove the finalizer only) when it recorded no image (a failed, interrupted or unfinished build) or
  a live build of any config records the same digest (a rebuild that produced the same image).
- **Never stuck.** After the registry refuses (401/403/405) the executor releases the build anyway and
  reports it; an unreachable registry is retried, and once the build has waited :data:`GIVE_UP_AFTER`
  since its deletion the step is ``last_try``: the executor releases it after that attempt whatever
  the answer, and reports the image it could not delete.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal

from mcosup.model import machineosbuild, names
from mcosup.model.objects import annotations_of

#: How long an unreachable registry may hold a deleted MachineOSBuild before it is released anyway.
GIVE_UP_AFTER = dt.timedelta(hours=1)

#: Node annotations naming an image a node boots, will boot, or is downloading to boot.
NODE_IMAGE_ANNOTATIONS = (names.CURRENT_IMAGE, names.DESIRED_IMAGE, names.STAGING_IMAGE)

_FINAL_UNSUCCESSFUL = ("Failed", "Interrupted")


@dataclass(frozen=True)
class BuildFacts:
    """What pruning needs to know about one MachineOSBuild."""

    name: str
    config: str  # spec.machineOSConfig.name
    state: str | None  # the True condition: Succeeded, Failed, Interrupted, Building, Prepared; None
    created: dt.datetime
    image: str | None = None  # status.digestedImagePushSpec
    deleting_since: dt.datetime | None = None  # metadata.deletionTimestamp
    has_finalizer: bool = False  # carries mc/prune-image


ImageAction = Literal["delete", "wait", "release"]


@dataclass(frozen=True)
class ImageStep:
    """What to do about the image of one MachineOSBuild being deleted."""

    build: str
    action: ImageAction
    image: str | None
    why: str
    last_try: bool = False  # release after this attempt whatever the registry answers


@dataclass(frozen=True)
class PrunePlan:
    delete: tuple[str, ...] = ()  # MachineOSBuilds to delete now, oldest first
    images: tuple[ImageStep, ...] = ()  # one per build being deleted that carries the finalizer
    problems: tuple[str, ...] = ()  # bad input, each naming the object, the field and the fix


def _time(value: Any) -> dt.datetime | None:
    if not value:
        return None
    try:
        parsed = dt.datetime.fromisoformat(str(value).replace("Z", "+00:00"))
    except ValueError:
        return None
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=dt.UTC)


def build_facts(mosb: Mapping[str, Any]) -> BuildFacts:
    """The facts of a MachineOSBuild object (``deploy/crds/machineosbuilds.yaml``'s shape)."""
    meta = mosb.get("metadata") or {}
    spec = mosb.get("spec") or {}
    status = mosb.get("status") or {}
    state = machineosbuild.state(mosb)
    return BuildFacts(
        name=str(meta.get("name", "")),
        config=str((spec.get("machineOSConfig") or {}).get("name", "")),
        state=state,
        created=_time(meta.get("creationTimestamp")) or dt.datetime.min.replace(tzinfo=dt.UTC),
        image=str(status.get("digestedImagePushSpec") or "") or None,
        deleting_since=_time(meta.get("deletionTimestamp")),
        has_finalizer=names.PRUNE_IMAGE_FINALIZER in (meta.get("finalizers") or ()),
    )


def images_in_use(nodes: Iterable[Mapping[str, Any]]) -> dict[str, tuple[str, ...]]:
    """Image -> who names it, e.g. ``("worker-0 (machineconfiguration.openshift.io/currentImage)",)``."""
    users: dict[str, list[str]] = {}
    for node in nodes:
        name = (node.get("metadata") or {}).get("name", "")
        annotations = annotations_of(node)
        for key in NODE_IMAGE_ANNOTATIONS:
            if image := annotations.get(key):
                users.setdefault(image, []).append(f"{name} ({key})")
    return {image: tuple(who) for image, who in users.items()}


def plan_pruning(
    config: str,
    builds: Iterable[BuildFacts],
    *,
    current: str | None,
    history: tuple[int, str | None],
    in_use: Mapping[str, Sequence[str]],
    now: dt.datetime,
) -> PrunePlan:
    """What to prune of MachineOSConfig ``config``'s builds (``builds`` may hold other configs' too).

    ``current``: the config's current MachineOSBuild; ``history``: its
    :func:`~mcosup.model.machineosconfig.build_history_limit` (the limit, and the problem with the
    annotation if any); ``in_use``: :func:`images_in_use` of every node.
    """
    every = list(builds)
    limit, problem = history
    live = sorted(
        (b for b in every if b.config == config and b.deleting_since is None),
        key=lambda b: (b.created, b.name),
    )
    newest_first = list(reversed(live))
    succeeded = [b for b in newest_first if b.state == names.MOSB_SUCCEEDED]
    kept_by_history = {b.name for b in succeeded[:limit]}
    newest = newest_first[0].name if newest_first else None

    delete = []
    for build in live:
        if build.name == current or (build.image and build.image in in_use):
            continue
        if build.state == names.MOSB_SUCCEEDED and build.name not in kept_by_history:
            delete.append(build.name)
        elif build.state in _FINAL_UNSUCCESSFUL and build.name != newest:
            delete.append(build.name)

    recorded_by_live = {b.image: b.name for b in every if b.deleting_since is None and b.image}
    steps = [
        _image_step(b, in_use, recorded_by_live, now)
        for b in every
        if b.config == config and b.deleting_since is not None and b.has_finalizer
    ]
    return PrunePlan(tuple(delete), tuple(steps), (problem,) if problem else ())


def _image_step(
    build: BuildFacts,
    in_use: Mapping[str, Sequence[str]],
    recorded_by_live: Mapping[str, str],
    now: dt.datetime,
) -> ImageStep:
    image = build.image
    if image is None:
        return ImageStep(
            build.name, "release", None, f"no image recorded (build {build.state or 'unfinished'})"
        )
    if users := in_use.get(image):
        return ImageStep(
            build.name,
            "wait",
            image,
            f"{image} is named by node {', '.join(users)}: deleted once no node names it",
        )
    if other := recorded_by_live.get(image):
        return ImageStep(build.name, "release", image, f"MachineOSBuild {other} records the same image; kept")
    last_try = build.deleting_since is not None and now - build.deleting_since >= GIVE_UP_AFTER
    return ImageStep(build.name, "delete", image, "no node names it", last_try=last_try)
