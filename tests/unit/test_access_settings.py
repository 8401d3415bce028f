"""Access-control settings: modes need what they verify, keys and hashes are checked at load time (never a
private or symmetric trusted key, never a plain token), and per-issuer overrides by path or key."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from pydantic import ValidationError
from test_access_tokens import HS256_SECRET, ec_key, jwks, okp_key, public_jwk, rsa_key

from gateway.access.settings import AccessMode, AccessSettings, IssuerAccessSettings
from gateway.access.tokens import hash_initial_access_token
from gateway.settings import Settings

STATIC_HASH = hash_initial_access_token("a-static-token")
TRUSTED = {"issuer": "https://statements.example.com", "jwks": jwks(ec_key())}


def test_the_default_is_open_with_nothing_configured() -> None:
    access = Settings().access.for_issuer(key="default", path="")
    assert access.mode is AccessMode.OPEN
    assert not access.accepts_initial_access_tokens
    assert not access.accepts_software_statements


@pytest.mark.parametrize(
    ("settings", "message"),
    [
        ({"mode": "initial_access_token"}, "needs initial_access_tokens"),
        ({"mode": "software_statement"}, "needs software_statements.trusted_issuers"),
        (
            {
                "mode": "initial_access_token_and_software_statement",
                "initial_access_tokens": {"static_token_hashes": [STATIC_HASH]},
            },
            "needs software_statements",
        ),
        ({"mode": "initial_access_token_or_software_statement"}, "initial_access_tokens or software_statements"),
        ({"mode": "closed"}, "mode"),
    ],
)
def test_a_mode_needs_what_it_verifies(settings: dict[str, Any], message: str) -> None:
    with pytest.raises(ValidationError, match=message):
        IssuerAccessSettings.model_validate(settings)


@pytest.mark.parametrize(
    ("value", "message"),
    [
        ("a-static-token", "must be 'sha256:<base64url>'"),
        ("sha256:", "must be 'sha256:<base64url>'"),
        ("md5:" + STATIC_HASH.split(":")[1], "must be 'sha256:<base64url>'"),
        ("sha256:not*base64", "not base64url"),
        ("sha256:YWJj", "32 bytes, this one 3"),
    ],
)
def test_static_tokens_are_configured_by_their_hash_only(value: str, message: str) -> None:
    with pytest.raises(ValidationError, match=message):
        IssuerAccessSettings.model_validate({"initial_access_tokens": {"static_token_hashes": [value]}})


def test_an_hs256_secret_must_have_256_bits() -> None:
    with pytest.raises(ValidationError, match="at least 32 bytes"):
        IssuerAccessSettings.model_validate({"initial_access_tokens": {"hs256_secret": "short"}})


def test_the_hs256_secret_never_prints() -> None:
    settings = IssuerAccessSettings.model_validate({"initial_access_tokens": {"hs256_secret": HS256_SECRET}})
    assert HS256_SECRET not in repr(settings)
    assert HS256_SECRET not in str(settings.model_dump())


@pytest.mark.parametrize(
    ("jwk", "message"),
    [
        (ec_key().as_dict(private=True), "private key material"),
        ({"kty": "oct", "k": "c2VjcmV0"}, "symmetric"),
        (public_jwk(ec_key(), use="enc"), "use 'sig'"),
        (public_jwk(rsa_key()), "cannot be used"),  # initial access tokens: ES256 / EdDSA only
        (public_jwk(ec_key(), alg="ES384"), "cannot be used"),
        ({"kty": "EC", "crv": "P-256", "x": "AAAA", "y": "AAAA"}, "not a valid JWK"),
        ("not a jwk", "JWK"),
    ],
)
def test_initial_access_token_keys_must_be_public_es256_or_eddsa(jwk: Any, message: str) -> None:
    with pytest.raises(ValidationError, match=message):
        IssuerAccessSettings.model_validate({"initial_access_tokens": {"jwks": {"keys": [jwk]}}})


def test_a_single_jwk_or_a_set_are_both_accepted() -> None:
    key = okp_key()
    single = IssuerAccessSettings.model_validate({"initial_access_tokens": {"jwks": public_jwk(key)}})
    assert single.compiled.token_keys[0].algorithms == frozenset({"EdDSA", "Ed25519"})
    with pytest.raises(ValidationError, match="non-empty array"):
        IssuerAccessSettings.model_validate({"initial_access_tokens": {"jwks": {"keys": []}}})


@pytest.mark.parametrize(
    ("jwk", "message"),
    [
        (rsa_key().as_dict(private=True), "private key material"),
        ({"kty": "oct", "k": "c2VjcmV0", "alg": "HS256"}, "symmetric"),
    ],
)
def test_trusted_statement_keys_must_be_public(jwk: dict[str, Any], message: str) -> None:
    trusted = {"issuer": "https://s.example", "jwks": {"keys": [jwk]}}
    with pytest.raises(ValidationError, match=message):
        IssuerAccessSettings.model_validate({"software_statements": {"trusted_issuers": [trusted]}})


def test_a_trusted_issuer_has_exactly_one_key_source(tmp_path: Path) -> None:
    with pytest.raises(ValidationError, match="exactly one of jwks, jwks_file"):
        IssuerAccessSettings.model_validate({"software_statements": {"trusted_issuers": [{"issuer": "x"}]}})
    path = tmp_path / "k.json"
    path.write_text(json.dumps(jwks(ec_key())))
    both = {"issuer": "x", "jwks": jwks(ec_key()), "jwks_file": str(path)}
    with pytest.raises(ValidationError, match="exactly one of jwks, jwks_file"):
        IssuerAccessSettings.model_validate({"software_statements": {"trusted_issuers": [both]}})


def test_a_trusted_issuer_is_listed_once() -> None:
    with pytest.raises(ValidationError, match="listed twice"):
        IssuerAccessSettings.model_validate({"software_statements": {"trusted_issuers": [TRUSTED, TRUSTED]}})


def test_key_files_are_read_at_load_time(tmp_path: Path) -> None:
    missing = tmp_path / "missing.json"
    with pytest.raises(ValidationError, match="cannot read"):
        IssuerAccessSettings.model_validate({"initial_access_tokens": {"jwks_file": str(missing)}})
    broken = tmp_path / "broken.json"
    broken.write_text("{not json")
    with pytest.raises(ValidationError, match="not valid JSON"):
        IssuerAccessSettings.model_validate({"initial_access_tokens": {"jwks_file": str(broken)}})
    good = tmp_path / "good.json"
    good.write_text(json.dumps(jwks(ec_key("from-file"))))
    settings = IssuerAccessSettings.model_validate({"initial_access_tokens": {"jwks_file": str(good)}})
    assert [k.kid for k in settings.compiled.token_keys] == ["from-file"]


# ------------------------------------------------------------------------------------------ overrides


def overridden() -> AccessSettings:
    return AccessSettings.model_validate(
        {
            "mode": "open",
            "initial_access_tokens": {"static_token_hashes": [STATIC_HASH]},
            "issuers": {
                "/realms/partners": {"mode": "initial_access_token"},
                "internal": {"mode": "software_statement", "software_statements": {"trusted_issuers": [TRUSTED]}},
                "/realms/both": {"mode": "open"},
                "both": {"mode": "initial_access_token"},
            },
        }
    )


def test_overrides_apply_by_issuer_path_or_adapter_key_and_inherit_the_rest() -> None:
    settings = overridden()
    partners = settings.for_issuer(key="partners", path="/realms/partners")
    assert partners.mode is AccessMode.INITIAL_ACCESS_TOKEN
    assert partners.static_token_digests  # inherited from the default
    internal = settings.for_issuer(key="internal", path="/realms/internal")
    assert internal.mode is AccessMode.SOFTWARE_STATEMENT
    assert list(internal.statement_keys) == ["https://statements.example.com"]
    assert internal.static_token_digests  # inherited
    assert settings.for_issuer(key="mcp", path="/realms/mcp").mode is AccessMode.OPEN


def test_the_path_wins_over_the_key() -> None:
    assert overridden().for_issuer(key="both", path="/realms/both").mode is AccessMode.OPEN


def test_a_root_issuer_is_named_by_slash() -> None:
    settings = AccessSettings.model_validate(
        {
            "issuers": {
                "/": {"mode": "initial_access_token", "initial_access_tokens": {"static_token_hashes": [STATIC_HASH]}}
            }
        }
    )
    assert settings.for_issuer(key="default", path="").mode is AccessMode.INITIAL_ACCESS_TOKEN


def test_an_override_is_checked_like_the_default() -> None:
    with pytest.raises(ValidationError, match=r"issuers\['partners'\]: .*needs initial_access_tokens"):
        AccessSettings.model_validate({"issuers": {"partners": {"mode": "initial_access_token"}}})


def test_overrides_naming_no_served_issuer_are_reported() -> None:
    served = [("partners", "/realms/partners"), ("internal", "/realms/internal")]
    assert overridden().unknown_overrides(served) == ["/realms/both", "both"]


def test_settings_from_environment_variables(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DCR_ACCESS__MODE", "initial_access_token")
    monkeypatch.setenv("DCR_ACCESS__INITIAL_ACCESS_TOKENS__STATIC_TOKEN_HASHES", json.dumps([STATIC_HASH]))
    monkeypatch.setenv("DCR_ACCESS__INITIAL_ACCESS_TOKENS__HS256_SECRET", HS256_SECRET)
    monkeypatch.setenv("DCR_ACCESS__ISSUERS__PUBLIC__MODE", "open")
    settings = Settings()
    assert settings.access.for_issuer(key="mcp", path="/realms/mcp").mode is AccessMode.INITIAL_ACCESS_TOKEN
    assert settings.access.for_issuer(key="public", path="/realms/public").mode is AccessMode.OPEN
    assert len(settings.access.compiled.token_keys) == 1


def test_settings_from_a_toml_file(tmp_path: Path) -> None:
    from gateway.settings import load_settings

    path = tmp_path / "gateway.toml"
    path.write_text(
        f"""
[access]
mode = "open"
[access.initial_access_tokens]
static_token_hashes = ["{STATIC_HASH}"]
[access.issuers."/realms/partners"]
mode = "initial_access_token"
[[access.issuers."/realms/partners".software_statements.trusted_issuers]]
issuer = "https://statements.example.com"
jwks = {json.dumps(jwks(ec_key())).replace('":', '" =')}
"""
    )
    settings = load_settings(str(path))
    partners = settings.access.for_issuer(key="partners", path="/realms/partners")
    assert partners.mode is AccessMode.INITIAL_ACCESS_TOKEN
    assert list(partners.statement_keys) == ["https://statements.example.com"]


def test_a_configuration_error_never_prints_the_hs256_secret(monkeypatch: pytest.MonkeyPatch) -> None:
    secret = "too-short-but-secret"
    monkeypatch.setenv("DCR_ACCESS__INITIAL_ACCESS_TOKENS__HS256_SECRET", secret)
    with pytest.raises(ValidationError) as raised:
        Settings()
    assert "at least 32 bytes" in str(raised.value)
    assert secret not in str(raised.value)
