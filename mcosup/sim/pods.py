"""The Pod subresources: `log` (with `follow`), `eviction` under PodDisruptionBudgets, `binding`.

An eviction computes the PDB's budget as the disruption controller would (:mod:`mcosup.sim.disruption`)
and writes the PDB status it implies, then marks the Pod (the `DisruptionTarget` condition) and deletes
it; `binding` does what a scheduler's bind does. What `pods/log`
serves comes from the test hooks `emu.set_pod_log` / `emu.append_pod_log`.
"""

from __future__ import annotations

import asyncio
import contextlib
from typing import Any

import aiohttp
import orjson
from aiohttp import web

from mcosup.sim import disruption, errors, selectors
from mcosup.sim.deletion import Deletion
from mcosup.sim.store import MODIFIED
from mcosup.sim.wire import Ctx, Target, timestamp, truthy, write_options


class PodSubresources(Deletion):
    """`pods/<name>/log`, `pods/<name>/eviction`, `pods/<name>/binding`."""

    async def _pod_log(self, request: web.Request, t: Target) -> web.StreamResponse:
        pod = self._get(t)
        containers = [c.get("name") for c in (pod.get("spec") or {}).get("containers") or []]
        container = request.query.get("container")
        if not container:
            if len(containers) != 1:
                raise errors.bad_request(
                    f"a container name must be specified for pod {t.name}, choose one of: "
                    f"[{' '.join(str(c) for c in containers)}]"
                )
            container = str(containers[0])
        elif container not in containers and container not in [
            c.get("name") for c in (pod.get("spec") or {}).get("initContainers") or []
        ]:
            raise errors.bad_request(f"container {container} is not valid for pod {t.name}")
        assert t.namespace is not None and t.name is not None
        key = (t.namespace, t.name, container)
        text = self._pod_logs.get(key, "")
        tail = request.query.get("tailLines")
        if tail and tail.isdigit():
            lines = text.splitlines(keepends=True)
            text = "".join(lines[-int(tail) :]) if int(tail) else ""
        if not truthy(request.query.get("follow")):
            return web.Response(text=text, content_type="text/plain")
        response = web.StreamResponse(status=200, headers={"Content-Type": "text/plain"})
        response.enable_chunked_encoding()
        await response.prepare(request)
        sent = len(self._pod_logs.get(key, ""))
        with contextlib.suppress(ConnectionResetError, aiohttp.ClientConnectionResetError):
            await response.write(text.encode())
            while True:
                changed = self._log_changed
                current = self.store.get(t.rt.key, t.namespace, t.name)
                full = self._pod_logs.get(key, "")
                if len(full) > sent:
                    await response.write(full[sent:].encode())
                    sent = len(full)
                if current is None or (current.get("status") or {}).get("phase") in ("Succeeded", "Failed"):
                    break
                if self._runner is None:
                    break
                try:
                    await asyncio.wait_for(changed.wait(), timeout=1.0)
                except TimeoutError:
                    continue
            await response.write_eof()
        return response

    async def _evict(self, t: Target, ctx: Ctx, body: Any) -> dict[str, Any]:
        assert t.name is not None and t.namespace is not None
        if not isinstance(body, dict):
            raise errors.bad_request("the body of the request must be an Eviction object")
        if body.get("kind") not in (None, "Eviction"):
            raise errors.bad_request(f"the kind in the data ({body.get('kind')}) does not match Eviction")
        body_name = (body.get("metadata") or {}).get("name")
        if body_name and body_name != t.name:
            raise errors.bad_request("name in URL does not match name in Eviction object")
        pod = self.store.get(t.rt.key, t.namespace, t.name)
        if pod is None:
            raise errors.not_found("pods", "", t.name)
        options = dict(body.get("deleteOptions") or {})
        if "All" in (options.get("dryRun") or []):
            ctx.dry_run = True
        eviction = {"apiVersion": "policy/v1", "kind": "Eviction", **body}
        eviction["metadata"] = {**(body.get("metadata") or {}), "name": t.name, "namespace": t.namespace}
        await self._admit(
            ctx,
            t,
            "CREATE",
            eviction,
            None,
            t.name,
            write_options("CreateOptions", ctx),
            kind={"group": "policy", "version": "v1", "kind": "Eviction"},
        )
        pod = self.store.get(t.rt.key, t.namespace, t.name)
        if pod is None:
            raise errors.not_found("pods", "", t.name)
        phase = (pod.get("status") or {}).get("phase")
        skip_pdb = phase in ("Succeeded", "Failed", "Pending") or bool(
            pod["metadata"].get("deletionTimestamp")
        )
        if not skip_pdb:
            self._check_budgets(pod, ctx)
        if not ctx.dry_run:
            pod = self._mark_disruption_target(t, pod)
            self._delete_now(t.rt, pod, options)
        return {"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Success", "code": 201}

    def _mark_disruption_target(self, t: Target, pod: dict[str, Any]) -> dict[str, Any]:
        """The condition an eviction writes (a status update) before it deletes the Pod, so that its
        controller (a Job's podFailurePolicy, say) can tell a disruption from a failure."""
        new = orjson.loads(orjson.dumps(pod))
        status = new.setdefault("status", {})
        conditions = list(status.get("conditions") or [])
        mark = {
            "type": "DisruptionTarget",
            "status": "True",
            "lastProbeTime": None,
            "lastTransitionTime": timestamp(),
            "reason": "EvictionByEvictionAPI",
            "message": "Eviction API: evicting",
        }
        for i, c in enumerate(conditions):
            if c.get("type") == "DisruptionTarget":
                if c.get("status") == "True" and c.get("lastTransitionTime"):
                    mark["lastTransitionTime"] = c["lastTransitionTime"]
                conditions[i] = mark
                break
        else:
            conditions.append(mark)
        status["conditions"] = conditions
        return self._commit_update(t.rt, new, pod)

    def _bind(self, t: Target, body: Any) -> dict[str, Any]:
        """``POST pods/<name>/binding``: what a scheduler does — set ``spec.nodeName`` once, mark the Pod
        scheduled; 409 for a Pod already assigned or being deleted, or whose uid the binding does not
        name (as kube-apiserver's binding storage answers)."""
        if not isinstance(body, dict):
            raise errors.bad_request("the request body must be a Binding object")
        meta = body.get("metadata") or {}
        node = (body.get("target") or {}).get("name")
        target_name = t.name or ""
        if not node:
            cause = {"field": "target.name", "reason": "FieldValueRequired", "message": "Required value"}
            raise errors.invalid("Binding", "", target_name, [cause])
        pod = self.store.get(t.rt.key, t.namespace, target_name)
        if pod is None:
            raise errors.not_found("pods", "", target_name)
        name, uid = pod["metadata"]["name"], pod["metadata"].get("uid")
        why = None
        if meta.get("uid") and meta["uid"] != uid:
            why = f"Precondition failed: UID in precondition: {meta['uid']}, UID in object meta: {uid}"
        elif pod["metadata"].get("deletionTimestamp"):
            why = f"pod {name} is being deleted, cannot be assigned to a host"
        elif (pod.get("spec") or {}).get("nodeName"):
            why = f'pod {name} is already assigned to node "{pod["spec"]["nodeName"]}"'
        if why is not None:
            raise errors.conflict("pods/binding", "", name, why)
        new = orjson.loads(orjson.dumps(pod))
        new["spec"]["nodeName"] = node
        status = new.setdefault("status", {})
        conditions = [c for c in status.get("conditions") or [] if c.get("type") != "PodScheduled"]
        scheduled = {"type": "PodScheduled", "status": "True", "lastTransitionTime": timestamp()}
        status["conditions"] = [*conditions, scheduled]
        self._commit_update(t.rt, new, pod)
        return {"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Success", "code": 201}

    def _check_budgets(self, pod: dict[str, Any], ctx: Ctx) -> None:
        namespace = pod["metadata"]["namespace"]
        labels = pod["metadata"].get("labels") or {}
        pdb_key = ("policy", "poddisruptionbudgets")
        pdbs = [
            p
            for p in self.store.items(pdb_key, namespace)
            if selectors.label_selector_from_dict(
                (p.get("spec") or {}).get("selector"), none_matches_nothing=True
            ).matches(labels)
        ]
        if not pdbs:
            return
        if len(pdbs) > 1:
            raise errors.ApiStatusError(
                500,
                "InternalError",
                "This pod has more than one PodDisruptionBudget, "
                "which the eviction subresource does not support.",
            )
        pdb = pdbs[0]
        selector = selectors.label_selector_from_dict(
            (pdb.get("spec") or {}).get("selector"), none_matches_nothing=True
        )
        pods = [
            p
            for p in self.store.items(("", "pods"), namespace)
            if selector.matches(p["metadata"].get("labels"))
        ]
        always = (pdb.get("spec") or {}).get("unhealthyPodEvictionPolicy") == "AlwaysAllow"
        if always and not disruption.is_healthy(pod):
            return
        try:
            budget = disruption.budget(pdb, pods, lambda: self._expected_scale(pods))
        except disruption.BudgetError as exc:
            # The disruption controller fails safe: no disruption allowed, and it says why.
            failed = {
                **(pdb.get("status") or {}),
                "disruptionsAllowed": 0,
                "conditions": [
                    {
                        "type": "DisruptionAllowed",
                        "status": "False",
                        "reason": "SyncFailed",
                        "message": str(exc),
                        "lastTransitionTime": timestamp(),
                    }
                ],
            }
            if not ctx.dry_run:
                self._write_pdb_status(pdb, failed)
            raise errors.too_many_requests(
                "Cannot evict pod as it would violate the pod's disruption budget.",
                [
                    {
                        "reason": "DisruptionBudget",
                        "message": f"The disruption budget {pdb['metadata']['name']} needs "
                        f"{failed.get('desiredHealthy', 0)} healthy pods "
                        f"and has {failed.get('currentHealthy', 0)} currently",
                    }
                ],
            ) from None
        healthy = disruption.is_healthy(pod)
        status = budget.status(int(pdb["metadata"].get("generation") or 1))
        # An unready pod may go while the budget is met (IfHealthyBudget, the default; AlwaysAllow let it
        # go above), a ready one only while disruptions are allowed, as the eviction handler rules.
        budget_met = budget.current_healthy >= budget.desired_healthy and budget.desired_healthy > 0
        allowed = budget.disruptions_allowed > 0 or (not healthy and budget_met)
        if not allowed:
            if not ctx.dry_run:
                self._write_pdb_status(pdb, status)
            pdb_name = pdb["metadata"]["name"]
            raise errors.too_many_requests(
                "Cannot evict pod as it would violate the pod's disruption budget.",
                [
                    {
                        "reason": "DisruptionBudget",
                        "message": f"The disruption budget {pdb_name} needs "
                        f"{budget.desired_healthy} healthy pods "
                        f"and has {budget.current_healthy} currently",
                    }
                ],
            )
        if not ctx.dry_run and healthy:
            status["disruptionsAllowed"] = budget.disruptions_allowed - 1
            status["disruptedPods"] = {
                **((pdb.get("status") or {}).get("disruptedPods") or {}),
                pod["metadata"]["name"]: timestamp(),
            }
            self._write_pdb_status(pdb, status)

    def _expected_scale(self, pods: list[dict[str, Any]]) -> int:
        """The replicas of the selected pods' controllers, as the disruption controller reads them."""
        scales: dict[str, int] = {}
        for pod in pods:
            ref = disruption.controller_ref(pod)
            name = pod["metadata"]["name"]
            if ref is None:
                raise disruption.BudgetError(f'found no controller ref for pod "{name}"')
            found = self.store.by_uid_get(str(ref.get("uid", "")))
            owner_spec = (found[1].get("spec") or {}) if found is not None else None
            scalable = ref.get("kind") in ("Deployment", "ReplicaSet", "StatefulSet", "ReplicationController")
            if owner_spec is None or not (scalable or "replicas" in owner_spec):
                raise disruption.BudgetError(f'found no controllers for pod "{name}"')
            scales[str(ref["uid"])] = int(owner_spec.get("replicas", 1))
        return sum(scales.values())

    def _write_pdb_status(self, pdb: dict[str, Any], status: dict[str, Any]) -> None:
        merged = {**(pdb.get("status") or {}), **status}
        if merged == pdb.get("status"):
            return
        new = {**pdb, "metadata": dict(pdb["metadata"]), "status": merged}
        self.store.commit(("policy", "poddisruptionbudgets"), new, MODIFIED, pdb)
