"""OAuth 2.0 Authorization Server Metadata, RFC 8414 (and OpenID Connect Discovery 1.0).

https://www.rfc-editor.org/rfc/rfc8414
https://openid.net/specs/openid-connect-discovery-1_0.html

- :mod:`.wellknown`: the well-known URL forms (section 3.1 path insertion, OIDC path appending) and every
  location MCP clients probe for an issuer.
- :mod:`.rewrite`: the pure upstream-document -> served-document rewrite (section 2 fields, section 3.3
  issuer check) and its stable serialization.
- :mod:`.cache`: one issuer's rewritten document, fetched from the provider, refreshed in the background,
  served from memory (section 3.2 responses).
- :mod:`.handler`: the aiohttp routes answering every probed location (GET, HEAD, CORS preflight).

The ``issuer`` is never rewritten: section 3.3 makes clients reject a document whose issuer differs from
the one the well-known URL was built from, so the gateway answers on the issuer's own origin.
"""

from gateway.rfc8414.rewrite import UpstreamMetadataError
from gateway.rfc8414.wellknown import DocumentKind, discovery_locations, is_discovery_path, well_known_url

__all__ = [
    "DocumentKind",
    "UpstreamMetadataError",
    "discovery_locations",
    "is_discovery_path",
    "well_known_url",
]
