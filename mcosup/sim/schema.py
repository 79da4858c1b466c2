"""CRD `openAPIV3Schema` handling: structural pruning, defaulting and validation.

Pure: no I/O. What the real apiserver does and this module does too:
- unknown fields are pruned (dropped) unless `x-kubernetes-preserve-unknown-fields` or
  `additionalProperties` keep them; `apiVersion`, `kind` and `metadata` at the root are never pruned;
  the pruned paths are returned so the server can warn (`fieldValidation=Warn`, the default) or
  reject (`fieldValidation=Strict`);
- `default` values are applied to absent properties;
- validation with `jsonschema` (draft 4 semantics, as OpenAPI v3.0) plus the Kubernetes extensions
  `x-kubernetes-int-or-string` and `nullable`; errors are rendered as the apiserver's field errors.

- list-type `map`/`set` uniqueness (`Duplicate value`);
- the validation rules (`x-kubernetes-validations`, CEL: :mod:`mcosup.sim.cel`), with the old object
  on updates for transition rules, skipped with the server's "some validation rules were not checked"
  when the schema already failed in a way that blocks them (a required, mistyped, unsupported, too long
  or too many value).

`format: date-time` is checked (RFC 3339); other formats are not. Ratcheting of OpenAPI errors (an
unchanged invalid value passes an update) is not modelled; of CEL rules it is.
"""

from __future__ import annotations

import copy
from functools import lru_cache
from typing import Any

import jsonschema
import orjson

from mcosup.sim import cel
from mcosup.sim.gotypes import is_date_time

_DROP_KEYS = {"nullable", "description", "example", "externalDocs", "default", "title"}
# The formats the apiserver checks that matter here; others (int32, int64, ...) are not checked.
_FORMATS = jsonschema.FormatChecker(formats=())
_FORMATS.checks("date-time")(is_date_time)
_CHECKED_FORMATS = {"date-time"}


def _translate(schema: Any) -> Any:
    if not isinstance(schema, dict):
        return schema
    out: dict[str, Any] = {}
    for key, value in schema.items():
        if key.startswith("x-kubernetes-") or key in _DROP_KEYS:
            continue
        if key == "format" and value not in _CHECKED_FORMATS:
            continue
        if key == "properties" and isinstance(value, dict):
            out[key] = {k: _translate(v) for k, v in value.items()}
        elif key in ("items", "additionalProperties", "not") and isinstance(value, dict):
            out[key] = _translate(value)
        elif key in ("allOf", "anyOf", "oneOf") and isinstance(value, list):
            out[key] = [_translate(v) for v in value]
        else:
            out[key] = value
    if schema.get("x-kubernetes-int-or-string"):
        out["type"] = ["integer", "string"]
    if schema.get("nullable"):
        if "type" in out:
            t = out["type"]
            out["type"] = [*t, "null"] if isinstance(t, list) else [t, "null"]
        if "enum" in out and None not in out["enum"]:
            out["enum"] = [*out["enum"], None]
    return out


@lru_cache(maxsize=64)
def _validator(schema_json: bytes) -> jsonschema.Draft4Validator:
    schema = orjson.loads(schema_json)
    translated = _translate(schema)
    if isinstance(translated, dict) and isinstance(translated.get("properties"), dict):
        # The root metadata is ObjectMeta, validated by the server itself, not by the CRD schema.
        translated["properties"].pop("metadata", None)
    return jsonschema.Draft4Validator(translated, format_checker=_FORMATS)


def _field_path(path: list[Any]) -> str:
    out = ""
    for part in path:
        if isinstance(part, int):
            out += f"[{part}]"
        else:
            out += ("." if out else "") + str(part)
    return out


def _render(value: Any) -> str:
    if isinstance(value, str):
        return f'"{value}"'
    if isinstance(value, bool):
        return "true" if value else "false"
    if value is None:
        return "null"
    if isinstance(value, (int, float)):
        return str(value)
    return f'"{type(value).__name__ if not isinstance(value, dict) else "object"}"'


def _type_name(value: Any) -> str:
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, int):
        return "integer"
    if isinstance(value, float):
        return "number"
    if isinstance(value, str):
        return "string"
    if isinstance(value, list):
        return "array"
    if isinstance(value, dict):
        return "object"
    return "null"


#: Schema failures after which the server does not evaluate the CEL rules (apiextensions' hasBlockingErr).
_BLOCKING = frozenset(
    {
        "FieldValueRequired",
        "FieldValueTypeInvalid",
        "FieldValueNotSupported",
        "FieldValueTooLong",
        "FieldValueTooMany",
    }
)
NOT_CHECKED = {
    "reason": "FieldValueInvalid",
    "field": "<nil>",
    "message": "Invalid value: null: some validation rules were not checked because the object was invalid; "
    "correct the existing errors to complete validation",
}


def validate(
    obj: dict[str, Any], schema: dict[str, Any] | None, old: dict[str, Any] | None = None
) -> list[dict[str, str]]:
    """Field errors as `Status` causes (field, reason, message); empty when the object is valid.

    ``old`` is the stored object on an update (its transition rules compare with it), None on create.
    """
    if not schema:
        return []
    causes = _openapi_causes(obj, schema)
    causes += _duplicates(obj, schema, "")
    if cel.has_rules(schema):
        if any(c["reason"] in _BLOCKING for c in causes):
            causes.append(dict(NOT_CHECKED))
        else:
            old_view = prune_and_default(old, schema)[0] if old is not None else None
            causes += cel.rule_causes(obj, schema, old_view)
    return causes


def _duplicates(value: Any, schema: dict[str, Any], path: str) -> list[dict[str, str]]:
    """`Duplicate value` for a repeated key of a list-type map, or a repeated item of a list-type set."""
    out: list[dict[str, str]] = []
    if isinstance(value, dict):
        props = schema.get("properties") or {}
        addl = schema.get("additionalProperties")
        for key, item in value.items():
            sub = props.get(key) if key in props else addl if isinstance(addl, dict) else None
            if isinstance(sub, dict) and not (not path and key == "metadata"):
                out += _duplicates(item, sub, f"{path}.{key}" if path else key)
    elif isinstance(value, list):
        items = schema.get("items") if isinstance(schema.get("items"), dict) else {}
        kind = schema.get("x-kubernetes-list-type")
        keys = schema.get("x-kubernetes-list-map-keys") or []
        seen: set[bytes] = set()
        for i, item in enumerate(value):
            if kind == "map" and keys and isinstance(item, dict):
                identity: Any = {k: item[k] for k in keys if k in item}
            elif kind == "set":
                identity = item
            else:
                identity = None
            if identity is not None:
                packed = orjson.dumps(identity, option=orjson.OPT_SORT_KEYS)
                if packed in seen:
                    shown = packed.decode() if isinstance(identity, dict) else _render(identity)
                    out.append(
                        {
                            "reason": "FieldValueDuplicate",
                            "field": f"{path}[{i}]",
                            "message": f"Duplicate value: {shown}",
                        }
                    )
                seen.add(packed)
            out += _duplicates(item, items or {}, f"{path}[{i}]")
    return out


def _openapi_causes(obj: dict[str, Any], schema: dict[str, Any]) -> list[dict[str, str]]:
    validator = _validator(orjson.dumps(schema, option=orjson.OPT_SORT_KEYS))
    causes: list[dict[str, str]] = []
    for error in sorted(validator.iter_errors(obj), key=lambda e: list(map(str, e.absolute_path))):
        path = list(error.absolute_path)
        field = _field_path(path)
        if error.validator == "required":
            missing = str(error.message).split("'")[1] if "'" in error.message else ""
            field = _field_path([*path, missing])
            causes.append({"reason": "FieldValueRequired", "field": field, "message": "Required value"})
        elif error.validator == "type":
            want = error.validator_value
            want_s = ",".join(want) if isinstance(want, list) else str(want)
            got = _type_name(error.instance)
            causes.append(
                {
                    "reason": "FieldValueTypeInvalid",
                    "field": field,
                    "message": f'Invalid value: "{got}": {field} in body must be of type {want_s}: "{got}"',
                }
            )
        elif error.validator == "format":
            causes.append(
                {
                    "reason": "FieldValueInvalid",
                    "field": field,
                    "message": f"Invalid value: {_render(error.instance)}: {field} in body must be of type "
                    f"{error.validator_value}: {_render(error.instance)}",
                }
            )
        elif error.validator == "maxLength":
            causes.append(
                {
                    "reason": "FieldValueTooLong",
                    "field": field,
                    "message": f"Too long: may not be more than {error.validator_value} bytes",
                }
            )
        elif error.validator in ("maxItems", "maxProperties"):
            causes.append(
                {
                    "reason": "FieldValueTooMany",
                    "field": field,
                    "message": f"Too many: {len(error.instance)}: "
                    f"must have at most {error.validator_value} items",
                }
            )
        elif error.validator == "enum":
            allowed = ", ".join(_render(v) for v in error.validator_value)
            causes.append(
                {
                    "reason": "FieldValueNotSupported",
                    "field": field,
                    "message": f"Unsupported value: {_render(error.instance)}: supported values: {allowed}",
                }
            )
        else:
            causes.append(
                {
                    "reason": "FieldValueInvalid",
                    "field": field,
                    "message": f"Invalid value: {_render(error.instance)}: {field} in body {error.message}",
                }
            )
    return causes


def prune_and_default(obj: Any, schema: dict[str, Any] | None) -> tuple[Any, list[str]]:
    """A copy of `obj` without the fields the schema does not declare, with defaults applied.

    Returns the pruned object and the paths of the fields that were dropped.
    """
    if not schema:
        return obj, []
    dropped: list[str] = []
    return _prune(copy.deepcopy(obj), schema, "", dropped, root=True), dropped


def _prune(value: Any, schema: dict[str, Any], path: str, dropped: list[str], *, root: bool = False) -> Any:
    if isinstance(value, dict):
        props = schema.get("properties")
        addl = schema.get("additionalProperties")
        preserve = bool(schema.get("x-kubernetes-preserve-unknown-fields"))
        embedded = bool(schema.get("x-kubernetes-embedded-resource"))
        for key in list(value):
            child_path = f"{path}.{key}" if path else key
            if (root or embedded) and key in ("apiVersion", "kind", "metadata"):
                continue
            if isinstance(props, dict) and key in props:
                value[key] = _prune(value[key], props[key], child_path, dropped)
            elif isinstance(addl, dict):
                value[key] = _prune(value[key], addl, child_path, dropped)
            elif addl is True or preserve:
                continue
            else:
                del value[key]
                dropped.append(child_path)
        if isinstance(props, dict):
            for key, sub in props.items():
                if key not in value and isinstance(sub, dict) and "default" in sub:
                    value[key] = copy.deepcopy(sub["default"])
        return value
    if isinstance(value, list):
        items = schema.get("items")
        if isinstance(items, dict):
            return [_prune(v, items, f"{path}[{i}]", dropped) for i, v in enumerate(value)]
    return value
