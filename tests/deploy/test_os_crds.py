"""Our MachineOSConfig and MachineOSBuild CRDs against the MCO's (the fixtures in shared/, read at test time).

Schema-compatible means identical in everything a server or a client acts on: API identity (group,
names, scope, versions, status subresource), printer columns, and every schema node's types, limits,
patterns, enums, defaults, list semantics and validation rules (CEL, with their messages). Only the
descriptions are our own. A difference is reported by its path in the schema.

How a real kube-apiserver and the emulator judge objects under these CRDs is tested by replaying
openshift/api's own test vectors on both: ``tests/sim/test_os_crd_vectors.py``.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from deploy_support import DEPLOY, OBJECTS_BY_ID, Obj, kustomization

from mcosup.model import names

PLURALS = ("machineosconfigs", "machineosbuilds")
#: Documentation only: what a server or client never acts on.
PROSE = frozenset({"description"})


def ours(plural: str) -> Obj:
    return OBJECTS_BY_ID[f"CustomResourceDefinition/{plural}.{names.GROUP}"]


def theirs(mco_fixtures: Path, plural: str) -> Obj:
    crd: Obj = yaml.safe_load((mco_fixtures / "crds" / f"{plural}.crd.yaml").read_text())
    return crd


def differences(a: Any, b: Any, path: str = "") -> Iterator[str]:
    """Every place where ``a`` (ours) and ``b`` (the MCO's) differ, descriptions aside, by path."""
    if isinstance(a, dict) and isinstance(b, dict):
        for key in sorted(set(a) | set(b)):
            if key in PROSE:
                continue
            where = f"{path}.{key}" if path else key
            if key not in b:
                yield f"{where}: only in ours ({a[key]!r})"
            elif key not in a:
                yield f"{where}: only in the MCO's ({b[key]!r})"
            else:
                yield from differences(a[key], b[key], where)
    elif isinstance(a, list) and isinstance(b, list) and len(a) == len(b):
        for i, (x, y) in enumerate(zip(a, b, strict=True)):
            yield from differences(x, y, f"{path}[{i}]")
    elif a != b or type(a) is not type(b):
        yield f"{path}: ours {a!r}, the MCO's {b!r}"


def test_differences_are_reported_by_path() -> None:
    a = {"properties": {"x": {"type": "string", "maxLength": 3, "description": "ours"}}, "required": ["x"]}
    b = {"properties": {"x": {"type": "string", "maxLength": 4, "description": "theirs"}}, "enum": [1]}
    assert list(differences(a, b)) == [
        "enum: only in the MCO's ([1])",
        "properties.x.maxLength: ours 3, the MCO's 4",
        "required: only in ours (['x'])",
    ]


@pytest.mark.parametrize("plural", PLURALS)
def test_installed_by_the_kustomization(plural: str) -> None:
    assert f"crds/{plural}.yaml" in kustomization()["resources"]
    assert (DEPLOY / "crds" / f"{plural}.yaml").is_file()


@pytest.mark.parametrize("plural", PLURALS)
def test_same_api_identity_columns_and_schema_as_the_mco(mco_fixtures: Path, plural: str) -> None:
    """Everything in ``spec`` but the descriptions: group, names, scope, each version's flags,
    subresources, printer columns and the whole schema."""
    mine, mco = ours(plural), theirs(mco_fixtures, plural)
    assert mine["metadata"]["name"] == mco["metadata"]["name"] == f"{plural}.{names.GROUP}"
    assert list(differences(mine["spec"], mco["spec"])) == []


@pytest.mark.parametrize("plural", PLURALS)
def test_the_schemas_carry_validation_rules(plural: str) -> None:
    """The CEL rules are the point of these CRDs (and of the emulator evaluating them): never dropped."""

    def rules(node: Any) -> Iterator[str]:
        if isinstance(node, dict):
            yield from (r["rule"] for r in node.get("x-kubernetes-validations") or [])
            for value in node.values():
                yield from rules(value)
        elif isinstance(node, list):
            for value in node:
                yield from rules(value)

    assert len(list(rules(ours(plural)["spec"]))) >= 10
