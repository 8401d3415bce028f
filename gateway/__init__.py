"""dcr-gateway: RFC 7591 dynamic client registration and RFC 8414 discovery for MCP clients, in front of
Keycloak or Ory Hydra. See :func:`gateway.app.create_app`."""

__version__ = "0.1.0"
