"""MachineOSBuild, the record of one build (contract section 11), and the hand-off it carries. Pure.

The builder writes these objects; the rollout reads them. Both go through this module, so the shape of
the record has one owner:

- :func:`new`: the object the builder creates for one build identity, named ``<MachineOSConfig>-<first 16
  hex of the identity>``, with the immutable spec and an ownerReference to its MachineOSConfig.
- :func:`conditions_for`: the five conditions as the MCO writes them (its reasons ``Prepared``,
  ``Building``, ``Failed``, ``Interrupted``, ``Ready``), exactly one True once the build is under way.
- :func:`image_for_pool`: **the hand-off**: the pool's image is its MachineOSConfig's current build's
  ``status.digestedImagePushSpec``, when that build Succeeded for the pool's current rendered config.
  Nothing reads a condition's message.
"""

from __future__ import annotations

import datetime
from collections.abc import Callable, Mapping
from typing import Any

from mcosup.model import conditions, names
from mcosup.model.conditions import Condition
from mcosup.model.objects import Obj, ObjView, annotations_of, rendered_config

#: The MCO's reason and fixed message of each condition type; the reason stays the same whether the
#: condition is True or False (``apihelpers`` in the MCO's build controller).
_MCO_TEXT: Mapping[str, tuple[str, str]] = {
    names.MOSB_PREPARED: ("Prepared", "Build Prepared and Pending"),
    names.MOSB_BUILDING: ("Building", "Image Build In Progress"),
    names.MOSB_FAILED: ("Failed", "Build Failed"),
    names.MOSB_INTERRUPTED: ("Interrupted", "Build Interrupted"),
    names.MOSB_SUCCEEDED: ("Ready", "Build Ready"),
}

#: Where the build objects live, for ``status.builder.job`` and ``status.machineOSBuild`` references.
BUILDS_RESOURCE = "machineosbuilds"


def name_for(machineosconfig_name: str, identity: str, restart: int = 0) -> str:
    """``<MachineOSConfig>-<first 16 hex of the build identity>``; a build started again after an
    interruption (its conditions are final) gets a new object, ``...-<restart>``."""
    base = f"{machineosconfig_name}-{identity[:16]}"
    return base if restart == 0 else f"{base}-{restart}"


def restart_of(mosb_name: str, base: str) -> int | None:
    """Which start of build ``base`` (:func:`name_for` with restart 0) ``mosb_name`` is; None: another."""
    if mosb_name == base:
        return 0
    rest = mosb_name.removeprefix(base + "-")
    return int(rest) if rest != mosb_name and rest.isdigit() else None


def job_name(mosb_name: str) -> str:
    """The build Job of a MachineOSBuild; its ConfigMaps share the name as a prefix."""
    return f"build-{mosb_name}"


def builder_job(mosb: ObjView) -> str | None:
    """``status.builder.job.name``: the Job the build was started in, None before it was."""
    status = mosb.get("status")
    builder = status.get("builder") if isinstance(status, Mapping) else None
    job = builder.get("job") if isinstance(builder, Mapping) else None
    return str(job["name"]) if isinstance(job, Mapping) and job.get("name") else None


def builder_status(job: str, namespace: str) -> Obj:
    """``status.builder`` naming the build's Job."""
    return {
        "imageBuilderType": names.JOB_IMAGE_BUILDER,
        "job": {"group": "batch", "resource": "jobs", "namespace": namespace, "name": job},
    }


def _meta(obj: ObjView) -> Mapping[str, Any]:
    meta = obj.get("metadata")
    return meta if isinstance(meta, Mapping) else {}


def new(mosc: ObjView, name: str, rendered_name: str, push_spec: str, labels: Mapping[str, str]) -> Obj:
    """MachineOSBuild ``name`` (see :func:`name_for`) of ``mosc`` (whose uid is required), status empty."""
    meta = _meta(mosc)
    return {
        "apiVersion": names.API_VERSION,
        "kind": names.MACHINEOSBUILD_KIND,
        "metadata": {
            "name": name,
            "labels": dict(labels),
            "ownerReferences": [
                {
                    "apiVersion": names.API_VERSION,
                    "kind": names.MACHINEOSCONFIG_KIND,
                    "name": meta["name"],
                    "uid": meta["uid"],
                    "controller": True,
                    "blockOwnerDeletion": True,
                }
            ],
        },
        "spec": {
            "machineConfig": {"name": rendered_name},
            "machineOSConfig": {"name": meta["name"]},
            "renderedImagePushSpec": push_spec,
        },
    }


def owner_reference(mosb: ObjView) -> Obj:
    """The controller ownerReference of a build's Job and ConfigMaps to their MachineOSBuild."""
    meta = _meta(mosb)
    return {
        "apiVersion": names.API_VERSION,
        "kind": names.MACHINEOSBUILD_KIND,
        "name": meta["name"],
        "uid": meta["uid"],
        "controller": True,
        "blockOwnerDeletion": True,
    }


def reference(mosb_name: str) -> Obj:
    """``status.machineOSBuild`` of a MachineOSConfig naming its current build."""
    return {"group": names.GROUP, "resource": BUILDS_RESOURCE, "name": mosb_name}


def conditions_for(true_type: str | None, message: str = "") -> list[Condition]:
    """The five conditions with ``true_type`` True (None: all False, a build just recorded).

    The True one carries ``message`` when given (what failed, which Job was deleted), else the MCO's.
    """
    out = []
    for type_ in names.MOSB_CONDITIONS:
        reason, text = _MCO_TEXT[type_]
        is_true = type_ == true_type
        out.append(
            Condition(type_, "True" if is_true else "False", reason, (message or text) if is_true else text)
        )
    return out


def state(mosb: ObjView | None) -> str | None:
    """The condition type that is True (``Prepared``, ``Building``, ...), None when none is."""
    if mosb is None:
        return None
    for type_ in names.MOSB_CONDITIONS:
        if conditions.is_true(mosb, type_):
            return type_
    return None


def is_final(mosb: ObjView | None) -> bool:
    """Succeeded, Failed or Interrupted: its conditions never change again."""
    return state(mosb) in names.MOSB_FINAL


def rendered_of(mosb: ObjView) -> str:
    """``spec.machineConfig.name``: the rendered config the build is of."""
    spec = mosb.get("spec")
    ref = spec.get("machineConfig") if isinstance(spec, Mapping) else None
    return str(ref.get("name") or "") if isinstance(ref, Mapping) else ""


def succeeded_image(mosb: ObjView | None) -> str | None:
    """``status.digestedImagePushSpec`` of a Succeeded build, else None."""
    if mosb is None or state(mosb) != names.MOSB_SUCCEEDED:
        return None
    status = mosb.get("status")
    image = status.get("digestedImagePushSpec") if isinstance(status, Mapping) else None
    return str(image) if image else None


def current_build_name(mosc: ObjView | None) -> str | None:
    """The MachineOSConfig's current build: ``status.machineOSBuild.name``, else its annotation."""
    if mosc is None:
        return None
    status = mosc.get("status")
    ref = status.get("machineOSBuild") if isinstance(status, Mapping) else None
    if isinstance(ref, Mapping) and ref.get("name"):
        return str(ref["name"])
    return annotations_of(mosc).get(names.CURRENT_MOSB_ANNOTATION) or None


def image_for_pool(
    pool: ObjView, mosc: ObjView | None, machineosbuild: Callable[[str], ObjView | None]
) -> str | None:
    """The pool's image for its current rendered config, or None (nothing to roll out yet).

    ``mosc`` is the pool's MachineOSConfig, ``machineosbuild`` looks a MachineOSBuild up by name.
    """
    rendered = rendered_config(pool)
    current = current_build_name(mosc)
    if not rendered or not current:
        return None
    mosb = machineosbuild(current)
    if mosb is None or rendered_of(mosb) != rendered:
        return None
    return succeeded_image(mosb)


def rfc3339(epoch: float) -> str:
    """A ``date-time`` with microseconds: ``buildStart`` must be strictly before ``buildEnd`` (CEL), and
    a fast build can start and end within one second."""
    return datetime.datetime.fromtimestamp(epoch, datetime.UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
