"""The one policy step that does I/O: URLs the provider will fetch (``jwks_uri``, RFC 7591 section 2) must
resolve to public addresses only, so a registration cannot point the provider at its own network (SSRF).

The resolver is injectable (:class:`Resolver`), so tests need no DNS. The check is made at registration time;
the provider resolves again when it fetches, so an egress firewall on the provider remains the real guard
against DNS rebinding.
"""

from __future__ import annotations

import asyncio
import socket
from collections.abc import Awaitable, Callable
from urllib.parse import urlsplit

from gateway.oauth.errors import InvalidClientMetadata
from gateway.oauth.metadata import ClientMetadata
from gateway.policy.uris import is_public_address

Resolver = Callable[[str], Awaitable[list[str]]]
"""A host name to the IP addresses it resolves to (raises :class:`OSError` when it does not resolve)."""

RESOLVE_TIMEOUT_SECONDS = 5.0


async def system_resolver(host: str) -> list[str]:
    """``getaddrinfo`` through the event loop (the system resolver, in a thread)."""
    infos = await asyncio.get_running_loop().getaddrinfo(host, 443, type=socket.SOCK_STREAM)
    return [str(info[4][0]) for info in infos]


async def check_fetched_uris(metadata: ClientMetadata, resolver: Resolver = system_resolver) -> ClientMetadata:
    """Every address ``jwks_uri``'s host resolves to is public (not loopback, private, link-local, unique-local,
    shared or reserved); a host that does not resolve is refused too, since the provider could not use it."""
    if metadata.jwks_uri is None:
        return metadata
    host = (urlsplit(metadata.jwks_uri).hostname or "").strip("[]")
    try:
        async with asyncio.timeout(RESOLVE_TIMEOUT_SECONDS):
            addresses = await resolver(host)
    except (OSError, TimeoutError):
        raise InvalidClientMetadata(f"jwks_uri {metadata.jwks_uri!r}: host {host!r} does not resolve") from None
    if not addresses:
        raise InvalidClientMetadata(f"jwks_uri {metadata.jwks_uri!r}: host {host!r} does not resolve")
    for address in addresses:
        try:
            public = is_public_address(address)
        except ValueError:
            public = False
        if not public:
            raise InvalidClientMetadata(
                f"jwks_uri {metadata.jwks_uri!r}: host {host!r} resolves to a loopback, private, link-local or "
                "reserved address; the key set must be on a public host"
            )
    return metadata
