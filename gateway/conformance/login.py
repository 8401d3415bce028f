"""Login drivers: how the suite signs a test user in at the authorization endpoint, headlessly.

A driver takes a session (with a cookie jar that keeps cookies of IP hosts) and a complete authorization URL,
follows the provider's redirects and login (and consent) steps without a browser or a callback server, and
returns the ``Location`` that points back at the client's redirect URI (with ``code`` and ``state``, or an
``error``). The walking itself lives in :mod:`gateway.conformance.headless`:

- ``keycloak``: Keycloak's login form (``kc-form-login``) with a test user's credentials, consent accepted;
- ``hydra-admin``: Hydra's admin API accepts the login and consent challenges for a subject (the admin API
  has no authentication: only from where it is reachable, e.g. CI next to a staging Hydra).
"""

from __future__ import annotations

import functools
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

import aiohttp

from gateway.conformance.headless import hydra_accept_login_and_consent, keycloak_form_login

LoginFunction = Callable[[aiohttp.ClientSession, str], Awaitable[str]]


@dataclass(frozen=True)
class LoginDriver:
    """A named headless login: ``await driver.login(session, authorization_url)`` -> the client redirect."""

    name: str
    login: LoginFunction


def keycloak_form(username: str, password: str) -> LoginDriver:
    """Sign ``username`` in on Keycloak's login form and accept the consent screen."""
    return LoginDriver(
        name=f"keycloak form as {username!r}",
        login=functools.partial(keycloak_form_login, username=username, password=password),
    )


def hydra_admin(admin_url: str, subject: str = "alice") -> LoginDriver:
    """Accept Hydra's login and consent challenges for ``subject`` through the admin API at ``admin_url``."""
    return LoginDriver(
        name=f"hydra admin API ({admin_url}) as {subject!r}",
        login=functools.partial(hydra_accept_login_and_consent, admin_url=admin_url, subject=subject),
    )
