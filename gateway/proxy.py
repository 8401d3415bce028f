"""Front-door reverse proxy: every path the gateway does not serve itself goes to the provider unchanged.

In front-door mode the gateway owns the issuer's public origin, so authorization, token, JWKS, login pages
and the rest of the provider pass through here. The proxy is a gateway in the sense of RFC 9110 section 3.7:
it forwards the request and the response as they are, streamed in both directions, and changes only what
belongs to the connection (hop-by-hop fields, RFC 9110 section 7.6.1) and the ``X-Forwarded-*`` fields
that tell the provider its public origin.

What it never does: follow a redirect (``Location`` goes to the client unchanged), keep a cookie (the
session has no cookie jar: cookies belong to the browser), decompress a response body (``Content-Encoding``
passes through), forward an encoded request body (415: neither side would decode it), show a stack trace to
a client.

Request bodies are read whole, within a size limit and a deadline, before an upstream connection is taken
(the small endpoints behind the front door, token, login forms, consent, PAR, need no streaming); responses
are streamed.

What one exchange costs (issue 12): upstream connections are persistent (RFC 9112 section 9.3) in one
keep-alive pool per gateway with ``TCP_NODELAY``; nothing is built per request that could be built once (the
fields never forwarded, the public origin's ``X-Forwarded-*``); a timer is armed only where a wait can happen;
an answer that has arrived whole by the time its fields are sent leaves in one write with them.
"""

from __future__ import annotations

import asyncio
import re
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass

import aiohttp
import structlog
from aiohttp import hdrs, web
from multidict import CIMultiDict, CIMultiDictProxy
from yarl import URL

from gateway.limits.ratelimit import UNKNOWN_SOURCE, source_key

log = structlog.get_logger(__name__)

HOP_BY_HOP = frozenset(
    name.lower()
    for name in (
        hdrs.CONNECTION,
        "Proxy-Connection",
        hdrs.KEEP_ALIVE,
        hdrs.TE,
        hdrs.TRAILER,
        hdrs.TRANSFER_ENCODING,
        hdrs.UPGRADE,
        hdrs.PROXY_AUTHENTICATE,
        hdrs.PROXY_AUTHORIZATION,
    )
)
"""RFC 9110 section 7.6.1 (Connection, Proxy-Connection, Keep-Alive, TE, Transfer-Encoding, Upgrade), plus
Trailer and the Proxy-* authentication fields, which address this hop only (RFC 9110 sections 11.7)."""

X_FORWARDED_FOR = "X-Forwarded-For"
X_FORWARDED_PROTO = "X-Forwarded-Proto"
X_FORWARDED_HOST = "X-Forwarded-Host"
X_FORWARDED_PORT = "X-Forwarded-Port"

_NOT_FORWARDED = frozenset(
    name.lower()
    for name in (
        hdrs.HOST,  # the upstream's own, set by the client session
        hdrs.EXPECT,  # 100-continue was answered by this server already
        hdrs.FORWARDED,  # RFC 7239 from the client: unverifiable, the X-Forwarded-* fields below replace it
        X_FORWARDED_PROTO,
        X_FORWARDED_HOST,
        X_FORWARDED_PORT,
        # relatives that providers or frameworks also honour: a client must not steer the issuer, the scheme,
        # the path prefix or the URL the provider thinks it serves
        "X-Forwarded-Prefix",
        "X-Forwarded-Ssl",
        "X-Forwarded-Scheme",
        "X-Forwarded-Server",
        "X-Forwarded-Uri",
        "X-Forwarded-Path",
        "X-Real-IP",
        "X-Original-URL",
        "X-Original-Host",
        "X-Rewrite-URL",
        "X-Scheme",
        "Front-End-Https",
    )
)
"""Request fields never passed on from the client; ``X-Forwarded-For`` is handled separately."""

_SKIP_AUTO_HEADERS = (hdrs.ACCEPT, hdrs.ACCEPT_ENCODING, hdrs.USER_AGENT, hdrs.CONTENT_TYPE)
"""Headers aiohttp's client would add on its own: the upstream must see only what the client sent (an
added ``Accept-Encoding: gzip`` would get a client a body it never asked for)."""

STREAM_CHUNK = 64 * 1024


def forwarded_headers(public_url: str) -> dict[str, str]:
    """``X-Forwarded-Proto``, ``-Host`` and ``-Port`` naming the gateway's public origin.

    The same values go with the discovery fetches in front-door mode, so a Keycloak started with
    ``--proxy-headers xforwarded`` derives the public issuer for both (``-Host`` carries a non-default port,
    as a ``Host`` field would)."""
    url = URL(public_url)
    if not url.absolute or url.host is None or url.port is None:
        raise ValueError(f"public URL must be absolute, got {public_url!r}")
    return {
        X_FORWARDED_PROTO: url.scheme,
        X_FORWARDED_HOST: url.host_port_subcomponent or url.host,
        X_FORWARDED_PORT: str(url.port),
    }


def _connection_tokens(headers: CIMultiDictProxy[str]) -> set[str]:
    """Field names listed in ``Connection``: hop-by-hop for this message (RFC 9110 section 7.6.1)."""
    tokens: set[str] = set()
    for value in headers.getall(hdrs.CONNECTION, ()):
        tokens.update(token.strip().lower() for token in value.split(",") if token.strip())
    return tokens


def _without(headers: CIMultiDictProxy[str], excluded: frozenset[str] | set[str]) -> CIMultiDict[str]:
    """``headers`` without the fields named in ``excluded`` (lowercase) or in ``Connection``, in order."""
    if hdrs.CONNECTION in headers:
        excluded = excluded | _connection_tokens(headers)
    return CIMultiDict([(name, value) for name, value in headers.items() if name.lower() not in excluded])


def end_to_end(headers: CIMultiDictProxy[str], *, drop: Iterable[str] = ()) -> CIMultiDict[str]:
    """``headers`` without hop-by-hop fields, those named in ``Connection``, and ``drop`` (lowercase names).

    Repeated fields (several ``Set-Cookie``) stay separate and in order."""
    return _without(headers, HOP_BY_HOP.union(drop) if drop else HOP_BY_HOP)


_NOT_FORWARDED_REQUEST = HOP_BY_HOP | _NOT_FORWARDED
"""What :func:`upstream_request_headers` leaves out of a client's request, computed once."""


def upstream_request_headers(
    headers: CIMultiDictProxy[str],
    *,
    peer: str | None,
    forwarded: Mapping[str, str],
    append_forwarded_for: bool = True,
) -> CIMultiDict[str]:
    """The request fields sent to the provider: end-to-end fields of the client's request, the public
    origin's ``X-Forwarded-Proto/Host/Port``, and ``X-Forwarded-For`` with the client's address appended
    (or, when ``append_forwarded_for`` is false, replaced by it)."""
    result = _without(headers, _NOT_FORWARDED_REQUEST)
    previous = result.popall(X_FORWARDED_FOR, ()) if X_FORWARDED_FOR in result else ()
    chain = [*previous] if append_forwarded_for else []
    if peer is not None:
        chain.append(peer)
    if chain:
        result[X_FORWARDED_FOR] = ", ".join(chain)
    result.extend(forwarded)  # never among the client's fields: they are in _NOT_FORWARDED
    return result


def _error_response(status: int, description: str, *, retry_after: int = 1) -> web.Response:
    return web.json_response(
        {"error": "temporarily_unavailable", "error_description": description},
        status=status,
        headers={hdrs.CACHE_CONTROL: "no-store", hdrs.RETRY_AFTER: str(retry_after)},
    )


def _refusal(
    status: int, description: str, *, close: bool = False, headers: Mapping[str, str] | None = None
) -> web.Response:
    """An RFC 6749 section 5.2 shaped ``invalid_request``; ``close`` ends the connection after it (RFC 9112
    section 9.6), for a request whose body was not read to its end."""
    response = web.json_response(
        {"error": "invalid_request", "error_description": description},
        status=status,
        headers={hdrs.CACHE_CONTROL: "no-store", **(headers or {})},
    )
    if close:
        response.force_close()
    return response


def content_codings(headers: CIMultiDictProxy[str]) -> list[str]:
    """The content codings of ``Content-Encoding`` (RFC 9110 section 8.4), lowercase, ``identity`` left out."""
    return [
        token
        for value in headers.getall(hdrs.CONTENT_ENCODING, [])
        for token in (part.strip().lower() for part in value.split(","))
        if token and token != "identity"
    ]


def transfer_codings(headers: CIMultiDictProxy[str]) -> list[str]:
    """The transfer codings of ``Transfer-Encoding`` (RFC 9112 section 6.1), lowercase, in order."""
    return [
        token
        for value in headers.getall(hdrs.TRANSFER_ENCODING, [])
        for token in (part.strip().lower() for part in value.split(","))
        if token
    ]


def unsupported_transfer_coding(request: web.BaseRequest) -> web.Response | None:
    """RFC 9112 section 6.1: a server that receives a transfer coding it does not understand answers 501 and
    closes the connection. The parser undoes only ``chunked``; any other coding (``gzip, chunked``) would reach
    a handler, or the provider, still encoded but labelled as identity."""
    codings = transfer_codings(request.headers)
    if not codings or codings == ["chunked"]:
        return None
    return _refusal(501, "only the chunked transfer coding is supported", close=True)


def unsupported_content_coding(request: web.BaseRequest) -> web.Response | None:
    """RFC 9110 section 15.5.16: a request body in a content coding the gateway does not decode gets 415 with
    ``Accept-Encoding: identity`` (section 12.5.3). Neither the gateway's handlers nor the providers behind the
    front door decode request bodies (the server is built with ``auto_decompress=False``: a body reaches a
    handler as the client sent it), so an encoded body could only be forwarded to be misread, or misread here."""
    if not request.body_exists or not content_codings(request.headers):
        return None
    return _refusal(
        415,
        "request bodies must not be content-encoded (Content-Encoding: identity only)",
        close=True,
        headers={hdrs.ACCEPT_ENCODING: "identity"},
    )


def request_target_error(request: web.BaseRequest) -> web.Response | None:
    """A JSON 4xx for a request target or method the gateway does not serve, else None.

    The gateway is an origin server (RFC 9112 section 3.2): it serves the origin-form (``/path?query``) and,
    as RFC 9112 section 3.2.2 requires of a server, the absolute-form of an ``http``/``https`` URI (its path is
    used; an empty path is ``/``, RFC 9110 section 4.2.3). ``CONNECT`` asks for a tunnel (RFC 9110 section
    9.3.6): 405. The asterisk-form (``OPTIONS *``, RFC 9112 section 3.2.4) and any other target: 400. The answer
    never repeats the target, so nothing a client sent is reflected."""
    if request.method == hdrs.METH_CONNECT:
        return _refusal(
            405,
            "CONNECT is not supported: this server is not a forward proxy",
            close=True,
            headers={hdrs.ALLOW: "GET, HEAD, POST, PUT, PATCH, DELETE, OPTIONS"},
        )
    target = request.raw_path
    if target.startswith("/"):
        return None
    if target == "*":
        return _refusal(400, "the asterisk-form request target (OPTIONS *) is not served")
    scheme = target.split(":", 1)[0].lower() if ":" in target else ""
    if scheme in ("http", "https") and target[len(scheme) :].startswith("://"):
        return None
    return _refusal(400, "the request target must be an absolute path (origin-form) or an http(s) URI")


def path_in_normal_form(path: str) -> bool:
    """True when the (percent-decoded) ``path`` has no empty, ``.`` or ``..`` segment, no backslash, no ``;``,
    no ``%`` (a double encoding, which a provider that decodes twice would read as something else) and no
    control character: a path the gateway and the provider cannot resolve differently. Browsers and OAuth
    clients only send such paths (RFC 3986 section 5.2.4 removes dot segments before sending); what else
    arrives is an attempt to reach past an allowed prefix (``/realms/mcp/protocol/../../master``, Java's ``..;``
    path parameters, ``%252e%252e``)."""
    if not path.startswith("/") or "//" in path or _NOT_IN_NORMAL_FORM.search(path):
        return False
    segments = path + "/"  # a "." or ".." segment, also the last one, is "/./" or "/../" in it
    return "/./" not in segments and "/../" not in segments


_NOT_IN_NORMAL_FORM = re.compile(r"[\x00-\x1f\x7f\\;%]")
"""Characters a path in normal form never has (:func:`path_in_normal_form`): control characters, backslash, ``;``
and ``%``; one search in C instead of a loop over the path's characters per request."""


class PathAllowList:
    """Path prefixes the front door forwards; anything else is answered 404 by the gateway.

    A prefix ``/a/b`` (with or without a trailing slash) covers ``/a/b`` itself and every path below
    ``/a/b/``, never ``/a/bc``; ``/`` covers everything. Matching is on the percent-decoded path in normal form
    (:func:`path_in_normal_form`), case-sensitive as the providers' routers are."""

    def __init__(self, prefixes: Iterable[str]) -> None:
        normalized = {prefix.rstrip("/") for prefix in prefixes}
        for prefix in normalized:
            if prefix and not prefix.startswith("/"):
                raise ValueError(f"an allowed path prefix must start with '/': {prefix!r}")
        self.prefixes = tuple(sorted(normalized))
        self._exact = frozenset(self.prefixes)
        self._below = tuple(prefix + "/" for prefix in self.prefixes)  # one C-level startswith per request

    def __bool__(self) -> bool:
        return bool(self.prefixes)

    def allows(self, path: str) -> bool:
        return path in self._exact or path.startswith(self._below)


def _rewritable_html(upstream: aiohttp.ClientResponse) -> bool:
    """An HTML body without a content coding whose declared length (if any) fits :data:`MAX_REWRITTEN_BODY`."""
    coding = upstream.headers.get(hdrs.CONTENT_ENCODING, "identity").strip().lower()
    length = upstream.content_length
    return (
        upstream.content_type == "text/html"
        and coding == "identity"
        and (length is None or length <= MAX_REWRITTEN_BODY)
    )


def default_source(request: web.BaseRequest) -> str:
    """The TCP peer, IPv6 by its /64 (:func:`gateway.limits.ratelimit.source_key`)."""
    return source_key(request.remote or UNKNOWN_SOURCE)


@dataclass(frozen=True)
class ProxyLimits:
    """What one client may hold of the proxy (the ``front_door`` settings, see :mod:`gateway.settings`)."""

    max_body_bytes: int = 256 * 1024
    """Largest request body forwarded; larger ones get 413 before an upstream connection is taken."""
    body_timeout: float = 10.0
    """Seconds the client has to send its whole request body; after that 408 and the connection closes."""
    send_timeout: float = 30.0
    """Seconds a client may leave a piece of the response untaken before its connection is dropped."""
    pool_size: int = 100
    """Upstream connections at most; a request waits up to the connect timeout for one, then 503."""
    max_concurrent_per_source: int = 32
    """Exchanges with the provider one source may have in flight (0: no bound); past it 429."""


@dataclass(frozen=True)
class Rewrite:
    """What an endpoint the gateway checks (:mod:`gateway.authorization`) changes in one exchange it forwards; the
    rest is forwarded as for any other path. The default changes nothing."""

    query: str | None = None
    """The query string sent upstream instead of the request's (already percent-encoded, without ``?``)."""
    body: bytes | None = None
    """The request body sent instead of the one read (a form the gateway re-encoded)."""
    drop_headers: tuple[str, ...] = ()
    """Request fields not passed on (e.g. ``Authorization`` when its credentials moved into ``body``)."""
    location: Callable[[str], str | None] | None = None
    """Applied to a response's ``Location`` (``None`` from it: unchanged), e.g. RFC 9207 ``iss``."""
    html: Callable[[bytes], bytes | None] | None = None
    """Applied to an HTML response body of at most :data:`MAX_REWRITTEN_BODY` bytes (``None``: unchanged), e.g.
    the form-post response mode page."""


class ProxiedResponse(web.StreamResponse):
    """A streamed answer whose status line and fields leave with the first write of its body (as a
    ``web.Response``'s do) instead of in a write of their own: for an answer that has arrived whole, one write
    and one segment to the client instead of two. The proxy writes right after :meth:`prepare`, so the fields
    never wait for the upstream."""

    _send_headers_immediately = False


MAX_REWRITTEN_BODY = 256 * 1024
"""Largest response body :attr:`Rewrite.html` is applied to; larger ones stream through unchanged."""

NO_REWRITE = Rewrite()


class FrontDoorProxy:
    """Reverse proxy to the provider's public listener: ``await proxy(request)`` from a catch-all handler
    (aiohttp wants route handlers to be ``async def`` functions, so wrap the instance in one).

    The server must be built with ``handler_args={"auto_decompress": False}`` (as :func:`gateway.app.create_app`
    does), so request bodies reach the proxy as sent; an encoded one is refused (415).

    ``session`` must be created with ``auto_decompress=False`` (bodies pass through still encoded) and
    ``cookie_jar=aiohttp.DummyCookieJar()`` (a shared jar would hand one user's provider cookies to the
    next): :meth:`new_session` makes one; anything else is refused. ``upstream_url`` is the provider's
    public listener as the gateway reaches it (``http://127.0.0.1:4444``, may have a path prefix);
    ``public_url`` is the gateway's public origin, which the provider learns from ``X-Forwarded-*``.

    ``append_forwarded_for``: keep an incoming ``X-Forwarded-For`` and append the peer address (right when a
    load balancer in front sets it); false replaces it with the peer address (right when clients connect
    directly, since the provider may take the first entry as the client's address).

    One slow or hostile client must not deny the provider to everyone else, so (``limits``): the request body
    is read whole, within ``max_body_bytes`` (413) and ``body_timeout`` (408), *before* an upstream connection
    is taken; a source (``source_of``: the limits' source address, IPv6 per prefix) has at most
    ``max_concurrent_per_source`` exchanges in flight (429); at most ``pool_size`` exchanges run at once, a
    request waiting up to the connect timeout for a turn (503); a client that stops taking the response for
    ``send_timeout`` seconds loses its connection.
    """

    def __init__(
        self,
        session: aiohttp.ClientSession | None,
        upstream_url: str,
        public_url: str,
        *,
        append_forwarded_for: bool = True,
        limits: ProxyLimits | None = None,
        source_of: Callable[[web.BaseRequest], str] = default_source,
    ) -> None:
        upstream = URL(upstream_url)
        if not upstream.absolute or upstream.query_string or upstream.fragment:
            raise ValueError(f"upstream URL must be absolute, without query or fragment: {upstream_url!r}")
        self._session: aiohttp.ClientSession | None = None
        self._skip_auto_headers: tuple[str, ...] | None = _SKIP_AUTO_HEADERS
        self._pool_wait = 10.0
        self._upstream_base = upstream_url.rstrip("/")
        self._log_upstream = str(upstream.with_user(None))
        self._forwarded = forwarded_headers(public_url)
        self._append_forwarded_for = append_forwarded_for
        self.limits = limits or ProxyLimits()
        self._source_of = source_of
        self._in_flight: dict[str, int] = {}
        self.on_rejected: Callable[[str], None] = lambda limit: None
        """Told ``proxy_concurrency`` when a source is past its in-flight bound (metrics)."""
        self._pool = asyncio.Semaphore(self.limits.pool_size)
        if session is not None:
            self.attach(session)

    def attach(self, session: aiohttp.ClientSession) -> None:
        """Forward through ``session`` (made by :meth:`new_session`; the app builds the proxy in ``create_app`` and
        attaches the session when it starts, in its cleanup context)."""
        if session.auto_decompress:
            raise ValueError("the proxy session must be created with auto_decompress=False")
        if not isinstance(session.cookie_jar, aiohttp.DummyCookieJar):
            raise TypeError("the proxy session must be created with cookie_jar=aiohttp.DummyCookieJar()")
        self._session = session
        # what the session skips already (new_session's do) is not handed over again with every request
        covered = {name.lower() for name in session.skip_auto_headers} >= {name.lower() for name in _SKIP_AUTO_HEADERS}
        self._skip_auto_headers = None if covered else _SKIP_AUTO_HEADERS
        connect = session.timeout.connect
        self._pool_wait = connect if connect is not None else 10.0

    @staticmethod
    def new_session(
        timeout: float | aiohttp.ClientTimeout = 30.0,
        *,
        limit: int = 100,
        connect_timeout: float | None = None,
        trace_configs: Sequence[aiohttp.TraceConfig] | None = None,
    ) -> aiohttp.ClientSession:
        """A client session fit for the proxy. A number ``timeout`` bounds each wait for data (and connecting,
        unless ``connect_timeout`` is given), not the whole exchange, so long downloads are not cut. ``limit``:
        the connection pool's size: persistent connections (RFC 9112 section 9.3), an idle one kept 15 s, with
        ``TCP_NODELAY`` (aiohttp sets it on every connection), a host name's addresses cached 10 s (no lookup per
        request). The headers aiohttp would add on its own are skipped once here, not per request. Call it with
        a running event loop."""
        if not isinstance(timeout, aiohttp.ClientTimeout):
            connect = timeout if connect_timeout is None else connect_timeout
            timeout = aiohttp.ClientTimeout(total=None, connect=connect, sock_connect=connect, sock_read=timeout)
        return aiohttp.ClientSession(
            timeout=timeout,
            auto_decompress=False,
            cookie_jar=aiohttp.DummyCookieJar(),
            skip_auto_headers=_SKIP_AUTO_HEADERS,
            connector=aiohttp.TCPConnector(limit=limit),
            trace_configs=list(trace_configs) if trace_configs else None,
        )

    def upstream_url(self, request: web.BaseRequest) -> URL:
        """The provider URL for ``request``: its path and query exactly as received (still percent-encoded);
        the absolute-form's path (RFC 9112 section 3.2.2), ``/`` when it has none."""
        target = request.raw_path
        if not target.startswith("/"):  # absolute-form: its path and query
            target = request.rel_url.raw_path_qs
            if not target.startswith("/"):
                target = "/" + target
        return URL(self._upstream_base + target, encoded=True)

    async def __call__(self, request: web.Request) -> web.StreamResponse:
        """Forward ``request`` to the provider and stream its answer back (RFC 9110 section 7.6)."""
        refusal = unsupported_transfer_coding(request) or unsupported_content_coding(request)
        if refusal is not None:
            return refusal
        body = await self.read_body(request)
        if isinstance(body, web.Response):
            return body
        return await self.forward(request, body)

    async def forward(
        self, request: web.Request, body: bytes | None, rewrite: Rewrite = NO_REWRITE
    ) -> web.StreamResponse:
        """Forward ``request`` whose body :meth:`read_body` has read (``body``), changed as ``rewrite`` says,
        within the per-source and pool limits."""
        if rewrite.body is not None:
            body = rewrite.body
        source = self._source_of(request)
        per_source = self.limits.max_concurrent_per_source
        if per_source and self._in_flight.get(source, 0) >= per_source:
            self.on_rejected("proxy_concurrency")
            log.warning("proxy.source_busy", method=request.method, path=request.path, source=source)
            return _error_response(429, "too many requests in progress from this address")
        self._in_flight[source] = self._in_flight.get(source, 0) + 1
        try:
            if self._pool.locked():  # a turn must be waited for: within the connect timeout
                try:
                    async with asyncio.timeout(self._pool_wait):
                        await self._pool.acquire()
                except TimeoutError:
                    log.warning("proxy.pool_exhausted", method=request.method, path=request.path)
                    return _error_response(503, "the authorization server is busy; retry shortly")
            else:
                await self._pool.acquire()  # a free turn: taken at once, no timer
            try:
                return await self._exchange(request, body, rewrite)
            finally:
                self._pool.release()
        finally:
            remaining = self._in_flight[source] - 1
            if remaining:
                self._in_flight[source] = remaining
            else:
                del self._in_flight[source]

    async def read_body(self, request: web.Request) -> bytes | web.Response | None:
        """The whole request body (None when the request has none), or the 413/408 answer: read before any
        upstream connection is taken, so a client sending slowly holds nothing but its own connection."""
        if not request.body_exists:
            return None
        limit = self.limits.max_body_bytes
        declared = request.content_length
        if declared is not None and declared > limit:
            return _refusal(413, f"the request body is larger than {limit} bytes", close=True)
        if declared is not None and request.content.is_eof():
            return request.content.read_nowait()  # arrived whole with the head (within its length): no wait, no timer
        parts: list[bytes] = []
        size = 0
        try:
            async with asyncio.timeout(self.limits.body_timeout):
                while True:
                    chunk = await request.content.read(limit + 1 - size)
                    if not chunk:
                        break
                    parts.append(chunk)
                    size += len(chunk)
                    if size > limit:
                        return _refusal(413, f"the request body is larger than {limit} bytes", close=True)
        except TimeoutError:
            log.info("proxy.body_timeout", method=request.method, path=request.path, received=size)
            return _refusal(
                408, f"the request body did not arrive within {self.limits.body_timeout:g} seconds", close=True
            )
        return b"".join(parts)

    async def _exchange(self, request: web.Request, body: bytes | None, rewrite: Rewrite) -> web.StreamResponse:
        headers = upstream_request_headers(
            request.headers,
            peer=request.remote,
            forwarded=self._forwarded,
            append_forwarded_for=self._append_forwarded_for,
        )
        for name in rewrite.drop_headers:
            headers.popall(name, None)
        if body is not None:  # sent with its own length: read whole, a chunked request is forwarded delimited
            headers.popall(hdrs.CONTENT_LENGTH, None)
        url = self.upstream_url(request)
        if rewrite.query is not None:
            url = URL(self._upstream_base + url.raw_path + (f"?{rewrite.query}" if rewrite.query else ""), encoded=True)
        if self._session is None:
            raise RuntimeError("the front-door proxy has no session: the app has not started")
        try:
            async with self._session.request(
                request.method,
                url,
                headers=headers,
                data=body,
                allow_redirects=False,
                skip_auto_headers=self._skip_auto_headers,
            ) as upstream:
                response = ProxiedResponse(
                    status=upstream.status, reason=upstream.reason, headers=_without(upstream.headers, HOP_BY_HOP)
                )
                if rewrite.location is not None and hdrs.LOCATION in response.headers:
                    changed = rewrite.location(response.headers[hdrs.LOCATION])
                    if changed is not None:
                        response.headers[hdrs.LOCATION] = changed
                if rewrite.html is not None and _rewritable_html(upstream):
                    return await self._rewritten(request, upstream, response, rewrite.html)
                try:  # never waits: the fields are not held back for the body
                    arrived = upstream.content.read_nowait()
                    whole = upstream.content.is_eof()
                except (aiohttp.ClientError, TimeoutError) as exc:  # broke after its head: nothing sent yet
                    self._log_failure(request, 502, exc, after_headers=True)
                    return _error_response(502, "the authorization server could not be reached")
                await response.prepare(request)  # the fields are kept for the first write: this cannot wait
                return await self._relay_body(request, upstream, response, (arrived, whole))
        except TimeoutError as exc:
            self._log_failure(request, 504, exc)
            return _error_response(504, "the authorization server did not answer in time")
        except aiohttp.ClientError as exc:
            self._log_failure(request, 502, exc)
            return _error_response(502, "the authorization server could not be reached")

    async def _rewritten(
        self,
        request: web.Request,
        upstream: aiohttp.ClientResponse,
        response: web.StreamResponse,
        change: Callable[[bytes], bytes | None],
    ) -> web.StreamResponse:
        """A small, identity-coded HTML answer read whole (to its end, however it arrives), changed, and sent with
        its new length. One larger than :data:`MAX_REWRITTEN_BODY` is sent unchanged: what was read, then the rest
        as it arrives (never cut)."""
        parts: list[bytes] = []
        size = 0
        complete = False
        try:
            while size <= MAX_REWRITTEN_BODY:
                chunk = await upstream.content.readany()
                if not chunk:
                    complete = True
                    break
                parts.append(chunk)
                size += len(chunk)
        except (aiohttp.ClientError, TimeoutError) as exc:
            self._log_failure(request, 502, exc)
            return _error_response(502, "the authorization server could not be reached")
        body = b"".join(parts)
        if not complete:  # too large to change: passed through as it is
            await response.prepare(request)
            if await self._send(request, response, body):
                return await self._relay_body(request, upstream, response)
            return response
        body = change(body) or body
        response.headers[hdrs.CONTENT_LENGTH] = str(len(body))
        await response.prepare(request)
        await self._send(request, response, body, eof=True)  # with the status line and fields: one write
        return response

    async def _send(
        self, request: web.Request, response: web.StreamResponse, data: bytes, *, eof: bool = False
    ) -> bool:
        """Write ``data`` to the client (and end the answer, with ``eof``) within the send timeout; False when the
        client is gone or stopped taking the answer (its connection is then dropped, freeing the upstream one)."""
        try:
            async with asyncio.timeout(self.limits.send_timeout):
                if eof:
                    await response.write_eof(data)
                else:
                    await response.write(data)
        except ConnectionResetError:  # the client went away; leaving closes the upstream connection
            log.debug("proxy.client_gone", method=request.method, path=request.path)
            return False
        except TimeoutError:  # the client stopped reading: free the upstream connection
            self._client_stalled(request, response)
            return False
        return True

    def _client_stalled(self, request: web.Request, response: web.StreamResponse) -> web.StreamResponse:
        log.info("proxy.client_stalled", method=request.method, path=request.path)
        if request.transport is not None:
            request.transport.abort()
        return response

    def _upstream_broke(
        self, request: web.Request, upstream: aiohttp.ClientResponse, response: web.StreamResponse, exc: BaseException
    ) -> web.StreamResponse:
        self._log_failure(request, upstream.status, exc, after_headers=True)
        if request.transport is not None:
            request.transport.abort()
        return response

    async def _relay_body(
        self,
        request: web.Request,
        upstream: aiohttp.ClientResponse,
        response: web.StreamResponse,
        first: tuple[bytes, bool] | None = None,
    ) -> web.StreamResponse:
        """Copy the body as it arrives: the status line and fields go out at once with what of the body has
        arrived (all of it, for a small answer: one write), the rest as it comes. Once the status line is out,
        an upstream failure can only be reported by breaking the connection, so the client sees a truncated
        message rather than a complete one. ``first``: what of the body had arrived with the head, and whether
        that was all of it, read (without waiting) before the fields were prepared, so that an upstream broken
        right after its head still gets a clean 502."""
        if first is None:
            try:
                first = upstream.content.read_nowait(), upstream.content.is_eof()
            except (aiohttp.ClientError, TimeoutError) as exc:
                return self._upstream_broke(request, upstream, response, exc)
        arrived, whole = first
        if not await self._send(request, response, arrived, eof=whole) or whole:
            return response
        try:
            async for chunk in upstream.content.iter_chunked(STREAM_CHUNK):
                if not await self._send(request, response, chunk):
                    return response
        except (aiohttp.ClientError, TimeoutError) as exc:
            return self._upstream_broke(request, upstream, response, exc)
        await self._send(request, response, b"", eof=True)  # the last chunk waits for the client too
        return response

    def _log_failure(
        self, request: web.BaseRequest, status: int, exc: BaseException, *, after_headers: bool = False
    ) -> None:
        # The path only: queries carry authorization codes, state and tokens.
        log.warning(
            "proxy.upstream_truncated" if after_headers else "proxy.upstream_failed",
            method=request.method,
            path=request.path,
            status=status,
            upstream=self._log_upstream,
            error_type=type(exc).__name__,
            cause=str(exc) or repr(exc),
        )
