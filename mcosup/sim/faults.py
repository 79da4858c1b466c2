"""Fault injection for the emulator: error answers, latency, cut watches and forced compaction.

Tests reach it as ``emu.faults``::

    emu.faults.fail(status=500, method="PATCH", path=r"/nodes/", times=2)
    emu.faults.fail(status=429, path=r"/pods", retry_after=1)
    emu.faults.delay(0.2, method="GET", path=r"/api/v1/nodes")
    emu.faults.reset(method="GET", path=r"/pods", times=1)   # drop the connection, no answer
    emu.faults.cut_watches()          # end every open watch stream now
    emu.faults.compact()              # old resourceVersions now get 410 Expired
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass, field


class _Rule:
    """What a fault rule matches: a method (None: any), a path pattern, a number of times (None: ever)."""

    method: str | None
    path: re.Pattern[str]
    times: int | None
    hits: int

    def matches(self, method: str, path: str) -> bool:
        if self.times is not None and self.hits >= self.times:
            return False
        return (self.method is None or self.method == method) and bool(self.path.search(path))


@dataclass
class FailRule(_Rule):
    status: int
    method: str | None
    path: re.Pattern[str]
    times: int | None  # None: forever
    retry_after: int | None
    message: str
    hits: int = 0


@dataclass
class DelayRule(_Rule):
    seconds: float
    method: str | None
    path: re.Pattern[str]
    times: int | None
    hits: int = 0


@dataclass
class ResetRule(_Rule):
    method: str | None
    path: re.Pattern[str]
    times: int | None
    hits: int = 0


@dataclass
class Faults:
    _cut: Callable[[bool], int]
    _compact: Callable[[], None]
    failures: list[FailRule] = field(default_factory=list)
    delays: list[DelayRule] = field(default_factory=list)
    resets: list[ResetRule] = field(default_factory=list)

    def fail(
        self,
        status: int,
        *,
        method: str | None = None,
        path: str = "",
        times: int | None = 1,
        retry_after: int | None = None,
        message: str = "",
    ) -> FailRule:
        """Answer matching requests (method, regex searched in the URL path) with `status`."""
        rule = FailRule(
            status,
            method.upper() if method else None,
            re.compile(path),
            times,
            retry_after,
            message or f"injected fault: status {status}",
        )
        self.failures.append(rule)
        return rule

    def delay(
        self, seconds: float, *, method: str | None = None, path: str = "", times: int | None = None
    ) -> DelayRule:
        """Add latency before matching requests are handled."""
        rule = DelayRule(seconds, method.upper() if method else None, re.compile(path), times)
        self.delays.append(rule)
        return rule

    def reset(self, *, method: str | None = None, path: str = "", times: int | None = 1) -> ResetRule:
        """Drop the connection of matching requests without an answer (a connection reset)."""
        rule = ResetRule(method.upper() if method else None, re.compile(path), times)
        self.resets.append(rule)
        return rule

    def clear(self) -> None:
        self.failures.clear()
        self.delays.clear()
        self.resets.clear()

    def cut_watches(self, *, abrupt: bool = False) -> int:
        """End every open watch; `abrupt` drops the connection instead of ending the stream cleanly."""
        return self._cut(abrupt)

    def compact(self) -> None:
        """Drop the watch history so that every older resourceVersion gets 410 Expired."""
        self._compact()

    def match_failure(self, method: str, path: str) -> FailRule | None:
        for rule in self.failures:
            if rule.matches(method, path):
                rule.hits += 1
                return rule
        return None

    def match_reset(self, method: str, path: str) -> bool:
        for rule in self.resets:
            if rule.matches(method, path):
                rule.hits += 1
                return True
        return False

    def match_delay(self, method: str, path: str) -> float:
        total = 0.0
        for rule in self.delays:
            if rule.matches(method, path):
                rule.hits += 1
                total += rule.seconds
        return total
