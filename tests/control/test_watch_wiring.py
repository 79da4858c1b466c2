"""Controller.watch: the one way a watch wakes a controller — each change enqueues the keys it names."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from mcosup.control.controller import Controller, always, by_name


class FakeSource:
    def __init__(self) -> None:
        self.callbacks: list[Callable[[str, Mapping[str, Any]], None]] = []

    def subscribe(self, callback: Callable[[str, Mapping[str, Any]], None], /) -> None:
        self.callbacks.append(callback)

    def change(self, event: str, name: str) -> None:
        for callback in self.callbacks:
            callback(event, {"metadata": {"name": name}})


async def _noop(_: str) -> None:
    return None


async def _queued(controller: Controller[str]) -> set[str]:
    keys = set()
    for _ in range(len(controller.queue)):
        key = await controller.queue.get()
        controller.queue.done(key)
        keys.add(key)
    return keys


async def test_by_name_enqueues_the_changed_objects_name() -> None:
    source, controller = FakeSource(), Controller[str]("c", _noop)
    controller.watch(source, by_name)
    source.change("ADDED", "worker")
    source.change("MODIFIED", "master")
    assert await _queued(controller) == {"worker", "master"}


async def test_always_enqueues_one_key_whatever_changed() -> None:
    source, controller = FakeSource(), Controller[str]("c", _noop)
    controller.watch(source, always("optin"))
    source.change("ADDED", "a")
    source.change("DELETED", "b")
    assert await _queued(controller) == {"optin"}


async def test_a_change_may_wake_several_keys_or_none() -> None:
    source, controller = FakeSource(), Controller[str]("c", _noop)
    controller.watch(source, lambda event, obj: [] if event == "BOOKMARK" else ["x", "y"])
    source.change("BOOKMARK", "a")
    assert await _queued(controller) == set()
    source.change("MODIFIED", "a")
    assert await _queued(controller) == {"x", "y"}
