"""Protected resources per issuer (RFC 8707 section 2) and the pure checks of the ``resource`` parameter.

RFC 8707 section 2: ``resource`` "MUST be an absolute URI [...] MUST NOT include a fragment component. It SHOULD NOT
include a query component"; an authorization server that does not accept a requested resource answers
``invalid_target``. MCP 2026-07-28 (basic/authorization, "Resource Parameter Implementation") has clients send the
MCP server's canonical URI on both the authorization and the token request, and lets servers accept an upper-case
scheme and host; a trailing slash SHOULD be omitted by clients, so both forms are accepted here.

A configured entry is an absolute URI, or a prefix when it ends in ``*`` (``https://mcp.example.com/*`` covers every
MCP server on that host). The audience a token is bound to is the configured entry for an exact entry (the form the
MCP server checks), the request's canonical form for a prefix entry.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from urllib.parse import urlsplit, urlunsplit

from pydantic import BaseModel, ConfigDict, Field, field_validator

_UNCLEAN_PATH = re.compile(r"(?:^|/)\.\.?(?:/|$)|%2[ef]|%5c", re.IGNORECASE)
"""RFC 3986 section 3.3 dot segments, and the percent-encoded ``.``, ``/`` and ``\\`` that could hide them."""

MAX_RESOURCE_LENGTH = 2048
"""Longest ``resource`` value looked at; longer ones are refused (no MCP server URL is anywhere near it)."""


def resource_problem(value: str) -> str | None:  # noqa: PLR0911 (one return per rule)
    """What makes ``value`` unusable as an RFC 8707 section 2 resource indicator, or ``None`` when it is one."""
    if not value:
        return "resource is empty"
    if len(value) > MAX_RESOURCE_LENGTH:
        return f"resource is longer than {MAX_RESOURCE_LENGTH} characters"
    if any(ord(ch) <= 0x20 or ord(ch) >= 0x7F or ch == "\\" for ch in value):
        return "resource contains whitespace, control, backslash or non-ASCII characters"
    try:
        parts = urlsplit(value)
        parts.port  # noqa: B018 (raises ValueError for a port that is not a number)
    except ValueError:
        return "resource is not a valid absolute URI"
    if not parts.scheme or not parts.netloc or not parts.hostname:
        return "resource must be an absolute URI with a host (RFC 8707 section 2)"
    if "#" in value:
        return "resource must not include a fragment (RFC 8707 section 2)"
    if _UNCLEAN_PATH.search(parts.path):
        # a prefix entry would otherwise bind '.../tools/../admin' as written, which a server that normalises
        # its audience reads as another resource
        return "resource must not contain dot segments or percent-encoded slashes, backslashes or dots"
    return None


def canonical_resource(value: str) -> str:
    """``value`` with its scheme and host in lower case and no trailing slash on its path (MCP 2026-07-28
    "Canonical Server URI"); the path and query are compared as sent. ``value`` must have passed
    :func:`resource_problem`."""
    parts = urlsplit(value)
    netloc = parts.netloc
    userinfo, at, hostport = netloc.rpartition("@")
    netloc = f"{userinfo}{at}{hostport.lower()}"
    path = parts.path.rstrip("/") if parts.path != "/" else ""
    return urlunsplit((parts.scheme.lower(), netloc, path, parts.query, ""))


@dataclass(frozen=True)
class ProtectedResources:
    """The resources one issuer issues tokens for; an empty set means RFC 8707 is not enforced there (the
    ``resource`` parameter passes to the provider as before and tokens are not bound to it). Build with
    :meth:`of`."""

    exact: Mapping[str, str]
    """Canonical form -> the configured entry (the audience bound)."""
    prefixes: tuple[str, ...]
    """Canonical prefixes (configured entries that ended in ``*``)."""

    @classmethod
    def of(cls, entries: Iterable[str]) -> ProtectedResources:
        exact: dict[str, str] = {}
        prefixes: list[str] = []
        for entry in entries:
            if entry.endswith("*"):
                prefixes.append(_canonical_prefix(entry[:-1]))
            else:
                exact[canonical_resource(entry)] = entry
        return cls(exact=exact, prefixes=tuple(prefixes))

    @property
    def enforced(self) -> bool:
        return bool(self.exact or self.prefixes)

    def audience_for(self, resource: str) -> str | None:
        """The audience a token for ``resource`` is bound to, or ``None`` when ``resource`` is not a protected
        resource of this issuer (``invalid_target``, RFC 8707 section 2). ``resource`` must have passed
        :func:`resource_problem`."""
        canonical = canonical_resource(resource)
        if canonical in self.exact:
            return self.exact[canonical]
        for prefix in self.prefixes:
            if canonical.startswith(prefix) or canonical == prefix.rstrip("/"):
                return canonical
        return None

    def describe(self) -> list[str]:
        return [*self.exact.values(), *(f"{prefix}*" for prefix in self.prefixes)]


def _canonical_prefix(value: str) -> str:
    """A prefix entry's part before ``*`` with its scheme and host in lower case; its path is kept as written
    (it always has one, :func:`_checked_entry`), so the host can never match partially."""
    parts = urlsplit(value)
    return urlunsplit((parts.scheme.lower(), parts.netloc.lower(), parts.path, parts.query, ""))


class ResourceSettings(BaseModel):
    """``[resources]`` / ``DCR_RESOURCES__*``: the protected resources (MCP servers) tokens may be issued for,
    per issuer (RFC 8707). A request naming any other resource gets ``invalid_target``; a token issued for a
    resource carries it in ``aud``. Empty (the default): not enforced, ``resource`` passes through unbound."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    protected: tuple[str, ...] = ()
    """Every issuer's protected resources: absolute URIs (``https://mcp.example.com/mcp``), or prefixes ending in
    ``*`` (``https://mcp.example.com/*``). ``DCR_RESOURCES__PROTECTED`` takes a comma-separated list."""
    issuers: Mapping[str, tuple[str, ...]] = Field(default_factory=dict)
    """Per issuer (its adapter key, e.g. the realm, or its path): replaces ``protected`` for that issuer."""

    @field_validator("protected")
    @classmethod
    def _entries(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        return tuple(_checked_entry(entry) for entry in value)

    @field_validator("issuers")
    @classmethod
    def _issuer_entries(cls, value: Mapping[str, tuple[str, ...]]) -> Mapping[str, tuple[str, ...]]:
        return {name: tuple(_checked_entry(entry) for entry in entries) for name, entries in value.items()}

    def for_issuer(self, *, key: str, path: str) -> ProtectedResources:
        for name in (key, path or "/"):
            if name in self.issuers:
                return ProtectedResources.of(self.issuers[name])
        return ProtectedResources.of(self.protected)

    def unknown_overrides(self, issuers: Iterable[tuple[str, str]]) -> list[str]:
        known = {name for key, path in issuers for name in (key, path or "/")}
        return sorted(name for name in self.issuers if name not in known)


def _checked_entry(entry: str) -> str:
    """An absolute URI, or one with a path followed by ``*`` (a prefix cannot stop inside the host)."""
    entry = entry.strip()
    base = entry[:-1] if entry.endswith("*") else entry
    problem = resource_problem(base)
    if problem is None and entry.endswith("*") and not urlsplit(base).path.startswith("/"):
        problem = "a prefix must include the path after the host, e.g. 'https://mcp.example.com/*'"
    if problem is not None:
        raise ValueError(f"protected resource {entry!r}: {problem}")
    return entry
