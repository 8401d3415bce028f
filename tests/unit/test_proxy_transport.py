"""The front door's cost per exchange (issue 12, goal 3), as structural properties against raw-socket peers.

- the proxy keeps its upstream connections: N sequential exchanges of every shape (a body with a length, a
  chunked body, none at all, HEAD, 204/304, a POST with a body, a rewritten HTML page) open one connection, and
  N exchanges ``k`` at a time open at most ``k`` (RFC 9112 section 9.3: persistent connections);
- a small answer that has arrived whole leaves the gateway in one write (status line, fields and body together),
  not a write for the fields and another for the body: one segment and one wake-up of the client instead of two;
- an answer too large or too slow to have arrived whole still streams: its status line and fields go out before
  the upstream sends the rest, and the proxy holds a bounded part of it however large it is while the client
  reads slowly (flow control passes from the client's connection back to the provider's).
"""

from __future__ import annotations

import asyncio
import re
import socket
import struct
import tracemalloc
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

import aiohttp
import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer

from gateway.proxy import FrontDoorProxy, ProxyLimits, Rewrite

_LENGTH = re.compile(rb"\r\ncontent-length: *(\d+)", re.IGNORECASE)
JSON = b'{"keys":[{"kid":"a","kty":"RSA","n":"' + b"x" * 1200 + b'","e":"AQAB"}]}'


def _answer(status: str, body: bytes = b"", fields: str = "Content-Type: application/json\r\n") -> bytes:
    return f"HTTP/1.1 {status}\r\n{fields}Content-Length: {len(body)}\r\n\r\n".encode() + body


def _chunked(body: bytes, pieces: int = 3) -> bytes:
    size = -(-len(body) // pieces)
    parts = [body[i : i + size] for i in range(0, len(body), size)]
    encoded = b"".join(f"{len(p):x}\r\n".encode() + p + b"\r\n" for p in parts)
    return (
        b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n"
        + encoded
        + b"0\r\n\r\n"
    )


HTML = b"<html><body><form method=post action=https://client.example/cb></form></body></html>"

ANSWERS: dict[str, bytes] = {
    "/length": _answer("200 OK", JSON),
    "/chunked": _chunked(JSON),
    "/redirect": _answer("302 Found", fields="Location: https://client.example/cb?code=abc&state=xyz\r\n"),
    "/empty": b"HTTP/1.1 204 No Content\r\n\r\n",
    "/unchanged": b'HTTP/1.1 304 Not Modified\r\nETag: "a"\r\n\r\n',
    "/token": _answer("200 OK", b'{"access_token":"t","token_type":"Bearer"}'),
    "/page": _answer("200 OK", HTML, "Content-Type: text/html;charset=utf-8\r\n"),
}


@dataclass
class RawUpstream:
    """An HTTP/1.1 origin on a raw socket: scripted answers per path (``HEAD`` gets the head of ``GET``'s),
    keep-alive, and a count of the connections it accepted."""

    port: int = 0
    accepted: int = 0
    requests: list[bytes] = field(default_factory=list)
    server: asyncio.Server | None = None

    async def serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.accepted += 1
        try:
            while True:
                head = await reader.readuntil(b"\r\n\r\n")
                length = _LENGTH.search(head)
                if length:
                    await reader.readexactly(int(length.group(1)))
                method, target, _ = head.split(b" ", 2)
                self.requests.append(method + b" " + target)
                answer = ANSWERS[target.decode().split("?", 1)[0]]
                if method == b"HEAD":
                    answer = answer[: answer.index(b"\r\n\r\n") + 4]
                writer.write(answer)
                await writer.drain()
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        finally:
            writer.close()


@pytest.fixture
async def raw_upstream() -> AsyncIterator[RawUpstream]:
    upstream = RawUpstream()
    upstream.server = await asyncio.start_server(upstream.serve, "127.0.0.1", 0)
    upstream.port = upstream.server.sockets[0].getsockname()[1]
    yield upstream
    upstream.server.close()
    await upstream.server.wait_closed()


Forward = Callable[[web.Request], Awaitable[web.StreamResponse]]


@dataclass
class Front:
    """The proxy in an app on a real listener (as the gateway serves it)."""

    port: int
    writes: list[int]
    """Per proxied exchange: the transport writes (``write``/``writelines`` calls) that sent its answer."""


@pytest.fixture
async def front(raw_upstream: RawUpstream) -> AsyncIterator[Callable[..., Awaitable[Front]]]:
    servers: list[TestServer] = []
    sessions = []

    async def start(upstream_url: str | None = None, *, rewrite: Rewrite | None = None, **limits: int) -> Front:
        session = FrontDoorProxy.new_session(5.0)
        sessions.append(session)
        proxy = FrontDoorProxy(
            session,
            upstream_url or f"http://127.0.0.1:{raw_upstream.port}",
            "https://auth.example.com",
            limits=ProxyLimits(**limits),
        )
        writes: list[int] = []

        async def forward(request: web.Request) -> web.StreamResponse:
            transport = request.transport
            assert transport is not None
            calls = [0]
            write, writelines = transport.write, transport.writelines

            def counted_write(data: bytes | bytearray | memoryview) -> None:
                calls[0] += 1
                write(data)

            def counted_writelines(data: object) -> None:
                calls[0] += 1
                writelines(data)  # type: ignore[arg-type]

            transport.write = counted_write  # type: ignore[method-assign]
            transport.writelines = counted_writelines  # type: ignore[method-assign]
            try:
                if rewrite is None:
                    return await proxy(request)
                body = await proxy.read_body(request)
                assert not isinstance(body, web.StreamResponse)
                return await proxy.forward(request, body, rewrite)
            finally:
                writes.append(calls[0])
                transport.write, transport.writelines = write, writelines  # type: ignore[method-assign]

        app = web.Application(handler_args={"auto_decompress": False})
        app.router.add_route("*", "/{tail:.*}", forward)
        server = TestServer(app, host="127.0.0.1")
        await server.start_server()
        servers.append(server)
        assert server.port is not None
        return Front(server.port, writes)

    yield start
    for server in servers:
        await server.close()
    for session in sessions:
        await session.close()


async def _exchange(
    port: int, request: bytes, *, head: bool = False, connection: tuple[asyncio.StreamReader, asyncio.StreamWriter]
) -> tuple[int, dict[str, str], bytes]:
    reader, writer = connection
    writer.write(request)
    await writer.drain()
    async with asyncio.timeout(5):
        raw = await reader.readuntil(b"\r\n\r\n")
        status_line, *lines = raw.decode("latin-1").split("\r\n")
        fields = {k.strip().lower(): v.strip() for k, v in (line.split(":", 1) for line in lines if line)}
        if head or status_line.split()[1] in ("204", "304"):
            body = b""
        elif "content-length" in fields:
            body = await reader.readexactly(int(fields["content-length"]))
        else:  # chunked
            parts = []
            while True:
                size = int((await reader.readuntil(b"\r\n")).strip(), 16)
                parts.append(await reader.readexactly(size + 2))
                if size == 0:
                    break
            body = b"".join(part[:-2] for part in parts)
    return int(status_line.split()[1]), fields, body


def _get(path: str, method: str = "GET") -> bytes:
    return f"{method} {path} HTTP/1.1\r\nHost: auth.example.com\r\n\r\n".encode()


POST_TOKEN = (
    b"POST /token HTTP/1.1\r\nHost: auth.example.com\r\nContent-Type: application/x-www-form-urlencoded\r\n"
    b"Content-Length: 29\r\n\r\ngrant_type=client_credentials"
)

SHAPES = [
    ("body with a length", _get("/length"), 200, JSON),
    ("chunked body", _get("/chunked"), 200, JSON),
    ("redirect without a body", _get("/redirect?x=1"), 302, b""),
    ("204", _get("/empty"), 204, b""),
    ("304", _get("/unchanged"), 304, b""),
    ("HEAD", _get("/length", "HEAD"), 200, b""),
    ("POST with a body", POST_TOKEN, 200, b'{"access_token":"t","token_type":"Bearer"}'),
]


@pytest.mark.parametrize(("shape", "request_bytes", "status", "body"), SHAPES, ids=[s[0] for s in SHAPES])
async def test_sequential_exchanges_reuse_one_upstream_connection(
    front: Callable[..., Awaitable[Front]],
    raw_upstream: RawUpstream,
    shape: str,
    request_bytes: bytes,
    status: int,
    body: bytes,
) -> None:
    proxy = await front()
    connection = await asyncio.open_connection("127.0.0.1", proxy.port)
    try:
        for _ in range(20):
            answer = await _exchange(proxy.port, request_bytes, head=shape == "HEAD", connection=connection)
            assert (answer[0], answer[2]) == (status, body), answer
    finally:
        connection[1].close()
    assert len(raw_upstream.requests) == 20
    assert raw_upstream.accepted == 1, f"{raw_upstream.accepted} upstream connections for 20 sequential {shape}"


async def test_a_rewritten_page_keeps_the_upstream_connection(
    front: Callable[..., Awaitable[Front]], raw_upstream: RawUpstream
) -> None:
    proxy = await front(rewrite=Rewrite(html=lambda page: page.replace(b"</form>", b"<input name=iss></form>")))
    connection = await asyncio.open_connection("127.0.0.1", proxy.port)
    try:
        for _ in range(10):
            _, fields, body = await _exchange(proxy.port, _get("/page"), connection=connection)
            assert b"<input name=iss>" in body
            assert fields["content-length"] == str(len(body))
    finally:
        connection[1].close()
    assert raw_upstream.accepted == 1


async def test_concurrent_exchanges_open_at_most_one_connection_each(
    front: Callable[..., Awaitable[Front]], raw_upstream: RawUpstream
) -> None:
    proxy = await front()
    in_flight = 8

    async def client() -> None:
        connection = await asyncio.open_connection("127.0.0.1", proxy.port)
        try:
            for path in ("/length", "/chunked", "/redirect", "/length") * 5:
                assert (await _exchange(proxy.port, _get(path), connection=connection))[0] in (200, 302)
        finally:
            connection[1].close()

    await asyncio.gather(*(client() for _ in range(in_flight)))
    assert len(raw_upstream.requests) == in_flight * 20
    assert raw_upstream.accepted <= in_flight


@pytest.mark.parametrize("path", ["/length", "/redirect", "/token", "/empty"])
async def test_a_small_answer_that_arrived_whole_is_one_write(
    front: Callable[..., Awaitable[Front]], path: str
) -> None:
    proxy = await front()
    connection = await asyncio.open_connection("127.0.0.1", proxy.port)
    try:
        request = POST_TOKEN if path == "/token" else _get(path)
        for _ in range(3):
            await _exchange(proxy.port, request, connection=connection)
    finally:
        connection[1].close()
    assert proxy.writes == [1, 1, 1], f"transport writes per answer: {proxy.writes}"


# ------------------------------------------------------------------ answers that are large or slow still stream


@dataclass
class SlowOrigin:
    release: asyncio.Event = field(default_factory=asyncio.Event)
    sent: int = 0


async def _streaming_upstream(origin: SlowOrigin, total: int) -> TestServer:
    async def big(request: web.Request) -> web.StreamResponse:
        response = web.StreamResponse()
        response.content_length = total
        response.content_type = "application/octet-stream"
        await response.prepare(request)
        if request.query.get("hold"):
            await asyncio.wait_for(origin.release.wait(), 10)
        piece = b"z" * 65536
        while origin.sent < total:
            await response.write(piece[: total - origin.sent])
            origin.sent += min(len(piece), total - origin.sent)
        await response.write_eof()
        return response

    app = web.Application()
    app.router.add_get("/big", big)
    server = TestServer(app, host="127.0.0.1")
    await server.start_server()
    return server


async def test_the_status_line_does_not_wait_for_the_body(front: Callable[..., Awaitable[Front]]) -> None:
    origin = SlowOrigin()
    upstream = await _streaming_upstream(origin, 1000)
    try:
        proxy = await front(str(upstream.make_url("")).rstrip("/"))
        reader, writer = await asyncio.open_connection("127.0.0.1", proxy.port)
        try:
            writer.write(_get("/big?hold=1"))
            head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 5)  # before the upstream sends its body
            assert head.startswith(b"HTTP/1.1 200")
            assert origin.sent == 0
            origin.release.set()
            assert await asyncio.wait_for(reader.readexactly(1000), 5) == b"z" * 1000
        finally:
            writer.close()
    finally:
        await upstream.close()


async def test_a_large_answer_to_a_slow_reader_holds_bounded_memory(front: Callable[..., Awaitable[Front]]) -> None:
    total = 48 * 1024 * 1024
    origin = SlowOrigin()
    upstream = await _streaming_upstream(origin, total)
    try:
        proxy = await front(str(upstream.make_url("")).rstrip("/"))
        reader, writer = await asyncio.open_connection("127.0.0.1", proxy.port, limit=65536)
        tracemalloc.start()
        try:
            writer.write(_get("/big"))
            await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 5)
            # the client takes nothing: the upstream must be held back (the sockets' buffers on the way, some MB
            # on loopback, absorb a part of the answer, never all of it), so what it sent stops growing
            held, steady = -1, 0
            for _ in range(100):
                await asyncio.sleep(0.05)
                held, steady = origin.sent, (steady + 1 if origin.sent == held else 0)
                if steady >= 6:
                    break
            assert steady >= 6 and held < total, f"the upstream sent {held} bytes to a client that read nothing"
            received = 0
            while received < total:  # then the client reads, slowly at first
                chunk = await asyncio.wait_for(reader.read(65536), 5)
                assert chunk
                received += len(chunk)
            _, peak = tracemalloc.get_traced_memory()
        finally:
            tracemalloc.stop()
            writer.close()
        assert received == total
        assert peak < 8 * 1024 * 1024, f"peak {peak} bytes while streaming {total}"
    finally:
        await upstream.close()


HEAD_THEN_RESET = b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 1000\r\n\r\n"


class _LateReader:
    """The proxy's upstream session, handing each upstream answer over only once the loop has run for a moment
    after its head arrived: what happens when the connection broke in the same loop turn (uvloop reads a
    connection up to its reset at once), made certain. The answers themselves are the upstream's, untouched."""

    def __init__(self, session: aiohttp.ClientSession) -> None:
        self.session = session

    def __getattr__(self, name: str) -> Any:
        return getattr(self.session, name)

    def request(self, *args: Any, **kwargs: Any) -> Any:
        session = self.session

        class Late:
            async def __aenter__(self) -> aiohttp.ClientResponse:
                self.manager = session.request(*args, **kwargs)
                response = await self.manager.__aenter__()
                await asyncio.sleep(0.1)  # the reset that followed the head is read meanwhile
                return response

            async def __aexit__(self, *exc: Any) -> None:
                await self.manager.__aexit__(*exc)

        return Late()


async def test_an_upstream_reset_right_after_its_head_gives_a_clean_502() -> None:
    """A raw-socket upstream sends its status line and fields, then resets the connection (``SO_LINGER`` 0) before
    the proxy read any of its body: nothing has been written to the client yet, so it gets the proxy's 502
    ``temporarily_unavailable`` answer (with ``Retry-After``), not an empty reply."""

    async def serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.readuntil(b"\r\n\r\n")
        sock = writer.get_extra_info("socket")
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        writer.write(HEAD_THEN_RESET)
        await writer.drain()
        writer.transport.abort()

    upstream = await asyncio.start_server(serve, "127.0.0.1", 0)
    session = FrontDoorProxy.new_session(5.0)
    proxy = FrontDoorProxy(session, f"http://127.0.0.1:{upstream.sockets[0].getsockname()[1]}", "https://a.example")
    proxy._session = _LateReader(session)  # type: ignore[assignment]

    async def forward(request: web.Request) -> web.StreamResponse:
        return await proxy(request)

    app = web.Application(handler_args={"auto_decompress": False})
    app.router.add_route("*", "/{tail:.*}", forward)
    server = TestServer(app, host="127.0.0.1")
    await server.start_server()
    try:
        for _ in range(3):
            reader, writer = await asyncio.open_connection("127.0.0.1", server.port)
            writer.write(b"GET /jwks HTTP/1.1\r\nHost: auth.example.com\r\nConnection: close\r\n\r\n")
            await writer.drain()
            async with asyncio.timeout(5):
                answer = await reader.read()
            writer.close()
            assert answer.startswith(b"HTTP/1.1 502 "), answer
            assert b'"error": "temporarily_unavailable"' in answer
            assert b"Retry-After: 1" in answer
    finally:
        await server.close()
        await session.close()
        upstream.close()
        await upstream.wait_closed()
