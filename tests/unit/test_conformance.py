"""The conformance suite's pure parts: profiles as data, probe locations, the checks, client authentication and
the report renderings (the runs against real targets are in tests/integration/test_conformance.py)."""

from __future__ import annotations

import base64
import hashlib
import json
import ssl
import xml.etree.ElementTree as ET
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import aiohttp
import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer
from joserfc import jwt
from joserfc.jwk import RSAKey

from adapters.memory.adapter import MemoryAdapter
from devstack.process import free_port
from gateway.app import create_app
from gateway.cli import build_parser, main
from gateway.conformance import checks
from gateway.conformance.cimd import MAX_DOCUMENT_BYTES, REFUSED_DOCUMENTS, DocumentHosting, refused_client_id
from gateway.conformance.cimd_host import start_host
from gateway.conformance.cli import parse_expected_failures
from gateway.conformance.discovery import detect_provider, metadata_problems, probes
from gateway.conformance.login import LoginDriver
from gateway.conformance.oauth import (
    client_authentication,
    generate_signing_key,
    is_loopback_ip_redirect,
    pkce_pair,
    private_jwks,
    public_jwks,
    with_port,
)
from gateway.conformance.profiles import ProfileError, load_profiles, substitute
from gateway.conformance.report import Cell, Outcome, Report, Row, render_text, to_json, to_junit
from gateway.conformance.runner import (
    DEFAULT_MAX_WAIT,
    SECTIONS,
    SuiteConfig,
    Throttle,
    _expect,
    retry_after_seconds,
    run_suite,
)
from gateway.conformance.tls import server_certificate
from gateway.oauth.metadata import parse_metadata
from gateway.rfc8414.wellknown import DocumentKind
from gateway.settings import Settings

ISSUER = "https://auth.example.com/realms/mcp"


# ------------------------------------------------------------------------------------------------ profiles


def test_every_client_type_of_the_issue_ships_as_a_profile() -> None:
    profiles, bad = load_profiles()
    assert {profile.name for profile in profiles if profile.cimd is None} == {
        "python-sdk",
        "typescript-sdk",
        "mcp-inspector",
        "mcp-remote",
        "claude-ai",
        "claude-ai-post",
        "claude-code",
        "vscode",
        "cursor",
        "web-app-post",
        "private-key-jwt",
    }
    assert len(bad) >= 20
    by_name = {profile.name: profile for profile in profiles}
    assert "token_endpoint_auth_method" not in by_name["python-sdk"].registration
    assert by_name["python-sdk"].expected_auth_method == "client_secret_basic"
    assert by_name["mcp-inspector"].browser_origin == "http://localhost:6274"
    assert "scope" not in by_name["claude-code"].registration
    assert by_name["vscode"].trim_grant_types and by_name["vscode"].flow.other_port
    assert by_name["typescript-sdk"].abort_on_5xx


def test_profile_bodies_are_valid_rfc7591_metadata_once_filled() -> None:
    profiles, _ = load_profiles()
    key = generate_signing_key()
    variables = {"as_scopes": "openid", "random_port": 50123, "generated_jwks": public_jwks(key)}
    for profile in profiles:
        if profile.cimd is not None:
            continue  # no registration: see test_the_cimd_profiles_carry_the_documents_as_published
        body = substitute(dict(profile.registration), variables)
        metadata = parse_metadata(body)
        assert metadata.redirect_uris, profile.name
        assert substitute(profile.flow.redirect_uri, variables) in body["redirect_uris"], profile.name


def test_every_bad_registration_names_an_rfc7591_error_code() -> None:
    _, bad = load_profiles()
    assert {case.error for case in bad} <= {"invalid_redirect_uri", "invalid_client_metadata"}
    assert {case.status for case in bad} == {400, 413}
    assert len({case.name for case in bad}) == len(bad)


def test_substitute_fills_whole_and_embedded_placeholders_and_drops_none() -> None:
    filled = substitute(
        {"a": "{jwks}", "b": "http://localhost:{port}/cb", "c": ["{port}"], "scope": "{scopes}"},
        {"jwks": {"keys": []}, "port": 4242, "scopes": None},
    )
    assert filled == {"a": {"keys": []}, "b": "http://localhost:4242/cb", "c": [4242]}


def test_an_unknown_placeholder_is_an_error_not_a_literal() -> None:
    with pytest.raises(ProfileError, match="unknown placeholder"):
        substitute({"a": "{nope}"}, {})


def test_a_profile_naming_an_unknown_step_is_refused(tmp_path: Any) -> None:
    (tmp_path / "x.json").write_text(
        json.dumps(
            {
                "name": "x",
                "registration": {},
                "flow": {"redirect_uri": "https://a/cb"},
                "expected_failures": {"hydra": {"tokn": "typo"}},
            }
        )
    )
    with pytest.raises(ProfileError, match="unknown steps"):
        load_profiles(tmp_path)


def test_the_cimd_profiles_carry_the_documents_as_published() -> None:
    """Issue 10 item 5: Claude (claude.ai), Claude Code, VS Code and ChatGPT by their Client ID Metadata Documents,
    shaped as they publish them (mcp-2026.md section 6, with sources)."""
    by_name = {profile.name: profile for profile in load_profiles()[0] if profile.cimd is not None}
    assert {name: profile.cimd.published_url for name, profile in by_name.items() if profile.cimd} == {
        "claude-ai-cimd": "https://claude.ai/oauth/mcp-oauth-client-metadata",
        "claude-code-cimd": "https://claude.ai/oauth/claude-code-client-metadata",
        "vscode-cimd": "https://vscode.dev/oauth/client-metadata.json",
        "chatgpt-cimd": "https://chatgpt.com/oauth/client.json",
    }
    documents = {name: dict(profile.cimd.document) for name, profile in by_name.items() if profile.cimd}
    for name, profile in by_name.items():
        assert profile.source and profile.registration == {}, name
        document = documents[name]
        assert document["client_id"] == profile.cimd.published_url if profile.cimd else False
        assert document["client_name"] and document["redirect_uris"], name
        assert document.get("token_endpoint_auth_method") in (None, "none"), name
        # the flow's redirect URI is in the document, or is a loopback one whose port the document leaves out
        redirect = substitute(profile.flow.redirect_uri, {"random_port": 50123})
        assert redirect in document["redirect_uris"] or redirect.replace(":50123", "") in document["redirect_uris"]
    # the quirks real servers trip over
    assert documents["claude-code-cimd"]["redirect_uris"] == ["http://localhost/callback", "http://127.0.0.1/callback"]
    assert by_name["claude-code-cimd"].flow.redirect_uri == "http://localhost:{random_port}/callback"
    assert by_name["claude-code-cimd"].flow.other_port
    assert "urn:ietf:params:oauth:grant-type:jwt-bearer" in documents["claude-ai-cimd"]["grant_types"]
    assert "token_endpoint_auth_method" not in documents["chatgpt-cimd"]
    assert documents["chatgpt-cimd"]["token_endpoint_auth_methods_supported"] == ["none", "private_key_jwt"]
    assert "http://127.0.0.1/" in documents["vscode-cimd"]["redirect_uris"]
    assert by_name["vscode-cimd"].flow.other_port


def test_a_cimd_profile_whose_document_is_not_its_url_is_refused(tmp_path: Any) -> None:
    document = {"client_id": "https://elsewhere.example/x.json", "client_name": "x", "redirect_uris": ["https://a/cb"]}
    (tmp_path / "x.json").write_text(
        json.dumps(
            {
                "name": "x",
                "cimd": {"published_url": "https://app.example/x.json", "document": document},
                "flow": {"redirect_uri": "https://a/cb"},
            }
        )
    )
    with pytest.raises(ProfileError, match="client_id is not its published_url"):
        load_profiles(tmp_path)


# ----------------------------------------------------------------------------------------------- discovery


def test_a_root_issuer_is_probed_at_two_locations_by_every_version() -> None:
    found = {probe.url: probe.versions for probe in probes("http://127.0.0.1:8080")}
    assert found == {
        "http://127.0.0.1:8080/.well-known/oauth-authorization-server": (
            "2025-03-26",
            "2025-06-18",
            "2025-11-25",
            "2026-07-28",
        ),
        "http://127.0.0.1:8080/.well-known/openid-configuration": ("2025-11-25", "2026-07-28"),
    }


def test_a_path_issuer_has_three_probed_locations_and_an_unreachable_root_for_2025_03_26() -> None:
    found = {probe.url: probe for probe in probes(ISSUER)}
    assert list(found)[:3] == [
        "https://auth.example.com/.well-known/oauth-authorization-server/realms/mcp",
        "https://auth.example.com/.well-known/openid-configuration/realms/mcp",
        "https://auth.example.com/realms/mcp/.well-known/openid-configuration",
    ]
    root = found["https://auth.example.com/.well-known/oauth-authorization-server"]
    assert root.versions == ("2025-03-26",)
    assert root.not_applicable
    assert found[list(found)[1]].kind is DocumentKind.OPENID


def _document(**changes: Any) -> dict[str, Any]:
    document = {
        "issuer": ISSUER,
        "authorization_endpoint": f"{ISSUER}/protocol/openid-connect/auth",
        "token_endpoint": f"{ISSUER}/protocol/openid-connect/token",
        "registration_endpoint": f"{ISSUER}/register",
        "code_challenge_methods_supported": ["S256"],
        "response_types_supported": ["code"],
    }
    document.update(changes)
    return {key: value for key, value in document.items() if value is not None}


def test_a_good_document_has_no_problems_and_names_its_provider() -> None:
    assert metadata_problems(_document(), issuer=ISSUER, kind=DocumentKind.OAUTH) == []
    assert detect_provider(_document()) == "keycloak"
    assert detect_provider({"authorization_endpoint": "http://h/oauth2/auth"}) == "hydra"
    assert detect_provider({}) is None


@pytest.mark.parametrize(
    ("changes", "problem"),
    [
        ({"issuer": ISSUER + "/"}, "RFC 8414 section 3.3"),
        ({"code_challenge_methods_supported": ["plain"]}, "S256"),
        ({"registration_endpoint": None}, "no registration_endpoint"),
        ({"registration_endpoint": "https://elsewhere.example/register"}, "not on the issuer's origin"),
        ({"response_types_supported": ["token"]}, "'code'"),
    ],
)
def test_document_problems_are_named(changes: dict[str, Any], problem: str) -> None:
    problems = metadata_problems(_document(**changes), issuer=ISSUER, kind=DocumentKind.OAUTH)
    assert any(problem in text for text in problems), problems


def test_the_typescript_sdk_needs_openid_fields_only_in_an_openid_document() -> None:
    fields = ("jwks_uri", "subject_types_supported")
    assert metadata_problems(_document(), issuer=ISSUER, kind=DocumentKind.OAUTH, oidc_fields=fields) == []
    assert metadata_problems(_document(), issuer=ISSUER, kind=DocumentKind.OPENID, oidc_fields=fields) == [
        "OpenID document without jwks_uri",
        "OpenID document without subject_types_supported",
    ]


# -------------------------------------------------------------------------------------------------- checks

SENT = {
    "redirect_uris": ["http://127.0.0.1:3000/cb"],
    "grant_types": ["authorization_code", "refresh_token"],
    "token_endpoint_auth_method": "none",
    "client_uri": "https://github.com/x",
    "application_type": "native",
    "scope": "mcp",
}
NO_STORE = {"Cache-Control": "no-store"}


def _answer(**changes: Any) -> dict[str, Any]:
    answer = {"client_id": "c1", **SENT, "grant_types": ["refresh_token", "authorization_code"], "scope": "openid"}
    answer.update(changes)
    return {key: value for key, value in answer.items() if value is not None}


def test_a_faithful_registration_answer_passes() -> None:
    assert checks.registration_problems(SENT, 201, NO_STORE, _answer(), auth_method="none") == []
    # display metadata may be dropped (RFC 7591 section 5), scope replaced (section 2)
    assert checks.registration_problems(SENT, 201, NO_STORE, _answer(client_uri=None), auth_method="none") == []


@pytest.mark.parametrize(
    ("answer", "problem"),
    [
        (_answer(application_type=None), "application_type is not echoed"),
        (_answer(redirect_uris=["http://127.0.0.1:3000/other"]), "redirect_uris echoed as"),
        (_answer(client_uri="https://evil.example"), "client_uri echoed as"),
        (_answer(token_endpoint_auth_method=None), "token_endpoint_auth_method is not in the answer"),
        (_answer(client_secret="s3cr3t", client_secret_expires_at=0), "client_secret was issued for 'none'"),
        (_answer(registration_access_token="t"), "must come together"),
    ],
)
def test_registration_answer_problems_are_named(answer: dict[str, Any], problem: str) -> None:
    problems = checks.registration_problems(SENT, 201, NO_STORE, answer, auth_method="none")
    assert any(problem in text for text in problems), problems
    assert all("s3cr3t" not in text for text in problems)


def test_the_rfc7591_default_method_needs_a_secret_that_expires_at_is_given_with() -> None:
    sent = {"redirect_uris": ["https://a.example/cb"]}
    method = checks.expected_auth_method(sent)
    assert method == "client_secret_basic"
    answer = {"client_id": "c", "redirect_uris": sent["redirect_uris"], "token_endpoint_auth_method": method}
    assert "no client_secret" in " ".join(checks.registration_problems(sent, 201, NO_STORE, answer, auth_method=method))
    answer["client_secret"] = "x" * 43
    assert "client_secret_expires_at missing" in " ".join(
        checks.registration_problems(sent, 201, NO_STORE, answer, auth_method=method)
    )
    answer["client_secret_expires_at"] = 0
    assert checks.registration_problems(sent, 201, {}, answer, auth_method=method) == [
        "Cache-Control None lacks no-store on an answer with credentials"
    ]


def test_a_refusal_must_carry_the_exact_code_and_a_description() -> None:
    expected = {"expected_status": 400, "expected_error": "invalid_redirect_uri"}
    good = {"error": "invalid_redirect_uri", "error_description": "redirect_uris[0]: fragment"}
    assert checks.rejection_problems(400, good, **expected) == []
    assert checks.rejection_problems(201, {"client_id": "x"}, **expected) == [
        "expected 400 invalid_redirect_uri, got 201: the client was registered"
    ]
    assert checks.rejection_problems(400, {"error": "invalid_client_metadata"}, **expected) == [
        "expected 400 invalid_redirect_uri, got 400 'invalid_client_metadata'"
    ]
    assert checks.rejection_problems(500, None, **expected) == [
        "expected 400 invalid_redirect_uri, got 500 without an RFC 7591 error JSON"
    ]
    assert checks.rejection_problems(400, {"error": "invalid_redirect_uri"}, **expected) == [
        "no error_description saying what is wrong"
    ]


def test_authorization_responses_are_checked_without_quoting_the_code() -> None:
    redirect = "http://127.0.0.1:3000/cb"
    good = f"{redirect}?code=SECRETCODE&state=s1&iss=https%3A%2F%2Fauth.example.com%2Frealms%2Fmcp"
    assert checks.authorization_response_problems(good, redirect_uri=redirect, state="s1", issuer=ISSUER) == (
        [],
        "SECRETCODE",
    )
    problems, _ = checks.authorization_response_problems(
        "http://127.0.0.1:3001/cb?code=SECRETCODE&state=s2&iss=x", redirect_uri=redirect, state="s1", issuer=ISSUER
    )
    assert len(problems) == 3
    assert all("SECRETCODE" not in problem for problem in problems)
    problems, code = checks.authorization_response_problems(
        f"{redirect}?error=invalid_scope&error_description=nope", redirect_uri=redirect, state="s1", issuer=ISSUER
    )
    assert problems == ["authorization error 'invalid_scope': nope"] and code is None


def test_token_responses() -> None:
    assert checks.token_problems(200, {"access_token": "a", "token_type": "bearer"}) == []
    assert checks.token_problems(200, {"access_token": "a", "token_type": "DPoP"}) == [
        "token_type 'DPoP', expected Bearer"
    ]
    assert checks.token_problems(401, {"error": "invalid_client"}) == ["status 401: 'invalid_client'"]


def test_cors_and_preflight() -> None:
    origin = "http://localhost:6274"
    assert checks.cors_problems({"Access-Control-Allow-Origin": "*"}, origin) == []
    assert checks.cors_problems({}, origin)
    headers = {
        "Access-Control-Allow-Origin": origin,
        "Access-Control-Allow-Methods": "POST, OPTIONS",
        "Access-Control-Allow-Headers": "Content-Type, Authorization",
    }
    assert checks.preflight_problems(204, headers, origin) == []
    assert len(checks.preflight_problems(200, {}, origin)) == 3


# --------------------------------------------------------------------------------------------------- oauth


def test_pkce_s256_is_the_base64url_sha256_of_the_verifier() -> None:
    verifier, challenge = pkce_pair()
    assert 43 <= len(verifier) <= 128
    assert challenge == base64.urlsafe_b64encode(hashlib.sha256(verifier.encode()).digest()).rstrip(b"=").decode()


def test_client_authentication_per_method() -> None:
    client: dict[str, Any] = {"client_id": "id:1", "client_secret": "p@ss word"}
    headers, form = client_authentication({**client, "token_endpoint_auth_method": "client_secret_basic"}, "t")
    assert form == {}
    assert base64.b64decode(headers["Authorization"].removeprefix("Basic ")) == b"id%3A1:p%40ss%20word"
    assert client_authentication(client, "t")[0] == headers  # RFC 7591 default when the answer names none
    _, form = client_authentication({**client, "token_endpoint_auth_method": "client_secret_post"}, "t")
    assert form == {"client_id": "id:1", "client_secret": "p@ss word"}
    assert client_authentication({"client_id": "x", "token_endpoint_auth_method": "none"}, "t") == (
        {},
        {"client_id": "x"},
    )
    with pytest.raises(ValueError, match="tls_client_auth"):
        client_authentication({"client_id": "x", "token_endpoint_auth_method": "tls_client_auth"}, "t")


def test_private_key_jwt_assertion_is_signed_for_the_token_endpoint() -> None:
    key = generate_signing_key()
    _, form = client_authentication(
        {"client_id": "c1", "token_endpoint_auth_method": "private_key_jwt"}, "https://as/token", key
    )
    assert form["client_assertion_type"] == "urn:ietf:params:oauth:client-assertion-type:jwt-bearer"
    public = RSAKey.import_key(public_jwks(key)["keys"][0])
    token = jwt.decode(form["client_assertion"], public)
    assert token.header["alg"] == "RS256"
    assert token.claims["iss"] == token.claims["sub"] == "c1"
    assert token.claims["aud"] == "https://as/token"
    assert token.claims["exp"] - token.claims["iat"] <= 300
    assert "d" not in public_jwks(key)["keys"][0]
    assert "d" in private_jwks(key)["keys"][0]


def test_loopback_ip_redirects_and_ports() -> None:
    assert is_loopback_ip_redirect("http://127.0.0.1/")
    assert is_loopback_ip_redirect("http://[::1]:3000/cb")
    assert not is_loopback_ip_redirect("http://localhost:3000/cb")
    assert not is_loopback_ip_redirect("https://127.0.0.1/cb")
    assert with_port("http://127.0.0.1/", 50000) == "http://127.0.0.1:50000/"
    assert with_port("http://[::1]:3000/cb?x=1", 4000) == "http://[::1]:4000/cb?x=1"


# -------------------------------------------------------------------------------------------------- report


def test_expected_failures_are_strict() -> None:
    assert _expect(Cell(Outcome.FAIL, "no refresh_token"), "Hydra needs offline").outcome is Outcome.XFAIL
    assert _expect(Cell(Outcome.PASS), "Hydra needs offline").outcome is Outcome.XPASS
    assert _expect(Cell(Outcome.FAIL, "x"), None).outcome is Outcome.FAIL
    assert _expect(Cell(Outcome.NA, "x"), "r").outcome is Outcome.NA


def _report(*cells: tuple[str, str, Cell]) -> Report:
    report = Report(issuer=ISSUER, provider="keycloak", login=None, sections=SECTIONS, seconds=1.5)
    for name, step, cell in cells:
        try:
            report.row(name).cells[step] = cell
        except KeyError:
            report.rows.append(Row("clients", name, name, {step: cell}))
    return report


def test_the_run_fails_on_fail_and_xpass_only() -> None:
    assert not _report(("a", "token", Cell(Outcome.XFAIL, "r")), ("a", "refresh", Cell(Outcome.NA, "r"))).failed
    assert _report(("a", "token", Cell(Outcome.XPASS, "r"))).failed
    assert _report(("a", "token", Cell(Outcome.FAIL, "r"))).failed


def test_renderings_carry_every_cell() -> None:
    report = _report(
        ("cursor", "register", Cell(Outcome.PASS)),
        ("cursor", "token", Cell(Outcome.FAIL, "status 401: 'invalid_client'")),
        ("vscode", "refresh", Cell(Outcome.XFAIL, "no offline scope")),
    )
    text = render_text(report)
    assert "cursor" in text and "FAIL" in text
    assert "cursor / token: FAIL: status 401: 'invalid_client'" in text
    assert "login: none (discovery and registration steps only" in text
    assert text.rstrip().endswith("FAILED: 1 pass, 1 FAIL, 1 xfail in 1.5 s")
    data = to_json(report)
    assert data["passed"] is False
    clients = next(section for section in data["sections"] if section["name"] == "clients")
    assert clients["rows"][0]["cells"]["token"]["outcome"] == "FAIL"
    suites = ET.fromstring(to_junit(report))  # noqa: S314 (our own output)
    suite = next(suite for suite in suites if suite.get("name", "").startswith("clients"))
    assert (suite.get("tests"), suite.get("failures"), suite.get("skipped")) == ("3", "1", "1")


# ----------------------------------------------------------------------------------------------------- cli


def test_the_cli_knows_the_subcommand_and_refuses_a_login_without_credentials(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("DCR_CONFORMANCE_PASSWORD", raising=False)
    args = build_parser().parse_args(["conformance", "--issuer", ISSUER, "--junit", "out.xml"])
    assert args.issuer == ISSUER and args.concurrency == 1
    assert main(["conformance", "--issuer", ISSUER, "--login", "keycloak", "--username", "alice"]) == 2
    assert "--password" in capsys.readouterr().err
    assert main(["conformance", "--issuer", ISSUER, "--login", "hydra-admin"]) == 2
    assert main(["conformance", "--issuer", ISSUER, "--profile", "no-such-client"]) == 2
    assert "unknown profiles" in capsys.readouterr().err


def test_deployment_expected_failures_are_parsed_strictly() -> None:
    assert parse_expected_failures(["claude-code:token=realm users have no offline_access role"]) == {
        "claude-code": {"token": "realm users have no offline_access role"}
    }
    for bad in ("claude-code=reason", "claude-code:tokn=reason", "claude-code:token="):
        with pytest.raises(ValueError, match="PROFILE:STEP=REASON"):
            parse_expected_failures([bad])


# ------------------------------------------------------------- rate limits and clean-up, against the real app


def test_retry_after_is_read_as_seconds_or_an_http_date() -> None:
    assert retry_after_seconds({"Retry-After": "41"}) == 41.0
    assert retry_after_seconds({"retry-after": " 7 "}) == 7.0
    assert retry_after_seconds({"Retry-After": "Wed, 21 Oct 2026 07:28:10 GMT"}, now=1792567680.0) == 10.0
    assert retry_after_seconds({"Retry-After": "Wed, 21 Oct 2026 07:28:10 GMT"}, now=1792567700.0) == 0.0
    assert retry_after_seconds({}) is None
    assert retry_after_seconds({"Retry-After": "soon"}) is None
    assert retry_after_seconds({"Retry-After": "-5"}) is None


def test_pauses_overlap_and_stay_within_max_wait() -> None:
    told: list[str] = []
    throttle = Throttle(10.0, told.append)
    assert throttle.limited("POST", "http://as/register", 4.0, 1)
    assert throttle.limited("POST", "http://as/register", 4.0, 1)  # the same pause, seen by a concurrent request
    assert throttle.paused < 4.5
    assert not throttle.limited("POST", "http://as/register", 30.0, 1), "past --max-wait: not retried"
    assert [pause.retried for pause in throttle.pauses] == [True, True, False]
    assert "pausing 4 s (Retry-After)" in told[0]
    assert "not retried (Retry-After 30 s" in told[-1]
    assert not Throttle(0.0).limited("GET", "http://as/x", 1.0, 1), "--max-wait 0 never waits"
    said: list[str] = []
    backing_off = Throttle(10.0, said.append)
    assert backing_off.limited("GET", "http://as/x", None, 1)  # a 429 without Retry-After: 1 s, then doubling
    assert "pausing 1 s (no Retry-After: back-off)" in said[0]
    assert not backing_off.limited("GET", "http://as/x", None, 8), "at most eight sends of one request"


PROBE_PORT_DOCUMENT = {
    "response_types_supported": ["code"],
    "grant_types_supported": ["authorization_code", "refresh_token"],
    "token_endpoint_auth_methods_supported": ["none", "client_secret_basic", "client_secret_post"],
    "code_challenge_methods_supported": ["S256"],
    "subject_types_supported": ["public"],
    "id_token_signing_alg_values_supported": ["RS256"],
    "scopes_supported": ["openid"],
}
SMALL_RUN = ("cursor", "python-sdk", "claude-ai", "javascript-scheme", "userinfo", "password-grant", "fragment")
"""Three registrations that create a client and four refused ones: more than the limit of the gateway below."""


@dataclass
class LimitedGateway:
    """The real gateway app (memory adapter) on a loopback port, with a per-source limit of 3 per 2 s."""

    issuer: str
    adapter: MemoryAdapter


@pytest.fixture
async def limited_gateway() -> AsyncIterator[LimitedGateway]:
    port = free_port()
    public = f"http://127.0.0.1:{port}"
    issuer = f"{public}/realms/mcp"
    upstream = web.Application()

    async def metadata(_: web.Request) -> web.Response:
        return web.json_response(
            {
                "issuer": issuer,
                "authorization_endpoint": f"{issuer}/protocol/openid-connect/auth",
                "token_endpoint": f"{issuer}/protocol/openid-connect/token",
                "jwks_uri": f"{issuer}/protocol/openid-connect/certs",
                **PROBE_PORT_DOCUMENT,
            }
        )

    upstream.router.add_get("/realms/mcp/.well-known/openid-configuration", metadata)
    upstream_server = TestServer(upstream, host="127.0.0.1")
    await upstream_server.start_server()
    upstream_url = str(upstream_server.make_url("")).rstrip("/")
    settings = Settings(
        public_url=public,
        provider="memory",
        provider_url=upstream_url,
        limits={"per_source_limit": 3, "per_source_window_seconds": 2},
    )
    adapter = MemoryAdapter(public_url=upstream_url, issuer_path="/realms/mcp")
    gateway = TestServer(create_app(settings, adapter=adapter), host="127.0.0.1", port=port)
    await gateway.start_server()
    try:
        yield LimitedGateway(issuer, adapter)
    finally:
        await gateway.close()
        await upstream_server.close()


def cells_with(report: Report, text: str) -> list[str]:
    return [
        f"{row.name}/{column}: {cell.detail}"
        for row in report.rows
        for column, cell in row.cells.items()
        if text in cell.detail
    ]


async def test_the_suite_waits_out_429s_and_deletes_every_client_it_registered(
    limited_gateway: LimitedGateway,
) -> None:
    told: list[str] = []
    report = await run_suite(
        SuiteConfig(issuer=limited_gateway.issuer, profiles=SMALL_RUN, max_wait=30, progress=told.append)
    )
    assert cells_with(report, "429") == [], "every 429 was waited out"
    assert not report.failed, report.failures()
    retried = [pause for pause in report.pauses if pause.retried]
    assert retried and report.paused_seconds > 0
    assert any("pausing" in line and "Retry-After" in line for line in told)
    assert any(note.startswith("rate limits: a 429 is sent again after its Retry-After") for note in report.notes)
    assert any("the run paused" in note for note in report.notes)

    # RFC 7592 DELETE of each client it registered: the provider holds none of them any more
    assert sorted(client.registered_by for client in report.created_clients) == ["claude-ai", "cursor", "python-sdk"]
    assert all(client.deleted for client in report.created_clients)
    assert limited_gateway.adapter.clients["default"] == {}
    for client in report.created_clients:
        assert report.cell(client.client_id, "delete", "cleanup").outcome is Outcome.PASS

    data = to_json(report)
    assert {entry["client_id"] for entry in data["created_clients"]} == {c.client_id for c in report.created_clients}
    assert all(entry["deleted"] is True for entry in data["created_clients"])
    assert data["rate_limits"]["paused_seconds"] > 0 and data["rate_limits"]["max_wait_seconds"] == 30
    junit = to_junit(report)
    for client in report.created_clients:
        assert f'name="created_client {client.client_id}" value="deleted"' in junit
    text = render_text(report)
    assert "clients: this run registered 3 and deleted 3 (RFC 7592 DELETE)" in text


async def test_without_waiting_the_limited_cells_fail_with_429(limited_gateway: LimitedGateway) -> None:
    report = await run_suite(SuiteConfig(issuer=limited_gateway.issuer, profiles=SMALL_RUN, max_wait=0))
    assert report.failed
    assert cells_with(report, "429"), "the gateway's limit shows"
    assert any("not: waiting would pass --max-wait" in note for note in report.notes)
    assert all(client.deleted or "429" in client.detail for client in report.created_clients)


async def test_keep_clients_keeps_them_and_says_so(limited_gateway: LimitedGateway) -> None:
    report = await run_suite(SuiteConfig(issuer=limited_gateway.issuer, profiles=("cursor",), keep_clients=True))
    (kept,) = report.created_clients
    assert not kept.deleted and kept.detail == "kept (--keep-clients)"
    assert list(limited_gateway.adapter.clients["default"]) == [kept.client_id]
    assert to_json(report)["created_clients"][0]["deleted"] is False
    assert f"left behind: {kept.client_id}" in render_text(report)


async def test_a_run_that_stops_half_way_still_deletes_what_it_registered(limited_gateway: LimitedGateway) -> None:
    async def broken_login(session: aiohttp.ClientSession, url: str) -> str:
        raise RuntimeError("the login driver crashed")

    config = SuiteConfig(
        issuer=limited_gateway.issuer,
        profiles=("cursor", "python-sdk"),
        login=LoginDriver("broken", broken_login),
        max_wait=30,
    )
    with pytest.raises(RuntimeError, match="crashed"):
        await run_suite(config)
    assert limited_gateway.adapter.clients["default"] == {}, "registered clients are deleted on the way out"


def test_the_cli_has_max_wait_and_keep_clients(capsys: pytest.CaptureFixture[str]) -> None:
    args = build_parser().parse_args(["conformance", "--issuer", ISSUER])
    assert args.max_wait == DEFAULT_MAX_WAIT == 180 and args.keep_clients is False
    args = build_parser().parse_args(["conformance", "--issuer", ISSUER, "--max-wait", "0", "--keep-clients"])
    assert args.max_wait == 0 and args.keep_clients is True
    with pytest.raises(SystemExit):
        build_parser().parse_args(["conformance", "--issuer", ISSUER, "--max-wait", "-1"])
    with pytest.raises(SystemExit):
        build_parser().parse_args(["conformance", "--issuer", ISSUER, "--help"])
    assert "Retry-After" in capsys.readouterr().out


# ------------------------------------------------------------------- issue 10: CIMD, RFC 8707, RFC 9207 checks


def test_cimd_and_iss_advertisements() -> None:
    good = {
        "client_id_metadata_document_supported": True,
        "token_endpoint_auth_methods_supported": ["client_secret_basic", "none"],
        "authorization_response_iss_parameter_supported": True,
    }
    assert checks.cimd_advertisement_problems(good) == []
    assert checks.iss_advertisement_problems(good) == []
    problems = checks.cimd_advertisement_problems({"token_endpoint_auth_methods_supported": ["client_secret_basic"]})
    assert len(problems) == 2
    assert "client_id_metadata_document_supported is not true" in problems[0]
    assert "'none'" in problems[1]
    assert checks.cimd_advertisement_problems({**good, "client_id_metadata_document_supported": "true"})
    assert "authorization_response_iss_parameter_supported" in checks.iss_advertisement_problems({})[0]


def test_iss_must_be_present_and_equal_on_success_and_error_redirects() -> None:
    issuer = "http://127.0.0.1:8080"
    assert checks.iss_problems(f"http://127.0.0.1:5000/cb?code=c&state=s&iss={issuer}", issuer) == []
    assert "no iss" in checks.iss_problems("http://127.0.0.1:5000/cb?code=c&state=s", issuer)[0]
    assert "is not the issuer" in checks.iss_problems("http://x/cb?code=c&iss=http://evil", issuer)[0]
    ok = f"http://127.0.0.1:5000/cb?error=invalid_target&state=s&iss={issuer}"
    kwargs = {"redirect_uri": "http://127.0.0.1:5000/cb", "state": "s", "issuer": issuer}
    assert checks.error_redirect_problems(302, ok, expected_error="invalid_target", **kwargs) == []
    assert (
        "a code"
        in checks.error_redirect_problems(
            302, "http://127.0.0.1:5000/cb?code=c&state=s&iss=" + issuer, expected_error="invalid_target", **kwargs
        )[0]
    )
    assert "status 400" in checks.error_redirect_problems(400, None, expected_error="invalid_target", **kwargs)[0]
    assert (
        "not to the redirect_uri"
        in checks.error_redirect_problems(
            302, "http://127.0.0.1:4444/login?x=1", expected_error="invalid_target", **kwargs
        )[0]
    )


def test_a_refused_document_is_a_400_json_error_and_never_a_redirect() -> None:
    body = {"error": "invalid_client", "error_description": "the document's client_id is not its URL"}
    assert checks.refused_request_problems(400, {}, body, expected_error="invalid_client") == []
    assert (
        "redirected"
        in checks.refused_request_problems(
            302, {"Location": "https://attacker.example.com/cb?error=x"}, None, expected_error="invalid_request"
        )[0]
    )
    assert (
        "got 400 'invalid_request'"
        in checks.refused_request_problems(
            400, {}, {"error": "invalid_request", "error_description": "x"}, expected_error="invalid_client"
        )[0]
    )
    assert (
        "no error_description"
        in checks.refused_request_problems(400, {}, {"error": "invalid_client"}, expected_error="invalid_client")[0]
    )


def test_the_audience_of_a_jwt_access_token() -> None:
    key = generate_signing_key()
    token = jwt.encode({"alg": "RS256"}, {"aud": ["account", "http://127.0.0.1:8000/mcp"], "sub": "a"}, key)
    claims = checks.jwt_claims(token)
    assert claims is not None and claims["sub"] == "a"
    assert checks.audience_problems(claims["aud"], "http://127.0.0.1:8000/mcp") == []
    assert checks.audience_problems("http://127.0.0.1:8000/mcp", "http://127.0.0.1:8000/mcp") == []
    assert "does not name the resource" in checks.audience_problems(["account"], "http://127.0.0.1:8000/mcp")[0]
    assert checks.jwt_claims("ory_at_opaque-token") is None
    assert checks.jwt_claims("a.%%%.c") is None


def test_the_suite_writes_documents_with_their_own_url_as_client_id(tmp_path: Any) -> None:
    hosting = DocumentHosting(base_url="https://localhost:9443", directory=tmp_path)
    url = hosting.publish("claude-code-cimd", {"client_id": "https://claude.ai/x", "client_name": "Claude Code"})
    assert url == "https://localhost:9443/claude-code-cimd.json"
    assert json.loads((tmp_path / "claude-code-cimd.json").read_text())["client_id"] == url
    with pytest.raises(ValueError, match="no local document URL"):
        hosting.url("../escape")
    assert not DocumentHosting(published=True).local


def test_every_refused_document_case_of_the_issue_is_prepared(tmp_path: Any) -> None:
    """Issue 10 item 5: http URL, client_id mismatch, redirect not in the document, private address, a redirect on
    fetch, oversized, not JSON, shared-secret method (and a missing required field)."""
    hosting = DocumentHosting(base_url="https://localhost:9443", directory=tmp_path)
    redirect = "http://127.0.0.1:50000/callback"
    ids = {case.name: refused_client_id(case, hosting, redirect) for case in REFUSED_DOCUMENTS}
    assert ids["cimd-http-url"] == "http://localhost:9443/cimd-http-url.json"
    assert ids["cimd-private-address"].startswith("https://10.1.2.3/")
    assert ids["cimd-loopback-address"].startswith("https://127.0.0.2:9443/")
    served = {name: (tmp_path / f"{name}.json") for name in ids}
    assert json.loads(served["cimd-client-id-mismatch"].read_text())["client_id"] != ids["cimd-client-id-mismatch"]
    assert json.loads(served["cimd-redirect-not-in-document"].read_text())["redirect_uris"] == [redirect]
    assert (tmp_path / "cimd-redirect-on-fetch.json.redirect").read_text().strip() == (
        "https://localhost:9443/cimd-redirect-target.json"
    )
    assert not served["cimd-redirect-on-fetch"].exists()
    oversized = served["cimd-oversized"].read_bytes()
    assert len(oversized) > MAX_DOCUMENT_BYTES and json.loads(oversized)["client_id"] == ids["cimd-oversized"]
    with pytest.raises(ValueError):
        json.loads(served["cimd-not-json"].read_text())
    shared = json.loads(served["cimd-shared-secret"].read_text())
    assert shared["token_endpoint_auth_method"] == "client_secret_basic"
    assert "redirect_uris" not in json.loads(served["cimd-missing-redirect-uris"].read_text())
    assert {case.error for case in REFUSED_DOCUMENTS} == {"invalid_client", "invalid_request"}
    assert [case.name for case in REFUSED_DOCUMENTS if case.error == "invalid_request"] == [
        "cimd-redirect-not-in-document"
    ]


def test_warnings_and_revisions_reach_every_rendering() -> None:
    report = Report(issuer=ISSUER, provider="keycloak", login=None, sections=SECTIONS)
    report.rows.append(
        Row(
            "discovery",
            "https://auth.example.com/.well-known/oauth-authorization-server/realms/mcp",
            "oauth",
            {"metadata": Cell(Outcome.PASS), "cimd": Cell(Outcome.WARNING, "client_id_metadata_document_supported")},
            note="2025-06-18, 2025-11-25, 2026-07-28",
            revisions=("2025-06-18", "2025-11-25", "2026-07-28"),
        )
    )
    assert not report.failed  # a warning does not fail the run
    text = render_text(report)
    assert "WARNING" in text and "2025-11-25" in text
    row = to_json(report)["sections"][0]["rows"][0]
    assert row["revisions"] == ["2025-06-18", "2025-11-25", "2026-07-28"]
    assert row["cells"]["cimd"]["outcome"] == "WARNING"
    suites = ET.fromstring(to_junit(report))  # noqa: S314 (our own output)
    cases = [case for suite in suites for case in suite.iter("testcase")]
    assert all(case.find("properties/property[@name='mcp_revisions']") is not None for case in cases), (
        "every discovery cell names its MCP revisions"
    )
    warned = next(case for case in cases if case.get("name") == "cimd")
    assert warned.find("failure") is None and "WARNING" in (warned.findtext("system-err") or "")


def test_the_cli_has_the_cimd_and_resource_options() -> None:
    args = build_parser().parse_args(
        [
            "conformance",
            "--issuer",
            ISSUER,
            "--cimd-serve-on",
            "127.0.0.1:9443",
            "--cimd-ca-dir",
            "ca-dir",
            "--introspection-url",
            "http://127.0.0.1:4445/admin/oauth2/introspect",
        ]
    )
    assert args.cimd_serve_on == ("127.0.0.1", 9443)
    assert build_parser().parse_args(["conformance", "--issuer", ISSUER, "--cimd-published"]).cimd_published
    with pytest.raises(SystemExit):
        build_parser().parse_args(["conformance", "--issuer", ISSUER, "--cimd-serve-on", "no-port"])


def test_a_cimd_client_needs_no_registration_endpoint() -> None:
    document = {
        "issuer": ISSUER,
        "authorization_endpoint": f"{ISSUER}/auth",
        "token_endpoint": f"{ISSUER}/token",
        "code_challenge_methods_supported": ["S256"],
        "response_types_supported": ["code"],
    }
    assert metadata_problems(document, issuer=ISSUER, kind=DocumentKind.OAUTH) == ["no registration_endpoint"]
    assert metadata_problems(document, issuer=ISSUER, kind=DocumentKind.OAUTH, registers=False) == []


async def test_published_documents_are_fetched_and_checked_at_their_own_urls(tmp_path: Any) -> None:
    """``--cimd-published``: the suite reads each profile's document at its published URL (here an https host with a
    development CA the run's session trusts) and checks that its ``client_id`` is that URL; a client that changed
    or removed its document shows up in the ``document`` cell."""
    certificate, key = server_certificate(tmp_path / "tls", ["localhost", "127.0.0.1"])
    host = await start_host(
        tmp_path / "docs", host="127.0.0.1", port=free_port(), certificate=certificate, key=key, public_host="localhost"
    )
    try:
        urls = {name: f"{host.base_url}/{name}.json" for name in ("good", "moved", "gone")}
        served = {"good": urls["good"], "moved": "https://elsewhere.example/moved.json"}
        for name, client_id in served.items():
            document = {"client_id": client_id, "client_name": name, "redirect_uris": ["http://127.0.0.1/cb"]}
            (tmp_path / "docs" / f"{name}.json").write_text(json.dumps(document))
        profiles = tmp_path / "profiles"
        profiles.mkdir()
        for name, url in urls.items():
            document = {"client_id": url, "client_name": name, "redirect_uris": ["http://127.0.0.1/cb"]}
            profile = {
                "name": f"{name}-cimd",
                "source": "test",
                "cimd": {"published_url": url, "document": document},
                "flow": {"redirect_uri": "http://127.0.0.1:5000/cb", "scope": None},
            }
            (profiles / f"{name}.json").write_text(json.dumps(profile))
        context = ssl.create_default_context(cafile=str(tmp_path / "tls" / "ca.pem"))
        async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(ssl=context)) as session:
            report = await run_suite(
                SuiteConfig(
                    issuer=f"http://127.0.0.1:{free_port()}",  # nothing listens: only the documents are looked at
                    profile_dir=profiles,
                    cimd_published=True,
                    max_wait=0,
                ),
                session,
            )
    finally:
        await host.close()
    assert report.cell("good-cimd", "document").outcome is Outcome.PASS
    assert report.cell("good-cimd", "document").detail == f"client_id {urls['good']}"
    assert (
        "its client_id 'https://elsewhere.example/moved.json' is not its URL"
        in report.cell("moved-cimd", "document").detail
    )
    assert f"{urls['gone']} answered 404" in report.cell("gone-cimd", "document").detail
    assert "the clients' published documents" in "\n".join(report.notes)
    # without a login driver and a discovery document nothing else runs, and it says why
    assert "no login driver" in report.cell("good-cimd", "authorize").detail
    assert report.cell("cimd-oversized", "refused").outcome is Outcome.BLOCKED
