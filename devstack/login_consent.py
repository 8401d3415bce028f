"""DEVELOPMENT-ONLY login & consent app for Ory Hydra.

Hydra has no login UI: it sends the browser to ``urls.login`` with a ``login_challenge`` and to ``urls.consent``
with a ``consent_challenge``, and an app accepts them through Hydra's admin API. This one signs anyone in as a
fixed test user (``alice``) without a password and grants every requested scope and audience. It exists for
the local stack and for trying MCP clients by hand; never expose it beyond your own machine.

    python -m devstack.login_consent --port 8090 --hydra-admin http://127.0.0.1:4445
"""

from __future__ import annotations

import argparse
import html
import string
from collections.abc import AsyncIterator, Mapping, Sequence
from importlib import resources
from typing import Any

import aiohttp
from aiohttp import web

from gateway.conformance.hydra_admin import HydraAdmin, HydraAdminError


class DevHydraAdmin(HydraAdmin):
    """The conformance suite's Hydra admin client, plus what only this development login app does."""

    async def login_request(self, challenge: str) -> dict[str, Any]:
        return await self._call("GET", "/login", ("login_challenge", challenge))

    async def reject_login(self, challenge: str, description: str) -> str:
        body = {"error": "access_denied", "error_description": description}
        return str((await self._call("PUT", "/login/reject", ("login_challenge", challenge), body))["redirect_to"])

    async def reject_consent(self, challenge: str, description: str) -> str:
        body = {"error": "access_denied", "error_description": description}
        return str((await self._call("PUT", "/consent/reject", ("consent_challenge", challenge), body))["redirect_to"])


HYDRA_ADMIN = web.AppKey("hydra_admin", str)
SUBJECT = web.AppKey("subject", str)
HTTP = web.AppKey("http", aiohttp.ClientSession)

_PAGE = string.Template(resources.files("devstack").joinpath("login_consent.html").read_text())


def _page(title: str, content: str, status: int = 200) -> web.Response:
    body = _PAGE.safe_substitute(title=html.escape(title), content=content)
    return web.Response(
        text=body,
        status=status,
        content_type="text/html",
        headers={"Cache-Control": "no-store", "X-Frame-Options": "DENY"},
    )


def _form(action: str, challenge_name: str, challenge: str, accept_label: str) -> str:
    return (
        f'<form method="post" action="{action}">'
        f'<input type="hidden" name="{challenge_name}" value="{html.escape(challenge)}">'
        f'<button type="submit" name="action" value="accept">{html.escape(accept_label)}</button>'
        '<button type="submit" name="action" value="deny">Deny</button>'
        "</form>"
    )


def _client_label(request_info: Mapping[str, Any]) -> str:
    client = request_info.get("client") or {}
    return str(client.get("client_name") or client.get("client_id") or "an unknown client")


def _admin(app: web.Application) -> DevHydraAdmin:
    return DevHydraAdmin(app[HTTP], app[HYDRA_ADMIN])


def _challenge(request: web.Request, name: str, form: Mapping[str, Any] | None = None) -> str:
    value = (form or {}).get(name) or request.query.get(name)
    if not value or not isinstance(value, str):
        raise web.HTTPBadRequest(text=f"missing {name}")
    return value


async def _accept_consent(app: web.Application, challenge: str, info: Mapping[str, Any]) -> web.HTTPSeeOther:
    subject = str(info.get("subject") or app[SUBJECT])
    id_token = {"name": subject.title(), "email": f"{subject}@example.com", "email_verified": True}
    return web.HTTPSeeOther(await _admin(app).accept_consent(challenge, info, id_token=id_token))


async def login_page(request: web.Request) -> web.StreamResponse:
    challenge = _challenge(request, "login_challenge")
    info = await _admin(request.app).login_request(challenge)
    if info.get("skip"):
        # Hydra already knows the user (a remembered session): accepting is mandatory.
        raise web.HTTPSeeOther(await _admin(request.app).accept_login(challenge, str(info["subject"])))
    subject = request.app[SUBJECT]
    content = f"<p><strong>{html.escape(_client_label(info))}</strong> asks you to sign in.</p>" + _form(
        "/login", "login_challenge", challenge, f"Sign in as {subject}"
    )
    return _page("Sign in", content)


async def login_submit(request: web.Request) -> web.StreamResponse:
    form = await request.post()
    challenge = _challenge(request, "login_challenge", form)
    admin = _admin(request.app)
    if form.get("action") == "deny":
        raise web.HTTPSeeOther(await admin.reject_login(challenge, "The user denied the sign-in."))
    raise web.HTTPSeeOther(await admin.accept_login(challenge, request.app[SUBJECT]))


async def consent_page(request: web.Request) -> web.StreamResponse:
    challenge = _challenge(request, "consent_challenge")
    info = await _admin(request.app).consent_request(challenge)
    if info.get("skip"):
        raise await _accept_consent(request.app, challenge, info)
    scopes: Sequence[str] = info.get("requested_scope") or []
    audience: Sequence[str] = info.get("requested_access_token_audience") or []
    items = "".join(f"<li><code>{html.escape(s)}</code></li>" for s in scopes) or "<li>(no scope)</li>"
    content = (
        f"<p><strong>{html.escape(_client_label(info))}</strong> asks for:</p><ul>{items}</ul>"
        + (f"<p>Audience: <code>{html.escape(' '.join(audience))}</code></p>" if audience else "")
        + _form("/consent", "consent_challenge", challenge, "Allow")
    )
    return _page("Consent", content)


async def consent_submit(request: web.Request) -> web.StreamResponse:
    form = await request.post()
    challenge = _challenge(request, "consent_challenge", form)
    admin = _admin(request.app)
    if form.get("action") == "deny":
        raise web.HTTPSeeOther(await admin.reject_consent(challenge, "The user denied consent."))
    raise await _accept_consent(request.app, challenge, await admin.consent_request(challenge))


async def error_page(request: web.Request) -> web.StreamResponse:
    error = request.query.get("error", "unknown_error")
    description = request.query.get("error_description", "")
    content = f"<p><code>{html.escape(error)}</code></p><p>{html.escape(description)}</p>"
    return _page("Error", content, status=400)


async def healthz(_: web.Request) -> web.StreamResponse:
    return web.json_response({"status": "ok"})


@web.middleware
async def _admin_errors(
    request: web.Request,
    handler: Any,
) -> web.StreamResponse:
    try:
        response: web.StreamResponse = await handler(request)
    except HydraAdminError as exc:
        return _page("Hydra refused the request", f"<pre>{html.escape(str(exc))}</pre>", status=502)
    except aiohttp.ClientError as exc:
        return _page("Hydra is unreachable", f"<pre>{html.escape(repr(exc))}</pre>", status=502)
    return response


def create_app(hydra_admin_url: str, subject: str = "alice") -> web.Application:
    """The login & consent app accepting challenges through Hydra's admin API at ``hydra_admin_url``."""
    app = web.Application(middlewares=[_admin_errors])
    app[HYDRA_ADMIN] = hydra_admin_url.rstrip("/")
    app[SUBJECT] = subject

    async def http_session(app: web.Application) -> AsyncIterator[None]:
        async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=10)) as session:
            app[HTTP] = session
            yield

    app.cleanup_ctx.append(http_session)
    app.router.add_get("/healthz", healthz)
    app.router.add_get("/login", login_page)
    app.router.add_post("/login", login_submit)
    app.router.add_get("/consent", consent_page)
    app.router.add_post("/consent", consent_submit)
    app.router.add_get("/error", error_page)
    return app


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        prog="python -m devstack.login_consent",
        description="DEVELOPMENT-ONLY Hydra login & consent app: signs everyone in as a fixed test user.",
    )
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8090)
    parser.add_argument("--hydra-admin", default="http://127.0.0.1:4445", help="Hydra admin API base URL")
    parser.add_argument("--subject", default="alice", help="the subject every sign-in gets")
    args = parser.parse_args(argv)
    print(
        f"DEVELOPMENT ONLY login & consent app on http://{args.host}:{args.port} "
        f"(Hydra admin {args.hydra_admin}, everyone is {args.subject!r})",
        flush=True,
    )
    web.run_app(create_app(args.hydra_admin, args.subject), host=args.host, port=args.port, print=None)


if __name__ == "__main__":
    main()
