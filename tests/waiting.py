"""Waiting for an outcome with a deadline: tests synchronise on conditions, never on sleeps."""

from __future__ import annotations

import asyncio
import inspect
from collections.abc import Awaitable, Callable

import pytest


async def eventually(
    check: Callable[[], bool | Awaitable[bool]],
    *,
    within: float = 20.0,
    what: str = "condition",
    every: float = 0.02,
) -> None:
    """Poll ``check`` (sync or async) until it is true; fail the test naming ``what`` after ``within`` s."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + within
    while True:
        result = check()
        if inspect.isawaitable(result):
            result = await result
        if result:
            return
        if loop.time() > deadline:
            pytest.fail(f"timed out after {within}s waiting for {what}")
        await asyncio.sleep(every)
