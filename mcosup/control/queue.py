"""A de-duplicating work queue with per-key exponential backoff (controller-runtime's contract).

- A key waiting in the queue is stored once, however often it is added.
- A key being processed is never handed to a second worker; if it is added meanwhile it is marked
  dirty and handed out again once the first worker calls :meth:`done`.
- ``add_rate_limited`` delays a key by its own backoff (base · 2^failures, capped); ``forget`` resets it.
- ``add_after`` delays a key by a fixed time; the earliest due time wins when several are pending.
"""

from __future__ import annotations

import asyncio
import collections
import heapq
import itertools
from collections.abc import Hashable
from typing import Generic, TypeVar

from mcosup.control.clock import Clock, RealClock

K = TypeVar("K", bound=Hashable)


class ShutDown(Exception):
    """The queue was shut down; workers stop."""


class WorkQueue(Generic[K]):
    def __init__(self, *, clock: Clock | None = None, base_delay: float = 0.05, max_delay: float = 300.0):
        self.clock: Clock = clock or RealClock()
        self.base_delay = base_delay
        self.max_delay = max_delay
        self._ready: collections.deque[K] = collections.deque()
        self._queued: set[K] = set()  # in _ready
        self._processing: set[K] = set()
        self._dirty: set[K] = set()  # added while processing
        self._delayed: list[tuple[float, int, K]] = []
        self._due: dict[K, float] = {}  # earliest pending delay per key
        self._failures: collections.Counter[K] = collections.Counter()
        self._seq = itertools.count()
        self._wakeup = asyncio.Event()
        self._shutdown = False

    def __len__(self) -> int:
        return len(self._ready) + len(self._due)

    def add(self, key: K) -> None:
        if self._shutdown:
            return
        if key in self._processing:
            self._dirty.add(key)
            return
        if key not in self._queued:
            self._queued.add(key)
            self._ready.append(key)
            self._wakeup.set()

    def add_after(self, key: K, delay: float) -> None:
        if delay <= 0:
            self.add(key)
            return
        due = self.clock.now() + delay
        if self._due.get(key, float("inf")) <= due:
            return
        self._due[key] = due
        heapq.heappush(self._delayed, (due, next(self._seq), key))
        self._wakeup.set()

    def add_rate_limited(self, key: K) -> float:
        """Re-add ``key`` after its own growing backoff; returns the delay chosen."""
        failures = self._failures[key]
        self._failures[key] += 1
        delay: float = min(self.max_delay, self.base_delay * float(2**failures))
        self.add_after(key, delay)
        return delay

    def forget(self, key: K) -> None:
        self._failures.pop(key, None)

    def failures(self, key: K) -> int:
        return self._failures[key]

    async def get(self) -> K:
        """The next key to process; the caller must call :meth:`done` with it afterwards."""
        while True:
            if self._shutdown:
                raise ShutDown
            self._promote_due()
            if self._ready:
                key = self._ready.popleft()
                self._queued.discard(key)
                self._processing.add(key)
                return key
            self._wakeup.clear()
            timeout = self._delayed[0][0] - self.clock.now() if self._delayed else None
            await self.clock.wait(self._wakeup, timeout)

    def done(self, key: K) -> None:
        self._processing.discard(key)
        if key in self._dirty:
            self._dirty.discard(key)
            self.add(key)

    def shut_down(self) -> None:
        self._shutdown = True
        self._wakeup.set()

    def _promote_due(self) -> None:
        now = self.clock.now()
        while self._delayed and self._delayed[0][0] <= now:
            due, _, key = heapq.heappop(self._delayed)
            if self._due.get(key) == due:
                del self._due[key]
                self.add(key)
