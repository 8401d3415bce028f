"""Pure helpers the built-in adapters share for the MCP 2026-07-28 capabilities of :mod:`adapters.base`
(:class:`~adapters.base.DocumentClients`, :class:`~adapters.base.ResourceIndicators`,
:class:`~adapters.base.LoopbackRedirects`): derived ids and names, the bounded list of redirect URIs admitted
at run time, and a small bounded cache of what is already prepared in the provider."""

from __future__ import annotations

import hashlib
import ipaddress
import time
from collections import OrderedDict
from collections.abc import Callable, Hashable, Iterable, Sequence
from typing import Generic, TypeVar
from urllib.parse import urlsplit, urlunsplit

from adapters.base import DOCUMENT_SOURCE, NewClient

DOCUMENT_ID_PREFIX = "cimd-"
"""Prefix of the derived id a document client is stored under where the provider cannot address its URL."""
RESOURCE_SCOPE_PREFIX = "resource-"
"""Prefix of the Keycloak client scope that puts one RFC 8707 resource into ``aud``."""
MAX_ADMITTED_REDIRECT_URIS = 8
"""Most loopback redirect URIs admitted at run time (RFC 8252 section 7.3) one client keeps; older ones go."""
MAX_DOCUMENT_URL_LENGTH = 255
"""Longest document URL a provider client id column holds (Keycloak ``CLIENT.CLIENT_ID`` VARCHAR(255))."""


def derived_document_id(url: str) -> str:
    """A stable id addressable in every admin API for the document client of ``url``: ``cimd-`` and the first 40
    hex digits of SHA-256 of the URL (160 bits: no two document URLs share one in practice)."""
    return DOCUMENT_ID_PREFIX + hashlib.sha256(url.encode("utf-8")).hexdigest()[:40]


def resource_scope_name(resource: str) -> str:
    """The deterministic name of the client scope carrying ``resource`` as audience (``resource-`` and 16 hex
    digits of SHA-256 of the resource URI, exactly as configured)."""
    return RESOURCE_SCOPE_PREFIX + hashlib.sha256(resource.encode("utf-8")).hexdigest()[:16]


def document_url_syntax(url: str) -> bool:
    """Whether ``url`` can be a document client's id at all: an http(s) URL of printable ASCII without blanks, at
    most :data:`MAX_DOCUMENT_URL_LENGTH` characters. (The front door checks the real grammar, https only; this
    only keeps what the adapters send in an admin query or store sane.)"""
    return (
        isinstance(url, str)
        and 0 < len(url) <= MAX_DOCUMENT_URL_LENGTH
        and url.startswith(("https://", "http://"))
        and all(33 <= ord(char) <= 126 for char in url)
    )


def document_gateway_data(client: NewClient) -> dict[str, object]:
    """The gateway data of a document client: what the gateway sent, with ``source`` always
    :data:`~adapters.base.DOCUMENT_SOURCE` (the adapters mark document clients themselves too)."""
    return {**client.gateway_data, "source": DOCUMENT_SOURCE}


def is_http_loopback_ip(uri: str) -> bool:
    """``http`` with an IP literal in the loopback range (``127.0.0.0/8``, ``[::1]``) as host."""
    parts = urlsplit(uri)
    if parts.scheme != "http" or not parts.hostname:
        return False
    try:
        return ipaddress.ip_address(parts.hostname).is_loopback
    except ValueError:
        return False


def without_port(uri: str) -> str:
    """``uri`` without its port (the form a loopback redirect URI is compared in, RFC 8252 section 7.3)."""
    parts = urlsplit(uri)
    host = parts.hostname or ""
    netloc = f"[{host}]" if ":" in host else host
    return urlunsplit((parts.scheme, netloc, parts.path, parts.query, parts.fragment))


def admitted_after(admitted: Sequence[str], redirect_uri: str) -> list[str]:
    """The admitted URIs once ``redirect_uri`` is admitted: appended (moved last if already there), the oldest
    dropped beyond :data:`MAX_ADMITTED_REDIRECT_URIS`."""
    kept = [uri for uri in admitted if uri != redirect_uri]
    kept.append(redirect_uri)
    return kept[-MAX_ADMITTED_REDIRECT_URIS:]


def admitted_kept(admitted: Iterable[str], registered: Iterable[str]) -> list[str]:
    """The admitted URIs that still derive from a registered redirect URI (the same URI but for the port): what a
    full replacement of the client's metadata keeps, so that another gateway instance that admitted one (and
    cached it) is not silently undone; the others go with the registration they came from."""
    registered_list = list(registered)
    bases = {without_port(uri) for uri in registered_list}
    return [uri for uri in admitted if without_port(uri) in bases and uri not in registered_list]


def merged_redirect_uris(registered: Iterable[str], admitted: Iterable[str]) -> list[str]:
    """The redirect URIs a provider client holds: the registered ones, then the admitted ones (each once)."""
    return list(dict.fromkeys([*registered, *admitted]))


_K = TypeVar("_K", bound=Hashable)
_V = TypeVar("_V")


class BoundedCache(Generic[_K, _V]):
    """What is already prepared in the provider (a resource bound, a redirect URI admitted), so repeated
    authorizations cost no admin call: at most ``size`` entries, least recently used dropped first, each trusted
    for ``ttl`` seconds (then checked with the provider again, in case it was changed there)."""

    def __init__(self, size: int = 10_000, ttl: float = 600.0) -> None:
        self._size = size
        self._ttl = ttl
        self._entries: OrderedDict[_K, tuple[float, _V]] = OrderedDict()

    def get(self, key: _K) -> _V | None:
        entry = self._entries.get(key)
        if entry is None:
            return None
        if time.monotonic() - entry[0] > self._ttl:
            del self._entries[key]
            return None
        self._entries.move_to_end(key)
        return entry[1]

    def put(self, key: _K, value: _V) -> None:
        self._entries[key] = (time.monotonic(), value)
        self._entries.move_to_end(key)
        while len(self._entries) > self._size:
            self._entries.popitem(last=False)

    def forget(self, predicate: Callable[[_K], bool]) -> None:
        """Drop every entry whose key satisfies ``predicate``, e.g. all of one client's."""
        for key in [key for key in self._entries if predicate(key)]:
            del self._entries[key]
