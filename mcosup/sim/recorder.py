"""A recorder of every object version a watch shows, for invariants checked over a whole history.

The emulator keeps its own history, but a real API server keeps none a client can read: what the tests
judge (at no instant more than ``maxUnavailable`` nodes down, ...) is read from a watch started before
the story, which sees every version a controller could have seen, on either API server.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from mcosup.kube.cache import Informer
from mcosup.kube.client import Kube
from mcosup.kube.resources import Resource

Entry = tuple[int, str, dict[str, Any]]


class Recorder:
    """``history``: (sequence, ADDED|MODIFIED|DELETED, object) for each version seen, in order."""

    def __init__(self, kube: Kube, resource: Resource) -> None:
        self.history: list[Entry] = []
        self._informer = Informer(kube, resource)
        self._informer.subscribe(self._record)

    @property
    def listed(self) -> Any:
        """Set once the first list is recorded (the recorder sees everything after that)."""
        return self._informer.listed

    def subscribe(self, callback: Callable[[str, dict[str, Any]], None]) -> None:
        """Also tell ``callback(event, object)`` of each version as it is recorded (it must not block)."""
        self._informer.subscribe(callback)

    def mark(self) -> int:
        """The newest sequence number: pass it as ``since`` to judge only what happens from now on."""
        return len(self.history)

    def _record(self, kind: str, obj: dict[str, Any]) -> None:
        self.history.append((len(self.history) + 1, kind, obj))

    async def run(self) -> None:
        await self._informer.run()
