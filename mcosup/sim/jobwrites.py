"""What the emulator's Job controller writes, as ``job-controller`` through a client's paths: Pods from
a Job's template, their deletion, Events as the recorder writes them, the Pods' tracking finalizer and
the Job's status. The controller's loop and its sync are :mod:`mcosup.sim.jobs`.
"""

from __future__ import annotations

import copy
import logging
import time
from typing import Any

from mcosup.sim import errors, jobspec
from mcosup.sim.admission import UserInfo
from mcosup.sim.resources import ResourceType
from mcosup.sim.store import RtKey
from mcosup.sim.wire import Ctx, Target, timestamp
from mcosup.sim.writes import Writes

log = logging.getLogger(__name__)

JOBS: RtKey = ("batch", "jobs")
PODS: RtKey = ("", "pods")
EVENTS: RtKey = ("", "events")
JOB_CONTROLLER = UserInfo(
    "system:serviceaccount:kube-system:job-controller",
    ("system:serviceaccounts", "system:serviceaccounts:kube-system", "system:authenticated"),
)

Key = tuple[str, str]  # (namespace, name)


class JobWrites(Writes):
    """The Job controller's writes, a part of :class:`~mcosup.sim.apiserver.Emulator`."""

    _jobs_events: dict[tuple[str, ...], str]  # the recorder's key of an Event -> its name

    def _rt(self, key: RtKey) -> ResourceType:
        rt = self._rt_for_key(key)
        assert rt is not None, key
        return rt

    def _controller_ctx(self) -> Ctx:
        from multidict import CIMultiDict

        return Ctx(JOB_CONTROLLER, CIMultiDict())

    async def _create_pod(self, job: dict[str, Any]) -> bool:
        meta = job["metadata"]
        template = (job.get("spec") or {}).get("template") or {}
        tmeta = template.get("metadata") or {}
        finalizers = list(tmeta.get("finalizers") or [])
        if jobspec.TRACKING_FINALIZER not in finalizers:
            finalizers.append(jobspec.TRACKING_FINALIZER)
        pod_meta: dict[str, Any] = {
            "generateName": f"{meta['name']}-",
            "labels": dict(tmeta.get("labels") or {}),
            "annotations": dict(tmeta.get("annotations") or {}),
            "finalizers": finalizers,
            "ownerReferences": [
                {
                    "apiVersion": "batch/v1",
                    "kind": "Job",
                    "name": meta["name"],
                    "uid": meta["uid"],
                    "controller": True,
                    "blockOwnerDeletion": True,
                }
            ],
        }
        body = {
            "apiVersion": "v1",
            "kind": "Pod",
            "metadata": pod_meta,
            "spec": copy.deepcopy(template.get("spec") or {}),
        }
        target = Target(self._rt(PODS), "v1", meta.get("namespace"), None, None)
        try:
            created = await self._create(target, self._controller_ctx(), body)
        except errors.ApiStatusError as exc:
            causes = ((exc.details or {}).get("causes")) or []
            if any(c.get("reason") == "NamespaceTerminating" for c in causes):
                return False
            log.info(
                "emulator job controller: creating a Pod of %s/%s: %s",
                meta.get("namespace"),
                meta["name"],
                exc.message,
            )
            await self._record(job, "Warning", "FailedCreate", f"Error creating: {exc.message}")
            return False
        await self._record(job, "Normal", "SuccessfulCreate", f"Created pod: {created['metadata']['name']}")
        return True

    async def _delete_pod(self, job: dict[str, Any], pod: dict[str, Any]) -> bool:
        meta = pod["metadata"]
        target = Target(self._rt(PODS), "v1", meta.get("namespace"), meta["name"], None)
        try:
            await self._delete(target, self._controller_ctx(), None)
        except errors.ApiStatusError as exc:
            if exc.code == 404:
                return True
            await self._record(job, "Warning", "FailedDelete", f"Error deleting: {exc.message}")
            return False
        await self._record(job, "Normal", "SuccessfulDelete", f"Deleted pod: {meta['name']}")
        return True

    async def _record(self, job: dict[str, Any], type_: str, reason: str, message: str) -> None:
        """An Event about the Job, as the controller's event recorder writes it (core/v1; a repeat of
        the very same event bumps the first one's ``count`` and ``lastTimestamp``)."""
        meta = job["metadata"]
        now = timestamp()
        event: dict[str, Any] = {
            "apiVersion": "v1",
            "kind": "Event",
            "metadata": {"name": f"{meta['name']}.{time.time_ns():x}", "namespace": meta.get("namespace")},
            "involvedObject": {
                "kind": "Job",
                "namespace": meta.get("namespace"),
                "name": meta["name"],
                "uid": meta.get("uid"),
                "apiVersion": "batch/v1",
                "resourceVersion": meta.get("resourceVersion"),
            },
            "reason": reason,
            "message": message,
            "source": {"component": "job-controller"},
            "firstTimestamp": now,
            "lastTimestamp": now,
            "count": 1,
            "type": type_,
            "eventTime": None,
            "reportingComponent": "job-controller",
            "reportingInstance": "",
        }
        ns = str(meta.get("namespace", ""))
        # The recorder's correlator: the very same event again counts in the first one.
        same = (ns, str(meta["name"]), str(meta.get("uid")), type_, reason, message)
        earlier = self._jobs_events.get(same)
        try:
            if earlier is not None and self.store.get(EVENTS, ns, earlier) is not None:

                def again(old: dict[str, Any]) -> dict[str, Any]:
                    return {**old, "count": int(old.get("count") or 1) + 1, "lastTimestamp": now}

                target = Target(self._rt(EVENTS), "v1", ns, earlier, None)
                await self._write_loop(target, self._controller_ctx(), None, again)
                return
            target = Target(self._rt(EVENTS), "v1", ns, None, None)
            await self._create(target, self._controller_ctx(), event)
            self._jobs_events[same] = event["metadata"]["name"]
        except errors.ApiStatusError as exc:  # events are best effort, as the broadcaster's
            log.info("emulator job controller: event %s on %s: %s", reason, meta["name"], exc.message)

    async def _untrack(self, pod: dict[str, Any]) -> bool:
        """Remove the tracking finalizer (gone or already without one counts as done)."""
        meta = pod["metadata"]
        target = Target(self._rt(PODS), "v1", meta.get("namespace"), meta["name"], None)

        def without(old: dict[str, Any]) -> dict[str, Any]:
            if old["metadata"].get("uid") != meta.get("uid"):
                raise errors.not_found("pods", "", meta["name"])
            finalizers = [
                f for f in old["metadata"].get("finalizers") or [] if f != jobspec.TRACKING_FINALIZER
            ]
            new_meta = {**old["metadata"], "finalizers": finalizers}
            if not finalizers:
                new_meta.pop("finalizers")
            return {**old, "metadata": new_meta}

        try:
            await self._write_loop(target, self._controller_ctx(), None, without)
        except errors.ApiStatusError as exc:
            return exc.code == 404
        return True

    async def _write_job_status(self, job: dict[str, Any], status: dict[str, Any]) -> dict[str, Any]:
        meta = job["metadata"]
        target = Target(self._rt(JOBS), "v1", meta.get("namespace"), meta["name"], "status")
        wire = jobspec.wire_status(status)

        def with_status(old: dict[str, Any]) -> dict[str, Any]:
            if old["metadata"].get("uid") != meta.get("uid"):
                raise errors.not_found("jobs", "batch", meta["name"])
            return {**old, "status": wire}

        return await self._write_loop(target, self._controller_ctx(), None, with_status)

    # ---------------------------------------------------------------------------- the sync
