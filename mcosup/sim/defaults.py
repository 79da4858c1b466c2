"""The defaults the apiserver gives built-in kinds on create and update.

Pure: an object in, the object as the server stores it out. Pods (restartPolicy, grace period,
dnsPolicy, imagePullPolicy, ..., and the QoS class in the status), the pod templates of Deployments
and DaemonSets and their own strategies, webhook configurations, Nodes (status structs that are never
omitted, the not-ready taint) and Namespaces (the name label, the `kubernetes` finalizer). What the
server then checks is in :mod:`mcosup.sim.validation`.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

# Pods ---------------------------------------------------------------------------------------------


def image_pull_policy(image: str) -> str:
    name = image.rsplit("/", 1)[-1]
    if "@" in name:
        return "IfNotPresent"
    if ":" not in name or name.endswith(":latest"):
        return "Always"
    return "IfNotPresent"


def pod_defaults(pod: dict[str, Any]) -> dict[str, Any]:
    spec = pod_spec_defaults(pod.get("spec") or {})
    # Set on Pods only, not on the templates of workloads.
    spec.setdefault("enableServiceLinks", True)
    spec.setdefault("preemptionPolicy", "PreemptLowerPriority")
    spec.setdefault("priority", 0)
    out_pod = {**pod, "spec": spec}
    status = pod.get("status")
    if isinstance(status, dict) and "qosClass" not in status:
        out_pod["status"] = {**status, "qosClass": qos_class(spec)}
    return out_pod


def pod_spec_defaults(given: Mapping[str, Any]) -> dict[str, Any]:
    """The defaults of a PodSpec, in a Pod or in a workload's template."""
    spec = dict(given)
    spec.setdefault("restartPolicy", "Always")
    spec.setdefault("terminationGracePeriodSeconds", 30)
    spec.setdefault("dnsPolicy", "ClusterFirst")
    spec.setdefault("schedulerName", "default-scheduler")
    spec.setdefault("securityContext", {})
    if spec.get("serviceAccountName") or spec.get("serviceAccount"):
        spec.setdefault("serviceAccountName", spec.get("serviceAccount"))
        spec.setdefault("serviceAccount", spec["serviceAccountName"])
    for field_name in ("containers", "initContainers"):
        if isinstance(spec.get(field_name), list):
            out = []
            for c in spec[field_name]:
                if isinstance(c, dict):
                    c = dict(c)
                    c.setdefault("imagePullPolicy", image_pull_policy(str(c.get("image", ""))))
                    c.setdefault("terminationMessagePath", "/dev/termination-log")
                    c.setdefault("terminationMessagePolicy", "File")
                    c.setdefault("resources", {})
                out.append(c)
            spec[field_name] = out
    return spec


def workload_defaults(kind: str, obj: dict[str, Any], old: dict[str, Any] | None) -> dict[str, Any]:
    """apps/v1 defaults of a Deployment or DaemonSet (and of the pod template they carry)."""
    spec = dict(obj.get("spec") or {})
    template = spec.get("template")
    if isinstance(template, dict):
        spec["template"] = {**template, "spec": pod_spec_defaults(template.get("spec") or {})}
    spec.setdefault("revisionHistoryLimit", 10)
    out = {**obj, "spec": spec}
    if kind == "Deployment":
        spec.setdefault("replicas", 1)
        spec.setdefault("progressDeadlineSeconds", 600)
        strategy = dict(spec.get("strategy") or {})
        strategy.setdefault("type", "RollingUpdate")
        if strategy["type"] == "RollingUpdate":
            strategy["rollingUpdate"] = {
                "maxUnavailable": "25%",
                "maxSurge": "25%",
                **(strategy.get("rollingUpdate") or {}),
            }
        spec["strategy"] = strategy
    elif kind == "DaemonSet":
        strategy = dict(spec.get("updateStrategy") or {})
        strategy.setdefault("type", "RollingUpdate")
        if strategy["type"] == "RollingUpdate":
            strategy["rollingUpdate"] = {
                "maxUnavailable": 1,
                "maxSurge": 0,
                **(strategy.get("rollingUpdate") or {}),
            }
        spec["updateStrategy"] = strategy
        # The template's generation, which the DaemonSet controller's older versions read.
        key = "deprecated.daemonset.template.generation"
        meta = dict(obj.get("metadata") or {})
        annotations = dict(meta.get("annotations") or {})
        if old is None:
            annotations[key] = "1"
        else:
            old_meta = old.get("metadata") or {}
            previous = (old_meta.get("annotations") or {}).get(key, str(old_meta.get("generation") or 1))
            changed = (old.get("spec") or {}).get("template") != spec.get("template")
            annotations[key] = str(int(old_meta.get("generation") or 1) + 1) if changed else previous
        meta["annotations"] = annotations
        out["metadata"] = meta
    return out


def qos_class(spec: Mapping[str, Any]) -> str:
    """The Pod's quality-of-service class, computed from its containers' requests and limits."""
    containers = [
        c for key in ("containers", "initContainers") for c in spec.get(key) or [] if isinstance(c, dict)
    ]
    requests: list[dict[str, Any]] = []
    limits: list[dict[str, Any]] = []
    for c in containers:
        resources = c.get("resources") or {}
        requests.append(
            {k: v for k, v in (resources.get("requests") or {}).items() if k in ("cpu", "memory")}
        )
        limits.append({k: v for k, v in (resources.get("limits") or {}).items() if k in ("cpu", "memory")})
    if not any(requests) and not any(limits):
        return "BestEffort"
    guaranteed = all(
        set(lim) == {"cpu", "memory"} and all(req.get(k, lim[k]) == lim[k] for k in lim)
        for req, lim in zip(requests, limits, strict=True)
    )
    return "Guaranteed" if guaranteed else "Burstable"


# Webhook configurations ----------------------------------------------------------------------------


def webhook_configuration_defaults(obj: dict[str, Any]) -> dict[str, Any]:
    """The defaults admissionregistration/v1 gives each webhook and rule of a configuration."""
    webhooks = obj.get("webhooks")
    if not isinstance(webhooks, list):
        return obj
    out = []
    for hook in webhooks:
        if not isinstance(hook, dict):
            out.append(hook)
            continue
        hook = {
            "failurePolicy": "Fail",
            "matchPolicy": "Equivalent",
            "namespaceSelector": {},
            "objectSelector": {},
            "timeoutSeconds": 10,
            **hook,
        }
        rules = hook.get("rules")
        if isinstance(rules, list):
            hook["rules"] = [{"scope": "*", **r} if isinstance(r, dict) else r for r in rules]
        out.append(hook)
    return {**obj, "webhooks": out}


# Nodes ---------------------------------------------------------------------------------------------

_NODE_INFO_FIELDS = (
    "architecture",
    "bootID",
    "containerRuntimeVersion",
    "kernelVersion",
    "kubeProxyVersion",
    "kubeletVersion",
    "machineID",
    "operatingSystem",
    "osImage",
    "systemUUID",
)


def node_defaults(obj: dict[str, Any], *, created: bool) -> dict[str, Any]:
    """A Node as the typed server keeps it: status structs that are never omitted, conditions' times
    (null when unset), and on create the TaintNodesByCondition plugin's not-ready taint."""
    out = dict(obj)
    if created:
        spec = dict(out.get("spec") or {})
        taints = list(spec.get("taints") or [])
        if not any(t.get("key") == "node.kubernetes.io/not-ready" for t in taints if isinstance(t, dict)):
            taints.append({"key": "node.kubernetes.io/not-ready", "effect": "NoSchedule"})
        spec["taints"] = taints
        out["spec"] = spec
    status = dict(out.get("status") or {})
    status["nodeInfo"] = {**{k: "" for k in _NODE_INFO_FIELDS}, **(status.get("nodeInfo") or {})}
    endpoints = status.get("daemonEndpoints") or {}
    status["daemonEndpoints"] = {
        **endpoints,
        "kubeletEndpoint": {"Port": 0, **(endpoints.get("kubeletEndpoint") or {})},
    }
    if isinstance(status.get("conditions"), list):
        status["conditions"] = [
            {"lastHeartbeatTime": None, "lastTransitionTime": None, **c} if isinstance(c, dict) else c
            for c in status["conditions"]
        ]
    out["status"] = status
    return out


# Namespaces -----------------------------------------------------------------------------------------


def namespace_defaults(obj: dict[str, Any]) -> dict[str, Any]:
    """What the server sets on every Namespace: its name as a label, and the `kubernetes` finalizer."""
    meta = obj.get("metadata") or {}
    labels = {**(meta.get("labels") or {}), "kubernetes.io/metadata.name": meta.get("name", "")}
    spec = dict(obj.get("spec") or {})
    if "finalizers" not in spec:
        spec["finalizers"] = ["kubernetes"]
    return {**obj, "metadata": {**meta, "labels": labels}, "spec": spec}
