"""Fixtures for tests against the real providers (``hydra_provider``/``keycloak_provider`` are in tests/conftest.py).

- ``http``: an aiohttp session whose cookie jar accepts IP hosts, for the headless logins of
  :mod:`gateway.devstack.login`.
- ``hydra_gateway`` / ``keycloak_gateway``: ``dcr-gateway serve`` subprocesses fronting the session's
  providers, configured exactly like the local stack's (see gateway/devstack/stack.py), one per session.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path

import aiohttp
import pytest

from gateway.devstack.process import free_port
from gateway.devstack.providers import (
    HydraProvider,
    KeycloakProvider,
    start_gateway,
)

GATEWAY_READY_TIMEOUT = 30.0
_HERE = Path(__file__).parent


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if _HERE in item.path.parents:
            item.add_marker(pytest.mark.integration)


@pytest.fixture
async def http() -> AsyncIterator[aiohttp.ClientSession]:
    """A client session with a cookie jar that keeps cookies of IP hosts (127.0.0.1)."""
    async with aiohttp.ClientSession(
        cookie_jar=aiohttp.CookieJar(unsafe=True), timeout=aiohttp.ClientTimeout(total=30)
    ) as session:
        yield session


@dataclass(frozen=True)
class GatewayProcess:
    """A running ``dcr-gateway serve`` fronting one provider."""

    url: str
    """The gateway's origin (its ``DCR_PUBLIC_URL``)."""
    issuer: str
    log_path: Path


@pytest.fixture(scope="session")
def hydra_gateway(hydra_provider: HydraProvider, tmp_path_factory: pytest.TempPathFactory) -> Iterator[GatewayProcess]:
    """A gateway on ``hydra_provider.gateway_port``: Hydra's issuer origin."""
    env = hydra_provider.gateway_env()
    log_path = tmp_path_factory.mktemp("gateway-hydra") / "gateway.log"
    service = start_gateway("gateway-hydra", env=env, log_path=log_path)
    try:
        service.wait_ready(GATEWAY_READY_TIMEOUT)
        yield GatewayProcess(url=env["DCR_PUBLIC_URL"], issuer=hydra_provider.issuer, log_path=log_path)
    finally:
        service.stop()


@pytest.fixture(scope="session")
def keycloak_gateway(
    keycloak_provider: KeycloakProvider, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[GatewayProcess]:
    """A gateway on a free port fronting Keycloak; issuer ``{url}/realms/mcp`` (Keycloak follows X-Forwarded-*)."""
    env = keycloak_provider.gateway_env(free_port())
    log_path = tmp_path_factory.mktemp("gateway-keycloak") / "gateway.log"
    service = start_gateway("gateway-keycloak", env=env, log_path=log_path)
    url = env["DCR_PUBLIC_URL"]
    try:
        service.wait_ready(GATEWAY_READY_TIMEOUT)
        yield GatewayProcess(url=url, issuer=f"{url}/realms/{keycloak_provider.realm}", log_path=log_path)
    finally:
        service.stop()
