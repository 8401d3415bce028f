"""A recording pass-through HTTP proxy for counting a provider's admin calls (used by ``bench/scale.py``).

Listens on a free loopback port and forwards every request unchanged (method, path, query, headers except
``Host``, body) to one upstream base URL, answering with the upstream's status, headers and body. Each request is
counted under ``METHOD /path/template``: path segments that look like ids (UUIDs, generated client ids, numbers)
become ``{id}``, so ``GET /admin/realms/mcp/clients/{id}/session-count`` is one key however many clients there
are. Loopback only; the bench stops it when it is done.
"""

from __future__ import annotations

import re
import time
from collections import Counter
from dataclasses import dataclass, field

import aiohttp
from aiohttp import web

from devstack.process import LOOPBACK, free_port

_ID_SEGMENT = re.compile(
    r"^(?:[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}|[0-9]+|[A-Za-z0-9_-]{20,})$", re.ASCII
)
_HOP_BY_HOP = frozenset(
    {"connection", "keep-alive", "transfer-encoding", "content-length", "content-encoding", "host", "upgrade"}
)
_STATIC_SEGMENTS = frozenset({"openid-connect", "client-session-stats", "offline-session-count", "session-count"})


def template(path: str) -> str:
    """``path`` with its id-like segments replaced by ``{id}``."""
    parts = ["{id}" if part not in _STATIC_SEGMENTS and _ID_SEGMENT.match(part) else part for part in path.split("/")]
    return "/".join(parts)


@dataclass
class RecordingProxy:
    """Forwards to ``upstream`` and counts requests per ``METHOD /path/template``."""

    upstream: str
    counts: Counter[str] = field(default_factory=Counter)
    seconds: float = 0.0
    """Summed upstream time of the forwarded requests (overlapping ones count twice)."""
    url: str = ""
    _runner: web.AppRunner | None = None
    _http: aiohttp.ClientSession | None = None

    async def start(self) -> str:
        self._http = aiohttp.ClientSession(
            connector=aiohttp.TCPConnector(limit=64),
            timeout=aiohttp.ClientTimeout(total=120),
            auto_decompress=False,
            cookie_jar=aiohttp.DummyCookieJar(),
        )
        app = web.Application(client_max_size=16 * 1024 * 1024)
        app.router.add_route("*", "/{tail:.*}", self._forward)
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        port = free_port()
        await web.TCPSite(self._runner, LOOPBACK, port).start()
        self.url = f"http://{LOOPBACK}:{port}"
        return self.url

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
        if self._http is not None:
            await self._http.close()

    def reset(self) -> None:
        self.counts.clear()
        self.seconds = 0.0

    def total(self) -> int:
        return sum(self.counts.values())

    async def _forward(self, request: web.Request) -> web.StreamResponse:
        assert self._http is not None
        self.counts[f"{request.method} {template(request.path)}"] += 1
        headers = {k: v for k, v in request.headers.items() if k.lower() not in _HOP_BY_HOP}
        body = await request.read()
        started = time.perf_counter()
        async with self._http.request(
            request.method,
            f"{self.upstream}{request.path_qs}",
            headers=headers,
            data=body or None,
            allow_redirects=False,
        ) as upstream:
            payload = await upstream.read()
            answer_headers = {k: v for k, v in upstream.headers.items() if k.lower() not in _HOP_BY_HOP}
            status = upstream.status
            if upstream.headers.get("Content-Encoding"):
                answer_headers["Content-Encoding"] = upstream.headers["Content-Encoding"]
        self.seconds += time.perf_counter() - started
        return web.Response(status=status, body=payload, headers=answer_headers)
