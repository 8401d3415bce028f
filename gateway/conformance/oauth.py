"""What an OAuth client computes on its own side: PKCE, client authentication, authorization URLs, redirects.

Pure functions (no I/O), shared by the conformance runner and the integration tests' flow helpers:

- RFC 7636 section 4: PKCE S256 verifier and challenge;
- RFC 6749 section 2.3.1 (``client_secret_basic`` / ``client_secret_post``), RFC 7523 section 2.2 and OpenID
  Connect Core section 9 (``private_key_jwt``): how a registered client authenticates at the token endpoint;
- RFC 8252 section 7.3: loopback IP redirect URIs, whose port the client may change at request time;
- RFC 9207 section 2: the ``iss`` authorization response parameter.
"""

from __future__ import annotations

import base64
import hashlib
import ipaddress
import secrets
import time
from collections.abc import Mapping
from typing import Any
from urllib.parse import parse_qs, parse_qsl, quote, urlencode, urlsplit, urlunsplit

from joserfc import jwt
from joserfc.jwk import RSAKey

SECRET_METHODS = frozenset({"client_secret_basic", "client_secret_post", "client_secret_jwt"})
"""RFC 7591 section 2: the ``token_endpoint_auth_method`` values that need a ``client_secret``."""
DEFAULT_AUTH_METHOD = "client_secret_basic"
"""RFC 7591 section 2: "If unspecified or omitted, the default is "client_secret_basic"."""
CLIENT_ASSERTION_TYPE = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer"
"""RFC 7523 section 2.2."""
ASSERTION_ALG = "RS256"
"""The client assertion's algorithm: RS256 is the one every provider accepts by default for private_key_jwt."""


class UnsupportedAuthMethod(ValueError):
    """A ``token_endpoint_auth_method`` this client cannot use (RFC 7591 section 2 lists the registered ones)."""


def pkce_pair() -> tuple[str, str]:
    """RFC 7636 sections 4.1 and 4.2: a high-entropy ``code_verifier`` and its ``S256`` ``code_challenge``."""
    verifier = secrets.token_urlsafe(48)
    challenge = base64.urlsafe_b64encode(hashlib.sha256(verifier.encode()).digest()).rstrip(b"=").decode()
    return verifier, challenge


def generate_signing_key() -> RSAKey:
    """A fresh RSA key pair for a ``private_key_jwt`` client (generated per run: nothing to keep secret)."""
    return RSAKey.generate_key(2048, parameters={"use": "sig", "alg": ASSERTION_ALG, "kid": secrets.token_hex(8)})


def public_jwks(key: RSAKey) -> dict[str, Any]:
    """RFC 7517 section 5: the JWK Set to register as ``jwks`` (the public half only)."""
    return {"keys": [key.as_dict(private=False)]}


def private_jwks(key: RSAKey) -> dict[str, Any]:
    """A JWK Set that wrongly carries private key material: what a safe endpoint must refuse."""
    return {"keys": [key.as_dict(private=True)]}


def client_assertion(client_id: str, token_endpoint: str, key: RSAKey, *, now: float | None = None) -> str:
    """RFC 7523 section 3 / OpenID Connect Core section 9: a signed JWT whose ``iss`` and ``sub`` are the
    ``client_id`` and whose ``aud`` is the token endpoint, short-lived and with a unique ``jti``."""
    issued = int(time.time() if now is None else now)
    claims = {
        "iss": client_id,
        "sub": client_id,
        "aud": token_endpoint,
        "jti": secrets.token_urlsafe(16),
        "iat": issued,
        "exp": issued + 120,
    }
    header = {"alg": ASSERTION_ALG, "kid": key.kid} if key.kid else {"alg": ASSERTION_ALG}
    return jwt.encode(header, claims, key)


def client_authentication(
    client: Mapping[str, Any], token_endpoint: str, signing_key: RSAKey | None = None
) -> tuple[dict[str, str], dict[str, str]]:
    """Headers and form fields that authenticate ``client`` (a registration response) at the token endpoint with
    the method the response names (``token_endpoint_auth_method``, RFC 7591 section 3.2.1).

    ``none``: ``client_id`` only (RFC 6749 section 2.3 / RFC 7636 public client); ``client_secret_post``:
    ``client_id`` and ``client_secret`` in the body; ``client_secret_basic``: HTTP Basic with both
    form-urlencoded first (RFC 6749 section 2.3.1); ``private_key_jwt``: a signed client assertion.
    """
    method = client.get("token_endpoint_auth_method") or DEFAULT_AUTH_METHOD
    client_id = str(client["client_id"])
    if method == "none":
        return {}, {"client_id": client_id}
    if method == "client_secret_post":
        return {}, {"client_id": client_id, "client_secret": str(client.get("client_secret", ""))}
    if method == "client_secret_basic":
        raw = f"{quote(client_id, safe='')}:{quote(str(client.get('client_secret', '')), safe='')}"
        return {"Authorization": "Basic " + base64.b64encode(raw.encode()).decode()}, {}
    if method == "private_key_jwt":
        if signing_key is None:
            raise UnsupportedAuthMethod("private_key_jwt needs the client's signing key")
        assertion = client_assertion(client_id, token_endpoint, signing_key)
        return {}, {
            "client_id": client_id,
            "client_assertion_type": CLIENT_ASSERTION_TYPE,
            "client_assertion": assertion,
        }
    raise UnsupportedAuthMethod(f"token_endpoint_auth_method {method!r} is not supported by this client")


def authorization_url(endpoint: str, params: Mapping[str, str | None]) -> str:
    """The authorization request (RFC 6749 section 4.1.1), keeping any query the endpoint already has."""
    parts = urlsplit(endpoint)
    query = parse_qsl(parts.query, keep_blank_values=True)
    query += [(k, v) for k, v in params.items() if v is not None]
    return urlunsplit((parts.scheme, parts.netloc, parts.path, urlencode(query), ""))


def redirect_target(uri: str) -> tuple[str, str, str]:
    """Scheme, authority and path of a URI: what a redirect must agree on with the ``redirect_uri`` it was sent to."""
    parts = urlsplit(uri)
    return parts.scheme.lower(), parts.netloc.lower(), parts.path or "/"


def redirect_params(location: str) -> dict[str, str]:
    """The authorization response parameters of a redirect (RFC 6749 section 4.1.2), first value of each."""
    return {name: values[0] for name, values in parse_qs(urlsplit(location).query, keep_blank_values=True).items()}


def is_loopback_ip_redirect(uri: str) -> bool:
    """RFC 8252 section 7.3: an ``http`` redirect URI whose host is a loopback IP literal (``127.0.0.0/8``,
    ``[::1]``); ``localhost`` is a name, not a literal (section 8.3), and is not included."""
    parts = urlsplit(uri)
    if parts.scheme != "http" or parts.hostname is None:
        return False
    try:
        return ipaddress.ip_address(parts.hostname).is_loopback
    except ValueError:
        return False


def with_port(uri: str, port: int) -> str:
    """``uri`` with its port replaced (or added): a native app's ephemeral listener (RFC 8252 section 7.3)."""
    parts = urlsplit(uri)
    host = parts.hostname or ""
    if ":" in host:
        host = f"[{host}]"
    return urlunsplit((parts.scheme, f"{host}:{port}", parts.path, parts.query, parts.fragment))


def other_port(uri: str, taken: int | None = None) -> int:
    """A port different from the one ``uri`` names (and from ``taken``), in the ephemeral range."""
    registered = urlsplit(uri).port
    while True:
        port = 49152 + secrets.randbelow(16383)
        if port not in {registered, taken}:
            return port
