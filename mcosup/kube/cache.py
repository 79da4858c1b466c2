"""Informer-style caches: one list-then-watch per kind, read by controllers instead of GETs.

A cache keeps the latest version of every matching object, tells subscribers of each change (relists
included, as synthetic ADDED/MODIFIED/DELETED so a controller never misses a deletion that happened
while the watch was down) and reports ``listed`` once its first list is in — readiness waits on it.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING, Generic, TypeVar

from mcosup.kube.client import Kube
from mcosup.kube.resources import Resource
from mcosup.kube.watching import list_then_watch
from mcosup.model.objects import Obj

if TYPE_CHECKING:  # only for annotations: processes without metrics never import prometheus_client
    from mcosup.runtime.metrics import Metrics

Key = tuple[str, str]  # (namespace or "", name)
Subscriber = Callable[[str, Obj], None]
T = TypeVar("T")


def key_of(obj: Obj) -> Key:
    meta = obj.get("metadata", {})
    return meta.get("namespace") or "", meta.get("name", "")


class Informer:
    def __init__(
        self,
        kube: Kube,
        resource: Resource,
        *,
        namespace: str | None = None,
        label_selector: str | None = None,
        field_selector: str | None = None,
        metrics: Metrics | None = None,
    ):
        self.kube = kube
        self.resource = resource
        self.namespace = namespace
        self.label_selector = label_selector
        self.field_selector = field_selector
        self.metrics = metrics
        self.listed = asyncio.Event()
        self._objects: dict[Key, Obj] = {}
        self._subscribers: list[Subscriber] = []

    def subscribe(self, callback: Subscriber) -> None:
        """``callback(event_type, obj)`` on every change; it must not block (enqueue a key, no I/O)."""
        self._subscribers.append(callback)

    def get(self, name: str, namespace: str | None = None) -> Obj | None:
        return self._objects.get((namespace or "", name))

    def items(self) -> Iterator[Obj]:
        return iter(list(self._objects.values()))

    def __len__(self) -> int:
        return len(self._objects)

    def derive(self, project: Callable[[Obj], T]) -> Derived[T]:
        """``project(obj)`` for this cache's objects, computed once per version of each object."""
        return Derived(self, project)

    def index(self, by: Callable[[Obj], str | None]) -> Index:
        """This cache's objects grouped by ``by(obj)`` (None: in no group), kept up to date change by
        change: a read of one group costs its size, not the whole cache's."""
        return Index(self, by)

    async def run(self) -> None:
        await list_then_watch(
            self.kube,
            self.resource,
            on_list=self._on_list,
            on_event=self._on_event,
            namespace=self.namespace,
            label_selector=self.label_selector,
            field_selector=self.field_selector,
            metrics=self.metrics,
        )

    async def _on_list(self, items: list[Obj]) -> None:
        fresh = {key_of(obj): obj for obj in items}
        gone = [obj for key, obj in self._objects.items() if key not in fresh]
        previous = self._objects
        self._objects = fresh
        for obj in gone:
            self._notify("DELETED", obj)
        for key, obj in fresh.items():
            old = previous.get(key)
            if old is None:
                self._notify("ADDED", obj)
            elif _version(old) != _version(obj):
                self._notify("MODIFIED", obj)
        self.listed.set()

    async def _on_event(self, kind: str, obj: Obj) -> None:
        if self.metrics is not None:
            self.metrics.watch_events.labels(str(self.resource)).inc()
        key = key_of(obj)
        if kind == "DELETED":
            self._objects.pop(key, None)
        else:
            self._objects[key] = obj
        self._notify(kind, obj)

    def _notify(self, kind: str, obj: Obj) -> None:
        for callback in self._subscribers:
            callback(kind, obj)


class Derived(Generic[T]):
    """A value computed from each cached object (a typed view, a parsed field), kept until the object
    changes: a controller that reads every object of a pool on each reconcile pays for the projection
    once per change of an object, not once per object per reconcile.

    Keyed on the object itself (the cache replaces an object on every change, and never edits one in
    place), so a relist or an event makes the next read compute afresh without any bookkeeping here.
    """

    def __init__(self, informer: Informer, project: Callable[[Obj], T]):
        self._informer = informer
        self._project = project
        self._memo: dict[Key, tuple[Obj, T]] = {}
        informer.subscribe(self._on_change)

    def get(self, name: str, namespace: str | None = None) -> T | None:
        """The value for the cached object, or None when the cache holds no such object."""
        key = (namespace or "", name)
        obj = self._informer._objects.get(key)
        if obj is None:
            return None
        return self.of(obj, key)

    def of(self, obj: Obj, key: Key | None = None) -> T:
        """The value for ``obj``: memoised when it is the cached version, computed when it is not."""
        key = key or key_of(obj)
        hit = self._memo.get(key)
        if hit is not None and hit[0] is obj:
            return hit[1]
        value = self._project(obj)
        if self._informer._objects.get(key) is obj:
            self._memo[key] = (obj, value)
        return value

    def _on_change(self, kind: str, obj: Obj) -> None:
        # The next read of this key recomputes anyway (a new object); dropping the entry now keeps
        # memory bounded by the cache's own size when objects are deleted.
        self._memo.pop(key_of(obj), None)


class Index:
    """See :meth:`Informer.index`. Fed by the informer's notifications (relists included), so a group
    always holds exactly the cached objects that belong to it."""

    def __init__(self, informer: Informer, by: Callable[[Obj], str | None]):
        self._by = by
        self._group_of: dict[Key, str] = {}
        self._groups: dict[str, dict[Key, Obj]] = {}
        for obj in informer._objects.values():
            self._place(key_of(obj), obj)
        informer.subscribe(self._on_change)

    def get(self, group: str) -> list[Obj]:
        return list(self._groups.get(group, {}).values())

    def _on_change(self, kind: str, obj: Obj) -> None:
        key = key_of(obj)
        old = self._group_of.pop(key, None)
        if old is not None:
            members = self._groups[old]
            del members[key]
            if not members:
                del self._groups[old]
        if kind != "DELETED":
            self._place(key, obj)

    def _place(self, key: Key, obj: Obj) -> None:
        group = self._by(obj)
        if group is not None:
            self._group_of[key] = group
            self._groups.setdefault(group, {})[key] = obj


def _version(obj: Obj) -> str:
    return str(obj.get("metadata", {}).get("resourceVersion", ""))
