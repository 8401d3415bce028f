"""What the gateway keeps about a client in the provider's own record for RFC 7592 (pure functions).

The provider stores it as opaque ``gateway_data`` (Hydra: ``metadata.dcr_gateway.gateway``; Keycloak: the
``dcr.gateway.data`` attribute). Other parts of the gateway keep their own keys there; updates here merge.
"""

from __future__ import annotations

import hmac
from collections.abc import Mapping
from typing import Any
from urllib.parse import quote

from adapters.base import ManagedClient
from gateway.oauth.metadata import SECRET_AUTH_METHODS
from gateway.registration.tokens import TOKEN_HASH_KEY, hash_secret

AUTHENTICATED_KEY = "authenticated"
"""Whether the registration was authenticated (initial access token or software statement): an update is
validated with the same privilege level (RFC 7592 section 2.2 runs the registration's rules again)."""

CLIENT_SECRET_HASH_KEY = "client_secret_hash"
"""Hash of the issued ``client_secret``, so an update can check a presented secret (RFC 7592 section 2.2)
on providers that never return secrets (Hydra)."""


SOFTWARE_STATEMENT_KEY = "software_statement"
"""The client metadata a verified software statement asserted at registration (RFC 7591 section 2.3). An update
re-applies it over the request, as registration did (section 3.1.1: the statement's values take precedence), so
RFC 7592 cannot replace what the statement vouched for."""


def management_data(
    *,
    token_hash: str,
    authenticated: bool,
    client_secret: str | None,
    software_statement: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """The RFC 7592 entries of a new client's ``gateway_data``."""
    data: dict[str, Any] = {TOKEN_HASH_KEY: token_hash, AUTHENTICATED_KEY: authenticated}
    if client_secret is not None:
        data[CLIENT_SECRET_HASH_KEY] = hash_secret(client_secret)
    if software_statement:
        data[SOFTWARE_STATEMENT_KEY] = dict(software_statement)
    return data


def software_statement_metadata(client: ManagedClient) -> dict[str, Any] | None:
    """What the client's software statement asserted, if it registered with one."""
    stored = client.gateway_data.get(SOFTWARE_STATEMENT_KEY)
    return dict(stored) if isinstance(stored, dict) else None


def updated_data(
    current: Mapping[str, Any], *, token_hash: str | None, client_secret: str | None, secret_dropped: bool
) -> dict[str, Any]:
    """``current`` gateway data after an update: other keys kept, a rotated token's hash and a new or dropped
    secret's hash reflected."""
    data = dict(current)
    if token_hash is not None:
        data[TOKEN_HASH_KEY] = token_hash
    if client_secret is not None:
        data[CLIENT_SECRET_HASH_KEY] = hash_secret(client_secret)
    elif secret_dropped:
        data.pop(CLIENT_SECRET_HASH_KEY, None)
    return data


def was_authenticated(client: ManagedClient) -> bool:
    """The privilege level the client registered with (anonymous unless recorded otherwise)."""
    return client.gateway_data.get(AUTHENTICATED_KEY) is True


def uses_secret(client: ManagedClient) -> bool:
    return client.metadata.token_endpoint_auth_method in SECRET_AUTH_METHODS


def current_client_secret(client: ManagedClient) -> str | None:
    """The secret to answer on read (RFC 7592 section 2.1: "if applicable"): the provider's, when it returns
    it (Keycloak does; Hydra keeps only a hash and returns none) and the auth method uses one."""
    return client.client_secret if uses_secret(client) else None


def client_secret_matches(presented: str, client: ManagedClient) -> bool:
    """RFC 7592 section 2.2: a ``client_secret`` in an update "MUST match the currently issued client secret".

    Checked against the provider's secret when it returns one, else against the hash kept at registration; a
    secret that cannot be checked (a public client, or a client registered without the hash) does not match.
    """
    if not uses_secret(client):
        return False
    presented_hash = hash_secret(presented)
    if client.client_secret is not None:
        return hmac.compare_digest(presented_hash, hash_secret(client.client_secret))
    stored = client.gateway_data.get(CLIENT_SECRET_HASH_KEY)
    if not isinstance(stored, str):
        return False
    return hmac.compare_digest(presented_hash.encode("ascii"), stored.encode("utf-8", "surrogatepass"))


def registration_client_uri(registration_endpoint: str, client_id: str) -> str:
    """RFC 7592 section 3: ``registration_client_uri``, the registration endpoint plus the client_id."""
    return f"{registration_endpoint}/{quote(client_id, safe='')}"
