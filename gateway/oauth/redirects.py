"""Matching the ``redirect_uri`` of an authorization request against a client's registered redirect URIs. Pure.

RFC 6749 section 3.1.2.3 and OAuth 2.1 section 4.1.1 (also RFC 9700 section 4.1.3): the authorization server
compares the redirect URI "using exact string matching". The single exception is RFC 8252 section 7.3: for a
loopback interface redirect URI, "The authorization server MUST allow any port to be specified at the time of
the request for loopback IP redirect URIs". It is extended here to ``localhost`` (RFC 8252 section 8.3 advises
against it, but MCP clients register it: Claude Code's metadata document lists the portless
``http://localhost/callback`` and uses whatever port it got), and to registered URIs without a port. Nothing else
is relaxed: no case folding, no percent-decoding, no trailing slash added or removed, no https loopback.
"""

from __future__ import annotations

from collections.abc import Sequence

LOOPBACK_HOSTS = frozenset({"127.0.0.1", "[::1]", "localhost"})
"""Hosts of RFC 8252 section 7.3 loopback redirects, exactly as written in the URI."""

_LOOPBACK_SCHEME = "http://"


def match_redirect_uri(requested: str, registered: Sequence[str]) -> str | None:
    """The entry of ``registered`` that ``requested`` matches, or ``None``.

    An identical string matches (RFC 6749 section 3.1.2.3). Otherwise a loopback request (scheme ``http``, host
    ``127.0.0.1``, ``[::1]`` or ``localhost``, any valid port or none) matches a registered loopback URI with the
    same host, path and query, whatever its port (RFC 8252 section 7.3). Exact matches are preferred; among the
    rest the first registered URI wins.
    """
    if requested in registered:
        return requested
    wanted = _loopback_parts(requested)
    if wanted is None:
        return None
    for candidate in registered:
        if _loopback_parts(candidate) == wanted:
            return candidate
    return None


def is_loopback_redirect(uri: str) -> bool:
    """Whether ``uri`` is an RFC 8252 section 7.3 loopback redirect URI: ``http``, host ``127.0.0.1``,
    ``[::1]`` or ``localhost`` (as written: lower case), an optional valid port, no userinfo, no fragment."""
    return _loopback_parts(uri) is not None


def _loopback_parts(uri: str) -> tuple[str, str] | None:
    """``(host, path and query)`` of a loopback redirect URI, its port dropped; ``None`` for any other URI."""
    if not uri.startswith(_LOOPBACK_SCHEME) or "#" in uri:
        return None
    rest = uri[len(_LOOPBACK_SCHEME) :]
    end = min((i for i in (rest.find("/"), rest.find("?")) if i >= 0), default=len(rest))
    authority, path_and_query = rest[:end], rest[end:]
    if authority.startswith("[::1]"):
        host, port = "[::1]", authority[len("[::1]") :]
    else:
        host, _, port_text = authority.partition(":")
        port = ":" + port_text if ":" in authority else ""
    if host not in LOOPBACK_HOSTS:
        return None
    if port and not _valid_port(port[1:] if port.startswith(":") else "x"):
        return None
    return host, path_and_query


def _valid_port(text: str) -> bool:
    return 0 < len(text) <= 5 and text.isascii() and text.isdigit() and 0 < int(text) <= 65535
