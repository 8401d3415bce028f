"""Keycloak adapter: the admin REST API ``/admin/realms/{realm}/clients``."""
