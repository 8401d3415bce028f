"""Access control for client registration: who may register, and with which privileges.

- Initial access tokens, RFC 7591 section 3: "The client registration endpoint MAY be designed to accept
  authorized requests [...] the initial access token [...] is provisioned by the authorization server",
  presented as an OAuth 2.0 Bearer token in the ``Authorization`` header only (RFC 6750 section 2.1). Two
  kinds: static tokens, configured by their SHA-256 hash; and signed tokens (JWTs, HS256 or ES256/EdDSA) with
  an expiry, an id and an optional number of uses. :mod:`gateway.access.tokens`.
- Software statements, RFC 7591 section 2.3: a JWS signed by a trusted issuer's key whose claims are client
  metadata; they "MUST take precedence" over the plain JSON members of the request.
  :mod:`gateway.access.software_statement`.
- Per issuer, a mode says which of them a registration needs (:class:`gateway.access.settings.AccessMode`);
  :mod:`gateway.access.control` applies it to a request, and a verified caller is *authenticated*, which the
  policy engine may reward with privileged metadata (``client_credentials``, ``jwks_uri``).

This package has no import-time dependency on :mod:`gateway.settings` or the app: it is imported by both.
"""
