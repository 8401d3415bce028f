"""The conformance runner: every client profile through discovery, registration and the code flow, against
any issuer (this gateway, a provider's native registration, or a shim being replaced).

For each profile (see :mod:`gateway.conformance.profiles`), as that client would:

1. ``discovery``: probe the well-known URLs in MCP 2025-11-25 order, use the first document that answers 200
   (RFC 8414 section 3.3 issuer, S256, ``registration_endpoint``; CORS for browser clients);
2. ``register``: POST its RFC 7591 body (section 3.2.1 checks, CORS for browser clients);
3. ``authorize``: authorization code with PKCE S256 (RFC 7636) and a ``resource`` (RFC 8707), signed in by the
   login driver, following redirects headlessly until the ``Location`` is the redirect URI;
4. ``token``: redeem the code, authenticating with the method the registration answer names;
5. ``refresh``: the refresh token grant (RFC 6749 section 6) when the client registered it;
6. ``other-port``: for loopback IP redirects, the flow again from another port (RFC 8252 section 7.3).

Plus every probed discovery location on its own (with the MCP 2025-11-25+ ``cimd`` and 2026-07-28 ``iss``
advertisements, WARNING when missing) and the refused registrations of ``bad-registrations.json``.

MCP 2025-11-25 and 2026-07-28 (every row names the revisions it checks):

- CIMD profiles (``profiles/cimd-*.json``): discovery, ``document`` (served by the suite or a host it writes to, with
  ``client_id`` rewritten to the local URL, or the client's published one), then the flow above with the document's
  URL as ``client_id`` and no registration (:mod:`gateway.conformance.cimd`);
- authorization cells, with one registered public client: RFC 9207 ``iss`` on a success and an error response, the
  RFC 8707 audience of the access token (a JWT's ``aud``, or RFC 7662 introspection) before and after a refresh, an
  unknown resource refused with ``invalid_target`` at both endpoints, ``http://localhost/callback`` from another port;
- refused documents: each a ``400`` JSON error before anything reaches the provider (and, with Hydra's admin API,
  no new client there).
Where a provider legitimately cannot do something (a profile's ``expected_failures``), the cell is an expected
failure, and strict: a pass there is reported (``XPASS``) and fails the run.

Rate limits: a ``429 Too Many Requests`` (RFC 6585 section 4) on any request of the run (discovery,
registration, RFC 7592) pauses every request until its ``Retry-After`` (RFC 9110 section 10.2.3) has passed, then
the request is sent again; the pauses add up to at most ``max_wait`` seconds, and the report lists them. A
gateway with production limits (20 registrations per source and minute) therefore passes, a little slower.

Clean-up: every client the run registered (a wrongly accepted refusal too) is deleted at the end with its
registration access token (RFC 7592 section 2.3), also when the run stops half way; the report lists each one and
whether it was deleted, unless ``keep_clients``.
"""

from __future__ import annotations

import asyncio
import json
import secrets
import time
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime
from pathlib import Path
from typing import Any
from urllib.parse import quote

import aiohttp
from joserfc.jwk import RSAKey

from gateway.conformance import checks
from gateway.conformance.cimd import REFUSED_DOCUMENTS, DocumentHosting, RefusedDocument, refused_client_id
from gateway.conformance.cimd_host import RunningHost, start_host
from gateway.conformance.discovery import (
    Probe,
    client_probe_order,
    detect_provider,
    metadata_problems,
    origin,
    probes,
)
from gateway.conformance.headless import HeadlessLoginError
from gateway.conformance.login import LoginDriver
from gateway.conformance.oauth import (
    authorization_url,
    client_authentication,
    generate_signing_key,
    is_loopback_ip_redirect,
    other_port,
    pkce_pair,
    private_jwks,
    public_jwks,
    redirect_target,
    with_port,
)
from gateway.conformance.profiles import CIMD_STEPS, STEPS, BadRegistration, Profile, load_profiles, substitute
from gateway.conformance.report import Cell, CreatedClient, Outcome, RateLimitPause, Report, Row, Section
from gateway.conformance.versions import release_defect
from gateway.rfc8414.wellknown import DocumentKind

PROBE_ORIGIN = "http://localhost:6274"
"""The Origin sent when probing discovery locations (the MCP Inspector's): CORS is checked for it."""
DISCOVERY_VERSION = "2025-11-25"
"""The probe order the client profiles follow (the current MCP clients')."""

SECTIONS = [
    Section(
        "discovery",
        "discovery: every well-known location MCP clients probe",
        ("metadata", "cors", "cimd", "iss"),
        "probed by MCP",
    ),
    Section("clients", "client profiles", STEPS),
    Section(
        "cimd-clients",
        "client profiles by Client ID Metadata Document (no registration)",
        CIMD_STEPS,
        "MCP revisions",
    ),
    Section(
        "authorization",
        "RFC 8707 resource, RFC 9207 iss, RFC 8252 localhost from another port",
        ("check",),
        "MCP revisions",
    ),
    Section(
        "cimd-refused",
        "Client ID Metadata Documents that must be refused, nothing created in the provider",
        ("refused",),
        "MCP revisions",
    ),
    Section("bad-registrations", "registrations that must be refused (RFC 7591 section 3.2.2)", ("refused",)),
    Section("cleanup", "clean-up: clients this run registered, deleted with RFC 7592 section 2.3", ("delete",)),
]
CIMD_REVISIONS = ("2025-11-25", "2026-07-28")
"""The MCP revisions that have Client ID Metadata Documents (SHOULD for clients and authorization servers)."""
RESOURCE_REVISIONS = ("2025-06-18", "2025-11-25", "2026-07-28")
"""The MCP revisions in which clients MUST send RFC 8707 ``resource`` and servers MUST check the audience."""
ISS_REVISIONS = ("2026-07-28",)
"""RFC 9207 ``iss`` in authorization responses: SHOULD since MCP 2026-07-28."""
UNKNOWN_RESOURCE = "https://resource.invalid/dcr-gateway-conformance/mcp"
"""A resource no server protects (RFC 6761 ``.invalid``): must be refused with ``invalid_target`` (RFC 8707)."""

DEFAULT_MAX_WAIT = 180.0
"""Seconds a run may pause for ``Retry-After`` in total: a few windows of the gateway's default rate limit
(20 registrations per source per 60 s; a run makes about 36 registrations and a dozen RFC 7592 deletes)."""
MAX_ATTEMPTS = 8
"""Sends of one request at most (the first and seven after a 429)."""


@dataclass(frozen=True)
class SuiteConfig:
    """What to test and how to sign in."""

    issuer: str
    """The issuer identifier exactly as clients know it (RFC 8414 section 2)."""
    login: LoginDriver | None = None
    """Without one, only discovery and registration run (the flow cells say why)."""
    registration_endpoint: str | None = None
    """Expected registration endpoint; also used when discovery advertises none (a client configured by hand)."""
    resource: str | None = None
    """RFC 8707 ``resource`` of the flows; default ``{issuer origin}/mcp``."""
    provider: str | None = "auto"
    """``auto`` (from the discovery document), a provider name (``hydra``, ``keycloak``) or ``None``: whose
    expected failures apply."""
    provider_version: str | None = None
    """The provider's release (``24.0.5``, ``v2.3.0``), when known: the known defects of that release
    (:mod:`gateway.conformance.versions`) are expected failures, with the version in the reason."""
    profiles: tuple[str, ...] = ()
    """Profile or refused-registration names to run; all when empty."""
    expected_failures: Mapping[str, Mapping[str, str]] = field(default_factory=dict)
    """Profile -> step -> reason: expected failures of this deployment (strict, like the profiles' own)."""
    initial_access_token: str | None = None
    """RFC 7591 section 3: sent as a Bearer token by the profiles that register with one (never printed)."""
    profile_dir: Path | None = None
    concurrency: int = 1
    """Profiles run at once. 1 by default: in-memory providers (Hydra's SQLite) fail concurrent writes."""
    timeout: float = 30.0
    max_wait: float = DEFAULT_MAX_WAIT
    """Seconds the run may pause, in total, for the ``Retry-After`` of 429 answers (0: never wait)."""
    keep_clients: bool = False
    """Keep the clients the run registered instead of deleting them at the end (RFC 7592 section 2.3)."""
    progress: Callable[[str], None] | None = None
    """Told about pauses and clean-up as they happen (the CLI prints them on standard error)."""
    unknown_resource: str = UNKNOWN_RESOURCE
    """A resource the target does not protect: authorization and token requests naming it get ``invalid_target``."""
    introspection_url: str | None = None
    """An RFC 7662 introspection endpoint (no client authentication; e.g. Hydra's admin
    ``/admin/oauth2/introspect``) to read the ``aud`` of opaque access tokens; JWTs are read directly."""
    hydra_admin_url: str | None = None
    """Hydra's admin API, when reachable: the CIMD refusals check that nothing was created, and the clean-up
    deletes the document clients of the run (the gateway offers no deletion path for them)."""
    cimd_serve_on: tuple[str, int] | None = None
    """Serve the CIMD profiles' documents on this host and port over https (certificate from ``cimd_ca_dir``)."""
    cimd_ca_dir: Path | None = None
    """The development CA (created once, reused) and documents of ``cimd_serve_on``: the target must trust
    ``{cimd_ca_dir}/ca.pem`` and accept ``https://HOST:PORT`` as a document origin."""
    cimd_docs_dir: Path | None = None
    """Write the documents here instead, for a running host serving it at ``cimd_base_url`` (the local stack)."""
    cimd_base_url: str | None = None
    cimd_published: bool = False
    """Use the clients' real published documents (a staging issuer on the internet)."""


class StepFailed(Exception):
    """A step found problems; the message lists them."""


@dataclass
class _Response:
    status: int
    headers: Mapping[str, str]
    body: Any


@dataclass
class _Client:
    """A registered client as the profile holds it after the ``register`` step."""

    information: dict[str, Any]
    signing_key: RSAKey | None


def retry_after_seconds(headers: Mapping[str, str], *, now: float | None = None) -> float | None:
    """``Retry-After`` (RFC 9110 section 10.2.3) as seconds from now: delay-seconds or an HTTP-date; ``None`` when
    absent or unreadable."""
    value = next((v for k, v in headers.items() if k.lower() == "retry-after"), "").strip()
    if value.isdigit():
        return float(value)
    if not value:
        return None
    try:
        when = parsedate_to_datetime(value)
    except (TypeError, ValueError, IndexError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    current = datetime.now(UTC).timestamp() if now is None else now
    return max(0.0, when.timestamp() - current)


class Throttle:
    """The run's answer to rate limits (RFC 6585 section 4): after a 429, no request of the run is sent until the
    ``Retry-After`` has passed, and the pauses add up to at most ``max_wait`` seconds."""

    def __init__(self, max_wait: float, progress: Callable[[str], None] | None = None) -> None:
        self.max_wait = max(0.0, max_wait)
        self.pauses: list[RateLimitPause] = []
        self._progress = progress
        self._resume_at = 0.0  # monotonic time before which nothing is sent
        self._paused = 0.0

    @property
    def paused(self) -> float:
        return self._paused

    async def ready(self) -> None:
        """Wait until the current pause, if any, is over."""
        delay = self._resume_at - time.monotonic()
        while delay > 0:  # a 429 that arrives meanwhile extends the pause
            await asyncio.sleep(delay)
            delay = self._resume_at - time.monotonic()

    def limited(self, method: str, url: str, retry_after: float | None, attempt: int) -> bool:
        """A 429 arrived: pause the run for its ``Retry-After`` (a doubling back-off from 1 s when it names none),
        if that stays within ``max_wait``. Whether to send the request again."""
        delay = retry_after if retry_after is not None else float(min(2 ** (attempt - 1), 30))
        delay = max(delay, 0.5)  # "0" would have every request of the run hammer the limiter
        source = "Retry-After" if retry_after is not None else "no Retry-After: back-off"
        now = time.monotonic()
        extension = max(0.0, now + delay - max(self._resume_at, now))
        retried = attempt < MAX_ATTEMPTS and self._paused + extension <= self.max_wait
        self.pauses.append(RateLimitPause(method, url, delay, extension if retried else 0.0, retried))
        if not retried:
            left = max(0.0, self.max_wait - self._paused)
            self._say(
                f"rate limited: 429 from {method} {url}; not retried ({source} {delay:g} s, "
                f"{left:.0f} s left of --max-wait {self.max_wait:g} s, attempt {attempt})"
            )
            return False
        self._paused += extension
        self._resume_at = max(self._resume_at, now + delay)
        if extension > 0:
            self._say(
                f"rate limited: 429 from {method} {url}; pausing {delay:g} s ({source}), "
                f"{self.max_wait - self._paused:.0f} s left of --max-wait {self.max_wait:g} s"
            )
        return True

    def _say(self, line: str) -> None:
        if self._progress is not None:
            self._progress(line)


@dataclass
class _Run:
    config: SuiteConfig
    session: aiohttp.ClientSession
    document: Mapping[str, Any] | None = None
    provider: str | None = None
    semaphore: asyncio.Semaphore = field(default_factory=lambda: asyncio.Semaphore(4))
    throttle: Throttle = field(default_factory=lambda: Throttle(DEFAULT_MAX_WAIT))
    created: list[CreatedClient] = field(default_factory=list)
    registration_access_tokens: dict[str, str] = field(default_factory=dict, repr=False)
    """client_id -> registration access token, only to delete the client at the end; never reported."""
    hosting: DocumentHosting | None = None
    document_clients: dict[str, str] = field(default_factory=dict)
    """Document URL -> the profile or case whose authorization request named it (the clean-up's list)."""

    async def fetch(
        self, method: str, url: str, *, headers: Mapping[str, str] | None = None, **kwargs: Any
    ) -> _Response:
        """One request of the run, sent again after a 429's ``Retry-After`` while :class:`Throttle` allows."""
        attempt = 0
        while True:
            await self.throttle.ready()
            response = await _fetch(self.session, method, url, headers=headers, **kwargs)
            if response.status != 429:
                return response
            attempt += 1
            if not self.throttle.limited(method, url, retry_after_seconds(response.headers), attempt):
                return response

    def record_created(self, registered_by: str, response: _Response) -> None:
        """Remember a client a registration request created, to delete it at the end (RFC 7592 section 2.3)."""
        body = response.body
        if not (200 <= response.status < 300 and isinstance(body, Mapping)):
            return
        client_id = body.get("client_id")
        if not isinstance(client_id, str) or not client_id:
            return
        uri = body.get("registration_client_uri")
        token = body.get("registration_access_token")
        self.created.append(CreatedClient(client_id, registered_by, uri if isinstance(uri, str) else None))
        if isinstance(token, str) and token:
            self.registration_access_tokens[client_id] = token

    @property
    def resource(self) -> str:
        return self.config.resource or origin(self.config.issuer) + "/mcp"

    @property
    def registration_endpoint(self) -> str | None:
        advertised = (self.document or {}).get("registration_endpoint")
        return self.config.registration_endpoint or (advertised if isinstance(advertised, str) else None)

    def scopes(self) -> str | None:
        supported = (self.document or {}).get("scopes_supported")
        return " ".join(map(str, supported)) if isinstance(supported, list) and supported else None


async def _fetch(
    session: aiohttp.ClientSession, method: str, url: str, *, headers: Mapping[str, str] | None = None, **kwargs: Any
) -> _Response:
    async with session.request(method, url, headers=dict(headers or {}), allow_redirects=False, **kwargs) as response:
        text = await response.text(errors="replace")
        try:
            body: Any = json.loads(text) if text else None
        except ValueError:
            body = None
        return _Response(response.status, dict(response.headers), body)


def _fail_if(problems: list[str]) -> None:
    if problems:
        raise StepFailed("; ".join(problems))


async def _timed(step: Callable[[], Awaitable[Any]]) -> tuple[Cell, Any]:
    """Run one step: its cell (``pass`` or ``FAIL`` with the problems) and its result."""
    started = time.perf_counter()
    try:
        result = await step()
    except StepFailed as exc:
        return Cell(Outcome.FAIL, str(exc), time.perf_counter() - started), None
    except (aiohttp.ClientError, TimeoutError, HeadlessLoginError, ValueError) as exc:
        detail = f"{type(exc).__name__}: {exc}"[:600]
        return Cell(Outcome.FAIL, detail, time.perf_counter() - started), None
    return Cell(Outcome.PASS, "", time.perf_counter() - started), result


def _expect(cell: Cell, reason: str | None) -> Cell:
    """Apply a strict expected failure: FAIL -> xfail (reason), pass -> XPASS."""
    if reason is None:
        return cell
    if cell.outcome is Outcome.FAIL:
        return Cell(Outcome.XFAIL, f"{reason} (observed: {cell.detail})", cell.seconds)
    if cell.outcome is Outcome.PASS:
        return Cell(Outcome.XPASS, f"expected to fail ({reason}) but passed", cell.seconds)
    return cell


# ------------------------------------------------------------------------------------------------ discovery


async def _probe_row(run: _Run, probe: Probe) -> Row:
    versions = ", ".join(probe.versions)
    row = Row(
        "discovery", probe.url, f"{probe.kind.value} for {run.config.issuer}", note=versions, revisions=probe.versions
    )
    if probe.not_applicable:
        for column in ("metadata", "cors", "cimd", "iss"):
            row.cells[column] = Cell(Outcome.NA, probe.not_applicable)
        return row
    response: _Response | None = None

    async def metadata() -> None:
        nonlocal response
        response = await run.fetch("GET", probe.url, headers={"Origin": PROBE_ORIGIN})
        if response.status != 200:
            raise StepFailed(f"status {response.status} (MCP {versions} clients find no metadata here)")
        _fail_if(
            metadata_problems(
                response.body,
                issuer=run.config.issuer,
                kind=probe.kind,
                registration_endpoint=run.config.registration_endpoint,
            )
        )

    row.cells["metadata"], _ = await _timed(metadata)

    async def cors() -> None:
        if response is None or response.status >= 500:
            raise StepFailed("no answer to check")
        _fail_if(checks.cors_problems(response.headers, PROBE_ORIGIN))

    row.cells["cors"], _ = await _timed(cors)
    body = response.body if response is not None and response.status == 200 else None
    row.cells["cimd"] = _advertised(body, checks.cimd_advertisement_problems, CIMD_REVISIONS, probe.versions)
    row.cells["iss"] = _advertised(body, checks.iss_advertisement_problems, ISS_REVISIONS, probe.versions)
    return row


def _advertised(
    document: Any,
    problems_of: Callable[[Any], list[str]],
    revisions: tuple[str, ...],
    probed_by: tuple[str, ...],
) -> Cell:
    """A SHOULD of MCP ``revisions`` advertised in a metadata document: pass, or a WARNING naming what is missing
    (the official MCP conformance suite's severity); n/a where only older clients look."""
    if not set(revisions) & set(probed_by):
        return Cell(Outcome.NA, f"only MCP {', '.join(probed_by)} clients look here; this is MCP {revisions[0]}+")
    if not isinstance(document, Mapping):
        return Cell(Outcome.BLOCKED, "no metadata document here")
    problems = problems_of(document)
    if problems:
        return Cell(Outcome.WARNING, "; ".join(problems))
    return Cell(Outcome.PASS)


async def _client_discovery(run: _Run, profile: Profile) -> Mapping[str, Any]:
    """The profile's own discovery: MCP 2025-11-25 probe order, first 200 JSON document wins."""
    headers = {"Origin": profile.browser_origin} if profile.browser_origin else {}
    tried = []
    for url in client_probe_order(run.config.issuer, DISCOVERY_VERSION):
        response = await run.fetch("GET", url, headers=headers)
        tried.append(f"{url} -> {response.status}")
        if response.status >= 500 and profile.abort_on_5xx:
            raise StepFailed(f"{url} answered {response.status}: this client aborts discovery on a 5xx")
        if response.status != 200 or not isinstance(response.body, Mapping):
            continue
        kind = DocumentKind.OPENID if "/.well-known/openid-configuration" in url else DocumentKind.OAUTH
        problems = metadata_problems(
            response.body,
            issuer=run.config.issuer,
            kind=kind,
            registration_endpoint=run.config.registration_endpoint,
            oidc_fields=profile.oidc_fields,
            registers=profile.cimd is None,
        )
        if profile.browser_origin:
            problems += checks.cors_problems(response.headers, profile.browser_origin)
        if problems:
            raise StepFailed(f"{url}: " + "; ".join(problems))
        return response.body
    raise StepFailed("no metadata document: " + ", ".join(tried))


# --------------------------------------------------------------------------------------------- client rows


def _not_applicable(row: Row, steps: tuple[str, ...], reason: str, outcome: Outcome = Outcome.NA) -> None:
    for step in steps:
        row.cells.setdefault(step, Cell(outcome, reason))


async def _register(run: _Run, profile: Profile, variables: dict[str, Any]) -> _Client:
    endpoint = run.registration_endpoint
    if endpoint is None:
        raise StepFailed("no registration endpoint (none advertised, none given with --registration-endpoint)")
    body = substitute(dict(profile.registration), variables)
    supported = (run.document or {}).get("grant_types_supported")
    if profile.trim_grant_types and isinstance(supported, list) and isinstance(body.get("grant_types"), list):
        body["grant_types"] = [grant for grant in body["grant_types"] if grant in supported]
    headers = {"Origin": profile.browser_origin} if profile.browser_origin else {}
    if profile.initial_access_token and run.config.initial_access_token:
        headers["Authorization"] = f"Bearer {run.config.initial_access_token}"
    response = await run.fetch("POST", endpoint, json=body, headers=headers)
    run.record_created(profile.name, response)
    information = dict(response.body) if isinstance(response.body, Mapping) else {}
    client = _Client(information, variables.get("signing_key"))
    method = checks.expected_auth_method(body, profile.expected_auth_method)
    problems = checks.registration_problems(body, response.status, response.headers, response.body, auth_method=method)
    if profile.browser_origin:
        problems += checks.cors_problems(response.headers, profile.browser_origin)
        preflight = await run.fetch(
            "OPTIONS",
            endpoint,
            headers={
                "Origin": profile.browser_origin,
                "Access-Control-Request-Method": "POST",
                "Access-Control-Request-Headers": "content-type",
            },
        )
        problems += checks.preflight_problems(preflight.status, preflight.headers, profile.browser_origin)
    problems = list(dict.fromkeys(problems))  # the POST and its preflight may miss the same header
    if problems:
        if response.status != 201:
            raise StepFailed("; ".join(problems))
        # A created client still goes through the flow (with the method it asked for when none is echoed).
        information.setdefault("token_endpoint_auth_method", method)
        raise _RegisteredWithProblems(client, "; ".join(problems))
    return client


class _RegisteredWithProblems(StepFailed):
    def __init__(self, client: _Client, message: str) -> None:
        super().__init__(message)
        self.client = client


@dataclass
class _Grant:
    code: str
    verifier: str
    redirect_uri: str


async def _authorize(
    run: _Run,
    client: _Client,
    redirect_uri: str,
    scope: str | None,
    login: Callable[[aiohttp.ClientSession, str], Awaitable[str]] | None = None,
) -> _Grant:
    assert run.config.login is not None  # noqa: S101 (callers check)
    document = run.document or {}
    verifier, challenge = pkce_pair()
    state = secrets.token_urlsafe(16)
    url = authorization_url(
        str(document["authorization_endpoint"]),
        {
            "response_type": "code",
            "client_id": str(client.information["client_id"]),
            "redirect_uri": redirect_uri,
            "scope": scope,
            "state": state,
            "code_challenge": challenge,
            "code_challenge_method": "S256",
            "resource": run.resource,
        },
    )
    async with aiohttp.ClientSession(
        cookie_jar=aiohttp.CookieJar(unsafe=True), timeout=aiohttp.ClientTimeout(total=run.config.timeout)
    ) as browser:
        location = await (login or run.config.login.login)(browser, url)
    problems, code = checks.authorization_response_problems(
        location, redirect_uri=redirect_uri, state=state, issuer=run.config.issuer
    )
    _fail_if(problems)
    assert code is not None  # noqa: S101 (no problems means a code)
    return _Grant(code, verifier, redirect_uri)


async def _token(run: _Run, client: _Client, form: dict[str, str]) -> dict[str, Any]:
    endpoint = str((run.document or {})["token_endpoint"])
    headers, fields = client_authentication(client.information, endpoint, client.signing_key)
    response = await run.fetch("POST", endpoint, data={**form, **fields}, headers=headers)
    _fail_if(checks.token_problems(response.status, response.body))
    return dict(response.body)


async def _redeem(run: _Run, client: _Client, grant: _Grant) -> dict[str, Any]:
    return await _token(
        run,
        client,
        {
            "grant_type": "authorization_code",
            "code": grant.code,
            "redirect_uri": grant.redirect_uri,
            "code_verifier": grant.verifier,
            "resource": run.resource,
        },
    )


async def _refresh(run: _Run, client: _Client, tokens: Mapping[str, Any]) -> None:
    refresh_token = tokens.get("refresh_token")
    if not isinstance(refresh_token, str) or not refresh_token:
        raise StepFailed(f"no refresh_token in the token response (granted scope: {tokens.get('scope')!r})")
    await _token(run, client, {"grant_type": "refresh_token", "refresh_token": refresh_token, "resource": run.resource})


async def _client_row(run: _Run, profile: Profile) -> Row:
    async with run.semaphore:
        return await _client_steps(run, profile)


async def _client_steps(run: _Run, profile: Profile) -> Row:
    row = Row("clients", profile.name, profile.title)
    expected = {
        **profile.expected_failures.get(run.provider or "", {}),
        **run.config.expected_failures.get(profile.name, {}),
    }

    def record(step: str, cell: Cell) -> None:
        row.cells[step] = _expect(cell, expected.get(step))

    cell, _ = await _timed(lambda: _client_discovery(run, profile))
    record("discovery", cell)
    if profile.initial_access_token and not run.config.initial_access_token:
        reason = "registers with an initial access token (RFC 7591 section 3); none given (--initial-access-token)"
        _not_applicable(row, STEPS, reason)
        return row

    key = generate_signing_key()
    port = other_port("http://127.0.0.1")
    variables: dict[str, Any] = {
        "as_scopes": run.scopes(),
        "random_port": port,
        "generated_jwks": public_jwks(key),
        "generated_private_jwks": private_jwks(key),
        "signing_key": key,
    }
    registered: list[_Client] = []

    async def register() -> None:
        try:
            registered.append(await _register(run, profile, variables))
        except _RegisteredWithProblems as exc:
            registered.append(exc.client)  # created, but the answer is wrong: the flow still runs
            raise

    cell, _ = await _timed(register)
    record("register", cell)
    client = registered[0] if registered else None
    flow_steps = ("authorize", "token", "refresh", "other-port")
    if client is None or not client.information.get("client_id"):
        _not_applicable(row, flow_steps, "no client was registered", Outcome.BLOCKED)
        return row
    if run.config.login is None:
        _not_applicable(row, flow_steps, "no login driver (--login): discovery and registration only")
        return row
    if run.document is None or "authorization_endpoint" not in run.document:
        _not_applicable(row, flow_steps, "no usable discovery document", Outcome.BLOCKED)
        return row
    await _flow_steps(run, profile, client=client, variables=variables, row=row, record=record)
    return row


async def _flow_steps(
    run: _Run,
    profile: Profile,
    *,
    client: _Client,
    variables: Mapping[str, Any],
    row: Row,
    record: Callable[[str, Cell], None],
) -> None:
    """authorize, token, refresh and other-port for a registered client."""
    echoed_scope = client.information.get("scope")
    requested_scope = substitute(profile.registration.get("scope"), variables)
    variables = {**variables, "registered_scope": echoed_scope if isinstance(echoed_scope, str) else requested_scope}
    redirect_uri = substitute(profile.flow.redirect_uri, variables)
    scope = substitute(profile.flow.scope, variables) if profile.flow.scope is not None else None

    cell, grant = await _timed(lambda: _authorize(run, client, redirect_uri, scope))
    record("authorize", cell)
    tokens = None
    if grant is not None:
        cell, tokens = await _timed(lambda: _redeem(run, client, grant))
        record("token", cell)
    else:
        row.cells["token"] = Cell(Outcome.BLOCKED, "authorize failed")
    if "refresh_token" not in (client.information.get("grant_types") or profile.registration.get("grant_types") or []):
        row.cells["refresh"] = Cell(Outcome.NA, "the client did not register the refresh_token grant")
    elif tokens is not None:
        cell, _ = await _timed(lambda: _refresh(run, client, tokens))
        record("refresh", cell)
    else:
        row.cells["refresh"] = Cell(Outcome.BLOCKED, "no token")

    if not profile.flow.other_port:
        reason = (
            "the client reuses its registered redirect URI"
            if not is_loopback_ip_redirect(redirect_uri)
            else "the client keeps the registered port"
        )
        row.cells["other-port"] = Cell(Outcome.NA, reason)
    else:
        moved = with_port(redirect_uri, other_port(redirect_uri))

        async def from_another_port() -> None:
            grant = await _authorize(run, client, moved, scope)
            await _redeem(run, client, grant)

        cell, _ = await _timed(from_another_port)
        if cell.outcome is Outcome.FAIL:
            cell.detail = f"from {moved}: {cell.detail}"
        record("other-port", cell)


# ------------------------------------------------------------------------------- Client ID Metadata Documents

NO_HOSTING = (
    "no document host: --cimd-serve-on HOST:PORT --cimd-ca-dir DIR (the suite serves them), --cimd-docs-dir DIR "
    "--cimd-base-url URL (a running host, e.g. the local stack's) or --cimd-published (the real documents)"
)


async def _cimd_client_row(run: _Run, profile: Profile) -> Row:
    async with run.semaphore:
        return await _cimd_client_steps(run, profile)


async def _cimd_client_steps(run: _Run, profile: Profile) -> Row:
    """A client identified by its Client ID Metadata Document: discovery (CIMD advertised), its document (served
    by the suite, or the published one), then the flow with the document's URL as ``client_id`` and no
    registration at all."""
    metadata = profile.cimd
    assert metadata is not None  # noqa: S101 (callers choose CIMD profiles)
    row = Row("cimd-clients", profile.name, profile.title, note=", ".join(CIMD_REVISIONS), revisions=CIMD_REVISIONS)
    expected = {
        **profile.expected_failures.get(run.provider or "", {}),
        **run.config.expected_failures.get(profile.name, {}),
    }

    def record(step: str, cell: Cell) -> None:
        row.cells[step] = _expect(cell, expected.get(step))

    async def discovery() -> None:
        document = await _client_discovery(run, profile)
        _fail_if(checks.cimd_advertisement_problems(document))

    cell, _ = await _timed(discovery)
    record("discovery", cell)
    if run.hosting is None:
        _not_applicable(row, CIMD_STEPS, NO_HOSTING)
        return row
    hosting = run.hosting
    published = metadata.published_url

    async def document() -> str:
        if hosting.local:
            return hosting.publish(profile.name, metadata.document)
        response = await run.fetch("GET", published, headers={"Accept": "application/json"})
        _fail_if(checks.published_document_problems(response.body, response.status, published))
        return published

    cell, client_id = await _timed(document)
    if cell.outcome is Outcome.PASS:
        cell.detail = f"client_id {client_id}"
    record("document", cell)
    flow_steps = ("authorize", "token", "refresh", "other-port")
    if client_id is None:
        _not_applicable(row, flow_steps, "no document", Outcome.BLOCKED)
        return row
    if run.config.login is None:
        _not_applicable(row, flow_steps, "no login driver (--login): discovery and the document only")
        return row
    if run.document is None or "authorization_endpoint" not in run.document:
        _not_applicable(row, flow_steps, "no usable discovery document", Outcome.BLOCKED)
        return row
    grant_types = metadata.document.get("grant_types") or ["authorization_code"]
    client = _Client({"client_id": client_id, "token_endpoint_auth_method": "none", "grant_types": grant_types}, None)
    run.document_clients.setdefault(client_id, profile.name)
    variables: dict[str, Any] = {"as_scopes": run.scopes(), "random_port": other_port("http://127.0.0.1")}
    await _flow_steps(run, profile, client=client, variables=variables, row=row, record=record)
    return row


async def _refused_document_rows(run: _Run, cases: list[RefusedDocument]) -> list[Row]:
    """Each document a server must refuse, one at a time (so that "nothing created" is checked per case)."""
    rows = []
    for case in cases:
        rows.append(await _refused_document_row(run, case))
    return rows


async def _refused_document_row(run: _Run, case: RefusedDocument) -> Row:
    row = Row("cimd-refused", case.name, case.title, note=", ".join(CIMD_REVISIONS), revisions=CIMD_REVISIONS)
    document = run.document or {}
    if "authorization_endpoint" not in document:
        row.cells["refused"] = Cell(Outcome.BLOCKED, "no usable discovery document")
        return row
    if document.get("client_id_metadata_document_supported") is not True:
        row.cells["refused"] = Cell(Outcome.NA, "the server does not advertise client_id_metadata_document_supported")
        return row
    hosting = run.hosting or DocumentHosting()
    if case.needs_host and not hosting.local:
        reason = "needs a document host the suite writes to (not the published documents)"
        row.cells["refused"] = Cell(Outcome.NA, reason if run.hosting else NO_HOSTING)
        return row
    registered_redirect = f"http://127.0.0.1:{other_port('http://127.0.0.1')}/callback"
    client_id = refused_client_id(case, hosting, registered_redirect)
    redirect_uri = (
        "https://attacker.example.com/callback" if case.name == "cimd-redirect-not-in-document" else registered_redirect
    )
    _, challenge = pkce_pair()
    url = authorization_url(
        str(document["authorization_endpoint"]),
        {
            "response_type": "code",
            "client_id": client_id,
            "redirect_uri": redirect_uri,
            "state": secrets.token_urlsafe(16),
            "code_challenge": challenge,
            "code_challenge_method": "S256",
            "resource": run.resource,
        },
    )
    before = await _provider_clients(run)

    async def refused() -> None:
        response = await run.fetch("GET", url)
        _fail_if(
            checks.refused_request_problems(response.status, response.headers, response.body, expected_error=case.error)
        )
        after = await _provider_clients(run)
        if before is not None and after is not None and after != before:
            run.document_clients.setdefault(client_id, case.name)
            raise StepFailed(f"the provider holds new clients after the refusal: {sorted(after - before)}")

    cell, _ = await _timed(refused)
    if cell.outcome is Outcome.PASS:
        cell.detail = (
            "nothing created (Hydra admin API checked)"
            if before is not None
            else "the provider's clients were not inspected (no --hydra-admin-url)"
        )
    row.cells["refused"] = cell
    return row


async def _provider_clients(run: _Run) -> set[str] | None:
    """Every client id Hydra holds (its admin API), when the run may look; else ``None``."""
    if not run.config.hydra_admin_url:
        return None
    response = await run.fetch(
        "GET", run.config.hydra_admin_url.rstrip("/") + "/admin/clients", params={"page_size": "500"}
    )
    if response.status != 200 or not isinstance(response.body, list):
        return None
    return {str(client.get("client_id")) for client in response.body if isinstance(client, Mapping)}


# ------------------------------------------------------------------- RFC 8707 resource, RFC 9207 iss, localhost

AUTHORIZATION_ROWS = (
    ("iss-on-success", "a successful authorization response carries iss = the issuer (RFC 9207)", ISS_REVISIONS),
    ("iss-on-error", "an error authorization response carries iss = the issuer (RFC 9207)", ISS_REVISIONS),
    ("resource-audience", "the access token's aud is the requested resource (RFC 8707)", RESOURCE_REVISIONS),
    (
        "resource-audience-after-refresh",
        "the refreshed access token keeps the resource in aud (RFC 8707 section 2.2)",
        RESOURCE_REVISIONS,
    ),
    (
        "unknown-resource-authorize",
        "an unknown resource at the authorization endpoint: redirect with error=invalid_target",
        RESOURCE_REVISIONS,
    ),
    ("unknown-resource-token", "an unknown resource at the token endpoint: 400 invalid_target", RESOURCE_REVISIONS),
    (
        "localhost-other-port",
        "registered http://localhost/callback, used from http://localhost:<other port>/callback (RFC 8252 7.3)",
        RESOURCE_REVISIONS,
    ),
)


async def _authorization_rows(run: _Run) -> list[Row]:
    rows = {
        name: Row("authorization", name, title, note=", ".join(revisions), revisions=revisions)
        for name, title, revisions in AUTHORIZATION_ROWS
    }

    def skip(reason: str, outcome: Outcome = Outcome.NA) -> list[Row]:
        for row in rows.values():
            row.cells.setdefault("check", Cell(outcome, reason))
        return list(rows.values())

    if run.document is None or "authorization_endpoint" not in run.document:
        return skip("no usable discovery document", Outcome.BLOCKED)
    if run.registration_endpoint is None:
        return skip("no registration endpoint: the probe client registers with RFC 7591")
    port = other_port("http://127.0.0.1")
    exact = f"http://127.0.0.1:{port}/callback"
    body = {
        "client_name": "dcr-gateway conformance (resource, iss, localhost)",
        "redirect_uris": [exact, "http://localhost/callback"],
        "grant_types": ["authorization_code", "refresh_token"],
        "response_types": ["code"],
        "token_endpoint_auth_method": "none",
        "application_type": "native",
        **({"scope": run.scopes()} if run.scopes() else {}),
    }
    response = await run.fetch("POST", run.registration_endpoint, json=body)
    run.record_created("authorization-cells", response)
    if response.status != 201 or not isinstance(response.body, Mapping) or "client_id" not in response.body:
        return skip(f"the probe client could not register (status {response.status})", Outcome.BLOCKED)
    client = _Client(dict(response.body), None)
    scope = client.information.get("scope") if isinstance(client.information.get("scope"), str) else run.scopes()
    probe = _ProbeClient(client, exact, port, scope)
    await _unknown_resource_at_authorization(run, probe, rows)
    if run.config.login is None:
        return skip("no login driver (--login): only the refusals without a login run")
    await _flow_cells(run, probe, rows)
    return skip("blocked by an earlier check", Outcome.BLOCKED)


@dataclass(frozen=True)
class _ProbeClient:
    """The public client the authorization cells register: ``http://127.0.0.1:{port}/callback`` and the port-less
    ``http://localhost/callback``."""

    client: _Client
    exact: str
    port: int
    scope: str | None


async def _unknown_resource_at_authorization(run: _Run, probe: _ProbeClient, rows: dict[str, Row]) -> None:
    """RFC 8707 section 2 at the authorization endpoint (no login needed: refused at once, by redirect) and the
    ``iss`` of that error response (RFC 9207)."""
    client, exact, scope = probe.client, probe.exact, probe.scope
    endpoint = str((run.document or {})["authorization_endpoint"])

    # An unknown resource needs no login: the authorization endpoint must refuse it at once.
    state = secrets.token_urlsafe(16)
    _, challenge = pkce_pair()
    unknown = authorization_url(
        endpoint,
        {
            "response_type": "code",
            "client_id": str(client.information["client_id"]),
            "redirect_uri": exact,
            "scope": scope,
            "state": state,
            "code_challenge": challenge,
            "code_challenge_method": "S256",
            "resource": run.config.unknown_resource,
        },
    )
    answer = await run.fetch("GET", unknown)
    location = next((v for k, v in answer.headers.items() if k.lower() == "location"), None)

    async def unknown_at_authorization() -> None:
        problems = checks.error_redirect_problems(
            answer.status,
            location,
            redirect_uri=exact,
            state=state,
            issuer=run.config.issuer,
            expected_error="invalid_target",
        )
        _fail_if([problem for problem in problems if "iss" not in problem])

    rows["unknown-resource-authorize"].cells["check"], _ = await _timed(unknown_at_authorization)

    async def iss_on_error() -> None:
        if not location or redirect_target(location) != redirect_target(exact):
            raise StepFailed("no error redirect to the client to look at (see unknown-resource-authorize)")
        _fail_if(checks.iss_problems(location, run.config.issuer))

    rows["iss-on-error"].cells["check"], _ = await _timed(iss_on_error)


async def _flow_cells(run: _Run, probe: _ProbeClient, rows: dict[str, Row]) -> None:
    """With a login: ``iss`` on success, the token's audience (and after a refresh), an unknown resource at the
    token endpoint, and ``localhost`` from another port."""
    client, exact, port, scope = probe.client, probe.exact, probe.port, probe.scope
    grants: list[_Grant] = []
    locations: list[str] = []

    async def iss_on_success() -> None:
        grant, where = await _authorize_with_location(run, client, exact, scope)
        grants.append(grant)
        locations.append(where)
        _fail_if(checks.iss_problems(where, run.config.issuer))

    rows["iss-on-success"].cells["check"], _ = await _timed(iss_on_success)
    tokens: dict[str, Any] | None = None
    if grants:
        cell, tokens = await _timed(lambda: _redeem(run, client, grants[0]))
        if cell.outcome is not Outcome.PASS:
            rows["resource-audience"].cells["check"] = cell
    if tokens is not None:
        rows["resource-audience"].cells["check"] = await _audience_cell(run, tokens)
        refresh_token = tokens.get("refresh_token")
        if isinstance(refresh_token, str) and refresh_token:
            cell, refreshed = await _timed(
                lambda: _token(
                    run,
                    client,
                    {"grant_type": "refresh_token", "refresh_token": refresh_token, "resource": run.resource},
                )
            )
            rows["resource-audience-after-refresh"].cells["check"] = (
                cell if refreshed is None else await _audience_cell(run, refreshed)
            )
        else:
            rows["resource-audience-after-refresh"].cells["check"] = Cell(
                Outcome.NA, f"no refresh token issued (granted scope {tokens.get('scope')!r})"
            )

    async def unknown_at_token() -> None:
        grant = await _authorize(run, client, exact, scope)
        endpoint = str((run.document or {})["token_endpoint"])
        headers, fields = client_authentication(client.information, endpoint, None)
        form = {
            "grant_type": "authorization_code",
            "code": grant.code,
            "redirect_uri": grant.redirect_uri,
            "code_verifier": grant.verifier,
            "resource": run.config.unknown_resource,
        }
        response = await run.fetch("POST", endpoint, data={**form, **fields}, headers=headers)
        error = response.body.get("error") if isinstance(response.body, Mapping) else None
        if response.status != 400 or error != "invalid_target":
            issued = " (a token was issued)" if response.status == 200 else ""
            raise StepFailed(f"expected 400 invalid_target, got {response.status} {error!r}{issued}")

    rows["unknown-resource-token"].cells["check"], _ = await _timed(unknown_at_token)

    async def localhost_other_port() -> None:
        moved = f"http://localhost:{other_port(exact, port)}/callback"
        try:
            grant = await _authorize(run, client, moved, scope)
        except StepFailed as exc:
            raise StepFailed(f"from {moved}: {exc}") from exc
        await _redeem(run, client, grant)

    rows["localhost-other-port"].cells["check"], _ = await _timed(localhost_other_port)


async def _audience_cell(run: _Run, tokens: Mapping[str, Any]) -> Cell:
    """RFC 8707: the access token's ``aud`` names ``run.resource`` (a JWT's claims, else RFC 7662 introspection)."""
    access_token = str(tokens.get("access_token") or "")
    claims = checks.jwt_claims(access_token)
    if claims is None and run.config.introspection_url is None:
        return Cell(Outcome.NA, "opaque access token: pass --introspection-url to read its audience (RFC 7662)")

    async def audience() -> None:
        aud = claims.get("aud") if claims is not None else None
        if claims is None:
            assert run.config.introspection_url is not None  # noqa: S101
            response = await run.fetch("POST", run.config.introspection_url, data={"token": access_token})
            if response.status != 200 or not isinstance(response.body, Mapping):
                raise StepFailed(f"introspection answered {response.status}")
            if response.body.get("active") is not True:
                raise StepFailed("introspection: the access token is not active")
            aud = response.body.get("aud")
        _fail_if(checks.audience_problems(aud, run.resource))

    cell, _ = await _timed(audience)
    return cell


async def _authorize_with_location(
    run: _Run, client: _Client, redirect_uri: str, scope: str | None
) -> tuple[_Grant, str]:
    """:func:`_authorize`, also returning the redirect that ended it (to look at its ``iss``)."""
    seen: list[str] = []
    original = run.config.login
    assert original is not None  # noqa: S101

    async def remember(session: aiohttp.ClientSession, url: str) -> str:
        location = await original.login(session, url)
        seen.append(location)
        return location

    grant = await _authorize(run, client, redirect_uri, scope, login=remember)
    return grant, seen[-1]


# ------------------------------------------------------------------------------------- bad registrations


def _bad_body(case: BadRegistration, variables: Mapping[str, Any]) -> bytes:
    if case.raw is not None:
        return case.raw.encode()
    if case.oversized_bytes is not None:
        filler = "x" * case.oversized_bytes
        return json.dumps({"redirect_uris": ["https://app.example.com/cb"], "client_name": filler}).encode()
    return json.dumps(substitute(case.body, variables)).encode()


async def _bad_row(run: _Run, case: BadRegistration) -> Row:
    async with run.semaphore:
        row = Row("bad-registrations", case.name, case.title)
        endpoint = run.registration_endpoint
        if endpoint is None:
            row.cells["refused"] = Cell(Outcome.BLOCKED, "no registration endpoint")
            return row
        key = generate_signing_key()
        variables = {"generated_jwks": public_jwks(key), "generated_private_jwks": private_jwks(key)}
        body = _bad_body(case, variables)

        async def refused() -> None:
            try:
                response = await run.fetch("POST", endpoint, data=body, headers={"Content-Type": "application/json"})
                run.record_created(case.name, response)
            except aiohttp.ServerDisconnectedError as exc:
                raise StepFailed(f"expected {case.status} {case.error}, the server closed the connection") from exc
            _fail_if(
                checks.rejection_problems(
                    response.status, response.body, expected_status=case.status, expected_error=case.error
                )
            )

        row.cells["refused"], _ = await _timed(refused)
        return row


# ------------------------------------------------------------------------------------------------- the run


def _selection(config: SuiteConfig) -> tuple[list[Profile], list[BadRegistration], set[str]]:
    """The profiles and refused registrations ``config.profiles`` names (all when empty), and those names."""
    all_profiles, all_bad = load_profiles(config.profile_dir)
    wanted = set(config.profiles)
    known = {profile.name for profile in all_profiles} | {case.name for case in all_bad}
    known |= {case.name for case in REFUSED_DOCUMENTS} | {name for name, _, _ in AUTHORIZATION_ROWS}
    if wanted - known:
        raise ValueError(f"unknown profiles {sorted(wanted - known)}; known: {sorted(known)}")
    chosen = [profile for profile in all_profiles if not wanted or profile.name in wanted]
    bad = [case for case in all_bad if not wanted or case.name in wanted]
    return chosen, bad, wanted


async def run_suite(config: SuiteConfig, session: aiohttp.ClientSession | None = None) -> Report:
    """Run the matrix against ``config.issuer``, then delete what it registered; never raises for what the server
    does (that is a cell)."""
    if session is None:
        async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=config.timeout)) as own:
            return await run_suite(config, own)
    started = time.perf_counter()
    chosen, bad, wanted = _selection(config)
    refused_documents = not wanted or bool(wanted & {case.name for case in REFUSED_DOCUMENTS})
    authorization_cells = not wanted or bool(wanted & {name for name, _, _ in AUTHORIZATION_ROWS})

    run = _Run(
        config=config,
        session=session,
        semaphore=asyncio.Semaphore(max(1, config.concurrency)),
        throttle=Throttle(config.max_wait, config.progress),
    )
    report = Report(
        issuer=config.issuer,
        provider=None,
        login=config.login.name if config.login else None,
        sections=SECTIONS,
        max_wait=run.throttle.max_wait,
        keep_clients=config.keep_clients,
    )
    report.notes.append(
        f"rate limits: a 429 is sent again after its Retry-After; the run pauses at most {run.throttle.max_wait:g} s "
        "in total (--max-wait)"
    )
    host: RunningHost | None = None
    try:
        run.hosting, host = await _document_hosting(config)
        if run.hosting is not None:
            report.notes.append(f"CIMD documents: {_hosting_note(run.hosting)}")
        probe_rows = await asyncio.gather(*(_probe_row(run, probe) for probe in probes(config.issuer)))
        report.rows.extend(probe_rows)
        run.document = await _site_document(run)
        if run.document is None:
            report.notes.append("no usable discovery document at any probed location")
        provider = config.provider
        if provider == "auto":
            provider = detect_provider(run.document) if run.document is not None else None
        run.provider = report.provider = provider
        tasks = [
            asyncio.ensure_future(row)
            for row in (
                *(_client_row(run, profile) for profile in chosen if profile.cimd is None),
                *(_cimd_client_row(run, profile) for profile in chosen if profile.cimd is not None),
                *(_bad_row(run, case) for case in bad),
            )
        ]
        try:
            report.rows.extend(await asyncio.gather(*tasks))
            if authorization_cells:
                report.rows.extend(row for row in await _authorization_rows(run) if not wanted or row.name in wanted)
            if refused_documents:
                cases = [case for case in REFUSED_DOCUMENTS if not wanted or case.name in wanted]
                report.rows.extend(await _refused_document_rows(run, cases))
        except BaseException:
            for task in tasks:  # nothing more registers while the clean-up runs
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
            raise
        _expect_release_defects(report, run.provider, config.provider_version)
    finally:
        # Also when the run stops half way (an unexpected error, Ctrl-C): what it registered is deleted.
        await asyncio.shield(_clean_up(run, report))
        if host is not None:
            await host.close()
        report.pauses = list(run.throttle.pauses)
        report.notes.extend(_summary_notes(report))
        report.seconds = time.perf_counter() - started
    return report


def _expect_release_defects(report: Report, provider: str | None, version: str | None) -> None:
    """Cells a known defect of the provider's release fails (:mod:`gateway.conformance.versions`): expected."""
    if version is None:
        return
    for row in report.rows:
        for step, cell in row.cells.items():
            row.cells[step] = _expect(cell, release_defect(provider, version, row.name, step))
    report.notes.append(f"provider release: {provider} {version} (its known defects are expected failures)")


async def _document_hosting(config: SuiteConfig) -> tuple[DocumentHosting | None, RunningHost | None]:
    """Where the CIMD profiles' documents come from (``None``: no option given, those cells are n/a), and the
    https host the suite started for them, if it did."""
    if config.cimd_serve_on is not None:
        if config.cimd_ca_dir is None:
            raise ValueError("--cimd-serve-on needs --cimd-ca-dir (the development CA the target trusts)")
        from gateway.conformance.tls import server_certificate

        host, port = config.cimd_serve_on
        certificate, key = server_certificate(config.cimd_ca_dir, list(dict.fromkeys([host, "localhost"])))
        running = await start_host(config.cimd_ca_dir / "docs", host=host, port=port, certificate=certificate, key=key)
        return DocumentHosting(base_url=running.base_url, directory=running.directory), running
    if config.cimd_docs_dir is not None or config.cimd_base_url is not None:
        if config.cimd_docs_dir is None or config.cimd_base_url is None:
            raise ValueError("--cimd-docs-dir and --cimd-base-url go together")
        return DocumentHosting(base_url=config.cimd_base_url, directory=config.cimd_docs_dir), None
    if config.cimd_published:
        return DocumentHosting(published=True), None
    return None, None


def _hosting_note(hosting: DocumentHosting) -> str:
    if hosting.published:
        return "the clients' published documents (their real URLs)"
    return f"served at {hosting.base_url}/NAME.json (client_id rewritten to that URL)"


async def _delete_document_client(run: _Run, created: CreatedClient) -> Cell:
    """A client the target created from a document: the gateway offers no deletion path for it (RFC 7592 covers
    registered clients, which have a registration access token); on Hydra, with its admin API, the suite deletes
    it there, under the id this gateway's Hydra adapter stores it by."""
    if run.config.keep_clients:
        created.detail = "kept (--keep-clients)"
        return Cell(Outcome.NA, created.detail)
    left = (
        "left behind: a Client ID Metadata Document client, which has no RFC 7592 registration (every run with this "
        "document shares it); remove it with the provider's admin tools"
    )
    if not run.config.hydra_admin_url:
        created.detail = left
        return Cell(Outcome.NA, created.detail)
    stored = _hydra_stored_client_id(run.config.issuer, created.client_id)
    if stored is None:
        created.detail = left + " (this gateway's Hydra adapter names no stored id for it)"
        return Cell(Outcome.NA, created.detail)
    uri = f"{run.config.hydra_admin_url.rstrip('/')}/admin/clients/{quote(stored, safe='')}"

    async def delete() -> str:
        response = await run.fetch("DELETE", uri)
        if response.status == 404:
            return "not in the provider: nothing to delete"
        if response.status != 204:
            raise StepFailed(f"DELETE {uri} answered {response.status}: the document client is left behind")
        return f"deleted through Hydra's admin API ({stored})"

    cell, done = await _timed(delete)
    if cell.outcome is Outcome.PASS:
        created.deleted = True
        created.detail = cell.detail = str(done)
    else:
        created.detail = cell.detail
    return cell


def _hydra_stored_client_id(issuer: str, url: str) -> str | None:
    """``DocumentClients.stored_client_id`` of this gateway's Hydra adapter (Hydra's admin API cannot address an id
    with ``/``, so the adapter stores a document client under a derived id); ``None`` when it has none."""
    from adapters.hydra.adapter import HydraAdapter

    adapter = HydraAdapter(admin_url="http://hydra-admin.invalid", public_url="http://hydra-public.invalid")
    stored_client_id = getattr(adapter, "stored_client_id", None)
    if not callable(stored_client_id):
        return None
    stored = stored_client_id(issuer, url)
    return stored if isinstance(stored, str) and stored else None


async def _delete(run: _Run, created: CreatedClient) -> Cell:
    """RFC 7592 section 2.3: ``DELETE`` the client configuration endpoint with the registration access token;
    204 is the only success."""
    if run.config.keep_clients:
        created.detail = "kept (--keep-clients)"
        return Cell(Outcome.NA, created.detail)
    token = run.registration_access_tokens.get(created.client_id)
    if not created.registration_client_uri or not token:
        created.detail = (
            "left behind: the registration answer has no registration_client_uri and registration_access_token "
            "(RFC 7592 section 3); delete it with the provider's admin tools"
        )
        return Cell(Outcome.NA, created.detail)
    uri = created.registration_client_uri

    async def delete() -> None:
        response = await run.fetch("DELETE", uri, headers={"Authorization": f"Bearer {token}"})
        if response.status != 204:
            raise StepFailed(f"DELETE {uri} answered {response.status}, not 204: the client is left behind")

    cell, _ = await _timed(delete)
    if cell.outcome is Outcome.PASS:
        created.deleted = True
    else:
        created.detail = cell.detail
    return cell


async def _clean_up(run: _Run, report: Report) -> None:
    """Delete every client the run registered (at most ``concurrency`` at once) and add the clean-up rows."""

    async def one(created: CreatedClient) -> Row:
        async with run.semaphore:
            row = Row("cleanup", created.client_id, f"registered by {created.registered_by}")
            try:
                row.cells["delete"] = await _delete(run, created)
            except Exception as exc:  # a clean-up problem is reported on its client, never raised
                created.detail = f"{type(exc).__name__}: {exc}"[:300]
                row.cells["delete"] = Cell(Outcome.FAIL, created.detail)
            return row

    documents = [CreatedClient(url, by, None, document=True) for url, by in run.document_clients.items()]
    report.created_clients = list(run.created) + documents
    report.rows.extend(await asyncio.gather(*(one(client) for client in run.created)))

    async def one_document(created: CreatedClient) -> Row:
        row = Row("cleanup", created.client_id, f"created from its document by {created.registered_by}")
        try:
            row.cells["delete"] = await _delete_document_client(run, created)
        except Exception as exc:
            created.detail = f"{type(exc).__name__}: {exc}"[:300]
            row.cells["delete"] = Cell(Outcome.FAIL, created.detail)
        return row

    report.rows.extend([await one_document(created) for created in documents])
    if run.config.progress is not None:
        for client in report.left_behind:
            run.config.progress(f"client {client.client_id} not deleted: {client.detail}")


def _summary_notes(report: Report) -> list[str]:
    notes = []
    waits = [pause for pause in report.pauses if pause.retried]
    refused = [pause for pause in report.pauses if not pause.retried]
    if report.pauses:
        notes.append(
            f"rate limits: 429 answers: {len(report.pauses)}; the run paused {report.paused_seconds:.1f} s "
            f"in total for their Retry-After ({len(waits)} sent again"
            + (f", {len(refused)} not: waiting would pass --max-wait" if refused else "")
            + ")"
        )
    else:
        notes.append("rate limits: no 429 answers")
    created = report.created_clients
    deleted = sum(client.deleted for client in created)
    documents = sum(client.document for client in created)
    line = f"clients: this run registered {len(created) - documents} and deleted {deleted} (RFC 7592 DELETE)"
    if documents:
        line = (
            f"clients: this run registered {len(created) - documents}, the target created {documents} from Client ID "
            f"Metadata Documents; {deleted} deleted (RFC 7592 DELETE; document clients with the provider's admin API)"
        )
    if report.left_behind:
        line += "; left behind: " + ", ".join(client.client_id for client in report.left_behind)
    notes.append(line)
    return notes


async def _site_document(run: _Run) -> Mapping[str, Any] | None:
    """The document the flows use: the first 200 JSON object in MCP 2025-11-25 order whose issuer matches."""
    for url in client_probe_order(run.config.issuer, DISCOVERY_VERSION):
        try:
            response = await run.fetch("GET", url)
        except (aiohttp.ClientError, TimeoutError):
            continue
        body = response.body
        if response.status == 200 and isinstance(body, Mapping) and body.get("issuer") == run.config.issuer:
            return body
    return None
