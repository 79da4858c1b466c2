"""The real control plane itself, and what an administrator's install does on it.

What the emulator could only assume is checked here against kube-apiserver: `/version` reports the
pinned release, ``kubectl apply -k deploy/`` installs (CRDs Established, re-apply idempotent), a
TokenRequest bound to a Node carries the node name the webhook's guard reads, and the RBAC in
``deploy/rbac/`` denies each ServiceAccount what it must never do.
"""

from __future__ import annotations

import json
import re
import subprocess
from pathlib import Path

import pytest
import yaml

from mcosup.model import names
from mcosup.sim.controlplane import ControlPlane, ControlPlaneError

pytestmark = pytest.mark.timeout(300)

HERE = Path(__file__).resolve().parent
DEPLOY = HERE.parents[1] / "deploy"
NS = names.DEFAULT_NAMESPACE


def pinned_release() -> str:
    go_mod = (HERE / "kube" / "go.mod").read_text()
    match = re.search(r"^\s*(?:require\s+)?k8s\.io/kubernetes (v\S+)", go_mod, re.M)
    assert match, "tests/controlplane/kube/go.mod pins no k8s.io/kubernetes release"
    return match.group(1)


def test_version_reports_the_pinned_release(control_plane: ControlPlane) -> None:
    version = control_plane.call("GET", "/version")
    assert version["gitVersion"] == pinned_release()
    client = json.loads(control_plane.kubectl("version", "--client", "-o", "json"))
    assert client["clientVersion"]["gitVersion"] == pinned_release()


def test_kubectl_apply_k_deploy_installs_and_every_crd_becomes_established(installed: ControlPlane) -> None:
    crds = [
        yaml.safe_load(p.read_text())["metadata"]["name"] for p in sorted((DEPLOY / "crds").glob("*.yaml"))
    ]
    assert crds
    installed.kubectl("wait", "--for=condition=Established", "--timeout=60s", *(f"crd/{c}" for c in crds))
    # Re-applying changes nothing and fails on nothing (what a GitOps loop does every few minutes).
    again = installed.kubectl("apply", "-k", str(DEPLOY))
    assert "created" not in again, again
    for kind in ("serviceaccount", "deployment", "daemonset", "service", "poddisruptionbudget"):
        assert installed.kubectl("get", kind, "-n", NS, "-o", "name").strip(), kind


def test_a_token_bound_to_a_node_carries_the_node_name(installed: ControlPlane, tmp_path: Path) -> None:
    installed.call(
        "POST", "/api/v1/nodes", {"apiVersion": "v1", "kind": "Node", "metadata": {"name": "token-node"}}
    )
    try:
        config = installed.write_kubeconfig_for_service_account(
            tmp_path / "daemon.kubeconfig", NS, names.DAEMON_SA, "token-node"
        )
        review = json.loads(installed.kubectl("auth", "whoami", "-o", "json", kubeconfig=config))
        user = review["status"]["userInfo"]
        assert user["username"] == f"system:serviceaccount:{NS}:{names.DAEMON_SA}"
        assert user["extra"]["authentication.kubernetes.io/node-name"] == ["token-node"]
    finally:
        installed.call("DELETE", "/api/v1/nodes/token-node")


#: What each ServiceAccount must never be able to do, whatever a bug in its process tries.
MUST_NOT = {
    names.DAEMON_SA: [
        ("delete", "pods", NS),
        ("create", "pods", NS),
        ("create", "pods/eviction", NS),
        ("delete", "nodes", None),
        ("update", "nodes/status", None),
        ("create", "machineconfigs.machineconfiguration.openshift.io", None),
        ("patch", "machineconfigpools.machineconfiguration.openshift.io", None),
        ("get", "secrets", NS),
        ("patch", "configmaps", NS),
        ("create", "clusterrolebindings.rbac.authorization.k8s.io", None),
    ],
    names.BUILDER_SA: [
        # Builds run as Jobs: the Job controller makes their Pods, never the builder.
        ("create", "pods", NS),
        ("patch", "nodes", None),
        ("delete", "nodes", None),
        ("create", "pods/eviction", NS),
        ("create", "secrets", NS),
        ("delete", "secrets", NS),
        ("delete", "machineconfigs.machineconfiguration.openshift.io", None),
        ("delete", "machineconfigpools.machineconfiguration.openshift.io", None),
        ("get", "pods", "default"),
        ("update", "validatingwebhookconfigurations.admissionregistration.k8s.io", None),
    ],
    names.SUPERVISOR_SA: [
        ("delete", "nodes", None),
        ("update", "nodes/status", None),
        ("delete", "pods", "default"),
        ("get", "secrets", "default"),
        ("update", "machineconfigs.machineconfiguration.openshift.io", None),
        ("delete", "machineconfigpools.machineconfiguration.openshift.io", None),
        ("delete", "validatingwebhookconfigurations.admissionregistration.k8s.io", None),
        ("create", "clusterrolebindings.rbac.authorization.k8s.io", None),
        ("escalate", "clusterroles.rbac.authorization.k8s.io", None),
        ("impersonate", "users", None),
        ("delete", "namespaces", None),
    ],
}

#: What each needs (so the denials above are not a sign of an account that can do nothing at all).
MUST = {
    names.DAEMON_SA: [("patch", "nodes", None), ("get", "configmaps", NS)],
    names.BUILDER_SA: [
        ("create", "jobs.batch", NS),
        ("patch", "machineconfigpools/status", None),
        ("create", "machineosbuilds.machineconfiguration.openshift.io", None),
    ],
    names.SUPERVISOR_SA: [("create", "pods/eviction", NS), ("create", "leases.coordination.k8s.io", NS)],
}


def can_i(cp: ControlPlane, account: str, verb: str, resource: str, namespace: str | None) -> bool:
    """``kubectl auth can-i ... --as=<account>``: prints yes (exit 0) or no (exit 1)."""
    args = [cp.binary("kubectl"), f"--kubeconfig={cp.workdir / 'admin.kubeconfig'}", "auth", "can-i"]
    # `can-i VERB TYPE/NAME`: a subresource goes in its own flag, not after a slash.
    kind, _, subresource = resource.partition("/")
    args += [verb, kind, f"--as=system:serviceaccount:{NS}:{account}"]
    args += [f"--subresource={subresource}"] if subresource else []
    args += ["-n", namespace] if namespace else []
    done = subprocess.run(args, capture_output=True, text=True, timeout=60, check=False)
    answer = done.stdout.strip()
    assert (answer, done.returncode) in (("yes", 0), ("no", 1)), (args, done.stdout, done.stderr)
    return answer == "yes"


@pytest.mark.parametrize("account", sorted(MUST_NOT))
def test_each_service_account_is_denied_what_it_must_never_do(installed: ControlPlane, account: str) -> None:
    allowed = [(v, r, ns) for v, r, ns in MUST_NOT[account] if can_i(installed, account, v, r, ns)]
    assert allowed == [], f"{account} may: {allowed}"
    missing = [(v, r, ns) for v, r, ns in MUST[account] if not can_i(installed, account, v, r, ns)]
    assert missing == [], f"{account} may not: {missing}"


def test_a_start_that_fails_names_the_binary_and_shows_its_log(
    control_plane: ControlPlane, tmp_path: Path
) -> None:
    broken = ControlPlane(
        tmp_path / "broken",
        bin_dir=control_plane.bin_dir,
        startup_seconds=30,
        extra_apiserver_args=["--no-such-flag=1"],
    )
    with pytest.raises(ControlPlaneError) as failed:
        broken.start_blocking()
    message = str(failed.value)
    assert message.startswith("kube-apiserver did not start"), message
    assert "unknown flag: --no-such-flag" in message, message
    assert broken._processes == [], "the etcd started before kube-apiserver was left running"
