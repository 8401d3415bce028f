"""Fetching a client ID metadata document: the only I/O of :mod:`gateway.cimd`, and the SSRF surface of the
feature, since the URL is chosen by whoever sends an authorization request.

draft-ietf-oauth-client-id-metadata-document section 4 (-01 sections 4 and 6.5, 6.6):

- "The authorization server MUST validate that the Client ID Metadata Document URL does not resolve to
  special-use IP addresses as defined in RFC6890, except when the authorization server itself is also running
  on a loopback address": every address the host resolves to is checked
  (:func:`gateway.policy.uris.is_public_address`), the connection is made only to those checked addresses
  (the connector's resolver is pinned to them, so a second DNS answer is never used: no DNS rebinding), the
  TLS handshake verifies the original host name (SNI and ``Host`` unchanged), and the connected socket's peer
  address is checked again before the request is sent. :attr:`CimdSettings.development_origins` are the
  loopback exception.
- "A successful response MUST use the 200 OK HTTP status code ... MUST NOT automatically follow HTTP
  redirects": any other status is refused (304 only to a conditional request, RFC 9110 section 15.4.5).
- "recommended maximum response size ... is 5 kilobytes": :attr:`CimdSettings.max_bytes`, on
  ``Content-Length`` and while reading, counting decoded bytes; :attr:`CimdSettings.timeout_seconds` for
  everything, :attr:`CimdSettings.connect_timeout_seconds` for the connection.
- The body must be ``application/json`` (or ``+json``), UTF-8, one JSON object without duplicate members.

No cookies, no proxy from the environment, ``Accept-Encoding: identity``. The body is never logged.
"""

from __future__ import annotations

import asyncio
import hashlib
import ipaddress
import json
import socket
import ssl
import time
from collections.abc import Callable, Mapping, Sequence
from contextvars import ContextVar
from dataclasses import dataclass
from email.utils import parsedate_to_datetime
from types import MappingProxyType
from typing import Any, NoReturn
from urllib.parse import urlsplit

import aiohttp
import structlog
from aiohttp.abc import AbstractResolver, ResolveResult
from aiohttp.client_proto import ResponseHandler
from yarl import URL

from gateway.cimd.errors import DocumentRefused, Stage, show
from gateway.cimd.settings import CimdSettings
from gateway.cimd.url import check_client_id_url
from gateway.policy.network import Resolver, system_resolver
from gateway.policy.uris import is_public_address

log = structlog.get_logger(__name__)

USER_AGENT = "dcr-gateway (client ID metadata document fetch)"
_READ_CHUNK = 1024


@dataclass(frozen=True)
class FetchedDocument:
    """A document as fetched: the JSON object, a digest of the exact body, and its HTTP freshness."""

    url: str
    """The ``client_id`` URL it was fetched from, exactly as given."""
    document: Mapping[str, Any]
    """The JSON object (read-only at the top level)."""
    body_sha256: str
    """Hex SHA-256 of the body as received (decoded), to see whether a document changed."""
    fetched_at: float
    """``time.time()`` of the fetch (or of the 304 that confirmed it)."""
    max_age: float | None
    """Seconds the answer may be reused (RFC 9111 section 4.2.1: ``s-maxage``, ``max-age`` less ``Age``, or
    ``Expires`` less ``Date``); 0 for ``no-cache``/``no-store``; ``None`` when the answer says nothing."""
    etag: str | None
    """The ``ETag`` validator, for revalidation with ``If-None-Match`` (RFC 9110 section 13.1.2)."""


@dataclass(frozen=True)
class NotModified:
    """The answer to a conditional fetch whose ``ETag`` still matches (304): the cached document stays, with the
    freshness of this answer."""

    fetched_at: float
    max_age: float | None
    etag: str | None


# ----------------------------------------------------------------------------------------- address pinning


@dataclass(frozen=True)
class _Pin:
    """What the current fetch may connect to: the checked addresses of its host."""

    host: str
    addresses: tuple[str, ...]
    special_use_allowed: bool


_PIN: ContextVar[_Pin | None] = ContextVar("cimd_pin", default=None)
"""Set by :meth:`DocumentFetcher.fetch` around its request; read by the connector in the same task."""


class _PeerRefused(Exception):
    """The connected socket's peer is a special-use address."""

    def __init__(self, address: str) -> None:
        super().__init__(address)
        self.address = address


class _PinnedResolver(AbstractResolver):
    """The connector's resolver: the addresses :meth:`DocumentFetcher.fetch` checked for this host, and nothing
    else; it never asks DNS, so the answer that is connected to is the answer that was checked."""

    async def resolve(
        self, host: str, port: int = 0, family: socket.AddressFamily = socket.AF_INET
    ) -> list[ResolveResult]:
        pin = _PIN.get()
        if pin is None or _host_key(host) != pin.host:
            raise OSError(f"{host!r} was not resolved and checked before connecting")
        return [
            ResolveResult(
                hostname=host,
                host=address,
                port=port,
                family=socket.AF_INET6 if ":" in address else socket.AF_INET,
                proto=0,
                flags=socket.AI_NUMERICHOST,
            )
            for address in pin.addresses
        ]

    async def close(self) -> None:
        return None


class _CheckedConnector(aiohttp.TCPConnector):
    """Checks each new connection's peer address (after the handshake, before the request is written).

    ``_wrap_create_connection`` is where aiohttp (3.14, pinned) opens every direct connection; the integration
    test ``test_the_connected_peer_is_checked_too`` fails if an aiohttp upgrade stops calling it."""

    async def _wrap_create_connection(self, *args: Any, **kwargs: Any) -> tuple[asyncio.Transport, ResponseHandler]:
        transport, protocol = await super()._wrap_create_connection(*args, **kwargs)
        pin = _PIN.get()
        peer = transport.get_extra_info("peername")
        address = str(peer[0]) if isinstance(peer, tuple) and peer else ""
        if pin is None or not (pin.special_use_allowed or _public(address)):
            transport.close()
            raise _PeerRefused(address)
        return transport, protocol


def _is_json(media_type: str) -> bool:
    """``application/json`` or a structured syntax suffix ``+json`` (RFC 6839 section 3.1)."""
    return media_type == "application/json" or (media_type.startswith("application/") and media_type.endswith("+json"))


def _host_key(host: str) -> str:
    return host.lower().rstrip(".").strip("[]")


def _public(address: str) -> bool:
    try:
        return is_public_address(address)
    except ValueError:
        return False


# -------------------------------------------------------------------------------------------------- fetcher


class DocumentFetcher:
    """Fetches client ID metadata documents under :class:`CimdSettings`. :meth:`start` before use,
    :meth:`close` after; ``resolver`` is injectable (tests, or a resolver of the deployment's choosing)."""

    def __init__(
        self,
        settings: CimdSettings,
        *,
        resolver: Resolver = system_resolver,
        trace_configs: Sequence[aiohttp.TraceConfig] | None = None,
    ) -> None:
        self._settings = settings
        self._trace_configs = list(trace_configs) if trace_configs else None
        self._resolver = resolver
        self._session: aiohttp.ClientSession | None = None
        self.on_fetch: Callable[[str], None] = lambda outcome: None
        """Told every fetch's outcome: ``fetched``, ``not_modified``, ``refused_{stage}`` (metrics)."""

    async def start(self) -> None:
        """Open the HTTP session: TLS trusting the system's CAs and :attr:`CimdSettings.ca_file`, the pinned
        resolver, no connection reuse (each fetch connects to its own checked addresses), no cookie jar, no
        proxy from the environment."""
        if self._session is not None:
            return
        context = ssl.create_default_context()
        if self._settings.ca_file:
            context.load_verify_locations(cafile=self._settings.ca_file)
        connector = _CheckedConnector(
            resolver=_PinnedResolver(),
            use_dns_cache=False,
            force_close=True,
            ssl=context,
            limit=100,
        )
        self._session = aiohttp.ClientSession(
            connector=connector,
            cookie_jar=aiohttp.DummyCookieJar(),
            trust_env=False,
            timeout=aiohttp.ClientTimeout(total=None, sock_connect=self._settings.connect_timeout_seconds),
            headers={"Accept": "application/json", "Accept-Encoding": "identity", "User-Agent": USER_AGENT},
            trace_configs=self._trace_configs,
        )

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None

    async def fetch(self, url: str, *, etag: str | None = None) -> FetchedDocument | NotModified:
        """The document at ``url`` (checked with :func:`gateway.cimd.url.check_client_id_url` first), or
        :class:`NotModified` when ``etag`` is given and still matches; :class:`DocumentRefused` otherwise."""
        if self._session is None:
            raise RuntimeError("DocumentFetcher.start() was not called")
        try:
            try:
                async with asyncio.timeout(self._settings.timeout_seconds):
                    result = await self._fetch(self._session, url, etag)
            except TimeoutError:
                self._refuse(url, "fetch", self._timed_out(), detail="total timeout")
        except _Logged as refused:
            self.on_fetch(f"refused_{refused.stage}")
            raise
        except DocumentRefused as refused:
            self.on_fetch(f"refused_{refused.stage}")
            log.info("cimd.fetch_refused", url=url, stage=refused.stage, reason=refused.reason)
            raise
        self.on_fetch("not_modified" if isinstance(result, NotModified) else "fetched")
        return result

    def _connect_addresses(self, host: str, addresses: list[str]) -> list[str]:
        """The addresses the connection may use, given the checked ``addresses`` of ``host``: exactly those."""
        return addresses

    async def _fetch(self, session: aiohttp.ClientSession, url: str, etag: str | None) -> FetchedDocument | NotModified:
        check_client_id_url(url, self._settings)
        host = urlsplit(url).hostname or ""
        special_use_allowed = self._settings.is_development_origin(url)
        addresses = await self._resolve(url, host)
        if not special_use_allowed and not all(_public(address) for address in addresses):
            self._refuse(
                url,
                "policy",
                f"the client_id URL's host {host!r} resolves to a special-use address (loopback, private, "
                "link-local, ...: RFC 6890); documents are fetched only from public hosts",
                detail=",".join(addresses),
            )
        pin = _Pin(_host_key(host), tuple(self._connect_addresses(host, addresses)), special_use_allowed)
        headers = {"If-None-Match": etag} if etag is not None else {}
        token = _PIN.set(pin)
        try:
            # encoded=True: the request target is the URL exactly as checked (yarl would re-encode it otherwise)
            target = URL(url, encoded=True)
            async with session.get(target, headers=headers, allow_redirects=False) as response:
                return await self._read(url, response, etag)
        except _PeerRefused as exc:
            self._refuse(
                url,
                "policy",
                f"the connection to host {host!r} reached a special-use address (RFC 6890); documents are "
                "fetched only from public hosts",
                detail=exc.address,
            )
        except aiohttp.ClientConnectorCertificateError as exc:
            self._refuse(url, "fetch", f"the TLS certificate of host {host!r} is not trusted", detail=repr(exc))
        except aiohttp.ConnectionTimeoutError as exc:
            self._refuse(
                url,
                "fetch",
                f"could not connect to host {host!r} within {self._settings.connect_timeout_seconds} seconds",
                detail=repr(exc),
            )
        except aiohttp.ServerTimeoutError:
            raise TimeoutError from None
        except (aiohttp.ClientConnectorError, aiohttp.ClientSSLError) as exc:
            self._refuse(url, "fetch", f"could not connect to host {host!r} over https", detail=repr(exc))
        except (aiohttp.ClientError, OSError) as exc:
            self._refuse(url, "fetch", f"the connection to host {host!r} failed during the fetch", detail=repr(exc))
        finally:
            _PIN.reset(token)

    async def _resolve(self, url: str, host: str) -> list[str]:
        try:
            return [str(ipaddress.ip_address(host.strip("[]")))]
        except ValueError:
            pass
        try:
            addresses = [str(address) for address in await self._resolver(host)]
        except OSError as exc:
            self._refuse(url, "fetch", f"the client_id URL's host {host!r} does not resolve", detail=repr(exc))
        if not addresses:
            self._refuse(url, "fetch", f"the client_id URL's host {host!r} does not resolve")
        return addresses

    async def _read(
        self, url: str, response: aiohttp.ClientResponse, etag: str | None
    ) -> FetchedDocument | NotModified:
        status = response.status
        if status == 304 and etag is not None:
            return NotModified(time.time(), freshness(response.headers, time.time()), response.headers.get("ETag"))
        if 300 <= status < 400 and status != 304:
            raise DocumentRefused("fetch", f"the document URL answered {status}; redirects are not followed")
        if status != 200:
            raise DocumentRefused("fetch", f"the document URL answered {status}; a document is answered with 200")
        content_type = response.headers.get("Content-Type", "")
        media_type = content_type.split(";", 1)[0].strip().lower()
        if media_type != "application/json" and not (
            media_type.startswith("application/") and media_type.endswith("+json")
        ):
            raise DocumentRefused(
                "fetch",
                f"the document URL answered Content-Type {show(content_type, 60)}; a document is application/json",
            )
        limit = self._settings.max_bytes
        if response.content_length is not None and response.content_length > limit:
            raise DocumentRefused("fetch", f"the document is larger than {limit} bytes")
        body = bytearray()
        async for chunk in response.content.iter_any():
            body += chunk
            if len(body) > limit:
                raise DocumentRefused("fetch", f"the document is larger than {limit} bytes")
        now = time.time()
        return FetchedDocument(
            url=url,
            document=MappingProxyType(parse_document(bytes(body))),
            body_sha256=hashlib.sha256(body).hexdigest(),
            fetched_at=now,
            max_age=freshness(response.headers, now),
            etag=response.headers.get("ETag"),
        )

    def _timed_out(self) -> str:
        return f"the document URL did not answer within {self._settings.timeout_seconds} seconds"

    def _refuse(self, url: str, stage: Stage, reason: str, *, detail: str = "") -> NoReturn:
        # the detail (addresses, exception text) is for the operator's log, never for the client
        log.info("cimd.fetch_refused", url=url, stage=stage, reason=reason, detail=detail)
        raise _Logged(stage, reason) from None


class _Logged(DocumentRefused):
    """A refusal already logged by :meth:`DocumentFetcher._refuse`."""


# ---------------------------------------------------------------------------------------------- pure parts


class _DuplicateMember(ValueError):
    def __init__(self, name: str) -> None:
        super().__init__(name)
        self.name = name


def _object(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    result: dict[str, Any] = {}
    for name, value in pairs:
        if name in result:
            raise _DuplicateMember(name)
        result[name] = value
    return result


def _no_constants(name: str) -> NoReturn:
    raise ValueError(f"{name} is not JSON")


def parse_document(body: bytes) -> dict[str, Any]:
    """The JSON object of a document body (RFC 8259: UTF-8, section 8.1; member names unique, section 4, here
    required), or :class:`DocumentRefused` (stage ``document``)."""
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError:
        raise DocumentRefused("document", "the document is not UTF-8") from None
    try:
        value = json.loads(text, object_pairs_hook=_object, parse_constant=_no_constants)
    except _DuplicateMember as exc:
        raise DocumentRefused("document", f"the document has a duplicate member {show(exc.name)}") from None
    except (ValueError, RecursionError):
        raise DocumentRefused("document", "the document is not valid JSON") from None
    if not isinstance(value, dict):
        kind = {list: "array", str: "string", bool: "boolean", type(None): "null"}.get(type(value), "number")
        raise DocumentRefused("document", f"the document is a JSON {kind}, not an object")
    return value


def freshness(headers: Mapping[str, str], now: float) -> float | None:
    """Seconds an answer stays fresh (RFC 9111 section 4.2.1): 0 for ``no-store``/``no-cache`` (section 5.2.2);
    else ``s-maxage`` or ``max-age`` (the gateway is shared by every user), less ``Age``; else ``Expires`` less
    ``Date`` (or now), an invalid ``Expires`` meaning already expired (section 5.3); else ``None``."""
    directives: dict[str, str] = {}
    for part in headers.get("Cache-Control", "").split(","):
        name, _, value = part.strip().partition("=")
        if name:
            directives[name.strip().lower()] = value.strip().strip('"')
    if "no-store" in directives or "no-cache" in directives:
        return 0.0
    age = headers.get("Age", "").strip()
    current_age = int(age) if age.isascii() and age.isdigit() else 0
    for name in ("s-maxage", "max-age"):
        value = directives.get(name, "")
        if value.isascii() and value.isdigit():
            return float(max(0, int(value) - current_age))
    if "Expires" in headers:
        try:
            expires = parsedate_to_datetime(headers["Expires"]).timestamp()
        except (TypeError, ValueError, IndexError):
            return 0.0
        try:
            date = parsedate_to_datetime(headers["Date"]).timestamp() if "Date" in headers else now
        except (TypeError, ValueError, IndexError):
            date = now
        return max(0.0, expires - date)
    return None
