"""OAuth request parameters as ordered pairs (RFC 6749 appendix B ``application/x-www-form-urlencoded``).

Pure functions. The front door changes a request's parameters only when it must (a CIMD ``client_id`` the provider
stores under another id, an ``audience`` or ``scope`` that binds a resource); an unchanged request is forwarded
byte for byte.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from urllib.parse import parse_qsl, quote, urlencode

from gateway.oauth.errors import InvalidRequest

Pairs = list[tuple[str, str]]

REPEATABLE = frozenset({"resource", "audience"})
"""Parameters that may appear more than once: RFC 8707 section 2 (``resource``), Hydra's ``audience``. RFC 6749
section 3.1: every other "Request and response parameters MUST NOT be included more than once"."""

FORM = "application/x-www-form-urlencoded"


def parse(encoded: str) -> Pairs:
    """The pairs of a query string or form body, in order; undecodable percent-encoding is ``invalid_request``."""
    try:
        return parse_qsl(encoded, keep_blank_values=True, errors="strict")
    except (UnicodeDecodeError, ValueError):
        raise InvalidRequest("the request parameters are not valid percent-encoded UTF-8") from None


def single(pairs: Pairs, name: str) -> str | None:
    """The one value of ``name`` (``None`` when absent); more than one is ``invalid_request`` (RFC 6749 3.1)."""
    values = [value for key, value in pairs if key == name]
    if len(values) > 1 and name not in REPEATABLE:
        raise InvalidRequest(f"the {name} parameter is included more than once")
    return values[0] if values else None


def every(pairs: Pairs, name: str) -> list[str]:
    """Every value of ``name``, space-delimited lists split (Hydra's ``audience`` accepts both forms)."""
    values: list[str] = []
    for key, value in pairs:
        if key == name:
            values.extend(value.split() if name == "audience" else [value])
    return values


def replaced(pairs: Pairs, name: str, values: Sequence[str]) -> Pairs:
    """``pairs`` with every ``name`` removed and ``values`` put where the first one was (else at the end)."""
    out: Pairs = []
    placed = False
    for key, value in pairs:
        if key != name:
            out.append((key, value))
        elif not placed:
            out.extend((name, item) for item in values)
            placed = True
    if not placed:
        out.extend((name, item) for item in values)
    return out


def with_scope_values(pairs: Pairs, extra: Iterable[str]) -> Pairs:
    """``scope`` (RFC 6749 section 3.3, space-delimited) with the ``extra`` values it lacks appended."""
    current = (single(pairs, "scope") or "").split()
    missing = [value for value in dict.fromkeys(extra) if value not in current]
    if not missing:
        return pairs
    return replaced(pairs, "scope", [" ".join([*current, *missing])])


def with_audiences(pairs: Pairs, extra: Iterable[str]) -> Pairs:
    """Hydra's ``audience`` (space-delimited) with the ``extra`` values it lacks added."""
    current = every(pairs, "audience")
    missing = [value for value in dict.fromkeys(extra) if value not in current]
    if not missing:
        return pairs
    return replaced(pairs, "audience", [" ".join([*current, *missing])])


def encode(pairs: Pairs) -> str:
    """Percent-encoded (``%20`` for spaces: a query string and a form body both accept it)."""
    return urlencode(pairs, quote_via=quote, safe="")
