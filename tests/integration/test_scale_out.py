"""Scale-out proven (issue 11 item 9): two ``dcr-gateway serve`` processes behind a real nginx, sharing a real
Redis for the limiter, in front of the real Hydra and the real Keycloak; 500 registrations from 50 concurrent
clients while one instance is sent SIGTERM and started again mid-run.

- nginx: an upstream with both instances, HTTP/1.1 keep-alive to them, ``proxy_next_upstream error timeout`` (a
  refused connect goes to the other instance; a POST that reached an instance is never resent by nginx, so a
  registration cannot be created twice), and ``X-Forwarded-For`` appended;
- the clients connect from ``127.0.0.2`` (nginx from ``127.0.0.1``): with ``trust_forwarded_for`` the gateways
  count the client's address, not nginx's, against one per-source budget in the shared Redis;
- per-source limit 400 (below 500), so exactly 400 registrations get 201 across both instances and the other
  100 get 429 with ``Retry-After``; the global limit is off, the quota (10 000) is far away.

Asserted: every 201 corresponds to exactly one new provider client (listed with the provider's admin API, matched
by client_id), the provider holds no other new client (no orphan), every other answer created nothing, the
SIGTERM'd instance exited 0, and no connection was dropped without an answer the client could retry (an nginx 502
for a request that never reached a gateway is retried by the client and counted; the counts are printed in a
``scale-out ...`` summary line).

nginx and redis-server come from ``make system-deps``; without them this module is skipped.
"""

from __future__ import annotations

import asyncio
import collections
import json
import signal
import socket
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path

import aiohttp
import pytest

from devstack.process import LOOPBACK, Service, free_port, spawn
from devstack.providers import HydraProvider, KeycloakProvider, start_gateway
from gateway.settings import Settings
from tests.integration.conftest import provider_client_ids
from tests.integration.test_limits import RedisServer, redis_server
from tests.integration.test_nginx_path_routing import NGINX

pytestmark = pytest.mark.integration

__all__ = ["redis_server"]  # the fixture, used by name

REGISTRATIONS = 500
CONCURRENCY = 50
PER_SOURCE_LIMIT = 400
RESTART_AFTER = 100
"""The SIGTERM goes to one instance once this many registrations have been answered."""
AFTER_RESTART = 250
"""Registrations from this number on are sent once the instance is back (so both serve the end of the run)."""
CLIENT_ADDRESS = "127.0.0.2"
ATTEMPTS = 4
GATEWAY_READY_TIMEOUT = 60.0


def _loopback_alias_works() -> bool:
    try:
        with socket.socket() as probe:
            probe.bind((CLIENT_ADDRESS, 0))
    except OSError:
        return False
    return True


NGINX_CONF = """
worker_processes 1;
pid nginx.pid;
error_log stderr notice;
events {{ worker_connections 1024; }}
http {{
    log_format scale '$remote_addr "$request_method $uri" $status upstream=$upstream_addr '
                     'upstream_status=$upstream_status';
    access_log access.log scale;
    client_body_temp_path client_body_temp;
    proxy_temp_path proxy_temp;
    fastcgi_temp_path fastcgi_temp;
    uwsgi_temp_path uwsgi_temp;
    scgi_temp_path scgi_temp;

    upstream gateways {{
        server {first} max_fails=1 fail_timeout=2s;
        server {second} max_fails=1 fail_timeout=2s;
        keepalive 32;
    }}
    server {{
        listen {listen};
        location / {{
            proxy_pass http://gateways;
            proxy_http_version 1.1;
            proxy_set_header Connection "";
            proxy_set_header Host $http_host;
            proxy_set_header X-Forwarded-For $proxy_add_x_forwarded_for;
            proxy_set_header X-Forwarded-Proto $scheme;
            # a refused or failed connect goes to the other instance; a POST that reached one is not resent
            proxy_next_upstream error timeout;
            proxy_next_upstream_tries 2;
            proxy_connect_timeout 2s;
            proxy_read_timeout 60s;
        }}
    }}
}}
"""


@dataclass
class Instance:
    name: str
    env: dict[str, str]
    log_path: Path
    service: Service | None = None

    def start(self) -> None:
        self.service = start_gateway(self.name, env=self.env, log_path=self.log_path, ready_path="/readyz")
        self.service.wait_ready(GATEWAY_READY_TIMEOUT)


@dataclass
class Counts:
    """What the clients saw."""

    final: collections.Counter[int] = field(default_factory=collections.Counter)
    """The last answer of each registration, by status."""
    retried: collections.Counter[str] = field(default_factory=collections.Counter)
    """Attempts retried, by cause (a transport error, or nginx's 502/504)."""
    unanswered: int = 0
    """Registrations still without an answer after every attempt."""
    created: list[str] = field(default_factory=list)
    """client_ids of the 201s."""
    without_retry_after: int = 0
    answered_after_restart: int = 0


def _gateway_env(
    provider: HydraProvider | KeycloakProvider, port: int, public_url: str, redis_url: str, key_prefix: str
) -> dict[str, str]:
    env = provider.gateway_env(port)
    env.update(
        {
            "DCR_PUBLIC_URL": public_url,
            "DCR_TRUST_FORWARDED_FOR": "true",
            "DCR_LIMITS__BACKEND": "redis",
            "DCR_LIMITS__REDIS_URL": redis_url,
            "DCR_LIMITS__KEY_PREFIX": key_prefix,
            "DCR_LIMITS__PER_SOURCE_LIMIT": str(PER_SOURCE_LIMIT),
            "DCR_LIMITS__PER_SOURCE_WINDOW_SECONDS": "3600",
            "DCR_LIMITS__GLOBAL_LIMIT": "0",
            "DCR_LIMITS__ON_BACKEND_FAILURE": "local",
            "DCR_SHUTDOWN__DRAIN_SECONDS": "1",
            "DCR_SHUTDOWN__TIMEOUT_SECONDS": "25",
            # Keycloak on H2 serialises creates: 50 at once through one instance queue for longer than the
            # default 10 s (the gateway then answers 503 and rolls back, which the accounting below allows)
            "DCR_PROVIDER_TIMEOUT": "30",
        }
    )
    if "management" in Settings.model_fields:  # the management listener (its own port per instance)
        env["DCR_MANAGEMENT__PORT"] = str(free_port())
    return env


@pytest.fixture(params=["hydra", "keycloak"])
async def scale_out(
    request: pytest.FixtureRequest, redis_server: RedisServer, tmp_path: Path
) -> AsyncIterator[tuple[HydraProvider | KeycloakProvider, str, list[Instance], str]]:
    """(provider, registration URL through nginx, the two instances, nginx's run directory)."""
    if NGINX is None:
        pytest.skip("nginx is not installed (make system-deps)")
    if not _loopback_alias_works():
        pytest.skip(f"cannot bind {CLIENT_ADDRESS} (the clients' loopback address)")
    provider: HydraProvider | KeycloakProvider = request.getfixturevalue(f"{request.param}_provider")
    nginx_port = free_port()
    origin = f"http://{LOOPBACK}:{nginx_port}"
    if isinstance(provider, HydraProvider):
        public_url, registration = provider.issuer, f"{origin}/register"
    else:
        public_url, registration = origin, f"{origin}/realms/{provider.realm}/register"
    instances: list[Instance] = []
    nginx: Service | None = None
    try:
        for index in (1, 2):
            port = free_port()
            env = _gateway_env(provider, port, public_url, redis_server.url, f"scale-{request.param}-{port}:")
            instances.append(Instance(f"gateway-{index}", env, tmp_path / f"gateway-{index}.log"))
        # one key prefix for both (the budget is shared): the first's
        for instance in instances:
            instance.env["DCR_LIMITS__KEY_PREFIX"] = instances[0].env["DCR_LIMITS__KEY_PREFIX"]
        await asyncio.gather(*(asyncio.to_thread(instance.start) for instance in instances))
        run_dir = tmp_path / "nginx"
        run_dir.mkdir()
        (run_dir / "nginx.conf").write_text(
            NGINX_CONF.format(
                listen=f"{LOOPBACK}:{nginx_port}",
                first=f"{LOOPBACK}:{instances[0].env['DCR_PORT']}",
                second=f"{LOOPBACK}:{instances[1].env['DCR_PORT']}",
            )
        )
        assert NGINX is not None
        nginx = spawn(
            "nginx",
            [NGINX, "-p", f"{run_dir}/", "-c", str(run_dir / "nginx.conf"), "-g", "daemon off;"],
            log_path=run_dir / "nginx.log",
            ready_url=f"{origin}/healthz",
        )
        await asyncio.to_thread(nginx.wait_ready, 15.0)
        yield provider, registration, instances, str(run_dir)
    finally:
        if nginx is not None:
            nginx.stop()
        for instance in instances:
            if instance.service is not None:
                instance.service.stop()


async def _register(
    session: aiohttp.ClientSession, url: str, number: int, counts: Counts, restarted: asyncio.Event
) -> None:
    body = {
        "client_name": f"scale-out {number}",
        "redirect_uris": ["http://127.0.0.1:3000/callback"],
        "token_endpoint_auth_method": "none",
    }
    for _ in range(ATTEMPTS):
        try:
            async with session.post(url, json=body) as response:
                status = response.status
                payload = await response.read()
                retry_after = response.headers.get("Retry-After")
        except (TimeoutError, aiohttp.ClientConnectionError, aiohttp.ServerDisconnectedError) as exc:
            counts.retried[f"transport:{type(exc).__name__}"] += 1
            continue
        if status in (502, 504):  # nginx found no instance to answer: nothing reached a gateway's handler
            counts.retried[f"nginx:{status}"] += 1
            continue
        counts.final[status] += 1
        if restarted.is_set():
            counts.answered_after_restart += 1
        if status == 201:
            counts.created.append(json.loads(payload)["client_id"])
        elif status == 429 and not retry_after:
            counts.without_retry_after += 1
        elif status != 429:
            assert json.loads(payload)["error"] == "temporarily_unavailable", payload
        return
    counts.unanswered += 1


async def _restart(instance: Instance, started: asyncio.Event, restarted: asyncio.Event) -> dict[str, float]:
    """SIGTERM to ``instance`` once ``started`` is set; its exit status must be 0; then start it again."""
    await started.wait()
    assert instance.service is not None
    process = instance.service.process
    signalled = time.monotonic()
    process.send_signal(signal.SIGTERM)
    code = await asyncio.to_thread(process.wait, 40)
    stopped = time.monotonic()
    assert code == 0, f"{instance.name} exited {code} after SIGTERM"
    await asyncio.to_thread(instance.start)
    restarted.set()
    return {"stop_seconds": stopped - signalled, "restart_seconds": time.monotonic() - signalled}


async def test_two_instances_behind_nginx_lose_nothing_while_one_restarts(
    scale_out: tuple[HydraProvider | KeycloakProvider, str, list[Instance], str],
    http: aiohttp.ClientSession,
) -> None:
    provider, url, instances, nginx_dir = scale_out
    before = await provider_client_ids(provider, http)
    counts = Counts()
    started, restarted = asyncio.Event(), asyncio.Event()
    numbers = iter(range(REGISTRATIONS))
    answered = 0

    connector = aiohttp.TCPConnector(limit=CONCURRENCY, local_addr=(CLIENT_ADDRESS, 0))
    timeout = aiohttp.ClientTimeout(total=60)
    began = time.monotonic()
    async with aiohttp.ClientSession(connector=connector, timeout=timeout) as session:

        async def client() -> None:
            nonlocal answered
            for number in numbers:
                if number >= AFTER_RESTART:  # the rest of the run goes to both instances again
                    await restarted.wait()
                await _register(session, url, number, counts, restarted)
                answered += 1
                if answered >= RESTART_AFTER:
                    started.set()

        restart = asyncio.create_task(_restart(instances[0], started, restarted))
        await asyncio.gather(*(client() for _ in range(CONCURRENCY)))
        started.set()
        timings = await restart
    elapsed = time.monotonic() - began

    after = await provider_client_ids(provider, http)
    new = after - before
    created = set(counts.created)
    upstreams = collections.Counter(
        line.split("upstream=")[1].split()[0] for line in (Path(nginx_dir) / "access.log").read_text().splitlines()
    )
    print(
        f"\nscale-out {type(provider).__name__.removesuffix('Provider').lower()}: "
        f"201={counts.final[201]} 429={counts.final[429]} "
        f"other={sum(n for s, n in counts.final.items() if s not in (201, 429))} {dict(counts.final)} "
        f"retried={dict(counts.retried)} unanswered={counts.unanswered} "
        f"provider_clients_before={len(before)} after={len(after)} new={len(new)} "
        f"stop={timings['stop_seconds']:.2f}s restart={timings['restart_seconds']:.2f}s "
        f"answered_after_restart={counts.answered_after_restart} run={elapsed:.1f}s nginx_upstreams={dict(upstreams)}"
    )

    assert counts.answered_after_restart >= REGISTRATIONS - AFTER_RESTART
    assert counts.unanswered == 0
    assert sum(counts.final.values()) == REGISTRATIONS
    assert len(created) == len(counts.created)  # no client_id handed out twice
    assert new == created, (sorted(new - created)[:5], sorted(created - new)[:5])  # no orphan, none missing
    # one budget across both instances (shared Redis): every answer but a 429 spent one of its 400 requests
    others = {status: n for status, n in counts.final.items() if status not in (201, 429)}
    assert set(others) <= {503}, others  # 503 temporarily_unavailable: the provider failed; nothing was kept
    assert counts.final[201] + sum(others.values()) == PER_SOURCE_LIMIT
    assert counts.final[429] == REGISTRATIONS - PER_SOURCE_LIMIT
    assert counts.without_retry_after == 0
    # An attempt nginx answered 502 (an idle keep-alive connection the stopping instance closed just as nginx
    # reused it: nginx does not resend a POST) or a transport error never reached a gateway's handler: retried by
    # the client, it spent no request of the budget (the equality above) and created nothing (new == created).
    assert set(counts.retried) <= {"nginx:502"}, counts.retried
    assert sum(counts.retried.values()) <= CONCURRENCY, counts.retried
