"""Validation of the on-cluster build configuration (contract section 2). Pure.

Inputs are the ConfigMap and the Secrets it names as read from the caches; the output names every
problem, each saying which object and field and how to fix it, so one look at ``LayeringReady`` tells
an admin everything that is wrong.
"""

from __future__ import annotations

import base64
import dataclasses
from collections.abc import Callable

import orjson

from mcosup.model import names
from mcosup.model.imageref import InvalidImageRef, parse_image_ref
from mcosup.model.objects import ObjView

DOCKER_SECRET_TYPES = ("kubernetes.io/dockerconfigjson", "kubernetes.io/dockercfg")


@dataclasses.dataclass(frozen=True)
class BuildConfig:
    base_pull_secret: str
    push_secret: str
    pullspec: str
    builder_type: str


def validate(
    configmap: ObjView | None, secret_lookup: Callable[[str], ObjView | None], namespace: str
) -> tuple[BuildConfig | None, list[str]]:
    """The parsed build config when valid, and every problem found (empty when valid)."""
    where = f"ConfigMap {namespace}/{names.BUILD_CONFIG_CM}"
    if configmap is None:
        return None, [
            f"{where} does not exist: create it with keys {', '.join(names.REQUIRED_BUILD_CONFIG_KEYS)}"
        ]
    data = configmap.get("data") or {}
    problems: list[str] = []
    for key in names.REQUIRED_BUILD_CONFIG_KEYS:
        if not str(data.get(key, "")).strip():
            state = "is empty" if key in data else "is missing"
            problems.append(f"{where}: data.{key} {state}: set it to a non-empty value")
    builder_type = str(data.get(names.IMAGE_BUILDER_TYPE_KEY, "") or names.CUSTOM_POD_BUILDER).strip()
    if builder_type not in names.IMAGE_BUILDER_TYPES:
        problems.append(
            f"{where}: data.{names.IMAGE_BUILDER_TYPE_KEY}={builder_type!r} is not supported: "
            f"use {' or '.join(names.IMAGE_BUILDER_TYPES)} (or leave it out)"
        )
    pullspec = str(data.get(names.FINAL_IMAGE_PULLSPEC_KEY, "")).strip()
    if pullspec:
        try:
            parse_image_ref(pullspec)
        except InvalidImageRef as exc:
            problems.append(
                f"{where}: data.{names.FINAL_IMAGE_PULLSPEC_KEY}={pullspec!r} is not an image reference "
                f"({exc}): use registry.example.com/namespace/os-image:latest"
            )
    for key in (names.BASE_IMAGE_PULL_SECRET_KEY, names.FINAL_IMAGE_PUSH_SECRET_KEY):
        secret_name = str(data.get(key, "")).strip()
        if secret_name:
            problems.extend(secret_problems(secret_lookup(secret_name), secret_name, key, namespace))
    if problems:
        return None, problems
    return (
        BuildConfig(
            base_pull_secret=str(data[names.BASE_IMAGE_PULL_SECRET_KEY]).strip(),
            push_secret=str(data[names.FINAL_IMAGE_PUSH_SECRET_KEY]).strip(),
            pullspec=pullspec,
            builder_type=builder_type,
        ),
        [],
    )


def secret_problems(secret: ObjView | None, name: str, key: str, namespace: str) -> list[str]:
    where = f"Secret {namespace}/{name} (named by {names.BUILD_CONFIG_CM} data.{key})"
    if secret is None:
        return [f"{where} does not exist: create it with `kubectl create secret docker-registry {name} ...`"]
    defect = credential_defect(secret)
    return [where + defect] if defect else []


def credential_defect(secret: ObjView) -> str | None:
    """What makes an existing Secret unusable as registry credentials, as the end of a sentence that
    starts with the Secret's name (``" has type ..."``, ``": data[...] ..."``); None when usable."""
    type_ = secret.get("type", "")
    if type_ not in DOCKER_SECRET_TYPES:
        return f" has type {type_ or '(none)'!r}: it must be of type {' or '.join(DOCKER_SECRET_TYPES)}"
    field = ".dockerconfigjson" if type_ == DOCKER_SECRET_TYPES[0] else ".dockercfg"
    raw = (secret.get("data") or {}).get(field)
    if not raw:
        return f": data[{field}] is missing: store the registry credentials there"
    try:
        parsed = orjson.loads(base64.b64decode(raw, validate=True))
    except (ValueError, orjson.JSONDecodeError):
        return f": data[{field}] is not base64-encoded JSON: recreate the Secret with valid credentials"
    auths = parsed.get("auths") if isinstance(parsed, dict) and field == ".dockerconfigjson" else parsed
    if not isinstance(auths, dict):
        return f': data[{field}] has no registry credentials (expected an "auths" map)'
    return None
