"""Registration latency: ``POST {registration endpoint}`` through the gateway against the provider's admin create
call alone, for the real Hydra and the real Keycloak, side by side in one run on this machine.

Starts, on free loopback ports and exactly like the integration fixtures (tests/conftest.py and
tests/integration/conftest.py): a fresh Hydra (in-memory) with the dev login app, a fresh Keycloak (own home
and database, realm ``mcp``) and one ``dcr-gateway serve`` subprocess fronting each (front-door mode, the
default INFO logging into a file). Then, per provider and per body (a public native client and a confidential
``client_secret_basic`` client):

- **gateway**: ``POST {gateway}{issuer path}/register`` with the RFC 7591 body;
- **admin**: the provider's admin create call with the representation the adapter would send for that body
  (same parsing, validation and credential issuing as the gateway, then
  :func:`adapters.hydra.mapping.to_hydra` / :func:`adapters.keycloak.mapping.to_keycloak`):
  Hydra ``POST /admin/clients``, Keycloak ``POST /admin/realms/mcp/clients`` with a service-account token
  obtained once (renewed outside the timed calls before it expires).

Latency: sequential requests (concurrency 1) from one keep-alive aiohttp session, sides interleaved A/B then
B/A so machine noise hits both; only the HTTP exchange is timed (bodies are built beforehand). Optionally
(``--concurrency N``) a small concurrent run per side follows. Every client created (both sides) is deleted
at the end through the admin APIs, and the providers are stopped; their logs are kept only with
``--keep-logs``.

    .venv/bin/python bench/registration_latency.py                     # 200 per side, body and provider
    .venv/bin/python bench/registration_latency.py --requests 50 --providers hydra --concurrency 8
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import functools
import json
import math
import os
import shutil
import signal
import statistics
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from types import FrameType
from typing import Any

import aiohttp

from adapters.base import NewClient
from adapters.hydra.mapping import is_managed as hydra_managed
from adapters.hydra.mapping import to_hydra
from adapters.keycloak.mapping import RealmScopes, to_keycloak
from adapters.keycloak.mapping import is_managed as keycloak_managed
from devstack.process import Service, free_port
from devstack.providers import (
    HydraProvider,
    KeycloakProvider,
    keycloak_provider_for,
    start_gateway,
    start_hydra_and_login,
    start_keycloak,
)
from gateway.oauth.metadata import parse_metadata
from gateway.policy import RegistrationPolicy, validate
from gateway.registration.service import RegistrationSettings, issue_credentials

HYDRA_READY_TIMEOUT = 60.0
KEYCLOAK_READY_TIMEOUT = 240.0
GATEWAY_READY_TIMEOUT = 30.0
JSON_HEADERS = {"Content-Type": "application/json", "Accept": "application/json"}

BODIES: dict[str, dict[str, Any]] = {
    "public native": {
        "client_name": "bench native",
        "redirect_uris": ["http://127.0.0.1:3000/callback"],
        "token_endpoint_auth_method": "none",
        "grant_types": ["authorization_code", "refresh_token"],
        "response_types": ["code"],
        "application_type": "native",
    },
    "confidential basic": {
        "client_name": "bench confidential",
        "redirect_uris": ["https://app.example.com/oauth/callback"],
        "token_endpoint_auth_method": "client_secret_basic",
        "grant_types": ["authorization_code", "refresh_token"],
        "response_types": ["code"],
    },
}
SIDES = ("gateway", "admin")
REGISTRATION = RegistrationSettings(max_body_bytes=64 * 1024)


class BenchError(RuntimeError):
    """A request failed: the figures would be meaningless."""


# ------------------------------------------------------------------------------------------------- statistics


def percentile(sorted_values: Sequence[float], q: float) -> float:
    """Nearest-rank percentile (``q`` in 0..1) of already sorted values."""
    if not sorted_values:
        return math.nan
    rank = max(1, math.ceil(q * len(sorted_values)))
    return sorted_values[rank - 1]


@dataclass
class Samples:
    latencies: list[float] = field(default_factory=list)
    wall: float = 0.0
    """Seconds of the whole block (concurrent runs: for requests/second)."""

    def row(self) -> dict[str, float]:
        values = sorted(self.latencies)
        return {
            "n": float(len(values)),
            "p50": percentile(values, 0.50) * 1e3,
            "p90": percentile(values, 0.90) * 1e3,
            "p99": percentile(values, 0.99) * 1e3,
            "mean": statistics.fmean(values) * 1e3 if values else math.nan,
            "rps": len(values) / self.wall if self.wall else math.nan,
        }


# ----------------------------------------------------------------------------------------------------- sides


@dataclass(frozen=True)
class Prepared:
    """One request, built before the clock starts."""

    url: str
    body: bytes
    headers: dict[str, str]


@dataclass
class Created:
    """What to delete afterwards."""

    hydra_client_ids: list[str] = field(default_factory=list)
    keycloak_client_ids: list[str] = field(default_factory=list)
    """Keycloak ``clientId`` values whose internal id is still unknown (gateway side)."""
    keycloak_internal_ids: list[str] = field(default_factory=list)
    """Keycloak internal ids, from the admin create's ``Location`` (admin side)."""


class ProviderBench:
    """Builds and sends the two sides' requests for one provider."""

    name: str
    registration_endpoint: str
    issuer: str

    def __init__(self, http: aiohttp.ClientSession) -> None:
        self.http = http
        self.created = Created()
        self.policy = RegistrationPolicy()

    async def setup(self) -> None:
        """Fetch what the gateway itself derives the registration policy from: its discovery document."""
        async with self.http.get(f"{self.issuer}/.well-known/openid-configuration") as response:
            if response.status != 200:
                raise BenchError(f"{self.name}: gateway discovery answered {response.status}")
            document = await response.json()
        if document.get("registration_endpoint") != self.registration_endpoint:
            raise BenchError(f"{self.name}: unexpected registration endpoint {document.get('registration_endpoint')}")
        self.policy = RegistrationPolicy.from_settings(REGISTRATION.policy, document)

    def gateway_request(self, body: dict[str, Any]) -> Prepared:
        return Prepared(self.registration_endpoint, json.dumps(body).encode(), JSON_HEADERS)

    def admin_representation(self, body: dict[str, Any]) -> dict[str, Any]:
        raise NotImplementedError

    def admin_url(self) -> str:
        raise NotImplementedError

    async def admin_headers(self) -> dict[str, str]:
        return JSON_HEADERS

    async def admin_request(self, body: dict[str, Any]) -> Prepared:
        representation = self.admin_representation(body)
        return Prepared(self.admin_url(), json.dumps(representation).encode(), await self.admin_headers())

    def record(self, side: str, response: aiohttp.ClientResponse, payload: bytes) -> None:
        raise NotImplementedError

    async def send(self, side: str, prepared: Prepared) -> float:
        """POST ``prepared``; return the seconds from sending to the last byte of the answer."""
        started = time.perf_counter()
        async with self.http.post(prepared.url, data=prepared.body, headers=prepared.headers) as response:
            payload = await response.read()
        elapsed = time.perf_counter() - started
        if response.status != 201:
            raise BenchError(f"{self.name} {side}: HTTP {response.status}: {payload[:300]!r}")
        self.record(side, response, payload)
        return elapsed

    async def prepare(self, side: str, body: dict[str, Any]) -> Prepared:
        return self.gateway_request(body) if side == "gateway" else await self.admin_request(body)

    async def cleanup(self, concurrency: int) -> tuple[int, int]:
        """Delete every client this run created; return (deleted, managed clients left in the provider)."""
        raise NotImplementedError


def _new_client(body: dict[str, Any], policy: RegistrationPolicy) -> NewClient:
    """What the gateway would hand its adapter for ``body`` (fresh client_id and secret each time)."""
    return issue_credentials(validate(parse_metadata(body), policy), REGISTRATION)


async def _bounded(concurrency: int, jobs: Sequence[Callable[[], Awaitable[None]]]) -> None:
    semaphore = asyncio.Semaphore(max(1, concurrency))

    async def run(job: Callable[[], Awaitable[None]]) -> None:
        async with semaphore:
            await job()

    await asyncio.gather(*(run(job) for job in jobs))


class HydraBench(ProviderBench):
    def __init__(self, http: aiohttp.ClientSession, provider: HydraProvider, gateway_url: str) -> None:
        super().__init__(http)
        self.name = "hydra"
        self.provider = provider
        self.issuer = provider.issuer
        self.registration_endpoint = f"{gateway_url}/register"

    def admin_url(self) -> str:
        return f"{self.provider.admin_url}/admin/clients"

    def admin_representation(self, body: dict[str, Any]) -> dict[str, Any]:
        return to_hydra(_new_client(body, self.policy))

    def record(self, side: str, response: aiohttp.ClientResponse, payload: bytes) -> None:
        self.created.hydra_client_ids.append(json.loads(payload)["client_id"])

    async def cleanup(self, concurrency: int) -> tuple[int, int]:
        async def delete(client_id: str) -> None:
            async with self.http.delete(f"{self.provider.admin_url}/admin/clients/{client_id}") as response:
                if response.status not in (204, 404):
                    raise BenchError(f"hydra: DELETE {client_id}: HTTP {response.status}")

        ids = list(self.created.hydra_client_ids)
        # One at a time: Hydra's in-memory SQLite answers concurrent deletes with 400 "Unable to serialize access
        # due to a concurrent update in another session".
        await _bounded(1, [functools.partial(delete, c) for c in ids])
        self.created.hydra_client_ids.clear()
        async with self.http.get(f"{self.provider.admin_url}/admin/clients", params={"page_size": "500"}) as response:
            left = await response.json()
        return len(ids), sum(1 for c in left if hydra_managed(c))


class KeycloakBench(ProviderBench):
    def __init__(self, http: aiohttp.ClientSession, provider: KeycloakProvider, gateway_url: str) -> None:
        super().__init__(http)
        self.name = "keycloak"
        self.provider = provider
        self.issuer = f"{gateway_url}/realms/{provider.realm}"
        self.registration_endpoint = f"{self.issuer}/register"
        self._token = ""
        self._token_expires = 0.0
        self.realm_scopes = RealmScopes(frozenset(), (), ())

    async def _admin_token(self) -> str:
        """The service account's token (the gateway's own credentials), renewed 30 s before it expires."""
        if time.monotonic() < self._token_expires - 30:
            return self._token
        form = {
            "grant_type": "client_credentials",
            "client_id": self.provider.admin_client_id,
            "client_secret": self.provider.admin_client_secret,
        }
        async with self.http.post(self.provider.token_endpoint, data=form) as response:
            payload = await response.json()
            if response.status != 200:
                raise BenchError(f"keycloak: service-account token: HTTP {response.status}: {payload}")
        self._token = str(payload["access_token"])
        self._token_expires = time.monotonic() + float(payload.get("expires_in", 60))
        return self._token

    async def admin_headers(self) -> dict[str, str]:
        return {**JSON_HEADERS, "Authorization": f"Bearer {await self._admin_token()}"}

    async def _admin_get(self, path: str, **params: str) -> Any:
        url = f"{self.provider.admin_realm_url}{path}"
        async with self.http.get(url, params=params, headers=await self.admin_headers()) as response:
            if response.status != 200:
                raise BenchError(f"keycloak: GET {path}: HTTP {response.status}")
            return await response.json()

    async def setup(self) -> None:
        await super().setup()
        # The adapter reads these once a minute; the admin side reads them once (they do not change).
        scopes = await self._admin_get("/client-scopes")
        defaults = await self._admin_get("/default-default-client-scopes")
        optional = await self._admin_get("/default-optional-client-scopes")
        self.realm_scopes = RealmScopes(
            names=frozenset(s["name"] for s in scopes if s.get("protocol", "openid-connect") == "openid-connect"),
            default_default=tuple(s["name"] for s in defaults),
            default_optional=tuple(s["name"] for s in optional),
        )

    def admin_url(self) -> str:
        return f"{self.provider.admin_realm_url}/clients"

    def admin_representation(self, body: dict[str, Any]) -> dict[str, Any]:
        return to_keycloak(_new_client(body, self.policy), self.realm_scopes)

    def record(self, side: str, response: aiohttp.ClientResponse, payload: bytes) -> None:
        if side == "gateway":
            self.created.keycloak_client_ids.append(json.loads(payload)["client_id"])
        else:
            self.created.keycloak_internal_ids.append(response.headers["Location"].rstrip("/").rsplit("/", 1)[-1])

    async def cleanup(self, concurrency: int) -> tuple[int, int]:
        async def resolve(client_id: str) -> None:
            found = await self._admin_get("/clients", clientId=client_id, search="false")
            self.created.keycloak_internal_ids.extend(c["id"] for c in found if c.get("clientId") == client_id)

        async def delete(internal_id: str) -> None:
            url = f"{self.provider.admin_realm_url}/clients/{internal_id}"
            async with self.http.delete(url, headers=await self.admin_headers()) as response:
                if response.status not in (204, 404):
                    raise BenchError(f"keycloak: DELETE {internal_id}: HTTP {response.status}")

        await self._admin_token()  # renew once here, not in every concurrent job
        await _bounded(concurrency, [functools.partial(resolve, c) for c in self.created.keycloak_client_ids])
        ids = list(dict.fromkeys(self.created.keycloak_internal_ids))
        await _bounded(concurrency, [functools.partial(delete, i) for i in ids])
        self.created = Created()
        left = await self._admin_get("/clients", first="0", max="1000")
        return len(ids), sum(1 for c in left if keycloak_managed(c))


# ------------------------------------------------------------------------------------------------------ runs


Key = tuple[str, str, str]
"""(provider, body, side)"""


async def sequential(bench: ProviderBench, requests: int, warmup: int, results: dict[Key, Samples]) -> None:
    """Concurrency 1; per round every body, sides alternating A/B then B/A."""
    for index in range(warmup + requests):
        for body_index, (body_name, body) in enumerate(BODIES.items()):
            order = SIDES if (index + body_index) % 2 == 0 else tuple(reversed(SIDES))
            for side in order:
                prepared = await bench.prepare(side, body)
                elapsed = await bench.send(side, prepared)
                if index >= warmup:
                    results[(bench.name, body_name, side)].latencies.append(elapsed)


async def _drain(bench: ProviderBench, side: str, queue: Iterator[Prepared], samples: Samples) -> None:
    for item in queue:
        samples.latencies.append(await bench.send(side, item))


async def concurrent(
    bench: ProviderBench,
    requests: int,
    concurrency: int,
    results: dict[Key, Samples],
    bodies: dict[str, dict[str, Any]] | None = None,
) -> None:
    """Blocks of ``requests`` per side and body (``bodies``, default all of :data:`BODIES`) with ``concurrency``
    requests in flight; two rounds per side in the order A, B, B, A so both sides see the same drift."""
    for body_name, body in (BODIES if bodies is None else bodies).items():
        halves = (requests + 1) // 2, requests // 2
        for side, share in (("gateway", halves[0]), ("admin", halves[0]), ("admin", halves[1]), ("gateway", halves[1])):
            if share == 0:
                continue
            queue = iter([await bench.prepare(side, body) for _ in range(share)])
            samples = results[(bench.name, body_name, side)]
            started = time.perf_counter()
            await asyncio.gather(*(_drain(bench, side, queue, samples) for _ in range(min(concurrency, share))))
            samples.wall += time.perf_counter() - started


# --------------------------------------------------------------------------------------------------- printing


def print_table(title: str, results: dict[Key, Samples], *, throughput: bool) -> None:
    print(f"\n{title}")
    header = f"{'provider':<10}{'body':<20}{'side':<9}{'n':>6}{'p50 ms':>9}{'p90 ms':>9}{'p99 ms':>9}{'mean ms':>9}"
    if throughput:
        header += f"{'req/s':>8}"
    print(header)
    print("-" * len(header))
    for (provider, body, side), samples in results.items():
        row = samples.row()
        line = (
            f"{provider:<10}{body:<20}{side:<9}{row['n']:>6.0f}{row['p50']:>9.2f}{row['p90']:>9.2f}"
            f"{row['p99']:>9.2f}{row['mean']:>9.2f}"
        )
        if throughput:
            line += f"{row['rps']:>8.1f}"
        print(line)
    print("\noverhead (gateway - admin)")
    print(f"{'provider':<10}{'body':<20}{'p50 ms':>9}{'p90 ms':>9}{'mean ms':>9}")
    for (provider, body, side), samples in results.items():
        if side != "gateway" or (provider, body, "admin") not in results:
            continue
        gateway, admin = samples.row(), results[(provider, body, "admin")].row()
        print(
            f"{provider:<10}{body:<20}{gateway['p50'] - admin['p50']:>+9.2f}{gateway['p90'] - admin['p90']:>+9.2f}"
            f"{gateway['mean'] - admin['mean']:>+9.2f}"
        )


# ------------------------------------------------------------------------------------------------------ main


@dataclass
class Stack:
    services: list[Service] = field(default_factory=list)

    def stop(self) -> None:
        for service in reversed(self.services):
            service.stop()
        self.services.clear()


def start_stack(
    stack: Stack, run_dir: Path, providers: Sequence[str]
) -> tuple[HydraProvider | None, str, KeycloakProvider | None, str]:
    """Providers first (Keycloak is slow: it boots while Hydra does), then a gateway in front of each."""
    hydra: HydraProvider | None = None
    keycloak: KeycloakProvider | None = None
    keycloak_service: Service | None = None
    if "keycloak" in providers:
        port = free_port()
        keycloak_service = start_keycloak(
            http_port=port, home=run_dir / "keycloak-home", log_path=run_dir / "keycloak.log"
        )
        stack.services.append(keycloak_service)
        keycloak = keycloak_provider_for(port, run_dir / "keycloak.log")
    if "hydra" in providers:
        services, hydra = start_hydra_and_login(
            public_port=free_port(),
            admin_port=free_port(),
            gateway_port=free_port(),
            login_port=free_port(),
            log_dir=run_dir,
        )
        stack.services.extend(services)
        for service in services:
            service.wait_ready(HYDRA_READY_TIMEOUT)
    if keycloak_service is not None:
        keycloak_service.wait_ready(KEYCLOAK_READY_TIMEOUT)

    hydra_url = keycloak_url = ""
    gateways: list[Service] = []
    if hydra is not None:
        env = hydra.gateway_env()
        gateways.append(start_gateway("gateway-hydra", env=env, log_path=run_dir / "gateway-hydra.log"))
        hydra_url = env["DCR_PUBLIC_URL"]
    if keycloak is not None:
        env = keycloak.gateway_env(free_port())
        gateways.append(start_gateway("gateway-keycloak", env=env, log_path=run_dir / "gateway-keycloak.log"))
        keycloak_url = env["DCR_PUBLIC_URL"]
    stack.services.extend(gateways)
    for service in gateways:
        service.wait_ready(GATEWAY_READY_TIMEOUT)
    return hydra, hydra_url, keycloak, keycloak_url


async def run(
    args: argparse.Namespace,
    hydra: HydraProvider | None,
    hydra_url: str,
    keycloak: KeycloakProvider | None,
    keycloak_url: str,
) -> int:
    connector = aiohttp.TCPConnector(limit=max(8, args.concurrency))
    timeout = aiohttp.ClientTimeout(total=30)
    async with aiohttp.ClientSession(connector=connector, timeout=timeout) as http:
        benches: list[ProviderBench] = []
        if hydra is not None:
            benches.append(HydraBench(http, hydra, hydra_url))
        if keycloak is not None:
            benches.append(KeycloakBench(http, keycloak, keycloak_url))
        latency: dict[Key, Samples] = {}
        loaded: dict[Key, Samples] = {}
        for bench in benches:
            await bench.setup()
            for body in BODIES:
                for side in SIDES:
                    latency[(bench.name, body, side)] = Samples()
                    if args.concurrency > 0:
                        loaded[(bench.name, body, side)] = Samples()
        try:
            for bench in benches:
                started = time.perf_counter()
                await sequential(bench, args.requests, args.warmup, latency)
                print(f"{bench.name}: sequential run {time.perf_counter() - started:.1f} s", flush=True)
                if args.concurrency > 0:
                    started = time.perf_counter()
                    await concurrent(bench, args.concurrent_requests, args.concurrency, loaded)
                    print(f"{bench.name}: concurrent run {time.perf_counter() - started:.1f} s", flush=True)
        finally:
            for bench in benches:
                deleted, left = await bench.cleanup(concurrency=4)
                print(f"{bench.name}: deleted {deleted} clients created by this run; managed clients left: {left}")
        print_table("sequential (concurrency 1), milliseconds", latency, throughput=False)
        if loaded:
            print_table(f"concurrency {args.concurrency}, milliseconds", loaded, throughput=True)
    return 0


def _parse(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument(
        "--requests", type=int, default=200, help="measured sequential requests per side, body and provider"
    )
    parser.add_argument("--warmup", type=int, default=10, help="unmeasured sequential requests per side and body first")
    parser.add_argument("--concurrency", type=int, default=0, help="also run N requests in flight per side (0: off)")
    parser.add_argument("--concurrent-requests", type=int, default=100, help="per side, body and provider")
    parser.add_argument("--providers", default="hydra,keycloak", help="comma-separated: hydra, keycloak")
    parser.add_argument("--keep-logs", action="store_true", help="keep the run directory (provider/gateway logs)")
    args = parser.parse_args(argv)
    args.providers = [p.strip() for p in args.providers.split(",") if p.strip()]
    if not set(args.providers) <= {"hydra", "keycloak"} or not args.providers:
        parser.error("--providers takes hydra and/or keycloak")
    if args.requests < 1 or args.warmup < 0 or args.concurrency < 0 or args.concurrent_requests < 0:
        parser.error("counts must be positive")
    return args


def _interrupt(signum: int, frame: FrameType | None) -> None:
    raise KeyboardInterrupt


@dataclass
class BenchRun:
    """One benchmark run's providers (``stack``) and their log directory; set ``ok`` once the run succeeded."""

    stack: Stack
    run_dir: Path
    started: float
    ok: bool = False


@contextlib.contextmanager
def bench_run(name: str, *, keep_logs: bool = False) -> Iterator[BenchRun]:
    """Providers started into ``run.stack`` are stopped on the way out, on SIGTERM too; their logs are kept (and
    named) when the run did not set ``ok`` or with ``keep_logs``, else removed."""
    signal.signal(signal.SIGTERM, _interrupt)  # a terminated run still stops its providers
    run = BenchRun(Stack(), Path(tempfile.mkdtemp(prefix=f"dcr-bench-{name}-")), time.perf_counter())
    try:
        yield run
    finally:
        run.stack.stop()
        if keep_logs or not run.ok:
            print(f"logs: {run.run_dir}", file=sys.stderr)
        else:
            shutil.rmtree(run.run_dir, ignore_errors=True)
        print(f"total {time.perf_counter() - run.started:.1f} s", file=sys.stderr)


def main(argv: Sequence[str] | None = None) -> int:
    args = _parse(argv)
    with bench_run("registration", keep_logs=args.keep_logs) as bench:
        hydra, hydra_url, keycloak, keycloak_url = start_stack(bench.stack, bench.run_dir, args.providers)
        print(
            f"providers ready in {time.perf_counter() - bench.started:.1f} s ({', '.join(args.providers)}); "
            f"{os.cpu_count()} CPUs; {args.requests} measured + {args.warmup} warm-up sequential requests per "
            f"side and body; bodies: {', '.join(BODIES)}",
            flush=True,
        )
        code = asyncio.run(run(args, hydra, hydra_url, keycloak, keycloak_url))
        bench.ok = code == 0
        return code


if __name__ == "__main__":
    sys.exit(main())
