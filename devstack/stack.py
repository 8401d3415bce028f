"""The local development stack: ``make stack-up``, ``make stack-down``, ``make run``.

    python -m devstack.stack up       start what is not running yet, return once everything is ready
    python -m devstack.stack down     stop everything ``up`` started
    python -m devstack.stack status   what runs, where
    python -m devstack.stack run      Hydra + dev login app + a gateway in the foreground; Ctrl-C stops

The stack (fixed ports, loopback only):

    Hydra              public http://127.0.0.1:4444, admin http://127.0.0.1:4445, issuer http://127.0.0.1:8080
    dev login app      http://127.0.0.1:8090 (Hydra's login & consent URLs; DEVELOPMENT ONLY)
    Keycloak           http://127.0.0.1:8180, realm mcp, user alice/alice
    gateway (Hydra)    http://127.0.0.1:8080, management (/metrics, /healthz, /readyz) http://127.0.0.1:9180
    gateway (Keycloak) http://127.0.0.1:8081, issuer http://127.0.0.1:8081/realms/mcp, management http://127.0.0.1:9181
    CIMD documents     https://localhost:8443/NAME.json for each NAME.json in .stack/cimd/docs/ (CA .stack/cimd/ca.pem)

Both gateways trust that CA and that one loopback origin as a Client ID Metadata Document host (DEVELOPMENT ONLY),
and protect the RFC 8707 resource http://127.0.0.1:8000/mcp (any other ``resource`` is ``invalid_target``).

Pids and logs live under ``.stack/`` in the repository (``<service>.pid``, ``<service>.log``); Keycloak gets a
fresh home and database there at every start, Hydra keeps its data in memory.
"""

from __future__ import annotations

import argparse
import json
import signal
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from types import FrameType

from devstack.cimd_server import ca_file, start_cimd_server, tls_ready
from devstack.cimd_server import origin as cimd_origin
from devstack.process import (
    LOOPBACK,
    Service,
    ServiceError,
    cmdline,
    http_ok,
    pid_alive,
    port_in_use,
    tail,
    terminate_group,
)
from devstack.providers import (
    REPO_ROOT,
    DocumentTrust,
    hydra_gateway_env,
    keycloak_gateway_env,
    start_gateway,
    start_hydra,
    start_keycloak,
    start_login_consent,
)

STACK_DIR = REPO_ROOT / ".stack"

HYDRA_PUBLIC_PORT = 4444
HYDRA_ADMIN_PORT = 4445
HYDRA_GATEWAY_PORT = 8080
KEYCLOAK_GATEWAY_PORT = 8081
HYDRA_GATEWAY_MANAGEMENT_PORT = 9180
KEYCLOAK_GATEWAY_MANAGEMENT_PORT = 9181
LOGIN_PORT = 8090
KEYCLOAK_PORT = 8180
CIMD_PORT = 8443

HYDRA_PUBLIC_URL = f"http://{LOOPBACK}:{HYDRA_PUBLIC_PORT}"
HYDRA_ADMIN_URL = f"http://{LOOPBACK}:{HYDRA_ADMIN_PORT}"
HYDRA_ISSUER = f"http://{LOOPBACK}:{HYDRA_GATEWAY_PORT}"
LOGIN_URL = f"http://{LOOPBACK}:{LOGIN_PORT}"
KEYCLOAK_URL = f"http://{LOOPBACK}:{KEYCLOAK_PORT}"
KEYCLOAK_ISSUER = f"http://{LOOPBACK}:{KEYCLOAK_GATEWAY_PORT}/realms/mcp"
CIMD_ROOT = STACK_DIR / "cimd"
CIMD_URL = cimd_origin(CIMD_PORT)
PROTECTED_RESOURCE = f"http://{LOOPBACK}:8000/mcp"
"""The RFC 8707 resource both gateways protect: an MCP server on port 8000 (the MCP SDKs' examples' default)."""
DOCUMENT_TRUST = DocumentTrust(
    development_origins=(CIMD_URL,), ca_file=ca_file(CIMD_ROOT), protected_resources=(PROTECTED_RESOURCE,)
)

REGISTER_EXAMPLE = (
    f"curl -s -X POST {HYDRA_ISSUER}/register -H 'Content-Type: application/json' "
    """-d '{"redirect_uris":["http://127.0.0.1:3000/callback"],"""
    """"token_endpoint_auth_method":"none","client_name":"demo"}'"""
)

READY_TIMEOUT = {"keycloak": 240.0}
DEFAULT_READY_TIMEOUT = 60.0


def _hydra(log: Path | None) -> Service:
    return start_hydra(
        public_port=HYDRA_PUBLIC_PORT,
        admin_port=HYDRA_ADMIN_PORT,
        issuer=HYDRA_ISSUER,
        login_url=f"{LOGIN_URL}/login",
        consent_url=f"{LOGIN_URL}/consent",
        error_url=f"{LOGIN_URL}/error",
        log_path=log or STACK_DIR / "hydra.log",
    )


def _login(log: Path | None) -> Service:
    return start_login_consent(
        port=LOGIN_PORT, hydra_admin_url=HYDRA_ADMIN_URL, log_path=log or STACK_DIR / "login-consent.log"
    )


def _keycloak(log: Path | None) -> Service:
    return start_keycloak(
        http_port=KEYCLOAK_PORT, home=STACK_DIR / "keycloak-home", log_path=log or STACK_DIR / "keycloak.log"
    )


def _cimd(log: Path | None) -> Service:
    return start_cimd_server(port=CIMD_PORT, root=CIMD_ROOT, log_path=log or STACK_DIR / "cimd-docs.log")


def _gateway_hydra(log: Path | None) -> Service:
    env = hydra_gateway_env(
        port=HYDRA_GATEWAY_PORT,
        hydra_public_url=HYDRA_PUBLIC_URL,
        hydra_admin_url=HYDRA_ADMIN_URL,
        documents=DOCUMENT_TRUST,
        management_port=HYDRA_GATEWAY_MANAGEMENT_PORT,
    )
    return start_gateway("gateway-hydra", env=env, log_path=log)


def _gateway_keycloak(log: Path | None) -> Service:
    env = keycloak_gateway_env(
        port=KEYCLOAK_GATEWAY_PORT,
        keycloak_url=KEYCLOAK_URL,
        documents=DOCUMENT_TRUST,
        management_port=KEYCLOAK_GATEWAY_MANAGEMENT_PORT,
    )
    return start_gateway("gateway-keycloak", env=env, log_path=log)


@dataclass(frozen=True)
class Component:
    """One service of the stack: how to start it, where it listens, how to tell it is ready."""

    name: str
    ports: tuple[int, ...]
    ready_url: str
    start: Callable[[Path | None], Service]
    gateway: bool = False
    ready_check: Callable[[], bool] | None = None
    """Replaces ``GET ready_url`` as the readiness test (the document host: a TLS handshake with its CA)."""
    management_url: str | None = None
    """A gateway's management listener (``/metrics``, ``/healthz``, ``/readyz``)."""

    def is_ready(self) -> bool:
        return self.ready_check() if self.ready_check is not None else http_ok(self.ready_url)

    @property
    def pid_file(self) -> Path:
        return STACK_DIR / f"{self.name}.pid"

    @property
    def log_file(self) -> Path:
        return STACK_DIR / f"{self.name}.log"


KEYCLOAK = Component(
    "keycloak",
    (KEYCLOAK_PORT,),
    f"{KEYCLOAK_URL}/realms/mcp/.well-known/openid-configuration",
    _keycloak,
)
HYDRA = Component("hydra", (HYDRA_PUBLIC_PORT, HYDRA_ADMIN_PORT), f"{HYDRA_ADMIN_URL}/health/ready", _hydra)
LOGIN = Component("login-consent", (LOGIN_PORT,), f"{LOGIN_URL}/healthz", _login)
CIMD = Component(
    "cimd-docs",
    (CIMD_PORT,),
    f"{CIMD_URL}/",
    _cimd,
    ready_check=lambda: tls_ready(CIMD_PORT, ca_file(CIMD_ROOT)),
)
GATEWAY_HYDRA = Component(
    "gateway-hydra",
    (HYDRA_GATEWAY_PORT, HYDRA_GATEWAY_MANAGEMENT_PORT),
    f"{HYDRA_ISSUER}/healthz",
    _gateway_hydra,
    gateway=True,
    management_url=f"http://{LOOPBACK}:{HYDRA_GATEWAY_MANAGEMENT_PORT}",
)
GATEWAY_KEYCLOAK = Component(
    "gateway-keycloak",
    (KEYCLOAK_GATEWAY_PORT, KEYCLOAK_GATEWAY_MANAGEMENT_PORT),
    f"http://{LOOPBACK}:{KEYCLOAK_GATEWAY_PORT}/healthz",
    _gateway_keycloak,
    gateway=True,
    management_url=f"http://{LOOPBACK}:{KEYCLOAK_GATEWAY_MANAGEMENT_PORT}",
)
# Start order: Keycloak first (slowest), gateways after the providers they front and the document host (its CA).
COMPONENTS = (KEYCLOAK, HYDRA, LOGIN, CIMD, GATEWAY_HYDRA, GATEWAY_KEYCLOAK)


class StackError(RuntimeError):
    pass


# --- pid files -----------------------------------------------------------------------------------------


def _write_pid(component: Component, service: Service) -> None:
    record = {"pid": service.pid, "argv": service.process.args, "started": time.time()}
    component.pid_file.write_text(json.dumps(record) + "\n")


def _running_pid(component: Component) -> int | None:
    """The pid from the component's pid file if that process is still the one we started."""
    try:
        record = json.loads(component.pid_file.read_text())
        pid, argv = int(record["pid"]), [str(a) for a in record["argv"]]
    except (OSError, ValueError, KeyError, TypeError):
        return None
    # A shebang script's cmdline is "interpreter script args": compare the tail.
    if pid_alive(pid) and cmdline(pid)[-len(argv) :] == argv:
        return pid
    return None


# --- up / down / status --------------------------------------------------------------------------------


def _wait(component: Component, service: Service | None, timeout: float) -> float:
    """Wait until ``component`` is ready; return seconds waited."""
    if service is not None:
        return service.wait_ready(timeout)
    start = time.monotonic()
    while not component.is_ready():
        if _running_pid(component) is None:
            raise ServiceError(f"{component.name} is not running; log {component.log_file}")
        if time.monotonic() - start > timeout:
            raise ServiceError(f"{component.name} not ready at {component.ready_url}; log {component.log_file}")
        time.sleep(0.25)
    return time.monotonic() - start


def up(*, with_gateways: bool = True) -> None:
    STACK_DIR.mkdir(exist_ok=True)
    components = [c for c in COMPONENTS if with_gateways or not c.gateway]
    started: dict[str, Service] = {}
    begin = time.monotonic()

    def launch(component: Component) -> None:
        if _running_pid(component) is not None:
            return
        service = component.start(component.log_file)
        _write_pid(component, service)
        started[component.name] = service
        print(f"  started {component.name} (pid {service.pid}, log {component.log_file})", flush=True)

    def ready(component: Component) -> None:
        seconds = _wait(component, started.get(component.name), READY_TIMEOUT.get(component.name, 60.0))
        if component.name in started:
            print(f"  {component.name} ready after {seconds:.1f} s", flush=True)

    already = [c.name for c in components if _running_pid(c) is not None and c.is_ready()]
    if len(already) == len(components):
        print("stack: everything is already up")
        _print_summary(with_gateways)
        return
    busy = {
        c.name: ports
        for c in components
        if _running_pid(c) is None and (ports := [p for p in c.ports if port_in_use(p)])
    }
    if busy:
        raise StackError(
            f"port(s) in use by processes the stack did not start: {busy} "
            "(`make stack-down`, or stop what listens there)"
        )
    print("stack: starting (Keycloak takes 10-30 s)", flush=True)
    providers = [c for c in components if not c.gateway]
    for component in providers:
        launch(component)
    for component in (HYDRA, LOGIN, CIMD):
        ready(component)
    if with_gateways:
        launch(GATEWAY_HYDRA)
        ready(GATEWAY_HYDRA)
    ready(KEYCLOAK)
    if with_gateways:
        launch(GATEWAY_KEYCLOAK)
        ready(GATEWAY_KEYCLOAK)
    print(f"stack: up in {time.monotonic() - begin:.1f} s")
    _print_summary(with_gateways)


def down() -> None:
    stopped = []
    for component in reversed(COMPONENTS):
        pid = _running_pid(component)
        if pid is not None:
            terminate_group(pid)
            stopped.append(component.name)
        component.pid_file.unlink(missing_ok=True)
    print(f"stack: stopped {', '.join(stopped)}" if stopped else "stack: nothing was running")


def status() -> int:
    for component in COMPONENTS:
        pid = _running_pid(component)
        state = "ready" if pid and component.is_ready() else ("starting" if pid else "down")
        print(f"  {component.name:<17} {state:<9} {component.ready_url}  pid={pid or '-'}")
        if component.management_url is not None:
            print(f"  {'':<17} {'':<9} management {component.management_url}/metrics /healthz /readyz")
    print(f"  CIMD documents: {CIMD_ROOT / 'docs'}/NAME.json -> {CIMD_URL}/NAME.json (CA {ca_file(CIMD_ROOT)})")
    return 0


def _print_summary(with_gateways: bool) -> None:
    print(f"  Hydra            public {HYDRA_PUBLIC_URL}  admin {HYDRA_ADMIN_URL}")
    print(f"  dev login app    {LOGIN_URL} (DEVELOPMENT ONLY: everyone signs in as alice)")
    print(f"  Keycloak         {KEYCLOAK_URL}  realm mcp, user alice/alice, admin console admin/admin")
    print(f"  CIMD documents   {CIMD_URL}/NAME.json for NAME.json in {CIMD_ROOT / 'docs'} (CA {ca_file(CIMD_ROOT)})")
    if with_gateways:
        print(f"  gateway (Hydra)    issuer {HYDRA_ISSUER}  metrics {GATEWAY_HYDRA.management_url}/metrics")
        print(f"  gateway (Keycloak) issuer {KEYCLOAK_ISSUER}  metrics {GATEWAY_KEYCLOAK.management_url}/metrics")
        print(f"  protected resource {PROTECTED_RESOURCE} (RFC 8707 resource of both gateways)")
    print(f"  logs and pids in {STACK_DIR}; `make stack-down` stops everything")


# --- run (foreground) ----------------------------------------------------------------------------------


def _raise_interrupt(signum: int, frame: FrameType | None) -> None:
    raise KeyboardInterrupt


def run() -> int:
    """Hydra (in memory) + the dev login app + a gateway on http://127.0.0.1:8080 until Ctrl-C."""
    components = (HYDRA, LOGIN, CIMD, GATEWAY_HYDRA)
    busy = [port for c in components for port in c.ports if port_in_use(port)]
    if busy:
        print(f"run: port(s) {busy} are in use (is the stack up? `make stack-down`)", file=sys.stderr)
        return 1
    run_dir = STACK_DIR / "run"
    run_dir.mkdir(parents=True, exist_ok=True)
    services: list[Service] = []
    signal.signal(signal.SIGTERM, _raise_interrupt)
    try:
        services.append(_hydra(run_dir / "hydra.log"))
        services.append(_login(run_dir / "login-consent.log"))
        services.append(_cimd(run_dir / "cimd-docs.log"))
        for service in services:
            service.wait_ready(DEFAULT_READY_TIMEOUT)
        gateway = _gateway_hydra(None)  # its output stays in this terminal
        services.append(gateway)
        gateway.wait_ready(DEFAULT_READY_TIMEOUT)
        print(
            f"\nIssuer: {HYDRA_ISSUER}\n"
            f"Discovery: {HYDRA_ISSUER}/.well-known/oauth-authorization-server\n"
            f"Register a client:\n  {REGISTER_EXAMPLE}\n"
            f"Hydra and the dev login app log to {run_dir}. Ctrl-C stops everything.\n",
            flush=True,
        )
        while True:
            for service in services:
                code = service.process.poll()
                if code is not None:
                    print(f"run: {service.name} exited with status {code}\n{tail(service.log_path)}", file=sys.stderr)
                    return 1
            time.sleep(0.5)
    except KeyboardInterrupt:
        print("\nrun: stopping", flush=True)
        return 0
    except ServiceError as exc:
        print(f"run: {exc}", file=sys.stderr)
        return 1
    finally:
        for service in reversed(services):
            service.stop()


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m devstack.stack", description=(__doc__ or "").split("\n\n")[0])
    commands = parser.add_subparsers(dest="command", required=True)
    up_parser = commands.add_parser("up", help="start the stack (idempotent), return once it is ready")
    up_parser.add_argument("--no-gateways", action="store_true", help="only the providers and the dev login app")
    commands.add_parser("down", help="stop the stack")
    commands.add_parser("status", help="show what runs")
    commands.add_parser("run", help="Hydra + dev login app + gateway on :8080 in the foreground")
    args = parser.parse_args(argv)
    try:
        if args.command == "up":
            up(with_gateways=not args.no_gateways)
        elif args.command == "down":
            down()
        elif args.command == "status":
            return status()
        else:
            return run()
    except (StackError, ServiceError) as exc:
        print(f"stack: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
