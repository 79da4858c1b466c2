"""MachineOSConfig, the MCO's GA opt-in (contract sections 2 and 11): who is opted in, with which settings.

Pure. The label and the object are two spellings of one opt-in, so every process asks these functions
and gets one answer:

- :func:`opted_in`: a pool is opted in while a MachineOSConfig names it (the object named like the pool,
  whose ``spec.machineConfigPool.name`` is the pool, not being deleted), or while it carries
  ``mc/layering-enabled``. The label is a shorthand for a MachineOSConfig that the supervisor makes
  (labelled ``mc/managed-by-label=true``, see :func:`from_label`): the pool is opted in from the moment
  it is labelled, not from the moment that object is written, and out the moment the label goes — a
  managed object whose pool lost the label opts nothing in; it is only waiting for its deletion.
- :func:`pool_settings`: what a pool's builds use. An admin's own MachineOSConfig (one without the
  managed label) always wins: its settings are validated as they are, each problem naming the object
  and the field. Otherwise the settings come from ``on-cluster-build-config`` (validated by
  :mod:`~mcosup.model.buildconfig`, whose messages name the ConfigMap an admin edits), turned into the
  very MachineOSConfig the supervisor writes for the pool (:func:`from_label`), then read like any
  other: both forms go through :func:`settings_of`.

Choices where the contract is silent: a ``containerFile`` entry for one architecture is refused with a
problem naming it (only ``NoArch`` is built until builds per architecture exist), rather than built
without the admin's text; ``baseImagePullSecret`` absent means an anonymous pull of the base image.
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Callable, Iterable, Mapping
from typing import Any

from mcosup.model import buildconfig, containerfile, names
from mcosup.model.imageref import InvalidImageRef, parse_image_ref
from mcosup.model.objects import Obj, ObjView, annotations_of, labels_of

#: Looks an object of the namespace up by name (a cache's ``get``), None when it does not exist.
Lookup = Callable[[str], ObjView | None]
#: ``mc/build-timeout`` when absent: two hours.
DEFAULT_BUILD_TIMEOUT = 2 * 3600
_DURATION_PART = re.compile(r"(\d+(?:\.\d*)?|\.\d+)(h|ms|us|µs|ns|m|s)")


@dataclasses.dataclass(frozen=True)
class BuildSettings:
    """What a pool's builds are made with, from its MachineOSConfig."""

    #: ``spec.renderedImagePushSpec``: where images go (each build replaces the tag).
    pullspec: str
    #: ``spec.renderedImagePushSecret.name``.
    push_secret: str
    #: ``spec.baseImagePullSecret.name``; None: the base image is pulled without credentials.
    pull_secret: str | None
    #: The ``NoArch`` entry of ``spec.containerFile``, appended to the build ("" when none).
    containerfile: str
    #: Seconds a build Job may run (``mc/build-timeout``; the MCO has no timeout, 2 h is generous).
    timeout_seconds: int = DEFAULT_BUILD_TIMEOUT


def go_duration(text: str) -> float:
    """Seconds of a Go duration (``1h30m``, ``45m``, ``90s``, ``1.5h``); ValueError when it is not one."""
    units = {"h": 3600.0, "m": 60.0, "s": 1.0, "ms": 0.001, "us": 1e-6, "µs": 1e-6, "ns": 1e-9}
    parts = _DURATION_PART.findall(text)
    if not text or "".join(n + u for n, u in parts) != text:
        raise ValueError(f"{text!r} is not a duration like 45m, 2h or 1h30m")
    return sum(float(n) * units[u] for n, u in parts)


def _name(obj: ObjView) -> str:
    metadata = obj.get("metadata")
    return str(metadata.get("name", "")) if isinstance(metadata, Mapping) else ""


def _spec(obj: ObjView) -> Mapping[str, Any]:
    spec = obj.get("spec")
    return spec if isinstance(spec, Mapping) else {}


def _ref_name(spec: Mapping[str, Any], field: str) -> str | None:
    """``spec.<field>.name``, or None when the reference is absent."""
    ref = spec.get(field)
    if not isinstance(ref, Mapping):
        return None
    return str(ref.get("name") or "").strip()


def pool_of(mosc: ObjView) -> str:
    """``spec.machineConfigPool.name``."""
    return _ref_name(_spec(mosc), "machineConfigPool") or ""


def is_managed(mosc: ObjView) -> bool:
    """Made by the supervisor from a pool's ``mc/layering-enabled`` label (and so only its to change)."""
    return labels_of(mosc).get(names.MANAGED_BY_LABEL) == names.MANAGED_BY_LABEL_VALUE


def machineosconfig_for(pool_name: str, machineosconfigs: Iterable[ObjView]) -> ObjView | None:
    """The MachineOSConfig naming pool ``pool_name``: named like it and naming it, not being deleted."""
    for mosc in machineosconfigs:
        metadata = mosc.get("metadata")
        if not isinstance(metadata, Mapping) or metadata.get("deletionTimestamp"):
            continue
        if _name(mosc) == pool_name and pool_of(mosc) == pool_name:
            return mosc
    return None


def admins_machineosconfig(pool_name: str, machineosconfigs: Iterable[ObjView]) -> ObjView | None:
    """The pool's MachineOSConfig when an admin made it (it then wins over the label)."""
    mosc = machineosconfig_for(pool_name, machineosconfigs)
    return mosc if mosc is not None and not is_managed(mosc) else None


def labelled(pool: Mapping[str, Any] | None) -> bool:
    """The pool carries ``mc/layering-enabled`` (any value): the shorthand for a MachineOSConfig."""
    return names.LAYERING_ENABLED in labels_of(pool)


def opted_in(pool: Mapping[str, Any] | None, machineosconfigs: Iterable[ObjView]) -> bool:
    """The layering opt-in (see the module docstring): an admin's MachineOSConfig, or the label."""
    if pool is None:
        return False
    if labelled(pool):
        return True
    return admins_machineosconfig(_name(pool), machineosconfigs) is not None


def custom_containerfile(custom_cm: ObjView | None, pool_name: str) -> str:
    """The pool's entry of ``on-cluster-build-custom-dockerfile`` ("" when none)."""
    data = (custom_cm or {}).get("data") or {}
    return str(data.get(pool_name) or "")


def from_label(pool_name: str, config: buildconfig.BuildConfig, containerfile: str) -> Obj:
    """The MachineOSConfig a labelled pool stands for, made from the build config (and the pool's custom
    Containerfile): what the supervisor writes, and what the builder reads for the label form."""
    spec: Obj = {
        "machineConfigPool": {"name": pool_name},
        "imageBuilder": {"imageBuilderType": names.JOB_IMAGE_BUILDER},
        "baseImagePullSecret": {"name": config.base_pull_secret},
        "renderedImagePushSecret": {"name": config.push_secret},
        "renderedImagePushSpec": config.pullspec,
    }
    if containerfile:
        spec["containerFile"] = [{"containerfileArch": names.NO_ARCH, "content": containerfile}]
    return {
        "apiVersion": names.API_VERSION,
        "kind": names.MACHINEOSCONFIG_KIND,
        "metadata": {
            "name": pool_name,
            "labels": {names.MANAGED_BY_LABEL: names.MANAGED_BY_LABEL_VALUE},
        },
        "spec": spec,
    }


def _secret_problem(where: str, name: str, secret: ObjView | None, namespace: str) -> str | None:
    if secret is None:
        return (
            f'{where}: Secret "{name}" does not exist in namespace {namespace}: create it with '
            f"`kubectl -n {namespace} create secret docker-registry {name} ...`"
        )
    defect = buildconfig.credential_defect(secret)
    return f"{where}: Secret {namespace}/{name}{defect}" if defect else None


_SECRET_FIELDS = ("renderedImagePushSecret", "baseImagePullSecret")


def secret_refs(mosc: ObjView) -> list[tuple[str, str]]:
    """``(field, Secret name)`` of each Secret ``mosc`` names (empty names are :func:`spec_problems`)."""
    spec = _spec(mosc)
    refs = [(f"spec.{field}.name", _ref_name(spec, field)) for field in _SECRET_FIELDS]
    return [(field, name) for field, name in refs if name]


def _containerfile(spec: Mapping[str, Any]) -> str:
    """The ``NoArch`` entry of ``spec.containerFile`` ("" when none)."""
    entries = spec.get("containerFile")
    for entry in entries if isinstance(entries, list) else []:
        if isinstance(entry, Mapping) and (entry.get("containerfileArch") or names.NO_ARCH) == names.NO_ARCH:
            return str(entry.get("content") or "")
    return ""


def spec_problems(mosc: ObjView) -> list[str]:
    """Every problem of ``mosc``'s spec that no other object is needed to see (what the webhook refuses),
    each naming the object and the field."""
    obj = f"{names.MACHINEOSCONFIG_KIND} {_name(mosc)}"
    spec = _spec(mosc)
    problems: list[str] = []
    pullspec = str(spec.get("renderedImagePushSpec") or "").strip()
    if not pullspec:
        problems.append(
            f"{obj} spec.renderedImagePushSpec is empty: set it to where the images go, "
            "e.g. registry.example.com/namespace/os-image:latest"
        )
    else:
        try:
            parse_image_ref(pullspec)
        except InvalidImageRef as exc:
            problems.append(
                f"{obj} spec.renderedImagePushSpec: {pullspec!r} is not an image reference ({exc}): "
                "use registry.example.com/namespace/os-image:latest"
            )
    builder = spec.get("imageBuilder")
    builder_type = builder.get("imageBuilderType") if isinstance(builder, Mapping) else None
    if builder_type != names.JOB_IMAGE_BUILDER:
        problems.append(
            f"{obj} spec.imageBuilder.imageBuilderType={builder_type!r} is not supported: "
            f"use {names.JOB_IMAGE_BUILDER}"
        )
    if not _ref_name(spec, "renderedImagePushSecret"):
        problems.append(
            f"{obj} spec.renderedImagePushSecret.name is empty: name the Secret to push images with"
        )
    if _ref_name(spec, "baseImagePullSecret") == "":
        problems.append(
            f"{obj} spec.baseImagePullSecret.name is empty: name a Secret, or remove "
            "spec.baseImagePullSecret to pull the base image without credentials"
        )
    entries = spec.get("containerFile")
    for i, entry in enumerate(entries if isinstance(entries, list) else []):
        if not isinstance(entry, Mapping):
            continue
        arch = entry.get("containerfileArch") or names.NO_ARCH
        if arch == names.NO_ARCH:
            where = f"{obj} spec.containerFile[{i}].content"
            problems += containerfile.from_problems(where, str(entry.get("content") or ""))
        else:
            problems.append(
                f"{obj} spec.containerFile[{i}].containerfileArch={arch!r} is not supported yet: "
                f"builds are not made per architecture; use {names.NO_ARCH}"
            )
    return problems


def annotation_problems(mosc: ObjView) -> list[str]:
    """The problems of mcosup's settings annotations on ``mosc`` (``mc/build-timeout``,
    ``mc/build-history-limit``), each naming the object, the annotation and the fix."""
    return [p for p in (_build_timeout(mosc)[1], build_history_limit(mosc)[1]) if p]


def build_history_limit(mosc: ObjView) -> tuple[int, str | None]:
    """``mc/build-history-limit``: how many Succeeded builds to keep (the default when absent), and the
    problem with the annotation if any (the builder then keeps the default and says so)."""
    raw = annotations_of(mosc).get(names.BUILD_HISTORY_LIMIT)
    if raw is None:
        return names.DEFAULT_BUILD_HISTORY_LIMIT, None
    try:
        limit = int(str(raw).strip())
    except ValueError:
        limit = 0
    if limit >= 1:
        return limit, None
    default = names.DEFAULT_BUILD_HISTORY_LIMIT
    return default, (
        f"{names.MACHINEOSCONFIG_KIND} {_name(mosc)} annotation {names.BUILD_HISTORY_LIMIT}={raw!r} is not "
        f'a whole number of at least 1: set it to e.g. "{default}" or remove it (meanwhile the newest '
        f"{default} Succeeded builds are kept)"
    )


def _build_timeout(mosc: ObjView) -> tuple[int, str | None]:
    """``mc/build-timeout`` in seconds (the default when absent), and the problem with it if any."""
    obj = f"{names.MACHINEOSCONFIG_KIND} {_name(mosc)}"
    raw = annotations_of(mosc).get(names.BUILD_TIMEOUT_ANNOTATION)
    if raw is None:
        return DEFAULT_BUILD_TIMEOUT, None
    try:
        timeout = go_duration(str(raw).strip())
    except ValueError as exc:
        return (
            DEFAULT_BUILD_TIMEOUT,
            f"{obj} annotation {names.BUILD_TIMEOUT_ANNOTATION}: {exc}; set e.g. 45m or 2h",
        )
    if timeout < 1:
        return DEFAULT_BUILD_TIMEOUT, (
            f"{obj} annotation {names.BUILD_TIMEOUT_ANNOTATION}={raw!r} is under a second: set e.g. 45m or 2h"
        )
    return int(timeout), None


def settings_of(mosc: ObjView, secret: Lookup, namespace: str) -> tuple[BuildSettings | None, list[str]]:
    """The build settings of ``mosc``, or every problem, each naming the object and the field."""
    obj = f"{names.MACHINEOSCONFIG_KIND} {_name(mosc)}"
    problems = spec_problems(mosc)
    if timeout_problem := _build_timeout(mosc)[1]:
        problems.append(timeout_problem)
    for field, secret_name in secret_refs(mosc):
        found = _secret_problem(f"{obj} {field}", secret_name, secret(secret_name), namespace)
        if found:
            problems.append(found)
    if problems:
        return None, problems
    spec = _spec(mosc)
    push = _ref_name(spec, "renderedImagePushSecret") or ""
    pull = _ref_name(spec, "baseImagePullSecret")
    pullspec = str(spec.get("renderedImagePushSpec") or "").strip()
    return BuildSettings(pullspec, push, pull, _containerfile(spec), _build_timeout(mosc)[0]), []


def pool_settings(
    pool_name: str,
    machineosconfigs: Iterable[ObjView],
    configmap: Lookup,
    secret: Lookup,
    namespace: str,
) -> tuple[BuildSettings | None, list[str]]:
    """The build settings of an opted-in pool (see the module docstring), or every problem."""
    own = admins_machineosconfig(pool_name, machineosconfigs)
    if own is not None:
        return settings_of(own, secret, namespace)
    config, problems = buildconfig.validate(configmap(names.BUILD_CONFIG_CM), secret, namespace)
    if config is None:
        return None, problems
    text = custom_containerfile(configmap(names.CUSTOM_DOCKERFILE_CM), pool_name)
    # Named where the admin edits it: the managed object only copies the ConfigMap's entry.
    where = f"ConfigMap {namespace}/{names.CUSTOM_DOCKERFILE_CM} data.{pool_name}"
    problems = containerfile.from_problems(where, text)
    if problems:
        return None, problems
    return settings_of(from_label(pool_name, config, text), secret, namespace)
