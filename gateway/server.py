"""Running the app: aiohttp's runner, with JSON error answers for requests that never reach the app.

A request that aiohttp's parser cannot read (a bad request line, a header without a colon, an invalid method, an
oversized header, a body framing it refuses) is answered by the connection handler itself, before any middleware
runs. aiohttp's own answer is plain text that quotes the parser's message, and so the request's own bytes: a
request line or header carrying a token would be reflected back (and any intermediary's error page with it).
:class:`GatewayRequestHandler` answers these as the rest of the gateway answers errors: an RFC 6749 section 5.2
shaped JSON body that names what was wrong in general terms and repeats nothing of the request, with
``Cache-Control: no-store`` and the connection closed (RFC 9112 section 9.6: after an unreadable message the
connection's framing cannot be trusted).

:func:`run` replaces ``web.run_app`` for ``dcr-gateway serve``: the same runner, site and graceful shutdown on
SIGINT/SIGTERM, with that connection handler; and, when given, the management listener's app (``/metrics``,
``/healthz``, ``/readyz``) on its own runner and port.
"""

from __future__ import annotations

import asyncio
import json
import signal
from collections.abc import Callable
from dataclasses import dataclass
from http import HTTPStatus

import structlog
from aiohttp import hdrs, web
from aiohttp.web_protocol import RequestHandler
from aiohttp.web_request import BaseRequest

from gateway.app import SETTINGS
from gateway.lifecycle import LIFECYCLE, ShutdownSettings, shut_down
from gateway.settings import EventLoop

_DESCRIPTIONS = {
    400: "the request could not be parsed as HTTP/1.1",
    413: "the request is too large",
    431: "the request's header fields are too large",
    500: "an internal error occurred",
}


def error_body(status: int) -> bytes:
    """The JSON body for a request the connection handler refuses: generic words only, never request text."""
    error = "server_error" if status >= 500 else "invalid_request"
    description = _DESCRIPTIONS.get(status) or (
        HTTPStatus(status).phrase.lower() if status in HTTPStatus._value2member_map_ else "the request was refused"
    )
    return json.dumps({"error": error, "error_description": description}).encode()


class GatewayRequestHandler(RequestHandler):
    """aiohttp's connection handler, answering what its parser refuses with a JSON body that quotes nothing.

    Logging stays aiohttp's (``aiohttp.server``), whose request text :mod:`gateway.logging` strips."""

    def handle_error(
        self,
        request: BaseRequest,
        status: int = 500,
        exc: BaseException | None = None,
        message: str | None = None,
    ) -> web.StreamResponse:
        # The base class logs the event and refuses to answer twice once a response has started; its body is
        # replaced (``message`` quotes the request).
        super().handle_error(request, status, exc, None)
        response = web.Response(
            status=status,
            body=error_body(status),
            content_type="application/json",
            headers={hdrs.CACHE_CONTROL: "no-store"},
        )
        response.force_close()
        return response


class _GatewayServer(web.Server):
    def __call__(self) -> RequestHandler:
        return GatewayRequestHandler(self, loop=self._loop, **self._kwargs)


class GatewayRunner(web.AppRunner):
    """An ``AppRunner`` whose connections use :class:`GatewayRequestHandler`."""

    async def _make_server(self) -> web.Server:
        server = await super()._make_server()
        return _GatewayServer(
            server.request_handler,
            request_factory=server.request_factory,
            handler_cancellation=server.handler_cancellation,
            loop=server._loop,
            **server._kwargs,
        )


@dataclass(frozen=True)
class Listener:
    """A second app on its own address: the management listener (:mod:`gateway.observability.management`)."""

    app: web.Application
    host: str
    port: int


async def serve(
    app: web.Application,
    *,
    host: str,
    port: int,
    stop: asyncio.Event | None = None,
    shutdown: ShutdownSettings | None = None,
    management: Listener | None = None,
) -> None:
    """Start ``app`` on ``host:port`` (and ``management`` on its own address, after ``app`` started) and serve
    until SIGINT/SIGTERM (or ``stop`` is set), then shut down gracefully (:func:`gateway.lifecycle.shut_down`:
    readiness 503 on both listeners, drain, the public listener closed, requests in flight finished within the
    bound, cleanup contexts closed; the management listener closes last, so probes see the 503 throughout).
    ``shutdown`` defaults to the app's settings (``DCR_SHUTDOWN__*``). Start-up errors (a cleanup context
    raising, the address in use) propagate before anything is served."""
    settings = app.get(SETTINGS)
    if shutdown is None:
        shutdown = settings.shutdown if settings is not None else ShutdownSettings()
    # a registration cut at the bound finishes its create and is rolled back: two admin calls at most
    settle = 3 * settings.provider_timeout if settings is not None else 30.0
    runner = GatewayRunner(app, access_log=None, handle_signals=False)
    await runner.setup()
    management_runner: web.AppRunner | None = None
    try:
        sites: list[web.BaseSite] = [web.TCPSite(runner, host, port)]
        for site in sites:
            await site.start()
        loop = asyncio.get_running_loop()
        structlog.get_logger(__name__).info(  # after the provider checks: a refused start prints only its reason
            "server.listening",
            url=f"http://{f'[{host}]' if ':' in host else host}:{port}",
            event_loop=settings.event_loop.value if settings is not None else None,
            loop_class=f"{type(loop).__module__}.{type(loop).__name__}",
        )
        if management is not None:
            management_runner = web.AppRunner(management.app, access_log=None, handle_signals=False)
            await management_runner.setup()
            await web.TCPSite(management_runner, management.host, management.port).start()
            shown = f"[{management.host}]" if ":" in management.host else management.host
            structlog.get_logger(__name__).info(
                "management.listening",
                url=f"http://{shown}:{management.port}",
                paths=["/metrics", "/healthz", "/readyz"],
            )
        stopping = stop or asyncio.Event()
        lifecycles = [app[LIFECYCLE]] if LIFECYCLE in app else []

        def on_signal(signum: int, frame: object) -> None:
            """Runs in the main thread before any further Python code of the loop (the interpreter's pending-call
            check): ``/readyz`` is 503 for every request the loop handles after the signal, on any event loop
            (uvloop may read a new connection before it runs a callback of ``loop.add_signal_handler``). Only a
            flag is set here (no logging: its writer holds a lock), the rest runs on the loop."""
            for lifecycle in lifecycles:
                lifecycle.draining = True
            loop.call_soon_threadsafe(stopping.set)

        previous = {signum: signal.signal(signum, on_signal) for signum in (signal.SIGINT, signal.SIGTERM)}
        try:
            await stopping.wait()
            await shut_down(runner, sites, lifecycles, shutdown, settle_seconds=settle)
        finally:
            for signum, handler in previous.items():
                signal.signal(signum, handler)
    finally:
        await runner.cleanup()
        if management_runner is not None:
            await management_runner.cleanup()


def loop_factory(event_loop: EventLoop) -> Callable[[], asyncio.AbstractEventLoop]:
    """A new event loop of the kind ``DCR_EVENT_LOOP`` names."""
    if event_loop is EventLoop.UVLOOP:
        import uvloop

        return uvloop.new_event_loop
    return asyncio.new_event_loop


def run(
    app: web.Application,
    *,
    host: str,
    port: int,
    management: Listener | None = None,
    event_loop: EventLoop = EventLoop.UVLOOP,
) -> None:
    """``dcr-gateway serve``'s event loop (``event_loop``: ``DCR_EVENT_LOOP``): :func:`serve` until a signal."""
    with asyncio.Runner(loop_factory=loop_factory(event_loop)) as runner:
        runner.run(serve(app, host=host, port=port, management=management))
