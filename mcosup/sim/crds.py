"""The table of resource types the emulator serves, and the CustomResourceDefinitions that change it.

A CRD's create or update registers its kinds (they are served at once, as the apiextensions
controllers make them Established a moment later on a real cluster); its deletion removes every
custom resource of it, ends their watches and unregisters the kinds. A CRD written through the API
is checked and given the status the apiextensions controllers would write (`NamesAccepted`,
`Established`, `storedVersions`).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from mcosup.sim import errors
from mcosup.sim.resources import ResourceType, from_crd
from mcosup.sim.state import EmulatorState
from mcosup.sim.store import DELETED
from mcosup.sim.wire import timestamp


class ResourceTypes(EmulatorState):
    """Lookups in the type table; CRD registration and the CRD's own checks and status."""

    def _type_for_object(self, body: Mapping[str, Any]) -> tuple[ResourceType, str]:
        api_version = str(body.get("apiVersion", ""))
        group, _, version = api_version.rpartition("/")
        kind = body.get("kind")
        for (g, v, _), rt in self._types.items():
            if g == group and v == version and rt.kind == kind:
                return rt, version
        raise errors.not_found("kinds", group, f"{kind} in {api_version}")

    def _rt_for_key(self, rt_key: tuple[str, str]) -> ResourceType | None:
        for (group, _, plural), rt in self._types.items():
            if (group, plural) == rt_key:
                return rt
        return None

    def _register_crd(self, crd: dict[str, Any]) -> None:
        name = crd["metadata"]["name"]
        for rt in self._crd_types.pop(name, []):
            self._types.pop((rt.group, rt.version, rt.plural), None)
        types = from_crd(crd)
        self._crd_types[name] = types
        for rt in types:
            self._types[(rt.group, rt.version, rt.plural)] = rt

    def _unregister_crd(self, crd: dict[str, Any]) -> None:
        name = crd["metadata"]["name"]
        types = self._crd_types.pop(name, [])
        if not types:
            return
        rt = types[0]
        for obj in list(self.store.items(rt.key)):
            self.store.commit(rt.key, {**obj, "metadata": dict(obj["metadata"])}, DELETED, obj)
        for watcher in list(self.store.log(rt.key).watchers):
            watcher.cut(False)
        for t in types:
            self._types.pop((t.group, t.version, t.plural), None)

    def _crd_prepare(self, obj: dict[str, Any], old: dict[str, Any] | None) -> dict[str, Any]:
        spec = obj.get("spec") or {}
        names = spec.get("names") or {}
        name = obj["metadata"]["name"]
        causes = []
        expected = f"{names.get('plural', '')}.{spec.get('group', '')}"
        if name != expected:
            causes.append(
                {
                    "reason": "FieldValueInvalid",
                    "field": "metadata.name",
                    "message": f'Invalid value: "{name}": must be spec.names.plural+"."+spec.group',
                }
            )
        versions = spec.get("versions") or []
        if not versions:
            causes.append(
                {"reason": "FieldValueRequired", "field": "spec.versions", "message": "Required value"}
            )
        elif sum(1 for v in versions if v.get("storage")) != 1:
            causes.append(
                {
                    "reason": "FieldValueInvalid",
                    "field": "spec.versions",
                    "message": "Invalid value: must have exactly one version marked as storage version",
                }
            )
        if not names.get("kind"):
            causes.append(
                {"reason": "FieldValueRequired", "field": "spec.names.kind", "message": "Required value"}
            )
        if causes:
            raise errors.invalid("CustomResourceDefinition", "apiextensions.k8s.io", name, causes)
        storage = next(str(v["name"]) for v in versions if v.get("storage"))
        obj["spec"] = {**spec, "conversion": spec.get("conversion") or {"strategy": "None"}}
        if old is None:
            # As written by the create; the names and Established conditions come a moment later from
            # the apiextensions controllers (here: the write right after, see _create).
            obj["status"] = {
                "conditions": None,
                "acceptedNames": {"kind": "", "plural": ""},
                "storedVersions": [storage],
            }
        elif obj.get("status") in (None, {}):
            obj["status"] = self._crd_established_status(obj, old)
        return obj

    def _crd_established_status(self, obj: dict[str, Any], old: dict[str, Any] | None) -> dict[str, Any]:
        """The status of a CRD whose names are accepted and which is Established."""
        spec = obj.get("spec") or {}
        names = spec.get("names") or {}
        storage = next(str(v["name"]) for v in spec.get("versions") or [] if v.get("storage"))
        accepted = {k: v for k, v in names.items()}
        accepted.setdefault("singular", str(names.get("kind", "")).lower())
        accepted.setdefault("listKind", f"{names.get('kind')}List")
        now = timestamp()
        stored_versions = sorted({*((old or {}).get("status") or {}).get("storedVersions", []), storage})
        return {
            "conditions": [
                {
                    "type": "NamesAccepted",
                    "status": "True",
                    "reason": "NoConflicts",
                    "message": "no conflicts found",
                    "lastTransitionTime": now,
                },
                {
                    "type": "Established",
                    "status": "True",
                    "reason": "InitialNamesAccepted",
                    "message": "the initial names have been accepted",
                    "lastTransitionTime": now,
                },
            ],
            "acceptedNames": accepted,
            "storedVersions": stored_versions,
        }
