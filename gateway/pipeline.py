"""The one HTTP pipeline of the registration endpoint (RFC 7591 section 3) and the client configuration endpoint
(RFC 7592 section 2): every answer of both, errors included, comes through :class:`RegistrationPipeline`::

    rate limits (429 / 503) -> the method's step -> OAuthError as JSON (RFC 7591 section 3.2.2, RFC 6750
    section 3.1) -> Cache-Control: no-store (RFC 7591 section 3.2.1: responses carry credentials) -> CORS

plus the ``OPTIONS`` preflight and 405 with ``Allow`` (RFC 9110 section 15.5.6) for every other method. The app's
middleware and catch-all route answer 404 with :func:`not_found` and other errors with :func:`error_response`,
so every JSON error the gateway sends has one shape.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import structlog
from aiohttp import hdrs, web

from gateway.cors import CorsPolicy
from gateway.limits.guard import Limits
from gateway.oauth.errors import InvalidClientMetadata, OAuthError, RequestTimeout, RequestTooLarge, ServerError
from gateway.observability import audit
from gateway.observability.audit import AuditLog, AuditRecord
from gateway.observability.metrics import GatewayMetrics

log = structlog.get_logger(__name__)

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]

NO_STORE: dict[str, str] = {hdrs.CACHE_CONTROL: "no-store", hdrs.PRAGMA: "no-cache"}
"""RFC 7591 section 3.2.1 and RFC 7592 section 3 responses carry credentials: never cached."""


def error_response(
    error: OAuthError, cors: CorsPolicy | None = None, request: web.BaseRequest | None = None
) -> web.Response:
    """``{"error", "error_description"}`` with the error's status and headers, never cached; CORS headers when
    ``cors`` is given (browser clients must be able to read why they were refused)."""
    headers: dict[str, str] = {**NO_STORE, **error.headers}
    response = web.json_response(error.body(), status=error.status, headers=headers)
    if error.close:
        response.force_close()
    if cors is not None and request is not None:
        cors.apply(request, response)
    return response


def not_found(description: str = "no resource at this path") -> web.Response:
    """404 as JSON; the path is never repeated: an error body reflects nothing the client sent."""
    return web.json_response({"error": "not_found", "error_description": description}, status=404)


class MethodNotAllowed(OAuthError):
    """RFC 9110 section 15.5.6: 405 with ``Allow``."""

    status = 405

    def __init__(self, method: str, allowed: Sequence[str]) -> None:
        usable = [m for m in allowed if m != hdrs.METH_OPTIONS]
        words = usable[0] if len(usable) == 1 else f"{', '.join(usable[:-1])} or {usable[-1]}"
        super().__init__(f"{method} is not allowed; use {words}")
        self.headers = {hdrs.ALLOW: ", ".join(allowed)}


@dataclass(frozen=True)
class Step:
    """One method of an endpoint: its handler, and the rate-limit budget it counts against
    (:meth:`gateway.limits.guard.Limits.admit` ``operation``)."""

    handler: Handler
    rate_limit: str


OPERATIONS = {
    hdrs.METH_POST: "register",
    hdrs.METH_GET: "read",
    hdrs.METH_PUT: "update",
    hdrs.METH_DELETE: "delete",
}
"""RFC 7591 section 3 registration; RFC 7592 sections 2.1, 2.2, 2.3: what a method of these endpoints does."""


@dataclass(frozen=True)
class RegistrationPipeline:
    """The pipeline of one issuer's registration endpoints (built once, in ``create_app``): every answer of a
    step is counted (``metrics``) and audited (``audit``) under the issuer's URL (``issuer``)."""

    issuer_key: str
    cors: CorsPolicy
    limits: Limits
    issuer: str = ""
    metrics: GatewayMetrics | None = None
    audit: AuditLog | None = None

    def routes(self, path: str, steps: Mapping[str, Step]) -> list[web.RouteDef]:
        """The routes of ``path``: each method of ``steps``, an ``OPTIONS`` preflight, 405 for the rest."""
        allowed = (*steps, hdrs.METH_OPTIONS)

        async def preflight(request: web.Request) -> web.StreamResponse:
            return self.cors.preflight(request, methods=tuple(steps))

        async def method_not_allowed(request: web.Request) -> web.StreamResponse:
            raise MethodNotAllowed(request.method, allowed)

        return [
            *(web.route(method, path, self.wrap(step.handler, step.rate_limit)) for method, step in steps.items()),
            web.route(hdrs.METH_OPTIONS, path, preflight),
            web.route(hdrs.METH_ANY, path, self.wrap(method_not_allowed)),
        ]

    def wrap(self, handler: Handler, rate_limit: str | None = None) -> Handler:
        """Rate limits before any work, errors as JSON, ``no-store`` and CORS on every answer; the answer of a
        step (a method with a rate limit) counted and audited."""

        async def entry(request: web.Request) -> web.StreamResponse:
            operation = OPERATIONS.get(request.method) if rate_limit is not None else None
            if operation is None:
                return await self._answer(request, handler, rate_limit)
            record = self._audit_record(request, operation)
            token = audit.begin(record)
            status, error = 500, None
            try:
                response = await self._answer(request, handler, rate_limit)
                status = response.status
                error = response.get(_ERROR_CODE)
                return response
            except web.HTTPException as exc:
                status = exc.status
                raise
            except asyncio.CancelledError:
                status = CLIENT_CLOSED_REQUEST
                raise
            finally:
                audit.end(token)
                if self.metrics is not None:
                    self.metrics.registration_request(
                        issuer=self.issuer, operation=operation, status=status, error=error
                    )
                if self.audit is not None:
                    self.audit.emit_record(
                        record, status=status, error=error or ("server_error" if status >= 500 else None)
                    )

        return entry

    def _audit_record(self, request: web.Request, operation: str) -> AuditRecord:
        """The request's audit facts known before the handler runs; the handler adds the rest (:func:`audit.note`)."""
        return AuditRecord(
            operation=operation,
            issuer=self.issuer,
            source=self.limits.rate.source_of(request),
            user_agent=request.headers.get(hdrs.USER_AGENT),
            request_id=structlog.contextvars.get_contextvars().get("request_id"),
            # RFC 7591 section 3: a registration's Bearer token is an initial access token; RFC 7592 section 2:
            # the configuration endpoint's is the registration access token
            initial_access_token=operation == "register" and hdrs.AUTHORIZATION in request.headers,
            registration_access_token=operation != "register",
        )

    async def _answer(self, request: web.Request, handler: Handler, rate_limit: str | None) -> web.StreamResponse:
        try:
            if rate_limit is not None:
                await self.limits.admit(request, issuer=self.issuer_key, operation=rate_limit)
            response = await handler(request)
        except OAuthError as exc:
            response = error_response(exc)
            response[_ERROR_CODE] = exc.error
        except web.HTTPException:
            raise
        except Exception:
            log.exception("http.unhandled_error", path=request.path)
            response = error_response(ServerError("an internal error occurred"))
            response[_ERROR_CODE] = ServerError.error
        for name, value in NO_STORE.items():
            response.headers.setdefault(name, value)
        self.cors.apply(request, response)
        return response


CLIENT_CLOSED_REQUEST = 499
"""The status recorded (nothing is sent) for a request whose handler was cancelled: the client went away (nginx's
convention)."""

_ERROR_CODE = web.ResponseKey("dcr_gateway_error_code", str)
"""Where an error answer keeps its ``error`` code (a response is a mapping for such state) for metrics and audit."""


async def read_json_object(request: web.Request, max_bytes: int, deadline_seconds: float) -> Mapping[str, Any]:
    """RFC 7591 section 3.1: the request is a JSON document (``application/json``) holding an object, read
    whole within ``max_bytes`` (413) and ``deadline_seconds`` (408: a body that never arrives holds nothing for
    long). Error descriptions never repeat what the client sent."""
    content_type = request.headers.get(hdrs.CONTENT_TYPE, "")
    media_type = content_type.split(";", 1)[0].strip().lower()
    if media_type and media_type != "application/json" and not media_type.endswith("+json"):
        raise InvalidClientMetadata("unsupported Content-Type; send the client metadata as application/json")
    if request.content_length is not None and request.content_length > max_bytes:
        raise RequestTooLarge(f"request body exceeds {max_bytes} bytes")
    content = request.content
    body: bytes | bytearray
    if content.is_eof() and not content.exception():
        # the whole body already arrived (the usual small JSON document, in the segment of its headers):
        # nothing to wait for, so no deadline to arm
        body = content.read_nowait(max_bytes + 1)
    else:
        body = bytearray()
        try:
            async with asyncio.timeout(deadline_seconds):
                while len(body) <= max_bytes:  # read() returns what has arrived: a body in segments needs a loop
                    chunk = await content.read(max_bytes + 1 - len(body))
                    if not chunk:
                        break
                    body += chunk
        except TimeoutError:
            raise RequestTimeout(f"the request body did not arrive within {deadline_seconds:g} s") from None
    if len(body) > max_bytes:
        raise RequestTooLarge(f"request body exceeds {max_bytes} bytes")
    if not body.strip():
        raise InvalidClientMetadata("request body is empty; send the client metadata as a JSON object")
    try:
        document = json.loads(body, parse_constant=_reject_constant)
    except (ValueError, RecursionError):
        raise InvalidClientMetadata("request body is not valid JSON") from None
    if not isinstance(document, dict):
        kind = "null" if document is None else type(document).__name__
        raise InvalidClientMetadata(f"request body must be a JSON object, not {kind}")
    return document


def _reject_constant(name: str) -> Any:
    """``NaN``, ``Infinity`` and ``-Infinity`` are not JSON (RFC 8259 section 6)."""
    raise ValueError(f"{name} is not valid JSON")
