"""Kubernetes label-selector matching: the one matcher every part of mcosup uses.

Pure. Semantics are the API server's (``metav1.LabelSelectorAsSelector``): ``None`` matches nothing,
``{}`` everything; ``In``/``NotIn`` need values, ``Exists``/``DoesNotExist`` take none, anything else is
an invalid selector. ``tests/test_one_answer.py`` checks this against the real control plane.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any


class InvalidSelector(ValueError):
    """A label selector that Kubernetes would reject; the message names the bad part."""


def selector_matches(selector: Mapping[str, Any] | None, labels: Mapping[str, str]) -> bool:
    """Kubernetes ``LabelSelector`` semantics: None matches nothing, ``{}`` matches everything.

    Raises :class:`InvalidSelector` for an operator or value list Kubernetes would refuse.
    """
    if selector is None:
        return False
    if not isinstance(selector, Mapping):
        raise InvalidSelector(f"a label selector must be an object, got {type(selector).__name__}")
    match_labels = selector.get("matchLabels") or {}
    if not isinstance(match_labels, Mapping):
        raise InvalidSelector("matchLabels must be an object of label: value")
    for key, value in match_labels.items():
        if labels.get(key) != value:
            return False
    expressions = selector.get("matchExpressions") or []
    if not isinstance(expressions, list):
        raise InvalidSelector("matchExpressions must be a list")
    for i, expression in enumerate(expressions):
        if not isinstance(expression, Mapping):
            raise InvalidSelector(f"matchExpressions[{i}] must be an object")
        key, operator, values = (
            expression.get("key"),
            expression.get("operator"),
            expression.get("values") or [],
        )
        if not isinstance(key, str) or not isinstance(values, list):
            raise InvalidSelector(f"matchExpressions[{i}] needs a string key and a list of values")
        if operator == "In":
            if not values:
                raise InvalidSelector(f"matchExpressions[{i}]: operator In needs values")
            if key not in labels or labels[key] not in values:
                return False
        elif operator == "NotIn":
            if not values:
                raise InvalidSelector(f"matchExpressions[{i}]: operator NotIn needs values")
            if key in labels and labels[key] in values:
                return False
        elif operator == "Exists":
            if values:
                raise InvalidSelector(f"matchExpressions[{i}]: operator Exists takes no values")
            if key not in labels:
                return False
        elif operator == "DoesNotExist":
            if values:
                raise InvalidSelector(f"matchExpressions[{i}]: operator DoesNotExist takes no values")
            if key in labels:
                return False
        else:
            raise InvalidSelector(
                f"matchExpressions[{i}]: operator {operator!r} is not In, NotIn, Exists or DoesNotExist"
            )
    return True


def safe_selector_matches(selector: Mapping[str, Any] | None, labels: Mapping[str, str]) -> bool:
    """:func:`selector_matches`, treating an invalid selector as matching nothing (as the MCO does)."""
    try:
        return selector_matches(selector, labels)
    except InvalidSelector:
        return False


def pool_selects_node(selector: Mapping[str, Any] | None, labels: Mapping[str, str]) -> bool:
    """Whether a pool's ``spec.nodeSelector`` takes a node with ``labels``.

    As :func:`safe_selector_matches`, except that a missing or empty selector takes no node: a pool must
    say which nodes it manages (the MCO refuses to act on a pool selecting everything).
    """
    if not selector or (not selector.get("matchLabels") and not selector.get("matchExpressions")):
        return False
    return safe_selector_matches(selector, labels)


def _pool_rank(name: str) -> tuple[int, str]:
    return (0 if name == "master" else 2 if name == "worker" else 1, name)


def pool_of_node(labels: Mapping[str, str], pools: Iterable[Mapping[str, Any]]) -> str | None:
    """The one pool a node with ``labels`` belongs to, or None: of the pools whose node selector
    matches, ``master`` first, then a custom pool, ``worker`` last (the MCO's rule); ties by name."""
    matching = [
        str(p["metadata"]["name"])
        for p in pools
        if pool_selects_node((p.get("spec") or {}).get("nodeSelector"), labels)
    ]
    return min(matching, key=_pool_rank) if matching else None
