"""The row type of the client metadata field table (:data:`gateway.oauth.metadata.FIELDS`), in the spirit of
node-oidc-provider's attribute tables: for each RFC 7591 / OpenID Connect field its specification, JSON type,
default, whether the response echoes it, its length limit and which policy rules read it.

Each field of :class:`~gateway.oauth.metadata.ClientMetadata` is declared once, as
``name: Annotated[<type>, Field(...)] = None``; the parser's error wording, the field groups the rules work on
(:mod:`gateway.policy.rules`) and the README's field list come from those rows. Adding a field is one row there
and, if it needs one, a rule.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import Enum


class Kind(Enum):
    """The JSON shape of a field's value."""

    TEXT = "string"
    URI = "URI"
    TOKENS = "space-separated tokens"
    CHOICE = "one of a set"
    URIS = "array of URIs"
    TEXTS = "array of strings"
    JSON = "JSON object"

    def shape(self, choices: tuple[str, ...] = ()) -> str:
        """What a value must be, as the RFC 7591 section 3.2.2 error says it ("redirect_uris: must be ...")."""
        if self in (Kind.URIS, Kind.TEXTS):
            return "an array of strings"
        if self is Kind.JSON:
            return "a JSON object"
        if self is Kind.CHOICE and choices:
            return "one of " + ", ".join(repr(choice) for choice in choices)
        return "a string"


class Limit(Enum):
    """Which policy bound applies to each value (``[policy]``, :class:`gateway.policy.settings.PolicySettings`);
    the provider's own column sizes apply on top (``Capabilities.stored_lengths``)."""

    URI = "max_uri_length"
    TEXT = "max_string_length"
    EMAIL = "320 characters, at most max_contacts entries"


@dataclass(frozen=True)
class Field:
    """One row of the table."""

    spec: str
    """Where the field is defined."""
    kind: Kind
    rules: tuple[str, ...]
    """The names of the rules (:data:`gateway.policy.rules.RULES`) that read the field."""
    default: str = ""
    """What an omitted field means, as its specification says it ("" for none)."""
    echoed: bool = True
    """Returned in the client information response when registered (RFC 7591 section 3.2.1)."""
    limit: Limit | None = None
    choices: tuple[str, ...] = ()
    """The values a ``CHOICE`` field takes (the model checks them)."""
    shown_to_user: bool = False
    """Shown to the end user at authorization (RFC 7591 section 5: URIs SHOULD share a redirect URI's host)."""
