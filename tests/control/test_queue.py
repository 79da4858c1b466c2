"""The work queue: de-duplication, one key never processed twice at once, per-key backoff."""

from __future__ import annotations

import asyncio

from mcosup.control.clock import FakeClock
from mcosup.control.controller import Controller, Result, TerminalError
from mcosup.control.queue import WorkQueue
from mcosup.runtime.metrics import Metrics


async def test_adding_a_queued_key_twice_hands_it_out_once() -> None:
    q: WorkQueue[str] = WorkQueue()
    for key in ["a", "b", "a", "a", "c", "b"]:
        q.add(key)
    got = [await q.get() for _ in range(3)]
    assert got == ["a", "b", "c"]
    assert len(q) == 0


async def test_a_key_added_while_processing_waits_for_done() -> None:
    q: WorkQueue[str] = WorkQueue()
    q.add("a")
    first = await q.get()
    q.add("a")  # an event arrives while a worker holds the key
    second = asyncio.ensure_future(q.get())
    await asyncio.sleep(0)
    assert not second.done(), "the key was handed to a second worker while the first still held it"
    q.done(first)
    assert await asyncio.wait_for(second, 1) == "a"
    q.done("a")


async def test_rate_limited_keys_back_off_per_key() -> None:
    clock = FakeClock()
    q: WorkQueue[str] = WorkQueue(clock=clock, base_delay=1.0, max_delay=8.0)
    delays = [q.add_rate_limited("flaky") for _ in range(5)]
    assert delays == [1.0, 2.0, 4.0, 8.0, 8.0]
    assert q.add_rate_limited("other") == 1.0, "one key's failures must not slow another"
    q.forget("flaky")
    assert q.add_rate_limited("flaky") == 1.0


async def test_delayed_key_is_handed_out_only_when_due() -> None:
    clock = FakeClock()
    q: WorkQueue[str] = WorkQueue(clock=clock)
    q.add_after("later", 10)
    getter = asyncio.ensure_future(q.get())
    await asyncio.sleep(0.01)
    assert not getter.done()
    clock.advance(5)
    await asyncio.sleep(0.01)
    assert not getter.done()
    clock.advance(5)
    assert await asyncio.wait_for(getter, 1) == "later"


async def test_controller_never_runs_one_key_concurrently_and_retries_failures() -> None:
    running: set[str] = set()
    overlaps: list[str] = []
    calls: dict[str, int] = {}
    done = asyncio.Event()

    async def reconcile(key: str) -> Result:
        if key in running:
            overlaps.append(key)
        running.add(key)
        calls[key] = calls.get(key, 0) + 1
        await asyncio.sleep(0.005)
        running.discard(key)
        if key == "flaky" and calls[key] < 3:
            raise RuntimeError("transient")
        if key == "bad":
            raise TerminalError("invalid spec")
        if calls.get("flaky", 0) >= 3 and calls.get("k0", 0) >= 1:
            done.set()
        return Result()

    metrics = Metrics()
    controller: Controller[str] = Controller(
        "test", reconcile, workers=4, queue=WorkQueue(base_delay=0.001), metrics=metrics
    )
    async with asyncio.TaskGroup() as tg:
        task = tg.create_task(controller.run())
        for _ in range(20):
            for key in ["k0", "k1", "flaky", "bad"]:
                controller.enqueue(key)
            await asyncio.sleep(0.001)
        await asyncio.wait_for(done.wait(), 5)
        task.cancel()
    assert overlaps == []
    assert calls["flaky"] >= 3
    assert calls["bad"] >= 1
    value = metrics.registry.get_sample_value
    assert value("mcosup_reconciles_total", {"controller": "test", "result": "terminal"}) >= 1
    assert value("mcosup_reconciles_total", {"controller": "test", "result": "error"}) >= 2
