"""HTTP for the API client and the registry calls: one small interface, two implementations.

:class:`Transport` is every HTTP call mcosup's clients make: a request read whole (:meth:`~Transport.fetch`)
or a response read as it arrives (:meth:`~Transport.stream`, for watches). Two implementations:

- :class:`Http1` (here): HTTP/1.1 on asyncio streams, with `h11 <https://h11.readthedocs.io>`_ for the
  protocol itself. It imports in a few milliseconds. The builder pod uses it: the builder starts on every
  first opt-in and its start is on the way to the first image, and importing aiohttp alone took about a
  third of that start (110-130 ms on an idle node, more under load).
- ``mcosup.kube.transport_aiohttp.Aiohttp``: aiohttp's client, with its C HTTP parser, for the long-lived
  processes whose watches carry whole fleets (the supervisor at 20,000 nodes) and where the import is
  paid once.

Both raise :class:`TransportError` when no answer could be had (connection refused or cut, a protocol
error) and :class:`TimeoutError` when the answer took too long; an HTTP error status is an answer.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import os
import ssl
import urllib.parse
from collections.abc import AsyncIterator, Iterable, Iterator, Mapping
from dataclasses import dataclass
from typing import Any, Protocol

import h11

#: Bytes asked of the socket per read. Large: a list of thousands of objects is tens of megabytes.
_READ_SIZE = 2**18
#: Methods that may be sent again when a kept-alive connection turns out closed before any answer came.
_IDEMPOTENT = frozenset({"GET", "HEAD", "PUT", "DELETE", "OPTIONS"})


class TransportError(Exception):
    """No HTTP answer: the connection failed or broke, or the peer broke the protocol."""


class Headers(Mapping[str, str]):
    """Response headers, looked up case-insensitively (a repeated header keeps its last value)."""

    __slots__ = ("_items",)

    def __init__(self, pairs: Iterable[tuple[str, str]]) -> None:
        self._items = {name.lower(): value for name, value in pairs}

    def __getitem__(self, name: str) -> str:
        return self._items[name.lower()]

    def __iter__(self) -> Iterator[str]:
        return iter(self._items)

    def __len__(self) -> int:
        return len(self._items)


@dataclass(frozen=True, slots=True)
class Answer:
    """A response read whole; its ``headers`` are looked up case-insensitively."""

    status: int
    headers: Mapping[str, str]
    body: bytes


class Streaming(Protocol):
    """A response whose body is read as it arrives; its ``headers`` are looked up case-insensitively."""

    @property
    def status(self) -> int: ...

    @property
    def headers(self) -> Mapping[str, str]: ...

    def chunks(self) -> AsyncIterator[bytes]:
        """The body's bytes as they arrive (however the peer framed them), until it ends."""
        ...

    async def read(self) -> bytes:
        """The rest of the body, whole."""
        ...


class Transport(Protocol):
    """The HTTP calls mcosup's clients make."""

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
        """One request, its answer read whole (bound it with ``asyncio.timeout``).

        ``verify=False`` accepts any certificate (test registries); ``server_hostname`` is the name the
        server's certificate must carry when it is not the URL's host (kubeconfig's ``tls-server-name``).
        """
        ...

    def stream(
        self,
        method: str,
        url: str,
        *,
        params: Mapping[str, str] | None = None,
        headers: Mapping[str, str] | None = None,
        connect_timeout: float | None = None,
        read_timeout: float | None = None,
        server_hostname: str | None = None,
    ) -> contextlib.AbstractAsyncContextManager[Streaming]:
        """A request whose answer is read as it arrives; ``read_timeout`` bounds each wait for bytes."""
        ...

    async def close(self) -> None: ...


def basic_authorization(user: str, password: str) -> str:
    """An HTTP Basic credentials value (RFC 7617, UTF-8): for ``Authorization`` or ``Proxy-Authorization``."""
    return "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode("ascii")


def with_query(url: str, params: Mapping[str, str] | None) -> str:
    if not params:
        return url
    return url + ("&" if "?" in url else "?") + urllib.parse.urlencode(params)


def env_proxy(url: str) -> str | None:
    """The proxy ``HTTPS_PROXY``/``HTTP_PROXY`` name for ``url``, unless ``NO_PROXY`` exempts its host.

    urllib's reading of the variables, imported only when one is set (it costs ~15 ms of start-up).
    """
    if not any(name.lower().endswith("_proxy") for name in os.environ):
        return None
    import urllib.request

    split = urllib.parse.urlsplit(url)
    proxies = urllib.request.getproxies_environment()
    if split.hostname and urllib.request.proxy_bypass(split.hostname):  # NO_PROXY
        return None
    return proxies.get(split.scheme)


def _insecure_context() -> ssl.SSLContext:
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    return context


@dataclass(frozen=True, slots=True)
class _Origin:
    scheme: str
    host: str
    port: int
    verify: bool
    server_hostname: str | None


class _Connection:
    """One HTTP/1.1 connection: the stream pair and h11's state of it."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader, self.writer = reader, writer
        self.h11 = h11.Connection(h11.CLIENT)
        self.reused = False

    async def send(self, *events: h11.Event) -> None:
        for event in events:
            data = self.h11.send(event)
            if data:
                self.writer.write(data)
        await self.writer.drain()

    async def next_event(self, wait: float | None) -> Any:
        """h11's next event, reading from the socket as it needs; ``wait`` bounds each read."""
        while True:
            event = self.h11.next_event()
            if event is not h11.NEED_DATA:
                return event
            async with asyncio.timeout(wait):
                data = await self.reader.read(_READ_SIZE)
            self.h11.receive_data(data)  # b"": the peer closed; h11 says whether that ends the message

    def reusable(self) -> bool:
        if self.h11.our_state is not h11.DONE or self.h11.their_state is not h11.DONE:
            return False
        self.h11.start_next_cycle()
        return True

    def close(self) -> None:
        self.writer.close()


class _Response:
    """The answer on a connection, its body read on demand (:class:`Streaming`)."""

    def __init__(self, connection: _Connection, head: h11.Response, read_timeout: float | None) -> None:
        self._connection = connection
        self._read_timeout = read_timeout
        self.status = head.status_code
        self.headers = Headers([(k.decode("latin-1"), v.decode("latin-1")) for k, v in head.headers])
        self.complete = False

    async def chunks(self) -> AsyncIterator[bytes]:
        while not self.complete:
            event = await self._connection.next_event(self._read_timeout)
            if isinstance(event, h11.Data):
                yield bytes(event.data)
            elif isinstance(event, h11.EndOfMessage):
                self.complete = True
            elif isinstance(event, h11.ConnectionClosed):
                raise TransportError("connection closed before the end of the answer")

    async def read(self) -> bytes:
        return b"".join([chunk async for chunk in self.chunks()])


class Http1:
    """HTTP/1.1 over asyncio streams, kept-alive connections reused per origin (:class:`Transport`).

    ``ssl_context`` verifies HTTPS servers (default: the system's CA store, loaded on first use in a
    thread). ``proxy`` (an ``http://`` URL, credentials in it if any) carries every request: plain HTTP
    in absolute form, HTTPS through a ``CONNECT`` tunnel.
    """

    def __init__(self, *, ssl_context: ssl.SSLContext | None = None, proxy: str | None = None) -> None:
        self._context = ssl_context
        self._proxy = urllib.parse.urlsplit(proxy) if proxy else None
        self._idle: dict[_Origin, list[_Connection]] = {}
        self._open: set[_Connection] = set()

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
        while True:
            async with self._exchange(
                method, with_query(url, params), headers, body, None, verify, server_hostname
            ) as response:
                if response is None:
                    continue  # a kept-alive connection had closed: again on a new one
                return Answer(response.status, response.headers, await response.read())

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
    ) -> AsyncIterator[Streaming]:
        while True:
            async with (
                asyncio.timeout(connect_timeout) as until_answered,
                self._exchange(
                    method, with_query(url, params), headers, None, read_timeout, True, server_hostname
                ) as response,
            ):
                if response is None:
                    continue
                until_answered.reschedule(None)
                yield response
                return

    @contextlib.asynccontextmanager
    async def _exchange(
        self,
        method: str,
        url: str,
        headers: Mapping[str, str] | None,
        body: bytes | None,
        read_timeout: float | None,
        verify: bool,
        server_hostname: str | None,
    ) -> AsyncIterator[_Response | None]:
        """Send one request and read the answer's head; None when a reused connection had closed."""
        split = urllib.parse.urlsplit(url)
        if split.scheme not in ("http", "https") or not split.hostname:
            raise TransportError(f"not an http(s) URL: {url!r}")
        port = split.port or (443 if split.scheme == "https" else 80)
        origin = _Origin(split.scheme, split.hostname, port, verify, server_hostname)
        connection = await self._connection(origin)
        target = (split.path or "/") + (f"?{split.query}" if split.query else "")
        request_headers = [("Host", split.netloc.rpartition("@")[2]), *(headers or {}).items()]
        if self._proxy is not None and origin.scheme == "http":
            target = url  # absolute form, for the proxy (HTTPS goes through a tunnel instead)
            request_headers.extend(self._proxy_authorization())
        if body is not None:
            request_headers.append(("Content-Length", str(len(body))))
        elif method in ("POST", "PUT", "PATCH"):
            request_headers.append(("Content-Length", "0"))
        released = False
        try:
            try:
                request = h11.Request(method=method, target=target, headers=request_headers)
                await connection.send(request, *([h11.Data(data=body)] if body else []), h11.EndOfMessage())
                head = await connection.next_event(read_timeout)
                while isinstance(head, h11.InformationalResponse):
                    head = await connection.next_event(read_timeout)
                if isinstance(head, h11.ConnectionClosed):
                    raise ConnectionResetError("the server closed the connection without answering")
            except (OSError, h11.ProtocolError) as exc:
                if connection.reused and method in _IDEMPOTENT:
                    # A kept-alive connection the server had closed while it was idle: no answer came, so
                    # a request that may be sent twice goes again on another connection.
                    yield None
                    return
                raise TransportError(f"{method} {url}: {type(exc).__name__}: {exc}") from exc
            response = _Response(connection, head, read_timeout)
            try:
                yield response
            except (OSError, h11.ProtocolError) as exc:
                raise TransportError(f"{method} {url}: {type(exc).__name__}: {exc}") from exc
            if response.complete and connection.reusable():
                self._idle.setdefault(origin, []).append(connection)
                released = True
        finally:
            if not released:
                self._open.discard(connection)
                connection.close()

    async def _connection(self, origin: _Origin) -> _Connection:
        idle = self._idle.get(origin)
        while idle:
            connection = idle.pop()
            if not connection.reader.at_eof() and not connection.writer.is_closing():
                connection.reused = True
                return connection
            self._open.discard(connection)
            connection.close()
        try:
            connection = await self._connect(origin)
        except (OSError, h11.ProtocolError) as exc:
            raise TransportError(
                f"cannot connect to {origin.scheme}://{origin.host}:{origin.port}: {exc}"
            ) from exc
        self._open.add(connection)
        return connection

    async def _connect(self, origin: _Origin) -> _Connection:
        context = await self._tls(origin) if origin.scheme == "https" else None
        name = origin.server_hostname or origin.host
        if self._proxy is None:
            reader, writer = await asyncio.open_connection(
                origin.host, origin.port, ssl=context, server_hostname=name if context else None
            )
            return _Connection(reader, writer)
        reader, writer = await asyncio.open_connection(self._proxy.hostname, self._proxy.port or 80)
        if context is None:
            return _Connection(reader, writer)
        tunnel = _Connection(reader, writer)
        authority = f"{origin.host}:{origin.port}"
        try:
            await tunnel.send(
                h11.Request(
                    method="CONNECT",
                    target=authority,
                    headers=[("Host", authority), *self._proxy_authorization()],
                ),
                h11.EndOfMessage(),
            )
            answer = await tunnel.next_event(None)
            if not isinstance(answer, h11.Response) or answer.status_code != 200:
                status = getattr(answer, "status_code", "no answer")
                raise TransportError(f"proxy {self._proxy.netloc} refused a tunnel to {authority}: {status}")
            await writer.start_tls(context, server_hostname=name)
        except BaseException:
            writer.close()
            raise
        return _Connection(reader, writer)

    def _proxy_authorization(self) -> list[tuple[str, str]]:
        if self._proxy is None or self._proxy.username is None:
            return []
        user = urllib.parse.unquote(self._proxy.username)
        password = urllib.parse.unquote(self._proxy.password or "")
        return [("Proxy-Authorization", basic_authorization(user, password))]

    async def _tls(self, origin: _Origin) -> ssl.SSLContext:
        if not origin.verify:
            return _insecure_context()
        if self._context is None:
            # The system's CA store: reading the whole bundle takes tens of milliseconds, off the loop.
            self._context = await asyncio.to_thread(ssl.create_default_context)
        return self._context

    async def close(self) -> None:
        for connection in self._open:
            connection.close()
        self._open.clear()
        self._idle.clear()
