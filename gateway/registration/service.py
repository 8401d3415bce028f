"""The registration service: what RFC 7591 registration (section 3.1) and the RFC 7592 client configuration
endpoint (section 2) share, below their HTTP handlers.

- :class:`IssuerContext`, :class:`Caller`, :class:`RegistrationSettings`: who registers where, under which rules;
- :func:`validate_registration`: shape, defaults and every policy (:mod:`gateway.policy`) for the caller;
- :func:`issue_credentials`: the gateway-generated ``client_id`` and secret (section 3.2.1);
- :func:`provider_errors`: provider failures as RFC-shaped errors that never leak provider internals;
- :func:`create` and :func:`remove_client`: one admin call, and the rollback that leaves nothing half-created;
- :func:`client_information`: the section 3.2.1 / RFC 7592 section 3 response body.
"""

from __future__ import annotations

import secrets
import time
import uuid
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

import structlog
from aiohttp import hdrs

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
from gateway.access.software_statement import statement_metadata
from gateway.oauth.errors import InvalidClientMetadata, InvalidRedirectUri, ServerError, TemporarilyUnavailable
from gateway.oauth.lengths import StoredLength
from gateway.oauth.metadata import SECRET_AUTH_METHODS, ClientInformation, ClientMetadata, parse_metadata
from gateway.policy import PolicySettings, RegistrationPolicy, Resolver, check_fetched_uris, system_resolver, validate
from gateway.registration.records import management_data
from gateway.rfc8414.cache import CachedDocument, DiscoveryCache

log = structlog.get_logger(__name__)

RETRY_AFTER_SECONDS = 5


class PolicyCache:
    """The resolved :class:`~gateway.policy.RegistrationPolicy` of one issuer, built once per policy settings,
    served discovery document (RFC 8414 section 2: what the provider advertises) and caller privilege, instead of
    once per request.

    Entries are keyed by identity: the app builds one :class:`RegistrationSettings`, and the discovery cache keeps
    the identical :class:`~gateway.rfc8414.cache.CachedDocument` while the provider's document is unchanged, so a
    new document (or new settings) rebuilds the policy at the next registration. It holds the objects it was
    built from, so an identity never outlives them (no reuse of a freed object's id)."""

    def __init__(self) -> None:
        self._settings: RegistrationSettings | None = None
        self._document: CachedDocument | None = None
        self._policies: dict[bool, RegistrationPolicy] = {}

    def policy(
        self, settings: RegistrationSettings, cached: CachedDocument | None, *, authenticated: bool
    ) -> RegistrationPolicy:
        """The policy for ``settings``, ``cached`` (``None``: no document yet) and the caller's privilege."""
        if settings is not self._settings or cached is not self._document:
            self._settings, self._document, self._policies = settings, cached, {}
        policy = self._policies.get(authenticated)
        if policy is None:
            policy = self._policies[authenticated] = RegistrationPolicy.from_settings(
                settings.policy,
                cached.document if cached else None,
                authenticated=authenticated,
                stored_lengths=settings.stored_lengths,
                message_template_fields=settings.message_template_fields,
            )
        return policy


@dataclass(frozen=True)
class IssuerContext:
    """One issuer the gateway serves: where its documents and endpoints are, and which provider holds it."""

    key: str
    path: str
    issuer: str
    registration_endpoint: str
    discovery: DiscoveryCache
    policies: PolicyCache = field(default_factory=PolicyCache, compare=False, repr=False)
    """This issuer's resolved registration policies (:func:`registration_policy`)."""


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
    body_timeout: float = 10.0
    """Seconds a request body may take to arrive (408 after that)."""
    stored_lengths: Mapping[str, StoredLength] = field(default_factory=dict)
    """The provider's column sizes, in its units (``Capabilities.stored_lengths``)."""
    message_template_fields: frozenset[str] = frozenset()
    """Fields the provider renders as message templates (``Capabilities.message_template_fields``)."""
    policy: PolicySettings = field(default_factory=PolicySettings)
    """The registration policy (:mod:`gateway.policy`)."""
    resolver: Resolver = system_resolver
    """Resolves hosts of URLs the provider will fetch (``jwks_uri``); injectable for tests."""


async def registration_policy(
    issuer: IssuerContext, settings: RegistrationSettings, caller: Caller = ANONYMOUS
) -> RegistrationPolicy:
    """What this issuer accepts for this caller: the deployment's policy settings intersected with the
    provider's discovery document (RFC 8414 section 2), privileges resolved for ``caller.authenticated``."""
    cached = await issuer.discovery.get()
    return issuer.policies.policy(settings, cached, authenticated=caller.authenticated)


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
    caller's privilege level and the secret's hash (:func:`gateway.registration.records.management_data`).
    """
    now = int(time.time())
    needs_secret = metadata.token_endpoint_auth_method in SECRET_AUTH_METHODS
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
        client_secret_expires_at=0,  # RFC 7591 section 3.2.1: 0, the secret does not expire
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
) -> bool:
    """Delete a client the gateway created (``created``) or may have created but cannot hand over: no
    half-created clients. Never raises, the caller is already answering an error; a client known to exist
    that could not be removed is logged as an error for an operator (``dcr-gateway clients``). ``True`` when the
    client is gone (removed, or it was not there)."""
    try:
        await adapter.delete_client(issuer.key, client_id)
    except ClientNotFound:
        log.info("client.rollback_not_needed", issuer=issuer.issuer, client_id=client_id, reason=reason)
        return True
    except Exception as exc:
        level = log.error if created else log.warning
        level("client.rollback_failed", issuer=issuer.issuer, client_id=client_id, reason=reason, cause=repr(exc))
        return False
    log.warning("client.rolled_back", issuer=issuer.issuer, client_id=client_id, reason=reason)
    return True


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
