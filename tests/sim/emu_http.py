"""HTTP helpers for the emulator's tests: raw requests as a given user, and small object builders."""

from __future__ import annotations

import base64
import contextlib
import json
import ssl
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import aiohttp
import trustme
from aiohttp import web
from multidict import CIMultiDictProxy


class Api:
    """Raw HTTP against the emulator: every call returns (status, decoded body, headers)."""

    def __init__(self, session: aiohttp.ClientSession, url: str, ctx: ssl.SSLContext, token: str) -> None:
        self.session = session
        self.url = url
        self.ctx = ctx
        self.token = token

    def as_token(self, token: str) -> Api:
        return Api(self.session, self.url, self.ctx, token)

    async def call(
        self,
        method: str,
        path: str,
        body: Any = None,
        *,
        content_type: str = "application/json",
        params: dict[str, str] | None = None,
        raw: bytes | None = None,
    ) -> tuple[int, Any, CIMultiDictProxy[str]]:
        headers = {"Authorization": f"Bearer {self.token}"} if self.token else {}
        data = raw if raw is not None else (json.dumps(body).encode() if body is not None else None)
        if data is not None:
            headers["Content-Type"] = content_type
        async with self.session.request(
            method, self.url + path, data=data, headers=headers, params=params, ssl=self.ctx
        ) as resp:
            text = await resp.text()
            try:
                decoded: Any = json.loads(text)
            except ValueError:
                decoded = text
            return resp.status, decoded, resp.headers

    async def get(self, path: str, **params: str) -> tuple[int, Any]:
        status, body, _ = await self.call("GET", path, params=params or None)
        return status, body

    async def post(self, path: str, body: Any, **params: str) -> tuple[int, Any]:
        status, out, _ = await self.call("POST", path, body, params=params or None)
        return status, out

    async def put(self, path: str, body: Any, **params: str) -> tuple[int, Any]:
        status, out, _ = await self.call("PUT", path, body, params=params or None)
        return status, out

    async def patch(self, path: str, body: Any, kind: str = "merge", **params: str) -> tuple[int, Any]:
        content_type = {
            "merge": "application/merge-patch+json",
            "json": "application/json-patch+json",
            "strategic": "application/strategic-merge-patch+json",
        }[kind]
        status, out, _ = await self.call(
            "PATCH", path, body, content_type=content_type, params=params or None
        )
        return status, out

    async def delete(self, path: str, body: Any = None, **params: str) -> tuple[int, Any]:
        status, out, _ = await self.call("DELETE", path, body, params=params or None)
        return status, out

    async def watch(self, path: str, **params: str) -> AsyncIterator[dict[str, Any]]:
        """The events of a watch, one dict per line, until the server ends the stream."""
        headers = {"Authorization": f"Bearer {self.token}"}
        async with self.session.get(
            self.url + path, params={"watch": "true", **params}, headers=headers, ssl=self.ctx
        ) as resp:
            assert resp.status == 200, await resp.text()
            async for line in resp.content:
                if line.strip():
                    yield json.loads(line)


def cm(name: str, **data: str) -> dict[str, Any]:
    return {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": name}, "data": data}


@contextlib.asynccontextmanager
async def webhook_server(
    handle: Callable[[web.Request], Awaitable[web.Response]], *names: str
) -> AsyncIterator[tuple[int, str]]:
    """An HTTPS server on loopback answering ``POST /validate`` with ``handle``: (port, caBundle).

    Its certificate names 127.0.0.1 and ``names``; the base64 CA bundle is what a webhook
    configuration's ``clientConfig.caBundle`` takes.
    """
    ca = trustme.CA()
    ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ca.issue_cert("127.0.0.1", *names).configure_cert(ctx)
    app = web.Application()
    app.router.add_post("/validate", handle)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    try:
        await web.TCPSite(runner, "127.0.0.1", 0, ssl_context=ctx).start()
        yield int(runner.addresses[0][1]), base64.b64encode(ca.cert_pem.bytes()).decode()
    finally:
        await runner.cleanup()
