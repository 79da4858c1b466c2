"""RBAC of the three ServiceAccounts: everything each process does is allowed, little else is.

Judged by :class:`deploy_support.Rbac`, which evaluates the rendered Roles, ClusterRoles and bindings
the way the API server's RBAC authorizer does for the rule shapes we write.
"""

from __future__ import annotations

from typing import Any

import pytest
from deploy_support import OBJECTS, OBJECTS_BY_ID, Rbac, Request, object_id

from mcosup.model import names

NS = names.DEFAULT_NAMESPACE
MC = names.GROUP
RBAC = Rbac(OBJECTS)
ROLES = [o for o in OBJECTS if o["kind"] in ("Role", "ClusterRole")]

SUPERVISOR, BUILDER, DAEMON = names.SUPERVISOR_SA, names.BUILDER_SA, names.DAEMON_SA


@pytest.mark.parametrize("role", ROLES, ids=object_id)
def test_no_wildcards(role: dict[str, Any]) -> None:
    for rule in role["rules"]:
        for field in ("verbs", "resources", "apiGroups", "resourceNames"):
            assert "*" not in rule.get(field, []), f"{object_id(role)}: {field} has '*' in {rule}"
            assert not any("*" in v for v in rule.get(field, [])), f"{object_id(role)}: {rule}"


def test_every_binding_grants_an_existing_role_to_one_of_our_service_accounts() -> None:
    for binding in (o for o in OBJECTS if o["kind"] in ("RoleBinding", "ClusterRoleBinding")):
        ref = binding["roleRef"]
        assert f"{ref['kind']}/{ref['name']}" in OBJECTS_BY_ID, object_id(binding)
        for subject in binding["subjects"]:
            assert subject["kind"] == "ServiceAccount"
            assert (subject["namespace"], subject["name"]) in {
                (NS, SUPERVISOR),
                (NS, BUILDER),
                (NS, DAEMON),
            }


# What each process does (contract sections 2-7): every one of these must be allowed.
ALLOWED = [
    # supervisor: render
    (SUPERVISOR, Request("watch", "machineconfigpools", MC)),
    (SUPERVISOR, Request("patch", "machineconfigpools", MC, name="worker")),
    (SUPERVISOR, Request("update", "machineconfigpools", MC, name="worker")),
    (SUPERVISOR, Request("patch", "machineconfigpools/status", MC, name="worker")),
    (SUPERVISOR, Request("update", "machineconfigpools/finalizers", MC, name="worker")),
    (SUPERVISOR, Request("create", "machineconfigs", MC)),
    (SUPERVISOR, Request("delete", "machineconfigs", MC, name="rendered-worker-0")),
    # supervisor: rollout and drain, on any node and in any namespace
    (SUPERVISOR, Request("list", "nodes")),
    (SUPERVISOR, Request("patch", "nodes", name="worker-0")),
    (SUPERVISOR, Request("list", "pods")),
    (SUPERVISOR, Request("create", "pods/eviction", namespace="apps", name="web-1")),
    (SUPERVISOR, Request("get", "poddisruptionbudgets", "policy", namespace="apps", name="web")),
    (SUPERVISOR, Request("get", "daemonsets", "apps", namespace="kube-system", name="kube-proxy")),
    # supervisor: opt-in, managed MachineOSConfigs, builder pod, build objects
    (SUPERVISOR, Request("watch", "machineosconfigs", MC)),
    (SUPERVISOR, Request("create", "machineosconfigs", MC)),
    (SUPERVISOR, Request("update", "machineosconfigs", MC, name="worker")),
    (SUPERVISOR, Request("delete", "machineosconfigs", MC, name="worker")),
    (SUPERVISOR, Request("create", "pods", namespace=NS)),
    (SUPERVISOR, Request("delete", "pods", namespace=NS, name=names.BUILDER_POD)),
    (SUPERVISOR, Request("watch", "configmaps", namespace=NS)),
    (SUPERVISOR, Request("delete", "configmaps", namespace=NS, name="build-context")),
    (SUPERVISOR, Request("watch", "secrets", namespace=NS)),
    (SUPERVISOR, Request("get", "deployments", "apps", namespace=NS, name="machine-config-supervisor")),
    (
        SUPERVISOR,
        Request("update", "deployments/finalizers", "apps", namespace=NS, name="machine-config-supervisor"),
    ),
    (SUPERVISOR, Request("create", "events", namespace=NS)),
    # Events about pools and nodes (cluster-scoped) live in default.
    (SUPERVISOR, Request("create", "events", namespace="default")),
    (BUILDER, Request("create", "events", namespace="default")),
    (DAEMON, Request("create", "events", namespace="default")),
    # supervisor: leader election
    (SUPERVISOR, Request("create", "leases", "coordination.k8s.io", namespace=NS)),
    (SUPERVISOR, Request("update", "leases", "coordination.k8s.io", namespace=NS, name="mcosup-supervisor")),
    # supervisor: self-managed webhook TLS
    (SUPERVISOR, Request("create", "secrets", namespace=NS)),
    (SUPERVISOR, Request("update", "secrets", namespace=NS, name="machine-config-supervisor-tls")),
    (
        SUPERVISOR,
        Request("get", "validatingwebhookconfigurations", "admissionregistration.k8s.io", name="mcosup"),
    ),
    (
        SUPERVISOR,
        Request("update", "validatingwebhookconfigurations", "admissionregistration.k8s.io", name="mcosup"),
    ),
    # builder
    (BUILDER, Request("watch", "machineconfigpools", MC)),
    (BUILDER, Request("patch", "machineconfigpools", MC, name="worker")),
    (BUILDER, Request("patch", "machineconfigpools/status", MC, name="worker")),
    (BUILDER, Request("update", "machineconfigpools/finalizers", MC, name="worker")),
    (BUILDER, Request("get", "machineconfigs", MC, name="rendered-worker-0")),
    (BUILDER, Request("watch", "machineosconfigs", MC)),
    (BUILDER, Request("get", "machineosconfigs", MC, name="worker")),
    (BUILDER, Request("patch", "machineosconfigs", MC, name="worker")),
    (BUILDER, Request("patch", "machineosconfigs/status", MC, name="worker")),
    (BUILDER, Request("watch", "machineosbuilds", MC)),
    (BUILDER, Request("create", "machineosbuilds", MC)),
    (BUILDER, Request("delete", "machineosbuilds", MC, name="worker-0")),
    (BUILDER, Request("patch", "machineosbuilds/status", MC, name="worker-0")),
    (BUILDER, Request("update", "machineosbuilds/finalizers", MC, name="worker-0")),
    # Pruning: the finalizer mc/prune-image is removed by a patch; nodes name the images kept.
    (BUILDER, Request("patch", "machineosbuilds", MC, name="worker-0")),
    (BUILDER, Request("watch", "nodes")),
    (BUILDER, Request("create", "jobs", "batch", namespace=NS)),
    (BUILDER, Request("delete", "jobs", "batch", namespace=NS, name="build-worker-0")),
    (BUILDER, Request("delete", "pods", namespace=NS, name="build-worker-0")),
    (BUILDER, Request("get", "pods/log", namespace=NS, name="build-worker-0")),
    (BUILDER, Request("create", "configmaps", namespace=NS)),
    (BUILDER, Request("delete", "configmaps", namespace=NS, name="build-worker-0")),
    (BUILDER, Request("get", "secrets", namespace=NS, name="push-secret")),
    (BUILDER, Request("create", "events", namespace=NS)),
    # daemon
    (DAEMON, Request("watch", "nodes")),
    (DAEMON, Request("patch", "nodes", name="worker-0")),
    (DAEMON, Request("get", "machineconfigs", MC, name="rendered-worker-0")),
    (DAEMON, Request("watch", "configmaps", namespace=NS)),
    (DAEMON, Request("create", "events", namespace=NS)),
]

# Least privilege: things none of them needs.
DENIED = [
    (SUPERVISOR, Request("delete", "nodes", name="worker-0")),
    (SUPERVISOR, Request("delete", "pods", namespace="apps", name="web-1")),
    (SUPERVISOR, Request("create", "pods", namespace="kube-system")),
    (SUPERVISOR, Request("get", "secrets", namespace="kube-system", name="any")),
    (SUPERVISOR, Request("update", "secrets", namespace=NS, name="push-secret")),
    (SUPERVISOR, Request("update", "machineconfigs", MC, name="99-worker-ssh")),
    (SUPERVISOR, Request("delete", "machineconfigpools", MC, name="worker")),
    (
        SUPERVISOR,
        Request("update", "validatingwebhookconfigurations", "admissionregistration.k8s.io", name="other"),
    ),
    (SUPERVISOR, Request("update", "leases", "coordination.k8s.io", namespace=NS, name="other")),
    (SUPERVISOR, Request("update", "deployments", "apps", namespace=NS, name="machine-config-supervisor")),
    (SUPERVISOR, Request("create", "events", namespace="kube-system")),
    (BUILDER, Request("patch", "nodes", name="worker-0")),
    (BUILDER, Request("create", "machineconfigs", MC)),
    (BUILDER, Request("update", "machineosconfigs", MC, name="worker")),
    (BUILDER, Request("delete", "machineosconfigs", MC, name="worker")),
    (BUILDER, Request("update", "machineconfigpools", MC, name="worker")),
    (BUILDER, Request("create", "secrets", namespace=NS)),
    (BUILDER, Request("create", "pods", namespace="default")),
    (BUILDER, Request("create", "pods", namespace=NS)),  # its Jobs make the build Pods
    (BUILDER, Request("update", "machineosbuilds", MC, name="worker-0")),  # the spec is immutable
    (BUILDER, Request("create", "jobs", "batch", namespace="default")),
    (BUILDER, Request("create", "pods/eviction", namespace="apps", name="web-1")),
    (DAEMON, Request("delete", "nodes", name="worker-0")),
    (DAEMON, Request("update", "nodes", name="worker-0")),
    (DAEMON, Request("get", "secrets", namespace=NS, name="push-secret")),
    (DAEMON, Request("create", "machineconfigs", MC)),
    (DAEMON, Request("patch", "machineconfigpools", MC, name="worker")),
    (DAEMON, Request("get", "machineosconfigs", MC, name="worker")),
    (DAEMON, Request("list", "pods")),
    (DAEMON, Request("get", "configmaps", namespace="kube-system", name="any")),
]


def _case_id(case: tuple[str, Request]) -> str:
    sa, r = case
    where = f" in {r.namespace}" if r.namespace else ""
    return (
        f"{sa} {r.verb} {r.resource}{'.' + r.group if r.group else ''}{'/' + r.name if r.name else ''}{where}"
    )


@pytest.mark.parametrize("case", ALLOWED, ids=_case_id)
def test_allowed(case: tuple[str, Request]) -> None:
    service_account, request = case
    assert RBAC.allows(NS, service_account, request)


@pytest.mark.parametrize("case", DENIED, ids=_case_id)
def test_denied(case: tuple[str, Request]) -> None:
    service_account, request = case
    assert not RBAC.allows(NS, service_account, request)
