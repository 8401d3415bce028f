"""Metrics, the management app and the audit log, with the in-memory adapter: the label sets and the exact counts of
registrations and RFC 7592 operations, admin calls, requests by route class, limits, the quota, discovery and CIMD
fetches; the audit events' fields, and that no secret fed through any of them reaches the audit output.

The same through the real Hydra and Keycloak gateways (the management listener scraped, the gateway's own log
read): tests/integration/test_observability.py.
"""

from __future__ import annotations

import asyncio
import json
import os
import socket
import subprocess
import sys
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiohttp.test_utils import TestClient, TestServer
from gateway_factory import ISSUER, PUBLIC, REGISTER, Gateways
from prometheus_client.parser import text_string_to_metric_families
from test_access_http import STATIC_TOKEN, access_config, provider_document, signed_token, software_statement

from adapters.base import ClientNotFound, DocumentClients, NewClient, ProviderAdapter
from adapters.memory.adapter import MemoryAdapter
from devstack.process import free_port
from gateway.app import AUDIT, MANAGEMENT_APP, METRICS, SETTINGS, create_app
from gateway.cimd.errors import DocumentRefused
from gateway.cimd.fetch import DocumentFetcher
from gateway.cimd.settings import CimdSettings
from gateway.cli import main
from gateway.oauth.metadata import ClientMetadata
from gateway.observability.adapter import instrument_adapter
from gateway.observability.audit import AuditLog, bounded_user_agent
from gateway.observability.metrics import GatewayMetrics
from gateway.rfc8414.cache import DiscoveryCache
from gateway.server import Listener, serve
from gateway.settings import Settings

Client = TestClient[Any, Any]
Factory = Callable[..., Awaitable[tuple[Client, MemoryAdapter]]]
NATIVE = {"redirect_uris": ["http://127.0.0.1:3000/callback"], "token_endpoint_auth_method": "none"}
CONFIDENTIAL = {
    "redirect_uris": ["https://app.example/cb"],
    "token_endpoint_auth_method": "client_secret_basic",
    "client_name": "Web app",
}


@pytest.fixture
def audit_file(tmp_path: Path) -> Path:
    return tmp_path / "audit.log"


@pytest.fixture
def make_gateway(gateways: Gateways, audit_file: Path) -> Factory:
    async def factory(**overrides: Any) -> tuple[Client, MemoryAdapter]:
        overrides.setdefault("limits", {"enabled": False})
        overrides.setdefault("audit", {"path": str(audit_file)})
        return await gateways.start(provider_document(), **overrides)

    return factory


def samples(client: Client) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    """Every sample of the app's registry, as the management listener's ``/metrics`` would expose it."""
    metrics = client.server.app[METRICS]
    from prometheus_client import generate_latest

    text = generate_latest(metrics.registry).decode()
    found: dict[tuple[str, tuple[tuple[str, str], ...]], float] = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            found[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    return found


def value(found: dict[tuple[str, tuple[tuple[str, str], ...]], float], name: str, **labels: str) -> float:
    return found.get((name, tuple(sorted(labels.items()))), 0.0)


def text_of(path: Path) -> str:
    return path.read_text() if path.exists() else ""


def audit_events(path: Path) -> list[dict[str, Any]]:
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


# ------------------------------------------------------------------------------------------------ metrics


async def test_registration_and_rfc7592_operations_are_counted_by_issuer_operation_outcome_and_error(
    make_gateway: Factory,
) -> None:
    client, _ = await make_gateway()
    before = samples(client)
    name = "dcr_gateway_registration_requests_total"
    assert value(before, name, issuer=ISSUER, operation="register", outcome="success", error="") == 0

    registered = await (await client.post(REGISTER, json=CONFIDENTIAL)).json()
    path = registered["registration_client_uri"][len(PUBLIC) :]
    auth = {"Authorization": f"Bearer {registered['registration_access_token']}"}
    assert (await client.get(path, headers=auth)).status == 200
    update = {**CONFIDENTIAL, "client_id": registered["client_id"], "client_name": "Renamed"}
    assert (await client.put(path, json=update, headers=auth)).status == 200
    assert (await client.delete(path, headers=auth)).status == 204
    refused = await client.post(REGISTER, json={"redirect_uris": ["not a uri"]})
    assert refused.status == 400
    assert (await refused.json())["error"] == "invalid_redirect_uri"
    assert (await client.get(path, headers=auth)).status == 401  # deleted: RFC 7592 section 2.1

    after = samples(client)
    for operation in ("register", "read", "update", "delete"):
        assert value(after, name, issuer=ISSUER, operation=operation, outcome="success", error="") == 1, operation
    assert value(after, name, issuer=ISSUER, operation="register", outcome="refused", error="invalid_redirect_uri") == 1
    assert value(after, name, issuer=ISSUER, operation="read", outcome="refused", error="invalid_token") == 1
    issuers = {dict(labels).get("issuer") for (sample, labels) in after if sample == name}
    assert issuers == {ISSUER}  # configured issuers only: no client id, no path in any label


async def test_admin_calls_are_counted_and_timed_once_per_operation(make_gateway: Factory) -> None:
    client, adapter = await make_gateway()
    assert isinstance(adapter, DocumentClients)  # instrumented in place: the capability checks still hold
    before = samples(client)
    registered = await (await client.post(REGISTER, json=NATIVE)).json()
    path = registered["registration_client_uri"][len(PUBLIC) :]
    auth = {"Authorization": f"Bearer {registered['registration_access_token']}"}
    assert (await client.delete(path, headers=auth)).status == 204
    assert (await client.get(path, headers=auth)).status == 401

    after = samples(client)

    def delta(name: str, **labels: str) -> float:
        return value(after, name, **labels) - value(before, name, **labels)

    total = "dcr_gateway_provider_requests_total"
    assert delta(total, provider="memory", operation="create_client", outcome="success") == 1
    assert delta(total, provider="memory", operation="read_client", outcome="success") == 1
    assert delta(total, provider="memory", operation="read_client", outcome="not_found") == 1
    assert delta(total, provider="memory", operation="delete_client", outcome="success") == 1
    count = "dcr_gateway_provider_request_duration_seconds_count"
    assert delta(count, provider="memory", operation="read_client") == 2
    assert delta(count, provider="memory", operation="create_client") == 1


async def test_nested_adapter_calls_count_once() -> None:
    class Nested(MemoryAdapter):
        async def delete_client(self, issuer: str, client_id: str) -> None:
            await self.read_client(issuer, client_id)  # an adapter's own call through self: not a second operation
            await super().delete_client(issuer, client_id)

    metrics = GatewayMetrics(version="test")
    adapter: ProviderAdapter = instrument_adapter(Nested(public_url=PUBLIC, issuer_path="/realms/mcp"), metrics)
    with pytest.raises(ClientNotFound):
        await adapter.delete_client("mcp", "missing")
    assert (
        metrics.registry.get_sample_value(
            "dcr_gateway_provider_requests_total",
            {"provider": "memory", "operation": "delete_client", "outcome": "not_found"},
        )
        == 1
    )
    assert (
        metrics.registry.get_sample_value(
            "dcr_gateway_provider_requests_total",
            {"provider": "memory", "operation": "read_client", "outcome": "not_found"},
        )
        is None
    )


async def test_the_quota_count_and_the_usage_listing_are_counted_and_timed() -> None:
    """``count_managed`` (the quota's recount) and ``list_with_usage`` (``dcr-gateway clients``) are admin calls too:
    each counted and timed once, a listing from its first page to its last, its failures by outcome."""
    metrics = GatewayMetrics(version="test")
    memory = MemoryAdapter(public_url=PUBLIC, issuer_path="/realms/mcp")
    memory.page_size = 2
    metadata = ClientMetadata(redirect_uris=["http://127.0.0.1/cb"], token_endpoint_auth_method="none")
    for number in range(5):
        await memory.create_client("mcp", NewClient(f"c{number}", None, 0, 0, metadata))
    adapter: Any = instrument_adapter(memory, metrics)
    assert await adapter.count_managed("mcp") == 5
    pages = [page async for page in adapter.list_with_usage("mcp")]
    assert sum(len(page) for page in pages) == 5

    def sample(name: str, **labels: str) -> float | None:
        return metrics.registry.get_sample_value(name, {"provider": "memory", **labels})

    total = "dcr_gateway_provider_requests_total"
    count = "dcr_gateway_provider_request_duration_seconds_count"
    for operation in ("count_managed", "list_with_usage"):
        assert sample(total, operation=operation, outcome="success") == 1, operation
        assert sample(count, operation=operation) == 1, operation
    assert sample(total, operation="list_clients", outcome="success") is None  # no nested call counted


async def test_public_requests_are_counted_by_route_class_never_by_path(make_gateway: Factory) -> None:
    client, _ = await make_gateway(mode="path-routing")
    before = samples(client)
    assert (await client.get("/realms/mcp/.well-known/openid-configuration")).status == 200
    assert (await client.get("/healthz")).status == 200
    assert (await client.post(REGISTER, json=NATIVE)).status == 201
    assert (await client.get("/some/secret-looking/path")).status == 404
    assert (await client.get("/metrics")).status == 404  # never served on the public listener
    after = samples(client)
    name = "dcr_gateway_http_requests_total"
    for route, code, expected in (
        ("discovery", "200", 1),
        ("health", "200", 1),
        ("registration", "201", 1),
        ("not_found", "404", 2),
    ):
        assert value(after, name, route=route, code=code) - value(before, name, route=route, code=code) == expected
    routes = {dict(labels)["route"] for (sample, labels) in after if sample == name}
    assert routes <= {"discovery", "health", "registration", "not_found"}
    assert value(after, "dcr_gateway_http_request_duration_seconds_count", route="registration") == 1


async def test_front_door_sends_metrics_path_to_the_provider(gateways: Gateways) -> None:
    client, _ = await gateways.start(
        provider_document(), proxy_everything=True, limits={"enabled": False}, front_door={"allowed_paths": ["/"]}
    )
    response = await client.get("/metrics")
    assert await response.json() == {"proxied": "/metrics"}  # the provider's path, like any other
    assert value(samples(client), "dcr_gateway_http_requests_total", route="proxied", code="200") == 1


async def test_limit_rejections_and_quota_use(make_gateway: Factory) -> None:
    client, _ = await make_gateway(
        limits={"per_source_limit": 2, "per_source_window_seconds": 60, "max_clients_per_issuer": 1}
    )
    assert (await client.post(REGISTER, json=NATIVE)).status == 201
    quota_refusal = await client.post(REGISTER, json=NATIVE)
    assert quota_refusal.status == 403
    assert (await client.post(REGISTER, json=NATIVE)).status == 429
    found = samples(client)
    assert value(found, "dcr_gateway_limit_rejections_total", limit="quota") == 1
    assert value(found, "dcr_gateway_limit_rejections_total", limit="per_source") == 1
    assert value(found, "dcr_gateway_limit_rejections_total", limit="global") == 0
    assert value(found, "dcr_gateway_managed_clients", issuer=ISSUER) == 1
    assert value(found, "dcr_gateway_managed_clients_max", issuer=ISSUER) == 1
    name = "dcr_gateway_registration_requests_total"
    assert value(found, name, issuer=ISSUER, operation="register", outcome="refused", error="access_denied") == 1
    assert (
        value(found, name, issuer=ISSUER, operation="register", outcome="refused", error="temporarily_unavailable") == 1
    )


async def test_discovery_age_build_info_and_refresh_failures(make_gateway: Factory) -> None:
    client, _ = await make_gateway()
    found = samples(client)
    age = value(found, "dcr_gateway_discovery_document_age_seconds", issuer=ISSUER)
    assert 0 <= age < 60
    assert ("dcr_gateway_discovery_document_age_seconds", (("issuer", ISSUER),)) in found
    assert value(found, "dcr_gateway_build_info", version="0.1.0") == 1
    assert value(found, "dcr_gateway_discovery_refresh_failures_total", issuer=ISSUER) == 0

    metrics = GatewayMetrics(version="test")
    cache = DiscoveryCache(
        None, f"http://127.0.0.1:{free_port()}/.well-known/openid-configuration", registration_endpoint="x"
    )
    cache.on_refresh_failure = lambda: metrics.discovery_refresh_failed("https://issuer.example")
    async with aiohttp.ClientSession() as session:
        await cache.start(session)
        await cache.refresh()
        await cache.close()
    failures = metrics.registry.get_sample_value(
        "dcr_gateway_discovery_refresh_failures_total", {"issuer": "https://issuer.example"}
    )
    assert failures is not None
    assert failures >= 2  # the start's fetch and the refresh


async def test_cimd_fetches_by_outcome() -> None:
    metrics = GatewayMetrics(version="test")
    fetcher = DocumentFetcher(CimdSettings())
    fetcher.on_fetch = metrics.cimd_fetch
    await fetcher.start()
    try:
        with pytest.raises(DocumentRefused):
            await fetcher.fetch("https://127.0.0.1/client.json")  # a loopback address: refused before connecting
    finally:
        await fetcher.close()
    refused = [
        metrics.registry.get_sample_value("dcr_gateway_cimd_fetches_total", {"outcome": outcome})
        for outcome in ("refused_url", "refused_policy", "refused_fetch")
    ]
    assert sum(v or 0 for v in refused) == 1


async def test_management_app_serves_metrics_and_the_same_readiness(make_gateway: Factory) -> None:
    client, _ = await make_gateway()
    management = TestClient(TestServer(client.server.app[MANAGEMENT_APP], host="127.0.0.1"))
    await management.start_server()
    try:
        assert (await client.post(REGISTER, json=NATIVE)).status == 201
        metrics = await management.get("/metrics")
        assert metrics.status == 200
        assert metrics.content_type == "text/plain"
        text = await metrics.text()
        assert (
            f'dcr_gateway_registration_requests_total{{error="",issuer="{ISSUER}",operation="register",'
            'outcome="success"} 1.0' in text
        )
        for path in ("/healthz", "/readyz"):
            public, private = await client.get(path), await management.get(path)
            assert (public.status, await public.json()) == (private.status, await private.json())
        assert (await management.get("/readyz")).status == 200
        assert (await management.get("/register")).status == 404
    finally:
        await management.close()


def test_each_app_has_its_own_registry() -> None:
    one, two = GatewayMetrics(version="a"), GatewayMetrics(version="b")
    one.limit_rejected("quota")
    assert one.registry.get_sample_value("dcr_gateway_limit_rejections_total", {"limit": "quota"}) == 1
    assert not two.registry.get_sample_value("dcr_gateway_limit_rejections_total", {"limit": "quota"})
    one.http_request(route="/a/raw/path", status=200, seconds=0.1)  # never a raw path: "other"
    assert one.registry.get_sample_value("dcr_gateway_http_requests_total", {"route": "other", "code": "200"}) == 1


def test_management_settings() -> None:
    settings = Settings()
    assert (settings.management.enabled, settings.management.host, settings.management.port) == (
        True,
        "127.0.0.1",
        9180,
    )
    with pytest.raises(ValueError, match=r"management\.port must differ"):
        Settings(port=9180)
    assert not Settings(port=9180, management={"enabled": False}).management.enabled


# -------------------------------------------------------------------------------------------------- audit


async def test_audit_events_of_registration_and_rfc7592(make_gateway: Factory, audit_file: Path) -> None:
    client, _ = await make_gateway()
    agent = "test-agent/1.0 " + "x" * 400
    headers = {"User-Agent": agent, "X-Request-Id": "req-audit-1"}
    registered = await (await client.post(REGISTER, json=NATIVE, headers=headers)).json()
    client_id = registered["client_id"]
    path = registered["registration_client_uri"][len(PUBLIC) :]
    auth = {"Authorization": f"Bearer {registered['registration_access_token']}"}
    assert (await client.get(path, headers=auth)).status == 200
    assert (await client.put(path, json={**NATIVE, "client_id": client_id}, headers=auth)).status == 200
    assert (await client.get(path, headers={"Authorization": "Bearer wrong"})).status == 401
    assert (await client.delete(path, headers=auth)).status == 204
    assert (await client.post(REGISTER, json={"redirect_uris": ["not a uri"]})).status == 400

    events = audit_events(audit_file)
    assert [event["event"] for event in events] == [
        "CLIENT_REGISTER",
        "CLIENT_INFO",
        "CLIENT_UPDATE",
        "CLIENT_INFO_ERROR",
        "CLIENT_DELETE",
        "CLIENT_REGISTER_ERROR",
    ]
    first = events[0]
    assert first["audience"] == "audit"
    assert first["logger"] == "dcr_gateway.audit"
    assert first["issuer"] == ISSUER
    assert first["client_id"] == client_id
    assert first["source"] == "127.0.0.1"
    assert first["caller"] == "anonymous"
    assert first["request_id"] == "req-audit-1"
    assert first["user_agent"] == agent[:256]
    assert first["outcome"] == "success"
    assert first["status"] == 201
    assert events[1]["caller"] == "registration_access_token"
    assert events[3]["outcome"] == "failure"
    assert events[3]["error"] == "invalid_token"
    assert "client_id" not in events[3]  # not authorized: the path is the caller's text
    assert events[5]["error"] == "invalid_redirect_uri"
    assert "client_id" not in events[5]


async def test_audit_caller_kinds(make_gateway: Factory, audit_file: Path) -> None:
    client, _ = await make_gateway(access=access_config("initial_access_token"))
    statement = software_statement()
    token = signed_token()
    assert (await client.post(REGISTER, json=NATIVE, headers={"Authorization": f"Bearer {token}"})).status == 201
    both = {**NATIVE, "software_statement": statement}
    assert (await client.post(REGISTER, json=both, headers={"Authorization": f"Bearer {STATIC_TOKEN}"})).status == 201
    assert (await client.post(REGISTER, json=NATIVE)).status == 401
    events = audit_events(audit_file)
    assert [event["caller"] for event in events] == [
        "initial_access_token",
        "initial_access_token+software_statement",
        "anonymous",
    ]
    assert events[2]["event"] == "CLIENT_REGISTER_ERROR"
    assert events[2]["error"] == "invalid_token"


async def test_no_secret_reaches_the_audit_log(make_gateway: Factory, audit_file: Path) -> None:
    """Every secret the endpoints see (initial access token, software statement, client secret, registration
    access token, Authorization header) fed through every event: none is in the audit output."""
    client, _ = await make_gateway(access=access_config("open"))
    token, statement = signed_token(), software_statement()
    secrets: list[str] = [token, STATIC_TOKEN, statement]
    registered = await (
        await client.post(
            REGISTER,
            json={**CONFIDENTIAL, "software_statement": statement},
            headers={"Authorization": f"Bearer {token}"},
        )
    ).json()
    secrets += [registered["client_secret"], registered["registration_access_token"]]
    path = registered["registration_client_uri"][len(PUBLIC) :]
    auth = {"Authorization": f"Bearer {registered['registration_access_token']}"}
    assert (await client.get(path, headers=auth)).status == 200
    update = {**CONFIDENTIAL, "client_id": registered["client_id"], "client_secret": registered["client_secret"]}
    assert (await client.put(path, json=update, headers=auth)).status == 200
    wrong_secret = "wrong-client-secret-value-1234567890"
    secrets.append(wrong_secret)
    assert (await client.put(path, json={**update, "client_secret": wrong_secret}, headers=auth)).status == 400
    assert (await client.get(path, headers={"Authorization": f"Bearer {STATIC_TOKEN}"})).status == 401
    assert (await client.delete(path, headers=auth)).status == 204
    bad = await client.post(REGISTER, json={"redirect_uris": ["nope"]}, headers={"Authorization": f"Bearer {token}x"})
    assert bad.status in (400, 401)
    secrets.append(token + "x")

    output = text_of(audit_file)
    assert len(output.splitlines()) == 7
    for secret in secrets:
        assert secret not in output
    # the AuditLog itself: a secret-named field is refused, a credential-named value inside is redacted
    log = AuditLog(path=str(audit_file))
    with pytest.raises(TypeError):
        log.emit("register", success=True, client_secret="s3cret")  # type: ignore[arg-type]
    assert "s3cret" not in text_of(audit_file)


def test_user_agent_is_bounded_and_printable() -> None:
    assert bounded_user_agent("a\x00b\nc" + "d" * 500) == ("abc" + "d" * 500)[:256]
    assert bounded_user_agent("") is None


async def test_audit_off(make_gateway: Factory, audit_file: Path) -> None:
    client, _ = await make_gateway(audit={"enabled": False, "path": str(audit_file)})
    assert (await client.post(REGISTER, json=NATIVE)).status == 201
    assert not client.server.app[AUDIT].enabled
    assert audit_events(audit_file) == []


# ------------------------------------------------------------------------------- the management listener


async def test_serve_runs_the_management_listener_beside_the_public_one(gateways: Gateways) -> None:
    """``gateway.server.serve``: the public port never serves ``/metrics``; the management port does, with
    ``/healthz`` and ``/readyz``; both close on stop."""
    client, _ = await gateways.start(provider_document(), limits={"enabled": False}, mode="path-routing")
    settings = client.server.app[SETTINGS]
    adapter = MemoryAdapter(public_url=str(settings.provider_url), issuer_path="/realms/mcp")
    app = create_app(settings, adapter=adapter)
    public, private = free_port(), free_port()
    stop = asyncio.Event()
    server = asyncio.create_task(
        serve(
            app,
            host="127.0.0.1",
            port=public,
            stop=stop,
            management=Listener(app[MANAGEMENT_APP], "127.0.0.1", private),
        )
    )
    try:
        async with aiohttp.ClientSession() as http:
            for _ in range(100):
                try:
                    async with http.get(f"http://127.0.0.1:{private}/readyz") as response:
                        if response.status == 200:
                            break
                except aiohttp.ClientError:
                    pass
                await asyncio.sleep(0.05)
            async with http.get(f"http://127.0.0.1:{public}/metrics") as response:
                assert response.status == 404
            async with http.get(f"http://127.0.0.1:{private}/metrics") as response:
                assert response.status == 200
                assert "dcr_gateway_build_info" in await response.text()
            for path in ("/healthz", "/readyz"):
                async with http.get(f"http://127.0.0.1:{private}{path}") as response:
                    assert response.status == 200
    finally:
        stop.set()
        await asyncio.wait_for(server, 10)
    for port in (public, private):
        with pytest.raises(OSError):
            await asyncio.open_connection("127.0.0.1", port)


def test_serve_with_the_management_port_in_use() -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        result = subprocess.run(
            [sys.executable, "-m", "gateway", "serve"],
            env={
                **{k: v for k, v in os.environ.items() if not k.upper().startswith("DCR_")},
                "DCR_PROVIDER": "memory",
                "DCR_PORT": str(free_port()),
                "DCR_MANAGEMENT__PORT": str(port),
            },
            stdin=subprocess.DEVNULL,
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1
    assert f"127.0.0.1:{port}" in lines[0]
    assert "address already in use" in lines[0]
    assert "DCR_MANAGEMENT__PORT" in lines[0]


def test_serve_help_names_the_management_listener(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        main(["serve", "--help"])
    out = " ".join(capsys.readouterr().out.split())
    assert "--management-port" in out
    assert "http://127.0.0.1:9180" in out
    assert "/metrics" in out


async def test_management_app_shares_the_gateway_apps_state(make_gateway: Factory) -> None:
    """A readiness handler that reads ``request.app[...]`` (the draining state of the shutdown sequence, say) reads
    the same object on the management listener."""
    client, _ = await make_gateway()
    management = TestClient(TestServer(client.server.app[MANAGEMENT_APP], host="127.0.0.1"))
    await management.start_server()
    try:
        assert management.server.app[METRICS] is client.server.app[METRICS]
        assert management.server.app[SETTINGS] is client.server.app[SETTINGS]
    finally:
        await management.close()


def test_local_stack_and_test_gateways_management_ports() -> None:
    """The stack's gateways: 9180 (Hydra) and 9181 (Keycloak); gateways started by tests: a free port each."""
    from devstack import stack
    from devstack.providers import hydra_gateway_env, keycloak_gateway_env

    assert stack.GATEWAY_HYDRA.management_url == "http://127.0.0.1:9180"
    assert stack.GATEWAY_KEYCLOAK.management_url == "http://127.0.0.1:9181"
    assert 9180 in stack.GATEWAY_HYDRA.ports
    assert 9181 in stack.GATEWAY_KEYCLOAK.ports
    ports = {
        hydra_gateway_env(port=1, hydra_public_url="http://h:1", hydra_admin_url="http://h:2")["DCR_MANAGEMENT__PORT"],
        keycloak_gateway_env(port=2, keycloak_url="http://k:1")["DCR_MANAGEMENT__PORT"],
    }
    assert len(ports) == 2
    assert not ports & {"9180", "9181"}
    Settings.model_validate({"management": {"port": int(next(iter(ports)))}})
