"""A software statement's assertions hold for the client's whole life (RFC 7591 sections 2.3 and 3.1.1, RFC 7592
section 2.2), and a JWT is a software statement for this server only if its audience allows it (RFC 7519
section 4.1.3)."""

from __future__ import annotations

import json
from typing import Any

import pytest
from gateway_factory import ISSUER, PUBLIC, REGISTER, Client, Gateways
from joserfc import jws
from joserfc.jwk import ECKey

from adapters.memory.adapter import MemoryAdapter

VENDOR = "https://vendor.example"
KEY = ECKey.generate_key("P-256")
VOUCHED = {"software_id": "vendor-app", "redirect_uris": ["https://vendor.example/cb"], "client_name": "Vendor App"}


def statement(claims: dict[str, Any]) -> str:
    return jws.serialize_compact({"alg": "ES256", "kid": "k1"}, json.dumps(claims), KEY, algorithms=["ES256"])


PROVIDER_DOCUMENT = {
    "issuer": ISSUER,
    "authorization_endpoint": f"{ISSUER}/auth",
    "token_endpoint": f"{ISSUER}/token",
    "response_types_supported": ["code"],
    "grant_types_supported": ["authorization_code", "refresh_token", "client_credentials"],
}


@pytest.fixture
async def gateway(gateways: Gateways) -> tuple[Client, MemoryAdapter]:
    """A gateway that trusts the vendor's software statements (RFC 7591 section 2.3)."""
    public_key = {**KEY.as_dict(private=False), "kid": "k1", "use": "sig"}
    return await gateways.start(
        PROVIDER_DOCUMENT,
        access={"software_statements": {"trusted_issuers": [{"issuer": VENDOR, "jwks": {"keys": [public_key]}}]}},
        limits={"enabled": False},
    )


async def test_an_update_cannot_replace_what_the_statement_vouched_for(
    gateway: tuple[Client, MemoryAdapter],
) -> None:
    client, adapter = gateway
    response = await client.post(
        REGISTER,
        json={
            "software_statement": statement({"iss": VENDOR, **VOUCHED}),
            "redirect_uris": ["https://evil.example/cb"],
        },
    )
    registered = await response.json()
    assert response.status == 201, registered
    assert registered["redirect_uris"] == VOUCHED["redirect_uris"]  # the statement wins at registration

    replacement = {
        "client_id": registered["client_id"],
        "redirect_uris": ["https://evil.example/cb"],
        "client_name": "Totally Vendor App",
        "software_id": "other",
        "contacts": ["ops@vendor.example"],
    }
    response = await client.put(
        registered["registration_client_uri"][len(PUBLIC) :],
        json=replacement,
        headers={"Authorization": f"Bearer {registered['registration_access_token']}"},
    )
    updated = await response.json()
    assert response.status == 200, updated
    for name, value in VOUCHED.items():  # ... and on every update
        assert updated[name] == value, name
    assert updated["contacts"] == ["ops@vendor.example"]  # what it did not vouch for is the client's to change
    stored = adapter.clients["default"][registered["client_id"]]
    assert stored.metadata.redirect_uris == VOUCHED["redirect_uris"]
    assert stored.metadata.client_name == "Vendor App"


@pytest.mark.parametrize(
    ("aud", "status"),
    [
        ("some-relying-party", 400),  # an ID token of the same signer, for another audience
        ([VENDOR, "https://api.vendor.example"], 400),
        (ISSUER, 201),
        (["https://other.example", ISSUER], 201),
    ],
)
async def test_a_statement_naming_an_audience_must_name_this_server(
    gateway: tuple[Client, MemoryAdapter], aud: str | list[str], status: int
) -> None:
    client, adapter = gateway
    response = await client.post(
        REGISTER, json={"software_statement": statement({"iss": VENDOR, "aud": aud, "sub": "alice", **VOUCHED})}
    )
    body = await response.json()
    assert response.status == status, body
    if status == 400:
        assert body["error"] == "invalid_software_statement"
        assert "'aud' does not name this authorization server" in body["error_description"]
        assert not adapter.clients["default"]
