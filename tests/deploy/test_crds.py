"""Our MachineConfig and MachineConfigPool CRDs against the MCO's (the fixtures in shared/).

Compatible means: the same API identity (group, version, names, scope, status subresource), every
object the MCO ships is valid under both schemas, and the objects the MCO refuses are refused by ours.
"""

from __future__ import annotations

import re
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import jsonschema
import pytest
import yaml
from deploy_support import OBJECTS_BY_ID, Obj, crd_schema, structural_to_jsonschema

from mcosup.model import names

CRDS = {
    "machineconfigs": OBJECTS_BY_ID[f"CustomResourceDefinition/machineconfigs.{names.GROUP}"],
    "machineconfigpools": OBJECTS_BY_ID[f"CustomResourceDefinition/machineconfigpools.{names.GROUP}"],
}
PLURAL = {"MachineConfig": "machineconfigs", "MachineConfigPool": "machineconfigpools"}


def mco_crd(mco_fixtures: Path, plural: str) -> Obj:
    crd: Obj = yaml.safe_load((mco_fixtures / "crds" / f"{plural}.crd.yaml").read_text())
    return crd


def validators(mco_fixtures: Path, plural: str) -> dict[str, jsonschema.Draft202012Validator]:
    return {
        "ours": jsonschema.Draft202012Validator(structural_to_jsonschema(crd_schema(CRDS[plural]))),
        "MCO's": jsonschema.Draft202012Validator(
            structural_to_jsonschema(crd_schema(mco_crd(mco_fixtures, plural)))
        ),
    }


def fixture_objects(mco_fixtures: Path) -> Iterator[tuple[str, Obj]]:
    for path in sorted((mco_fixtures / "objects").glob("*.yaml")):
        for doc in yaml.safe_load_all(path.read_text()):
            if doc:
                yield path.name, doc


@pytest.mark.parametrize("plural", sorted(CRDS))
def test_same_api_identity_as_the_mco(mco_fixtures: Path, plural: str) -> None:
    ours, theirs = CRDS[plural]["spec"], mco_crd(mco_fixtures, plural)["spec"]
    assert CRDS[plural]["metadata"]["name"] == f"{plural}.{names.GROUP}"
    assert ours["group"] == theirs["group"] == names.GROUP
    assert ours["scope"] == theirs["scope"] == "Cluster"
    assert ours["names"] == theirs["names"]
    assert [(v["name"], v["served"], v["storage"]) for v in ours["versions"]] == [
        (v["name"], v["served"], v["storage"]) for v in theirs["versions"]
    ]
    assert [v.get("subresources") for v in ours["versions"]] == [
        v.get("subresources") for v in theirs["versions"]
    ]


def test_every_mco_fixture_object_is_valid_under_both_schemas(mco_fixtures: Path) -> None:
    seen = set()
    for filename, obj in fixture_objects(mco_fixtures):
        plural = PLURAL[obj["kind"]]
        seen.add(plural)
        for whose, validator in validators(mco_fixtures, plural).items():
            errors = [e.message for e in validator.iter_errors(obj)]
            assert not errors, f"{filename} under {whose} {plural} schema: {errors}"
    assert seen == set(CRDS), "the fixtures no longer cover both kinds"


def _pool(**spec: Any) -> Obj:
    return {
        "apiVersion": names.API_VERSION,
        "kind": "MachineConfigPool",
        "metadata": {"name": "worker"},
        "spec": {"machineConfigSelector": {"matchLabels": {names.ROLE_LABEL: "worker"}}, **spec},
    }


def _mc(**spec: Any) -> Obj:
    return {
        "apiVersion": names.API_VERSION,
        "kind": "MachineConfig",
        "metadata": {"name": "99-worker-x"},
        "spec": spec,
    }


VALID = [
    ("pool maxUnavailable as a number", "machineconfigpools", _pool(maxUnavailable=2)),
    ("pool maxUnavailable as a percentage", "machineconfigpools", _pool(maxUnavailable="10%")),
    ("paused pool", "machineconfigpools", _pool(paused=True)),
    (
        "pool with status written by mcosup",
        "machineconfigpools",
        {
            **_pool(),
            "status": {
                "observedGeneration": 3,
                "machineCount": 2,
                "updatedMachineCount": 1,
                "configuration": {"name": "rendered-worker-0123", "source": [{"name": "99-worker-x"}]},
                "conditions": [
                    {
                        "type": names.BUILD_SUCCESS,
                        "status": "True",
                        "reason": "Built",
                        "message": "image built",
                        "lastTransitionTime": "2026-11-26T08:00:00Z",
                    }
                ],
            },
        },
    ),
    ("MachineConfig without kernel arguments (null)", "machineconfigs", _mc(kernelArguments=None)),
    ("MachineConfig with an unknown Ignition field", "machineconfigs", _mc(config={"future": {"x": 1}})),
]

INVALID = [
    ("pool maxUnavailable as a list", "machineconfigpools", _pool(maxUnavailable=[1])),
    ("pool paused as a string", "machineconfigpools", _pool(paused="yes")),
    ("pool without spec", "machineconfigpools", {**_pool(), "spec": None}),
    (
        "pool selector label value not a string",
        "machineconfigpools",
        _pool(nodeSelector={"matchLabels": {"node-role.kubernetes.io/worker": 1}}),
    ),
    (
        "pool selector expression without operator",
        "machineconfigpools",
        _pool(nodeSelector={"matchExpressions": [{"key": "a"}]}),
    ),
    ("MachineConfig kernelArguments as a string", "machineconfigs", _mc(kernelArguments="nosmt")),
    ("MachineConfig config as a string", "machineconfigs", _mc(config="{}")),
    ("MachineConfig fips as a string", "machineconfigs", _mc(fips="true")),
]


def _without_none_spec(obj: Mapping[str, Any]) -> Obj:
    """``spec: None`` stands for "no spec at all" (the API server treats null as absent)."""
    return {k: v for k, v in obj.items() if not (k == "spec" and v is None)}


@pytest.mark.parametrize(("plural", "obj"), [(p, o) for _, p, o in VALID], ids=[c for c, _, _ in VALID])
def test_both_schemas_accept(mco_fixtures: Path, plural: str, obj: Obj) -> None:
    for whose, validator in validators(mco_fixtures, plural).items():
        errors = [e.message for e in validator.iter_errors(obj)]
        assert not errors, f"{whose} schema: {errors}"


@pytest.mark.parametrize(("plural", "obj"), [(p, o) for _, p, o in INVALID], ids=[c for c, _, _ in INVALID])
def test_both_schemas_refuse(mco_fixtures: Path, plural: str, obj: Obj) -> None:
    for whose, validator in validators(mco_fixtures, plural).items():
        assert not validator.is_valid(_without_none_spec(obj)), f"{whose} schema accepted it"


# ---- our CRDs are structural (the API server refuses a CRD whose schema is not) -------------------------


def _structural_problems(schema: Mapping[str, Any], where: str) -> Iterator[str]:
    typed = (
        "type" in schema
        or schema.get("x-kubernetes-int-or-string")
        or schema.get("x-kubernetes-preserve-unknown-fields")
    )
    if not typed:
        yield f"{where}: no type"
    if schema.get("x-kubernetes-int-or-string") and "type" in schema:
        yield f"{where}: x-kubernetes-int-or-string must not have a type"
    for name, sub in (schema.get("properties") or {}).items():
        yield from _structural_problems(sub, f"{where}.{name}")
    if isinstance(schema.get("items"), Mapping):
        yield from _structural_problems(schema["items"], f"{where}[]")
    if isinstance(schema.get("additionalProperties"), Mapping):
        yield from _structural_problems(schema["additionalProperties"], f"{where}{{}}")


@pytest.mark.parametrize("plural", sorted(CRDS))
def test_our_schemas_are_structural(plural: str) -> None:
    schema = crd_schema(CRDS[plural])
    assert list(_structural_problems(schema, plural)) == []
    # metadata may only be declared as a plain object.
    assert schema["properties"]["metadata"] == {"type": "object"}


def _schema_at(schema: Mapping[str, Any], json_path: str) -> Mapping[str, Any] | None:
    """The schema node a printer column's ``.a.b[?(...)].c`` path reads, or None if it leads nowhere."""
    node: Mapping[str, Any] | None = schema
    for name, index in re.findall(r"\.([A-Za-z]+)(\[[^\]]*\])?", json_path):
        if node is None:
            return None
        if node.get("x-kubernetes-preserve-unknown-fields") and name not in (node.get("properties") or {}):
            return node  # an open object (spec.config): any field may be there
        node = (node.get("properties") or {}).get(name)
        if node is not None and index:
            node = node.get("items")
    return node


@pytest.mark.parametrize("plural", sorted(CRDS))
def test_printer_columns_read_fields_the_schema_declares(plural: str) -> None:
    version = CRDS[plural]["spec"]["versions"][0]
    for column in version["additionalPrinterColumns"]:
        path = column["jsonPath"]
        if path.startswith(".metadata."):
            continue  # labels, annotations, timestamps: not in the schema by design
        node = _schema_at(version["schema"]["openAPIV3Schema"], path)
        assert node is not None, f"column {column['name']}: {path} is not in the schema"
        if node.get("x-kubernetes-preserve-unknown-fields"):
            continue
        assert node.get("type") == ("string" if column["type"] == "date" else column["type"]), (
            f"column {column['name']} is {column['type']} but {path} is {node.get('type')}"
        )
