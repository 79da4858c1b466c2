"""The resource types the emulator serves: built-in kinds and those registered by CRDs.

Pure: descriptors and the discovery documents derived from them; no I/O.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

STANDARD_VERBS = ("create", "delete", "deletecollection", "get", "list", "patch", "update", "watch")


@dataclass(frozen=True)
class ResourceType:
    group: str
    version: str
    plural: str
    singular: str
    kind: str
    namespaced: bool
    short_names: tuple[str, ...] = ()
    # The kind has a /status subresource: the main endpoint ignores status changes and /status
    # ignores everything else.
    status_subresource: bool = False
    # metadata.generation is set to 1 on create and bumped when anything but metadata/status changes.
    tracks_generation: bool = False
    # Status the server sets on create (None: keep what the client sent).
    initial_status: dict[str, Any] | None = None
    builtin: bool = True
    extra_subresources: tuple[str, ...] = ()
    categories: tuple[str, ...] = ()
    # For custom resources: every served version and the schema of each (name -> openAPIV3Schema).
    versions: tuple[str, ...] = ()
    schemas: dict[str, Any] = field(default_factory=dict, compare=False, hash=False)
    printer_columns: dict[str, Any] = field(default_factory=dict, compare=False, hash=False)
    crd_name: str = ""

    @property
    def api_version(self) -> str:
        return f"{self.group}/{self.version}" if self.group else self.version

    @property
    def key(self) -> tuple[str, str]:
        """Storage identity: objects are stored once per group and resource, whatever the version."""
        return (self.group, self.plural)

    def api_version_for(self, version: str) -> str:
        return f"{self.group}/{version}" if self.group else version

    @property
    def served_versions(self) -> tuple[str, ...]:
        return self.versions or (self.version,)

    @property
    def returns_deleted_object(self) -> bool:
        """A DELETE that removes the object answers with it (else with a Status), per the real registry."""
        return self.builtin and self.plural in _RETURN_DELETED

    def subresources(self) -> tuple[str, ...]:
        subs = ("status",) if self.status_subresource else ()
        return subs + self.extra_subresources


# The built-in resources whose registry store sets ReturnDeletedObject (checked against kube-apiserver).
_RETURN_DELETED = frozenset(
    {"pods", "serviceaccounts", "services", "namespaces", "customresourcedefinitions"}
)


def _builtin(
    group: str,
    version: str,
    plural: str,
    kind: str,
    namespaced: bool,
    *,
    short: tuple[str, ...] = (),
    status: bool = False,
    generation: bool = False,
    initial_status: dict[str, Any] | None = None,
    extra: tuple[str, ...] = (),
    categories: tuple[str, ...] = (),
) -> ResourceType:
    return ResourceType(
        group=group,
        version=version,
        plural=plural,
        singular=kind.lower(),
        kind=kind,
        namespaced=namespaced,
        short_names=short,
        status_subresource=status,
        tracks_generation=generation,
        initial_status=initial_status,
        extra_subresources=extra,
        categories=categories,
    )


BUILTINS: tuple[ResourceType, ...] = (
    _builtin(
        "",
        "v1",
        "namespaces",
        "Namespace",
        False,
        short=("ns",),
        status=True,
        initial_status={"phase": "Active"},
    ),
    _builtin("", "v1", "nodes", "Node", False, short=("no",), status=True),
    _builtin(
        "",
        "v1",
        "pods",
        "Pod",
        True,
        short=("po",),
        status=True,
        generation=True,  # spec changes bump it, as on kube-apiserver v1.36
        initial_status={"phase": "Pending"},
        extra=("binding", "eviction", "log"),
        categories=("all",),
    ),
    _builtin("", "v1", "configmaps", "ConfigMap", True, short=("cm",)),
    _builtin("", "v1", "secrets", "Secret", True),
    _builtin("", "v1", "serviceaccounts", "ServiceAccount", True, short=("sa",)),
    _builtin(
        "",
        "v1",
        "services",
        "Service",
        True,
        short=("svc",),
        status=True,
        initial_status={"loadBalancer": {}},
        categories=("all",),
    ),
    _builtin("", "v1", "events", "Event", True, short=("ev",)),
    _builtin("coordination.k8s.io", "v1", "leases", "Lease", True),
    _builtin(
        "policy",
        "v1",
        "poddisruptionbudgets",
        "PodDisruptionBudget",
        True,
        short=("pdb",),
        status=True,
        generation=True,
        initial_status={"disruptionsAllowed": 0, "currentHealthy": 0, "desiredHealthy": 0, "expectedPods": 0},
    ),
    _builtin(
        "apps",
        "v1",
        "daemonsets",
        "DaemonSet",
        True,
        short=("ds",),
        status=True,
        generation=True,
        initial_status={
            "currentNumberScheduled": 0,
            "numberMisscheduled": 0,
            "desiredNumberScheduled": 0,
            "numberReady": 0,
        },
        categories=("all",),
    ),
    _builtin(
        "apps",
        "v1",
        "deployments",
        "Deployment",
        True,
        short=("deploy",),
        status=True,
        generation=True,
        initial_status={},
        categories=("all",),
    ),
    _builtin(
        "batch",
        "v1",
        "jobs",
        "Job",
        True,
        status=True,
        generation=True,
        initial_status={},
        categories=("all",),
    ),
    _builtin(
        "admissionregistration.k8s.io",
        "v1",
        "validatingwebhookconfigurations",
        "ValidatingWebhookConfiguration",
        False,
        generation=True,
        categories=("api-extensions",),
    ),
    # RBAC objects are stored (installs create them) but not enforced: every user may do everything.
    _builtin("rbac.authorization.k8s.io", "v1", "roles", "Role", True),
    _builtin("rbac.authorization.k8s.io", "v1", "rolebindings", "RoleBinding", True),
    _builtin("rbac.authorization.k8s.io", "v1", "clusterroles", "ClusterRole", False),
    _builtin("rbac.authorization.k8s.io", "v1", "clusterrolebindings", "ClusterRoleBinding", False),
    _builtin(
        "apiextensions.k8s.io",
        "v1",
        "customresourcedefinitions",
        "CustomResourceDefinition",
        False,
        short=("crd", "crds"),
        status=True,
        generation=True,
        initial_status={},
        categories=("api-extensions",),
    ),
)

# The Eviction kind posted to pods/eviction.
EVICTION_GROUP, EVICTION_VERSION, EVICTION_KIND = "policy", "v1", "Eviction"


def from_crd(crd: dict[str, Any]) -> list[ResourceType]:
    """One ResourceType per served version of a CRD (all share storage)."""
    spec = crd.get("spec") or {}
    names = spec.get("names") or {}
    versions = [v for v in spec.get("versions") or [] if v.get("served", True)]
    served = tuple(str(v["name"]) for v in versions)
    schemas = {str(v["name"]): (v.get("schema") or {}).get("openAPIV3Schema") for v in versions}
    printer_columns = {str(v["name"]): list(v.get("additionalPrinterColumns") or []) for v in versions}
    out: list[ResourceType] = []
    for v in versions:
        subresources = v.get("subresources") or {}
        out.append(
            ResourceType(
                group=str(spec.get("group", "")),
                version=str(v["name"]),
                plural=str(names.get("plural", "")),
                singular=str(names.get("singular") or str(names.get("kind", "")).lower()),
                kind=str(names.get("kind", "")),
                namespaced=spec.get("scope", "Namespaced") == "Namespaced",
                short_names=tuple(names.get("shortNames") or ()),
                status_subresource="status" in subresources,
                tracks_generation=True,
                initial_status=None,
                builtin=False,
                categories=tuple(names.get("categories") or ()),
                versions=served,
                schemas=schemas,
                printer_columns=printer_columns,
                crd_name=str((crd.get("metadata") or {}).get("name", "")),
            )
        )
    return out


def api_resource_entries(rt: ResourceType) -> list[dict[str, Any]]:
    """The APIResourceList entries for one resource type and its subresources."""
    entry: dict[str, Any] = {
        "name": rt.plural,
        "singularName": rt.singular,
        "namespaced": rt.namespaced,
        "kind": rt.kind,
        # Namespaces cannot be deleted as a collection (their registry has no DeleteCollection).
        "verbs": [
            v
            for v in STANDARD_VERBS
            if not (rt.builtin and rt.plural == "namespaces" and v == "deletecollection")
        ],
    }
    if rt.short_names:
        entry["shortNames"] = list(rt.short_names)
    if rt.categories:
        entry["categories"] = list(rt.categories)
    entries = [entry]
    if rt.status_subresource:
        entries.append(
            {
                "name": f"{rt.plural}/status",
                "singularName": "",
                "namespaced": rt.namespaced,
                "kind": rt.kind,
                "verbs": ["get", "patch", "update"],
            }
        )
    if "binding" in rt.extra_subresources:
        entries.append(
            {
                "name": f"{rt.plural}/binding",
                "singularName": "",
                "namespaced": rt.namespaced,
                "kind": "Binding",
                "verbs": ["create"],
            }
        )
    if "eviction" in rt.extra_subresources:
        entries.append(
            {
                "name": f"{rt.plural}/eviction",
                "singularName": "",
                "namespaced": rt.namespaced,
                "group": EVICTION_GROUP,
                "version": EVICTION_VERSION,
                "kind": EVICTION_KIND,
                "verbs": ["create"],
            }
        )
    if "log" in rt.extra_subresources:
        entries.append(
            {
                "name": f"{rt.plural}/log",
                "singularName": "",
                "namespaced": rt.namespaced,
                "kind": rt.kind,
                "verbs": ["get"],
            }
        )
    return entries
