"""Keycloak's admin REST API over the gateway's own ``aiohttp.ClientSession``, with the service account's token.

One :class:`KeycloakAdminClient` per served realm, on the session the app hands to
:meth:`~adapters.keycloak.adapter.KeycloakAdapter.start`: keep-alive connections from its bounded pool (aiohttp sets
``TCP_NODELAY`` on every connection), no redirect ever followed, the provider timeout on every request. It
replaces python-keycloak, whose httpx/anyio transport cost about 1.4 ms more per admin call than aiohttp and 38%
of the Keycloak gateway's samples under load (``bench/README.md``, issue 12).

The access token is the gateway's client's own, obtained with the client credentials grant (RFC 6749 section 4.4;
``client_secret_post``, section 2.3.1) at the realm's token endpoint: :class:`ServiceAccountToken` keeps it until
shortly before it expires (``expires_in``, RFC 6749 section 5.1), asks again once when the admin API refuses it
(HTTP 401, RFC 6750 section 3.1), and makes one token request however many admin calls need a new token at once.

The method names and meanings are python-keycloak's (``a_create_client``, ``a_raw_get``, ...), as are the error
classes' names and fields (:class:`KeycloakError` ``error_message``/``response_code``), so the adapter's call sites
and its error translation read as before.
"""

from __future__ import annotations

import asyncio
import json
import sys
import time
from collections.abc import Callable, Mapping, MutableMapping
from typing import Any

import aiohttp

TOKEN_REFRESH_MARGIN = 30.0
"""Seconds before a token's expiry at which a new one is asked for in the background (at most a tenth of its
lifetime for short-lived ones); admin calls go on with the current one meanwhile."""
TOKEN_EXPIRY_MARGIN = 5.0
"""Seconds before a token's expiry after which it is not sent any more (at most a twentieth of its lifetime): an
admin call then waits for the new one, so none carries a token that expires on its way."""
DEFAULT_TOKEN_LIFETIME = 60.0
"""Seconds a token is kept when the token response names no ``expires_in`` (RFC 6749 section 5.1: RECOMMENDED)."""

NOT_SENT = (aiohttp.ClientConnectorError, aiohttp.ConnectionTimeoutError)
"""aiohttp failures before a request went out: no connection could be opened (refused, DNS, TLS, connect timeout).
A reused connection that fails later (``ServerDisconnectedError``) may have carried the request."""


# ------------------------------------------------------------------------------------------------------ errors


class KeycloakError(Exception):
    """A Keycloak answer or transport failure (python-keycloak's class of the same name and fields).

    ``error_message`` is Keycloak's ``message`` field, else the raw body (so ``{"error":"Realm does not exist"}``
    stays readable); ``response_code`` is ``None`` for a transport failure or an unreadable answer. ``request_sent``
    is ``False`` when the admin request itself certainly never reached Keycloak (the connection was never
    established, or the token needed for it could not be had)."""

    def __init__(
        self,
        error_message: str | bytes = "",
        response_code: int | None = None,
        response_body: bytes | None = None,
        *,
        request_sent: bool = True,
    ) -> None:
        super().__init__(error_message)
        self.error_message = error_message
        self.response_code = response_code
        self.response_body = response_body
        self.request_sent = request_sent

    def __str__(self) -> str:
        if self.response_code is not None:
            return f"{self.response_code}: {self.error_message!r}"
        return str(self.error_message)


class KeycloakAuthenticationError(KeycloakError):
    """HTTP 401 from the admin API after a fresh token, or the token endpoint refusing the client credentials."""


class KeycloakConnectionError(KeycloakError):
    """No answer: refused, reset, timed out; or the token endpoint unusable."""


class KeycloakOperationError(KeycloakError):
    """An admin call answered with a status it does not expect."""


class KeycloakGetError(KeycloakOperationError):
    pass


class KeycloakPostError(KeycloakOperationError):
    pass


class KeycloakPutError(KeycloakOperationError):
    pass


class KeycloakDeleteError(KeycloakOperationError):
    pass


# ---------------------------------------------------------------------------------------------------- responses


class AdminResponse:
    """One admin API answer, read whole (the shape call sites used from python-keycloak's httpx responses)."""

    __slots__ = ("content", "headers", "status_code")

    def __init__(self, status_code: int, headers: Mapping[str, str], content: bytes) -> None:
        self.status_code = status_code
        self.headers = headers
        self.content = content

    def json(self) -> Any:
        """The body as JSON (``ValueError`` when it is not)."""
        return json.loads(self.content)


def raise_error_from_response(
    response: AdminResponse, error: type[KeycloakOperationError], expected: tuple[int, ...]
) -> None:
    """python-keycloak's rule: an unexpected status raises ``error`` (HTTP 401: :class:`KeycloakAuthenticationError`)
    with Keycloak's ``message`` field, else the body, as ``error_message``."""
    if response.status_code in expected:
        return
    message: str | bytes = response.content
    try:
        payload = response.json()
    except ValueError:
        payload = None
    if isinstance(payload, dict) and isinstance(payload.get("message"), str):
        message = payload["message"]
    kind: type[KeycloakError] = KeycloakAuthenticationError if response.status_code == 401 else error
    raise kind(error_message=message, response_code=response.status_code, response_body=response.content)


def _query(params: Mapping[str, Any]) -> dict[str, str] | None:
    """Query parameters as python-keycloak sent them: ``None`` values left out, booleans as ``true``/``false``."""
    query = {
        name: ("true" if value else "false") if isinstance(value, bool) else str(value)
        for name, value in params.items()
        if value is not None
    }
    return query or None


def _propagate_trace_context(headers: MutableMapping[str, str]) -> None:
    """W3C Trace Context (``traceparent``) for a session without OpenTelemetry's aiohttp instrumentation, when the
    gateway traces (:mod:`gateway.tracing`, the ``tracing`` extra): the current span's context, if there is a valid
    one. An instrumented session (the app's, when tracing) makes a client span and sends its context itself.
    OpenTelemetry is never imported here."""
    propagate = sys.modules.get("opentelemetry.propagate")
    if propagate is not None:
        propagate.inject(headers)


# -------------------------------------------------------------------------------------------------------- token


class ServiceAccountToken:
    """The access token of the gateway's client in one realm (client credentials grant, RFC 6749 section 4.4).

    ``expires_in`` is counted from when it was asked for. :data:`TOKEN_REFRESH_MARGIN` seconds before it runs out, a
    new token is asked for while admin calls go on with the current one; :data:`TOKEN_EXPIRY_MARGIN` seconds before,
    calls wait for the new one. :meth:`renew` after the admin API refused it. Single flight: while a token request
    is under way every caller that needs it waits for that one, and a failure is every waiter's failure (64
    registrations arriving with an expired token make one token request, and one refused request when Keycloak is
    down, not 64)."""

    def __init__(
        self,
        session: aiohttp.ClientSession,
        *,
        token_url: str,
        client_id: str,
        client_secret: str,
        ssl: bool,
        timeout: aiohttp.ClientTimeout,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._session = session
        self._url = token_url
        self._form = {"grant_type": "client_credentials", "client_id": client_id, "client_secret": client_secret}
        self._ssl = ssl
        self._timeout = timeout
        self.clock = clock
        self._value: str | None = None
        self._renew_at = 0.0
        self._expires_at = 0.0
        self._ahead_after = 0.0
        """No request ahead of expiry before this (one second after one failed: Keycloak down is not hammered)."""
        self._pending: asyncio.Task[str] | None = None
        self.requests = 0
        """Token requests made (a structural figure for tests and benchmarks)."""

    async def get(self) -> str:
        """A token good for at least :data:`TOKEN_EXPIRY_MARGIN` more seconds (or a twentieth of its lifetime)."""
        value = self._value
        if value is not None:
            now = self.clock()
            if now < self._renew_at:
                return value
            if now < self._expires_at:
                if now >= self._ahead_after:
                    self._start()  # ahead of expiry: nobody waits for it
                return value
        return await asyncio.shield(self._start())

    async def renew(self, refused: str) -> str:
        """A new token after the admin API refused ``refused`` (HTTP 401): callers that saw the same token refused
        share one token request; a caller whose refused token was replaced meanwhile gets the replacement."""
        if self._value == refused:
            self._value = None
        return await self.get()

    def accept(self, payload: Mapping[str, Any], asked_at: float) -> str | None:
        """Keep the access token of a successful token response (RFC 6749 section 5.1) asked for at ``asked_at``
        (by :attr:`clock`), unless a newer one is kept; the token, or ``None`` when the response holds none. The
        readiness check's own token request (:meth:`~adapters.keycloak.adapter.KeycloakAdapter.check`) hands its
        token over here, so the first registration after it needs no token request."""
        token = payload.get("access_token")
        if not isinstance(token, str) or not token:
            return None
        lifetime = payload.get("expires_in")
        seconds = float(lifetime) if isinstance(lifetime, (int, float)) and lifetime > 0 else DEFAULT_TOKEN_LIFETIME
        renew_at = asked_at + seconds - min(TOKEN_REFRESH_MARGIN, seconds / 10)
        if self._value is None or renew_at >= self._renew_at:
            self._value = token
            self._renew_at = renew_at
            self._expires_at = asked_at + seconds - min(TOKEN_EXPIRY_MARGIN, seconds / 20)
        return token

    def _start(self) -> asyncio.Task[str]:
        """The token request under way, or a new one (single flight)."""
        task = self._pending
        if task is None:
            task = asyncio.get_running_loop().create_task(self._request())
            self._pending = task
            task.add_done_callback(self._settled)
        return task

    def _settled(self, task: asyncio.Task[str]) -> None:
        if self._pending is task:
            self._pending = None
        if not task.cancelled() and task.exception() is not None:  # retrieved: any waiters raise it themselves
            self._ahead_after = self.clock() + 1.0

    async def _request(self) -> str:
        asked_at = self.clock()
        self.requests += 1
        try:
            async with self._session.post(
                self._url, data=self._form, ssl=self._ssl, timeout=self._timeout, allow_redirects=False
            ) as response:
                status = response.status
                body = await response.read()
        except (TimeoutError, aiohttp.ClientError) as exc:
            raise KeycloakConnectionError(f"token request: {type(exc).__name__}", request_sent=False) from exc
        try:
            payload = json.loads(body)
        except ValueError:
            payload = None
        payload = payload if isinstance(payload, dict) else {}
        token = self.accept(payload, asked_at) if status == 200 else None
        if token is not None:
            return token
        if status in (400, 401) and "error" in payload:
            # RFC 6749 section 5.2: invalid_client (401) or unauthorized_client (400, no service account)
            raise KeycloakAuthenticationError(
                error_message=body, response_code=status, response_body=body, request_sent=False
            )
        if status == 404:  # "Realm does not exist": the adapter names the realm
            raise KeycloakPostError(error_message=body, response_code=404, response_body=body, request_sent=False)
        raise KeycloakConnectionError(f"token request: unexpected answer (HTTP {status})", request_sent=False)

    def close(self) -> None:
        if self._pending is not None:
            self._pending.cancel()
            self._pending = None
        self._value = None


# ------------------------------------------------------------------------------------------------------- client


class KeycloakAdminClient:
    """``/admin/realms/{realm}/...`` for one realm with its :class:`ServiceAccountToken`.

    Every request carries the cached token; an HTTP 401 renews it (:meth:`ServiceAccountToken.renew`) and sends the
    request once more (a 401 is answered before Keycloak acts, so a second create cannot duplicate one); a second
    401 is the answer. A redirect is never followed and is an error (the admin API does not redirect)."""

    def __init__(
        self,
        session: aiohttp.ClientSession,
        *,
        server_url: str,
        realm: str,
        token: ServiceAccountToken,
        ssl: bool,
        timeout: aiohttp.ClientTimeout,
    ) -> None:
        self._session = session
        self.base_url = server_url.rstrip("/") + "/"
        """Where admin paths (``admin/realms/...``) are resolved, read on every request."""
        self.realm_name = realm
        self.token = token
        self._ssl = ssl
        self._timeout = timeout
        self._propagate = not session.trace_configs
        self._headers: tuple[str, dict[str, str]] = ("", {})

    @property
    def connection(self) -> KeycloakAdminClient:
        """Itself: call sites written for python-keycloak (``admin.connection.a_raw_get(...)``) keep working."""
        return self

    def _headers_for(self, token: str) -> dict[str, str]:
        cached_token, headers = self._headers
        if cached_token != token:
            headers = {
                "Authorization": f"Bearer {token}",
                "Content-Type": "application/json",
                "Accept": "application/json",
            }
            self._headers = (token, headers)
        if self._propagate and "opentelemetry.propagate" in sys.modules:
            headers = dict(headers)
            _propagate_trace_context(headers)
        return headers

    async def request(
        self, method: str, path: str, *, data: str | bytes | None = None, params: Mapping[str, Any] | None = None
    ) -> AdminResponse:
        """``method`` on ``{base_url}{path}`` with the token (renewed once on a 401); any status is returned except
        a redirect, which raises :class:`KeycloakOperationError`. Transport failures raise
        :class:`KeycloakConnectionError` (``request_sent`` false when no connection was established)."""
        body = data.encode() if isinstance(data, str) else data
        query = _query(params) if params else None
        token = await self.token.get()
        response = await self._send(method, path, token, body, query)
        if response.status_code == 401:
            token = await self.token.renew(token)
            response = await self._send(method, path, token, body, query)
        if 300 <= response.status_code < 400:
            raise KeycloakOperationError(
                error_message=b"unexpected redirect", response_code=response.status_code, response_body=b""
            )
        return response

    async def _send(
        self, method: str, path: str, token: str, body: bytes | None, query: dict[str, str] | None
    ) -> AdminResponse:
        try:
            async with self._session.request(
                method,
                self.base_url + path,
                params=query,
                data=body,
                headers=self._headers_for(token),
                ssl=self._ssl,
                timeout=self._timeout,
                allow_redirects=False,
            ) as response:
                content = await response.read()
                return AdminResponse(response.status, response.headers, content)
        except NOT_SENT as exc:
            raise KeycloakConnectionError(type(exc).__name__, request_sent=False) from exc
        except (TimeoutError, aiohttp.ClientError) as exc:
            raise KeycloakConnectionError(type(exc).__name__) from exc

    # ------------------------------------------------------------- python-keycloak's raw calls (same signatures)

    async def a_raw_get(self, path: str, **params: Any) -> AdminResponse:
        return await self.request("GET", path, params=params)

    async def a_raw_post(self, path: str, data: str | bytes, **params: Any) -> AdminResponse:
        return await self.request("POST", path, data=data, params=params)

    async def a_raw_put(self, path: str, data: str | bytes, **params: Any) -> AdminResponse:
        return await self.request("PUT", path, data=data, params=params)

    async def a_raw_delete(self, path: str, data: str | bytes | None = None, **params: Any) -> AdminResponse:
        return await self.request("DELETE", path, data=data, params=params)

    # ------------------------------------------------------------------------ the admin calls the adapter makes

    def _clients(self) -> str:
        return f"admin/realms/{self.realm_name}/clients"

    async def a_create_client(self, payload: Mapping[str, Any]) -> str:
        """``POST /admin/realms/{realm}/clients`` (201); the new client's internal id, from ``Location``."""
        response = await self.a_raw_post(self._clients(), data=json.dumps(payload))
        raise_error_from_response(response, KeycloakPostError, (201,))
        return response.headers.get("Location", "").rsplit("/", 1)[-1]

    async def a_update_client(self, client_id: str, payload: Mapping[str, Any]) -> dict[str, Any]:
        """``PUT /admin/realms/{realm}/clients/{id}`` (204); ``client_id`` is the internal id."""
        response = await self.a_raw_put(f"{self._clients()}/{client_id}", data=json.dumps(payload))
        raise_error_from_response(response, KeycloakPutError, (204,))
        return {}

    async def a_delete_client(self, client_id: str) -> dict[str, Any]:
        """``DELETE /admin/realms/{realm}/clients/{id}`` (204); ``client_id`` is the internal id."""
        response = await self.a_raw_delete(f"{self._clients()}/{client_id}")
        raise_error_from_response(response, KeycloakDeleteError, (204,))
        return {}

    async def _get_list(self, path: str) -> list[Any]:
        response = await self.a_raw_get(path)
        raise_error_from_response(response, KeycloakGetError, (200,))
        try:
            payload = response.json()
        except ValueError:
            payload = None
        if not isinstance(payload, list):
            raise KeycloakGetError(error_message=f"{path}: not a JSON array", response_code=None)
        return payload

    async def a_get_client_scopes(self) -> list[Any]:
        """``GET /admin/realms/{realm}/client-scopes``."""
        return await self._get_list(f"admin/realms/{self.realm_name}/client-scopes")

    async def a_get_default_default_client_scopes(self) -> list[Any]:
        """``GET /admin/realms/{realm}/default-default-client-scopes``."""
        return await self._get_list(f"admin/realms/{self.realm_name}/default-default-client-scopes")

    async def a_get_default_optional_client_scopes(self) -> list[Any]:
        """``GET /admin/realms/{realm}/default-optional-client-scopes``."""
        return await self._get_list(f"admin/realms/{self.realm_name}/default-optional-client-scopes")

    async def aclose(self) -> None:
        """The session is the app's (it closes it); only the token's pending request is cancelled."""
        self.token.close()
