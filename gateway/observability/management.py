"""The management listener's app: ``GET /metrics`` (Prometheus text exposition), ``/healthz`` and ``/readyz``.

It runs on its own port (``DCR_MANAGEMENT__HOST``/``DCR_MANAGEMENT__PORT``), beside the public listener, so
metrics never reach the public origin and an ingress need not route probes. ``/healthz`` and ``/readyz`` are the
public app's own handlers (one readiness logic for both listeners); when it starts, the management app takes the
public app's state (its ``AppKey`` items), so a shared handler that reads ``request.app[...]`` (a draining state,
say) reads the same object on both listeners."""

from __future__ import annotations

from collections.abc import Awaitable, Callable

from aiohttp import web
from prometheus_client.aiohttp import make_aiohttp_handler

from gateway.observability.metrics import GatewayMetrics

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


def management_app(
    *, metrics: GatewayMetrics, healthz: Handler, readyz: Handler, gateway: web.Application | None = None
) -> web.Application:
    """The management app; everything else on it is 404. ``gateway``: the public app whose state it shares."""
    app = web.Application()

    async def share_state(management: web.Application) -> None:
        if gateway is not None:
            for key, value in gateway.items():
                if key not in management:
                    management[key] = value

    app.on_startup.append(share_state)
    app.router.add_get("/metrics", make_aiohttp_handler(metrics.registry, disable_compression=True))
    app.router.add_get("/healthz", healthz)
    app.router.add_get("/readyz", readyz)
    return app
