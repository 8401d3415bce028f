"""CORS for browser MCP clients: allowed origins, exposed headers, preflights, never credentials."""

from __future__ import annotations

import pytest
from aiohttp import web
from aiohttp.test_utils import make_mocked_request

from gateway.cors import CorsPolicy

INSPECTOR = "http://localhost:6274"
ANY = CorsPolicy(("*",))
LISTED = CorsPolicy(("http://LOCALHOST:6274/", "https://app.example"))


def _request(method: str = "GET", **headers: str) -> web.Request:
    return make_mocked_request(method, "/register", headers={k.replace("_", "-"): v for k, v in headers.items()})


def test_any_origin_gets_a_star_and_needs_no_vary() -> None:
    for origin in (INSPECTOR, "null", None):
        headers = ANY.headers_for(origin)
        assert headers["Access-Control-Allow-Origin"] == "*"
        assert "Vary" not in headers


def test_exposed_headers_let_scripts_read_etag_retry_after_and_challenges() -> None:
    exposed = {name.strip() for name in ANY.headers_for(INSPECTOR)["Access-Control-Expose-Headers"].split(",")}
    assert {"ETag", "Retry-After", "WWW-Authenticate"} <= exposed


def test_listed_origin_is_echoed_with_vary() -> None:
    headers = LISTED.headers_for(INSPECTOR)
    assert headers["Access-Control-Allow-Origin"] == INSPECTOR
    assert headers["Vary"] == "Origin"


@pytest.mark.parametrize(
    "origin", ["https://evil.example", "http://localhost:6275", "null", "https://app.example.evil"]
)
def test_unlisted_origin_gets_no_cors_headers_but_vary(origin: str) -> None:
    assert LISTED.headers_for(origin) == {"Vary": "Origin"}


def test_request_without_origin_gets_only_vary() -> None:
    assert LISTED.response_headers(_request()) == {"Vary": "Origin"}


def test_credentials_are_never_allowed() -> None:
    for policy in (ANY, LISTED):
        assert "Access-Control-Allow-Credentials" not in policy.headers_for(INSPECTOR)
        preflight = policy.preflight(
            _request("OPTIONS", Origin=INSPECTOR, Access_Control_Request_Method="POST"), methods=("POST",)
        )
        assert "Access-Control-Allow-Credentials" not in preflight.headers


def test_apply_merges_vary_with_what_the_response_has() -> None:
    response = web.Response(headers={"Vary": "Accept-Encoding"})
    LISTED.apply(_request(Origin=INSPECTOR), response)
    assert response.headers["Vary"] == "Accept-Encoding, Origin"
    assert response.headers["Access-Control-Allow-Origin"] == INSPECTOR


def test_preflight_for_registration_allows_post_with_json_and_bearer_token() -> None:
    response = ANY.preflight(
        _request(
            "OPTIONS",
            Origin=INSPECTOR,
            Access_Control_Request_Method="POST",
            Access_Control_Request_Headers="content-type,authorization",
        ),
        methods=("POST",),
    )
    assert response.status == 204
    assert response.headers["Access-Control-Allow-Origin"] == "*"
    assert response.headers["Access-Control-Allow-Methods"] == "POST, OPTIONS"
    allowed = {name.strip().lower() for name in response.headers["Access-Control-Allow-Headers"].split(",")}
    assert {"authorization", "content-type", "mcp-protocol-version"} <= allowed
    assert response.headers["Access-Control-Max-Age"] == "600"
    assert response.headers["Allow"] == "POST, OPTIONS"


def test_preflight_from_unlisted_origin_is_answered_without_permission() -> None:
    response = LISTED.preflight(
        _request("OPTIONS", Origin="https://evil.example", Access_Control_Request_Method="POST"), methods=("POST",)
    )
    assert response.status == 204
    assert not [name for name in response.headers if name.lower().startswith("access-control-")]
    assert response.headers["Vary"] == "Origin"


def test_plain_options_gets_allow_only() -> None:
    response = ANY.preflight(_request("OPTIONS"), methods=("GET", "HEAD"))
    assert response.status == 204
    assert response.headers["Allow"] == "GET, HEAD, OPTIONS"
    assert "Access-Control-Allow-Methods" not in response.headers


def test_max_age_and_headers_are_configurable() -> None:
    policy = CorsPolicy(("*",), allowed_headers=("X-Custom",), max_age=5)
    response = policy.preflight(
        _request("OPTIONS", Origin=INSPECTOR, Access_Control_Request_Method="GET"), methods=("GET",)
    )
    assert response.headers["Access-Control-Allow-Headers"] == "X-Custom"
    assert response.headers["Access-Control-Max-Age"] == "5"
