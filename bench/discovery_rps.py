"""Discovery throughput: the full gateway app against a bare aiohttp handler serving the same bytes.

Starts, each in its own process on loopback:

- a fake-but-real provider: a tiny aiohttp app serving a Keycloak-shaped
  ``/realms/mcp/.well-known/openid-configuration`` (``tests/unit/data/keycloak-openid-configuration.json``);
- the gateway side: the whole application, :func:`gateway.app.create_app`, with the memory adapter (issuer
  ``/realms/mcp``) in front of that provider, so the request-id and error middlewares, the router with every
  route of the app and the discovery handler (CORS ``*``, ETag, Cache-Control) all run per request. Logging
  is configured as ``dcr-gateway serve`` does (:func:`gateway.logging.configure_logging`, JSON) at level
  WARNING by default (``--gateway-log-level``), the realistic production setting: the per-request
  ``http.request`` line is an INFO event, so it is filtered but its call still costs;
- the bare side: ``web.Response(body=<the same bytes>, content_type="application/json")``.

Then it loads each side in turn (alternating, ``--rounds`` times) with a bounded number of requests and a time
limit, and prints requests/second and latency side by side. Load generators:

- ``raw`` (default): an in-repo asyncio HTTP/1.1 keep-alive client on plain streams; light enough that one
  client core can saturate one server core;
- ``aiohttp``: the same loop with aiohttp's client (heavier; the client may become the bottleneck);
- ``wrk``: the ``wrk`` binary if installed (``apt-get install -y wrk``); bounded by time only.

On machines with two or more CPUs the servers are pinned to CPU 0 and the load generators to the others
(``--no-pin`` to turn it off), so each server gets one core, as in the reference figures.

    .venv/bin/python bench/discovery_rps.py                     # raw generator, 3 rounds
    .venv/bin/python bench/discovery_rps.py --generator wrk --duration 5
    .venv/bin/python bench/discovery_rps.py --gateway-log-level INFO 2>/dev/null   # one JSON line per request
    .venv/bin/python bench/discovery_rps.py --loop asyncio      # both servers on the standard library's loop

Both servers (and the provider) run on the same event loop, ``--loop`` (default ``uvloop``, as ``dcr-gateway
serve``'s ``DCR_EVENT_LOOP``), so the comparison stays fair.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import multiprocessing as mp
import os
import re
import shutil
import statistics
import subprocess
import sys
import time
import urllib.request
from collections.abc import Callable, Coroutine, Sequence
from dataclasses import dataclass, replace
from multiprocessing.queues import Queue
from pathlib import Path
from typing import Any

from aiohttp import ClientSession, TCPConnector, web

ROOT = Path(__file__).resolve().parents[1]
DOCUMENT = ROOT / "tests" / "unit" / "data" / "keycloak-openid-configuration.json"
ISSUER_PATH = "/realms/mcp"
UPSTREAM_PATH = f"{ISSUER_PATH}/.well-known/openid-configuration"
DISCOVERY_PATH = f"/.well-known/oauth-authorization-server{ISSUER_PATH}"
HOST = "127.0.0.1"
ISSUER = str(json.loads(DOCUMENT.read_text())["issuer"])
PUBLIC_URL = ISSUER.removesuffix(ISSUER_PATH)
"""The gateway's public origin: the document's issuer must be ``{public_url}{issuer path}``."""
REGISTRATION_ENDPOINT = f"{ISSUER}/register"


# --------------------------------------------------------------------------------------------------- servers


def _pin(cpus: Sequence[int] | None) -> None:
    if cpus and hasattr(os, "sched_setaffinity"):
        os.sched_setaffinity(0, set(cpus))


async def _serve(app: web.Application, ready: Queue[int]) -> None:
    """Serve ``app`` on a free loopback port, put the port in ``ready``, and run until terminated."""
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, HOST, 0, backlog=1024)
    await site.start()
    port = runner.addresses[0][1]
    ready.put(port)
    await asyncio.Event().wait()  # until terminated


def _run(main: Coroutine[Any, Any, None], loop: str) -> None:
    """``main`` on a new event loop of the kind ``--loop`` names (the gateway's ``DCR_EVENT_LOOP`` choice)."""
    from gateway.server import loop_factory
    from gateway.settings import EventLoop

    with asyncio.Runner(loop_factory=loop_factory(EventLoop(loop))) as runner:
        runner.run(main)


def _run_provider(ready: Queue[int], cpus: Sequence[int] | None, loop: str) -> None:
    _pin(cpus)
    body = DOCUMENT.read_bytes()

    async def metadata(request: web.Request) -> web.Response:
        return web.Response(body=body, content_type="application/json")

    app = web.Application()
    app.router.add_get(UPSTREAM_PATH, metadata)
    _run(_serve(app, ready), loop)


def _run_gateway(ready: Queue[int], cpus: Sequence[int] | None, loop: str, gateway: tuple[int, str, str]) -> None:
    """The whole app, as ``dcr-gateway serve`` builds it, with the memory adapter as the provider's
    (``gateway``: the provider's port, the mode, the log level)."""
    provider_port, mode, log_level = gateway
    _pin(cpus)
    from adapters.memory.adapter import MemoryAdapter
    from gateway.app import create_app
    from gateway.logging import configure_logging
    from gateway.settings import Mode, Settings

    provider_url = f"http://{HOST}:{provider_port}"
    settings = Settings(
        public_url=PUBLIC_URL,
        mode=Mode(mode),
        provider="memory",
        provider_url=provider_url,
        log_level=log_level,
        log_format="json",
    )
    configure_logging(settings.log_level, settings.log_format)
    app = create_app(settings, adapter=MemoryAdapter(public_url=provider_url, issuer_path=ISSUER_PATH))
    _run(_serve(app, ready), loop)  # the runner's set-up runs the app's cleanup context: discovery is fetched


def _run_bare(ready: Queue[int], cpus: Sequence[int] | None, loop: str, body: bytes) -> None:
    _pin(cpus)

    async def metadata(request: web.Request) -> web.Response:
        return web.Response(body=body, content_type="application/json")

    app = web.Application()
    app.router.add_get(DISCOVERY_PATH, metadata)
    _run(_serve(app, ready), loop)


def _start(target: Callable[..., None], *args: Any) -> tuple[mp.process.BaseProcess, int]:
    context = mp.get_context("spawn")
    ready: Queue[int] = context.Queue()
    process = context.Process(target=target, args=(ready, *args), daemon=True)
    process.start()
    try:
        port = ready.get(timeout=60)
    except Exception:
        process.terminate()
        raise
    return process, port


# -------------------------------------------------------------------------------------------- load generators


@dataclass
class Result:
    requests: int
    errors: int
    seconds: float
    latencies: list[float]


class _Budget:
    def __init__(self, requests: int, deadline: float) -> None:
        self.remaining = requests
        self.deadline = deadline

    def take(self) -> bool:
        if self.remaining <= 0 or time.perf_counter() >= self.deadline:
            return False
        self.remaining -= 1
        return True


_CONTENT_LENGTH = re.compile(rb"\r\ncontent-length: *(\d+)", re.IGNORECASE)


class _RawConnection(asyncio.Protocol):
    """One keep-alive HTTP/1.1 connection sending GETs back to back, parsing in ``data_received`` so a request
    costs no coroutine switch (responses must carry ``Content-Length``; no pipelining)."""

    def __init__(self, request: bytes, budget: _Budget, result: Result, done: asyncio.Future[None]) -> None:
        self._request = request
        self._budget = budget
        self._result = result
        self._done = done
        self._buffer = b""
        self._started = 0.0
        self._transport: asyncio.Transport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self._transport = transport
        self._send()

    def _send(self) -> None:
        assert self._transport is not None
        if self._budget.take():
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
        if match is None:
            self._fail(RuntimeError(f"response without Content-Length: {self._buffer[:200]!r}"))
            return
        total = end + 4 + int(match.group(1))
        if len(self._buffer) < total:
            return
        self._result.latencies.append(time.perf_counter() - self._started)
        self._result.requests += 1
        if self._buffer[9:12] != b"200":
            self._result.errors += 1
        self._buffer = self._buffer[total:]
        self._send()

    def _fail(self, exc: Exception) -> None:
        if not self._done.done():
            self._done.set_exception(exc)
        if self._transport is not None:
            self._transport.close()

    def connection_lost(self, exc: Exception | None) -> None:
        if not self._done.done():
            if exc is None:
                self._done.set_result(None)
            else:
                self._done.set_exception(exc)


async def _raw_connection(port: int, path: str, budget: _Budget, result: Result) -> None:
    loop = asyncio.get_running_loop()
    done: asyncio.Future[None] = loop.create_future()
    request = f"GET {path} HTTP/1.1\r\nHost: {HOST}:{port}\r\nAccept: application/json\r\n\r\n".encode()
    await loop.create_connection(lambda: _RawConnection(request, budget, result, done), HOST, port)
    await done


async def _aiohttp_connection(session: ClientSession, url: str, budget: _Budget, result: Result) -> None:
    while budget.take():
        started = time.perf_counter()
        async with session.get(url) as response:
            await response.read()
        result.latencies.append(time.perf_counter() - started)
        result.requests += 1
        if response.status != 200:
            result.errors += 1


@dataclass(frozen=True)
class LoadSpec:
    generator: str
    port: int
    connections: int
    requests: int
    duration: float


async def _load(spec: LoadSpec) -> Result:
    result = Result(0, 0, 0.0, [])
    started = time.perf_counter()
    budget = _Budget(spec.requests, started + spec.duration)
    if spec.generator == "raw":
        connections = (_raw_connection(spec.port, DISCOVERY_PATH, budget, result) for _ in range(spec.connections))
        await asyncio.gather(*connections)
    else:
        async with ClientSession(connector=TCPConnector(limit=spec.connections)) as session:
            url = f"http://{HOST}:{spec.port}{DISCOVERY_PATH}"
            await asyncio.gather(*(_aiohttp_connection(session, url, budget, result) for _ in range(spec.connections)))
    result.seconds = time.perf_counter() - started
    return result


def _run_load(out: Queue[Result], cpus: Sequence[int] | None, spec: LoadSpec) -> None:
    _pin(cpus)
    out.put(asyncio.run(_load(spec)))


def python_load(spec: LoadSpec, *, processes: int, cpus: Sequence[int]) -> Result:
    """Run ``processes`` generator processes sharing the connections and requests of ``spec``; merge results."""
    context = mp.get_context("spawn")
    out: Queue[Result] = context.Queue()
    workers = []
    for index in range(processes):
        share = replace(
            spec,
            connections=max(1, spec.connections // processes + (1 if index < spec.connections % processes else 0)),
            requests=spec.requests // processes + (1 if index < spec.requests % processes else 0),
        )
        pinned = [cpus[index % len(cpus)]] if cpus else None
        worker = context.Process(target=_run_load, args=(out, pinned, share), daemon=True)
        worker.start()
        workers.append(worker)
    results = [out.get(timeout=spec.duration + 60) for _ in workers]
    for worker in workers:
        worker.join()
    return Result(
        requests=sum(r.requests for r in results),
        errors=sum(r.errors for r in results),
        seconds=max(r.seconds for r in results),
        latencies=[latency for r in results for latency in r.latencies],
    )


_WRK_RPS = re.compile(r"Requests/sec:\s+([\d.]+)")
_WRK_TOTAL = re.compile(r"(\d+) requests in ([\d.]+)(\w+)")
_WRK_PCT = re.compile(r"^\s+(50|99)(?:\.000)?%\s+([\d.]+)(us|ms|s)\s*$", re.MULTILINE)
_WRK_NON2XX = re.compile(r"Non-2xx or 3xx responses: (\d+)")
_UNIT = {"us": 1e-6, "ms": 1e-3, "s": 1.0, "m": 60.0}


def wrk_load(port: int, *, connections: int, duration: float, threads: int, cpus: Sequence[int]) -> dict[str, float]:
    wrk = shutil.which("wrk")
    if wrk is None:
        raise SystemExit("wrk is not installed (apt-get install -y wrk), use --generator raw")
    command = [wrk, f"-t{threads}", f"-c{connections}", f"-d{max(1, round(duration))}s", "--latency"]
    command.append(f"http://{HOST}:{port}{DISCOVERY_PATH}")
    if cpus and shutil.which("taskset"):
        command = ["taskset", "-c", ",".join(map(str, cpus)), *command]
    output = subprocess.run(command, capture_output=True, text=True, check=True).stdout
    total = _WRK_TOTAL.search(output)
    rps = _WRK_RPS.search(output)
    if total is None or rps is None:
        raise RuntimeError(f"cannot read wrk output:\n{output}")
    percentiles = {pct: float(value) * _UNIT[unit] for pct, value, unit in _WRK_PCT.findall(output)}
    non2xx = _WRK_NON2XX.search(output)
    return {
        "requests": float(total.group(1)),
        "rps": float(rps.group(1)),
        "p50": percentiles.get("50", float("nan")),
        "p99": percentiles.get("99", float("nan")),
        "errors": float(non2xx.group(1)) if non2xx else 0.0,
    }


# ------------------------------------------------------------------------------------------------------ main


def _fetch(port: int) -> tuple[int, dict[str, str], bytes]:
    with urllib.request.urlopen(f"http://{HOST}:{port}{DISCOVERY_PATH}", timeout=10) as response:
        return response.status, {k.lower(): v for k, v in response.headers.items()}, response.read()


def _summarize(result: Result) -> dict[str, float]:
    latencies = sorted(result.latencies)

    def pct(q: float) -> float:
        return latencies[min(len(latencies) - 1, int(q * len(latencies)))] if latencies else float("nan")

    return {
        "requests": float(result.requests),
        "rps": result.requests / result.seconds if result.seconds else 0.0,
        "p50": pct(0.50),
        "p99": pct(0.99),
        "errors": float(result.errors),
    }


@dataclass(frozen=True)
class Plan:
    generator: str
    requests: int
    duration: float
    connections: int
    client_procs: int
    client_cpus: Sequence[int]
    rounds: int
    warmup: float


def measure(plan: Plan, port: int, duration: float) -> dict[str, float]:
    """One bounded load run against ``port``: requests, req/s, p50/p99 seconds, errors."""
    if plan.generator == "wrk":
        return wrk_load(
            port, connections=plan.connections, duration=duration, threads=plan.client_procs, cpus=plan.client_cpus
        )
    spec = LoadSpec(plan.generator, port, plan.connections, plan.requests, duration)
    return _summarize(python_load(spec, processes=plan.client_procs, cpus=plan.client_cpus))


def compare(plan: Plan, sides: dict[str, int]) -> dict[str, list[dict[str, float]]]:
    """Warm every side up, then measure them alternately, ``plan.rounds`` times."""
    if plan.warmup > 0:
        for port in sides.values():
            measure(plan, port, plan.warmup)
    rounds: dict[str, list[dict[str, float]]] = {name: [] for name in sides}
    for index in range(plan.rounds):
        order = list(sides.items()) if index % 2 == 0 else list(reversed(sides.items()))
        for name, port in order:
            rounds[name].append(measure(plan, port, plan.duration))
    return rounds


def print_table(rounds: dict[str, list[dict[str, float]]]) -> None:
    print()
    print(
        f"{'side':<26}{'req/s median':>13}{'min':>9}{'max':>9}{'p50 ms':>9}{'p99 ms':>9}{'requests':>10}{'errors':>8}"
    )
    medians: list[float] = []
    p99s: list[float] = []
    for name, results in rounds.items():
        rps = [r["rps"] for r in results]
        medians.append(statistics.median(rps))
        p99s.append(statistics.median(r["p99"] for r in results))
        print(
            f"{name:<26}{medians[-1]:>13,.0f}{min(rps):>9,.0f}{max(rps):>9,.0f}"
            f"{statistics.median(r['p50'] for r in results) * 1e3:>9.2f}"
            f"{statistics.median(r['p99'] for r in results) * 1e3:>9.2f}"
            f"{sum(r['requests'] for r in results):>10,.0f}{sum(r['errors'] for r in results):>8,.0f}"
        )
    print(f"\ngateway / bare (median req/s): {medians[0] / medians[1]:.2f} (issue 12 goal: at least 0.95)")
    print(f"gateway / bare (median p99): {p99s[0] / p99s[1]:.2f} (issue 12 goal: at most 1.5)")


def _default_loop() -> str:
    from gateway.settings import Settings

    return str(Settings.model_fields["event_loop"].default)


def _parse(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument("--generator", choices=("raw", "aiohttp", "wrk"), default="raw")
    parser.add_argument("--requests", type=int, default=200_000, help="per side and round (not for wrk)")
    parser.add_argument("--duration", type=float, default=5.0, help="seconds, upper bound per side and round")
    parser.add_argument("--connections", type=int, default=32)
    parser.add_argument("--client-procs", type=int, default=0, help="generator processes (default: spare CPUs)")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--warmup", type=float, default=1.0, help="seconds of unmeasured load per side first")
    parser.add_argument("--no-pin", action="store_true", help="do not pin servers and generators to CPUs")
    parser.add_argument("--mode", choices=("front-door", "path-routing"), default="front-door", help="gateway mode")
    parser.add_argument(
        "--loop",
        choices=("uvloop", "asyncio"),
        default=_default_loop(),
        help="event loop of both servers and the provider (default: dcr-gateway serve's default, DCR_EVENT_LOOP)",
    )
    parser.add_argument(
        "--gateway-log-level",
        default="WARNING",
        help="the gateway's log level (INFO writes one JSON line per request to standard error)",
    )
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    args = _parse(argv)
    cpus = sorted(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else []
    pinned = cpus if not args.no_pin and len(cpus) >= 2 else []
    server_cpus, client_cpus = pinned[:1], pinned[1:]
    plan = Plan(
        generator=args.generator,
        requests=args.requests,
        duration=args.duration,
        connections=args.connections,
        client_procs=args.client_procs or max(1, len(client_cpus)),
        client_cpus=client_cpus,
        rounds=args.rounds,
        warmup=args.warmup,
    )

    processes: list[mp.process.BaseProcess] = []
    try:
        provider, provider_port = _start(_run_provider, server_cpus, args.loop)
        processes.append(provider)
        gateway, gateway_port = _start(
            _run_gateway, server_cpus, args.loop, (provider_port, args.mode, args.gateway_log_level)
        )
        processes.append(gateway)
        status, headers, body = _fetch(gateway_port)
        if status != 200 or json.loads(body)["registration_endpoint"] != REGISTRATION_ENDPOINT:
            raise RuntimeError("the gateway did not serve the rewritten document")
        bare, bare_port = _start(_run_bare, server_cpus, args.loop, body)
        processes.append(bare)
        _, bare_headers, bare_body = _fetch(bare_port)
        if bare_body != body:
            raise RuntimeError("the two sides do not serve the same bytes")
        extra = sorted(set(headers) - set(bare_headers))
        print(
            f"document {len(body)} bytes, ETag {headers.get('etag')}; gateway-only response headers: "
            f"{', '.join(extra)}; gateway log level {args.gateway_log_level}; both servers on the {args.loop} loop"
        )
        print(
            f"generator {plan.generator}, {plan.connections} connections, "
            f"{plan.client_procs} client process(es); servers on CPU {server_cpus or 'any'}, clients on "
            f"{client_cpus or 'any'}; {plan.rounds} round(s) of at most {plan.requests} requests and "
            f"{plan.duration:g} s per side"
        )
        rounds = compare(plan, {f"gateway app ({args.mode})": gateway_port, "bare aiohttp handler": bare_port})
    finally:
        for process in processes:
            process.terminate()
            process.join(5)
    print_table(rounds)
    return 0 if all(r["errors"] == 0 for results in rounds.values() for r in results) else 1


if __name__ == "__main__":
    sys.exit(main())
