"""One pipeline for the registration endpoint (RFC 7591) and the client configuration endpoint (RFC 7592):
the same CORS headers, ``Cache-Control: no-store``, JSON error shape and 405 with ``Allow`` on every answer of
both, an unexpected failure included (a browser client must be able to read why it was refused)."""

from __future__ import annotations

from typing import Any

from gateway_factory import ISSUER, PUBLIC, REGISTER, Gateways

from adapters.memory.adapter import MemoryAdapter

ORIGIN = "https://inspector.example"
NATIVE = {"redirect_uris": ["http://127.0.0.1:3000/callback"], "token_endpoint_auth_method": "none"}


def provider_document() -> dict[str, Any]:
    return {
        "issuer": ISSUER,
        "authorization_endpoint": f"{ISSUER}/protocol/openid-connect/auth",
        "token_endpoint": f"{ISSUER}/protocol/openid-connect/token",
        "response_types_supported": ["code"],
        "token_endpoint_auth_methods_supported": ["none"],
        "code_challenge_methods_supported": ["S256"],
    }


class ReadFails(MemoryAdapter):
    async def read_client(self, issuer_key: str, client_id: str) -> Any:
        raise RuntimeError("a bug in an adapter")


def assert_piped(response: Any) -> None:
    assert response.headers["Access-Control-Allow-Origin"] == ORIGIN
    assert response.headers["Cache-Control"] == "no-store"
    assert response.headers["Vary"] == "Origin"


async def test_every_answer_of_both_endpoints_gets_cors_and_no_store(gateways: Gateways) -> None:
    client, _ = await gateways.start(
        provider_document(), adapter_class=ReadFails, cors_allowed_origins=[ORIGIN], limits={"enabled": False}
    )
    origin = {"Origin": ORIGIN}
    registered = await (await client.post(REGISTER, json=NATIVE, headers=origin)).json()
    path = registered["registration_client_uri"][len(PUBLIC) :]
    bearer = {**origin, "Authorization": f"Bearer {registered['registration_access_token']}"}

    for method, target, allow in (("PATCH", REGISTER, "POST, OPTIONS"), ("PATCH", path, "GET, PUT, DELETE, OPTIONS")):
        response = await client.request(method, target, headers=origin)
        assert response.status == 405
        assert response.headers["Allow"] == allow
        assert (await response.json())["error"] == "invalid_request"
        assert_piped(response)

    response = await client.get(path, headers=bearer)  # the adapter fails unexpectedly
    assert response.status == 500
    assert await response.json() == {"error": "server_error", "error_description": "an internal error occurred"}
    assert_piped(response)

    response = await client.post(REGISTER, data=b"[]", headers={**origin, "Content-Type": "application/json"})
    assert response.status == 400
    assert_piped(response)
