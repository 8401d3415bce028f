"""Throughput through the gateway against the provider alone, for the real Hydra and the real Keycloak, side by
side in one run (issue 12, goals 1 and 3).

Reuses :mod:`registration_latency`'s stack (a fresh Hydra with the dev login app, a fresh Keycloak with realm
``mcp``, one ``dcr-gateway serve`` subprocess fronting each), its bodies, its admin-side requests and its
cleanup. Two parts, both interleaved per cell in the order gateway, direct, direct, gateway (half the count
each) so machine noise and drift hit both sides:

- **registration sweep** (goal 1): registrations/s for the public native body at concurrency 1, 8, 32 and 64,
  ``POST {issuer}/register`` through the gateway against the provider's admin create call alone
  (Hydra ``POST /admin/clients``, Keycloak ``POST /admin/realms/mcp/clients``); every client created is deleted.
- **front door** (goal 3): through the gateway against direct to the provider, per provider:
  the token endpoint (``client_credentials`` with a confidential client), the authorization endpoint's redirect
  (Hydra: ``GET /oauth2/auth`` answered 302 to the login app; Keycloak: ``prompt=none`` answered 302 with
  ``error=login_required``, no login involved) and the JWKS document.

Writes a text table to standard output and, into ``--out-dir`` (default ``bench/results``), the JSON of the run
and a PNG plot of registrations/s against concurrency. ``--profile`` records each gateway with py-spy (the
``bench`` extra) during a concurrency-8 registration block and prints the top costs.

    PYTHONPATH=. .venv/bin/python bench/throughput.py
    PYTHONPATH=. .venv/bin/python bench/throughput.py --providers hydra --requests 100 --levels 1,8 --no-frontdoor
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import collections
import json
import os
import shutil
import signal
import sys
import time
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp
from registration_latency import (
    BODIES,
    SIDES,
    BenchError,
    HydraBench,
    Key,
    KeycloakBench,
    ProviderBench,
    Samples,
    Stack,
    bench_run,
    concurrent,
    start_stack,
)

from devstack.providers import HydraProvider, KeycloakProvider

SWEEP_BODY = "public native"
LEVELS = (1, 8, 32, 64)
ROOT = Path(__file__).resolve().parent.parent
PROJECT_FRAMES = ("(gateway/", "(adapters/", "(keycloak/")
"""Frames the profile attributes a cost to: the gateway's own code and python-keycloak's."""


# ------------------------------------------------------------------------------------------ registration sweep


async def sweep(bench: ProviderBench, levels: Sequence[int], requests: int, warmup: int) -> list[dict[str, Any]]:
    body = {SWEEP_BODY: BODIES[SWEEP_BODY]}
    if warmup:
        await concurrent(bench, warmup, 8, {(bench.name, SWEEP_BODY, s): Samples() for s in SIDES}, body)
    rows: list[dict[str, Any]] = []
    for level in levels:
        results: dict[Key, Samples] = {(bench.name, SWEEP_BODY, s): Samples() for s in SIDES}
        started = time.perf_counter()
        await concurrent(bench, requests, level, results, body)
        gateway, admin = (results[(bench.name, SWEEP_BODY, s)].row() for s in SIDES)
        rows.append(_row(bench.name, "registration", level, gateway, admin))
        print(f"{bench.name}: concurrency {level}: {time.perf_counter() - started:.1f} s", flush=True)
    return rows


def _row(provider: str, what: str, level: int, gateway: dict[str, float], direct: dict[str, float]) -> dict[str, Any]:
    return {
        "provider": provider,
        "what": what,
        "concurrency": level,
        "n": int(gateway["n"]),
        "gateway": {k: round(gateway[k], 3) for k in ("rps", "p50", "p99", "mean")},
        "direct": {k: round(direct[k], 3) for k in ("rps", "p50", "p99", "mean")},
        "ratio": round(gateway["rps"] / direct["rps"], 3),
        "overhead_p50_ms": round(gateway["p50"] - direct["p50"], 3),
        "overhead_p99_ms": round(gateway["p99"] - direct["p99"], 3),
    }


# --------------------------------------------------------------------------------------------------- front door


@dataclass(frozen=True)
class Endpoint:
    """One front-door request, the same on both sides but for the origin."""

    name: str
    method: str
    path: str
    """Path and query, appended to the gateway's or the provider's origin."""
    status: int
    headers: dict[str, str]
    body: bytes = b""


async def hit(http: aiohttp.ClientSession, url: str, endpoint: Endpoint) -> float:
    started = time.perf_counter()
    async with http.request(
        endpoint.method, url, data=endpoint.body or None, headers=endpoint.headers, allow_redirects=False
    ) as response:
        payload = await response.read()
    elapsed = time.perf_counter() - started
    if response.status != endpoint.status:
        raise BenchError(f"{endpoint.name} {url}: HTTP {response.status} (wanted {endpoint.status}): {payload[:200]!r}")
    return elapsed


async def frontdoor_cell(
    http: aiohttp.ClientSession, origins: dict[str, str], endpoint: Endpoint, requests: int, level: int
) -> tuple[Samples, Samples]:
    """``requests`` per side, ``level`` in flight, in the order gateway, direct, direct, gateway."""
    samples = {"gateway": Samples(), "direct": Samples()}
    halves = (requests + 1) // 2, requests // 2
    for side, share in (("gateway", halves[0]), ("direct", halves[0]), ("direct", halves[1]), ("gateway", halves[1])):
        url = origins[side] + endpoint.path
        remaining = iter(range(share))

        async def worker(side: str = side, url: str = url, it: Any = remaining) -> None:
            for _ in it:
                samples[side].latencies.append(await hit(http, url, endpoint))

        started = time.perf_counter()
        await asyncio.gather(*(worker() for _ in range(min(level, share))))
        samples[side].wall += time.perf_counter() - started
    return samples["gateway"], samples["direct"]


def _basic(client_id: str, secret: str) -> str:
    return "Basic " + base64.b64encode(f"{client_id}:{secret}".encode()).decode()


async def hydra_endpoints(bench: HydraBench, provider: HydraProvider) -> tuple[dict[str, str], list[Endpoint]]:
    """A confidential client (client_credentials and authorization_code), created through the admin API."""
    secret = uuid.uuid4().hex
    redirect = "http://127.0.0.1:3000/callback"
    representation = {
        "client_name": "bench front door",
        "client_secret": secret,
        "grant_types": ["client_credentials", "authorization_code"],
        "response_types": ["code"],
        "redirect_uris": [redirect],
        "scope": "openid",
        "token_endpoint_auth_method": "client_secret_basic",
    }
    async with bench.http.post(f"{provider.admin_url}/admin/clients", json=representation) as response:
        created = await response.json()
        if response.status != 201:
            raise BenchError(f"hydra: front-door client: HTTP {response.status}: {created}")
    client_id = created["client_id"]
    bench.created.hydra_client_ids.append(client_id)
    form = b"grant_type=client_credentials"
    auth_query = f"?client_id={client_id}&response_type=code&scope=openid&state=benchstate1234&redirect_uri={redirect}"
    return (
        {"gateway": provider.issuer, "direct": provider.public_url},
        [
            Endpoint(
                "token",
                "POST",
                "/oauth2/token",
                200,
                {"Authorization": _basic(client_id, secret), "Content-Type": "application/x-www-form-urlencoded"},
                form,
            ),
            Endpoint("authorize redirect", "GET", "/oauth2/auth" + auth_query, 302, {}),
            Endpoint("jwks", "GET", "/.well-known/jwks.json", 200, {}),
        ],
    )


async def keycloak_endpoints(
    bench: KeycloakBench, provider: KeycloakProvider, gateway_url: str
) -> tuple[dict[str, str], list[Endpoint]]:
    """The gateway's own service-account client for the token endpoint; a public client created through the admin
    API (the adapter's representation of the public native body) for the authorization redirect."""
    prepared = await bench.admin_request(BODIES[SWEEP_BODY])
    await bench.send("admin", prepared)
    client_id = json.loads(prepared.body)["clientId"]
    redirect = BODIES[SWEEP_BODY]["redirect_uris"][0]
    realm = f"/realms/{provider.realm}/protocol/openid-connect"
    form = b"grant_type=client_credentials"
    auth_query = (
        f"?client_id={client_id}&response_type=code&scope=openid&state=benchstate1234&prompt=none"
        f"&redirect_uri={redirect}"
    )
    return (
        {"gateway": gateway_url, "direct": provider.base_url},
        [
            Endpoint(
                "token",
                "POST",
                f"{realm}/token",
                200,
                {
                    "Authorization": _basic(provider.admin_client_id, provider.admin_client_secret),
                    "Content-Type": "application/x-www-form-urlencoded",
                },
                form,
            ),
            Endpoint("authorize redirect", "GET", f"{realm}/auth" + auth_query, 302, {}),
            Endpoint("jwks", "GET", f"{realm}/certs", 200, {}),
        ],
    )


async def frontdoor(
    http: aiohttp.ClientSession,
    name: str,
    *,
    origins: dict[str, str],
    endpoints: list[Endpoint],
    requests: int,
    level: int,
    gateway_pid: int | None = None,
) -> list[dict[str, Any]]:
    rows = []
    for endpoint in endpoints:
        await frontdoor_cell(http, origins, endpoint, 20, 4)  # warm-up: connections, caches
        cpu_before = cpu_seconds(gateway_pid) if gateway_pid else 0.0
        gateway, direct = await frontdoor_cell(http, origins, endpoint, requests, level)
        row = _row(name, endpoint.name, level, gateway.row(), direct.row())
        if gateway_pid:  # the gateway process's CPU (user + system) per request it proxied: least hurt by noise
            row["gateway_cpu_us_per_request"] = round(1e6 * (cpu_seconds(gateway_pid) - cpu_before) / requests, 1)
        rows.append(row)
        print(f"{name}: front door {endpoint.name} done", flush=True)
    return rows


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of process ``pid`` so far (``/proc/<pid>/stat`` fields 14 and 15)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


# ------------------------------------------------------------------------------------------------------ profile


def top_costs(raw: Path, limit: int = 15) -> dict[str, list[tuple[str, float]]]:
    """From py-spy's raw (collapsed) stacks: the share of samples per function, self and inclusive."""
    self_counts: collections.Counter[str] = collections.Counter()
    attributed: collections.Counter[str] = collections.Counter()
    total_counts: collections.Counter[str] = collections.Counter()
    samples = 0
    for line in raw.read_text().splitlines():
        stack, _, count_text = line.rpartition(" ")
        if not stack or not count_text.isdigit():
            continue
        count = int(count_text)
        samples += count
        frames = stack.split(";")
        self_counts[frames[-1]] += count
        caller = next((f for f in reversed(frames[:-1]) if any(m in f for m in PROJECT_FRAMES)), "-")
        attributed[f"{frames[-1]}  <-  {caller}"] += count
        for frame in set(frames):
            total_counts[frame] += count
    if not samples:
        return {"self": [], "inclusive": []}

    def share(counter: collections.Counter[str]) -> list[tuple[str, float]]:
        return [(frame, round(100 * n / samples, 1)) for frame, n in counter.most_common(limit)]

    inclusive = collections.Counter(
        {
            f: n
            for f, n in total_counts.items()
            if any(m in f for m in ("(gateway/", "(adapters/", "keycloak/", "httpx/"))
        }
    )
    return {
        "self": share(self_counts),
        "self_by_caller": share(attributed),
        "inclusive": share(inclusive),
        "samples": [("total", float(samples))],
    }


async def profiled_block(bench: ProviderBench, pid: int, requests: int, out: Path) -> dict[str, Any]:
    """py-spy records the gateway (``pid``) while ``requests`` registrations go through it, 8 in flight."""
    py_spy = shutil.which("py-spy") or str(Path(sys.executable).parent / "py-spy")
    command = [py_spy, "record", "--pid", str(pid), "--format", "raw", "--rate", "250", "--function"]
    recorder = await asyncio.create_subprocess_exec(
        *command,
        "--output",
        str(out),
        "--nonblocking",
        stdout=asyncio.subprocess.DEVNULL,
        stderr=asyncio.subprocess.PIPE,
    )
    await asyncio.sleep(1.0)
    results: dict[Key, Samples] = {(bench.name, SWEEP_BODY, "gateway"): Samples()}
    started = time.perf_counter()
    queue = iter([await bench.prepare("gateway", BODIES[SWEEP_BODY]) for _ in range(requests)])

    async def drain() -> None:
        for item in queue:
            results[(bench.name, SWEEP_BODY, "gateway")].latencies.append(await bench.send("gateway", item))

    await asyncio.gather(*(drain() for _ in range(8)))
    wall = time.perf_counter() - started
    recorder.send_signal(signal.SIGINT)
    _, err = await asyncio.wait_for(recorder.communicate(), 30)
    costs = await asyncio.to_thread(top_costs, out) if await asyncio.to_thread(out.exists) else None
    if costs is None:
        raise BenchError(f"py-spy wrote nothing: {err.decode(errors='replace')[-500:]}")
    return {"provider": bench.name, "requests": requests, "wall_s": round(wall, 2), **costs}


# --------------------------------------------------------------------------------------------------- printing


def print_rows(title: str, rows: list[dict[str, Any]]) -> None:
    print(f"\n{title}")
    header = (
        f"{'provider':<10}{'what':<20}{'conc':>5}{'gw req/s':>10}{'dir req/s':>10}{'ratio':>7}"
        f"{'gw p50':>8}{'gw p99':>8}{'dir p50':>8}{'dir p99':>8}{'+p50':>8}{'+p99':>8}"
    )
    print(header)
    print("-" * len(header))
    for r in rows:
        g, d = r["gateway"], r["direct"]
        print(
            f"{r['provider']:<10}{r['what']:<20}{r['concurrency']:>5}{g['rps']:>10.1f}{d['rps']:>10.1f}"
            f"{r['ratio']:>7.2f}{g['p50']:>8.2f}{g['p99']:>8.2f}{d['p50']:>8.2f}{d['p99']:>8.2f}"
            f"{r['overhead_p50_ms']:>+8.2f}{r['overhead_p99_ms']:>+8.2f}"
        )


def plot(rows: list[dict[str, Any]], path: Path) -> None:
    import matplotlib  # the bench extra; only when a plot is asked for

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, axes = plt.subplots(figsize=(7, 4.5))
    for provider, colour in (("hydra", "tab:blue"), ("keycloak", "tab:red")):
        cells = [r for r in rows if r["provider"] == provider and r["what"] == "registration"]
        if not cells:
            continue
        levels = [r["concurrency"] for r in cells]
        axes.plot(levels, [r["gateway"]["rps"] for r in cells], "o-", color=colour, label=f"{provider}: gateway")
        axes.plot(levels, [r["direct"]["rps"] for r in cells], "s--", color=colour, label=f"{provider}: admin API")
    axes.set_xscale("log", base=2)
    axes.set_xticks(sorted({r["concurrency"] for r in rows if r["what"] == "registration"}))
    axes.get_xaxis().set_major_formatter(matplotlib.ticker.ScalarFormatter())
    axes.set_xlabel("requests in flight")
    axes.set_ylabel("registrations/s")
    axes.set_title("Registration throughput: gateway vs provider admin API (2 shared cores)")
    axes.grid(True, alpha=0.3)
    axes.legend()
    figure.tight_layout()
    figure.savefig(path, dpi=100)
    plt.close(figure)


# ------------------------------------------------------------------------------------------------------ main


async def run(args: argparse.Namespace, stack: Stack, run_dir: Path) -> dict[str, Any]:
    hydra, hydra_url, keycloak, keycloak_url = start_stack(stack, run_dir, args.providers)
    pids = {s.name: s.pid for s in stack.services if s.name.startswith("gateway-")}
    connector = aiohttp.TCPConnector(limit=max(64, *args.levels, args.frontdoor_concurrency))
    timeout = aiohttp.ClientTimeout(total=60)
    report: dict[str, Any] = {"registration": [], "frontdoor": [], "profile": []}
    async with aiohttp.ClientSession(connector=connector, timeout=timeout, cookie_jar=aiohttp.DummyCookieJar()) as http:
        benches: list[tuple[ProviderBench, Any]] = []
        if hydra is not None:
            benches.append((HydraBench(http, hydra, hydra_url), hydra))
        if keycloak is not None:
            benches.append((KeycloakBench(http, keycloak, keycloak_url), keycloak))
        for bench, provider in benches:
            await bench.setup()
            try:
                if args.levels:
                    report["registration"] += await sweep(bench, args.levels, args.requests, args.warmup)
                if args.frontdoor:
                    if isinstance(bench, HydraBench):
                        origins, endpoints = await hydra_endpoints(bench, provider)
                    else:
                        assert isinstance(bench, KeycloakBench)
                        origins, endpoints = await keycloak_endpoints(bench, provider, keycloak_url)
                    report["frontdoor"] += await frontdoor(
                        http,
                        bench.name,
                        origins=origins,
                        endpoints=endpoints,
                        requests=args.frontdoor_requests,
                        level=args.frontdoor_concurrency,
                        gateway_pid=pids.get(f"gateway-{bench.name}"),
                    )
                if args.profile:
                    out = (run_dir if args.no_write else args.out_dir) / f"py-spy-{bench.name}.txt"
                    out.parent.mkdir(parents=True, exist_ok=True)
                    report["profile"].append(await profiled_block(bench, pids[f"gateway-{bench.name}"], 600, out))
            finally:
                deleted, left = await bench.cleanup(concurrency=4)
                print(f"{bench.name}: deleted {deleted} clients created by this run; managed clients left: {left}")
    return report


def _parse(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument("--providers", default="hydra,keycloak", help="comma-separated: hydra, keycloak")
    parser.add_argument(
        "--levels", default=",".join(map(str, LEVELS)), help="registration concurrency levels ('': off)"
    )
    parser.add_argument("--requests", type=int, default=300, help="registrations per side and level")
    parser.add_argument("--warmup", type=int, default=20, help="unmeasured registrations per side first")
    parser.add_argument("--no-frontdoor", dest="frontdoor", action="store_false", help="skip the front-door part")
    parser.add_argument("--frontdoor-requests", type=int, default=600, help="per side and endpoint")
    parser.add_argument("--frontdoor-concurrency", type=int, default=8)
    parser.add_argument("--profile", action="store_true", help="py-spy each gateway during 600 registrations")
    parser.add_argument("--out-dir", type=Path, default=ROOT / "bench" / "results")
    parser.add_argument("--no-write", action="store_true", help="print only: no JSON, no PNG")
    parser.add_argument("--note", default="", help="what else ran on the machine (kept in the JSON)")
    args = parser.parse_args(argv)
    args.providers = [p.strip() for p in args.providers.split(",") if p.strip()]
    if not set(args.providers) <= {"hydra", "keycloak"} or not args.providers:
        parser.error("--providers takes hydra and/or keycloak")
    args.levels = [int(x) for x in args.levels.split(",") if x.strip()]
    if any(x < 1 for x in args.levels) or args.requests < 2 or args.frontdoor_requests < 2:
        parser.error("levels and counts must be positive")
    return args


def main(argv: Sequence[str] | None = None) -> int:
    args = _parse(argv)
    with bench_run("throughput") as bench:
        report = asyncio.run(run(args, bench.stack, bench.run_dir))
        bench.ok = True
    if report["registration"]:
        print_rows(f"registration ({SWEEP_BODY} body), gateway vs admin API, ms", report["registration"])
    if report["frontdoor"]:
        print_rows("front door, gateway vs direct to the provider, ms", report["frontdoor"])
        for r in report["frontdoor"]:
            if "gateway_cpu_us_per_request" in r:
                print(
                    f"  {r['provider']} {r['what']}: gateway CPU {r['gateway_cpu_us_per_request']:.0f} us per request"
                )
    for profile in report["profile"]:
        print(f"\npy-spy, gateway-{profile['provider']}, {profile['requests']} registrations, 8 in flight")
        for kind in ("self", "self_by_caller", "inclusive"):
            print(f"  top {kind} (% of samples):")
            for frame, pct in profile[kind]:
                print(f"    {pct:>5.1f}  {frame}")
    if not args.no_write:
        args.out_dir.mkdir(parents=True, exist_ok=True)
        stamp = time.strftime("%Y%m%dT%H%MZ", time.gmtime())
        meta = {"when": stamp, "cpus": os.cpu_count(), "note": args.note, "argv": sys.argv[1:]}
        json_path = args.out_dir / f"throughput-{stamp}.json"
        json_path.write_text(json.dumps({**meta, **report}, indent=1) + "\n")
        print(f"\nwrote {json_path}")
        if report["registration"]:
            png = args.out_dir / f"registration-throughput-{stamp}.png"
            plot(report["registration"], png)
            print(f"wrote {png}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
