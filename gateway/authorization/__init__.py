"""The front door's checks on the provider's authorization, PAR, token and revocation endpoints: Client ID Metadata
Documents, RFC 8707 resource indicators, RFC 8252 loopback redirects and RFC 9207 ``iss``
(:mod:`gateway.authorization.endpoints`, :mod:`gateway.authorization.documents`)."""
