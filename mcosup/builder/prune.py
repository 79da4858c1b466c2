"""Carry out :mod:`mcosup.builder.pruneplan` for one MachineOSBuild being deleted: its image, then its
finalizer (contract section 11, "Pruning").

Why a finalizer: a MachineOSBuild is the only record of which image a build pushed. The builder puts
``mc/prune-image`` on every MachineOSBuild it creates, so a deletion from anywhere (pruning, ``mc/rebuild``,
the MachineOSConfig's cascade, an admin's ``oc delete``) leaves the object readable until its image has
been dealt with. :func:`prune_build_image` removes the finalizer once the image is deleted, was already
gone, the registry refused (reported, never retried: nothing an operator cannot fix by hand), or there
was no image; it keeps it while a node names the image, and while the registry cannot be reached
until the plan's ``last_try``. So no object stays stuck behind a registry that says no.

A refusal, and a last try that failed, is an Event (Warning) and the condition ``ImagesPruned=False`` on
the MachineOSConfig (on the MachineOSBuild itself when its MachineOSConfig is already gone), naming the
build, the image, the registry, its HTTP status, the push Secret and what the admin can do. A later
successful delete sets ``ImagesPruned=True`` again.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal

from mcosup.builder import manifests
from mcosup.control.poolstatus import update_pool_status
from mcosup.kube import errors
from mcosup.kube.client import Kube
from mcosup.kube.resources import MACHINEOSBUILDS, MACHINEOSCONFIGS
from mcosup.kube.transport import Transport
from mcosup.model import names
from mcosup.model.conditions import Condition
from mcosup.model.objects import Obj
from mcosup.runtime.logs import fields

if TYPE_CHECKING:
    from mcosup.builder.pruneplan import ImageStep

log = logging.getLogger(__name__)

REASON_REFUSED = "RegistryRefusedDelete"
REASON_UNREACHABLE = "RegistryUnreachable"
REASON_PRUNED = "ImagePruned"

PruneOutcome = Literal["deleted", "gone", "refused", "unreachable", "waiting", "released"]


@dataclass(frozen=True)
class Pruned:
    """What became of one MachineOSBuild's image; ``released``: its finalizer is off, the object goes."""

    build: str
    outcome: PruneOutcome
    released: bool
    message: str


def problem_text(build: str, deletion: manifests.Deletion, push_secret: str | None, *, gave_up: bool) -> str:
    """The Event and condition message for an image the registry would not (or could not) delete."""
    secret = f" (push Secret {push_secret})" if push_secret else ""
    tail = (
        "The MachineOSBuild is deleted without it; the image stays in the registry until removed by hand."
        if deletion.outcome == "refused" or gave_up
        else "Retrying."
    )
    return (
        f"MachineOSBuild {build}: could not delete image {deletion.image}{secret}: {deletion.message}. {tail}"
    )


async def prune_build_image(
    kube: Kube,
    http: Transport,
    mosb: Obj,
    mosc: Obj | None,
    step: ImageStep,
    auths: Mapping[str, Any],
    *,
    tls_verify: bool = True,
) -> Pruned:
    """Execute ``step`` (from :func:`~mcosup.builder.pruneplan.plan_pruning`) for ``mosb``, being deleted.

    ``mosc``: its MachineOSConfig, None once deleted; ``auths``: the push (and pull) Secrets' auths map,
    as for the reuse check. ``unreachable`` without ``released`` means: call again later (back off).
    """
    build = step.build
    if step.action == "wait":
        log.info("keeping image of deleted build %s: %s", build, step.why, extra=fields(build=build))
        return Pruned(build, "waiting", False, step.why)
    if step.action == "release" or step.image is None:
        await release(kube, mosb)
        return Pruned(build, "released", True, step.why)

    deletion = await manifests.delete_image(http, step.image, auths, tls_verify=tls_verify)
    if deletion.outcome in ("deleted", "gone"):
        log.info("%s", deletion.message, extra=fields(build=build))
        await release(kube, mosb)
        await _report(
            kube, mosb, mosc, Condition(names.IMAGES_PRUNED, "True", REASON_PRUNED, deletion.message)
        )
        return Pruned(build, deletion.outcome, True, deletion.message)

    give_up = deletion.outcome == "refused" or step.last_try
    text = problem_text(build, deletion, push_secret(mosb, mosc), gave_up=give_up)
    log.warning("%s", text, extra=fields(build=build))
    if not give_up:
        return Pruned(build, deletion.outcome, False, text)
    reason = REASON_REFUSED if deletion.outcome == "refused" else REASON_UNREACHABLE
    await _report(kube, mosb, mosc, Condition(names.IMAGES_PRUNED, "False", reason, text), event=True)
    await release(kube, mosb)
    return Pruned(build, deletion.outcome, True, text)


async def release(kube: Kube, mosb: Obj, attempts: int = 5) -> None:
    """Remove ``mc/prune-image`` from ``mosb`` (guarded by its resourceVersion; gone is done)."""
    name = mosb["metadata"]["name"]
    current = mosb
    for _ in range(attempts):
        meta = current["metadata"]
        before = list(meta.get("finalizers") or [])
        after = [f for f in before if f != names.PRUNE_IMAGE_FINALIZER]
        if after == before:
            return
        patch = {"metadata": {"finalizers": after, "resourceVersion": meta["resourceVersion"]}}
        try:
            await kube.patch(MACHINEOSBUILDS, name, patch)
            return
        except errors.NotFound:
            return
        except errors.Conflict:
            try:
                current = await kube.get(MACHINEOSBUILDS, name)
            except errors.NotFound:
                return
    raise errors.Conflict(409, "Conflict", f"MachineOSBuild {name}: finalizers kept changing under us")


def push_secret(mosb: Obj, mosc: Obj | None) -> str | None:
    """The push Secret ``mosb``'s image was pushed with: stamped on it by the builder
    (``mc/push-secret``), so it is known after its MachineOSConfig is gone; else its MachineOSConfig's."""
    stamped = ((mosb.get("metadata") or {}).get("annotations") or {}).get(names.PUSH_SECRET_ANNOTATION)
    ref = ((mosc or {}).get("spec") or {}).get("renderedImagePushSecret") or {}
    return str(stamped or ref.get("name") or "") or None


async def _report(kube: Kube, mosb: Obj, mosc: Obj | None, cond: Condition, *, event: bool = False) -> None:
    """``cond`` on the MachineOSConfig (when it is still there), and with ``event`` a Warning Event on it
    (or on the MachineOSBuild once the MachineOSConfig is gone)."""
    if event:
        await kube.record_event(mosc or mosb, reason=cond.reason, message=cond.message, type_="Warning")
    if mosc is None or (mosc.get("metadata") or {}).get("deletionTimestamp"):
        return
    try:
        await update_pool_status(kube, mosc, set_conditions=[cond], resource=MACHINEOSCONFIGS)
    except errors.NotFound:
        pass
