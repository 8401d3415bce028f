"""Hydra's login and consent requests (``/admin/oauth2/auth/requests``), shared by the development login &
consent app and the headless test logins, so the protocol lives in one place.

https://www.ory.sh/docs/hydra/guides/login and .../consent: Hydra hands a ``login_challenge`` and then a
``consent_challenge`` to an app, which accepts or rejects them here and sends the browser to ``redirect_to``.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import aiohttp

REQUESTS = "/admin/oauth2/auth/requests"


class HydraAdminError(RuntimeError):
    """Hydra's admin API refused a call (an unknown or already used challenge, usually)."""

    def __init__(self, status: int, body: str) -> None:
        super().__init__(f"Hydra admin API answered {status}: {body[:500]}")
        self.status = status
        self.body = body


class HydraAdmin:
    """The login/consent part of Hydra's admin API, over a caller-owned session."""

    def __init__(self, session: aiohttp.ClientSession, admin_url: str) -> None:
        self._session = session
        self._base = admin_url.rstrip("/") + REQUESTS

    async def _call(self, method: str, path: str, challenge: tuple[str, str], body: Any = None) -> dict[str, Any]:
        params = {challenge[0]: challenge[1]}
        async with self._session.request(method, self._base + path, params=params, json=body) as response:
            if response.status >= 300:
                raise HydraAdminError(response.status, await response.text())
            result: dict[str, Any] = await response.json(content_type=None)
            return result

    async def accept_login(self, challenge: str, subject: str) -> str:
        """Sign ``subject`` in; returns where to send the browser next."""
        body = {"subject": subject, "remember": False}
        return str((await self._call("PUT", "/login/accept", ("login_challenge", challenge), body))["redirect_to"])

    async def consent_request(self, challenge: str) -> dict[str, Any]:
        return await self._call("GET", "/consent", ("consent_challenge", challenge))

    async def accept_consent(
        self,
        challenge: str,
        request: Mapping[str, Any],
        *,
        grant_scope: Sequence[str] | None = None,
        id_token: Mapping[str, Any] | None = None,
    ) -> str:
        """Grant the requested scopes (or ``grant_scope``) and audience; returns where to send the browser."""
        body: dict[str, Any] = {
            "grant_scope": list(request.get("requested_scope") or []) if grant_scope is None else list(grant_scope),
            "grant_access_token_audience": list(request.get("requested_access_token_audience") or []),
            "remember": False,
        }
        if id_token:
            body["session"] = {"id_token": dict(id_token)}
        return str((await self._call("PUT", "/consent/accept", ("consent_challenge", challenge), body))["redirect_to"])
