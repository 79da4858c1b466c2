"""Validation and normalisation the apiserver applies to every object, and to a few built-in kinds.

Pure: objects in, causes (`Status` field errors) out. These are the checks a controller most often
trips over on a real cluster, so the emulator must trip it too:

- metadata: label keys and values, annotation keys, ownerReferences (apiVersion, kind, name, uid);
- Event (core/v1): without `eventTime`, `involvedObject.namespace` must equal the Event's namespace
  and an Event about a cluster-scoped object (a Node, a MachineConfigPool) must live in `default`;
  with `eventTime`, such an Event may live in `default` or `kube-system` and needs
  `reportingComponent`, `reportingInstance` and `action`;
- Secret: `stringData` is merged into `data` (base64) and dropped, `type` defaults to Opaque, keys
  must be valid (and `data` values base64, which the server checks while decoding: a 400);
- Pod: a few defaults (restartPolicy, grace period, dnsPolicy, imagePullPolicy, ...), containers
  with names and images, and a spec that updates may change only in images, activeDeadlineSeconds
  and tolerations;
- ConfigMap: keys valid, no key in both `data` and `binaryData`;
- ValidatingWebhookConfiguration: webhook names (three-segment domains, unique), sideEffects,
  admissionReviewVersions, failurePolicy, timeoutSeconds (1-30), clientConfig (https url xor
  service), rules.
"""

from __future__ import annotations

import base64
import binascii
import re
from collections.abc import Mapping
from typing import Any

Cause = dict[str, str]

_LABEL_VALUE = re.compile(r"^(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?$")
_NAME_PART = re.compile(r"^([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]$")
_DNS_SUBDOMAIN = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$")
_CONFIG_KEY = re.compile(r"^[-._a-zA-Z0-9]+$")

LABEL_VALUE_HELP = (
    "a valid label must be an empty string or consist of alphanumeric characters, '-', '_' or '.', and "
    "must start and end with an alphanumeric character (e.g. 'MyValue',  or 'my_value',  or '12345', "
    "regex used for validation is '(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?')"
)
NAME_PART_HELP = (
    "name part must consist of alphanumeric characters, '-', '_' or '.', and must start and end with an "
    "alphanumeric character (e.g. 'MyName',  or 'my.name',  or '123-abc', regex used for validation is "
    "'([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]')"
)


def _invalid(field: str, value: Any, detail: str) -> Cause:
    return {"reason": "FieldValueInvalid", "field": field, "message": f'Invalid value: "{value}": {detail}'}


def qualified_name_problems(key: str) -> list[str]:
    """Why `key` is not a valid label/annotation key (`[prefix/]name`), in the apiserver's words."""
    prefix, slash, name = key.rpartition("/")
    problems = []
    if slash and not prefix:
        problems.append("prefix part must be non-empty")
    elif prefix and (len(prefix) > 253 or not _DNS_SUBDOMAIN.match(prefix)):
        problems.append(
            "prefix part a lowercase RFC 1123 subdomain must consist of lower case alphanumeric characters, "
            "'-' or '.', and must start and end with an alphanumeric character"
        )
    if not name:
        problems.append("name part must be non-empty")
    else:
        if len(name) > 63:
            problems.append("name part must be no more than 63 characters")
        if not _NAME_PART.match(name):
            problems.append(NAME_PART_HELP)
    return problems


def metadata_causes(meta: dict[str, Any]) -> list[Cause]:
    causes: list[Cause] = []
    labels = meta.get("labels")
    if labels is not None and not isinstance(labels, dict):
        causes.append(_invalid("metadata.labels", labels, "must be a map of strings"))
        labels = {}
    for key, value in (labels or {}).items():
        for problem in qualified_name_problems(str(key)):
            causes.append(_invalid("metadata.labels", key, problem))
        if not isinstance(value, str):
            causes.append(_invalid(f"metadata.labels.{key}", value, "must be a string"))
            continue
        if len(value) > 63:
            causes.append(_invalid("metadata.labels", value, "must be no more than 63 characters"))
        if not _LABEL_VALUE.match(value):
            causes.append(_invalid("metadata.labels", value, LABEL_VALUE_HELP))
    annotations = meta.get("annotations")
    if annotations is not None and not isinstance(annotations, dict):
        causes.append(_invalid("metadata.annotations", annotations, "must be a map of strings"))
        annotations = {}
    total = 0
    for key, value in (annotations or {}).items():
        for problem in qualified_name_problems(str(key)):
            causes.append(_invalid("metadata.annotations", key, problem))
        if not isinstance(value, str):
            causes.append(_invalid(f"metadata.annotations.{key}", value, "must be a string"))
            continue
        total += len(key) + len(value)
    if total > 256 * 1024:
        causes.append(
            {
                "reason": "FieldValueTooLong",
                "field": "metadata.annotations",
                "message": "Too long: must have at most 262144 bytes",
            }
        )
    for i, ref in enumerate(meta.get("ownerReferences") or []):
        path = f"metadata.ownerReferences[{i}]"
        if not isinstance(ref, dict):
            causes.append(_invalid(path, ref, "must be an object"))
            continue
        for field in ("apiVersion", "kind", "name", "uid"):
            if not ref.get(field):
                causes.append(
                    {
                        "reason": "FieldValueRequired" if field != "uid" else "FieldValueInvalid",
                        "field": f"{path}.{field}",
                        "message": 'Invalid value: "": uid must not be empty'
                        if field == "uid"
                        else "Required value",
                    }
                )
    finalizers = meta.get("finalizers")
    if finalizers is not None and not (
        isinstance(finalizers, list) and all(isinstance(f, str) for f in finalizers)
    ):
        causes.append(_invalid("metadata.finalizers", finalizers, "must be a list of strings"))
    return causes


def event_causes(event: dict[str, Any]) -> list[Cause]:
    """The apiserver's namespace rule for core/v1 Events, for legacy ones and ones with eventTime."""
    namespace = event["metadata"].get("namespace", "")
    involved = str((event.get("involvedObject") or {}).get("namespace") or "")
    mismatch = _invalid("involvedObject.namespace", involved, "does not match event.namespace")
    if not event.get("eventTime"):
        if (not involved and namespace not in ("", "default")) or (involved and involved != namespace):
            return [mismatch]
        return []
    causes = [mismatch] if not involved and namespace not in ("default", "kube-system") else []
    for field in ("reportingComponent", "reportingInstance", "action"):
        if not event.get(field):
            causes.append({"reason": "FieldValueRequired", "field": field, "message": "Required value"})
    return causes


CONFIG_KEY_MESSAGE = (
    "a valid config key must consist of alphanumeric characters, '-', '_' or '.' (e.g. 'key.name',  or "
    "'KEY_NAME',  or 'key-name', regex used for validation is '[-._a-zA-Z0-9]+')"
)


def normalise_secret(secret: dict[str, Any]) -> tuple[dict[str, Any], list[Cause]]:
    causes: list[Cause] = []
    out = dict(secret)
    data = dict(out.get("data") or {})
    for key, value in (out.pop("stringData", None) or {}).items():
        data[key] = base64.b64encode(str(value).encode()).decode()
    for key in data:
        if not _CONFIG_KEY.match(str(key)):
            causes.append(
                _invalid(
                    f"data[{key}]",
                    key,
                    CONFIG_KEY_MESSAGE,
                )
            )
    if data or "data" in out:
        out["data"] = data
    out.setdefault("type", "Opaque")
    for key in _SECRET_TYPE_KEYS.get(str(out["type"]), ()):
        if not data.get(key):
            causes.append(
                {"reason": "FieldValueRequired", "field": f"data[{key}]", "message": "Required value"}
            )
    return out, causes


# The keys a Secret of a well-known type must carry (a subset of the apiserver's checks by type).
_SECRET_TYPE_KEYS: dict[str, tuple[str, ...]] = {
    "kubernetes.io/tls": ("tls.crt", "tls.key"),
    "kubernetes.io/dockerconfigjson": (".dockerconfigjson",),
    "kubernetes.io/dockercfg": (".dockercfg",),
    "kubernetes.io/ssh-auth": ("ssh-privatekey",),
}


_BASE64_ALPHABET = frozenset("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/=")


def undecodable_secret_data(secret: dict[str, Any]) -> str | None:
    """Go's decoding error for the first `data` value that is not base64 (the apiserver cannot even
    decode such a body): the offset of the first byte outside the alphabet, else of the quantum that
    is cut short."""
    for value in (secret.get("data") or {}).values():
        text = str(value)
        try:
            base64.b64decode(text, validate=True)
        except (binascii.Error, ValueError):
            bad = next((i for i, c in enumerate(text) if c not in _BASE64_ALPHABET), len(text) // 4 * 4)
            return f"illegal base64 data at input byte {bad}"
    return None


def configmap_causes(cm: dict[str, Any]) -> list[Cause]:
    causes: list[Cause] = []
    data = cm.get("data") or {}
    binary = cm.get("binaryData") or {}
    for section, values in (("data", data), ("binaryData", binary)):
        for key, value in values.items():
            if not _CONFIG_KEY.match(str(key)):
                causes.append(
                    _invalid(
                        f"{section}[{key}]",
                        key,
                        CONFIG_KEY_MESSAGE,
                    )
                )
            if section == "data" and not isinstance(value, str):
                causes.append(_invalid(f"data[{key}]", value, "must be a string"))
    for key in set(data) & set(binary):
        causes.append(_invalid(f"data[{key}]", key, "duplicate of key present in binaryData"))
    return causes


OBJECT_META_FIELDS = frozenset(
    {
        "name",
        "generateName",
        "namespace",
        "selfLink",
        "uid",
        "resourceVersion",
        "generation",
        "creationTimestamp",
        "deletionTimestamp",
        "deletionGracePeriodSeconds",
        "labels",
        "annotations",
        "ownerReferences",
        "finalizers",
        "managedFields",
    }
)
TOP_LEVEL_FIELDS: dict[str, frozenset[str]] = {
    kind: frozenset({"apiVersion", "kind", "metadata", *fields})
    for kind, fields in {
        "Namespace": ("spec", "status"),
        "Node": ("spec", "status"),
        "Pod": ("spec", "status"),
        "ConfigMap": ("data", "binaryData", "immutable"),
        "Secret": ("data", "stringData", "type", "immutable"),
        "ServiceAccount": ("secrets", "imagePullSecrets", "automountServiceAccountToken"),
        "Service": ("spec", "status"),
        "Event": (
            "involvedObject",
            "reason",
            "message",
            "source",
            "firstTimestamp",
            "lastTimestamp",
            "count",
            "type",
            "eventTime",
            "series",
            "action",
            "related",
            "reportingComponent",
            "reportingInstance",
        ),
        "Lease": ("spec",),
        "PodDisruptionBudget": ("spec", "status"),
        "DaemonSet": ("spec", "status"),
        "Deployment": ("spec", "status"),
        "ValidatingWebhookConfiguration": ("webhooks",),
        "Role": ("rules",),
        "ClusterRole": ("rules", "aggregationRule"),
        "RoleBinding": ("subjects", "roleRef"),
        "ClusterRoleBinding": ("subjects", "roleRef"),
        "CustomResourceDefinition": ("spec", "status"),
    }.items()
}
SPEC_FIELDS: dict[str, frozenset[str]] = {
    "Node": frozenset(
        {"podCIDR", "podCIDRs", "providerID", "unschedulable", "taints", "configSource", "externalID"}
    ),
    "Lease": frozenset(
        {
            "holderIdentity",
            "leaseDurationSeconds",
            "acquireTime",
            "renewTime",
            "leaseTransitions",
            "strategy",
            "preferredHolder",
        }
    ),
    "PodDisruptionBudget": frozenset(
        {"minAvailable", "maxUnavailable", "selector", "unhealthyPodEvictionPolicy"}
    ),
}


def prune_unknown(kind: str, obj: dict[str, Any], builtin: bool) -> tuple[dict[str, Any], list[str]]:
    """Drop the fields a typed apiserver would not keep: unknown metadata fields for every kind and,
    for the built-in kinds listed above, unknown top-level fields and (Node, Lease, PDB) spec fields.

    Returns the object and the dropped paths (the server warns, or refuses under fieldValidation=Strict).
    """
    dropped: list[str] = []
    out = dict(obj)
    meta = out.get("metadata")
    if isinstance(meta, dict) and not set(meta) <= OBJECT_META_FIELDS:
        dropped.extend(f"metadata.{k}" for k in meta if k not in OBJECT_META_FIELDS)
        out["metadata"] = {k: v for k, v in meta.items() if k in OBJECT_META_FIELDS}
    if builtin and kind in TOP_LEVEL_FIELDS:
        allowed = TOP_LEVEL_FIELDS[kind]
        dropped.extend(k for k in out if k not in allowed)
        out = {k: v for k, v in out.items() if k in allowed}
        spec = out.get("spec")
        if kind in SPEC_FIELDS and isinstance(spec, dict) and not set(spec) <= SPEC_FIELDS[kind]:
            dropped.extend(f"spec.{k}" for k in spec if k not in SPEC_FIELDS[kind])
            out["spec"] = {k: v for k, v in spec.items() if k in SPEC_FIELDS[kind]}
    return out, dropped


def _required(field: str, detail: str = "") -> Cause:
    return {
        "reason": "FieldValueRequired",
        "field": field,
        "message": f"Required value: {detail}" if detail else "Required value",
    }


def _unsupported(field: str, value: Any, supported: tuple[str, ...]) -> Cause:
    allowed = ", ".join(f'"{s}"' for s in supported)
    return {
        "reason": "FieldValueNotSupported",
        "field": field,
        "message": f'Unsupported value: "{value}": supported values: {allowed}',
    }


def webhook_configuration_causes(vwc: dict[str, Any]) -> list[Cause]:
    """admissionregistration.k8s.io/v1 ValidatingWebhookConfiguration validation (the common rules)."""
    causes: list[Cause] = []
    seen: set[str] = set()
    for i, hook in enumerate(vwc.get("webhooks") or []):
        path = f"webhooks[{i}]"
        if not isinstance(hook, dict):
            causes.append(_invalid(path, hook, "must be an object"))
            continue
        name = str(hook.get("name") or "")
        if not name:
            causes.append(_required(f"{path}.name"))
        elif len(name.split(".")) < 3 or not _DNS_SUBDOMAIN.match(name):
            causes.append(
                _invalid(
                    f"{path}.name", name, "should be a domain with at least three segments separated by dots"
                )
            )
        elif name in seen:
            causes.append(
                {
                    "reason": "FieldValueDuplicate",
                    "field": f"{path}.name",
                    "message": f'Duplicate value: "{name}"',
                }
            )
        seen.add(name)
        side_effects = hook.get("sideEffects")
        if side_effects is None:
            causes.append(_required(f"{path}.sideEffects", "must specify one of None, NoneOnDryRun"))
        elif side_effects not in ("None", "NoneOnDryRun"):
            causes.append(_unsupported(f"{path}.sideEffects", side_effects, ("None", "NoneOnDryRun")))
        versions = hook.get("admissionReviewVersions")
        if not versions:
            causes.append(_required(f"{path}.admissionReviewVersions", "must specify one of v1, v1beta1"))
        elif not {"v1", "v1beta1"} & set(versions):
            causes.append(
                _invalid(
                    f"{path}.admissionReviewVersions", versions, "must include at least one of v1, v1beta1"
                )
            )
        policy = hook.get("failurePolicy")
        if policy is not None and policy not in ("Fail", "Ignore"):
            causes.append(_unsupported(f"{path}.failurePolicy", policy, ("Fail", "Ignore")))
        timeout = hook.get("timeoutSeconds")
        if timeout is not None and not (isinstance(timeout, int) and 1 <= timeout <= 30):
            causes.append(
                {
                    "reason": "FieldValueInvalid",
                    "field": f"{path}.timeoutSeconds",
                    "message": f"Invalid value: {timeout}: "
                    "the timeout value must be between 1 and 30 seconds",
                }
            )
        config = hook.get("clientConfig") or {}
        if bool(config.get("url")) == bool(config.get("service")):
            causes.append(_required(f"{path}.clientConfig", "exactly one of url or service is required"))
        elif config.get("url") and not str(config["url"]).startswith("https://"):
            causes.append(
                _invalid(f"{path}.clientConfig.url", config["url"], "'https' is the only allowed URL scheme")
            )
        elif config.get("service"):
            service = config["service"]
            for field in ("namespace", "name"):
                if not service.get(field):
                    causes.append(
                        _required(f"{path}.clientConfig.service.{field}", f"service {field} is required")
                    )
            port = service.get("port", 443)
            if not (isinstance(port, int) and 1 <= port <= 65535):
                causes.append(
                    _invalid(
                        f"{path}.clientConfig.service.port",
                        port,
                        "port is not valid: must be between 1 and 65535, inclusive",
                    )
                )
        for j, rule in enumerate(hook.get("rules") or []):
            for field in ("operations", "apiGroups", "apiVersions", "resources"):
                if not rule.get(field):
                    causes.append(_required(f"{path}.rules[{j}].{field}"))
            for op in rule.get("operations") or []:
                if op not in ("*", "CREATE", "UPDATE", "DELETE", "CONNECT"):
                    causes.append(
                        _unsupported(
                            f"{path}.rules[{j}].operations",
                            op,
                            ("*", "CONNECT", "CREATE", "DELETE", "UPDATE"),
                        )
                    )
            scope = rule.get("scope")
            if scope is not None and scope not in ("*", "Cluster", "Namespaced"):
                causes.append(_unsupported(f"{path}.rules[{j}].scope", scope, ("*", "Cluster", "Namespaced")))
    return causes


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


def pod_causes(pod: dict[str, Any], old: dict[str, Any] | None) -> list[dict[str, str]]:
    causes: list[dict[str, str]] = []
    spec = pod.get("spec") or {}
    containers = spec.get("containers")
    if not isinstance(containers, list) or not containers:
        causes.append(
            {"reason": "FieldValueRequired", "field": "spec.containers", "message": "Required value"}
        )
    else:
        for i, c in enumerate(containers):
            if not isinstance(c, dict):
                causes.append(
                    {
                        "reason": "FieldValueInvalid",
                        "field": f"spec.containers[{i}]",
                        "message": "Invalid value: must be an object",
                    }
                )
                continue
            if not c.get("name"):
                causes.append(
                    {
                        "reason": "FieldValueRequired",
                        "field": f"spec.containers[{i}].name",
                        "message": "Required value",
                    }
                )
            if not c.get("image"):
                causes.append(
                    {
                        "reason": "FieldValueRequired",
                        "field": f"spec.containers[{i}].image",
                        "message": "Required value",
                    }
                )
    if old is not None:

        def mutable_view(s: Mapping[str, Any]) -> dict[str, Any]:
            view = {k: v for k, v in s.items() if k not in ("activeDeadlineSeconds", "tolerations")}
            for field_name in ("containers", "initContainers"):
                if isinstance(view.get(field_name), list):
                    view[field_name] = [
                        {k: v for k, v in c.items() if k != "image"} if isinstance(c, dict) else c
                        for c in view[field_name]
                    ]
            return view

        old_spec = old.get("spec") or {}
        new_containers, old_containers = spec.get("containers"), old_spec.get("containers")
        if (
            isinstance(new_containers, list)
            and isinstance(old_containers, list)
            and len(new_containers) != len(old_containers)
        ):
            # The apiserver stops at this one, before comparing the rest of the spec.
            causes.append(
                {
                    "reason": "FieldValueForbidden",
                    "field": "spec.containers",
                    "message": "Forbidden: pod updates may not add or remove containers",
                }
            )
        elif mutable_view(spec) != mutable_view(old_spec):
            causes.append(
                {
                    "reason": "FieldValueForbidden",
                    "field": "spec",
                    "message": "Forbidden: pod updates may not change fields other than "
                    "`spec.containers[*].image`, "
                    "`spec.initContainers[*].image`, `spec.activeDeadlineSeconds`, "
                    "`spec.tolerations` (only additions to existing tolerations)",
                }
            )
    return causes


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


# Go's omitempty ------------------------------------------------------------------------------------

# Maps and lists of built-in kinds that a typed server drops when empty (`omitempty` in the Go types).
_OMIT_EMPTY: dict[str, tuple[str, ...]] = {
    "ConfigMap": ("data", "binaryData"),
    "Secret": ("data", "stringData"),
}
_OMIT_EMPTY_META = ("labels", "annotations", "finalizers", "ownerReferences")


def omit_empty(kind: str, obj: dict[str, Any]) -> dict[str, Any]:
    """``obj`` without the empty maps and lists a built-in kind's Go type would not serialise."""
    meta = obj.get("metadata")
    drop = [k for k in _OMIT_EMPTY.get(kind, ()) if obj.get(k) in ({}, [])]
    drop_meta = [k for k in _OMIT_EMPTY_META if isinstance(meta, dict) and meta.get(k) in ({}, [])]
    if not drop and not drop_meta:
        return obj
    out = {k: v for k, v in obj.items() if k not in drop}
    if drop_meta and isinstance(meta, dict):
        out["metadata"] = {k: v for k, v in meta.items() if k not in drop_meta}
    return out


# Timestamps -----------------------------------------------------------------------------------------

# metav1.Time parses RFC 3339 (fraction optional); metav1.MicroTime needs exactly six fraction digits.
_TIME = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d+)?(Z|[+-]\d\d:\d\d)$")
_MICRO_TIME = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{6}(Z|[+-]\d\d:\d\d)$")
TIME_LAYOUT = "2006-01-02T15:04:05Z07:00"
MICRO_TIME_LAYOUT = "2006-01-02T15:04:05.000000Z07:00"

# Built-in kinds: (path, micro) of timestamp fields; "*" stands for every item of a list.
TIME_FIELDS: dict[str, tuple[tuple[tuple[str, ...], bool], ...]] = {
    "Lease": ((("spec", "acquireTime"), True), (("spec", "renewTime"), True)),
    "Event": ((("eventTime",), True), (("firstTimestamp",), False), (("lastTimestamp",), False)),
    "Node": (
        (("status", "conditions", "*", "lastTransitionTime"), False),
        (("status", "conditions", "*", "lastHeartbeatTime"), False),
    ),
    "Pod": (
        (("status", "startTime"), False),
        (("status", "conditions", "*", "lastTransitionTime"), False),
        (("status", "conditions", "*", "lastProbeTime"), False),
    ),
}


def _values_at(obj: Any, path: tuple[str, ...], prefix: str = "") -> list[tuple[str, Any]]:
    if not path:
        return [(prefix, obj)]
    head, rest = path[0], path[1:]
    if head == "*":
        if not isinstance(obj, list):
            return []
        return [found for i, item in enumerate(obj) for found in _values_at(item, rest, f"{prefix}[{i}]")]
    if not isinstance(obj, dict) or obj.get(head) is None:
        return []
    return _values_at(obj[head], rest, f"{prefix}.{head}" if prefix else head)


def undecodable_time(kind: str, obj: dict[str, Any]) -> str | None:
    """Why a built-in object's timestamp cannot be decoded (the apiserver answers 400), or None."""
    for path, micro in TIME_FIELDS.get(kind, ()):
        for field, value in _values_at(obj, path):
            pattern, layout = (_MICRO_TIME, MICRO_TIME_LAYOUT) if micro else (_TIME, TIME_LAYOUT)
            if not isinstance(value, str) or not pattern.match(value):
                return f'parsing time "{value}" as "{layout}": {_time_parse_error(value, micro, field)}'
    return None


_WHOLE_SECONDS = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d")


def _time_parse_error(value: object, micro: bool, field: str) -> str:
    """Go's time.Parse error for the common mistake (a MicroTime without its six fraction digits)."""
    if micro and isinstance(value, str) and (m := _WHOLE_SECONDS.match(value)):
        rest = value[m.end() :]
        if not rest.startswith("."):
            return f'cannot parse "{rest}" as ".000000"'
    return f"cannot parse it ({field})"


def is_date_time(value: object) -> bool:
    """The `format: date-time` check CRD schemas get (RFC 3339, fraction optional)."""
    return not isinstance(value, str) or bool(_TIME.match(value))
