"""RFC 9207: the ``iss`` authorization response parameter, added by the gateway where the provider omits it.

Section 2: "the authorization server [...] MUST include the iss parameter" in every authorization response once it
advertises ``authorization_response_iss_parameter_supported`` (section 3), error responses included (section 2.3:
"also in error responses"). MCP 2026-07-28 (SEP-2468) has clients compare it to the issuer before redeeming a code.
Keycloak sends it itself; Hydra v2 does not, so the front door adds it to the redirects its authorization endpoint
answers with. Pure functions: they take and return strings.
"""

from __future__ import annotations

import html
import re
from urllib.parse import parse_qsl, quote, urlsplit

RESPONSE_PARAMETERS = frozenset({"code", "error", "access_token", "id_token"})
"""Parameters only an authorization response (RFC 6749 sections 4.1.2, 4.1.2.1, 4.2.2; OIDC Core 3.3.2.5) carries:
a redirect with one of them goes back to the client, not to a login or consent page."""


def _names(component: str) -> set[str]:
    return {name for name, _ in parse_qsl(component, keep_blank_values=True)}


def with_iss(location: str, issuer: str) -> str | None:
    """``location`` (a redirect from the authorization endpoint) with ``iss=issuer`` added to the component that
    carries the response (the query, or the fragment for fragment-encoded responses), or ``None`` when it is not
    an authorization response or already has ``iss``."""
    parts = urlsplit(location)
    parameter = f"iss={quote(issuer, safe='')}"
    # the parameter is inserted into the string as it is: re-assembling the URL would change it (a private-use
    # ``myapp:///callback`` would lose its empty authority)
    fragment_names = _names(parts.fragment)
    if fragment_names & RESPONSE_PARAMETERS:
        if "iss" in fragment_names:
            return None
        return f"{location}&{parameter}"
    query_names = _names(parts.query)
    if query_names & RESPONSE_PARAMETERS and "iss" not in query_names:
        before, hash_mark, fragment = location.partition("#")
        return f"{before}&{parameter}{hash_mark}{fragment}"
    return None


_FORM_END = re.compile(rb"</form>", re.IGNORECASE)
_RESPONSE_INPUT = re.compile(rb"""<input[^>]+name=["'](?:code|error|access_token|id_token)["']""", re.IGNORECASE)
_ISS_INPUT = re.compile(rb"""<input[^>]+name=["']iss["']""", re.IGNORECASE)


def form_post_with_iss(body: bytes, issuer: str) -> bytes | None:
    """An OAuth 2.0 Form Post Response Mode page (the auto-submitting form) with a hidden ``iss`` input added, or
    ``None`` when the page is not an authorization response or already has one."""
    if not _RESPONSE_INPUT.search(body) or _ISS_INPUT.search(body):
        return None
    field = f'<input type="hidden" name="iss" value="{html.escape(issuer, quote=True)}"/>'.encode()
    match = _FORM_END.search(body)
    if match is None:
        return None
    return body[: match.start()] + field + body[match.start() :]
