"""batch/v1 Jobs as kube-apiserver v1.36 stores them, and the facts the Job controller reads off Pods.

Pure: objects in, objects or facts out.

- :func:`job_defaults`: ``SetDefaults_Job`` (``completions``/``parallelism`` 1 when both are unset,
  ``backoffLimit`` 6, ``completionMode`` NonIndexed, ``suspend`` false, ``podReplacementPolicy``
  TerminatingOrFailed (Failed with a ``podFailurePolicy``), ``manualSelector`` false, the Job's labels
  from its template's when it has none) and the template's PodSpec defaults; on create the selector the
  registry generates (``batch.kubernetes.io/controller-uid``) and the four labels it adds to the
  template. A Job without labels gets its template's as they end up (the server defaults them again
  each time it decodes the Job from storage, generated labels included).
- :func:`job_causes`: the template's ``restartPolicy`` must be OnFailure or Never (the one check a Job
  writer most often trips over); :func:`job_update_causes`: the immutable fields of an update. The
  rest of ``ValidateJob`` is not modelled.
- Pod facts as ``pkg/controller/job`` reads them: active, terminating, ready, failed (a deleted
  unfinished Pod counts as failed under TerminatingOrFailed), finished time, and the pod-failure
  backoff (10 s doubling up to 10 min since the last failure, reset by a success).
"""

from __future__ import annotations

import copy
import datetime
import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from mcosup.sim import defaults, selectors

Cause = dict[str, str]

TRACKING_FINALIZER = "batch.kubernetes.io/job-tracking"
CONTROLLER_UID_LABEL = "batch.kubernetes.io/controller-uid"
JOB_NAME_LABEL = "batch.kubernetes.io/job-name"
LEGACY_CONTROLLER_UID_LABEL = "controller-uid"
LEGACY_JOB_NAME_LABEL = "job-name"
MAX_INT32 = 2**31 - 1

#: The controller's messages and reasons, as v1.36 words them.
BACKOFF_LIMIT_EXCEEDED = ("BackoffLimitExceeded", "Job has reached the specified backoff limit")
DEADLINE_EXCEEDED = ("DeadlineExceeded", "Job was active longer than specified deadline")
COMPLETIONS_REACHED = ("CompletionsReached", "Reached expected number of succeeded pods")


# ------------------------------------------------------------------------------ defaults, validation


def job_defaults(job: dict[str, Any], old: Mapping[str, Any] | None) -> dict[str, Any]:
    """The Job as the server stores it (``old`` None: a create, which also generates the selector)."""
    spec = dict(job.get("spec") or {})
    meta = dict(job.get("metadata") or {})
    if spec.get("completions") is None and spec.get("parallelism") is None:
        spec["completions"] = 1
        spec["parallelism"] = 1
    spec.setdefault("parallelism", 1)
    if spec.get("backoffLimit") is None:
        spec["backoffLimit"] = MAX_INT32 if spec.get("backoffLimitPerIndex") is not None else 6
    template = dict(spec.get("template") or {})
    template_meta = dict(template.get("metadata") or {})
    spec.setdefault("completionMode", "NonIndexed")
    spec.setdefault("suspend", False)
    if spec.get("podReplacementPolicy") is None:
        spec["podReplacementPolicy"] = "Failed" if spec.get("podFailurePolicy") else "TerminatingOrFailed"
    spec.setdefault("manualSelector", False)
    if old is None and not spec["manualSelector"]:
        labels = dict(template_meta.get("labels") or {})
        for key in (LEGACY_JOB_NAME_LABEL, JOB_NAME_LABEL):
            labels.setdefault(key, str(meta.get("name", "")))
        for key in (LEGACY_CONTROLLER_UID_LABEL, CONTROLLER_UID_LABEL):
            labels.setdefault(key, str(meta.get("uid", "")))
        template_meta["labels"] = labels
        selector = dict(spec.get("selector") or {})
        match = dict(selector.get("matchLabels") or {})
        match.setdefault(CONTROLLER_UID_LABEL, str(meta.get("uid", "")))
        selector["matchLabels"] = match
        spec["selector"] = selector
    if not meta.get("labels") and template_meta.get("labels"):
        meta["labels"] = dict(template_meta["labels"])
    if template_meta:
        template["metadata"] = template_meta
    template["spec"] = defaults.pod_spec_defaults(template.get("spec") or {})
    spec["template"] = template
    return {**job, "metadata": meta, "spec": spec}


def job_causes(job: Mapping[str, Any]) -> list[Cause]:
    """A generated selector must still select the Pods the Job makes; the template's restartPolicy."""
    spec = job.get("spec") or {}
    meta = job.get("metadata") or {}
    causes: list[Cause] = []
    selector = spec.get("selector")
    if not spec.get("manualSelector") and selector is not None:
        uid, name = str(meta.get("uid", "")), str(meta.get("name", ""))
        expected = {
            CONTROLLER_UID_LABEL: uid,
            JOB_NAME_LABEL: name,
            LEGACY_CONTROLLER_UID_LABEL: uid,
            LEGACY_JOB_NAME_LABEL: name,
        }
        if not selectors.label_selector_from_dict(selector).matches(expected):
            causes.append(
                {
                    "reason": "FieldValueInvalid",
                    "field": "spec.selector",
                    "message": f"Invalid value: {go_json(selector)}: `selector` not auto-generated",
                }
            )
    template_spec = (spec.get("template") or {}).get("spec") or {}
    if template_spec.get("restartPolicy") not in ("OnFailure", "Never"):
        causes.append(
            {
                "reason": "FieldValueRequired",
                "field": "spec.template.spec.restartPolicy",
                "message": 'Required value: valid values: "OnFailure", "Never"',
            }
        )
    return causes


def go_json(value: Any) -> str:
    """A value as field errors print it: JSON, maps' keys sorted."""
    return json.dumps(value, separators=(",", ":"), sort_keys=True)


def job_update_causes(job: Mapping[str, Any], old: Mapping[str, Any]) -> list[Cause]:
    """The fields ``ValidateJobSpecUpdate`` keeps immutable: ``selector``, ``completionMode``,
    ``completions`` (of a NonIndexed Job), ``podFailurePolicy``, ``successPolicy``, ``managedBy``,
    ``backoffLimitPerIndex``, and ``template`` unless the Job was suspended (where the server still
    allows only resources and scheduling directives to change: not modelled). The value in the message
    is printed as JSON, as the server prints it, except the template: the server prints its internal
    Go type there (field names capitalised), which only the meaning matches."""
    spec, old_spec = job.get("spec") or {}, old.get("spec") or {}
    causes = []
    fields = ["completions", "selector"]
    if not old_spec.get("suspend"):
        fields.append("template")
    fields += ["completionMode", "podFailurePolicy", "backoffLimitPerIndex", "managedBy", "successPolicy"]
    for name in fields:
        if spec.get(name) != old_spec.get(name):
            value = go_json(spec.get(name))
            causes.append(
                {
                    "reason": "FieldValueInvalid",
                    "field": f"spec.{name}",
                    "message": f"Invalid value: {value}: field is immutable",
                }
            )
    return causes


# ---------------------------------------------------------------- pods as the controller sees them


def controller_uid(pod: Mapping[str, Any]) -> str | None:
    """The uid of the batch/v1 Job controlling ``pod``, or None."""
    for ref in (pod.get("metadata") or {}).get("ownerReferences") or []:
        if ref.get("controller") and ref.get("kind") == "Job" and ref.get("apiVersion") == "batch/v1":
            return str(ref.get("uid", ""))
    return None


def has_controller(pod: Mapping[str, Any]) -> bool:
    return any(r.get("controller") for r in (pod.get("metadata") or {}).get("ownerReferences") or [])


def tracked(pod: Mapping[str, Any]) -> bool:
    return TRACKING_FINALIZER in ((pod.get("metadata") or {}).get("finalizers") or [])


def phase(pod: Mapping[str, Any]) -> str:
    return str((pod.get("status") or {}).get("phase") or "")


def is_active(pod: Mapping[str, Any]) -> bool:
    return phase(pod) not in ("Succeeded", "Failed") and not pod["metadata"].get("deletionTimestamp")


def is_terminating(pod: Mapping[str, Any]) -> bool:
    return phase(pod) not in ("Succeeded", "Failed") and bool(pod["metadata"].get("deletionTimestamp"))


def is_ready(pod: Mapping[str, Any]) -> bool:
    return any(
        c.get("type") == "Ready" and c.get("status") == "True"
        for c in (pod.get("status") or {}).get("conditions") or []
    )


def is_failed(pod: Mapping[str, Any], job: Mapping[str, Any]) -> bool:
    """Failed, or (unless only failed Pods are replaced) deleted before it finished."""
    if phase(pod) == "Failed":
        return True
    if only_replace_failed(job):
        return False
    return bool(pod["metadata"].get("deletionTimestamp")) and phase(pod) != "Succeeded"


def only_replace_failed(job: Mapping[str, Any]) -> bool:
    spec = job.get("spec") or {}
    return spec.get("podReplacementPolicy") == "Failed" or spec.get("podFailurePolicy") is not None


def restarts(pods: Iterable[Mapping[str, Any]]) -> int:
    """Container restarts of the Pods still Pending or Running (OnFailure's failures)."""
    total = 0
    for pod in pods:
        if phase(pod) in ("Pending", "Running"):
            status = pod.get("status") or {}
            for c in (status.get("initContainerStatuses") or []) + (status.get("containerStatuses") or []):
                total += int(c.get("restartCount") or 0)
    return total


def parse_time(value: Any) -> datetime.datetime | None:
    if not isinstance(value, str) or not value:
        return None
    return datetime.datetime.fromisoformat(value.replace("Z", "+00:00"))


def finished_time(pod: Mapping[str, Any]) -> datetime.datetime:
    """When the Pod finished: its containers' last finish, its Ready=False transition, its deletion
    less the grace period, or else its creation."""
    status = pod.get("status") or {}
    latest: datetime.datetime | None = None
    statuses = status.get("containerStatuses") or []
    for c in statuses:
        finished = parse_time(((c.get("state") or {}).get("terminated") or {}).get("finishedAt"))
        if finished is None:
            latest = None
            break
        latest = finished if latest is None or finished > latest else latest
    if latest is not None:
        return latest
    for c in status.get("conditions") or []:
        moment = parse_time(c.get("lastTransitionTime"))
        if c.get("type") == "Ready" and c.get("status") == "False" and moment is not None:
            return moment
    meta = pod["metadata"]
    deleted = parse_time(meta.get("deletionTimestamp"))
    if deleted is not None:
        return deleted - datetime.timedelta(seconds=int(meta.get("deletionGracePeriodSeconds") or 0))
    created = parse_time(meta.get("creationTimestamp"))
    return created or datetime.datetime.now(datetime.UTC)


@dataclass(frozen=True)
class Backoff:
    """Failures since the last success, and when the last one happened (the controller's record)."""

    failures: int = 0
    last_failure: datetime.datetime | None = None

    def after(self, succeeded: list[dict[str, Any]], failed: list[dict[str, Any]]) -> Backoff:
        """The record once the newly finished Pods are counted (``backoff_utils.go``)."""
        failed = sorted(failed, key=finished_time)
        if not succeeded:
            if not failed:
                return self
            return Backoff(self.failures + len(failed), finished_time(failed[-1]))
        last_success = max(finished_time(p) for p in succeeded)
        later = [p for p in failed if finished_time(p) > last_success]
        if not later:
            return Backoff()
        return Backoff(len(later), finished_time(later[-1]))

    def remaining(self, now: datetime.datetime, base: float, cap: float) -> float:
        """Seconds to wait before the next Pod may be created."""
        if self.failures == 0 or self.last_failure is None:
            return 0.0
        delay = base
        for _ in range(1, self.failures):
            delay *= 2
            if delay >= cap:
                delay = cap
                break
        elapsed = (now - self.last_failure).total_seconds()
        return max(0.0, delay - elapsed)


# ------------------------------------------------------------------------------ conditions


def condition(type_: str, reason: str, message: str, now: str, status: str = "True") -> dict[str, Any]:
    return {
        "type": type_,
        "status": status,
        "lastProbeTime": now,
        "lastTransitionTime": now,
        "reason": reason,
        "message": message,
    }


def find(conditions: Iterable[Mapping[str, Any]], type_: str) -> Mapping[str, Any] | None:
    for c in conditions:
        if c.get("type") == type_:
            return c
    return None


def is_true(conditions: Iterable[Mapping[str, Any]], type_: str) -> bool:
    found = find(conditions, type_)
    return found is not None and found.get("status") == "True"


def finished(job: Mapping[str, Any]) -> bool:
    conditions = (job.get("status") or {}).get("conditions") or []
    return is_true(conditions, "Complete") or is_true(conditions, "Failed")


def ensure(
    conditions: list[dict[str, Any]], type_: str, status: str, reason: str, message: str, now: str
) -> bool:
    """Add or update a condition (never adds a False one); whether the list changed."""
    for i, c in enumerate(conditions):
        if c.get("type") == type_:
            if (c.get("status"), c.get("reason"), c.get("message")) != (status, reason, message):
                conditions[i] = condition(type_, reason, message, now, status)
                return True
            return False
    if status != "False":
        conditions.append(condition(type_, reason, message, now, status))
        return True
    return False


def wire_status(status: Mapping[str, Any]) -> dict[str, Any]:
    """A JobStatus as Go serialises it: zero counters and empty lists left out, ``ready``,
    ``terminating`` and ``uncountedTerminatedPods`` kept (pointers). A copy: the store keeps it."""
    out: dict[str, Any] = {}
    for key, value in copy.deepcopy(dict(status)).items():
        if key in ("active", "succeeded", "failed") and not value:
            continue
        if key == "conditions" and not value:
            continue
        if key == "uncountedTerminatedPods":
            value = {k: list(v) for k, v in value.items() if v}
        if value is None:
            continue
        out[key] = value
    return out
