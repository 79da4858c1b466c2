"""The two HTTP transports give the same answers: requests, kept-alive connections, streams, failures,
TLS and proxies, against aiohttp's server and against raw sockets that misbehave on purpose."""

from __future__ import annotations

import asyncio
import contextlib
import ssl
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import orjson
import pytest
import trustme
from aiohttp import web

from mcosup.kube.transport import Http1, Transport, TransportError
from mcosup.kube.transport_aiohttp import Aiohttp

Factory = Callable[..., Transport]
KINDS: dict[str, Factory] = {"aiohttp": Aiohttp, "http1": Http1}


@pytest.fixture(params=list(KINDS))
def make(request: pytest.FixtureRequest) -> Factory:
    return KINDS[request.param]


@contextlib.asynccontextmanager
async def transport(make: Factory, **options: Any) -> AsyncIterator[Transport]:
    http = make(**options)
    try:
        yield http
    finally:
        await http.close()


@contextlib.asynccontextmanager
async def serve(app: web.Application, context: ssl.SSLContext | None = None) -> AsyncIterator[str]:
    """``app`` on a free port of 127.0.0.1; yields its base URL."""
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0, ssl_context=context)
    await site.start()
    try:
        yield f"{'https' if context else 'http'}://127.0.0.1:{runner.addresses[0][1]}"
    finally:
        await runner.cleanup()


@contextlib.asynccontextmanager
async def raw_server(
    handle: Callable[[asyncio.StreamReader, asyncio.StreamWriter], Awaitable[None]],
) -> AsyncIterator[str]:
    """A TCP server running ``handle`` per connection (for answers no well-behaved server gives)."""
    handlers: set[asyncio.Task[Any]] = set()

    async def guarded(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        handlers.add(task)
        try:
            await handle(reader, writer)
        except (ConnectionError, asyncio.IncompleteReadError, asyncio.CancelledError):
            pass  # a client gone, or the test over (a handler's task must not end cancelled)
        finally:
            writer.close()

    server = await asyncio.start_server(guarded, "127.0.0.1", 0)
    try:
        yield f"http://127.0.0.1:{server.sockets[0].getsockname()[1]}"
    finally:
        server.close()
        for task in handlers:
            task.cancel()
        await asyncio.gather(*handlers, return_exceptions=True)


async def read_head(reader: asyncio.StreamReader) -> bytes:
    return await reader.readuntil(b"\r\n\r\n")


def echo_app() -> web.Application:
    peers: set[Any] = set()

    async def echo(request: web.Request) -> web.Response:
        peers.add(request.transport.get_extra_info("peername") if request.transport else None)
        body = {
            "method": request.method,
            "query": dict(request.query),
            "body": (await request.read()).decode(),
            "accept": request.headers.get("Accept"),
            "connections": len(peers),
        }
        status = int(request.query.get("status", "200"))
        return web.Response(status=status, body=orjson.dumps(body), headers={"X-Answer-Kind": "echo"})

    app = web.Application()
    app.router.add_route("*", "/echo", echo)
    return app


async def test_a_request_and_its_answer(make: Factory) -> None:
    async with serve(echo_app()) as base, transport(make) as http:
        answer = await http.fetch(
            "POST", base + "/echo", params={"a": "1 2"}, headers={"Accept": "x/y"}, body=b'{"k": 1}'
        )
        assert answer.status == 200
        assert answer.headers["x-answer-kind"] == answer.headers.get("X-ANSWER-KIND") == "echo"
        echoed = orjson.loads(answer.body)
        assert (echoed["method"], echoed["query"], echoed["body"], echoed["accept"]) == (
            "POST",
            {"a": "1 2"},
            '{"k": 1}',
            "x/y",
        )
        head = await http.fetch("HEAD", base + "/echo")
        assert (head.status, head.body) == (200, b"")
        missing = await http.fetch("GET", base + "/nothing-here")
        assert missing.status == 404  # an HTTP error is an answer, not a TransportError
        refused = await http.fetch("GET", base + "/echo", params={"status": "503"})
        assert refused.status == 503 and orjson.loads(refused.body)["method"] == "GET"


async def test_kept_alive_connections_are_reused(make: Factory) -> None:
    async with serve(echo_app()) as base, transport(make) as http:
        for _ in range(4):
            answer = await http.fetch("GET", base + "/echo")
        assert orjson.loads(answer.body)["connections"] == 1


async def test_a_connection_the_server_closed_while_idle_is_replaced(make: Factory) -> None:
    connections = 0
    closed = asyncio.Event()

    async def answer_once_then_close(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        nonlocal connections
        connections += 1
        await read_head(reader)
        writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")
        await writer.drain()
        writer.close()
        await writer.wait_closed()
        closed.set()

    async with raw_server(answer_once_then_close) as base, transport(make) as http:
        for _ in range(3):
            closed.clear()
            assert (await http.fetch("GET", base + "/")).body == b"ok"
            await closed.wait()
            # The FIN is on the loopback already; a few turns of this one event loop deliver it to the
            # client's idle connection.
            await asyncio.sleep(0.02)
        assert connections == 3


async def test_http1_sends_an_idempotent_request_again_when_a_reused_connection_dies_unanswered() -> None:
    requests: list[bytes] = []

    async def drop_the_second_request(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        requests.append(await read_head(reader))
        writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")
        await writer.drain()
        requests.append(await read_head(reader))  # read, then hang up without an answer

    async with raw_server(drop_the_second_request) as base, transport(Http1) as http:
        await http.fetch("GET", base + "/a")
        assert (await http.fetch("GET", base + "/b")).body == b"ok"  # again, on a new connection
        assert [r.split(b" ")[1] for r in requests] == [b"/a", b"/b", b"/b"]
        # A POST may have been acted on: it is not sent again, the caller's retry policy decides.
        with pytest.raises(TransportError, match="POST"):
            await http.fetch("POST", base + "/c", body=b"{}")


async def test_a_stream_yields_bytes_as_they_arrive_and_its_reads_time_out(make: Factory) -> None:
    more, done = asyncio.Event(), asyncio.Event()

    async def events(request: web.Request) -> web.StreamResponse:
        response = web.StreamResponse()
        response.enable_chunked_encoding()
        await response.prepare(request)
        await response.write(b'{"n": 1}\n')
        await more.wait()
        await response.write(b'{"n": 2}\n')
        await done.wait()  # then silence
        return response

    app = web.Application()
    app.router.add_get("/watch", events)
    async with serve(app) as base, transport(make) as http:
        async with http.stream("GET", base + "/watch", connect_timeout=5, read_timeout=0.5) as response:
            assert response.status == 200
            chunks = response.chunks()
            assert await anext(chunks) == b'{"n": 1}\n'  # before the second exists
            more.set()
            assert await anext(chunks) == b'{"n": 2}\n'
            with pytest.raises(TimeoutError):
                await anext(chunks)
        done.set()


async def test_an_answer_cut_short_is_a_transport_error(make: Factory) -> None:
    async def cut(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        head = await read_head(reader)
        if b"/chunked" in head:
            writer.write(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n")
        else:
            writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\nonly ten b")
        await writer.drain()

    async with raw_server(cut) as base, transport(make) as http:
        with pytest.raises(TransportError):
            await http.fetch("GET", base + "/whole")
        with pytest.raises(TransportError):
            async with http.stream("GET", base + "/chunked", read_timeout=5) as response:
                async for _ in response.chunks():
                    pass


async def test_no_server_is_a_transport_error(make: Factory) -> None:
    server = await asyncio.start_server(lambda r, w: None, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    server.close()
    await server.wait_closed()
    async with transport(make) as http:
        with pytest.raises(TransportError):
            await http.fetch("GET", f"http://127.0.0.1:{port}/")


async def test_https_is_verified_against_the_given_ca_and_name(make: Factory) -> None:
    ca = trustme.CA()
    server_context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ca.issue_cert("api.cluster.example").configure_cert(server_context)
    client_context = ssl.create_default_context()
    ca.configure_trust(client_context)
    async with serve(echo_app(), server_context) as base:
        async with transport(make, ssl_context=client_context) as http:
            # The certificate names the API server, not the address it is reached at (tls-server-name).
            answer = await http.fetch("GET", base + "/echo", server_hostname="api.cluster.example")
            assert answer.status == 200
            with pytest.raises(TransportError, match=r"(?i)certificate|hostname"):
                await http.fetch("GET", base + "/echo")
        async with transport(make) as http:  # the system's CA store does not know this CA
            with pytest.raises(TransportError, match=r"(?i)certificate"):
                await http.fetch("GET", base + "/echo", server_hostname="api.cluster.example")
            assert (await http.fetch("GET", base + "/echo", verify=False)).status == 200


async def test_requests_go_through_the_proxy_tunnel_for_https_and_in_absolute_form_for_http(
    make: Factory,
) -> None:
    ca = trustme.CA()
    server_context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ca.issue_cert("127.0.0.1").configure_cert(server_context)
    client_context = ssl.create_default_context()
    ca.configure_trust(client_context)
    seen: list[bytes] = []

    async def proxy(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        head = await read_head(reader)
        seen.append(head)
        method, target, _ = head.split(b"\r\n", 1)[0].split(b" ")
        if method != b"CONNECT":
            writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 7\r\nConnection: close\r\n\r\nproxied")
            await writer.drain()
            return
        host, port = target.decode().rsplit(":", 1)
        up_reader, up_writer = await asyncio.open_connection(host, int(port))
        writer.write(b"HTTP/1.1 200 Connection established\r\n\r\n")
        await writer.drain()

        async def pipe(src: asyncio.StreamReader, dst: asyncio.StreamWriter) -> None:
            with contextlib.suppress(ConnectionError):
                while data := await src.read(65536):
                    dst.write(data)
                    await dst.drain()
            dst.close()

        try:
            await asyncio.gather(pipe(reader, up_writer), pipe(up_reader, writer))
        finally:
            up_writer.close()

    async with serve(echo_app(), server_context) as base, raw_server(proxy) as proxy_url:
        authority = base.removeprefix("https://")
        with_credentials = proxy_url.replace("http://", "http://us%40er:pa%3Ass@")
        async with transport(make, ssl_context=client_context, proxy=with_credentials) as http:
            answer = await http.fetch("GET", base + "/echo")
            assert orjson.loads(answer.body)["method"] == "GET"
            plain = await http.fetch("GET", "http://example.invalid/x")
            assert plain.body == b"proxied"
    connect, absolute = seen
    assert connect.startswith(f"CONNECT {authority} HTTP/1.1".encode())
    assert absolute.startswith(b"GET http://example.invalid/x HTTP/1.1")
    for head in seen:  # "us@er:pa:ss", percent-decoded from the URL, in Basic
        assert b"proxy-authorization: basic dxnazxi6cge6c3m=" in head.lower()
