"""``dcr-gateway``: settings -> logging -> create_app -> run.

Subcommands:
- ``serve``: run the gateway (settings from ``DCR_*`` variables and an optional ``--config`` TOML file);
- ``adapters``: list the provider adapters that can be loaded (built-ins and entry points).
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence


def _serve(args: argparse.Namespace) -> int:
    from aiohttp import web

    from gateway.app import create_app
    from gateway.logging import configure_logging
    from gateway.settings import load_settings

    overrides = {k: v for k, v in (("host", args.host), ("port", args.port)) if v is not None}
    try:
        settings = load_settings(args.config, **overrides)
    except ValueError as exc:  # pydantic ValidationError, SettingsError, TOMLDecodeError, ConfigFileError
        print(f"dcr-gateway: invalid configuration:\n{exc}", file=sys.stderr)
        return 2
    configure_logging(settings.log_level, settings.log_format)
    try:
        app = create_app(settings)
    except (ValueError, LookupError, ImportError) as exc:
        print(f"dcr-gateway: {exc}", file=sys.stderr)
        return 2
    web.run_app(app, host=settings.host, port=settings.port, access_log=None, print=None)
    return 0


def _adapters(args: argparse.Namespace) -> int:
    from adapters.registry import available

    for name in available():
        print(name)
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="dcr-gateway",
        description="RFC 7591 registration and RFC 8414 discovery in front of Keycloak or Ory Hydra.",
    )
    sub = parser.add_subparsers(dest="command", required=True)
    serve = sub.add_parser("serve", help="run the gateway")
    serve.add_argument("--config", help="TOML settings file (DCR_* environment variables win)")
    serve.add_argument("--host", help="listen address (DCR_HOST)")
    serve.add_argument("--port", type=int, help="listen port (DCR_PORT)")
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
