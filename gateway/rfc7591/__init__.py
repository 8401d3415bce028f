"""OAuth 2.0 Dynamic Client Registration Protocol, RFC 7591.

https://www.rfc-editor.org/rfc/rfc7591

- client metadata (section 2) and the section 3.2.2 errors live in :mod:`gateway.oauth` (shared by every layer).
- :mod:`.validation`: the safe-default rules a registration must satisfy before it reaches a provider.
- :mod:`.handler`: the registration endpoint (section 3.1) as a short list of named steps.
"""
