"""Time, injected: real time in production, a hand-advanced clock in tests."""

from __future__ import annotations

import asyncio
import time
from typing import Protocol


class Clock(Protocol):
    def now(self) -> float:
        """Monotonic seconds."""

    def wall(self) -> float:
        """Seconds since the Unix epoch (UTC): for what happens at a time of day (maintenance windows)."""

    async def wait(self, event: asyncio.Event, seconds: float | None) -> None:
        """Return when ``event`` is set or ``seconds`` have passed, whichever is first."""


class RealClock:
    def now(self) -> float:
        return time.monotonic()

    def wall(self) -> float:
        return time.time()

    async def wait(self, event: asyncio.Event, seconds: float | None) -> None:
        # asyncio.timeout rather than wait_for: on Python 3.11, wait_for returns normally when the event
        # fires in the same loop turn as a cancellation, swallowing it (a worker would never stop).
        try:
            async with asyncio.timeout(seconds):
                await event.wait()
        except TimeoutError:
            pass


class FakeClock:
    """Time moves only when a test calls :meth:`advance`; waits whose deadline passed then return."""

    def __init__(self, start: float = 0.0, *, wall: float = 0.0):
        self._now = start
        self._wall = wall - start  # the wall clock moves with now()
        self._timers: list[tuple[float, asyncio.Event]] = []

    def now(self) -> float:
        return self._now

    def wall(self) -> float:
        return self._wall + self._now

    async def wait(self, event: asyncio.Event, seconds: float | None) -> None:
        if seconds is None:
            await event.wait()
            return
        expired = asyncio.Event()
        entry = (self._now + seconds, expired)
        self._timers.append(entry)
        waiters = [asyncio.ensure_future(event.wait()), asyncio.ensure_future(expired.wait())]
        try:
            await asyncio.wait(waiters, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for w in waiters:
                w.cancel()
            await asyncio.gather(*waiters, return_exceptions=True)
            if entry in self._timers:
                self._timers.remove(entry)

    def advance(self, seconds: float) -> None:
        self._now += seconds
        for deadline, expired in list(self._timers):
            if deadline <= self._now:
                expired.set()


class JumpClock:
    """Real time that a test can move forward at once (:meth:`jump`), for tests of a running system
    that must reach a time of day (a maintenance window's opening) without waiting for it. A jump
    returns every wait whose deadline it passes, as if that time had gone by."""

    def __init__(self, *, wall: float):
        self._start = time.monotonic()
        self._wall = wall
        self._offset = 0.0
        self._jumped = asyncio.Event()

    def now(self) -> float:
        return time.monotonic() + self._offset

    def wall(self) -> float:
        return self._wall + self.now() - self._start

    async def wait(self, event: asyncio.Event, seconds: float | None) -> None:
        if seconds is None:
            await event.wait()
            return
        deadline = self.now() + seconds
        while not event.is_set() and (left := deadline - self.now()) > 0:
            waiters = [asyncio.ensure_future(event.wait()), asyncio.ensure_future(self._jumped.wait())]
            try:
                await asyncio.wait(waiters, timeout=left, return_when=asyncio.FIRST_COMPLETED)
            finally:
                for w in waiters:
                    w.cancel()
                await asyncio.gather(*waiters, return_exceptions=True)

    def jump(self, seconds: float) -> None:
        self._offset += seconds
        jumped, self._jumped = self._jumped, asyncio.Event()
        jumped.set()
