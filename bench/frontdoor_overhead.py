"""Front-door proxy cost per request, in CPU of the proxying process: a cheap upstream, loaded directly, through
the bare :class:`gateway.proxy.FrontDoorProxy` and through the whole gateway app (issue 12, goal 3).

The official front-door figures (``bench/throughput.py``) put the real Keycloak and Hydra behind the gateway; on
two shared cores their own cost and the noise of the machine hide most of the proxy's. This measurement isolates
it. Each part runs in its own process on loopback:

- **upstream**: a raw asyncio HTTP/1.1 server (keep-alive, no framework), so it costs little: a discovery document
  for the gateway's cache, a JWKS-sized JSON document for every ``GET``, a ``302`` for the authorization path and a
  token-shaped JSON answer for every ``POST``; it counts the connections it accepted (``GET /__accepted``);
- **proxy**: ``FrontDoorProxy`` alone in an aiohttp app without middleware (what the proxy itself costs);
- **gateway**: :func:`gateway.app.create_app` in front-door mode with the memory adapter (issuer ``/realms/mcp``,
  token and authorization endpoints checked, see :class:`gateway.authorization.endpoints.AuthorizationEndpoints`),
  logging as ``dcr-gateway serve`` configures it at ``--gateway-log-level``.

A light in-repo generator (raw keep-alive connections, ``--connections`` in flight, at most ``--requests`` and
``--duration`` seconds per cell) loads each side in turn, per endpoint, ``--rounds`` times alternating the order.
Per cell: requests/s, p50 and p99 latency, the **CPU time of the proxying process per request** (user + system
from ``/proc/<pid>/stat``, the figure that noise hurts least) and the upstream connections accepted during the
cell (connection reuse: a keep-alive pool opens at most as many as requests are in flight).

    PYTHONPATH=. .venv/bin/python bench/frontdoor_overhead.py
    PYTHONPATH=. .venv/bin/python bench/frontdoor_overhead.py --requests 2000 --rounds 1 --sides proxy,gateway
    PYTHONPATH=. .venv/bin/python bench/frontdoor_overhead.py --sides direct,proxy --proxy-at main   # before/after
"""

from __future__ import annotations

import argparse
import asyncio
import json
import multiprocessing as mp
import os
import re
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from multiprocessing.queues import Queue
from pathlib import Path
from typing import Any

from discovery_rps import _pin, _serve, _start

ROOT = Path(__file__).resolve().parents[1]
DOCUMENT = ROOT / "tests" / "unit" / "data" / "keycloak-openid-configuration.json"
HOST = "127.0.0.1"
ISSUER_PATH = "/realms/mcp"
PUBLIC_URL = str(json.loads(DOCUMENT.read_text())["issuer"]).removesuffix(ISSUER_PATH)
"""The gateway's public origin: the document's issuer is ``{public_url}{issuer path}``."""
DISCOVERY = f"{ISSUER_PATH}/.well-known/openid-configuration"

JWKS = json.dumps(
    {
        "keys": [
            {
                "kid": f"key-{index}",
                "kty": "RSA",
                "alg": "RS256",
                "use": "sig",
                "n": "x" * 342,
                "e": "AQAB",
                "x5c": ["y" * 900],
                "x5t": "z" * 27,
                "x5t#S256": "w" * 43,
            }
            for index in range(2)
        ]
    }
).encode()
"""About Keycloak's JWKS size (two RSA keys with certificates)."""
TOKEN = json.dumps(
    {
        "access_token": "a" * 900,
        "expires_in": 300,
        "refresh_expires_in": 0,
        "token_type": "Bearer",
        "not-before-policy": 0,
        "scope": "profile email",
    }
).encode()


@dataclass(frozen=True)
class Endpoint:
    name: str
    method: str
    target: str
    status: int
    headers: tuple[tuple[str, str], ...] = ()
    body: bytes = b""


ENDPOINTS = (
    Endpoint(
        "token",
        "POST",
        f"{ISSUER_PATH}/token",
        200,
        (("Authorization", "Basic YmVuY2g6c2VjcmV0"), ("Content-Type", "application/x-www-form-urlencoded")),
        b"grant_type=client_credentials",
    ),
    Endpoint(
        "authorize redirect",
        "GET",
        f"{ISSUER_PATH}/authorize?client_id=bench&response_type=code&scope=openid&state=benchstate1234"
        "&redirect_uri=https%3A%2F%2Fclient.example%2Fcb",
        302,
    ),
    Endpoint("jwks", "GET", f"{ISSUER_PATH}/protocol/openid-connect/certs", 200),
)


# ------------------------------------------------------------------------------------------------------ upstream

_CONTENT_LENGTH = re.compile(rb"\r\ncontent-length: *(\d+)", re.IGNORECASE)


def _response(status: bytes, body: bytes, extra: bytes = b"") -> bytes:
    return (
        b"HTTP/1.1 " + status + b"\r\nContent-Type: application/json\r\nCache-Control: no-store\r\n"
        b"Content-Length: " + str(len(body)).encode() + b"\r\n" + extra + b"\r\n" + body
    )


class _Upstream(asyncio.Protocol):
    accepted = 0

    def __init__(self, discovery: bytes) -> None:
        self._discovery = _response(b"200 OK", discovery)
        self._jwks = _response(b"200 OK", JWKS)
        self._token = _response(b"200 OK", TOKEN)
        self._redirect = _response(
            b"302 Found", b"", b"Location: https://client.example/cb?error=login_required&state=benchstate1234\r\n"
        )
        self._buffer = b""
        self._transport: asyncio.Transport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        type(self).accepted += 1
        self._transport = transport

    def data_received(self, data: bytes) -> None:
        self._buffer += data
        while True:
            end = self._buffer.find(b"\r\n\r\n")
            if end < 0:
                return
            match = _CONTENT_LENGTH.search(self._buffer, 0, end + 2)
            total = end + 4 + (int(match.group(1)) if match else 0)
            if len(self._buffer) < total:
                return
            line = self._buffer[: self._buffer.find(b"\r\n")]
            self._buffer = self._buffer[total:]
            method, target, _ = line.split(b" ", 2)
            assert self._transport is not None
            if target == b"/__accepted":
                self._transport.write(_response(b"200 OK", str(type(self).accepted).encode()))
            elif target == DISCOVERY.encode():
                self._transport.write(self._discovery)
            elif method == b"POST":
                self._transport.write(self._token)
            elif b"/authorize" in target:
                self._transport.write(self._redirect)
            else:
                self._transport.write(self._jwks)


def _run_upstream(ready: Queue[int], cpus: Sequence[int] | None) -> None:
    _pin(cpus)
    document = DOCUMENT.read_bytes()

    async def serve() -> None:
        loop = asyncio.get_running_loop()
        server = await loop.create_server(lambda: _Upstream(document), HOST, 0, backlog=1024)
        ready.put(server.sockets[0].getsockname()[1])
        await asyncio.Event().wait()

    asyncio.run(serve())


# ---------------------------------------------------------------------------------------------- proxying sides


def _run_proxy(ready: Queue[int], cpus: Sequence[int] | None, upstream_port: int, source: str | None = None) -> None:
    """The proxy alone; ``source``: another version of ``gateway/proxy.py`` (a file) instead of this checkout's."""
    _pin(cpus)
    from aiohttp import web

    if source is None:
        from gateway import proxy as module
    else:
        import importlib.util

        spec = importlib.util.spec_from_file_location("proxy_under_test", source)
        assert spec is not None and spec.loader is not None
        module = importlib.util.module_from_spec(spec)
        sys.modules[spec.name] = module
        spec.loader.exec_module(module)
    FrontDoorProxy = module.FrontDoorProxy

    proxy = FrontDoorProxy(None, f"http://{HOST}:{upstream_port}", PUBLIC_URL)

    async def forward(request: web.Request) -> web.StreamResponse:
        response: web.StreamResponse = await proxy(request)
        return response

    async def session(app: web.Application) -> Any:
        client = FrontDoorProxy.new_session(30.0)
        proxy.attach(client)
        yield
        await client.close()

    app = web.Application(handler_args={"auto_decompress": False})
    app.router.add_route("*", "/{tail:.*}", forward)
    app.cleanup_ctx.append(session)
    asyncio.run(_serve(app, ready))


def _run_gateway(ready: Queue[int], cpus: Sequence[int] | None, upstream_port: int, log_level: str) -> None:
    _pin(cpus)
    from adapters.memory.adapter import MemoryAdapter
    from gateway.app import create_app
    from gateway.logging import configure_logging
    from gateway.settings import Settings

    upstream = f"http://{HOST}:{upstream_port}"
    settings = Settings(
        public_url=PUBLIC_URL, provider="memory", provider_url=upstream, log_level=log_level, log_format="json"
    )
    configure_logging(settings.log_level, settings.log_format)
    adapter = MemoryAdapter(public_url=upstream, issuer_path=ISSUER_PATH, oauth_paths=True)
    asyncio.run(_serve(create_app(settings, adapter=adapter), ready))


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of ``pid`` so far (``/proc/<pid>/stat`` fields 14 and 15)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


# ----------------------------------------------------------------------------------------------------- generator


@dataclass
class Result:
    requests: int = 0
    errors: list[str] = field(default_factory=list)
    seconds: float = 0.0
    latencies: list[float] = field(default_factory=list)


class _Connection(asyncio.Protocol):
    """One keep-alive connection sending the same request back to back (answers must carry Content-Length)."""

    def __init__(self, request: bytes, status: bytes, budget: list[int], deadline: float, result: Result) -> None:
        self._request = request
        self._status = status
        self._budget = budget
        self._deadline = deadline
        self._result = result
        self._buffer = b""
        self._started = 0.0
        self._transport: asyncio.Transport | None = None
        self.done: asyncio.Future[None] = asyncio.get_running_loop().create_future()

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self._transport = transport
        self._send()

    def _send(self) -> None:
        assert self._transport is not None
        if self._budget[0] > 0 and time.perf_counter() < self._deadline:
            self._budget[0] -= 1
            self._started = time.perf_counter()
            self._transport.write(self._request)
        else:
            self._transport.close()

    def data_received(self, data: bytes) -> None:
        self._buffer += data
        end = self._buffer.find(b"\r\n\r\n")
        if end < 0:
            return
        match = _CONTENT_LENGTH.search(self._buffer, 0, end + 2)
        total = end + 4 + (int(match.group(1)) if match else 0)
        if len(self._buffer) < total:
            return
        self._result.latencies.append(time.perf_counter() - self._started)
        self._result.requests += 1
        if self._buffer[9:12] != self._status and len(self._result.errors) < 3:
            self._result.errors.append(self._buffer[:300].decode("latin-1"))
        self._buffer = self._buffer[total:]
        self._send()

    def connection_lost(self, exc: Exception | None) -> None:
        if not self.done.done():
            self.done.set_result(None)


def _request_bytes(endpoint: Endpoint, port: int) -> bytes:
    lines = [f"{endpoint.method} {endpoint.target} HTTP/1.1", f"Host: {HOST}:{port}", "Accept: */*"]
    lines += [f"{name}: {value}" for name, value in endpoint.headers]
    if endpoint.body:
        lines.append(f"Content-Length: {len(endpoint.body)}")
    return ("\r\n".join(lines) + "\r\n\r\n").encode() + endpoint.body


async def load(port: int, endpoint: Endpoint, *, connections: int, requests: int, duration: float) -> Result:
    loop = asyncio.get_running_loop()
    result = Result()
    budget = [requests]
    started = time.perf_counter()
    request = _request_bytes(endpoint, port)
    status = str(endpoint.status).encode()
    protocols = []
    for _ in range(connections):
        _, protocol = await loop.create_connection(
            lambda: _Connection(request, status, budget, started + duration, result), HOST, port
        )
        protocols.append(protocol)
    await asyncio.gather(*(p.done for p in protocols))
    result.seconds = time.perf_counter() - started
    return result


async def accepted(upstream_port: int) -> int:
    reader, writer = await asyncio.open_connection(HOST, upstream_port)
    try:
        writer.write(b"GET /__accepted HTTP/1.1\r\nHost: x\r\n\r\n")
        head = await reader.readuntil(b"\r\n\r\n")
        match = _CONTENT_LENGTH.search(head)
        assert match is not None
        return int(await reader.readexactly(int(match.group(1)))) - 1  # this connection not counted
    finally:
        writer.close()


# ------------------------------------------------------------------------------------------------------- main


@dataclass(frozen=True)
class Side:
    name: str
    port: int
    pid: int | None


async def measure(args: argparse.Namespace, sides: list[Side], upstream_port: int) -> list[dict[str, Any]]:
    rows: list[dict[str, Any]] = []
    for endpoint in ENDPOINTS:
        if endpoint.name not in args.endpoints:
            continue
        cells: dict[str, list[dict[str, float]]] = {side.name: [] for side in sides}
        for side in sides:  # warm-up: connections, caches
            await load(side.port, endpoint, connections=args.connections, requests=200, duration=args.duration)
        for round_ in range(args.rounds):
            for side in sides if round_ % 2 == 0 else list(reversed(sides)):
                before_accepted = await accepted(upstream_port)
                before_cpu = cpu_seconds(side.pid) if side.pid else 0.0
                result = await load(
                    side.port, endpoint, connections=args.connections, requests=args.requests, duration=args.duration
                )
                cpu = cpu_seconds(side.pid) - before_cpu if side.pid else float("nan")
                opened = await accepted(upstream_port) - before_accepted - 1  # the first probe's connection
                if result.errors:
                    raise SystemExit(f"{side.name} {endpoint.name}: unexpected answer:\n{result.errors[0]}")
                latencies = sorted(result.latencies)
                cells[side.name].append(
                    {
                        "requests": result.requests,
                        "rps": result.requests / result.seconds,
                        "p50_ms": 1e3 * latencies[len(latencies) // 2],
                        "p99_ms": 1e3 * latencies[min(len(latencies) - 1, int(0.99 * len(latencies)))],
                        "cpu_us": 1e6 * cpu / result.requests,
                        "upstream_connections": opened,
                    }
                )
        for name, results in cells.items():
            rows.append(
                {
                    "endpoint": endpoint.name,
                    "side": name,
                    **{
                        key: statistics.median(r[key] for r in results) for key in ("rps", "p50_ms", "p99_ms", "cpu_us")
                    },
                    "requests": sum(r["requests"] for r in results),
                    "upstream_connections": max(r["upstream_connections"] for r in results),
                }
            )
    return rows


def print_rows(rows: list[dict[str, Any]]) -> None:
    print(
        f"\n{'endpoint':<20}{'side':<16}{'req/s':>9}{'p50 ms':>9}{'p99 ms':>9}{'CPU us/req':>12}"
        f"{'requests':>10}{'upstream conns':>16}"
    )
    for row in rows:
        cpu = "-" if row["cpu_us"] != row["cpu_us"] else f"{row['cpu_us']:.0f}"
        print(
            f"{row['endpoint']:<20}{row['side']:<16}{row['rps']:>9,.0f}{row['p50_ms']:>9.2f}{row['p99_ms']:>9.2f}"
            f"{cpu:>12}{row['requests']:>10}{row['upstream_connections']:>16}"
        )


def _parse(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument("--sides", default="direct,proxy,gateway", help="comma-separated: direct, proxy, gateway")
    parser.add_argument("--endpoints", default=",".join(e.name for e in ENDPOINTS), help="comma-separated")
    parser.add_argument("--requests", type=int, default=3000, help="per side, endpoint and round")
    parser.add_argument("--duration", type=float, default=10.0, help="seconds, upper bound per cell")
    parser.add_argument("--connections", type=int, default=8, help="requests in flight")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--gateway-log-level", default="WARNING", help="INFO: one access-log line per request")
    parser.add_argument("--no-pin", action="store_true", help="do not pin the servers to CPU 0, the generator to 1")
    parser.add_argument(
        "--proxy-at", metavar="REV", help="also the proxy alone as gateway/proxy.py was at git revision REV"
    )
    parser.add_argument("--json", type=Path, help="also write the rows as JSON here")
    args = parser.parse_args(argv)
    args.sides = [s.strip() for s in args.sides.split(",") if s.strip()]
    args.endpoints = [s.strip() for s in args.endpoints.split(",") if s.strip()]
    if not set(args.sides) <= {"direct", "proxy", "gateway"}:
        parser.error("--sides takes direct, proxy and/or gateway")
    if not set(args.endpoints) <= {e.name for e in ENDPOINTS}:
        parser.error(f"--endpoints takes {', '.join(e.name for e in ENDPOINTS)}")
    if args.requests < 10 or args.rounds < 1 or args.connections < 1:
        parser.error("requests >= 10, rounds >= 1, connections >= 1")
    return args


def main(argv: Sequence[str] | None = None) -> int:
    args = _parse(argv)
    cpus = sorted(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else []
    pinned = not args.no_pin and len(cpus) >= 2
    server_cpus = cpus[:1] if pinned else None
    if pinned:
        _pin(cpus[1:])
    processes: list[mp.process.BaseProcess] = []
    try:
        upstream, upstream_port = _start(_run_upstream, server_cpus)
        processes.append(upstream)
        sides = []
        if "direct" in args.sides:
            sides.append(Side("direct", upstream_port, None))
        if "proxy" in args.sides:
            process, port = _start(_run_proxy, server_cpus, upstream_port)
            processes.append(process)
            sides.append(Side("proxy", port, process.pid))
        if "gateway" in args.sides:
            process, port = _start(_run_gateway, server_cpus, upstream_port, args.gateway_log_level)
            processes.append(process)
            sides.append(Side("gateway", port, process.pid))
        if args.proxy_at:  # gateway/proxy.py as it was at a git revision, side by side with this checkout's
            source = Path(tempfile.mkdtemp()) / "proxy.py"
            revision = subprocess.run(
                ["git", "-C", str(ROOT), "show", f"{args.proxy_at}:gateway/proxy.py"],
                capture_output=True,
                check=True,
            )
            source.write_bytes(revision.stdout)
            process, port = _start(_run_proxy, server_cpus, upstream_port, str(source))
            processes.append(process)
            sides.append(Side(f"proxy@{args.proxy_at}"[:16], port, process.pid))
        print(
            f"{args.connections} in flight, {args.rounds} round(s) of at most {args.requests} requests and "
            f"{args.duration:g} s per cell; servers on CPU {server_cpus or 'any'}, generator on "
            f"{cpus[1:] if pinned else 'any'}; gateway log level {args.gateway_log_level}",
            flush=True,
        )
        rows = asyncio.run(measure(args, sides, upstream_port))
    finally:
        for process in processes:
            process.terminate()
            process.join(5)
    print_rows(rows)
    if args.json:
        args.json.write_text(json.dumps({"argv": sys.argv[1:], "rows": rows}, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
