"""What a create or update must pass before admission and the store, kind by kind.

The apiserver's registry strategies in short: object names (RFC 1123 subdomains, labels for
Namespaces, DNS-1035 for Services, path segments for RBAC), refusing new content in a terminating
namespace, pruning unknown fields (a warning each, or 400 under `fieldValidation=Strict`), and the
defaulting and validation of each kind: CRD schemas (:mod:`mcosup.sim.schema`) for custom resources,
:mod:`mcosup.sim.gotypes`, :mod:`mcosup.sim.defaults` and :mod:`mcosup.sim.validation` for built-in
kinds.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any, NoReturn

from mcosup.sim import defaults, errors, gotypes, jobspec, schema, validation
from mcosup.sim.crds import ResourceTypes
from mcosup.sim.resources import ResourceType
from mcosup.sim.wire import Ctx, Target

_SUBDOMAIN = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$")
_LABEL = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")
_DNS1035 = re.compile(r"^[a-z]([-a-z0-9]*[a-z0-9])?$")
# Built-in kinds whose validation is one function of the object (Secret and Pod need more).
_BUILTIN_CAUSES: dict[str, Callable[[dict[str, Any]], list[validation.Cause]]] = {
    "ConfigMap": validation.configmap_causes,
    "Event": validation.event_causes,
    "ValidatingWebhookConfiguration": validation.webhook_configuration_causes,
}


class WriteChecks(ResourceTypes):
    """Names, namespaces, pruning, defaults and validation of an object about to be written."""

    def _validate_name(self, rt: ResourceType, name: str) -> None:
        if rt.builtin and rt.group == "rbac.authorization.k8s.io":
            # RBAC names are path segment names ("system:controller:x" is fine).
            if name in (".", "..") or "/" in name or "%" in name:
                _invalid_name(rt, name, "may not be '.' or '..' and may not contain '/' or '%'")
            return
        if rt.builtin and rt.kind == "Service" and not (_DNS1035.match(name) and len(name) <= 63):
            _invalid_name(
                rt,
                name,
                "a DNS-1035 label must consist of lower case alphanumeric characters or '-', start with an "
                "alphabetic character, and end with an alphanumeric character (e.g. 'my-name',  or "
                "'abc-123', regex used for validation is '[a-z]([-a-z0-9]*[a-z0-9])?')",
            )
        # The wording and examples of apimachinery's validation messages (its RegexError).
        if rt.kind == "Namespace":
            ok = bool(_LABEL.match(name)) and len(name) <= 63
            message = (
                "a lowercase RFC 1123 label must consist of lower case alphanumeric characters or '-', and "
                "must start and end with an alphanumeric character (e.g. 'my-name',  or '123-abc', regex "
                "used for validation is '[a-z0-9]([-a-z0-9]*[a-z0-9])?')"
            )
        else:
            ok = bool(_SUBDOMAIN.match(name)) and len(name) <= 253
            message = (
                "a lowercase RFC 1123 subdomain must consist of lower case alphanumeric characters, '-' or "
                "'.', and must start and end with an alphanumeric character (e.g. 'example.com', regex used "
                r"for validation is '[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*')"
            )
        if not ok:
            _invalid_name(rt, name, message)

    def _check_namespace_open(self, rt: ResourceType, namespace: str, name: str) -> None:
        ns = self.store.get(("", "namespaces"), None, namespace)
        if ns is None:
            raise errors.not_found("namespaces", "", namespace)
        if ns["metadata"].get("deletionTimestamp"):
            refused = errors.forbidden(
                f'{errors.qualified(rt.plural, rt.group)} "{name}" is forbidden: '
                f"unable to create new content "
                f"in namespace {namespace} because it is being terminated",
                rt.plural,
                rt.group,
                name,
            )
            assert refused.details is not None
            refused.details["causes"] = [
                {
                    "reason": "NamespaceTerminating",
                    "message": f"namespace {namespace} is being terminated",
                    "field": "metadata.namespace",
                }
            ]
            raise refused

    def _defaults_and_validation(
        self, t: Target, ctx: Ctx, obj: dict[str, Any], old: dict[str, Any] | None
    ) -> dict[str, Any]:
        rt = t.rt
        name = obj["metadata"]["name"]
        obj, dropped = gotypes.prune_unknown(rt.kind, obj, rt.builtin)
        self._unknown_fields(ctx, t, dropped)
        meta_causes = validation.metadata_causes(obj["metadata"])
        if meta_causes:
            raise errors.invalid(rt.kind, rt.group, name, meta_causes)
        if not rt.builtin:
            schema_doc = rt.schemas.get(t.version)
            if schema_doc:
                obj, dropped = schema.prune_and_default(obj, schema_doc)
                self._unknown_fields(ctx, t, dropped)
                # The schema and its CEL rules; `old` (None on create) for the transition rules.
                causes = schema.validate(obj, schema_doc, old)
                if causes:
                    raise errors.invalid(rt.kind, rt.group, name, causes)
            return obj
        obj = gotypes.omit_empty(rt.kind, obj)
        if rt.kind == "ValidatingWebhookConfiguration":  # defaulted before it is validated
            obj = defaults.webhook_configuration_defaults(obj)
        bad_time = gotypes.undecodable_time(rt.kind, obj)
        if bad_time is not None:
            raise errors.bad_request(
                f'{rt.kind} in version "{t.version}" cannot be handled as a {rt.kind}: {bad_time}'
            )
        if rt.kind == "Secret":
            bad_base64 = gotypes.undecodable_secret_data(obj)
            if bad_base64 is not None:
                raise errors.bad_request(
                    f'Secret in version "v1" cannot be handled as a Secret: {bad_base64}'
                )
            obj, causes = validation.normalise_secret(obj)
            if causes:
                raise errors.invalid(rt.kind, rt.group, name, causes)
        elif rt.kind in _BUILTIN_CAUSES:
            causes = _BUILTIN_CAUSES[rt.kind](obj)
            if causes:
                raise errors.invalid(rt.kind, rt.group, name, causes)
        if rt.kind == "Pod":
            obj = defaults.pod_defaults(obj)
            causes = validation.pod_causes(obj, old)
            if causes:
                raise errors.invalid(rt.kind, rt.group, name, causes)
        elif rt.kind == "CustomResourceDefinition":
            obj = self._crd_prepare(obj, old)
        elif rt.kind == "Namespace":
            obj = defaults.namespace_defaults(obj)
        elif rt.kind == "Node":
            obj = defaults.node_defaults(obj, created=old is None)
        elif rt.kind in ("Deployment", "DaemonSet") and rt.group == "apps":
            obj = defaults.workload_defaults(rt.kind, obj, old)
        elif rt.kind == "Job" and rt.group == "batch":
            obj = jobspec.job_defaults(obj, old)
            causes = jobspec.job_causes(obj) + (jobspec.job_update_causes(obj, old) if old else [])
            if causes:
                raise errors.invalid(rt.kind, rt.group, name, causes)

        elif rt.kind == "PodDisruptionBudget":
            spec = obj.get("spec") or {}
            if spec.get("minAvailable") is not None and spec.get("maxUnavailable") is not None:
                raise errors.invalid(
                    rt.kind,
                    rt.group,
                    name,
                    [
                        {
                            "reason": "FieldValueInvalid",
                            "field": "spec",
                            "message": "Invalid value: {}: "
                            "minAvailable and maxUnavailable cannot be both set",
                        }
                    ],
                )
        return obj

    def _unknown_fields(self, ctx: Ctx, t: Target, dropped: list[str]) -> None:
        """Pruned fields: a warning each (fieldValidation=Warn, the default) or a 400 when Strict."""
        if not dropped:
            return
        mode = ctx.query.get("fieldValidation", "Warn")
        if mode == "Strict":
            kind = t.rt.kind
            raise errors.bad_request(
                f'{kind} in version "{t.version}" cannot be handled as a {kind}: strict decoding error: '
                + ", ".join(f'unknown field "{p}"' for p in dropped)
            )
        if mode == "Warn":
            ctx.warnings.extend(f'unknown field "{p}"' for p in dropped)


def _invalid_name(rt: ResourceType, name: str, why: str) -> NoReturn:
    """422 for an object name the real API server refuses, in its words."""
    cause = {
        "reason": "FieldValueInvalid",
        "field": "metadata.name",
        "message": f'Invalid value: "{name}": {why}',
    }
    raise errors.invalid(rt.kind, rt.group, name, [cause])
