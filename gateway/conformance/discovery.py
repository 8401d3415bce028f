"""Where MCP clients of each spec version look for authorization server metadata, and what they require of it.

MCP authorization, by version (see the MCP specification's authorization section):

- 2025-03-26: RFC 8414 at the root of the MCP server's origin (``/.well-known/oauth-authorization-server``);
  an issuer with a path cannot be found that way;
- 2025-06-18: RFC 8414 section 3.1, found through RFC 9728 (path-inserted ``oauth-authorization-server``);
- 2025-11-25 and 2026-07-28: RFC 8414 section 3.1 insertion, then OpenID insertion, then OpenID Connect
  Discovery 1.0 section 4 appending; S256 must be advertised (clients refuse to proceed otherwise), and a
  document whose ``issuer`` differs from the issuer the URL was built from is rejected (RFC 8414 section 3.3).

Pure functions: URL lists and document checks, no I/O.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

from gateway.rfc8414.wellknown import DocumentKind, well_known_url

SPEC_VERSIONS = ("2025-03-26", "2025-06-18", "2025-11-25", "2026-07-28")


@dataclass(frozen=True)
class Probe:
    """One well-known location of an issuer, with the MCP spec versions whose clients fetch it."""

    url: str
    kind: DocumentKind
    versions: tuple[str, ...]
    not_applicable: str | None = None
    """Why clients of those versions cannot use this location for this issuer (then it is not checked)."""


def origin(url: str) -> str:
    """``scheme://authority`` of a URL (RFC 6454 section 4, without default-port normalisation)."""
    parts = urlsplit(url)
    return f"{parts.scheme}://{parts.netloc}"


def client_probe_order(issuer: str, version: str) -> list[str]:
    """The URLs a client of MCP spec ``version`` tries, in order, for ``issuer``'s metadata."""
    oauth = well_known_url(issuer, DocumentKind.OAUTH.value)
    openid_inserted = well_known_url(issuer, DocumentKind.OPENID.value)
    openid_appended = issuer.rstrip("/") + "/.well-known/" + DocumentKind.OPENID.value
    if version == "2025-03-26":
        return [origin(issuer) + "/.well-known/" + DocumentKind.OAUTH.value]
    if version == "2025-06-18":
        return [oauth]
    if version in ("2025-11-25", "2026-07-28"):
        return list(dict.fromkeys([oauth, openid_inserted, openid_appended]))
    raise ValueError(f"unknown MCP spec version {version!r}; known: {list(SPEC_VERSIONS)}")


def probes(issuer: str) -> list[Probe]:
    """Every location any MCP spec version probes for ``issuer``, each once, in 2025-11-25 order first."""
    seen: dict[str, list[str]] = {}
    for version in ("2025-11-25", "2026-07-28", "2025-06-18", "2025-03-26"):
        for url in client_probe_order(issuer, version):
            seen.setdefault(url, []).append(version)
    has_path = bool(urlsplit(issuer).path.strip("/"))
    result = []
    for url, versions in seen.items():
        ordered = tuple(version for version in SPEC_VERSIONS if version in versions)
        root_only = has_path and ordered == ("2025-03-26",)
        reason = (
            "MCP 2025-03-26 clients look only at the MCP server origin's root; an issuer with a path is not "
            "discoverable that way"
            if root_only
            else None
        )
        result.append(Probe(url=url, kind=_kind(url), versions=ordered, not_applicable=reason))
    return result


def _kind(url: str) -> DocumentKind:
    path = urlsplit(url).path
    return DocumentKind.OPENID if f"/.well-known/{DocumentKind.OPENID.value}" in path else DocumentKind.OAUTH


def metadata_problems(
    document: Any,
    *,
    issuer: str,
    kind: DocumentKind,
    registration_endpoint: str | None = None,
    oidc_fields: tuple[str, ...] = (),
    registers: bool = True,
) -> list[str]:
    """What makes ``document`` unusable for an MCP client that built its URL from ``issuer``.

    RFC 8414 section 3.3: ``issuer`` identical; section 2: ``authorization_endpoint`` and ``token_endpoint``;
    MCP 2025-11-25: ``S256`` in ``code_challenge_methods_supported``; RFC 7591 for MCP clients:
    ``registration_endpoint`` present, on the issuer's origin (the gateway owns it in both deployment modes) or
    equal to ``registration_endpoint`` when the caller knows it; ``code`` in ``response_types_supported``.
    ``oidc_fields``: what a client additionally requires of an OpenID document (MCP TypeScript SDK).
    ``registers=False``: a client identified by its Client ID Metadata Document needs no registration endpoint.
    """
    if not isinstance(document, Mapping):
        return ["the document is not a JSON object"]
    problems = []
    if document.get("issuer") != issuer:
        problems.append(f"issuer {document.get('issuer')!r} is not {issuer!r} (RFC 8414 section 3.3)")
    for member in ("authorization_endpoint", "token_endpoint"):
        if not isinstance(document.get(member), str):
            problems.append(f"no {member}")
    if "S256" not in (document.get("code_challenge_methods_supported") or []):
        problems.append("S256 not in code_challenge_methods_supported")
    if "code" not in (document.get("response_types_supported") or []):
        problems.append("'code' not in response_types_supported")
    advertised = document.get("registration_endpoint")
    if not registers:
        pass
    elif not isinstance(advertised, str):
        problems.append("no registration_endpoint")
    elif registration_endpoint is not None and advertised != registration_endpoint:
        problems.append(f"registration_endpoint {advertised!r} is not {registration_endpoint!r}")
    elif registration_endpoint is None and origin(advertised) != origin(issuer):
        problems.append(f"registration_endpoint {advertised!r} is not on the issuer's origin")
    if kind is DocumentKind.OPENID:
        problems.extend(f"OpenID document without {member}" for member in oidc_fields if member not in document)
    return problems


def detect_provider(document: Mapping[str, Any]) -> str | None:
    """``keycloak`` or ``hydra`` from the shape of the authorization endpoint, else ``None``: picks the
    expected failures that apply (what a provider legitimately cannot do)."""
    path = urlsplit(str(document.get("authorization_endpoint", ""))).path
    if path.endswith("/protocol/openid-connect/auth"):
        return "keycloak"
    if path.endswith("/oauth2/auth"):
        return "hydra"
    return None
