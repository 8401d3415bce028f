"""Hydra and Keycloak from their pinned images (testcontainers), for machines with a Docker engine.

The test fixtures use this module when ``DCR_TEST_PROVIDERS=containers`` or ``pytest --providers=containers``;
by default (and in CI) they run the same versions as local processes (:mod:`devstack.providers`). Both
ways give the same :class:`~devstack.providers.HydraProvider` / ``KeycloakProvider``, so every
integration test runs unchanged.

Same configuration as the local processes:

- Hydra ``oryd/hydra:v2.3.0``: ``serve all --dev --sqa-opt-out -c hydra.yml`` with ``DSN=memory`` and the same
  environment (issuer = the origin of the gateway that will front it, login/consent/error URLs of the dev login
  app, PKCE enforced for public clients). The dev login & consent app keeps running as a local process.
- Keycloak ``quay.io/keycloak/keycloak:26.7.3``: ``start`` with the local stack's build options (``--db=dev-file
  --health-enabled=false --metrics-enabled=false``, applied by an automatic build at the first start, since the
  stock image was not built with them) and its start options (``--http-enabled=true --hostname-strict=false
  --proxy-headers=xforwarded --cache=local --import-realm``), realm ``mcp`` imported from
  deploy/keycloak/realm-mcp.json.

Networking: the default bridge network with every listener published on a port Docker picks, bound to
127.0.0.1 when the Docker engine is local (Hydra's admin API has no authentication). No container ever calls
the host: Hydra only *redirects* browsers to the login app's URLs, and the gateway, the login app (which calls
Hydra's admin API) and the tests all run on the host and reach the containers through the published ports.
So there is no host network (Linux-only, and not what Docker Desktop or a remote engine gives) and no
``host.docker.internal``. Hydra's issuer is the gateway's host origin, ``http://127.0.0.1:{gateway_port}``, a
port the fixture reserves on the host. Files (Hydra's config, the realm) are copied into the containers before
they start rather than bind-mounted, so a remote engine (``DOCKER_HOST``) or SELinux labels do not matter.

Containers are created in a background thread (an image pull can take minutes), so Keycloak boots while the
first tests run, as with local processes. Their output goes to the provider's ``log_path``. testcontainers'
Ryuk container removes them if the test process dies without stopping them.
"""

from __future__ import annotations

import contextlib
import threading
import time
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING, Final, Literal, cast

from devstack.process import LOOPBACK, Service, ServiceError, http_ok, tail
from devstack.providers import (
    HYDRA_CONFIG,
    KEYCLOAK_BOOTSTRAP_ADMIN,
    KEYCLOAK_REALM,
    KEYCLOAK_SEARCHABLE_ATTRIBUTES,
    REALM_FILE,
    USER_NAME,
    HydraProvider,
    KeycloakProvider,
    keycloak_provider_for,
    start_login_consent,
)

if TYPE_CHECKING:
    from testcontainers.core.container import DockerContainer

# Keep in step with deploy/providers/versions.env and docker-compose.yml (a unit test checks all three).
HYDRA_IMAGE: Final = "oryd/hydra:v2.3.0"
KEYCLOAK_IMAGE: Final = "quay.io/keycloak/keycloak:26.7.3"

HYDRA_PUBLIC_PORT: Final = 4444
HYDRA_ADMIN_PORT: Final = 4445
KEYCLOAK_HTTP_PORT: Final = 8180
"""Container-side ports (the same as the local stack's and docker-compose.yml's); the host ports are Docker's."""

HYDRA_CONFIG_PATH: Final = "/etc/config/hydra/hydra.yml"
KEYCLOAK_IMPORT_DIR: Final = "/opt/keycloak/data/import"
ANY_ADDRESS: Final = "0.0.0.0"  # noqa: S104 (inside the container; published ports are bound to loopback)

PULL_TIMEOUT: Final = 900.0
"""Seconds to pull, create and start a container, before the readiness timeout starts counting."""

PROVIDERS_ENV: Final = "DCR_TEST_PROVIDERS"
ProvidersMode = Literal["local", "containers"]
PROVIDERS_MODES: Final[tuple[ProvidersMode, ...]] = ("local", "containers")


def providers_mode(option: str | None, environ: Mapping[str, str]) -> ProvidersMode:
    """Where the test fixtures get providers: ``--providers`` if given, else ``$DCR_TEST_PROVIDERS``, else local."""
    value = (option or environ.get(PROVIDERS_ENV, "") or "local").strip().lower()
    for mode in PROVIDERS_MODES:
        if value == mode:
            return mode
    raise ValueError(f"{PROVIDERS_ENV}={value!r}: expected one of {', '.join(PROVIDERS_MODES)}")


# --- what to run: plain data, checked by unit tests without Docker ------------------------------------------


@dataclass(frozen=True)
class ContainerSpec:
    """One provider container: image, command, environment, published ports, files and readiness URL."""

    name: str
    image: str
    command: tuple[str, ...]
    """Arguments to the image's entrypoint (``hydra``, ``kc.sh``)."""
    env: Mapping[str, str]
    ports: tuple[int, ...]
    """Container ports to publish on host ports that Docker picks."""
    files: tuple[tuple[Path, str], ...] = ()
    """Host files copied to container paths before the container starts."""
    ready_port: int = 0
    ready_path: str = "/"
    """Ready when ``GET http://{host}:{mapped ready_port}{ready_path}`` answers 2xx."""


def hydra_spec(*, issuer: str, login_url: str, consent_url: str, error_url: str) -> ContainerSpec:
    """Hydra as :func:`devstack.providers.start_hydra` runs it, listening on all container interfaces."""
    env = {
        "DSN": "memory",
        "SERVE_PUBLIC_HOST": ANY_ADDRESS,
        "SERVE_PUBLIC_PORT": str(HYDRA_PUBLIC_PORT),
        "SERVE_ADMIN_HOST": ANY_ADDRESS,
        "SERVE_ADMIN_PORT": str(HYDRA_ADMIN_PORT),
        "URLS_SELF_ISSUER": issuer,
        "URLS_LOGIN": login_url,
        "URLS_CONSENT": consent_url,
        "URLS_ERROR": error_url,
        "OAUTH2_PKCE_ENFORCED_FOR_PUBLIC_CLIENTS": "true",
    }
    return ContainerSpec(
        name="hydra",
        image=HYDRA_IMAGE,
        command=("serve", "all", "--dev", "--sqa-opt-out", "-c", HYDRA_CONFIG_PATH),
        env=env,
        ports=(HYDRA_PUBLIC_PORT, HYDRA_ADMIN_PORT),
        files=((HYDRA_CONFIG, HYDRA_CONFIG_PATH),),
        ready_port=HYDRA_ADMIN_PORT,
        ready_path="/health/ready",
    )


def keycloak_spec(
    *,
    realm_files: tuple[Path, ...] = (REALM_FILE,),
    ready_realm: str = KEYCLOAK_REALM,
    bootstrap_admin: tuple[str, str] = KEYCLOAK_BOOTSTRAP_ADMIN,
) -> ContainerSpec:
    """Keycloak as :func:`devstack.providers.start_keycloak` runs it (see the module docstring)."""
    command = (
        "start",
        # deploy/providers/keycloak.sh bakes these in with `kc.sh build`; the stock image builds them at start.
        "--db=dev-file",
        "--health-enabled=false",
        "--metrics-enabled=false",
        "--http-enabled=true",
        f"--http-host={ANY_ADDRESS}",
        f"--http-port={KEYCLOAK_HTTP_PORT}",
        "--hostname-strict=false",
        "--proxy-headers=xforwarded",
        "--cache=local",
        "--import-realm",
    )
    return ContainerSpec(
        name="keycloak",
        image=KEYCLOAK_IMAGE,
        command=command,
        env={
            "KC_BOOTSTRAP_ADMIN_USERNAME": bootstrap_admin[0],
            "KC_BOOTSTRAP_ADMIN_PASSWORD": bootstrap_admin[1],
            **KEYCLOAK_SEARCHABLE_ATTRIBUTES,
        },
        ports=(KEYCLOAK_HTTP_PORT,),
        files=tuple((path, f"{KEYCLOAK_IMPORT_DIR}/{path.name}") for path in realm_files),
        ready_port=KEYCLOAK_HTTP_PORT,
        ready_path=f"/realms/{ready_realm}/.well-known/openid-configuration",
    )


# --- running a spec -----------------------------------------------------------------------------------------

_LOCAL_HOSTS = frozenset({"localhost", "127.0.0.1", "::1"})
_EXITED = frozenset({"exited", "dead", "removing", "gone"})
_REAPER_LOCK = threading.Lock()


def _engine_is_local(container: DockerContainer) -> bool:
    """Whether published ports land on this machine's loopback (a local engine, not from inside a container)."""
    from testcontainers.core.config import ConnectionMode

    client = container.get_docker_client()
    return client.get_connection_mode() is ConnectionMode.docker_host and client.host() in _LOCAL_HOSTS


def build_container(spec: ContainerSpec) -> DockerContainer:
    """A not yet started ``DockerContainer`` for ``spec`` (connects to the Docker engine, does not pull)."""
    from testcontainers.core.container import DockerContainer

    container = DockerContainer(spec.image).with_command(list(spec.command)).with_envs(**spec.env)
    bind_loopback = _engine_is_local(container)
    for port in spec.ports:
        if bind_loopback:
            # docker-py takes (host_ip, host_port) for a binding, None letting Docker pick the port;
            # testcontainers types the values as plain ports, hence the cast.
            container.ports[str(port)] = cast("int | None", (LOOPBACK, None))
        else:
            container.with_exposed_ports(port)
    for host_path, container_path in spec.files:
        container.with_copy_into_container(host_path, container_path, 0o644)
    return container


def _remove(container: DockerContainer) -> None:
    with contextlib.suppress(Exception):
        container.stop()


@dataclass(eq=False)
class ProviderContainer:
    """A container for ``spec``: created and started in a background thread, output appended to ``log_path``."""

    spec: ContainerSpec
    log_path: Path
    _container: DockerContainer | None = field(default=None, init=False)
    _error: BaseException | None = field(default=None, init=False)
    _stopping: bool = field(default=False, init=False)
    _lock: threading.Lock = field(default_factory=threading.Lock, init=False)
    _started: threading.Event = field(default_factory=threading.Event, init=False)
    _thread: threading.Thread | None = field(default=None, init=False)
    _started_at: float = field(default_factory=time.monotonic, init=False)

    def start(self) -> ProviderContainer:
        """Begin pulling/creating/starting in the background; return at once."""
        self._started_at = time.monotonic()
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        with self.log_path.open("ab") as out:
            out.write(f"--- {time.strftime('%Y-%m-%d %H:%M:%S')} starting {self.spec.image}\n".encode())
        self._thread = threading.Thread(target=self._run, name=f"container-{self.spec.name}", daemon=True)
        self._thread.start()
        return self

    def _run(self) -> None:
        container: DockerContainer | None = None
        try:
            from testcontainers.core.config import testcontainers_config
            from testcontainers.core.container import Reaper

            # Ryuk is a per-session singleton created on the first start: not twice from two threads.
            with _REAPER_LOCK:
                if not testcontainers_config.ryuk_disabled:
                    Reaper.get_instance()
            container = build_container(self.spec)
            container.start()
        except BaseException as exc:  # reported by wait_started, in the thread that waits
            self._error = exc
            if container is not None:
                _remove(container)
            self._started.set()
            return
        running: DockerContainer | None = None
        with self._lock:
            if not self._stopping:
                self._container, running, container = container, container, None
        self._started.set()
        if container is not None:  # stop() came while the container was starting
            _remove(container)
            return
        if running is not None:
            self._follow_logs(running)

    def _follow_logs(self, container: DockerContainer) -> None:
        """Copy the container's output to ``log_path`` until the container goes away (the container is handed
        over, not read back from ``self``: a stop() right after the start must not lose the output)."""
        with contextlib.suppress(Exception), self.log_path.open("ab") as out:
            for chunk in container.get_wrapped_container().logs(stream=True, follow=True):
                out.write(chunk)
                out.flush()

    def wait_started(self, timeout: float = PULL_TIMEOUT) -> DockerContainer:
        """The started container (image pulled, created, running or about to); raise if that failed."""
        if self._thread is None:
            raise ServiceError(f"{self.spec.name} container was never started")
        if not self._started.wait(timeout):
            raise ServiceError(f"{self.spec.name}: {self.spec.image} not pulled and started within {timeout:.0f} s")
        if self._error is not None:
            raise ServiceError(
                f"{self.spec.name}: could not start {self.spec.image} (containers mode needs a Docker engine; "
                f"--providers=local runs local processes): {self._error}"
            ) from self._error
        container = self._container
        if container is None:
            raise ServiceError(f"{self.spec.name} container was stopped")
        return container

    def address(self, container_port: int) -> tuple[str, int]:
        """Host and port where this machine reaches ``container_port`` of the running container."""
        container = self.wait_started()
        status = self.status()
        if status != "running":
            raise self._failure(f"container is {status}")
        try:
            host = container.get_container_host_ip()
            port = container.get_exposed_port(container_port)
        except Exception as exc:
            raise self._failure(f"no published port for {container_port}: {exc}") from exc
        if host in _LOCAL_HOSTS:
            host = LOOPBACK  # published on 127.0.0.1 (or all addresses): never let "localhost" pick ::1
        return host, port

    def url(self, container_port: int) -> str:
        """``http://host:port`` where this machine reaches ``container_port``."""
        host, port = self.address(container_port)
        return f"http://{host}:{port}"

    def status(self) -> str:
        """Docker's status of the container (``running``, ``exited``...), ``gone`` once removed."""
        container = self._container
        if container is None:
            return "gone"
        try:
            container.reload()
            return container.status
        except Exception:
            return "gone"

    def _failure(self, what: str) -> ServiceError:
        return ServiceError(
            f"{self.spec.name} ({self.spec.image}): {what}; log {self.log_path}:\n{self._last_output()}"
        )

    def _last_output(self, lines: int = 40) -> str:
        """The container's last lines, from Docker while it exists (the log file may lag behind)."""
        container = self._container
        if container is not None:
            with contextlib.suppress(Exception):
                output = container.get_wrapped_container().logs(tail=lines)
                if isinstance(output, bytes):
                    return output.decode(errors="replace")
        return tail(self.log_path, lines)

    def wait_ready(self, timeout: float) -> float:
        """Wait until the readiness URL answers 2xx; return the seconds since :meth:`start`."""
        self.wait_started()
        deadline = time.monotonic() + timeout
        ready_url: str | None = None
        while True:
            status = self.status()
            if status in _EXITED:
                raise self._failure(f"container is {status} before it was ready")
            if status == "running":
                ready_url = ready_url or f"{self.url(self.spec.ready_port)}{self.spec.ready_path}"
                if http_ok(ready_url):
                    return time.monotonic() - self._started_at
            if time.monotonic() > deadline:
                raise self._failure(f"not ready at {ready_url or 'its readiness URL'} within {timeout:.0f} s")
            time.sleep(0.25)

    def stop(self) -> None:
        """Remove the container (or have the starting thread remove it as soon as it exists)."""
        with self._lock:
            self._stopping = True
            container, self._container = self._container, None
        if container is not None:
            _remove(container)
        if self._thread is not None and self._started.is_set():
            self._thread.join(timeout=5)  # the log follower ends with the container (not waiting for a pull)


# --- the providers ------------------------------------------------------------------------------------------


class HydraInContainer:
    """Hydra in a container plus the dev login & consent app as a local process (started once Hydra's admin
    port is known). Satisfies the fixtures' handle: ``wait_ready``, ``stop``, then ``provider``."""

    def __init__(self, *, gateway_port: int, login_port: int, log_dir: Path, subject: str = USER_NAME) -> None:
        self.gateway_port = gateway_port
        self.login_port = login_port
        self.log_dir = log_dir
        self.subject = subject
        self.issuer = f"http://{LOOPBACK}:{gateway_port}"
        self.login_url = f"http://{LOOPBACK}:{login_port}"
        self.spec = hydra_spec(
            issuer=self.issuer,
            login_url=f"{self.login_url}/login",
            consent_url=f"{self.login_url}/consent",
            error_url=f"{self.login_url}/error",
        )
        self.container = ProviderContainer(self.spec, log_dir / "hydra.log")
        self.login: Service | None = None
        self._provider: HydraProvider | None = None

    def start(self) -> HydraInContainer:
        self.container.start()
        return self

    def wait_ready(self, timeout: float) -> float:
        began = time.monotonic()
        self.container.wait_started()
        admin_url = self.container.url(HYDRA_ADMIN_PORT)
        if self.login is None:
            self.login = start_login_consent(
                port=self.login_port,
                hydra_admin_url=admin_url,
                log_path=self.log_dir / "login-consent.log",
                subject=self.subject,
            )
        self.container.wait_ready(timeout)
        self.login.wait_ready(timeout)
        self._provider = HydraProvider(
            public_url=self.container.url(HYDRA_PUBLIC_PORT),
            admin_url=admin_url,
            gateway_port=self.gateway_port,
            issuer=self.issuer,
            login_url=self.login_url,
            subject=self.subject,
            log_path=self.container.log_path,
        )
        return time.monotonic() - began

    @property
    def provider(self) -> HydraProvider:
        if self._provider is None:
            raise ServiceError("hydra: wait_ready() first")
        return self._provider

    def stop(self) -> None:
        if self.login is not None:
            self.login.stop()
        self.container.stop()


class KeycloakInContainer:
    """Keycloak in a container with the ``mcp`` realm imported. ``wait_ready``, ``stop``, then ``provider``."""

    def __init__(self, *, log_dir: Path) -> None:
        self.spec = keycloak_spec()
        self.container = ProviderContainer(self.spec, log_dir / "keycloak.log")
        self._provider: KeycloakProvider | None = None

    def start(self) -> KeycloakInContainer:
        self.container.start()
        return self

    def wait_ready(self, timeout: float) -> float:
        waited = self.container.wait_ready(timeout)
        host, port = self.container.address(KEYCLOAK_HTTP_PORT)
        provider = keycloak_provider_for(port, self.container.log_path)
        self._provider = replace(provider, base_url=f"http://{host}:{port}")
        return waited

    @property
    def provider(self) -> KeycloakProvider:
        if self._provider is None:
            raise ServiceError("keycloak: wait_ready() first")
        return self._provider

    def stop(self) -> None:
        self.container.stop()
