"""Running the TypeScript SDK client (``ts/client.mjs``) under Node, with the test playing the browser.

The script speaks JSON lines (see its header): it prints the authorization URL the SDK built, this module
hands it to a :class:`~tests.integration.mcp_e2e.headless.HeadlessUser` and writes the provider's redirect
back on stdin, until the script prints its result.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import re
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tests.integration.mcp_e2e.headless import HeadlessUser

TS_DIR = Path(__file__).parent / "ts"
CLIENT_SCRIPT = TS_DIR / "client.mjs"
SDK_PACKAGE = "@modelcontextprotocol/sdk"
MIN_NODE_MAJOR = 20
RUN_TIMEOUT = 180.0
"""Seconds for one run of the script (two connections, one login): a hang fails instead of blocking."""


def _pinned_sdk_version() -> str:
    lock = json.loads((TS_DIR / "package-lock.json").read_text())
    return str(lock["packages"][f"node_modules/{SDK_PACKAGE}"]["version"])


def node_unavailable_reason() -> str | None:
    """Why the TypeScript SDK test cannot run here (``None`` when it can): no Node 20+, or no ``npm ci``."""
    node = shutil.which("node")
    if node is None:
        return "node is not installed (Node 20+ runs the TypeScript SDK client)"
    version = subprocess.run([node, "--version"], capture_output=True, text=True, check=False).stdout.strip()
    match = re.fullmatch(r"v(\d+)\..*", version)
    if match is None or int(match.group(1)) < MIN_NODE_MAJOR:
        return f"node {version or '(unknown version)'} is older than {MIN_NODE_MAJOR}"
    installed = TS_DIR / "node_modules" / SDK_PACKAGE / "package.json"
    if not installed.exists():
        return f"{SDK_PACKAGE} is not installed in {TS_DIR} (run `make node-deps`, i.e. npm ci there)"
    installed_version = json.loads(installed.read_text())["version"]
    if installed_version != _pinned_sdk_version():
        pinned = _pinned_sdk_version()
        return f"{SDK_PACKAGE} {installed_version} is installed, the lock pins {pinned}: run `make node-deps`"
    return None


@dataclass(frozen=True)
class TypeScriptRun:
    """What the script reported, plus its stderr (diagnostics)."""

    result: dict[str, Any]
    stderr: str


class TypeScriptClientError(AssertionError):
    pass


async def run_typescript_client(
    *,
    server_url: str,
    redirect_uri: str,
    user: HeadlessUser,
    auth_method: str,
    scope: str | None,
    client_metadata_url: str | None = None,
) -> TypeScriptRun:
    """Run ``client.mjs`` against ``server_url``; ``user`` completes each authorization it asks for.
    ``client_metadata_url``: the SDK's ``clientMetadataUrl`` (its Client ID Metadata Document)."""
    argv = [
        "node",
        str(CLIENT_SCRIPT),
        "--server",
        server_url,
        "--redirect-uri",
        redirect_uri,
        "--auth-method",
        auth_method,
    ]
    if scope:
        argv += ["--scope", scope]
    if client_metadata_url:
        argv += ["--client-metadata-url", client_metadata_url]
    process = await asyncio.create_subprocess_exec(
        *argv,
        cwd=TS_DIR,
        stdin=asyncio.subprocess.PIPE,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    assert process.stdin is not None and process.stdout is not None and process.stderr is not None
    stderr_task = asyncio.ensure_future(process.stderr.read())
    try:
        async with asyncio.timeout(RUN_TIMEOUT):
            while True:
                line = await process.stdout.readline()
                if not line:
                    raise TypeScriptClientError(f"client.mjs ended without a result: {(await stderr_task).decode()}")
                message = json.loads(line)
                if message["event"] == "authorize":
                    callback_url = await user.authorize(message["url"])
                    process.stdin.write(json.dumps({"callback_url": callback_url}).encode() + b"\n")
                    await process.stdin.drain()
                elif message["event"] == "result":
                    await process.wait()
                    return TypeScriptRun(result=message, stderr=(await stderr_task).decode())
                else:
                    raise TypeScriptClientError(f"client.mjs failed: {message.get('message')}")
    finally:
        if process.returncode is None:
            process.kill()
            await process.wait()
        if not stderr_task.done():
            stderr_task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await stderr_task
