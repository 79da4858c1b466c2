"""The emulator's Job controller: batch/v1 Jobs run as kube-controller-manager v1.36 runs them.

Like the emulator's garbage collector it works on the store from inside the server, with the identity
kube-controller-manager gives it (``system:serviceaccount:kube-system:job-controller``, so admission
webhooks see the same caller); its writes go through the same create, update and delete paths as a
client's (defaults, validation, webhooks, watch events). It wakes on every commit of a Job or Pod and
re-syncs the Jobs concerned, as the real controller's informers make it do: a new, deleted or
respecified Job at once, after a Pod's change or a status write within ``job_sync_batch`` (1 s, the
real batch period, so a watcher sees the same sequence of Job statuses).

Modelled, for NonIndexed Jobs (``pkg/controller/job``, checked against the real one by
``tests/sim/test_emu_jobs.py``):

- Pods from the template: ``generateName: <job>-``, the template's labels, annotations and
  finalizers plus ``batch.kubernetes.io/job-tracking``, an ownerReference to the Job with
  ``controller`` and ``blockOwnerDeletion``; at most ``parallelism`` active and no more than the
  completions still missing;
- status: ``startTime``, ``active``, ``ready``, ``terminating``, ``succeeded``, ``failed``,
  ``uncountedTerminatedPods`` (the two-step count: a finished Pod is recorded there, its tracking
  finalizer removed, then counted), ``completionTime``; conditions ``SuccessCriteriaMet`` then
  ``Complete`` (CompletionsReached), ``FailureTarget`` then ``Failed`` (BackoffLimitExceeded,
  DeadlineExceeded), the terminal one only once no Pod is terminating;
- retries: a failed Pod, or (``podReplacementPolicy: TerminatingOrFailed``) a deleted one, is
  replaced while ``failed <= backoffLimit``, after the controller's pod-failure backoff (10 s doubling
  up to 10 min since the last failure; ``job_backoff`` scales it); with ``restartPolicy: OnFailure``
  the containers' restarts count against ``backoffLimit``;
- ``activeDeadlineSeconds`` from ``startTime``: active Pods deleted, the Job failed;
- ``suspend``: no Pods, active ones deleted, the ``Suspended`` condition (and ``JobResumed``);
- a Job deleted or finished: the tracking finalizer removed from its Pods (what the real controller's
  orphan-pod worker does), so garbage collection can finish deleting them;
- Events on the Job, as its recorder writes them: SuccessfulCreate/FailedCreate, SuccessfulDelete/
  FailedDelete, Completed or the failure's reason, Suspended/Resumed.

Not modelled: Indexed Jobs, ``podFailurePolicy``, ``successPolicy``, ``backoffLimitPerIndex``,
``managedBy``, adopting orphan Pods that match a manual selector, the event recorder's aggregation of
many similar Events (10 within 10 minutes) and its rate limit.
"""

from __future__ import annotations

import asyncio
import copy
import datetime
import logging
from typing import Any

from mcosup.sim import errors, jobspec
from mcosup.sim.jobspec import Backoff
from mcosup.sim.jobwrites import JOBS, PODS, JobWrites, Key
from mcosup.sim.store import DELETED, MODIFIED, RtKey, WatchEvent
from mcosup.sim.wire import timestamp

log = logging.getLogger(__name__)

#: The cap of the pod-failure backoff (``MaxJobPodFailureBackOff``).
MAX_BACKOFF_SECONDS = 600.0
#: How long Pod-triggered syncs are batched (``syncJobBatchPeriod``).
SYNC_BATCH_SECONDS = 1.0
#: When a sync fails (a webhook refused a Pod, say), it is tried again after this long.
RETRY_SECONDS = 1.0


class JobControl(JobWrites):
    """The Job controller, a part of :class:`~mcosup.sim.apiserver.Emulator`."""

    #: Seconds of the first pod-failure backoff (doubled per further failure, up to 10 min).
    job_backoff: float
    #: Seconds a Pod-triggered sync waits, so that changes within it make one sync (the real 1 s).
    job_sync_batch: float
    _jobs_dirty: set[Key]
    _job_pods_dirty: set[Key]
    _jobs_wake: asyncio.Event
    _jobs_task: asyncio.Task[None] | None
    _jobs_timers: dict[Key, asyncio.TimerHandle]
    _jobs_backoff: dict[Key, Backoff]
    _jobs_events: dict[tuple[str, ...], str]  # the recorder's key of an Event -> its name

    def _jobs_init(self, backoff_seconds: float) -> None:
        self.job_backoff = backoff_seconds
        self.job_sync_batch = SYNC_BATCH_SECONDS
        self._jobs_dirty = set()
        self._job_pods_dirty = set()
        self._jobs_wake = asyncio.Event()
        self._jobs_task = None
        self._jobs_timers = {}
        self._jobs_backoff = {}
        self._jobs_events = {}
        self.store.listeners.append(self._jobs_observe)

    def _jobs_start(self) -> None:
        self._jobs_wake = asyncio.Event()
        if self._jobs_dirty or self._job_pods_dirty:
            self._jobs_wake.set()
        self._jobs_task = asyncio.create_task(self._jobs_run(), name="emulator-job-controller")

    async def _jobs_stop(self) -> None:
        for handle in self._jobs_timers.values():
            handle.cancel()
        self._jobs_timers.clear()
        task, self._jobs_task = self._jobs_task, None
        if task is not None:
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)

    # ---------------------------------------------------------------------------- what wakes it

    def _jobs_observe(self, rt_key: RtKey, event: WatchEvent) -> None:
        """Called by the store on every commit: note the Jobs (and tracked Pods) to look at."""
        if rt_key == JOBS:
            meta = event.obj["metadata"]
            key = (str(meta.get("namespace", "")), str(meta["name"]))
            old_generation = (event.old or {}).get("metadata", {}).get("generation")
            if event.type != MODIFIED or old_generation != meta.get("generation"):
                self._jobs_dirty.add(key)  # a new, deleted or respecified Job: at once
            elif not jobspec.finished(event.obj):
                self._jobs_batched(key)  # a status write, typically its own
            if event.type == DELETED or jobspec.finished(event.obj):
                uid = meta.get("uid")
                for pod in self.store.items(PODS, meta.get("namespace")):
                    if jobspec.tracked(pod) and jobspec.controller_uid(pod) == uid:
                        self._job_pods_dirty.add((str(meta.get("namespace", "")), pod["metadata"]["name"]))
        elif rt_key == PODS:
            pod = event.obj
            meta = pod["metadata"]
            ns = str(meta.get("namespace", ""))
            uid = jobspec.controller_uid(pod)
            if uid is not None:
                found = self.store.by_uid_get(uid)
                if found is not None and found[0] == JOBS:
                    self._jobs_batched((ns, str(found[1]["metadata"]["name"])))
            if event.type != DELETED and jobspec.tracked(pod):
                self._job_pods_dirty.add((ns, str(meta["name"])))
        else:
            return
        self._jobs_wake.set()

    def _jobs_batched(self, key: Key) -> None:
        """Sync ``key`` after :attr:`job_sync_batch` (changes within it make one sync, as the real
        controller's ``enqueueSyncJobBatched``)."""
        if self.job_sync_batch > 0 and self._jobs_task is not None:
            self._jobs_later(key, self.job_sync_batch)
        else:
            self._jobs_dirty.add(key)

    def _jobs_later(self, key: Key, seconds: float) -> None:
        """Sync ``key`` again in ``seconds`` (the earliest of the asked times wins)."""
        if self._jobs_task is None:  # not running: the key waits for the start
            self._jobs_dirty.add(key)
            return
        loop = asyncio.get_running_loop()
        when = loop.time() + max(seconds, 0.0)
        current = self._jobs_timers.get(key)
        if current is not None and current.when() <= when:
            return
        if current is not None:
            current.cancel()

        def fire() -> None:
            self._jobs_timers.pop(key, None)
            self._jobs_dirty.add(key)
            self._jobs_wake.set()

        self._jobs_timers[key] = loop.call_at(when, fire)

    async def _jobs_run(self) -> None:
        while True:
            await self._jobs_wake.wait()
            self._jobs_wake.clear()
            while self._jobs_dirty or self._job_pods_dirty:
                jobs, self._jobs_dirty = sorted(self._jobs_dirty), set()
                for key in jobs:
                    try:
                        await self._sync_job(key)
                    except errors.ApiStatusError as exc:
                        log.info("emulator job controller: %s/%s: %s", *key, exc.message)
                        self._jobs_later(key, RETRY_SECONDS)
                    except Exception:  # a bug here must not stop every other Job
                        log.exception("emulator job controller: syncing %s/%s failed", *key)
                        self._jobs_later(key, RETRY_SECONDS)
                pods, self._job_pods_dirty = sorted(self._job_pods_dirty), set()
                for key in pods:
                    try:
                        await self._sync_orphan_pod(key)
                    except errors.ApiStatusError as exc:
                        log.info("emulator job controller: pod %s/%s: %s", *key, exc.message)
                    except Exception:
                        log.exception("emulator job controller: pod %s/%s failed", *key)
                await asyncio.sleep(0)

    # ---------------------------------------------------------------------------- the API calls

    async def _sync_orphan_pod(self, key: Key) -> None:
        """A tracked Pod whose Job is gone or finished (or that no Job controls) loses the finalizer."""
        pod = self.store.get(PODS, key[0], key[1])
        if pod is None or not jobspec.tracked(pod):
            return
        uid = jobspec.controller_uid(pod)
        if uid is None and jobspec.has_controller(pod):
            return  # controlled by something that is not a batch/v1 Job
        if uid is not None:
            found = self.store.by_uid_get(uid)
            if found is not None and found[0] == JOBS and not jobspec.finished(found[1]):
                return
        await self._untrack(pod)

    async def _sync_job(self, key: Key) -> None:
        job = self.store.get(JOBS, key[0], key[1])
        if job is None:
            self._jobs_backoff.pop(key, None)
            return
        if jobspec.finished(job):
            self._jobs_backoff.pop(key, None)
            return
        spec = job.get("spec") or {}
        meta = job["metadata"]
        status: dict[str, Any] = copy.deepcopy(job.get("status") or {})
        uncounted = status.get("uncountedTerminatedPods") or {}
        unc_succeeded: list[str] = list(uncounted.get("succeeded") or [])
        unc_failed: list[str] = list(uncounted.get("failed") or [])
        pods = [p for p in self.store.items(PODS, key[0]) if jobspec.controller_uid(p) == meta["uid"]]
        with_finalizer = {p["metadata"]["uid"] for p in pods if jobspec.tracked(p)}
        active_pods = [p for p in pods if jobspec.is_active(p)]
        ready = sum(1 for p in active_pods if jobspec.is_ready(p))
        terminating = sum(1 for p in pods if jobspec.is_terminating(p))
        new_succeeded = [
            p
            for p in pods
            if jobspec.tracked(p)
            and p["metadata"]["uid"] not in unc_succeeded
            and jobspec.phase(p) == "Succeeded"
        ]
        new_failed = [
            p
            for p in pods
            if jobspec.tracked(p) and p["metadata"]["uid"] not in unc_failed and jobspec.is_failed(p, job)
        ]
        succeeded = int(status.get("succeeded") or 0) + len(new_succeeded) + len(unc_succeeded)
        failed = int(status.get("failed") or 0) + len(new_failed) + len(unc_failed)
        suspended = bool(spec.get("suspend"))
        now = timestamp()
        now_dt = datetime.datetime.now(datetime.UTC)
        if not status.get("startTime") and not suspended:
            status["startTime"] = now
        backoff = self._jobs_backoff.get(key, Backoff()).after(new_succeeded, new_failed)
        conditions: list[dict[str, Any]] = list(status.get("conditions") or [])

        # What ends the Job: an earlier verdict, then the backoff limit, then the deadline.
        finished: dict[str, Any] | None = None
        met = jobspec.find(conditions, "SuccessCriteriaMet")
        target = jobspec.find(conditions, "FailureTarget")
        if met is not None and met.get("status") == "True":
            finished = dict(met)
        elif target is not None and target.get("status") == "True":
            finished = jobspec.condition("Failed", str(target.get("reason")), str(target.get("message")), now)
        if finished is None:
            limit = int(spec.get("backoffLimit", 6))
            on_failure = ((spec.get("template") or {}).get("spec") or {}).get("restartPolicy") == "OnFailure"
            restarts = jobspec.restarts(pods) if on_failure else 0
            past_restarts = on_failure and (restarts > 0 if limit == 0 else restarts >= limit)
            deadline = spec.get("activeDeadlineSeconds")
            started = jobspec.parse_time(status.get("startTime"))
            if failed > limit or past_restarts:
                finished = jobspec.condition("FailureTarget", *jobspec.BACKOFF_LIMIT_EXCEEDED, now)
            elif deadline is not None and started is not None and not suspended:
                left = float(deadline) - (now_dt - started).total_seconds()
                if left <= 0:
                    finished = jobspec.condition("FailureTarget", *jobspec.DEADLINE_EXCEEDED, now)
                else:
                    self._jobs_later(key, left)

        active = len(active_pods)
        suspend_changed = False
        if finished is not None:
            for pod in active_pods:
                if await self._delete_pod(job, pod):
                    active -= 1
                    terminating += 1
                    ready -= 1 if jobspec.is_ready(pod) else 0
        else:
            managed = False
            if not meta.get("deletionTimestamp"):
                active, terminating, ready = await self._manage_job(
                    key, job, active_pods, succeeded, terminating, ready, backoff, now_dt
                )
                managed = True
            completions = spec.get("completions")
            if completions is None:
                complete = succeeded > 0 and active == 0
            else:
                complete = succeeded >= int(completions) and active == 0
            if complete:
                finished = jobspec.condition("SuccessCriteriaMet", *jobspec.COMPLETIONS_REACHED, now)
            elif managed and suspended:
                suspend_changed = jobspec.ensure(
                    conditions, "Suspended", "True", "JobSuspended", "Job suspended", now
                )
                if suspend_changed:
                    status.pop("startTime", None)
                    await self._record(job, "Normal", "Suspended", "Job suspended")
            elif managed:
                suspend_changed = jobspec.ensure(
                    conditions, "Suspended", "False", "JobResumed", "Job resumed", now
                )
                if suspend_changed:
                    status["startTime"] = now
                    await self._record(job, "Normal", "Resumed", "Job resumed")

        needs_flush = suspend_changed or (
            active != int(status.get("active") or 0)
            or ready != status.get("ready")
            or terminating != status.get("terminating")
        )
        status["active"], status["ready"], status["terminating"] = active, ready, terminating
        status["conditions"] = conditions

        # Count the finished Pods in two steps: recorded as uncounted, finalizer removed, counted.
        if _count_untracked(status, unc_succeeded, unc_failed, with_finalizer):
            needs_flush = True
        to_untrack = []
        for pod in pods:
            if not jobspec.tracked(pod):
                continue
            uid = pod["metadata"]["uid"]
            pod_failed = jobspec.is_failed(pod, job)
            if not (
                meta.get("deletionTimestamp") or finished or jobspec.phase(pod) == "Succeeded" or pod_failed
            ):
                continue
            to_untrack.append(pod)
            if jobspec.phase(pod) == "Succeeded" and uid not in unc_failed:
                if uid not in unc_succeeded:
                    unc_succeeded.append(uid)
                    needs_flush = True
            elif pod_failed or (finished is not None and finished["type"] != "SuccessCriteriaMet"):
                if uid not in unc_failed:
                    unc_failed.append(uid)
                    needs_flush = True
        if finished is not None and finished["type"] == "FailureTarget":
            conditions.append(finished)
            needs_flush = True
            finished = jobspec.condition("Failed", finished["reason"], finished["message"], now)
        if finished is not None and finished["type"] == "SuccessCriteriaMet":
            if not jobspec.is_true(conditions, "SuccessCriteriaMet"):
                conditions.append(finished)
                needs_flush = True
            finished = jobspec.condition("Complete", finished["reason"], finished["message"], now)
        status["uncountedTerminatedPods"] = {"succeeded": unc_succeeded, "failed": unc_failed}
        if needs_flush:
            await self._write_job_status(job, status)
            self._jobs_backoff[key] = backoff
            needs_flush = False
        for pod in to_untrack:
            if await self._untrack(pod):
                with_finalizer.discard(pod["metadata"]["uid"])
        if _count_untracked(status, unc_succeeded, unc_failed, with_finalizer):
            needs_flush = True
        status["uncountedTerminatedPods"] = {"succeeded": unc_succeeded, "failed": unc_failed}
        done = finished is not None and not unc_succeeded and not unc_failed and terminating == 0
        if finished is not None and done:
            jobspec.ensure(conditions, finished["type"], "True", finished["reason"], finished["message"], now)
            if finished["type"] == "Complete":
                status["completionTime"] = now
            needs_flush = True
        if needs_flush:
            job = await self._write_job_status(job, status)
        if finished is not None and done:
            if finished["type"] == "Complete":
                await self._record(job, "Normal", "Completed", "Job completed")
            else:
                await self._record(job, "Warning", finished["reason"], finished["message"])

    async def _manage_job(
        self,
        key: Key,
        job: dict[str, Any],
        active_pods: list[dict[str, Any]],
        succeeded: int,
        terminating: int,
        ready: int,
        backoff: Backoff,
        now: datetime.datetime,
    ) -> tuple[int, int, int]:
        """Create or delete Pods towards the wanted number: (active, terminating, ready) after it."""
        spec = job.get("spec") or {}
        active = len(active_pods)
        if spec.get("suspend"):
            removing = active_pods
        else:
            parallelism = int(spec.get("parallelism", 1))
            completions = spec.get("completions")
            if completions is None:
                want = active if succeeded > 0 else parallelism
            else:
                want = max(0, min(int(completions) - succeeded, parallelism))
            removing = _removal_order(active_pods)[: max(0, active - want)]
            if not removing:
                waiting = terminating if jobspec.only_replace_failed(job) else 0
                missing = want - waiting - active
                if missing <= 0:
                    return active, terminating, ready
                delay = backoff.remaining(now, self.job_backoff, MAX_BACKOFF_SECONDS)
                if delay > 0:
                    self._jobs_later(key, delay)
                    return active, terminating, ready
                for _ in range(missing):
                    if await self._create_pod(job):
                        active += 1
                return active, terminating, ready
        for pod in removing:
            if await self._delete_pod(job, pod):
                active -= 1
                terminating += 1
                ready -= 1 if jobspec.is_ready(pod) else 0
        return active, terminating, ready


def _count_untracked(
    status: dict[str, Any], unc_succeeded: list[str], unc_failed: list[str], with_finalizer: set[str]
) -> bool:
    """Move uncounted Pods that no longer carry the finalizer into the counters; whether any moved."""
    moved = False
    for field, uids in (("succeeded", unc_succeeded), ("failed", unc_failed)):
        done = [u for u in uids if u not in with_finalizer]
        if done:
            status[field] = int(status.get(field) or 0) + len(done)
            uids[:] = [u for u in uids if u in with_finalizer]
            moved = True
    return moved


def _removal_order(pods: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Active Pods in the order the controller deletes surplus ones: unscheduled, pending, not ready,
    then the newest first (``controller.ActivePods``, in short)."""
    rank = {"Pending": 0, "Unknown": 1, "Running": 2}

    def order(pod: dict[str, Any]) -> tuple[Any, ...]:
        created = str(pod["metadata"].get("creationTimestamp") or "")
        return (
            bool((pod.get("spec") or {}).get("nodeName")),
            rank.get(jobspec.phase(pod), 0),
            jobspec.is_ready(pod),
            [-ord(ch) for ch in created],
        )

    return sorted(pods, key=order)
