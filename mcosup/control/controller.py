"""The controller runner: watch events become keys, N workers reconcile keys from one queue.

``reconcile(key)`` re-reads current state (from caches) and is idempotent; it never learns which event
woke it. It returns a :class:`Result` (optionally asking to be run again later), raises
:class:`TerminalError` for a problem retrying cannot fix, or raises anything else to be retried with
per-key backoff.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
from collections.abc import Awaitable, Callable, Hashable, Iterable, Mapping
from typing import TYPE_CHECKING, Any, Generic, Protocol, TypeVar

from mcosup.control.queue import ShutDown, WorkQueue

if TYPE_CHECKING:  # only for annotations: processes without metrics never import prometheus_client
    from mcosup.runtime.metrics import Metrics

log = logging.getLogger(__name__)

K = TypeVar("K", bound=Hashable)


@dataclasses.dataclass(frozen=True)
class Result:
    #: Seconds after which to reconcile this key again even without a new event (polling a pod, a drain).
    requeue_after: float | None = None


class Source(Protocol):
    """Anything that calls back on each change of an object (an informer)."""

    def subscribe(self, callback: Callable[[str, Mapping[str, Any]], None], /) -> None: ...


#: Which keys a change wakes: ``keys(event_type, obj)``. It must not block (no I/O).
KeysOf = Callable[[str, Mapping[str, Any]], Iterable[K]]


def by_name(_: str, obj: Mapping[str, Any]) -> Iterable[str]:
    """The changed object's own name: for controllers keyed by the objects they watch."""
    return (obj["metadata"]["name"],)


def always(key: K) -> KeysOf[K]:
    """The same key on every change: for controllers that reconcile one thing from many objects."""
    return lambda _event, _obj: (key,)


class TerminalError(Exception):
    """A reconcile failure that retrying cannot fix (bad input); logged, not retried until the key
    changes again."""


class Controller(Generic[K]):
    def __init__(
        self,
        name: str,
        reconcile: Callable[[K], Awaitable[Result | None]],
        *,
        workers: int = 1,
        queue: WorkQueue[K] | None = None,
        metrics: Metrics | None = None,
        expected_errors: tuple[type[Exception], ...] = (),
    ):
        self.name = name
        self.reconcile = reconcile
        self.workers = workers
        self.queue: WorkQueue[K] = queue if queue is not None else WorkQueue()
        self.metrics = metrics
        #: Failures that are part of normal operation (an optimistic-concurrency conflict): retried the
        #: same way, logged in one line instead of with a traceback.
        self.expected_errors = expected_errors

    def watch(self, source: Source, keys: KeysOf[K]) -> None:
        """The one way to wire a watch to this controller: each change of ``source`` enqueues the keys
        ``keys`` names. Events only say which keys to look at; reconcile re-reads current state."""

        def on_change(event: str, obj: Mapping[str, Any]) -> None:
            for key in keys(event, obj):
                self.enqueue(key)

        source.subscribe(on_change)

    def enqueue(self, key: K) -> None:
        self.queue.add(key)
        self._gauge()

    async def run(self) -> None:
        """Run the workers until cancelled. The queue survives, so a new leader term can run again."""
        async with asyncio.TaskGroup() as tg:
            for i in range(self.workers):
                tg.create_task(self._worker(), name=f"{self.name}-worker-{i}")

    async def _worker(self) -> None:
        while True:
            try:
                key = await self.queue.get()
            except ShutDown:
                return
            self._gauge()
            try:
                await self._process(key)
            finally:
                self.queue.done(key)

    async def _process(self, key: K) -> None:
        try:
            result = await self.reconcile(key)
        except asyncio.CancelledError:
            raise
        except TerminalError as exc:
            self.queue.forget(key)
            self._count("terminal")
            log.error("%s: %s cannot be reconciled: %s", self.name, key, exc, extra={"fields": {"key": key}})
            return
        except Exception as exc:
            delay = self.queue.add_rate_limited(key)
            self._count("error")
            if isinstance(exc, self.expected_errors):
                log.info("%s: reconcile of %s: %s; retrying in %.2fs", self.name, key, exc, delay)
            else:
                log.exception("%s: reconcile of %s failed; retrying in %.2fs", self.name, key, delay)
            return
        self.queue.forget(key)
        if result is not None and result.requeue_after is not None:
            self.queue.add_after(key, result.requeue_after)
            self._count("requeue")
        else:
            self._count("success")

    def _count(self, result: str) -> None:
        if self.metrics is not None:
            self.metrics.reconciles.labels(self.name, result).inc()

    def _gauge(self) -> None:
        if self.metrics is not None:
            self.metrics.queue_depth.labels(self.name).set(len(self.queue))
