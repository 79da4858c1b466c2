"""Render: the merge of a pool's MachineConfigs into one ``rendered-<pool>-<hash>`` (contract section 3).

Pure: no I/O, no clock, no randomness. The same inputs always give the same name and object, so any
replica (or a restarted one) renders the same thing and writing it is idempotent.

Merge rules, applied to the selected MachineConfigs in name order:

- Ignition files by path: the later MachineConfig's entry replaces the earlier one whole.
- Units by name: fields the later unit sets override the earlier ones (Ignition's own merge rule, so a
  MachineConfig that only adds a drop-in keeps the unit's contents); drop-ins are merged by name.
- ``passwd.users`` by name: ssh keys unioned in order of first appearance, the last non-empty password
  hash wins.
- ``kernelArguments`` appended, later duplicates dropped; ``extensions`` unioned.
- ``kernelType`` and ``osImageURL``: the last non-empty value. ``fips``: OR.

Ignition 2.x inputs (the MCO still accepts them) are read with the 3.x shape: the 2.x-only ``filesystem``
key of a file is dropped. The rendered config's Ignition version is the highest 3.x version among the
inputs, or 3.2.0.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from mcosup.model import machineconfig, names, selectors
from mcosup.model.objects import Obj

DEFAULT_IGNITION_VERSION = "3.2.0"


class RenderError(ValueError):
    """A component MachineConfig cannot be merged; the message names it, the field and the fix."""

    def __init__(self, machineconfig: str, field: str, message: str) -> None:
        self.machineconfig = machineconfig
        self.field = field
        self.problem = message
        super().__init__(f"MachineConfig {machineconfig}: {field}: {message}")


class SelectorError(ValueError):
    """A pool's label selector cannot be evaluated; the message names the pool and the field."""


@dataclasses.dataclass(frozen=True)
class RenderResult:
    #: ``rendered-<pool>-<first 32 hex of sha256(canonical)>``.
    name: str
    #: The merged MachineConfig spec.
    spec: Obj
    #: Canonical JSON of ``spec`` (sorted keys, no whitespace): what the name's hash covers.
    canonical: bytes
    #: Names of the merged MachineConfigs, in merge order.
    sources: tuple[str, ...]
    #: The rendered MachineConfig object, ready to create.
    machineconfig: Obj

    def configuration(self) -> Obj:
        """The pool's ``spec.configuration`` pointing at this rendered config (as the MCO writes it)."""
        return {
            "name": self.name,
            "source": [
                {"apiVersion": names.API_VERSION, "kind": "MachineConfig", "name": n} for n in self.sources
            ],
        }


# --------------------------------------------------------------------------------------------- selectors


def label_selector_matches(selector: Mapping[str, Any] | None, labels: Mapping[str, str], where: str) -> bool:
    """Kubernetes LabelSelector semantics — the one matcher, :func:`webhooks.selectors.selector_matches`: a
    missing selector selects nothing, an empty one everything, and one the API server would refuse (an
    unknown operator, ``In``/``NotIn`` without values, ``Exists`` with values) raises SelectorError
    naming ``where``, as the MCO's render fails on it, instead of selecting anything."""
    try:
        return selectors.selector_matches(selector, labels)
    except selectors.InvalidSelector as exc:
        raise SelectorError(f"{where}: {exc}; fix the selector (kubectl edit machineconfigpool)") from None


def selects(pool: Mapping[str, Any], mc: Mapping[str, Any]) -> bool:
    """Whether ``pool``'s ``spec.machineConfigSelector`` selects ``mc``."""
    pool_name = (pool.get("metadata") or {}).get("name", "?")
    selector = (pool.get("spec") or {}).get("machineConfigSelector")
    labels = (mc.get("metadata") or {}).get("labels") or {}
    return label_selector_matches(
        selector, labels, f"MachineConfigPool {pool_name}: spec.machineConfigSelector"
    )


def select(pool: Mapping[str, Any], machineconfigs: Iterable[Mapping[str, Any]]) -> list[Obj]:
    """The MachineConfigs ``pool`` selects, in name order, leaving out rendered configs."""
    chosen = [
        dict(mc)
        for mc in machineconfigs
        if selects(pool, mc) and not mc["metadata"]["name"].startswith(names.RENDERED_PREFIX)
    ]
    return sorted(chosen, key=lambda mc: str(mc["metadata"]["name"]))


# --------------------------------------------------------------------------------------------- checks


def check(mc: Mapping[str, Any]) -> None:
    """Raise RenderError naming ``mc``, the first invalid field and every problem found.

    Validation is the admission webhook's (``mcosup.model.machineconfig``): a MachineConfig that got past
    a webhook-less install (or an older mcosup) degrades the render with the same text a denial has.
    """
    problems = machineconfig.problems(mc)
    if problems:
        name = str((mc.get("metadata") or {}).get("name", "?"))
        message = "; ".join(p.message if i == 0 else str(p) for i, p in enumerate(problems))
        raise RenderError(name, problems[0].field, message)


# --------------------------------------------------------------------------------------------- merge


def _version_key(version: str) -> tuple[int, ...]:
    parts = []
    for p in version.split("-")[0].split("."):
        parts.append(int(p) if p.isdigit() else 0)
    return tuple(parts)


def _clean_file(f: Mapping[str, Any]) -> Obj:
    out = {k: v for k, v in f.items() if k != "filesystem"}
    return json.loads(json.dumps(out))  # type: ignore[no-any-return]  # deep copy of plain JSON


def _merge_unit(old: Obj, new: Mapping[str, Any]) -> Obj:
    merged = dict(old)
    for key, value in new.items():
        if key == "dropins":
            continue
        if value is not None:
            merged[key] = value
    dropins: dict[str, Obj] = {d["name"]: dict(d) for d in old.get("dropins") or []}
    for d in new.get("dropins") or []:
        prior = dropins.get(d["name"], {})
        dropins[d["name"]] = {**prior, **{k: v for k, v in d.items() if v is not None}}
    if dropins:
        merged["dropins"] = [dropins[n] for n in sorted(dropins)]
    return merged


def _union(into: list[str], items: Iterable[str]) -> None:
    seen = set(into)
    for item in items:
        if item not in seen:
            seen.add(item)
            into.append(item)


def merge(machineconfigs: Sequence[Mapping[str, Any]]) -> Obj:
    """The merged spec of ``machineconfigs`` (already in merge order)."""
    version = DEFAULT_IGNITION_VERSION
    files: dict[str, Obj] = {}
    units: dict[str, Obj] = {}
    users: dict[str, Obj] = {}
    kargs: list[str] = []
    extensions: list[str] = []
    kernel_type = ""
    os_image_url = ""
    fips = False
    for mc in machineconfigs:
        spec = mc.get("spec") or {}
        config = spec.get("config") or {}
        v = str((config.get("ignition") or {}).get("version") or "")
        if v.startswith("3.") and _version_key(v) > _version_key(version):
            version = v
        for f in (config.get("storage") or {}).get("files") or []:
            files[f["path"]] = _clean_file(f)
        for u in (config.get("systemd") or {}).get("units") or []:
            units[u["name"]] = _merge_unit(units.get(u["name"], {}), u)
        for user in (config.get("passwd") or {}).get("users") or []:
            merged_user = users.setdefault(user["name"], {"name": user["name"]})
            for key, value in user.items():
                if key == "sshAuthorizedKeys":
                    keys: list[str] = merged_user.setdefault("sshAuthorizedKeys", [])
                    _union(keys, value or [])
                elif key != "name" and value not in (None, ""):
                    merged_user[key] = value
        _union(kargs, spec.get("kernelArguments") or [])
        _union(extensions, spec.get("extensions") or [])
        kernel_type = spec.get("kernelType") or kernel_type
        os_image_url = spec.get("osImageURL") or os_image_url
        fips = fips or bool(spec.get("fips"))
    return {
        "config": {
            "ignition": {"version": version},
            "passwd": {"users": [users[n] for n in sorted(users)]},
            "storage": {"files": [files[p] for p in sorted(files)]},
            "systemd": {"units": [units[n] for n in sorted(units)]},
        },
        "extensions": extensions,
        "fips": fips,
        "kernelArguments": kargs,
        "kernelType": kernel_type,
        "osImageURL": os_image_url,
    }


def canonical_json(value: Any) -> bytes:
    """Canonical JSON: sorted keys, no insignificant whitespace, UTF-8."""
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()


def rendered_name(pool_name: str, canonical: bytes) -> str:
    return f"{names.RENDERED_PREFIX}{pool_name}-{hashlib.sha256(canonical).hexdigest()[:32]}"


def owner_reference(pool: Mapping[str, Any]) -> Obj:
    """The controller ownerReference to a MachineConfigPool (its uid is required)."""
    meta = pool["metadata"]
    return {
        "apiVersion": names.API_VERSION,
        "kind": "MachineConfigPool",
        "name": meta["name"],
        "uid": meta["uid"],
        "controller": True,
        "blockOwnerDeletion": True,
    }


def render(pool: str | Mapping[str, Any], machineconfigs: Sequence[Mapping[str, Any]]) -> RenderResult:
    """Merge ``machineconfigs`` (any order; merged in name order) into the pool's rendered config.

    ``pool`` is the pool's name, or the pool object: then the rendered MachineConfig carries the
    controller ownerReference to it (when it has a uid). Raises RenderError naming the first invalid
    MachineConfig and field.
    """
    if isinstance(pool, str):
        pool_name, pool_obj = pool, None
    else:
        pool_name, pool_obj = str(pool["metadata"]["name"]), pool
    ordered = sorted(machineconfigs, key=lambda mc: str(mc["metadata"]["name"]))
    for mc in ordered:
        check(mc)
    spec = merge(ordered)
    canonical = canonical_json(spec)
    name = rendered_name(pool_name, canonical)
    metadata: Obj = {"name": name}
    if pool_obj is not None and (pool_obj.get("metadata") or {}).get("uid"):
        metadata["ownerReferences"] = [owner_reference(pool_obj)]
    rendered: Obj = {
        "apiVersion": names.API_VERSION,
        "kind": "MachineConfig",
        "metadata": metadata,
        "spec": json.loads(canonical),
    }
    sources = tuple(str(mc["metadata"]["name"]) for mc in ordered)
    return RenderResult(name=name, spec=spec, canonical=canonical, sources=sources, machineconfig=rendered)
