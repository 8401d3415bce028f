"""The user's side of the authorization-code flow, headlessly, shaped for the SDKs' hooks.

An SDK hands its authorization URL to the application (Python: ``redirect_handler``; TypeScript:
``OAuthClientProvider.redirectToAuthorization``) and later expects the redirect's ``code`` and ``state``
(Python: ``callback_handler``; TypeScript: ``transport.finishAuth(code)``). In between, a person signs in and
consents in a browser. Here :class:`HeadlessUser` does that through :mod:`gateway.conformance.headless` (Hydra: the
admin API accepts login and consent; Keycloak: its login and consent forms with the test user), in a fresh
cookie jar per authorization, as a fresh browser would.
"""

from __future__ import annotations

import functools
from collections.abc import Awaitable, Callable
from urllib.parse import parse_qs, urlsplit

import aiohttp
from mcp.client.auth import AuthorizationCodeResult, OAuthFlowError
from mcp.shared.auth import OAuthClientInformationFull, OAuthToken

from devstack.providers import HydraProvider, KeycloakProvider
from gateway.conformance.headless import hydra_accept_login_and_consent, keycloak_form_login

Login = Callable[[aiohttp.ClientSession, str], Awaitable[str]]
"""Takes a browser session and an authorization URL; returns the redirect to the client (``code``)."""


def hydra_login(provider: HydraProvider) -> Login:
    return functools.partial(hydra_accept_login_and_consent, admin_url=provider.admin_url, subject=provider.subject)


def keycloak_login(provider: KeycloakProvider) -> Login:
    return functools.partial(keycloak_form_login, username=provider.username, password=provider.password)


class HeadlessUser:
    """A person with a browser: signs in and consents at each authorization URL handed over."""

    def __init__(self, login: Login) -> None:
        self._login = login
        self.authorization_urls: list[str] = []
        """Every authorization URL the client sent the user to, in order (for assertions)."""

    async def authorize(self, authorization_url: str) -> str:
        """Sign in and consent; return the URL the provider redirects the browser to (never fetched)."""
        self.authorization_urls.append(authorization_url)
        async with aiohttp.ClientSession(
            cookie_jar=aiohttp.CookieJar(unsafe=True), timeout=aiohttp.ClientTimeout(total=60)
        ) as browser:
            return await self._login(browser, authorization_url)


def authorization_response(redirect_url: str) -> AuthorizationCodeResult:
    """RFC 6749 section 4.1.2 (and RFC 9207 ``iss``): the redirect's parameters for the Python SDK.

    An error response (section 4.1.2.1) raises, with the provider's ``error`` and description.
    """
    query = parse_qs(urlsplit(redirect_url).query)
    if "error" in query:
        description = query.get("error_description", [""])[0]
        raise OAuthFlowError(f"authorization failed: {query['error'][0]} {description}".strip())
    if "code" not in query:
        raise OAuthFlowError(f"no code in the redirect to {urlsplit(redirect_url).path}")
    return AuthorizationCodeResult(
        code=query["code"][0],
        state=query.get("state", [None])[0],
        iss=query.get("iss", [None])[0],
    )


class PythonSdkCallbacks:
    """``redirect_handler`` / ``callback_handler`` for ``mcp.client.auth.OAuthClientProvider``."""

    def __init__(self, user: HeadlessUser) -> None:
        self._user = user
        self._pending: str | None = None

    async def redirect_handler(self, authorization_url: str) -> None:
        self._pending = authorization_url

    async def callback_handler(self) -> AuthorizationCodeResult:
        if self._pending is None:
            raise OAuthFlowError("callback_handler called before redirect_handler")
        authorization_url, self._pending = self._pending, None
        return authorization_response(await self._user.authorize(authorization_url))


class InMemoryTokenStorage:
    """``mcp.client.auth.TokenStorage`` kept in memory (what the SDK stored is what the test asserts on)."""

    def __init__(self) -> None:
        self.tokens: OAuthToken | None = None
        self.client_info: OAuthClientInformationFull | None = None

    async def get_tokens(self) -> OAuthToken | None:
        return self.tokens

    async def set_tokens(self, tokens: OAuthToken) -> None:
        self.tokens = tokens

    async def get_client_info(self) -> OAuthClientInformationFull | None:
        return self.client_info

    async def set_client_info(self, client_info: OAuthClientInformationFull) -> None:
        self.client_info = client_info
