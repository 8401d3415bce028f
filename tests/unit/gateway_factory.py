"""The in-process gateway of the HTTP-level unit tests: a fake upstream serving one discovery document, the real
app built by ``create_app`` in front of it with an in-memory adapter, and aiohttp's test client on the app.

The ``gateways`` fixture (tests/unit/conftest.py) yields a :class:`Gateways`; each test module wraps it in its
own ``make_gateway`` with its provider document and settings.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer

from adapters.memory.adapter import MemoryAdapter
from gateway.app import create_app
from gateway.settings import Settings

PUBLIC = "http://gateway.test"
ISSUER_PATH = "/realms/mcp"
ISSUER = PUBLIC + ISSUER_PATH
REGISTER = ISSUER_PATH + "/register"

Client = TestClient[Any, Any]
Factory = Callable[..., Awaitable[tuple[Client, MemoryAdapter]]]


async def _proxied(request: web.Request) -> web.Response:
    return web.json_response({"proxied": request.path})


class Gateways:
    """Starts gateways in front of fake upstreams and closes every server it started, last first."""

    def __init__(self) -> None:
        self._cleanups: list[Callable[[], Awaitable[None]]] = []

    async def start(
        self,
        document: dict[str, Any],
        *,
        adapter_class: type[MemoryAdapter] = MemoryAdapter,
        adapter_options: dict[str, Any] | None = None,
        proxy_everything: bool = False,
        upstream_routes: Callable[[web.Application], None] | None = None,
        **settings: Any,
    ) -> tuple[Client, MemoryAdapter]:
        """A gateway (``public_url`` :data:`PUBLIC`, provider ``memory``, plus ``settings``) in front of an upstream
        serving ``document`` at ``{ISSUER_PATH}/.well-known/openid-configuration``; with ``proxy_everything`` the
        upstream answers every other path with ``{"proxied": path}``."""
        upstream = web.Application()

        async def metadata(_: web.Request) -> web.Response:
            return web.json_response(document)

        upstream.router.add_get(f"{ISSUER_PATH}/.well-known/openid-configuration", metadata)
        if upstream_routes is not None:
            upstream_routes(upstream)
        if proxy_everything:
            upstream.router.add_route("*", "/{tail:.*}", _proxied)
        upstream_server = TestServer(upstream, host="127.0.0.1")
        await upstream_server.start_server()
        self._cleanups.append(upstream_server.close)
        upstream_url = str(upstream_server.make_url("")).rstrip("/")
        app_settings = Settings(public_url=PUBLIC, provider="memory", provider_url=upstream_url, **settings)
        adapter = adapter_class(public_url=upstream_url, issuer_path=ISSUER_PATH, **(adapter_options or {}))
        client: Client = TestClient(TestServer(create_app(app_settings, adapter=adapter), host="127.0.0.1"))
        await client.start_server()
        self._cleanups.append(client.close)
        return client, adapter

    async def close(self) -> None:
        for cleanup in reversed(self._cleanups):
            await cleanup()
        self._cleanups.clear()
