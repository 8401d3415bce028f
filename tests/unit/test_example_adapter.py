"""The worked example of an external adapter (examples/sqlite-adapter, installed by ``make venv``) is found through
the ``dcr_gateway.adapters`` entry point group: listed by ``dcr-gateway adapters``, selected with
``DCR_PROVIDER=sqlite``, configured through its own ``DCR_SQLITE__*`` section, and registrations land in its
database. Its contract suite runs from examples/sqlite-adapter/tests (in ``make test``'s test paths)."""

from __future__ import annotations

import os
import sqlite3
import subprocess
import sys
from collections.abc import AsyncIterator, Iterator
from importlib.metadata import entry_points
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer

from adapters.registry import ENTRY_POINT_GROUP
from gateway.app import ADAPTER, create_app
from gateway.settings import ConfigurationError, load_settings

DCR_GATEWAY = Path(sys.executable).with_name("dcr-gateway")
INSTALL_HINT = "the example adapter is not installed: run `make venv` (pip install -e examples/sqlite-adapter)"


@pytest.fixture(autouse=True)
def environment(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    for name in list(os.environ):
        if name.startswith("DCR_"):
            monkeypatch.delenv(name)
    yield


def test_the_example_is_installed_as_an_entry_point() -> None:
    points = {point.name: point.value for point in entry_points(group=ENTRY_POINT_GROUP)}
    assert points.get("sqlite") == "dcr_gateway_sqlite.adapter:create_adapter", INSTALL_HINT


def test_dcr_gateway_adapters_lists_the_example() -> None:
    listed = subprocess.run([str(DCR_GATEWAY), "adapters"], capture_output=True, text=True, check=True, timeout=60)
    assert listed.stdout.split() == ["hydra", "keycloak", "memory", "sqlite"]


def test_an_unknown_key_of_the_examples_section_is_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DCR_SQLITE__PAHT", "clients.db")
    with pytest.raises(ConfigurationError) as raised:
        load_settings()
    assert raised.value.problems == ["unknown environment variable DCR_SQLITE__PAHT: did you mean DCR_SQLITE__PATH?"]


@pytest.fixture
async def upstream() -> AsyncIterator[str]:
    """The example provider's public side: a discovery document whose issuer is the gateway's origin."""
    app = web.Application()

    async def metadata(request: web.Request) -> web.Response:
        issuer = "http://gateway.test"
        return web.json_response(
            {
                "issuer": issuer,
                "authorization_endpoint": f"{issuer}/authorize",
                "token_endpoint": f"{issuer}/token",
                "response_types_supported": ["code"],
                "code_challenge_methods_supported": ["S256"],
            }
        )

    app.router.add_get("/.well-known/openid-configuration", metadata)
    server = TestServer(app, host="127.0.0.1")
    await server.start_server()
    yield str(server.make_url("")).rstrip("/")
    await server.close()


async def test_dcr_provider_sqlite_serves_registrations_into_the_examples_database(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, upstream: str
) -> None:
    database = tmp_path / "clients.db"
    monkeypatch.setenv("DCR_PROVIDER", "sqlite")
    monkeypatch.setenv("DCR_PROVIDER_URL", upstream)
    monkeypatch.setenv("DCR_PUBLIC_URL", "http://gateway.test")
    monkeypatch.setenv("DCR_SQLITE__PATH", str(database))
    app = create_app(load_settings())
    assert type(app[ADAPTER]).__module__ == "dcr_gateway_sqlite.adapter"
    client: TestClient[Any, Any] = TestClient(TestServer(app, host="127.0.0.1"))
    await client.start_server()
    try:
        body = {"redirect_uris": ["http://127.0.0.1:3000/callback"], "token_endpoint_auth_method": "none"}
        response = await client.post("/register", json=body)
        registered = await response.json()
        assert response.status == 201, registered
        with sqlite3.connect(database) as db:
            rows = db.execute("SELECT client_id, managed FROM clients").fetchall()
        db.close()
        assert rows == [(registered["client_id"], 1)]
        token = registered["registration_access_token"]
        read = await client.get(f"/register/{registered['client_id']}", headers={"Authorization": f"Bearer {token}"})
        assert read.status == 200
        assert (await read.json())["redirect_uris"] == body["redirect_uris"]
    finally:
        await client.close()
