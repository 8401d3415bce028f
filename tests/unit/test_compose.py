"""docker-compose.yml, checked without a Docker engine.

It is validated against the Compose Specification's JSON schema, the one Docker Compose validates with
(compose-go's ``schema/compose-spec.json``, fetched through the Go module proxy by deploy/compose/schema.sh and
cached), and mutated copies prove the check refuses what Compose would. Its gateways run the image
``make image`` builds, share their rate limits through the Redis service, publish their management listeners on
127.0.0.1:9180 and :9181 (container port 9180) and have a healthcheck on it. (tests/unit/test_containers.py keeps
its provider images and development values in step with the local stack.)
"""

from __future__ import annotations

import http.server
import json
import os
import re
import subprocess
import sys
import threading
import tomllib
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import jsonschema
import pytest
import yaml

from devstack.process import free_port
from gateway.limits.settings import Backend
from gateway.settings import load_settings

REPO = Path(__file__).resolve().parents[2]
COMPOSE_FILE = REPO / "docker-compose.yml"
SCHEMA_SCRIPT = REPO / "deploy" / "compose" / "schema.sh"
VERSION: str = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["version"]
GATEWAYS = ("gateway-hydra", "gateway-keycloak")
MANAGEMENT_PORT = 9180
"""The management listener's port inside the container (the image's default)."""


@pytest.fixture(scope="module")
def compose_schema() -> dict[str, Any]:
    completed = subprocess.run([str(SCHEMA_SCRIPT), "ensure"], capture_output=True, text=True, timeout=300, check=False)
    assert completed.returncode == 0, completed.stderr
    schema: dict[str, Any] = json.loads(Path(completed.stdout.strip()).read_text())
    return schema


def compose_errors(schema: dict[str, Any], path: Path) -> list[str]:
    """What the Compose Specification's schema finds wrong in the file at ``path`` (YAML merge keys resolved,
    as Compose loads it): one line per error, with its location."""
    document = yaml.safe_load(path.read_text())
    validator = jsonschema.Draft202012Validator(schema)
    return [f"{error.json_path}: {error.message}" for error in validator.iter_errors(document)]


@pytest.fixture(scope="module")
def compose() -> dict[str, Any]:
    loaded: dict[str, Any] = yaml.safe_load(COMPOSE_FILE.read_text())
    return loaded


def test_the_compose_file_follows_the_compose_specification(compose_schema: dict[str, Any]) -> None:
    assert compose_schema["title"] == "Compose Specification"
    jsonschema.Draft202012Validator.check_schema(compose_schema)
    assert compose_errors(compose_schema, COMPOSE_FILE) == []


MUTATIONS: dict[str, tuple[str, str, str]] = {
    # name: (text in docker-compose.yml, what replaces it, where the schema finds the error)
    "a misspelt service key": ("  redis:\n    # ", "  redis:\n    restart_policy: always\n    # ", "$.services.redis"),
    "ports as one string": (
        '    ports:\n      - "127.0.0.1:8180:8180"\n',
        '    ports: "127.0.0.1:8180:8180"\n',
        "$.services.keycloak.ports",
    ),
    "an unknown depends_on condition": (
        "condition: service_healthy",
        "condition: service_ready",
        "$.services['gateway-hydra'].depends_on",
    ),
    "an unknown healthcheck key": (
        "      retries: 10\n    restart",
        "      retries: 10\n      every: 5s\n    restart",
        "$.services.redis.healthcheck",
    ),
    "a list as an environment value": (
        "      DCR_LIMITS__BACKEND: redis\n",
        "      DCR_LIMITS__BACKEND: [redis]\n",
        "$.services['gateway-hydra'].environment",
    ),
    "build as a number": (
        "build: {context: ., dockerfile: Dockerfile}",
        "build: 1",
        "$.services['gateway-hydra'].build",
    ),
    "an unknown top-level key": ("\nservices:\n", "\nservice: {}\nservices:\n", "$"),
}


@pytest.mark.parametrize("mutation", list(MUTATIONS))
def test_the_schema_check_refuses_a_mutated_copy(compose_schema: dict[str, Any], tmp_path: Path, mutation: str) -> None:
    original, replacement, location = MUTATIONS[mutation]
    text = COMPOSE_FILE.read_text()
    assert original in text, f"docker-compose.yml no longer has {original!r}: update the mutation"
    mutated = tmp_path / "docker-compose.yml"
    mutated.write_text(text.replace(original, replacement, 1))
    errors = compose_errors(compose_schema, mutated)
    assert errors, f"{mutation}: the schema found nothing wrong"
    assert any(error.startswith(f"{location}: ") for error in errors), errors


def test_the_gateways_run_the_image_make_image_builds(compose: dict[str, Any]) -> None:
    """``image:`` is the reference ``make image`` tags, ``build:`` builds that same Dockerfile's default target
    (the production image); only the development login app uses the ``devstack`` stage."""
    reference = subprocess.run(
        [str(REPO / "deploy" / "image" / "build.sh"), "ref"], capture_output=True, text=True, check=True
    ).stdout.strip()
    assert reference == f"localhost/dcr-gateway:{VERSION}"
    services = compose["services"]
    for name in GATEWAYS:
        assert services[name]["image"] == reference, name
        assert services[name]["build"] == {"context": ".", "dockerfile": "Dockerfile"}, name
        assert services[name]["read_only"] is True
        assert services[name]["tmpfs"] == ["/tmp"]  # noqa: S108 (the container's tmpfs)
    login = services["login-consent"]
    assert login["build"] == {"context": ".", "dockerfile": "Dockerfile", "target": "devstack"}
    assert login["image"] == f"localhost/dcr-gateway-devstack:{VERSION}"
    assert (REPO / login["build"]["dockerfile"]).is_file()
    assert re.search(r"^FROM gateway AS devstack$", (REPO / "Dockerfile").read_text(), re.M)


def test_the_gateways_share_their_limits_through_the_redis_service(
    compose: dict[str, Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    services = compose["services"]
    redis = services["redis"]
    assert re.fullmatch(r"redis:\d+\.\d+\.\d+(-[a-z0-9]+)?", redis["image"]), "a pinned release of the image"
    assert "ports" not in redis, "only the gateways reach Redis"
    assert redis["healthcheck"]["test"][:2] == ["CMD", "redis-cli"]
    for name in GATEWAYS:
        environment: dict[str, str] = services[name]["environment"]
        assert services[name]["depends_on"]["redis"] == {"condition": "service_healthy"}
        # The gateway's own settings accept the service's environment and point the limiter at the service.
        for variable in [key for key in os.environ if key.startswith("DCR_")]:
            monkeypatch.delenv(variable)
        for key, value in environment.items():
            monkeypatch.setenv(key, str(value))
        settings = load_settings()
        assert settings.limits.backend is Backend.REDIS, name
        assert settings.limits.redis_url is not None
        assert re.fullmatch(r"redis://redis:6379/\d+", settings.limits.redis_url.get_secret_value()), name


def test_published_ports_are_loopback_and_the_management_ports_those_of_the_local_stack(
    compose: dict[str, Any],
) -> None:
    services = compose["services"]
    for name, service in services.items():
        for port in service.get("ports", []):
            assert str(port).startswith("127.0.0.1:"), f"{name} publishes {port} beyond the loopback interface"
    assert f"127.0.0.1:9180:{MANAGEMENT_PORT}" in services["gateway-hydra"]["ports"]
    assert f"127.0.0.1:9181:{MANAGEMENT_PORT}" in services["gateway-keycloak"]["ports"]


class _Health(http.server.BaseHTTPRequestHandler):
    status = 200

    def do_GET(self) -> None:
        self.send_response(self.status if self.path == "/healthz" else 404)
        self.end_headers()

    def log_message(self, format: str, *args: Any) -> None:
        pass


@pytest.fixture
def health_server() -> Iterator[Callable[[int], int]]:
    """``serve(status)``: a local server whose ``/healthz`` answers ``status``; returns its port."""
    servers: list[http.server.ThreadingHTTPServer] = []

    def serve(status: int) -> int:
        handler = type("Handler", (_Health,), {"status": status})
        server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
        threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True).start()
        servers.append(server)
        return server.server_address[1]

    try:
        yield serve
    finally:
        for server in servers:
            server.shutdown()
            server.server_close()


def test_the_gateway_healthcheck_probes_the_management_listener(
    compose: dict[str, Any], health_server: Callable[[int], int]
) -> None:
    """The image has python and no curl: the healthcheck is python's urllib against the management listener's
    ``/healthz``, healthy on 200 only (run here against local servers in place of the container's port)."""
    test = compose["services"]["gateway-hydra"]["healthcheck"]["test"]
    assert compose["services"]["gateway-keycloak"]["healthcheck"]["test"] == test
    assert test[:3] == ["CMD", "python", "-c"]
    code: str = test[3]
    target = f"http://127.0.0.1:{MANAGEMENT_PORT}/healthz"
    assert target in code

    def exit_status(port: int) -> int:
        probe = code.replace(target, f"http://127.0.0.1:{port}/healthz")
        return subprocess.run([sys.executable, "-c", probe], capture_output=True, timeout=30, check=False).returncode

    assert exit_status(health_server(200)) == 0
    assert exit_status(health_server(503)) != 0
    assert exit_status(free_port()) != 0  # nothing listening


def _seconds(duration: str) -> float:
    """A Compose duration (``1m30s``, ``60s``, ``500ms``) in seconds."""
    units = {"h": 3600.0, "m": 60.0, "s": 1.0, "ms": 0.001, "us": 1e-6}
    parts = re.findall(r"(\d+(?:\.\d+)?)(ms|us|h|m|s)", duration)
    assert parts and "".join(number + unit for number, unit in parts) == duration, duration
    return sum(float(number) * units[unit] for number, unit in parts)


def test_the_gateways_get_the_time_their_shutdown_may_take(
    compose: dict[str, Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    """``docker compose stop`` sends SIGKILL after ``stop_grace_period`` (10 s by default). The gateway may take the
    drain, the bound on in-flight requests, and then up to 3 x the provider timeout to settle a cut create (roll it
    back, gateway/server.py): the grace period covers all of it, with the service's environment and the gateway's
    defaults."""
    services = compose["services"]
    for name in GATEWAYS:
        for variable in [key for key in os.environ if key.startswith("DCR_")]:
            monkeypatch.delenv(variable)
        for key, value in services[name]["environment"].items():
            monkeypatch.setenv(key, str(value))
        settings = load_settings()
        worst = settings.shutdown.drain_seconds + settings.shutdown.timeout_seconds + 3 * settings.provider_timeout
        assert "stop_grace_period" in services[name], f"{name}: Docker's default 10 s is below {worst} s"
        assert _seconds(services[name]["stop_grace_period"]) >= worst, name
