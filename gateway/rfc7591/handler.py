"""The client registration endpoint, RFC 7591 section 3.1, as a short list of named steps::

    read body -> parse metadata -> validate (defaults + rules) -> issue credentials -> create -> respond

Each step either returns the next step's input or raises an :class:`~gateway.rfc7591.errors.OAuthError`,
which the app's error middleware turns into the RFC 7591 section 3.2.2 JSON response.
"""

from __future__ import annotations

import json
import secrets
import time
import uuid
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from typing import Any

import structlog
from aiohttp import hdrs, web

from adapters.base import (
    ClientConflict,
    ManagedClient,
    NewClient,
    ProviderAdapter,
    ProviderAuthError,
    ProviderRejected,
    ProviderUnavailable,
)
from gateway.rfc7591.errors import (
    InvalidClientMetadata,
    InvalidRedirectUri,
    RequestTooLarge,
    ServerError,
    TemporarilyUnavailable,
)
from gateway.rfc7591.models import SECRET_AUTH_METHODS, ClientInformation, ClientMetadata
from gateway.rfc7591.validation import RegistrationPolicy, parse_metadata, validate
from gateway.rfc8414.cache import DiscoveryCache

log = structlog.get_logger(__name__)

NO_STORE = {hdrs.CACHE_CONTROL: "no-store", hdrs.PRAGMA: "no-cache"}
"""RFC 7591 section 3.2.1 responses carry credentials: never cached."""

RETRY_AFTER_SECONDS = 5


@dataclass(frozen=True)
class IssuerContext:
    """One issuer the gateway serves: where its documents and endpoints are, and which provider holds it."""

    key: str
    path: str
    issuer: str
    registration_endpoint: str
    discovery: DiscoveryCache


@dataclass(frozen=True)
class Caller:
    """Who is registering or updating a client, as access control established it before validation
    (RFC 7591 section 3: initial access tokens; section 2.3: software statements)."""

    source: str | None = None
    """The client's network address (after the gateway's own forwarded-for policy)."""
    authenticated: bool = False
    """An initial access token or a software statement was verified: privileged metadata may be allowed."""
    software_statement: Mapping[str, Any] | None = None
    """Verified software statement claims (already merged over the request's metadata)."""


ANONYMOUS = Caller()


@dataclass(frozen=True)
class RegistrationSettings:
    """The registration knobs of :class:`gateway.settings.Settings` this endpoint uses."""

    max_body_bytes: int
    client_secret_expires_in: int
    allow_client_credentials: bool
    allow_jwks_uri: bool = False
    max_uri_length: int = 2000
    max_string_length: int = 500


# ------------------------------------------------------------------------------------------- steps


async def read_json_object(request: web.Request, max_bytes: int) -> Mapping[str, Any]:
    """RFC 7591 section 3.1: the request is a JSON document (``application/json``) holding an object."""
    content_type = request.headers.get(hdrs.CONTENT_TYPE, "")
    media_type = content_type.split(";", 1)[0].strip().lower()
    if media_type and media_type != "application/json" and not media_type.endswith("+json"):
        raise InvalidClientMetadata(
            f"Content-Type {media_type!r} is not supported; send the client metadata as application/json"
        )
    if request.content_length is not None and request.content_length > max_bytes:
        raise RequestTooLarge(f"request body exceeds {max_bytes} bytes")
    body = await request.content.read(max_bytes + 1)
    if len(body) > max_bytes:
        raise RequestTooLarge(f"request body exceeds {max_bytes} bytes")
    if not body.strip():
        raise InvalidClientMetadata("request body is empty; send the client metadata as a JSON object")
    try:
        document = json.loads(body, parse_constant=_reject_constant)
    except (ValueError, RecursionError):
        raise InvalidClientMetadata("request body is not valid JSON") from None
    if not isinstance(document, dict):
        kind = "null" if document is None else type(document).__name__
        raise InvalidClientMetadata(f"request body must be a JSON object, not {kind}")
    return document


def _reject_constant(name: str) -> Any:
    """``NaN``, ``Infinity`` and ``-Infinity`` are not JSON (RFC 8259 section 6)."""
    raise ValueError(f"{name} is not valid JSON")


async def registration_policy(
    issuer: IssuerContext, settings: RegistrationSettings, caller: Caller = ANONYMOUS
) -> RegistrationPolicy:
    """What this issuer accepts, from the provider's discovery document (RFC 8414 section 2)."""
    cached = await issuer.discovery.get()
    return RegistrationPolicy.from_server_metadata(
        cached.document if cached else None,
        client_credentials_allowed=settings.allow_client_credentials,
        jwks_uri_allowed=settings.allow_jwks_uri,
        max_uri_length=settings.max_uri_length,
        max_string_length=settings.max_string_length,
    )


async def validate_registration(
    document: Mapping[str, Any], *, issuer: IssuerContext, settings: RegistrationSettings, caller: Caller = ANONYMOUS
) -> ClientMetadata:
    """Everything a registration (RFC 7591 section 3.1) or a replacement (RFC 7592 section 2.2) must satisfy:
    shape, defaults, and every policy, for the caller access control established."""
    metadata = parse_metadata(document)
    policy = await registration_policy(issuer, settings, caller)
    return validate(metadata, policy)


def issue_credentials(metadata: ClientMetadata, settings: RegistrationSettings) -> NewClient:
    """Gateway-generated ``client_id``, and a 256-bit ``client_secret`` only when the auth method uses one
    (RFC 7591 section 3.2.1). A client never chooses either."""
    now = int(time.time())
    needs_secret = metadata.token_endpoint_auth_method in SECRET_AUTH_METHODS
    expires_at = now + settings.client_secret_expires_in if settings.client_secret_expires_in > 0 else 0
    return NewClient(
        client_id=str(uuid.uuid4()),
        client_secret=secrets.token_urlsafe(32) if needs_secret else None,
        client_id_issued_at=now,
        client_secret_expires_at=expires_at if needs_secret else 0,
        metadata=metadata,
    )


async def create(adapter: ProviderAdapter, issuer: IssuerContext, client: NewClient) -> ManagedClient:
    """One admin call; provider failures become RFC-shaped errors and never leak provider internals."""
    try:
        return await adapter.create_client(issuer.key, client)
    except ProviderUnavailable as exc:
        log.warning("provider.unavailable", issuer=issuer.issuer, cause=str(exc))
        raise TemporarilyUnavailable(
            "the authorization server is temporarily unavailable; retry later",
            headers={hdrs.RETRY_AFTER: str(RETRY_AFTER_SECONDS)},
        ) from exc
    except ProviderAuthError as exc:
        log.error("provider.admin_auth_failed", issuer=issuer.issuer, cause=str(exc))
        raise TemporarilyUnavailable(
            "the authorization server is temporarily unavailable; retry later",
            headers={hdrs.RETRY_AFTER: str(RETRY_AFTER_SECONDS * 6)},
        ) from exc
    except ProviderRejected as exc:
        # The provider's own words stay in the log: they can name internals (libraries, columns, hosts).
        log.warning("provider.rejected", issuer=issuer.issuer, cause=str(exc), field=exc.field_name)
        if exc.field_name == "redirect_uris":
            raise InvalidRedirectUri("redirect_uris: refused by the authorization server") from exc
        raise InvalidClientMetadata(
            "the authorization server refused this client metadata" + (f" ({exc.field_name})" if exc.field_name else "")
        ) from exc
    except ClientConflict as exc:  # a UUID collision: not the client's fault, and not worth a retry loop
        log.error("provider.client_id_conflict", issuer=issuer.issuer)
        raise ServerError("could not allocate a client_id; retry") from exc


def client_information(managed: ManagedClient, issued: NewClient) -> ClientInformation:
    """RFC 7591 section 3.2.1 response: what the provider holds, with the credentials just issued."""
    return ClientInformation(
        client_id=managed.client_id,
        client_secret=managed.client_secret or issued.client_secret,
        client_id_issued_at=managed.client_id_issued_at or issued.client_id_issued_at,
        client_secret_expires_at=issued.client_secret_expires_at,
        metadata=managed.metadata,
    )


# ----------------------------------------------------------------------------------------- handler


def registration_handler(
    *, issuer: IssuerContext, adapter: ProviderAdapter, settings: RegistrationSettings
) -> Callable[[web.Request], Awaitable[web.StreamResponse]]:
    """``POST {issuer path}{registration path}`` for one issuer."""

    async def register(request: web.Request) -> web.StreamResponse:
        document = await read_json_object(request, settings.max_body_bytes)
        metadata = await validate_registration(document, issuer=issuer, settings=settings)
        issued = issue_credentials(metadata, settings)
        managed = await create(adapter, issuer, issued)
        information = client_information(managed, issued)
        log.info(
            "client.registered",
            issuer=issuer.issuer,
            client_id=information.client_id,
            token_endpoint_auth_method=information.metadata.token_endpoint_auth_method,
            redirect_uris=len(information.metadata.redirect_uris or []),
        )
        return web.json_response(information.to_response(), status=201, headers=NO_STORE)

    return register
