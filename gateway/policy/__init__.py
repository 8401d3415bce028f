"""The registration policy engine: RFC 7591 section 2 and section 5, RFC 8252, RFC 9700 section 4.1.

https://www.rfc-editor.org/rfc/rfc7591

- :mod:`.settings`: the declarative configuration (``[policy]`` in TOML, ``DCR_POLICY__*``), with MCP defaults.
- :mod:`.uris`: pure URI and host predicates (redirect URIs by ``application_type``, allow-lists, IDNA).
- :mod:`.rules`: :class:`RegistrationPolicy` (settings + provider metadata + caller, resolved) and the ordered
  table of named rules (:data:`RULES`) that set defaults, negotiate, trim or reject.
- :mod:`.network`: the only step with I/O, the resolution check of URLs the provider will fetch.

The same chain runs for RFC 7591 registrations and RFC 7592 updates (both go through
:func:`gateway.rfc7591.handler.validate_registration`).
"""

from gateway.policy.network import Resolver, check_fetched_uris, system_resolver
from gateway.policy.rules import RULES, RegistrationPolicy, Rule, apply_defaults, validate
from gateway.policy.settings import PolicySettings, Privilege, SameHostMode, ScopeMode

__all__ = [
    "RULES",
    "PolicySettings",
    "Privilege",
    "RegistrationPolicy",
    "Resolver",
    "Rule",
    "SameHostMode",
    "ScopeMode",
    "apply_defaults",
    "check_fetched_uris",
    "system_resolver",
    "validate",
]
