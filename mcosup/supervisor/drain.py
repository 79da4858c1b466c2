"""Draining a node through the Eviction API, as ``kubectl drain`` does, reporting what blocks it.

The choice of pods is pure (:func:`pods_to_drain`, :func:`blocking_budget`); :func:`drain_node` is the
thin I/O loop. It never cordons or uncordons (the node controller does, so the cordon and its
``cordoned-by`` annotation are one write decided from the cluster's state) and never deletes a pod
directly: an eviction is the only way that respects PodDisruptionBudgets.

- Skipped: DaemonSet pods (their controller would put them straight back, and they tolerate the cordon)
  and mirror pods (the kubelet's static pods; the API cannot remove them).
- An eviction a PodDisruptionBudget refuses (429) is retried with capped exponential backoff, forever:
  the drain only *reports* being stuck once it has run past ``drain_timeout``, naming the pod and the
  budget, and carries on, so deleting or relaxing the budget finishes it without anyone's help.
- A node that is not Ready cannot finish terminating its pods (no kubelet); pods already terminating
  there count as gone, as ``kubectl drain`` lets one do for unreachable nodes.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
from collections.abc import Awaitable, Callable, Iterable, Sequence

from mcosup.control.clock import Clock
from mcosup.kube import errors
from mcosup.kube.client import Kube
from mcosup.kube.resources import PDBS
from mcosup.model.objects import ObjView
from mcosup.runtime.logs import fields
from mcosup.runtime.settings import DrainSettings
from mcosup.supervisor.rolloutplan import MIRROR_POD_ANNOTATION, selector_matches

log = logging.getLogger(__name__)


@dataclasses.dataclass(frozen=True)
class Stuck:
    """A drain past its timeout: which pod could not be evicted and (when known) which budget."""

    node: str
    pod: str  # namespace/name
    budget: str | None  # namespace/name of the PodDisruptionBudget
    detail: str  # the API server's words
    seconds: float

    @property
    def message(self) -> str:
        by = f"PodDisruptionBudget {self.budget}" if self.budget else "the API server"
        return (
            f"drain of node {self.node} stuck for {self.seconds:.0f}s: eviction of pod {self.pod} refused "
            f"by {by} ({self.detail}); the node stays cordoned and eviction is retried — relax or delete "
            "the budget, or move the pod, to let the update continue"
        )


@dataclasses.dataclass(frozen=True)
class DrainResult:
    node: str
    evicted: int
    #: The node vanished mid-drain (its update slot is free again).
    node_gone: bool = False


def _key(pod: ObjView) -> str:
    meta = pod.get("metadata") or {}
    return f"{meta.get('namespace', '')}/{meta.get('name', '')}"


def is_daemonset_pod(pod: ObjView) -> bool:
    refs = (pod.get("metadata") or {}).get("ownerReferences") or []
    return any(r.get("kind") == "DaemonSet" and r.get("controller") for r in refs)


def is_mirror_pod(pod: ObjView) -> bool:
    return MIRROR_POD_ANNOTATION in ((pod.get("metadata") or {}).get("annotations") or {})


def pods_to_drain(pods: Iterable[ObjView], node: str, *, node_ready: bool = True) -> list[ObjView]:
    """The pods on ``node`` a drain must see gone, sorted by namespace/name."""
    out = []
    for pod in pods:
        if (pod.get("spec") or {}).get("nodeName") != node:
            continue
        if is_daemonset_pod(pod) or is_mirror_pod(pod):
            continue
        terminating = bool((pod.get("metadata") or {}).get("deletionTimestamp"))
        if terminating and not node_ready:
            continue
        out.append(pod)
    return sorted(out, key=_key)


def blocking_budget(pod: ObjView, budgets: Iterable[ObjView]) -> str | None:
    """namespace/name of a PodDisruptionBudget covering ``pod`` that allows no disruption now (else
    any covering one), or None."""
    meta = pod.get("metadata") or {}
    labels = meta.get("labels") or {}
    covering = [
        b
        for b in budgets
        if (b.get("metadata") or {}).get("namespace") == meta.get("namespace")
        # policy/v1: an empty selector selects every pod of the namespace.
        and selector_matches((b.get("spec") or {}).get("selector"), labels, empty_matches_all=True)
    ]
    covering.sort(key=lambda b: ((b.get("status") or {}).get("disruptionsAllowed", 0) > 0, _key(b)))
    return _key(covering[0]) if covering else None


async def drain_node(
    kube: Kube,
    node: str,
    *,
    pods: Callable[[], Sequence[ObjView]],
    node_state: Callable[[], ObjView | None],
    wake: asyncio.Event,
    clock: Clock,
    settings: DrainSettings,
    on_stuck: Callable[[Stuck], Awaitable[None]],
) -> DrainResult:
    """Evict every pod of ``node`` that must go, and return once they are all gone.

    ``pods`` and ``node_state`` read the caches; ``wake`` is set when a pod or the node changes, so the
    loop reacts at once instead of polling. ``on_stuck`` is called once each time the drain passes its
    timeout with an eviction still refused (and again after each further timeout period).
    """
    started = clock.now()
    next_report = started + settings.timeout
    evicted = 0
    delay = settings.retry_base
    asked: set[str] = set()  # pods whose eviction was accepted (waiting for them to go)
    while True:
        wake.clear()  # before reading: a change from here on ends the next wait at once
        current = node_state()
        if current is None:
            return DrainResult(node, evicted, node_gone=True)
        remaining = pods_to_drain(pods(), node, node_ready=_ready(current))
        if not remaining:
            return DrainResult(node, evicted)
        refused: list[tuple[ObjView, errors.ApiError]] = []
        for pod in remaining:
            key = _key(pod)
            if (pod.get("metadata") or {}).get("deletionTimestamp") or key in asked:
                continue
            meta = pod["metadata"]
            try:
                await kube.evict(meta["name"], meta["namespace"])
            except errors.NotFound:
                continue
            except errors.TooManyRequests as exc:
                refused.append((pod, exc))
                continue
            except errors.ApiError as exc:
                log.warning("eviction of pod %s failed: %s", key, exc, extra=fields(node=node, pod=key))
                refused.append((pod, exc))
                continue
            asked.add(key)
            evicted += 1
            log.info("evicted pod %s", key, extra=fields(node=node, pod=key))
        if not refused:
            delay = settings.retry_base
            await clock.wait(wake, settings.retry_cap)  # a pod event wakes us; the cap is a safety net
            asked.intersection_update(_key(p) for p in pods_to_drain(pods(), node))
            continue
        now = clock.now()
        if now >= next_report:
            blocked, refusal = refused[0]
            budget = None
            if isinstance(refusal, errors.TooManyRequests):
                budget = await _find_budget(kube, blocked)
            detail = refusal.message or refusal.reason
            await on_stuck(Stuck(node, _key(blocked), budget, detail, now - started))
            next_report = now + max(settings.timeout, settings.retry_cap)
        await clock.wait(wake, delay)
        delay = min(delay * 2, settings.retry_cap)


def _ready(node: ObjView) -> bool:
    conditions = (node.get("status") or {}).get("conditions") or []
    return any(c.get("type") == "Ready" and c.get("status") == "True" for c in conditions)


async def _find_budget(kube: Kube, pod: ObjView) -> str | None:
    namespace = (pod.get("metadata") or {}).get("namespace", "")
    try:
        budgets, _ = await kube.list(PDBS, namespace=namespace)
    except errors.ApiError as exc:
        log.warning("cannot list PodDisruptionBudgets in %s: %s", namespace, exc)
        return None
    return blocking_budget(pod, budgets)
