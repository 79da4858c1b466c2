"""Admission verdicts for every rule of contract section 7: outcome, and what the user reads."""

from __future__ import annotations

import base64
from typing import Any

import pytest
from webhook_support import admission_review

from mcosup.model import names
from mcosup.model.selectors import InvalidSelector, selector_matches
from webhooks.facts import ClusterFacts, PoolFacts
from webhooks.policy import review
from webhooks.review import AdmissionRequest, MalformedReview, Verdict, parse_review

NS = "mcosup-test"
SUPERVISOR = names.service_account_user(NS, names.SUPERVISOR_SA)
DAEMON = names.service_account_user(NS, names.DAEMON_SA)
ADMIN = "kube:admin"
ROLE = names.ROLE_LABEL


def request(
    kind: str,
    obj: dict[str, Any] | None,
    old: dict[str, Any] | None = None,
    *,
    operation: str = "UPDATE",
    user: str = ADMIN,
    node_name: str | None = None,
    namespace: str = "",
    group: str = "",
    sub_resource: str = "",
) -> AdmissionRequest:
    extra = {names.NODE_NAME_EXTRA: [node_name]} if node_name else {}
    body = admission_review(
        kind, obj, old, operation=operation, group=group, user=user, extra=extra,
        namespace=namespace, sub_resource=sub_resource,
    )  # fmt: skip
    return parse_review(body)


def machineconfig(name: str, role: str, *paths: str, **spec: Any) -> dict[str, Any]:
    data = "data:;base64," + base64.b64encode(b"x\n").decode()
    return {
        "apiVersion": names.API_VERSION,
        "kind": "MachineConfig",
        "metadata": {"name": name, "labels": {ROLE: role}},
        "spec": {
            "config": {
                "ignition": {"version": "3.4.0"},
                "storage": {"files": [{"path": p, "mode": 420, "contents": {"source": data}} for p in paths]},
            },
            **spec,
        },
    }


def pool(name: str, layered: bool = False, role: str | None = None) -> dict[str, Any]:
    labels = {names.LAYERING_ENABLED: ""} if layered else {}
    return {
        "apiVersion": names.API_VERSION,
        "kind": "MachineConfigPool",
        "metadata": {"name": name, "labels": labels},
        "spec": {"machineConfigSelector": {"matchLabels": {ROLE: role or name}}},
    }


def node(name: str, labels: dict[str, str] | None = None, **annotations: str) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "Node",
        "metadata": {"name": name, "labels": dict(labels or {}), "annotations": dict(annotations)},
    }


def facts(
    *pools: dict[str, Any],
    mcs: tuple[dict[str, Any], ...] = (),
    secrets: tuple[str, ...] | None = None,
    machineosconfigs: tuple[dict[str, Any], ...] = (),
) -> ClusterFacts:
    return ClusterFacts.from_objects(
        namespace=NS,
        pools=pools,
        machineconfigs=mcs,
        machineosconfigs=machineosconfigs,
        secrets=None if secrets is None else [{"metadata": {"name": s}} for s in secrets],
    )


LAYERED_WORKER = facts(pool("worker", layered=True), pool("master"))
LEGACY = facts(pool("worker"), pool("master"))


def mc_review(obj: dict[str, Any], f: ClusterFacts, old: dict[str, Any] | None = None, **kw: Any) -> Verdict:
    op = "UPDATE" if old is not None else "CREATE"
    return review(request("MachineConfig", obj, old, operation=op, group=names.GROUP, **kw), f)


def assert_denied(verdict: Verdict, *words: str) -> None:
    assert not verdict.allowed, verdict
    assert verdict.code == 403
    for word in words:
        assert word in verdict.message, (word, verdict.message)


# ---- MachineConfig --------------------------------------------------------------------------------------


def test_machineconfig_writing_var_to_a_layered_pool_is_denied_naming_pool_path_and_fix() -> None:
    verdict = mc_review(machineconfig("50-var", "worker", "/var/lib/x"), LAYERED_WORKER)
    assert_denied(
        verdict,
        "MachineConfig 50-var",
        "spec.config.storage.files[0].path",
        "/var/lib/x",
        "layered pool worker",
        "move the file under /etc or /usr",
        f"remove label {names.LAYERING_ENABLED} from pool worker",
    )


def test_a_pool_opted_in_by_an_admins_machineosconfig_is_layered_too() -> None:
    mosc = {
        "apiVersion": names.API_VERSION,
        "kind": "MachineOSConfig",
        "metadata": {"name": "worker"},
        "spec": {"machineConfigPool": {"name": "worker"}},
    }
    by_object = facts(pool("worker"), pool("master"), machineosconfigs=(mosc,))
    verdict = mc_review(machineconfig("50-var", "worker", "/var/lib/x"), by_object)
    assert_denied(verdict, "/var/lib/x", "layered pool worker", "or delete MachineOSConfig worker to return")
    assert names.LAYERING_ENABLED not in verdict.message  # the label would change nothing
    # The label too: the admin's object still wins, so deleting it is still the way out.
    both = facts(pool("worker", layered=True), machineosconfigs=(mosc,))
    verdict = mc_review(machineconfig("50-var", "worker", "/var/lib/x"), both)
    assert_denied(verdict, "or delete MachineOSConfig worker to return")
    assert mc_review(machineconfig("50-var", "master", "/var/lib/x"), by_object).allowed


@pytest.mark.parametrize(
    "path", ["/var/lib/x", "/home/core/x", "/root/x", "/run/x", "/tmp/x", "/usr/local/bin/x"]
)
def test_every_undeliverable_prefix_is_denied_for_layered_pools(path: str) -> None:
    assert_denied(mc_review(machineconfig("50-x", "worker", path), LAYERED_WORKER), path)


def test_the_same_file_for_a_legacy_pool_is_allowed() -> None:
    verdict = mc_review(machineconfig("50-var", "master", "/var/lib/x"), LAYERED_WORKER)
    assert verdict.allowed and verdict.warnings == ()
    assert mc_review(machineconfig("50-var", "worker", "/var/lib/x"), LEGACY).allowed


def test_deliverable_change_to_a_layered_pool_is_allowed_with_a_build_warning() -> None:
    verdict = mc_review(machineconfig("50-etc", "worker", "/etc/x"), LAYERED_WORKER)
    assert verdict.allowed
    assert verdict.warnings == (
        "pool worker is layered: this change triggers an image build, then a rolling reboot of its nodes",
    )


def test_relabelling_a_machineconfig_into_a_layered_pool_is_checked() -> None:
    old = machineconfig("50-var", "master", "/var/lib/x")
    new = machineconfig("50-var", "worker", "/var/lib/x")
    assert_denied(mc_review(new, LAYERED_WORKER, old=old), "layered pool worker", "/var/lib/x")


def test_invalid_ignition_is_denied_listing_every_problem() -> None:
    bad = machineconfig("50-bad", "master", "etc/x", "/etc/y")
    bad["spec"]["config"]["storage"]["files"][1]["mode"] = 0o4755
    bad["spec"]["kernelType"] = "rt"
    verdict = mc_review(bad, LEGACY)
    assert_denied(
        verdict,
        "MachineConfig 50-bad is refused:",
        "spec.config.storage.files[0].path: 'etc/x' is relative: use an absolute path such as '/etc/x'",
        "spec.config.storage.files[1].mode",
        "spec.kernelType",
    )


def test_metadata_only_update_of_an_invalid_machineconfig_is_allowed() -> None:
    # Finalizer or ownerReference removal by the garbage collector must never be blocked.
    old = machineconfig("50-old", "worker", "/var/lib/x", kernelType="rt")
    new = {**old, "metadata": {**old["metadata"], "finalizers": []}}
    assert mc_review(new, LAYERED_WORKER, old=old).allowed


def test_supervisors_rendered_configs_are_only_checked_for_validity() -> None:
    rendered = machineconfig("rendered-worker-0123", "worker", "/var/lib/x")
    assert mc_review(rendered, LAYERED_WORKER, user=SUPERVISOR).allowed
    assert not mc_review(rendered, LAYERED_WORKER, user=ADMIN).allowed
    rendered["spec"]["config"]["ignition"]["version"] = "9.9.9"
    assert_denied(mc_review(rendered, LAYERED_WORKER, user=SUPERVISOR), "spec.config.ignition.version")


def test_delete_is_always_allowed() -> None:
    old = machineconfig("50-var", "worker", "/var/lib/x")
    verdict = review(
        request("MachineConfig", None, old, operation="DELETE", group=names.GROUP), LAYERED_WORKER
    )
    assert verdict.allowed


def test_create_without_an_object_is_malformed() -> None:
    with pytest.raises(MalformedReview, match=r"request\.object is required"):
        review(request("MachineConfig", None, operation="CREATE", group=names.GROUP), LEGACY)


# ---- Node -----------------------------------------------------------------------------------------------

LAYERED_NODE = node(
    "worker-0",
    {names.DAEMON_MODE: names.MODE_LAYERED},
    **{names.DESIRED_CONFIG: "rendered-worker-a", names.DESIRED_IMAGE: "r.example/os@sha256:" + "a" * 64},
)
LEGACY_NODE = node(
    "worker-1", {names.DAEMON_MODE: names.MODE_LEGACY}, **{names.DESIRED_CONFIG: "rendered-worker-a"}
)


def with_annotations(obj: dict[str, Any], **changes: str | None) -> dict[str, Any]:
    annotations = dict(obj["metadata"]["annotations"])
    for key, value in changes.items():
        if value is None:
            annotations.pop(key, None)
        else:
            annotations[key] = value
    return {**obj, "metadata": {**obj["metadata"], "annotations": annotations}}


def with_labels(obj: dict[str, Any], **changes: str | None) -> dict[str, Any]:
    labels = dict(obj["metadata"]["labels"])
    for key, value in changes.items():
        if value is None:
            labels.pop(key, None)
        else:
            labels[key] = value
    return {**obj, "metadata": {**obj["metadata"], "labels": labels}}


def node_review(
    old: dict[str, Any], new: dict[str, Any], user: str = ADMIN, node_name: str | None = None
) -> Verdict:
    return review(request("Node", new, old, user=user, node_name=node_name), LEGACY)


def test_admin_setting_desired_config_on_a_layered_node_is_denied() -> None:
    new = with_annotations(LAYERED_NODE, **{names.DESIRED_CONFIG: "rendered-worker-b"})
    assert_denied(
        node_review(LAYERED_NODE, new),
        "Node worker-0 is layered",
        f"metadata.annotations[{names.DESIRED_CONFIG}]",
        "direct MachineConfig application is blocked in layered mode",
        "Change the pool's MachineConfigs",
    )


SUPERVISOR_FIELDS = [
    pytest.param(
        lambda n: with_labels(n, **{names.DAEMON_MODE: names.MODE_LAYERED}),
        f"metadata.labels[{names.DAEMON_MODE}]",
        id="mode",
    ),
    pytest.param(
        lambda n: with_labels(n, **{names.DAEMON_MODE: None}),
        f"metadata.labels[{names.DAEMON_MODE}]",
        id="mode-removed",
    ),
    pytest.param(
        lambda n: with_annotations(n, **{names.DESIRED_CONFIG: "rendered-worker-b"}),
        f"metadata.annotations[{names.DESIRED_CONFIG}]",
        id="desired-config",
    ),
    pytest.param(
        lambda n: with_annotations(n, **{names.DESIRED_IMAGE: "r/os@sha256:" + "b" * 64}),
        f"metadata.annotations[{names.DESIRED_IMAGE}]",
        id="desired-image",
    ),
    pytest.param(
        lambda n: with_annotations(n, **{names.CORDONED_BY: "mcosup"}),
        f"metadata.annotations[{names.CORDONED_BY}]",
        id="cordoned-by",
    ),
]


@pytest.mark.parametrize(("change", "field"), SUPERVISOR_FIELDS)
@pytest.mark.parametrize("user", [ADMIN, DAEMON, names.service_account_user(NS, names.BUILDER_SA)])
def test_only_the_supervisor_changes_mode_desired_and_cordon(change: Any, field: str, user: str) -> None:
    new = change(LEGACY_NODE)
    verdict = node_review(LEGACY_NODE, new, user=user, node_name="worker-1")
    assert_denied(
        verdict, "Node worker-1", field, f"only be changed by mcosup's supervisor ({SUPERVISOR})", user
    )
    assert node_review(LEGACY_NODE, new, user=SUPERVISOR).allowed


def test_supervisors_own_patches_pass_including_layered_nodes() -> None:
    new = with_labels(
        with_annotations(
            LAYERED_NODE, **{names.DESIRED_CONFIG: "rendered-worker-b", names.DESIRED_IMAGE: None}
        ),
        **{names.DAEMON_MODE: names.MODE_LEGACY},
    )
    verdict = node_review(LAYERED_NODE, new, user=SUPERVISOR)
    assert verdict == Verdict(True)


DAEMON_REPORT = {
    names.CURRENT_CONFIG: "rendered-worker-a",
    names.STATE: names.STATE_DONE,
    names.REASON: "",
    names.CURRENT_IMAGE: "r/os@sha256:" + "c" * 64,
}


@pytest.mark.parametrize("key", sorted(DAEMON_REPORT))
def test_daemon_reports_its_own_node(key: str) -> None:
    new = with_annotations(LEGACY_NODE, **{key: DAEMON_REPORT[key] or "x"})
    assert node_review(LEGACY_NODE, new, user=DAEMON, node_name="worker-1").allowed


@pytest.mark.parametrize("key", sorted(DAEMON_REPORT))
def test_daemon_of_node_a_patching_node_b_is_denied(key: str) -> None:
    new = with_annotations(LEGACY_NODE, **{key: DAEMON_REPORT[key] or "x"})
    assert_denied(
        node_review(LEGACY_NODE, new, user=DAEMON, node_name="worker-7"),
        "Node worker-1",
        f"metadata.annotations[{key}]",
        "daemon running on node worker-1",
        "from the daemon on node worker-7",
        "spec.nodeName",
    )


def test_daemon_without_a_node_bound_token_is_denied() -> None:
    new = with_annotations(LEGACY_NODE, **{names.STATE: names.STATE_WORKING})
    assert_denied(
        node_review(LEGACY_NODE, new, user=DAEMON),
        "Node worker-1",
        names.NODE_NAME_EXTRA,
        "bound service account token",
    )


def test_admin_editing_the_daemons_report_is_a_warned_recovery_step() -> None:
    new = with_annotations(LEGACY_NODE, **{names.CURRENT_CONFIG: "rendered-worker-a"})
    verdict = node_review(LEGACY_NODE, new)
    assert verdict.allowed
    assert "recovery step" in verdict.warnings[0] and f"[{names.CURRENT_CONFIG}]" in verdict.warnings[0]


def test_node_update_without_the_old_object_is_malformed() -> None:
    with pytest.raises(MalformedReview, match=r"request\.oldObject is required"):
        review(request("Node", LEGACY_NODE, None), LEGACY)


def test_unrelated_node_changes_pass_for_anyone() -> None:
    new = with_labels(LAYERED_NODE, **{"topology.kubernetes.io/zone": "b"})
    assert node_review(LAYERED_NODE, new) == Verdict(True)
    status = review(
        request("Node", LAYERED_NODE, LAYERED_NODE, sub_resource="status", user="system:node:worker-0"),
        LEGACY,
    )
    assert status.allowed


# ---- MachineConfigPool ----------------------------------------------------------------------------------


def pool_review(old: dict[str, Any] | None, new: dict[str, Any], f: ClusterFacts) -> Verdict:
    op = "CREATE" if old is None else "UPDATE"
    return review(request("MachineConfigPool", new, old, operation=op, group=names.GROUP), f)


WITH_VAR = facts(
    pool("worker"),
    mcs=(
        machineconfig("00-ok", "worker", "/etc/ok"),
        machineconfig("50-var", "worker", "/etc/a", "/var/lib/x"),
        machineconfig("60-home", "worker", "/home/core/x"),
        machineconfig("70-master", "master", "/var/lib/m"),
    ),
)


def test_opting_in_a_pool_that_selects_undeliverable_files_is_denied_naming_each() -> None:
    verdict = pool_review(pool("worker"), pool("worker", layered=True), WITH_VAR)
    assert_denied(
        verdict,
        "MachineConfigPool worker",
        f"metadata.labels[{names.LAYERING_ENABLED}]",
        f"cannot add label {names.LAYERING_ENABLED}",
        "MachineConfig 50-var spec.config.storage.files[1].path: /var/lib/x",
        "MachineConfig 60-home spec.config.storage.files[0].path: /home/core/x",
        "move the file under /etc or /usr",
    )
    assert "70-master" not in verdict.message and "00-ok" not in verdict.message


def test_creating_a_pool_already_opted_in_is_checked_too() -> None:
    assert_denied(pool_review(None, pool("worker", layered=True), WITH_VAR), "50-var")


def test_opting_in_a_clean_pool_is_allowed_with_a_warning() -> None:
    verdict = pool_review(pool("master"), pool("master", layered=True), WITH_VAR)
    assert_denied(verdict, "70-master")  # master selects 70-master, which writes /var
    clean = facts(mcs=(machineconfig("00-ok", "worker", "/etc/ok"),))
    verdict = pool_review(pool("worker"), pool("worker", layered=True), clean)
    assert verdict.allowed
    assert "opts in to layering" in verdict.warnings[0] and names.BUILD_CONFIG_CM in verdict.warnings[0]


def test_changing_a_layered_pools_selector_to_pick_up_undeliverable_files_is_denied() -> None:
    verdict = pool_review(pool("x", layered=True), pool("x", layered=True, role="worker"), WITH_VAR)
    assert_denied(verdict, "MachineConfigPool x", "spec.machineConfigSelector", "50-var")


def test_opt_out_and_unrelated_pool_updates_pass() -> None:
    verdict = pool_review(pool("worker", layered=True), pool("worker"), WITH_VAR)
    assert verdict.allowed and "opts out" in verdict.warnings[0]
    paused = pool("worker", layered=True)
    paused["spec"]["paused"] = True
    assert pool_review(pool("worker", layered=True), paused, WITH_VAR) == Verdict(True)


# ---- ConfigMap on-cluster-build-config ------------------------------------------------------------------

GOOD_DATA = {
    names.BASE_IMAGE_PULL_SECRET_KEY: "pull",
    names.FINAL_IMAGE_PUSH_SECRET_KEY: "push",
    names.FINAL_IMAGE_PULLSPEC_KEY: "registry.example.com:5000/ns/os-image:latest",
}


def cm_review(
    data: dict[str, Any] | None, f: ClusterFacts = LEGACY, name: str = names.BUILD_CONFIG_CM, ns: str = NS
) -> Verdict:
    obj = {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": name, "namespace": ns}, "data": data}
    return review(request("ConfigMap", obj, operation="CREATE", namespace=ns), f)


def test_a_complete_build_config_is_allowed() -> None:
    assert cm_review(GOOD_DATA, facts(secrets=("pull", "push"))) == Verdict(True)
    assert cm_review({**GOOD_DATA, names.IMAGE_BUILDER_TYPE_KEY: names.CUSTOM_POD_BUILDER}).allowed


@pytest.mark.parametrize("key", names.REQUIRED_BUILD_CONFIG_KEYS)
def test_missing_or_empty_required_keys_are_denied(key: str) -> None:
    missing = {k: v for k, v in GOOD_DATA.items() if k != key}
    assert_denied(cm_review(missing), f"ConfigMap {NS}/{names.BUILD_CONFIG_CM}", f"data.{key} is missing")
    assert_denied(cm_review({**GOOD_DATA, key: " "}), f"data.{key} is empty")


def test_no_data_at_all_lists_every_key() -> None:
    verdict = cm_review(None)
    assert_denied(verdict, *(f"data.{k} is missing" for k in names.REQUIRED_BUILD_CONFIG_KEYS))


@pytest.mark.parametrize(
    "pullspec", ["not a pullspec", "os-image:latest", "Registry.example.com/UPPER:x", "r.example/x:"]
)
def test_unparseable_pullspec_is_denied(pullspec: str) -> None:
    assert_denied(
        cm_review({**GOOD_DATA, names.FINAL_IMAGE_PULLSPEC_KEY: pullspec}),
        f"data.{names.FINAL_IMAGE_PULLSPEC_KEY}",
        "registry.example.com/namespace/os-image:latest",
    )


def test_unknown_builder_type_is_denied() -> None:
    assert_denied(
        cm_review({**GOOD_DATA, names.IMAGE_BUILDER_TYPE_KEY: "openshift-image-builder"}),
        f"data.{names.IMAGE_BUILDER_TYPE_KEY}",
        "'openshift-image-builder'",
        names.CUSTOM_POD_BUILDER,
    )


def test_secrets_that_do_not_exist_yet_are_warned_about() -> None:
    verdict = cm_review(GOOD_DATA, facts(secrets=("push",)))
    assert verdict.allowed
    assert len(verdict.warnings) == 1
    assert (
        "Secret pull" in verdict.warnings[0]
        and f"data.{names.BASE_IMAGE_PULL_SECRET_KEY}" in verdict.warnings[0]
    )


def test_other_configmaps_are_not_judged() -> None:
    assert cm_review(None, name="something-else") == Verdict(True)
    assert cm_review(None, ns="other-namespace") == Verdict(True)


def test_kinds_without_a_rule_are_allowed_with_a_hint() -> None:
    verdict = review(request("Secret", {"metadata": {"name": "x"}}, operation="CREATE"), LEGACY)
    assert verdict.allowed and "no rule for core/Secret" in verdict.warnings[0]


# ---- facts ----------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("selector", "labels", "expected"),
    [
        (None, {"a": "1"}, False),
        ({}, {"a": "1"}, True),
        ({"matchLabels": {"a": "1"}}, {"a": "1", "b": "2"}, True),
        ({"matchLabels": {"a": "1"}}, {"a": "2"}, False),
        ({"matchExpressions": [{"key": "a", "operator": "In", "values": ["1", "2"]}]}, {"a": "2"}, True),
        ({"matchExpressions": [{"key": "a", "operator": "In", "values": ["1"]}]}, {}, False),
        ({"matchExpressions": [{"key": "a", "operator": "NotIn", "values": ["1"]}]}, {}, True),
        ({"matchExpressions": [{"key": "a", "operator": "NotIn", "values": ["1"]}]}, {"a": "1"}, False),
        ({"matchExpressions": [{"key": "a", "operator": "Exists"}]}, {"a": ""}, True),
        ({"matchExpressions": [{"key": "a", "operator": "DoesNotExist"}]}, {"a": ""}, False),
        (
            {"matchLabels": {"r": "w"}, "matchExpressions": [{"key": "a", "operator": "Exists"}]},
            {"r": "w"},
            False,
        ),
    ],
)
def test_selector_matching_follows_kubernetes(selector: Any, labels: dict[str, str], expected: bool) -> None:
    assert selector_matches(selector, labels) is expected


def test_invalid_selectors_raise_and_match_nothing_in_pools() -> None:
    bad = {"matchExpressions": [{"key": "a", "operator": "Near", "values": []}]}
    with pytest.raises(InvalidSelector, match="'Near'"):
        selector_matches(bad, {"a": "1"})
    assert PoolFacts("p", bad, layered=True).selects({"a": "1"}) is False


def test_facts_from_cached_objects() -> None:
    f = facts(pool("worker", layered=True), pool("master"), pool("infra", role="worker"))
    assert [p.name for p in f.pools_selecting({ROLE: "worker"})] == ["worker", "infra"]
    assert [p.name for p in f.layered_pools_selecting({ROLE: "worker"})] == ["worker"]
    assert f.supervisor_username == SUPERVISOR and f.daemon_username == DAEMON
    assert f.secret_names is None
