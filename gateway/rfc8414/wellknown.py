"""Well-known URL forms for authorization server metadata (RFC 8414 section 3.1, OIDC Discovery section 4).

An issuer with a path (Keycloak's ``https://h/realms/mcp``) is looked up at several places, and clients of
different MCP spec versions probe different ones:

- RFC 8414 section 3.1 path insertion: ``/.well-known/oauth-authorization-server/realms/mcp``
  (MCP 2025-03-26 probes the root form only; 2025-06-18 and later probe this first);
- OIDC path insertion: ``/.well-known/openid-configuration/realms/mcp`` (MCP 2025-11-25 and later, second);
- OIDC Discovery 1.0 section 4 path appending: ``/realms/mcp/.well-known/openid-configuration``
  (MCP 2025-11-25 and later, third; also what OIDC libraries use);
- ``/realms/mcp/.well-known/oauth-authorization-server``: Keycloak serves it, so clients configured by hand
  may use it.

Everything here is pure string work on paths: no I/O.
"""

from __future__ import annotations

from enum import StrEnum
from urllib.parse import urlsplit, urlunsplit

WELL_KNOWN = "/.well-known/"


class DocumentKind(StrEnum):
    """Which well-known suffix a location uses; the value is the registered suffix (RFC 8414 section 7.3)."""

    OAUTH = "oauth-authorization-server"
    """RFC 8414 section 3: OAuth 2.0 authorization server metadata."""
    OPENID = "openid-configuration"
    """OpenID Connect Discovery 1.0 section 4 (RFC 8414 section 5 shares the metadata format)."""


_SUFFIXES = tuple(f"{WELL_KNOWN}{kind.value}" for kind in DocumentKind)


def _normalized_issuer_path(issuer_path: str) -> str:
    """Drop a terminating ``/``, as RFC 8414 section 3.1 does before inserting the well-known string."""
    if issuer_path and not issuer_path.startswith("/"):
        raise ValueError(f"issuer path must be empty or start with '/', got {issuer_path!r}")
    return issuer_path.rstrip("/")


def well_known_url(issuer: str, suffix: str) -> str:
    """RFC 8414 section 3.1: insert ``/.well-known/<suffix>`` between the issuer's host and its path.

    "If the issuer identifier value contains a path component, any terminating "/" MUST be removed before
    inserting "/.well-known/" and the well-known URI suffix between the host component and the path
    component." ``suffix`` is ``oauth-authorization-server`` or ``openid-configuration`` (a leading
    ``/.well-known/`` is accepted too). The issuer's scheme, host and path are kept exactly as given.

    >>> well_known_url("https://h/realms/mcp", "oauth-authorization-server")
    'https://h/.well-known/oauth-authorization-server/realms/mcp'
    """
    suffix = suffix.removeprefix(WELL_KNOWN).strip("/")
    if not suffix:
        raise ValueError("well-known suffix must not be empty")
    parts = urlsplit(issuer)
    if not parts.scheme or not parts.netloc:
        raise ValueError(f"issuer must be an absolute URL, got {issuer!r}")
    if parts.query or parts.fragment:
        # RFC 8414 section 2: the issuer has no query or fragment components.
        raise ValueError(f"issuer must not have a query or fragment, got {issuer!r}")
    path = f"{WELL_KNOWN}{suffix}{parts.path.rstrip('/')}"
    return urlunsplit((parts.scheme, parts.netloc, path, "", ""))


def discovery_locations(issuer_path: str) -> dict[str, DocumentKind]:
    """Every path where MCP clients (spec 2025-03-26 to 2026-07-28) look for the metadata of an issuer whose
    URL path is ``issuer_path`` (``""`` for a root issuer such as Hydra's, ``"/realms/mcp"`` for Keycloak).

    Ordered as clients of MCP 2025-11-25 probe them (RFC 8414 section 3.1 insertion, OIDC insertion, OIDC
    Discovery section 4 appending), then Keycloak's own appended RFC 8414 form. A root issuer has only the two
    root forms, which are both the inserted and the appended forms.
    """
    path = _normalized_issuer_path(issuer_path)
    oauth = f"{WELL_KNOWN}{DocumentKind.OAUTH.value}"
    openid = f"{WELL_KNOWN}{DocumentKind.OPENID.value}"
    if not path:
        return {oauth: DocumentKind.OAUTH, openid: DocumentKind.OPENID}
    return {
        f"{oauth}{path}": DocumentKind.OAUTH,
        f"{openid}{path}": DocumentKind.OPENID,
        f"{path}{openid}": DocumentKind.OPENID,
        f"{path}{oauth}": DocumentKind.OAUTH,
    }


def is_discovery_path(path: str) -> bool:
    """Whether a request path has the shape of a metadata location of *some* issuer.

    True for paths starting with ``/.well-known/oauth-authorization-server`` or
    ``/.well-known/openid-configuration`` (section 3.1 insertion) and for paths ending in them (OIDC
    appending), whole segments only. Other well-known paths (``/.well-known/jwks.json``) are not discovery
    paths. The app answers such a path for an issuer it does not serve with a 4xx instead of proxying it.
    """
    path = path.rstrip("/")
    return any(path.startswith(suffix + "/") or path.endswith(suffix) for suffix in _SUFFIXES)
