"""The packaged conformance suite (``dcr-gateway conformance``) against real targets.

- The gateway in front of the real Hydra and the real Keycloak passes the whole matrix (expected failures are
  strict, so a limitation that went away is reported too).
- Known-bad targets fail on the cells they should, and pass where they are right: Hydra's own registration
  endpoint (a second Hydra with ``oidc.dynamic_client_registration.enabled``) and a deliberately naive shim
  (tests/integration/naive_shim.py).
- With the production rate limit (20 registrations per source and window) the packaged suite still passes on both
  providers, by waiting out the 429s, and leaves no client behind in the provider.

Each test prints the matrix (``pytest -s`` shows it) and its wall time.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import xml.etree.ElementTree as ET
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiohttp import web

from devstack.process import LOOPBACK, Service, free_port
from devstack.providers import (
    DEVELOPMENT_INITIAL_ACCESS_TOKEN,
    HYDRA_NATIVE_DCR_CONFIG,
    DocumentTrust,
    HydraProvider,
    KeycloakProvider,
    hydra_gateway_env,
    hydra_version,
    keycloak_version,
    start_gateway,
    start_hydra,
)
from gateway.conformance import Outcome, Report, SuiteConfig, hydra_admin, keycloak_form, render_text, run_suite
from gateway.conformance.cli import IAT_ENV, PASSWORD_ENV
from gateway.conformance.tls import development_ca
from gateway.conformance.versions import release_defect
from tests.integration.conftest import (
    GATEWAY_READY_TIMEOUT,
    DocumentHost,
    GatewayProcess,
    McpResource,
    keycloak_admin_headers,
)
from tests.integration.naive_shim import naive_shim_app

HYDRA_READY_TIMEOUT = 60.0
CLIENT_PROFILES = [
    "claude-ai",
    "claude-ai-post",
    "claude-code",
    "cursor",
    "mcp-inspector",
    "mcp-remote",
    "private-key-jwt",
    "python-sdk",
    "typescript-sdk",
    "vscode",
    "web-app-post",
]
FLOW_STEPS = ("authorize", "token", "refresh")


def outcome(report: Report, row: str, column: str) -> Outcome:
    return report.cell(row, column).outcome


def show(report: Report, label: str) -> None:
    print(f"\n===== {label}: wall time of the whole matrix {report.seconds:.1f} s =====\n{render_text(report)}")


def assert_every_client_completes_the_flow(report: Report) -> None:
    """Every profile registers and completes the flow (the private_key_jwt client with the development initial
    access token the session gateways accept)."""
    for name in CLIENT_PROFILES:
        row = report.row(name, "clients")
        assert row.cells["discovery"].outcome is Outcome.PASS, (name, row.cells["discovery"])
        assert row.cells["register"].outcome is Outcome.PASS, (name, row.cells["register"])
        for step in FLOW_STEPS:
            assert row.cells[step].outcome in (Outcome.PASS, Outcome.XFAIL, Outcome.BLOCKED), (name, step)
        assert row.cells["authorize"].outcome is Outcome.PASS, (name, row.cells["authorize"])


# ------------------------------------------------------------------------------------------- the gateway


CIMD_PROFILES = ["claude-ai-cimd", "claude-code-cimd", "vscode-cimd", "chatgpt-cimd"]
AUTHORIZATION_CELLS = [
    "iss-on-success",
    "iss-on-error",
    "resource-audience",
    "resource-audience-after-refresh",
    "unknown-resource-authorize",
    "unknown-resource-token",
    "localhost-other-port",
]
REFUSED_DOCUMENTS = [
    "cimd-http-url",
    "cimd-client-id-mismatch",
    "cimd-redirect-not-in-document",
    "cimd-private-address",
    "cimd-loopback-address",
    "cimd-redirect-on-fetch",
    "cimd-oversized",
    "cimd-not-json",
    "cimd-shared-secret",
    "cimd-missing-redirect-uris",
]


def assert_the_mcp_2026_cells_pass(report: Report) -> None:
    """Issue 10: every discovery location advertises CIMD and iss (no WARNING); the CIMD profiles go through
    discovery, their document and the flow without registering; the resource, iss and localhost cells pass; every
    refused document is refused with the right error."""
    for row in report.rows:
        if row.section == "discovery" and row.cells["metadata"].outcome is Outcome.PASS:
            assert row.revisions, row.name
            for column in ("cimd", "iss"):
                assert row.cells[column].outcome is Outcome.PASS, (row.name, column, row.cells[column])
    for name in CIMD_PROFILES:
        row = report.row(name, "cimd-clients")
        assert row.revisions == ("2025-11-25", "2026-07-28")
        for step in ("discovery", "document"):
            assert row.cells[step].outcome is Outcome.PASS, (name, step, row.cells[step])
        if row.cells["authorize"].outcome is Outcome.XFAIL:  # declared by the profile, with its reason
            assert row.cells["token"].outcome is Outcome.BLOCKED
            continue
        for step in ("authorize", "token"):
            assert row.cells[step].outcome is Outcome.PASS, (name, step, row.cells[step])
        assert row.cells["refresh"].outcome in (Outcome.PASS, Outcome.XFAIL), (name, row.cells["refresh"])
    for name in AUTHORIZATION_CELLS:
        cell = report.cell(name, "check", "authorization")
        if cell.outcome is Outcome.XFAIL:  # a known defect of the provider's release, named with its version
            version = {"keycloak": keycloak_version(), "hydra": hydra_version()}.get(report.provider or "")
            assert release_defect(report.provider, version, name, "check"), (name, cell)
            assert version is not None and version in cell.detail, cell
            continue
        assert cell.outcome in (Outcome.PASS, Outcome.NA), (name, cell)
    for name in REFUSED_DOCUMENTS:
        assert report.cell(name, "refused", "cimd-refused").outcome is Outcome.PASS, (
            name,
            report.cell(name, "refused"),
        )
    # other ports: Claude Code's port-less localhost, VS Code's port-less 127.0.0.1
    assert report.cell("claude-code-cimd", "other-port").outcome is Outcome.PASS
    assert report.cell("vscode-cimd", "other-port").outcome is Outcome.PASS


RELEASE_DEFECT_PROPERTY = "release_defect"
"""A JUnit property of the test (``make matrix`` shows it as the cell's expected failure): a conformance cell that
failed as a known defect of the provider's release (:mod:`gateway.conformance.versions`)."""


async def gateway_report(provider: str, request: pytest.FixtureRequest | None = None, **config: Any) -> Report:
    """The suite's report on a session gateway in front of ``provider`` (with the development initial access
    token), shown; it identifies the provider, has no failure, and every client profile completes the flow. The
    cells that failed as a known defect of the release are recorded on the test (``request``) for ``make matrix``."""
    report = await run_suite(SuiteConfig(initial_access_token=DEVELOPMENT_INITIAL_ACCESS_TOKEN, **config))
    show(report, f"gateway in front of {provider.capitalize()}")
    if request is not None:
        for row in report.rows:
            for step, cell in row.cells.items():
                if cell.outcome is Outcome.XFAIL and release_defect(
                    provider, config.get("provider_version"), row.name, step
                ):
                    request.node.user_properties.append((RELEASE_DEFECT_PROPERTY, f"{row.name}/{step}: {cell.detail}"))
    assert report.provider == provider
    assert not report.failed, report.failures()
    assert_every_client_completes_the_flow(report)
    assert_the_mcp_2026_cells_pass(report)
    return report


async def test_the_gateway_in_front_of_hydra_passes_the_matrix(
    request: pytest.FixtureRequest,
    hydra_provider: HydraProvider,
    hydra_gateway: GatewayProcess,
    mcp_resource: McpResource,
    cimd_host: DocumentHost,
) -> None:
    report = await gateway_report(
        "hydra",
        request,
        provider_version=hydra_version(),
        issuer=hydra_gateway.issuer,
        resource=mcp_resource.url,
        cimd_docs_dir=cimd_host.docs,
        cimd_base_url=cimd_host.base_url,
        hydra_admin_url=hydra_provider.admin_url,
        introspection_url=f"{hydra_provider.admin_url}/admin/oauth2/introspect",
        login=hydra_admin(hydra_provider.admin_url, hydra_provider.subject),
        registration_endpoint=f"{hydra_gateway.url}/register",
    )
    # loopback IP redirects work from another port (RFC 8252 section 7.3); the 'mcp'-only clients get no
    # refresh token from Hydra, which the profiles declare
    assert outcome(report, "vscode", "other-port") is Outcome.PASS
    assert outcome(report, "typescript-sdk", "other-port") is Outcome.PASS
    assert outcome(report, "claude-ai", "refresh") is Outcome.XFAIL
    assert all(
        row.cells["refused"].outcome is Outcome.PASS for row in report.rows if row.section == "bad-registrations"
    )
    # claude.ai's document names no scope; Hydra allows a client only the scopes it was created with, so the gateway
    # registers the 'mcp' its authorization asks for (it was invalid_scope before)
    assert outcome(report, "claude-ai-cimd", "authorize") is Outcome.PASS
    assert outcome(report, "claude-code-cimd", "token") is Outcome.PASS
    # opaque tokens: their audience read through Hydra's introspection; refusals checked against Hydra's client list
    assert report.cell("resource-audience", "check").outcome is Outcome.PASS
    assert "nothing created (Hydra admin API checked)" in report.cell("cimd-shared-secret", "refused").detail
    # the document clients of the run are deleted through Hydra's admin API (the gateway has no path for them)
    documents = [client for client in report.created_clients if client.registered_by in CIMD_PROFILES]
    assert len(documents) == len(CIMD_PROFILES) and all(client.deleted for client in documents), documents


async def test_the_gateway_in_front_of_keycloak_passes_the_matrix(
    request: pytest.FixtureRequest,
    keycloak_provider: KeycloakProvider,
    keycloak_gateway: GatewayProcess,
    mcp_resource: McpResource,
    cimd_host: DocumentHost,
    http: aiohttp.ClientSession,
) -> None:
    before = await keycloak_client_ids(http, keycloak_provider)
    report = await gateway_report(
        "keycloak",
        request,
        provider_version=keycloak_version(),
        issuer=keycloak_gateway.issuer,
        resource=mcp_resource.url,
        cimd_docs_dir=cimd_host.docs,
        cimd_base_url=cimd_host.base_url,
        login=keycloak_form(keycloak_provider.username, keycloak_provider.password),
        registration_endpoint=f"{keycloak_gateway.issuer}/register",
    )
    assert outcome(report, "vscode", "other-port") is Outcome.PASS  # port-less 127.0.0.1 registration
    assert outcome(report, "claude-ai", "refresh") is Outcome.PASS
    assert outcome(report, "claude-code", "token") is Outcome.PASS  # offline_access through the realm's scope
    # the issuer has a path: MCP 2025-03-26 clients (origin root only) cannot find it, and the cell says so
    root = f"{keycloak_gateway.url}/.well-known/oauth-authorization-server"
    assert report.cell(root, "metadata", "discovery").outcome is Outcome.NA
    # JWT access tokens: the audience is read from the token itself
    assert report.cell("resource-audience", "check").outcome is Outcome.PASS
    assert report.cell("resource-audience-after-refresh", "check").outcome is (
        Outcome.XFAIL
        if release_defect("keycloak", keycloak_version(), "resource-audience-after-refresh", "check")
        else Outcome.PASS
    )
    # what the run leaves in Keycloak: exactly the document clients of the CIMD profiles (no deletion path through
    # the gateway; the report says so), no client of a refused document
    after = await keycloak_client_ids(http, keycloak_provider)
    documents = {cimd_host.url(name) for name in CIMD_PROFILES}
    assert after - before <= documents, sorted(after - before - documents)
    assert not [client for client in after if client.startswith(f"{cimd_host.base_url}/cimd-")]
    reported = [client for client in report.created_clients if client.registered_by in CIMD_PROFILES]
    assert {client.client_id for client in reported} == documents
    assert all(not client.deleted and "left behind" in client.detail for client in reported)


async def test_without_an_initial_access_token_the_private_key_jwt_row_says_why_and_nothing_else_changes(
    keycloak_provider: KeycloakProvider, keycloak_gateway: GatewayProcess, mcp_resource: McpResource
) -> None:
    """Anonymous callers may not register ``jwks`` (policy ``jwks = authenticated``): the row is n/a with the
    reason, never a silent skip, and the development token never reaches the gateway's log."""
    report = await run_suite(
        SuiteConfig(
            issuer=keycloak_gateway.issuer,
            login=keycloak_form(keycloak_provider.username, keycloak_provider.password),
            profiles=("private-key-jwt", "python-sdk"),
            resource=mcp_resource.url,
        )
    )
    assert not report.failed, report.failures()
    assert outcome(report, "private-key-jwt", "register") is Outcome.NA
    assert "initial access token" in report.cell("private-key-jwt", "register").detail
    assert outcome(report, "python-sdk", "token") is Outcome.PASS
    assert DEVELOPMENT_INITIAL_ACCESS_TOKEN not in keycloak_gateway.log_path.read_text()


def test_the_cli_prints_the_matrix_and_writes_junit_and_json(
    hydra_provider: HydraProvider, hydra_gateway: GatewayProcess, mcp_resource: McpResource, tmp_path: Path
) -> None:
    junit, results = tmp_path / "conformance.xml", tmp_path / "conformance.json"
    completed = subprocess.run(
        [
            sys.executable,
            "-m",
            "gateway",
            "conformance",
            "--issuer",
            hydra_gateway.issuer,
            "--login",
            "hydra-admin",
            "--hydra-admin-url",
            hydra_provider.admin_url,
            "--subject",
            hydra_provider.subject,
            "--resource",
            mcp_resource.url,
            "--junit",
            str(junit),
            "--json",
            str(results),
        ],
        capture_output=True,
        text=True,
        timeout=240,
        check=False,
    )
    print(completed.stdout)
    assert completed.returncode == 0, completed.stdout + completed.stderr
    assert "client profiles" in completed.stdout
    assert completed.stdout.rstrip().splitlines()[-1].startswith("PASSED:")
    data = json.loads(results.read_text())
    assert data["passed"] is True
    clients = next(section for section in data["sections"] if section["name"] == "clients")
    assert {row["name"] for row in clients["rows"]} == set(CLIENT_PROFILES)
    suites = ET.fromstring(junit.read_text())  # noqa: S314 (our own output)
    assert sum(int(suite.get("failures", "0")) for suite in suites) == 0
    cells = sum(len(row["cells"]) for section in data["sections"] for row in section["rows"])
    assert sum(int(suite.get("tests", "0")) for suite in suites) == cells == sum(data["counts"].values())


def test_the_cli_serves_its_own_documents_to_a_gateway_that_trusts_its_ca(
    keycloak_provider: KeycloakProvider, mcp_resource: McpResource, tmp_path: Path
) -> None:
    """``--cimd-serve-on HOST:PORT --cimd-ca-dir DIR``: the suite serves the CIMD profiles' documents itself over
    https with a development CA in DIR (made before the gateway starts, reused by the suite); a gateway configured
    with that CA and origin completes every CIMD profile and refuses every bad document."""
    ca_dir = tmp_path / "suite-ca"
    ca_file, _ = development_ca(ca_dir)
    port, docs_port = free_port(), free_port()
    trust = DocumentTrust(
        development_origins=(f"https://127.0.0.1:{docs_port}",),
        ca_file=ca_file,
        protected_resources=(mcp_resource.url,),
    )
    gateway = start_gateway(
        "gateway-suite-ca", env=keycloak_provider.gateway_env(port, documents=trust), log_path=tmp_path / "gw.log"
    )
    results = tmp_path / "conformance.json"
    try:
        gateway.wait_ready(GATEWAY_READY_TIMEOUT)
        completed = run_cli(
            "--issuer",
            f"http://{LOOPBACK}:{port}/realms/{keycloak_provider.realm}",
            "--login",
            "keycloak",
            "--username",
            keycloak_provider.username,
            "--provider-version",
            keycloak_version(),
            "--resource",
            mcp_resource.url,
            "--cimd-serve-on",
            f"127.0.0.1:{docs_port}",
            "--cimd-ca-dir",
            str(ca_dir),
            *(arg for name in [*CIMD_PROFILES, *REFUSED_DOCUMENTS] for arg in ("--profile", name)),
            "--json",
            str(results),
            env={PASSWORD_ENV: keycloak_provider.password},
        )
    finally:
        gateway.stop()
    assert completed.returncode == 0, completed.stdout + completed.stderr
    data = json.loads(results.read_text())
    rows = {row["name"]: row for section in data["sections"] for row in section["rows"]}
    for name in CIMD_PROFILES:
        assert rows[name]["cells"]["token"]["outcome"] == "pass", rows[name]
        assert f"https://127.0.0.1:{docs_port}/{name}.json" in rows[name]["cells"]["document"]["detail"]
        assert rows[name]["revisions"] == ["2025-11-25", "2026-07-28"]
    for name in REFUSED_DOCUMENTS:
        assert rows[name]["cells"]["refused"]["outcome"] == "pass", rows[name]
    assert (ca_dir / "ca.pem").read_bytes() == ca_file.read_bytes()  # the CA the gateway trusts was reused


def test_without_a_login_driver_only_discovery_and_registration_run(hydra_gateway: GatewayProcess) -> None:
    completed = subprocess.run(
        [sys.executable, "-m", "gateway", "conformance", "--issuer", hydra_gateway.issuer, "--profile", "cursor"],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert completed.returncode == 0, completed.stdout + completed.stderr
    assert "login: none (discovery and registration steps only" in completed.stdout
    assert "cursor / authorize: n/a: no login driver" in completed.stdout


# ------------------------------------------------------------------------------------- known-bad targets


@dataclass(frozen=True)
class BareHydra:
    public_url: str
    admin_url: str
    service: Service


def _start_bare_hydra(log_dir: Path, *, issuer_port: int | None = None, native_dcr: bool = False) -> BareHydra:
    """A Hydra without the dev login app (the hydra-admin driver never loads the login page)."""
    public_port, admin_port = free_port(), free_port()
    issuer = f"http://{LOOPBACK}:{issuer_port or public_port}"
    unused = f"http://{LOOPBACK}:9"  # login/consent pages are never fetched: challenges are accepted by admin API
    service = start_hydra(
        public_port=public_port,
        admin_port=admin_port,
        issuer=issuer,
        login_url=f"{unused}/login",
        consent_url=f"{unused}/consent",
        error_url=f"{unused}/error",
        log_path=log_dir / "hydra.log",
        **({"config": HYDRA_NATIVE_DCR_CONFIG} if native_dcr else {}),
    )
    try:
        service.wait_ready(HYDRA_READY_TIMEOUT)
    except BaseException:
        service.stop()
        raise
    return BareHydra(f"http://{LOOPBACK}:{public_port}", f"http://{LOOPBACK}:{admin_port}", service)


@pytest.fixture(scope="module")
def native_hydra(tmp_path_factory: pytest.TempPathFactory) -> Iterator[BareHydra]:
    """A second Hydra whose own RFC 7591 endpoint is on; its issuer is its own public listener."""
    hydra = _start_bare_hydra(tmp_path_factory.mktemp("hydra-native-dcr"), native_dcr=True)
    yield hydra
    hydra.service.stop()


@pytest.fixture(scope="module")
async def naive_shim(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[tuple[str, BareHydra]]:
    """The naive shim on Hydra's issuer origin (Hydra builds its URLs on it), in front of a third Hydra."""
    port = free_port()
    hydra = _start_bare_hydra(tmp_path_factory.mktemp("hydra-shim"), issuer_port=port)
    url = f"http://{LOOPBACK}:{port}"
    runner = web.AppRunner(
        naive_shim_app(public_url=url, hydra_public_url=hydra.public_url, hydra_admin_url=hydra.admin_url)
    )
    await runner.setup()
    try:
        await web.TCPSite(runner, LOOPBACK, port).start()
        yield url, hydra
    finally:
        await runner.cleanup()
        hydra.service.stop()


async def test_hydra_native_registration_fails_on_the_right_cells(native_hydra: BareHydra) -> None:
    report = await run_suite(
        SuiteConfig(
            issuer=native_hydra.public_url,
            login=hydra_admin(native_hydra.admin_url),
            # Hydra does not advertise it: what a client configured by hand would use
            registration_endpoint=f"{native_hydra.public_url}/oauth2/register",
            initial_access_token="ignored-by-hydra",  # so that the private_key_jwt profile registers too
        )
    )
    show(report, "Hydra's native registration (known bad)")
    assert report.failed
    oauth_document = f"{native_hydra.public_url}/.well-known/oauth-authorization-server"
    openid_document = f"{native_hydra.public_url}/.well-known/openid-configuration"
    # v2.3.0 has no RFC 8414 document (MCP 2025-03-26 and 2025-06-18 clients find nothing) ...
    assert report.cell(oauth_document, "metadata").outcome is Outcome.FAIL
    assert "status 404" in report.cell(oauth_document, "metadata").detail
    # ... and its OpenID document does not advertise the registration endpoint, nor answer CORS
    assert "no registration_endpoint" in report.cell(openid_document, "metadata").detail
    assert report.cell(openid_document, "cors").outcome is Outcome.FAIL
    assert all(outcome(report, name, "discovery") is Outcome.FAIL for name in CLIENT_PROFILES)
    # browser clients cannot register (no CORS); metadata Hydra has no field for is not echoed; a secret is
    # issued to a private_key_jwt client, which has no use for one
    assert "preflight" in report.cell("mcp-inspector", "register").detail
    assert "application_type is not echoed" in report.cell("vscode", "register").detail
    assert "client_secret was issued for 'private_key_jwt'" in report.cell("private-key-jwt", "register").detail
    # the Python SDK's default body becomes a confidential client_secret_basic client, as RFC 7591 says: right
    assert outcome(report, "python-sdk", "register") is Outcome.PASS
    assert outcome(report, "python-sdk", "token") is Outcome.PASS
    # no metadata policy at all: dangerous redirect URIs, forbidden grants and non-object bodies get through
    for name in (
        "javascript-scheme",
        "data-scheme",
        "userinfo",
        "wildcard-host",
        "http-remote-host",
        "password-grant",
        "implicit-grant",
        "client-credentials",
        "json-null",
        "oversized",
    ):
        assert "got 201" in report.cell(name, "refused").detail, name
    for name in ("not-json", "json-array"):  # refused, but not with the RFC 7591 error code
        assert outcome(report, name, "refused") is Outcome.FAIL, name
    # what Hydra does refuse, it refuses correctly
    for name in ("fragment", "bare-fragment", "jwks-and-jwks-uri", "symmetric-jwk"):
        assert outcome(report, name, "refused") is Outcome.PASS, name
    assert_the_mcp_2026_cells_fail_on_plain_hydra(report, openid_document)


def assert_the_mcp_2026_cells_fail_on_plain_hydra(report: Report, openid_document: str) -> None:
    """Hydra v2.3.0 on its own has no CIMD, no RFC 8707 and no RFC 9207: the suite says so, cell by cell."""
    assert report.cell(openid_document, "cimd").outcome is Outcome.WARNING
    assert "client_id_metadata_document_supported is not true" in report.cell(openid_document, "cimd").detail
    assert report.cell(openid_document, "iss").outcome is Outcome.WARNING
    assert report.row(openid_document).revisions == ("2025-11-25", "2026-07-28")
    assert "no iss in the authorization response" in report.cell("iss-on-success", "check").detail
    assert report.cell("iss-on-error", "check").outcome is Outcome.FAIL
    # the unknown resource goes on to the login page and gets a token: Hydra ignores `resource`
    assert (
        "not to the redirect_uri with error=invalid_target" in report.cell("unknown-resource-authorize", "check").detail
    )
    assert "a token was issued" in report.cell("unknown-resource-token", "check").detail
    # Hydra ignores the port of IP literals only, not of localhost (RFC 8252 section 7.3)
    assert report.cell("localhost-other-port", "check").outcome is Outcome.FAIL
    # opaque tokens and no introspection given: the audience is not guessed
    assert "opaque access token" in report.cell("resource-audience", "check").detail
    # CIMD not advertised: its profiles fail discovery, the refused documents are n/a (nothing to refuse)
    assert "client_id_metadata_document_supported" in report.cell("claude-code-cimd", "discovery").detail
    assert report.cell("cimd-private-address", "refused").outcome is Outcome.NA


async def test_a_naive_shim_fails_on_the_right_cells(naive_shim: tuple[str, BareHydra]) -> None:
    url, hydra = naive_shim
    report = await run_suite(
        SuiteConfig(issuer=url, login=hydra_admin(hydra.admin_url), initial_access_token="ignored")
    )
    show(report, "naive shim in front of Hydra (known bad)")
    assert report.failed
    # the patched RFC 8414 document is fine; the OpenID one (which 2025-11-25 clients also probe) is not
    assert report.cell(f"{url}/.well-known/oauth-authorization-server", "metadata").outcome is Outcome.PASS
    assert "no registration_endpoint" in report.cell(f"{url}/.well-known/openid-configuration", "metadata").detail
    assert report.cell(f"{url}/.well-known/oauth-authorization-server", "cors").outcome is Outcome.FAIL
    # the hand-built answer echoes nothing but the redirect URIs and the name
    assert "token_endpoint_auth_method is not in the answer" in report.cell("typescript-sdk", "register").detail
    # the author only tried http(s) clients: Cursor's private-use scheme fails the whole registration
    assert "status 400" in report.cell("cursor", "register").detail
    assert outcome(report, "cursor", "authorize") is Outcome.BLOCKED
    # Inspector: no CORS on registration
    assert "preflight" in report.cell("mcp-inspector", "register").detail
    # non-JSON crashes the shim (a 500, not an RFC 7591 error)
    assert "got 500" in report.cell("not-json", "refused").detail
    assert "got 201" in report.cell("userinfo", "refused").detail
    assert "got 201" in report.cell("password-grant", "refused").detail
    assert "no error_description" in report.cell("javascript-scheme", "refused").detail
    # yet the flow itself works for the client its author tried (a public loopback client)
    assert outcome(report, "typescript-sdk", "token") is Outcome.PASS
    # and it adds nothing of MCP 2025-11-25 / 2026-07-28 to the Hydra behind it
    assert_the_mcp_2026_cells_fail_on_plain_hydra(report, f"{url}/.well-known/openid-configuration")


# ------------------------------------------------------------------------------- production rate limits

PRODUCTION_LIMITS_ENV = {
    "DCR_LIMITS__PER_SOURCE_LIMIT": "20",  # the production default ...
    "DCR_LIMITS__PER_SOURCE_WINDOW_SECONDS": "10",  # ... in a 10 s window instead of 60 s, to keep the test short
    "DCR_LIMITS__GLOBAL_LIMIT": "300",
}
"""A run makes about 36 registrations from one address: past the limit of 20, so the suite meets 429s."""
PRODUCTION_RESOURCE = "https://mcp.example.com/mcp"
"""The protected resource of these gateways (RFC 8707): any other ``resource`` is ``invalid_target``."""


def run_cli(*argv: str, env: dict[str, str], timeout: float = 400) -> subprocess.CompletedProcess[str]:
    completed = subprocess.run(
        [sys.executable, "-m", "gateway", "conformance", *argv],
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
        env={**{k: v for k, v in os.environ.items() if not k.startswith("DCR_")}, **env},
    )
    print(completed.stdout, completed.stderr)
    return completed


async def hydra_client_ids(http: aiohttp.ClientSession, admin_url: str) -> set[str]:
    """Every client Hydra holds, read with its admin API."""
    async with http.get(f"{admin_url}/admin/clients", params={"page_size": "500"}) as response:
        assert response.status == 200
        return {client["client_id"] for client in await response.json()}


async def keycloak_client_ids(http: aiohttp.ClientSession, keycloak: KeycloakProvider) -> set[str]:
    """Every client of the realm, read with Keycloak's admin API."""
    async with http.get(
        f"{keycloak.admin_realm_url}/clients",
        params={"max": "10000"},
        headers=await keycloak_admin_headers(http, keycloak),
    ) as response:
        assert response.status == 200
        return {client["clientId"] for client in await response.json()}


def assert_passed_by_waiting_and_deleted_everything(completed: subprocess.CompletedProcess[str], results: Path) -> None:
    """The run passed, met the rate limit (429s waited out, and said so) and deleted every client it registered."""
    data = json.loads(results.read_text())
    details = [
        f"{row['name']}/{column}: {cell['detail']}"
        for section in data["sections"]
        for row in section["rows"]
        for column, cell in row["cells"].items()
        if cell["outcome"] != "pass"
    ]
    assert not [detail for detail in details if "429" in detail], details
    assert completed.returncode == 0, completed.stdout + completed.stderr
    assert data["passed"] is True
    # the production limit was reached, the suite paused for Retry-After and said so
    assert data["rate_limits"]["paused_seconds"] > 0, data["rate_limits"]
    assert "pausing" in completed.stderr and "Retry-After" in completed.stderr
    assert "rate limits: a 429 is sent again after its Retry-After" in completed.stdout
    # every client it registered is named in the report, and deleted (RFC 7592)
    created = data["created_clients"]
    assert {entry["registered_by"] for entry in created} >= set(CLIENT_PROFILES)
    assert [entry["client_id"] for entry in created if not entry["deleted"]] == []


@pytest.mark.timeout(600)
async def test_with_production_rate_limits_the_suite_passes_on_hydra_and_leaves_no_client(
    http: aiohttp.ClientSession, tmp_path: Path
) -> None:
    port = free_port()
    hydra = _start_bare_hydra(tmp_path, issuer_port=port)
    try:
        env = hydra_gateway_env(
            port=port,
            hydra_public_url=hydra.public_url,
            hydra_admin_url=hydra.admin_url,
            documents=DocumentTrust(protected_resources=(PRODUCTION_RESOURCE,)),
        )
        gateway = start_gateway(
            "gateway-production-limits", env=env | PRODUCTION_LIMITS_ENV, log_path=tmp_path / "gw.log"
        )
        try:
            gateway.wait_ready(GATEWAY_READY_TIMEOUT)
            before = await hydra_client_ids(http, hydra.admin_url)
            results = tmp_path / "conformance.json"
            completed = run_cli(
                "--issuer",
                f"http://{LOOPBACK}:{port}",
                "--login",
                "hydra-admin",
                "--hydra-admin-url",
                hydra.admin_url,
                "--provider-version",
                hydra_version(),
                "--resource",
                PRODUCTION_RESOURCE,
                "--json",
                str(results),
                env={IAT_ENV: DEVELOPMENT_INITIAL_ACCESS_TOKEN},
            )
            assert_passed_by_waiting_and_deleted_everything(completed, results)
            assert await hydra_client_ids(http, hydra.admin_url) == before, "the provider holds no client of the run"
        finally:
            gateway.stop()
    finally:
        hydra.service.stop()


@pytest.mark.timeout(600)
async def test_with_production_rate_limits_the_suite_passes_on_keycloak_and_leaves_no_client(
    http: aiohttp.ClientSession, keycloak_provider: KeycloakProvider, tmp_path: Path
) -> None:
    port = free_port()
    documents = DocumentTrust(protected_resources=(PRODUCTION_RESOURCE,))
    env = keycloak_provider.gateway_env(port, documents=documents) | PRODUCTION_LIMITS_ENV
    gateway = start_gateway("gateway-production-limits", env=env, log_path=tmp_path / "gw.log")
    try:
        gateway.wait_ready(GATEWAY_READY_TIMEOUT)
        before = await keycloak_client_ids(http, keycloak_provider)
        results = tmp_path / "conformance.json"
        completed = run_cli(
            "--issuer",
            f"http://{LOOPBACK}:{port}/realms/{keycloak_provider.realm}",
            "--login",
            "keycloak",
            "--username",
            keycloak_provider.username,
            "--provider-version",
            keycloak_version(),
            "--resource",
            PRODUCTION_RESOURCE,
            "--json",
            str(results),
            env={IAT_ENV: DEVELOPMENT_INITIAL_ACCESS_TOKEN, PASSWORD_ENV: keycloak_provider.password},
        )
        assert_passed_by_waiting_and_deleted_everything(completed, results)
        assert await keycloak_client_ids(http, keycloak_provider) == before, "the provider holds no client of the run"
    finally:
        gateway.stop()
