"""SIGTERM to a real ``dcr-gateway serve`` process while clients register through it in front of the real Hydra
(issue 11 item 8).

The process: ``/readyz`` answers 503 at once while the listener keeps accepting for the drain
(``DCR_SHUTDOWN__DRAIN_SECONDS``), registrations sent meanwhile are answered 201, then new connections are
refused, and the process exits 0 within the bound. Hydra, listed with its admin API before and after, holds
exactly one new client per 201 the clients received: none was created without being handed over.
"""

from __future__ import annotations

import asyncio
import collections
import signal
import time
from pathlib import Path

import aiohttp
import pytest

from devstack.process import LOOPBACK, free_port
from devstack.providers import HydraProvider, start_gateway
from gateway.settings import Settings
from tests.integration.conftest import provider_client_ids

pytestmark = pytest.mark.integration

DRAIN = 1.5
TIMEOUT = 10.0
WORKERS = 20


def _env(hydra: HydraProvider, port: int) -> dict[str, str]:
    env = hydra.gateway_env(port)
    env.update(
        {
            "DCR_PUBLIC_URL": hydra.issuer,
            "DCR_SHUTDOWN__DRAIN_SECONDS": str(DRAIN),
            "DCR_SHUTDOWN__TIMEOUT_SECONDS": str(TIMEOUT),
            "DCR_LIMITS__PER_SOURCE_LIMIT": "0",
            "DCR_LIMITS__GLOBAL_LIMIT": "0",
        }
    )
    if "management" in Settings.model_fields:  # the management listener: a free port of its own
        env["DCR_MANAGEMENT__PORT"] = str(free_port())
    return env


async def test_sigterm_during_registrations_answers_them_then_refuses_and_exits_zero(
    hydra_provider: HydraProvider, http: aiohttp.ClientSession, tmp_path: Path
) -> None:
    port = free_port()
    env = _env(hydra_provider, port)
    service = start_gateway("gateway-shutdown", env=env, log_path=tmp_path / "gateway.log", ready_path="/readyz")
    try:
        await asyncio.to_thread(service.wait_ready, 60.0)
        base = f"http://{LOOPBACK}:{port}"
        before = await provider_client_ids(hydra_provider, http)
        created: list[tuple[str, float]] = []
        outcomes: collections.Counter[str] = collections.Counter()
        signalled: list[float] = []

        # a new connection per request: what is counted is the listener's behaviour, not a client's pool
        connector = aiohttp.TCPConnector(force_close=True, limit=WORKERS)
        async with aiohttp.ClientSession(connector=connector, timeout=aiohttp.ClientTimeout(total=30)) as session:

            async def worker(number: int) -> None:
                for attempt in range(1000):
                    body = {
                        "client_name": f"shutdown {number}.{attempt}",
                        "redirect_uris": ["http://127.0.0.1/cb"],
                        "token_endpoint_auth_method": "none",
                    }
                    try:
                        async with session.post(f"{base}/register", json=body) as response:
                            payload = await response.json(content_type=None)
                            outcomes[str(response.status)] += 1
                            if response.status == 201:
                                created.append((payload["client_id"], time.monotonic()))
                    except aiohttp.ClientConnectorError:
                        outcomes["refused"] += 1  # the listener is closed: the client may go elsewhere
                        return
                    except aiohttp.ClientError as exc:
                        outcomes[f"transport:{type(exc).__name__}"] += 1

            workers = [asyncio.create_task(worker(n)) for n in range(WORKERS)]
            await asyncio.sleep(1.0)
            assert created, outcomes
            service.process.send_signal(signal.SIGTERM)
            signalled.append(time.monotonic())
            async with http.get(f"{base}/readyz") as response:  # at once, the listener still accepting
                readiness = (response.status, (await response.json())["status"], time.monotonic() - signalled[0])
            await asyncio.gather(*workers)
        code = await asyncio.to_thread(service.process.wait, DRAIN + TIMEOUT + 10)
        exited = time.monotonic() - signalled[0]

        after = await provider_client_ids(hydra_provider, http)
        answered_after_sigterm = sum(1 for _, at in created if at > signalled[0])
        print(
            f"\nshutdown hydra: outcomes={dict(outcomes)} answered_after_sigterm={answered_after_sigterm} "
            f"readiness={readiness} exit={code} after {exited:.2f}s"
        )
        assert readiness[:2] == (503, "shutting_down")
        assert readiness[2] < DRAIN
        assert code == 0
        assert exited < DRAIN + TIMEOUT
        assert answered_after_sigterm > 0  # registrations sent during the drain were answered
        assert outcomes["refused"] == WORKERS  # then the listener was closed: every worker saw a refused connect
        assert set(outcomes) <= {"201", "refused"}, outcomes  # no 5xx, no connection cut
        assert after - before == {client_id for client_id, _ in created}  # every 201 one client, no orphan
    finally:
        service.stop()


@pytest.mark.parametrize("event_loop", [None, "uvloop", "asyncio"])
async def test_serve_runs_on_the_configured_event_loop_and_stops_on_sigterm(
    hydra_provider: HydraProvider, http: aiohttp.ClientSession, tmp_path: Path, event_loop: str | None
) -> None:
    """``DCR_EVENT_LOOP`` picks the loop (uvloop when unset); the line ``server.listening`` (once the listener is
    up) says which, a registration is answered 201 on it, and SIGTERM turns readiness to 503 and stops the process
    with status 0."""
    port = free_port()
    env = _env(hydra_provider, port)
    if event_loop is not None:
        env["DCR_EVENT_LOOP"] = event_loop
    log_path = tmp_path / "gateway.log"
    service = start_gateway("gateway-loop", env=env, log_path=log_path, ready_path="/readyz")
    try:
        await asyncio.to_thread(service.wait_ready, 60.0)
        base = f"http://{LOOPBACK}:{port}"
        body = {"redirect_uris": ["http://127.0.0.1/cb"], "token_endpoint_auth_method": "none"}
        async with http.post(f"{base}/register", json=body) as response:
            assert response.status == 201, await response.text()
            client_id = (await response.json())["client_id"]
        starting = [line for line in log_path.read_text().splitlines() if "server.listening" in line]
        assert len(starting) == 1, starting
        expected = event_loop or "uvloop"
        assert f'"event_loop": "{expected}"' in starting[0] or f"event_loop={expected}" in starting[0], starting
        loop_class = "uvloop.Loop" if expected == "uvloop" else "asyncio.unix_events._UnixSelectorEventLoop"
        assert loop_class in starting[0], starting
        connector = aiohttp.TCPConnector(force_close=True)
        async with aiohttp.ClientSession(connector=connector) as fresh:
            service.process.send_signal(signal.SIGTERM)
            statuses = []
            for _ in range(int(DRAIN / 0.05)):  # the signal reaches the loop asynchronously: 503 within the drain
                async with fresh.get(f"{base}/readyz") as response:
                    statuses.append(response.status)
                if statuses[-1] == 503:
                    break
                await asyncio.sleep(0.05)
            assert statuses[-1] == 503, statuses
        code = await asyncio.to_thread(service.process.wait, DRAIN + TIMEOUT + 10)
        assert code == 0
        assert client_id in await provider_client_ids(hydra_provider, http)
    finally:
        service.stop()
