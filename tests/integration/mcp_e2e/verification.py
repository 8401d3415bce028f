"""Bearer-token verification at the MCP server (the OAuth resource server), for real.

- Hydra issues opaque access tokens: the resource server asks Hydra's admin API
  (``POST /admin/oauth2/introspect``, RFC 7662 section 2) and checks the answer.
- Keycloak issues JWT access tokens: the resource server verifies the signature with the realm's JWKS,
  found through the gateway's discovery document (``jwks_uri``, RFC 8414 section 2), and checks the claims
  (RFC 7519 section 4.1, RFC 9068 section 4).

Either way the token must be active, unexpired, and issued by the gateway's issuer (the one the protected
resource metadata names, RFC 9728 section 2). Audience binding (RFC 8707 section 2, MCP "token audience
binding"): ``AccessToken.resource`` is set only when the token's ``aud`` names this MCP server, and the MCP server
runs with ``validate_token_resource`` on, so a token for any other audience is refused with 401. The gateway
makes both providers issue that audience for the ``resource`` the SDKs send (Hydra: translated into its own
``audience`` parameter, the token introspected here; Keycloak: an audience mapper, the JWT's ``aud``).

The checks are pure functions of the provider's answer; the two verifier classes only do the I/O.
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from typing import Any

import aiohttp
from joserfc import jwt
from joserfc.errors import JoseError
from joserfc.jwk import KeySet
from mcp.server.auth.provider import AccessToken

_TIMEOUT = aiohttp.ClientTimeout(total=10)


def _audience(value: object) -> list[str]:
    """``aud`` as a list: RFC 7519 section 4.1.3 allows one string or an array of strings."""
    if isinstance(value, str):
        return [value]
    if isinstance(value, list):
        return [item for item in value if isinstance(item, str)]
    return []


def _bound_resource(audience: list[str], resource: str) -> str | None:
    """RFC 8707 section 2: the resource the token is bound to, if its audience names this server."""
    wanted = resource.rstrip("/")
    return resource if any(item.rstrip("/") == wanted for item in audience) else None


def _scopes(value: object) -> list[str]:
    return value.split() if isinstance(value, str) else []


def access_token_from_introspection(
    token: str, answer: Mapping[str, Any], *, issuer: str, resource: str, now: int
) -> AccessToken | None:
    """An RFC 7662 section 2.2 introspection answer as the MCP server's ``AccessToken``, or None to refuse.

    Refused: inactive; not an access token (Hydra introspects refresh tokens too, ``token_use``); issued by
    another issuer; expired (``exp`` required: Hydra always sends it); no ``client_id``.
    """
    if answer.get("active") is not True:
        return None
    if answer.get("token_use", "access_token") != "access_token":
        return None
    if answer.get("iss") != issuer:
        return None
    expires_at = answer.get("exp")
    if not isinstance(expires_at, int) or expires_at <= now:
        return None
    client_id = answer.get("client_id")
    if not isinstance(client_id, str) or not client_id:
        return None
    audience = _audience(answer.get("aud"))
    return AccessToken(
        token=token,
        client_id=client_id,
        scopes=_scopes(answer.get("scope")),
        expires_at=expires_at,
        resource=_bound_resource(audience, resource),
        subject=answer.get("sub") if isinstance(answer.get("sub"), str) else None,
        claims={"iss": issuer, "aud": audience},
    )


def access_token_from_claims(
    token: str, claims: Mapping[str, Any], *, issuer: str, resource: str, now: int
) -> AccessToken | None:
    """The claims of a signature-verified JWT access token as an ``AccessToken``, or None to refuse.

    RFC 9068 section 4: ``iss`` must be exactly the expected issuer, ``exp`` must be in the future, and the
    token must be an access token (Keycloak: ``typ`` ``Bearer``; an ID token is ``ID``). The client is
    RFC 9068's ``client_id``, else OpenID's ``azp`` (what Keycloak sends).
    """
    if claims.get("iss") != issuer:
        return None
    expires_at = claims.get("exp")
    if not isinstance(expires_at, int) or expires_at <= now:
        return None
    if claims.get("typ", "Bearer") != "Bearer":
        return None
    client_id = claims.get("client_id") or claims.get("azp")
    if not isinstance(client_id, str) or not client_id:
        return None
    audience = _audience(claims.get("aud"))
    return AccessToken(
        token=token,
        client_id=client_id,
        scopes=_scopes(claims.get("scope")),
        expires_at=expires_at,
        resource=_bound_resource(audience, resource),
        subject=claims.get("sub") if isinstance(claims.get("sub"), str) else None,
        claims={"iss": issuer, "aud": audience, "preferred_username": claims.get("preferred_username")},
    )


class HydraIntrospection:
    """``TokenVerifier`` asking Hydra's admin API (RFC 7662 introspection) about each token."""

    def __init__(self, *, admin_url: str, issuer: str, resource: str) -> None:
        self.introspection_endpoint = admin_url.rstrip("/") + "/admin/oauth2/introspect"
        self.issuer = issuer
        self.resource = resource

    async def verify_token(self, token: str) -> AccessToken | None:
        async with (
            aiohttp.ClientSession(timeout=_TIMEOUT) as session,
            session.post(self.introspection_endpoint, data={"token": token}) as response,
        ):
            if response.status != 200:
                return None
            answer = await response.json()
        if not isinstance(answer, dict):
            return None
        return access_token_from_introspection(
            token, answer, issuer=self.issuer, resource=self.resource, now=int(time.time())
        )


class KeycloakJwks:
    """``TokenVerifier`` validating Keycloak's JWT access tokens with the realm keys (RFC 7517 JWK set).

    The keys come from the ``jwks_uri`` of the gateway's discovery document for ``issuer``: the resource
    server trusts what the authorization server it names publishes. They are fetched once and again when a
    token names a key that is not in the set (key rotation).
    """

    def __init__(self, *, issuer: str, resource: str, algorithms: tuple[str, ...] = ("RS256", "ES256")) -> None:
        self.issuer = issuer
        self.resource = resource
        self.algorithms = list(algorithms)
        self._keys: KeySet | None = None

    async def _fetch_keys(self) -> KeySet:
        async with aiohttp.ClientSession(timeout=_TIMEOUT) as session:
            async with session.get(f"{self.issuer}/.well-known/openid-configuration") as response:
                response.raise_for_status()
                document = await response.json()
            async with session.get(document["jwks_uri"]) as response:
                response.raise_for_status()
                return KeySet.import_key_set(await response.json())

    async def verify_token(self, token: str) -> AccessToken | None:
        for refresh in (False, True):
            if self._keys is None or refresh:
                self._keys = await self._fetch_keys()
            try:
                decoded = jwt.decode(token, self._keys, algorithms=self.algorithms)
            except (JoseError, ValueError):
                continue
            return access_token_from_claims(
                token, decoded.claims, issuer=self.issuer, resource=self.resource, now=int(time.time())
            )
        return None
