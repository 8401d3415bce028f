"""The protocol pieces every other layer shares, at the bottom of the import layers (they import no other
gateway package):

- :mod:`.errors`: OAuth error responses (RFC 7591 section 3.2.2, RFC 6750 section 3.1).
- :mod:`.bearer`: the one RFC 6750 Bearer token parser, for initial and registration access tokens alike.
- :mod:`.metadata`: client metadata, RFC 7591 section 2 and OpenID Connect Registration.
- :mod:`.lengths`: how long a metadata value is in the unit a provider's database counts.
"""
