"""In-process cost of the gateway's own work per request: registration (RFC 7591) and discovery (RFC 8414).

Not a side-by-side benchmark (that is ``throughput.py`` and ``discovery_rps.py``): it runs the whole app
(:func:`gateway.app.create_app`, every middleware, the registration pipeline, the policy rules, the audit log) in
this process, in front of a fake upstream serving a Keycloak-shaped discovery document, and loads it from a
bounded loop in a child process (plain asyncio streams, one keep-alive connection per in-flight request). It
prints the server process's CPU per request (user and system, from ``os.times``), which a noisy machine moves far
less than wall-clock rates; ``--profile`` adds a cProfile of the server side (the function-call count per request
is deterministic: compare it across commits), ``--time-writes`` the wall and CPU time spent inside
``transport.write`` per answer (the ``send()`` of the answer, see bench/README.md "Issue 12: the registration hot
path and discovery").

The registration side uses the memory adapter, or a running Hydra's admin API with ``--hydra-admin URL``
(e.g. one started by ``devstack.providers.start_hydra_and_login``). Limits are raised so that nothing is refused;
audit events go to a temporary file; logs to a file at ``--log-level`` (INFO: one access line and one
``client.registered`` line per registration, as ``dcr-gateway serve`` logs by default).

    PYTHONPATH=. .venv/bin/python bench/hot_path.py register -n 3000 --log-level INFO
    PYTHONPATH=. .venv/bin/python bench/hot_path.py register -n 3000 --log-level INFO --profile
    PYTHONPATH=. .venv/bin/python bench/hot_path.py discovery -n 20000 -c 32
"""

from __future__ import annotations

import argparse
import asyncio
import cProfile
import io
import json
import os
import pstats
import sys
import tempfile
import time
import urllib.request
from pathlib import Path
from typing import Any

from aiohttp import web

ROOT = Path(__file__).resolve().parents[1]
DOCUMENT = json.loads((ROOT / "tests" / "unit" / "data" / "keycloak-openid-configuration.json").read_text())
ISSUER_PATH = "/realms/mcp"
PUBLIC_URL = str(DOCUMENT["issuer"]).removesuffix(ISSUER_PATH)
DISCOVERY_PATH = f"/.well-known/oauth-authorization-server{ISSUER_PATH}"
BODY = {
    "client_name": "bench native",
    "redirect_uris": ["http://127.0.0.1:3000/callback"],
    "token_endpoint_auth_method": "none",
    "grant_types": ["authorization_code", "refresh_token"],
    "response_types": ["code"],
    "application_type": "native",
}

LOAD = r"""
import asyncio, json, sys, time
port, path, n, inflight, method, body = (
    int(sys.argv[1]), sys.argv[2], int(sys.argv[3]), int(sys.argv[4]), sys.argv[5], sys.argv[6].encode()
)
if method == "GET":
    request = f"GET {path} HTTP/1.1\r\nHost: bench\r\n\r\n".encode()
else:
    head = f"POST {path} HTTP/1.1\r\nHost: bench\r\nContent-Type: application/json\r\n"
    request = head.encode() + f"Content-Length: {len(body)}\r\n\r\n".encode() + body
async def connection(count, latencies):
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    for _ in range(count):
        started = time.perf_counter()
        writer.write(request)
        head = await reader.readuntil(b"\r\n\r\n")
        lines = head.lower().split(b"\r\n")
        length = next(int(line.split(b":")[1]) for line in lines if line.startswith(b"content-length:"))
        await reader.readexactly(length)
        latencies.append(time.perf_counter() - started)
        if head[9:12] not in (b"200", b"201"):
            sys.exit(f"unexpected answer: {head[:120]!r}")
    writer.close()
async def main():
    latencies = []
    started = time.perf_counter()
    await asyncio.gather(*(connection(n // inflight, latencies) for _ in range(inflight)))
    wall = time.perf_counter() - started
    latencies.sort()
    print(json.dumps({"n": len(latencies), "wall": wall, "p50": latencies[len(latencies) // 2]}))
asyncio.run(main())
"""


async def load(port: int, path: str, requests: int, inflight: int, *, method: str, body: bytes) -> dict[str, float]:
    """``requests`` requests from a child process (so its CPU is not counted here), ``inflight`` at a time."""
    child = await asyncio.create_subprocess_exec(
        sys.executable,
        "-c",
        LOAD,
        str(port),
        path,
        str(requests),
        str(inflight),
        method,
        body.decode(),
        stdout=asyncio.subprocess.PIPE,
    )
    out, _ = await child.communicate()
    if child.returncode:
        raise SystemExit("the load generator failed")
    result: dict[str, float] = json.loads(out)
    return result


async def serve(app: web.Application) -> tuple[web.AppRunner, int]:
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", 0).start()
    return runner, runner.addresses[0][1]


async def measure(
    label: str, port: int, path: str, args: argparse.Namespace, *, profile: cProfile.Profile | None, body: bytes = b""
) -> float:
    method = "POST" if body else "GET"
    await load(port, path, max(200, args.requests // 10), args.inflight, method=method, body=body)  # warm-up
    if profile is not None:
        profile.enable()
    before = os.times()
    result = await load(port, path, args.requests, args.inflight, method=method, body=body)
    after = os.times()
    if profile is not None:
        profile.disable()
    count = result["n"]
    user, system = (after.user - before.user) / count, (after.system - before.system) / count
    print(
        f"{label:<22} server CPU {(user + system) * 1e6:7.1f} us/request (user {user * 1e6:.1f}, system "
        f"{system * 1e6:.1f}); {count / result['wall']:8.0f} requests/s, p50 {result['p50'] * 1e3:.3f} ms"
    )
    return user + system


def time_writes(counts: dict[str, list[float]]) -> None:
    """Wrap the event loop's ``transport.write``: wall and thread CPU time per call, by answer status and port."""
    from asyncio import selector_events

    write = selector_events._SelectorSocketTransport.write

    def timed(self: Any, data: Any) -> None:
        wall, cpu = time.perf_counter(), time.thread_time()
        write(self, data)
        key = f"{bytes(data[9:12]).decode(errors='replace')} on port {self.get_extra_info('sockname')[1]}"
        entry = counts.setdefault(key, [0, 0.0, 0.0])
        entry[0] += 1
        entry[1] += time.perf_counter() - wall
        entry[2] += time.thread_time() - cpu

    selector_events._SelectorSocketTransport.write = timed  # type: ignore[method-assign]


async def main(args: argparse.Namespace) -> None:
    from adapters.base import ProviderAdapter
    from adapters.memory.adapter import MemoryAdapter
    from gateway.app import create_app
    from gateway.logging import configure_logging
    from gateway.settings import Settings

    workdir = Path(tempfile.mkdtemp(prefix="dcr-hot-path-"))
    upstream_app = web.Application()

    async def metadata(_: web.Request) -> web.Response:
        return web.json_response(DOCUMENT)

    upstream_app.router.add_get(f"{ISSUER_PATH}/.well-known/openid-configuration", metadata)
    upstream_runner, upstream_port = await serve(upstream_app)
    upstream = f"http://127.0.0.1:{upstream_port}"
    with (workdir / "gateway.log").open("w") as log_stream:
        configure_logging(args.log_level, "json", stream=log_stream)
        settings = Settings(
            public_url=PUBLIC_URL,
            provider="memory",
            provider_url=upstream,
            log_level=args.log_level,
            log_format="json",
            limits={"per_source_limit": 10**9, "global_limit": 10**9, "max_clients_per_issuer": 10**9},
            audit={"path": str(workdir / "audit.log")},
        )
        adapter: ProviderAdapter
        if args.hydra_admin:
            from adapters.hydra.adapter import HydraAdapter

            adapter = HydraAdapter(admin_url=args.hydra_admin, public_url=upstream, issuer_path=ISSUER_PATH)
        else:
            adapter = MemoryAdapter(public_url=upstream, issuer_path=ISSUER_PATH)
        writes: dict[str, list[float]] = {}
        if args.time_writes:
            time_writes(writes)
        runner, port = await serve(create_app(settings, adapter=adapter))
        profile = cProfile.Profile() if args.profile else None
        try:
            if args.what == "discovery":
                bare_app = web.Application()
                url = f"http://127.0.0.1:{port}{DISCOVERY_PATH}"
                answer = await asyncio.to_thread(lambda: urllib.request.urlopen(url, timeout=10).read())

                async def bare(_: web.Request) -> web.Response:
                    return web.Response(body=answer, content_type="application/json")

                bare_app.router.add_get(DISCOVERY_PATH, bare)
                bare_runner, bare_port = await serve(bare_app)
                for _ in range(args.rounds):
                    gateway = await measure("gateway discovery", port, DISCOVERY_PATH, args, profile=profile)
                    baseline = await measure("bare aiohttp handler", bare_port, DISCOVERY_PATH, args, profile=None)
                    print(f"  bare / gateway CPU per request: {baseline / gateway:.2f}")
                await bare_runner.cleanup()
            else:
                body = json.dumps(BODY).encode()
                for _ in range(args.rounds):
                    await measure("registration", port, f"{ISSUER_PATH}/register", args, profile=profile, body=body)
        finally:
            await runner.cleanup()
            await upstream_runner.cleanup()
    for key, (calls, wall, cpu) in sorted(writes.items()):
        if calls > 1:
            print(f"transport.write, answer {key}: {calls:.0f} calls, wall {wall / calls * 1e6:.1f} us, "
                  f"CPU {cpu / calls * 1e6:.1f} us per call")  # fmt: skip
    if profile is not None:
        text = io.StringIO()
        pstats.Stats(profile, stream=text).sort_stats(args.sort).print_stats(args.top)
        print(text.getvalue())


def parse(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    parser.add_argument("what", choices=("register", "discovery"))
    parser.add_argument("-n", "--requests", type=int, default=3000, help="measured requests per round")
    parser.add_argument("-c", "--inflight", type=int, default=1, help="requests in flight (connections)")
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--log-level", default="INFO")
    parser.add_argument("--hydra-admin", default=None, help="register through the Hydra adapter at this admin URL")
    parser.add_argument("--profile", action="store_true", help="cProfile of the server side (first round)")
    parser.add_argument("--sort", default="tottime", help="cProfile sort key (tottime, cumulative, ncalls)")
    parser.add_argument("--time-writes", action="store_true", help="time spent inside transport.write")
    parser.add_argument("--top", type=int, default=40, help="cProfile lines printed")
    parser.add_argument(
        "--loop",
        choices=("asyncio", "uvloop"),
        default="asyncio",
        help="the servers' event loop (both sides, in process; --time-writes needs asyncio)",
    )
    return parser.parse_args(argv)


if __name__ == "__main__":
    from gateway.server import loop_factory
    from gateway.settings import EventLoop

    arguments = parse()
    with asyncio.Runner(loop_factory=loop_factory(EventLoop(arguments.loop))) as runner:
        runner.run(main(arguments))
