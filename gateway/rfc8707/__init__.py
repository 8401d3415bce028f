"""RFC 8707 resource indicators: which protected resources an issuer's tokens may be issued for.

:class:`ResourceSettings` is the ``[resources]`` configuration; :class:`ProtectedResources` the compiled, pure
matcher the front door asks (:mod:`gateway.authorization`).
"""

from gateway.rfc8707.resources import ProtectedResources, ResourceSettings, canonical_resource, resource_problem

__all__ = ["ProtectedResources", "ResourceSettings", "canonical_resource", "resource_problem"]
