"""The discovery endpoints: every well-known location of every served issuer (RFC 8414 section 3).

RFC 8414 section 3.2: "A successful response MUST use the 200 OK HTTP status code and return a JSON object
using the "application/json" content type". The document comes from memory
(:class:`gateway.rfc8414.cache.DiscoveryCache`), with a strong ETag for conditional requests
(RFC 9110 section 13.1.2) and CORS headers for browser clients.

A discovery location never answers 5xx: the MCP TypeScript SDK aborts discovery on a 5xx from any probed
well-known URL, whereas a 4xx makes it try the next one. Without a document the answer is 404 with
``Retry-After``.
"""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable, Iterable, Mapping

import structlog
from aiohttp import hdrs, web
from multidict import CIMultiDict

from gateway.cors import CorsPolicy
from gateway.rfc8414.cache import CachedDocument, DiscoveryCache
from gateway.rfc8414.wellknown import DocumentKind, discovery_locations, is_discovery_path

__all__ = ["discovery_routes", "etag_matches", "is_discovery_path", "not_found_response"]

log = structlog.get_logger(__name__)

JSON = "application/json"
DEFAULT_MAX_AGE = 60
"""``Cache-Control: max-age`` of a served document: short, so a provider change reaches clients quickly."""
DISCOVERY_METHODS = (hdrs.METH_GET, hdrs.METH_HEAD)

_UNAVAILABLE = json.dumps(
    {
        "error": "temporarily_unavailable",
        "error_description": "the authorization server metadata could not be fetched yet; retry later",
    },
    separators=(",", ":"),
).encode()
_NOT_FOUND = json.dumps(
    {"error": "not_found", "error_description": "no authorization server metadata is served at this path"},
    separators=(",", ":"),
).encode()

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


def etag_matches(if_none_match: str, etag: str) -> bool:
    """RFC 9110 section 13.1.2: ``If-None-Match`` is ``*`` or a list of entity tags compared weakly."""
    if if_none_match.strip() == "*":
        return True
    weak_etag = etag.removeprefix("W/")
    return any(tag.strip().removeprefix("W/") == weak_etag for tag in if_none_match.split(","))


def not_found_response(request: web.BaseRequest, *, cors: CorsPolicy) -> web.Response:
    """404 JSON for a discovery path of an issuer the gateway does not serve (see :func:`is_discovery_path`).

    A 4xx, never a 5xx, so probing clients move on to their next candidate URL."""
    return web.Response(status=404, body=_NOT_FOUND, content_type=JSON, headers=cors.response_headers(request))


class ServedHeaders:
    """The headers of one served document's answers, built once per document (a new document, a new ETag: new
    headers) instead of once per request: ``Content-Type``, the strong ``ETag`` (RFC 9110 section 8.8.3),
    ``Cache-Control`` and the CORS headers of a request without an allowed ``Origin`` (with ``*`` allowed: of
    every request). A request from an origin the policy echoes gets its CORS headers computed as before."""

    __slots__ = ("_cache_control", "_cors", "_document", "_not_modified", "_ok")

    def __init__(self, cors: CorsPolicy, cache_control: str) -> None:
        self._cors = cors
        self._cache_control = cache_control
        self._document: CachedDocument | None = None
        self._ok: CIMultiDict[str] = CIMultiDict()
        self._not_modified: CIMultiDict[str] = CIMultiDict()

    def _build(self, document: CachedDocument, cors_headers: Mapping[str, str]) -> tuple[CIMultiDict[str], ...]:
        not_modified = CIMultiDict(cors_headers)
        not_modified[hdrs.ETAG] = document.etag
        not_modified[hdrs.CACHE_CONTROL] = self._cache_control
        ok = not_modified.copy()
        ok[hdrs.CONTENT_TYPE] = JSON
        return ok, not_modified

    def of(self, document: CachedDocument, origin: str | None) -> tuple[CIMultiDict[str], CIMultiDict[str]]:
        """The headers of a 200 and of a 304 for ``document`` answering a request from ``origin``."""
        if origin is not None and not self._cors.any_origin and self._cors.allow_origin(origin) is not None:
            ok, not_modified = self._build(document, self._cors.headers_for(origin))
            return ok, not_modified
        if document is not self._document:
            self._ok, self._not_modified = self._build(document, self._cors.headers_for(None))
            self._document = document
        return self._ok, self._not_modified


def _document_handler(
    caches: Mapping[str, DiscoveryCache], issuer_path: str, kind: DocumentKind, cors: CorsPolicy, max_age: int
) -> Handler:
    served = ServedHeaders(cors, f"public, max-age={max_age}")

    async def serve_metadata(request: web.Request) -> web.StreamResponse:
        """GET/HEAD: the cached document (RFC 8414 section 3.2), 304 on a matching ``If-None-Match``."""
        cache = caches.get(issuer_path)
        document = None if cache is None else cache.current() or await cache.get()
        if document is None:
            headers = cors.response_headers(request)
            retry_after = 1 if cache is None else cache.retry_after
            log.warning(
                "discovery.unavailable",
                path=request.path,
                kind=kind.value,
                issuer_path=issuer_path,
                retry_after=retry_after,
            )
            headers[hdrs.RETRY_AFTER] = str(retry_after)
            headers[hdrs.CACHE_CONTROL] = "no-store"
            return web.Response(status=404, body=_UNAVAILABLE, content_type=JSON, headers=headers)
        request_headers = request.headers
        ok, not_modified = served.of(document, request_headers.get(hdrs.ORIGIN))
        if_none_match = request_headers.get(hdrs.IF_NONE_MATCH)
        if if_none_match is not None and etag_matches(if_none_match, document.etag):
            return web.Response(status=304, headers=not_modified)
        return web.Response(body=document.body, headers=ok)

    return serve_metadata


def _preflight_handler(cors: CorsPolicy) -> Handler:
    async def preflight(request: web.Request) -> web.StreamResponse:
        """OPTIONS: CORS preflight for the discovery methods."""
        return cors.preflight(request, methods=DISCOVERY_METHODS)

    return preflight


def discovery_routes(
    # ``| dict``: lets mypy accept ``discovery_routes(app[SOME_APP_KEY], ...)``; with ``Mapping`` alone it infers
    # ``AppKey[Mapping[...]]`` from the parameter and rejects the invariant ``AppKey[dict[...]]``.
    caches: Mapping[str, DiscoveryCache] | dict[str, DiscoveryCache],
    *,
    cors: CorsPolicy,
    max_age: int = DEFAULT_MAX_AGE,
    issuer_paths: Iterable[str] | None = None,
) -> list[web.AbstractRouteDef]:
    """Routes for GET, HEAD and OPTIONS at every location of :func:`discovery_locations` of each issuer.

    ``caches`` maps an issuer's path (``""`` for Hydra, ``"/realms/mcp"`` for a Keycloak realm) to its cache
    and is read on every request, so it may be a dict filled later, when the app starts (its caches need the
    app's client session): pass the issuer paths to route as ``issuer_paths`` then. Until an issuer's cache is
    in ``caches`` its locations answer 404 with ``Retry-After``. Raises ``ValueError`` if two issuers would
    share a location or a path would be read as an aiohttp route pattern.
    """
    routes: list[web.AbstractRouteDef] = []
    owners: dict[str, str] = {}
    preflight = _preflight_handler(cors)
    for issuer_path in list(caches) if issuer_paths is None else list(issuer_paths):
        for path, kind in discovery_locations(issuer_path).items():
            if "{" in path or "}" in path:
                raise ValueError(f"issuer path {issuer_path!r} contains '{{' or '}}'")
            if path in owners:
                raise ValueError(f"issuers {owners[path]!r} and {issuer_path!r} share location {path!r}")
            owners[path] = issuer_path
            handler = _document_handler(caches, issuer_path, kind, cors, max_age)
            routes.append(web.get(path, handler, allow_head=True))
            routes.append(web.options(path, preflight))
    return routes
