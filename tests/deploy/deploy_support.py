"""Reading the install manifests, and the two small evaluators the deploy tests judge them with.

- :func:`manifests` loads every object the kustomization lists, as ``kubectl kustomize`` would emit it
  (the kustomization only lists files and sets the namespace, so reading the files is enough).
- :func:`structural_to_jsonschema` turns a CRD's ``openAPIV3Schema`` into plain JSON Schema, so one
  validator checks objects against both our CRDs and the MCO's.
- :class:`Rbac` answers "may this ServiceAccount do this?" from the Roles, ClusterRoles and bindings,
  the way the API server's RBAC authorizer does for the subset of rules we write.
"""

from __future__ import annotations

import copy
import dataclasses
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

import yaml

REPO = Path(__file__).resolve().parents[2]
DEPLOY = REPO / "deploy"

Obj = dict[str, Any]

CLUSTER_SCOPED_KINDS = frozenset(
    {
        "Namespace",
        "CustomResourceDefinition",
        "ClusterRole",
        "ClusterRoleBinding",
        "ValidatingWebhookConfiguration",
        "MutatingWebhookConfiguration",
        "PriorityClass",
    }
)


def kustomization(directory: Path = DEPLOY) -> Obj:
    loaded: Obj = yaml.safe_load((directory / "kustomization.yaml").read_text())
    return loaded


def manifests(directory: Path = DEPLOY) -> list[Obj]:
    """Every object of the kustomization, namespaced ones placed in its ``namespace``."""
    spec = kustomization(directory)
    namespace = spec.get("namespace")
    objects: list[Obj] = []
    for entry in spec["resources"]:
        path = directory / entry
        for doc in yaml.safe_load_all(path.read_text()):
            if doc is None:
                continue
            if namespace and doc["kind"] not in CLUSTER_SCOPED_KINDS:
                doc["metadata"]["namespace"] = namespace
            objects.append(doc)
    return objects


def object_id(obj: Mapping[str, Any]) -> str:
    return f"{obj['kind']}/{obj['metadata']['name']}"


def find(objects: Iterable[Obj], kind: str, name: str) -> Obj:
    for obj in objects:
        if obj["kind"] == kind and obj["metadata"]["name"] == name:
            return obj
    raise AssertionError(f"deploy/ has no {kind} {name}")


def crd_schema(crd: Mapping[str, Any], version: str = "v1") -> Obj:
    for v in crd["spec"]["versions"]:
        if v["name"] == version:
            schema: Obj = v["schema"]["openAPIV3Schema"]
            return schema
    raise AssertionError(f"CRD {crd['metadata']['name']} serves no version {version}")


def structural_to_jsonschema(schema: Mapping[str, Any]) -> Obj:
    """The JSON Schema equivalent of a structural ``openAPIV3Schema`` (only what validation needs).

    ``x-kubernetes-int-or-string`` becomes "integer or string", ``nullable`` adds ``null`` to the type;
    ``x-kubernetes-preserve-unknown-fields`` needs nothing (JSON Schema keeps unknown fields unless told
    otherwise) and CEL ``x-kubernetes-validations`` are left out.
    """
    out: Obj = {}
    for key, value in schema.items():
        if key in ("properties", "patternProperties"):
            out[key] = {name: structural_to_jsonschema(sub) for name, sub in value.items()}
        elif key in ("items", "additionalProperties", "not") and isinstance(value, Mapping):
            out[key] = structural_to_jsonschema(value)
        elif key in ("anyOf", "allOf", "oneOf"):
            out[key] = [structural_to_jsonschema(sub) for sub in value]
        elif key.startswith("x-kubernetes-") or key == "nullable":
            continue
        else:
            out[key] = copy.deepcopy(value)
    if schema.get("x-kubernetes-int-or-string"):
        out.pop("anyOf", None)
        out["type"] = ["integer", "string"]
    if schema.get("nullable") and "type" in out:
        types = out["type"] if isinstance(out["type"], list) else [out["type"]]
        out["type"] = [*types, "null"]
    return out


@dataclasses.dataclass(frozen=True)
class Request:
    """One API request as RBAC sees it."""

    verb: str
    resource: str  # plural, or plural/subresource
    group: str = ""
    namespace: str = ""  # empty: a cluster-scoped object, or a request across all namespaces
    name: str = ""


class Rbac:
    """Which requests the bound Roles and ClusterRoles allow a ServiceAccount."""

    def __init__(self, objects: Iterable[Obj]):
        objects = list(objects)
        self.cluster_roles = {o["metadata"]["name"]: o for o in objects if o["kind"] == "ClusterRole"}
        self.roles = {
            (o["metadata"]["namespace"], o["metadata"]["name"]): o for o in objects if o["kind"] == "Role"
        }
        self.bindings = [o for o in objects if o["kind"] in ("RoleBinding", "ClusterRoleBinding")]

    def rules_for(self, namespace: str, service_account: str, request_namespace: str) -> list[Obj]:
        """The rules that apply to this ServiceAccount for a request in ``request_namespace``."""
        rules: list[Obj] = []
        for binding in self.bindings:
            if not any(
                s["kind"] == "ServiceAccount" and s["name"] == service_account and s["namespace"] == namespace
                for s in binding.get("subjects", [])
            ):
                continue
            ref = binding["roleRef"]
            if binding["kind"] == "RoleBinding":
                if binding["metadata"]["namespace"] != request_namespace:
                    continue  # a RoleBinding grants only inside its namespace
                role = (
                    self.cluster_roles.get(ref["name"])
                    if ref["kind"] == "ClusterRole"
                    else self.roles.get((binding["metadata"]["namespace"], ref["name"]))
                )
            else:
                role = self.cluster_roles.get(ref["name"])
            if role is not None:
                rules.extend(role.get("rules", []))
        return rules

    def allows(self, namespace: str, service_account: str, request: Request) -> bool:
        for rule in self.rules_for(namespace, service_account, request.namespace):
            if request.group not in rule.get("apiGroups", []):
                continue
            if request.resource not in rule.get("resources", []):
                continue
            if request.verb not in rule.get("verbs", []):
                continue
            names = rule.get("resourceNames")
            if names and request.name not in names:
                continue
            return True
        return False


OBJECTS = manifests()
OBJECTS_BY_ID = {object_id(o): o for o in OBJECTS}
