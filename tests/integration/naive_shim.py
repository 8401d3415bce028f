"""A deliberately naive RFC 7591 translation shim in front of Hydra: a known-bad target for the conformance suite.

Written the way the shim-blog's author describes them ("accepts a client's RFC 7591 registration request ...
translates that into whatever admin API call actually creates a client ... hand-builds an RFC 7591-shaped JSON
response (client_id, optionally client_secret) ... patches the RFC 8414 discovery document"), and tested with
the one client its author tried. Its faults are the usual ones (mcp-clients.md, "Shims"), kept on purpose:

- only ``/.well-known/oauth-authorization-server`` is patched: the OpenID document (MCP 2025-11-25 clients
  probe it too) has no ``registration_endpoint``; no CORS anywhere;
- the author only ever saw http(s) redirect URIs, so a private-use scheme (``cursor://``) fails the whole
  registration, while nothing else about the URIs is checked (fragments aside, which Hydra itself refuses);
- the response is hand-built: no ``token_endpoint_auth_method``, ``grant_types`` or anything else echoed;
- ``await request.json()`` on any body: non-JSON is a 500, ``null`` or a list crashes, no size limit;
- Hydra's own admin errors are passed through as they are.

Never use this for anything but the tests: it exists to prove the suite catches what it claims.
"""

from __future__ import annotations

from typing import Any

import aiohttp
from aiohttp import web

_HOP_BY_HOP = {"connection", "keep-alive", "transfer-encoding", "content-length", "content-encoding", "host"}
FORWARDED_FIELDS = (
    "redirect_uris",
    "client_name",
    "grant_types",
    "response_types",
    "scope",
    "token_endpoint_auth_method",
)


def naive_shim_app(*, public_url: str, hydra_public_url: str, hydra_admin_url: str) -> web.Application:
    """The shim on ``public_url`` (Hydra's issuer origin), in front of Hydra's public and admin listeners."""
    app = web.Application()
    session_key = web.AppKey("session", aiohttp.ClientSession)

    async def session_ctx(app: web.Application) -> Any:
        async with aiohttp.ClientSession(auto_decompress=False) as session:
            app[session_key] = session
            yield

    app.cleanup_ctx.append(session_ctx)

    async def metadata(request: web.Request) -> web.Response:
        async with request.app[session_key].get(f"{hydra_public_url}/.well-known/openid-configuration") as response:
            document = await response.json()
        document["registration_endpoint"] = f"{public_url}/register"
        return web.json_response(document)

    async def register(request: web.Request) -> web.Response:
        body = await request.json()
        for uri in body.get("redirect_uris", []):
            if not uri.startswith(("http://", "https://")):
                return web.json_response({"error": "invalid_redirect_uri"}, status=400)
        client = {name: body[name] for name in FORWARDED_FIELDS if name in body}
        async with request.app[session_key].post(f"{hydra_admin_url}/admin/clients", json=client) as response:
            created = await response.json()
            if response.status != 201:
                return web.json_response(created, status=response.status)
        answer = {"client_id": created["client_id"], "client_secret_expires_at": 0}
        if created.get("client_secret"):
            answer["client_secret"] = created["client_secret"]
        answer["redirect_uris"] = created.get("redirect_uris")
        answer["client_name"] = created.get("client_name")
        return web.json_response(answer, status=201)

    async def proxy(request: web.Request) -> web.StreamResponse:
        headers = {name: value for name, value in request.headers.items() if name.lower() not in _HOP_BY_HOP}
        async with request.app[session_key].request(
            request.method,
            f"{hydra_public_url}{request.path_qs}",
            headers=headers,
            data=await request.read(),
            allow_redirects=False,
        ) as response:
            out = web.Response(status=response.status, body=await response.read())
            for name, value in response.headers.items():
                if name.lower() not in _HOP_BY_HOP:
                    out.headers.add(name, value)
            return out

    app.router.add_get("/.well-known/oauth-authorization-server", metadata)
    app.router.add_post("/register", register)
    app.router.add_route("*", "/{tail:.*}", proxy)
    return app
