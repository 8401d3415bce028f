"""The Client Identifier URL (draft-ietf-oauth-client-id-metadata-document section 3) and the host policy,
checked before any network I/O. Pure.

Section 3: "Client identifier URLs MUST have an "https" scheme, MUST contain a path component, MUST NOT contain
single-dot or double-dot path segments, MUST NOT contain a fragment component and MUST NOT contain a username or
password. Client identifier URLs SHOULD NOT include a query string component, and MAY contain a port."
node-oidc-provider's ``isValidClientIdUrl`` is the model for the rest (no backslash, control characters,
whitespace or non-ASCII, bounded length). Nothing is normalised: the document's ``client_id`` is later compared
with the URL byte for byte (section 4.1), so what is checked here is exactly what is fetched and compared.
"""

from __future__ import annotations

import re
from urllib.parse import urlsplit

from gateway.cimd.errors import DocumentRefused, show
from gateway.cimd.settings import CimdSettings, host_matches
from gateway.policy.uris import is_public_host, normalize_host

MAX_URL_LENGTH = 2048
"""Longest ``client_id`` URL (node-oidc-provider and FastMCP use the same bound)."""

_DOT_SEGMENT = re.compile(r"^(?:\.|%2e){1,2}$", re.IGNORECASE)


def looks_like_url(client_id: str) -> bool:
    """Whether ``client_id`` begins with ``https://`` or ``http://`` (scheme in any case). Such ids are never the
    gateway's own (it mints UUIDs; section 7 of -01: server-generated ids "SHOULD NOT" start with ``https://``),
    so they are resolved as metadata documents, or refused."""
    head = client_id[:8].lower()
    return head.startswith(("https://", "http://"))


def check_client_id_url(url: str, settings: CimdSettings) -> None:
    """Refuse (:class:`DocumentRefused`, stage ``url`` or ``policy``) a ``client_id`` URL that section 3 or the
    deployment's host policy does not allow.

    Grammar (stage ``url``): ``https`` only; at most :data:`MAX_URL_LENGTH` characters of printable ASCII
    without whitespace or backslash; a host; a path other than ``/``; no userinfo, fragment, ``.``/``..``
    segment (also percent-encoded, ``%2e``) and, unless :attr:`CimdSettings.allow_query`, no query.
    Policy (stage ``policy``): :attr:`CimdSettings.denied_hosts` (wins), :attr:`CimdSettings.allowed_hosts`
    (empty: any); a host that is an IP literal or a local name must be public (section 6.5 of -01: RFC 6890
    special-use addresses) unless the URL's origin is a :attr:`CimdSettings.development_origins` entry. Host
    names are resolved, and their addresses checked, by :mod:`gateway.cimd.fetch`.
    """
    _check_grammar(url, settings)
    _check_host_policy(url, settings)


def _check_grammar(url: str, settings: CimdSettings) -> None:
    if len(url) > MAX_URL_LENGTH:
        raise DocumentRefused("url", f"the client_id URL is longer than {MAX_URL_LENGTH} characters")
    if any(c.isspace() for c in url):
        raise DocumentRefused("url", f"the client_id URL {show(url)} must not contain whitespace")
    if any(ord(c) < 0x20 or ord(c) == 0x7F for c in url):
        raise DocumentRefused("url", f"the client_id URL {show(url)} must not contain control characters")
    if not url.isascii():
        raise DocumentRefused("url", f"the client_id URL {show(url)} must be ASCII (percent-encode other characters)")
    if "\\" in url:
        raise DocumentRefused("url", f"the client_id URL {show(url)} must not contain a backslash")
    scheme, sep, rest = url.partition(":")
    if scheme.lower() == "http":
        raise DocumentRefused(
            "url", f"the client_id URL {show(url)} uses http; client ID metadata documents must be served over https"
        )
    if not sep or scheme.lower() != "https" or not rest.startswith("//"):
        raise DocumentRefused("url", f"the client_id URL {show(url)} must be an absolute https URL")
    if "#" in url:
        raise DocumentRefused("url", f"the client_id URL {show(url)} must not contain a fragment")
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError:
        raise DocumentRefused("url", f"the client_id URL {show(url)} has an invalid host or port") from None
    if port == 0 or parts.netloc.endswith(":"):
        raise DocumentRefused("url", f"the client_id URL {show(url)} has an invalid host or port")
    if "@" in parts.netloc:
        raise DocumentRefused("url", f"the client_id URL {show(url)} must not contain userinfo")
    host = parts.hostname or ""
    if not host:
        raise DocumentRefused("url", f"the client_id URL {show(url)} must name a host")
    if "%" in parts.netloc:
        raise DocumentRefused("url", f"the client_id URL {show(url)} must not percent-encode its host")
    try:
        normalize_host(host)
    except ValueError as exc:
        raise DocumentRefused("url", f"the client_id URL {show(url)} has an invalid host: {exc}") from None
    if parts.path in ("", "/"):
        raise DocumentRefused("url", f"the client_id URL {show(url)} must contain a path (not just '/')")
    if any(_DOT_SEGMENT.match(segment) for segment in parts.path.split("/")):
        raise DocumentRefused("url", f"the client_id URL {show(url)} must not contain '.' or '..' (dot) segments")
    if "?" in url and not settings.allow_query:
        raise DocumentRefused("url", f"the client_id URL {show(url)} must not contain a query string")


def _check_host_policy(url: str, settings: CimdSettings) -> None:
    parts = urlsplit(url)
    host = normalize_host(parts.hostname or "")
    if host_matches(host, settings.denied_hosts):
        raise DocumentRefused("policy", f"documents from host {host!r} are denied by this server")
    if settings.allowed_hosts and not host_matches(host, settings.allowed_hosts):
        raise DocumentRefused("policy", f"documents from host {host!r} are not allowed by this server")
    if not is_public_host(parts.hostname or "") and not settings.is_development_origin(url):
        raise DocumentRefused(
            "policy",
            f"the client_id URL's host {host!r} is not a public host; documents are fetched only from public hosts",
        )
