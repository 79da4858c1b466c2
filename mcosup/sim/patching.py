"""JSON merge patch (RFC 7386), JSON patch (RFC 6902) and a strategic-merge-patch subset.

Pure: functions take the current object and the patch and return a new object; they never mutate
their inputs. Failures raise `PatchError` (the server answers 422, or 400 for an unparsable patch).

Strategic merge patch subset (built-in kinds only; custom resources get 415 as on a real server):
maps merge recursively and `null` deletes a key; lists merge by the keys in `MERGE_KEYS` (containers,
initContainers, ephemeralContainers, volumes, env, imagePullSecrets by `name`; volumeMounts by
`mountPath`; container ports by `containerPort`; Service ports by `port`; conditions by `type`;
node addresses by `type`; ownerReferences by `uid`; hostAliases by `ip`; podIPs by `ip`; webhook
configurations' webhooks, ServiceAccount secrets, schedulingGates and resourceClaims by `name`;
topologySpreadConstraints by `topologyKey`);
`metadata.finalizers` merges as a set of strings, as in the Go types. Every other list is replaced
whole, which is what the real server does for lists without a patch strategy (notably node
`spec.taints` and pod `tolerations`). Directives: `$patch: delete|replace|merge` in maps and list
items, `$deleteFromPrimitiveList/<field>`, `$retainKeys` (honoured), and `$setElementOrder/<field>`
(used only to order the merged list, as kubectl sends it).
"""

from __future__ import annotations

import copy
from typing import Any


class PatchError(ValueError):
    """The patch cannot be applied; `code` is the HTTP status the server answers with."""

    def __init__(self, message: str, code: int = 422) -> None:
        super().__init__(message)
        self.code = code


# ---------------------------------------------------------------------------------------------
# RFC 7386


def merge_patch(target: Any, patch: Any) -> Any:
    if not isinstance(patch, dict):
        return copy.deepcopy(patch)
    result: dict[str, Any] = dict(target) if isinstance(target, dict) else {}
    for key, value in patch.items():
        if value is None:
            result.pop(key, None)
        elif isinstance(value, dict):
            result[key] = merge_patch(result.get(key), value)
        else:
            result[key] = copy.deepcopy(value)
    return result


# ---------------------------------------------------------------------------------------------
# RFC 6902


def _unescape(token: str) -> str:
    return token.replace("~1", "/").replace("~0", "~")


def _split_pointer(path: str) -> list[str]:
    if path == "":
        return []
    if not path.startswith("/"):
        raise PatchError(f"invalid JSON pointer {path!r}: it must start with '/'")
    return [_unescape(t) for t in path[1:].split("/")]


def _index(container: list[Any], token: str, *, for_add: bool) -> int:
    if token == "-" and for_add:
        return len(container)
    if not token.isdigit() or (len(token) > 1 and token.startswith("0")):
        raise PatchError(f"invalid array index {token!r}")
    idx = int(token)
    limit = len(container) if for_add else len(container) - 1
    if idx > limit:
        raise PatchError(f"array index {idx} out of bounds")
    return idx


def _walk(doc: Any, tokens: list[str], path: str) -> Any:
    """The value ``tokens`` lead to inside ``doc``; PatchError naming ``path`` when one is missing."""
    current = doc
    for token in tokens:
        if isinstance(current, dict):
            if token not in current:
                raise PatchError(f"doc is missing path: {path!r}")
            current = current[token]
        elif isinstance(current, list):
            current = current[_index(current, token, for_add=False)]
        else:
            raise PatchError(f"doc is missing path: {path!r}")
    return current


def _parent(doc: Any, tokens: list[str], path: str) -> Any:
    return _walk(doc, tokens[:-1], path)


def _get(doc: Any, path: str) -> Any:
    return _walk(doc, _split_pointer(path), path)


def _add(doc: Any, path: str, value: Any) -> Any:
    tokens = _split_pointer(path)
    if not tokens:
        return value
    parent = _parent(doc, tokens, path)
    last = tokens[-1]
    if isinstance(parent, dict):
        parent[last] = value
    elif isinstance(parent, list):
        parent.insert(_index(parent, last, for_add=True), value)
    else:
        raise PatchError(f"doc is missing path: {path!r}")
    return doc


def _remove(doc: Any, path: str) -> Any:
    tokens = _split_pointer(path)
    if not tokens:
        raise PatchError("cannot remove the whole document")
    parent = _parent(doc, tokens, path)
    last = tokens[-1]
    if isinstance(parent, dict):
        if last not in parent:
            raise PatchError(f"unable to remove nonexistent key: {last}: missing value")
        del parent[last]
    elif isinstance(parent, list):
        del parent[_index(parent, last, for_add=False)]
    else:
        raise PatchError(f"doc is missing path: {path!r}")
    return doc


def go_json_type(value: Any) -> str:
    """How Go's encoding/json names a JSON value's type in its unmarshalling errors."""
    if isinstance(value, dict):
        return "object"
    if isinstance(value, list):
        return "array"
    if isinstance(value, str):
        return "string"
    if isinstance(value, bool):
        return "bool"
    return "number"


def json_patch(target: Any, operations: Any) -> Any:
    # The apiserver decodes the patch into a list of operations first: its errors are 400s.
    if not isinstance(operations, list):
        raise PatchError(
            f"error decoding patch: json: cannot unmarshal {go_json_type(operations)} "
            "into Go value of type []handlers.jsonPatchOp",
            code=400,
        )
    for op in operations:
        if not isinstance(op, dict) and op is not None:
            raise PatchError(
                f"error decoding patch: json: cannot unmarshal {go_json_type(op)} "
                "into Go value of type handlers.jsonPatchOp",
                code=400,
            )
    doc = copy.deepcopy(target)
    for op in operations:
        if not isinstance(op, dict) or "op" not in op or "path" not in op:
            raise PatchError(f"invalid JSON patch operation {op!r}: it needs 'op' and 'path'")
        kind, path = op["op"], op["path"]
        if kind == "add":
            doc = _add(doc, path, copy.deepcopy(op.get("value")))
        elif kind == "remove":
            doc = _remove(doc, path)
        elif kind == "replace":
            _get(doc, path)
            tokens = _split_pointer(path)
            if not tokens:
                doc = copy.deepcopy(op.get("value"))
            else:
                parent = _parent(doc, tokens, path)
                if isinstance(parent, list):
                    parent[_index(parent, tokens[-1], for_add=False)] = copy.deepcopy(op.get("value"))
                else:
                    parent[tokens[-1]] = copy.deepcopy(op.get("value"))
        elif kind == "move":
            value = _get(doc, op.get("from", ""))
            doc = _remove(doc, op.get("from", ""))
            doc = _add(doc, path, value)
        elif kind == "copy":
            doc = _add(doc, path, copy.deepcopy(_get(doc, op.get("from", ""))))
        elif kind == "test":
            if _get(doc, path) != op.get("value"):
                raise PatchError(f"testing value {path} failed")
        else:
            raise PatchError(f"Unexpected kind: {kind}")
    return doc


# ---------------------------------------------------------------------------------------------
# Strategic merge patch (subset)

# (parent field, list field) -> merge key; parent "" matches any parent.
MERGE_KEYS: dict[tuple[str, str], str] = {
    ("", "containers"): "name",
    ("", "initContainers"): "name",
    ("", "ephemeralContainers"): "name",
    ("", "volumes"): "name",
    ("", "env"): "name",
    ("", "imagePullSecrets"): "name",
    ("", "volumeMounts"): "mountPath",
    ("", "volumeDevices"): "devicePath",
    ("", "conditions"): "type",
    ("", "ownerReferences"): "uid",
    ("", "hostAliases"): "ip",
    ("", "podIPs"): "ip",
    ("", "webhooks"): "name",
    ("", "secrets"): "name",
    ("", "topologySpreadConstraints"): "topologyKey",
    ("", "schedulingGates"): "name",
    ("", "resourceClaims"): "name",
    ("status", "addresses"): "type",
    ("containers", "ports"): "containerPort",
    ("initContainers", "ports"): "containerPort",
    ("ephemeralContainers", "ports"): "containerPort",
    ("spec", "ports"): "port",
}
PRIMITIVE_MERGE_LISTS = {("metadata", "finalizers")}


def _merge_key(parent: str, field: str) -> str | None:
    return MERGE_KEYS.get((parent, field)) or MERGE_KEYS.get(("", field))


# Maps with `patchStrategy: replace` in the Go types, by kind: the patch's map replaces the old one.
REPLACE_MAPS: dict[str, frozenset[tuple[str, str]]] = {
    "PodDisruptionBudget": frozenset({("spec", "selector")}),
}


def strategic_merge_patch(target: Any, patch: Any, kind: str = "") -> Any:
    if not isinstance(patch, dict):
        raise PatchError("a strategic merge patch must be a JSON object", code=400)
    replace = REPLACE_MAPS.get(kind, frozenset())
    return _smp_map(target if isinstance(target, dict) else {}, patch, parent="", replace=replace)


def _smp_map(
    target: dict[str, Any],
    patch: dict[str, Any],
    parent: str,
    replace: frozenset[tuple[str, str]] = frozenset(),
) -> dict[str, Any]:
    directive = patch.get("$patch")
    if directive == "replace":
        return {k: copy.deepcopy(v) for k, v in patch.items() if k != "$patch"}
    if directive == "delete":
        return {}
    result = dict(target)
    retain = patch.get("$retainKeys")
    orders: dict[str, list[Any]] = {}
    for key, value in patch.items():
        if key in ("$patch", "$retainKeys"):
            continue
        if key.startswith("$setElementOrder/"):
            if isinstance(value, list):
                orders[key.split("/", 1)[1]] = value
            continue
        if key.startswith("$deleteFromPrimitiveList/"):
            field = key.split("/", 1)[1]
            if isinstance(result.get(field), list) and isinstance(value, list):
                result[field] = [v for v in result[field] if v not in value]
            continue
        if value is None:
            result.pop(key, None)
        elif isinstance(value, dict) and (parent, key) in replace:
            result[key] = {k: copy.deepcopy(v) for k, v in value.items() if not k.startswith("$")}
        elif isinstance(value, dict):
            existing = result.get(key)
            result[key] = _smp_map(
                existing if isinstance(existing, dict) else {}, value, parent=key, replace=replace
            )
        elif isinstance(value, list):
            result[key] = _smp_list(result.get(key), value, parent, key)
        else:
            result[key] = copy.deepcopy(value)
    for field, order in orders.items():
        if isinstance(result.get(field), list):
            result[field] = _apply_order(result[field], order, _merge_key(parent, field))
    if isinstance(retain, list):
        keep = set(retain)
        result = {k: v for k, v in result.items() if k in keep}
    return result


def _smp_list(target: Any, patch: list[Any], parent: str, field: str) -> list[Any]:
    current = list(target) if isinstance(target, list) else []
    if (parent, field) in PRIMITIVE_MERGE_LISTS:
        merged = list(current)
        for item in patch:
            if item not in merged:
                merged.append(copy.deepcopy(item))
        return merged
    key = _merge_key(parent, field)
    if key is None:
        return [copy.deepcopy(v) for v in patch if not (isinstance(v, dict) and v.get("$patch"))]
    if any(isinstance(v, dict) and v.get("$patch") == "replace" for v in patch):
        return [copy.deepcopy(v) for v in patch if not (isinstance(v, dict) and "$patch" in v)]
    merged = list(current)
    for item in patch:
        if not isinstance(item, dict):
            raise PatchError(f"{field}: list items must be objects with the merge key {key!r}")
        if key not in item:
            raise PatchError(f"map: {item} does not contain declared merge key: {key}")
        idx = next((i for i, e in enumerate(merged) if isinstance(e, dict) and e.get(key) == item[key]), None)
        if item.get("$patch") == "delete":
            if idx is not None:
                del merged[idx]
            continue
        if idx is None:
            merged.append(_smp_map({}, item, parent=field))
        else:
            merged[idx] = _smp_map(merged[idx], item, parent=field)
    return merged


def _apply_order(items: list[Any], order: list[Any], key: str | None) -> list[Any]:
    def ident(v: Any) -> Any:
        return v.get(key) if key and isinstance(v, dict) else repr(v)

    wanted = [ident(o) for o in order]
    positions = {w: i for i, w in enumerate(wanted)}
    ordered = sorted(enumerate(items), key=lambda p: (positions.get(ident(p[1]), len(wanted)), p[0]))
    return [v for _, v in ordered]
