"""The Client Identifier URL grammar (draft-ietf-oauth-client-id-metadata-document section 3) and the host policy
checked before any network I/O, plus :class:`gateway.cimd.settings.CimdSettings`."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from gateway.cimd.errors import DocumentRefused
from gateway.cimd.settings import CimdSettings
from gateway.cimd.url import check_client_id_url, looks_like_url

DEFAULT = CimdSettings()


def refused(url: str, settings: CimdSettings = DEFAULT) -> DocumentRefused:
    with pytest.raises(DocumentRefused) as info:
        check_client_id_url(url, settings)
    return info.value


@pytest.mark.parametrize(
    "client_id",
    [
        "https://vscode.dev/oauth/client-metadata.json",
        "HTTPS://example.com/x",
        "http://example.com/x",
        "Http://127.0.0.1/x",
        "https://",
    ],
)
def test_an_id_beginning_with_an_http_scheme_looks_like_a_url(client_id: str) -> None:
    assert looks_like_url(client_id)


@pytest.mark.parametrize(
    "client_id",
    ["3f2c9a1e-7d1b-4a51-8d2e-0b6c2f9a1d33", "my-client", "https:/x", "urn:example:x", " https://x/y", "httpsx://a/b"],
)
def test_dcr_ids_do_not_look_like_urls(client_id: str) -> None:
    assert not looks_like_url(client_id)


@pytest.mark.parametrize(
    "url",
    [
        "https://vscode.dev/oauth/client-metadata.json",
        "https://claude.ai/oauth/claude-code-client-metadata",
        "https://chatgpt.com/oauth/client.json",
        "https://example.com:8443/a/b/c.json",
        "https://example.com/a/",
        "https://example.com/a..b/c.d",
        "https://example.com/%7Euser/client",
    ],
)
def test_valid_client_id_urls_pass(url: str) -> None:
    check_client_id_url(url, DEFAULT)


def test_http_is_refused_naming_it() -> None:
    error = refused("http://example.com/client.json")
    assert error.stage == "url"
    assert "https" in error.reason and "http" in error.reason


@pytest.mark.parametrize(
    ("url", "words"),
    [
        ("ftp://example.com/x", "https"),
        ("https:example.com/x", "https"),
        ("https:///x", "host"),
        ("https://example.com", "path"),
        ("https://example.com/", "path"),
        ("https://user@example.com/x", "userinfo"),
        ("https://user:pw@example.com/x", "userinfo"),
        ("https://example.com/x#", "fragment"),
        ("https://example.com/x#frag", "fragment"),
        ("https://example.com/./x", "dot"),
        ("https://example.com/a/../x", "dot"),
        ("https://example.com/a/..", "dot"),
        ("https://example.com/a/.", "dot"),
        ("https://example.com/%2e/x", "dot"),
        ("https://example.com/%2E%2e/x", "dot"),
        ("https://example.com/.%2E/x", "dot"),
        ("https://example.com/a\\b", "backslash"),
        ("https://example.com/a b", "whitespace"),
        ("https://example.com/a\tb", "whitespace"),
        ("https://example.com/a\x00b", "control"),
        ("https://example.com/a\x7fb", "control"),
        ("https://exämple.com/x", "ASCII"),
        ("https://example.com/é", "ASCII"),
        ("https://example.com/x?a=b", "query"),
        ("https://example.com/x?", "query"),
        ("https://example.com:99999/x", "port"),
        ("https://example.com:abc/x", "port"),
        ("https://exa%6dple.com/x", "host"),
        ("https://exa_mple..com/x", "host"),
    ],
)
def test_grammar_refusals_name_the_rule(url: str, words: str) -> None:
    error = refused(url)
    assert error.stage == "url"
    assert words.lower() in error.reason.lower(), error.reason
    assert "\n" not in error.reason


def test_length_limit() -> None:
    ok = "https://example.com/" + "a" * (2048 - len("https://example.com/"))
    check_client_id_url(ok, DEFAULT)
    error = refused(ok + "a")
    assert "2048" in error.reason


def test_query_allowed_when_configured() -> None:
    check_client_id_url("https://example.com/x?tenant=a", CimdSettings(allow_query=True))


def test_the_reason_never_echoes_control_characters() -> None:
    error = refused("https://example.com/a\r\nSet-Cookie: x")
    assert "\r" not in error.reason and "\n" not in error.reason


@pytest.mark.parametrize(
    "url",
    [
        "https://127.0.0.1/x",
        "https://10.1.2.3/x",
        "https://169.254.169.254/latest/meta-data",
        "https://100.64.0.1/x",
        "https://[::1]/x",
        "https://[fd00::1]/x",
        "https://[fe80::1]/x",
        "https://[::ffff:127.0.0.1]/x",
        "https://[64:ff9b::a00:1]/x",
        "https://[2002:a00:1::1]/x",
        "https://0.0.0.0/x",
        "https://localhost/x",
        "https://app.localhost/x",
        "https://intranet/x",
    ],
)
def test_special_use_literals_and_local_names_are_refused(url: str) -> None:
    error = refused(url)
    assert error.stage == "policy"
    assert "public" in error.reason


def test_a_development_origin_may_be_local() -> None:
    settings = CimdSettings(development_origins=["https://localhost:8443", "https://127.0.0.1:9443"])
    check_client_id_url("https://localhost:8443/client.json", settings)
    check_client_id_url("https://127.0.0.1:9443/client.json", settings)
    assert refused("https://localhost:8444/client.json", settings).stage == "policy"
    assert refused("https://localhost/client.json", settings).stage == "policy"


def test_public_ip_literal_passes() -> None:
    check_client_id_url("https://8.8.8.8/client.json", DEFAULT)


def test_allowed_hosts_exact_and_wildcard() -> None:
    settings = CimdSettings(allowed_hosts=["claude.ai", "*.vscode.dev"])
    check_client_id_url("https://claude.ai/oauth/x", settings)
    check_client_id_url("https://insiders.vscode.dev/oauth/x", settings)
    for url in [
        "https://vscode.dev/oauth/x",  # *.suffix is subdomains only
        "https://evil-claude.ai/x",
        "https://claude.ai.evil.com/x",
        "https://chatgpt.com/x",
    ]:
        error = refused(url, settings)
        assert error.stage == "policy"
        assert "not allowed" in error.reason


def test_denied_hosts_win_over_allowed() -> None:
    settings = CimdSettings(allowed_hosts=["*.example.com"], denied_hosts=["bad.example.com", "*.worse.example.com"])
    check_client_id_url("https://good.example.com/x", settings)
    assert refused("https://bad.example.com/x", settings).stage == "policy"
    assert refused("https://a.worse.example.com/x", settings).stage == "policy"
    assert "denied" in refused("https://BAD.example.com/x", settings).reason


def test_host_lists_compare_case_insensitively() -> None:
    check_client_id_url("https://Claude.AI/oauth/x", CimdSettings(allowed_hosts=["claude.ai"]))


# ---------------------------------------------------------------------------------------------- settings


def test_settings_defaults() -> None:
    settings = CimdSettings()
    assert settings.enabled is True
    assert settings.max_bytes == 5120
    assert settings.min_cache_seconds == 300
    assert settings.max_cache_seconds == 86400
    assert settings.allow_query is False


@pytest.mark.parametrize(
    "origin",
    [
        "http://localhost:8443",
        "https://localhost:8443/path",
        "https://localhost:8443/",
        "https://user@localhost",
        "https://localhost?x",
        "https://localhost#x",
        "localhost:8443",
        "https://",
    ],
)
def test_development_origins_must_be_https_origins(origin: str) -> None:
    with pytest.raises(ValidationError):
        CimdSettings(development_origins=[origin])


@pytest.mark.parametrize("entry", ["*", "*.", "a.*.com", "https://x.com", "x.com/path", "exa mple.com", "*example.com"])
def test_host_entries_are_hosts_or_wildcard_suffixes(entry: str) -> None:
    with pytest.raises(ValidationError):
        CimdSettings(allowed_hosts=[entry])
    with pytest.raises(ValidationError):
        CimdSettings(denied_hosts=[entry])


def test_unknown_settings_keys_are_refused() -> None:
    with pytest.raises(ValidationError):
        CimdSettings.model_validate({"max_byte": 10})


def test_limits_are_checked() -> None:
    with pytest.raises(ValidationError):
        CimdSettings(max_bytes=100)
    with pytest.raises(ValidationError):
        CimdSettings(min_cache_seconds=600, max_cache_seconds=60)
    with pytest.raises(ValidationError):
        CimdSettings(timeout_seconds=0)


async def test_the_connector_resolver_never_answers_outside_a_fetch() -> None:
    """The fetcher's connector resolves only the host the current fetch checked (no DNS of its own)."""
    from gateway.cimd.fetch import _PinnedResolver

    with pytest.raises(OSError, match="not resolved and checked"):
        await _PinnedResolver().resolve("example.com", 443)


@pytest.mark.parametrize("url", ["https://app.example:0/client.json", "https://app.example:/client.json"])
def test_port_zero_and_an_empty_port_are_refused(url: str) -> None:
    with pytest.raises(DocumentRefused, match="invalid host or port"):
        check_client_id_url(url, CimdSettings())
