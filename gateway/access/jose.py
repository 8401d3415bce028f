"""JOSE for initial access tokens and software statements: verification keys (RFC 7517 JWKs, RFC 7518
algorithms) and compact JWS parsing (RFC 7515 section 7.1).

Pure functions, run when the settings are loaded, so a bad key stops the gateway at start-up rather than
failing registrations later. Each key carries the JWS algorithms it may verify, derived from its type and
curve (narrowed by its ``alg`` member, if any): the ``alg`` a token names is only ever checked against that
set, so a token cannot pick an algorithm its key was not meant for (``none``, or HS256 over a public key:
RFC 8725 sections 2.1 and 3.1).
"""

from __future__ import annotations

import base64
import json
import re
import warnings
from collections.abc import Collection, Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from joserfc import jws
from joserfc.errors import JoseError, SecurityWarning
from joserfc.jwk import ECKey, JWKRegistry, Key, OctKey, OKPKey, RSAKey

RSA_ALGORITHMS = frozenset({"RS256", "RS384", "RS512", "PS256", "PS384", "PS512"})
EC_ALGORITHMS = {"P-256": "ES256", "P-384": "ES384", "P-521": "ES512"}
OKP_ALGORITHMS = {"Ed25519": frozenset({"EdDSA", "Ed25519"}), "Ed448": frozenset({"EdDSA", "Ed448"})}
"""``EdDSA`` (RFC 8037) and the fully specified ``Ed25519``/``Ed448`` (RFC 9864) both verify OKP keys."""
HS256_MIN_SECRET_BYTES = 32
"""RFC 7518 section 3.2: "A key of the same size as the hash output (for instance, 256 bits for "HS256") or
larger MUST be used with this algorithm." """
PRIVATE_MEMBERS = frozenset({"d", "p", "q", "dp", "dq", "qi", "oth", "k"})


class KeyConfigError(ValueError):
    """A configured key cannot be used; the message names which one and why (never its secret parts)."""


@dataclass(frozen=True)
class VerificationKey:
    """A public key (or, for HS256 initial access tokens only, a shared secret) and what it may verify."""

    key: Key
    algorithms: frozenset[str]
    kid: str | None = None


def algorithms_for(jwk: Mapping[str, Any]) -> frozenset[str]:
    """The asymmetric JWS algorithms a public JWK can verify (RFC 7518 section 3.1, RFC 8037 section 3.1)."""
    kty = jwk.get("kty")
    if kty == "RSA":
        candidates = RSA_ALGORITHMS
    elif kty == "EC" and jwk.get("crv") in EC_ALGORITHMS:
        candidates = frozenset({EC_ALGORITHMS[jwk["crv"]]})
    elif kty == "OKP" and jwk.get("crv") in OKP_ALGORITHMS:
        candidates = OKP_ALGORITHMS[jwk["crv"]]
    else:
        return frozenset()
    alg = jwk.get("alg")
    return candidates & {alg} if alg is not None else candidates


def public_key(jwk: Mapping[str, Any], *, where: str, allowed: Collection[str] | None = None) -> VerificationKey:
    """One public signature-verification JWK, refused when it is private, symmetric, not for signatures, of an
    unusable type, or (``allowed``) cannot verify any of the allowed algorithms."""
    if not isinstance(jwk, Mapping):
        raise KeyConfigError(f"{where}: must be a JWK (a JSON object)")
    if jwk.get("kty") == "oct" or "k" in jwk:
        raise KeyConfigError(f"{where}: symmetric keys cannot be published as trusted keys; use a public key")
    if PRIVATE_MEMBERS & jwk.keys():
        raise KeyConfigError(f"{where}: holds private key material; configure the public key only")
    if jwk.get("use", "sig") != "sig":
        raise KeyConfigError(f"{where}: 'use' is {jwk.get('use')!r}; a verification key must have use 'sig'")
    algorithms = algorithms_for(jwk)
    if allowed is not None:
        algorithms &= frozenset(allowed)
    if not algorithms:
        expected = ", ".join(sorted(allowed)) if allowed is not None else "RSA, EC P-256/384/521, OKP Ed25519/Ed448"
        raise KeyConfigError(
            f"{where}: kty {jwk.get('kty')!r} crv {jwk.get('crv')!r} alg {jwk.get('alg')!r} cannot be used "
            f"(allowed: {expected})"
        )
    try:
        key = JWKRegistry.import_key(dict(jwk))
    except (JoseError, ValueError, TypeError) as exc:
        raise KeyConfigError(f"{where}: not a valid JWK ({type(exc).__name__})") from None
    if not isinstance(key, RSAKey | ECKey | OKPKey) or key.is_private:
        raise KeyConfigError(f"{where}: not a public RSA, EC or OKP key")
    kid = jwk.get("kid")
    return VerificationKey(key=key, algorithms=algorithms, kid=kid if isinstance(kid, str) else None)


def jwk_set_members(document: Any, *, where: str) -> list[Any]:
    """The keys of a JWK Set (``{"keys": [...]}``, RFC 7517 section 5) or of a single JWK."""
    if isinstance(document, Mapping) and "keys" in document:
        keys = document["keys"]
        if not isinstance(keys, list) or not keys:
            raise KeyConfigError(f"{where}: 'keys' must be a non-empty array of JWKs")
        return keys
    if isinstance(document, Mapping) and "kty" in document:
        return [document]
    raise KeyConfigError(f"{where}: must be a JWK Set ({{'keys': [...]}}) or a JWK")


def read_jwks_file(path: Path, *, where: str) -> Any:
    """A JWK Set file's JSON (read once, at start-up)."""
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise KeyConfigError(f"{where}: cannot read {str(path)!r} ({exc.strerror or type(exc).__name__})") from None
    except ValueError:
        raise KeyConfigError(f"{where}: {str(path)!r} is not valid JSON") from None


def public_keys(document: Any, *, where: str, allowed: Collection[str] | None = None) -> tuple[VerificationKey, ...]:
    """Every key of a configured JWK Set, each checked by :func:`public_key`."""
    members = jwk_set_members(document, where=where)
    return tuple(public_key(jwk, where=f"{where}.keys[{i}]", allowed=allowed) for i, jwk in enumerate(members))


def hs256_key(secret: str, *, where: str) -> VerificationKey:
    """The shared secret of HS256-signed initial access tokens (RFC 7518 section 3.2: at least 256 bits)."""
    raw = secret.encode("utf-8")
    if len(raw) < HS256_MIN_SECRET_BYTES:
        raise KeyConfigError(f"{where}: an HS256 secret must be at least {HS256_MIN_SECRET_BYTES} bytes")
    return VerificationKey(key=OctKey.import_key(raw), algorithms=frozenset({"HS256"}))


def candidates(keys: Iterable[VerificationKey], *, alg: str, kid: str | None) -> list[VerificationKey]:
    """The keys that may verify a JWS with header ``alg`` and ``kid`` (RFC 7515 section 4.1.4: a ``kid``
    selects the key; without one every key able to verify ``alg`` is tried)."""
    return [k for k in keys if alg in k.algorithms and (kid is None or k.kid == kid)]


def verify_signature(token: str, keys: Iterable[VerificationKey], alg: str) -> bytes | None:
    """The payload of compact JWS ``token`` if one of ``keys`` verifies it with ``alg``, else ``None``.
    ``alg`` is passed as the only allowed algorithm, so joserfc refuses any other in the header."""
    for candidate in keys:
        if alg not in candidate.algorithms:
            continue
        try:
            with warnings.catch_warnings():
                # "EdDSA is deprecated via RFC 9864": still what most signers emit; Ed25519 is accepted too.
                warnings.simplefilter("ignore", SecurityWarning)
                return jws.deserialize_compact(token, candidate.key, algorithms=[alg]).payload
        except (JoseError, ValueError, TypeError):
            continue
    return None


def header_and_claims(token: str) -> tuple[dict[str, Any], dict[str, Any]] | None:
    """The JOSE header and the claims of a compact JWS (RFC 7515 section 7.1), *unverified*: used to pick the
    keys; nothing in them is trusted before the signature is checked. ``None`` when not a compact JWS of two
    JSON objects."""
    parts = token.split(".")
    if len(parts) != 3 or not all(parts):
        return None
    header = json_object(_b64url(parts[0]))
    claims = json_object(_b64url(parts[1]))
    if header is None or claims is None:
        return None
    return header, claims


def json_object(raw: bytes | None) -> dict[str, Any] | None:
    """``raw`` parsed as a JSON object, else ``None``."""
    if raw is None:
        return None
    try:
        value = json.loads(raw)
    except (ValueError, RecursionError):
        return None
    return value if isinstance(value, dict) else None


def numeric_claim(claims: Mapping[str, Any], name: str) -> float | None:
    """A NumericDate claim (RFC 7519 section 2), ``None`` when absent or not a number."""
    value = claims.get(name)
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    return float(value)


TimeProblem = Literal["exp", "expired", "nbf", "iat"]


def time_claims_problem(
    claims: Mapping[str, Any], *, now: float, leeway: float, require_exp: bool
) -> TimeProblem | None:
    """Which time claim (RFC 7519 sections 4.1.4 to 4.1.6) rejects a JWT at ``now``, allowing ``leeway`` seconds of
    clock skew: ``"exp"`` when it is not a NumericDate (or absent and ``require_exp``), ``"expired"``, ``"nbf"``
    (not valid yet) or ``"iat"`` (issued in the future); ``None`` when they all hold. A non-numeric ``nbf`` or
    ``iat`` is ignored."""
    if require_exp or "exp" in claims:
        exp = numeric_claim(claims, "exp")
        if exp is None:
            return "exp"
        if now > exp + leeway:
            return "expired"
    nbf = numeric_claim(claims, "nbf")
    if nbf is not None and now + leeway < nbf:
        return "nbf"
    iat = numeric_claim(claims, "iat")
    if iat is not None and now + leeway < iat:
        return "iat"
    return None


def _b64url(segment: str) -> bytes | None:
    if not re.fullmatch(r"[A-Za-z0-9_-]+", segment):
        return None
    try:
        return base64.urlsafe_b64decode(segment + "=" * (-len(segment) % 4))
    except (ValueError, TypeError):
        return None
