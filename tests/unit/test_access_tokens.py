"""Initial access tokens (RFC 7591 section 3) as Bearer tokens (RFC 6750 section 2.1): header parsing, static
tokens by hash, signed tokens (HS256, ES256, EdDSA) with their claims, and algorithm confusion.

The key helpers here are shared by the other tests/unit/test_access*.py modules.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import time
import warnings
from typing import Any

import pytest
from joserfc import jws
from joserfc.errors import SecurityWarning
from joserfc.jwk import ECKey, Key, OctKey, OKPKey, RSAKey

from gateway.access.settings import IssuerAccess, IssuerAccessSettings
from gateway.access.tokens import (
    TOKEN_TYPE,
    InitialAccessToken,
    hash_initial_access_token,
    mint_initial_access_token,
    new_static_token,
    verify_initial_access_token,
)
from gateway.oauth.errors import InvalidToken

ISSUER = "http://gateway.test/realms/mcp"
HS256_SECRET = "an-hs256-secret-of-at-least-32-bytes!!"
NOW = 1_800_000_000.0

# ------------------------------------------------------------------------------------------- helpers


def ec_key(kid: str = "ec-1") -> ECKey:
    return ECKey.import_key({**ECKey.generate_key("P-256").as_dict(private=True), "kid": kid})


def okp_key(kid: str = "ed-1") -> OKPKey:
    return OKPKey.import_key({**OKPKey.generate_key("Ed25519").as_dict(private=True), "kid": kid})


def rsa_key(kid: str = "rsa-1") -> RSAKey:
    return RSAKey.import_key({**RSAKey.generate_key(2048).as_dict(private=True), "kid": kid})


def public_jwk(key: Key, **extra: Any) -> dict[str, Any]:
    return {**key.as_dict(private=False), **extra}


def jwks(*keys: Key) -> dict[str, Any]:
    return {"keys": [public_jwk(key) for key in keys]}


def sign(claims: dict[str, Any], key: Key, alg: str, **header: Any) -> str:
    """A compact JWS over ``claims`` with ``alg`` (and the key's kid unless ``kid=None`` is given)."""
    protected: dict[str, Any] = {"alg": alg}
    kid = header.pop("kid", key.kid)
    if kid is not None:
        protected["kid"] = kid
    protected.update(header)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", SecurityWarning)
        return jws.serialize_compact(protected, json.dumps(claims), key, algorithms=[alg])


def unsigned(header: dict[str, Any], claims: dict[str, Any], signature: str = "") -> str:
    def b64(value: dict[str, Any]) -> str:
        return base64.urlsafe_b64encode(json.dumps(value).encode()).rstrip(b"=").decode()

    return f"{b64(header)}.{b64(claims)}.{signature}"


def compiled(**settings: Any) -> IssuerAccess:
    return IssuerAccessSettings.model_validate(settings).compiled


def iat_claims(**overrides: Any) -> dict[str, Any]:
    claims: dict[str, Any] = {"aud": ISSUER, "exp": NOW + 600, "iat": NOW, "jti": "token-1"}
    claims.update(overrides)
    return {k: v for k, v in claims.items() if v is not None}


def verify(token: str, access: IssuerAccess, now: float = NOW) -> InitialAccessToken:
    return verify_initial_access_token(token, access, audience=ISSUER, now=now)


# --------------------------------------------------------------------------------------- static tokens


def test_a_static_token_is_accepted_by_its_hash_only() -> None:
    token, stored = new_static_token()
    assert stored == hash_initial_access_token(token)
    assert stored.startswith("sha256:")
    assert token not in stored
    access = compiled(initial_access_tokens={"static_token_hashes": [hash_initial_access_token("other"), stored]})
    assert verify(token, access) == InitialAccessToken(kind="static")
    with pytest.raises(InvalidToken, match="not valid"):
        verify(token + "x", access)


def test_hash_is_sha256_base64url_without_padding() -> None:
    # SHA-256("abc") = ba7816bf...15ad
    assert hash_initial_access_token("abc") == "sha256:ungWv48Bz-pBQUDeXa4iI7ADYaOWF3qctBD_YfIAFa0"


# --------------------------------------------------------------------------------------- signed tokens


def test_hs256_token_is_accepted_and_carries_jti_exp_and_max_uses() -> None:
    access = compiled(initial_access_tokens={"hs256_secret": HS256_SECRET})
    token = mint_initial_access_token(
        OctKey.import_key(HS256_SECRET.encode()), "HS256", audience=ISSUER, expires_in=600, max_uses=3, now=NOW
    )
    verified = verify(token, access)
    assert verified.kind == "signed"
    assert verified.max_uses == 3
    assert verified.expires_at == NOW + 600
    assert verified.jti


@pytest.mark.parametrize(("make_key", "alg"), [(ec_key, "ES256"), (okp_key, "EdDSA"), (okp_key, "Ed25519")])
def test_asymmetric_tokens_verify_with_the_configured_public_key(make_key: Any, alg: str) -> None:
    key = make_key()
    access = compiled(initial_access_tokens={"jwks": jwks(key)})
    token = mint_initial_access_token(key, alg, audience=ISSUER, expires_in=60, jti="j-1", kid=key.kid, now=NOW)
    assert verify(token, access) == InitialAccessToken(kind="signed", jti="j-1", expires_at=NOW + 60)


def test_a_token_without_kid_is_tried_against_every_key_of_its_algorithm() -> None:
    first, second = ec_key("a"), ec_key("b")
    access = compiled(initial_access_tokens={"jwks": jwks(first, second)})
    token = sign({**iat_claims()}, second, "ES256", kid=None, typ=TOKEN_TYPE)
    assert verify(token, access).jti == "token-1"


def test_the_cli_mint_uses_wall_clock_time() -> None:
    access = compiled(initial_access_tokens={"hs256_secret": HS256_SECRET})
    token = mint_initial_access_token(OctKey.import_key(HS256_SECRET.encode()), "HS256", audience=ISSUER, expires_in=60)
    assert verify(token, access, now=time.time()).kind == "signed"


@pytest.mark.parametrize(
    ("claims", "now", "message"),
    [
        (iat_claims(exp=NOW - 31), NOW, "has expired"),
        (iat_claims(exp=None), NOW, "no numeric 'exp'"),
        (iat_claims(exp="tomorrow"), NOW, "no numeric 'exp'"),
        (iat_claims(exp=True), NOW, "no numeric 'exp'"),
        (iat_claims(nbf=NOW + 120), NOW, "not valid yet"),
        (iat_claims(iat=NOW + 120), NOW, "issued in the future"),
        (iat_claims(aud=None), NOW, "not valid for this issuer"),
        (iat_claims(aud="http://gateway.test/realms/other"), NOW, "not valid for this issuer"),
        (iat_claims(aud=["http://elsewhere"]), NOW, "not valid for this issuer"),
        (iat_claims(jti=None), NOW, "no 'jti'"),
        (iat_claims(jti=""), NOW, "no 'jti'"),
        (iat_claims(jti=7), NOW, "no 'jti'"),
        (iat_claims(max_uses=0), NOW, "positive integer"),
        (iat_claims(max_uses="2"), NOW, "positive integer"),
        (iat_claims(max_uses=True), NOW, "positive integer"),
        (iat_claims(max_uses=1.5), NOW, "positive integer"),
    ],
)
def test_signed_token_claims_are_enforced(claims: dict[str, Any], now: float, message: str) -> None:
    key = OctKey.import_key(HS256_SECRET.encode())
    access = compiled(initial_access_tokens={"hs256_secret": HS256_SECRET})
    with pytest.raises(InvalidToken, match=message) as raised:
        verify(sign(claims, key, "HS256", typ=TOKEN_TYPE), access, now=now)
    assert raised.value.status == 401


def test_expiry_allows_the_configured_leeway() -> None:
    key = OctKey.import_key(HS256_SECRET.encode())
    access = compiled(initial_access_tokens={"hs256_secret": HS256_SECRET, "leeway_seconds": 30})
    token = sign(iat_claims(exp=NOW - 29), key, "HS256", typ=TOKEN_TYPE)
    assert verify(token, access).kind == "signed"
    strict = compiled(initial_access_tokens={"hs256_secret": HS256_SECRET, "leeway_seconds": 0})
    with pytest.raises(InvalidToken, match="expired"):
        verify(token, strict)


def test_an_audience_list_containing_the_issuer_is_accepted() -> None:
    key = OctKey.import_key(HS256_SECRET.encode())
    access = compiled(initial_access_tokens={"hs256_secret": HS256_SECRET})
    token = sign(iat_claims(aud=["http://other", ISSUER]), key, "HS256", typ=TOKEN_TYPE)
    assert verify(token, access).kind == "signed"


@pytest.mark.parametrize("typ", [None, "JWT", "at+jwt"])
def test_a_jwt_without_the_initial_access_token_type_is_refused(typ: str | None) -> None:
    """RFC 8725 section 3.11: another JWT signed with the same key (e.g. a software statement) is no token."""
    key = OctKey.import_key(HS256_SECRET.encode())
    access = compiled(initial_access_tokens={"hs256_secret": HS256_SECRET})
    header = {"typ": typ} if typ else {}
    with pytest.raises(InvalidToken, match="'typ'"):
        verify(sign(iat_claims(), key, "HS256", **header), access)


@pytest.mark.parametrize(("signature", "message"), [("", "not a compact JWS"), ("c2ln", "algorithm or key")])
def test_alg_none_is_refused(signature: str, message: str) -> None:
    access = compiled(initial_access_tokens={"hs256_secret": HS256_SECRET, "jwks": jwks(ec_key())})
    token = unsigned({"alg": "none", "typ": TOKEN_TYPE}, iat_claims(), signature)
    with pytest.raises(InvalidToken, match=message):
        verify(token, access)


def test_hs256_signed_with_the_public_key_is_refused_alg_confusion() -> None:
    """The classic confusion: the public key's bytes used as an HMAC secret. Only an ``hs256_secret`` verifies
    HS256; a public key never does."""
    key = ec_key()
    access = compiled(initial_access_tokens={"jwks": jwks(key)})
    for secret in (json.dumps(public_jwk(key)).encode(), key.as_pem(private=False)):
        signing_input = unsigned({"alg": "HS256", "typ": TOKEN_TYPE, "kid": key.kid}, iat_claims()).rstrip(".")
        mac = hmac.new(secret, signing_input.encode(), hashlib.sha256).digest()
        token = f"{signing_input}.{base64.urlsafe_b64encode(mac).rstrip(b'=').decode()}"
        with pytest.raises(InvalidToken, match="algorithm or key not accepted"):
            verify(token, access)


def test_es256_token_is_refused_when_only_a_secret_is_configured() -> None:
    access = compiled(initial_access_tokens={"hs256_secret": HS256_SECRET})
    token = sign(iat_claims(), ec_key(), "ES256", typ=TOKEN_TYPE)
    with pytest.raises(InvalidToken, match="algorithm or key not accepted"):
        verify(token, access)


def test_a_token_signed_by_another_key_or_tampered_with_is_refused() -> None:
    trusted = ec_key("k")
    access = compiled(initial_access_tokens={"jwks": jwks(trusted)})
    forged = sign(iat_claims(), ec_key("k"), "ES256", typ=TOKEN_TYPE)
    with pytest.raises(InvalidToken, match="bad signature"):
        verify(forged, access)
    genuine = sign(iat_claims(max_uses=1), trusted, "ES256", typ=TOKEN_TYPE)
    header, _, signature = genuine.split(".")
    tampered = unsigned({}, iat_claims(max_uses=1000)).split(".")[1]
    with pytest.raises(InvalidToken, match="bad signature"):
        verify(f"{header}.{tampered}.{signature}", access)


def test_a_kid_that_names_no_configured_key_is_refused() -> None:
    key = ec_key("known")
    access = compiled(initial_access_tokens={"jwks": jwks(key)})
    token = sign(iat_claims(), key, "ES256", kid="unknown", typ=TOKEN_TYPE)
    with pytest.raises(InvalidToken, match="algorithm or key not accepted"):
        verify(token, access)


@pytest.mark.parametrize("token", ["a.b.c", "....", "e30.e30.", "bm90IGpzb24.e30.c2ln", "W10.e30.c2ln"])
def test_garbage_shaped_like_a_jwt_is_invalid_not_an_error(token: str) -> None:
    access = compiled(initial_access_tokens={"hs256_secret": HS256_SECRET})
    with pytest.raises(InvalidToken):
        verify(token, access)


def test_no_description_repeats_the_token() -> None:
    key = OctKey.import_key(HS256_SECRET.encode())
    access = compiled(initial_access_tokens={"hs256_secret": HS256_SECRET})
    token = sign(iat_claims(exp=NOW - 3600), key, "HS256", typ=TOKEN_TYPE)
    with pytest.raises(InvalidToken) as raised:
        verify(token, access)
    for part in token.split("."):
        assert part not in raised.value.description
