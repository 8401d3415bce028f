"""Registration access tokens, RFC 7592 section 3 ("registration_access_token") and section 1.1.

A token is 256 bits from :func:`secrets.token_urlsafe`; only its hash is stored, in the ``gateway_data`` of the
one client it was issued for (key :data:`TOKEN_HASH_KEY`), so a token is bound to that client_id by where it
is kept. SHA-256 without salt or stretching is enough for a 256-bit random value (no dictionary to attack);
the stored value names its scheme (``sha256:<base64url>``) so the scheme can change later.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import secrets

TOKEN_HASH_KEY = "registration_access_token_hash"
"""Key of the token's hash in a managed client's ``gateway_data``."""

SCHEME = "sha256"
TOKEN_BYTES = 32


def _digest(value: str) -> str:
    # surrogatepass: a header value aiohttp could not decode as UTF-8, or a JSON string holding a lone surrogate
    # (``"\ud800"``), still hashes, and simply never matches
    raw = hashlib.sha256(value.encode("utf-8", "surrogatepass")).digest()
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode("ascii")


def hash_secret(value: str) -> str:
    """The stored form of a 256-bit random secret (a registration access token, a client secret):
    ``sha256:<base64url of SHA-256(value)>``."""
    return f"{SCHEME}:{_digest(value)}"


def mint_registration_access_token() -> tuple[str, str]:
    """A new registration access token (RFC 7592 section 3) and the hash to store: ``(token, stored)``.

    The token goes to the client once, in the registration (or rotating update) response; only ``stored``
    goes to the provider.
    """
    token = secrets.token_urlsafe(TOKEN_BYTES)
    return token, hash_secret(token)


def verify_registration_access_token(presented: str, stored: object) -> bool:
    """Whether ``presented`` is the token whose hash is ``stored``, compared in constant time
    (:func:`hmac.compare_digest`). A missing or unknown-scheme ``stored`` value never matches, after the same
    hashing work, so the answer takes as long either way."""
    candidate = hash_secret(presented)
    if not isinstance(stored, str) or not stored.startswith(f"{SCHEME}:"):
        hmac.compare_digest(candidate, _UNMATCHABLE)
        return False
    return hmac.compare_digest(candidate.encode("ascii"), stored.encode("utf-8", "surrogatepass"))


_UNMATCHABLE = hash_secret(secrets.token_urlsafe(TOKEN_BYTES))
"""The hash of a token nobody holds: compared against when there is nothing to compare with."""
