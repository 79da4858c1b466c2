"""The plain-HTTP port: ``/healthz``, ``/readyz`` and ``/metrics``.

Checks are injected as named callables so this module knows nothing about what is being checked.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator, Callable, Mapping

from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from mcosup.runtime.metrics import Metrics

log = logging.getLogger(__name__)

Check = Callable[[], str | None]  # None when fine, else what is wrong


def probes_app(
    *, liveness: Mapping[str, Check], readiness: Mapping[str, Check], metrics: Metrics
) -> web.Application:
    async def run_checks(checks: Mapping[str, Check]) -> web.Response:
        failures = {name: problem for name, check in checks.items() if (problem := check()) is not None}
        if failures:
            text = "".join(f"[-] {name}: {problem}\n" for name, problem in failures.items())
            return web.Response(status=503, text=text)
        return web.Response(text="".join(f"[+] {name} ok\n" for name in checks) or "ok\n")

    async def healthz(_: web.Request) -> web.Response:
        return await run_checks(liveness)

    async def readyz(_: web.Request) -> web.Response:
        return await run_checks(readiness)

    async def metrics_handler(_: web.Request) -> web.Response:
        body = generate_latest(metrics.registry)
        return web.Response(body=body, headers={"Content-Type": CONTENT_TYPE_LATEST})

    app = web.Application()
    app.router.add_get("/healthz", healthz)
    app.router.add_get("/readyz", readyz)
    app.router.add_get("/metrics", metrics_handler)
    return app


@contextlib.asynccontextmanager
async def serving(app: web.Application, host: str, port: int, **site_kwargs: object) -> AsyncIterator[int]:
    """Serve ``app`` while the context is open; yields the bound port. Cleanup is shielded and bounded."""
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    try:
        site = web.TCPSite(runner, host, port, **site_kwargs)  # type: ignore[arg-type]
        await site.start()
        server = site._server
        sockets = getattr(server, "sockets", None) or []
        yield sockets[0].getsockname()[1] if sockets else port
    finally:
        with contextlib.suppress(TimeoutError):
            await asyncio.shield(asyncio.wait_for(runner.cleanup(), 5))
