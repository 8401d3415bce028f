"""The testcontainers mode of the provider fixtures, checked without a Docker engine.

The specs must say what the local processes do (same config, same start options, pinned images), and the
testcontainers wiring is driven against a fake Docker client: image, command, environment, loopback-bound
published ports, files copied in, readiness, logs, stop. Starting real containers is
``pytest --providers=containers`` on a machine with Docker.
"""

from __future__ import annotations

import io
import re
import tarfile
import threading
from collections.abc import Iterator, Mapping
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
from testcontainers.core.config import ConnectionMode, testcontainers_config

from devstack import containers, providers
from devstack.containers import (
    HYDRA_IMAGE,
    KEYCLOAK_IMAGE,
    HydraInContainer,
    KeycloakInContainer,
    ProviderContainer,
    build_container,
    hydra_spec,
    keycloak_spec,
    providers_mode,
)
from devstack.process import ServiceError

REPO = Path(__file__).resolve().parents[2]


def versions() -> dict[str, str]:
    text = (REPO / "deploy" / "providers" / "versions.env").read_text()
    return dict(re.findall(r"^([A-Z0-9_]+)=(\S+)$", text, flags=re.MULTILINE))


# --- choosing the mode -------------------------------------------------------------------------------------


def test_option_wins_over_environment_and_local_is_the_default() -> None:
    assert providers_mode(None, {}) == "local"
    assert providers_mode(None, {"DCR_TEST_PROVIDERS": "containers"}) == "containers"
    assert providers_mode(None, {"DCR_TEST_PROVIDERS": " Containers "}) == "containers"
    assert providers_mode("local", {"DCR_TEST_PROVIDERS": "containers"}) == "local"
    assert providers_mode("containers", {}) == "containers"
    with pytest.raises(ValueError, match="DCR_TEST_PROVIDERS='docker'"):
        providers_mode(None, {"DCR_TEST_PROVIDERS": "docker"})


def test_the_pytest_option_is_registered_and_picks_the_starters(pytestconfig: pytest.Config) -> None:
    from tests import conftest

    assert pytestconfig.getoption("providers") in (None, "local", "containers")

    def config(option: str | None) -> Any:
        return SimpleNamespace(getoption=lambda name: option if name == "providers" else None)

    assert conftest.providers_mode(config("containers")) == "containers"
    assert conftest._starters(config("containers"))["keycloak_provider"] is conftest._start_keycloak_container
    assert conftest._starters(config("local"))["hydra_provider"] is conftest._start_hydra


def test_a_bad_environment_value_is_a_usage_error(monkeypatch: pytest.MonkeyPatch) -> None:
    from tests import conftest

    monkeypatch.setenv("DCR_TEST_PROVIDERS", "podman")
    with pytest.raises(pytest.UsageError, match="expected one of local, containers"):
        conftest.providers_mode(SimpleNamespace(getoption=lambda name: None))  # type: ignore[arg-type]


# --- same images and configuration as the local processes and docker-compose.yml ---------------------------


def test_images_are_pinned_to_the_versions_of_the_local_stack_and_compose() -> None:
    pinned = versions()
    assert HYDRA_IMAGE == f"oryd/hydra:{pinned['HYDRA_VERSION']}" == "oryd/hydra:v2.3.0"
    assert (
        KEYCLOAK_IMAGE
        == f"quay.io/keycloak/keycloak:{pinned['KEYCLOAK_VERSION']}"
        == ("quay.io/keycloak/keycloak:26.7.3")
    )
    compose_images = set(re.findall(r"^\s+image:\s*(\S+)\s*$", (REPO / "docker-compose.yml").read_text(), re.M))
    assert {HYDRA_IMAGE, KEYCLOAK_IMAGE} <= compose_images


def test_compose_gateways_carry_the_local_stacks_development_values() -> None:
    """docker-compose.yml's gateways get the same development limits and initial access token hash as the local
    stack's, so the conformance suite behaves the same against either."""
    from devstack.providers import DEVELOPMENT_ACCESS_ENV, DEVELOPMENT_LIMITS_ENV

    compose = (REPO / "docker-compose.yml").read_text()
    anchor = compose.split("x-development-env: &development-env", 1)[1].split("\n\n", 1)[0]
    declared = dict(re.findall(r"^\s+(DCR_[A-Z_]+):\s*'(.*)'\s*$", anchor, re.M))
    assert declared == {**DEVELOPMENT_LIMITS_ENV, **DEVELOPMENT_ACCESS_ENV}
    assert compose.count("<<: *development-env") == 2


def _captured_spawn(captured: dict[str, Any]) -> Any:
    def spawn(name: str, argv: list[str], **kwargs: Any) -> None:
        captured.update(name=name, argv=list(argv), **kwargs)

    return spawn


def test_hydra_spec_is_the_local_hydra_on_all_container_interfaces(monkeypatch: pytest.MonkeyPatch) -> None:
    captured: dict[str, Any] = {}
    monkeypatch.setattr(providers, "spawn", _captured_spawn(captured))
    urls = {
        "issuer": "http://127.0.0.1:18080",
        "login_url": "http://127.0.0.1:18090/login",
        "consent_url": "http://127.0.0.1:18090/consent",
        "error_url": "http://127.0.0.1:18090/error",
    }
    providers.start_hydra(public_port=4444, admin_port=4445, log_path=Path("unused.log"), binary=Path("hydra"), **urls)
    local_env: Mapping[str, str] = captured["env"]

    spec = hydra_spec(**urls)
    assert spec.image == "oryd/hydra:v2.3.0"
    differs = {"SERVE_PUBLIC_HOST", "SERVE_ADMIN_HOST"}
    assert {k: v for k, v in spec.env.items() if k not in differs} == {
        k: v for k, v in local_env.items() if k not in differs
    }
    assert spec.env["DSN"] == "memory"
    assert spec.env["URLS_SELF_ISSUER"] == "http://127.0.0.1:18080"
    assert spec.env["SERVE_PUBLIC_HOST"] == spec.env["SERVE_ADMIN_HOST"] == containers.ANY_ADDRESS
    assert local_env["SERVE_PUBLIC_HOST"] == "127.0.0.1"
    # `hydra serve all --dev --sqa-opt-out -c <config>`: the image's entrypoint is `hydra`.
    assert list(spec.command[:-1]) == captured["argv"][1:-1]
    assert spec.files == ((providers.HYDRA_CONFIG, spec.command[-1]),)
    assert spec.ports == (4444, 4445)
    assert (spec.ready_port, spec.ready_path) == (4445, "/health/ready")


def test_keycloak_spec_is_the_local_keycloak_with_its_build_options(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    captured: dict[str, Any] = {}
    monkeypatch.setattr(providers, "spawn", _captured_spawn(captured))
    monkeypatch.setattr(providers, "ensure_keycloak", lambda: tmp_path / "dist")
    monkeypatch.setattr(providers, "java_home", lambda: tmp_path / "jdk")
    monkeypatch.setattr(providers, "prepare_keycloak_home", lambda *args: None)
    providers.start_keycloak(http_port=8180, home=tmp_path / "home", log_path=tmp_path / "kc.log")
    local_argv: list[str] = captured["argv"]

    spec = keycloak_spec()
    assert spec.image == "quay.io/keycloak/keycloak:26.7.3"
    assert spec.command[0] == local_argv[1] == "start"
    local_options = set(local_argv[2:]) - {"--optimized", "--http-host=127.0.0.1"}
    container_options = set(spec.command[1:]) - {"--http-host=0.0.0.0"}
    build_script = (REPO / "deploy" / "providers" / "keycloak.sh").read_text()
    listed = re.search(r"^build_options=\((.*)\)$", build_script, re.M).group(1)  # type: ignore[union-attr]
    build_options = set(listed.replace('"--db=$db"', "--db=dev-file").split())  # the default database
    assert container_options == local_options | build_options
    assert "--import-realm" in spec.command
    assert {k: v for k, v in captured["env"].items() if k.startswith("KC_")} == dict(spec.env)
    assert spec.files == ((providers.REALM_FILE, "/opt/keycloak/data/import/realm-mcp.json"),)
    assert (spec.ready_port, spec.ready_path) == (8180, "/realms/mcp/.well-known/openid-configuration")


# --- the testcontainers wiring, against a fake Docker client ----------------------------------------------


class FakeContainer:
    def __init__(self, image: str, command: Any, environment: dict[str, str], ports: dict[str, Any]) -> None:
        self.image, self.command, self.environment, self.ports = image, command, environment, ports
        self.id = self.short_id = "c0ffee"
        self.status = "created"
        self.files: dict[str, tuple[bytes, int]] = {}
        self.removed = False
        self.exit_on_start = False

    def put_archive(self, path: str, data: bytes) -> bool:
        with tarfile.open(fileobj=io.BytesIO(data)) as tar:
            for member in tar.getmembers():
                extracted = tar.extractfile(member)
                assert extracted is not None
                self.files[f"{path.rstrip('/')}/{member.name.lstrip('/')}"] = (extracted.read(), member.mode)
        return True

    def start(self) -> None:
        self.status = "exited" if self.exit_on_start else "running"

    def reload(self) -> None:
        if self.removed:
            raise LookupError("no such container")

    def logs(self, stream: bool = False, follow: bool = False, **_: Any) -> Any:
        lines = [b"provider says hello\n", b"provider is listening\n"]
        return iter(lines) if stream else b"".join(lines)

    def remove(self, force: bool = False, v: bool = False) -> None:
        self.removed = True


class FakeDocker:
    """Stands in for testcontainers' DockerClient: records containers, maps every port to ``mapped_port``."""

    mapped_port = 0
    created: list[FakeContainer] = []  # noqa: RUF012 (reset per test by the fixture)
    fail_create: Exception | None = None
    exit_on_start = False

    def __init__(self, **_: Any) -> None:
        self.client = SimpleNamespace(close=lambda: None)

    def create(
        self, image: str, command: Any = None, environment: Any = None, ports: Any = None, **kwargs: Any
    ) -> FakeContainer:
        if FakeDocker.fail_create is not None:
            raise FakeDocker.fail_create
        container = FakeContainer(image, command, dict(environment or {}), dict(ports or {}))
        container.exit_on_start = FakeDocker.exit_on_start
        FakeDocker.created.append(container)
        return container

    def start(self, container: FakeContainer) -> None:
        container.start()

    def get_connection_mode(self) -> ConnectionMode:
        return ConnectionMode.docker_host

    def host(self) -> str:
        return "localhost"

    def port(self, container_id: str, port: int) -> str:
        return str(FakeDocker.mapped_port)


class _Ready(BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.end_headers()
        self.wfile.write(b"{}")

    def log_message(self, format: str, *args: Any) -> None:
        pass


@pytest.fixture
def fake_docker(monkeypatch: pytest.MonkeyPatch) -> Iterator[type[FakeDocker]]:
    """A fake engine whose every published port is a local HTTP server answering 200."""
    import testcontainers.core.container as tc_container

    server = ThreadingHTTPServer(("127.0.0.1", 0), _Ready)
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    monkeypatch.setattr(tc_container, "DockerClient", FakeDocker)
    monkeypatch.setattr(testcontainers_config, "ryuk_disabled", True)
    monkeypatch.setattr(FakeDocker, "mapped_port", server.server_address[1])
    monkeypatch.setattr(FakeDocker, "created", [])
    monkeypatch.setattr(FakeDocker, "fail_create", None)
    monkeypatch.setattr(FakeDocker, "exit_on_start", False)
    try:
        yield FakeDocker
    finally:
        server.shutdown()
        server.server_close()


def test_build_container_pins_image_command_env_files_and_binds_ports_to_loopback(
    fake_docker: type[FakeDocker],
) -> None:
    spec = keycloak_spec()
    container = build_container(spec)
    assert container.image == "quay.io/keycloak/keycloak:26.7.3"
    assert container.env == dict(spec.env)
    bindings: dict[str, object] = dict(container.ports)  # docker-py's (host_ip, host_port) form
    assert bindings == {"8180": ("127.0.0.1", None)}
    container.start()
    created = fake_docker.created[0]
    assert created.command == list(spec.command)
    content, mode = created.files["/opt/keycloak/data/import/realm-mcp.json"]
    assert content == providers.REALM_FILE.read_bytes()
    assert mode == 0o644
    container.stop()
    assert created.removed


def test_keycloak_in_container_yields_the_provider_on_the_published_port(
    fake_docker: type[FakeDocker], tmp_path: Path
) -> None:
    keycloak = KeycloakInContainer(log_dir=tmp_path).start()
    try:
        keycloak.wait_ready(10)
        provider = keycloak.provider
    finally:
        keycloak.stop()
    assert provider.base_url == f"http://127.0.0.1:{fake_docker.mapped_port}"
    assert provider.issuer == f"http://127.0.0.1:{fake_docker.mapped_port}/realms/mcp"
    assert (provider.realm, provider.username, provider.password) == ("mcp", "alice", "alice")
    assert provider.admin_client_id == "dcr-gateway"
    assert provider.log_path == tmp_path / "keycloak.log"
    assert fake_docker.created[0].removed
    assert "provider is listening" in provider.log_path.read_text()


class FakeLogin:
    def __init__(self, **kwargs: Any) -> None:
        self.kwargs = kwargs
        self.stopped = False

    def wait_ready(self, timeout: float) -> float:
        return 0.0

    def stop(self) -> None:
        self.stopped = True


def test_hydra_in_container_keeps_the_gateway_origin_as_issuer_and_the_login_app_local(
    fake_docker: type[FakeDocker], monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    logins: list[FakeLogin] = []

    def start_login_consent(**kwargs: Any) -> FakeLogin:
        logins.append(FakeLogin(**kwargs))
        return logins[-1]

    monkeypatch.setattr(containers, "start_login_consent", start_login_consent)
    hydra = HydraInContainer(gateway_port=18080, login_port=18090, log_dir=tmp_path).start()
    try:
        hydra.wait_ready(10)
        provider = hydra.provider
    finally:
        hydra.stop()
    published = f"http://127.0.0.1:{fake_docker.mapped_port}"
    assert provider.issuer == "http://127.0.0.1:18080"
    assert provider.gateway_port == 18080
    assert (provider.public_url, provider.admin_url) == (published, published)
    assert provider.login_url == "http://127.0.0.1:18090"
    created = fake_docker.created[0]
    assert created.image == "oryd/hydra:v2.3.0"
    assert created.environment["URLS_SELF_ISSUER"] == "http://127.0.0.1:18080"
    assert created.environment["URLS_LOGIN"] == "http://127.0.0.1:18090/login"
    assert created.ports == {"4444": ("127.0.0.1", None), "4445": ("127.0.0.1", None)}
    assert "/etc/config/hydra/hydra.yml" in created.files
    assert logins[0].kwargs["port"] == 18090
    assert logins[0].kwargs["hydra_admin_url"] == published
    assert logins[0].stopped
    assert created.removed


def test_a_container_that_exits_fails_with_its_log(fake_docker: type[FakeDocker], tmp_path: Path) -> None:
    fake_docker.exit_on_start = True
    keycloak = KeycloakInContainer(log_dir=tmp_path).start()
    try:
        with pytest.raises(ServiceError, match=r"(?s)is exited before it was ready.*provider says hello"):
            keycloak.wait_ready(10)
    finally:
        keycloak.stop()


def test_a_failed_start_is_reported_where_the_fixture_waits(fake_docker: type[FakeDocker], tmp_path: Path) -> None:
    fake_docker.fail_create = RuntimeError("pull access denied")
    container = ProviderContainer(keycloak_spec(), tmp_path / "kc.log").start()
    with pytest.raises(
        ServiceError, match=re.escape("could not start quay.io/keycloak/keycloak:26.7.3") + ".*: pull access denied"
    ):
        container.wait_ready(10)
    container.stop()


def test_stop_before_the_container_exists_still_removes_it(
    fake_docker: type[FakeDocker], monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    gate = threading.Event()
    original = FakeDocker.create

    def slow_create(self: FakeDocker, *args: Any, **kwargs: Any) -> FakeContainer:
        gate.wait(5)
        return original(self, *args, **kwargs)

    monkeypatch.setattr(FakeDocker, "create", slow_create)
    container = ProviderContainer(keycloak_spec(), tmp_path / "kc.log").start()
    container.stop()  # while the (fake) image is still being pulled: returns at once
    gate.set()
    with pytest.raises(ServiceError, match="stopped"):
        container.wait_started(5)
    assert container._thread is not None
    container._thread.join(5)
    assert fake_docker.created[0].removed
