"""Running a process's root coroutine: SIGTERM and SIGINT cancel it, which is a clean exit."""

from __future__ import annotations

import asyncio
import signal
from collections.abc import Coroutine
from typing import Any


def run_until_signalled(coro: Coroutine[Any, Any, None]) -> int:
    """Run ``coro`` until it ends or a signal cancels it (exit 0); its cleanup runs in ``finally``."""

    async def main() -> int:
        task = asyncio.ensure_future(coro)
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, task.cancel)
        try:
            await task
        except asyncio.CancelledError:
            return 0
        return 0

    return asyncio.run(main())
