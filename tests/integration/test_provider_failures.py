"""When the provider fails, clients get RFC-shaped answers, never a 5xx on discovery or a leaked credential.

The gateway runs in-process here (so its log stream can be read) against the session's real providers,
misconfigured on purpose.
"""

from __future__ import annotations

import io

from gateway.devstack.process import free_port
from gateway.devstack.providers import HydraProvider, KeycloakProvider
from gateway.settings import Settings
from tests.integration.conftest import InProcessGateways

NATIVE = {"redirect_uris": ["http://127.0.0.1:3000/callback"], "token_endpoint_auth_method": "none"}

Start = InProcessGateways


async def test_keycloak_refusing_the_admin_credentials_gives_503_and_a_loud_log_without_the_secret(
    keycloak_provider: KeycloakProvider, start: Start, info_logs: io.StringIO
) -> None:
    wrong_secret = "wrong-secret-that-must-never-be-logged"
    settings = Settings(
        public_url="http://127.0.0.1:1",
        provider="keycloak",
        provider_url=keycloak_provider.base_url,
        keycloak={
            "realms": [keycloak_provider.realm],
            "client_id": keycloak_provider.admin_client_id,
            "client_secret": wrong_secret,
        },
        discovery_retry_seconds=1,
    )
    client = await start(settings)
    response = await client.post(f"/realms/{keycloak_provider.realm}/register", json=NATIVE)
    assert response.status == 503
    assert response.headers["Retry-After"]
    body = await response.json()
    assert body["error"] == "temporarily_unavailable"
    assert "credential" not in body["error_description"]
    logged = info_logs.getvalue()
    assert "provider.admin_auth_failed" in logged
    assert '"level": "error"' in logged
    assert wrong_secret not in logged


async def test_hydra_admin_unreachable_gives_503(hydra_provider: HydraProvider, start: Start) -> None:
    settings = Settings(
        public_url=hydra_provider.issuer,
        provider="hydra",
        provider_url=hydra_provider.public_url,
        hydra={"admin_url": f"http://127.0.0.1:{free_port()}"},
    )
    client = await start(settings)
    response = await client.post("/register", json=NATIVE)
    assert response.status == 503
    assert (await response.json())["error"] == "temporarily_unavailable"


async def test_provider_down_at_start_never_gives_a_5xx_on_discovery(start: Start, info_logs: io.StringIO) -> None:
    closed = f"http://127.0.0.1:{free_port()}"
    settings = Settings(
        public_url="http://127.0.0.1:1",
        provider="hydra",
        provider_url=closed,
        hydra={"admin_url": closed},
        discovery_retry_seconds=1,
        provider_timeout=2,
    )
    client = await start(settings)
    for path in ("/.well-known/oauth-authorization-server", "/.well-known/openid-configuration"):
        response = await client.get(path)
        assert response.status == 404, path
        assert response.headers["Retry-After"]
    assert (await client.get("/readyz")).status == 503
    assert (await client.post("/register", json=NATIVE)).status == 503
    # front door: the provider's own pages are unreachable too, answered as a gateway error, not a crash
    response = await client.get("/oauth2/auth")
    assert response.status in (502, 504)
    assert (await response.json())["error"] == "temporarily_unavailable"
