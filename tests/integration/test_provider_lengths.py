"""Metadata lengths counted the way each real provider stores them, and display text shown as sent.

Keycloak keeps ``client_name`` in ``CLIENT.NAME NVARCHAR(255)``, which its H2 database counts in UTF-16 code units
(an emoji counts 2), and ``client_uri`` / each redirect URI in ``VARCHAR(255)`` columns (bytes on Oracle and SQL
Server, so counted in UTF-8 bytes); its client attributes (``logoUri`` ...) are NCLOBs. Hydra keeps every field
in TEXT or JSON columns, so only the registration policy's limits (500 characters for names, 2,000 for URIs)
apply there. Each limit is proved with astral characters at the limit (201, stored intact) and just past it
(400 naming the field, nothing created), on registration and on an RFC 7592 update.

Keycloak also renders ``client_name`` through its message bundles (``${loginAccountTitle}`` shows the realm's own
text on the consent page), so ``${`` is refused there; Hydra's consent page is the operator's own app, which shows
the name as given.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

import aiohttp
import pytest

from devstack.postgres import keycloak_database
from devstack.providers import HydraProvider, KeycloakProvider
from tests.integration.conftest import client_count, keycloak_admin_headers, target_record
from tests.integration.flows import Target, register

EMOJI = "\U0001f600"  # outside the Basic Multilingual Plane: 1 character, 2 UTF-16 code units, 4 UTF-8 bytes
HOST = "https://app.example.com/"


def units(value: str, unit: str) -> int:
    if unit == "utf16":
        return len(value.encode("utf-16-le")) // 2
    if unit == "utf8":
        return len(value.encode("utf-8"))
    return len(value)


def astral(prefix: str, length: int, unit: str) -> str:
    """``prefix`` followed by as many emoji as fit and ASCII padding: exactly ``length`` in ``unit``."""
    per_emoji = units(EMOJI, unit)
    room = length - units(prefix, unit)
    value = prefix + EMOJI * (room // per_emoji) + "a" * (room % per_emoji)
    assert units(value, unit) == length
    return value


def past(prefix: str, length: int, unit: str) -> str:
    """Just past ``length`` in ``unit`` (by 1 for characters and UTF-16, by at most 4 bytes for UTF-8), the last
    character an emoji."""
    value = astral(prefix, length, unit).rstrip("a")
    while units(value, unit) <= length:
        value += EMOJI
    return value


@dataclass(frozen=True)
class Limit:
    field: str
    length: int
    unit: str
    error: str

    def value(self, length_value: str) -> dict[str, Any]:
        if self.field == "redirect_uris":
            return {"redirect_uris": [length_value]}
        return {self.field: length_value}

    def prefix(self) -> str:
        return "" if self.field == "client_name" else HOST

    def at_limit(self) -> str:
        return astral(self.prefix(), self.length, self.unit)

    def past_limit(self) -> str:
        return past(self.prefix(), self.length, self.unit)


LIMITS = {
    "keycloak": [
        Limit("client_name", 255, "utf16", "invalid_client_metadata"),
        Limit("client_uri", 255, "utf8", "invalid_client_metadata"),
        Limit("redirect_uris", 255, "utf8", "invalid_redirect_uri"),
        Limit("logo_uri", 2000, "chars", "invalid_client_metadata"),  # an NCLOB attribute: the policy's limit
    ],
    "hydra": [
        Limit("client_name", 500, "chars", "invalid_client_metadata"),
        Limit("client_uri", 2000, "chars", "invalid_client_metadata"),
        Limit("redirect_uris", 2000, "chars", "invalid_redirect_uri"),
        Limit("logo_uri", 2000, "chars", "invalid_client_metadata"),
    ],
}


def base_body() -> dict[str, Any]:
    return {
        "client_name": "length probe",
        "redirect_uris": [f"{HOST}cb"],
        "token_endpoint_auth_method": "none",
        "application_type": "web",
    }


def stored(record: dict[str, Any], provider: str, field: str) -> Any:
    """The value the provider holds for ``field`` (its own representation)."""
    if provider == "hydra":
        return record[field]
    keycloak_fields = {"client_name": "name", "client_uri": "baseUrl"}
    if field == "redirect_uris":
        return record["redirectUris"]
    if field in keycloak_fields:
        return record[keycloak_fields[field]]
    return record["attributes"]["logoUri"]


@pytest.mark.parametrize("field", ["client_name", "client_uri", "redirect_uris", "logo_uri"])
async def test_lengths_are_counted_as_the_provider_stores_them(
    request: pytest.FixtureRequest, http: aiohttp.ClientSession, target: Target, field: str
) -> None:
    limit = next(limit for limit in LIMITS[target.provider] if limit.field == field)
    provider: HydraProvider | KeycloakProvider = request.getfixturevalue(f"{target.provider}_provider")

    # at the limit: registered, and the provider holds the value intact
    value = limit.at_limit()
    status, client = await register(http, target, {**base_body(), **limit.value(value)})
    assert status == 201, client
    registered = client[field]
    assert registered == ([value] if field == "redirect_uris" else value)
    record = await target_record(request, target, http, client["client_id"])
    assert record is not None
    held = stored(record, target.provider, field)
    assert (value in held) if field == "redirect_uris" else (held == value)

    # just past it: 400 naming the field, nothing created, on registration ...
    too_long = limit.past_limit()
    before = await client_count(provider, http)
    status, error = await register(http, target, {**base_body(), **limit.value(too_long)})
    assert status == 400, error
    assert error["error"] == limit.error
    named = f"{field}[0]" if field == "redirect_uris" else field
    assert error["error_description"].startswith(f"{named}:"), error
    assert await client_count(provider, http) == before

    # ... and on an RFC 7592 update of the client registered above, which keeps what it held
    update = {k: v for k, v in client.items() if k not in ("registration_access_token", "registration_client_uri")}
    update = {k: v for k, v in update.items() if k not in ("client_secret_expires_at", "client_id_issued_at")}
    update.update(limit.value(too_long))
    headers = {"Authorization": f"Bearer {client['registration_access_token']}"}
    async with http.put(client["registration_client_uri"], json=update, headers=headers) as response:
        answer = await response.json()
        assert response.status == 400, answer
        assert answer["error"] == limit.error
        assert answer["error_description"].startswith(f"{named}:"), answer
    record = await target_record(request, target, http, client["client_id"])
    assert record is not None
    held = stored(record, target.provider, field)
    assert (value in held) if field == "redirect_uris" else (held == value)


async def test_the_issue_example_200_emoji_in_client_name(http: aiohttp.ClientSession, target: Target) -> None:
    """Issue 8 item 8: 200 emoji passed a 255-character check and failed in Keycloak's database (503)."""
    status, answer = await register(http, target, {**base_body(), "client_name": EMOJI * 200})
    if target.provider == "hydra":
        assert status == 201, answer
        assert answer["client_name"] == EMOJI * 200
    else:
        assert status == 400, answer
        assert answer == {
            "error": "invalid_client_metadata",
            "error_description": "client_name: 400 UTF-16 code units, longer than the 255 the authorization server "
            "stores (a character outside the Basic Multilingual Plane, such as an emoji, counts 2)",
        }


async def test_keycloak_itself_counts_the_client_name_as_its_database_does(
    http: aiohttp.ClientSession, keycloak_provider: KeycloakProvider
) -> None:
    """What the gateway's Keycloak limits rest on, asked of Keycloak's admin API directly. On H2 (``dev-file``; SQL
    Server and Oracle count the same way) ``CLIENT.NAME NVARCHAR(255)`` holds 255 UTF-16 code units: 127 emoji and one
    letter are stored, 128 emoji (256 code units, 128 characters) fail inside Keycloak. PostgreSQL's ``VARCHAR(255)``
    counts characters: 255 emoji are stored, 256 fail. The gateway counts UTF-16 code units (the stricter), so what it
    lets through fits on every database (``make matrix`` runs this on both)."""
    if keycloak_database() == "postgres":
        fits_name, too_long_name = EMOJI * 255, EMOJI * 256
    else:
        fits_name, too_long_name = EMOJI * 127 + "a", EMOJI * 128
    headers = await keycloak_admin_headers(http, keycloak_provider)
    clients = f"{keycloak_provider.admin_realm_url}/clients"
    fits = {"clientId": "length-probe-fits", "name": fits_name, "publicClient": True}
    too_long = {"clientId": "length-probe-too-long", "name": too_long_name, "publicClient": True}
    async with http.post(clients, json=fits, headers=headers) as response:
        assert response.status == 201, await response.text()
        location = response.headers["Location"]
    try:
        async with http.post(clients, json=too_long, headers=headers) as response:
            assert response.status >= 500, await response.text()
        async with http.get(clients, params={"clientId": "length-probe-too-long"}, headers=headers) as response:
            assert await response.json() == []
    finally:
        async with http.delete(location, headers=headers) as response:
            assert response.status == 204


# ------------------------------------------------------------------------------------ display text (item 5)


MESSAGE_KEYS = ("${loginAccountTitle}", "Sign in to ${realm.displayName}", "x${")


@pytest.mark.parametrize("name", MESSAGE_KEYS)
async def test_keycloak_refuses_message_keys_in_the_client_name(
    request: pytest.FixtureRequest, http: aiohttp.ClientSession, target: Target, name: str
) -> None:
    """Keycloak shows ``client_name`` on its consent page through ``advancedMsg``: ``${key}`` would be the realm's
    own text. Refused there (and on update); Hydra's consent page is the operator's app and shows it as given."""
    provider: HydraProvider | KeycloakProvider = request.getfixturevalue(f"{target.provider}_provider")
    before = await client_count(provider, http)
    status, answer = await register(http, target, {**base_body(), "client_name": name})
    if target.provider == "hydra":
        assert status == 201, answer
        record = await target_record(request, target, http, answer["client_id"])
        assert record is not None and record["client_name"] == name
        return
    assert status == 400, answer
    assert answer["error"] == "invalid_client_metadata"
    assert answer["error_description"].startswith(f"client_name {name!r}: must not contain '${{'"), answer
    assert await client_count(provider, http) == before

    status, client = await register(http, target, base_body())
    assert status == 201, client
    update = {k: v for k, v in client.items() if k not in ("registration_access_token", "registration_client_uri")}
    update = {k: v for k, v in update.items() if k not in ("client_secret_expires_at", "client_id_issued_at")}
    headers = {"Authorization": f"Bearer {client['registration_access_token']}"}
    async with http.put(
        client["registration_client_uri"], json={**update, "client_name": name}, headers=headers
    ) as response:
        assert response.status == 400
        assert (await response.json())["error"] == "invalid_client_metadata"
    record = await target_record(request, target, http, client["client_id"])
    assert record is not None and record["name"] == "length probe"


@pytest.mark.parametrize("field", ["client_name", "client_uri", "redirect_uris", "logo_uri", "software_id"])
async def test_text_that_is_not_unicode_is_refused_naming_the_field(
    request: pytest.FixtureRequest, http: aiohttp.ClientSession, target: Target, field: str
) -> None:
    """A JSON string may hold a lone surrogate (``"\\ud83d"``), which is no character: no UTF-8 column can store it
    (Hydra would keep U+FFFD instead, Keycloak's databases fail or substitute). 400 naming the field, nothing
    created."""
    provider: HydraProvider | KeycloakProvider = request.getfixturevalue(f"{target.provider}_provider")
    value = ("" if field in ("client_name", "software_id") else HOST) + "broken-\ud83d-half"
    body = {**base_body(), field: [value] if field == "redirect_uris" else value}
    before = await client_count(provider, http)
    async with http.post(
        target.registration_endpoint, data=json.dumps(body), headers={"Content-Type": "application/json"}
    ) as response:
        answer = await response.json()
    assert response.status == 400, answer
    named = f"{field}[0]" if field == "redirect_uris" else field
    assert answer["error_description"].startswith(f"{named}"), answer
    assert await client_count(provider, http) == before
