"""The webhook's matchConditions (CEL): which requests reach mcosup at all.

The API server compiles these when the ValidatingWebhookConfiguration is created (a bad expression
fails the install) and evaluates them per request; the emulator does neither, so they are checked
here with a CEL implementation, request by request.
"""

from __future__ import annotations

from typing import Any

import celpy
import pytest
from celpy.adapter import json_to_cel
from deploy_support import OBJECTS_BY_ID

from mcosup.model import names

CONFIGURATION = OBJECTS_BY_ID["ValidatingWebhookConfiguration/mcosup"]
ENVIRONMENT = celpy.Environment()


def matches(resource: str, obj: dict[str, Any], old: dict[str, Any] | None) -> bool:
    """True when every matchCondition of the rule for ``resource`` is true (the API server's AND)."""
    (webhook,) = [w for w in CONFIGURATION["webhooks"] if w["rules"][0]["resources"] == [resource]]
    request = {"operation": "CREATE" if old is None else "UPDATE"}
    activation = {"object": json_to_cel(obj), "oldObject": json_to_cel(old), "request": json_to_cel(request)}
    results = []
    for condition in webhook.get("matchConditions", []):
        program = ENVIRONMENT.program(ENVIRONMENT.compile(condition["expression"]))
        result = program.evaluate(activation)
        assert isinstance(result, celpy.celtypes.BoolType), f"{condition['name']} gave {result!r}"
        results.append(bool(result))
    return all(results)


def meta(
    name: str = "x", labels: dict[str, str] | None = None, annotations: dict[str, str] | None = None
) -> Any:
    metadata: dict[str, Any] = {"name": name}
    if labels is not None:
        metadata["labels"] = labels
    if annotations is not None:
        metadata["annotations"] = annotations
    return {"metadata": metadata}


LAYERED = {names.LAYERING_ENABLED: ""}
PLAIN = {"pools.operator.machineconfiguration.openshift.io/worker": ""}

CASES = [
    # Pools: only those opted in before or after the change reach the webhook.
    ("machineconfigpools", "opt-in by update", meta(labels=LAYERED), meta(labels=PLAIN), True),
    ("machineconfigpools", "opt-in at creation", meta(labels=LAYERED), None, True),
    ("machineconfigpools", "opt-out (warning)", meta(labels=PLAIN), meta(labels=LAYERED), True),
    ("machineconfigpools", "edit of a layered pool", meta(labels=LAYERED), meta(labels=LAYERED), True),
    ("machineconfigpools", "edit of a legacy pool", meta(labels=PLAIN), meta(labels=PLAIN), False),
    ("machineconfigpools", "legacy pool without labels", meta(), meta(), False),
    ("machineconfigpools", "legacy pool created", meta(), None, False),
    # Nodes: only when a machineconfiguration.openshift.io/ key is there before or after.
    (
        "nodes",
        "desiredConfig set on a fresh node",
        meta(annotations={names.DESIRED_CONFIG: "rendered-worker-1"}),
        meta(),
        True,
    ),
    (
        "nodes",
        "daemon-mode label removed",
        meta(labels={"kubernetes.io/hostname": "w"}),
        meta(labels={names.DAEMON_MODE: names.MODE_LAYERED}),
        True,
    ),
    (
        "nodes",
        "kubelet relabels a managed node",
        meta(labels={"a": "b"}, annotations={names.STATE: names.STATE_DONE}),
        meta(labels={}, annotations={names.STATE: names.STATE_DONE}),
        True,
    ),
    (
        "nodes",
        "unmanaged node relabelled",
        meta(
            labels={"a": "b"}, annotations={"volumes.kubernetes.io/controller-managed-attach-detach": "true"}
        ),
        meta(labels={}),
        False,
    ),
    ("nodes", "unmanaged node without metadata maps", meta(), meta(), False),
    # ConfigMaps: only the build config.
    ("configmaps", "build config", meta(names.BUILD_CONFIG_CM), None, True),
    ("configmaps", "build config updated", meta(names.BUILD_CONFIG_CM), meta(names.BUILD_CONFIG_CM), True),
    ("configmaps", "custom Containerfile", meta(names.CUSTOM_DOCKERFILE_CM), None, False),
    ("configmaps", "ephemeral build context", meta("build-worker-0123"), None, False),
    # MachineOSConfigs: a new spec only, never the builder's annotations.
    ("machineosconfigs", "created", {**meta("worker"), "spec": {"a": 1}}, None, True),
    (
        "machineosconfigs",
        "spec changed",
        {**meta("worker"), "spec": {"a": 2}},
        {**meta("worker"), "spec": {"a": 1}},
        True,
    ),
    (
        "machineosconfigs",
        "annotation only",
        {**meta("worker", annotations={"machineconfiguration.openshift.io/rebuild": ""}), "spec": {"a": 1}},
        {**meta("worker"), "spec": {"a": 1}},
        False,
    ),
    ("machineosconfigs", "spec removed", meta("worker"), {**meta("worker"), "spec": {"a": 1}}, True),
    # MachineConfigs: every create and update (no conditions).
    ("machineconfigs", "any MachineConfig", meta("99-worker-ssh"), None, True),
]


@pytest.mark.parametrize(
    ("resource", "obj", "old", "expected"),
    [(r, o, old, e) for r, _, o, old, e in CASES],
    ids=[f"{r}: {what}" for r, what, *_ in CASES],
)
def test_match_conditions(resource: str, obj: Any, old: Any, expected: bool) -> None:
    assert matches(resource, obj, old) is expected
