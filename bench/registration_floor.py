"""The floor of any Python proxy here: a registration through the gateway, through an aiohttp pass-through that
does nothing but forward the admin create call, and the admin call alone, interleaved (issue 12, goal 1).

The gateway's sequential overhead goal (+1.0 ms Hydra, +1.5 ms Keycloak at p50) is measured against the admin API
alone; this benchmark adds the side that says how much of that overhead any aiohttp service in the same place
would pay on this machine (two extra loopback hops, their wake-ups, an HTTP server and an HTTP client exchange):
``floor`` is a bare aiohttp application on the same event loop as the gateway (uvloop), one pooled
``ClientSession``, no validation, no logging, forwarding the very admin request (path, body, ``Authorization``)
to the provider and its answer (status, body, ``Location``) back.

    PYTHONPATH=. .venv/bin/python bench/registration_floor.py --requests 300
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import time
from collections.abc import Sequence
from pathlib import Path

import aiohttp
from registration_latency import (
    BODIES,
    BenchError,
    HydraBench,
    KeycloakBench,
    Prepared,
    ProviderBench,
    Samples,
    bench_run,
    start_stack,
)

from devstack.process import free_port

SIDES = ("admin", "floor", "gateway")

FLOOR_APP = """
import sys
import uvloop
from aiohttp import ClientSession, TCPConnector, web

UPSTREAM = sys.argv[2]
FORWARDED = ("Content-Type", "Authorization")


async def session(app: web.Application):
    app["session"] = ClientSession(connector=TCPConnector(limit=100))
    yield
    await app["session"].close()


async def forward(request: web.Request) -> web.Response:
    body = await request.read()
    headers = {name: request.headers[name] for name in FORWARDED if name in request.headers}
    async with request.app["session"].post(UPSTREAM + request.path_qs, data=body, headers=headers) as answer:
        payload = await answer.read()
        kept = {"Location": answer.headers["Location"]} if "Location" in answer.headers else {}
        return web.Response(body=payload, status=answer.status, headers=kept, content_type="application/json")


app = web.Application()
app.cleanup_ctx.append(session)
app.router.add_post("/{tail:.*}", forward)
uvloop.install()
web.run_app(app, host="127.0.0.1", port=int(sys.argv[1]), access_log=None, print=None)
"""


def _origin(url: str) -> str:
    parts = url.split("/", 3)
    return "/".join(parts[:3])


async def _send(bench: ProviderBench, side: str, prepared: Prepared, floor_origin: str) -> float:
    url = prepared.url
    if side == "floor":
        url = floor_origin + url[len(_origin(url)) :]
    started = time.perf_counter()
    async with bench.http.post(url, data=prepared.body, headers=prepared.headers) as response:
        payload = await response.read()
    elapsed = time.perf_counter() - started
    if response.status != 201:
        raise BenchError(f"{bench.name} {side}: HTTP {response.status}: {payload[:300]!r}")
    bench.record("gateway" if side == "gateway" else "admin", response, payload)
    return elapsed


async def _measure(bench: ProviderBench, floor_origin: str, requests: int, warmup: int) -> dict[str, Samples]:
    await bench.setup()
    body = BODIES["public native"]
    results = {side: Samples() for side in SIDES}
    for index in range(warmup + requests):
        order = SIDES[index % 3 :] + SIDES[: index % 3]  # each side first, second and last equally often
        for side in order:
            prepared = bench.gateway_request(body) if side == "gateway" else await bench.admin_request(body)
            elapsed = await _send(bench, side, prepared, floor_origin)
            if index >= warmup:
                results[side].latencies.append(elapsed)
    return results


async def _run(
    benches: Sequence[tuple[str, str, object, str]], requests: int, warmup: int, run_dir: Path
) -> dict[str, dict[str, Samples]]:
    script = run_dir / "floor_app.py"
    script.write_text(FLOOR_APP)
    out: dict[str, dict[str, Samples]] = {}
    async with aiohttp.ClientSession() as http:
        for name, admin_origin, provider, gateway_url in benches:
            port = free_port()
            floor = await asyncio.create_subprocess_exec(sys.executable, str(script), str(port), admin_origin)
            try:
                await _wait_listening(port)
                bench: ProviderBench = (
                    HydraBench(http, provider, gateway_url)  # type: ignore[arg-type]
                    if name == "hydra"
                    else KeycloakBench(http, provider, gateway_url)  # type: ignore[arg-type]
                )
                out[name] = await _measure(bench, f"http://127.0.0.1:{port}", requests, warmup)
                deleted, left = await bench.cleanup(8)
                print(f"{name}: deleted {deleted} clients created by this run; managed clients left: {left}")
            finally:
                floor.terminate()
                await asyncio.wait_for(floor.wait(), 10)
    return out


async def _wait_listening(port: int) -> None:
    for _ in range(100):
        try:
            _, writer = await asyncio.open_connection("127.0.0.1", port)
        except OSError:
            await asyncio.sleep(0.1)
            continue
        writer.close()
        return
    raise BenchError(f"the floor proxy did not listen on {port}")


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--requests", type=int, default=300, help="measured sequential requests per side")
    parser.add_argument("--warmup", type=int, default=20, help="unmeasured requests per side first")
    parser.add_argument("--providers", default="hydra,keycloak")
    args = parser.parse_args(argv)
    providers = [p for p in args.providers.split(",") if p]
    with bench_run("floor") as run:
        hydra, hydra_url, keycloak, keycloak_url = start_stack(run.stack, run.run_dir, providers)
        benches: list[tuple[str, str, object, str]] = []
        if hydra is not None:
            benches.append(("hydra", _origin(hydra.admin_url), hydra, hydra_url))
        if keycloak is not None:
            benches.append(("keycloak", keycloak.base_url, keycloak, keycloak_url))
        results = asyncio.run(_run(benches, args.requests, args.warmup, run.run_dir))
        print(f"\nsequential registration (public native body), {args.requests} per side, ms")
        print(f"{'provider':<10}{'side':<9}{'p50':>8}{'p90':>8}{'p99':>8}{'+p50 vs admin':>15}")
        for name, sides in results.items():
            admin_p50 = sides["admin"].row()["p50"]
            for side in SIDES:
                row = sides[side].row()
                print(
                    f"{name:<10}{side:<9}{row['p50']:>8.2f}{row['p90']:>8.2f}{row['p99']:>8.2f}"
                    f"{row['p50'] - admin_p50:>+15.2f}"
                )
        run.ok = True
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
