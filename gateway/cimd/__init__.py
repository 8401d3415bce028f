"""OAuth Client ID Metadata Documents (CIMD), draft-ietf-oauth-client-id-metadata-document (-00, the revision MCP
2026-07-28 pins; section numbers of -01 where they differ are named), as the MCP 2026-07-28 authorization
specification ("client-registration") uses them: a ``client_id`` that is an https URL naming a JSON document of
client metadata, fetched by the authorization server instead of a registration.

- :mod:`gateway.cimd.settings`: ``[cimd]`` (``DCR_CIMD__*``).
- :mod:`gateway.cimd.url`: the Client Identifier URL grammar and host policy, before any I/O (section 3).
- :mod:`gateway.cimd.fetch`: the SSRF-hardened fetch (sections 4 and 6.5/6.6 of -01: special-use addresses,
  no redirects, 200 only, size and time limits), the only module here that does I/O.
- :mod:`gateway.cimd.cache`: HTTP caching of documents (RFC 9111, section 4.3 of -01: never errors, never
  invalid documents), with in-flight fetches shared.
- :mod:`gateway.cimd.document`: a fetched document to :class:`gateway.oauth.metadata.ClientMetadata`
  (section 4.1), pure.

Every refusal is a :class:`gateway.cimd.errors.DocumentRefused`.
"""
