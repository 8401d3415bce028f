"""The development host for Client ID Metadata Documents: ``https://localhost:PORT/NAME.json`` for every
``NAME.json`` in ``ROOT/docs/`` (DEVELOPMENT ONLY).

    python -m devstack.cimd_server --root .stack/cimd --port 8443

``make stack-up`` runs it on port 8443 with root ``.stack/cimd``; the tests run it on a free port with a root in
pytest's temporary directory (``tests/integration/conftest.py``: ``cimd_host``). The root holds the development CA
(``ca.pem``, created once and reused: the gateways are configured with it as ``DCR_CIMD__CA_FILE``), the server
certificate for ``localhost``, ``127.0.0.1`` and ``::1`` signed by it, and ``docs/``. What is served and what is
not (404: anything but ``NAME.json``, no listing, no path outside ``docs/``; ``NAME.json.redirect`` answers
302): :mod:`gateway.conformance.cimd_host`, the same code the conformance suite serves its documents with.
It listens on 127.0.0.1 and, when the machine has IPv6, on ::1 (``localhost`` may resolve to either). The CA
and the certificate come from :mod:`gateway.conformance.tls` (shared with the conformance suite, which is installed
without ``devstack``).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import signal
import socket
import ssl
import sys
from collections.abc import Sequence
from pathlib import Path

from aiohttp import web

from devstack.process import LOOPBACK, Service, spawn
from gateway.conformance.cimd_host import document_app, tls_context
from gateway.conformance.tls import development_ca, server_certificate

CERTIFICATE_HOSTS = ("localhost", "127.0.0.1", "::1")
PUBLIC_HOST = "localhost"


def docs_dir(root: Path) -> Path:
    """Where the documents live: ``ROOT/docs``."""
    return root / "docs"


def ca_file(root: Path) -> Path:
    """The development CA certificate a gateway must trust: ``ROOT/ca.pem``."""
    return root / "ca.pem"


def origin(port: int) -> str:
    """``https://localhost:{port}``: the document host's origin (a development origin of the gateways)."""
    return f"https://{PUBLIC_HOST}:{port}"


def prepare(root: Path) -> tuple[Path, Path, Path]:
    """The CA (kept when it exists), the server certificate and its key, and ``docs/``, under ``root``."""
    root.mkdir(parents=True, exist_ok=True)
    docs_dir(root).mkdir(exist_ok=True)
    ca, _ = development_ca(root)
    certificate, key = server_certificate(root, CERTIFICATE_HOSTS)
    return ca, certificate, key


def tls_ready(port: int, ca: Path, timeout: float = 2.0) -> bool:
    """Whether ``localhost:port`` completes a TLS handshake whose certificate chains to ``ca`` (for ``localhost``)."""
    try:
        context = ssl.create_default_context(cafile=str(ca))
        with (
            socket.create_connection((LOOPBACK, port), timeout=timeout) as raw,
            context.wrap_socket(raw, server_hostname=PUBLIC_HOST),
        ):
            return True
    except (OSError, ssl.SSLError):
        return False


def start_cimd_server(*, port: int, root: Path, log_path: Path | None) -> Service:
    """The document host as a child process (see the module docstring); ready once it completes a handshake."""
    ca, _, _ = prepare(root)
    return spawn(
        "cimd-docs",
        [sys.executable, "-m", "devstack.cimd_server", "--root", str(root), "--port", str(port)],
        log_path=log_path,
        ready_url=f"{origin(port)}/",
        ready_check=lambda: tls_ready(port, ca),
        cwd=Path(__file__).resolve().parents[1],
    )


async def _serve(root: Path, port: int) -> None:
    _, certificate, key = prepare(root)
    runner = web.AppRunner(document_app(docs_dir(root)))
    await runner.setup()
    context = tls_context(certificate, key)
    await web.TCPSite(runner, LOOPBACK, port, ssl_context=context).start()
    if socket.has_ipv6:
        with contextlib.suppress(OSError):  # no ::1 on this machine: 127.0.0.1 only
            await web.TCPSite(runner, "::1", port, ssl_context=context).start()
    print(f"cimd-docs: serving {docs_dir(root)} at {origin(port)}/NAME.json (CA {ca_file(root)})", flush=True)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop.set)
    try:
        await stop.wait()
    finally:
        await runner.cleanup()


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m devstack.cimd_server", description=(__doc__ or "").split("\n")[0])
    parser.add_argument("--root", type=Path, required=True, help="CA, certificate and docs/ live here")
    parser.add_argument("--port", type=int, default=8443)
    args = parser.parse_args(argv)
    asyncio.run(_serve(args.root, args.port))
    return 0


if __name__ == "__main__":
    sys.exit(main())
