"""CRD validation rules (x-kubernetes-validations, CEL) in the emulator: mcosup.sim.cel and its wording.

The pure tests pin the Kubernetes semantics around the CEL language; the probe asks the emulator and
the real kube-apiserver the same thing and wants the same answer (causes compared as a set: the real
server visits a node's properties in Go map order).
"""

from __future__ import annotations

from typing import Any

import pytest
from emu_sides import Side, diff, unique

from mcosup.sim import cel, schema

STR: dict[str, Any] = {"type": "string"}


def obj_schema(**props: Any) -> dict[str, Any]:
    return {"type": "object", "properties": props}


def rules(*entries: dict[str, Any], **node: Any) -> dict[str, Any]:
    return {**node, "x-kubernetes-validations": list(entries)}


@pytest.mark.parametrize(
    ("text", "separator", "limit", "parts"),
    [
        ("a@b", "@", None, ["a", "b"]),
        ("a@b@c", "@", 2, ["a", "b@c"]),
        ("abc", "", None, ["a", "b", "c"]),
        ("abc", "", 2, ["a", "bc"]),
        ("", "@", None, [""]),
        ("a@b", "@", 0, []),
    ],
)
def test_split_is_gos(text: str, separator: str, limit: int | None, parts: list[str]) -> None:
    expression = f"self.split('{separator}')" if limit is None else f"self.split('{separator}', {limit})"
    node = rules({"rule": f"{expression} == {parts!r}"}, type="string")
    assert cel.rule_causes({"x": text}, obj_schema(x=node)) == []


@pytest.mark.parametrize(
    ("fmt", "good", "bad"),
    [
        ("dns1123Subdomain", ["a", "a.b-c", "0" * 253], ["", "A", "a_", "-a", "a" * 254]),
        ("dns1123Label", ["a-1", "0a"], ["a.b", "a" * 64]),
        ("dns1035Label", ["a-1"], ["0a", "a-"]),
    ],
)
def test_format_library(fmt: str, good: list[str], bad: list[str]) -> None:
    node = rules({"rule": f"!format.{fmt}().validate(self).hasValue()", "message": "m"}, type="string")
    for value in good:
        assert cel.rule_causes({"x": value}, obj_schema(x=node)) == [], value
    for value in bad:
        assert len(cel.rule_causes({"x": value}, obj_schema(x=node))) == 1, value


def test_format_errors_are_apimachinerys() -> None:
    node = rules({"rule": "format.dns1123Label().validate(self).value() == ['x']"}, type="string")
    said = cel.rule_causes({"x": "A"}, obj_schema(x=node))
    assert said == [
        {
            "reason": "FieldValueInvalid",
            "field": "x",
            "message": 'Invalid value: "A": failed rule: '
            "format.dns1123Label().validate(self).value() == ['x']",
        }
    ]


def test_transition_rules_run_on_update_only_and_where_the_old_value_is() -> None:
    node = obj_schema(x=rules({"rule": "self == oldSelf", "message": "immutable"}, type="string"))
    assert cel.rule_causes({"x": "a"}, node) == []  # create
    assert cel.rule_causes({"x": "a"}, node, {}) == []  # no old value there
    assert cel.rule_causes({"x": "b"}, node, {"x": "a"}) == [
        {"reason": "FieldValueInvalid", "field": "x", "message": 'Invalid value: "b": immutable'}
    ]


def test_optional_old_self() -> None:
    node = rules(
        {
            "rule": "!oldSelf.hasValue() || oldSelf.a.value() == self.a || oldSelf.a.orValue('') == 'any'",
            "optionalOldSelf": True,
            "message": "a fixed",
        },
        **obj_schema(a=STR),
    )
    assert cel.rule_causes({"a": "x"}, node) == []
    assert cel.rule_causes({"a": "x"}, node, {"a": "x"}) == []
    assert cel.rule_causes({"a": "x"}, node, {"a": "any"}) == []
    assert [c["message"] for c in cel.rule_causes({"a": "x"}, node, {"a": "y"})] == ["Invalid value: a fixed"]


def test_ratcheting_spares_an_unchanged_value_but_not_transition_rules() -> None:
    node = obj_schema(x=rules({"rule": "self.size() < 2", "message": "short"}, type="string"))
    assert len(cel.rule_causes({"x": "long"}, node)) == 1
    assert cel.rule_causes({"x": "long"}, node, {"x": "long"}) == []
    assert len(cel.rule_causes({"x": "longer"}, node, {"x": "long"})) == 1


def test_list_map_items_correlate_by_key_other_lists_do_not() -> None:
    item = rules({"rule": "self.v == oldSelf.v", "message": "v fixed"}, **obj_schema(k=STR, v=STR))
    as_map = {
        "type": "array",
        "items": item,
        "x-kubernetes-list-type": "map",
        "x-kubernetes-list-map-keys": ["k"],
    }
    atomic = {"type": "array", "items": item}
    old = {"l": [{"k": "a", "v": "1"}, {"k": "b", "v": "2"}]}
    new = {"l": [{"k": "b", "v": "3"}, {"k": "c", "v": "4"}]}
    assert [c["field"] for c in cel.rule_causes(new, obj_schema(l=as_map), old)] == ["l[0]"]
    assert cel.rule_causes(new, obj_schema(l=atomic), old) == []


def test_root_sees_only_name_and_generate_name_of_metadata() -> None:
    node = rules({"rule": "!has(self.metadata.labels) && self.metadata.name == 'n'"}, type="object")
    assert cel.rule_causes({"metadata": {"name": "n", "labels": {"a": "b"}}}, node) == []


def test_date_time_strings_are_timestamps() -> None:
    node = rules(
        {"rule": "self.a < self.b", "message": "order"},
        **obj_schema(
            a={"type": "string", "format": "date-time"}, b={"type": "string", "format": "date-time"}
        ),
    )
    assert cel.rule_causes({"a": "2024-11-28T10:00:00Z", "b": "2024-11-28T11:00:00Z"}, node) == []
    assert len(cel.rule_causes({"a": "2024-11-28T12:00:00Z", "b": "2024-11-28T11:00:00Z"}, node)) == 1


def test_blocking_schema_errors_skip_the_rules_others_do_not() -> None:
    node = obj_schema(
        x=rules({"rule": "self != 'bad'", "message": "not bad"}, type="string", maxLength=3),
        y={"type": "string", "pattern": "^a"},
    )
    assert [c["reason"] for c in schema.validate({"x": "long!"}, node)] == [
        "FieldValueTooLong",
        "FieldValueInvalid",
    ]
    assert schema.validate({"x": "long!"}, node)[1] == schema.NOT_CHECKED
    said = schema.validate({"x": "bad", "y": "b"}, node)
    assert [c["field"] for c in said] == ["y", "x"]


# ---- the same answers as kube-apiserver -------------------------------------------------------------

PROBE_SCHEMA = obj_schema(
    spec=obj_schema(
        a=rules(
            {"rule": "self.startsWith('a')", "messageExpression": "'a must start with a, got ' + self"},
            type="string",
        ),
        b=rules(
            {
                "rule": "self.c == 'x'",
                "reason": "FieldValueForbidden",
                "fieldPath": ".c",
                "message": "c must be x",
            },
            {"rule": "self.d > 0", "message": "d positive"},
            **obj_schema(c=STR, d={"type": "integer"}),
        ),
        e=rules({"rule": "self.size() < 3"}, type="string"),
        l=rules(
            {"rule": "self.size() < 3", "reason": "FieldValueRequired", "message": "short"},
            type="array",
            items=STR,
        ),
        m={
            "type": "array",
            "maxItems": 3,
            "x-kubernetes-list-type": "map",
            "x-kubernetes-list-map-keys": ["k"],
            "items": rules(
                {"rule": "self.v == oldSelf.v", "message": "v is fixed"},
                **obj_schema(k=STR, v={"type": "integer"}),
                required=["k"],
            ),
        },
        s=rules(
            {"rule": "self.split('@', 2).size() == 2", "message": "two"},
            {"rule": "self == oldSelf"},
            type="string",
        ),
        t=rules({"rule": "self >= oldSelf", "message": "grows"}, type="integer"),
    ),
)


async def test_rule_failures_as_the_real_server_words_them(both: tuple[Side, Side]) -> None:
    group = f"{unique('cel')}.mcosup.test"
    crd = {
        "apiVersion": "apiextensions.k8s.io/v1",
        "kind": "CustomResourceDefinition",
        "metadata": {"name": f"things.{group}"},
        "spec": {
            "group": group,
            "scope": "Cluster",
            "names": {"kind": "Thing", "plural": "things", "singular": "thing", "listKind": "ThingList"},
            "versions": [
                {"name": "v1", "served": True, "storage": True, "schema": {"openAPIV3Schema": PROBE_SCHEMA}}
            ],
        },
    }
    base = f"/apis/{group}/v1/things"

    def thing(name: str, **spec: Any) -> dict[str, Any]:
        return {"apiVersion": f"{group}/v1", "kind": "Thing", "metadata": {"name": name}, "spec": spec}

    def as_set(answer: tuple[int, Any]) -> Any:
        status, body = answer
        if isinstance(body, dict) and "details" in body:
            body = {**body, "message": "<causes>"}
            body["details"] = {
                **body["details"],
                "causes": sorted(body["details"].get("causes") or [], key=str),
            }
        return status, body

    async def probe(side: Side) -> Any:
        side.cleanup.append(f"/apis/apiextensions.k8s.io/v1/customresourcedefinitions/things.{group}")
        await side.ok("POST", "/apis/apiextensions.k8s.io/v1/customresourcedefinitions", crd)
        await side.install_crds(group)
        good = thing("good", a="ab", s="a@b@c", t=2, m=[{"k": "x", "v": 1}, {"k": "y", "v": 2}])
        created = await side.ok("POST", base, good)
        changed = {
            **created,
            "spec": {**created["spec"], "s": "a@b", "t": 1, "m": [{"k": "y", "v": 3}, {"k": "z", "v": 0}]},
        }
        return [
            as_set(
                await side.answer(
                    "POST", base, thing("bad", a="zz", b={"c": "y"}, e="abcd", l=["a", "b", "c"])
                )
            ),
            as_set(await side.answer("POST", base, thing("dup", m=[{"k": "x", "v": 1}, {"k": "x", "v": 2}]))),
            as_set(
                await side.answer("POST", base, thing("many", m=[{"k": str(i), "v": i} for i in range(4)]))
            ),
            as_set(await side.answer("PUT", f"{base}/good", changed)),
        ]

    emulator, real = both
    emu_answer, real_answer = await probe(emulator), await probe(real)
    assert emu_answer == real_answer, "emulator (-) and real (+) differ:\n" + diff(emu_answer, real_answer)
    assert [a[0] for a in real_answer] == [422, 422, 422, 422]
