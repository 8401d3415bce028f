"""One issuer's served discovery document, kept in memory and refreshed from the provider (RFC 8414 section 3).

The gateway answers discovery requests from memory: the document is fetched from the provider's internal
URL, rewritten (:func:`gateway.rfc8414.rewrite.rewrite`), serialized once and given a strong ETag. A
background task refreshes it; when the provider fails, the last good document keeps being served, because
a client that cannot discover the authorization server cannot do anything else either.

Every fetch also asks what a registration can obtain (``registrable_scopes``, see
:mod:`gateway.rfc8414.scopes`), so ``scopes_supported`` follows the provider's and the policy's limits as they
change, refresh after refresh.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import math
import time
from collections.abc import Awaitable, Callable, Mapping, Set
from dataclasses import dataclass
from types import MappingProxyType
from typing import Any

import aiohttp
import structlog
from aiohttp import hdrs
from yarl import URL

from gateway.rfc8414.rewrite import rewrite, serialize

log = structlog.get_logger(__name__)

MAX_DOCUMENT_BYTES = 1024 * 1024
"""Upper bound on a provider's metadata document (Keycloak's is about 7 KB)."""

ON_DEMAND_MIN_GAP = 1.0
"""Seconds between two on-demand fetches while no document exists, so a burst of clients hitting a down
provider causes one fetch a second at most, not one per request."""


@dataclass(frozen=True, slots=True)
class CachedDocument:
    """A served discovery document, ready to write to the wire."""

    body: bytes
    """The serialized document (:func:`gateway.rfc8414.rewrite.serialize`)."""
    etag: str
    """Strong entity tag of ``body`` (RFC 9110 section 8.8.3), quoted."""
    document: Mapping[str, Any]
    """The parsed served document, read-only: what registration policies derive allowed values from."""
    fetched_at: float
    """``time.time()`` of the fetch that produced it."""


def make_cached_document(document: Mapping[str, Any], *, fetched_at: float | None = None) -> CachedDocument:
    """Serialize ``document`` and derive its strong ETag from the bytes (equal bytes, equal ETag)."""
    body = serialize(document)
    etag = f'"{hashlib.sha256(body).hexdigest()[:32]}"'
    return CachedDocument(
        body=body,
        etag=etag,
        document=MappingProxyType(dict(document)),
        fetched_at=time.time() if fetched_at is None else fetched_at,
    )


class UpstreamFetchError(Exception):
    """The provider answered, but not with a usable metadata document."""


class DiscoveryCache:
    """The served discovery document of one issuer.

    ``metadata_url`` is the provider's ``.../.well-known/openid-configuration`` at its internal URL;
    ``headers`` are sent with every fetch (front-door mode sends ``X-Forwarded-Proto/Host/Port`` so a
    Keycloak behind the gateway computes the public issuer). The document is refreshed every
    ``refresh_interval`` seconds, or every ``retry_interval`` seconds while there is none yet; each fetch is
    bounded by ``timeout`` seconds.

    ``registrable_scopes`` is awaited on every fetch and passed to :func:`~gateway.rfc8414.rewrite.rewrite`: what
    a registration can obtain, or ``None`` for no limit. When it fails, the last scopes it told are used; before
    it has ever answered, nothing but ``openid`` is advertised (RFC 8414 section 2: a server may leave supported
    values out; advertising one that registration cannot grant fails the client's authorization request) and
    the cache retries at ``retry_interval`` until it answers.

    The session may be shared with the front-door proxy: fetches ask for ``Accept-Encoding: identity`` so
    they read plain JSON even from a session created with ``auto_decompress=False``.
    """

    def __init__(
        self,
        session: aiohttp.ClientSession | None,
        metadata_url: str,
        *,
        registration_endpoint: str,
        expected_issuer: str | None = None,
        headers: Mapping[str, str] | None = None,
        refresh_interval: float = 60.0,
        retry_interval: float = 5.0,
        timeout: float = 10.0,
        extra: Mapping[str, Any] | None = None,
        max_bytes: int = MAX_DOCUMENT_BYTES,
        registrable_scopes: Callable[[], Awaitable[Set[str] | None]] | None = None,
        public_clients: bool = False,
    ) -> None:
        if refresh_interval <= 0 or retry_interval <= 0 or timeout <= 0:
            raise ValueError("refresh_interval, retry_interval and timeout must be positive")
        self._session = session
        self._metadata_url = metadata_url
        # Logged instead of the URL itself: never log credentials that may sit in a URL's userinfo.
        self._log_url = str(URL(metadata_url).with_user(None).with_query(None))
        self._registration_endpoint = registration_endpoint
        self._expected_issuer = expected_issuer
        self._headers = {
            **(headers or {}),
            hdrs.ACCEPT: "application/json",
            hdrs.ACCEPT_ENCODING: "identity",
        }
        self._refresh_interval = refresh_interval
        self._retry_interval = retry_interval
        self._timeout = aiohttp.ClientTimeout(total=timeout)
        self._extra = dict(extra) if extra else None
        self._public_clients = public_clients
        self._max_bytes = max_bytes
        self._registrable_scopes = registrable_scopes
        self._known_scopes: Set[str] | None = None
        """The last registrable scopes the source told (``None``: no limit), used while it fails."""
        self._scopes_known = registrable_scopes is None
        """False until the source has answered once: until then only ``openid`` is advertised."""

        self._current: CachedDocument | None = None
        self._inflight: asyncio.Task[CachedDocument | None] | None = None
        self._refresher: asyncio.Task[None] | None = None
        self._last_failure: float | None = None
        self._failures = 0
        self.on_refresh_failure: Callable[[], None] = lambda: None
        """Told of every failed fetch (metrics)."""

    @property
    def metadata_url(self) -> str:
        return self._metadata_url

    @property
    def expected_issuer(self) -> str | None:
        return self._expected_issuer

    @property
    def retry_after(self) -> int:
        """Whole seconds until the next attempt while there is no document (for ``Retry-After``)."""
        return max(1, math.ceil(self._retry_interval))

    def current(self) -> CachedDocument | None:
        """The last good document, or ``None`` if no fetch has succeeded yet."""
        return self._current

    async def get(self) -> CachedDocument | None:
        """The last good document; if there is none yet, one bounded fetch (shared by concurrent callers).

        While there is no document, on-demand fetches are at least :data:`ON_DEMAND_MIN_GAP` seconds apart
        (or ``retry_interval``, if shorter); in between this returns ``None`` at once.
        """
        if self._current is not None:
            return self._current
        if self._inflight is None and self._last_failure is not None:
            gap = min(ON_DEMAND_MIN_GAP, self._retry_interval)
            if time.monotonic() - self._last_failure < gap:
                return None
        return await self.refresh()

    async def refresh(self) -> CachedDocument | None:
        """Fetch now (or join the fetch already running) and return the current document afterwards.

        Never raises for provider failures: they are logged and the last good document stays. Cancelling
        one caller does not cancel the shared fetch.
        """
        task = self._inflight
        if task is None:
            task = asyncio.create_task(self._fetch_and_store(), name=f"discovery-fetch {self._log_url}")
            self._inflight = task
            task.add_done_callback(self._forget_inflight)
        return await asyncio.shield(task)

    async def start(self, session: aiohttp.ClientSession | None = None) -> None:
        """First fetch (failures are logged, not raised), then refresh in the background. ``session``: the HTTP
        session to fetch with, when the cache was built without one (the app builds its caches in ``create_app``
        and starts them, with the session it opens, in its cleanup context)."""
        if session is not None:
            self._session = session
        if self._refresher is not None:
            return
        await self.refresh()
        self._refresher = asyncio.create_task(self._refresh_forever(), name=f"discovery-refresh {self._log_url}")

    async def close(self) -> None:
        """Stop refreshing; a fetch in flight is cancelled."""
        tasks = [t for t in (self._refresher, self._inflight) if t is not None]
        self._refresher = None
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)

    def _forget_inflight(self, task: asyncio.Task[CachedDocument | None]) -> None:
        if self._inflight is task:
            self._inflight = None

    async def _refresh_forever(self) -> None:
        while True:
            settled = self._current is not None and self._scopes_known
            await asyncio.sleep(self._refresh_interval if settled else self._retry_interval)
            await self.refresh()

    async def _fetch_and_store(self) -> CachedDocument | None:
        try:
            upstream = await self._fetch()
            document = rewrite(
                upstream,
                registration_endpoint=self._registration_endpoint,
                expected_issuer=self._expected_issuer,
                extra=self._extra,
                registrable_scopes=await self._current_registrable_scopes(),
                public_clients=self._public_clients,
            )
            cached = make_cached_document(document)
        except asyncio.CancelledError:
            raise
        except (aiohttp.ClientError, TimeoutError, UpstreamFetchError, ValueError) as exc:
            # ValueError covers bad JSON, bad UTF-8 and UpstreamMetadataError (issuer missing or different).
            self._record_failure(exc)
            return self._current
        except Exception as exc:  # a bug here must not stop the refresher nor fail the request
            self._record_failure(exc, unexpected=True)
            return self._current

        previous = self._current
        if previous is not None and previous.etag == cached.etag:
            cached = previous  # unchanged: keep the identical object (and its fetch time)
        else:
            log.info(
                "discovery.updated",
                metadata_url=self._log_url,
                issuer=cached.document.get("issuer"),
                etag=cached.etag,
                after_failures=self._failures,
            )
        self._current = cached
        self._failures = 0
        self._last_failure = None
        return cached

    async def _current_registrable_scopes(self) -> Set[str] | None:
        """What the source tells now; on failure the last it told, or only ``openid`` if it never answered."""
        if self._registrable_scopes is None:
            return None
        try:
            scopes = await self._registrable_scopes()
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # an adapter error (provider down, credentials refused) or a bug: logged, not fatal
            log.warning(
                "discovery.registrable_scopes_failed",
                metadata_url=self._log_url,
                error_type=type(exc).__name__,
                cause=str(exc) or repr(exc),
                advertising="last known scopes" if self._scopes_known else "openid only",
            )
            return self._known_scopes if self._scopes_known else frozenset()
        self._known_scopes = scopes
        self._scopes_known = True
        return scopes

    async def _fetch(self) -> Any:
        session = self._session
        if session is None:
            raise UpstreamFetchError("the cache has not been started with an HTTP session")
        async with session.get(
            self._metadata_url, headers=self._headers, timeout=self._timeout, allow_redirects=False
        ) as response:
            if response.status != 200:
                raise UpstreamFetchError(f"provider answered HTTP {response.status}")
            encoding = response.headers.get(hdrs.CONTENT_ENCODING, "identity").lower()
            if encoding != "identity" and not session.auto_decompress:
                raise UpstreamFetchError(f"provider sent Content-Encoding {encoding!r} despite identity")
            body = await _read_limited(response, self._max_bytes)
        return json.loads(body)

    def _record_failure(self, exc: BaseException, *, unexpected: bool = False) -> None:
        self.on_refresh_failure()
        self._failures += 1
        self._last_failure = time.monotonic()
        fields: dict[str, Any] = {
            "metadata_url": self._log_url,
            "expected_issuer": self._expected_issuer,
            "error_type": type(exc).__name__,
            "cause": str(exc) or repr(exc),
            "consecutive_failures": self._failures,
            "serving": "last good document" if self._current is not None else "nothing yet",
        }
        if unexpected:
            fields["exc_info"] = exc
        log.warning("discovery.refresh_failed", **fields)


async def _read_limited(response: aiohttp.ClientResponse, limit: int) -> bytes:
    """The response body, refusing more than ``limit`` bytes (announced or actually sent)."""
    if response.content_length is not None and response.content_length > limit:
        raise UpstreamFetchError(f"metadata document of {response.content_length} bytes exceeds {limit}")
    chunks: list[bytes] = []
    size = 0
    async for chunk in response.content.iter_chunked(64 * 1024):
        size += len(chunk)
        if size > limit:
            raise UpstreamFetchError(f"metadata document exceeds {limit} bytes")
        chunks.append(chunk)
    return b"".join(chunks)
