"""The client ID metadata document fetch (draft-ietf-oauth-client-id-metadata-document section 4; -01 sections
6.5 and 6.6) against REAL local https servers (aiohttp, certificates of :mod:`gateway.conformance.tls`, host
``localhost``): every blocked fetch is refused with its reason; and the cache (section 4.3 of -01, RFC 9111) on
top of it.

No provider is involved; every server listens on 127.0.0.1 and every test is bounded by short timeouts.
"""

from __future__ import annotations

import asyncio
import gzip
import hashlib
import json
import ssl
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

import pytest
from aiohttp import web

from gateway.cimd.cache import DocumentCache
from gateway.cimd.document import client_metadata
from gateway.cimd.errors import DocumentRefused
from gateway.cimd.fetch import DocumentFetcher, FetchedDocument, NotModified
from gateway.cimd.settings import CimdSettings
from gateway.conformance.cimd_host import tls_context
from gateway.conformance.tls import server_certificate

pytestmark = pytest.mark.timeout(30)

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]
Tls = tuple[Path, ssl.SSLContext]
"""The development CA file and the server's TLS context."""

PUBLIC_NAME = "client.example.com"
"""A public-looking host name the test certificate also names: the injected resolver decides where it points."""


@pytest.fixture(scope="module")
def tls(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, ssl.SSLContext]:
    directory = tmp_path_factory.mktemp("tls")
    cert, key = server_certificate(directory, ["localhost", "127.0.0.1", "::1", PUBLIC_NAME])
    return directory / "ca.pem", tls_context(cert, key)


@dataclass
class DocumentServer:
    """A local https server; ``handlers`` by path, ``requests`` counts what reached it."""

    port: int = 0
    handlers: dict[str, Handler] = field(default_factory=dict)
    requests: list[web.Request] = field(default_factory=list)

    def url(self, path: str, host: str = "localhost") -> str:
        return f"https://{host}:{self.port}{path}"

    @property
    def origin(self) -> str:
        return f"https://localhost:{self.port}"


@pytest.fixture
async def server(tls: Tls) -> AsyncIterator[DocumentServer]:
    state = DocumentServer()

    async def dispatch(request: web.Request) -> web.StreamResponse:
        state.requests.append(request)
        handler = state.handlers.get(request.path)
        if handler is None:
            raise web.HTTPNotFound()
        return await handler(request)

    app = web.Application()
    app.router.add_route("GET", "/{tail:.*}", dispatch)
    runner = web.AppRunner(app, handle_signals=False, shutdown_timeout=0.1)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0, ssl_context=tls[1])
    await site.start()
    assert site._server is not None
    sockets = getattr(site._server, "sockets", [])
    state.port = sockets[0].getsockname()[1]
    yield state
    await runner.cleanup()


class Resolver:
    """An injected resolver: ``answers`` in turn (the last one repeats), every call recorded."""

    def __init__(self, *answers: list[str]) -> None:
        self.answers = list(answers)
        self.calls: list[str] = []

    async def __call__(self, host: str) -> list[str]:
        self.calls.append(host)
        index = min(len(self.calls) - 1, len(self.answers) - 1)
        return self.answers[index]


LOOPBACK = Resolver(["127.0.0.1"])


def settings_for(server: DocumentServer, ca: Path, **overrides: Any) -> CimdSettings:
    values: dict[str, Any] = {
        "development_origins": [server.origin],
        "ca_file": str(ca),
        "connect_timeout_seconds": 2.0,
        "timeout_seconds": 2.0,
    }
    values.update(overrides)
    return CimdSettings(**values)


def document_for(url: str, **members: Any) -> dict[str, Any]:
    return {"client_id": url, "client_name": "Local", "redirect_uris": ["http://127.0.0.1/cb"], **members}


def json_handler(body: Any, *, status: int = 200, headers: dict[str, str] | None = None) -> Handler:
    async def handle(request: web.Request) -> web.StreamResponse:
        return web.json_response(body, status=status, headers=headers)

    return handle


def raw_handler(
    body: bytes, *, content_type: str = "application/json", headers: dict[str, str] | None = None
) -> Handler:
    async def handle(request: web.Request) -> web.StreamResponse:
        return web.Response(body=body, headers={"Content-Type": content_type, **(headers or {})})

    return handle


@pytest.fixture
async def fetcher_factory(tls: Tls) -> AsyncIterator[Callable[..., Awaitable[DocumentFetcher]]]:
    started: list[DocumentFetcher] = []

    async def make(
        settings: CimdSettings, resolver: Resolver = LOOPBACK, cls: type[DocumentFetcher] = DocumentFetcher
    ) -> DocumentFetcher:
        fetcher = cls(settings, resolver=resolver)
        await fetcher.start()
        started.append(fetcher)
        return fetcher

    yield make
    for fetcher in started:
        await fetcher.close()


async def refusal(fetcher: DocumentFetcher, url: str) -> DocumentRefused:
    with pytest.raises(DocumentRefused) as info:
        await fetcher.fetch(url)
    assert "\n" not in info.value.reason
    assert "Traceback" not in info.value.reason
    return info.value


# ------------------------------------------------------------------------------------------------ success


async def test_fetches_a_document(server: DocumentServer, tls: Tls, fetcher_factory: Any) -> None:
    url = server.url("/client.json")
    body = json.dumps(document_for(url)).encode()
    server.handlers["/client.json"] = raw_handler(
        body, headers={"Cache-Control": "public, max-age=600", "ETag": '"v1"'}
    )
    fetcher = await fetcher_factory(settings_for(server, tls[0]))
    before = time.time()
    fetched = await fetcher.fetch(url)
    assert isinstance(fetched, FetchedDocument)
    assert fetched.url == url
    assert dict(fetched.document) == document_for(url)
    assert fetched.body_sha256 == hashlib.sha256(body).hexdigest()
    assert before <= fetched.fetched_at <= time.time()
    assert fetched.max_age == 600
    assert fetched.etag == '"v1"'
    request = server.requests[0]
    assert request.headers["Accept"] == "application/json"
    assert request.headers["Host"] == f"localhost:{server.port}"  # the original host name, not the address
    assert "Cookie" not in request.headers
    client_metadata(url, fetched.document)  # and it is a usable document


async def test_the_url_is_requested_exactly_as_given(server: DocumentServer, tls: Tls, fetcher_factory: Any) -> None:
    url = server.url("/%7Euser/a%2Fb.json").replace("localhost", "LocalHost")
    seen: list[str] = []

    async def handle(request: web.Request) -> web.StreamResponse:
        seen.append(request.raw_path)
        return web.json_response(document_for(url))

    server.handlers["/~user/a/b.json"] = handle
    fetcher = await fetcher_factory(settings_for(server, tls[0]))
    fetched = await fetcher.fetch(url)
    assert isinstance(fetched, FetchedDocument)
    assert seen == ["/%7Euser/a%2Fb.json"]
    assert fetched.url == url


async def test_no_cookies_are_kept(server: DocumentServer, tls: Tls, fetcher_factory: Any) -> None:
    url = server.url("/c.json")
    server.handlers["/c.json"] = json_handler(document_for(url), headers={"Set-Cookie": "track=1; Path=/"})
    fetcher = await fetcher_factory(settings_for(server, tls[0]))
    await fetcher.fetch(url)
    await fetcher.fetch(url)
    assert all("Cookie" not in request.headers for request in server.requests)


@pytest.mark.parametrize(
    ("headers", "max_age"),
    [
        ({"Cache-Control": "max-age=120"}, 120),
        ({"Cache-Control": "public, s-maxage=30, max-age=120"}, 30),
        ({"Cache-Control": "max-age=120", "Age": "20"}, 100),
        ({"Cache-Control": "no-cache"}, 0),
        ({"Cache-Control": "no-store, max-age=600"}, 0),
        ({"Cache-Control": "max-age=abc"}, None),
        ({}, None),
    ],
)
async def test_cache_headers(
    server: DocumentServer,
    tls: Tls,
    fetcher_factory: Any,
    headers: dict[str, str],
    max_age: float | None,
) -> None:
    url = server.url("/c.json")
    server.handlers["/c.json"] = json_handler(document_for(url), headers=headers)
    fetcher = await fetcher_factory(settings_for(server, tls[0]))
    fetched = await fetcher.fetch(url)
    assert isinstance(fetched, FetchedDocument)
    assert fetched.max_age == max_age


async def test_expires_header(server: DocumentServer, tls: Tls, fetcher_factory: Any) -> None:
    from email.utils import formatdate

    url = server.url("/c.json")
    server.handlers["/c.json"] = json_handler(
        document_for(url), headers={"Expires": formatdate(time.time() + 900, usegmt=True)}
    )
    fetcher = await fetcher_factory(settings_for(server, tls[0]))
    fetched = await fetcher.fetch(url)
    assert isinstance(fetched, FetchedDocument)
    assert fetched.max_age is not None and 890 <= fetched.max_age <= 901
    server.handlers["/c.json"] = json_handler(document_for(url), headers={"Expires": "0"})
    fetched = await fetcher.fetch(url)
    assert isinstance(fetched, FetchedDocument)
    assert fetched.max_age == 0


async def test_if_none_match_and_304(server: DocumentServer, tls: Tls, fetcher_factory: Any) -> None:
    url = server.url("/c.json")

    async def handle(request: web.Request) -> web.StreamResponse:
        if request.headers.get("If-None-Match") == '"v1"':
            return web.Response(status=304, headers={"ETag": '"v1"', "Cache-Control": "max-age=60"})
        return web.json_response(document_for(url), headers={"ETag": '"v1"'})

    server.handlers["/c.json"] = handle
    fetcher = await fetcher_factory(settings_for(server, tls[0]))
    answer = await fetcher.fetch(url, etag='"v1"')
    assert isinstance(answer, NotModified)
    assert answer.max_age == 60
    assert isinstance(await fetcher.fetch(url, etag='"v0"'), FetchedDocument)


async def test_304_without_an_etag_is_refused(server: DocumentServer, tls: Tls, fetcher_factory: Any) -> None:
    url = server.url("/c.json")
    server.handlers["/c.json"] = json_handler({}, status=304)
    fetcher = await fetcher_factory(settings_for(server, tls[0]))
    error = await refusal(fetcher, url)
    assert error.stage == "fetch"
    assert "304" in error.reason


# ----------------------------------------------------------------------------------- special-use addresses


@pytest.mark.parametrize(
    "addresses",
    [
        ["10.0.0.5"],
        ["172.16.3.4"],
        ["192.168.0.10"],
        ["100.64.1.1"],
        ["169.254.169.254"],
        ["127.0.0.1"],
        ["0.0.0.0"],  # noqa: S104 - an answer to refuse, not a bind address
        ["224.0.0.251"],
        ["240.1.2.3"],
        ["::1"],
        ["fd00::5"],
        ["fe80::1"],
        ["::ffff:127.0.0.1"],
        ["::ffff:10.0.0.1"],
        ["64:ff9b::a9fe:a9fe"],
        ["2002:c0a8:0101::1"],
        ["ff02::1"],
        ["8.8.8.8", "10.0.0.1"],  # one special-use answer among public ones is enough
        ["2001:4860:4860::8888", "fd00::1"],
    ],
)
async def test_special_use_addresses_are_refused(tls: Tls, fetcher_factory: Any, addresses: list[str]) -> None:
    resolver = Resolver(addresses)
    fetcher = await fetcher_factory(CimdSettings(ca_file=str(tls[0])), resolver)
    error = await refusal(fetcher, "https://client.example.com/oauth/client.json")
    assert error.stage == "policy"
    assert "client.example.com" in error.reason and "special-use" in error.reason
    for address in addresses:
        assert address not in error.reason  # never an internal address in the answer
    assert resolver.calls == ["client.example.com"]


async def test_a_host_that_does_not_resolve_is_refused(tls: Tls, fetcher_factory: Any) -> None:
    async def nxdomain(host: str) -> list[str]:
        raise OSError("Name or service not known")

    fetcher = DocumentFetcher(CimdSettings(ca_file=str(tls[0])), resolver=nxdomain)
    await fetcher.start()
    try:
        error = await refusal(fetcher, "https://nowhere.example.com/c.json")
    finally:
        await fetcher.close()
    assert error.stage == "fetch"
    assert "resolve" in error.reason


async def test_loopback_without_a_development_origin_is_refused(
    server: DocumentServer, tls: Tls, fetcher_factory: Any
) -> None:
    url = server.url("/c.json")
    server.handlers["/c.json"] = json_handler(document_for(url))
    fetcher = await fetcher_factory(settings_for(server, tls[0], development_origins=[]))
    error = await refusal(fetcher, url)
    assert error.stage == "policy"
    assert not server.requests


async def test_a_name_resolving_to_loopback_is_refused(server: DocumentServer, tls: Tls, fetcher_factory: Any) -> None:
    url = server.url("/c.json", PUBLIC_NAME)
    server.handlers["/c.json"] = json_handler(document_for(url))
    resolver = Resolver(["127.0.0.1"])
    fetcher = await fetcher_factory(settings_for(server, tls[0], development_origins=[]), resolver)
    error = await refusal(fetcher, url)
    assert error.stage == "policy"
    assert "special-use" in error.reason
    assert resolver.calls == [PUBLIC_NAME]
    assert not server.requests


async def test_another_port_of_a_development_host_is_refused(
    server: DocumentServer, tls: Tls, fetcher_factory: Any
) -> None:
    url = server.url("/c.json")
    server.handlers["/c.json"] = json_handler(document_for(url))
    fetcher = await fetcher_factory(
        settings_for(server, tls[0], development_origins=[f"https://localhost:{server.port + 1}"])
    )
    assert (await refusal(fetcher, url)).stage == "policy"
    assert not server.requests


class MappedFetcher(DocumentFetcher):
    """Connects to ``mapping[address]`` for a checked ``address``: stands in for a network whose route for a
    public address lands somewhere else (NAT, a transparent proxy); records what the connector was given."""

    mapping: ClassVar[dict[str, str]] = {}
    connected_to: ClassVar[list[list[str]]] = []

    def _connect_addresses(self, host: str, addresses: list[str]) -> list[str]:
        mapped = [self.mapping.get(address, address) for address in super()._connect_addresses(host, addresses)]
        self.connected_to.append(mapped)
        return mapped


async def test_dns_rebinding_between_check_and_connect_cannot_reach_loopback(
    server: DocumentServer, tls: Tls, fetcher_factory: Any
) -> None:
    """The resolver's first answer is public, every later one is 127.0.0.1, where a document is served. The
    connection uses only the checked answer (here: the public address, reached through 127.0.0.2 where nothing
    listens), never a second DNS answer."""
    url = server.url("/c.json", PUBLIC_NAME)
    server.handlers["/c.json"] = json_handler(document_for(url))
    resolver = Resolver(["8.8.8.8"], ["127.0.0.1"])

    class Rebound(MappedFetcher):
        mapping: ClassVar[dict[str, str]] = {"8.8.8.8": "127.0.0.2"}
        connected_to: ClassVar[list[list[str]]] = []

    fetcher = await fetcher_factory(settings_for(server, tls[0], development_origins=[]), resolver, Rebound)
    error = await refusal(fetcher, url)
    assert error.stage == "fetch"
    assert "127.0.0" not in error.reason
    assert resolver.calls == [PUBLIC_NAME]  # one resolution: the one checked
    assert Rebound.connected_to == [["127.0.0.2"]]
    assert not server.requests  # the rebound answer was never used


async def test_the_connected_peer_is_checked_too(server: DocumentServer, tls: Tls, fetcher_factory: Any) -> None:
    """The resolver answers a public address but the socket lands on loopback: refused after connecting, before
    the request is sent."""
    url = server.url("/c.json", PUBLIC_NAME)
    server.handlers["/c.json"] = json_handler(document_for(url))

    class Landing(MappedFetcher):
        mapping: ClassVar[dict[str, str]] = {"8.8.8.8": "127.0.0.1"}
        connected_to: ClassVar[list[list[str]]] = []

    fetcher = await fetcher_factory(
        settings_for(server, tls[0], development_origins=[]), Resolver(["8.8.8.8"]), Landing
    )
    error = await refusal(fetcher, url)
    assert error.stage == "policy"
    assert "special-use" in error.reason and "127.0.0.1" not in error.reason
    assert Landing.connected_to == [["127.0.0.1"]]
    assert not server.requests


async def test_concurrent_fetches_of_two_hosts_keep_their_own_pins(
    server: DocumentServer, tls: Tls, fetcher_factory: Any
) -> None:
    """Each fetch connects with its own host's checked addresses, also when fetches of other hosts interleave."""
    urls = [server.url("/a.json"), server.url("/b.json", PUBLIC_NAME)]
    for url in urls:
        server.handlers["/" + url.rsplit("/", 1)[1]] = json_handler(document_for(url))

    class Answers(Resolver):
        async def __call__(self, host: str) -> list[str]:
            self.calls.append(host)
            await asyncio.sleep(0.01)  # let the other fetches run in between
            return ["127.0.0.1"]

    settings = settings_for(server, tls[0], development_origins=[server.origin, f"https://{PUBLIC_NAME}:{server.port}"])
    fetcher = await fetcher_factory(settings, Answers())
    results = await asyncio.gather(*(fetcher.fetch(urls[i % 2]) for i in range(10)))
    assert [result.url for result in results if isinstance(result, FetchedDocument)] == [urls[i % 2] for i in range(10)]
    assert sorted(request.host for request in server.requests) == sorted(
        [f"localhost:{server.port}"] * 5 + [f"{PUBLIC_NAME}:{server.port}"] * 5
    )


async def test_an_untrusted_certificate_is_refused(server: DocumentServer, tls: Tls, fetcher_factory: Any) -> None:
    url = server.url("/c.json")
    server.handlers["/c.json"] = json_handler(document_for(url))
    fetcher = await fetcher_factory(settings_for(server, tls[0], ca_file=None))
    error = await refusal(fetcher, url)
    assert error.stage == "fetch"
    assert "certificate" in error.reason


# ------------------------------------------------------------------------------------------ HTTP answers


@pytest.mark.parametrize("status", [301, 302, 303, 307, 308])
async def test_redirects_are_not_followed(server: DocumentServer, tls: Tls, fetcher_factory: Any, status: int) -> None:
    url = server.url("/c.json")

    async def redirect(request: web.Request) -> web.StreamResponse:
        return web.Response(status=status, headers={"Location": "/target.json"})

    server.handlers["/c.json"] = redirect
    server.handlers["/target.json"] = json_handler(document_for(url))
    fetcher = await fetcher_factory(settings_for(server, tls[0]))
    error = await refusal(fetcher, url)
    assert error.stage == "fetch"
    assert error.reason == f"the document URL answered {status}; redirects are not followed"
    assert [request.path for request in server.requests] == ["/c.json"]


@pytest.mark.parametrize("status", [201, 204, 203, 400, 401, 403, 404, 410, 429, 500, 503])
async def test_only_200_is_a_document(server: DocumentServer, tls: Tls, fetcher_factory: Any, status: int) -> None:
    url = server.url("/c.json")
    server.handlers["/c.json"] = json_handler(document_for(url), status=status)
    fetcher = await fetcher_factory(settings_for(server, tls[0]))
    error = await refusal(fetcher, url)
    assert error.stage == "fetch"
    assert str(status) in error.reason


@pytest.mark.parametrize(
    "content_type", ["text/html", "text/plain", "application/octet-stream", "application/jsonp", "application/json-seq"]
)
async def test_wrong_content_type_is_refused(
    server: DocumentServer, tls: Tls, fetcher_factory: Any, content_type: str
) -> None:
    url = server.url("/c.json")
    server.handlers["/c.json"] = raw_handler(json.dumps(document_for(url)).encode(), content_type=content_type)
    fetcher = await fetcher_factory(settings_for(server, tls[0]))
    error = await refusal(fetcher, url)
    assert error.stage == "fetch"
    assert "Content-Type" in error.reason


@pytest.mark.parametrize(
    "content_type", ["application/json; charset=utf-8", "application/problem+json", "Application/JSON"]
)
async def test_json_content_types(server: DocumentServer, tls: Tls, fetcher_factory: Any, content_type: str) -> None:
    url = server.url("/c.json")
    server.handlers["/c.json"] = raw_handler(json.dumps(document_for(url)).encode(), content_type=content_type)
    fetcher = await fetcher_factory(settings_for(server, tls[0]))
    assert isinstance(await fetcher.fetch(url), FetchedDocument)


@pytest.mark.parametrize(
    ("body", "words"),
    [
        (b"<html>hello</html>", "JSON"),
        (b'{"client_id": ', "JSON"),
        (b"[1, 2, 3]", "object"),
        (b'"a string"', "object"),
        (b"null", "object"),
        (b'{"a": 1, "a": 2}', "duplicate"),
        (b'{"a": NaN}', "JSON"),
        (b'{"a": "\xff"}', "UTF-8"),
        (b"\xef\xbb\xbf{}", "JSON"),
        (b"[" * 2000 + b"]" * 2000, "JSON"),
    ],
)
async def test_bodies_that_are_not_a_json_object_are_refused(
    server: DocumentServer, tls: Tls, fetcher_factory: Any, body: bytes, words: str
) -> None:
    url = server.url("/c.json")
    server.handlers["/c.json"] = raw_handler(body)
    fetcher = await fetcher_factory(settings_for(server, tls[0]))
    error = await refusal(fetcher, url)
    assert error.stage == "document"
    assert words in error.reason


async def test_oversized_by_content_length(server: DocumentServer, tls: Tls, fetcher_factory: Any) -> None:
    url = server.url("/c.json")
    big = json.dumps(document_for(url, padding="x" * 6000)).encode()
    server.handlers["/c.json"] = raw_handler(big)
    fetcher = await fetcher_factory(settings_for(server, tls[0]))
    error = await refusal(fetcher, url)
    assert error.stage == "fetch"
    assert "5120 bytes" in error.reason


async def test_oversized_chunked_without_length(server: DocumentServer, tls: Tls, fetcher_factory: Any) -> None:
    url = server.url("/c.json")
    sent: list[int] = []

    async def stream(request: web.Request) -> web.StreamResponse:
        response = web.StreamResponse(headers={"Content-Type": "application/json"})
        response.enable_chunked_encoding()
        await response.prepare(request)
        try:
            await response.write(b'{"padding": "')
            for _ in range(1000):  # up to 1 MB, far past the limit; the client stops reading long before
                await response.write(b"x" * 1024)
                sent.append(1024)
            await response.write(b'"}')
        except (ConnectionResetError, ConnectionError):
            pass
        return response

    server.handlers["/c.json"] = stream
    fetcher = await fetcher_factory(settings_for(server, tls[0], max_bytes=2048))
    error = await refusal(fetcher, url)
    assert error.stage == "fetch"
    assert "2048 bytes" in error.reason


async def test_compressed_bodies_count_decoded(server: DocumentServer, tls: Tls, fetcher_factory: Any) -> None:
    """A small gzip body that decodes past the limit is refused: the decoded size counts."""
    url = server.url("/c.json")
    decoded = json.dumps(document_for(url, padding="x" * 50_000)).encode()
    server.handlers["/c.json"] = raw_handler(gzip.compress(decoded), headers={"Content-Encoding": "gzip"})
    fetcher = await fetcher_factory(settings_for(server, tls[0]))
    error = await refusal(fetcher, url)
    assert error.stage == "fetch"
    assert "5120 bytes" in error.reason
    assert server.requests[0].headers.get("Accept-Encoding") == "identity"


async def test_slow_body_is_cut_at_the_total_timeout(server: DocumentServer, tls: Tls, fetcher_factory: Any) -> None:
    url = server.url("/c.json")

    async def trickle(request: web.Request) -> web.StreamResponse:
        response = web.StreamResponse(headers={"Content-Type": "application/json"})
        await response.prepare(request)
        try:
            await response.write(b"{")
            for _ in range(100):
                await asyncio.sleep(0.1)
                await response.write(b" ")
        except (ConnectionResetError, ConnectionError):
            pass
        return response

    server.handlers["/c.json"] = trickle
    fetcher = await fetcher_factory(settings_for(server, tls[0], timeout_seconds=1.0))
    started = time.monotonic()
    error = await refusal(fetcher, url)
    assert time.monotonic() - started < 3.0
    assert error.stage == "fetch"
    assert "1.0 seconds" in error.reason


async def test_headers_never_sent(server: DocumentServer, tls: Tls, fetcher_factory: Any) -> None:
    url = server.url("/c.json")
    release = asyncio.Event()

    async def stall(request: web.Request) -> web.StreamResponse:
        await asyncio.wait_for(release.wait(), 10)
        return web.json_response({})

    server.handlers["/c.json"] = stall
    fetcher = await fetcher_factory(settings_for(server, tls[0], timeout_seconds=0.8))
    started = time.monotonic()
    error = await refusal(fetcher, url)
    release.set()
    assert time.monotonic() - started < 3.0
    assert error.stage == "fetch"
    assert "did not answer" in error.reason


async def test_connect_timeout(tls: Tls, fetcher_factory: Any) -> None:
    """A listener that never completes the TLS handshake."""
    accepted: list[asyncio.StreamWriter] = []

    async def silent(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        accepted.append(writer)

    listener = await asyncio.start_server(silent, "127.0.0.1", 0)
    port = listener.sockets[0].getsockname()[1]
    try:
        settings = CimdSettings(
            development_origins=[f"https://localhost:{port}"],
            ca_file=str(tls[0]),
            connect_timeout_seconds=0.5,
            timeout_seconds=3.0,
        )
        fetcher = await fetcher_factory(settings)
        started = time.monotonic()
        error = await refusal(fetcher, f"https://localhost:{port}/c.json")
        assert time.monotonic() - started < 2.5
        assert error.stage == "fetch"
    finally:
        for writer in accepted:
            writer.close()
        listener.close()


async def test_grammar_is_checked_before_any_io(tls: Tls, fetcher_factory: Any) -> None:
    resolver = Resolver(["8.8.8.8"])
    fetcher = await fetcher_factory(CimdSettings(ca_file=str(tls[0])), resolver)
    assert (await refusal(fetcher, "http://client.example.com/c.json")).stage == "url"
    assert (await refusal(fetcher, "https://client.example.com/")).stage == "url"
    assert (await refusal(fetcher, "https://10.0.0.1/c.json")).stage == "policy"
    assert resolver.calls == []


# -------------------------------------------------------------------------------------------------- cache


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@dataclass
class Counting:
    """A document handler that counts its 200s and 304s and can be switched to failing."""

    url: str
    headers: dict[str, str] = field(default_factory=dict)
    etag: str | None = None
    status: int = 200
    delay: float = 0.0
    served: int = 0
    not_modified: int = 0
    name: str = "Local"

    async def __call__(self, request: web.Request) -> web.StreamResponse:
        if self.delay:
            await asyncio.sleep(self.delay)
        if self.status != 200:
            return web.Response(status=self.status)
        headers = dict(self.headers)
        if self.etag is not None:
            headers["ETag"] = self.etag
            if request.headers.get("If-None-Match") == self.etag:
                self.not_modified += 1
                return web.Response(status=304, headers=headers)
        self.served += 1
        return web.json_response({**document_for(self.url), "client_name": self.name}, headers=headers)


async def cache_for(
    server: DocumentServer, tls: Tls, fetcher_factory: Any, clock: Clock, **overrides: Any
) -> DocumentCache:
    settings = settings_for(server, tls[0], **overrides)
    fetcher = await fetcher_factory(settings)
    return DocumentCache(fetcher, settings, clock=clock)


async def test_concurrent_gets_share_one_fetch(server: DocumentServer, tls: Tls, fetcher_factory: Any) -> None:
    url = server.url("/c.json")
    handler = Counting(url, delay=0.2)
    server.handlers["/c.json"] = handler
    cache = await cache_for(server, tls, fetcher_factory, Clock())
    results = await asyncio.gather(*(cache.get(url) for _ in range(20)))
    assert handler.served == 1
    assert len(server.requests) == 1
    assert all(result is results[0] for result in results)


async def test_max_age_is_honoured_and_clamped(server: DocumentServer, tls: Tls, fetcher_factory: Any) -> None:
    url = server.url("/c.json")
    handler = Counting(url, headers={"Cache-Control": "max-age=600"})
    server.handlers["/c.json"] = handler
    clock = Clock()
    cache = await cache_for(server, tls, fetcher_factory, clock, min_cache_seconds=60, max_cache_seconds=3600)
    await cache.get(url)
    clock.now += 599
    await cache.get(url)
    assert handler.served == 1
    clock.now += 2
    await cache.get(url)
    assert handler.served == 2

    handler.headers = {"Cache-Control": "max-age=999999"}  # clamped to max_cache_seconds
    cache.invalidate(url)
    await cache.get(url)
    assert handler.served == 3
    clock.now += 3599
    await cache.get(url)
    assert handler.served == 3
    clock.now += 2
    await cache.get(url)
    assert handler.served == 4

    handler.headers = {"Cache-Control": "max-age=5"}  # raised to min_cache_seconds
    cache.invalidate(url)
    await cache.get(url)
    clock.now += 59
    await cache.get(url)
    assert handler.served == 5
    clock.now += 2
    await cache.get(url)
    assert handler.served == 6

    handler.headers = {}  # no freshness information: min_cache_seconds
    cache.invalidate(url)
    await cache.get(url)
    clock.now += 59
    await cache.get(url)
    assert handler.served == 7
    clock.now += 2
    await cache.get(url)
    assert handler.served == 8


async def test_no_store_is_refetched_beyond_the_floor(server: DocumentServer, tls: Tls, fetcher_factory: Any) -> None:
    url = server.url("/c.json")
    handler = Counting(url, headers={"Cache-Control": "no-store"})
    server.handlers["/c.json"] = handler
    clock = Clock()
    no_floor = await cache_for(server, tls, fetcher_factory, clock, min_cache_seconds=0)
    for _ in range(3):
        await no_floor.get(url)
    assert handler.served == 3
    floor = await cache_for(server, tls, fetcher_factory, clock, min_cache_seconds=30)
    await floor.get(url)
    await floor.get(url)
    assert handler.served == 4
    clock.now += 31
    await floor.get(url)
    assert handler.served == 5


async def test_etag_revalidation(server: DocumentServer, tls: Tls, fetcher_factory: Any) -> None:
    url = server.url("/c.json")
    handler = Counting(url, headers={"Cache-Control": "max-age=100"}, etag='"v1"')
    server.handlers["/c.json"] = handler
    clock = Clock()
    cache = await cache_for(server, tls, fetcher_factory, clock, min_cache_seconds=0)
    first = await cache.get(url)
    clock.now += 101
    second = await cache.get(url)
    assert (handler.served, handler.not_modified) == (1, 1)
    assert second.document == first.document
    assert second.fetched_at >= first.fetched_at
    assert server.requests[-1].headers["If-None-Match"] == '"v1"'
    clock.now += 99  # the 304 refreshed the lifetime
    await cache.get(url)
    assert (handler.served, handler.not_modified) == (1, 1)
    clock.now += 2
    handler.etag = '"v2"'
    handler.name = "Changed"
    third = await cache.get(url)
    assert (handler.served, handler.not_modified) == (2, 1)
    assert third.document["client_name"] == "Changed"
    assert third.etag == '"v2"'


async def test_errors_are_not_cached(server: DocumentServer, tls: Tls, fetcher_factory: Any) -> None:
    url = server.url("/c.json")
    handler = Counting(url, status=503)
    server.handlers["/c.json"] = handler
    cache = await cache_for(server, tls, fetcher_factory, Clock())
    for _ in range(2):
        with pytest.raises(DocumentRefused):
            await cache.get(url)
    assert len(server.requests) == 2
    handler.status = 200
    assert (await cache.get(url)).document["client_name"] == "Local"


async def test_invalid_documents_are_not_cached(server: DocumentServer, tls: Tls, fetcher_factory: Any) -> None:
    url = server.url("/c.json")
    handler = Counting(url, name="")  # no client_name: the caller's validation refuses it
    server.handlers["/c.json"] = handler
    cache = await cache_for(server, tls, fetcher_factory, Clock())

    def validate(fetched: FetchedDocument) -> None:
        client_metadata(fetched.url, fetched.document)

    for _ in range(2):
        with pytest.raises(DocumentRefused) as info:
            await cache.get(url, validate=validate)
        assert "client_name" in info.value.reason
    assert handler.served == 2
    handler.name = "Fixed"
    await cache.get(url, validate=validate)
    await cache.get(url, validate=validate)
    assert handler.served == 3


async def test_a_document_that_starts_failing_after_expiry_is_evicted(
    server: DocumentServer, tls: Tls, fetcher_factory: Any
) -> None:
    url = server.url("/c.json")
    handler = Counting(url, headers={"Cache-Control": "max-age=60"}, etag='"v1"')
    server.handlers["/c.json"] = handler
    clock = Clock()
    cache = await cache_for(server, tls, fetcher_factory, clock, min_cache_seconds=0)
    await cache.get(url)
    handler.status = 404
    clock.now += 30
    await cache.get(url)  # still fresh
    clock.now += 31
    with pytest.raises(DocumentRefused) as info:
        await cache.get(url)
    assert "404" in info.value.reason
    assert url not in cache
    handler.status = 200
    await cache.get(url)
    assert handler.served == 2


async def test_the_cache_is_bounded(server: DocumentServer, tls: Tls, fetcher_factory: Any) -> None:
    for name in ("a", "b", "c"):
        server.handlers[f"/{name}.json"] = Counting(server.url(f"/{name}.json"))
    settings = settings_for(server, tls[0])
    fetcher = await fetcher_factory(settings)
    cache = DocumentCache(fetcher, settings, clock=Clock(), max_entries=2)
    await cache.get(server.url("/a.json"))
    await cache.get(server.url("/b.json"))
    await cache.get(server.url("/a.json"))  # a is now the most recently used
    await cache.get(server.url("/c.json"))  # evicts b
    assert server.url("/a.json") in cache and server.url("/c.json") in cache
    assert server.url("/b.json") not in cache
    assert len(cache) == 2
