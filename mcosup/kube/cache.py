"""Informer-style caches: one list-then-watch per kind, read by controllers instead of GETs.

A cache keeps the latest version of every matching object, tells subscribers of each change (relists
included, as synthetic ADDED/MODIFIED/DELETED so a controller never misses a deletion that happened
while the watch was down) and reports ``listed`` once its first list is in — readiness waits on it.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING

from mcosup.kube.client import Kube
from mcosup.kube.resources import Resource
from mcosup.kube.watching import list_then_watch
from mcosup.model.objects import Obj

if TYPE_CHECKING:  # only for annotations: processes without metrics never import prometheus_client
    from mcosup.runtime.metrics import Metrics

Key = tuple[str, str]  # (namespace or "", name)
Subscriber = Callable[[str, Obj], None]


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


def _version(obj: Obj) -> str:
    return str(obj.get("metadata", {}).get("resourceVersion", ""))
