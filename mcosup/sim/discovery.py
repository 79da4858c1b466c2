"""Discovery documents: the API groups, versions and resources the emulator serves, and OpenAPI.

Pure: built from the emulator's table of resource types, `(group, version, plural) -> ResourceType`.
The OpenAPI v3 documents are minimal on purpose: kubectl looks for a PATCH operation tagged with the
kind's group/version/kind that accepts the `fieldValidation` query parameter; finding it, it sends
`fieldValidation=Strict` and leaves validation to the server instead of needing schemas (which would
otherwise come from the protobuf OpenAPI v2 document). No schemas are published, so kubectl computes
strategic patches from its compiled-in types.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from mcosup.sim.resources import ResourceType, api_resource_entries

Types = Mapping[tuple[str, str, str], ResourceType]


def groups(types: Types) -> dict[str, list[str]]:
    """Named groups and their versions, in registration order (the first is preferred)."""
    out: dict[str, list[str]] = {}
    for group, version, _ in types:
        if group:
            versions = out.setdefault(group, [])
            if version not in versions:
                versions.append(version)
    return out


def group(types: Types, name: str) -> dict[str, Any] | None:
    versions = groups(types).get(name)
    if not versions:
        return None
    entries = [{"groupVersion": f"{name}/{v}", "version": v} for v in versions]
    return {
        "kind": "APIGroup",
        "apiVersion": "v1",
        "name": name,
        "versions": entries,
        "preferredVersion": entries[0],
    }


def group_list(types: Types) -> dict[str, Any]:
    docs = [group(types, name) for name in groups(types)]
    return {"kind": "APIGroupList", "apiVersion": "v1", "groups": [d for d in docs if d]}


def serves(types: Types, group_name: str, version: str) -> bool:
    """Whether the group/version has resources (checked on every request: no document is built)."""
    return any(g == group_name and v == version for g, v, _ in types)


def resource_list(types: Types, group_name: str, version: str) -> dict[str, Any] | None:
    resources: list[dict[str, Any]] = []
    for (g, v, _), rt in types.items():
        if g == group_name and v == version:
            resources.extend(api_resource_entries(rt))
    if not resources:
        return None
    group_version = f"{group_name}/{version}" if group_name else version
    return {
        "kind": "APIResourceList",
        "apiVersion": "v1",
        "groupVersion": group_version,
        "resources": resources,
    }


def _paths(types: Types) -> dict[str, list[ResourceType]]:
    out: dict[str, list[ResourceType]] = {}
    for (group_name, version, _), rt in types.items():
        key = f"apis/{group_name}/{version}" if group_name else f"api/{version}"
        out.setdefault(key, []).append(rt)
    return out


def openapi_v3_index(types: Types, revision: int) -> dict[str, Any]:
    return {
        "paths": {key: {"serverRelativeURL": f"/openapi/v3/{key}?hash={revision}"} for key in _paths(types)}
    }


def openapi_v3_document(types: Types, key: str, server_version: str) -> dict[str, Any] | None:
    """The document for one group-version (`api/v1`, `apis/apps/v1`), or None when not served."""
    served = _paths(types).get(key)
    if served is None:
        return None
    query = {"in": "query", "schema": {"type": "string"}, "uniqueItems": True}
    paths: dict[str, Any] = {}
    for rt in served:
        prefix = f"/{key}/namespaces/{{namespace}}" if rt.namespaced else f"/{key}"
        paths[f"{prefix}/{rt.plural}/{{name}}"] = {
            "patch": {
                "operationId": f"patch{rt.kind}",
                "x-kubernetes-action": "patch",
                "x-kubernetes-group-version-kind": {
                    "group": rt.group,
                    "version": rt.version,
                    "kind": rt.kind,
                },
                "parameters": [
                    {"name": name, **query} for name in ("fieldValidation", "dryRun", "fieldManager")
                ],
                "responses": {"200": {"description": "OK"}},
            }
        }
    return {
        "openapi": "3.0.0",
        "info": {"title": "Kubernetes", "version": server_version},
        "paths": paths,
        "components": {"schemas": {}},
    }
