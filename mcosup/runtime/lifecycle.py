"""Running a process's root coroutine: SIGTERM, SIGINT and SIGHUP cancel it, so its cleanup runs."""

from __future__ import annotations

import asyncio
import signal
from collections.abc import Coroutine
from typing import Any, TypeVar

T = TypeVar("T")

#: Termination (Kubernetes, systemd, `kill`), Ctrl-C, and the terminal closing.
SIGNALS = (signal.SIGTERM, signal.SIGINT, signal.SIGHUP)


def run_or_signalled(coro: Coroutine[Any, Any, T]) -> T | None:
    """``coro``'s result, or None when a signal cancelled it. The first signal cancels it; later ones
    are ignored while its cleanup (``finally`` blocks, context managers) runs, so a second Ctrl-C or
    a second TERM does not leave its child processes behind."""

    async def main() -> T | None:
        task = asyncio.ensure_future(coro)
        loop = asyncio.get_running_loop()

        def cancel_once() -> None:
            for sig in SIGNALS:
                loop.add_signal_handler(sig, lambda: None)
            task.cancel()

        for sig in SIGNALS:
            loop.add_signal_handler(sig, cancel_once)
        try:
            return await task
        except asyncio.CancelledError:
            return None

    return asyncio.run(main())


def run_until_signalled(coro: Coroutine[Any, Any, None]) -> int:
    """Run ``coro`` until it ends or a signal cancels it (exit 0); its cleanup runs in ``finally``."""
    run_or_signalled(coro)
    return 0
