"""The Keycloak adapter's admin transport per call, in-process, against a bare aiohttp call to the same endpoint.

A small aiohttp server on 127.0.0.1 (same process, same event loop) plays the realm's token endpoint and
``POST /admin/realms/mcp/clients`` (201 with ``Location``, after reading the body). Per side, ``--calls``
sequential creates with the same representation, the sides interleaved in blocks of ``--block`` so machine noise
hits all of them; the server's own cost is in every side alike, so the differences are the transports':

- **bare**: ``session.post`` with a prebuilt bearer header and the JSON body, the body read (the floor);
- **adapter**: :meth:`adapters.keycloak.admin.KeycloakAdminClient.a_create_client` on the same session (cached
  token, response read whole, status checked, id taken from ``Location``);
- **python-keycloak**: ``KeycloakAdmin.a_create_client`` (httpx/anyio), only when the ``keycloak`` package is
  importable (the gateway no longer depends on it: ``pip install python-keycloak==7.1.1`` to compare).

Also counts the token requests each side made. Loopback only, bounded (default 2,000 calls per side), stops by
itself::

    PYTHONPATH=. .venv/bin/python bench/keycloak_admin_call.py --calls 2000
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import time
from collections.abc import Awaitable, Callable, Sequence
from typing import Any

import aiohttp
from aiohttp import web

from adapters.keycloak.admin import KeycloakAdminClient, ServiceAccountToken

REALM = "mcp"
REPRESENTATION: dict[str, Any] = {
    "clientId": "bench-client",
    "publicClient": True,
    "redirectUris": ["http://127.0.0.1:3000/callback"],
    "attributes": {"dcr.gateway.managed": "true", "pkce.code.challenge.method": "S256"},
}


class Fake:
    def __init__(self) -> None:
        self.token_requests = 0
        self.creates = 0

    async def token(self, request: web.Request) -> web.Response:
        await request.read()
        self.token_requests += 1
        return web.json_response({"access_token": "bench-token", "expires_in": 300, "token_type": "Bearer"})

    async def create(self, request: web.Request) -> web.Response:
        await request.read()
        self.creates += 1
        location = f"{request.url}/00000000-0000-0000-0000-{self.creates:012d}"
        return web.Response(status=201, headers={"Location": location})


BENCH_SECRET = "bench-secret"
"""The fake token endpoint takes any secret; a development value."""


def percentile(values: Sequence[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[max(0, int(q * len(ordered)) - 1)]


Send = Callable[[], Awaitable[None]]


async def start_fake(fake: Fake) -> tuple[web.AppRunner, str]:
    app = web.Application()
    app.router.add_post(f"/realms/{REALM}/protocol/openid-connect/token", fake.token)
    app.router.add_post(f"/admin/realms/{REALM}/clients", fake.create)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", 0).start()
    return runner, f"http://127.0.0.1:{runner.addresses[0][1]}"


def bare_side(session: aiohttp.ClientSession, base: str) -> Send:
    body = json.dumps(REPRESENTATION).encode()
    headers = {"Authorization": "Bearer bench-token", "Content-Type": "application/json"}
    url = f"{base}/admin/realms/{REALM}/clients"

    async def bare() -> None:
        async with session.post(url, data=body, headers=headers) as response:
            await response.read()
            if response.status != 201:
                raise RuntimeError(f"bare: HTTP {response.status}")

    return bare


def adapter_side(
    session: aiohttp.ClientSession, base: str, timeout: aiohttp.ClientTimeout
) -> tuple[Send, ServiceAccountToken]:
    token = ServiceAccountToken(
        session,
        token_url=f"{base}/realms/{REALM}/protocol/openid-connect/token",
        client_id="dcr-gateway",
        client_secret=BENCH_SECRET,
        ssl=True,
        timeout=timeout,
    )
    admin = KeycloakAdminClient(session, server_url=base, realm=REALM, token=token, ssl=True, timeout=timeout)

    async def adapter() -> None:
        await admin.a_create_client(REPRESENTATION)

    return adapter, token


def python_keycloak_side(base: str) -> tuple[Send, Callable[[], Awaitable[None]]] | None:
    try:
        from keycloak import KeycloakAdmin, KeycloakOpenIDConnection  # type: ignore[import-not-found]
    except ImportError:
        print("python-keycloak not installed: its side is left out")
        return None
    connection = KeycloakOpenIDConnection(
        server_url=base + "/",
        realm_name=REALM,
        user_realm_name=REALM,
        client_id="dcr-gateway",
        client_secret_key=BENCH_SECRET,
        timeout=10,
    )
    keycloak_admin = KeycloakAdmin(connection=connection)

    async def python_keycloak() -> None:
        await keycloak_admin.a_create_client(REPRESENTATION)

    return python_keycloak, connection.aclose


async def measure(sides: dict[str, Send], calls: int, block: int) -> dict[str, list[float]]:
    """Interleaved blocks (the order reversed every round), after 50 unmeasured calls per side."""
    for send in sides.values():  # connections, tokens, imports
        for _ in range(50):
            await send()
    samples: dict[str, list[float]] = {name: [] for name in sides}
    done = 0
    order = list(sides)
    while done < calls:
        count = min(block, calls - done)
        for name in order:
            send = sides[name]
            for _ in range(count):
                started = time.perf_counter()
                await send()
                samples[name].append(time.perf_counter() - started)
        done += count
        order.reverse()
    return samples


def report(calls: int, samples: dict[str, list[float]]) -> None:
    floor = statistics.median(samples["bare aiohttp"])
    print(f"{calls} sequential creates per side, in-process (noisy: server and client share the loop)")
    print(f"{'side':<32} {'p50 ms':>8} {'mean ms':>8} {'p99 ms':>8} {'+p50 vs bare':>13}")
    for name, values in samples.items():
        p50 = statistics.median(values)
        print(
            f"{name:<32} {p50 * 1e3:8.3f} {statistics.fmean(values) * 1e3:8.3f} "
            f"{percentile(values, 0.99) * 1e3:8.3f} {(p50 - floor) * 1e3:+13.3f}"
        )


async def run(calls: int, block: int) -> int:
    fake = Fake()
    runner, base = await start_fake(fake)
    timeout = aiohttp.ClientTimeout(total=10)
    try:
        async with aiohttp.ClientSession(timeout=timeout, cookie_jar=aiohttp.DummyCookieJar()) as session:
            adapter, token = adapter_side(session, base, timeout)
            sides = {"bare aiohttp": bare_side(session, base), "adapter (KeycloakAdminClient)": adapter}
            other = python_keycloak_side(base)
            if other is not None:
                sides["python-keycloak 7.1.1"] = other[0]
            try:
                samples = await measure(sides, calls, block)
            finally:
                if other is not None:
                    await other[1]()
    finally:
        await runner.cleanup()
    report(calls, samples)
    print(f"token requests: {fake.token_requests} (the adapter's: {token.requests})")
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--calls", type=int, default=2000, help="measured calls per side (default 2000)")
    parser.add_argument("--block", type=int, default=100, help="calls per side before switching (default 100)")
    args = parser.parse_args(argv)
    return asyncio.run(run(args.calls, args.block))


if __name__ == "__main__":
    raise SystemExit(main())
