"""The client registration endpoint, RFC 7591 section 3.1, as a short list of named steps::

    read body -> parse metadata -> validate (defaults + rules) -> issue credentials -> create -> respond

Each step either returns the next step's input or raises an :class:`~gateway.oauth.errors.OAuthError`,
which the app's error middleware turns into the RFC 7591 section 3.2.2 JSON response.
"""

from __future__ import annotations

import json
import secrets
import time
import uuid
from collections.abc import Awaitable, Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

import structlog
from aiohttp import hdrs, web

from adapters.base import (
    ClientConflict,
    ClientNotFound,
    ManagedClient,
    NewClient,
    ProviderAdapter,
    ProviderAuthError,
    ProviderRejected,
    ProviderUnavailable,
)
from gateway.access.control import caller_source, registration_access
from gateway.access.software_statement import statement_metadata
from gateway.oauth.errors import (
    InvalidClientMetadata,
    InvalidRedirectUri,
    RequestTooLarge,
    ServerError,
    TemporarilyUnavailable,
)
from gateway.oauth.lengths import StoredLength
from gateway.oauth.metadata import SECRET_AUTH_METHODS, ClientInformation, ClientMetadata
from gateway.policy import PolicySettings, Resolver, check_fetched_uris, system_resolver
from gateway.rfc7591.validation import RegistrationPolicy, parse_metadata, validate
from gateway.rfc7592.records import management_data, registration_client_uri
from gateway.rfc7592.tokens import mint_registration_access_token
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
    """Legacy ``DCR_ALLOW_CLIENT_CREDENTIALS``: ``true`` widens ``policy.client_credentials`` to ``anyone``."""
    allow_jwks_uri: bool = False
    """Legacy ``DCR_ALLOW_JWKS_URI``: ``true`` widens ``policy.jwks_uri`` to ``anyone``."""
    stored_lengths: Mapping[str, StoredLength] = field(default_factory=dict)
    """The provider's column sizes, in its units (``Capabilities.stored_lengths``)."""
    message_template_fields: frozenset[str] = frozenset()
    """Fields the provider renders as message templates (``Capabilities.message_template_fields``)."""
    policy: PolicySettings = field(default_factory=PolicySettings)
    """The registration policy (:mod:`gateway.policy`)."""
    resolver: Resolver = system_resolver
    """Resolves hosts of URLs the provider will fetch (``jwks_uri``); injectable for tests."""


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
    body = bytearray()
    while len(body) <= max_bytes:  # read() returns what has arrived: a body in several TCP segments needs a loop
        chunk = await request.content.read(max_bytes + 1 - len(body))
        if not chunk:
            break
        body += chunk
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
    """What this issuer accepts for this caller: the deployment's policy settings intersected with the
    provider's discovery document (RFC 8414 section 2), privileges resolved for ``caller.authenticated``."""
    cached = await issuer.discovery.get()
    policy = settings.policy.with_legacy_flags(
        allow_client_credentials=settings.allow_client_credentials, allow_jwks_uri=settings.allow_jwks_uri
    )
    return RegistrationPolicy.from_settings(
        policy,
        cached.document if cached else None,
        authenticated=caller.authenticated,
        stored_lengths=settings.stored_lengths,
        message_template_fields=settings.message_template_fields,
    )


async def validate_registration(
    document: Mapping[str, Any], *, issuer: IssuerContext, settings: RegistrationSettings, caller: Caller = ANONYMOUS
) -> ClientMetadata:
    """Everything a registration (RFC 7591 section 3.1) or a replacement (RFC 7592 section 2.2) must satisfy:
    shape, defaults, and every policy, for the caller access control established."""
    metadata = parse_metadata(document)
    policy = await registration_policy(issuer, settings, caller)
    return await check_fetched_uris(validate(metadata, policy), settings.resolver)


def issue_credentials(
    metadata: ClientMetadata,
    settings: RegistrationSettings,
    *,
    registration_access_token_hash: str | None = None,
    caller: Caller = ANONYMOUS,
) -> NewClient:
    """Gateway-generated ``client_id``, and a 256-bit ``client_secret`` only when the auth method uses one
    (RFC 7591 section 3.2.1). A client never chooses either.

    With ``registration_access_token_hash`` (RFC 7592 section 3), the client record also keeps that hash, the
    caller's privilege level and the secret's hash (:func:`gateway.rfc7592.records.management_data`).
    """
    now = int(time.time())
    needs_secret = metadata.token_endpoint_auth_method in SECRET_AUTH_METHODS
    expires_at = now + settings.client_secret_expires_in if settings.client_secret_expires_in > 0 else 0
    client_secret = secrets.token_urlsafe(32) if needs_secret else None
    gateway_data = (
        management_data(
            token_hash=registration_access_token_hash,
            authenticated=caller.authenticated,
            client_secret=client_secret,
            software_statement=statement_metadata(caller.software_statement) if caller.software_statement else None,
        )
        if registration_access_token_hash is not None
        else {}
    )
    return NewClient(
        client_id=str(uuid.uuid4()),
        client_secret=client_secret,
        client_id_issued_at=now,
        client_secret_expires_at=expires_at if needs_secret else 0,
        metadata=metadata,
        gateway_data=gateway_data,
    )


@contextmanager
def provider_errors(issuer: IssuerContext) -> Iterator[None]:
    """Provider failures as RFC-shaped errors that never leak provider internals (shared by registration and
    the RFC 7592 client configuration endpoint): unreachable, failing or refusing the gateway's credentials is
    ``503 temporarily_unavailable`` with ``Retry-After``; refused metadata is ``invalid_client_metadata`` (or
    ``invalid_redirect_uri``). :class:`~adapters.base.ClientNotFound` passes through: its meaning depends on
    the endpoint."""
    try:
        yield
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


async def create(adapter: ProviderAdapter, issuer: IssuerContext, client: NewClient) -> ManagedClient:
    """One admin call; provider failures become RFC-shaped errors and never leak provider internals.

    A create whose answer was lost (a timeout, a connection dropped after the request went out, a 5xx) may
    still have stored the client: it is removed, best effort, so no client the caller never learned of is left
    behind (issue 4 item 6). A create that was never sent (the connection was refused or never established:
    ``request_sent`` false) changed nothing, and is not reported as an unknown outcome.
    """
    with provider_errors(issuer):
        try:
            return await adapter.create_client(issuer.key, client)
        except ProviderUnavailable as exc:
            if exc.request_sent:
                await remove_client(adapter, issuer, client.client_id, reason="create_outcome_unknown", created=False)
            raise


async def remove_client(
    adapter: ProviderAdapter, issuer: IssuerContext, client_id: str, *, reason: str, created: bool
) -> None:
    """Delete a client the gateway created (``created``) or may have created but cannot hand over: no
    half-created clients. Never raises, the caller is already answering an error; a client known to exist
    that could not be removed is logged as an error for an operator (``dcr-gateway clients``)."""
    try:
        await adapter.delete_client(issuer.key, client_id)
    except ClientNotFound:
        log.info("client.rollback_not_needed", issuer=issuer.issuer, client_id=client_id, reason=reason)
        return
    except Exception as exc:
        level = log.error if created else log.warning
        level("client.rollback_failed", issuer=issuer.issuer, client_id=client_id, reason=reason, cause=repr(exc))
        return
    log.warning("client.rolled_back", issuer=issuer.issuer, client_id=client_id, reason=reason)


def client_information(
    managed: ManagedClient,
    issued: NewClient,
    *,
    registration_client_uri: str | None = None,
    registration_access_token: str | None = None,
) -> ClientInformation:
    """RFC 7591 section 3.2.1 response: what the provider holds, with the credentials just issued, and the
    client configuration endpoint with its token (RFC 7592 section 3)."""
    # Providers may hold a secret the method never uses (Hydra generates one for private_key_jwt): a secret is
    # returned only when the registered method authenticates with it (RFC 7591 section 3.2.1).
    uses_secret = managed.metadata.token_endpoint_auth_method in SECRET_AUTH_METHODS
    return ClientInformation(
        client_id=managed.client_id,
        client_secret=(managed.client_secret or issued.client_secret) if uses_secret else None,
        client_id_issued_at=managed.client_id_issued_at or issued.client_id_issued_at,
        client_secret_expires_at=issued.client_secret_expires_at,
        metadata=managed.metadata,
        registration_client_uri=registration_client_uri,
        registration_access_token=registration_access_token,
    )


def registered_response(
    managed: ManagedClient, issued: NewClient, issuer: IssuerContext, registration_access_token: str
) -> dict[str, Any]:
    """The 201 body: the client information plus its RFC 7592 management credentials."""
    information = client_information(
        managed,
        issued,
        registration_client_uri=registration_client_uri(issuer.registration_endpoint, managed.client_id),
        registration_access_token=registration_access_token,
    )
    return information.to_response()


# ----------------------------------------------------------------------------------------- handler


def registration_handler(
    *, issuer: IssuerContext, adapter: ProviderAdapter, settings: RegistrationSettings
) -> Callable[[web.Request], Awaitable[web.StreamResponse]]:
    """``POST {issuer path}{registration path}`` for one issuer."""

    async def register(request: web.Request) -> web.StreamResponse:
        access = registration_access(request, issuer)
        token = access.authenticate(request)  # RFC 7591 section 3: initial access token, before the body is read
        document = await read_json_object(request, settings.max_body_bytes)
        admission = access.admit(document, token)  # section 2.3: software statement verified, claims merged; mode
        caller = Caller(
            source=caller_source(request),
            authenticated=admission.authenticated,
            software_statement=admission.software_statement,
        )
        metadata = await validate_registration(admission.document, issuer=issuer, settings=settings, caller=caller)
        await access.redeem(token)  # a use of a max_uses token counts once the metadata passed
        registration_access_token, token_hash = mint_registration_access_token()
        issued = issue_credentials(metadata, settings, registration_access_token_hash=token_hash, caller=caller)
        managed = await create(adapter, issuer, issued)
        try:
            body = registered_response(managed, issued, issuer, registration_access_token)
            response = web.json_response(body, status=201, headers=NO_STORE)
        except Exception as exc:
            # Created but not handed over: remove it rather than leave a client nobody holds credentials for.
            # The exception's type only: its message could quote values (pydantic echoes inputs, secrets too).
            log.error(
                "client.response_failed", issuer=issuer.issuer, client_id=managed.client_id, cause=type(exc).__name__
            )
            await remove_client(adapter, issuer, managed.client_id, reason="response_failed", created=True)
            raise ServerError("the registration could not be completed; nothing was registered") from exc
        log.info(
            "client.registered",
            issuer=issuer.issuer,
            client_id=managed.client_id,
            token_endpoint_auth_method=managed.metadata.token_endpoint_auth_method,
            redirect_uris=len(managed.metadata.redirect_uris or []),
        )
        return response

    return register
