"""What RFC 7591 registration and the RFC 7592 client configuration endpoint share, below their HTTP handlers
(:mod:`gateway.rfc7591`, :mod:`gateway.rfc7592`), above the policy, access control, limits and discovery:

- :mod:`.service`: ``IssuerContext``, ``Caller``, validation, credentials, provider-error mapping, rollback;
- :mod:`.tokens`: registration access tokens (RFC 7592 section 3), minted and verified;
- :mod:`.records`: what the gateway keeps about a client in the provider's own record (``gateway_data``).
"""
