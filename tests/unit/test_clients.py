"""Client hygiene decisions and the provider mappings behind ``dcr-gateway clients`` (pure functions)."""

from __future__ import annotations

import json
from typing import Any

import pytest

from adapters.base import (
    DEFAULT_DEPLOYMENT,
    DEPLOYMENT_KEY,
    ClientUsage,
    Issuer,
    ManagedClient,
    UnmanagedClient,
    deployment_of,
)
from adapters.hydra.mapping import (
    METADATA_KEY,
    adoption_patch,
    from_hydra,
    hydra_differences,
    hydra_labels,
    hydra_privileges,
    is_managed,
    unmanaged_from_hydra,
    usage_from_hydra,
)
from adapters.keycloak.mapping import (
    GATEWAY_ATTRIBUTE,
    MANAGED_ATTRIBUTE,
    adoption_attributes,
    conforming_update,
    from_keycloak,
    keycloak_differences,
    keycloak_privileges,
    keycloak_protection,
    registered_from_keycloak,
    service_account_protection,
    unmanaged_from_keycloak,
    usage_from_keycloak,
)
from adapters.keycloak.mapping import is_managed as keycloak_is_managed
from gateway.clients.cli import printable, select_issuers
from gateway.clients.operations import (
    AdoptionSelector,
    adoption_refusal,
    format_duration,
    gc_decision,
    parse_duration,
    parse_instant,
    parse_label,
)
from gateway.oauth.metadata import ClientMetadata
from gateway.registration.tokens import TOKEN_HASH_KEY

NOW = 1_800_000_000
DAY = 86400


# --------------------------------------------------------------------------------------- durations


@pytest.mark.parametrize(
    ("text", "seconds"),
    [("0s", 0), ("45s", 45), ("90m", 5400), ("12h", 43200), ("30d", 30 * DAY), ("2w", 14 * DAY), ("1d12h", 129600)],
)
def test_durations_need_a_unit(text: str, seconds: int) -> None:
    assert parse_duration(text) == seconds


UNITS_MESSAGE = (
    r"is not a duration: use a whole number and a lowercase unit, s \(seconds\), m \(minutes\), h \(hours\), "
    r"d \(days\) or w \(weeks\), e\.g\. 90m, 12h or 30d"
)


@pytest.mark.parametrize(
    "text",
    [
        "",
        " ",
        "30",
        "d",
        "M",
        "2M",  # months or minutes? refused, never read as minutes
        "90M",
        "12H",
        "30D",
        "2W",
        "1d12H",  # mixed case
        "1y",
        "1mo",
        "30 days",
        "-1d",
        "1.5d",
        "30d junk",
        "12h1d",  # largest unit first, each once
        "1d1d",
        "\u0663\u0660d",  # non-ASCII digits
    ],
)
def test_ambiguous_or_bad_durations_are_refused_naming_the_units(text: str) -> None:
    """Only ``s``, ``m`` (minutes), ``h``, ``d``, ``w``, lowercase: ``2M`` could mean months and is refused."""
    with pytest.raises(ValueError, match=UNITS_MESSAGE):
        parse_duration(text)


def test_an_uppercase_unit_is_refused_with_a_hint() -> None:
    with pytest.raises(ValueError, match=r"months and years are not accepted"):
        parse_duration("2M")


@pytest.mark.parametrize(
    ("seconds", "text"), [(0, "0s"), (59, "59s"), (3600, "1h"), (31 * DAY + 4 * 3600 + 5, "31d4h")]
)
def test_durations_are_shown_by_their_two_largest_units(seconds: int, text: str) -> None:
    assert format_duration(seconds) == text


@pytest.mark.parametrize(
    ("text", "seconds"),
    [
        ("1800000000", 1_800_000_000),
        ("2027-01-15T08:00:00Z", 1_800_000_000),
        ("2027-01-15T08:00Z", 1_800_000_000),
        ("2027-01-15T09:00+01:00", 1_800_000_000),
        ("2027-01-15T08:00", 1_800_000_000),  # no offset: UTC
        ("2027-01-15", 1_799_971_200),
    ],
)
def test_instants_are_epoch_seconds_or_iso_8601(text: str, seconds: int) -> None:
    assert parse_instant(text) == seconds


@pytest.mark.parametrize("text", ["", "yesterday", "-5", "2027-13-01"])
def test_bad_instants_are_refused_with_an_example(text: str) -> None:
    with pytest.raises(ValueError, match="is not a time: use seconds since the epoch or ISO 8601"):
        parse_instant(text)


# -------------------------------------------------------------------------------------------- gc


def managed(client_id: str = "c1", issued_at: int = 0) -> ManagedClient:
    return ManagedClient(client_id=client_id, metadata=ClientMetadata(), client_id_issued_at=issued_at)


@pytest.mark.parametrize(
    ("usage", "issued_at", "stale", "reason"),
    [
        (ClientUsage(created_at=NOW - 40 * DAY, active_sessions=1, offline_sessions=0), 0, False,
         "in use: 1 active and 0 offline sessions"),
        (ClientUsage(created_at=NOW - 40 * DAY, active_sessions=0, offline_sessions=2), 0, False,
         "in use: 0 active and 2 offline sessions"),
        (ClientUsage(created_at=NOW - 40 * DAY, active_sessions=0, offline_sessions=0), 0, True,
         "created 40d ago (>= 30d), no sessions"),
        (ClientUsage(created_at=NOW - 40 * DAY, updated_at=NOW - 2 * DAY), 0, False,
         "updated 2d ago, less than 30d"),
        (ClientUsage(created_at=NOW - 90 * DAY, updated_at=NOW - 31 * DAY), 0, True,
         "updated 31d ago (>= 30d), sessions unknown to the provider"),
        (ClientUsage(created_at=NOW - 90 * DAY, last_used_at=NOW - 3600), 0, False,
         "last used 1h ago, less than 30d"),
        # no time from the provider: the client's own client_id_issued_at, else keep
        (ClientUsage(active_sessions=0, offline_sessions=0), NOW - 30 * DAY, True,
         "created 30d ago (>= 30d), no sessions"),
        (ClientUsage(active_sessions=0, offline_sessions=0), 0, False,
         "the provider cannot tell when it was created, changed or used"),
        # a provider clock ahead of ours is not negative idleness
        (ClientUsage(created_at=NOW + 60), 0, False, "created 0s ago, less than 30d"),
    ],
)  # fmt: skip
def test_gc_decision_is_stale_only_when_nothing_shows_use(
    usage: ClientUsage, issued_at: int, stale: bool, reason: str
) -> None:
    decision = gc_decision(managed(issued_at=issued_at), usage, now=NOW, unused_for=30 * DAY)
    assert (decision.stale, decision.reason) == (stale, reason)


def test_gc_with_zero_unused_for_collects_every_client_without_sessions() -> None:
    assert gc_decision(managed(), ClientUsage(created_at=NOW), now=NOW, unused_for=0).stale
    assert not gc_decision(managed(), ClientUsage(created_at=NOW, active_sessions=1), now=NOW, unused_for=0).stale


# ----------------------------------------------------------------------------------------- adopt


def candidate(client_id: str = "shim-1", **kwargs: Any) -> UnmanagedClient:
    return UnmanagedClient(client_id=client_id, **kwargs)


def test_an_empty_selector_selects_nothing() -> None:
    assert AdoptionSelector().empty
    assert not AdoptionSelector().matches(candidate())


def test_every_selector_criterion_must_hold() -> None:
    shim = candidate("shim-1", labels={"origin": "shim", "team": "a"})
    assert AdoptionSelector(prefix="shim-").matches(shim)
    assert not AdoptionSelector(prefix="other-").matches(shim)
    assert AdoptionSelector(labels={"origin": "shim"}).matches(shim)
    assert AdoptionSelector(labels={"origin": "shim", "team": "a"}).matches(shim)
    assert not AdoptionSelector(labels={"origin": "shim", "team": "b"}).matches(shim)
    assert not AdoptionSelector(labels={"missing": ""}).matches(shim)
    assert AdoptionSelector(client_ids=frozenset({"shim-1"})).matches(shim)
    assert not AdoptionSelector(prefix="shim-", client_ids=frozenset({"shim-2"})).matches(shim)


@pytest.mark.parametrize(
    ("text", "label"), [("origin=shim", ("origin", "shim")), ("k=a=b", ("k", "a=b")), ("empty=", ("empty", ""))]
)
def test_attribute_arguments_are_key_value(text: str, label: tuple[str, str]) -> None:
    assert parse_label(text) == label


@pytest.mark.parametrize("text", ["origin", "=shim", " =x"])
def test_attribute_arguments_need_a_key_and_an_equals_sign(text: str) -> None:
    with pytest.raises(ValueError, match="is not KEY=VALUE"):
        parse_label(text)


def test_adoption_refuses_protected_always_and_privileged_unless_allowed() -> None:
    plain = candidate()
    privileged = candidate(privileges=("service account (client_credentials grant)",))
    protected = candidate(protected="the gateway's own admin client", privileges=("service account",))
    assert adoption_refusal(plain, include_privileged=False) is None
    assert adoption_refusal(privileged, include_privileged=False) == (
        "privileged (service account (client_credentials grant)): pass --include-privileged to adopt it"
    )
    assert adoption_refusal(privileged, include_privileged=True) is None
    assert adoption_refusal(protected, include_privileged=True) == "never adopted: the gateway's own admin client"


@pytest.mark.parametrize("client_id", ["a/b", "..", "x\x00", "sp ace", "x" * 256, "%2F"])
def test_adoption_refuses_ids_no_rfc7592_request_can_address(client_id: str) -> None:
    refusal = adoption_refusal(candidate(client_id=client_id), include_privileged=True)
    assert refusal is not None
    assert refusal.startswith("never adopted: its client_id is not one URL path segment")


# ------------------------------------------------------------------------------------------ hydra

HYDRA_SHIM = {
    "client_id": "shim-1",
    "client_name": "Old shim client",
    "redirect_uris": ["http://127.0.0.1:3000/callback"],
    "grant_types": ["authorization_code", "refresh_token"],
    "response_types": ["code"],
    "token_endpoint_auth_method": "none",
    "scope": "openid offline_access",
    "jwks": {},
    "created_at": "2026-01-02T03:04:05Z",
    "updated_at": "2026-02-03T04:05:06.123456Z",
    "skip_consent": False,
    "metadata": {"origin": "shim", "tenant": 7, "beta": True, "nested": {"x": 1}},
}


def test_hydra_usage_is_the_record_times_without_sessions() -> None:
    usage = usage_from_hydra(HYDRA_SHIM)
    assert usage == ClientUsage(created_at=1767323045, updated_at=1770091506)
    assert usage.active_sessions is None


def test_hydra_labels_are_scalar_metadata_values_as_strings() -> None:
    assert hydra_labels(HYDRA_SHIM) == {"origin": "shim", "tenant": "7", "beta": "true"}
    assert hydra_labels({**HYDRA_SHIM, "metadata": None}) == {}


@pytest.mark.parametrize(
    ("changes", "privileges"),
    [
        ({}, ()),
        ({"grant_types": ["client_credentials"]}, ("client_credentials grant (tokens without a user)",)),
        ({"skip_consent": True}, ("skips consent",)),
        (
            {"grant_types": ["urn:ietf:params:oauth:grant-type:jwt-bearer", "implicit"]},
            ("jwt-bearer grant (RFC 7523 assertions)", "implicit grant"),
        ),
    ],
)
def test_hydra_privileged_clients_are_recognized(changes: dict[str, Any], privileges: tuple[str, ...]) -> None:
    assert hydra_privileges({**HYDRA_SHIM, **changes}) == privileges


def test_hydra_candidate_has_no_protection_and_no_secret() -> None:
    shim = unmanaged_from_hydra({**HYDRA_SHIM, "client_secret": "never-shown"})
    assert shim.client_id == "shim-1"
    assert shim.client_name == "Old shim client"
    assert shim.protected is None
    assert "never-shown" not in repr(shim)


def test_hydra_adoption_patch_adds_the_marker_and_keeps_the_shims_metadata() -> None:
    patch = adoption_patch(HYDRA_SHIM, {TOKEN_HASH_KEY: "sha256:abc"}, adopted_at=NOW)
    assert [(op["op"], op["path"]) for op in patch] == [("add", "/metadata")]
    adopted = {**HYDRA_SHIM, "metadata": patch[0]["value"]}
    assert is_managed(adopted)
    assert adopted["metadata"]["origin"] == "shim"
    assert adopted["metadata"]["nested"] == {"x": 1}
    ours = adopted["metadata"][METADATA_KEY]
    assert ours["client_id_issued_at"] == 1767323045  # Hydra's created_at, not the adoption time
    assert ours["adopted_at"] == NOW
    client = from_hydra(adopted)
    assert client.gateway_data == {TOKEN_HASH_KEY: "sha256:abc"}
    assert client.metadata.redirect_uris == ["http://127.0.0.1:3000/callback"]
    assert client.metadata.token_endpoint_auth_method == "none"
    assert '"client_secret":' not in json.dumps(patch), "the secret is left alone"
    assert not is_managed(HYDRA_SHIM), "the input is not changed"


# --------------------------------------------------------------------------------------- keycloak

KEYCLOAK_SHIM = {
    "id": "5d7e1c9a-0000-4000-8000-000000000001",
    "clientId": "shim-2",
    "name": "Old shim web app",
    "secret": "shim-secret",
    "publicClient": False,
    "clientAuthenticatorType": "client-secret",
    "standardFlowEnabled": True,
    "implicitFlowEnabled": False,
    "directAccessGrantsEnabled": False,
    "serviceAccountsEnabled": False,
    "redirectUris": ["https://app.example.com/cb"],
    "baseUrl": "https://app.example.com",
    "attributes": {
        "origin": "shim",
        "logoUri": "https://app.example.com/logo.png",
        "post.logout.redirect.uris": "+##https://app.example.com/bye",
        "client.secret.creation.time": "1767323045",
    },
}


@pytest.mark.parametrize(
    ("changes", "protection"),
    [
        ({}, None),
        ({"clientId": "dcr-gateway"}, "the gateway's own admin client"),
        ({"clientId": "realm-management"}, "a Keycloak built-in client"),
        ({"clientId": "account-console"}, "a Keycloak built-in client"),
        ({"clientId": "mcp-realm", "attributes": {"realm_client": "true"}}, "a Keycloak built-in client"),
    ],
)
def test_keycloak_protected_clients(changes: dict[str, Any], protection: str | None) -> None:
    assert keycloak_protection({**KEYCLOAK_SHIM, **changes}, "dcr-gateway") == protection


def test_keycloak_privileged_clients_are_recognized() -> None:
    assert keycloak_privileges(KEYCLOAK_SHIM) == ()
    assert keycloak_privileges(
        {**KEYCLOAK_SHIM, "serviceAccountsEnabled": True, "directAccessGrantsEnabled": True, "bearerOnly": True}
    ) == (
        "service account (client_credentials grant)",
        "direct access grants (password grant)",
        "bearer-only resource server",
    )


def test_keycloak_candidate_carries_attributes_but_never_the_secret() -> None:
    shim = unmanaged_from_keycloak(KEYCLOAK_SHIM, "dcr-gateway")
    assert shim.labels["origin"] == "shim"
    assert shim.client_name == "Old shim web app"
    assert "shim-secret" not in repr(shim)


def test_keycloak_registered_view_of_a_shim_client() -> None:
    assert registered_from_keycloak(KEYCLOAK_SHIM) == {
        "redirect_uris": ["https://app.example.com/cb"],
        "grant_types": ["authorization_code", "refresh_token"],
        "response_types": ["code"],
        "token_endpoint_auth_method": "client_secret_basic",
        "client_name": "Old shim web app",
        "client_uri": "https://app.example.com",
        "logo_uri": "https://app.example.com/logo.png",
        "post_logout_redirect_uris": ["https://app.example.com/bye"],
    }
    service = registered_from_keycloak(
        {**KEYCLOAK_SHIM, "standardFlowEnabled": False, "serviceAccountsEnabled": True, "publicClient": False}
    )
    assert service["grant_types"] == ["client_credentials"]
    assert service["response_types"] == []
    public = registered_from_keycloak({**KEYCLOAK_SHIM, "publicClient": True})
    assert public["token_endpoint_auth_method"] == "none"


def test_keycloak_adoption_keeps_every_attribute_and_reads_back_as_managed() -> None:
    attributes = adoption_attributes(KEYCLOAK_SHIM, {TOKEN_HASH_KEY: "sha256:abc"}, adopted_at=NOW)
    for key, value in KEYCLOAK_SHIM["attributes"].items():  # type: ignore[attr-defined]
        assert attributes[key] == value
    adopted = {**KEYCLOAK_SHIM, "attributes": attributes}
    assert keycloak_is_managed(adopted)
    assert attributes[MANAGED_ATTRIBUTE] == "true"
    assert json.loads(attributes[GATEWAY_ATTRIBUTE]) == {TOKEN_HASH_KEY: "sha256:abc"}
    client = from_keycloak(adopted)
    assert client.client_id == "shim-2"
    assert client.client_id_issued_at == 1767323045  # the secret's creation time Keycloak recorded
    assert client.client_secret == "shim-secret"  # kept, as Keycloak returns it to its admin
    assert client.gateway_data == {TOKEN_HASH_KEY: "sha256:abc"}
    assert client.metadata.redirect_uris == ["https://app.example.com/cb"]
    usage = usage_from_keycloak(adopted, sessions=0, offline_sessions=1)
    assert usage == ClientUsage(created_at=1767323045, updated_at=NOW, active_sessions=0, offline_sessions=1)


def test_keycloak_adoption_without_a_recorded_secret_time_starts_at_adoption() -> None:
    shim = {**KEYCLOAK_SHIM, "attributes": {"origin": "shim"}}
    assert (
        from_keycloak({**shim, "attributes": adoption_attributes(shim, {}, adopted_at=NOW)}).client_id_issued_at == NOW
    )


def test_keycloak_usage_of_a_client_without_gateway_times() -> None:
    assert usage_from_keycloak(KEYCLOAK_SHIM, sessions=2, offline_sessions=0) == ClientUsage(
        active_sessions=2, offline_sessions=0
    )


# ------------------------------------------------------------------------------------------- CLI


ISSUERS = [
    Issuer(key="mcp", path="/realms/mcp", metadata_url="http://kc/realms/mcp/.well-known/openid-configuration"),
    Issuer(key="other", path="/realms/other", metadata_url="http://kc/realms/other/.well-known/openid-configuration"),
]


@pytest.mark.parametrize("name", ["mcp", "/realms/mcp", "https://auth.example.com/realms/mcp", "/realms/mcp/"])
def test_an_issuer_is_named_by_key_path_or_url(name: str) -> None:
    assert select_issuers(ISSUERS, "https://auth.example.com", name) == [ISSUERS[0]]


def test_every_issuer_by_default_and_an_unknown_one_is_a_usage_error() -> None:
    assert select_issuers(ISSUERS, "https://auth.example.com", None) == ISSUERS
    with pytest.raises(
        ValueError, match=r"no issuer 'nope'; this adapter serves: mcp \(https://auth.example.com/realms/mcp\)"
    ):
        select_issuers(ISSUERS, "https://auth.example.com", "nope")


def test_client_chosen_text_cannot_drive_the_terminal() -> None:
    assert printable("Evil \x1b[2J\x9b31m\u202eName\n") == "Evil \\x1b[2J\\x9b31m\\u202eName\\n"
    assert printable("Ünïcode ok") == "Ünïcode ok"


# ------------------------------------------------------------------ deployments and adoption guarantees


def test_a_client_without_a_recorded_deployment_belongs_to_the_default_one() -> None:
    legacy = ManagedClient(client_id="old", metadata=ClientMetadata(), client_id_issued_at=1, gateway_data={})
    assert deployment_of(legacy) == DEFAULT_DEPLOYMENT == "default"
    staged = ManagedClient(
        client_id="new", metadata=ClientMetadata(), client_id_issued_at=1, gateway_data={DEPLOYMENT_KEY: "staging"}
    )
    assert deployment_of(staged) == "staging"


@pytest.mark.parametrize(
    ("client_roles", "realm_roles", "protected"),
    [
        ([], [], None),
        ([], ["offline_access", "uma_authorization"], None),
        (["manage-clients"], [], "a service account holding realm-management roles (manage-clients): an admin client"),
        (["view-users", "query-users"], [], "realm-management roles (query-users, view-users)"),
        ([], ["admin"], "a service account holding realm admin roles (admin): an admin client"),
    ],
)
def test_a_service_account_with_any_admin_role_is_never_adoptable(
    client_roles: list[str], realm_roles: list[str], protected: str | None
) -> None:
    found = service_account_protection(client_roles, realm_roles)
    if protected is None:
        assert found is None
    else:
        assert found is not None and protected in found


def test_keycloak_adoption_differences_and_the_update_that_removes_them() -> None:
    differences = keycloak_differences(KEYCLOAK_SHIM)
    assert [(d.setting, d.current, d.managed) for d in differences] == [
        ("consentRequired", "false", "true"),
        ("fullScopeAllowed", "true", "false"),
        ("pkce.code.challenge.method", "unset", "S256"),
    ]
    assert str(differences[0]) == (
        "consentRequired is false, managed clients have true (the user consents to every managed client)"
    )
    attributes: dict[str, str] = {}
    assert conforming_update(KEYCLOAK_SHIM, attributes) == {"consentRequired": True, "fullScopeAllowed": False}
    assert attributes == {"pkce.code.challenge.method": "S256"}
    conforming = {
        **KEYCLOAK_SHIM,
        "consentRequired": True,
        "fullScopeAllowed": False,
        "attributes": {"pkce.code.challenge.method": "S256"},
    }
    assert keycloak_differences(conforming) == ()
    service_only = {**KEYCLOAK_SHIM, "standardFlowEnabled": False, "consentRequired": True, "fullScopeAllowed": False}
    assert keycloak_differences(service_only) == (), "PKCE matters only with the code flow"
    assert unmanaged_from_keycloak(KEYCLOAK_SHIM, "dcr-gateway").differences == differences


def test_hydra_adoption_turns_skip_consent_off_unless_kept() -> None:
    skipping = {**HYDRA_SHIM, "skip_consent": True}
    (difference,) = hydra_differences(skipping)
    assert (difference.setting, difference.current, difference.managed) == ("skip_consent", "true", "false")
    assert unmanaged_from_hydra(skipping).differences == (difference,)
    patch = adoption_patch(skipping, {}, adopted_at=NOW)
    assert {"op": "add", "path": "/skip_consent", "value": False} in patch
    kept = adoption_patch(skipping, {}, adopted_at=NOW, conform=False)
    assert [op["path"] for op in kept] == ["/metadata"]
    assert hydra_differences(HYDRA_SHIM) == ()
