"""Headless authorization-code logins against Hydra and Keycloak: the login drivers of `dcr-gateway conformance`
(:mod:`gateway.conformance.login`) and of the tests (no browser, no fixtures).

Both helpers take an ``aiohttp.ClientSession`` whose cookie jar accepts IP hosts
(``aiohttp.CookieJar(unsafe=True)``) and a complete authorization URL, walk the provider's login (and
consent) steps, and return the final redirect URL: the client's ``redirect_uri`` with ``code`` and ``state``
(or ``error``). They never fetch that URL. PKCE, token requests and assertions are up to the caller.
"""

from __future__ import annotations

from collections.abc import Mapping
from html.parser import HTMLParser
from typing import Any
from urllib.parse import parse_qs, urljoin, urlsplit

import aiohttp

from gateway.conformance.hydra_admin import HydraAdmin, HydraAdminError


class HeadlessLoginError(RuntimeError):
    """The flow did not go as a browser's would have: an unexpected status, page or missing redirect."""


class ConsentRequired(HeadlessLoginError):
    """The provider showed a consent page and the caller chose not to accept it."""


_REDIRECTS = frozenset({301, 302, 303, 307, 308})


def _query(url: str) -> dict[str, list[str]]:
    return parse_qs(urlsplit(url).query)


def _rewrite(url: str, url_map: Mapping[str, str] | None) -> str:
    for prefix, replacement in (url_map or {}).items():
        if url.startswith(prefix):
            return replacement + url[len(prefix) :]
    return url


async def _location(session: aiohttp.ClientSession, url: str) -> str:
    """GET ``url`` without following redirects; return the absolute ``Location`` it redirects to."""
    async with session.get(url, allow_redirects=False) as response:
        if response.status not in _REDIRECTS:
            body = await response.text()
            raise HeadlessLoginError(f"GET {url}: expected a redirect, got {response.status}: {body[:500]}")
        return urljoin(url, response.headers["Location"])


async def hydra_accept_login_and_consent(
    session: aiohttp.ClientSession,
    authorization_url: str,
    *,
    admin_url: str,
    subject: str = "alice",
    grant_scope: list[str] | None = None,
    url_map: Mapping[str, str] | None = None,
    max_steps: int = 10,
) -> str:
    """Walk Hydra's authorization-code flow through its admin API; return the client redirect (``code``).

    ``admin_url``: Hydra's admin base URL. ``grant_scope``: scopes to grant (default: all requested).
    ``url_map``: URL prefixes to fetch elsewhere, e.g. ``{issuer: hydra_public_url}`` when Hydra's issuer is
    the origin of a gateway that is not running (Hydra builds its redirects on the issuer).
    Steps: authorize -> 302 login_challenge -> accept login -> authorize -> 302 consent_challenge -> accept
    consent -> authorize -> 302 to the client's redirect URI.
    """
    admin = HydraAdmin(session, admin_url)
    url = authorization_url
    for _ in range(max_steps):
        location = await _location(session, _rewrite(url, url_map))
        query = _query(location)
        try:
            if "login_challenge" in query:
                url = await admin.accept_login(query["login_challenge"][0], subject)
                continue
            if "consent_challenge" in query:
                challenge = query["consent_challenge"][0]
                consent = await admin.consent_request(challenge)
                url = await admin.accept_consent(challenge, consent, grant_scope=grant_scope)
                continue
        except HydraAdminError as exc:
            raise HeadlessLoginError(str(exc)) from exc
        if "code" in query or "error" in query:
            return location
        url = location
    raise HeadlessLoginError(f"no code after {max_steps} steps; last URL {url}")


class _LoginFormParser(HTMLParser):
    """Finds the action of Keycloak's login form (``<form id="kc-form-login" action=...>``)."""

    def __init__(self) -> None:
        super().__init__()
        self.action: str | None = None
        self.error: str = ""
        self._in_error = False

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        attributes = dict(attrs)
        if tag == "form" and attributes.get("id") == "kc-form-login":
            self.action = attributes.get("action")
        if attributes.get("id") in {"input-error", "input-error-username"} or "alert-error" in (
            attributes.get("class") or ""
        ):
            self._in_error = True

    def handle_endtag(self, tag: str) -> None:
        if tag in {"span", "div"}:
            self._in_error = False

    def handle_data(self, data: str) -> None:
        if self._in_error and data.strip():
            self.error += data.strip() + " "


def _login_form(page: str) -> _LoginFormParser:
    parser = _LoginFormParser()
    parser.feed(page)
    return parser


class _FormsParser(HTMLParser):
    """Every ``<form>`` of a page: its id, action and named inputs (hidden values and submit buttons)."""

    def __init__(self) -> None:
        super().__init__()
        self.forms: list[dict[str, Any]] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        attributes = dict(attrs)
        if tag == "form":
            self.forms.append({"id": attributes.get("id"), "action": attributes.get("action"), "inputs": {}})
        elif tag in {"input", "button"} and self.forms and attributes.get("name"):
            self.forms[-1]["inputs"][attributes["name"]] = attributes.get("value") or ""


def _consent_form(page: str) -> dict[str, Any] | None:
    """Keycloak's consent page (``login-oauth-grant``): a form with an ``accept`` submit button."""
    parser = _FormsParser()
    parser.feed(page)
    return next((form for form in parser.forms if "accept" in form["inputs"] and form["action"]), None)


async def keycloak_form_login(
    session: aiohttp.ClientSession,
    authorization_url: str,
    *,
    username: str,
    password: str,
    accept_consent: bool = True,
    max_steps: int = 5,
) -> str:
    """Sign in on Keycloak's login form (and grant consent when asked); return the client redirect (``code``).

    GET the authorization URL (Keycloak answers with its login page, its consent page when the session cookie
    already signs the user in, or redirects at once), POST the ``kc-form-login`` form with the credentials,
    POST the consent form's ``accept`` when Keycloak asks for consent (clients registered through the gateway
    always require it), and read the ``Location`` of the 302 that follows. With ``accept_consent=False`` a
    consent page raises :class:`ConsentRequired` instead.

    Keycloak marks its cookies ``Secure`` even over http (browsers treat loopback as a secure context), and
    aiohttp's cookie jar withholds ``Secure`` cookies from http URLs, so the flow's cookies are also carried
    explicitly from response to request.
    """
    flow_cookies: dict[str, str] = {}
    url = authorization_url
    page = ""
    for _ in range(max_steps):
        async with session.get(url, allow_redirects=False, cookies=flow_cookies or None) as response:
            flow_cookies.update({name: morsel.value for name, morsel in response.cookies.items()})
            if response.status in _REDIRECTS:
                location = urljoin(url, response.headers["Location"])
                query = _query(location)
                if "code" in query or "error" in query:
                    return location
                url = location
                continue
            page = await response.text()
            if response.status != 200:
                raise HeadlessLoginError(f"GET {url}: {response.status}: {page[:500]}")
        form = _login_form(page)
        if form.action:
            data = {"username": username, "password": password, "credentialId": ""}
            action = urljoin(url, form.action)
            async with session.post(action, data=data, allow_redirects=False, cookies=flow_cookies or None) as response:
                flow_cookies.update({name: morsel.value for name, morsel in response.cookies.items()})
                if response.status in _REDIRECTS:
                    location = urljoin(action, response.headers["Location"])
                    query = _query(location)
                    if "code" in query or "error" in query:
                        return location
                    url = location  # e.g. the consent step (required action OAUTH_GRANT)
                    continue
                page = await response.text()
                if _consent_form(page) is None:
                    message = _login_form(page).error.strip() or page[:500]
                    raise HeadlessLoginError(f"login as {username!r} failed ({response.status}): {message}")
            url = action
        consent = _consent_form(page)
        if consent is None:
            raise HeadlessLoginError(f"no kc-form-login or consent form on the page at {url}: {page[:500]}")
        if not accept_consent:
            raise ConsentRequired(f"Keycloak asks for consent at {url}")
        data = {name: value for name, value in consent["inputs"].items() if name != "cancel"}
        action = urljoin(url, str(consent["action"]))
        async with session.post(action, data=data, allow_redirects=False, cookies=flow_cookies or None) as response:
            if response.status in _REDIRECTS:
                return urljoin(action, response.headers["Location"])
            raise HeadlessLoginError(f"consent at {action} failed ({response.status}): {(await response.text())[:500]}")
    raise HeadlessLoginError(f"no login form or code after {max_steps} steps; last URL {url}")
