"""``dcr-gateway``: settings -> logging -> create_app -> run.

Subcommands:
- ``serve``: run the gateway (settings from ``DCR_*`` variables and an optional ``--config`` TOML file);
- ``adapters``: list the provider adapters that can be loaded (built-ins and entry points).

``serve`` never shows a traceback for something an operator can fix: a bad or unknown setting, a listen address
in use, or a provider that refuses the gateway's configuration at start (credentials refused, role missing,
realm missing) each print one line naming the setting, and exit with status 2 before anything is served.
"""

from __future__ import annotations

import argparse
import errno
import socket
import sys
from collections.abc import Sequence
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from aiohttp import web

    from gateway.settings import Settings

EXIT_CONFIGURATION = 2

ENVIRONMENT_HELP = """\
configuration:
  Every command that talks to the provider (serve, clients) reads the same settings: DCR_* environment
  variables, nested with '__' (DCR_PORT, DCR_PROVIDER, DCR_KEYCLOAK__CLIENT_SECRET, DCR_POLICY__SAME_HOST, ...),
  and an optional TOML file named by DCR_CONFIG_FILE or --config (its [keycloak], [hydra], [policy], [access],
  [limits] tables are the same settings); environment variables win over the file. A list takes JSON or a
  comma-separated value (DCR_KEYCLOAK__REALMS=mcp,partners). A DCR_* variable or file key that names no setting
  stops the command with the closest valid name. The README's Configuration section lists every setting.
"""


LISTEN_SETTINGS = "DCR_HOST/DCR_PORT (TOML host/port, --host/--port)"
MANAGEMENT_LISTEN_SETTINGS = (
    "DCR_MANAGEMENT__HOST/DCR_MANAGEMENT__PORT (TOML [management] host/port, --management-port; "
    "DCR_MANAGEMENT__ENABLED=false turns it off)"
)


def listen_problem(host: str, port: int, where: str = LISTEN_SETTINGS) -> str | None:
    """Why ``host:port`` cannot be listened on (address in use, not a local address, not permitted), or ``None``.

    Probed with the options asyncio's server uses (``SO_REUSEADDR``; IPv6 only on IPv6 sockets), on every address
    the host resolves to, so ``serve`` can say so in one line before it starts anything."""
    try:
        infos = socket.getaddrinfo(host or None, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)
    except (socket.gaierror, UnicodeError) as exc:
        reason = exc.strerror if isinstance(exc, socket.gaierror) and exc.strerror else str(exc)
        return f"cannot listen on {host}:{port}: the host does not resolve ({reason}); set {where}"
    for family, kind, proto, _, address in infos:
        try:
            with socket.socket(family, kind, proto) as probe:
                probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
                if family == socket.AF_INET6:
                    probe.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
                probe.bind(address)
        except OSError as exc:
            return _listen_error(host, port, exc, where)
    return None


def _listen_error(host: str, port: int, exc: OSError, where: str = LISTEN_SETTINGS) -> str:
    reason = {
        errno.EADDRINUSE: "address already in use (another process listens there; choose another port)",
        errno.EADDRNOTAVAIL: "not an address of this machine",
        errno.EACCES: "permission denied (ports below 1024 need privileges)",
    }.get(exc.errno or 0, exc.strerror or str(exc))
    return f"cannot listen on {host}:{port}: {reason}; set {where}"


class _Stop(Exception):
    """``serve`` stops before serving: these lines go to standard error, the exit status is 2."""

    def __init__(self, lines: Sequence[str]) -> None:
        super().__init__("\n".join(lines))
        self.lines = list(lines)


def _configured_app(args: argparse.Namespace) -> tuple[Settings, web.Application]:
    """Settings, the listen address and the app, or :class:`_Stop` with one line per problem."""
    from gateway.app import create_app
    from gateway.logging import configure_logging
    from gateway.settings import ConfigurationError, load_settings

    overrides: dict[str, object] = {k: v for k, v in (("host", args.host), ("port", args.port)) if v is not None}
    if getattr(args, "management_port", None) is not None:
        overrides["management"] = {"port": args.management_port}
    try:
        settings = load_settings(args.config, **overrides)
    except ConfigurationError as exc:
        raise _Stop([f"dcr-gateway: invalid configuration: {problem}" for problem in exc.problems]) from None
    problem = listen_problem(settings.host, settings.port)
    if problem is None and settings.management.enabled:
        management = settings.management
        problem = listen_problem(management.host, management.port, MANAGEMENT_LISTEN_SETTINGS)
    if problem:
        raise _Stop([f"dcr-gateway: {problem}"])
    configure_logging(settings.log_level, settings.log_format)
    try:
        return settings, create_app(settings)
    except LookupError as exc:  # no such adapter, or it cannot be imported
        raise _Stop([f"dcr-gateway: invalid configuration: DCR_PROVIDER (provider in TOML): {exc}"]) from None
    except (ValueError, ImportError) as exc:
        raise _Stop([f"dcr-gateway: {exc}"]) from None


def _serve(args: argparse.Namespace) -> int:
    from gateway import server
    from gateway.app import MANAGEMENT_APP, StartupRefused

    try:
        settings, app = _configured_app(args)
        management = None
        if settings.management.enabled:
            management = server.Listener(app[MANAGEMENT_APP], settings.management.host, settings.management.port)
        try:
            server.run(
                app,
                host=settings.host,
                port=settings.port,
                management=management,
                event_loop=settings.event_loop,
            )
        except StartupRefused as exc:  # the provider refuses the configuration: one line, before serving
            raise _Stop([f"dcr-gateway: {exc}"]) from None
        except OSError as exc:  # the listen address was taken between the probe and the bind
            if exc.errno not in (errno.EADDRINUSE, errno.EADDRNOTAVAIL, errno.EACCES):
                raise
            raise _Stop([f"dcr-gateway: {_listen_error(settings.host, settings.port, exc)}"]) from None
    except _Stop as stop:
        for line in stop.lines:
            print(line, file=sys.stderr)
        return EXIT_CONFIGURATION
    return 0


def _adapters(args: argparse.Namespace) -> int:
    from adapters.registry import available

    for name in available():
        print(name)
    return 0


def _version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    from gateway import __version__

    try:
        return version("dcr-gateway")
    except PackageNotFoundError:
        return __version__


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="dcr-gateway",
        description="RFC 7591 registration and RFC 8414 discovery in front of Keycloak or Ory Hydra.",
        epilog=ENVIRONMENT_HELP,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {_version()}")
    sub = parser.add_subparsers(dest="command", required=True)
    serve = sub.add_parser(
        "serve",
        help="run the gateway",
        description="Run the gateway. It checks the provider's admin API first: a configuration the provider "
        "refuses stops it (exit status 2, one line naming the setting); an unreachable provider is retried "
        "while /readyz answers 503. A management listener (default http://127.0.0.1:9180; DCR_MANAGEMENT__HOST, "
        "DCR_MANAGEMENT__PORT, DCR_MANAGEMENT__ENABLED) serves /metrics (Prometheus), /healthz and /readyz.",
        epilog=ENVIRONMENT_HELP,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    serve.add_argument("--config", help="TOML settings file (default: $DCR_CONFIG_FILE; DCR_* variables win)")
    serve.add_argument("--host", help="listen address (DCR_HOST)")
    serve.add_argument("--port", type=int, help="listen port (DCR_PORT)")
    serve.add_argument(
        "--management-port",
        type=int,
        help="the management listener's port: /metrics, /healthz, /readyz (DCR_MANAGEMENT__PORT, default 9180)",
    )
    serve.set_defaults(func=_serve)
    adapters = sub.add_parser("adapters", help="list loadable provider adapters")
    adapters.set_defaults(func=_adapters)
    from gateway.clients.cli import add_subcommand as add_clients_subcommand

    add_clients_subcommand(sub)
    from gateway.access.cli import add_subcommand as add_initial_access_token_subcommand

    add_initial_access_token_subcommand(sub)
    from gateway.conformance.cli import add_subcommand as add_conformance_subcommand

    add_conformance_subcommand(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    code: int = args.func(args)
    return code


if __name__ == "__main__":
    raise SystemExit(main())
