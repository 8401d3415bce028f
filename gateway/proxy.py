"""Front-door reverse proxy: every path the gateway does not serve itself goes to the provider unchanged.

In front-door mode the gateway owns the issuer's public origin, so authorization, token, JWKS, login pages
and the rest of the provider pass through here. The proxy is a gateway in the sense of RFC 9110 section 3.7:
it forwards the request and the response as they are, streamed in both directions, and changes only what
belongs to the connection (hop-by-hop fields, RFC 9110 section 7.6.1) and the ``X-Forwarded-*`` fields
that tell the provider its public origin.

What it never does: follow a redirect (``Location`` goes to the client unchanged), keep a cookie (the
session has no cookie jar: cookies belong to the browser), decompress a body (``Content-Encoding`` passes
through), show a stack trace to a client.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping

import aiohttp
import structlog
from aiohttp import hdrs, web
from multidict import CIMultiDict, CIMultiDictProxy
from yarl import URL

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
    for value in headers.getall(hdrs.CONNECTION, []):
        tokens.update(token.strip().lower() for token in value.split(",") if token.strip())
    return tokens


def end_to_end(headers: CIMultiDictProxy[str], *, drop: Iterable[str] = ()) -> CIMultiDict[str]:
    """``headers`` without hop-by-hop fields, those named in ``Connection``, and ``drop`` (lowercase names).

    Repeated fields (several ``Set-Cookie``) stay separate and in order."""
    excluded = HOP_BY_HOP | _connection_tokens(headers) | set(drop)
    return CIMultiDict((name, value) for name, value in headers.items() if name.lower() not in excluded)


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
    result = end_to_end(headers, drop=_NOT_FORWARDED)
    previous = result.popall(X_FORWARDED_FOR, [])
    chain = [*previous] if append_forwarded_for else []
    if peer is not None:
        chain.append(peer)
    if chain:
        result[X_FORWARDED_FOR] = ", ".join(chain)
    result.update(forwarded)
    return result


def _error_response(status: int, description: str) -> web.Response:
    return web.json_response(
        {"error": "temporarily_unavailable", "error_description": description},
        status=status,
        headers={hdrs.CACHE_CONTROL: "no-store", hdrs.RETRY_AFTER: "1"},
    )


class FrontDoorProxy:
    """Reverse proxy to the provider's public listener: ``await proxy(request)`` from a catch-all handler
    (aiohttp wants route handlers to be ``async def`` functions, so wrap the instance in one).

    ``session`` must be created with ``auto_decompress=False`` (bodies pass through still encoded) and
    ``cookie_jar=aiohttp.DummyCookieJar()`` (a shared jar would hand one user's provider cookies to the
    next): :meth:`new_session` makes one; anything else is refused. ``upstream_url`` is the provider's
    public listener as the gateway reaches it (``http://127.0.0.1:4444``, may have a path prefix);
    ``public_url`` is the gateway's public origin, which the provider learns from ``X-Forwarded-*``.

    ``append_forwarded_for``: keep an incoming ``X-Forwarded-For`` and append the peer address (right when a
    load balancer in front sets it); false replaces it with the peer address (right when clients connect
    directly, since the provider may take the first entry as the client's address).
    """

    def __init__(
        self,
        session: aiohttp.ClientSession,
        upstream_url: str,
        public_url: str,
        *,
        append_forwarded_for: bool = True,
    ) -> None:
        if session.auto_decompress:
            raise ValueError("the proxy session must be created with auto_decompress=False")
        if not isinstance(session.cookie_jar, aiohttp.DummyCookieJar):
            raise TypeError("the proxy session must be created with cookie_jar=aiohttp.DummyCookieJar()")
        upstream = URL(upstream_url)
        if not upstream.absolute or upstream.query_string or upstream.fragment:
            raise ValueError(f"upstream URL must be absolute, without query or fragment: {upstream_url!r}")
        self._session = session
        self._upstream_base = upstream_url.rstrip("/")
        self._log_upstream = str(upstream.with_user(None))
        self._forwarded = forwarded_headers(public_url)
        self._append_forwarded_for = append_forwarded_for

    @staticmethod
    def new_session(timeout: float | aiohttp.ClientTimeout = 30.0, *, limit: int = 100) -> aiohttp.ClientSession:
        """A client session fit for the proxy. A number ``timeout`` bounds connecting and each wait for data,
        not the whole exchange, so long downloads are not cut. Call it with a running event loop."""
        if not isinstance(timeout, aiohttp.ClientTimeout):
            timeout = aiohttp.ClientTimeout(total=None, connect=timeout, sock_connect=timeout, sock_read=timeout)
        return aiohttp.ClientSession(
            timeout=timeout,
            auto_decompress=False,
            cookie_jar=aiohttp.DummyCookieJar(),
            connector=aiohttp.TCPConnector(limit=limit),
        )

    def upstream_url(self, request: web.BaseRequest) -> URL:
        """The provider URL for ``request``: its path and query exactly as received (still percent-encoded)."""
        target = request.raw_path
        if not target.startswith("/"):  # absolute-form or asterisk-form request target
            target = request.rel_url.raw_path_qs
        return URL(self._upstream_base + target, encoded=True)

    async def __call__(self, request: web.Request) -> web.StreamResponse:
        """Forward ``request`` to the provider and stream its answer back (RFC 9110 section 7.6)."""
        headers = upstream_request_headers(
            request.headers,
            peer=request.remote,
            forwarded=self._forwarded,
            append_forwarded_for=self._append_forwarded_for,
        )
        try:
            async with self._session.request(
                request.method,
                self.upstream_url(request),
                headers=headers,
                data=request.content if request.body_exists else None,
                allow_redirects=False,
                skip_auto_headers=_SKIP_AUTO_HEADERS,
            ) as upstream:
                response = web.StreamResponse(status=upstream.status, reason=upstream.reason)
                response.headers.extend(end_to_end(upstream.headers))
                await response.prepare(request)
                return await self._relay_body(request, upstream, response)
        except TimeoutError as exc:
            self._log_failure(request, 504, exc)
            return _error_response(504, "the authorization server did not answer in time")
        except aiohttp.ClientError as exc:
            self._log_failure(request, 502, exc)
            return _error_response(502, "the authorization server could not be reached")

    async def _relay_body(
        self, request: web.Request, upstream: aiohttp.ClientResponse, response: web.StreamResponse
    ) -> web.StreamResponse:
        """Copy the body as it arrives. Once the status line is out, an upstream failure can only be reported
        by breaking the connection, so the client sees a truncated message rather than a complete one."""
        try:
            async for chunk in upstream.content.iter_chunked(STREAM_CHUNK):
                try:
                    await response.write(chunk)
                except ConnectionResetError:  # the client went away; leaving closes the upstream connection
                    log.debug("proxy.client_gone", method=request.method, path=request.path)
                    return response
        except (aiohttp.ClientError, TimeoutError) as exc:
            self._log_failure(request, upstream.status, exc, after_headers=True)
            if request.transport is not None:
                request.transport.abort()
            return response
        await response.write_eof()
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
