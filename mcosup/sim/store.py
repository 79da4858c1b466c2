"""The emulator's object store: objects, the global resourceVersion, history and watch fan-out.

Stored objects are never mutated after they are committed: a write builds a new dict (sharing
untouched sub-trees with the previous version) and replaces the old one, so readers can serialise a
stored object without copying it and watchers can hold references to past versions safely.

One counter gives every write a resourceVersion (an int on the inside, a string on the wire), as
etcd's revision does. Each resource type keeps a bounded log of its recent events for watch resume;
an event pushed out of the window advances that type's compaction point, after which a watch from an
older version gets 410 Expired, like the apiserver's watch cache.
"""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

ADDED, MODIFIED, DELETED = "ADDED", "MODIFIED", "DELETED"

RtKey = tuple[str, str]  # (group, plural)
ObjKey = tuple[str, str]  # (namespace or "", name)


@dataclass
class WatchEvent:
    rv: int
    type: str
    obj: dict[str, Any]
    old: dict[str, Any] | None
    # Serialised lines by (event type as sent, apiVersion): computed once, shared by all watchers.
    cache: dict[tuple[str, str], bytes] = field(default_factory=dict)


CUT = object()  # queued to a watcher to end its stream


class Watcher:
    """One open watch: a queue the store fills, drained by the HTTP handler."""

    def __init__(self, rt_key: RtKey) -> None:
        self.rt_key = rt_key
        self.queue: asyncio.Queue[WatchEvent | object] = asyncio.Queue()
        self.abrupt = False

    def cut(self, abrupt: bool) -> None:
        self.abrupt = abrupt
        self.queue.put_nowait(CUT)


@dataclass
class ResourceLog:
    events: deque[WatchEvent] = field(default_factory=deque)
    compacted_rv: int = 0  # events at or below this version may be gone
    watchers: set[Watcher] = field(default_factory=set)


class Store:
    def __init__(self, history_window: int) -> None:
        if history_window < 1:
            raise ValueError(f"history_window={history_window} must be at least 1 event")
        self.history_window = history_window
        self.rv = 0
        self.objects: dict[RtKey, dict[ObjKey, dict[str, Any]]] = {}
        self.history: list[tuple[int, str, dict[str, Any]]] = []
        self.logs: dict[RtKey, ResourceLog] = {}
        # uid -> where the object lives, and owner uid -> dependents, for garbage collection.
        self.by_uid: dict[str, tuple[RtKey, ObjKey]] = {}
        self.dependents: dict[str, set[tuple[RtKey, ObjKey]]] = {}
        # Called with every committed event (the built-in controllers' informers); they must not write.
        self.listeners: list[Callable[[RtKey, WatchEvent], None]] = []

    # Reads ----------------------------------------------------------------------------------

    def get(self, rt_key: RtKey, namespace: str | None, name: str) -> dict[str, Any] | None:
        return self.objects.get(rt_key, {}).get((namespace or "", name))

    def items(self, rt_key: RtKey, namespace: str | None = None) -> Iterator[dict[str, Any]]:
        bucket = self.objects.get(rt_key, {})
        if namespace is None:
            for key in sorted(bucket):
                yield bucket[key]
        else:
            for key in sorted(k for k in bucket if k[0] == namespace):
                yield bucket[key]

    def count_in_namespace(self, namespace: str) -> int:
        return sum(1 for bucket in self.objects.values() for key in bucket if key[0] == namespace)

    def log(self, rt_key: RtKey) -> ResourceLog:
        log = self.logs.get(rt_key)
        if log is None:
            log = self.logs[rt_key] = ResourceLog()
        return log

    def by_uid_get(self, uid: str) -> tuple[RtKey, dict[str, Any]] | None:
        where = self.by_uid.get(uid)
        if where is None:
            return None
        obj = self.objects.get(where[0], {}).get(where[1])
        return (where[0], obj) if obj is not None else None

    # Writes ---------------------------------------------------------------------------------

    def commit(
        self, rt_key: RtKey, obj: dict[str, Any], event_type: str, old: dict[str, Any] | None
    ) -> dict[str, Any]:
        """Store `obj` (ADDED/MODIFIED) or remove it (DELETED) under a new resourceVersion.

        `obj` must be a fresh dict whose `metadata` is also fresh: the store sets the version on it.
        """
        self.rv += 1
        meta = obj["metadata"]
        meta["resourceVersion"] = str(self.rv)
        key = (meta.get("namespace") or "", meta["name"])
        bucket = self.objects.setdefault(rt_key, {})
        uid = meta.get("uid", "")
        if event_type == DELETED:
            bucket.pop(key, None)
            self.by_uid.pop(uid, None)
            self._index_owners(rt_key, key, old, None)
        else:
            bucket[key] = obj
            self.by_uid[uid] = (rt_key, key)
            self._index_owners(rt_key, key, old, obj)
        self.history.append((self.rv, event_type, obj))
        event = WatchEvent(self.rv, event_type, obj, old)
        log = self.log(rt_key)
        log.events.append(event)
        while len(log.events) > self.history_window:
            log.compacted_rv = log.events.popleft().rv
        for watcher in log.watchers:
            watcher.queue.put_nowait(event)
        for listener in self.listeners:
            listener(rt_key, event)
        return obj

    def _index_owners(
        self, rt_key: RtKey, key: ObjKey, old: dict[str, Any] | None, new: dict[str, Any] | None
    ) -> None:
        def owners(o: dict[str, Any] | None) -> set[str]:
            if o is None:
                return set()
            return {str(r.get("uid")) for r in o["metadata"].get("ownerReferences") or [] if r.get("uid")}

        before, after = owners(old), owners(new)
        for uid in before - after:
            deps = self.dependents.get(uid)
            if deps is not None:
                deps.discard((rt_key, key))
                if not deps:
                    del self.dependents[uid]
        for uid in after - before:
            self.dependents.setdefault(uid, set()).add((rt_key, key))

    def drop_type(self, rt_key: RtKey) -> None:
        self.objects.pop(rt_key, None)

    def compact(self) -> None:
        """Forget every logged event: watches from any version before now get 410."""
        for log in self.logs.values():
            log.events.clear()
            log.compacted_rv = self.rv

    def cut_watches(self, abrupt: bool = False) -> int:
        count = 0
        for log in self.logs.values():
            for watcher in list(log.watchers):
                watcher.cut(abrupt)
                count += 1
        return count
