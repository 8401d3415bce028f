"""RFC 7592 client configuration against the real Keycloak and the real Hydra, through the session gateways.

Mirrors what the trusted suites check (../shared/reference/security.md): the OpenID Foundation's Brazil DCR plans
(PUT with a new redirect keeps the token; bad token 401 on GET/PUT/DELETE; DELETE 204, then GET 401, a second
DELETE fails and the client gets ``invalid_client`` at the token endpoint), node-oidc-provider (reserved fields
refused, omitted fields deleted but the secret kept, a token for another client refused) and Authlib (wrong
client_id or client_secret 400). Every check also looks at what the provider really holds.
"""

from __future__ import annotations

from typing import Any

import aiohttp
import pytest

from tests.integration.conftest import target_record, unmanaged_client
from tests.integration.flows import (
    WEB_CALLBACK,
    Target,
    authorization_code_flow,
    confidential_client,
    discover,
    native_client,
    register,
    token_request,
)

RESERVED = ("registration_access_token", "registration_client_uri", "client_secret_expires_at", "client_id_issued_at")
NEW_CALLBACK = "https://app.example.com/oauth/new-callback"


# ----------------------------------------------------------------------------------------- helpers


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


async def call(
    http: aiohttp.ClientSession, method: str, uri: str, token: str | None, body: dict[str, Any] | None = None
) -> tuple[int, dict[str, Any] | None, dict[str, str]]:
    headers = bearer(token) if token is not None else {}
    async with http.request(method, uri, headers=headers, json=body) as response:
        payload = await response.json(content_type=None) if response.status != 204 else None
        return response.status, payload, dict(response.headers)


async def registered(http: aiohttp.ClientSession, target: Target, body: dict[str, Any]) -> dict[str, Any]:
    status, client = await register(http, target, body)
    assert status == 201, client
    assert client["registration_client_uri"] == f"{target.registration_endpoint}/{client['client_id']}"
    assert client["registration_access_token"]
    return client


def update_body(client: dict[str, Any], **changes: Any) -> dict[str, Any]:
    """The client's metadata as it would send it back: without the server-provisioned fields."""
    body = {k: v for k, v in client.items() if k not in RESERVED}
    body.update(changes)
    return {k: v for k, v in body.items() if v is not None}


async def token_endpoint(http: aiohttp.ClientSession, target: Target) -> str:
    endpoint: str = (await discover(http, target))["token_endpoint"]
    return endpoint


async def authenticates(http: aiohttp.ClientSession, target: Target, client: dict[str, Any]) -> bool:
    """Whether the provider authenticates ``client`` with its credentials at the token endpoint: it presents them
    with a code that does not exist, so ``invalid_grant`` means the client was authenticated first (RFC 6749
    section 5.2), and a 401 (``invalid_client``; Keycloak says ``unauthorized_client`` for a wrong secret) that
    it was not."""
    status, answer = await token_request(
        http,
        await token_endpoint(http, target),
        client,
        {"grant_type": "authorization_code", "code": "no-such-code", "redirect_uri": client["redirect_uris"][0]},
    )
    if status == 401:
        assert answer["error"] in ("invalid_client", "unauthorized_client"), answer
        return False
    assert (status, answer["error"]) == (400, "invalid_grant"), (status, answer)
    return True


async def assert_invalid_token(
    http: aiohttp.ClientSession, method: str, uri: str, token: str | None, **kw: Any
) -> None:
    status, body, headers = await call(http, method, uri, token, kw.get("body"))
    assert status == 401, (method, uri, body)
    assert body is not None and body["error"] == "invalid_token"
    assert headers["WWW-Authenticate"].startswith("Bearer")


# ------------------------------------------------------------------------------------------- tests


async def test_put_with_a_new_redirect_gives_200_and_the_token_and_secret_keep_working(
    request: pytest.FixtureRequest, target: Target, http: aiohttp.ClientSession
) -> None:
    client = await registered(http, target, confidential_client("Brazil PUT", "client_secret_basic"))
    uri, token = client["registration_client_uri"], client["registration_access_token"]
    status, updated, headers = await call(http, "PUT", uri, token, update_body(client, redirect_uris=[NEW_CALLBACK]))
    assert status == 200, updated
    assert headers["Cache-Control"] == "no-store"
    assert updated is not None
    assert updated["redirect_uris"] == [NEW_CALLBACK]
    assert updated["registration_access_token"] == token  # no rotation by default (Brazil DCR plans)
    assert updated["registration_client_uri"] == uri
    assert updated["client_id_issued_at"] == client["client_id_issued_at"]
    stored = await target_record(request, target, http, client["client_id"])
    assert stored is not None
    assert (stored["redirect_uris"] if target.provider == "hydra" else stored["redirectUris"]) == [NEW_CALLBACK]
    status, read, _ = await call(http, "GET", uri, token)
    assert status == 200 and read is not None
    assert read["redirect_uris"] == [NEW_CALLBACK]
    # the secret was kept: the client completes a real flow at the new redirect with the secret it registered with
    await authorization_code_flow(http, target, client, redirect_uri=NEW_CALLBACK)


async def test_get_answers_the_registration_and_the_secret_where_the_provider_returns_it(
    target: Target, http: aiohttp.ClientSession
) -> None:
    client = await registered(
        http, target, confidential_client("Read me", "client_secret_post", contacts=["a@b.example"])
    )
    status, read, headers = await call(
        http, "GET", client["registration_client_uri"], client["registration_access_token"]
    )
    assert status == 200 and read is not None
    assert headers["Cache-Control"] == "no-store"
    for name in ("client_id", "client_id_issued_at", "redirect_uris", "grant_types", "token_endpoint_auth_method"):
        assert read[name] == client[name], name
    assert read["contacts"] == ["a@b.example"]
    assert read["registration_access_token"] == client["registration_access_token"]
    assert read["client_secret_expires_at"] == 0
    if target.provider == "keycloak":
        assert read["client_secret"] == client["client_secret"]
    else:  # Hydra keeps only a hash of the secret: the gateway does not invent one (documented deviation)
        assert "client_secret" not in read


async def test_a_bad_token_is_401_on_get_put_and_delete(
    request: pytest.FixtureRequest, target: Target, http: aiohttp.ClientSession
) -> None:
    client = await registered(http, target, native_client("Bad token"))
    uri = client["registration_client_uri"]
    before = await target_record(request, target, http, client["client_id"])
    for method in ("GET", "PUT", "DELETE"):
        await assert_invalid_token(http, method, uri, "not-the-token", body=update_body(client, client_name="x"))
        await assert_invalid_token(http, method, uri, None, body=update_body(client, client_name="x"))
        status, _, headers = await call(http, method, uri, None)
        assert status == 401 and headers["WWW-Authenticate"] == "Bearer"
    async with http.get(uri, headers={"Authorization": "Bearer"}) as response:  # malformed: 401, never 500
        assert response.status == 401
        assert response.headers["WWW-Authenticate"] == 'Bearer error="invalid_token"'
    assert await target_record(request, target, http, client["client_id"]) == before


async def test_a_token_of_client_a_on_client_bs_uri_is_401(
    request: pytest.FixtureRequest, target: Target, http: aiohttp.ClientSession
) -> None:
    a = await registered(http, target, native_client("Client A"))
    b = await registered(http, target, confidential_client("Client B", "client_secret_basic"))
    before = await target_record(request, target, http, b["client_id"])
    for method in ("GET", "PUT", "DELETE"):
        await assert_invalid_token(
            http, method, b["registration_client_uri"], a["registration_access_token"], body=update_body(b)
        )
    assert await target_record(request, target, http, b["client_id"]) == before


async def test_delete_gives_204_then_get_and_a_second_delete_are_401_and_the_client_is_invalid_at_the_token_endpoint(
    request: pytest.FixtureRequest, target: Target, http: aiohttp.ClientSession
) -> None:
    client = await registered(http, target, confidential_client("Deleted", "client_secret_post"))
    uri, token = client["registration_client_uri"], client["registration_access_token"]
    flow = await authorization_code_flow(http, target, client, redirect_uri=WEB_CALLBACK)
    status, body, headers = await call(http, "DELETE", uri, token)
    assert (status, body) == (204, None)
    assert headers["Cache-Control"] == "no-store"
    await assert_invalid_token(http, "GET", uri, token)
    await assert_invalid_token(http, "DELETE", uri, token)
    assert await target_record(request, target, http, client["client_id"]) is None
    status, answer = await token_request(
        http,
        await token_endpoint(http, target),
        client,
        {
            "grant_type": "refresh_token",
            "refresh_token": flow.refreshed.get("refresh_token") or flow.tokens["refresh_token"],
        },
    )
    assert status == 401, answer
    assert answer["error"] == "invalid_client"


@pytest.mark.parametrize("field", RESERVED)
async def test_put_refuses_each_server_provisioned_field(
    request: pytest.FixtureRequest, target: Target, http: aiohttp.ClientSession, field: str
) -> None:
    client = await registered(http, target, confidential_client("Reserved", "client_secret_basic"))
    before = await target_record(request, target, http, client["client_id"])
    body = {**update_body(client, client_name="changed"), field: client[field]}
    status, error, _ = await call(
        http, "PUT", client["registration_client_uri"], client["registration_access_token"], body
    )
    assert status == 400
    assert error is not None and error["error"] == "invalid_client_metadata"
    assert error["error_description"].startswith(f"{field}: ")
    assert await target_record(request, target, http, client["client_id"]) == before


@pytest.mark.parametrize(
    ("changes", "description"),
    [({"client_id": "someone-else"}, "client_id: "), ({"client_secret": "chosen-by-the-client"}, "client_secret: ")],
    ids=["client_id", "client_secret"],
)
async def test_put_with_another_client_id_or_secret_is_400(
    request: pytest.FixtureRequest,
    target: Target,
    http: aiohttp.ClientSession,
    changes: dict[str, str],
    description: str,
) -> None:
    client = await registered(http, target, confidential_client("Mismatch", "client_secret_basic"))
    before = await target_record(request, target, http, client["client_id"])
    body = update_body(client, client_name="changed", **changes)
    status, error, _ = await call(
        http, "PUT", client["registration_client_uri"], client["registration_access_token"], body
    )
    assert status == 400
    assert error is not None and error["error_description"].startswith(description)
    assert await target_record(request, target, http, client["client_id"]) == before
    # the current secret is accepted (and on Hydra checked against the hash kept at registration)
    body = update_body(client, client_name="changed")
    assert body["client_secret"] == client["client_secret"]
    status, updated, _ = await call(
        http, "PUT", client["registration_client_uri"], client["registration_access_token"], body
    )
    assert status == 200, updated


async def test_omitted_fields_are_deleted_and_the_secret_is_kept(
    request: pytest.FixtureRequest, target: Target, http: aiohttp.ClientSession
) -> None:
    client = await registered(
        http,
        target,
        confidential_client(
            "Full",
            "client_secret_basic",
            contacts=["ops@app.example.com"],
            client_uri="https://app.example.com",
            logo_uri="https://app.example.com/logo.png",
            software_id="sw-1",
        ),
    )
    minimal = {"client_id": client["client_id"], "redirect_uris": client["redirect_uris"]}
    status, updated, _ = await call(
        http, "PUT", client["registration_client_uri"], client["registration_access_token"], minimal
    )
    assert status == 200, updated
    assert updated is not None
    for name in ("client_name", "contacts", "client_uri", "logo_uri", "software_id"):
        assert name not in updated, name
    assert updated["grant_types"] == ["authorization_code"]  # RFC 7591 default for what was omitted
    assert updated["token_endpoint_auth_method"] == "client_secret_basic"
    status, read, _ = await call(http, "GET", client["registration_client_uri"], client["registration_access_token"])
    assert status == 200 and read is not None
    for name in ("client_name", "contacts", "client_uri", "logo_uri", "software_id"):
        assert name not in read, name
    record = await target_record(request, target, http, client["client_id"])
    assert record is not None
    if target.provider == "hydra":
        assert not record.get("client_name") and not record.get("contacts") and not record.get("logo_uri")
        assert not record.get("client_uri")
    else:
        assert not record.get("name") and not record.get("baseUrl")
        assert not record.get("attributes", {}).get("logoUri")
    # the secret survived the update: the provider still authenticates the client with it
    assert await authenticates(http, target, client)
    assert not await authenticates(http, target, {**client, "client_secret": "wrong"})


async def test_auth_method_changes_issue_or_drop_the_secret(
    request: pytest.FixtureRequest, target: Target, http: aiohttp.ClientSession
) -> None:
    client = await registered(
        http, target, native_client("Switches", redirect_uris=[WEB_CALLBACK], application_type="web")
    )
    uri, token = client["registration_client_uri"], client["registration_access_token"]
    status, confidential, _ = await call(
        http, "PUT", uri, token, update_body(client, token_endpoint_auth_method="client_secret_post")
    )
    assert status == 200, confidential
    assert confidential is not None and len(confidential["client_secret"]) == 43
    assert confidential["client_secret_expires_at"] == 0
    assert await authenticates(http, target, confidential)
    assert not await authenticates(http, target, {**confidential, "client_secret": "wrong"})
    status, public, _ = await call(
        http, "PUT", uri, token, update_body(confidential, token_endpoint_auth_method="none", client_secret=None)
    )
    assert status == 200, public
    assert public is not None and "client_secret" not in public
    assert await authenticates(http, target, public)
    record = await target_record(request, target, http, client["client_id"])
    assert record is not None
    assert (record["token_endpoint_auth_method"] == "none") if target.provider == "hydra" else record["publicClient"]


@pytest.mark.parametrize(
    ("changes", "error"),
    [
        (
            {"grant_types": ["authorization_code", "implicit"], "response_types": ["code", "token"]},
            "invalid_client_metadata",
        ),
        ({"redirect_uris": [WEB_CALLBACK + "#fragment"]}, "invalid_redirect_uri"),
        ({"grant_types": ["authorization_code", "client_credentials"]}, "invalid_client_metadata"),
        ({"redirect_uris": ["javascript:alert(1)"]}, "invalid_redirect_uri"),
    ],
    ids=["implicit", "fragment-redirect", "client_credentials-anonymous", "javascript-redirect"],
)
async def test_registration_policies_hold_on_update(
    request: pytest.FixtureRequest, target: Target, http: aiohttp.ClientSession, changes: dict[str, Any], error: str
) -> None:
    client = await registered(http, target, confidential_client("Policy", "client_secret_basic"))
    before = await target_record(request, target, http, client["client_id"])
    body = update_body(client, **changes)
    status, answer, _ = await call(
        http, "PUT", client["registration_client_uri"], client["registration_access_token"], body
    )
    assert status == 400, answer
    assert answer is not None and answer["error"] == error
    assert await target_record(request, target, http, client["client_id"]) == before


async def test_unmanaged_clients_are_unreachable(
    request: pytest.FixtureRequest, target: Target, http: aiohttp.ClientSession
) -> None:
    legacy = await unmanaged_client(request, target, http, "legacy-rfc7592-client")
    someone = await registered(http, target, native_client("Someone"))
    before = await target_record(request, target, http, legacy)
    assert before is not None
    uri = f"{target.registration_endpoint}/{legacy}"
    for method in ("GET", "PUT", "DELETE"):
        for token in (someone["registration_access_token"], "guessed"):
            await assert_invalid_token(
                http, method, uri, token, body={"client_id": legacy, "redirect_uris": [WEB_CALLBACK]}
            )
    assert await target_record(request, target, http, legacy) == before


async def test_no_registration_access_token_reaches_the_gateway_log(
    target: Target, http: aiohttp.ClientSession
) -> None:
    client = await registered(http, target, confidential_client("Log check 7592", "client_secret_basic"))
    uri, token = client["registration_client_uri"], client["registration_access_token"]
    assert (await call(http, "GET", uri, token))[0] == 200
    assert (await call(http, "PUT", uri, token, update_body(client, client_name="renamed")))[0] == 200
    assert (await call(http, "GET", uri, "wrong-token-not-logged"))[0] == 401
    assert (await call(http, "DELETE", uri, token))[0] == 204
    assert target.log_path is not None
    logged = target.log_path.read_text()
    assert client["client_id"] in logged
    for secret in (token, client["client_secret"], "wrong-token-not-logged"):
        assert secret not in logged
