"""What passing through the apiserver's Go types does to an object, before any validation.

Pure. A typed server decodes a body into Go structs and encodes it back, so it:
- drops the fields its types do not have (unknown metadata fields for every kind; for the built-in
  kinds listed here, unknown top-level and a few spec fields) and returns their paths (the server
  warns, or refuses under `fieldValidation=Strict`);
- omits empty maps and lists (`omitempty`);
- cannot decode a timestamp that is not RFC 3339 (metav1.Time, metav1.MicroTime) or Secret `data`
  that is not base64: a 400 with Go's parser's words, not a 422.

`format: date-time` in CRD schemas (:mod:`mcosup.sim.schema`) is checked with the same RFC 3339 rule.
"""

from __future__ import annotations

import base64
import binascii
import re
from typing import Any

OBJECT_META_FIELDS = frozenset(
    {
        "name",
        "generateName",
        "namespace",
        "selfLink",
        "uid",
        "resourceVersion",
        "generation",
        "creationTimestamp",
        "deletionTimestamp",
        "deletionGracePeriodSeconds",
        "labels",
        "annotations",
        "ownerReferences",
        "finalizers",
        "managedFields",
    }
)
TOP_LEVEL_FIELDS: dict[str, frozenset[str]] = {
    kind: frozenset({"apiVersion", "kind", "metadata", *fields})
    for kind, fields in {
        "Namespace": ("spec", "status"),
        "Node": ("spec", "status"),
        "Pod": ("spec", "status"),
        "ConfigMap": ("data", "binaryData", "immutable"),
        "Secret": ("data", "stringData", "type", "immutable"),
        "ServiceAccount": ("secrets", "imagePullSecrets", "automountServiceAccountToken"),
        "Service": ("spec", "status"),
        "Event": (
            "involvedObject",
            "reason",
            "message",
            "source",
            "firstTimestamp",
            "lastTimestamp",
            "count",
            "type",
            "eventTime",
            "series",
            "action",
            "related",
            "reportingComponent",
            "reportingInstance",
        ),
        "Lease": ("spec",),
        "PodDisruptionBudget": ("spec", "status"),
        "DaemonSet": ("spec", "status"),
        "Deployment": ("spec", "status"),
        "Job": ("spec", "status"),
        "ValidatingWebhookConfiguration": ("webhooks",),
        "Role": ("rules",),
        "ClusterRole": ("rules", "aggregationRule"),
        "RoleBinding": ("subjects", "roleRef"),
        "ClusterRoleBinding": ("subjects", "roleRef"),
        "CustomResourceDefinition": ("spec", "status"),
    }.items()
}
SPEC_FIELDS: dict[str, frozenset[str]] = {
    "Node": frozenset(
        {"podCIDR", "podCIDRs", "providerID", "unschedulable", "taints", "configSource", "externalID"}
    ),
    "Lease": frozenset(
        {
            "holderIdentity",
            "leaseDurationSeconds",
            "acquireTime",
            "renewTime",
            "leaseTransitions",
            "strategy",
            "preferredHolder",
        }
    ),
    "PodDisruptionBudget": frozenset(
        {"minAvailable", "maxUnavailable", "selector", "unhealthyPodEvictionPolicy"}
    ),
}


def prune_unknown(kind: str, obj: dict[str, Any], builtin: bool) -> tuple[dict[str, Any], list[str]]:
    """Drop the fields a typed apiserver would not keep: unknown metadata fields for every kind and,
    for the built-in kinds listed above, unknown top-level fields and (Node, Lease, PDB) spec fields.

    Returns the object and the dropped paths (the server warns, or refuses under fieldValidation=Strict).
    """
    dropped: list[str] = []
    out = dict(obj)
    meta = out.get("metadata")
    if isinstance(meta, dict) and not set(meta) <= OBJECT_META_FIELDS:
        dropped.extend(f"metadata.{k}" for k in meta if k not in OBJECT_META_FIELDS)
        out["metadata"] = {k: v for k, v in meta.items() if k in OBJECT_META_FIELDS}
    if builtin and kind in TOP_LEVEL_FIELDS:
        allowed = TOP_LEVEL_FIELDS[kind]
        dropped.extend(k for k in out if k not in allowed)
        out = {k: v for k, v in out.items() if k in allowed}
        spec = out.get("spec")
        if kind in SPEC_FIELDS and isinstance(spec, dict) and not set(spec) <= SPEC_FIELDS[kind]:
            dropped.extend(f"spec.{k}" for k in spec if k not in SPEC_FIELDS[kind])
            out["spec"] = {k: v for k, v in spec.items() if k in SPEC_FIELDS[kind]}
    return out, dropped


# Go's omitempty ------------------------------------------------------------------------------------

# Maps and lists of built-in kinds that a typed server drops when empty (`omitempty` in the Go types).
_OMIT_EMPTY: dict[str, tuple[str, ...]] = {
    "ConfigMap": ("data", "binaryData"),
    "Secret": ("data", "stringData"),
}
_OMIT_EMPTY_META = ("labels", "annotations", "finalizers", "ownerReferences")


def omit_empty(kind: str, obj: dict[str, Any]) -> dict[str, Any]:
    """``obj`` without the empty maps and lists a built-in kind's Go type would not serialise."""
    meta = obj.get("metadata")
    drop = [k for k in _OMIT_EMPTY.get(kind, ()) if obj.get(k) in ({}, [])]
    drop_meta = [k for k in _OMIT_EMPTY_META if isinstance(meta, dict) and meta.get(k) in ({}, [])]
    if not drop and not drop_meta:
        return obj
    out = {k: v for k, v in obj.items() if k not in drop}
    if drop_meta and isinstance(meta, dict):
        out["metadata"] = {k: v for k, v in meta.items() if k not in drop_meta}
    return out


# Secret data --------------------------------------------------------------------------------------

_BASE64_ALPHABET = frozenset("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/=")


def undecodable_secret_data(secret: dict[str, Any]) -> str | None:
    """Go's decoding error for the first `data` value that is not base64 (the apiserver cannot even
    decode such a body): the offset of the first byte outside the alphabet, else of the quantum that
    is cut short."""
    for value in (secret.get("data") or {}).values():
        text = str(value)
        try:
            base64.b64decode(text, validate=True)
        except (binascii.Error, ValueError):
            bad = next((i for i, c in enumerate(text) if c not in _BASE64_ALPHABET), len(text) // 4 * 4)
            return f"illegal base64 data at input byte {bad}"
    return None


# Timestamps -----------------------------------------------------------------------------------------

# metav1.Time parses RFC 3339 (fraction optional); metav1.MicroTime needs exactly six fraction digits.
_TIME = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d+)?(Z|[+-]\d\d:\d\d)$")
_MICRO_TIME = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{6}(Z|[+-]\d\d:\d\d)$")
TIME_LAYOUT = "2006-01-02T15:04:05Z07:00"
MICRO_TIME_LAYOUT = "2006-01-02T15:04:05.000000Z07:00"

# Built-in kinds: (path, micro) of timestamp fields; "*" stands for every item of a list.
TIME_FIELDS: dict[str, tuple[tuple[tuple[str, ...], bool], ...]] = {
    "Lease": ((("spec", "acquireTime"), True), (("spec", "renewTime"), True)),
    "Event": ((("eventTime",), True), (("firstTimestamp",), False), (("lastTimestamp",), False)),
    "Node": (
        (("status", "conditions", "*", "lastTransitionTime"), False),
        (("status", "conditions", "*", "lastHeartbeatTime"), False),
    ),
    "Pod": (
        (("status", "startTime"), False),
        (("status", "conditions", "*", "lastTransitionTime"), False),
        (("status", "conditions", "*", "lastProbeTime"), False),
    ),
}


def _values_at(obj: Any, path: tuple[str, ...], prefix: str = "") -> list[tuple[str, Any]]:
    if not path:
        return [(prefix, obj)]
    head, rest = path[0], path[1:]
    if head == "*":
        if not isinstance(obj, list):
            return []
        return [found for i, item in enumerate(obj) for found in _values_at(item, rest, f"{prefix}[{i}]")]
    if not isinstance(obj, dict) or obj.get(head) is None:
        return []
    return _values_at(obj[head], rest, f"{prefix}.{head}" if prefix else head)


def undecodable_time(kind: str, obj: dict[str, Any]) -> str | None:
    """Why a built-in object's timestamp cannot be decoded (the apiserver answers 400), or None."""
    for path, micro in TIME_FIELDS.get(kind, ()):
        for field, value in _values_at(obj, path):
            pattern, layout = (_MICRO_TIME, MICRO_TIME_LAYOUT) if micro else (_TIME, TIME_LAYOUT)
            if not isinstance(value, str) or not pattern.match(value):
                return f'parsing time "{value}" as "{layout}": {_time_parse_error(value, micro, field)}'
    return None


_WHOLE_SECONDS = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d")


def _time_parse_error(value: object, micro: bool, field: str) -> str:
    """Go's time.Parse error for the common mistake (a MicroTime without its six fraction digits)."""
    if micro and isinstance(value, str) and (m := _WHOLE_SECONDS.match(value)):
        rest = value[m.end() :]
        if not rest.startswith("."):
            return f'cannot parse "{rest}" as ".000000"'
    return f"cannot parse it ({field})"


def is_date_time(value: object) -> bool:
    """The `format: date-time` check CRD schemas get (RFC 3339, fraction optional)."""
    return not isinstance(value, str) or bool(_TIME.match(value))
