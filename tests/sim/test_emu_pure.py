"""Table tests for the emulator's pure cores: selectors, patches, PDB arithmetic, webhook matching."""

from __future__ import annotations

from typing import Any

import pytest

from mcosup.sim import admission, disruption, errors, patching, protobuf, selectors, tables

LABELS = {"app": "web", "tier": "front", "env": "prod"}


@pytest.mark.parametrize(
    ("selector", "matches"),
    [
        ("", True),
        ("app=web", True),
        ("app==web", True),
        ("app=db", False),
        ("app!=db", True),
        ("missing!=x", True),
        ("app in (web, db)", True),
        ("app notin (web)", False),
        ("missing notin (x)", True),
        ("tier", True),
        ("!tier", False),
        ("!missing", True),
        ("app=web,tier in (front,back),!missing", True),
        ("app=web,env=dev", False),
    ],
)
def test_label_selector_strings(selector: str, matches: bool) -> None:
    assert selectors.parse_label_selector(selector).matches(LABELS) is matches


def test_malformed_label_selector_is_a_400() -> None:
    with pytest.raises(errors.ApiStatusError) as info:
        selectors.parse_label_selector("app in web")
    assert info.value.code == 400


@pytest.mark.parametrize(
    ("selector", "matches"),
    [
        ({}, True),
        ({"matchLabels": {"app": "web"}}, True),
        ({"matchLabels": {"app": "db"}}, False),
        ({"matchExpressions": [{"key": "env", "operator": "In", "values": ["prod", "stage"]}]}, True),
        ({"matchExpressions": [{"key": "env", "operator": "NotIn", "values": ["prod"]}]}, False),
        ({"matchExpressions": [{"key": "tier", "operator": "Exists"}]}, True),
        ({"matchExpressions": [{"key": "tier", "operator": "DoesNotExist"}]}, False),
    ],
)
def test_structured_label_selectors(selector: dict[str, Any], matches: bool) -> None:
    assert selectors.label_selector_from_dict(selector).matches(LABELS) is matches


def test_a_nil_pdb_selector_selects_nothing_but_a_nil_webhook_selector_everything() -> None:
    assert not selectors.label_selector_from_dict(None, none_matches_nothing=True).matches(LABELS)
    assert selectors.label_selector_from_dict(None).matches(LABELS)


POD = {
    "metadata": {"name": "p", "namespace": "ns"},
    "spec": {"nodeName": "n1"},
    "status": {"phase": "Running"},
}


@pytest.mark.parametrize(
    ("selector", "matches"),
    [
        ("metadata.name=p", True),
        ("metadata.namespace=ns,spec.nodeName=n1", True),
        ("spec.nodeName!=n1", False),
        ("status.phase==Running", True),
        ("status.phase=Pending", False),
    ],
)
def test_pod_field_selectors(selector: str, matches: bool) -> None:
    assert selectors.parse_field_selector(selector, "Pod").matches(POD) is matches


def test_unsupported_field_label_is_the_servers_400() -> None:
    with pytest.raises(errors.ApiStatusError) as info:
        selectors.parse_field_selector("spec.nodeName=n1", "ConfigMap")
    assert (info.value.code, info.value.message) == (
        400,
        '"spec.nodeName" is not a known field selector: only "metadata.name", "metadata.namespace"',
    )
    with pytest.raises(errors.ApiStatusError) as info:
        selectors.parse_field_selector("spec.containers=x", "Pod")
    assert (info.value.code, info.value.message) == (400, "field label not supported: spec.containers")


# Patches ------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("target", "patch", "result"),
    [
        ({"a": 1, "b": {"c": 2, "d": 3}}, {"b": {"c": None, "e": 4}}, {"a": 1, "b": {"d": 3, "e": 4}}),
        ({"a": [1, 2]}, {"a": [3]}, {"a": [3]}),
        ({"a": 1}, {"a": None}, {}),
        ({}, {"x": {"y": 1}}, {"x": {"y": 1}}),
    ],
)
def test_merge_patch(target: Any, patch: Any, result: Any) -> None:
    assert patching.merge_patch(target, patch) == result


def test_merge_patch_leaves_its_input_alone() -> None:
    target = {"b": {"c": 2}}
    patching.merge_patch(target, {"b": {"c": 3}})
    assert target == {"b": {"c": 2}}


@pytest.mark.parametrize(
    ("ops", "result"),
    [
        ([{"op": "add", "path": "/b", "value": 2}], {"a": [1, 2], "b": 2}),
        ([{"op": "add", "path": "/a/-", "value": 3}], {"a": [1, 2, 3]}),
        ([{"op": "add", "path": "/a/0", "value": 0}], {"a": [0, 1, 2]}),
        ([{"op": "remove", "path": "/a/0"}], {"a": [2]}),
        ([{"op": "replace", "path": "/a", "value": "x"}], {"a": "x"}),
        ([{"op": "move", "from": "/a", "path": "/z"}], {"z": [1, 2]}),
        ([{"op": "copy", "from": "/a/1", "path": "/c"}], {"a": [1, 2], "c": 2}),
        ([{"op": "test", "path": "/a/0", "value": 1}, {"op": "remove", "path": "/a"}], {}),
    ],
)
def test_json_patch(ops: list[dict[str, Any]], result: Any) -> None:
    assert patching.json_patch({"a": [1, 2]}, ops) == result


@pytest.mark.parametrize(
    "ops",
    [
        [{"op": "test", "path": "/a/0", "value": 9}],
        [{"op": "remove", "path": "/nope"}],
        [{"op": "replace", "path": "/a/5", "value": 1}],
    ],
)
def test_json_patch_failures_are_422(ops: list[dict[str, Any]]) -> None:
    with pytest.raises(patching.PatchError) as info:
        patching.json_patch({"a": [1, 2]}, ops)
    assert info.value.code == 422


def test_strategic_merge_patch_merges_containers_by_name_and_env_by_name() -> None:
    pod = {
        "spec": {
            "containers": [
                {
                    "name": "a",
                    "image": "a:1",
                    "env": [{"name": "X", "value": "1"}, {"name": "Y", "value": "2"}],
                },
                {"name": "b", "image": "b:1"},
            ]
        }
    }
    patch = {"spec": {"containers": [{"name": "a", "image": "a:2", "env": [{"name": "Y", "value": "3"}]}]}}
    out = patching.strategic_merge_patch(pod, patch)
    assert out["spec"]["containers"] == [
        {"name": "a", "image": "a:2", "env": [{"name": "X", "value": "1"}, {"name": "Y", "value": "3"}]},
        {"name": "b", "image": "b:1"},
    ]


def test_strategic_merge_patch_directives() -> None:
    node = {
        "metadata": {"finalizers": ["a"]},
        "spec": {"taints": [{"key": "k1", "effect": "NoSchedule"}, {"key": "k2", "effect": "NoSchedule"}]},
        "status": {
            "conditions": [{"type": "Ready", "status": "True"}, {"type": "DiskPressure", "status": "False"}]
        },
    }
    patch = {
        "metadata": {"finalizers": ["b"]},
        "spec": {"taints": [{"key": "k3", "effect": "NoExecute"}]},
        "status": {
            "conditions": [{"type": "Ready", "status": "False"}, {"type": "DiskPressure", "$patch": "delete"}]
        },
    }
    out = patching.strategic_merge_patch(node, patch)
    assert out["metadata"]["finalizers"] == ["a", "b"]  # patchStrategy merge on a list of strings
    assert out["spec"]["taints"] == [{"key": "k3", "effect": "NoExecute"}]  # no patch strategy: replaced
    assert out["status"]["conditions"] == [{"type": "Ready", "status": "False"}]


def test_strategic_merge_patch_delete_from_primitive_list_and_element_order() -> None:
    obj = {
        "metadata": {"finalizers": ["a", "b", "c"]},
        "spec": {"containers": [{"name": "x"}, {"name": "y"}]},
    }
    patch = {
        "metadata": {"$deleteFromPrimitiveList/finalizers": ["b"]},
        "spec": {"$setElementOrder/containers": [{"name": "y"}, {"name": "x"}]},
    }
    out = patching.strategic_merge_patch(obj, patch)
    assert out["metadata"]["finalizers"] == ["a", "c"]
    assert [c["name"] for c in out["spec"]["containers"]] == ["y", "x"]


# Disruption budgets -------------------------------------------------------------------------------


def pod(name: str, phase: str = "Running", ready: bool = True) -> dict[str, Any]:
    return {
        "metadata": {"name": name},
        "status": {"phase": phase, "conditions": [{"type": "Ready", "status": "True" if ready else "False"}]},
    }


FOUR = [pod("a"), pod("b"), pod("c"), pod("d", ready=False), pod("e", phase="Succeeded")]


@pytest.mark.parametrize(
    ("spec", "desired", "allowed"),
    [
        ({"minAvailable": 2}, 2, 1),
        ({"minAvailable": 3}, 3, 0),
        ({"minAvailable": "50%"}, 2, 1),
        ({"minAvailable": "60%"}, 3, 0),  # 2.4 rounds up
        ({"maxUnavailable": 1}, 3, 0),
        ({"maxUnavailable": 2}, 2, 1),
        ({"maxUnavailable": "30%"}, 2, 1),  # 1.2 rounds up to 2 unavailable
        ({}, 1, 2),
    ],
)
def test_budget(spec: dict[str, Any], desired: int, allowed: int) -> None:
    b = disruption.budget({"spec": spec}, FOUR, lambda: 4)  # the controllers' replicas: 4
    assert (b.expected, b.current_healthy, b.desired_healthy, b.disruptions_allowed) == (
        4,
        3,
        desired,
        allowed,
    )


def test_a_malformed_percentage_names_the_field() -> None:
    with pytest.raises(disruption.BudgetError, match=r"spec\.minAvailable"):
        disruption.budget({"spec": {"minAvailable": "half"}}, FOUR, lambda: 4)


def test_percentages_and_max_unavailable_need_the_controllers_scale() -> None:
    assert disruption.budget({"spec": {"minAvailable": 2}}, FOUR).expected == 4
    with pytest.raises(disruption.BudgetError):
        disruption.budget({"spec": {"maxUnavailable": 1}}, FOUR)


# Webhook matching -------------------------------------------------------------------------------


def attrs(**kw: Any) -> admission.Attributes:
    base: dict[str, Any] = dict(
        operation="CREATE",
        group="",
        version="v1",
        resource="pods",
        subresource="",
        kind={"group": "", "version": "v1", "kind": "Pod"},
        name="p",
        namespace="ns",
        obj={"metadata": {"labels": {"app": "web"}}},
        old=None,
        dry_run=False,
        options={},
        user=admission.UserInfo("u"),
    )
    base.update(kw)
    return admission.Attributes(**base)


RULE = {"operations": ["CREATE"], "apiGroups": [""], "apiVersions": ["v1"], "resources": ["pods"]}


@pytest.mark.parametrize(
    ("rule", "kw", "matches"),
    [
        (RULE, {}, True),
        (RULE, {"operation": "UPDATE"}, False),
        ({**RULE, "operations": ["*"]}, {"operation": "DELETE"}, True),
        (RULE, {"subresource": "status"}, False),
        ({**RULE, "resources": ["pods/status"]}, {"subresource": "status"}, True),
        ({**RULE, "resources": ["pods/*"]}, {"subresource": "eviction"}, True),
        ({**RULE, "resources": ["*"]}, {"subresource": "status"}, False),
        ({**RULE, "resources": ["*/*"]}, {"subresource": "status"}, True),
        ({**RULE, "resources": ["*/status"]}, {"resource": "nodes", "subresource": "status"}, True),
        ({**RULE, "apiGroups": ["apps"]}, {}, False),
        ({**RULE, "scope": "Cluster"}, {}, False),
        ({**RULE, "scope": "Namespaced"}, {}, True),
        (
            {**RULE, "scope": "Namespaced", "resources": ["nodes"]},
            {"resource": "nodes", "namespace": ""},
            False,
        ),
    ],
)
def test_rule_matching(rule: dict[str, Any], kw: dict[str, Any], matches: bool) -> None:
    assert admission.rule_matches(rule, attrs(**kw)) is matches


@pytest.mark.parametrize(
    ("webhook_extra", "kw", "ns_labels", "matches"),
    [
        ({"namespaceSelector": {"matchLabels": {"team": "a"}}}, {}, {"team": "a"}, True),
        ({"namespaceSelector": {"matchLabels": {"team": "a"}}}, {}, {"team": "b"}, False),
        ({"objectSelector": {"matchLabels": {"app": "web"}}}, {}, {}, True),
        ({"objectSelector": {"matchLabels": {"app": "db"}}}, {}, {}, False),
        # DELETE has only the old object; the selector looks at it.
        (
            {"objectSelector": {"matchLabels": {"app": "web"}}},
            {"operation": "DELETE", "obj": None, "old": {"metadata": {"labels": {"app": "web"}}}},
            {},
            True,
        ),
    ],
)
def test_webhook_selectors(
    webhook_extra: dict[str, Any], kw: dict[str, Any], ns_labels: dict[str, str], matches: bool
) -> None:
    rule = {**RULE, "operations": ["*"]}
    webhook = {"name": "w", "rules": [rule], **webhook_extra}
    assert admission.webhook_matches(webhook, attrs(**kw), ns_labels) is matches


@pytest.mark.parametrize(
    ("status", "code", "message"),
    [
        ({"message": "no"}, 403, 'admission webhook "w.example.com" denied the request: no'),
        (
            {"code": 422, "reason": "Invalid"},
            422,
            'admission webhook "w.example.com" denied the request: Invalid',
        ),
        (None, 403, 'admission webhook "w.example.com" denied the request without explanation'),
        ({"code": 200, "message": "x"}, 403, 'admission webhook "w.example.com" denied the request: x'),
    ],
)
def test_denial_is_worded_as_the_apiserver_words_it(status: Any, code: int, message: str) -> None:
    err = admission.denial("w.example.com", status)
    assert (err.code, err.message) == (code, message)


# Tables -------------------------------------------------------------------------------------------

POOL = {
    "status": {
        "configuration": {"name": "rendered-1"},
        "conditions": [{"type": "Updated", "status": "True"}, {"type": "Degraded", "status": "False"}],
    }
}


@pytest.mark.parametrize(
    ("path", "value"),
    [
        (".status.configuration.name", "rendered-1"),
        ('.status.conditions[?(@.type=="Degraded")].status', "False"),
        (".status.conditions[0].type", "Updated"),
        (".status.conditions[5].type", None),
        (".status.missing.x", None),
        ("{.status.configuration.name}", "rendered-1"),
    ],
)
def test_printer_column_json_paths(path: str, value: Any) -> None:
    assert tables.json_path(POOL, path) == value


@pytest.mark.parametrize(
    ("seconds", "text"),
    [
        (5, "5s"),
        (119, "119s"),
        (200, "3m20s"),
        (600, "10m"),
        (7500, "125m"),
        (14700, "4h5m"),
        (72000, "20h"),
        (3 * 86400 + 4 * 3600, "3d4h"),
        (12 * 86400, "12d"),
        (800 * 86400, "2y70d"),
    ],
)
def test_ages_read_like_kubectl_ages(seconds: int, text: str) -> None:
    assert tables.human_duration(seconds) == text


def test_protobuf_bodies_other_than_the_envelope_are_refused() -> None:
    with pytest.raises(protobuf.Unsupported, match="magic"):
        protobuf.decode(b'{"kind": "ConfigMap"}')
    # An envelope holding a kind the emulator has no schema for names the kind.
    type_meta = b"\x0a\x07apps/v1" + b"\x12\x0aDeployment"
    envelope = protobuf.MAGIC + b"\x0a" + bytes([len(type_meta)]) + type_meta + b"\x12\x00"
    with pytest.raises(protobuf.Unsupported, match="Deployment"):
        protobuf.decode(envelope)
