"""Graceful shutdown: the "draining" state, the settings that bound it, and the sequence ``serve`` runs on SIGTERM.

On SIGTERM or SIGINT (:func:`shut_down`):

1. :meth:`Lifecycle.begin_draining`: ``/readyz`` answers 503 at once (every listener's readiness handler consults
   the one :class:`Lifecycle` stored on the app under :data:`LIFECYCLE`), idle keep-alive connections are closed
   and every response from now on carries ``Connection: close`` (RFC 9112 section 9.6), so neither a client nor a
   proxy reuses a connection to a process that is about to stop;
2. the listeners keep accepting for ``shutdown.drain_seconds`` (load balancers notice the 503 and stop sending);
3. the listening sockets close (new connections are refused, so a proxy's connect fails and it tries another
   instance);
4. requests in flight finish, for at most ``shutdown.timeout_seconds``; past that bound they are cancelled;
5. the registrations whose answer could not be handed over are rolled back (:meth:`Lifecycle.settle`), and only
   then are the provider sessions closed and the process exits 0.

A registration is never cut between the provider's create and the client's answer
(:meth:`Lifecycle.create_and_answer`): the create and the building of the 201 run in their own task, which a
cancellation of the request (the shutdown's bound, a client that went away) does not interrupt; when that task
completed but its answer can no longer reach the client (the request was cancelled, or writing the response
failed), the created client is deleted again (rolled back), and the shutdown waits for that before it closes the
adapter. Rolling back rather than answering late: once the request is cancelled its connection is closed, so a
late 201 could not be delivered, and a client nobody holds credentials for must not be left in the provider
(RFC 7591 section 3.2.1 hands the credentials over once, in that answer).

An RFC 7592 section 2.2 update goes through the same section (it may rotate the registration access token or
issue a client secret that only its 200 carries): one not handed over is undone by writing back the registration
as it was before (:meth:`gateway.rfc7592.handler.ClientConfigurationEndpoint.update`).
"""

from __future__ import annotations

import asyncio
import os
import socket
from collections.abc import Awaitable, Callable, Coroutine, Iterable
from typing import Any, TypeVar

import structlog
from aiohttp import hdrs, web
from pydantic import BaseModel, Field

log = structlog.get_logger(__name__)

_T = TypeVar("_T")


class ShutdownSettings(BaseModel):
    """What SIGTERM does (``[shutdown]`` / ``DCR_SHUTDOWN__*``)."""

    drain_seconds: float = Field(default=0.0, ge=0)
    """How long the listeners keep accepting after ``/readyz`` turned 503, for load balancers that need to
    notice (Kubernetes: a few seconds more than the readiness probe's period times its failure threshold)."""
    timeout_seconds: float = Field(default=20.0, gt=0)
    """Bound on the requests in flight once the listeners closed; past it they are cancelled (a registration in
    its create is then rolled back). Keep it below the orchestrator's grace period (Kubernetes'
    ``terminationGracePeriodSeconds``, 30 by default) minus ``drain_seconds``."""


class Lifecycle:
    """Whether this process is draining, and the registrations whose outcome it must still settle."""

    def __init__(self) -> None:
        self.draining = False
        self._announced = False
        self._pending: set[asyncio.Task[Any]] = set()

    @classmethod
    def of(cls, app: web.Application) -> Lifecycle:
        """A new lifecycle for ``app``: its responses close their connection while draining."""
        lifecycle = cls()
        app.on_response_prepare.append(lifecycle.on_response_prepare)
        return lifecycle

    def begin_draining(self) -> None:
        """``/readyz`` answers 503 from now on, and responses close their connection. (A signal handler may have
        set :attr:`draining` already: announced once either way.)"""
        if not self._announced:
            self._announced = True
            log.info("gateway.draining")
        self.draining = True

    async def on_response_prepare(self, request: web.Request, response: web.StreamResponse) -> None:
        """While draining, every response closes its connection (``Connection: close``): a keep-alive connection
        left open would be reused by a proxy after this process stopped listening."""
        if self.draining:
            response.force_close()  # the connection closes after this response
            response.headers[hdrs.CONNECTION] = "close"  # (aiohttp wrote its headers before this hook)

    def track(self, task: asyncio.Task[Any]) -> None:
        """Keep ``task`` until it is done; :meth:`settle` waits for it."""
        self._pending.add(task)
        task.add_done_callback(self._pending.discard)

    @property
    def pending(self) -> int:
        return len(self._pending)

    async def settle(self, bound: float) -> None:
        """Wait (at most ``bound`` seconds) for the tracked tasks: roll-backs of registrations not handed over."""
        if not self._pending:
            return
        _, pending = await asyncio.wait(set(self._pending), timeout=bound)
        for task in pending:
            log.error("gateway.shutdown_unsettled", task=task.get_name())
            task.cancel()

    async def create_and_answer(
        self,
        section: Coroutine[Any, Any, _T],
        *,
        answered: Callable[[_T], bool],
        roll_back: Callable[[_T], Awaitable[None]],
    ) -> _T:
        """Run ``section`` (the provider's create and the building of the answer) to completion even if the
        request is cancelled meanwhile; if it was, and ``answered(result)`` says a client was created for that
        answer, ``roll_back(result)`` deletes it (tracked, so the shutdown waits for it)."""
        task = asyncio.ensure_future(section)
        self.track(task)
        try:
            return await asyncio.shield(task)
        except asyncio.CancelledError:
            self.track(asyncio.ensure_future(self._roll_back_when_done(task, answered, roll_back)))
            raise

    async def _roll_back_when_done(
        self,
        task: asyncio.Future[_T],
        answered: Callable[[_T], bool],
        roll_back: Callable[[_T], Awaitable[None]],
    ) -> None:
        try:
            result = await task
        except BaseException:  # the section failed by itself: it answered (or rolled back) its own error
            return
        if answered(result):
            await roll_back(result)

    def undelivered(self, roll_back: Callable[[], Awaitable[None]]) -> None:
        """An answer could not be written: run ``roll_back`` (tracked)."""
        self.track(asyncio.ensure_future(roll_back()))


LIFECYCLE = web.AppKey("lifecycle", Lifecycle)


class HandedOverResponse(web.Response):
    """A response whose content exists once (a 201 with new credentials): if it cannot be written to the client
    (the connection is gone, or the request is cancelled while it is written), ``on_undelivered`` rolls back what
    it hands over.

    Written means given to the transport: aiohttp's ``write_eof`` hands the head and body to the transport in one
    synchronous call, then awaits ``drain`` while the transport's buffer is above its high-water mark (a client
    that reads slowly or not at all). The answer counts as handed over as soon as those bytes are with the
    transport, before that ``drain``: asyncio flushes them on its own, also after a cancellation (the shutdown's
    bound) lands in the ``drain`` and the connection is closed (``close``, not ``abort``, keeps the buffer), so
    rolling back there would delete a client whose credentials are on their way. A write that fails before
    (the transport is closing) still rolls back; a client that vanishes after it is beyond reach."""

    def __init__(self, *, on_undelivered: Callable[[], None], **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self._on_undelivered: Callable[[], None] | None = on_undelivered

    def _lost(self) -> None:
        callback, self._on_undelivered = self._on_undelivered, None
        if callback is not None:
            callback()

    async def prepare(self, request: web.BaseRequest) -> Any:
        transport = request.transport
        if transport is None or transport.is_closing():
            self._lost()
        try:
            return await super().prepare(request)
        except BaseException:
            self._lost()
            raise

    async def write_eof(self, data: bytes = b"") -> None:
        writer = self._payload_writer
        # bytes only: a streamed payload drains between its chunks, before all of it is with the transport
        if writer is not None and not self._eof_sent and isinstance(self._body, bytes | bytearray):
            drain = writer.drain

            async def handed_over_then_drain() -> None:
                self._on_undelivered = None  # the whole answer is with the transport: handed over
                await drain()

            writer.drain = handed_over_then_drain  # type: ignore[method-assign]
        try:
            await super().write_eof(data)
        except BaseException:
            self._lost()
            raise
        self._on_undelivered = None


FRESH_GRACE_SECONDS = 1.0
"""How long a connection that has not sent its first request yet is left open while draining (its request is
usually on its way: closing it would reset a request that reached the gateway)."""


def close_idle_connections(server: web.Server, fresh: dict[int, float] | None = None) -> None:
    """Close the keep-alive connections that wait for their next request, now: a proxy would reuse them after
    this process stopped. Busy connections are left alone: their response carries ``Connection: close`` (see
    :meth:`Lifecycle.on_response_prepare`) and the connection closes after it. (aiohttp's ``pre_shutdown`` would
    mark every connection closing, which makes aiohttp drop the rest of a request body still arriving, and leaves
    an idle connection's transport open, dropping what a proxy sends on it unanswered.) Idle is what aiohttp's
    own keep-alive timer checks: the connection waits for a message and none is queued.

    A connection that has not had a request yet (just accepted; its client's request is in flight) is not a
    keep-alive one: it is left alone for :data:`FRESH_GRACE_SECONDS` from when ``fresh`` (kept by the caller
    across calls: connection id -> first seen) first saw it, then closed like an idle one."""
    now = asyncio.get_running_loop().time()
    fresh = {} if fresh is None else fresh
    for connection in server.connections:
        waiter = getattr(connection, "_waiter", None)
        if waiter is None or waiter.done() or getattr(connection, "_messages", None):
            continue
        if getattr(connection, "_request_count", 1) == 0 and now - fresh.setdefault(id(connection), now) < (
            FRESH_GRACE_SECONDS
        ):
            continue
        connection.force_close()
    for known in set(fresh) - {id(connection) for connection in server.connections}:
        del fresh[known]  # gone: its id may be reused


def accept_pending(site: web.BaseSite, server: web.Server) -> list[asyncio.Task[Any]]:
    """Accept, now, every connection the kernel completed on ``site``'s listening sockets that the event loop has
    not accepted yet, and hand each to ``server``; the caller closes the sockets right after, in the same step.

    A connection still in the listen backlog when its socket closes is reset by the kernel: its client saw the
    connect succeed, sent its request, and gets a connection reset instead of a refused connect (which a proxy
    retries elsewhere) or an answer. Under load the event loop accepts only once per turn, so a few are always
    waiting; accepting them here leaves a window of microseconds instead of a loop turn."""
    listening = getattr(site, "_server", None)  # the asyncio.Server of a TCPSite / UnixSite
    if listening is None:
        return []
    loop = asyncio.get_running_loop()
    tasks: list[asyncio.Task[Any]] = []
    for transport_socket in listening.sockets or ():
        descriptor = transport_socket.fileno()
        if descriptor < 0:
            continue
        loop.remove_reader(descriptor)  # the loop accepts no more on it
        with socket.socket(fileno=os.dup(descriptor)) as listener:
            listener.setblocking(False)
            while True:
                try:
                    connection, _ = listener.accept()
                except OSError:  # nothing pending (EAGAIN), or the socket is no longer listening
                    break
                connection.setblocking(False)
                tasks.append(asyncio.ensure_future(loop.connect_accepted_socket(server, sock=connection)))
    return tasks


async def shut_down(
    runner: web.BaseRunner,
    sites: Iterable[web.BaseSite],
    lifecycles: Iterable[Lifecycle],
    settings: ShutdownSettings,
    *,
    settle_seconds: float = 30.0,
) -> None:
    """The shutdown sequence (see the module's docstring); ``runner.cleanup()`` then closes the apps.

    ``settle_seconds`` bounds the wait for registrations cut at the bound: their create still runs (bounded by
    the provider's timeout) and is then rolled back (one more admin call)."""
    lifecycles = list(lifecycles)
    server = runner.server
    for lifecycle in lifecycles:
        lifecycle.begin_draining()
    fresh: dict[int, float] = {}
    if server is not None:
        close_idle_connections(server, fresh)
    if settings.drain_seconds:
        await asyncio.sleep(settings.drain_seconds)
    accepted: list[asyncio.Task[Any]] = []
    for site in list(sites):
        if server is not None:
            accepted += accept_pending(site, server)
        await site.stop()  # the listening sockets close (in the same step): new connections are refused
    if accepted:
        await asyncio.gather(*accepted, return_exceptions=True)
    if server is None:
        return
    await asyncio.sleep(0)  # connections accepted just before are handled (as runner.cleanup does)
    loop = asyncio.get_running_loop()
    deadline = loop.time() + settings.timeout_seconds
    while server.connections and loop.time() < deadline:  # aiohttp offers no event for it
        close_idle_connections(server, fresh)  # those accepted during the drain, once answered
        await asyncio.sleep(0.05)
    if server.connections:
        log.warning("gateway.shutdown_timeout", connections=len(server.connections))
    # What is left is cancelled (aiohttp waits the grace once more per connection before cancelling).
    await server.shutdown(0.1)
    for lifecycle in lifecycles:
        await lifecycle.settle(settle_seconds)
    log.info("gateway.stopped")
