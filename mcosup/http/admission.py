"""The HTTPS admission webhook server: AdmissionReview in, the pure policy's verdict out.

Thin by design: parsing and verdicts live in :mod:`webhooks`. This module reads the body (bounded),
asks the injected facts provider for the cluster facts of the moment, and answers with orjson. A body
that is not an AdmissionReview gets HTTP 400 with the reason; a body over the limit gets 400 too. An
unexpected exception in the policy (a bug) answers 500 so the API server applies the rule's
``failurePolicy`` — the webhook configuration decides, per resource, whether that blocks or passes.

Served on every supervisor replica, leader or not: verdicts read caches only and never write.
"""

from __future__ import annotations

import asyncio
import contextlib
import inspect
import logging
import time
from collections.abc import AsyncIterator, Awaitable, Callable

import orjson
from aiohttp import web

from mcosup.http.tls import CertFileReloader
from mcosup.runtime.logs import fields
from mcosup.runtime.metrics import WebhookMetrics
from webhooks.facts import ClusterFacts
from webhooks.policy import review
from webhooks.review import MalformedReview, parse_review, respond, uid_of

log = logging.getLogger(__name__)

FactsProvider = Callable[[], ClusterFacts | Awaitable[ClusterFacts]]

# The API server caps a request body at 3 MiB, and a review carries the object and the old object.
DEFAULT_MAX_BODY_BYTES = 7 * 1024 * 1024
# Reviews bigger than this are judged in a worker thread so one huge MachineConfig (or a gzip bomb
# being refused) does not stall the event loop for long; below it the thread hop costs more than it
# saves (the GIL serialises the work anyway), as bench/webhook_latency.py shows.
OFFLOAD_BYTES = 2 * 1024 * 1024
KNOWN_KINDS = frozenset(("MachineConfig", "MachineConfigPool", "MachineOSConfig", "Node", "ConfigMap"))
WEBHOOK_PATH = "/validate"


def _bad_request(reason: str) -> web.Response:
    return web.Response(status=400, text=reason + "\n", content_type="text/plain")


def admission_app(
    facts: FactsProvider,
    *,
    metrics: WebhookMetrics,
    max_body_bytes: int = DEFAULT_MAX_BODY_BYTES,
) -> web.Application:
    """The aiohttp application answering ``POST /validate`` and ``POST /validate/<anything>``.

    ``facts`` is called once per review and returns (or resolves to) the current :class:`ClusterFacts`.
    """

    async def judge(body: bytes) -> tuple[str, bytes, str]:
        request = parse_review(body)
        provided = facts()
        current = await provided if inspect.isawaitable(provided) else provided
        assert isinstance(current, ClusterFacts), "facts provider must return ClusterFacts"
        if len(body) > OFFLOAD_BYTES:
            verdict = await asyncio.to_thread(review, request, current)
        else:
            verdict = review(request, current)
        kind = request["kind"]["kind"]
        if not verdict.allowed:
            log.info(
                "denied %s %s: %s",
                request["operation"],
                kind,
                verdict.message.splitlines()[0],
                extra=fields(name=request["name"], user=request["userInfo"]["username"], uid=request["uid"]),
            )
        return (
            kind if kind in KNOWN_KINDS else "other",
            orjson.dumps(respond(request["uid"], verdict)),
            "allowed" if verdict.allowed else "denied",
        )

    async def handle(request: web.Request) -> web.Response:
        started = time.perf_counter()
        kind, result = "unknown", "malformed"
        try:
            try:
                body = await request.read()
            except web.HTTPRequestEntityTooLarge:
                return _bad_request(f"request body is larger than {max_body_bytes} bytes")
            try:
                kind, payload, result = await judge(body)
            except MalformedReview as exc:
                log.info("malformed admission review: %s", exc.reason, extra=fields(uid=uid_of(body)))
                return _bad_request(f"malformed AdmissionReview: {exc.reason}")
            except Exception:
                result = "error"
                log.exception("admission review failed", extra=fields(uid=uid_of(body)))
                return web.Response(status=500, text="internal error reviewing the request\n")
            return web.Response(body=payload, content_type="application/json")
        finally:
            metrics.webhook_requests.labels(kind=kind, result=result).inc()
            metrics.webhook_latency.observe(time.perf_counter() - started)

    app = web.Application(client_max_size=max_body_bytes)
    app.router.add_post(WEBHOOK_PATH, handle)
    app.router.add_post(WEBHOOK_PATH + "/{rule}", handle)
    return app


@contextlib.asynccontextmanager
async def serving_tls(
    app: web.Application, tls: CertFileReloader, host: str, port: int
) -> AsyncIterator[int]:
    """Serve ``app`` over TLS while the context is open; yields the bound port (``port=0`` picks one)."""
    runner = web.AppRunner(app, access_log=None, handle_signals=False)
    await runner.setup()
    try:
        site = web.TCPSite(runner, host, port, ssl_context=tls.context, backlog=512)
        await site.start()
        bound = port
        for address in runner.addresses:
            if isinstance(address, tuple) and len(address) >= 2:
                bound = int(address[1])
                break
        yield bound
    finally:
        with contextlib.suppress(TimeoutError):
            await asyncio.shield(asyncio.wait_for(runner.cleanup(), 5))


async def run_admission_server(
    facts: FactsProvider,
    *,
    tls: CertFileReloader,
    metrics: WebhookMetrics,
    host: str = "0.0.0.0",
    port: int = 9443,
    reload_interval: float = 5.0,
    max_body_bytes: int = DEFAULT_MAX_BODY_BYTES,
    started: Callable[[int], None] | None = None,
) -> None:
    """Serve the webhook and poll the certificate files until cancelled.

    ``started(port)`` is called once the listener is bound (e.g. ``task_status.started`` or an Event's
    setter), so dependents start only after the webhook can answer.
    """
    if not tls.loaded:
        tls.load()
    app = admission_app(facts, metrics=metrics, max_body_bytes=max_body_bytes)
    async with serving_tls(app, tls, host, port) as bound:
        log.info("admission webhook serving on %s:%d", host, bound)
        if started is not None:
            started(bound)
        await tls.watch(reload_interval)
