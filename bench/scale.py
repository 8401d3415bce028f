"""Scale: the gateway and its client tooling with N managed and N unmanaged clients in each provider.

Starts a fresh Hydra and a fresh Keycloak and a ``dcr-gateway serve`` in front of each, exactly as
``bench/registration_latency.py`` does (its :func:`start_stack`, which uses ``devstack.providers``; the gateways run
with the development limits, so the quota of managed clients per issuer is on and counts by listing). Then, per
provider:

0. **pre-warm**: ``--prewarm`` registrations through the gateway, deleted again (the provider is warm and empty);
1. **empty**: ``--requests`` sequential registrations through the gateway (public native body, after
   ``--warmup``), p50/p99, side by side with as many through the admin API alone (alternating, so both see the
   same provider state and background load);
2. **seed**: N managed and N unmanaged clients through the admin API (``--seed-via admin``, the default): the
   managed ones with exactly the representation the adapter's ``create_client`` sends for the bench body
   (:func:`~adapters.hydra.mapping.to_hydra` / :func:`~adapters.keycloak.mapping.to_keycloak`, deployment
   recorded), the unmanaged ones public clients without the marker (a confidential one would cost Hydra a bcrypt
   hash each); Hydra one ``POST /admin/clients`` each, ``--seed-concurrency`` in flight, Keycloak
   ``POST /admin/realms/{realm}/partialImport`` in batches of 100 (the master administrator's token). With
   ``--seed-via gateway`` the managed ones are registered through the gateway (``POST /register``) instead;
3. **seeded**: the same registration run again, now with N managed + N unmanaged clients; the gateway's RSS
   (``VmRSS``/``VmHWM`` from /proc) after all of them;
4. with a recording pass-through proxy (``bench/scale_proxy.py``) in front of the admin API, each in its own
   process under ``/usr/bin/time`` (wall time, peak RSS): ``dcr-gateway clients list --json``,
   ``dcr-gateway clients gc --unused-for 30d`` (dry run) and the quota recount
   (:meth:`gateway.limits.quota.ClientQuota.refresh`, what every instance runs every ``refresh_seconds``), each
   with the number of admin calls per ``METHOD /path/template``; on Keycloak ``list`` and ``gc`` once more after
   granting the gateway's service account ``realm-management/view-realm`` (session counts in one call);
5. **probes**: once, directly, the provider APIs that would make per-client calls per-page (Keycloak
   ``briefRepresentation``, ``q=`` attribute search, ``client-session-stats``; Hydra's ``client_name``/``owner``
   list filters);
6. with ``--rss-registrations M``: M registrations created and deleted (RFC 7592) through the gateway,
   ``--seed-concurrency`` in flight, the gateway's VmRSS/VmHWM sampled every tenth (goal: under 100 MB after
   100,000).

Before/after on one provider, not two providers side by side: two Keycloaks on a 2-core machine would each get
less CPU than one and be measured under each other's load. The order (empty first) puts the provider's warm-up
(Keycloak's JIT) on the empty figure; the pre-warm absorbs part of it, not all at N <= 2,000 (bench/README.md).
The providers are fresh and thrown away at the end (nothing is deleted one by one).

    PYTHONPATH=. .venv/bin/python bench/scale.py --clients 500
    PYTHONPATH=. .venv/bin/python bench/scale.py --clients 10000 --rss-registrations 10000
    PYTHONPATH=. .venv/bin/python bench/scale.py --clients 2000 --providers keycloak --keycloak-stock
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
import tempfile
import time
import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
from registration_latency import (
    BODIES,
    JSON_HEADERS,
    BenchError,
    HydraBench,
    KeycloakBench,
    ProviderBench,
    Samples,
    Stack,
    _new_client,
    bench_run,
    start_stack,
)
from scale_proxy import RecordingProxy

import devstack.providers
from adapters.base import with_deployment
from adapters.hydra.adapter import _next_page_token
from adapters.hydra.mapping import is_managed as hydra_managed
from adapters.hydra.mapping import to_hydra
from adapters.keycloak.mapping import is_managed as keycloak_managed
from adapters.keycloak.mapping import to_keycloak
from devstack.process import Service
from devstack.providers import DEVELOPMENT_LIMITS_ENV, HydraProvider, KeycloakProvider

BODY = BODIES["public native"]
CLI_TIMEOUT = 1800.0
IMPORT_BATCH = 100
"""Clients per Keycloak ``partialImport`` call when seeding (500 took over 60 s on the loaded 2-core machine)."""
IMPORT_TIMEOUT = aiohttp.ClientTimeout(total=600)
SCRIPT = str(Path(__file__).resolve())
SEARCHABLE_ENV = "KC_SPI_CLIENT__JPA__SEARCHABLE_ATTRIBUTES"
TOOLS = ("list", "gc", "recount", "view-realm")
"""The client tooling phase 4 measures (``--tools``); ``view-realm``: Keycloak's list and gc again after the grant."""
SEARCHABLE_MARKER = "dcr.gateway.managed"
"""Keycloak searches clients by attribute (``GET /clients?q=key:value``) only for attributes listed here."""


# ------------------------------------------------------------------------------------------------- seeding


async def _retrying(what: str, attempt: Any, tries: int = 5) -> None:
    """Hydra's in-memory SQLite answers some concurrent writes with a serialization error: try again."""
    for n in range(tries):
        status, text = await attempt()
        if status == 201:
            return
        if n == tries - 1 or status not in (400, 409, 500, 503):
            raise BenchError(f"{what}: HTTP {status}: {text[:300]}")
        await asyncio.sleep(0.05 * (n + 1))


async def seed_managed(bench: ProviderBench, count: int, concurrency: int) -> float:
    """``count`` registrations through the gateway; returns seconds."""
    body = json.dumps(BODY).encode()

    async def one() -> tuple[int, str]:
        async with bench.http.post(bench.registration_endpoint, data=body, headers=JSON_HEADERS) as response:
            return response.status, await response.text()

    started = time.perf_counter()
    await _run_bounded(count, concurrency, lambda: _retrying("seed managed", one))
    return time.perf_counter() - started


def _unmanaged_representation(provider: str) -> dict[str, Any]:
    """A client someone else made: public (Hydra would hash a confidential secret with bcrypt, which is what
    slows a seeding of 100,000 down, not what is measured), no managed marker."""
    client_id = f"legacy-{uuid.uuid4().hex}"
    if provider == "hydra":
        return {
            "client_id": client_id,
            "client_name": "legacy app",
            "redirect_uris": ["https://legacy.example.com/cb"],
            "grant_types": ["authorization_code"],
            "response_types": ["code"],
            "token_endpoint_auth_method": "none",
        }
    return {
        "clientId": client_id,
        "name": "legacy app",
        "protocol": "openid-connect",
        "publicClient": True,
        "redirectUris": ["https://legacy.example.com/cb"],
        "standardFlowEnabled": True,
    }


def _managed_representation(bench: ProviderBench) -> dict[str, Any]:
    """Exactly what the adapter's ``create_client`` sends for the bench body (the same parsing, policy and
    credentials as the gateway, the deployment recorded), for seeding without the gateway."""
    client = with_deployment(_new_client(BODY, bench.policy), "default")
    if isinstance(bench, KeycloakBench):
        return to_keycloak(client, bench.realm_scopes)
    return to_hydra(client)


async def seed_unmanaged(bench: ProviderBench, count: int, concurrency: int) -> float:
    """``count`` unmanaged clients through the admin API; returns seconds."""
    return await seed_admin(bench, count, concurrency, lambda: _unmanaged_representation(bench.name))


async def seed_admin(bench: ProviderBench, count: int, concurrency: int, representation: Any) -> float:
    """``count`` clients made by ``representation()`` through the provider's admin API: Hydra one ``POST
    /admin/clients`` each (``concurrency`` in flight), Keycloak ``POST /admin/realms/{realm}/partialImport`` in
    batches of :data:`IMPORT_BATCH` (the master realm's administrator: partial import needs ``manage-realm``).
    Returns seconds."""
    started = time.perf_counter()
    if isinstance(bench, KeycloakBench):
        batches = [min(IMPORT_BATCH, count - first) for first in range(0, count, IMPORT_BATCH)]
        url = f"{bench.provider.admin_realm_url}/partialImport"

        imported = 0

        async def one_batch(size: int) -> None:
            nonlocal imported
            body = json.dumps({"ifResourceExists": "FAIL", "clients": [representation() for _ in range(size)]})
            headers = {**JSON_HEADERS, **await master_headers(bench)}
            async with bench.http.post(url, data=body, headers=headers, timeout=IMPORT_TIMEOUT) as response:
                if response.status != 200:
                    raise BenchError(f"keycloak partialImport: HTTP {response.status}: {(await response.text())[:300]}")
            imported += size
            if imported % (10 * IMPORT_BATCH) == 0:
                print(f"keycloak: {imported} imported in {time.perf_counter() - started:.0f} s", flush=True)

        pending = iter(batches)

        async def importer() -> None:
            for size in pending:
                await one_batch(size)

        await asyncio.gather(*(importer() for _ in range(max(1, min(2, len(batches))))))
        return time.perf_counter() - started

    async def one() -> tuple[int, str]:
        body = json.dumps(representation()).encode()
        async with bench.http.post(bench.admin_url(), data=body, headers=JSON_HEADERS) as response:
            return response.status, await response.text()

    await _run_bounded(count, concurrency, lambda: _retrying("seed", one))
    return time.perf_counter() - started


_MASTER: dict[str, Any] = {"token": "", "expires": 0.0}


async def master_headers(bench: KeycloakBench) -> dict[str, str]:
    """The master realm administrator's token (what an operator seeds a realm with), renewed before it expires."""
    if time.monotonic() > _MASTER["expires"] - 15:
        username, password = bench.provider.bootstrap_admin
        form = {"grant_type": "password", "client_id": "admin-cli", "username": username, "password": password}
        async with bench.http.post(
            f"{bench.provider.base_url}/realms/master/protocol/openid-connect/token", data=form
        ) as response:
            payload = await response.json()
            if response.status != 200:
                raise BenchError(f"keycloak master token: HTTP {response.status}")
        _MASTER["token"] = payload["access_token"]
        _MASTER["expires"] = time.monotonic() + float(payload.get("expires_in", 60))
    return {"Authorization": f"Bearer {_MASTER['token']}"}


async def grant_view_realm(bench: KeycloakBench) -> None:
    """Give the gateway's service account ``realm-management/view-realm`` (README, Keycloak: session counts of a
    whole realm in one ``client-session-stats`` call)."""
    base = bench.provider.admin_realm_url

    async def get(path: str, **params: str) -> Any:
        async with bench.http.get(f"{base}{path}", params=params, headers=await master_headers(bench)) as response:
            if response.status != 200:
                raise BenchError(f"keycloak GET {path}: HTTP {response.status}")
            return await response.json()

    internal = (await get("/clients", clientId=bench.provider.admin_client_id, search="false"))[0]["id"]
    user = await get(f"/clients/{internal}/service-account-user")
    management = (await get("/clients", clientId="realm-management", search="false"))[0]["id"]
    role = await get(f"/clients/{management}/roles/view-realm")
    async with bench.http.post(
        f"{base}/users/{user['id']}/role-mappings/clients/{management}",
        json=[role],
        headers=await master_headers(bench),
    ) as response:
        if response.status != 204:
            raise BenchError(f"keycloak: granting view-realm: HTTP {response.status}")


async def _run_bounded(count: int, concurrency: int, job: Any) -> None:
    remaining = iter(range(count))

    async def worker() -> None:
        for _ in remaining:
            await job()

    await asyncio.gather(*(worker() for _ in range(max(1, min(concurrency, count)))))


async def registration_latency(
    bench: ProviderBench, requests: int, warmup: int
) -> tuple[dict[str, float], dict[str, float]]:
    """Sequential registrations, through the gateway and with the admin API alone side by side (alternating, the
    order swapped every round, so both see the same provider state and the same background load: the quota
    recount, Hydra's SQLite locks). A 503 (the gateway's answer to a transient provider fault, e.g. Hydra's SQLite
    "transient storage conflict") is retried after a pause, at most 5 times per registration, and counted
    (``retried_503``); its latency is not a sample. Returns the gateway's row and the admin API's."""
    samples = {"gateway": Samples(), "admin": Samples()}
    retried = {"gateway": 0, "admin": 0}
    for index in range(warmup + requests):
        sides = ("gateway", "admin") if index % 2 == 0 else ("admin", "gateway")
        for side in sides:
            for attempt in range(6):
                try:
                    elapsed = await bench.send(side, await bench.prepare(side, BODY))
                    break
                except BenchError as exc:
                    if not _transient(side, str(exc)) or attempt == 5:
                        raise
                    retried[side] += 1
                    await asyncio.sleep(0.2)
            if index >= warmup:
                samples[side].latencies.append(elapsed)
    return (
        {**samples["gateway"].row(), "retried_503": float(retried["gateway"])},
        {**samples["admin"].row(), "retried_conflict": float(retried["admin"])},
    )


def _transient(side: str, error: str) -> bool:
    """A refusal worth sending again: the gateway's 503 for a transient provider fault; Hydra's own answer to a
    create that met a concurrent transaction on its SQLite (HTTP 400 "Unable to serialize access due to a
    concurrent update", which the gateway's adapter retries by itself, so the admin side gets the same treatment)."""
    if side == "gateway":
        return "HTTP 503" in error
    return "HTTP 400" in error and "serialize" in error


# ------------------------------------------------------------------------------------------- measuring


def rss_kib(pid: int) -> tuple[int, int]:
    """(VmRSS, VmHWM) of ``pid`` in KiB."""
    values = {"VmRSS": 0, "VmHWM": 0}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        key, _, rest = line.partition(":")
        if key in values:
            values[key] = int(rest.split()[0])
    return values["VmRSS"], values["VmHWM"]


@dataclass
class Measured:
    what: str
    seconds: float
    peak_rss_kib: int
    calls: dict[str, int] = field(default_factory=dict)
    output: str = ""

    @property
    def total_calls(self) -> int:
        return sum(self.calls.values())


async def measured_process(what: str, argv: Sequence[str], env: dict[str, str], proxy: RecordingProxy) -> Measured:
    """Run ``argv`` under ``/usr/bin/time`` (wall seconds, peak RSS) while ``proxy`` counts its admin calls."""
    proxy.reset()
    with tempfile.NamedTemporaryFile(prefix="dcr-scale-time-", suffix=".txt", delete=False) as handle:
        time_file = handle.name
    try:
        process = await asyncio.create_subprocess_exec(
            "/usr/bin/time",
            "-o",
            time_file,
            "-f",
            "%e %M",
            *argv,
            env=env,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
        )
        out, err = await asyncio.wait_for(process.communicate(), CLI_TIMEOUT)
        if process.returncode != 0:
            raise BenchError(f"{what}: exit {process.returncode}: {err.decode(errors='replace')[-1000:]}")
        elapsed, peak = _read_text(time_file).split()[-2:]
    finally:
        os.unlink(time_file)
    return Measured(what, float(elapsed), int(peak), dict(proxy.counts), out.decode(errors="replace"))


def _read_text(path: str) -> str:
    with open(path, encoding="utf-8") as handle:
        return handle.read()


def cli_env(gateway_env: dict[str, str], provider: str, proxy_url: str) -> dict[str, str]:
    """The gateway's settings with the admin API reached through ``proxy_url``; quiet logs."""
    env = {**os.environ, **DEVELOPMENT_LIMITS_ENV, **gateway_env, "DCR_LOG_LEVEL": "WARNING"}
    if provider == "hydra":
        env["DCR_HYDRA__ADMIN_URL"] = proxy_url
    else:
        env["DCR_KEYCLOAK__ADMIN_URL"] = proxy_url
    return env


def dcr_gateway() -> list[str]:
    script = Path(sys.executable).parent / "dcr-gateway"
    return [str(script)] if script.exists() else [sys.executable, "-m", "gateway"]


# ------------------------------------------------------------------------------------------------ recount


async def _recount() -> int:
    """The quota's recount (:meth:`ClientQuota.refresh`) of the first issuer, with the ``DCR_*`` settings."""
    from adapters.registry import get_factory
    from gateway.limits.quota import ClientQuota
    from gateway.settings import load_settings

    settings = load_settings(None)
    adapter = get_factory(settings.provider)(settings)
    timeout = aiohttp.ClientTimeout(total=settings.provider_timeout)
    async with aiohttp.ClientSession(timeout=timeout, cookie_jar=aiohttp.DummyCookieJar()) as session:
        await adapter.start(session)
        try:
            issuer = adapter.issuers()[0].key
            count = await ClientQuota(adapter, max_clients=1_000_000).refresh(issuer)
        finally:
            await adapter.close()
    print(count)
    return 0


# ------------------------------------------------------------------------------------------------- probes


@dataclass
class Probe:
    """One provider API that would make a per-client call per-page, tried once on the seeded provider."""

    what: str
    calls: int
    seconds: float
    items: int
    note: str = ""


async def _paged(
    bench: ProviderBench, url: str, params: dict[str, str], page_size: int
) -> tuple[list[Any], int, int, str]:
    """Keycloak ``first``/``max`` paging of ``url``: (items, calls, last status, error body)."""
    items: list[Any] = []
    calls = first = 0
    while True:
        query = {**params, "first": str(first), "max": str(page_size)}
        async with bench.http.get(url, params=query, headers=await bench.admin_headers()) as response:
            calls += 1
            if response.status != 200:
                return items, calls, response.status, (await response.text())[:120]
            page = await response.json()
        items.extend(page)
        if len(page) < page_size:
            return items, calls, 200, ""
        first += page_size


async def keycloak_probes(bench: KeycloakBench) -> list[Probe]:
    from adapters.keycloak.adapter import PAGE_SIZE
    from adapters.keycloak.mapping import MANAGED_ATTRIBUTE

    base = bench.provider.admin_realm_url
    probes: list[Probe] = []
    for what, params in (
        ("GET /clients (full, as the adapter pages today)", {}),
        ("GET /clients?briefRepresentation=true", {"briefRepresentation": "true"}),
        (f"GET /clients?q={MANAGED_ATTRIBUTE}:true", {"q": f"{MANAGED_ATTRIBUTE}:true"}),
    ):
        started = time.perf_counter()
        items, calls, status, error = await _paged(bench, f"{base}/clients", params, PAGE_SIZE)
        seconds = time.perf_counter() - started
        managed = sum(1 for item in items if keycloak_managed(item))
        with_attributes = sum(1 for item in items if item.get("attributes"))
        note = f"HTTP {status} {error}".strip() + f"; {managed} managed; {with_attributes} carry attributes"
        probes.append(Probe(what, calls, seconds, len(items), note))
    started = time.perf_counter()
    async with bench.http.get(f"{base}/client-session-stats", headers=await bench.admin_headers()) as response:
        status = response.status
        payload = await response.json() if status == 200 else await response.text()
    seconds = time.perf_counter() - started
    count = len(payload) if isinstance(payload, list) else 0
    note = f"HTTP {status}" + ("" if status == 200 else f": {str(payload)[:120]}")
    probes.append(Probe("GET /client-session-stats (gateway's account)", 1, seconds, count, note))
    # The same call with the master realm's admin (view-realm): what it returns and costs when allowed.
    form = {
        "grant_type": "password",
        "client_id": "admin-cli",
        "username": bench.provider.bootstrap_admin[0],
        "password": bench.provider.bootstrap_admin[1],
    }
    async with bench.http.post(
        f"{bench.provider.base_url}/realms/master/protocol/openid-connect/token", data=form
    ) as r:
        token = (await r.json()).get("access_token", "")
    started = time.perf_counter()
    async with bench.http.get(f"{base}/client-session-stats", headers={"Authorization": f"Bearer {token}"}) as r:
        status = r.status
        payload = await r.json() if status == 200 else await r.text()
    seconds = time.perf_counter() - started
    count = len(payload) if isinstance(payload, list) else 0
    note = f"HTTP {status}; one entry per client holding sessions (id, clientId, active, offline)"
    probes.append(Probe("GET /client-session-stats (realm admin)", 1, seconds, count, note))
    return probes


async def hydra_probes(bench: HydraBench) -> list[Probe]:
    from adapters.hydra.adapter import PAGE_SIZE

    probes: list[Probe] = []
    url = f"{bench.provider.admin_url}/admin/clients"
    for what, extra in (
        ("GET /admin/clients (as the adapter pages today)", {}),
        (f"GET /admin/clients?client_name={BODY['client_name']}", {"client_name": str(BODY["client_name"])}),
        ("GET /admin/clients?owner=dcr-gateway", {"owner": "dcr-gateway"}),
    ):
        items: list[Any] = []
        calls = 0
        token: str | None = None
        started = time.perf_counter()
        while True:
            params = {"page_size": str(PAGE_SIZE), **extra}
            if token:
                params["page_token"] = token
            async with bench.http.get(url, params=params) as response:
                calls += 1
                payload = await response.json() if response.status == 200 else []
                link = response.headers.get("Link", "")
            items.extend(payload or [])
            token = _next_page_token(link) if payload else None
            if not token:
                break
        seconds = time.perf_counter() - started
        managed = sum(1 for item in items if hydra_managed(item))
        probes.append(Probe(what, calls, seconds, len(items), f"{managed} managed"))
    return probes


# ---------------------------------------------------------------------------------------------------- run


@dataclass
class ProviderResult:
    name: str
    empty: dict[str, float] = field(default_factory=dict)
    seeded: dict[str, float] = field(default_factory=dict)
    empty_admin: dict[str, float] = field(default_factory=dict)
    """The admin API alone, side by side with :attr:`empty` (same run, alternating)."""
    seeded_admin: dict[str, float] = field(default_factory=dict)
    seed_managed_s: float = 0.0
    seed_unmanaged_s: float = 0.0
    gateway_rss_kib: tuple[int, int] = (0, 0)
    registrations: int = 0
    tools: list[Measured] = field(default_factory=list)
    probes: list[Probe] = field(default_factory=list)
    listed: int = 0
    churn: list[tuple[int, int, int]] = field(default_factory=list)
    """(registrations so far, VmRSS KiB, VmHWM KiB) during the ``--rss-registrations`` phase."""
    churn_seconds: float = 0.0


def _print_phase(provider: str, phase: str, row: dict[str, float], admin: dict[str, float]) -> None:
    print(
        f"{provider}: {phase} p50 {row['p50']:.2f} ms through the gateway, {admin['p50']:.2f} ms admin API alone "
        f"({row['retried_503']:.0f} retried 503; admin API: {admin['retried_conflict']:.0f} retried "
        "serialization conflicts)",
        flush=True,
    )


async def measure_provider(
    args: argparse.Namespace, bench: ProviderBench, gateway: Service, gateway_env: dict[str, str], admin_upstream: str
) -> ProviderResult:
    result = ProviderResult(bench.name)
    await bench.setup()
    if args.prewarm:
        # Warm the provider (Keycloak's JIT above all) with registrations, then delete them: "empty" below is a
        # warm provider with no managed client, not a cold one.
        started = time.perf_counter()
        for _ in range(args.prewarm):
            await bench.send("gateway", bench.gateway_request(BODY))
        deleted, left = await bench.cleanup(concurrency=4)
        print(
            f"{bench.name}: pre-warmed with {args.prewarm} registrations, deleted {deleted} "
            f"({left} managed left) in {time.perf_counter() - started:.1f} s",
            flush=True,
        )
    result.empty, result.empty_admin = await registration_latency(bench, args.requests, args.warmup)
    _print_phase(bench.name, "empty", result.empty, result.empty_admin)
    if args.seed_via == "gateway":
        result.seed_managed_s = await seed_managed(bench, args.clients, args.seed_concurrency)
    else:
        result.seed_managed_s = await seed_admin(
            bench, args.clients, args.seed_concurrency, lambda: _managed_representation(bench)
        )
    result.seed_unmanaged_s = await seed_unmanaged(bench, args.clients, args.seed_concurrency)
    print(
        f"{bench.name}: seeded {args.clients} managed ({args.seed_via}) in {result.seed_managed_s:.1f} s, "
        f"{args.clients} unmanaged in {result.seed_unmanaged_s:.1f} s",
        flush=True,
    )
    result.seeded, result.seeded_admin = await registration_latency(bench, args.requests, args.warmup)
    through_gateway = args.clients if args.seed_via == "gateway" else 0
    result.registrations = args.prewarm + 2 * (args.requests + args.warmup) + through_gateway
    result.gateway_rss_kib = rss_kib(gateway.pid)
    _print_phase(bench.name, "seeded", result.seeded, result.seeded_admin)

    proxy = RecordingProxy(admin_upstream)
    proxy_url = await proxy.start()
    env = cli_env(gateway_env, bench.name, proxy_url)
    try:
        result.tools, result.listed = await measure_tools(args, bench, env, proxy)
        for tool in result.tools:
            print(
                f"{bench.name}: {tool.what}: {tool.seconds:.2f} s, {tool.peak_rss_kib / 1024:.1f} MiB peak, "
                f"{tool.total_calls} admin calls",
                flush=True,
            )
    finally:
        await proxy.stop()
    if isinstance(bench, KeycloakBench):
        result.probes = await keycloak_probes(bench)
    elif isinstance(bench, HydraBench):
        result.probes = await hydra_probes(bench)
    if args.rss_registrations:
        started = time.perf_counter()
        result.churn = await registration_churn(bench, gateway, args.rss_registrations, args.seed_concurrency)
        result.churn_seconds = time.perf_counter() - started
        rss, hwm = result.churn[-1][1:]
        print(
            f"{bench.name}: {args.rss_registrations} registrations created and deleted through the gateway in "
            f"{result.churn_seconds:.0f} s: VmRSS {rss / 1024:.1f} MiB, VmHWM {hwm / 1024:.1f} MiB",
            flush=True,
        )
    return result


async def measure_tools(
    args: argparse.Namespace, bench: ProviderBench, env: dict[str, str], proxy: RecordingProxy
) -> tuple[list[Measured], int]:
    """Phase 4: the client tooling chosen with ``--tools``, each in its own process through the recording proxy;
    what each measured, and how many managed clients ``clients list`` showed (0 when it did not run)."""
    measured: list[Measured] = []
    listed = 0
    tools = set(args.tools.split(","))
    if "list" in tools:
        listing = await measured_process("clients list", [*dcr_gateway(), "clients", "list", "--json"], env, proxy)
        listed = len(json.loads(listing.output))
        measured.append(listing)
    if "gc" in tools:
        measured.append(
            await measured_process(
                "clients gc --unused-for 30d", [*dcr_gateway(), "clients", "gc", "--unused-for", "30d"], env, proxy
            )
        )
    if "recount" in tools:
        recount = await measured_process("quota recount", [sys.executable, SCRIPT, "--recount"], env, proxy)
        measured.append(recount)
    if isinstance(bench, KeycloakBench) and "view-realm" in tools:
        # the same two commands once the service account may read client-session-stats (README, Keycloak)
        await grant_view_realm(bench)
        listing = await measured_process(
            "clients list (view-realm)", [*dcr_gateway(), "clients", "list", "--json"], env, proxy
        )
        measured.append(listing)
        measured.append(
            await measured_process(
                "clients gc 30d (view-realm)",
                [*dcr_gateway(), "clients", "gc", "--unused-for", "30d"],
                env,
                proxy,
            )
        )
    return measured, listed


async def registration_churn(
    bench: ProviderBench, gateway: Service, count: int, concurrency: int
) -> list[tuple[int, int, int]]:
    """``count`` registrations through the gateway, each deleted again through it (RFC 7592 ``DELETE`` with its
    registration access token), ``concurrency`` in flight: the gateway's resident memory after that many
    registrations, the provider kept small. A 429 of the gateway's rate limits is waited out (``Retry-After``).
    Returns (done, VmRSS, VmHWM) at the start and after each tenth."""
    body = json.dumps(BODY).encode()
    samples = [(0, *rss_kib(gateway.pid))]
    done = 0
    step = max(1, count // 10)

    async def call(method: str, url: str, **kwargs: Any) -> tuple[int, Any]:
        retried = False
        for _ in range(100):
            async with bench.http.request(method, url, **kwargs) as response:
                if response.status in (429, 503):
                    # rate limited, or the provider's storage refused a concurrent write (Hydra's SQLite): again
                    retried = True
                    await asyncio.sleep(min(1.0, float(response.headers.get("Retry-After", "1"))))
                    continue
                if retried and method == "DELETE" and response.status == 401:
                    return 204, None  # a retried delete that had gone through: the client is gone
                payload = await response.json() if response.status == 201 else None
                return response.status, payload
        raise BenchError(f"{method} {url}: still rate limited or unavailable")

    async def one() -> None:
        nonlocal done
        status, registered = await call("POST", bench.registration_endpoint, data=body, headers=JSON_HEADERS)
        if status != 201:
            raise BenchError(f"churn registration: HTTP {status}")
        token = registered["registration_access_token"]
        status, _ = await call(
            "DELETE", registered["registration_client_uri"], headers={"Authorization": f"Bearer {token}"}
        )
        if status != 204:
            raise BenchError(f"churn RFC 7592 delete: HTTP {status}")
        done += 1
        if done % step == 0:
            samples.append((done, *rss_kib(gateway.pid)))

    await _run_bounded(count, concurrency, one)
    if samples[-1][0] != done:
        samples.append((done, *rss_kib(gateway.pid)))
    return samples


def print_results(args: argparse.Namespace, results: Sequence[ProviderResult]) -> None:
    n = args.clients
    print(f"\nscale: {n} managed + {n} unmanaged clients per provider; {args.requests} sequential registrations")
    header = f"{'provider':<10}{'phase':<10}{'side':<9}{'p50 ms':>9}{'p99 ms':>9}{'mean ms':>9}"
    print(header)
    print("-" * len(header))
    for result in results:
        for phase, row, admin in (
            ("empty", result.empty, result.empty_admin),
            ("seeded", result.seeded, result.seeded_admin),
        ):
            for side, values in (("gateway", row), ("admin", admin)):
                print(
                    f"{result.name:<10}{phase:<10}{side:<9}{values['p50']:>9.2f}{values['p99']:>9.2f}"
                    f"{values['mean']:>9.2f}"
                )
        ratio = result.seeded["p50"] / result.empty["p50"]
        admin_ratio = result.seeded_admin["p50"] / result.empty_admin["p50"]
        overhead = (result.seeded["p50"] - result.seeded_admin["p50"], result.empty["p50"] - result.empty_admin["p50"])
        print(f"{result.name:<10}{'ratio':<10}{'gateway':<9}{ratio:>9.2f}   seeded / empty p50")
        print(f"{result.name:<10}{'ratio':<10}{'admin':<9}{admin_ratio:>9.2f}   seeded / empty p50")
        print(
            f"{result.name:<10}{'overhead':<10}{'gateway':<9}{overhead[0]:>9.2f}   ms at p50 seeded "
            f"(empty: {overhead[1]:+.2f})"
        )
    print("\ngateway after its registrations (VmRSS / VmHWM)")
    for result in results:
        rss, hwm = result.gateway_rss_kib
        print(f"{result.name:<10}{result.registrations:>7} registrations  {rss / 1024:.1f} MiB / {hwm / 1024:.1f} MiB")
    if any(result.churn for result in results):
        print("\ngateway while registrations are created and deleted through it (VmRSS / VmHWM)")
        for result in results:
            for done, rss, hwm in result.churn:
                print(f"{result.name:<10}{done:>7} registrations  {rss / 1024:.1f} MiB / {hwm / 1024:.1f} MiB")
    print("\nclient tooling through a recording proxy in front of the admin API")
    header = f"{'provider':<10}{'what':<30}{'wall s':>8}{'peak MiB':>10}{'calls':>8}{'per managed':>13}"
    print(header)
    print("-" * len(header))
    for result in results:
        for tool in result.tools:
            per_client = tool.total_calls / result.listed if result.listed else 0.0
            print(
                f"{result.name:<10}{tool.what:<30}{tool.seconds:>8.2f}{tool.peak_rss_kib / 1024:>10.1f}"
                f"{tool.total_calls:>8}{per_client:>13.2f}"
            )
            for key, count in sorted(tool.calls.items(), key=lambda item: -item[1]):
                print(f"{'':<12}{count:>7}  {key}")
        print(f"{result.name:<10}clients list showed {result.listed} managed clients")
    print("\nper-page provider APIs, tried once on the seeded provider (direct, not through the proxy)")
    header = f"{'provider':<10}{'what':<52}{'calls':>6}{'wall s':>8}{'items':>7}  note"
    print(header)
    print("-" * len(header))
    for result in results:
        for probe in result.probes:
            print(
                f"{result.name:<10}{probe.what:<52}{probe.calls:>6}{probe.seconds:>8.2f}{probe.items:>7}  {probe.note}"
            )


async def run(
    args: argparse.Namespace,
    *,
    hydra: HydraProvider | None,
    hydra_url: str,
    keycloak: KeycloakProvider | None,
    keycloak_url: str,
    stack: Stack,
    envs: dict[str, dict[str, str]],
) -> int:
    gateways = {
        service.name.removeprefix("gateway-"): service
        for service in stack.services
        if service.name.startswith("gateway-")
    }
    connector = aiohttp.TCPConnector(limit=max(8, args.seed_concurrency))
    timeout = aiohttp.ClientTimeout(total=60)
    results: list[ProviderResult] = []
    async with aiohttp.ClientSession(connector=connector, timeout=timeout) as http:
        if hydra is not None:
            bench: ProviderBench = HydraBench(http, hydra, hydra_url)
            results.append(await measure_provider(args, bench, gateways["hydra"], envs["hydra"], hydra.admin_url))
        if keycloak is not None:
            bench = KeycloakBench(http, keycloak, keycloak_url)
            results.append(
                await measure_provider(args, bench, gateways["keycloak"], envs["keycloak"], keycloak.base_url)
            )
    print_results(args, results)
    return 0


def _parse(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument("--clients", type=int, default=500, help="managed clients to seed, and as many unmanaged")
    parser.add_argument("--requests", type=int, default=200, help="measured sequential registrations per phase")
    parser.add_argument("--warmup", type=int, default=100, help="unmeasured registrations before each phase")
    parser.add_argument(
        "--prewarm",
        type=int,
        default=500,
        help="registrations sent and deleted again before the empty phase (warms the provider's JIT)",
    )
    parser.add_argument("--seed-concurrency", type=int, default=8, help="seeding requests in flight")
    parser.add_argument(
        "--seed-via",
        choices=("admin", "gateway"),
        default="admin",
        help="managed clients through the admin API with exactly the adapter's representation (Keycloak: "
        "partialImport batches; default, minutes for 100,000) or through the gateway (POST /register)",
    )
    parser.add_argument(
        "--rss-registrations",
        type=int,
        default=0,
        help="then this many registrations created and deleted through the gateway, its RSS sampled (goal 4: "
        "under 100 MB after 100,000)",
    )
    parser.add_argument("--providers", default="hydra,keycloak", help="comma-separated: hydra, keycloak")
    parser.add_argument(
        "--keycloak-stock",
        action="store_true",
        help=f"start Keycloak without {SEARCHABLE_ENV}={SEARCHABLE_MARKER} (devstack sets it): the adapter's "
        "fallback, listing every client",
    )
    parser.add_argument(
        "--tools",
        default=",".join(TOOLS),
        help=f"the client tooling to measure, comma-separated from {', '.join(TOOLS)} (Keycloak at 100,000: each "
        "listing is minutes of Keycloak's own paging; 'list,recount' halves the run)",
    )
    parser.add_argument("--keep-logs", action="store_true", help="keep the run directory (provider/gateway logs)")
    parser.add_argument("--recount", action="store_true", help=argparse.SUPPRESS)  # the measured child process
    args = parser.parse_args(argv)
    args.providers = [p.strip() for p in args.providers.split(",") if p.strip()]
    if not set(args.providers) <= {"hydra", "keycloak"} or not args.providers:
        parser.error("--providers takes hydra and/or keycloak")
    counts = (args.clients, args.rss_registrations, args.prewarm, args.warmup)
    if min(counts) < 0 or args.requests < 1 or args.seed_concurrency < 1:
        parser.error("counts must be positive")
    unknown = set(args.tools.split(",")) - set(TOOLS)
    if unknown:
        parser.error(f"--tools: unknown {sorted(unknown)}; choose from {', '.join(TOOLS)}")
    return args


def main(argv: Sequence[str] | None = None) -> int:
    args = _parse(argv)
    if args.recount:
        return asyncio.run(_recount())
    if args.keycloak_stock:
        devstack.providers.KEYCLOAK_SEARCHABLE_ATTRIBUTES.clear()  # start_keycloak reads it when it starts one
    # the development quota (100,000 managed clients per issuer) would refuse the seeded phase at N = 100,000
    quota = max(100_000, 2 * args.clients + args.prewarm + 10_000)
    devstack.providers.DEVELOPMENT_LIMITS_ENV["DCR_LIMITS__MAX_CLIENTS_PER_ISSUER"] = str(quota)
    with bench_run("scale", keep_logs=args.keep_logs) as bench:
        hydra, hydra_url, keycloak, keycloak_url = start_stack(bench.stack, bench.run_dir, args.providers)
        envs: dict[str, dict[str, str]] = {}
        if hydra is not None:
            envs["hydra"] = hydra.gateway_env()
        if keycloak is not None:
            envs["keycloak"] = keycloak.gateway_env(int(keycloak_url.rsplit(":", 1)[1]))
        print(f"providers ready in {time.perf_counter() - bench.started:.1f} s; {os.cpu_count()} CPUs", flush=True)
        code = asyncio.run(
            run(
                args,
                hydra=hydra,
                hydra_url=hydra_url,
                keycloak=keycloak,
                keycloak_url=keycloak_url,
                stack=bench.stack,
                envs=envs,
            )
        )
        bench.ok = code == 0
        return code


if __name__ == "__main__":
    sys.exit(main())
