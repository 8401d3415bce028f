"""The RFC 7592 client configuration endpoint through the real app, with the in-memory reference adapter.

Fast checks of the HTTP semantics (status codes, headers, error shapes, what the adapter ends up holding).
What Keycloak and Hydra really do is proved in tests/integration/test_rfc7592.py.
"""

from __future__ import annotations

import io
import json
from collections.abc import Awaitable, Callable
from typing import Any

import pytest
from aiohttp.test_utils import TestClient
from gateway_factory import ISSUER, PUBLIC, REGISTER, Gateways

import gateway.rfc7591.handler as registration_module
from adapters.base import ManagedClient, NewClient, ProviderRejected, ProviderUnavailable
from adapters.memory.adapter import MemoryAdapter
from gateway.oauth.metadata import ClientMetadata
from gateway.registration.records import AUTHENTICATED_KEY, CLIENT_SECRET_HASH_KEY
from gateway.registration.service import Caller, validate_registration
from gateway.registration.tokens import TOKEN_HASH_KEY, hash_secret

LOOPBACK = "http://127.0.0.1:3000/callback"
NATIVE = {"redirect_uris": [LOOPBACK], "token_endpoint_auth_method": "none", "client_name": "CLI"}
CONFIDENTIAL = {
    "redirect_uris": ["https://app.example/cb"],
    "token_endpoint_auth_method": "client_secret_basic",
    "grant_types": ["authorization_code", "refresh_token"],
    "client_name": "Web app",
    "contacts": ["ops@app.example"],
}

Client = TestClient[Any, Any]
Factory = Callable[..., Awaitable[tuple[Client, MemoryAdapter]]]


def provider_document() -> dict[str, Any]:
    return {
        "issuer": ISSUER,
        "authorization_endpoint": f"{ISSUER}/protocol/openid-connect/auth",
        "token_endpoint": f"{ISSUER}/protocol/openid-connect/token",
        "jwks_uri": f"{ISSUER}/protocol/openid-connect/certs",
        "response_types_supported": ["code"],
        "grant_types_supported": ["authorization_code", "refresh_token", "client_credentials", "implicit"],
        "token_endpoint_auth_methods_supported": ["client_secret_basic", "client_secret_post", "private_key_jwt"],
        "code_challenge_methods_supported": ["S256"],
    }


@pytest.fixture
def make_gateway(gateways: Gateways) -> Factory:
    async def factory(
        adapter_class: type[MemoryAdapter] = MemoryAdapter, **overrides: Any
    ) -> tuple[Client, MemoryAdapter]:
        return await gateways.start(provider_document(), adapter_class=adapter_class, **overrides)

    return factory


async def register(client: Client, body: dict[str, Any]) -> dict[str, Any]:
    response = await client.post(REGISTER, json=body)
    assert response.status == 201, await response.text()
    registered: dict[str, Any] = await response.json()
    return registered


def path_of(registered: dict[str, Any]) -> str:
    uri: str = registered["registration_client_uri"]
    assert uri.startswith(PUBLIC)
    return uri[len(PUBLIC) :]


def bearer(registered: dict[str, Any] | str) -> dict[str, str]:
    token = registered if isinstance(registered, str) else registered["registration_access_token"]
    return {"Authorization": f"Bearer {token}"}


def update_body(registered: dict[str, Any], **changes: Any) -> dict[str, Any]:
    """What a client sends back: its metadata, without the server-provisioned fields (RFC 7592 section 2.2)."""
    body = {
        k: v
        for k, v in registered.items()
        if k not in ("registration_access_token", "registration_client_uri", "client_secret_expires_at")
        and k not in ("client_id_issued_at",)
    }
    body.update(changes)
    return {k: v for k, v in body.items() if v is not None}


async def assert_invalid_token(response: Any) -> None:
    assert response.status == 401
    assert response.headers["WWW-Authenticate"] == 'Bearer error="invalid_token"'
    assert response.headers["Cache-Control"] == "no-store"
    assert await response.json() == {
        "error": "invalid_token",
        "error_description": "the registration access token is not valid for this client",
    }


# ---------------------------------------------------------------------------------- registration


async def test_registration_response_carries_the_configuration_endpoint_and_its_token(make_gateway: Factory) -> None:
    client, adapter = await make_gateway()
    registered = await register(client, CONFIDENTIAL)
    client_id = registered["client_id"]
    assert registered["registration_client_uri"] == f"{ISSUER}/register/{client_id}"
    token = registered["registration_access_token"]
    assert len(token) == 43
    stored = adapter.clients["default"][client_id].gateway_data
    assert stored[TOKEN_HASH_KEY] == hash_secret(token)
    assert stored[AUTHENTICATED_KEY] is False
    assert stored[CLIENT_SECRET_HASH_KEY] == hash_secret(registered["client_secret"])
    assert token not in json.dumps(stored)


async def test_each_registration_gets_its_own_token(make_gateway: Factory) -> None:
    client, _ = await make_gateway()
    first, second = await register(client, NATIVE), await register(client, NATIVE)
    assert first["registration_access_token"] != second["registration_access_token"]


# ------------------------------------------------------------------------------------------- read


async def test_read_returns_the_registration_with_no_store(make_gateway: Factory) -> None:
    client, _ = await make_gateway()
    registered = await register(client, CONFIDENTIAL)
    response = await client.get(path_of(registered), headers=bearer(registered))
    assert response.status == 200
    assert response.headers["Cache-Control"] == "no-store"
    assert response.headers["Pragma"] == "no-cache"
    assert await response.json() == registered  # the memory provider returns secrets, like Keycloak


async def test_read_without_a_token_gets_a_bare_bearer_challenge(make_gateway: Factory) -> None:
    client, _ = await make_gateway()
    registered = await register(client, NATIVE)
    response = await client.get(path_of(registered))
    assert response.status == 401
    assert response.headers["WWW-Authenticate"] == "Bearer"
    assert (await response.json())["error"] == "invalid_token"


@pytest.mark.parametrize(
    "authorization",
    ["Bearer", "Basic dXNlcjpwYXNz", "Bearer a b", "Bearer tok\u00e9n", "Bearer " + "x" * 5000, "Bearer ==="],
    ids=["no-token", "basic", "two-tokens", "latin1", "huge", "only-padding"],
)
async def test_malformed_authorization_is_401_never_500(make_gateway: Factory, authorization: str) -> None:
    client, _ = await make_gateway()
    registered = await register(client, NATIVE)
    response = await client.get(path_of(registered), headers={"Authorization": authorization})
    assert response.status == 401
    assert response.headers["WWW-Authenticate"] == 'Bearer error="invalid_token"'
    assert (await response.json())["error"] == "invalid_token"


async def test_token_in_the_query_is_not_accepted(make_gateway: Factory) -> None:
    """Bearer in the Authorization header only (RFC 6750 section 2.1; the query form leaks into logs)."""
    client, _ = await make_gateway()
    registered = await register(client, NATIVE)
    response = await client.get(path_of(registered), params={"access_token": registered["registration_access_token"]})
    assert response.status == 401


@pytest.mark.parametrize("method", ["GET", "PUT", "DELETE"])
async def test_a_bad_token_is_401_and_changes_nothing(make_gateway: Factory, method: str) -> None:
    client, adapter = await make_gateway()
    registered = await register(client, CONFIDENTIAL)
    before = adapter.clients["default"][registered["client_id"]]
    wrong = registered["registration_access_token"][:-1] + (
        "A" if registered["registration_access_token"][-1] != "A" else "B"
    )
    response = await client.request(method, path_of(registered), headers=bearer(wrong), json=update_body(registered))
    await assert_invalid_token(response)
    assert adapter.clients["default"][registered["client_id"]] == before


@pytest.mark.parametrize("method", ["GET", "PUT", "DELETE"])
async def test_another_clients_token_is_401(make_gateway: Factory, method: str) -> None:
    client, adapter = await make_gateway()
    victim = await register(client, CONFIDENTIAL)
    attacker = await register(client, NATIVE)
    before = adapter.clients["default"][victim["client_id"]]
    response = await client.request(
        method, path_of(victim), headers=bearer(attacker), json=update_body(victim, client_name="pwned")
    )
    await assert_invalid_token(response)
    assert adapter.clients["default"][victim["client_id"]] == before
    assert (await client.get(path_of(attacker), headers=bearer(attacker))).status == 200  # its own still works


@pytest.mark.parametrize("client_id", ["does-not-exist", "legacy-app", "x" * 300], ids=["unknown", "unmanaged", "long"])
async def test_unknown_and_unmanaged_clients_answer_exactly_like_a_bad_token(
    make_gateway: Factory, client_id: str
) -> None:
    client, adapter = await make_gateway()
    adapter.add_unmanaged("default", "legacy-app")
    registered = await register(client, NATIVE)
    for method in ("GET", "PUT", "DELETE"):
        response = await client.request(
            method, f"{REGISTER}/{client_id}", headers=bearer(registered), json={"client_id": client_id}
        )
        await assert_invalid_token(response)
    assert "legacy-app" in adapter.unmanaged["default"]


# ----------------------------------------------------------------------------------------- update


async def test_update_replaces_the_redirect_and_the_token_keeps_working(make_gateway: Factory) -> None:
    client, adapter = await make_gateway()
    registered = await register(client, CONFIDENTIAL)
    body = update_body(registered, redirect_uris=["https://app.example/new-cb"])
    response = await client.put(path_of(registered), headers=bearer(registered), json=body)
    assert response.status == 200, await response.text()
    assert response.headers["Cache-Control"] == "no-store"
    updated = await response.json()
    assert updated["redirect_uris"] == ["https://app.example/new-cb"]
    assert updated["registration_access_token"] == registered["registration_access_token"]  # no rotation
    assert updated["registration_client_uri"] == registered["registration_client_uri"]
    assert updated["client_secret"] == registered["client_secret"]
    assert updated["client_id_issued_at"] == registered["client_id_issued_at"]
    assert adapter.clients["default"][registered["client_id"]].metadata.redirect_uris == ["https://app.example/new-cb"]
    again = await client.get(path_of(registered), headers=bearer(registered))
    assert again.status == 200
    assert (await again.json())["redirect_uris"] == ["https://app.example/new-cb"]


async def test_update_rotates_the_token_when_configured(make_gateway: Factory) -> None:
    client, _ = await make_gateway(rotate_registration_access_token=True)
    registered = await register(client, NATIVE)
    response = await client.put(path_of(registered), headers=bearer(registered), json=update_body(registered))
    assert response.status == 200
    rotated = (await response.json())["registration_access_token"]
    assert rotated != registered["registration_access_token"]
    await assert_invalid_token(await client.get(path_of(registered), headers=bearer(registered)))
    assert (await client.get(path_of(registered), headers=bearer(rotated))).status == 200


async def test_omitted_fields_are_deleted_and_the_secret_is_kept(make_gateway: Factory) -> None:
    client, adapter = await make_gateway()
    registered = await register(client, CONFIDENTIAL)
    body = {"client_id": registered["client_id"], "redirect_uris": ["https://app.example/cb"]}
    response = await client.put(path_of(registered), headers=bearer(registered), json=body)
    assert response.status == 200, await response.text()
    updated = await response.json()
    assert "client_name" not in updated
    assert "contacts" not in updated
    # RFC 7591 defaults apply again to what was omitted
    assert updated["token_endpoint_auth_method"] == "client_secret_basic"
    assert updated["grant_types"] == ["authorization_code"]
    assert updated["client_secret"] == registered["client_secret"]
    stored = adapter.clients["default"][registered["client_id"]]
    assert stored.client_secret == registered["client_secret"]
    assert stored.metadata.client_name is None
    assert stored.gateway_data[TOKEN_HASH_KEY] == hash_secret(registered["registration_access_token"])


@pytest.mark.parametrize(
    "field", ["registration_access_token", "registration_client_uri", "client_secret_expires_at", "client_id_issued_at"]
)
async def test_update_refuses_server_provisioned_fields(make_gateway: Factory, field: str) -> None:
    client, adapter = await make_gateway()
    registered = await register(client, CONFIDENTIAL)
    before = adapter.clients["default"][registered["client_id"]]
    body = {**update_body(registered, client_name="changed"), field: registered[field]}
    response = await client.put(path_of(registered), headers=bearer(registered), json=body)
    assert response.status == 400
    error = await response.json()
    assert error["error"] == "invalid_client_metadata"
    assert error["error_description"].startswith(f"{field}: ")
    assert adapter.clients["default"][registered["client_id"]] == before


@pytest.mark.parametrize(
    ("changes", "description"),
    [
        ({"client_id": None}, "client_id: required"),
        ({"client_id": "another-client"}, "client_id: must equal"),
        ({"client_secret": "a-secret-of-my-choosing"}, "client_secret: does not match"),
    ],
    ids=["client_id-missing", "client_id-mismatch", "client_secret-mismatch"],
)
async def test_update_checks_the_client_id_and_secret(
    make_gateway: Factory, changes: dict[str, Any], description: str
) -> None:
    client, adapter = await make_gateway()
    registered = await register(client, CONFIDENTIAL)
    before = adapter.clients["default"][registered["client_id"]]
    body = update_body(registered, client_name="changed", **changes)
    response = await client.put(path_of(registered), headers=bearer(registered), json=body)
    assert response.status == 400
    error = await response.json()
    assert error["error"] == "invalid_client_metadata"
    assert error["error_description"].startswith(description)
    assert "a-secret-of-my-choosing" not in error["error_description"]
    assert adapter.clients["default"][registered["client_id"]] == before


async def test_update_with_the_current_secret_is_accepted_and_cannot_change_it(make_gateway: Factory) -> None:
    client, adapter = await make_gateway()
    registered = await register(client, CONFIDENTIAL)
    body = update_body(registered, client_name="renamed")
    assert body["client_secret"] == registered["client_secret"]
    response = await client.put(path_of(registered), headers=bearer(registered), json=body)
    assert response.status == 200
    assert (await response.json())["client_name"] == "renamed"
    assert adapter.clients["default"][registered["client_id"]].client_secret == registered["client_secret"]


async def test_a_public_client_switching_to_a_secret_method_is_issued_a_secret(make_gateway: Factory) -> None:
    client, adapter = await make_gateway()
    registered = await register(client, NATIVE)
    assert "client_secret" not in registered
    body = update_body(registered, token_endpoint_auth_method="client_secret_post")
    response = await client.put(path_of(registered), headers=bearer(registered), json=body)
    assert response.status == 200, await response.text()
    updated = await response.json()
    assert len(updated["client_secret"]) == 43
    assert updated["client_secret_expires_at"] == 0
    stored = adapter.clients["default"][registered["client_id"]]
    assert stored.client_secret == updated["client_secret"]
    assert stored.gateway_data[CLIENT_SECRET_HASH_KEY] == hash_secret(updated["client_secret"])


async def test_a_confidential_client_switching_to_none_loses_its_secret(make_gateway: Factory) -> None:
    client, adapter = await make_gateway()
    registered = await register(client, {**CONFIDENTIAL, "redirect_uris": [LOOPBACK]})
    body = update_body(registered, token_endpoint_auth_method="none", client_secret=None)
    response = await client.put(path_of(registered), headers=bearer(registered), json=body)
    assert response.status == 200, await response.text()
    updated = await response.json()
    assert "client_secret" not in updated
    assert "client_secret_expires_at" not in updated
    stored = adapter.clients["default"][registered["client_id"]]
    assert stored.client_secret is None
    assert CLIENT_SECRET_HASH_KEY not in stored.gateway_data
    assert TOKEN_HASH_KEY in stored.gateway_data


@pytest.mark.parametrize(
    ("changes", "error", "description"),
    [
        ({"grant_types": ["authorization_code", "implicit"]}, "invalid_client_metadata", "grant_types"),
        ({"redirect_uris": ["https://app.example/cb#frag"]}, "invalid_redirect_uri", "redirect_uris[0]"),
        ({"redirect_uris": ["javascript:alert(1)"]}, "invalid_redirect_uri", "redirect_uris[0]"),
        ({"grant_types": ["client_credentials"]}, "invalid_client_metadata", "grant_types"),
        ({"response_types": ["token"]}, "invalid_client_metadata", "response_types"),
        ({"redirect_uris": []}, "invalid_redirect_uri", "redirect_uris"),
        ({"jwks_uri": "https://keys.example/jwks"}, "invalid_client_metadata", "jwks_uri"),
    ],
    ids=["implicit", "fragment", "javascript", "client_credentials", "token-response", "no-redirects", "jwks_uri"],
)
async def test_every_registration_policy_holds_on_update(
    make_gateway: Factory, changes: dict[str, Any], error: str, description: str
) -> None:
    client, adapter = await make_gateway()
    registered = await register(client, CONFIDENTIAL)
    before = adapter.clients["default"][registered["client_id"]]
    response = await client.put(
        path_of(registered), headers=bearer(registered), json=update_body(registered, **changes)
    )
    assert response.status == 400
    answer = await response.json()
    assert answer["error"] == error
    assert answer["error_description"].startswith(description)
    assert adapter.clients["default"][registered["client_id"]] == before


async def test_update_is_validated_with_the_privilege_level_of_the_registration(
    make_gateway: Factory, monkeypatch: pytest.MonkeyPatch
) -> None:
    client, adapter = await make_gateway()
    registered = await register(client, NATIVE)
    callers: list[Caller] = []
    original = validate_registration

    async def recording(document: Any, **kwargs: Any) -> ClientMetadata:
        callers.append(kwargs["caller"])
        return await original(document, **kwargs)

    monkeypatch.setattr("gateway.rfc7592.handler.validate_registration", recording)
    assert (
        await client.put(path_of(registered), headers=bearer(registered), json=update_body(registered))
    ).status == 200
    stored = adapter.clients["default"][registered["client_id"]]
    adapter.clients["default"][registered["client_id"]] = stored.__class__(
        **{**stored.__dict__, "gateway_data": {**stored.gateway_data, AUTHENTICATED_KEY: True}}
    )
    assert (
        await client.put(path_of(registered), headers=bearer(registered), json=update_body(registered))
    ).status == 200
    assert [caller.authenticated for caller in callers] == [False, True]


@pytest.mark.parametrize(
    ("body", "status"),
    [(b"not json", 400), (b"null", 400), (b"[]", 400), (b"{" + b" " * 70000 + b"}", 413)],
    ids=["not-json", "null", "array", "too-large"],
)
async def test_update_bodies_are_checked_like_registrations(make_gateway: Factory, body: bytes, status: int) -> None:
    client, _ = await make_gateway()
    registered = await register(client, NATIVE)
    headers = {**bearer(registered), "Content-Type": "application/json"}
    response = await client.put(path_of(registered), headers=headers, data=body)
    assert response.status == status
    assert (await response.json())["error"] == "invalid_client_metadata"


async def test_the_token_is_checked_before_the_body_is_read(make_gateway: Factory) -> None:
    client, _ = await make_gateway()
    registered = await register(client, NATIVE)
    response = await client.put(path_of(registered), headers={"Content-Type": "application/json"}, data=b"not json")
    assert response.status == 401


# ----------------------------------------------------------------------------------------- delete


async def test_delete_gives_204_then_the_client_and_its_token_are_gone(make_gateway: Factory) -> None:
    client, adapter = await make_gateway()
    registered = await register(client, CONFIDENTIAL)
    response = await client.delete(path_of(registered), headers=bearer(registered))
    assert response.status == 204
    assert response.headers["Cache-Control"] == "no-store"
    assert await response.read() == b""
    assert registered["client_id"] not in adapter.clients["default"]
    await assert_invalid_token(await client.get(path_of(registered), headers=bearer(registered)))
    await assert_invalid_token(await client.delete(path_of(registered), headers=bearer(registered)))
    await assert_invalid_token(
        await client.put(path_of(registered), headers=bearer(registered), json=update_body(registered))
    )


# ------------------------------------------------------------------------------------- HTTP details


async def test_preflight_and_cors_on_answers_and_errors(make_gateway: Factory) -> None:
    client, _ = await make_gateway(cors_allowed_origins=["https://inspector.example"])
    registered = await register(client, NATIVE)
    origin = {"Origin": "https://inspector.example"}
    preflight = await client.options(
        path_of(registered),
        headers={**origin, "Access-Control-Request-Method": "PUT", "Access-Control-Request-Headers": "authorization"},
    )
    assert preflight.status == 204
    assert preflight.headers["Allow"] == "GET, PUT, DELETE, OPTIONS"
    assert preflight.headers["Access-Control-Allow-Origin"] == "https://inspector.example"
    assert "Authorization" in preflight.headers["Access-Control-Allow-Headers"]
    ok = await client.get(path_of(registered), headers={**origin, **bearer(registered)})
    assert ok.headers["Access-Control-Allow-Origin"] == "https://inspector.example"
    refused = await client.get(path_of(registered), headers=origin)
    assert refused.status == 401
    assert refused.headers["Access-Control-Allow-Origin"] == "https://inspector.example"
    assert "WWW-Authenticate" in refused.headers["Access-Control-Expose-Headers"]


@pytest.mark.parametrize("method", ["POST", "PATCH"])
async def test_other_methods_are_405(make_gateway: Factory, method: str) -> None:
    client, _ = await make_gateway()
    registered = await register(client, NATIVE)
    response = await client.request(method, path_of(registered), headers=bearer(registered), json={})
    assert response.status == 405
    assert response.headers["Allow"] == "GET, PUT, DELETE, OPTIONS"


@pytest.mark.parametrize("method", ["GET", "PUT", "DELETE"])
async def test_provider_down_gives_503_with_retry_after(make_gateway: Factory, method: str) -> None:
    client, adapter = await make_gateway()
    registered = await register(client, NATIVE)
    adapter.unavailable = True
    response = await client.request(
        method, path_of(registered), headers=bearer(registered), json=update_body(registered)
    )
    assert response.status == 503
    assert response.headers["Retry-After"] == "5"
    assert (await response.json())["error"] == "temporarily_unavailable"


class RefusingUpdates(MemoryAdapter):
    async def update_client(self, issuer: str, client: NewClient) -> ManagedClient:
        raise ProviderRejected("memory: internal column REDIRECT_URIS.VALUE too long", field_name="redirect_uris")


async def test_provider_refusing_an_update_gives_the_rfc_error_without_its_words(make_gateway: Factory) -> None:
    client, _ = await make_gateway(RefusingUpdates)
    registered = await register(client, NATIVE)
    response = await client.put(path_of(registered), headers=bearer(registered), json=update_body(registered))
    assert response.status == 400
    body = await response.json()
    assert body["error"] == "invalid_redirect_uri"
    assert "REDIRECT_URIS" not in body["error_description"]


async def test_no_token_or_secret_reaches_the_logs(make_gateway: Factory, json_logs: io.StringIO) -> None:
    client, _ = await make_gateway(rotate_registration_access_token=True)
    registered = await register(client, NATIVE)
    body = update_body(
        registered, token_endpoint_auth_method="client_secret_basic", redirect_uris=["https://a.example/cb"]
    )
    response = await client.put(path_of(registered), headers=bearer(registered), json=body)
    updated = await response.json()
    await client.get(path_of(registered), headers=bearer("guessed-token-must-not-be-logged"))
    await client.put(
        path_of(registered), headers=bearer(updated), json={**body, "client_secret": "wrong-secret-not-logged"}
    )
    assert (await client.delete(path_of(registered), headers=bearer(updated))).status == 204
    logged = json_logs.getvalue()
    assert '"client.updated"' in logged and '"client.deleted"' in logged
    for secret in (
        registered["registration_access_token"],
        updated["registration_access_token"],
        updated["client_secret"],
        "guessed-token-must-not-be-logged",
        "wrong-secret-not-logged",
    ):
        assert secret not in logged


# ------------------------------------------------------------------------------ no half-created clients


async def test_a_failure_after_creation_removes_the_client(
    make_gateway: Factory, monkeypatch: pytest.MonkeyPatch, json_logs: io.StringIO
) -> None:
    client, adapter = await make_gateway()

    def broken(*args: Any, **kwargs: Any) -> dict[str, Any]:
        raise RuntimeError("response building failed")

    monkeypatch.setattr(registration_module, "registered_response", broken)
    response = await client.post(REGISTER, json=CONFIDENTIAL)
    assert response.status == 500
    assert (await response.json())["error"] == "server_error"
    assert adapter.clients["default"] == {}
    logged = json_logs.getvalue()
    assert '"client.rolled_back"' in logged
    assert "response building failed" not in logged  # only the exception's type


class StoresThenTimesOut(MemoryAdapter):
    """A provider that commits the client but whose answer never arrives (a timeout after the write)."""

    async def create_client(self, issuer: str, client: NewClient) -> ManagedClient:
        await super().create_client(issuer, client)
        raise ProviderUnavailable("memory: timed out after the write")


async def test_a_create_with_an_unknown_outcome_leaves_no_client_behind(make_gateway: Factory) -> None:
    client, adapter = await make_gateway(StoresThenTimesOut)
    response = await client.post(REGISTER, json=NATIVE)
    assert response.status == 503
    assert response.headers["Retry-After"]
    assert adapter.clients["default"] == {}


async def test_a_failed_rollback_is_logged_as_an_error(
    make_gateway: Factory, monkeypatch: pytest.MonkeyPatch, json_logs: io.StringIO
) -> None:
    client, adapter = await make_gateway()

    def broken(*args: Any, **kwargs: Any) -> dict[str, Any]:
        adapter.unavailable = True  # the provider goes away between the create and the clean-up
        raise RuntimeError("boom")

    monkeypatch.setattr(registration_module, "registered_response", broken)
    response = await client.post(REGISTER, json=NATIVE)
    assert response.status == 500
    records = [json.loads(line) for line in json_logs.getvalue().splitlines() if line.startswith("{")]
    failed = [r for r in records if r["event"] == "client.rollback_failed"]
    assert len(failed) == 1 and failed[0]["level"] == "error"
    assert failed[0]["client_id"] in adapter.clients["default"]


async def test_updates_and_deletes_count_against_the_rate_limits(make_gateway: Factory) -> None:
    client, _ = await make_gateway(limits={"per_source_limit": 2})
    registered = await register(client, NATIVE)
    for _ in range(2):
        response = await client.put(path_of(registered), headers=bearer(registered), json=update_body(registered))
        assert response.status == 200
    limited = await client.delete(path_of(registered), headers=bearer(registered))
    assert limited.status == 429
    assert limited.headers["Retry-After"]
    # reads count too: each one costs a provider lookup, even with a made-up client_id
    assert (await client.get(path_of(registered), headers=bearer(registered))).status == 429
    assert (await client.get(path_of(registered).replace(registered["client_id"], "made-up"))).status == 429


async def test_a_client_secret_that_is_not_valid_unicode_is_a_mismatch_not_a_500(make_gateway: Factory) -> None:
    """A JSON string may hold a lone surrogate (``"\\ud800"``): it cannot be the current secret (400), and the
    comparison must not crash."""
    client, _ = await make_gateway()
    registered = await register(client, CONFIDENTIAL)
    body = json.dumps({**update_body(registered), "client_secret": "LONE-SURROGATE"}).replace(
        '"LONE-SURROGATE"', '"\\ud800"'
    )
    assert '"\\ud800"' in body
    response = await client.put(
        path_of(registered), data=body, headers={**bearer(registered), "Content-Type": "application/json"}
    )
    assert response.status == 400, await response.text()
    assert (await response.json())["error"] == "invalid_client_metadata"
