"""Software statements, RFC 7591 section 2.3: trusted issuers and keys, the two error codes of section 3.2.2,
algorithm confusion, ``exp``, and the precedence of its claims over the request's JSON members."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
from typing import Any

import pytest
from test_access_tokens import compiled, ec_key, jwks, okp_key, public_jwk, rsa_key, sign, unsigned

from gateway.access.settings import IssuerAccess
from gateway.access.software_statement import merge_software_statement, verify_software_statement
from gateway.oauth.errors import InvalidSoftwareStatement, UnapprovedSoftwareStatement

TRUSTED = "https://statements.example.com"
NOW = 1_800_000_000.0
RSA = rsa_key("rsa-1")
EC = ec_key("ec-1")
OKP = okp_key("ed-1")


def trusting(*keys: Any, issuer: str = TRUSTED, leeway: int = 30) -> IssuerAccess:
    return compiled(
        software_statements={
            "trusted_issuers": [{"issuer": issuer, "jwks": jwks(*keys)}],
            "leeway_seconds": leeway,
        }
    )


def statement(**claims: Any) -> dict[str, Any]:
    base: dict[str, Any] = {"iss": TRUSTED, "software_id": "4NRB1-0XZABZI9E6-5SM3R", "client_name": "Example"}
    base.update(claims)
    return {k: v for k, v in base.items() if v is not None}


@pytest.mark.parametrize(
    ("key", "alg"), [(RSA, "RS256"), (RSA, "PS256"), (EC, "ES256"), (OKP, "EdDSA"), (OKP, "Ed25519")]
)
def test_a_statement_signed_by_a_trusted_key_gives_its_claims(key: Any, alg: str) -> None:
    claims = verify_software_statement(sign(statement(), key, alg), trusting(RSA, EC, OKP), now=NOW)
    assert claims["software_id"] == "4NRB1-0XZABZI9E6-5SM3R"
    assert claims["iss"] == TRUSTED


def test_a_statement_without_kid_is_tried_against_the_issuers_keys() -> None:
    other = ec_key("ec-2")
    claims = verify_software_statement(sign(statement(), other, "ES256", kid=None), trusting(EC, other), now=NOW)
    assert claims["client_name"] == "Example"


def test_jwks_from_a_file(tmp_path: Any) -> None:
    path = tmp_path / "trusted.jwks"
    path.write_text(json.dumps(jwks(EC)))
    access = compiled(software_statements={"trusted_issuers": [{"issuer": TRUSTED, "jwks_file": str(path)}]})
    assert verify_software_statement(sign(statement(), EC, "ES256"), access, now=NOW)["iss"] == TRUSTED


# ----------------------------------------------------------------------- unapproved_software_statement


def test_an_untrusted_issuer_is_unapproved() -> None:
    value = sign(statement(iss="https://someone-else.example"), EC, "ES256")
    with pytest.raises(UnapprovedSoftwareStatement, match=r"'https://someone-else\.example' is not trusted") as raised:
        verify_software_statement(value, trusting(EC), now=NOW)
    assert raised.value.error == "unapproved_software_statement"
    assert raised.value.status == 400


def test_a_key_the_issuer_does_not_have_is_unapproved() -> None:
    with pytest.raises(UnapprovedSoftwareStatement, match="key 'ec-9'"):
        verify_software_statement(sign(statement(), ec_key("ec-9"), "ES256"), trusting(EC), now=NOW)


def test_an_algorithm_none_of_the_issuers_keys_is_for_is_unapproved() -> None:
    with pytest.raises(UnapprovedSoftwareStatement, match="alg 'RS256'"):
        verify_software_statement(sign(statement(), RSA, "RS256", kid=None), trusting(EC), now=NOW)


def test_keys_of_one_issuer_do_not_vouch_for_another() -> None:
    access = compiled(
        software_statements={
            "trusted_issuers": [
                {"issuer": TRUSTED, "jwks": jwks(EC)},
                {"issuer": "https://other.example", "jwks": jwks(OKP)},
            ]
        }
    )
    with pytest.raises(UnapprovedSoftwareStatement):
        verify_software_statement(sign(statement(iss="https://other.example"), EC, "ES256"), access, now=NOW)


# -------------------------------------------------------------------------- invalid_software_statement


def test_a_bad_signature_is_invalid() -> None:
    forged = sign(statement(), ec_key("ec-1"), "ES256")  # same kid, other key
    with pytest.raises(InvalidSoftwareStatement, match="signature does not verify") as raised:
        verify_software_statement(forged, trusting(EC), now=NOW)
    assert raised.value.error == "invalid_software_statement"


def test_changed_claims_break_the_signature() -> None:
    header, _, signature = sign(statement(), EC, "ES256").split(".")
    swapped = unsigned({}, statement(grant_types=["client_credentials"])).split(".")[1]
    with pytest.raises(InvalidSoftwareStatement, match="signature"):
        verify_software_statement(f"{header}.{swapped}.{signature}", trusting(EC), now=NOW)


@pytest.mark.parametrize(("signature", "alg"), [("", "none"), ("c2ln", "none"), ("c2ln", "None"), ("c2ln", None)])
def test_unsigned_statements_are_invalid(signature: str, alg: str | None) -> None:
    header = {"alg": alg, "kid": "ec-1"} if alg is not None else {"kid": "ec-1"}
    with pytest.raises(InvalidSoftwareStatement):
        verify_software_statement(unsigned(header, statement(), signature), trusting(EC), now=NOW)


@pytest.mark.parametrize("alg", ["HS256", "HS384", "HS512"])
def test_symmetric_algorithms_are_invalid_even_keyed_with_the_public_key(alg: str) -> None:
    """Alg confusion: an HMAC keyed with the trusted public key's bytes, which anyone can compute."""
    signing_input = unsigned({"alg": alg, "kid": "ec-1"}, statement()).rstrip(".")
    digest = {"HS256": hashlib.sha256, "HS384": hashlib.sha384, "HS512": hashlib.sha512}[alg]
    mac = hmac.new(json.dumps(public_jwk(EC)).encode(), signing_input.encode(), digest).digest()
    value = f"{signing_input}.{base64.urlsafe_b64encode(mac).rstrip(b'=').decode()}"
    with pytest.raises(InvalidSoftwareStatement, match=f"alg '{alg}' is not accepted"):
        verify_software_statement(value, trusting(EC), now=NOW)


@pytest.mark.parametrize(
    ("value", "message"),
    [
        (None, "must be a JWT"),
        (42, "must be a JWT"),
        ({"iss": TRUSTED}, "must be a JWT"),
        ("", "must be a JWT"),
        ("not-a-jwt", "not a compact JWS"),
        ("a.b.c", "not a compact JWS"),
        ("x" * 20_000, "must be a JWT"),
    ],
)
def test_malformed_statements_are_invalid(value: Any, message: str) -> None:
    with pytest.raises(InvalidSoftwareStatement, match=message):
        verify_software_statement(value, trusting(EC), now=NOW)


def test_a_statement_without_iss_is_invalid() -> None:
    with pytest.raises(InvalidSoftwareStatement, match="'iss' claim is required"):
        verify_software_statement(sign(statement(iss=None), EC, "ES256"), trusting(EC), now=NOW)


@pytest.mark.parametrize(
    ("claims", "message"),
    [
        (statement(exp=NOW - 31), "expired"),
        (statement(exp="soon"), "NumericDate"),
        (statement(nbf=NOW + 120), "not valid yet"),
        (statement(iat=NOW + 120), "issued in the future"),
    ],
)
def test_time_claims_are_honoured(claims: dict[str, Any], message: str) -> None:
    with pytest.raises(InvalidSoftwareStatement, match=message):
        verify_software_statement(sign(claims, EC, "ES256"), trusting(EC), now=NOW)


def test_exp_is_optional_and_has_leeway() -> None:
    assert verify_software_statement(sign(statement(), EC, "ES256"), trusting(EC), now=NOW)
    assert verify_software_statement(sign(statement(exp=NOW - 29), EC, "ES256"), trusting(EC), now=NOW)
    with pytest.raises(InvalidSoftwareStatement, match="expired"):
        verify_software_statement(sign(statement(exp=NOW - 1), EC, "ES256"), trusting(EC, leeway=0), now=NOW)


# ------------------------------------------------------------------------------------------ precedence


def test_statement_claims_take_precedence_over_the_request_members() -> None:
    """RFC 7591 section 3.1.1: "the values in the software statement MUST take precedence"."""
    request = {
        "client_name": "Chosen by the client",
        "redirect_uris": ["http://127.0.0.1:3000/callback"],
        "grant_types": ["authorization_code"],
        "software_statement": "eyJ...",
    }
    claims = {
        "iss": TRUSTED,
        "exp": NOW + 60,
        "iat": NOW,
        "jti": "s-1",
        "sub": "software",
        "aud": "x",
        "nbf": NOW,
        "client_name": "Attested name",
        "software_id": "sw-1",
        "grant_types": ["authorization_code", "refresh_token"],
    }
    merged = merge_software_statement(request, claims)
    assert merged == {
        "client_name": "Attested name",
        "redirect_uris": ["http://127.0.0.1:3000/callback"],
        "grant_types": ["authorization_code", "refresh_token"],
        "software_id": "sw-1",
    }


def test_without_claims_only_the_statement_string_is_dropped() -> None:
    assert merge_software_statement({"client_name": "a", "software_statement": "x"}, None) == {"client_name": "a"}
    assert merge_software_statement({"client_name": "a"}, None) == {"client_name": "a"}
