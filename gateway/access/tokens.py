"""Initial access tokens, RFC 7591 section 3, presented as Bearer tokens (RFC 6750 section 2.1).

RFC 7591 section 3: "The initial access token [...] is provisioned by the authorization server [...]. The method
by which the initial access token is obtained by the client or developer is generally out of band."
Two kinds, both verified here without I/O (use counts are the caller's, :mod:`gateway.access.control`):

- static: any string; the gateway keeps only ``sha256:<base64url>`` of it and compares digests in constant time;
- signed: a JWT (RFC 7519) with header ``typ`` :data:`TOKEN_TYPE` (explicit typing, RFC 8725 section 3.11, so
  no other JWT signed with the same key passes for one), signed HS256 with the configured secret or ES256 /
  EdDSA with a configured key, and claims ``aud`` (the issuer it is for), ``exp``, ``jti`` and optionally
  ``max_uses``.

Every refusal is :class:`~gateway.oauth.errors.InvalidToken` (401 ``invalid_token``, RFC 6750 section 3.1);
no description ever contains the token.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import secrets
import time
import warnings
from dataclasses import dataclass
from typing import Any, Literal

from joserfc import jws
from joserfc.errors import SecurityWarning
from joserfc.jwk import Key

from gateway.access.jose import (
    TimeProblem,
    candidates,
    header_and_claims,
    json_object,
    numeric_claim,
    time_claims_problem,
    verify_signature,
)
from gateway.access.settings import STATIC_HASH_SCHEME, IssuerAccess
from gateway.oauth.errors import InvalidToken

TOKEN_TYPE = "dcr-iat+jwt"
"""JOSE header ``typ`` of a signed initial access token."""
MAX_JTI_LENGTH = 255
_TIME_PROBLEMS: dict[TimeProblem, str] = {
    "exp": "the initial access token is not valid: it has no numeric 'exp'",
    "expired": "the initial access token has expired",
    "nbf": "the initial access token is not valid yet ('nbf')",
    "iat": "the initial access token is not valid: issued in the future ('iat')",
}


@dataclass(frozen=True)
class InitialAccessToken:
    """A verified initial access token; only what is needed to count its uses and to log it (never the token)."""

    kind: Literal["static", "signed"]
    jti: str | None = None
    expires_at: float | None = None
    max_uses: int | None = None


def hash_initial_access_token(token: str) -> str:
    """The configured form of a static token: ``sha256:<base64url of SHA-256(token)>``."""
    digest = hashlib.sha256(token.encode("utf-8", "surrogatepass")).digest()
    return f"{STATIC_HASH_SCHEME}:{base64.urlsafe_b64encode(digest).rstrip(b'=').decode('ascii')}"


def new_static_token() -> tuple[str, str]:
    """A new 256-bit static initial access token and the hash to configure: ``(token, hash)``."""
    token = secrets.token_urlsafe(32)
    return token, hash_initial_access_token(token)


def verify_initial_access_token(token: str, access: IssuerAccess, *, audience: str, now: float) -> InitialAccessToken:
    """RFC 7591 section 3: accept ``token`` if it is one of the configured static tokens or a valid signed token
    for ``audience`` (the issuer's URL); raise :class:`InvalidToken` otherwise."""
    digest = hashlib.sha256(token.encode("utf-8", "surrogatepass")).digest()
    matched = False
    for configured in access.static_token_digests:  # every digest compared: the time does not tell which
        matched |= hmac.compare_digest(configured, digest)
    if matched:
        return InitialAccessToken(kind="static")
    if access.token_keys and token.count(".") == 2:
        return verify_signed_token(token, access, audience=audience, now=now)
    raise InvalidToken("the initial access token is not valid")


def verify_signed_token(token: str, access: IssuerAccess, *, audience: str, now: float) -> InitialAccessToken:
    """A signed initial access token: ``typ``, an algorithm one of the configured keys is for, the signature,
    then the claims ``aud``, ``exp``, ``nbf``, ``iat``, ``jti`` and ``max_uses`` (RFC 7519 section 4.1)."""
    parsed = header_and_claims(token)
    if parsed is None:
        raise InvalidToken("the initial access token is not valid: not a compact JWS")
    header, _ = parsed
    if header.get("typ") != TOKEN_TYPE:
        raise InvalidToken(f"the initial access token is not valid: its JOSE header 'typ' must be {TOKEN_TYPE!r}")
    alg, kid = header.get("alg"), header.get("kid")
    keys = candidates(access.token_keys, alg=alg, kid=kid) if isinstance(alg, str) and _optional_str(kid) else []
    if not isinstance(alg, str) or not keys:
        raise InvalidToken("the initial access token is not valid: signed with an algorithm or key not accepted here")
    claims = json_object(verify_signature(token, keys, alg))
    if claims is None:
        raise InvalidToken("the initial access token is not valid: bad signature")

    problem = time_claims_problem(claims, now=now, leeway=access.token_leeway, require_exp=True)
    exp = numeric_claim(claims, "exp")
    if problem is not None or exp is None:
        raise InvalidToken(_TIME_PROBLEMS[problem or "exp"])
    aud = claims.get("aud")
    audiences = [aud] if isinstance(aud, str) else aud if isinstance(aud, list) else []
    if audience not in audiences:
        raise InvalidToken("the initial access token is not valid for this issuer ('aud')")
    jti = claims.get("jti")
    if not isinstance(jti, str) or not 0 < len(jti) <= MAX_JTI_LENGTH:
        raise InvalidToken("the initial access token is not valid: it has no 'jti'")
    max_uses = claims.get("max_uses")
    if max_uses is not None and (not isinstance(max_uses, int) or isinstance(max_uses, bool) or max_uses < 1):
        raise InvalidToken("the initial access token is not valid: 'max_uses' must be a positive integer")
    return InitialAccessToken(kind="signed", jti=jti, expires_at=exp, max_uses=max_uses)


def mint_initial_access_token(
    key: Key,
    alg: str,
    *,
    audience: str,
    expires_in: float,
    max_uses: int | None = None,
    jti: str | None = None,
    kid: str | None = None,
    now: float | None = None,
) -> str:
    """A signed initial access token for ``audience`` (an issuer URL), as ``dcr-gateway initial-access-token
    mint`` prints it; ``key`` is the HS256 secret or the private ES256 / EdDSA key."""
    issued = int(time.time() if now is None else now)
    claims: dict[str, Any] = {
        "aud": audience,
        "iat": issued,
        "exp": issued + int(expires_in),
        "jti": jti or secrets.token_urlsafe(16),
    }
    if max_uses is not None:
        claims["max_uses"] = max_uses
    header: dict[str, Any] = {"alg": alg, "typ": TOKEN_TYPE}
    if kid:
        header["kid"] = kid
    payload = json.dumps(claims, separators=(",", ":"))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", SecurityWarning)  # EdDSA: see gateway.access.jose.verify_signature
        return jws.serialize_compact(header, payload, key, algorithms=[alg])


def _optional_str(value: object) -> bool:
    return value is None or isinstance(value, str)
