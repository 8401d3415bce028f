"""Front-door proxy against a small real aiohttp upstream: streaming, redirects, cookies, headers, errors."""

from __future__ import annotations

import asyncio
import gzip
import hashlib
import json
import socket
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

import aiohttp
import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer
from multidict import CIMultiDict, CIMultiDictProxy
from pytest_aiohttp import AiohttpClient, AiohttpServer
from structlog.testing import capture_logs
from yarl import URL

from gateway.limits.ratelimit import RateLimit, RateLimiter
from gateway.limits.store import MemoryCounterStore
from gateway.proxy import (
    FrontDoorProxy,
    PathAllowList,
    ProxyLimits,
    end_to_end,
    forwarded_headers,
    path_in_normal_form,
    upstream_request_headers,
)

Client = TestClient[web.Request, web.Application]
CHUNK = 64 * 1024
BIG = 8 * 1024 * 1024
COOKIES = [
    "KC_RESTART=eyJhbGciOi; Version=1; Path=/realms/mcp/; HttpOnly",
    "AUTH_SESSION_ID=ab12.cd34; Expires=Thu, 01 Jan 2099 00:00:00 GMT; Path=/realms/mcp/; Secure; SameSite=None",
]


@dataclass
class UpstreamState:
    upload_started: asyncio.Event = field(default_factory=asyncio.Event)
    release_download: asyncio.Event = field(default_factory=asyncio.Event)
    hits: dict[str, int] = field(default_factory=dict)


STATE = web.AppKey("state", UpstreamState)


@dataclass
class Upstream:
    server: TestServer
    state: UpstreamState

    @property
    def url(self) -> str:
        return str(self.server.make_url("/"))


def _count(request: web.Request) -> None:
    hits = request.app[STATE].hits
    hits[request.path] = hits.get(request.path, 0) + 1


async def _echo_headers(request: web.Request) -> web.Response:
    _count(request)
    body = await request.read()
    return web.json_response(
        {
            "method": request.method,
            "raw_path": request.raw_path,
            "headers": [[name, value] for name, value in request.headers.items()],
            "body_length": len(body),
        }
    )


async def _upload(request: web.Request) -> web.Response:
    digest = hashlib.sha256()
    size = 0
    async for chunk in request.content.iter_any():
        if size == 0:
            request.app[STATE].upload_started.set()
        size += len(chunk)
        digest.update(chunk)
    return web.json_response(
        {
            "sha256": digest.hexdigest(),
            "size": size,
            "content_length": request.headers.get("Content-Length"),
            "transfer_encoding": request.headers.get("Transfer-Encoding"),
        }
    )


async def _download(request: web.Request) -> web.StreamResponse:
    response = web.StreamResponse()
    response.content_type = "application/octet-stream"
    await response.prepare(request)
    await response.write(_pattern(0, CHUNK))
    await asyncio.wait_for(request.app[STATE].release_download.wait(), 10)
    for offset in range(CHUNK, BIG, CHUNK):
        await response.write(_pattern(offset, CHUNK))
    await response.write_eof()
    return response


async def _small(request: web.Request) -> web.Response:
    return web.Response(body=b"0123456789" * 10, content_type="text/plain")


async def _redirect(request: web.Request) -> web.Response:
    _count(request)
    location = request.query.get("to", "https://client.example/cb?code=abc&state=xyz")
    return web.Response(status=302, headers={"Location": location})


async def _next_page(request: web.Request) -> web.Response:
    _count(request)
    return web.Response(text="followed")


async def _cookies(request: web.Request) -> web.Response:
    response = web.Response(text="ok")
    for cookie in COOKIES:
        response.headers.add("Set-Cookie", cookie)
    return response


async def _compressed(request: web.Request) -> web.Response:
    payload = b'{"keys":[]}' * 500
    if "gzip" in request.headers.get("Accept-Encoding", ""):
        return web.Response(
            body=gzip.compress(payload, mtime=0),
            headers={"Content-Encoding": "gzip", "Content-Type": "application/json", "Vary": "Accept-Encoding"},
        )
    return web.Response(body=payload, content_type="application/json")


async def _hop_by_hop(request: web.Request) -> web.Response:
    return web.Response(
        text="ok",
        headers={
            "Connection": "X-Upstream-Hop",
            "X-Upstream-Hop": "1",
            "Keep-Alive": "timeout=5",
            "Proxy-Authenticate": 'Basic realm="x"',
            "X-Kept": "yes",
        },
    )


async def _slow(request: web.Request) -> web.Response:
    await asyncio.sleep(2)
    return web.Response(text="late")


async def _truncated(request: web.Request) -> web.StreamResponse:
    response = web.StreamResponse()
    if request.query.get("length"):
        response.content_length = 1000
    await response.prepare(request)
    await response.write(b"x" * 100)
    await asyncio.sleep(0.05)
    assert request.transport is not None
    request.transport.close()
    return response


def _upstream_app(state: UpstreamState) -> web.Application:
    app = web.Application()
    app[STATE] = state
    app.router.add_route("*", "/headers{tail:.*}", _echo_headers)
    app.router.add_post("/upload", _upload)
    app.router.add_get("/download", _download)
    app.router.add_get("/small", _small)
    app.router.add_get("/redirect", _redirect)
    app.router.add_get("/next", _next_page)
    app.router.add_get("/cookies", _cookies)
    app.router.add_get("/gzip", _compressed)
    app.router.add_get("/hop", _hop_by_hop)
    app.router.add_get("/slow", _slow)
    app.router.add_get("/truncated", _truncated)
    return app


def _pattern(offset: int, size: int) -> bytes:
    """Deterministic, non-repeating-per-chunk bytes, so a reordered or dropped chunk changes the digest."""
    return hashlib.sha256(str(offset).encode()).digest() * (size // 32)


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


@pytest.fixture
async def upstream(aiohttp_server: AiohttpServer) -> Upstream:
    state = UpstreamState()
    return Upstream(await aiohttp_server(_upstream_app(state)), state)


ProxiedClient = Callable[..., Awaitable[Client]]


@pytest.fixture
async def proxied(aiohttp_client: AiohttpClient, upstream: Upstream) -> AsyncIterator[ProxiedClient]:
    """``await proxied(upstream_url=..., public_url=..., read_timeout=..., limits=..., **client_session_kwargs)``."""
    sessions: list[aiohttp.ClientSession] = []

    async def build(
        *,
        upstream_url: str | None = None,
        public_url: str = "https://auth.example.com",
        read_timeout: float = 5.0,
        connect_timeout: float | None = None,
        append_forwarded_for: bool = True,
        limits: ProxyLimits | None = None,
        source_of: Callable[[web.BaseRequest], str] | None = None,
        **client_kwargs: Any,
    ) -> Client:
        limits = limits or ProxyLimits()
        session = FrontDoorProxy.new_session(read_timeout, connect_timeout=connect_timeout, limit=limits.pool_size)
        sessions.append(session)
        proxy = FrontDoorProxy(
            session,
            upstream_url or upstream.url,
            public_url,
            append_forwarded_for=append_forwarded_for,
            limits=limits,
            **({"source_of": source_of} if source_of else {}),
        )

        async def forward(request: web.Request) -> web.StreamResponse:
            response: web.StreamResponse = await proxy(request)
            return response

        app = web.Application(handler_args={"auto_decompress": False})  # bodies as sent, as the gateway's
        app.router.add_route("*", "/{tail:.*}", forward)
        return await aiohttp_client(app, **client_kwargs)

    yield build
    for session in sessions:
        await session.close()


def _headers_seen(echo: dict[str, Any]) -> CIMultiDict[str]:
    return CIMultiDict((name, value) for name, value in echo["headers"])


async def test_request_body_is_read_whole_and_forwarded_with_its_length(proxied: ProxiedClient) -> None:
    # A chunked upload arrives upstream byte for byte, delimited by Content-Length: the proxy read it whole
    # before taking an upstream connection (it used to stream it, holding the connection while the client sent).
    client = await proxied()
    sent = hashlib.sha256()

    async def body() -> AsyncIterator[bytes]:
        for offset in range(0, 3 * CHUNK, CHUNK):
            chunk = _pattern(offset, CHUNK)
            sent.update(chunk)
            yield chunk

    response = await client.post("/upload", data=body())
    assert response.status == 200
    received = await response.json()
    assert received["size"] == 3 * CHUNK
    assert received["sha256"] == sent.hexdigest()
    assert received["content_length"] == str(3 * CHUNK)
    assert received["transfer_encoding"] is None


async def test_request_with_content_length_keeps_it(proxied: ProxiedClient) -> None:
    client = await proxied()
    payload = _pattern(0, CHUNK) * 3
    response = await client.post("/upload", data=payload)
    received = await response.json()
    assert received["content_length"] == str(len(payload))
    assert received["transfer_encoding"] is None
    assert received["sha256"] == hashlib.sha256(payload).hexdigest()


async def test_response_body_is_streamed_to_the_client(proxied: ProxiedClient, upstream: Upstream) -> None:
    client = await proxied()
    response = await client.get("/download")
    assert response.status == 200
    # The upstream holds back everything after the first chunk until the client has received it.
    first = await asyncio.wait_for(response.content.readexactly(CHUNK), 5)
    upstream.state.release_download.set()
    digest = hashlib.sha256(first)
    size = len(first)
    async for chunk in response.content.iter_any():
        digest.update(chunk)
        size += len(chunk)
    expected = hashlib.sha256(b"".join(_pattern(offset, CHUNK) for offset in range(0, BIG, CHUNK)))
    assert size == BIG
    assert digest.hexdigest() == expected.hexdigest()
    assert response.headers["Transfer-Encoding"] == "chunked"


async def test_client_going_away_mid_body_is_not_an_upstream_failure(upstream: Upstream) -> None:
    # A real AppRunner: the test server cancels handlers when clients leave, production (run_app) does not.
    session = FrontDoorProxy.new_session(5)
    proxy = FrontDoorProxy(session, upstream.url, "https://auth.example.com")

    async def forward(request: web.Request) -> web.StreamResponse:
        response: web.StreamResponse = await proxy(request)
        return response

    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", forward)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = runner.addresses[0][1]
    try:
        with capture_logs() as logs:
            async with aiohttp.ClientSession() as client:
                response = await client.get(f"http://127.0.0.1:{port}/download")
                await asyncio.wait_for(response.content.readexactly(CHUNK), 5)
                response.close()  # drops the connection mid-body
            upstream.state.release_download.set()
            for _ in range(500):
                if logs:
                    break
                await asyncio.sleep(0.01)
        assert [entry["event"] for entry in logs] == ["proxy.client_gone"]
    finally:
        await runner.cleanup()
        await session.close()


@pytest.mark.parametrize(
    ("location", "_"),
    [("https://client.example/cb?code=abc&state=xyz", "absolute"), ("/next?x=%2F", "relative")],
)
async def test_redirects_pass_through_unfollowed(
    proxied: ProxiedClient, upstream: Upstream, location: str, _: str
) -> None:
    client = await proxied()
    response = await client.get("/redirect", params={"to": location}, allow_redirects=False)
    assert response.status == 302
    assert response.headers["Location"] == location
    assert upstream.state.hits == {"/redirect": 1}


async def test_every_set_cookie_reaches_the_client_unchanged(proxied: ProxiedClient) -> None:
    client = await proxied()
    response = await client.get("/cookies")
    assert response.headers.getall("Set-Cookie") == COOKIES


async def test_cookies_are_not_kept_by_the_proxy(proxied: ProxiedClient, upstream: Upstream) -> None:
    first = await proxied()
    await first.get("/cookies")
    other = await proxied(cookie_jar=aiohttp.DummyCookieJar())
    echo = await (await other.get("/headers")).json()
    assert "Cookie" not in _headers_seen(echo)


async def test_client_cookies_are_forwarded(proxied: ProxiedClient) -> None:
    client = await proxied(cookie_jar=aiohttp.DummyCookieJar())
    echo = await (await client.get("/headers", headers={"Cookie": "KC_RESTART=a; AUTH_SESSION_ID=b"})).json()
    assert _headers_seen(echo)["Cookie"] == "KC_RESTART=a; AUTH_SESSION_ID=b"


async def test_forwarded_headers_name_the_public_origin(proxied: ProxiedClient, upstream: Upstream) -> None:
    client = await proxied(public_url="https://auth.example.com")
    response = await client.get(
        "/headers",
        headers={
            "X-Forwarded-For": "203.0.113.9",
            "X-Forwarded-Host": "evil.example",
            "X-Forwarded-Proto": "http",
            "Forwarded": "for=198.51.100.1;host=evil.example",
        },
    )
    seen = _headers_seen(await response.json())
    assert seen.getall("X-Forwarded-For") == ["203.0.113.9, 127.0.0.1"]
    assert seen.getall("X-Forwarded-Proto") == ["https"]
    assert seen.getall("X-Forwarded-Host") == ["auth.example.com"]
    assert seen.getall("X-Forwarded-Port") == ["443"]
    assert "Forwarded" not in seen
    assert seen["Host"] == URL(upstream.url).host_port_subcomponent


@pytest.mark.parametrize(
    "name",
    ["X-Forwarded-Prefix", "X-Forwarded-Ssl", "X-Forwarded-Server", "X-Real-IP", "X-Original-URL", "X-Rewrite-URL"],
)
async def test_client_cannot_steer_the_provider_with_forwarding_relatives(proxied: ProxiedClient, name: str) -> None:
    client = await proxied(public_url="https://auth.example.com")
    response = await client.get("/headers", headers={name: "/evil"})
    seen = _headers_seen(await response.json())
    assert name not in seen


async def test_forwarded_for_can_be_replaced_instead_of_appended(proxied: ProxiedClient) -> None:
    client = await proxied(append_forwarded_for=False)
    echo = await (await client.get("/headers", headers={"X-Forwarded-For": "203.0.113.9"})).json()
    assert _headers_seen(echo).getall("X-Forwarded-For") == ["127.0.0.1"]


@pytest.mark.parametrize(
    ("public_url", "expected"),
    [
        ("https://auth.example.com", ("https", "auth.example.com", "443")),
        ("http://127.0.0.1:8080", ("http", "127.0.0.1:8080", "8080")),
        ("https://auth.example.com:8443/", ("https", "auth.example.com:8443", "8443")),
        ("http://[::1]:9000", ("http", "[::1]:9000", "9000")),
    ],
)
def test_forwarded_headers_of_a_public_url(public_url: str, expected: tuple[str, str, str]) -> None:
    assert tuple(forwarded_headers(public_url).values()) == expected


async def test_hop_by_hop_request_headers_are_removed(proxied: ProxiedClient) -> None:
    client = await proxied()
    response = await client.get(
        "/headers",
        headers={
            "Connection": "keep-alive, X-Client-Hop",
            "X-Client-Hop": "1",
            "Keep-Alive": "timeout=5",
            "Proxy-Connection": "keep-alive",
            "Proxy-Authorization": "Basic Zm9vOmJhcg==",
            "TE": "trailers",
            "Authorization": "Bearer end-to-end",
            "X-Kept": "yes",
        },
    )
    seen = _headers_seen(await response.json())
    for name in ("X-Client-Hop", "Keep-Alive", "Proxy-Connection", "Proxy-Authorization", "TE"):
        assert name not in seen, name
    assert seen.get("Connection", "keep-alive") == "keep-alive"  # the client session's own, if any
    assert seen["Authorization"] == "Bearer end-to-end"
    assert seen["X-Kept"] == "yes"


async def test_hop_by_hop_response_headers_are_removed(proxied: ProxiedClient) -> None:
    client = await proxied()
    response = await client.get("/hop")
    assert response.status == 200
    for name in ("X-Upstream-Hop", "Keep-Alive", "Proxy-Authenticate"):
        assert name not in response.headers, name
    assert "X-Upstream-Hop" not in response.headers.get("Connection", "")
    assert response.headers["X-Kept"] == "yes"


def test_end_to_end_drops_fields_named_in_connection() -> None:
    headers = CIMultiDictProxy(
        CIMultiDict([("Connection", "close, x-a"), ("Connection", "X-B"), ("X-A", "1"), ("X-B", "2"), ("X-C", "3")])
    )
    assert list(end_to_end(headers).items()) == [("X-C", "3")]


def test_upstream_request_headers_are_pure() -> None:
    incoming = CIMultiDictProxy(CIMultiDict([("Host", "auth.example.com"), ("Expect", "100-continue"), ("A", "1")]))
    result = upstream_request_headers(incoming, peer="10.0.0.1", forwarded={"X-Forwarded-Proto": "https"})
    assert list(result.items()) == [("A", "1"), ("X-Forwarded-For", "10.0.0.1"), ("X-Forwarded-Proto", "https")]
    assert incoming["Host"] == "auth.example.com"


async def test_compressed_bodies_pass_through_as_they_are(proxied: ProxiedClient) -> None:
    client = await proxied(auto_decompress=False)
    response = await client.get("/gzip", headers={"Accept-Encoding": "gzip"})
    body = await response.read()
    assert response.headers["Content-Encoding"] == "gzip"
    assert response.headers["Content-Length"] == str(len(body))
    assert gzip.decompress(body) == b'{"keys":[]}' * 500
    assert body == gzip.compress(b'{"keys":[]}' * 500, mtime=0)


async def test_proxy_adds_no_accept_encoding_of_its_own(proxied: ProxiedClient) -> None:
    client = await proxied()
    response = await client.get("/gzip", skip_auto_headers=("Accept-Encoding",))
    assert "Content-Encoding" not in response.headers
    echo = await (await client.get("/headers", skip_auto_headers=("Accept-Encoding", "User-Agent", "Accept"))).json()
    seen = _headers_seen(echo)
    for name in ("Accept-Encoding", "User-Agent", "Accept", "Content-Type"):
        assert name not in seen, name


async def test_path_and_query_reach_the_upstream_byte_for_byte(proxied: ProxiedClient) -> None:
    client = await proxied()
    target = "/headers/a%2Fb%20c/%7Euser?x=%2F&y=1&y=2&redirect_uri=http%3A%2F%2Flocalhost%3A3000%2Fcb"
    response = await client.get(URL(target, encoded=True))
    assert (await response.json())["raw_path"] == target


@pytest.mark.parametrize("method", ["PUT", "PATCH", "DELETE", "OPTIONS"])
async def test_any_method_is_forwarded(proxied: ProxiedClient, method: str) -> None:
    client = await proxied()
    echo = await (await client.request(method, "/headers/x", data=b"abc")).json()
    assert echo["method"] == method
    assert echo["body_length"] == 3


async def test_head_keeps_the_content_length(proxied: ProxiedClient) -> None:
    client = await proxied()
    response = await client.head("/small")
    assert response.status == 200
    assert response.headers["Content-Length"] == "100"
    assert await response.read() == b""


async def test_unreachable_upstream_gives_502_json(proxied: ProxiedClient) -> None:
    client = await proxied(upstream_url=f"http://127.0.0.1:{_free_port()}")
    with capture_logs() as logs:
        response = await client.get("/realms/mcp/protocol/openid-connect/auth?code=secret-code")
    assert response.status == 502
    body = await response.json()
    assert body["error"] == "temporarily_unavailable"
    assert "Traceback" not in await response.text()
    assert response.headers["Cache-Control"] == "no-store"
    [entry] = logs
    assert entry["event"] == "proxy.upstream_failed"
    assert entry["status"] == 502
    assert "secret-code" not in repr(entry)


async def test_slow_upstream_gives_504_json(proxied: ProxiedClient) -> None:
    client = await proxied(read_timeout=0.2)
    with capture_logs() as logs:
        response = await client.get("/slow")
    assert response.status == 504
    assert (await response.json())["error"] == "temporarily_unavailable"
    assert [entry["status"] for entry in logs] == [504]


@pytest.mark.parametrize("length", ["1", ""], ids=["content-length", "chunked"])
async def test_upstream_failure_mid_body_breaks_the_client_connection(proxied: ProxiedClient, length: str) -> None:
    client = await proxied()
    with capture_logs() as logs:
        response = await client.get("/truncated", params={"length": length})
        assert response.status == 200
        with pytest.raises(aiohttp.ClientPayloadError):
            await asyncio.wait_for(response.read(), 5)
    assert [entry["event"] for entry in logs] == ["proxy.upstream_truncated"]


async def test_session_without_the_required_settings_is_refused() -> None:
    async with aiohttp.ClientSession() as plain:
        with pytest.raises(ValueError, match="auto_decompress=False"):
            FrontDoorProxy(plain, "http://127.0.0.1:4444", "https://auth.example.com")
    async with aiohttp.ClientSession(auto_decompress=False) as with_jar:
        with pytest.raises(TypeError, match="DummyCookieJar"):
            FrontDoorProxy(with_jar, "http://127.0.0.1:4444", "https://auth.example.com")


# ------------------------------------------------------------------ one client cannot hold the proxy (issue 8)


async def _raw_connection(
    client: Client, request: bytes, *, receive_buffer: int | None = None
) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    sock = socket.socket()
    if receive_buffer is not None:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, receive_buffer)
    sock.setblocking(False)
    await asyncio.get_running_loop().sock_connect(sock, ("127.0.0.1", client.port))
    reader, writer = await asyncio.open_connection(sock=sock)
    writer.write(request)
    await writer.drain()
    return reader, writer


async def _raw_answer(reader: asyncio.StreamReader, within: float = 5) -> tuple[int, dict[str, str], bytes]:
    async with asyncio.timeout(within):
        head = await reader.readuntil(b"\r\n\r\n")
        status_line, *lines = head.decode("latin-1").split("\r\n")
        headers = {
            name.strip().lower(): value.strip() for name, value in (line.split(":", 1) for line in lines if line)
        }
        body = await reader.readexactly(int(headers.get("content-length", "0")))
    return int(status_line.split()[1]), headers, body


async def test_slow_request_body_gets_408_and_holds_no_upstream_connection(
    proxied: ProxiedClient, upstream: Upstream
) -> None:
    # One upstream connection: before, the slow body held it and every other request waited for it (504).
    client = await proxied(connect_timeout=1.0, limits=ProxyLimits(pool_size=1, body_timeout=1.5))
    slow = [
        await _raw_connection(client, b"POST /headers HTTP/1.1\r\nHost: x\r\nContent-Length: 100000\r\n\r\na")
        for _ in range(3)
    ]
    try:
        response = await client.get("/small")
        assert response.status == 200
        assert await response.read() == b"0123456789" * 10
        for reader, _ in slow:
            status, headers, body = await _raw_answer(reader)
            assert status == 408
            assert headers["connection"].lower() == "close"
            assert json.loads(body)["error"] == "invalid_request"
        assert "/headers" not in upstream.state.hits
    finally:
        for _, writer in slow:
            writer.close()


@pytest.mark.parametrize("framing", ["content-length", "chunked"])
async def test_request_body_over_the_limit_is_413_without_the_upstream(
    proxied: ProxiedClient, upstream: Upstream, framing: str
) -> None:
    client = await proxied(limits=ProxyLimits(max_body_bytes=1000))
    payload = b"x" * 1001

    async def chunked() -> AsyncIterator[bytes]:
        yield payload[:500]
        yield payload[500:]

    response = await client.post("/headers", data=payload if framing == "content-length" else chunked())
    assert response.status == 413
    assert (await response.json())["error"] == "invalid_request"
    assert "/headers" not in upstream.state.hits
    echo = await (await client.post("/headers", data=payload[:1000])).json()  # at the limit: forwarded
    assert echo["body_length"] == 1000


@pytest.mark.parametrize("encoding", ["gzip", "deflate", "br", "identity, gzip", "x-custom"])
async def test_encoded_request_body_is_refused_with_415(
    proxied: ProxiedClient, upstream: Upstream, encoding: str
) -> None:
    client = await proxied()
    body = gzip.compress(b"grant_type=client_credentials")
    response = await client.post("/headers", data=body, headers={"Content-Encoding": encoding})
    assert response.status == 415
    assert response.headers["Accept-Encoding"] == "identity"
    assert (await response.json())["error"] == "invalid_request"
    assert "/headers" not in upstream.state.hits
    echo = await (await client.post("/headers", data=b"abc", headers={"Content-Encoding": "identity"})).json()
    assert echo["body_length"] == 3


async def test_concurrent_exchanges_per_source_are_bounded(proxied: ProxiedClient) -> None:
    client = await proxied(
        limits=ProxyLimits(max_concurrent_per_source=1),
        source_of=lambda request: request.headers.get("X-Test-Source", "a"),
    )
    slow = asyncio.create_task(client.get("/slow", headers={"X-Test-Source": "a"}))
    await asyncio.sleep(0.3)
    busy = await client.get("/small", headers={"X-Test-Source": "a"})
    assert busy.status == 429
    assert busy.headers["Retry-After"] == "1"
    assert (await busy.json())["error"] == "temporarily_unavailable"
    other = await client.get("/small", headers={"X-Test-Source": "b"})
    assert other.status == 200
    assert (await slow).status == 200
    assert (await client.get("/small", headers={"X-Test-Source": "a"})).status == 200  # the slot came back


async def test_ipv6_sources_share_their_prefix_as_the_rate_limits_do(proxied: ProxiedClient) -> None:
    # the source is the rate limiter's: behind a trusted proxy the X-Forwarded-For address, IPv6 by its /64
    limiter = RateLimiter(
        MemoryCounterStore(), per_source=RateLimit(0, 60), global_=RateLimit(0, 60), trust_forwarded_for=True
    )
    client = await proxied(limits=ProxyLimits(max_concurrent_per_source=1), source_of=limiter.source_of)
    slow = asyncio.create_task(client.get("/slow", headers={"X-Forwarded-For": "2001:db8:0:1::1"}))
    await asyncio.sleep(0.3)
    same_prefix = await client.get("/small", headers={"X-Forwarded-For": "2001:db8:0:1:ffff::2"})
    assert same_prefix.status == 429
    other_prefix = await client.get("/small", headers={"X-Forwarded-For": "2001:db8:0:2::1"})
    assert other_prefix.status == 200
    assert (await slow).status == 200


async def test_a_full_pool_answers_503_after_the_connect_timeout(proxied: ProxiedClient) -> None:
    client = await proxied(connect_timeout=0.3, limits=ProxyLimits(pool_size=1, max_concurrent_per_source=0))
    slow = asyncio.create_task(client.get("/slow"))
    await asyncio.sleep(0.3)
    busy = await client.get("/small")
    assert busy.status == 503
    assert busy.headers["Retry-After"] == "1"
    assert (await slow).status == 200
    assert (await client.get("/small")).status == 200


async def test_a_client_that_stops_reading_frees_the_upstream_connection(
    proxied: ProxiedClient, upstream: Upstream
) -> None:
    client = await proxied(connect_timeout=5.0, limits=ProxyLimits(pool_size=1, send_timeout=0.5))
    upstream.state.release_download.set()
    _, writer = await _raw_connection(client, b"GET /download HTTP/1.1\r\nHost: x\r\n\r\n", receive_buffer=4096)
    try:
        await asyncio.sleep(0.2)
        response = await client.get("/small")  # waits for the pool's one connection, then gets it
        assert response.status == 200
    finally:
        writer.close()


@pytest.mark.parametrize(
    ("path", "normal"),
    [
        ("/realms/mcp/protocol/openid-connect/token", True),
        ("/resources/abc/login/keycloak.v2/css/styles.css", True),
        ("/realms/mcp/protocol/openid-connect/../../../master/x", False),
        ("/realms/mcp/./x", False),
        ("/realms//mcp", False),
        ("/realms/mcp/..;/master", False),
        ("/realms/mcp\\..\\master", False),
        ("/realms/mcp/\x00", False),
        ("/realms/mcp/protocol/openid-connect/%2e%2e/x", False),  # %252e%252e decoded once
        ("", False),
        ("*", False),
    ],
)
def test_path_in_normal_form(path: str, normal: bool) -> None:
    assert path_in_normal_form(path) is normal


def test_path_allow_list_matches_whole_segments() -> None:
    allowed = PathAllowList(["/realms/mcp/protocol/openid-connect/", "/oauth2/token", "/resources/"])
    assert allowed.allows("/realms/mcp/protocol/openid-connect/token")
    assert allowed.allows("/oauth2/token")
    assert allowed.allows("/resources/x/y.css")
    assert not allowed.allows("/oauth2/tokenx")
    assert not allowed.allows("/oauth2/token2/x")
    assert not allowed.allows("/realms/mcp/protocol/openid-connectx/token")
    assert not allowed.allows("/realms/master/protocol/openid-connect/token")
    assert not allowed.allows("/")
    assert PathAllowList(["/"]).allows("/anything/at/all")
    assert not PathAllowList([])
    with pytest.raises(ValueError, match="start with '/'"):
        PathAllowList(["realms/"])
