"""OAuth 2.0 Dynamic Client Registration Management Protocol, RFC 7592
(https://www.rfc-editor.org/rfc/rfc7592).

The client configuration endpoint ``{issuer}{registration_path}/{client_id}``: read (section 2.1), update
(section 2.2, a full replacement) and delete (section 2.3) a registered client, authorized by the registration
access token minted at registration (section 3). The gateway keeps no state: only a hash of that token lives in
the provider's client record, in the gateway-owned data of the one client it is bound to.
"""
