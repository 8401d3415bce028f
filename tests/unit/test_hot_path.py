"""Structural properties of the registration and discovery hot paths (issue 12): work done once per settings or
per document, not once per request. Speed itself is measured in bench/, not here; these tests count work.

Driven through the real app (:func:`gateway.app.create_app`) with the in-memory adapter, in front of a fake
upstream serving the discovery document (tests/unit/gateway_factory.py).
"""

from __future__ import annotations

import asyncio
import io
import json
import sys
import time
from collections.abc import Awaitable, Callable
from typing import Any

import pytest
import structlog
from aiohttp import ClientResponse
from aiohttp.test_utils import TestClient
from gateway_factory import ISSUER, ISSUER_PATH, REGISTER, Gateways
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client import Counter as PromCounter
from prometheus_client import Histogram as PromHistogram
from prometheus_client.metrics import MetricWrapperBase
from prometheus_client.values import MutexValue

from adapters.memory.adapter import MemoryAdapter
from gateway import app as app_module
from gateway import logging, pipeline
from gateway.app import METRICS
from gateway.cors import CorsPolicy
from gateway.limits import ratelimit
from gateway.oauth.errors import InvalidClientMetadata, InvalidRedirectUri
from gateway.oauth.lengths import LengthUnit, StoredLength
from gateway.oauth.metadata import ClientMetadata, parse_metadata
from gateway.observability import audit
from gateway.observability.metrics import (
    REGISTRATION_OPERATIONS,
    ROUTE_CLASSES,
    GatewayMetrics,
    PlainCounter,
    error_label,
    status_outcome,
)
from gateway.policy import PolicySettings, RegistrationPolicy, validate
from gateway.policy.rules import strings_bounded
from gateway.policy.uris import check_redirect_uri
from gateway.rfc8414.handler import ServedHeaders

log = structlog.get_logger(__name__)

Client = TestClient[Any, Any]
Factory = Callable[..., Awaitable[tuple[Client, MemoryAdapter]]]

NATIVE = {
    "redirect_uris": ["http://127.0.0.1:3000/callback"],
    "token_endpoint_auth_method": "none",
    "grant_types": ["authorization_code", "refresh_token"],
}
DISCOVERY = f"/.well-known/oauth-authorization-server{ISSUER_PATH}"
REQUESTS = 12


def provider_document() -> dict[str, Any]:
    return {
        "issuer": ISSUER,
        "authorization_endpoint": f"{ISSUER}/protocol/openid-connect/auth",
        "token_endpoint": f"{ISSUER}/protocol/openid-connect/token",
        "jwks_uri": f"{ISSUER}/protocol/openid-connect/certs",
        "response_types_supported": ["code"],
        "grant_types_supported": ["authorization_code", "refresh_token"],
        "token_endpoint_auth_methods_supported": ["client_secret_basic", "client_secret_post"],
        "code_challenge_methods_supported": ["S256"],
    }


@pytest.fixture
def document() -> dict[str, Any]:
    return provider_document()


@pytest.fixture
def make_gateway(gateways: Gateways, document: dict[str, Any]) -> Factory:
    async def factory(**overrides: Any) -> tuple[Client, MemoryAdapter]:
        return await gateways.start(document, **overrides)

    return factory


@pytest.fixture
def policy_builds(monkeypatch: pytest.MonkeyPatch) -> list[bool]:
    """Every :meth:`RegistrationPolicy.from_settings` call, by the caller privilege it resolved."""
    calls: list[bool] = []
    build = RegistrationPolicy.from_settings

    def counting(*args: Any, **kwargs: Any) -> RegistrationPolicy:
        calls.append(bool(kwargs.get("authenticated", False)))
        return build(*args, **kwargs)

    monkeypatch.setattr(RegistrationPolicy, "from_settings", counting)
    return calls


async def register(client: Client, body: dict[str, Any]) -> dict[str, Any]:
    response = await client.post(REGISTER, json=body)
    assert response.status == 201, await response.text()
    registered: dict[str, Any] = await response.json()
    return registered


async def next_document(client: Client, etag: str) -> ClientResponse:
    """The first discovery answer serving another document than ``etag`` (the cache refreshes every 0.05 s)."""
    for _ in range(500):
        response = await client.get(DISCOVERY)
        if response.headers["ETag"] != etag:
            return response
        await asyncio.sleep(0.02)
    raise AssertionError("the refreshed document was not served within 10 s")


# --------------------------------------------------------------------------------- registration policy


async def test_the_registration_policy_is_built_once_per_document_not_per_request(
    make_gateway: Factory, policy_builds: list[bool]
) -> None:
    client, _ = await make_gateway()
    for _ in range(REQUESTS):
        await register(client, NATIVE)
    assert policy_builds == [False]  # one anonymous policy for the served document, whatever the request count


async def test_a_new_discovery_document_rebuilds_the_policy_and_its_rules_follow_it(
    make_gateway: Factory, document: dict[str, Any], policy_builds: list[bool]
) -> None:
    """The cached policy is the served document's (RFC 8414 section 2): when the provider stops advertising
    ``refresh_token``, the next registrations are trimmed to what it supports, after one rebuild."""
    client, _ = await make_gateway(discovery_refresh_seconds=0.05)
    assert (await register(client, NATIVE))["grant_types"] == ["authorization_code", "refresh_token"]
    first_etag = (await client.get(DISCOVERY)).headers["ETag"]
    document["grant_types_supported"] = ["authorization_code"]
    await next_document(client, first_etag)
    for _ in range(3):
        assert (await register(client, NATIVE))["grant_types"] == ["authorization_code"]
    assert policy_builds == [False, False]


# ---------------------------------------------------------------------------------------- metrics


async def test_metric_children_are_looked_up_once_per_label_set_not_per_request(
    make_gateway: Factory, monkeypatch: pytest.MonkeyPatch
) -> None:
    """``labels()`` validates its values and takes a lock on every call: the per-request recorders (registration
    answers, requests by route, admin calls) keep the child of each label set instead."""
    client, _ = await make_gateway()
    await register(client, NATIVE)  # every label set of this test used once
    assert (await client.get(DISCOVERY)).status == 200
    lookups: list[tuple[str, tuple[Any, ...]]] = []
    labels = MetricWrapperBase.labels

    def counting(self: MetricWrapperBase, *values: Any, **named: Any) -> Any:
        lookups.append((self._name, values))
        return labels(self, *values, **named)

    monkeypatch.setattr(MetricWrapperBase, "labels", counting)
    for _ in range(REQUESTS):
        await register(client, NATIVE)
        assert (await client.get(DISCOVERY)).status == 200
    assert lookups == []


async def test_no_lock_is_taken_per_request_for_the_request_metrics(
    make_gateway: Factory, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The per-request series (registrations by outcome, admin calls, requests by route and their durations) are
    plain numbers read at scrape time: ``prometheus_client``'s value lock (one per ``inc``, several per
    ``observe``) is not taken on a registration or a discovery request, and the counts still move."""
    client, _ = await make_gateway()
    await register(client, NATIVE)
    assert (await client.get(DISCOVERY)).status == 200
    metrics = client.server.app[METRICS]
    before = metrics.registry.get_sample_value("dcr_gateway_http_requests_total", {"route": "discovery", "code": "200"})
    locked: list[str] = []
    for method in ("inc", "set", "get"):
        original = getattr(MutexValue, method)

        def counting(self: MutexValue, *args: Any, _original: Any = original, _name: str = method) -> Any:
            locked.append(_name)
            return _original(self, *args)

        monkeypatch.setattr(MutexValue, method, counting)
    for _ in range(REQUESTS):
        await register(client, NATIVE)
        assert (await client.get(DISCOVERY)).status == 200
    assert locked == []
    monkeypatch.undo()
    sample = metrics.registry.get_sample_value
    assert sample("dcr_gateway_http_requests_total", {"route": "discovery", "code": "200"}) == (before or 0) + REQUESTS
    assert sample("dcr_gateway_http_request_duration_seconds_count", {"route": "registration"}) == REQUESTS + 1
    success = {"issuer": ISSUER, "operation": "register", "outcome": "success", "error": ""}
    assert sample("dcr_gateway_registration_requests_total", success) == REQUESTS + 1


def test_the_request_metrics_export_exactly_what_prometheus_client_would(monkeypatch: pytest.MonkeyPatch) -> None:
    """The same observations recorded by the gateway's plain families and by ``prometheus_client``'s locked
    ``Counter``/``Histogram`` of the same name, help and labels give the same exposition text, byte for byte
    (``_total``, ``_created``, cumulative ``_bucket{le}`` on the default buckets, ``_count``, ``_sum``, the series
    made at 0 by ``initialize``, the order label sets were first used)."""
    monkeypatch.setattr(time, "time", lambda: 1_764_000_000.25)  # the _created series of both sides
    metrics = GatewayMetrics(version="test")
    reference = CollectorRegistry()
    ours = CollectorRegistry()
    old: dict[str, Any] = {}
    for family in (
        metrics.registration_requests,
        metrics.provider_requests,
        metrics.provider_duration,
        metrics.http_requests,
        metrics.http_duration,
    ):
        ours.register(family)
        kind = PromCounter if isinstance(family, PlainCounter) else PromHistogram
        name = family.name + ("_total" if kind is PromCounter else "")
        old[family.name] = kind(name, family.documentation, family.labelnames, registry=reference)

    def record_http(route: str, status: int, seconds: float) -> None:
        metrics.http_request(route=route, status=status, seconds=seconds)
        label = route if route in ROUTE_CLASSES else "other"
        old["dcr_gateway_http_requests"].labels(label, str(status)).inc()
        old["dcr_gateway_http_request_duration_seconds"].labels(label).observe(seconds)

    metrics.initialize([ISSUER, "https://second.example"])
    for issuer in (ISSUER, "https://second.example"):
        for operation in REGISTRATION_OPERATIONS:
            old["dcr_gateway_registration_requests"].labels(issuer, operation, "success", "")
    for seconds in (0.0, 0.0001, 0.005, 0.0050001, 0.3, 2.5, 7.3, 10.0, 11.0, 1e9):
        record_http("discovery", 200, seconds)
        record_http("registration", 201 if seconds < 1 else 400, seconds / 3)
    record_http("/a/raw/path", 404, 0.02)
    record_http("discovery", 304, 0.001)
    for status, error in ((201, None), (400, "invalid_redirect_uri"), (400, "made_up"), (503, "server_error")):
        metrics.registration_request(issuer=ISSUER, operation="register", status=status, error=error)
        old["dcr_gateway_registration_requests"].labels(
            ISSUER, "register", status_outcome(status), error_label(error)
        ).inc()
    for outcome, seconds in (("success", 0.004), ("success", 0.07), ("unavailable", 5.0), ("conflict", 0.01)):
        metrics.provider_request(provider="hydra", operation="create", outcome=outcome, seconds=seconds)
        old["dcr_gateway_provider_requests"].labels("hydra", "create", outcome).inc()
        old["dcr_gateway_provider_request_duration_seconds"].labels("hydra", "create").observe(seconds)
    for route in ("registration", "other"):  # a NaN observation: in no bucket, not counted, its sum NaN
        record_http(route, 200, float("nan"))
    metrics.provider_request(provider="keycloak", operation="create", outcome="success", seconds=float("nan"))
    old["dcr_gateway_provider_requests"].labels("keycloak", "create", "success").inc()
    old["dcr_gateway_provider_request_duration_seconds"].labels("keycloak", "create").observe(float("nan"))
    expected = generate_latest(reference).decode()
    assert 'dcr_gateway_http_request_duration_seconds_bucket{le="+Inf",route="discovery"} 11.0' in expected
    assert 'dcr_gateway_provider_request_duration_seconds_sum{operation="create",provider="keycloak"} NaN' in expected
    assert generate_latest(ours).decode() == expected


# -------------------------------------------------------------------------------------------- discovery


async def test_discovery_headers_are_built_once_per_document_not_per_request(
    make_gateway: Factory, document: dict[str, Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    """The served document's answer headers (Content-Type, ETag, Cache-Control, CORS) are prepared when a new
    document is served (RFC 8414 section 3.2), not on every request; a new document gets new ones."""
    client, _ = await make_gateway(discovery_refresh_seconds=0.05)
    cors_lookups: list[str | None] = []
    headers_for = CorsPolicy.headers_for

    def counting(self: CorsPolicy, origin: str | None) -> dict[str, str]:
        cors_lookups.append(origin)
        return headers_for(self, origin)

    monkeypatch.setattr(CorsPolicy, "headers_for", counting)
    answers = [await client.get(DISCOVERY) for _ in range(REQUESTS)]
    assert {answer.status for answer in answers} == {200}
    first = answers[0].headers
    assert first["ETag"] and first["Content-Type"] == "application/json"
    assert first["Cache-Control"] == "public, max-age=60" and first["Access-Control-Allow-Origin"] == "*"
    assert len({answer.headers["X-Request-Id"] for answer in answers}) == REQUESTS  # per request, still
    assert len(cors_lookups) <= 1
    not_modified = await client.get(DISCOVERY, headers={"If-None-Match": first["ETag"]})
    assert not_modified.status == 304 and not_modified.headers["ETag"] == first["ETag"]
    assert "Content-Type" not in not_modified.headers

    document["scopes_supported"] = ["openid", "mcp:tools"]
    changed = await next_document(client, first["ETag"])
    assert (await changed.json())["scopes_supported"] == ["openid", "mcp:tools"]
    assert (await client.get(DISCOVERY, headers={"If-None-Match": first["ETag"]})).status == 200
    assert len(cors_lookups) <= 2


async def test_the_discovery_fast_path_keeps_every_guarantee(
    make_gateway: Factory, capture_logs: Callable[[str], io.StringIO], monkeypatch: pytest.MonkeyPatch
) -> None:
    """Discovery answered through the middleware's fast path still: a request id per answer (a well-formed
    incoming one kept), HEAD without a body, 304 on ``If-None-Match``, CORS, the refusal of an encoded body, the
    request counted, one access line at INFO; and every log line of a request carries that request's id, never
    the previous one's on the same kept-alive connection, and nothing a previous request bound."""
    stream = capture_logs("INFO")
    client, _ = await make_gateway()
    bound_in: list[str] = []
    of = ServedHeaders.of

    def binding(self: ServedHeaders, *args: Any) -> Any:
        log.warning("test.inside_discovery")
        structlog.contextvars.bind_contextvars(bound_by_a_previous_request=len(bound_in))
        bound_in.append("x")
        return of(self, *args)

    monkeypatch.setattr(ServedHeaders, "of", binding)
    answers = []
    for headers in ({}, {"X-Request-Id": "caller-id-1"}, {"Origin": "https://app.example"}, {"X-Request-Id": "!"}):
        answer = await client.get(DISCOVERY, headers=headers)
        assert answer.status == 200 and answer.headers["Access-Control-Allow-Origin"] == "*"
        answers.append(answer)
    ids = [answer.headers["X-Request-Id"] for answer in answers]
    assert ids[1] == "caller-id-1" and len(set(ids)) == 4 and ids[3] != "!"
    head = await client.head(DISCOVERY)
    assert head.status == 200 and await head.read() == b""
    etag = answers[0].headers["ETag"]
    assert (await client.get(DISCOVERY, headers={"If-None-Match": etag})).status == 304
    encoded = await client.get(DISCOVERY, headers={"Content-Encoding": "gzip"}, data=b"x")
    assert encoded.status == 415
    lines = [json.loads(line) for line in stream.getvalue().splitlines()]
    inside = [line for line in lines if line["event"] == "test.inside_discovery"]
    access = [line for line in lines if line["event"] == "http.request" and line["path"] == DISCOVERY]
    assert [line["request_id"] for line in inside][:4] == ids
    assert [line["request_id"] for line in access][:4] == ids
    assert all("bound_by_a_previous_request" not in line for line in inside)
    assert {line["status"] for line in access} == {200, 304, 415}
    value = client.server.app[METRICS].registry.get_sample_value
    assert value("dcr_gateway_http_requests_total", {"route": "discovery", "code": "200"}) == 5


async def test_discovery_runs_no_refusal_check_and_no_context_clearing_per_request(
    make_gateway: Factory, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The fast path: a GET of an origin-form target without a body needs none of the three refusal checks
    (request target, transfer coding, content coding: each answers ``None`` for it), and the request id is set
    in its log context directly (aiohttp runs each request in a task of its own, with a copy of the
    connection's context: nothing bound by one request reaches the next, so there is nothing to clear)."""
    client, _ = await make_gateway()
    calls: list[str] = []
    for name in ("request_target_error", "unsupported_transfer_coding", "unsupported_content_coding"):
        original = getattr(app_module, name)

        def counting(request: Any, _original: Any = original, _name: str = name) -> Any:
            calls.append(_name)
            return _original(request)

        monkeypatch.setattr(app_module, name, counting)
    clear = structlog.contextvars.clear_contextvars

    def counting_clear() -> None:
        calls.append("clear_contextvars")
        clear()

    monkeypatch.setattr(structlog.contextvars, "clear_contextvars", counting_clear)
    for _ in range(REQUESTS):
        assert (await client.get(DISCOVERY)).status == 200
    assert calls == []
    assert (await client.request("CONNECT", DISCOVERY)).status == 405  # the others still run the checks
    assert calls


# ------------------------------------------------------------------------------------ source address


async def test_the_source_address_is_worked_out_once_per_registration(
    make_gateway: Factory, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The rate limits, the audit record and the caller (RFC 7591 section 3) all need the request's source: the
    address is parsed (``X-Forwarded-For`` hops, IPv6 prefix) once per request, and each request gets its own."""
    client, _ = await make_gateway(trust_forwarded_for=True)
    parsed: list[str] = []
    source_key = ratelimit.source_key

    def counting(address: str, **kwargs: Any) -> str:
        parsed.append(address)
        return source_key(address, **kwargs)

    monkeypatch.setattr(ratelimit, "source_key", counting)
    for index in range(3):
        response = await client.post(REGISTER, json=NATIVE, headers={"X-Forwarded-For": f"203.0.113.{index + 1}"})
        assert response.status == 201
    assert parsed == ["203.0.113.1", "203.0.113.2", "203.0.113.3"]


# ------------------------------------------------------------------------------------------ policy rules


@pytest.mark.parametrize(
    "body",
    [
        NATIVE,
        {
            "redirect_uris": ["https://app.example/cb"],
            "client_uri": "https://app.example/",
            "logo_uri": "https://cdn.example/logo.png",
            "client_name": "Web app",
        },
    ],
    ids=["native", "web"],
)
def test_the_rules_serialize_the_metadata_once_per_validation(
    body: dict[str, Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    """The rules read fields, not a fresh JSON dump each (RFC 7591 section 2 metadata, validated as before: the
    table-driven tests in test_policy*.py pin every outcome): one dump per validation, for the Unicode check."""
    policy = RegistrationPolicy.from_settings(
        PolicySettings(),
        provider_document(),
        stored_lengths={"client_name": StoredLength(255, LengthUnit.UTF16, "test column")},
        message_template_fields=frozenset({"client_name"}),
    )
    metadata = parse_metadata(body)
    dumps: list[str] = []
    model_dump = ClientMetadata.model_dump

    def counting(self: ClientMetadata, **kwargs: Any) -> dict[str, Any]:
        dumps.append(type(self).__name__)
        return model_dump(self, **kwargs)

    monkeypatch.setattr(ClientMetadata, "model_dump", counting)
    validate(metadata, policy)
    assert len(dumps) <= 1


# ---------------------------------------------------------------------------------------- body, logs


async def test_a_body_that_arrived_with_its_headers_is_read_without_arming_a_deadline(
    make_gateway: Factory, monkeypatch: pytest.MonkeyPatch
) -> None:
    """RFC 7591 section 3.1: the JSON body is read whole; when it is already there (the usual small document in the
    segment of its headers) there is nothing to wait for. A body still arriving keeps its deadline (408: the
    tests of test_app_http.py and test_shutdown.py)."""
    client, _ = await make_gateway()
    armed: list[float] = []
    timeout = asyncio.timeout

    def counting(delay: float | None) -> asyncio.Timeout:
        if sys._getframe(1).f_globals["__name__"] == pipeline.__name__:  # asyncio's own: everyone's
            armed.append(delay or 0.0)
        return timeout(delay)

    monkeypatch.setattr(pipeline.asyncio, "timeout", counting)
    for _ in range(3):
        await register(client, NATIVE)
    assert armed == []


async def test_redaction_walks_no_flat_event(make_gateway: Factory, monkeypatch: pytest.MonkeyPatch) -> None:
    """Every log line and audit event of a registration is flat: the credential net (:func:`gateway.logging.redact`)
    looks each key up and walks nothing; a nested value is still walked and scrubbed."""
    client, _ = await make_gateway(log_level="INFO")
    walked: list[Any] = []
    scrub = logging._scrub

    def counting(value: Any) -> Any:
        walked.append(value)
        return scrub(value)

    monkeypatch.setattr(logging, "_scrub", counting)
    redacted: list[str] = []
    redact = audit.redact

    def redacting(logger: Any, method: str, event: dict[str, Any]) -> Any:
        redacted.append(event["event"])
        return redact(logger, method, event)

    monkeypatch.setattr(audit, "redact", redacting)  # the audit log's own reference
    for _ in range(3):
        await register(client, NATIVE)
    assert redacted == ["CLIENT_REGISTER"] * 3  # the net ran over every event ...
    assert walked == []  # ... and walked nothing
    event = logging.redact(None, "", {"nested": {"client_secret": "s3cret", "ok": [{"code": "c"}]}, "password": "p"})
    assert event == {
        "nested": {"client_secret": "[redacted]", "ok": [{"code": "[redacted]"}]},
        "password": "[redacted]",
    }
    assert walked


def test_the_whitespace_and_control_scans_refuse_exactly_what_the_character_rules_say() -> None:
    """Guard for the one-scan checks (regular expressions instead of a Python loop per character): every code
    point is refused in a redirect URI, a web URI and a ``client_name`` exactly as :meth:`str.isspace` and the C0
    controls (and DEL, in URIs) say. Passes before and after the change: it pins the equivalence, not the speed."""
    policy = RegistrationPolicy.from_settings(PolicySettings(), provider_document())
    refused_uris, refused_names = [], []
    # every Unicode whitespace character is below U+3001; above it, a sample
    points = [*range(0x3001), *range(0x3001, 0x110000, 97)]
    for point in points:
        char = chr(point)
        if 0xD800 <= point <= 0xDFFF:
            continue
        try:
            check_redirect_uri(
                f"https://app.example/c{char}b", field_name="redirect_uris[0]", application_type=None, max_length=2000
            )
        except InvalidRedirectUri as exc:
            if "whitespace or control" in exc.description:
                refused_uris.append(point)
        try:
            strings_bounded(ClientMetadata(client_name=f"a{char}b"), policy)
        except InvalidClientMetadata:
            refused_names.append(point)
    assert refused_uris == [p for p in points if chr(p).isspace() or p < 0x20 or p == 0x7F]
    assert refused_names == [p for p in points if p < 0x20]
