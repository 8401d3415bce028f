"""Cross-origin access for browser-based MCP clients (the MCP Inspector), per the Fetch Standard's CORS
protocol (https://fetch.spec.whatwg.org/#http-cors-protocol).

Discovery (RFC 8414) and registration (RFC 7591) are called from browsers; the providers' own endpoints have
no CORS. The gateway never uses credentialed CORS: these endpoints take no cookies, and a bearer token
(initial access token, registration access token) travels in ``Authorization``, which a preflight allows.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field

from aiohttp import hdrs, web

ANY_ORIGIN = "*"

DEFAULT_ALLOWED_HEADERS = ("Authorization", "Content-Type", "If-None-Match", "MCP-Protocol-Version")
"""Request headers a preflight allows. ``MCP-Protocol-Version`` is sent by the MCP TypeScript SDK on
discovery requests; ``Authorization`` carries initial and registration access tokens (RFC 7591, RFC 7592)."""

DEFAULT_EXPOSED_HEADERS = ("ETag", "Retry-After", "WWW-Authenticate", "Location")
"""Response headers scripts may read beyond the CORS-safelisted ones."""


def _normalize_origin(origin: str) -> str:
    """Origins compare as serialized by browsers: lowercase scheme and host, no trailing slash."""
    return origin if origin == ANY_ORIGIN else origin.strip().rstrip("/").lower()


@dataclass(frozen=True)
class CorsPolicy:
    """Which origins may read the gateway's responses, and what a preflight answers.

    ``allowed_origins`` holds serialized origins (``https://app.example``) or ``"*"`` for any origin. With
    ``"*"`` every response carries ``Access-Control-Allow-Origin: *`` (the response does not depend on the
    request's ``Origin``, so it needs no ``Vary``). Otherwise an allowed ``Origin`` is echoed back and every
    response says ``Vary: Origin``, so shared caches keep one copy per origin.
    """

    allowed_origins: tuple[str, ...]
    allowed_headers: tuple[str, ...] = DEFAULT_ALLOWED_HEADERS
    exposed_headers: tuple[str, ...] = DEFAULT_EXPOSED_HEADERS
    max_age: int = 600
    """Seconds a browser may cache a preflight answer (``Access-Control-Max-Age``)."""
    _origins: frozenset[str] = field(init=False, repr=False, compare=False)
    _exposed: str = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        # frozen: derived lookups are set once here
        object.__setattr__(self, "_origins", frozenset(_normalize_origin(o) for o in self.allowed_origins))
        object.__setattr__(self, "_exposed", ", ".join(self.exposed_headers))

    @property
    def any_origin(self) -> bool:
        return ANY_ORIGIN in self._origins

    def allow_origin(self, origin: str | None) -> str | None:
        """The ``Access-Control-Allow-Origin`` value for a request from ``origin``, or ``None`` to refuse."""
        if self.any_origin:
            return ANY_ORIGIN
        if origin is not None and _normalize_origin(origin) in self._origins:
            return origin
        return None

    def headers_for(self, origin: str | None) -> dict[str, str]:
        """CORS headers of an actual (non-preflight) response to a request from ``origin``."""
        headers: dict[str, str] = {}
        if not self.any_origin:
            headers[hdrs.VARY] = hdrs.ORIGIN
        allowed = self.allow_origin(origin)
        if allowed is not None:
            headers[hdrs.ACCESS_CONTROL_ALLOW_ORIGIN] = allowed
            if self._exposed:
                headers[hdrs.ACCESS_CONTROL_EXPOSE_HEADERS] = self._exposed
        return headers

    def response_headers(self, request: web.BaseRequest) -> dict[str, str]:
        """CORS headers of the response to ``request`` (see :meth:`headers_for`)."""
        return self.headers_for(request.headers.get(hdrs.ORIGIN))

    def apply(self, request: web.BaseRequest, response: web.StreamResponse) -> None:
        """Add the CORS headers for ``request`` to a response not yet prepared, merging ``Vary``."""
        for name, value in self.response_headers(request).items():
            if name == hdrs.VARY and hdrs.VARY in response.headers:
                response.headers[hdrs.VARY] = f"{response.headers[hdrs.VARY]}, {value}"
            else:
                response.headers[name] = value

    def preflight(self, request: web.BaseRequest, *, methods: Iterable[str]) -> web.Response:
        """Answer ``OPTIONS`` for a resource allowing ``methods``: 204 with ``Allow`` (RFC 9110 section 9.3.7),
        plus, for a CORS preflight from an allowed origin, ``Access-Control-Allow-Methods``,
        ``Access-Control-Allow-Headers`` and ``Access-Control-Max-Age``. A refused origin gets no
        ``Access-Control-*`` header, which makes the browser fail the actual request."""
        allow = ", ".join(dict.fromkeys([*methods, hdrs.METH_OPTIONS]))
        headers = {hdrs.ALLOW: allow}
        if not self.any_origin:
            headers[hdrs.VARY] = hdrs.ORIGIN
        origin = request.headers.get(hdrs.ORIGIN)
        allowed = self.allow_origin(origin)
        if origin is not None and allowed is not None and hdrs.ACCESS_CONTROL_REQUEST_METHOD in request.headers:
            headers[hdrs.ACCESS_CONTROL_ALLOW_ORIGIN] = allowed
            headers[hdrs.ACCESS_CONTROL_ALLOW_METHODS] = allow
            headers[hdrs.ACCESS_CONTROL_ALLOW_HEADERS] = ", ".join(self.allowed_headers)
            headers[hdrs.ACCESS_CONTROL_MAX_AGE] = str(self.max_age)
        return web.Response(status=204, headers=headers)
