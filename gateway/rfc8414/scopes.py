"""Which scope values discovery may advertise: what a registration through the gateway can obtain (RFC 8414
section 2 ``scopes_supported``, RFC 7591 section 2 ``scope``).

https://www.rfc-editor.org/rfc/rfc8414#section-2

Two facts limit a registration's scopes, and discovery is built from the same two, so the advertised document
cannot drift from what registration grants:

- the provider, through the adapter's optional :class:`adapters.base.RegistrableScopes` capability (Keycloak
  attaches only ``openid`` and the realm's default and default-optional client scopes);
- the deployment's scope allow-list (``policy.scopes``, :class:`gateway.policy.settings.ScopeSettings`), applied
  by :func:`gateway.policy.rules.scopes_allowed` on every registration and update.

:func:`policy_scope_limit` and :func:`combine` are pure; :func:`registrable_scopes_source` is the I/O edge the
discovery cache calls on every refresh (the Keycloak adapter caches realm scopes for a minute, so a changed realm
reaches discovery at the next refresh after that).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Set

from adapters.base import ProviderAdapter, RegistrableScopes
from gateway.policy.settings import ScopeSettings

ScopesSource = Callable[[], Awaitable[frozenset[str] | None]]
"""Called by :class:`gateway.rfc8414.cache.DiscoveryCache` on every fetch: the registrable scopes now, or
``None`` for no limit; raises when they cannot be known."""


def policy_scope_limit(settings: ScopeSettings) -> frozenset[str] | None:
    """The limit the scope allow-list puts on the provider's advertised scopes, or ``None`` for none.

    :meth:`gateway.policy.rules.RegistrationPolicy.from_settings` allows ``allowed`` plus, with
    ``include_advertised``, the served ``scopes_supported``. So: no ``allowed`` and no ``include_advertised``
    is no allow-list; ``include_advertised`` makes every advertised value allowed, which limits nothing the
    provider advertises; only ``allowed`` alone limits it, to ``allowed``. ``mode`` decides whether other
    values are dropped or refused, not which values a registration obtains, so it does not matter here.
    """
    if settings.allowed is None or settings.include_advertised:
        return None
    return frozenset(settings.allowed)


def combine(*limits: Set[str] | None) -> frozenset[str] | None:
    """The intersection of the limits that exist; ``None`` when none does."""
    result: frozenset[str] | None = None
    for limit in limits:
        if limit is not None:
            result = frozenset(limit) if result is None else result & limit
    return result


def registrable_scopes_source(
    adapter: ProviderAdapter, issuer_key: str, settings: ScopeSettings
) -> ScopesSource | None:
    """What discovery for ``issuer_key`` may advertise, asked anew on each refresh; ``None`` when nothing limits it
    (an adapter without :class:`~adapters.base.RegistrableScopes` and no allow-list), so the cache asks nothing."""
    policy_limit = policy_scope_limit(settings)
    # An optional capability: a third-party adapter without the method is asked nothing (runtime Protocol check).
    provider = adapter if isinstance(adapter, RegistrableScopes) else None
    if provider is None and policy_limit is None:
        return None

    async def source() -> frozenset[str] | None:
        provider_limit = await provider.registrable_scopes(issuer_key) if provider is not None else None
        return combine(provider_limit, policy_limit)

    return source
