"""The Client ID Metadata Document host (gateway/conformance/cimd_host.py, devstack/cimd_server.py): what it serves
over https with its development CA, what it refuses (404), and the local stack's wiring of it into both gateways."""

from __future__ import annotations

import asyncio
import json
import ssl
from collections.abc import AsyncIterator
from pathlib import Path

import aiohttp
import pytest

from devstack import stack
from devstack.cimd_server import ca_file, docs_dir, start_cimd_server, tls_ready
from devstack.process import LOOPBACK, free_port
from gateway.conformance.cimd_host import RunningHost, start_host
from gateway.conformance.tls import development_ca, server_certificate

DOCUMENT = {"client_id": "placeholder", "client_name": "t", "redirect_uris": ["http://127.0.0.1/cb"]}


@pytest.fixture
async def host(tmp_path: Path) -> AsyncIterator[RunningHost]:
    certificate, key = server_certificate(tmp_path / "tls", ["localhost", "127.0.0.1"])
    running = await start_host(
        tmp_path / "docs", host=LOOPBACK, port=free_port(), certificate=certificate, key=key, public_host="localhost"
    )
    yield running
    await running.close()


def trusting(tmp_path: Path) -> ssl.SSLContext:
    return ssl.create_default_context(cafile=str(tmp_path / "tls" / "ca.pem"))


async def get(url: str, context: ssl.SSLContext, method: str = "GET") -> tuple[int, dict[str, str], bytes]:
    async with (
        aiohttp.ClientSession() as session,
        session.request(method, url, ssl=context, allow_redirects=False) as response,
    ):
        return response.status, dict(response.headers), await response.read()


async def test_a_json_file_is_served_as_application_json_over_verified_https(host: RunningHost, tmp_path: Path) -> None:
    url = f"{host.base_url}/client.json"
    body = json.dumps({**DOCUMENT, "client_id": url}).encode()
    (host.directory / "client.json").write_bytes(body)
    status, headers, served = await get(url, trusting(tmp_path))
    assert (status, served) == (200, body)
    assert headers["Content-Type"] == "application/json"
    status, headers, served = await get(url, trusting(tmp_path), "HEAD")
    assert status == 200 and served == b""
    # the bytes as they are: a negative case may serve something that is not JSON
    (host.directory / "broken.json").write_bytes(b"<html>not json</html>")
    status, _, served = await get(f"{host.base_url}/broken.json", trusting(tmp_path))
    assert (status, served) == (200, b"<html>not json</html>")


async def test_the_certificate_chains_only_to_the_development_ca(host: RunningHost, tmp_path: Path) -> None:
    (host.directory / "client.json").write_text("{}")
    with pytest.raises(aiohttp.ClientConnectorCertificateError):
        await get(f"{host.base_url}/client.json", ssl.create_default_context())
    # the same CA stays (a gateway configured with it keeps trusting later certificates)
    assert development_ca(tmp_path / "tls")[0].read_bytes() == (tmp_path / "tls" / "ca.pem").read_bytes()


@pytest.mark.parametrize(
    "path",
    [
        "/",
        "/missing.json",
        "/client.txt",
        "/.hidden.json",
        "/docs/client.json",
        "/..%2Fsecret.json",
        "/%2e%2e/secret.json",
        "/../secret.json",
        "/client.json/",
        "/outside.json",
    ],
)
async def test_everything_else_is_404_without_a_listing_or_a_way_out(
    host: RunningHost, tmp_path: Path, path: str
) -> None:
    (host.directory / "client.json").write_text("{}")
    (host.directory / "client.txt").write_text("{}")
    (host.directory / ".hidden.json").write_text("{}")
    (tmp_path / "secret.json").write_text('{"secret": true}')
    (host.directory / "outside.json").symlink_to(tmp_path / "secret.json")
    status, _, served = await get(host.base_url + path, trusting(tmp_path))
    assert status == 404, path
    assert b"secret" not in served and b"client.json" not in served


async def test_a_redirect_file_answers_302_without_serving_a_document(host: RunningHost, tmp_path: Path) -> None:
    (host.directory / "moved.json.redirect").write_text("https://elsewhere.example/client.json\n")
    status, headers, _ = await get(f"{host.base_url}/moved.json", trusting(tmp_path))
    assert status == 302
    assert headers["Location"] == "https://elsewhere.example/client.json"


async def test_the_development_server_process_serves_its_docs_directory(tmp_path: Path) -> None:
    port = free_port()
    root = tmp_path / "cimd"
    service = start_cimd_server(port=port, root=root, log_path=tmp_path / "cimd.log")
    try:
        await asyncio.to_thread(service.wait_ready, 30)
        assert tls_ready(port, ca_file(root))
        (docs_dir(root) / "app.json").write_text('{"client_name": "app"}')
        context = ssl.create_default_context(cafile=str(ca_file(root)))
        status, headers, served = await get(f"https://localhost:{port}/app.json", context)
        assert (status, served) == (200, b'{"client_name": "app"}')
        assert headers["Content-Type"] == "application/json"
        status, _, _ = await get(f"https://localhost:{port}/", context)
        assert status == 404
    finally:
        service.stop()
    assert not tls_ready(port, ca_file(root))


def test_the_stack_serves_documents_on_8443_and_both_gateways_trust_them() -> None:
    """Issue 10 item 6: the stack's document host and what both gateways are told about it and the resource."""
    assert stack.CIMD_PORT == 8443
    assert stack.CIMD_URL == "https://localhost:8443"
    assert stack.CIMD_ROOT == stack.STACK_DIR / "cimd"
    assert stack.CIMD in stack.COMPONENTS
    assert stack.COMPONENTS.index(stack.CIMD) < stack.COMPONENTS.index(stack.GATEWAY_HYDRA)
    assert stack.DOCUMENT_TRUST.env() == {
        "DCR_CIMD__DEVELOPMENT_ORIGINS": "https://localhost:8443",
        "DCR_CIMD__CA_FILE": str(stack.STACK_DIR / "cimd" / "ca.pem"),
        "DCR_RESOURCES__PROTECTED": "http://127.0.0.1:8000/mcp",
    }
    # the existing contract is unchanged
    assert (stack.HYDRA_GATEWAY_PORT, stack.KEYCLOAK_GATEWAY_PORT, stack.KEYCLOAK_PORT) == (8080, 8081, 8180)
    assert (stack.HYDRA_PUBLIC_PORT, stack.HYDRA_ADMIN_PORT, stack.LOGIN_PORT) == (4444, 4445, 8090)


def test_both_stack_gateways_are_started_with_the_document_trust(monkeypatch: pytest.MonkeyPatch) -> None:
    seen: dict[str, dict[str, str]] = {}

    def fake_start(name: str, *, env: dict[str, str], log_path: Path | None) -> object:
        seen[name] = env
        return object()

    monkeypatch.setattr(stack, "start_gateway", fake_start)
    stack._gateway_hydra(None)
    stack._gateway_keycloak(None)
    for env in seen.values():
        assert env["DCR_CIMD__DEVELOPMENT_ORIGINS"] == "https://localhost:8443"
        assert env["DCR_CIMD__CA_FILE"].endswith("/.stack/cimd/ca.pem")
        assert env["DCR_RESOURCES__PROTECTED"] == "http://127.0.0.1:8000/mcp"
    assert set(seen) == {"gateway-hydra", "gateway-keycloak"}
