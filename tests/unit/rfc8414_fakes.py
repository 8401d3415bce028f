"""A small but real HTTP provider for discovery tests: serves a Keycloak-shaped document and can misbehave.

The document in ``data/keycloak-openid-configuration.json`` is shaped like Keycloak 26's
``/realms/mcp/.well-known/openid-configuration`` (same fields, abbreviated lists); it was written for these
tests, not captured from a running Keycloak.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

from aiohttp import web
from aiohttp.test_utils import TestServer
from multidict import CIMultiDictProxy

KEYCLOAK_DOCUMENT_PATH = Path(__file__).parent / "data" / "keycloak-openid-configuration.json"
KEYCLOAK_ISSUER = "https://auth.example.com/realms/mcp"
METADATA_PATH = "/realms/mcp/.well-known/openid-configuration"


GATEWAY_ORIGIN_DOCUMENT: dict[str, Any] = {
    "issuer": "http://gateway.test",
    "authorization_endpoint": "http://gateway.test/auth",
    "token_endpoint": "http://gateway.test/token",
    "response_types_supported": ["code"],
}
"""A minimal OpenID discovery document whose issuer is the gateway's public origin ``http://gateway.test``."""


@contextlib.asynccontextmanager
async def openid_configuration_server(
    document: dict[str, Any] = GATEWAY_ORIGIN_DOCUMENT,
) -> AsyncIterator[str]:
    """A provider answering ``GET /.well-known/openid-configuration`` with ``document``; yields its origin."""
    app = web.Application()

    async def metadata(_: web.Request) -> web.Response:
        return web.json_response(document)

    app.router.add_get("/.well-known/openid-configuration", metadata)
    server = TestServer(app, host="127.0.0.1")
    await server.start_server()
    try:
        yield str(server.make_url("")).rstrip("/")
    finally:
        await server.close()


def keycloak_document(issuer: str = KEYCLOAK_ISSUER) -> dict[str, Any]:
    """The sample document with every URL moved under ``issuer``."""
    text = KEYCLOAK_DOCUMENT_PATH.read_text()
    document: dict[str, Any] = json.loads(text.replace(KEYCLOAK_ISSUER, issuer))
    return document


class FakeProvider:
    """Answers ``GET {METADATA_PATH}`` with ``document``; tests flip ``status``, ``delay`` and ``raw_body``."""

    def __init__(self, document: dict[str, Any] | None = None) -> None:
        self.document = document if document is not None else keycloak_document()
        self.status = 200
        self.delay = 0.0
        self.raw_body: bytes | None = None
        self.hits = 0
        self.request_headers: list[CIMultiDictProxy[str]] = []
        self.server: TestServer | None = None

    def app(self) -> web.Application:
        app = web.Application()
        app.router.add_get(METADATA_PATH, self._serve)
        return app

    @property
    def metadata_url(self) -> str:
        assert self.server is not None
        return str(self.server.make_url(METADATA_PATH))

    async def _serve(self, request: web.Request) -> web.Response:
        self.hits += 1
        self.request_headers.append(request.headers)
        if self.delay:
            await asyncio.sleep(self.delay)
        if self.status != 200:
            return web.Response(status=self.status, text="upstream trouble")
        body = self.raw_body if self.raw_body is not None else json.dumps(self.document).encode()
        return web.Response(body=body, content_type="application/json")
