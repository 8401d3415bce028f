"""What a registration must satisfy before it reaches a provider: RFC 7591 section 2 parsing here, and the
policy (defaults, the gateway's safe rules, the deployment's configured policy) in :mod:`gateway.policy`.

:func:`parse_metadata` turns a JSON object into :class:`~gateway.oauth.metadata.ClientMetadata`, mapping shape
errors to RFC 7591 section 3.2.2 errors that name the field. The names below ``parse_metadata`` are re-exported
from :mod:`gateway.policy`, where the rules live, so importers of this module keep working.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from pydantic import ValidationError

from gateway.oauth.errors import InvalidClientMetadata, InvalidRedirectUri, OAuthError
from gateway.oauth.metadata import ClientMetadata
from gateway.policy.rules import (
    GATEWAY_AUTH_METHODS,
    GATEWAY_GRANT_TYPES,
    PRIVATE_JWK_MEMBERS,
    RULES,
    RegistrationPolicy,
    Rule,
    apply_defaults,
    check_public_jwk,
    validate,
)
from gateway.policy.uris import (
    FORBIDDEN_SCHEMES,
    check_redirect_uri,
    check_web_uri,
    is_loopback_host,
    is_loopback_ip,
    is_public_host,
)

__all__ = [
    "FORBIDDEN_SCHEMES",
    "GATEWAY_AUTH_METHODS",
    "GATEWAY_GRANT_TYPES",
    "PRIVATE_JWK_MEMBERS",
    "RULES",
    "RegistrationPolicy",
    "Rule",
    "apply_defaults",
    "check_public_jwk",
    "check_redirect_uri",
    "check_web_uri",
    "is_loopback_host",
    "is_loopback_ip",
    "is_public_host",
    "parse_metadata",
    "validate",
]


def parse_metadata(document: Mapping[str, Any]) -> ClientMetadata:
    """Turn a JSON object into :class:`ClientMetadata` (RFC 7591 section 2: unknown members dropped), mapping
    shape errors to RFC 7591 section 3.2.2 errors naming the member."""
    try:
        return ClientMetadata.model_validate(dict(document))
    except ValidationError as exc:
        first = exc.errors()[0]
        loc = first.get("loc", ())
        name = str(loc[0]) if loc else "body"
        where = name + "".join(f"[{part}]" if isinstance(part, int) else f".{part}" for part in loc[1:])
        expected = _expected_shape(name)
        error_class: type[OAuthError] = InvalidRedirectUri if name == "redirect_uris" else InvalidClientMetadata
        raise error_class(f"{where}: must be {expected}") from None


def _expected_shape(name: str) -> str:
    annotation = ClientMetadata.model_fields[name].annotation if name in ClientMetadata.model_fields else None
    text = str(annotation)
    if "list[str]" in text:
        return "an array of strings"
    if "dict" in text:
        return "a JSON object"
    if "Literal" in text:
        return "one of 'web', 'native'"
    return "a string"
