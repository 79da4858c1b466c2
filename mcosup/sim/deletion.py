"""Deletion and what it sets off: finalizers, graceful Pods, garbage collection, namespaces.

DELETE and deletecollection (preconditions, propagation policies, dry-run, what the answer is: the
object or a Status), the removal of an object and its cascades — dependents deleted in the
background or foreground or orphaned, owners waiting on `foregroundDeletion`, dependents naming
owners that do not exist, a terminating namespace emptied and then removed. `_commit_update`, the
store write every update goes through, is here too: an update that removes an object's last
finalizer while it is being deleted is what deletes it.
"""

from __future__ import annotations

import contextlib
from collections.abc import Mapping
from typing import Any

from mcosup.sim import errors
from mcosup.sim.admitting import Admitting
from mcosup.sim.crds import ResourceTypes
from mcosup.sim.reads import Reads
from mcosup.sim.resources import ResourceType
from mcosup.sim.store import DELETED, MODIFIED
from mcosup.sim.wire import Ctx, Target, as_version, delete_options, timestamp


def _bump_generation(meta: dict[str, Any]) -> None:
    """Marking an object for deletion bumps its generation, when it has one (the registry's rule)."""
    if meta.get("generation"):
        meta["generation"] = int(meta["generation"]) + 1


class Deletion(Reads, ResourceTypes, Admitting):
    """DELETE, deletecollection, and the store-level deletes and cascades the other writes share."""

    async def _delete(self, t: Target, ctx: Ctx, body: Any) -> dict[str, Any]:
        assert t.name is not None
        rt = t.rt
        options = delete_options(body, ctx.query)
        old = self.store.get(rt.key, t.namespace, t.name)
        if old is None:
            raise errors.not_found(rt.plural, rt.group, t.name)
        pre = options.get("preconditions") or {}
        meta = old["metadata"]
        # The storage layer checks preconditions and names the object by its kind.
        if pre.get("uid") and pre["uid"] != meta.get("uid"):
            raise errors.conflict(
                rt.kind,
                rt.group,
                t.name,
                f"the UID in the precondition ({pre['uid']}) does not match the UID in record "
                f"({meta.get('uid')}). The object might have been deleted and then recreated",
            )
        if pre.get("resourceVersion") and pre["resourceVersion"] != meta.get("resourceVersion"):
            raise errors.conflict(
                rt.kind,
                rt.group,
                t.name,
                f"the ResourceVersion in the precondition ({pre['resourceVersion']}) does not match the "
                f"ResourceVersion in record ({meta.get('resourceVersion')}). The object might have been "
                "modified",
            )
        await self._admit(
            ctx,
            t,
            "DELETE",
            None,
            old,
            t.name,
            {"kind": "DeleteOptions", "apiVersion": "meta.k8s.io/v1", **options},
        )
        if ctx.dry_run:
            waits = rt.builtin and (
                rt.kind == "Namespace" or (rt.kind == "Pod" and self._pod_waits_for_kubelet(old, None))
            )
            would_remove = not meta.get("finalizers") and not waits
            return self._deleted_answer(t, old, removed=would_remove)
        current = self.store.get(rt.key, t.namespace, t.name)
        if current is None:
            raise errors.not_found(rt.plural, rt.group, t.name)
        result = self._delete_now(rt, current, options)
        # Removed by this call itself, not by a finalizer's owner a moment later.
        removed = not result["metadata"].get("deletionTimestamp")
        return self._deleted_answer(t, result, removed=removed)

    def _deleted_answer(self, t: Target, obj: dict[str, Any], *, removed: bool) -> dict[str, Any]:
        """What a DELETE answers: the object, unless it is gone and its kind answers with a Status.

        The real registry returns the last state of the object while deletion waits (finalizers, a
        graceful Pod) and for the kinds whose store sets ``ReturnDeletedObject``; every other kind gets
        a ``Status`` of Success naming what was deleted.
        """
        if not removed or t.rt.returns_deleted_object:
            return as_version(obj, t.api_version)
        details: dict[str, Any] = {"name": obj["metadata"]["name"]}
        if t.rt.group:
            details["group"] = t.rt.group
        details["kind"] = t.rt.plural
        details["uid"] = obj["metadata"].get("uid", "")
        return {"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Success", "details": details}

    async def _delete_collection(self, t: Target, ctx: Ctx, body: Any) -> dict[str, Any]:
        labels, fields = self._selectors(t, ctx.query)
        deleted = []
        for obj in self._matching(t, labels, fields):
            name = obj["metadata"]["name"]
            sub = Target(t.rt, t.version, obj["metadata"].get("namespace"), name, None)
            with contextlib.suppress(errors.ApiStatusError):
                answer = await self._delete(sub, ctx, body)
                # The list holds the objects, also for kinds whose single delete answers a Status.
                last = obj if answer.get("kind") == "Status" else answer
                if t.rt.builtin:
                    last = {k: v for k, v in last.items() if k not in ("kind", "apiVersion")}
                deleted.append(last)
        return {
            "kind": f"{t.rt.kind}List",
            "apiVersion": t.api_version,
            "metadata": {"resourceVersion": str(self.store.rv)},
            "items": deleted,
        }

    def _pod_waits_for_kubelet(self, pod: dict[str, Any], grace: int | None) -> bool:
        if not self.graceful_pod_deletion:
            return False
        if not (pod.get("spec") or {}).get("nodeName"):
            return False
        if (pod.get("status") or {}).get("phase") in ("Succeeded", "Failed"):
            return False
        if grace is None:
            grace = int(pod["metadata"].get("deletionGracePeriodSeconds", 30) or 0)
        return grace > 0

    def _delete_now(
        self, rt: ResourceType, obj: dict[str, Any], options: Mapping[str, Any]
    ) -> dict[str, Any]:
        """Delete (or start deleting) a stored object; no admission. Returns the last state."""
        meta = obj["metadata"]
        propagation = options.get("propagationPolicy")
        if propagation is None and options.get("orphanDependents") is not None:
            propagation = "Orphan" if options["orphanDependents"] else "Background"
        # batch/v1 Jobs orphan their Pods unless told otherwise (the Job strategy's default policy).
        propagation = propagation or ("Orphan" if rt.builtin and rt.group == "batch" else "Background")
        if propagation not in ("Background", "Foreground", "Orphan"):
            raise errors.invalid(
                "DeleteOptions",
                "meta.k8s.io",
                "",
                [
                    {
                        "reason": "FieldValueNotSupported",
                        "field": "propagationPolicy",
                        "message": f'Unsupported value: "{propagation}": supported values: '
                        '"Foreground", "Background", "Orphan", "nil"',
                    }
                ],
            )
        uid = str(meta.get("uid", ""))
        finalizers = list(meta.get("finalizers") or [])
        if rt.kind == "Namespace" and rt.builtin:
            return self._delete_namespace(obj)
        # As the real store does, whether or not there are dependents: the policy becomes a finalizer
        # on the owner, which the garbage collector (here: at once, below) acts on and removes.
        gc_finalizer = {"Orphan": "orphan", "Foreground": "foregroundDeletion"}.get(propagation)
        is_pod = rt.kind == "Pod" and rt.builtin
        if is_pod and propagation == "Orphan":
            self._orphan_dependents(uid)
        elif is_pod and propagation == "Foreground" and self.store.dependents.get(uid):
            finalizers.append("foregroundDeletion")
        elif gc_finalizer and not is_pod and gc_finalizer not in finalizers:
            finalizers.append(gc_finalizer)
        if is_pod:
            grace = options.get("gracePeriodSeconds")
            if grace is None:
                grace = (obj.get("spec") or {}).get("terminationGracePeriodSeconds", 30)
            grace = int(grace)
            waits = self._pod_waits_for_kubelet(obj, grace)
            if meta.get("deletionTimestamp"):
                if not waits and meta.get("deletionGracePeriodSeconds") != 0:
                    if not finalizers:
                        return self._remove(rt, obj)
                    new_meta = {**meta, "deletionGracePeriodSeconds": 0}
                    return self.store.commit(rt.key, {**obj, "metadata": new_meta}, MODIFIED, obj)
                return obj
            if not waits and not finalizers:
                return self._remove(rt, obj)
            new_meta = {
                **meta,
                "deletionTimestamp": timestamp(grace if waits else 0),
                "deletionGracePeriodSeconds": grace if waits else 0,
                "finalizers": finalizers,
            }
            if not finalizers:
                new_meta.pop("finalizers")
            _bump_generation(new_meta)
            return self.store.commit(rt.key, {**obj, "metadata": new_meta}, MODIFIED, obj)
        if finalizers:
            if meta.get("deletionTimestamp") and finalizers == list(meta.get("finalizers") or []):
                return obj
            new_meta = {**meta, "finalizers": finalizers}
            if not meta.get("deletionTimestamp"):
                _bump_generation(new_meta)
            new_meta.setdefault("deletionTimestamp", timestamp())
            new_meta.setdefault("deletionGracePeriodSeconds", 0)
            new = {**obj, "metadata": new_meta}
            stored = self.store.commit(rt.key, new, MODIFIED, obj)
            if "orphan" in finalizers:
                self._orphan_dependents(uid)
                rest = [f for f in finalizers if f != "orphan"]
                done_meta = {**new_meta, "finalizers": rest}
                if not rest:
                    done_meta.pop("finalizers")
                self._commit_update(rt, {**stored, "metadata": done_meta}, stored)
            if "foregroundDeletion" in finalizers:
                self._delete_dependents(uid, "Foreground")
                self._maybe_finish_foreground(uid)
            # The caller is answered with the object as the delete left it, finalizers and all.
            return stored
        return self._remove(rt, obj)

    def _remove(self, rt: ResourceType, obj: dict[str, Any]) -> dict[str, Any]:
        """Remove an object for good, then collect its dependents and unblock its owners."""
        meta = obj["metadata"]
        final = {**obj, "metadata": dict(meta)}
        stored = self.store.commit(rt.key, final, DELETED, obj)
        uid = str(meta.get("uid", ""))
        if rt.builtin and rt.kind == "Pod":
            for key in [k for k in self._pod_logs if k[0] == meta.get("namespace") and k[1] == meta["name"]]:
                del self._pod_logs[key]
        if rt.builtin and rt.kind == "CustomResourceDefinition":
            self._unregister_crd(obj)
        self._delete_dependents(uid, "Background")
        for ref in meta.get("ownerReferences") or []:
            self._maybe_finish_foreground(str(ref.get("uid", "")))
        namespace = meta.get("namespace")
        if namespace:
            self._maybe_finish_namespace(namespace)
        return stored

    def _delete_dependents(self, owner_uid: str, propagation: str) -> None:
        for rt_key, key in sorted(self.store.dependents.get(owner_uid, set())):
            dependent = self.store.objects.get(rt_key, {}).get(key)
            if dependent is None:
                continue
            rt = self._rt_for_key(rt_key)
            if rt is None:
                continue
            refs = dependent["metadata"].get("ownerReferences") or []
            others_alive = [
                r for r in refs if r.get("uid") != owner_uid and self._owner_alive(str(r.get("uid", "")))
            ]
            if others_alive and propagation == "Background":
                remaining = [r for r in refs if r.get("uid") != owner_uid]
                new = {**dependent, "metadata": {**dependent["metadata"], "ownerReferences": remaining}}
                self.store.commit(rt_key, new, MODIFIED, dependent)
                continue
            if dependent["metadata"].get("deletionTimestamp") and propagation == "Background":
                continue
            self._delete_now(rt, dependent, {"propagationPolicy": propagation})

    def _owner_alive(self, uid: str) -> bool:
        found = self.store.by_uid_get(uid)
        return found is not None and not found[1]["metadata"].get("deletionTimestamp")

    def _orphan_dependents(self, owner_uid: str) -> None:
        for rt_key, key in sorted(self.store.dependents.get(owner_uid, set())):
            dependent = self.store.objects.get(rt_key, {}).get(key)
            if dependent is None:
                continue
            refs = [
                r for r in dependent["metadata"].get("ownerReferences") or [] if r.get("uid") != owner_uid
            ]
            meta = {**dependent["metadata"], "ownerReferences": refs}
            if not refs:
                meta.pop("ownerReferences")
            self.store.commit(rt_key, {**dependent, "metadata": meta}, MODIFIED, dependent)

    def _maybe_finish_foreground(self, owner_uid: str) -> None:
        found = self.store.by_uid_get(owner_uid)
        if found is None:
            return
        rt_key, owner = found
        meta = owner["metadata"]
        if "foregroundDeletion" not in (meta.get("finalizers") or []) or not meta.get("deletionTimestamp"):
            return
        if self.store.dependents.get(owner_uid):
            return
        rt = self._rt_for_key(rt_key)
        if rt is None:
            return
        finalizers = [f for f in meta["finalizers"] if f != "foregroundDeletion"]
        new_meta = {**meta, "finalizers": finalizers}
        if not finalizers:
            new_meta.pop("finalizers")
        self._commit_update(rt, {**owner, "metadata": new_meta}, owner)

    def _delete_namespace(self, ns: dict[str, Any]) -> dict[str, Any]:
        meta = ns["metadata"]
        name = meta["name"]
        if not meta.get("deletionTimestamp"):
            new = {
                **ns,
                "metadata": {**meta, "deletionTimestamp": timestamp()},
                "status": {**(ns.get("status") or {}), "phase": "Terminating"},
            }
            ns = self.store.commit(("", "namespaces"), new, MODIFIED, ns)
            for rt_key, bucket in list(self.store.objects.items()):
                rt = self._rt_for_key(rt_key)
                if rt is None or not rt.namespaced:
                    continue
                for key in sorted(k for k in bucket if k[0] == name):
                    obj = bucket.get(key)
                    if obj is not None and not obj["metadata"].get("deletionTimestamp"):
                        # Default grace, as the namespace controller: pods on nodes wait for their kubelet.
                        self._delete_now(rt, obj, {"propagationPolicy": "Background"})
        self._maybe_finish_namespace(name)
        latest = self.store.get(("", "namespaces"), None, name)
        return latest if latest is not None else ns

    def _maybe_finish_namespace(self, name: str) -> None:
        ns = self.store.get(("", "namespaces"), None, name)
        if ns is None or not ns["metadata"].get("deletionTimestamp") or ns["metadata"].get("finalizers"):
            return
        if self.store.count_in_namespace(name):
            return
        self.store.commit(("", "namespaces"), {**ns, "metadata": dict(ns["metadata"])}, DELETED, ns)

    def _commit_update(self, rt: ResourceType, new: dict[str, Any], old: dict[str, Any]) -> dict[str, Any]:
        """Commit an update; one that empties the finalizers of an object being deleted deletes it.

        As in the apiserver's store, that is a single DELETED event carrying the last stored state
        (the one still listing the finalizers); a pod still in its grace period stays for the kubelet.
        """
        meta = new["metadata"]
        if (
            meta.get("deletionTimestamp")
            and not meta.get("finalizers")
            and not meta.get("deletionGracePeriodSeconds")
        ):
            # The writer is answered with the object as it wrote it (no finalizers left).
            removed = self._remove(rt, old)
            rv = removed["metadata"]["resourceVersion"]
            return {**new, "metadata": {**meta, "resourceVersion": rv}}
        stored = self.store.commit(rt.key, new, MODIFIED, old)
        if rt.kind == "CustomResourceDefinition" and rt.builtin:
            self._register_crd(stored)
        if meta.get("ownerReferences") != old["metadata"].get("ownerReferences"):
            self._collect_if_dangling(rt, stored)
        return stored

    def _owner_is_dangling(self, ref: Mapping[str, Any], dependent: dict[str, Any]) -> bool:
        """The garbage collector's test: the owner named by (apiVersion, kind, name) in the dependent's
        namespace (or cluster-wide) is gone or has another uid. Unknown kinds are left alone."""
        try:
            owner_rt, _ = self._type_for_object(ref)
        except errors.ApiStatusError:
            return False
        namespace = dependent["metadata"].get("namespace") if owner_rt.namespaced else None
        if owner_rt.namespaced and not namespace:
            return True
        owner = self.store.get(owner_rt.key, namespace, str(ref.get("name", "")))
        return owner is None or owner["metadata"].get("uid") != ref.get("uid")

    def _collect_if_dangling(self, rt: ResourceType, obj: dict[str, Any]) -> None:
        """What the garbage collector does soon after a write naming owners that do not exist: drop
        the dangling references, or delete the object when no owner is left."""
        refs = obj["metadata"].get("ownerReferences") or []
        if not refs or not self.collect_dangling_dependents or obj["metadata"].get("deletionTimestamp"):
            return
        solid = [r for r in refs if not self._owner_is_dangling(r, obj)]
        if len(solid) == len(refs):
            return
        if solid:
            meta = {**obj["metadata"], "ownerReferences": solid}
            self.store.commit(rt.key, {**obj, "metadata": meta}, MODIFIED, obj)
        else:
            self._delete_now(rt, obj, {"propagationPolicy": "Background"})
