"""``dcr-gateway conformance``: run the client-type matrix against an issuer and print it.

Exit status: 0 when every cell passed or is an expected failure / not applicable, 1 on any ``FAIL`` or
``XPASS``, 2 on bad arguments. ``--junit FILE`` and ``--json FILE`` write the same results for CI.
A 429 is sent again after its ``Retry-After`` (pauses up to ``--max-wait`` seconds in total, printed on standard
error as they happen); the clients the run registered are deleted at the end with RFC 7592 (``--keep-clients``
keeps them), and the JSON report lists each one.
The Keycloak user's password comes from ``--password`` or ``$DCR_CONFORMANCE_PASSWORD``, an initial access
token from ``--initial-access-token`` or ``$DCR_CONFORMANCE_INITIAL_ACCESS_TOKEN`` (keep them out of process
lists in CI); neither is ever printed.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
from pathlib import Path
from typing import Any

PASSWORD_ENV = "DCR_CONFORMANCE_PASSWORD"
DEFAULT_MAX_WAIT = 180.0
"""Same as :data:`gateway.conformance.runner.DEFAULT_MAX_WAIT` (not imported: the parser stays light)."""
IAT_ENV = "DCR_CONFORMANCE_INITIAL_ACCESS_TOKEN"


def add_subcommand(subparsers: Any) -> None:
    """Register ``conformance`` on the ``dcr-gateway`` parser's subparsers."""
    parser: argparse.ArgumentParser = subparsers.add_parser(
        "conformance",
        help="run the client-type conformance matrix against an issuer",
        description="Run every MCP client profile (discovery, RFC 7591 registration or a Client ID Metadata "
        "Document, code flow with PKCE and resource, token, refresh, loopback port change), the RFC 8707 resource, "
        "RFC 9207 iss and localhost cells, and the refused registrations and documents against ISSUER; print the "
        "matrix; exit 1 on failures.",
    )
    parser.add_argument("--issuer", required=True, help="the issuer identifier, exactly as clients know it")
    parser.add_argument(
        "--registration-endpoint",
        help="the registration endpoint expected in discovery (used when discovery advertises none)",
    )
    parser.add_argument("--resource", help="RFC 8707 resource sent on the flows (default: {issuer origin}/mcp)")
    parser.add_argument(
        "--provider",
        default="auto",
        help="whose expected failures apply: auto (from discovery), hydra, keycloak or none",
    )
    parser.add_argument(
        "--provider-version",
        help="the provider's release (e.g. 24.0.5, v2.3.0): its known defects become expected failures, with the "
        "version in the reason (README, Supported providers)",
    )
    parser.add_argument(
        "--login",
        choices=("keycloak", "hydra-admin"),
        help="headless login for the flow steps; without it only discovery and registration run",
    )
    parser.add_argument("--username", help="--login keycloak: the test user")
    parser.add_argument("--password", help=f"--login keycloak: the test user's password (or ${PASSWORD_ENV})")
    parser.add_argument(
        "--initial-access-token",
        help=f"RFC 7591 section 3 token for the profiles that register with one (or ${IAT_ENV})",
    )
    parser.add_argument("--hydra-admin-url", help="--login hydra-admin: Hydra's admin API base URL")
    parser.add_argument("--subject", default="alice", help="--login hydra-admin: the subject to sign in")
    parser.add_argument(
        "--profile", action="append", default=[], help="run only this profile or refused registration (repeatable)"
    )
    parser.add_argument(
        "--expect-failure",
        action="append",
        default=[],
        metavar="PROFILE:STEP=REASON",
        help="a known limitation of this deployment: the cell is an expected failure (strict; repeatable)",
    )
    parser.add_argument("--profiles-dir", type=Path, help="read profiles from this directory instead")
    parser.add_argument(
        "--concurrency",
        type=int,
        default=1,
        help="profiles run at once (default 1; in-memory providers fail concurrent writes)",
    )
    parser.add_argument("--timeout", type=float, default=30.0, help="seconds per HTTP request (default 30)")
    parser.add_argument(
        "--max-wait",
        type=_seconds,
        default=DEFAULT_MAX_WAIT,
        metavar="SECONDS",
        help="on a 429, pause for its Retry-After and send again, pausing at most SECONDS in total "
        f"(default {DEFAULT_MAX_WAIT:g}: a gateway's default limit of 20 registrations per source per minute costs "
        "one pause of up to 60 s; 0: never wait)",
    )
    parser.add_argument(
        "--keep-clients",
        action="store_true",
        help="keep the clients the run registered (default: delete them at the end with RFC 7592)",
    )
    parser.add_argument(
        "--unknown-resource",
        default=None,
        help="an RFC 8707 resource the issuer does not protect (default https://resource.invalid/...): authorization "
        "and token requests naming it must get invalid_target",
    )
    parser.add_argument(
        "--introspection-url",
        help="RFC 7662 introspection endpoint (no client authentication) to read the aud of opaque access tokens, "
        "e.g. Hydra's admin API http://127.0.0.1:4445/admin/oauth2/introspect; JWT access tokens are read directly",
    )
    cimd = parser.add_argument_group(
        "Client ID Metadata Documents",
        "where the CIMD profiles' documents come from (without one of these their cells are n/a)",
    )
    cimd.add_argument(
        "--cimd-serve-on",
        type=_host_port,
        metavar="HOST:PORT",
        help="serve them over https here (the target must trust --cimd-ca-dir's ca.pem and accept https://HOST:PORT "
        "as a document origin); client_id is rewritten to that URL",
    )
    cimd.add_argument("--cimd-ca-dir", type=Path, help="the development CA (created once, then reused) and documents")
    cimd.add_argument(
        "--cimd-docs-dir",
        type=Path,
        help="write them into this directory of a running document host (the local stack: .stack/cimd/docs) ...",
    )
    cimd.add_argument(
        "--cimd-base-url", help="... which serves it at this URL (the local stack: https://localhost:8443)"
    )
    cimd.add_argument(
        "--cimd-published",
        action="store_true",
        help="use the clients' real published documents (a staging issuer on the internet)",
    )
    parser.add_argument("--junit", type=Path, help="write JUnit XML here")
    parser.add_argument("--json", type=Path, help="write the results as JSON here")
    parser.set_defaults(func=run)


def _seconds(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number of seconds") from None
    if not 0 <= value <= 86400:
        raise argparse.ArgumentTypeError(f"{text!r}: between 0 and 86400 seconds")
    return value


def _host_port(text: str) -> tuple[str, int]:
    host, _, port = text.rpartition(":")
    host = host.strip("[]")
    if not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise argparse.ArgumentTypeError(f"{text!r}: expected HOST:PORT, e.g. 127.0.0.1:9443")
    return host, int(port)


def _progress(line: str) -> None:
    print(f"dcr-gateway conformance: {line}", file=sys.stderr, flush=True)


def _login(args: argparse.Namespace) -> Any:
    from gateway.conformance.login import hydra_admin, keycloak_form

    if args.login == "keycloak":
        password = args.password or os.environ.get(PASSWORD_ENV)
        if not args.username or not password:
            raise ValueError(f"--login keycloak needs --username and --password (or ${PASSWORD_ENV})")
        return keycloak_form(args.username, password)
    if args.login == "hydra-admin":
        if not args.hydra_admin_url:
            raise ValueError("--login hydra-admin needs --hydra-admin-url")
        return hydra_admin(args.hydra_admin_url, args.subject)
    return None


def parse_expected_failures(values: list[str]) -> dict[str, dict[str, str]]:
    """``PROFILE:STEP=REASON`` arguments as profile -> step -> reason."""
    from gateway.conformance.profiles import ALL_STEPS as STEPS

    expected: dict[str, dict[str, str]] = {}
    for value in values:
        target, _, reason = value.partition("=")
        profile, _, step = target.partition(":")
        if not profile or step not in STEPS or not reason.strip():
            raise ValueError(f"--expect-failure {value!r}: expected PROFILE:STEP=REASON with STEP one of {STEPS}")
        expected.setdefault(profile, {})[step] = reason.strip()
    return expected


def run(args: argparse.Namespace) -> int:
    from gateway.conformance.profiles import ProfileError
    from gateway.conformance.report import render_text, to_json, to_junit
    from gateway.conformance.runner import SuiteConfig, run_suite

    try:
        config = SuiteConfig(
            issuer=args.issuer,
            login=_login(args),
            registration_endpoint=args.registration_endpoint,
            initial_access_token=args.initial_access_token or os.environ.get(IAT_ENV),
            resource=args.resource,
            provider=None if args.provider == "none" else args.provider,
            provider_version=args.provider_version,
            profiles=tuple(args.profile),
            expected_failures=parse_expected_failures(args.expect_failure),
            profile_dir=args.profiles_dir,
            concurrency=args.concurrency,
            timeout=args.timeout,
            max_wait=args.max_wait,
            keep_clients=args.keep_clients,
            progress=_progress,
            introspection_url=args.introspection_url,
            hydra_admin_url=args.hydra_admin_url,
            cimd_serve_on=args.cimd_serve_on,
            cimd_ca_dir=args.cimd_ca_dir,
            cimd_docs_dir=args.cimd_docs_dir,
            cimd_base_url=args.cimd_base_url,
            cimd_published=args.cimd_published,
            **({"unknown_resource": args.unknown_resource} if args.unknown_resource else {}),
        )
        report = asyncio.run(run_suite(config))
    except (ValueError, ProfileError) as exc:
        print(f"dcr-gateway conformance: {exc}", file=sys.stderr)
        return 2
    sys.stdout.write(render_text(report))
    if args.junit:
        args.junit.write_text(to_junit(report))
    if args.json:
        args.json.write_text(json.dumps(to_json(report), indent=2) + "\n")
    return 1 if report.failed else 0
