"""Software statements, RFC 7591 section 2.3, verified against configured trusted issuers and keys.

RFC 7591 section 2.3: "A software statement is a JSON Web Token (JWT) [RFC7519] that asserts metadata values
about the client software as a bundle. [...] The software statement MUST be digitally signed or MACed using
JSON Web Signature (JWS) [RFC7515] and MUST contain an "iss" (issuer) claim denoting the party attesting to the
claims in the software statement." and "If the authorization server determines that the claims in a software
statement uniquely identify a piece of software, [...] the values in the software statement MUST take
precedence" (section 3.1.1: over the plain JSON members of the request).

Error codes (section 3.2.2): a statement that is malformed, not a signed JWS, badly signed, expired or not yet
valid is ``invalid_software_statement``; a well-formed one whose ``iss`` is not trusted, or whose ``kid`` names
no key of that issuer, is ``unapproved_software_statement``. ``alg: none`` and symmetric algorithms are never
accepted: trusted keys are public keys, each limited to the algorithms of its type.

Pure functions: the caller passes the clock.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from gateway.access.jose import (
    TimeProblem,
    candidates,
    header_and_claims,
    json_object,
    time_claims_problem,
    verify_signature,
)
from gateway.access.settings import IssuerAccess
from gateway.oauth.errors import InvalidSoftwareStatement, UnapprovedSoftwareStatement

SOFTWARE_STATEMENT = "software_statement"
JWT_CLAIMS = frozenset({"iss", "sub", "aud", "exp", "nbf", "iat", "jti"})
"""RFC 7519 section 4.1 registered claims: about the statement itself, not client metadata."""
MAX_STATEMENT_LENGTH = 16 * 1024
_TIME_PROBLEMS: dict[TimeProblem, str] = {
    "exp": "software_statement: 'exp' must be a NumericDate",
    "expired": "software_statement: expired ('exp')",
    "nbf": "software_statement: not valid yet ('nbf')",
    "iat": "software_statement: issued in the future ('iat')",
}


def verify_software_statement(
    value: object, access: IssuerAccess, *, now: float, audience: str | None = None
) -> dict[str, Any]:
    """The claims of a software statement signed by a trusted issuer's key, checked in this order: shape, the
    issuer, the key, the signature, then ``exp``/``nbf``/``iat`` (section 2.3; ``exp`` honoured when present),
    then ``aud``: a statement naming an audience must name this authorization server's issuer (``audience``),
    RFC 7519 section 4.1.3, so another JWT of the same signer (an ID token, an access token) is not one."""
    if not isinstance(value, str) or not value or len(value) > MAX_STATEMENT_LENGTH:
        raise InvalidSoftwareStatement("software_statement: must be a JWT (a compact JWS string)")
    parsed = header_and_claims(value)
    if parsed is None:
        raise InvalidSoftwareStatement("software_statement: not a compact JWS of a JSON header and JSON claims")
    header, unverified = parsed
    alg = header.get("alg")
    if not isinstance(alg, str) or alg.lower() == "none" or alg.upper().startswith("HS"):
        raise InvalidSoftwareStatement(
            f"software_statement: alg {alg!r} is not accepted; sign with the issuer's private key (RS/PS/ES/EdDSA)"
        )
    iss = unverified.get("iss")
    if not isinstance(iss, str) or not iss:
        raise InvalidSoftwareStatement("software_statement: the 'iss' claim is required (RFC 7591 section 2.3)")
    trusted = access.statement_keys.get(iss)
    if trusted is None:
        raise UnapprovedSoftwareStatement(f"software_statement: issuer {_shown(iss)} is not trusted here")
    kid = header.get("kid")
    if kid is not None and not isinstance(kid, str):
        raise InvalidSoftwareStatement("software_statement: 'kid' must be a string")
    keys = candidates(trusted, alg=alg, kid=kid)
    if not keys:
        which = f"key {_shown(kid)} with alg {alg!r}" if kid is not None else f"alg {alg!r}"
        raise UnapprovedSoftwareStatement(f"software_statement: {which} matches no trusted key of issuer {_shown(iss)}")
    claims = json_object(verify_signature(value, keys, alg))
    if claims is None:
        raise InvalidSoftwareStatement(
            f"software_statement: the signature does not verify with the keys of issuer {_shown(iss)}"
        )

    problem = time_claims_problem(claims, now=now, leeway=access.statement_leeway, require_exp=False)
    if problem is not None:
        raise InvalidSoftwareStatement(_TIME_PROBLEMS[problem])
    if audience is not None and "aud" in claims:
        aud = claims["aud"]
        named = [aud] if isinstance(aud, str) else aud if isinstance(aud, list) else None
        if named is None or audience not in named:
            raise InvalidSoftwareStatement(
                f"software_statement: its 'aud' does not name this authorization server ({audience})"
            )
    return claims


def statement_metadata(claims: Mapping[str, Any]) -> dict[str, Any]:
    """The client metadata a verified statement asserts: its claims minus the JWT's own (``iss``, ``exp``, ...).
    Kept with the client so an RFC 7592 update cannot replace what the statement vouched for."""
    return {name: value for name, value in claims.items() if name not in JWT_CLAIMS | {SOFTWARE_STATEMENT}}


def merge_software_statement(document: Mapping[str, Any], claims: Mapping[str, Any] | None) -> dict[str, Any]:
    """The registration request as validation sees it (RFC 7591 section 3.1.1): the plain JSON members,
    overridden by the statement's metadata claims; the JWT's own claims (``iss``, ``exp``, ...) and the
    ``software_statement`` string itself are not client metadata and are not kept (so not stored)."""
    merged = {name: value for name, value in document.items() if name != SOFTWARE_STATEMENT}
    if claims:
        merged.update(statement_metadata(claims))
    return merged


def _shown(value: str) -> str:
    """A client-chosen value as an error description names it: quoted, and cut short."""
    return repr(value if len(value) <= 100 else value[:100] + "...")
