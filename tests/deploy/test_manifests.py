"""The install manifests: valid Kubernetes objects, and the properties an administrator relies on.

Every object is checked against the Kubernetes 1.30 JSON schemas in strict mode (unknown fields are
errors), the way the API server's strict field validation would refuse a misspelt field.
"""

from __future__ import annotations

import copy
import re
import shutil
import subprocess
from typing import Any

import kubernetes_validate
import pytest
import yaml
from deploy_support import DEPLOY, Obj, find, kustomization, manifests

from mcosup.http.admission import WEBHOOK_PATH
from mcosup.model import names

KUBERNETES_VERSION = "1.30"
NAMESPACE = names.DEFAULT_NAMESPACE
OBJECTS = manifests()


def _id(obj: Obj) -> str:
    return f"{obj['kind']}/{obj['metadata']['name']}"


@pytest.mark.parametrize("obj", OBJECTS, ids=_id)
def test_every_manifest_validates_against_the_kubernetes_schemas(obj: Obj) -> None:
    kubernetes_validate.validate(obj, KUBERNETES_VERSION, strict=True)


def test_strict_validation_refuses_a_misspelt_field() -> None:
    """The check above has teeth: a typo a lenient reader would drop is an error."""
    deployment = copy.deepcopy(find(OBJECTS, "Deployment", "machine-config-supervisor"))
    deployment["spec"]["replica"] = deployment["spec"].pop("replicas")
    with pytest.raises(kubernetes_validate.ValidationError, match="replica"):
        kubernetes_validate.validate(deployment, KUBERNETES_VERSION, strict=True)


def test_kustomization_lists_every_manifest_file() -> None:
    listed = set(kustomization()["resources"])
    on_disk = {str(p.relative_to(DEPLOY)) for p in DEPLOY.rglob("*.yaml") if p.name != "kustomization.yaml"}
    assert on_disk == listed


def test_kustomization_uses_only_fields_every_kustomize_understands() -> None:
    """kubectl 1.20 embeds kustomize 2.0: no `labels`, `replacements` or directories as resources."""
    spec = kustomization()
    assert set(spec) <= {"apiVersion", "kind", "namespace", "resources"}
    assert all((DEPLOY / entry).is_file() for entry in spec["resources"])


def test_kubectl_kustomize_renders_exactly_these_objects() -> None:
    kubectl = shutil.which("kubectl")
    assert kubectl, "kubectl is required to render deploy/ (see README: setup)"
    rendered = subprocess.run(
        [kubectl, "kustomize", str(DEPLOY)], check=True, capture_output=True, text=True, timeout=60
    ).stdout
    by_id = {_id(o): o for o in yaml.safe_load_all(rendered) if o}
    assert by_id == {_id(o): o for o in OBJECTS}


def test_everything_lives_in_the_mcosup_namespace() -> None:
    """All but the events Role: Events about cluster-scoped objects must be created in default."""
    for obj in OBJECTS:
        if "namespace" in obj["metadata"] and obj["metadata"]["name"] != "mcosup:events":
            assert obj["metadata"]["namespace"] == NAMESPACE, _id(obj)
    for binding in (o for o in OBJECTS if o["kind"] in ("RoleBinding", "ClusterRoleBinding")):
        for subject in binding["subjects"]:
            assert subject["namespace"] == NAMESPACE, _id(binding)


def test_service_accounts_are_the_contract_names() -> None:
    accounts = {o["metadata"]["name"] for o in OBJECTS if o["kind"] == "ServiceAccount"}
    assert accounts == {names.SUPERVISOR_SA, names.BUILDER_SA, names.DAEMON_SA}


def _container(workload: Obj) -> Obj:
    containers = workload["spec"]["template"]["spec"]["containers"]
    assert len(containers) == 1, _id(workload)
    container: Obj = containers[0]
    return container


def _env(container: Obj) -> dict[str, Any]:
    return {e["name"]: e.get("value", e.get("valueFrom")) for e in container.get("env", [])}


def test_supervisor_deployment() -> None:
    deployment = find(OBJECTS, "Deployment", "machine-config-supervisor")
    pod = deployment["spec"]["template"]["spec"]
    container = _container(deployment)

    assert deployment["spec"]["replicas"] == 2
    assert pod["serviceAccountName"] == names.SUPERVISOR_SA
    assert container["command"] == ["mcosup", "supervisor"]
    env = _env(container)
    assert env["MCOSUP_NAMESPACE"] == {"fieldRef": {"fieldPath": "metadata.namespace"}}
    assert env["POD_NAME"] == {"fieldRef": {"fieldPath": "metadata.name"}}
    # The builder pod runs the supervisor's own image.
    assert env["MCOSUP_IMAGE"] == container["image"]
    assert env["MCOSUP_DEPLOYMENT"] == deployment["metadata"]["name"]
    ports = {p["name"]: p["containerPort"] for p in container["ports"]}
    assert ports == {"http": 8080, "webhook": 9443}
    assert container["livenessProbe"]["httpGet"] == {"path": "/healthz", "port": "http"}
    assert container["readinessProbe"]["httpGet"] == {"path": "/readyz", "port": "http"}
    assert set(container["resources"]) == {"requests", "limits"}

    security = container["securityContext"]
    assert security["runAsNonRoot"] is True
    assert security["readOnlyRootFilesystem"] is True
    assert security["allowPrivilegeEscalation"] is False
    assert security["capabilities"]["drop"] == ["ALL"]
    assert "privileged" not in security

    mounts = {m["mountPath"]: m for m in container["volumeMounts"]}
    volumes = {v["name"]: v for v in pod["volumes"]}
    assert "emptyDir" in volumes[mounts["/tmp"]["name"]]
    tls_mounts = [m for m in mounts.values() if "secret" in volumes[m["name"]]]
    assert [m.get("readOnly") for m in tls_mounts] == [True]


def test_pdb_keeps_one_supervisor() -> None:
    deployment = find(OBJECTS, "Deployment", "machine-config-supervisor")
    pdb = find(OBJECTS, "PodDisruptionBudget", "machine-config-supervisor")
    assert pdb["spec"]["minAvailable"] == 1
    assert pdb["spec"]["selector"] == deployment["spec"]["selector"]


def test_service_fronts_the_webhook_and_metrics_ports() -> None:
    deployment = find(OBJECTS, "Deployment", "machine-config-supervisor")
    service = find(OBJECTS, "Service", "machine-config-supervisor")
    assert service["spec"]["selector"] == deployment["spec"]["selector"]["matchLabels"]
    ports = {p["port"]: p["targetPort"] for p in service["spec"]["ports"]}
    assert ports == {443: "webhook", 8080: "http"}


def test_daemonset() -> None:
    daemonset = find(OBJECTS, "DaemonSet", "machine-config-daemon")
    pod = daemonset["spec"]["template"]["spec"]
    container = _container(daemonset)

    assert pod["serviceAccountName"] == names.DAEMON_SA
    assert pod["hostPID"] is True
    assert container["securityContext"]["privileged"] is True
    assert container["command"] == [
        "mcosup",
        "daemon",
        "--node-name",
        "$(NODE_NAME)",
        "--root",
        "/rootfs",
    ]
    assert _env(container)["NODE_NAME"] == {"fieldRef": {"fieldPath": "spec.nodeName"}}
    mounts = {m["mountPath"]: m["name"] for m in container["volumeMounts"]}
    volumes = {v["name"]: v for v in pod["volumes"]}
    assert volumes[mounts["/rootfs"]]["hostPath"]["path"] == "/"
    # The host's own tools run inside the host's root (the daemon's command prefix).
    assert _env(container)["MCOSUP_HOST_EXEC"] == "chroot /rootfs"
    # Every taint tolerated: a tainted node still needs its agent.
    assert {"operator": "Exists"} in pod["tolerations"]
    assert daemonset["spec"]["updateStrategy"] == {
        "type": "RollingUpdate",
        "rollingUpdate": {"maxUnavailable": "10%"},
    }


def test_every_workload_runs_the_same_image() -> None:
    images = {_container(o)["image"] for o in OBJECTS if o["kind"] in ("Deployment", "DaemonSet")}
    assert len(images) == 1


# ---- the webhook configuration ------------------------------------------------------------------------


def _webhooks() -> dict[str, Obj]:
    configuration = find(OBJECTS, "ValidatingWebhookConfiguration", "mcosup")
    return {w["rules"][0]["resources"][0]: w for w in configuration["webhooks"]}


def test_webhook_rules_are_narrow() -> None:
    rules = {
        resource: [(r["apiGroups"], r["resources"], sorted(r["operations"])) for r in webhook["rules"]]
        for resource, webhook in _webhooks().items()
    }
    assert rules == {
        "machineconfigs": [([names.GROUP], ["machineconfigs"], ["CREATE", "UPDATE"])],
        "machineconfigpools": [([names.GROUP], ["machineconfigpools"], ["CREATE", "UPDATE"])],
        "machineosconfigs": [([names.GROUP], ["machineosconfigs"], ["CREATE", "UPDATE"])],
        "nodes": [([""], ["nodes"], ["UPDATE"])],
        "configmaps": [([""], ["configmaps"], ["CREATE", "UPDATE"])],
    }


@pytest.mark.parametrize(
    "resource", ["machineconfigs", "machineconfigpools", "machineosconfigs", "nodes", "configmaps"]
)
def test_webhook_is_safe_for_the_platform(resource: str) -> None:
    webhook = _webhooks()[resource]
    assert webhook["sideEffects"] == "None"
    assert webhook["admissionReviewVersions"] == ["v1"]
    assert webhook["matchPolicy"] == "Equivalent"
    assert webhook["timeoutSeconds"] <= 5
    assert webhook["failurePolicy"] in ("Fail", "Ignore")
    # No CA in the manifest: the supervisor injects it, and re-applying must not wipe it.
    assert "caBundle" not in webhook["clientConfig"]


def test_webhook_failure_policies() -> None:
    """Fail only where no component the cluster needs to stay alive is a writer (see webhook.yaml)."""
    policies = {resource: w["failurePolicy"] for resource, w in _webhooks().items()}
    assert policies == {
        "machineconfigs": "Fail",
        "machineconfigpools": "Ignore",
        "machineosconfigs": "Ignore",
        "nodes": "Ignore",
        "configmaps": "Ignore",
    }


def test_every_failure_policy_says_why() -> None:
    """Each failurePolicy line is preceded by a comment giving the reason."""
    lines = (DEPLOY / "webhook.yaml").read_text().splitlines()
    policy_lines = [i for i, line in enumerate(lines) if line.strip().startswith("failurePolicy:")]
    assert len(policy_lines) == len(_webhooks())
    for i in policy_lines:
        value = lines[i].split(":", 1)[1].strip()
        assert lines[i - 1].strip().startswith("#"), f"no comment above line {i + 1}"
        comment = []
        j = i - 1
        while lines[j].strip().startswith("#"):
            comment.append(lines[j])
            j -= 1
        assert value in "".join(comment), f"the comment above line {i + 1} does not justify {value}"


def test_webhooks_call_paths_the_server_serves() -> None:
    service = find(OBJECTS, "Service", "machine-config-supervisor")
    service_ports = {p["port"] for p in service["spec"]["ports"]}
    for resource, webhook in _webhooks().items():
        ref = webhook["clientConfig"]["service"]
        assert (ref["namespace"], ref["name"]) == (NAMESPACE, service["metadata"]["name"])
        assert ref["port"] in service_ports
        # mcosup.http.admission answers POST /validate and /validate/<rule>.
        assert re.fullmatch(re.escape(WEBHOOK_PATH) + r"(/[a-z-]+)?", ref["path"]), resource


def test_build_config_rule_reaches_only_the_mcosup_namespace() -> None:
    webhook = _webhooks()["configmaps"]
    assert webhook["namespaceSelector"] == {
        "matchExpressions": [{"key": "kubernetes.io/metadata.name", "operator": "In", "values": [NAMESPACE]}]
    }
    assert names.BUILD_CONFIG_CM in webhook["matchConditions"][0]["expression"]
