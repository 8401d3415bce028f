"""Metrics and the audit log of ``dcr-gateway serve`` in front of the real Hydra and the real Keycloak.

Through each session gateway: a registration (RFC 7591), then an RFC 7592 read, update and delete, and a refused
registration. The management listener's ``/metrics`` (scraped before and after) counts each exactly once, by
issuer, operation, outcome and error code; the provider's admin calls those requests made are counted by
operation with their latency histogram's count moved; the public listener does not serve ``/metrics``. The
gateway's own log holds one audit event per request, with the fields operators route and keep, and no secret.
"""

from __future__ import annotations

import asyncio
import json
from typing import Any

import aiohttp
import pytest
from prometheus_client.parser import text_string_to_metric_families

from devstack.providers import HydraProvider, KeycloakProvider
from tests.integration.conftest import GatewayProcess, hydra_target, keycloak_target
from tests.integration.flows import Target, native_client, register

Samples = dict[tuple[str, tuple[tuple[str, str], ...]], float]

pytestmark = pytest.mark.integration


async def scrape(http: aiohttp.ClientSession, gateway: GatewayProcess) -> Samples:
    async with http.get(f"{gateway.management_url}/metrics") as response:
        assert response.status == 200, await response.text()
        assert response.content_type == "text/plain"
        text = await response.text()
    found: Samples = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            found[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    return found


def value(found: Samples, name: str, **labels: str) -> float:
    return found.get((name, tuple(sorted(labels.items()))), 0.0)


@pytest.fixture(params=["hydra", "keycloak"])
def observed(request: pytest.FixtureRequest) -> tuple[GatewayProcess, Target]:
    if request.param == "hydra":
        gateway: GatewayProcess = request.getfixturevalue("hydra_gateway")
        hydra: HydraProvider = request.getfixturevalue("hydra_provider")
        return gateway, hydra_target(hydra, gateway)
    gateway = request.getfixturevalue("keycloak_gateway")
    keycloak: KeycloakProvider = request.getfixturevalue("keycloak_provider")
    return gateway, keycloak_target(keycloak, gateway.url, gateway.log_path)


async def audit_events(gateway: GatewayProcess, client_id: str, count: int) -> list[dict[str, Any]]:
    """The audit events of ``client_id`` in the gateway's log, once ``count`` are there (the log is written by
    another process: polled briefly)."""
    events: list[dict[str, Any]] = []
    for _ in range(50):
        events = []
        for line in gateway.log_path.read_text(errors="replace").splitlines():
            if '"audience": "audit"' not in line or client_id not in line:
                continue
            event = json.loads(line)
            if event.get("client_id") == client_id:
                events.append(event)
        if len(events) >= count:
            break
        await asyncio.sleep(0.1)
    return events


async def test_registration_and_rfc7592_operations_are_counted_and_audited(
    http: aiohttp.ClientSession, observed: tuple[GatewayProcess, Target]
) -> None:
    gateway, target = observed
    before = await scrape(http, gateway)

    agent = "observability-test/1.0"
    status, registered = await register(http, target, native_client("observed"))
    assert status == 201, registered
    client_id = registered["client_id"]
    token = registered["registration_access_token"]
    uri = registered["registration_client_uri"]
    auth = {"Authorization": f"Bearer {token}", "User-Agent": agent, "X-Request-Id": "obs-read-1"}
    async with http.get(uri, headers=auth) as response:
        assert response.status == 200
    update = {**native_client("observed, renamed"), "client_id": client_id}
    async with http.put(uri, json=update, headers=auth) as response:
        assert response.status == 200, await response.text()
    async with http.delete(uri, headers=auth) as response:
        assert response.status == 204
    async with http.post(target.registration_endpoint, json={"redirect_uris": ["not a uri"]}) as response:
        assert response.status == 400
        assert (await response.json())["error"] == "invalid_redirect_uri"
    async with http.get(f"{gateway.url}/metrics") as response:
        assert "dcr_gateway_" not in await response.text()  # never on the public listener

    after = await scrape(http, gateway)
    assert_counted(before, after, target)
    await assert_audited(gateway, target, client_id, agent)
    assert token not in gateway.log_path.read_text(errors="replace")


def assert_counted(before: Samples, after: Samples, target: Target) -> None:
    """One registration, read, update, delete and refused registration: each counted once, with their admin calls."""
    provider, issuer = target.provider, target.issuer

    def delta(name: str, **labels: str) -> float:
        return value(after, name, **labels) - value(before, name, **labels)

    requests = "dcr_gateway_registration_requests_total"
    for operation in ("register", "read", "update", "delete"):
        assert delta(requests, issuer=issuer, operation=operation, outcome="success", error="") == 1, operation
    assert delta(requests, issuer=issuer, operation="register", outcome="refused", error="invalid_redirect_uri") == 1
    labelled = {dict(labels)["issuer"] for (name, labels) in after if name == requests}
    assert labelled == {issuer}  # configured issuers only

    calls = "dcr_gateway_provider_requests_total"
    for operation, expected in (("create_client", 1), ("update_client", 1), ("delete_client", 1), ("read_client", 3)):
        # read: RFC 7592 section 2 authorizes every GET, PUT and DELETE by reading the client
        assert delta(calls, provider=provider, operation=operation, outcome="success") == expected, operation
    latency = "dcr_gateway_provider_request_duration_seconds_count"
    assert delta(latency, provider=provider, operation="create_client") == 1
    assert delta(latency, provider=provider, operation="read_client") == 3
    assert (
        value(after, "dcr_gateway_provider_request_duration_seconds_sum", provider=provider, operation="create_client")
        > 0
    )
    assert delta("dcr_gateway_http_requests_total", route="registration", code="201") == 1
    assert delta("dcr_gateway_http_requests_total", route="client_configuration", code="204") == 1
    assert value(after, "dcr_gateway_discovery_document_age_seconds", issuer=issuer) >= 0
    assert (("dcr_gateway_discovery_document_age_seconds", (("issuer", issuer),))) in after
    assert value(after, "dcr_gateway_managed_clients", issuer=issuer) >= 0
    assert any(name == "dcr_gateway_build_info" for (name, _) in after)


async def assert_audited(gateway: GatewayProcess, target: Target, client_id: str, agent: str) -> None:
    """The audit events of those requests are in the gateway's own log, with their fields."""
    issuer = target.issuer
    events = await audit_events(gateway, client_id, 4)
    assert [event["event"] for event in events] == ["CLIENT_REGISTER", "CLIENT_INFO", "CLIENT_UPDATE", "CLIENT_DELETE"]
    registration = events[0]
    assert registration["audience"] == "audit"
    assert registration["logger"] == "dcr_gateway.audit"
    assert registration["issuer"] == issuer
    assert registration["source"] == "127.0.0.1"
    assert registration["caller"] == "anonymous"
    assert registration["outcome"] == "success"
    assert registration["status"] == 201
    assert registration["request_id"]
    assert registration["timestamp"]
    read = events[1]
    assert read["caller"] == "registration_access_token"
    assert read["user_agent"] == agent
    assert read["request_id"] == "obs-read-1"
    log = gateway.log_path.read_text(errors="replace")
    refused = [
        json.loads(line)
        for line in log.splitlines()
        if '"CLIENT_REGISTER_ERROR"' in line and '"invalid_redirect_uri"' in line
    ]
    assert refused
    assert refused[-1]["issuer"] == issuer
    assert refused[-1]["status"] == 400
