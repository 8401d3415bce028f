"""An https host for Client ID Metadata Documents (draft-ietf-oauth-client-id-metadata-document section 3): what
the conformance suite serves its CIMD profiles from (``--cimd-serve-on``), and the local stack's and the tests'
document server (``python -m devstack.cimd_server``).

A directory of files, read at each request (drop a file in, it is served):

- ``GET /NAME.json`` answers ``200`` with the file's bytes as ``application/json`` when ``NAME.json`` exists in the
  directory (``NAME``: letters, digits, ``.``, ``_``, ``-``; no leading dot). The bytes are served as they are,
  valid JSON or not: the suite's negative cases need a host that serves what it is given;
- ``NAME.json.redirect`` (a file holding one URL) makes ``GET /NAME.json`` answer ``302`` to that URL, unless
  ``NAME.json`` exists: the "redirect on fetch" case (section 4: the authorization server must not follow it);
- everything else is ``404``: no directory listing, no other file type, no path outside the directory (the name
  is matched against a strict pattern before any file system access, and symbolic links are not followed out).

``HEAD`` is answered like ``GET`` without the body. The server never writes to the directory.
"""

from __future__ import annotations

import re
import ssl
from dataclasses import dataclass
from pathlib import Path

from aiohttp import web

DOCUMENT_CONTENT_TYPE = "application/json"
_NAME = re.compile(r"[A-Za-z0-9_-][A-Za-z0-9._-]{0,199}\.json")
REDIRECT_SUFFIX = ".redirect"


def document_path(directory: Path, name: str) -> Path | None:
    """The file ``name`` names in ``directory``, or ``None`` when the name is not a document name or the file
    would resolve outside ``directory``."""
    if not _NAME.fullmatch(name) or ".." in name:
        return None
    path = directory / name
    return path if _inside(directory, path) else None


def _inside(directory: Path, path: Path) -> bool:
    """Whether ``path`` (symbolic links resolved) is a direct child of ``directory``."""
    try:
        return path.resolve(strict=False).parent == directory.resolve(strict=False)
    except (OSError, RuntimeError):
        return False


def _read(path: Path | None) -> bytes | None:
    if path is None or not path.is_file():
        return None
    try:
        return path.read_bytes()
    except OSError:
        return None


def document_app(directory: Path) -> web.Application:
    """The aiohttp application serving ``directory`` as described in the module docstring."""

    async def serve(request: web.Request) -> web.StreamResponse:
        name = request.match_info.get("name", "")
        path = document_path(directory, name)
        body = _read(path)
        if body is not None:
            return web.Response(
                body=body if request.method != "HEAD" else None,
                headers={"Content-Type": DOCUMENT_CONTENT_TYPE, "Cache-Control": "no-cache"},
            )
        redirect = directory / (name + REDIRECT_SUFFIX)
        target = _read(redirect) if path is not None and _inside(directory, redirect) else None
        if target is not None and target.strip():
            return web.Response(status=302, headers={"Location": target.decode(errors="replace").strip()})
        return web.Response(status=404, text="not found\n")

    async def not_found(request: web.Request) -> web.StreamResponse:
        return web.Response(status=404, text="not found\n")

    app = web.Application()
    app.router.add_get("/{name}", serve)  # and HEAD
    app.router.add_route("*", "/{tail:.*}", not_found)
    return app


def _make_directory(directory: Path) -> None:
    directory.mkdir(parents=True, exist_ok=True)


def tls_context(certificate: Path, key: Path) -> ssl.SSLContext:
    """A TLS 1.2+ server context for ``certificate`` / ``key`` (PEM)."""
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    context.load_cert_chain(certificate, key)
    return context


@dataclass
class RunningHost:
    """A document host started by :func:`start_host`; ``await host.close()`` stops it."""

    runner: web.AppRunner
    base_url: str
    directory: Path

    async def close(self) -> None:
        await self.runner.cleanup()


async def start_host(
    directory: Path, *, host: str, port: int, certificate: Path, key: Path, public_host: str | None = None
) -> RunningHost:
    """Serve ``directory`` over https on ``host:port`` in the running event loop. ``public_host``: the host name
    of the base URL (default ``host``; e.g. ``localhost`` for a server bound to 127.0.0.1)."""
    _make_directory(directory)
    runner = web.AppRunner(document_app(directory), access_log=None)
    await runner.setup()
    try:
        site = web.TCPSite(runner, host, port, ssl_context=tls_context(certificate, key))
        await site.start()
    except BaseException:
        await runner.cleanup()
        raise
    shown = public_host or host
    if ":" in shown:
        shown = f"[{shown}]"
    return RunningHost(runner, f"https://{shown}:{port}", directory)
