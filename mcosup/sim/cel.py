"""CRD validation rules (``x-kubernetes-validations``) evaluated as kube-apiserver evaluates them.

Pure: no I/O. The CEL language itself is cel-python's (``celpy``: parser, evaluator, the standard
functions and macros, RE2 regular expressions as Go's). This module adds what Kubernetes puts around
it, with Kubernetes' semantics:

- where rules run: at every schema node that carries them and whose value is present, ``self`` being
  that value (at the root, ``self.metadata`` holds only ``name`` and ``generateName``); a ``string``
  with ``format: date-time`` is a CEL timestamp;
- transition rules (those that name ``oldSelf``) run on updates only, and only where the old object
  has a value at the same place: object properties and map entries correlate by key, items of a
  ``x-kubernetes-list-type: map`` list by their keys, other list items not at all. With
  ``optionalOldSelf: true`` they also run without one, ``oldSelf`` being an optional
  (``oldSelf.hasValue()``, ``oldSelf.value()``, ``oldSelf.orValue(x)``; selecting a field of an
  optional gives an optional);
- ratcheting (CRDValidationRatcheting, on by default since 1.33): on an update, a rule that does not
  name ``oldSelf`` is not held against a value equal to the old one at the same place;
- what a failure says: ``message``, or ``messageExpression`` when it gives a non-empty string, or
  ``failed rule: <rule>``; ``reason`` (``FieldValueInvalid`` by default, ``FieldValueForbidden``,
  ``FieldValueRequired``, ``FieldValueDuplicate``) and ``fieldPath`` (relative to the rule's node), as
  the API server's field errors; a scalar's value is shown, an object's or a list's is not; an
  evaluation error fails the rule with the error;
- the Kubernetes libraries the MCO's rules use: the strings extension's ``split`` and the ``format``
  library (``format.dns1123Subdomain()``, ``format.dns1123Label()``, ``format.dns1035Label()``,
  ``format.named(name)``, each with ``.validate(s)``, an optional list of errors).

Not modelled: the cost budget and the CRD-time type check (a rule that would not compile against the
schema is only noticed when it runs), and the other Kubernetes libraries (lists, sets, quantity, IP,
URL, regex extensions). A rule calling one of them fails with "undeclared reference".
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from functools import lru_cache
from typing import Any

import celpy
from celpy import celtypes
from celpy.adapter import json_to_cel
from celpy.evaluation import CELEvalError

Cause = dict[str, str]

_REASONS = {"FieldValueInvalid", "FieldValueForbidden", "FieldValueRequired", "FieldValueDuplicate"}
_ABSENT = object()


# --------------------------------------------------------------------------------- optionals


class Optional(celtypes.MapType):
    """CEL's ``optional_type``: a value or none. Selecting a field of it gives an optional again.

    A :class:`celtypes.MapType` only so that celpy's field selection reaches :meth:`__getitem__`; it
    holds no entries itself.
    """

    def __init__(self, value: Any = _ABSENT) -> None:
        super().__init__()
        self.inner = value

    def __getitem__(self, key: Any) -> Optional:
        if isinstance(self.inner, celtypes.MapType) and key in self.inner:
            return Optional(self.inner[key])
        return Optional()

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Optional) and self.inner == other.inner

    def __repr__(self) -> str:
        return "optional.none()" if self.inner is _ABSENT else f"optional.of({self.inner!r})"


def _has_value(opt: Any) -> celtypes.BoolType:
    if not isinstance(opt, Optional):
        raise TypeError("hasValue() applies to an optional")
    return celtypes.BoolType(opt.inner is not _ABSENT)


def _value(opt: Any) -> Any:
    if not isinstance(opt, Optional):
        raise TypeError("value() applies to an optional")
    if opt.inner is _ABSENT:
        return CELEvalError("optional.none() dereference")
    return opt.inner


def _or_value(opt: Any, default: Any) -> Any:
    if not isinstance(opt, Optional):
        raise TypeError("orValue() applies to an optional")
    return default if opt.inner is _ABSENT else opt.inner


# --------------------------------------------------------------------------------- the format library

_DNS1123_LABEL = r"[a-z0-9]([-a-z0-9]*[a-z0-9])?"
_DNS1035_LABEL = r"[a-z]([-a-z0-9]*[a-z0-9])?"
_DNS1123_SUBDOMAIN = _DNS1123_LABEL + r"(\." + _DNS1123_LABEL + r")*"


@dataclass(frozen=True)
class _Format:
    """One named format of Kubernetes' ``format`` library: apimachinery's validator of that name."""

    name: str
    pattern: str
    max_length: int
    what: str
    examples: str

    def errors(self, value: str) -> list[str]:
        out = []
        if len(value) > self.max_length:
            out.append(f"must be no more than {self.max_length} characters")
        if not re.fullmatch(self.pattern, value):
            out.append(f"{self.what} (e.g. {self.examples}, regex used for validation is '{self.pattern}')")
        return out


_FORMATS = {
    f.name: f
    for f in (
        _Format(
            "dns1123Subdomain",
            _DNS1123_SUBDOMAIN,
            253,
            "a lowercase RFC 1123 subdomain must consist of lower case alphanumeric characters, '-' or "
            "'.', and must start and end with an alphanumeric character",
            "'example.com'",
        ),
        _Format(
            "dns1123Label",
            _DNS1123_LABEL,
            63,
            "a lowercase RFC 1123 label must consist of lower case alphanumeric characters or '-', and "
            "must start and end with an alphanumeric character",
            "'my-name',  or '123-abc'",
        ),
        _Format(
            "dns1035Label",
            _DNS1035_LABEL,
            63,
            "a DNS-1035 label must consist of lower case alphanumeric characters or '-', start with an "
            "alphabetic character, and end with an alphanumeric character",
            "'my-name',  or 'abc-123'",
        ),
    )
}


class _FormatLibrary(celtypes.MapType):
    """The ``format`` identifier: ``format.<name>()`` and ``format.named(<name>)`` give a format."""


def _format_getter(name: str) -> Callable[[Any], Any]:
    def get(library: Any) -> Any:
        if not isinstance(library, _FormatLibrary):
            raise TypeError(f"{name}() is a function of the format library")
        return _FORMATS[name]

    return get


def _format_named(library: Any, name: Any) -> Optional:
    if not isinstance(library, _FormatLibrary):
        raise TypeError("named() is a function of the format library")
    found = _FORMATS.get(str(name))
    return Optional() if found is None else Optional(found)


def _format_validate(fmt: Any, value: Any) -> Optional:
    if not isinstance(fmt, _Format) or not isinstance(value, str):
        raise TypeError("validate() takes a format and a string")
    errors = fmt.errors(str(value))
    return Optional(celtypes.ListType([celtypes.StringType(e) for e in errors])) if errors else Optional()


# --------------------------------------------------------------------------------- the strings extension


def _split(text: Any, separator: Any, limit: Any = None) -> celtypes.ListType:
    """Go's ``strings.Split``/``SplitN``, as Kubernetes' strings extension calls them."""
    if not isinstance(text, str) or not isinstance(separator, str):
        raise TypeError("split() takes strings")
    n = -1 if limit is None else int(limit)
    if n == 0:
        return celtypes.ListType()
    if separator == "":
        parts = list(text)
        if 0 < n < len(parts):
            parts = [*parts[: n - 1], "".join(parts[n - 1 :])]
    else:
        parts = text.split(separator) if n < 0 else text.split(separator, n - 1)
    return celtypes.ListType([celtypes.StringType(p) for p in parts])


_FUNCTIONS: dict[str, Any] = {
    "hasValue": _has_value,
    "value": _value,
    "orValue": _or_value,
    "split": _split,
    "named": _format_named,
    "validate": _format_validate,
    **{name: _format_getter(name) for name in _FORMATS},
}


# --------------------------------------------------------------------------------- compiled rules


@dataclass(frozen=True)
class _Compiled:
    program: Any
    transition: bool


@lru_cache(maxsize=1)
def _environment() -> celpy.Environment:
    """The CEL parser, built on first use (building it costs more than importing this module)."""
    return celpy.Environment()


@lru_cache(maxsize=512)
def _compile(expression: str) -> _Compiled:
    env = _environment()
    ast = env.compile(expression)
    transition = any(
        getattr(token, "value", None) == "oldSelf"
        for node in ast.find_data("ident")
        for token in node.children
    )
    return _Compiled(env.program(ast, functions=_FUNCTIONS), transition)


def _to_cel(value: Any, schema: dict[str, Any], *, root: bool = False) -> Any:
    """A JSON value as CEL sees it under its schema node."""
    if isinstance(value, dict):
        props = schema.get("properties") or {}
        addl = schema.get("additionalProperties")
        out = celtypes.MapType()
        for key, item in value.items():
            if root and key == "metadata" and isinstance(item, dict):
                meta = {k: item[k] for k in ("name", "generateName") if k in item}
                out[celtypes.StringType(key)] = json_to_cel(meta)
                continue
            sub = props.get(key) if key in props else addl if isinstance(addl, dict) else {}
            out[celtypes.StringType(key)] = _to_cel(item, sub or {})
        return out
    if isinstance(value, list):
        items = schema.get("items") if isinstance(schema.get("items"), dict) else {}
        return celtypes.ListType([_to_cel(v, items or {}) for v in value])
    if isinstance(value, str) and schema.get("format") == "date-time":
        try:
            return celtypes.TimestampType(value)
        except ValueError:
            return celtypes.StringType(value)
    return json_to_cel(value)


def _render(value: Any) -> str:
    """A rejected value as the API server's field errors print it (Go's %q for strings)."""
    if isinstance(value, str):
        return json.dumps(value, ensure_ascii=False)
    if isinstance(value, bool):
        return "true" if value else "false"
    if value is None:
        return "null"
    return str(value)


def _field_error(reason: str, field: str, value: Any, detail: str) -> Cause:
    if reason == "FieldValueForbidden":
        message = f"Forbidden: {detail}"
    elif reason == "FieldValueRequired":
        message = f"Required value: {detail}"
    elif reason == "FieldValueDuplicate":
        message = f"Duplicate value: {_render(value)}"
    elif isinstance(value, dict | list):
        message = f"Invalid value: {detail}"
    else:
        message = f"Invalid value: {_render(value)}: {detail}"
    return {"reason": reason, "message": message, "field": field or "<nil>"}


_FIELD_PATH_PART = re.compile(r"\.([A-Za-z_][A-Za-z0-9_]*)|\['((?:[^'\\]|\\.)*)'\]|\[(\d+)\]")


def _join(path: str, relative: str) -> str:
    """``path`` extended by a rule's ``fieldPath`` (``.a.b``, ``['a.b']`` or ``[0]`` steps)."""
    out = path
    for name, quoted, index in _FIELD_PATH_PART.findall(relative):
        if index:
            out += f"[{index}]"
        else:
            out = f"{out}.{name or quoted}" if out else (name or quoted)
    return out


def _evaluate(compiled: _Compiled, activation: dict[str, Any]) -> Any:
    try:
        return compiled.program.evaluate(activation)
    except CELEvalError as exc:
        return exc
    except (TypeError, ValueError, KeyError, ArithmeticError) as exc:
        return CELEvalError(str(exc))


_NO_SUCH_MEMBER = re.compile(r"no such member in mapping: '(.*)'")


def _eval_error(exc: CELEvalError) -> str:
    """cel-go's wording of an evaluation error, where celpy words it differently."""
    said = str(exc.args[0]) if exc.args else type(exc).__name__
    missing = _NO_SUCH_MEMBER.fullmatch(said)
    return f"no such key: {missing.group(1)}" if missing else said


def _rule_causes(
    rules: list[dict[str, Any]], schema: dict[str, Any], value: Any, old: Any, path: str, *, root: bool
) -> Iterator[Cause]:
    self_cel: Any = None
    for rule in rules:
        expression = str(rule.get("rule", ""))
        compiled = _compile(expression)
        optional_old = bool(rule.get("optionalOldSelf"))
        if compiled.transition and old is _ABSENT and not optional_old:
            continue
        if not compiled.transition and old is not _ABSENT and old == value:
            continue  # ratcheting: an unchanged value is not judged again
        if self_cel is None:
            self_cel = _to_cel(value, schema, root=root)
        activation: dict[str, Any] = {"self": self_cel, "format": _FormatLibrary()}
        if compiled.transition:
            old_cel = _ABSENT if old is _ABSENT else _to_cel(old, schema, root=root)
            if optional_old:
                activation["oldSelf"] = Optional(old_cel)
            else:
                activation["oldSelf"] = old_cel
        result = _evaluate(compiled, activation)
        if isinstance(result, celtypes.BoolType) and bool(result):
            continue
        reason = rule.get("reason") if rule.get("reason") in _REASONS else "FieldValueInvalid"
        field = _join(path, str(rule.get("fieldPath") or ""))
        named = str(rule.get("message") or "")
        if not isinstance(result, celtypes.BoolType):
            # As the server: the value shown is the schema type, the rule named by its message.
            why = _eval_error(result) if isinstance(result, CELEvalError) else "no such overload"
            detail = f"{why} evaluating rule: {named or expression}"
            yield _field_error("FieldValueInvalid", path, str(schema.get("type", "")), detail)
            continue
        detail = named or f"failed rule: {expression}"
        if rule.get("messageExpression"):
            said = _evaluate(_compile(str(rule["messageExpression"])), activation)
            if isinstance(said, str) and said.strip() and "\n" not in said:
                detail = str(said)
        yield _field_error(str(reason), field, value, detail)


def _list_key(item: Any, keys: list[str]) -> tuple[Any, ...] | None:
    if not isinstance(item, dict):
        return None
    return tuple(json.dumps(item.get(k), sort_keys=True) for k in keys)


def _walk(schema: dict[str, Any], value: Any, old: Any, path: str, *, root: bool = False) -> Iterator[Cause]:
    rules = schema.get("x-kubernetes-validations") or []
    if rules:
        yield from _rule_causes(rules, schema, value, old, path, root=root)
    if isinstance(value, dict):
        props = schema.get("properties") or {}
        addl = schema.get("additionalProperties")
        for key, item in value.items():
            if item is None:
                continue
            sub = props.get(key) if key in props else addl if isinstance(addl, dict) else None
            if not isinstance(sub, dict) or (root and key == "metadata"):
                continue
            old_item = old.get(key, _ABSENT) if isinstance(old, dict) else _ABSENT
            if old_item is None:
                old_item = _ABSENT
            child = f"{path}.{key}" if path else key
            yield from _walk(sub, item, old_item, child)
    elif isinstance(value, list) and isinstance(schema.get("items"), dict):
        items = schema["items"]
        keys = schema.get("x-kubernetes-list-map-keys") or []
        by_key: dict[tuple[Any, ...], Any] = {}
        if schema.get("x-kubernetes-list-type") == "map" and isinstance(old, list) and keys:
            for entry in old:
                k = _list_key(entry, keys)
                if k is not None:
                    by_key.setdefault(k, entry)
        for i, item in enumerate(value):
            k = _list_key(item, keys) if by_key else None
            old_item = by_key.get(k, _ABSENT) if k is not None else _ABSENT
            yield from _walk(items, item, old_item, f"{path}[{i}]")


def rule_causes(
    obj: dict[str, Any], schema: dict[str, Any], old: dict[str, Any] | None = None
) -> list[Cause]:
    """The field errors of every validation rule of ``schema`` that ``obj`` fails (``old``: on update).

    Both objects as the server sees them: pruned and defaulted under ``schema``.
    """
    return list(_walk(schema, obj, _ABSENT if old is None else old, "", root=True))


def has_rules(schema: Any) -> bool:
    """Whether a structural schema carries any ``x-kubernetes-validations`` rule, at any depth."""
    if isinstance(schema, dict):
        return bool(schema.get("x-kubernetes-validations")) or any(has_rules(v) for v in schema.values())
    if isinstance(schema, list):
        return any(has_rules(v) for v in schema)
    return False


__all__ = ["Optional", "has_rules", "rule_causes"]
