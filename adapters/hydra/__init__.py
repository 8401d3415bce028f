"""Ory Hydra v2 adapter: the admin REST API ``/admin/clients``."""
