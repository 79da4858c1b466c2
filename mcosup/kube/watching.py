"""List-then-watch, owned here rather than delegated to kubernetes_asyncio's ``Watch``.

The library's watch retries a 410 once with the same stale version and never relists. This loop lists,
reports the full state, watches from the list's resourceVersion (with bookmarks, so the resume point
stays fresh), resumes from the last seen version when a stream ends or drops, relists on 410, and backs
off between failing reconnects.
"""

from __future__ import annotations

import asyncio
import logging
import random
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any

from mcosup.kube import errors
from mcosup.kube.client import Kube
from mcosup.kube.resources import Resource
from mcosup.model.objects import Obj

if TYPE_CHECKING:  # only for annotations: processes without metrics never import prometheus_client
    from mcosup.runtime.metrics import Metrics

log = logging.getLogger(__name__)

OnList = Callable[[list[Obj]], Awaitable[None]]
OnEvent = Callable[[str, Obj], Awaitable[None]]


async def list_then_watch(
    kube: Kube,
    resource: Resource,
    *,
    on_list: OnList,
    on_event: OnEvent,
    namespace: str | None = None,
    label_selector: str | None = None,
    field_selector: str | None = None,
    metrics: Metrics | None = None,
    max_backoff: float = 30.0,
) -> None:
    """Run forever: ``on_list`` gets the whole state after every (re)list, ``on_event`` each change."""
    selectors: dict[str, Any] = {
        "namespace": namespace,
        "label_selector": label_selector,
        "field_selector": field_selector,
    }
    failures = 0
    while True:
        try:
            items, version = await kube.list(resource, **selectors)
        except errors.ApiError as exc:
            failures += 1
            delay = _backoff(failures, max_backoff)
            log.warning("listing %s failed (%s); retrying in %.1fs", resource, exc, delay)
            await asyncio.sleep(delay)
            continue
        await on_list(items)
        failures = 0
        while True:
            try:
                async for event in kube.watch(resource, resource_version=version, **selectors):
                    kind = event.get("type", "")
                    obj = event.get("object") or {}
                    new_version = obj.get("metadata", {}).get("resourceVersion")
                    if new_version:
                        version = new_version
                    if kind != "BOOKMARK":
                        await on_event(kind, obj)
                    failures = 0
                # The server ended the stream (timeoutSeconds): resume where we are.
                _count(metrics, resource, "timeout")
            except errors.Gone:
                log.info("watch of %s expired at resourceVersion %s; relisting", resource, version)
                _count(metrics, resource, "expired")
                break
            except errors.ApiError as exc:
                failures += 1
                delay = _backoff(failures, max_backoff)
                log.warning("watch of %s dropped (%s); resuming in %.1fs", resource, exc, delay)
                _count(metrics, resource, "error")
                await asyncio.sleep(delay)


def _backoff(failures: int, cap: float) -> float:
    return random.uniform(0.5, 1.0) * min(cap, 0.2 * 2.0 ** min(failures, 10))


def _count(metrics: Metrics | None, resource: Resource, cause: str) -> None:
    if metrics is not None:
        metrics.watch_restarts.labels(str(resource), cause).inc()
