"""Label and field selectors, parsed and matched the way the apiserver does.

Pure: no I/O. Label selectors accept the string grammar (`a=b`, `a==b`, `a!=b`, `a in (x,y)`,
`a notin (x)`, `a`, `!a`) and the structured `matchLabels`/`matchExpressions` form. Field selectors
accept `=`, `==` and `!=` on the fields each kind supports; any other field is a 400, as on a real
server.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from mcosup.sim import errors


@dataclass(frozen=True)
class Requirement:
    key: str
    op: str  # "=", "!=", "in", "notin", "exists", "!"
    values: frozenset[str]

    def matches(self, labels: Mapping[str, str]) -> bool:
        present = self.key in labels
        if self.op == "exists":
            return present
        if self.op == "!":
            return not present
        if self.op in ("=", "in"):
            return present and labels[self.key] in self.values
        if self.op in ("!=", "notin"):
            return not present or labels[self.key] not in self.values
        if self.op in ("gt", "lt"):
            if not present:
                return False
            try:
                have = int(labels[self.key])
                want = int(next(iter(self.values)))
            except ValueError:
                return False
            return have > want if self.op == "gt" else have < want
        return False


@dataclass(frozen=True)
class LabelSelector:
    requirements: tuple[Requirement, ...] = ()
    nothing: bool = False  # a selector that matches no object (not the same as an empty one)

    def matches(self, labels: Mapping[str, str] | None) -> bool:
        if self.nothing:
            return False
        labels = labels or {}
        return all(r.matches(labels) for r in self.requirements)

    @property
    def empty(self) -> bool:
        return not self.requirements and not self.nothing


EVERYTHING = LabelSelector()
NOTHING = LabelSelector(nothing=True)

_KEY = r"[A-Za-z0-9]([-A-Za-z0-9_./]*[A-Za-z0-9])?"
_VALUE = r"([A-Za-z0-9]([-A-Za-z0-9_.]*[A-Za-z0-9])?)?"
_SET_RE = re.compile(rf"^\s*({_KEY})\s+(in|notin)\s*\(([^)]*)\)\s*$")
_EQ_RE = re.compile(rf"^\s*({_KEY})\s*(==|!=|=)\s*({_VALUE})\s*$")
_EXISTS_RE = re.compile(rf"^\s*(!?)\s*({_KEY})\s*$")


def _split_top_level(text: str) -> list[str]:
    """Split on commas that are not inside parentheses."""
    parts: list[str] = []
    depth = 0
    current: list[str] = []
    for ch in text:
        if ch == "(":
            depth += 1
        elif ch == ")":
            depth -= 1
        if ch == "," and depth == 0:
            parts.append("".join(current))
            current = []
        else:
            current.append(ch)
    parts.append("".join(current))
    return parts


def parse_label_selector(text: str | None) -> LabelSelector:
    """Parse the string form; raises a 400 `ApiStatusError` on a malformed selector."""
    if not text or not text.strip():
        return EVERYTHING
    reqs: list[Requirement] = []
    for part in _split_top_level(text):
        if not part.strip():
            raise errors.bad_request(
                f"unable to parse requirement: found '', expected: identifier in {text!r}"
            )
        if m := _SET_RE.match(part):
            values = frozenset(v.strip() for v in m.group(4).split(",") if v.strip())
            reqs.append(Requirement(m.group(1), m.group(3), values))
        elif m := _EQ_RE.match(part):
            op = "=" if m.group(3) in ("=", "==") else "!="
            reqs.append(Requirement(m.group(1), op, frozenset([m.group(4)])))
        elif m := _EXISTS_RE.match(part):
            reqs.append(Requirement(m.group(2), "!" if m.group(1) else "exists", frozenset()))
        else:
            raise errors.bad_request(f"unable to parse requirement: invalid label selector {part.strip()!r}")
    return LabelSelector(tuple(reqs))


def label_selector_from_dict(
    selector: Mapping[str, Any] | None, *, none_matches_nothing: bool = False
) -> LabelSelector:
    """The structured form used by PDBs, webhooks and workloads.

    `None` matches nothing when `none_matches_nothing` (PDB semantics: a nil selector selects no pods)
    and everything otherwise (webhook namespace/object selectors); `{}` always matches everything.
    """
    if selector is None:
        return NOTHING if none_matches_nothing else EVERYTHING
    reqs: list[Requirement] = []
    for key, value in sorted((selector.get("matchLabels") or {}).items()):
        reqs.append(Requirement(key, "=", frozenset([str(value)])))
    for expr in selector.get("matchExpressions") or []:
        op = str(expr.get("operator", ""))
        key = str(expr.get("key", ""))
        values = frozenset(str(v) for v in expr.get("values") or [])
        mapped = {
            "In": "in",
            "NotIn": "notin",
            "Exists": "exists",
            "DoesNotExist": "!",
            "Gt": "gt",
            "Lt": "lt",
        }
        if op not in mapped:
            raise errors.bad_request(f"{op!r} is not a valid label selector operator")
        reqs.append(Requirement(key, mapped[op], values))
    return LabelSelector(tuple(reqs))


# Field selectors --------------------------------------------------------------------------------

COMMON_FIELDS = ("metadata.name", "metadata.namespace")
FIELDS_BY_KIND: dict[str, tuple[str, ...]] = {
    "Pod": (
        "spec.nodeName",
        "spec.restartPolicy",
        "spec.schedulerName",
        "spec.serviceAccountName",
        "spec.hostNetwork",
        "status.phase",
        "status.podIP",
        "status.nominatedNodeName",
    ),
    "Node": ("spec.unschedulable",),
    "Namespace": ("status.phase",),
    "Secret": ("type",),
    "Event": (
        "involvedObject.kind",
        "involvedObject.namespace",
        "involvedObject.name",
        "involvedObject.uid",
        "involvedObject.apiVersion",
        "involvedObject.resourceVersion",
        "involvedObject.fieldPath",
        "reason",
        "reportingComponent",
        "source",
        "type",
    ),
}


@dataclass(frozen=True)
class FieldRequirement:
    field: str
    negate: bool
    value: str


@dataclass(frozen=True)
class FieldSelector:
    requirements: tuple[FieldRequirement, ...] = ()

    def matches(self, obj: Mapping[str, Any]) -> bool:
        return all((field_value(obj, r.field) == r.value) != r.negate for r in self.requirements)

    def exact_name(self) -> str | None:
        """The name when the selector pins `metadata.name=X` (lets the store skip a scan)."""
        for r in self.requirements:
            if r.field == "metadata.name" and not r.negate:
                return r.value
        return None


def field_value(obj: Mapping[str, Any], field: str) -> str:
    if field == "source":
        src = obj.get("source") or {}
        return str(src.get("component", "")) if isinstance(src, dict) else ""
    current: Any = obj
    for part in field.split("."):
        if not isinstance(current, Mapping):
            return ""
        current = current.get(part)
    if current is None:
        return ""
    if isinstance(current, bool):
        return "true" if current else "false"
    return str(current)


def parse_field_selector(text: str | None, kind: str, *, builtin: bool = True) -> FieldSelector:
    if not text or not text.strip():
        return FieldSelector()
    allowed = COMMON_FIELDS + FIELDS_BY_KIND.get(kind, ())
    reqs: list[FieldRequirement] = []
    for part in text.split(","):
        part = part.strip()
        if not part:
            continue
        if "!=" in part:
            field, value = part.split("!=", 1)
            negate = True
        elif "==" in part:
            field, value = part.split("==", 1)
            negate = False
        elif "=" in part:
            field, value = part.split("=", 1)
            negate = False
        else:
            raise errors.bad_request(f"invalid selector: '{text}'; can't understand '{part}'")
        field = field.strip()
        if field not in allowed:
            if kind in FIELDS_BY_KIND or not builtin:  # kinds with a field label conversion of their own
                raise errors.bad_request(f"field label not supported: {field}")
            # The default conversion, for every other kind.
            raise errors.bad_request(
                f'"{field}" is not a known field selector: only "metadata.name", "metadata.namespace"'
            )
        reqs.append(FieldRequirement(field, negate, value.strip()))
    return FieldSelector(tuple(reqs))
