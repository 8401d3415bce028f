"""Client ID Metadata Document settings (``Settings.cimd``, TOML ``[cimd]``, environment ``DCR_CIMD__*``).

Defaults follow draft-ietf-oauth-client-id-metadata-document and the implementations compared in the reference
(Keycloak, node-oidc-provider, FastMCP): documents from any public host, 5 KiB, a few seconds, cached between
5 minutes and 24 hours (SEP-991: "max 24 hours recommended"). Values are checked at start-up.
"""

from __future__ import annotations

import ipaddress
from urllib.parse import urlsplit

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from gateway.policy.uris import is_ip_literal, normalize_host


def host_entry(entry: str) -> str:
    """One ``allowed_hosts``/``denied_hosts`` entry, normalised: a host name or IP literal, or ``*.`` and a host
    name (any subdomain of it, not the name itself). Raises :class:`ValueError` for anything else."""
    wildcard = entry.startswith("*.")
    name = entry[2:] if wildcard else entry
    if not name or (any(c in name for c in "*/@:?#[] \\") and not _is_ipv6(name)):
        raise ValueError(f"{entry!r}: an entry is a host name, an IP literal or '*.' and a host name")
    try:
        host = normalize_host(name)
    except ValueError as exc:
        raise ValueError(f"{entry!r}: {exc}") from None
    if wildcard and is_ip_literal(host):
        raise ValueError(f"{entry!r}: a wildcard entry names a domain, not an IP address")
    return f"*.{host}" if wildcard else host


def _is_ipv6(value: str) -> bool:
    try:
        return ipaddress.ip_address(value.strip("[]")).version == 6
    except ValueError:
        return False


def origin_of(url: str) -> tuple[str, int] | None:
    """``(normalised host, port)`` of an https URL (port 443 when omitted), for comparing with
    :attr:`CimdSettings.development_origins`; ``None`` for anything else."""
    try:
        parts = urlsplit(url)
        port = parts.port or 443
        host = normalize_host(parts.hostname or "")
    except ValueError:
        return None
    return (host, port) if parts.scheme.lower() == "https" else None


def host_matches(host: str, entries: list[str]) -> bool:
    """Whether normalised ``host`` is an entry, or a proper subdomain of a ``*.`` entry (label boundary:
    ``*.example.com`` matches ``a.example.com``, neither ``example.com`` nor ``evil-example.com``)."""
    for entry in entries:
        if entry.startswith("*."):
            if host.endswith(entry[1:]):
                return True
        elif host == entry:
            return True
    return False


class CimdSettings(BaseModel):
    """Client ID Metadata Documents (draft-ietf-oauth-client-id-metadata-document; MCP 2026-07-28
    client-registration): which documents the gateway fetches, and how."""

    model_config = ConfigDict(extra="forbid")  # a misspelt key stops the start

    enabled: bool = True
    """Whether a URL ``client_id`` is resolved as a metadata document at all (and discovery advertises
    ``client_id_metadata_document_supported``)."""
    allowed_hosts: list[str] = []
    """Hosts whose documents are used: an exact host (``claude.ai``) or ``*.`` and a domain (``*.vscode.dev``:
    its subdomains, not the domain itself). Empty: any public host."""
    denied_hosts: list[str] = []
    """Hosts whose documents are never used, same syntax; wins over :attr:`allowed_hosts`."""
    development_origins: list[str] = []
    """Origins (``https://localhost:8443``) whose host may be, or resolve to, a loopback or other special-use
    address (section 6.5 of -01: "except when the authorization server itself is also running on a loopback
    address"). Development only: never list an origin you do not control."""
    ca_file: str | None = None
    """A PEM bundle of CA certificates trusted for document fetches in addition to the system's (a development
    CA; :mod:`gateway.conformance.tls`)."""
    max_bytes: int = Field(default=5120, ge=256)
    """Largest document, decoded (section 6.6 of -01 recommends 5 kilobytes); enforced while reading."""
    connect_timeout_seconds: float = Field(default=3.0, gt=0)
    """Time allowed to open the connection (TCP and TLS)."""
    timeout_seconds: float = Field(default=5.0, gt=0)
    """Time allowed for the whole fetch: resolving, connecting, the answer's headers and its body."""
    min_cache_seconds: int = Field(default=300, ge=0)
    """Least time a document is reused before it is fetched (or revalidated) again, whatever its
    ``Cache-Control`` says (section 4.3 of -01: the server "MAY define its own upper and/or lower bounds")."""
    max_cache_seconds: int = Field(default=86400, ge=0)
    """Most time a document is reused before it is fetched (or revalidated) again."""
    allow_query: bool = False
    """Whether a ``client_id`` URL may carry a query string (section 3: "SHOULD NOT include a query string";
    Keycloak refuses them)."""
    disabled_issuers: list[str] = []
    """Issuer keys (``/realms/x`` or the realm name, as in ``[access.issuers]``) where URL client ids are not
    resolved as documents."""

    @field_validator("allowed_hosts", "denied_hosts")
    @classmethod
    def _hosts(cls, value: list[str]) -> list[str]:
        return [host_entry(entry) for entry in value]

    @field_validator("development_origins")
    @classmethod
    def _origins(cls, value: list[str]) -> list[str]:
        origins: list[str] = []
        for entry in value:
            try:
                parts = urlsplit(entry)
                port = parts.port
            except ValueError:
                raise ValueError(f"{entry!r}: not an origin") from None
            if (
                parts.scheme.lower() != "https"
                or not parts.hostname
                or parts.username is not None
                or "@" in parts.netloc
                or parts.path
                or "?" in entry
                or "#" in entry
            ):
                raise ValueError(f"{entry!r}: a development origin is 'https://host[:port]', without a path")
            origin = origin_of(entry)
            if origin is None:
                raise ValueError(f"{entry!r}: not a valid https origin")
            host, default_port = origin
            shown = f"[{host}]" if ":" in host else host
            origins.append(f"https://{shown}:{port or default_port}")
        return origins

    @model_validator(mode="after")
    def _cache_bounds(self) -> CimdSettings:
        if self.min_cache_seconds > self.max_cache_seconds:
            raise ValueError("min_cache_seconds must not exceed max_cache_seconds")
        return self

    def is_development_origin(self, url: str) -> bool:
        """Whether ``url``'s origin is one of :attr:`development_origins`."""
        origin = origin_of(url)
        if origin is None:
            return False
        return any(origin_of(entry) == origin for entry in self.development_origins)
