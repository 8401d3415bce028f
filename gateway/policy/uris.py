"""Pure predicates and checks for the URIs in client metadata: redirect URIs (RFC 6749 section 3.1.2, RFC 8252
section 7, RFC 9700 section 4.1), web URLs (RFC 7591 section 2) and host names (RFC 5890 IDNA, RFC 3986
section 3.2.2).

Nothing here does I/O: resolving a host before a provider fetches it is :mod:`gateway.policy.network`.
"""

from __future__ import annotations

import functools
import ipaddress
import re
from dataclasses import dataclass
from urllib.parse import SplitResult, urlsplit

import idna

from gateway.oauth.errors import InvalidClientMetadata, InvalidRedirectUri, OAuthError

FORBIDDEN_SCHEMES = frozenset(
    {
        # script-capable or local (node-oidc-provider, OAuth 2.0 Security BCP)
        "javascript", "data", "file", "vbscript", "about", "blob",
        # browser-internal
        "view-source", "filesystem", "jar", "chrome", "chrome-extension", "moz-extension", "resource", "edge",
        # network schemes that are not http(s): cleartext or not a redirect target at all
        "ws", "wss", "ftp", "ftps", "sftp", "gopher", "ldap", "ldaps", "smb", "ssh", "telnet", "news", "nntp",
        "irc", "git", "svn", "feed", "mailto", "tel", "sms", "urn", "intent", "content",
    }
)  # fmt: skip
"""Schemes that are never a redirect target. Any other scheme is a private-use scheme (RFC 8252 section 7.1),
accepted for clients that do not register as ``web``."""

SCHEME_SYNTAX = re.compile(r"^[a-zA-Z][a-zA-Z0-9+.-]*$")
"""RFC 3986 section 3.1."""

HOST_CACHE_SIZE = 1024
"""Hosts whose canonical form and loopback-ness are remembered (pure functions of the host; registrations name the
same few hosts again and again: ``127.0.0.1``, ``localhost``, a client's own domain). A failing host is not
remembered (:func:`functools.lru_cache` keeps no exception)."""

_SPACE_OR_CONTROL = re.compile(r"[\s\x00-\x1f\x7f]")
"""Whitespace (``\\s`` is :meth:`str.isspace` for str patterns) or a C0 control character or DEL, in one C scan."""

_ASCII_LABEL = re.compile(r"^[a-z0-9_](?:[a-z0-9_-]{0,61}[a-z0-9_])?$")
_NUMERIC_LABEL = re.compile(r"^(?:0x[0-9a-f]*|[0-9]+)$")


# ---------------------------------------------------------------------------------------------- hosts


@functools.lru_cache(maxsize=HOST_CACHE_SIZE)
def normalize_host(host: str) -> str:
    """The canonical form of a URI host, for comparisons: IP literals in their compressed form (IPv6 without
    brackets); names lower-cased, without a trailing dot, internationalised names as A-labels (IDNA 2008 with
    UTS #46 mapping, as browsers resolve them, so ``EXAMPLE.com``, ``example.com.`` and ``example｡com`` are one
    host). Raises :class:`ValueError` for what is not a host name, including names a browser would read as an
    IPv4 address (``127.1``, ``0x7f.1``: WHATWG URL "ends in a number")."""
    candidate = host.strip("[]") if host.startswith("[") else host
    try:
        return str(ipaddress.ip_address(candidate))
    except ValueError:
        pass
    name = host.lower()
    name = name[:-1] if name.endswith(".") else name
    if not name:
        raise ValueError("empty host name")
    if not name.isascii():
        try:
            name = idna.encode(name, uts46=True, transitional=False).decode("ascii")
        except idna.IDNAError as exc:
            raise ValueError(f"not a valid internationalised host name ({exc})") from None
    labels = name.split(".")
    if len(name) > 253 or not all(_ASCII_LABEL.match(label) for label in labels):
        raise ValueError("not a valid host name")
    for label in labels:
        if label.startswith("xn--"):
            try:
                idna.decode(label)
            except idna.IDNAError:
                raise ValueError(f"label {label!r} is not a valid IDNA A-label") from None
    if _NUMERIC_LABEL.match(labels[-1]):
        raise ValueError("a host name ending in a number is read as an IPv4 address by browsers")
    return name


def host_allowed(host: str, allowed: tuple[str, ...]) -> bool:
    """Whether normalised ``host`` is an entry of normalised ``allowed`` or a proper subdomain of a name entry
    (label boundary: ``a.example.com`` matches ``example.com``; ``evil-example.com`` and ``example.com.evil``
    do not). IP literals match only themselves."""
    if host in allowed:
        return True
    if is_ip_literal(host):
        return False
    return any(not is_ip_literal(entry) and host.endswith("." + entry) for entry in allowed)


def is_ip_literal(value: str) -> bool:
    """Whether ``value`` is an IPv4 or IPv6 address (without brackets)."""
    try:
        ipaddress.ip_address(value)
    except ValueError:
        return False
    return True


@functools.lru_cache(maxsize=HOST_CACHE_SIZE)
def is_loopback_host(host: str) -> bool:
    """``localhost`` or an IP literal in 127.0.0.0/8 or ``::1`` (RFC 8252 sections 7.3 and 8.3)."""
    if host.lower().rstrip(".") == "localhost":
        return True
    return is_loopback_ip(host)


def is_loopback_ip(host: str) -> bool:
    """An IP literal in 127.0.0.0/8 or ``::1``: any port must be accepted (RFC 8252 section 7.3)."""
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


_SPECIAL_USE_NETWORKS = tuple(
    ipaddress.ip_network(network)
    for network in (
        "192.0.0.0/24",  # IETF protocol assignments (RFC 6890 section 2.2.2), anycast entries included
        "192.88.99.0/24",  # 6to4 relay anycast, deprecated (RFC 7526)
        "::/96",  # IPv4-compatible IPv6, deprecated (RFC 4291 section 2.5.5.1)
        "64:ff9b:1::/48",  # local-use IPv4/IPv6 translation (RFC 8215)
        "3fff::/20",  # documentation (RFC 9637)
        "5f00::/16",  # SRv6 SIDs (RFC 9602)
        "fec0::/10",  # site-local, deprecated (RFC 3879)
    )
)
"""Special-purpose ranges Python's ``is_global`` (3.11) counts as global."""

_NAT64 = ipaddress.IPv6Network("64:ff9b::/96")
_IPV4_TRANSLATED = ipaddress.IPv6Network("::ffff:0:0:0/96")


def is_public_address(address: str) -> bool:
    """A globally routable unicast address (RFC 6890 and the IANA special-purpose address registries): not
    loopback, private, link-local, unique-local, site-local, shared (CGNAT), documentation, benchmarking,
    reserved, multicast or unspecified. IPv6 addresses that carry an IPv4 address are judged by it as well:
    IPv4-mapped (``::ffff:0:0/96``), IPv4-translated (RFC 2765 ``::ffff:0:0:0/96``), NAT64 (RFC 6052
    ``64:ff9b::/96``) and 6to4 (RFC 3056 ``2002::/16``)."""
    ip = ipaddress.ip_address(address.split("%", 1)[0])
    if isinstance(ip, ipaddress.IPv6Address):
        embedded = ip.ipv4_mapped or ip.sixtofour
        if embedded is None and (ip in _NAT64 or ip in _IPV4_TRANSLATED):
            embedded = ipaddress.IPv4Address(int(ip) & 0xFFFFFFFF)
        if embedded is not None and not is_public_address(str(embedded)):
            return False
        if ip.ipv4_mapped is not None:
            ip = ip.ipv4_mapped
    if any(ip in network for network in _SPECIAL_USE_NETWORKS if network.version == ip.version):
        return False
    return ip.is_global and not ip.is_multicast


def is_public_host(host: str) -> bool:
    """False for ``localhost`` names and for IP literals that are not global (RFC 6890 special-purpose ranges:
    loopback, private, link-local, unique-local, ...). Names are checked again after DNS resolution
    (:func:`gateway.policy.network.check_fetched_uris`); a literal can be refused here."""
    lowered = host.lower().rstrip(".")
    if lowered == "localhost" or lowered.endswith((".localhost", ".local", ".internal")):
        return False
    try:
        return is_public_address(lowered.strip("[]"))
    except ValueError:
        return "." in lowered  # a dotless name resolves in a local search domain


# ----------------------------------------------------------------------------------------------- URIs


def split_uri(uri: str, field_name: str, error: type[OAuthError]) -> SplitResult:
    """RFC 3986 components, or ``error`` naming the field for what does not parse (e.g. a non-numeric port)."""
    try:
        parts = urlsplit(uri)
        _ = parts.port  # raises on a non-numeric or out-of-range port
    except ValueError:
        raise error(f"{field_name} {uri!r}: not a valid URI") from None
    return parts


@dataclass(frozen=True)
class RedirectRules:
    """The deployment's redirect URI policy (:class:`gateway.policy.settings.RedirectUriSettings`), resolved."""

    allowed_schemes: frozenset[str] = frozenset()
    """Empty: any scheme outside :attr:`denied_schemes`."""
    denied_schemes: frozenset[str] = FORBIDDEN_SCHEMES
    allowed_hosts: tuple[str, ...] = ()
    """Normalised (:func:`normalize_host`); empty: any host."""
    web_loopback: bool = False


DEFAULT_REDIRECT_RULES = RedirectRules()


def check_redirect_uri(
    uri: str,
    *,
    field_name: str,
    application_type: str | None,
    max_length: int,
    rules: RedirectRules = DEFAULT_REDIRECT_RULES,
    error: type[OAuthError] = InvalidRedirectUri,
) -> None:
    """One redirection URI (RFC 6749 section 3.1.2, RFC 8252 section 7, RFC 9700 section 4.1.1).

    Absolute; no fragment; no userinfo; no wildcard; never a script-capable or local scheme. By
    ``application_type`` (OpenID Connect Registration section 2): ``native`` gets loopback ``http`` on any port
    (RFC 8252 section 7.3), private-use schemes (section 7.1) and claimed ``https`` (section 7.2); ``web``
    gets ``https`` only, loopback hosts only when :attr:`RedirectRules.web_loopback`; a client that omits it
    (Cursor) gets the union, as the native rules are the narrower risk for a self-registering client. Then the
    deployment's scheme and host allow-lists.
    """
    if len(uri) > max_length:
        raise error(f"{field_name}: longer than {max_length} characters")
    if _SPACE_OR_CONTROL.search(uri):
        raise error(f"{field_name} {uri!r}: must not contain whitespace or control characters")
    if "#" in uri:
        raise error(f"{field_name} {uri!r}: must not contain a fragment (RFC 6749 section 3.1.2)")
    if "*" in uri:
        raise error(f"{field_name} {uri!r}: wildcards are not allowed; register exact URIs")
    parts = split_uri(uri, field_name, error)
    scheme = parts.scheme.lower()
    if not scheme or not SCHEME_SYNTAX.match(scheme):
        raise error(f"{field_name} {uri!r}: must be an absolute URI with a scheme")
    if scheme in FORBIDDEN_SCHEMES or scheme in rules.denied_schemes:
        raise error(f"{field_name} {uri!r}: scheme {scheme!r} is not allowed")
    if rules.allowed_schemes and scheme not in rules.allowed_schemes:
        raise error(f"{field_name} {uri!r}: scheme {scheme!r} is not allowed; allowed: {sorted(rules.allowed_schemes)}")
    if "@" in parts.netloc or parts.username is not None or parts.password is not None:
        raise error(f"{field_name} {uri!r}: must not contain userinfo")
    if scheme in ("http", "https"):
        _check_web_redirect(
            uri,
            parts,
            scheme=scheme,
            field_name=field_name,
            application_type=application_type,
            rules=rules,
            error=error,
        )
        return
    # a private-use URI scheme (RFC 8252 section 7.1): for native apps only
    if application_type == "web":
        raise error(
            f"{field_name} {uri!r}: private-use scheme {scheme!r} is not allowed for a 'web' client; "
            "use 'https' or register as application_type 'native'"
        )
    if not (parts.netloc or parts.path):
        raise error(f"{field_name} {uri!r}: must have a path after the scheme")


def _check_web_redirect(
    uri: str,
    parts: SplitResult,
    *,
    scheme: str,
    field_name: str,
    application_type: str | None,
    rules: RedirectRules,
    error: type[OAuthError],
) -> None:
    raw_host = parts.hostname or ""
    if not raw_host:
        raise error(f"{field_name} {uri!r}: must name a host")
    if "%" in parts.netloc or "\\" in uri:
        raise error(f"{field_name} {uri!r}: percent-encoded or zone-qualified hosts and backslashes are not allowed")
    try:
        host = normalize_host(raw_host)
    except ValueError as exc:
        raise error(f"{field_name} {uri!r}: host {raw_host!r} is not valid: {exc}") from None
    loopback = is_loopback_host(host)
    if scheme == "http" and not loopback:
        raise error(
            f"{field_name} {uri!r}: 'http' is allowed only for loopback hosts "
            "(127.0.0.1, [::1], localhost); use 'https'"
        )
    if loopback and application_type == "web" and not rules.web_loopback:
        raise error(
            f"{field_name} {uri!r}: loopback redirect URIs are not allowed for a 'web' client; "
            "use a public 'https' URI or register as application_type 'native'"
        )
    if rules.allowed_hosts and not host_allowed(host, rules.allowed_hosts):
        raise error(f"{field_name} {uri!r}: host {host!r} is not allowed; allowed: {list(rules.allowed_hosts)}")


def check_web_uri(uri: str, *, field_name: str, max_length: int, https_only: bool = False) -> None:
    """``client_uri``, ``logo_uri``, ``tos_uri``, ``policy_uri``, ``jwks_uri`` (RFC 7591 section 2):
    absolute ``https`` URLs (``http`` only on loopback, unless ``https_only``), no userinfo, no fragment."""
    if len(uri) > max_length:
        raise InvalidClientMetadata(f"{field_name}: longer than {max_length} characters")
    if _SPACE_OR_CONTROL.search(uri):
        raise InvalidClientMetadata(f"{field_name} {uri!r}: must not contain whitespace or control characters")
    parts = split_uri(uri, field_name, InvalidClientMetadata)
    scheme = parts.scheme.lower()
    host = parts.hostname or ""
    if scheme not in ("https", "http") or not host:
        raise InvalidClientMetadata(f"{field_name} {uri!r}: must be an absolute https URL")
    if scheme == "http" and (https_only or not is_loopback_host(host)):
        raise InvalidClientMetadata(f"{field_name} {uri!r}: must use https")
    if parts.username is not None or "@" in parts.netloc:
        raise InvalidClientMetadata(f"{field_name} {uri!r}: must not contain userinfo")
    if parts.fragment or uri.endswith("#"):
        raise InvalidClientMetadata(f"{field_name} {uri!r}: must not contain a fragment")
    if "%" in parts.netloc or "\\" in uri:
        raise InvalidClientMetadata(f"{field_name} {uri!r}: percent-encoded hosts and backslashes are not allowed")
    try:
        normalize_host(host)
    except ValueError as exc:
        raise InvalidClientMetadata(f"{field_name} {uri!r}: host {host!r} is not valid: {exc}") from None


def origin_key(uri: str) -> tuple[str, str] | None:
    """``(scheme, normalised host)`` of an http(s) URI, for the RFC 7591 section 5 same-host comparison;
    ``None`` when the URI has no such host (a private-use scheme)."""
    try:
        parts = urlsplit(uri)
        host = normalize_host(parts.hostname or "")
    except ValueError:
        return None
    scheme = parts.scheme.lower()
    return (scheme, host) if scheme in ("http", "https") else None
