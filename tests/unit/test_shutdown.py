"""Graceful shutdown (issue 11 item 8), through ``gateway.server.serve`` and a real SIGTERM to this process: the
real app with the memory adapter whose create is slow (a delay hook), raw sockets as clients.

- ``/readyz`` answers 503 at once, while the listener still accepts during the drain;
- an idle keep-alive connection is closed at once (a proxy must not reuse it after the process stopped);
- a registration in flight is answered 201 after SIGTERM, and the client exists;
- after the drain new connections are refused;
- ``serve`` returns (the process would exit 0) within the bound;
- a registration cut by the bound, or whose client went away before its answer, leaves no client behind.
"""

from __future__ import annotations

import asyncio
import inspect
import json
import os
import signal
import socket
import time
from collections.abc import AsyncIterator, Callable, Coroutine
from pathlib import Path
from typing import Any

import pytest
import uvloop
from aiohttp import web
from rfc8414_fakes import openid_configuration_server

from adapters.base import ManagedClient, NewClient
from adapters.memory.adapter import MemoryAdapter
from devstack.process import free_port
from gateway.app import METRICS, create_app
from gateway.lifecycle import HandedOverResponse, ShutdownSettings, shut_down
from gateway.registration.tokens import TOKEN_HASH_KEY, verify_registration_access_token
from gateway.server import serve
from gateway.settings import Settings

REGISTRATION = json.dumps(
    {"redirect_uris": ["http://127.0.0.1:3000/cb"], "token_endpoint_auth_method": "none"}
).encode()


class SlowMemoryAdapter(MemoryAdapter):
    """The memory adapter with a delay hook: ``create_delay`` seconds inside the provider's create, and an event
    set when a create has started."""

    create_delay = 0.0

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.create_started = asyncio.Event()
        self.deleted: list[str] = []

    async def create_client(self, issuer: str, client: NewClient) -> ManagedClient:
        self.create_started.set()
        await asyncio.sleep(self.create_delay)
        return await super().create_client(issuer, client)

    async def delete_client(self, issuer: str, client_id: str) -> None:
        self.deleted.append(client_id)
        await super().delete_client(issuer, client_id)


@pytest.fixture
async def upstream() -> AsyncIterator[str]:
    async with openid_configuration_server() as origin:
        yield origin


async def _request(port: int, head: str, body: bytes = b"") -> tuple[int, dict[str, str], bytes]:
    """One request on its own connection, read until the server closes it or the body is complete."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        writer.write(head.encode() + body)
        await writer.drain()
        return await _response(reader)
    finally:
        writer.close()


async def _response(reader: asyncio.StreamReader) -> tuple[int, dict[str, str], bytes]:
    async with asyncio.timeout(15):
        head = await reader.readuntil(b"\r\n\r\n")
        status_line, *lines = head.decode("latin-1").rstrip("\r\n").split("\r\n")
        headers = {k.strip().lower(): v.strip() for k, v in (line.split(":", 1) for line in lines)}
        body = await reader.readexactly(int(headers.get("content-length", "0")))
    return int(status_line.split()[1]), headers, body


def _post(length: int) -> str:
    return (
        "POST /register HTTP/1.1\r\nHost: gateway.test\r\nContent-Type: application/json\r\n"
        f"Content-Length: {length}\r\n\r\n"
    )


READYZ = "GET /readyz HTTP/1.1\r\nHost: gateway.test\r\n\r\n"


async def _start(upstream: str, adapter: MemoryAdapter, shutdown: ShutdownSettings) -> tuple[int, asyncio.Task[None]]:
    port, task, _ = await _start_app(upstream, adapter, shutdown)
    return port, task


async def _start_app(
    upstream: str, adapter: MemoryAdapter, shutdown: ShutdownSettings, **settings: Any
) -> tuple[int, asyncio.Task[None], web.Application]:
    """:func:`_start` with more ``settings``, giving the app as well (its metrics, its audit log)."""
    app = create_app(
        Settings(public_url="http://gateway.test", provider="memory", provider_url=upstream, **settings),
        adapter=adapter,
    )
    port = free_port()
    task = asyncio.create_task(serve(app, host="127.0.0.1", port=port, shutdown=shutdown))
    for _ in range(200):
        try:
            status, _, _ = await _request(port, READYZ)
            if status == 200:
                return port, task, app
        except OSError:
            pass
        await asyncio.sleep(0.05)
    raise AssertionError("the gateway did not become ready")


async def test_sigterm_drains_answers_the_registration_in_flight_then_refuses_and_stops(upstream: str) -> None:
    adapter = SlowMemoryAdapter(public_url=upstream)
    adapter.create_delay = 1.5
    drain = 1.0
    port, server = await _start(upstream, adapter, ShutdownSettings(drain_seconds=drain, timeout_seconds=10))
    # an idle keep-alive connection, as a proxy's upstream pool holds them
    idle_reader, idle_writer = await asyncio.open_connection("127.0.0.1", port)
    idle_writer.write(READYZ.encode())
    status, headers, _ = await _response(idle_reader)
    assert status == 200
    assert headers.get("connection", "").lower() != "close"

    registration = asyncio.create_task(_request(port, _post(len(REGISTRATION)), REGISTRATION))
    await asyncio.wait_for(adapter.create_started.wait(), 5)
    signalled = time.monotonic()
    os.kill(os.getpid(), signal.SIGTERM)
    await asyncio.sleep(0.1)

    # readiness 503 at once, on a new connection the draining listener still accepts; it closes after the answer
    status, headers, body = await _request(port, READYZ)
    assert (status, json.loads(body)["status"]) == (503, "shutting_down")
    assert headers["connection"].lower() == "close"
    # the idle keep-alive connection was closed by the server
    async with asyncio.timeout(2):
        assert await idle_reader.read() == b""
    idle_writer.close()

    status, _, body = await registration  # answered after SIGTERM, created and kept
    client_id = json.loads(body)["client_id"]
    assert status == 201
    assert client_id in adapter.clients["default"]
    assert not adapter.deleted

    await asyncio.sleep(max(0.0, signalled + drain + 0.3 - time.monotonic()))
    with pytest.raises(ConnectionRefusedError):  # after the drain: the listening socket is closed
        await asyncio.open_connection("127.0.0.1", port)
    async with asyncio.timeout(3):
        await server  # serve returned: the process exits 0
    assert time.monotonic() - signalled < drain + adapter.create_delay + 1.5


async def test_a_registration_cut_by_the_bound_is_rolled_back(upstream: str) -> None:
    adapter = SlowMemoryAdapter(public_url=upstream)
    adapter.create_delay = 2.0
    port, server = await _start(upstream, adapter, ShutdownSettings(drain_seconds=0, timeout_seconds=0.5))
    registration = asyncio.create_task(_request(port, _post(len(REGISTRATION)), REGISTRATION))
    await asyncio.wait_for(adapter.create_started.wait(), 5)
    signalled = time.monotonic()
    os.kill(os.getpid(), signal.SIGTERM)
    with pytest.raises((asyncio.IncompleteReadError, ConnectionError)):  # cut at the bound: no answer
        await registration
    async with asyncio.timeout(5):
        await server  # returns once the created client was removed again
    assert time.monotonic() - signalled < adapter.create_delay + 1.5
    assert len(adapter.deleted) == 1
    assert adapter.clients["default"] == {}  # created, not handed over: rolled back


async def test_a_registration_whose_client_left_before_its_answer_is_rolled_back(upstream: str) -> None:
    adapter = SlowMemoryAdapter(public_url=upstream)
    adapter.create_delay = 0.5
    port, server = await _start(upstream, adapter, ShutdownSettings(timeout_seconds=5))
    _, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(_post(len(REGISTRATION)).encode() + REGISTRATION)
    await writer.drain()
    await asyncio.wait_for(adapter.create_started.wait(), 5)
    writer.close()  # the client goes away while the provider creates
    for _ in range(100):
        if adapter.deleted:
            break
        await asyncio.sleep(0.05)
    assert len(adapter.deleted) == 1
    assert adapter.clients["default"] == {}
    os.kill(os.getpid(), signal.SIGTERM)
    async with asyncio.timeout(5):
        await server


async def test_a_request_whose_body_is_still_arriving_at_sigterm_is_answered(upstream: str) -> None:
    adapter = SlowMemoryAdapter(public_url=upstream)
    port, server = await _start(upstream, adapter, ShutdownSettings(drain_seconds=0, timeout_seconds=5))
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    half = len(REGISTRATION) // 2
    writer.write(_post(len(REGISTRATION)).encode() + REGISTRATION[:half])
    await writer.drain()
    await asyncio.sleep(0.2)  # the handler is reading the body
    os.kill(os.getpid(), signal.SIGTERM)
    await asyncio.sleep(0.2)
    writer.write(REGISTRATION[half:])
    await writer.drain()
    status, headers, body = await _response(reader)
    writer.close()
    assert status == 201, body
    assert headers["connection"].lower() == "close"
    assert json.loads(body)["client_id"] in adapter.clients["default"]
    async with asyncio.timeout(5):
        await server


# ------------------------------------------------------------------- a rolled-back registration is recorded as one


def _rolled_back(app: web.Application, reason: str) -> float:
    value = app[METRICS].registry.get_sample_value(
        "dcr_gateway_registrations_rolled_back_total", {"issuer": "http://gateway.test", "reason": reason}
    )
    return value or 0.0


def _audit_events(path: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


async def test_a_client_that_left_is_audited_counted_and_frees_its_quota_slot(upstream: str, tmp_path: Path) -> None:
    adapter = SlowMemoryAdapter(public_url=upstream)
    adapter.create_delay = 0.5
    audit_path = tmp_path / "audit.log"
    port, server, app = await _start_app(
        upstream,
        adapter,
        ShutdownSettings(timeout_seconds=5),
        audit={"path": str(audit_path)},
        limits={"max_clients_per_issuer": 1},
    )
    _, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(_post(len(REGISTRATION)).encode() + REGISTRATION)
    await writer.drain()
    await asyncio.wait_for(adapter.create_started.wait(), 5)
    writer.close()  # the client goes away while the provider creates: its 201 cannot be written
    for _ in range(100):
        if adapter.deleted and _rolled_back(app, "answer_not_written"):
            break
        await asyncio.sleep(0.05)
    assert len(adapter.deleted) == 1
    assert _rolled_back(app, "answer_not_written") == 1
    deleted = [event for event in _audit_events(audit_path) if event["event"] == "CLIENT_DELETE"]
    assert len(deleted) == 1
    assert deleted[0]["client_id"] == adapter.deleted[0]
    assert deleted[0]["reason"] == "not_handed_over"
    assert deleted[0]["outcome"] == "success"
    # the quota's slot was freed: the issuer holds no client, so the one allowed registration succeeds
    adapter.create_delay = 0.0
    status, _, body = await _request(port, _post(len(REGISTRATION)), REGISTRATION)
    assert status == 201, body
    os.kill(os.getpid(), signal.SIGTERM)
    async with asyncio.timeout(5):
        await server


async def test_a_registration_cut_by_the_bound_is_audited_and_counted(upstream: str, tmp_path: Path) -> None:
    adapter = SlowMemoryAdapter(public_url=upstream)
    adapter.create_delay = 1.0
    audit_path = tmp_path / "audit.log"
    port, server, app = await _start_app(
        upstream, adapter, ShutdownSettings(drain_seconds=0, timeout_seconds=0.3), audit={"path": str(audit_path)}
    )
    registration = asyncio.create_task(_request(port, _post(len(REGISTRATION)), REGISTRATION))
    await asyncio.wait_for(adapter.create_started.wait(), 5)
    os.kill(os.getpid(), signal.SIGTERM)
    with pytest.raises((asyncio.IncompleteReadError, ConnectionError)):
        await registration
    async with asyncio.timeout(5):
        await server
    assert adapter.clients["default"] == {}
    assert _rolled_back(app, "request_cancelled") == 1
    events = _audit_events(audit_path)
    deleted = [event for event in events if event["event"] == "CLIENT_DELETE"]
    assert [event["client_id"] for event in deleted] == adapter.deleted
    assert deleted[0]["reason"] == "not_handed_over"
    assert not [event for event in events if event["event"] == "CLIENT_REGISTER"]  # never recorded as a success


# ------------------------------------------------------------ an answer given to the transport is handed over


async def test_an_answer_whose_bytes_reached_the_transport_is_not_rolled_back_when_cut_in_drain() -> None:
    """A client that does not read: the 201's bytes are all given to the transport (asyncio flushes them on its
    own), then ``write_eof`` waits in ``drain`` for the paused protocol; the shutdown's bound cancels it there.
    Those bytes are the client's: the answer was handed over, so nothing is rolled back."""
    body = b"x" * (32 * 1024 * 1024)  # far more than the socket buffers: the protocol pauses, drain waits
    lost: list[str] = []
    written = asyncio.Event()

    class Watched(HandedOverResponse):
        async def write_eof(self, data: bytes = b"") -> None:
            written.set()
            await super().write_eof(data)

    async def handler(_: web.Request) -> web.StreamResponse:
        return Watched(on_undelivered=lambda: lost.append("rolled back"), body=body, status=201)

    app = web.Application()
    app.router.add_get("/", handler)
    runner = web.AppRunner(app)
    await runner.setup()
    port = free_port()
    site = web.TCPSite(runner, "127.0.0.1", port)
    await site.start()
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        writer.write(b"GET / HTTP/1.1\r\nHost: gateway.test\r\n\r\n")
        await writer.drain()
        await asyncio.wait_for(written.wait(), 5)
        await asyncio.sleep(0.3)  # in drain: the client reads nothing
        await site.stop()
        assert runner.server is not None
        await runner.server.shutdown(0.1)  # the bound: the request's task is cancelled
        await asyncio.sleep(0.1)
        assert lost == []
        async with asyncio.timeout(30):  # and the bytes do reach the client
            received = await reader.read()
        assert received.startswith(b"HTTP/1.1 201")
        assert received.endswith(body[-1024:])
        assert len(received) > len(body)
    finally:
        writer.close()
        await runner.cleanup()


# ---------------------------------------------- an RFC 7592 update that cannot be answered leaves the client as it was


class SlowUpdateAdapter(SlowMemoryAdapter):
    """:class:`SlowMemoryAdapter` whose update is stored at once and answered ``update_delay`` seconds later (a
    provider that committed the change while its answer is still on its way)."""

    update_delay = 0.0

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.update_started = asyncio.Event()
        self.updates = 0

    async def update_client(self, issuer: str, client: NewClient) -> ManagedClient:
        self.updates += 1
        self.update_started.set()
        updated = await super().update_client(issuer, client)
        await asyncio.sleep(self.update_delay)
        return updated


def _put(path: str, token: str, length: int) -> str:
    return (
        f"PUT {path} HTTP/1.1\r\nHost: gateway.test\r\nContent-Type: application/json\r\n"
        f"Authorization: Bearer {token}\r\nContent-Length: {length}\r\n\r\n"
    )


async def _registered(port: int) -> dict[str, Any]:
    status, _, body = await _request(port, _post(len(REGISTRATION)), REGISTRATION)
    assert status == 201, body
    registered: dict[str, Any] = json.loads(body)
    return registered


def _update(registered: dict[str, Any]) -> bytes:
    """A name and a confidential auth method: the update issues a client secret and (rotation on) a new token."""
    return json.dumps(
        {
            "client_id": registered["client_id"],
            "redirect_uris": ["http://127.0.0.1:3000/cb"],
            "token_endpoint_auth_method": "client_secret_basic",
            "client_name": "Renamed",
        }
    ).encode()


async def _still_held(port: int, registered: dict[str, Any]) -> dict[str, Any]:
    """What the client still holds works: its registration access token reads its unchanged registration."""
    path = registered["registration_client_uri"][len("http://gateway.test") :]
    status, _, body = await _request(
        port,
        f"GET {path} HTTP/1.1\r\nHost: gateway.test\r\nAuthorization: Bearer {registered['registration_access_token']}"
        "\r\n\r\n",
    )
    assert status == 200, body
    information: dict[str, Any] = json.loads(body)
    return information


async def test_an_update_whose_client_left_is_undone(upstream: str, tmp_path: Path) -> None:
    adapter = SlowUpdateAdapter(public_url=upstream)
    audit_path = tmp_path / "audit.log"
    port, server, app = await _start_app(
        upstream,
        adapter,
        ShutdownSettings(timeout_seconds=5),
        rotate_registration_access_token=True,
        audit={"path": str(audit_path)},
    )
    registered = await _registered(port)
    adapter.update_delay = 0.5
    update = _update(registered)
    path = registered["registration_client_uri"][len("http://gateway.test") :]
    _, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(_put(path, registered["registration_access_token"], len(update)).encode() + update)
    await writer.drain()
    await asyncio.wait_for(adapter.update_started.wait(), 5)
    writer.close()  # the client goes away: the new token and secret of the 200 never reach it
    for _ in range(100):
        if adapter.updates >= 2:
            break
        await asyncio.sleep(0.05)
    await asyncio.sleep(0.7)  # the restoring update is slow as well
    adapter.update_delay = 0.0
    information = await _still_held(port, registered)
    assert information["token_endpoint_auth_method"] == "none"
    assert "client_name" not in information
    stored = adapter.clients["default"][registered["client_id"]]
    assert stored.metadata.token_endpoint_auth_method == "none"
    value = app[METRICS].registry.get_sample_value(
        "dcr_gateway_client_updates_restored_total", {"issuer": "http://gateway.test", "reason": "answer_not_written"}
    )
    assert value == 1
    restored = [e for e in _audit_events(audit_path) if e["event"] == "CLIENT_UPDATE" and e.get("reason")]
    assert [(e["client_id"], e["reason"], e["caller"]) for e in restored] == [
        (registered["client_id"], "not_handed_over", "gateway")
    ]
    os.kill(os.getpid(), signal.SIGTERM)
    async with asyncio.timeout(5):
        await server


async def test_an_update_cut_by_the_bound_is_undone_before_the_process_stops(upstream: str) -> None:
    adapter = SlowUpdateAdapter(public_url=upstream)
    port, server, _ = await _start_app(
        upstream, adapter, ShutdownSettings(drain_seconds=0, timeout_seconds=0.3), rotate_registration_access_token=True
    )
    registered = await _registered(port)
    adapter.update_delay = 1.0
    update = _update(registered)
    path = registered["registration_client_uri"][len("http://gateway.test") :]
    request = asyncio.create_task(
        _request(port, _put(path, registered["registration_access_token"], len(update)), update)
    )
    await asyncio.wait_for(adapter.update_started.wait(), 5)
    os.kill(os.getpid(), signal.SIGTERM)
    with pytest.raises((asyncio.IncompleteReadError, ConnectionError)):  # cut at the bound: no answer
        await request
    async with asyncio.timeout(8):
        await server  # returns once the registration was restored
    stored = adapter.clients["default"][registered["client_id"]]
    assert verify_registration_access_token(
        registered["registration_access_token"], stored.gateway_data[TOKEN_HASH_KEY]
    )
    assert stored.metadata.token_endpoint_auth_method == "none"
    assert stored.metadata.client_name is None


# ----------------------------------------------- connections accepted just before the listener closes are answered


async def test_a_connection_whose_first_request_is_on_its_way_at_sigterm_is_answered(upstream: str) -> None:
    """A connection accepted without its request yet is not an idle keep-alive one: closing it at SIGTERM would
    reset a request that reached the gateway."""
    adapter = SlowMemoryAdapter(public_url=upstream)
    port, server = await _start(upstream, adapter, ShutdownSettings(drain_seconds=0, timeout_seconds=5))
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    await asyncio.sleep(0.1)  # accepted, its request not sent yet
    os.kill(os.getpid(), signal.SIGTERM)
    await asyncio.sleep(0.2)
    writer.write(READYZ.encode())
    await writer.drain()
    status, headers, _ = await _response(reader)
    writer.close()
    assert (status, headers["connection"].lower()) == (503, "close")
    async with asyncio.timeout(5):
        await server


async def test_a_connection_in_the_listen_backlog_when_the_listener_closes_is_answered() -> None:
    """A connection the kernel completed but the event loop had not accepted yet when the listening socket closes
    would be reset by the kernel: it is accepted and answered instead."""

    async def hello(_: web.Request) -> web.Response:
        return web.Response(text="answered")

    app = web.Application()
    app.router.add_get("/", hello)
    runner = web.AppRunner(app)
    await runner.setup()
    port = free_port()
    site = web.TCPSite(runner, "127.0.0.1", port)
    await site.start()
    try:
        # a blocking connect from the loop's own thread: the loop does not turn, so the connection stays in the
        # backlog until shut_down closes the listener (it does not yield before that with no drain)
        client = socket.create_connection(("127.0.0.1", port), timeout=5)
        client.sendall(b"GET / HTTP/1.1\r\nHost: gateway.test\r\n\r\n")
        await shut_down(runner, [site], [], ShutdownSettings(drain_seconds=0, timeout_seconds=2))
        received = b""
        with client:
            while chunk := await asyncio.to_thread(client.recv, 65536):
                received += chunk
        assert received.startswith(b"HTTP/1.1 200"), received
        assert received.endswith(b"answered")
    finally:
        await runner.cleanup()


# ------------------------------------------------------------------------------------------------ on uvloop

ON_UVLOOP = [
    test_sigterm_drains_answers_the_registration_in_flight_then_refuses_and_stops,
    test_a_registration_cut_by_the_bound_is_rolled_back,
    test_a_registration_whose_client_left_before_its_answer_is_rolled_back,
    test_a_request_whose_body_is_still_arriving_at_sigterm_is_answered,
    test_a_client_that_left_is_audited_counted_and_frees_its_quota_slot,
    test_a_registration_cut_by_the_bound_is_audited_and_counted,
    test_an_answer_whose_bytes_reached_the_transport_is_not_rolled_back_when_cut_in_drain,
    test_an_update_whose_client_left_is_undone,
    test_an_update_cut_by_the_bound_is_undone_before_the_process_stops,
    test_a_connection_whose_first_request_is_on_its_way_at_sigterm_is_answered,
    test_a_connection_in_the_listen_backlog_when_the_listener_closes_is_answered,
]


@pytest.mark.parametrize("scenario", ON_UVLOOP, ids=[test.__name__.removeprefix("test_") for test in ON_UVLOOP])
def test_on_uvloop(scenario: Callable[..., Coroutine[Any, Any, None]], tmp_path: Path) -> None:
    """Every scenario above again on uvloop, ``dcr-gateway serve``'s default loop (``DCR_EVENT_LOOP``): the
    SIGTERM handler, the drain, the listener closing and the roll-backs behave the same."""

    async def run() -> None:
        assert type(asyncio.get_running_loop()).__module__.startswith("uvloop")
        parameters = inspect.signature(scenario).parameters
        async with openid_configuration_server() as origin:
            arguments = {"upstream": origin, "tmp_path": tmp_path}
            await scenario(**{name: arguments[name] for name in parameters})

    with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
        runner.run(run())
