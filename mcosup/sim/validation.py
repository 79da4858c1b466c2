"""Validation the apiserver applies to every object's metadata and to a few built-in kinds.

Pure: objects in, causes (`Status` field errors) out. These are the checks a controller most often
trips over on a real cluster, so the emulator must trip it too:

- metadata: label keys and values, annotation keys, ownerReferences (apiVersion, kind, name, uid);
- Event (core/v1): without `eventTime`, `involvedObject.namespace` must equal the Event's namespace
  and an Event about a cluster-scoped object (a Node, a MachineConfigPool) must live in `default`;
  with `eventTime`, such an Event may live in `default` or `kube-system` and needs
  `reportingComponent`, `reportingInstance` and `action`;
- Secret: `stringData` is merged into `data` (base64) and dropped, `type` defaults to Opaque, keys
  must be valid (whether `data` values are base64 the server checks while decoding, a 400:
  :mod:`mcosup.sim.gotypes`);
- Pod: containers with names and images, and a spec that updates may change only in images,
  activeDeadlineSeconds and tolerations (its defaults: :mod:`mcosup.sim.defaults`);
- ConfigMap: keys valid, no key in both `data` and `binaryData`;
- ValidatingWebhookConfiguration: webhook names (three-segment domains, unique), sideEffects,
  admissionReviewVersions, failurePolicy, timeoutSeconds (1-30), clientConfig (https url xor
  service), rules.

Custom resources are validated against their CRD's schema instead (:mod:`mcosup.sim.schema`).
"""

from __future__ import annotations

import base64
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
