"""Pure parts of the supervisor: build config validation, the builder pod, garbage collection, conditions."""

from __future__ import annotations

import base64
from typing import Any

import orjson
import pytest

from mcosup.model import buildconfig, conditions, names
from mcosup.model.conditions import Condition
from mcosup.supervisor import builderpodplan
from mcosup.supervisor.render import collectable, referenced_configs

NS = "openshift-machine-config-operator"


def docker_secret(
    name: str, type_: str = "kubernetes.io/dockerconfigjson", payload: Any = None
) -> dict[str, Any]:
    payload = payload if payload is not None else {"auths": {"registry.local:5000": {"auth": "dTpw"}}}
    raw = base64.b64encode(orjson.dumps(payload)).decode()
    field = ".dockerconfigjson" if type_.endswith("json") else ".dockercfg"
    return {"metadata": {"name": name}, "type": type_, "data": {field: raw}}


def config(**data: str) -> dict[str, Any]:
    base = {
        "baseImagePullSecretName": "pull",
        "finalImagePushSecretName": "push",
        "finalImagePullspec": "registry.local:5000/os/image:latest",
    }
    base.update(data)
    return {
        "metadata": {"name": names.BUILD_CONFIG_CM},
        "data": {k: v for k, v in base.items() if v != "<del>"},
    }


GOOD_SECRETS = {"pull": docker_secret("pull"), "push": docker_secret("push")}


def test_valid_config_parses() -> None:
    parsed, problems = buildconfig.validate(config(), GOOD_SECRETS.get, NS)
    assert problems == []
    assert parsed is not None and parsed.pullspec == "registry.local:5000/os/image:latest"
    assert parsed.builder_type == "custom-pod-builder"


@pytest.mark.parametrize(
    ("cm", "secrets", "expected"),
    [
        (None, GOOD_SECRETS, ["on-cluster-build-config does not exist"]),
        (config(finalImagePullspec=""), GOOD_SECRETS, ["data.finalImagePullspec is empty"]),
        (config(baseImagePullSecretName="<del>"), GOOD_SECRETS, ["data.baseImagePullSecretName is missing"]),
        (config(finalImagePullspec="Not An Image!"), GOOD_SECRETS, ["is not an image reference"]),
        (
            config(imageBuilderType="openshift-image-builder"),
            GOOD_SECRETS,
            ["is not supported: use custom-pod-builder"],
        ),
        (
            config(),
            {"push": GOOD_SECRETS["push"]},
            ["Secret openshift-machine-config-operator/pull", "does not exist"],
        ),
        (
            config(),
            {**GOOD_SECRETS, "push": {"metadata": {"name": "push"}, "type": "Opaque"}},
            ["type 'Opaque'"],
        ),
        (
            config(),
            {
                **GOOD_SECRETS,
                "pull": {
                    "metadata": {},
                    "type": "kubernetes.io/dockerconfigjson",
                    "data": {".dockerconfigjson": "!!!"},
                },
            },
            ["not base64-encoded JSON"],
        ),
    ],
)
def test_each_problem_is_named(cm: Any, secrets: dict[str, Any], expected: list[str]) -> None:
    parsed, problems = buildconfig.validate(cm, secrets.get, NS)
    assert parsed is None
    text = "; ".join(problems)
    for fragment in expected:
        assert fragment in text


def test_every_problem_is_reported_at_once() -> None:
    cm = config(finalImagePullspec="", imageBuilderType="nope")
    _, problems = buildconfig.validate(cm, {}.get, NS)
    assert len(problems) == 4  # empty pullspec, bad builder type, two missing secrets


def test_builder_pod_manifest() -> None:
    pod = builderpodplan.manifest(
        builderpodplan.BuilderPodSpec(namespace=NS, image="img:1", owner=("mcosup", "uid-1"))
    )
    assert pod["metadata"]["name"] == "machine-os-builder"
    assert pod["metadata"]["labels"] == {"k8s-app": "machine-os-builder"}
    assert pod["spec"]["serviceAccountName"] == "machine-os-builder"
    assert pod["spec"]["restartPolicy"] == "Never"
    container = pod["spec"]["containers"][0]
    assert container["command"] == ["mcosup", "builder"] and container["image"] == "img:1"
    assert container["resources"]["requests"]
    assert pod["metadata"]["ownerReferences"][0]["kind"] == "Deployment"


def test_restart_backoff_grows_and_reports_crashloop_after_three_quick_failures() -> None:
    tracker = builderpodplan.RestartTracker(base=5, cap=60)
    delays = [tracker.failed(now=0, lifetime=1) for _ in range(5)]
    assert delays == [5, 10, 20, 40, 60]
    assert tracker.crashlooping
    tracker.failed(now=0, lifetime=600)  # a long run before failing starts the count again
    assert not tracker.crashlooping


def test_garbage_collection_keeps_referenced_and_newest() -> None:
    rendered = [
        {"metadata": {"name": f"rendered-worker-{i:02d}", "creationTimestamp": f"2026-01-01T00:00:{i:02d}Z"}}
        for i in range(10)
    ] + [{"metadata": {"name": "rendered-master-x", "creationTimestamp": "2026-01-01T00:00:00Z"}}]
    pools = [{"spec": {"configuration": {"name": "rendered-worker-09"}}}]
    nodes = [{"metadata": {"annotations": {names.CURRENT_CONFIG: "rendered-worker-00"}}}]
    used = referenced_configs(pools, nodes)
    gone = collectable("worker", rendered, used, keep=5)
    # 10 worker configs, 2 referenced; of the 8 unreferenced the newest 5 stay.
    assert sorted(gone) == ["rendered-worker-01", "rendered-worker-02", "rendered-worker-03"]


def test_condition_transition_time_changes_only_with_status() -> None:
    first = conditions.apply([], [Condition("Ready", "False", "A", "a")], now="t1")
    second = conditions.apply(first, [Condition("Ready", "False", "B", "b")], now="t2")
    assert second[0]["lastTransitionTime"] == "t1" and second[0]["reason"] == "B"
    third = conditions.apply(second, [Condition("Ready", "True")], now="t3")
    assert third[0]["lastTransitionTime"] == "t3"
    kept = conditions.apply([{"type": "Other", "status": "True"}, *third], remove=["Ready"])
    assert kept == [{"type": "Other", "status": "True"}]


def test_build_metrics_count_each_finished_build_once_with_its_duration() -> None:
    from mcosup.runtime.metrics import Metrics
    from mcosup.supervisor.buildmetrics import BuildObserver

    def pool(*conds: tuple[str, str, str]) -> dict[str, Any]:
        return {
            "metadata": {"name": "worker"},
            "status": {
                "conditions": [{"type": t, "status": s, "lastTransitionTime": at} for t, s, at in conds]
            },
        }

    metrics = Metrics()
    observer = BuildObserver(metrics)
    value = metrics.registry.get_sample_value
    # Already finished when this replica starts: not counted again.
    observer.on_pool("ADDED", pool(("BuildSuccess", "True", "2026-01-01T00:00:00Z")))
    observer.on_pool("MODIFIED", pool(("Building", "True", "2026-01-01T00:01:00Z")))
    observer.on_pool(
        "MODIFIED",
        pool(("Building", "False", "2026-01-01T00:03:00Z"), ("BuildSuccess", "True", "2026-01-01T00:03:00Z")),
    )
    observer.on_pool(
        "MODIFIED",
        pool(("Building", "False", "2026-01-01T00:03:00Z"), ("BuildSuccess", "True", "2026-01-01T00:03:00Z")),
    )  # resync
    observer.on_pool("MODIFIED", pool(("BuildFailed", "True", "2026-01-01T00:09:00Z")))
    assert value("mcosup_builds_total", {"result": "success"}) == 1
    assert value("mcosup_builds_total", {"result": "failure"}) == 1
    assert value("mcosup_build_duration_seconds_count", {}) == 1
    assert value("mcosup_build_duration_seconds_sum", {}) == 120


def test_the_builder_is_kept_while_a_deleted_build_awaits_its_image_pruning() -> None:
    def build(name: str, *, deleting: bool, finalizer: bool) -> dict[str, Any]:
        meta: dict[str, Any] = {"name": name}
        if deleting:
            meta["deletionTimestamp"] = "2026-01-01T00:00:00Z"
        if finalizer:
            meta["finalizers"] = [names.PRUNE_IMAGE_FINALIZER, "other"]
        return {"metadata": meta}

    builds = [
        build("live", deleting=False, finalizer=True),  # not deleted: nothing to prune yet
        build("held", deleting=True, finalizer=True),
        build("released", deleting=True, finalizer=False),
    ]
    assert builderpodplan.awaiting_prune(builds) == ["held"]
    assert builderpodplan.awaiting_prune([]) == []
