"""In-memory reference adapter: fast HTTP-layer tests and a template for new adapters.

It proves nothing about a real provider; the integration tests use Keycloak and Hydra.
"""
