"""Writes: create, update (PUT, also of `/status`) and patch (merge, JSON and strategic).

Server-set metadata (uid, timestamps, generation, generateName, resourceVersion), 409 AlreadyExists
and Conflict, `/status` and the main endpoint each keeping to their part of the object, no-op writes
that keep the resourceVersion, and the retry loop that rebuilds an unconditional update raced by
another while its webhooks ran.
"""

from __future__ import annotations

import logging
import secrets
import uuid
from collections.abc import Iterable, Mapping
from typing import Any

import orjson

from mcosup.sim import errors, patching
from mcosup.sim.deletion import Deletion
from mcosup.sim.store import ADDED, MODIFIED
from mcosup.sim.strategy import WriteChecks
from mcosup.sim.wire import Ctx, Target, as_version, timestamp, write_options

log = logging.getLogger(__name__)

SERVER_META = ("uid", "creationTimestamp", "deletionTimestamp", "deletionGracePeriodSeconds", "generation")
_GENERATE_ALPHABET = "bcdfghjklmnpqrstvwxz2456789"


class Writes(WriteChecks, Deletion):
    """POST of a new object, PUT and PATCH of an existing one."""

    def _decode(self, body: Any, t: Target) -> dict[str, Any]:
        if not isinstance(body, dict):
            raise errors.bad_request("the body of the request must be a JSON object")
        api_version = t.api_version
        if body.get("apiVersion") and body["apiVersion"] != api_version:
            raise errors.bad_request(
                f"the API version in the data ({body['apiVersion']}) does not match the expected API "
                f"version ({api_version})"
            )
        if body.get("kind") and body["kind"] != t.rt.kind:
            if t.rt.builtin and not t.rt.group:
                # The core group's decoder tries to convert the object it was given, and cannot.
                raise errors.bad_request(
                    f'{body["kind"]} in version "{t.version}" cannot be handled as a {t.rt.kind}: '
                    f"converting ({t.version}.{body['kind']}) to (core.{t.rt.kind}): unknown conversion"
                )
            raise errors.bad_request(
                f"the kind in the data ({body['kind']}) does not match the expected kind ({t.rt.kind})"
            )
        obj = {"apiVersion": api_version, "kind": t.rt.kind, **body}
        obj["apiVersion"], obj["kind"] = api_version, t.rt.kind
        meta = obj.get("metadata")
        obj["metadata"] = dict(meta) if isinstance(meta, dict) else {}
        return obj

    async def _create(self, t: Target, ctx: Ctx, body: Any) -> dict[str, Any]:
        rt = t.rt
        obj = self._decode(body, t)
        meta = obj["metadata"]
        if rt.namespaced:
            if meta.get("namespace") and t.namespace and meta["namespace"] != t.namespace:
                raise errors.bad_request(
                    "the namespace of the provided object does not match the namespace sent on the request"
                )
            if not t.namespace:
                raise errors.method_not_allowed()
            meta["namespace"] = t.namespace
        else:
            meta.pop("namespace", None)
        if not meta.get("name"):
            if meta.get("generateName"):
                meta["name"] = str(meta["generateName"]) + "".join(
                    secrets.choice(_GENERATE_ALPHABET) for _ in range(5)
                )
            else:
                raise errors.invalid(
                    rt.kind,
                    rt.group,
                    "",
                    [
                        {
                            "reason": "FieldValueRequired",
                            "field": "metadata.name",
                            "message": "Required value: name or generateName is required",
                        }
                    ],
                )
        name = str(meta["name"])
        self._validate_name(rt, name)
        if meta.get("resourceVersion") not in (None, "", "0"):
            # etcd's store refuses it with a plain error: a 500 without reason or details.
            raise errors.storage("resourceVersion should not be set on objects to be created")
        for key in (
            "resourceVersion",
            "deletionTimestamp",
            "deletionGracePeriodSeconds",
            "selfLink",
            "managedFields",
        ):
            meta.pop(key, None)
        meta["uid"] = str(uuid.uuid4())
        meta["creationTimestamp"] = timestamp()
        if rt.tracks_generation:
            meta["generation"] = 1
        else:
            meta.pop("generation", None)
        if rt.builtin and rt.initial_status is not None:
            obj["status"] = dict(rt.initial_status)
        elif not rt.builtin and rt.status_subresource:
            obj.pop("status", None)
        obj = self._defaults_and_validation(t, ctx, obj, None)
        if rt.namespaced:
            assert t.namespace is not None
            self._check_namespace_open(rt, t.namespace, name)
        await self._admit(ctx, t, "CREATE", obj, None, name, write_options("CreateOptions", ctx))
        if self.store.get(rt.key, t.namespace, name) is not None:
            raise errors.already_exists(rt.plural, rt.group, name)
        if rt.namespaced:
            assert t.namespace is not None
            self._check_namespace_open(rt, t.namespace, name)
        if ctx.dry_run:
            return obj
        stored = self.store.commit(rt.key, obj, ADDED, None)
        if rt.kind == "CustomResourceDefinition" and rt.builtin:
            established = {**stored, "status": self._crd_established_status(stored, None)}
            self._register_crd(self.store.commit(rt.key, established, MODIFIED, stored))
        self._collect_if_dangling(rt, stored)
        return as_version(stored, t.api_version)

    def _prepare_update(self, t: Target, old: dict[str, Any], incoming: dict[str, Any]) -> dict[str, Any]:
        rt = t.rt
        old_meta = old["metadata"]
        if t.subresource == "status":
            new = {k: v for k, v in old.items() if k != "status"}
            if incoming.get("status") is not None:
                new["status"] = incoming["status"]
            meta = dict(old_meta)
        else:
            new = {k: v for k, v in incoming.items() if k != "status"}
            source = old if rt.status_subresource else incoming
            if source.get("status") is not None:
                new["status"] = source["status"]
            meta = dict(incoming.get("metadata") or {})
            for key in SERVER_META:
                if key in old_meta:
                    meta[key] = old_meta[key]
                else:
                    meta.pop(key, None)
            for key in ("selfLink", "managedFields", "generateName"):
                meta.pop(key, None)
            if "generateName" in old_meta:
                meta["generateName"] = old_meta["generateName"]
            meta["name"] = old_meta["name"]
            if rt.namespaced:
                meta["namespace"] = old_meta["namespace"]
            else:
                meta.pop("namespace", None)
            if old_meta.get("deletionTimestamp"):
                added = set(meta.get("finalizers") or []) - set(old_meta.get("finalizers") or [])
                if added:
                    cause = {
                        "reason": "FieldValueForbidden",
                        "field": "metadata.finalizers",
                        "message": "Forbidden: no new finalizers can be added "
                        "if the object is being deleted, "
                        f"found new finalizers {_go_strings(sorted(added))}",
                    }
                    # The real store checks object metadata twice (its own BeforeUpdate and the kind's
                    # strategy), so the cause comes twice; the message says it once.
                    raise errors.invalid(rt.kind, rt.group, old_meta["name"], [cause, dict(cause)])
        meta["resourceVersion"] = old_meta["resourceVersion"]
        new["metadata"] = meta
        new["apiVersion"] = t.api_version
        new["kind"] = rt.kind
        if rt.tracks_generation and _spec_view(new, rt.status_subresource) != _spec_view(
            old, rt.status_subresource
        ):
            meta["generation"] = int(old_meta.get("generation") or 0) + 1
        return new

    async def _update(self, t: Target, ctx: Ctx, body: Any) -> dict[str, Any]:
        assert t.name is not None
        incoming = self._decode(body, t)
        meta = incoming["metadata"]
        if meta.get("name") and meta["name"] != t.name:
            raise errors.bad_request(
                f"the name of the object ({meta['name']}) does not match the name on the URL ({t.name})"
            )
        if t.rt.namespaced and meta.get("namespace") and meta["namespace"] != t.namespace:
            raise errors.bad_request(
                "the namespace of the provided object does not match the namespace sent on the request"
            )
        wanted_rv = str(meta.get("resourceVersion") or "")
        return await self._write_loop(t, ctx, wanted_rv, lambda old: incoming)

    async def _patch(self, t: Target, ctx: Ctx, patch_type: str, patch: Any) -> dict[str, Any]:
        assert t.name is not None

        def apply(old: dict[str, Any]) -> dict[str, Any]:
            current = as_version(old, t.api_version)
            try:
                if patch_type == "merge":
                    if not isinstance(patch, dict):
                        raise patching.PatchError(
                            f"error decoding patch: json: cannot unmarshal {patching.go_json_type(patch)} "
                            "into Go value of type map[string]interface {}",
                            code=400,
                        )
                    result = patching.merge_patch(current, patch)
                elif patch_type == "json":
                    result = patching.json_patch(current, patch)
                else:
                    result = patching.strategic_merge_patch(current, patch, t.rt.kind)
            except patching.PatchError as exc:
                if exc.code == 400:
                    raise errors.bad_request(str(exc)) from None
                # The real server keeps why a patch does not apply to itself: a generic 422.
                log.debug("emulator: patch of %s does not apply: %s", t.name, exc)
                raise errors.ApiStatusError(
                    422, "Invalid", "the server rejected our request due to an error in our request", {}
                ) from None
            if not isinstance(result, dict):
                raise errors.bad_request("the patch did not produce an object")
            if result.get("apiVersion") != t.api_version or result.get("kind") != t.rt.kind:
                raise errors.bad_request("the patch must not change apiVersion or kind")
            if not isinstance(result.get("metadata"), dict):
                raise errors.bad_request("the patch removed metadata")
            if result["metadata"].get("name") != old["metadata"]["name"]:
                raise errors.bad_request(
                    f"the name of the object ({result['metadata'].get('name')}) does not match the name "
                    f"on the URL ({old['metadata']['name']})"
                )
            return result

        return await self._write_loop(t, ctx, None, apply)

    async def _write_loop(
        self,
        t: Target,
        ctx: Ctx,
        wanted_rv: str | None,
        make: Any,
    ) -> dict[str, Any]:
        """Build the new object from the current one, admit it, and commit it if nothing raced.

        `wanted_rv` None means "read it from the built object" (patches may carry one). An unconditional
        write that races with another while its webhooks run is rebuilt, as GuaranteedUpdate does.
        """
        assert t.name is not None
        rt = t.rt
        for _ in range(10):
            old = self.store.get(rt.key, t.namespace, t.name)
            if old is None:
                raise errors.not_found(rt.plural, rt.group, t.name)
            incoming = make(old)
            rv = (
                wanted_rv if wanted_rv is not None else str(incoming["metadata"].get("resourceVersion") or "")
            )
            current_rv = old["metadata"]["resourceVersion"]
            if rv and rv != current_rv:
                raise errors.conflict(rt.plural, rt.group, t.name)
            uid = incoming["metadata"].get("uid")
            if uid and uid != old["metadata"].get("uid"):
                raise errors.conflict(
                    rt.plural,
                    rt.group,
                    t.name,
                    f"Precondition failed: UID in precondition: {uid}, "
                    f"UID in object meta: {old['metadata'].get('uid')}",
                )
            new = self._prepare_update(t, old, incoming)
            new = self._defaults_and_validation(t, ctx, new, old)
            if _same(new, old):
                return as_version(old, t.api_version)
            await self._admit(ctx, t, "UPDATE", new, old, t.name, write_options("UpdateOptions", ctx))
            latest = self.store.get(rt.key, t.namespace, t.name)
            if latest is None:
                raise errors.not_found(rt.plural, rt.group, t.name)
            if latest["metadata"]["resourceVersion"] != current_rv:
                # An update's precondition fails now; a patch is applied again to the new version, as
                # GuaranteedUpdate does: only a resourceVersion the patch itself names then conflicts.
                if wanted_rv:
                    raise errors.conflict(rt.plural, rt.group, t.name)
                continue
            if ctx.dry_run:
                return new
            stored = self._commit_update(rt, new, old)
            return as_version(stored, t.api_version)
        raise errors.conflict(rt.plural, rt.group, t.name, "too many concurrent updates; try again")


def _go_strings(items: Iterable[str]) -> str:
    """A list of strings the way Go's %#v prints a []string: []string{"a", "b"}."""
    return "[]string{" + ", ".join(orjson.dumps(i).decode() for i in items) + "}"


def _spec_view(obj: Mapping[str, Any], status_subresource: bool) -> dict[str, Any]:
    skip = {"metadata", "kind", "apiVersion"} | ({"status"} if status_subresource else set())
    return {k: v for k, v in obj.items() if k not in skip}


def _same(new: Mapping[str, Any], old: Mapping[str, Any]) -> bool:
    """A no-op write: the apiserver keeps the resourceVersion and sends no watch event."""

    def strip(o: Mapping[str, Any]) -> dict[str, Any]:
        meta = {k: v for k, v in o["metadata"].items() if k not in ("resourceVersion", "managedFields")}
        return {**o, "metadata": meta}

    return strip(new) == strip(old)
