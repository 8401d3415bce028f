"""The shared helpers of the MCP 2026-07-28 adapter capabilities (:mod:`adapters.bindings`) and the memory
adapter's reference behaviour of them (derived document ids, bounded admissions, audience lists)."""

from __future__ import annotations

import re
from collections.abc import AsyncIterator

import aiohttp
import pytest

from adapters.base import ClientNotFound, DocumentClients, LoopbackRedirects, ResourceBinding, ResourceIndicators
from adapters.bindings import (
    MAX_ADMITTED_REDIRECT_URIS,
    BoundedCache,
    admitted_after,
    admitted_kept,
    derived_document_id,
    document_url_syntax,
    is_http_loopback_ip,
    resource_scope_name,
    without_port,
)
from adapters.hydra.adapter import HydraAdapter
from adapters.keycloak.adapter import KeycloakAdapter
from adapters.memory.adapter import MemoryAdapter
from gateway.testing.adapter_contract import DOCUMENT_METADATA, document_client, new_client, registration
from gateway.testing.mcp_client_bodies import MCP_CLIENT_BODIES


def test_derived_document_ids_are_stable_addressable_and_distinct() -> None:
    url = "https://claude.ai/oauth/claude-code-client-metadata"
    assert derived_document_id(url) == derived_document_id(url)
    assert re.fullmatch(r"cimd-[0-9a-f]{40}", derived_document_id(url))
    assert derived_document_id(url) != derived_document_id(url + "x")


def test_resource_scope_names_are_deterministic_scope_tokens() -> None:
    name = resource_scope_name("http://127.0.0.1:8000/mcp")
    assert re.fullmatch(r"resource-[0-9a-f]{16}", name)
    assert name == resource_scope_name("http://127.0.0.1:8000/mcp")
    assert name != resource_scope_name("http://127.0.0.1:8000/mcp/")


@pytest.mark.parametrize(
    ("url", "ok"),
    [
        ("https://app.example.com/client.json", True),
        ("https://app.example.com/" + "a" * 300, False),
        ("https://app.example.com/a b", False),
        ("https://app.example.com/\u00e9", False),
        ("ftp://app.example.com/x", False),
        ("", False),
    ],
)
def test_document_url_syntax(url: str, ok: bool) -> None:
    assert document_url_syntax(url) is ok


def test_loopback_helpers() -> None:
    assert is_http_loopback_ip("http://127.0.0.1/cb") and is_http_loopback_ip("http://[::1]:9/cb")
    assert is_http_loopback_ip("http://127.0.0.2/cb")  # fosite: net.ParseIP(host).IsLoopback()
    assert not is_http_loopback_ip("http://localhost/cb") and not is_http_loopback_ip("https://127.0.0.1/cb")
    assert without_port("http://[::1]:8080/cb?x=1") == "http://[::1]/cb?x=1"


def test_admissions_are_bounded_oldest_first_and_kept_only_while_they_derive_from_a_registered_uri() -> None:
    admitted: list[str] = []
    uris = [f"http://localhost:{port}/cb" for port in range(5000, 5000 + MAX_ADMITTED_REDIRECT_URIS + 2)]
    for uri in uris:
        admitted = admitted_after(admitted, uri)
    assert admitted == uris[-MAX_ADMITTED_REDIRECT_URIS:]
    assert admitted_after(admitted, uris[-3])[-1] == uris[-3]  # used again: now the newest
    assert admitted_kept(admitted, ["http://localhost/cb"]) == admitted
    assert admitted_kept(admitted, ["http://localhost/other"]) == []
    assert admitted_kept(admitted, [uris[-1], "http://localhost/cb"]) == admitted[:-1]


def test_bounded_cache_drops_the_least_recently_used_and_expired() -> None:
    cache: BoundedCache[str, int] = BoundedCache(size=2, ttl=60)
    cache.put("a", 1)
    cache.put("b", 2)
    assert cache.get("a") == 1
    cache.put("c", 3)  # "b" was used least recently
    assert cache.get("b") is None and cache.get("a") == 1 and cache.get("c") == 3
    cache.forget(lambda key: key == "a")
    assert cache.get("a") is None
    expired: BoundedCache[str, int] = BoundedCache(ttl=-1)
    expired.put("a", 1)
    assert expired.get("a") is None


@pytest.mark.parametrize("adapter_class", [MemoryAdapter, HydraAdapter, KeycloakAdapter])
def test_built_in_adapters_have_the_three_protocols(adapter_class: type) -> None:
    for protocol in (DocumentClients, ResourceIndicators, LoopbackRedirects):
        assert all(hasattr(adapter_class, name) for name in dir(protocol) if not name.startswith("_")), protocol


@pytest.fixture
async def memory() -> AsyncIterator[MemoryAdapter]:
    adapter = MemoryAdapter(public_url="http://provider.internal", derived_document_ids=True)
    async with aiohttp.ClientSession() as session:
        await adapter.start(session)
        yield adapter


async def test_memory_derived_document_ids_are_what_bindings_and_admissions_take(memory: MemoryAdapter) -> None:
    url = "https://app.example.com/client.json"
    stored_id = memory.stored_client_id("default", url)
    assert stored_id == derived_document_id(url)
    await memory.put_document_client("default", document_client(url, registration(DOCUMENT_METADATA, memory)))
    assert await memory.bind_resource("default", stored_id, "https://mcp.example.com") == ResourceBinding(
        audience="https://mcp.example.com"
    )
    assert memory.audiences["default"][stored_id] == ["https://mcp.example.com"]
    await memory.admit_redirect_uri("default", stored_id, "http://localhost:5000/callback")
    assert "http://localhost:5000/callback" in memory.redirect_uris_of("default", stored_id)
    with pytest.raises(ClientNotFound):
        await memory.admit_redirect_uri("default", url, "http://localhost:5000/callback")  # the URL is no stored id
    await memory.delete_document_client("default", url)
    assert memory.redirect_uris_of("default", stored_id) == [] and stored_id not in memory.audiences["default"]


async def test_memory_admissions_stay_bounded(memory: MemoryAdapter) -> None:
    body = {**MCP_CLIENT_BODIES["claude code"], "redirect_uris": ["http://localhost/callback"]}
    client = new_client(registration(body, memory))
    await memory.create_client("default", client)
    for port in range(6000, 6020):
        await memory.admit_redirect_uri("default", client.client_id, f"http://localhost:{port}/callback")
    held = memory.redirect_uris_of("default", client.client_id)
    assert held[0] == "http://localhost/callback" and len(held) == 1 + MAX_ADMITTED_REDIRECT_URIS
    assert held[-1] == "http://localhost:6019/callback"
