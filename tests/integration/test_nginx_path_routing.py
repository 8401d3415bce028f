"""deploy/nginx/ works: the real nginx (Debian's package) in front of path-routing gateways and real providers.

For each provider, nginx runs as a foreground process with its own prefix, pid and logs under the test's
temporary directory (never a system service), rendered from deploy/nginx/path-routing.conf.template with free
ports, and a ``dcr-gateway serve`` with ``DCR_MODE=path-routing`` and ``DCR_PUBLIC_URL`` = nginx's origin:

- Hydra: a Hydra of its own whose issuer is nginx's origin (the session's ``hydra_provider`` has its issuer
  on the port reserved for the front-door gateway fixture), plus the dev login app;
- Keycloak: the session's ``keycloak_provider`` (it follows nginx's ``X-Forwarded-*``, so any port works).

Everything a client does goes through nginx: discovery at every probed location, registration, the
authorization code + PKCE flow with a refresh, and a provider path (JWKS) that nginx must send to the provider.

nginx comes from ``make system-deps`` (run as root); without it this module is skipped.
"""

from __future__ import annotations

import asyncio
import functools
import json
import re
import shutil
import subprocess
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol
from urllib.parse import urlencode, urlsplit

import aiohttp
import pytest

from devstack.process import LOOPBACK, Service, free_port, spawn
from devstack.providers import (
    REPO_ROOT,
    HydraProvider,
    KeycloakProvider,
    start_gateway,
    start_hydra_and_login,
)
from gateway.conformance.headless import hydra_accept_login_and_consent, keycloak_form_login
from gateway.rfc8414.wellknown import discovery_locations
from tests.conftest import providers_mode
from tests.integration.flows import (
    LOOPBACK_CALLBACK,
    WEB_CALLBACK,
    Target,
    authorization_code_flow,
    confidential_client,
    discover,
    native_client,
    register,
)


def _find_nginx() -> str | None:
    found = shutil.which("nginx")
    if found:
        return found
    for candidate in ("/usr/sbin/nginx", "/usr/local/sbin/nginx"):  # sbin is not on every user's PATH
        if Path(candidate).is_file():
            return candidate
    return None


NGINX = _find_nginx()
if NGINX is None:
    pytest.skip(
        "nginx is not installed: `make system-deps` (as root) installs Debian's nginx-light",
        allow_module_level=True,
    )

NGINX_DIR = REPO_ROOT / "deploy" / "nginx"
TEMPLATE = NGINX_DIR / "path-routing.conf.template"
MAIN_CONF = NGINX_DIR / "nginx.conf"
RENDERED_NAME = "dcr-gateway.conf"
"""The name nginx.conf includes."""
_VARIABLE = re.compile(r"\$\{(DCR_NGINX_[A-Z_]+)\}")

HYDRA_READY_TIMEOUT = 60.0
GATEWAY_READY_TIMEOUT = 30.0
NGINX_READY_TIMEOUT = 15.0
INSPECTOR_ORIGIN = "http://localhost:6274"


def render(template: str, values: Mapping[str, str]) -> str:
    """What ``envsubst '${DCR_NGINX_...} ...'`` does with the variables the README lists: only ``${DCR_NGINX_*}``
    placeholders are replaced (nginx's own ``$variables`` stay), and every one must have a value."""
    missing = sorted({name for name in _VARIABLE.findall(template) if name not in values})
    if missing:
        raise KeyError(f"no value for {', '.join(missing)}")
    return _VARIABLE.sub(lambda match: values[match.group(1)], template)


def nginx_values(*, name: str, port: int, gateway_port: int, provider: str, issuer_path: str) -> dict[str, str]:
    return {
        "DCR_NGINX_NAME": name,
        "DCR_NGINX_LISTEN": f"{LOOPBACK}:{port}",
        "DCR_NGINX_SERVER_NAME": LOOPBACK,
        "DCR_NGINX_PUBLIC_SCHEME": "http",
        "DCR_NGINX_PUBLIC_HOST": f"{LOOPBACK}:{port}",
        "DCR_NGINX_PUBLIC_PORT": str(port),
        "DCR_NGINX_GATEWAY": f"{LOOPBACK}:{gateway_port}",
        "DCR_NGINX_PROVIDER": provider,
        "DCR_NGINX_ISSUER_PATHS": issuer_path,
        "DCR_NGINX_REGISTRATION_PATH": "/register",
    }


def start_nginx(run_dir: Path, values: Mapping[str, str], ready_path: str) -> Service:
    """nginx in the foreground with prefix ``run_dir`` (config, pid, logs, temp directories all there)."""
    assert NGINX is not None
    run_dir.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(MAIN_CONF, run_dir / "nginx.conf")
    (run_dir / RENDERED_NAME).write_text(render(TEMPLATE.read_text(), values))
    argv = [NGINX, "-p", f"{run_dir}/", "-c", str(run_dir / "nginx.conf")]
    check = subprocess.run([*argv, "-t"], capture_output=True, text=True, check=False)
    assert check.returncode == 0, f"nginx -t refused the rendered config:\n{check.stderr}"
    origin = f"http://{values['DCR_NGINX_LISTEN']}"
    return spawn(
        "nginx",
        [*argv, "-g", "daemon off;"],
        log_path=run_dir / "nginx.log",
        ready_url=f"{origin}{ready_path}",
    )


def start_path_routing_gateway(name: str, env: dict[str, str], *, public_url: str, log_path: Path) -> Service:
    """``dcr-gateway serve`` in path-routing mode; ready when its own ``/readyz`` is (nginx does not route it)."""
    env = {**env, "DCR_PUBLIC_URL": public_url, "DCR_MODE": "path-routing"}
    return start_gateway(name, env=env, log_path=log_path, ready_path="/readyz")


@dataclass(frozen=True)
class Routed:
    """A provider behind nginx, with a path-routing gateway for the gateway's paths."""

    target: Target
    issuer_path: str
    nginx_dir: Path
    gateway_log: Path
    provider_address: str
    """``host:port`` nginx proxies provider paths to (its access log names the upstream of each request)."""


class _Handle(Protocol):
    """A started service or container (what the session fixtures hold too)."""

    def wait_ready(self, timeout: float) -> float: ...

    def stop(self) -> None: ...


def _stop(services: Sequence[_Handle]) -> None:
    for service in reversed(services):
        service.stop()


def _start_hydra(config: pytest.Config, *, issuer_port: int, log_dir: Path) -> tuple[list[_Handle], HydraProvider]:
    """A Hydra of this module's own (plus the dev login app) whose issuer is ``http://127.0.0.1:{issuer_port}``,
    started the way the session's ``hydra_provider`` is (local processes, or a container with --providers)."""
    if providers_mode(config) == "containers":
        from devstack.containers import HydraInContainer

        container = HydraInContainer(gateway_port=issuer_port, login_port=free_port(), log_dir=log_dir).start()
        try:
            container.wait_ready(HYDRA_READY_TIMEOUT)
        except BaseException:
            container.stop()
            raise
        return [container], container.provider
    services, hydra = start_hydra_and_login(
        public_port=free_port(),
        admin_port=free_port(),
        gateway_port=issuer_port,  # the issuer's port: here nginx's, not a front-door gateway's
        login_port=free_port(),
        log_dir=log_dir,
    )
    try:
        for service in services:
            service.wait_ready(HYDRA_READY_TIMEOUT)
    except BaseException:
        _stop(list(services))
        raise
    return list(services), hydra


@pytest.fixture(scope="module")
def hydra_behind_nginx(pytestconfig: pytest.Config, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Routed]:
    run_dir = tmp_path_factory.mktemp("nginx-hydra")
    nginx_port, gateway_port = free_port(), free_port()
    origin = f"http://{LOOPBACK}:{nginx_port}"
    services, hydra = _start_hydra(pytestconfig, issuer_port=nginx_port, log_dir=run_dir / "hydra")
    try:
        assert hydra.issuer == origin
        env = hydra.gateway_env(gateway_port)
        gateway_log = run_dir / "gateway.log"
        services.append(start_path_routing_gateway("gateway-hydra", env, public_url=origin, log_path=gateway_log))
        services[-1].wait_ready(GATEWAY_READY_TIMEOUT)
        values = nginx_values(
            name="hydra",
            port=nginx_port,
            gateway_port=gateway_port,
            provider=hydra.public_url.removeprefix("http://"),
            issuer_path="",
        )
        services.append(start_nginx(run_dir / "nginx", values, "/.well-known/openid-configuration"))
        services[-1].wait_ready(NGINX_READY_TIMEOUT)
        yield Routed(
            target=Target(
                provider="hydra",
                url=origin,
                issuer=origin,
                registration_endpoint=f"{origin}/register",
                login=functools.partial(hydra_accept_login_and_consent, admin_url=hydra.admin_url),
                flow_scope="openid offline_access",
            ),
            issuer_path="",
            nginx_dir=run_dir / "nginx",
            gateway_log=gateway_log,
            provider_address=values["DCR_NGINX_PROVIDER"],
        )
    finally:
        _stop(services)


@pytest.fixture(scope="module")
def keycloak_behind_nginx(
    keycloak_provider: KeycloakProvider, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Routed]:
    run_dir = tmp_path_factory.mktemp("nginx-keycloak")
    nginx_port, gateway_port = free_port(), free_port()
    origin = f"http://{LOOPBACK}:{nginx_port}"
    issuer_path = f"/realms/{keycloak_provider.realm}"
    services: list[_Handle] = []
    try:
        env = keycloak_provider.gateway_env(gateway_port)
        gateway_log = run_dir / "gateway.log"
        services.append(start_path_routing_gateway("gateway-keycloak", env, public_url=origin, log_path=gateway_log))
        services[-1].wait_ready(GATEWAY_READY_TIMEOUT)
        values = nginx_values(
            name="keycloak",
            port=nginx_port,
            gateway_port=gateway_port,
            provider=keycloak_provider.base_url.removeprefix("http://"),
            issuer_path=issuer_path,
        )
        services.append(start_nginx(run_dir / "nginx", values, f"{issuer_path}/.well-known/openid-configuration"))
        services[-1].wait_ready(NGINX_READY_TIMEOUT)
        yield Routed(
            target=Target(
                provider="keycloak",
                url=origin,
                issuer=f"{origin}{issuer_path}",
                registration_endpoint=f"{origin}{issuer_path}/register",
                login=functools.partial(
                    keycloak_form_login, username=keycloak_provider.username, password=keycloak_provider.password
                ),
                flow_scope="openid",
            ),
            issuer_path=issuer_path,
            nginx_dir=run_dir / "nginx",
            gateway_log=gateway_log,
            provider_address=values["DCR_NGINX_PROVIDER"],
        )
    finally:
        _stop(services)


@pytest.fixture(scope="module", params=["hydra", "keycloak"])
def routed(request: pytest.FixtureRequest) -> Routed:
    value: Routed = request.getfixturevalue(f"{request.param}_behind_nginx")
    return value


# ----------------------------------------------------------------------------------------------- rendering


def test_the_template_renders_completely_and_keeps_nginx_variables() -> None:
    values = nginx_values(name="x", port=1, gateway_port=2, provider="127.0.0.1:3", issuer_path="/realms/mcp")
    rendered = render(TEMPLATE.read_text(), values)
    assert "${" not in rendered
    assert "$remote_addr" in rendered and "$request_id" in rendered
    with pytest.raises(KeyError, match="DCR_NGINX_GATEWAY"):
        render(TEMPLATE.read_text(), {k: v for k, v in values.items() if k != "DCR_NGINX_GATEWAY"})


# ----------------------------------------------------------------------------------------------- discovery


async def test_discovery_at_every_probed_location_comes_from_the_gateway(
    routed: Routed, http: aiohttp.ClientSession
) -> None:
    target = routed.target
    for path in discovery_locations(routed.issuer_path):
        url = f"{target.url}{path}"
        async with http.get(url, headers={"Origin": INSPECTOR_ORIGIN}) as response:
            assert response.status == 200, url
            assert response.headers["Access-Control-Allow-Origin"] in ("*", INSPECTOR_ORIGIN), url
            assert response.headers.get("ETag"), url  # the gateway's cached document
            assert response.headers.get("X-Request-Id"), url  # nginx's $request_id, echoed by the gateway
            document = await response.json()
        assert document["issuer"] == target.issuer, url
        assert document["registration_endpoint"] == target.registration_endpoint, url
        assert "S256" in document["code_challenge_methods_supported"]
        for endpoint in ("authorization_endpoint", "token_endpoint", "jwks_uri"):
            assert document[endpoint].startswith(f"{target.url}/"), (endpoint, document[endpoint])


async def test_unknown_issuer_discovery_gets_the_gateways_404(routed: Routed, http: aiohttp.ClientSession) -> None:
    for path in ("/.well-known/oauth-authorization-server/realms/nope", "/.well-known/openid-configuration/x"):
        async with http.get(f"{routed.target.url}{path}") as response:
            assert response.status == 404, path
            assert (await response.json())["error"] == "not_found", path


async def test_provider_paths_are_served_by_the_provider(routed: Routed, http: aiohttp.ClientSession) -> None:
    async with http.get(f"{routed.target.issuer}/.well-known/openid-configuration") as response:
        jwks_uri = (await response.json())["jwks_uri"]
    async with http.get(jwks_uri) as response:
        assert response.status == 200, jwks_uri
        assert "X-Request-Id" not in response.headers  # not the gateway
        assert (await response.json())["keys"]
    jwks_path = urlsplit(jwks_uri).path
    # nginx logs a request once it is done: wait briefly for the line naming the upstream that answered
    line = await _access_log_line(routed.nginx_dir / "access.log", f'"GET {jwks_path}" 200')
    assert f"upstream={routed.provider_address} " in line, line
    seen = _gateway_paths(routed.gateway_log)
    assert jwks_path not in seen  # the gateway never saw it
    assert any(".well-known" in path for path in seen)  # ... though it logs what it serves


def _gateway_paths(log: Path) -> set[str]:
    """Paths of the gateway's ``http.request`` log lines (JSON lines; the log level is INFO)."""
    paths: set[str] = set()
    for line in log.read_text().splitlines():
        if line.startswith("{"):
            event = json.loads(line)
            if event.get("event") == "http.request":
                paths.add(str(event["path"]))
    return paths


def _find_line(path: Path, needle: str) -> str | None:
    return next((line for line in path.read_text().splitlines() if needle in line), None)


def _tail(path: Path) -> str:
    return path.read_text()[-2000:]


async def _access_log_line(path: Path, needle: str) -> str:
    for _ in range(100):  # up to 5 s
        line = _find_line(path, needle)
        if line is not None:
            return line
        await asyncio.sleep(0.05)
    raise AssertionError(f"no {needle!r} in {path}:\n{_tail(path)}")


async def test_keycloak_issuer_comes_from_nginx_not_from_client_headers(
    keycloak_behind_nginx: Routed, http: aiohttp.ClientSession
) -> None:
    """nginx sets X-Forwarded-* from its configuration: a client cannot move Keycloak's issuer."""
    target = keycloak_behind_nginx.target
    spoofed = {"X-Forwarded-Host": "evil.example", "X-Forwarded-Proto": "https", "Forwarded": "host=evil.example"}
    # a Keycloak document nginx sends to Keycloak itself (the gateway serves only the two discovery kinds)
    async with http.get(f"{target.issuer}/.well-known/uma2-configuration", headers=spoofed) as response:
        assert response.status == 200
        assert (await response.json())["issuer"] == target.issuer
    async with http.get(f"{target.issuer}/.well-known/openid-configuration", headers=spoofed) as response:
        assert (await response.json())["issuer"] == target.issuer


# -------------------------------------------------------------------------------------------- registration


async def test_registration_preflight_through_nginx(routed: Routed, http: aiohttp.ClientSession) -> None:
    async with http.options(
        routed.target.registration_endpoint,
        headers={
            "Origin": INSPECTOR_ORIGIN,
            "Access-Control-Request-Method": "POST",
            "Access-Control-Request-Headers": "content-type",
        },
    ) as response:
        assert response.status == 204
        assert "POST" in response.headers["Access-Control-Allow-Methods"]


async def test_public_client_registers_and_completes_code_flow_with_refresh(
    routed: Routed, http: aiohttp.ClientSession
) -> None:
    status, client = await register(
        http,
        routed.target,
        native_client("nginx native"),
    )
    assert status == 201, client
    assert "client_secret" not in client
    result = await authorization_code_flow(http, routed.target, client, redirect_uri=LOOPBACK_CALLBACK)
    assert result.refreshed["access_token"] != result.tokens["access_token"]


async def test_confidential_client_registers_and_completes_code_flow_with_refresh(
    routed: Routed, http: aiohttp.ClientSession
) -> None:
    status, client = await register(
        http,
        routed.target,
        confidential_client("nginx confidential", "client_secret_basic"),
    )
    assert status == 201, client
    assert client["client_secret"]
    await authorization_code_flow(http, routed.target, client, redirect_uri=WEB_CALLBACK)


async def test_oversized_registration_gets_the_gateways_json_413(routed: Routed, http: aiohttp.ClientSession) -> None:
    huge = b'{"redirect_uris": ["https://a.example/cb"], "client_name": "' + b"x" * 70_000 + b'"}'
    async with http.post(
        routed.target.registration_endpoint, data=huge, headers={"Content-Type": "application/json"}
    ) as response:
        assert response.status == 413
        assert (await response.json())["error"] == "invalid_client_metadata"


async def test_the_authorization_and_token_endpoints_go_through_the_gateway(
    routed: Routed, http: aiohttp.ClientSession
) -> None:
    """Issue 10: nginx sends the provider's authorization and token endpoints to the gateway, which checks them and
    forwards them to the provider, so client metadata documents, RFC 8707 and RFC 9207 work in path-routing mode."""
    document = await discover(http, routed.target)
    assert document["client_id_metadata_document_supported"] is True
    assert document["authorization_response_iss_parameter_supported"] is True
    query = {
        "response_type": "code",
        "client_id": "https://10.1.2.3/client.json",  # a document on a private address: refused by the gateway
        "redirect_uri": "http://127.0.0.1:5000/callback",
        "code_challenge": "x" * 43,
        "code_challenge_method": "S256",
    }
    async with http.get(f"{document['authorization_endpoint']}?{urlencode(query)}", allow_redirects=False) as response:
        assert response.status == 400
        assert response.headers.get("X-Request-Id")  # the gateway answered
        body = await response.json()
    assert body["error"] == "invalid_client"
    assert "public host" in body["error_description"]
    status, client = await register(http, routed.target, native_client("nginx checked endpoints"))
    assert status == 201, client
    await authorization_code_flow(http, routed.target, client, redirect_uri=LOOPBACK_CALLBACK)
    seen = _gateway_paths(routed.gateway_log)
    assert urlsplit(document["authorization_endpoint"]).path in seen
    assert urlsplit(document["token_endpoint"]).path in seen
