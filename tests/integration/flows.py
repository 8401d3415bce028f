"""What a real OAuth client does after registering: authorization code + PKCE S256, token, refresh.

Shared by the integration tests of both providers; every call goes through the gateway's front door.
"""

from __future__ import annotations

import secrets
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlencode, urlsplit

import aiohttp

from gateway.conformance.oauth import client_authentication, pkce_pair

__all__ = ["pkce_pair"]  # re-exported: the tests import it from here

Login = Callable[[aiohttp.ClientSession, str], Awaitable[str]]


@dataclass(frozen=True)
class Target:
    """A gateway in front of one real provider, as a client sees it."""

    provider: str
    url: str
    issuer: str
    registration_endpoint: str
    login: Login
    """Headless login: takes an authorization URL, returns the redirect to the client (with ``code``)."""
    flow_scope: str
    """A scope string that yields a refresh token on this provider."""
    log_path: Path | None = None
    """The gateway's log file, when it runs as a subprocess."""


LOOPBACK_CALLBACK = "http://127.0.0.1:3000/callback"
WEB_CALLBACK = "https://app.example.com/oauth/callback"
REFRESHABLE = ["authorization_code", "refresh_token"]


def native_client(name: str, **extra: Any) -> dict[str, Any]:
    """A public native client on a loopback redirect, as MCP desktop and CLI clients register."""
    return {
        "client_name": name,
        "redirect_uris": [LOOPBACK_CALLBACK],
        "token_endpoint_auth_method": "none",
        "grant_types": REFRESHABLE,
        "response_types": ["code"],
        "application_type": "native",
        **extra,
    }


def confidential_client(name: str, method: str, **extra: Any) -> dict[str, Any]:
    """A confidential web client on an https redirect, authenticating with ``method``."""
    return {
        "client_name": name,
        "redirect_uris": [WEB_CALLBACK],
        "token_endpoint_auth_method": method,
        "grant_types": REFRESHABLE,
        **extra,
    }


async def discover(http: aiohttp.ClientSession, target: Target) -> dict[str, Any]:
    async with http.get(f"{target.issuer}/.well-known/openid-configuration") as response:
        assert response.status == 200
        document: dict[str, Any] = await response.json()
        return document


async def register(http: aiohttp.ClientSession, target: Target, body: dict[str, Any]) -> tuple[int, dict[str, Any]]:
    async with http.post(target.registration_endpoint, json=body) as response:
        payload: dict[str, Any] = await response.json()
        return response.status, payload


def client_auth(client: dict[str, Any]) -> tuple[dict[str, str], dict[str, str]]:
    """Headers and form fields authenticating ``client`` with its registered method (RFC 6749 2.3.1); the
    conformance suite's implementation (secret-based methods and ``none`` here)."""
    if client["token_endpoint_auth_method"] not in ("none", "client_secret_post", "client_secret_basic"):
        raise AssertionError(f"no test support for {client['token_endpoint_auth_method']}")
    return client_authentication(client, token_endpoint="")


async def token_request(
    http: aiohttp.ClientSession, token_endpoint: str, client: dict[str, Any], form: dict[str, str]
) -> tuple[int, dict[str, Any]]:
    headers, auth_fields = client_auth(client)
    async with http.post(token_endpoint, data={**form, **auth_fields}, headers=headers) as response:
        payload: dict[str, Any] = await response.json(content_type=None)
        return response.status, payload


@dataclass(frozen=True)
class FlowResult:
    tokens: dict[str, Any]
    refreshed: dict[str, Any]


async def authorization_code_flow(
    http: aiohttp.ClientSession,
    target: Target,
    client: dict[str, Any],
    *,
    redirect_uri: str,
    scope: str | None = None,
    extra: dict[str, str] | None = None,
    token_endpoint: str | None = None,
) -> FlowResult:
    """Authorize with PKCE S256 at ``redirect_uri``, redeem the code, then refresh the token. ``extra``: more
    authorization request parameters (e.g. Hydra's ``audience``); ``token_endpoint``: another than the discovered
    one (the provider's own, to bypass the gateway)."""
    metadata = await discover(http, target)
    verifier, challenge = pkce_pair()
    state = secrets.token_urlsafe(16)
    query = {
        "response_type": "code",
        "client_id": client["client_id"],
        "redirect_uri": redirect_uri,
        "scope": scope or target.flow_scope,
        "state": state,
        "code_challenge": challenge,
        "code_challenge_method": "S256",
        **(extra or {}),
    }
    final = await target.login(http, f"{metadata['authorization_endpoint']}?{urlencode(query)}")
    assert final.startswith(redirect_uri.split("?", maxsplit=1)[0]), f"redirected to {final}, expected {redirect_uri}"
    params = parse_qs(urlsplit(final).query)
    assert "error" not in params, params
    assert params["state"] == [state]
    status, tokens = await token_request(
        http,
        token_endpoint or metadata["token_endpoint"],
        client,
        {
            "grant_type": "authorization_code",
            "code": params["code"][0],
            "redirect_uri": redirect_uri,
            "code_verifier": verifier,
        },
    )
    assert status == 200, tokens
    assert tokens["access_token"]
    assert tokens.get("refresh_token"), f"no refresh token: {sorted(tokens)}"
    status, refreshed = await token_request(
        http,
        token_endpoint or metadata["token_endpoint"],
        client,
        {"grant_type": "refresh_token", "refresh_token": tokens["refresh_token"]},
    )
    assert status == 200, refreshed
    assert refreshed["access_token"]
    return FlowResult(tokens=tokens, refreshed=refreshed)


async def keycloak_sign_in(http: aiohttp.ClientSession, provider: Any, client_id: str) -> None:
    """The provider's test user signs in with the public client ``client_id`` (authorization code with PKCE, RFC
    7636, at ``provider``: a :class:`devstack.providers.KeycloakProvider`) and the code is redeemed: Keycloak
    then counts a user session for that client."""
    from gateway.conformance.headless import keycloak_form_login

    verifier, challenge = pkce_pair()
    query = {
        "response_type": "code",
        "client_id": client_id,
        "redirect_uri": LOOPBACK_CALLBACK,
        "scope": "openid",
        "code_challenge": challenge,
        "code_challenge_method": "S256",
    }
    final = await keycloak_form_login(
        http,
        f"{provider.issuer}/protocol/openid-connect/auth?{urlencode(query)}",
        username=provider.username,
        password=provider.password,
    )
    code = parse_qs(urlsplit(final).query)["code"][0]
    form = {
        "grant_type": "authorization_code",
        "code": code,
        "redirect_uri": LOOPBACK_CALLBACK,
        "client_id": client_id,
        "code_verifier": verifier,
    }
    async with http.post(provider.token_endpoint, data=form) as response:
        assert response.status == 200, await response.text()
