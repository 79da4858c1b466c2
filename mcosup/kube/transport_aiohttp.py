"""aiohttp's client as a :class:`~mcosup.kube.transport.Transport`, for the long-lived processes.

Its C HTTP parser keeps up with watches that carry whole fleets (the supervisor's at 20,000 nodes);
its import (~0.15 s) is paid once per process. The builder pod, whose start is on the way to the first
image, uses :class:`~mcosup.kube.transport.Http1` instead.
"""

from __future__ import annotations

import contextlib
import ssl
from collections.abc import AsyncIterator, Mapping
from typing import Any

import aiohttp

from mcosup.kube.transport import Answer, TransportError

#: What aiohttp raises when no answer could be had (timeouts are TimeoutError already).
_FAILURES = (aiohttp.ClientConnectionError, aiohttp.ClientPayloadError)


class Aiohttp:
    """One aiohttp session: ``limit`` connections, ``proxy`` for every request (:class:`Transport`)."""

    def __init__(
        self,
        *,
        ssl_context: ssl.SSLContext | None = None,
        limit: int = 100,
        proxy: str | None = None,
        read_bufsize: int = 2**16,
    ) -> None:
        connector = aiohttp.TCPConnector(limit=limit, ssl=ssl_context if ssl_context is not None else True)
        # trust_env stays off: aiohttp would look proxies (and ~/.netrc) up in a thread on every request.
        # No session timeout: callers bound a call with asyncio.timeout, a stream by its own timeouts.
        self._session = aiohttp.ClientSession(
            connector=connector,
            proxy=proxy,
            read_bufsize=read_bufsize,
            timeout=aiohttp.ClientTimeout(total=None),
        )

    async def fetch(
        self,
        method: str,
        url: str,
        *,
        params: Mapping[str, str] | None = None,
        headers: Mapping[str, str] | None = None,
        body: bytes | None = None,
        verify: bool = True,
        server_hostname: str | None = None,
    ) -> Answer:
        async with self._request(
            method, url, params, headers, server_hostname, data=body, ssl=True if verify else False
        ) as resp:
            # aiohttp's headers are looked up case-insensitively already: no copy.
            return Answer(resp.status, resp.headers, await resp.read())

    @contextlib.asynccontextmanager
    async def stream(
        self,
        method: str,
        url: str,
        *,
        params: Mapping[str, str] | None = None,
        headers: Mapping[str, str] | None = None,
        connect_timeout: float | None = None,
        read_timeout: float | None = None,
        server_hostname: str | None = None,
    ) -> AsyncIterator[_Streaming]:
        timeout = aiohttp.ClientTimeout(total=None, connect=connect_timeout, sock_read=read_timeout)
        async with self._request(method, url, params, headers, server_hostname, timeout=timeout) as resp:
            yield _Streaming(resp)

    @contextlib.asynccontextmanager
    async def _request(
        self,
        method: str,
        url: str,
        params: Mapping[str, str] | None,
        headers: Mapping[str, str] | None,
        server_hostname: str | None,
        **options: Any,
    ) -> AsyncIterator[aiohttp.ClientResponse]:
        """aiohttp's request, its failures (while sending or while reading) as TransportError."""
        try:
            async with self._session.request(
                method,
                url,
                params=dict(params) if params else None,
                headers=headers,
                server_hostname=server_hostname,
                **options,
            ) as resp:
                yield resp
        except _FAILURES as exc:
            raise TransportError(f"{method} {url}: {type(exc).__name__}: {exc}") from exc

    async def close(self) -> None:
        await self._session.close()


class _Streaming:
    def __init__(self, resp: aiohttp.ClientResponse) -> None:
        self._resp = resp
        self.status = resp.status
        self.headers = resp.headers

    def chunks(self) -> AsyncIterator[bytes]:
        return self._resp.content.iter_any()

    async def read(self) -> bytes:
        return await self._resp.read()
