"""The client configuration endpoint, RFC 7592 section 2: ``{issuer}{registration_path}/{client_id}``.

Each method is a short list of named steps; every step returns the next one's input or raises an
:class:`~gateway.oauth.errors.OAuthError` (the registration pipeline, :mod:`gateway.pipeline`, adds rate limits, CORS,
``no-store``, the preflight and 405)::

    GET    (2.1)  bearer token -> authorize (read the client, check the token) -> 200 client information
    PUT    (2.2)  bearer token -> authorize -> read body -> reserved fields, client_id, client_secret
                  -> validate (the registration's rules, same privilege level) -> replace -> 200
    DELETE (2.3)  bearer token -> authorize -> delete -> 204

Only clients the gateway manages are reachable: an unknown client, an unmanaged one and a wrong token all get
the same ``401 invalid_token`` (no enumeration), after the same hashing work.

Client secrets on read: Keycloak returns a client's secret, so GET answers it (RFC 7592 section 2.1: "if
applicable"). Hydra stores only a hash of it and never returns it, and the gateway keeps no copy, so on Hydra
GET and PUT answer ``client_secret_expires_at`` without ``client_secret``; the client keeps the secret it was
given at registration (or by the update that issued it).
"""

from __future__ import annotations

import json
import secrets
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import structlog
from aiohttp import hdrs, web

from adapters.base import (
    ClientNotFound,
    ManagedClient,
    NewClient,
    ProviderAdapter,
    ProviderRejected,
    ProviderUnavailable,
    addressable_client_id,
)
from gateway.access.software_statement import merge_software_statement
from gateway.lifecycle import HandedOverResponse, Lifecycle
from gateway.limits.guard import Limits
from gateway.oauth.bearer import bearer_token
from gateway.oauth.errors import InvalidClientMetadata, InvalidToken, ServerError
from gateway.oauth.metadata import SECRET_AUTH_METHODS, ClientInformation, ClientMetadata
from gateway.observability import audit
from gateway.observability.audit import AuditLog, AuditRecord
from gateway.observability.metrics import GatewayMetrics
from gateway.pipeline import NO_STORE, RegistrationPipeline, Step, read_json_object
from gateway.registration.records import (
    client_secret_matches,
    current_client_secret,
    registration_client_uri,
    software_statement_metadata,
    updated_data,
    uses_secret,
    was_authenticated,
)
from gateway.registration.service import (
    Caller,
    IssuerContext,
    RegistrationSettings,
    provider_errors,
    validate_registration,
)
from gateway.registration.tokens import TOKEN_HASH_KEY, mint_registration_access_token, verify_registration_access_token

log = structlog.get_logger(__name__)

RESERVED_FIELDS = (
    "registration_access_token",
    "registration_client_uri",
    "client_secret_expires_at",
    "client_id_issued_at",
)
"""RFC 7592 section 2.2: "The updated client metadata fields request MUST NOT include the
'registration_access_token', 'registration_client_uri', 'client_secret_expires_at', or 'client_id_issued_at'
fields described in Section 3." """

_NOT_AUTHORIZED = "the registration access token is not valid for this client"


# ------------------------------------------------------------------------------------ pure steps


def check_replacement_fields(document: Mapping[str, Any], client_id: str) -> None:
    """RFC 7592 section 2.2: no server-provisioned field in an update, and the body's ``client_id`` "MUST be
    the same as its currently issued client identifier"."""
    for name in RESERVED_FIELDS:
        if name in document:
            raise InvalidClientMetadata(
                f"{name}: must not be sent in an update; it is provisioned by the server (RFC 7592 section 2.2)"
            )
    if "client_id" not in document:
        raise InvalidClientMetadata("client_id: required in an update, equal to this client's client_id")
    if document["client_id"] != client_id:
        raise InvalidClientMetadata("client_id: must equal the client_id of this registration_client_uri")


def check_client_secret(document: Mapping[str, Any], current: ManagedClient) -> None:
    """RFC 7592 section 2.2: "If the client includes the 'client_secret' field in the request, the value of
    this field MUST match the currently issued client secret for that client. The client MUST NOT be allowed to
    overwrite its existing client secret with its own chosen value." """
    if "client_secret" not in document:
        return
    presented = document["client_secret"]
    if not isinstance(presented, str) or not client_secret_matches(presented, current):
        raise InvalidClientMetadata(
            "client_secret: does not match the currently issued client secret; omit it to keep the secret"
        )


@dataclass(frozen=True)
class Replacement:
    """An update ready for the provider, with the credentials it issues (RFC 7592 section 2.2)."""

    client: NewClient
    client_secret: str | None
    """A secret issued by this update (the auth method moved from one without a secret to one with)."""
    registration_access_token: str | None
    """A rotated registration access token, when rotation is on."""


def replacement(
    current: ManagedClient,
    metadata: ClientMetadata,
    *,
    rotate_registration_access_token: bool,
) -> Replacement:
    """The full replacement of ``current`` by ``metadata`` (RFC 7592 section 2.2: "Valid values of client
    metadata fields in this request MUST replace, not augment, the values previously associated with that
    client. Omitted fields MUST be treated as null or empty values").

    Kept: ``client_id``, ``client_id_issued_at`` and the secret while the auth method uses one. An auth method
    that starts using a secret gets a new 256-bit one; one that stops drops it.
    """
    needs_secret = metadata.token_endpoint_auth_method in SECRET_AUTH_METHODS
    had_secret = uses_secret(current)
    issued_secret = secrets.token_urlsafe(32) if needs_secret and not had_secret else None
    # RFC 7591 section 3.2.1: 0, a secret does not expire (a new one included); none without a secret
    expires_at = current.client_secret_expires_at if needs_secret and not issued_secret else 0
    token, token_hash = mint_registration_access_token() if rotate_registration_access_token else (None, None)
    client = NewClient(
        client_id=current.client_id,
        client_secret=issued_secret,  # None keeps the provider's current secret
        client_id_issued_at=current.client_id_issued_at,
        client_secret_expires_at=expires_at,
        metadata=metadata,
        gateway_data=updated_data(
            current.gateway_data,
            token_hash=token_hash,
            client_secret=issued_secret,
            secret_dropped=had_secret and not needs_secret,
        ),
    )
    return Replacement(client=client, client_secret=issued_secret, registration_access_token=token)


def configuration_response(
    client: ManagedClient,
    *,
    client_uri: str,
    registration_access_token: str,
    issued_client_secret: str | None = None,
) -> dict[str, Any]:
    """RFC 7592 section 3, client information response: everything registered, the secret where the provider
    returns it (or this request issued it), the endpoint and its token."""
    information = ClientInformation(
        client_id=client.client_id,
        client_secret=issued_client_secret or current_client_secret(client),
        client_id_issued_at=client.client_id_issued_at,
        client_secret_expires_at=client.client_secret_expires_at if uses_secret(client) else None,
        metadata=client.metadata,
        registration_client_uri=client_uri,
        registration_access_token=registration_access_token,
    )
    return information.to_response()


# ----------------------------------------------------------------------------------------- endpoint


class UpdatedResponse(HandedOverResponse):
    """The 200 of an RFC 7592 update: if it cannot be written, the previous registration is restored."""


@dataclass(frozen=True)
class ClientConfigurationEndpoint:
    """RFC 7592 client configuration endpoint for one issuer; :meth:`routes` gives its aiohttp routes. Everything
    it uses is handed over when the app is built."""

    issuer: IssuerContext
    adapter: ProviderAdapter
    settings: RegistrationSettings
    limits: Limits
    """Every method counts against the rate limits (operation ``manage``, in the pipeline); a DELETE frees a slot
    of the managed-client quota."""
    rotate_registration_access_token: bool = False
    lifecycle: Lifecycle | None = None
    """The app's (:mod:`gateway.lifecycle`): an update runs to its answer even when the request is cancelled, and
    the shutdown waits for a restore (see :meth:`update`)."""
    audit_log: AuditLog | None = None
    metrics: GatewayMetrics | None = None

    def routes(self, pipeline: RegistrationPipeline, path: str) -> list[web.RouteDef]:
        """``path`` ends with ``{client_id}``: GET, PUT, DELETE, through the registration pipeline."""
        return pipeline.routes(
            path,
            {
                hdrs.METH_GET: Step(self.read, rate_limit="manage"),
                hdrs.METH_PUT: Step(self.update, rate_limit="manage"),
                hdrs.METH_DELETE: Step(self.delete, rate_limit="manage"),
            },
        )

    # -------------------------------------------------------------------------------- authorization

    async def authorize(self, request: web.Request, issuer: IssuerContext) -> tuple[ManagedClient, str]:
        """The managed client named by the path, if the request's Bearer token is its registration access
        token (RFC 7592 section 2). Unknown, unmanaged and wrongly-authorized look the same from outside.

        The path segment is client-chosen text: one that no client can have as its id
        (:func:`~adapters.base.addressable_client_id`: ``..%2F``, ``/``, NUL and other control characters, bytes
        that are not UTF-8, more than 255 characters) is "not found" without a provider call (RFC 7592 section
        2.1: "If the client does not exist on this server, the server MUST respond with HTTP 401")."""
        token = bearer_token(request, credential="registration access token")
        if token is None:
            raise InvalidToken(
                "a registration access token is required: Authorization: Bearer <token>", token_presented=False
            )
        client_id = request.match_info["client_id"]
        client: ManagedClient | None = None
        if addressable_client_id(client_id):
            try:
                with provider_errors(issuer):
                    client = await _provider_read(self.adapter, issuer, client_id)
            except ClientNotFound:
                client = None
        stored = client.gateway_data.get(TOKEN_HASH_KEY) if client is not None else None
        # Hash and compare in every branch: the answer takes as long for an unknown client as for a bad token.
        if not verify_registration_access_token(token, stored) or client is None:
            log.info("client_configuration.unauthorized", issuer=issuer.issuer, known_client=client is not None)
            raise InvalidToken(_NOT_AUTHORIZED)
        audit.note(client_id=client.client_id)  # only once authorized: the path is the caller's text until then
        return client, token

    # ---------------------------------------------------------------------------------------- methods

    async def read(self, request: web.Request) -> web.StreamResponse:
        """RFC 7592 section 2.1, client read request: 200 with the client information response."""
        issuer = self.issuer
        client, token = await self.authorize(request, issuer)
        log.info("client.read", issuer=issuer.issuer, client_id=client.client_id)
        body = configuration_response(
            client,
            client_uri=registration_client_uri(issuer.registration_endpoint, client.client_id),
            registration_access_token=token,
        )
        return web.json_response(body, headers=NO_STORE)

    async def update(self, request: web.Request) -> web.StreamResponse:
        """RFC 7592 section 2.2, client update request: a full replacement, validated like a registration.

        The client never loses access because its answer did not arrive: the update may issue credentials that
        exist only in this 200 (a rotated registration access token, section 2.2 / 3; a new client secret) and
        invalidate the ones the client holds. So, as a registration's create
        (:meth:`gateway.lifecycle.Lifecycle.create_and_answer`), the provider's update and the building of the 200
        are one section that a cancelled request (a client that went away, the shutdown's bound) does not
        interrupt; if the 200 then cannot be handed over (the request was cancelled, or its bytes could not be
        given to the connection: :class:`~gateway.lifecycle.HandedOverResponse`), the registration as read
        before the update is written back (:meth:`_restore`), so the token and secret the client holds work
        again. The shutdown waits for that restore before it closes the adapter. Recorded as the audit event
        ``CLIENT_UPDATE`` with ``reason: "not_handed_over"`` and counted in
        ``dcr_gateway_client_updates_restored_total``. (Refusing updates while draining would not be enough: a
        client can go away at any time, and an update started before the drain can still be cut.)"""
        issuer = self.issuer
        current, token = await self.authorize(request, issuer)
        document = await read_json_object(request, self.settings.max_body_bytes, self.settings.body_timeout)
        check_replacement_fields(document, current.client_id)
        check_client_secret(document, current)
        # what a software statement vouched for at registration still takes precedence (RFC 7591 section 3.1.1)
        statement = software_statement_metadata(current)
        document = merge_software_statement(document, statement)
        caller = Caller(
            source=self.limits.rate.source_of(request),
            authenticated=was_authenticated(current),
            software_statement=statement,
        )
        metadata = await validate_registration(document, issuer=issuer, settings=self.settings, caller=caller)
        planned = replacement(
            current,
            metadata,
            rotate_registration_access_token=self.rotate_registration_access_token,
        )
        lifecycle = self.lifecycle or Lifecycle()
        record = audit.current()  # the request's: a restore may run after the request's context ended
        return await lifecycle.create_and_answer(
            self._replace(current, planned, token, lifecycle, record),
            answered=lambda answer: answer.status == 200,
            roll_back=lambda _: self._restore(current, "request_cancelled", record),
        )

    async def _replace(
        self,
        current: ManagedClient,
        planned: Replacement,
        token: str,
        lifecycle: Lifecycle,
        record: AuditRecord | None,
    ) -> web.StreamResponse:
        """The provider's update and the 200 that hands its credentials over (one section, see :meth:`update`)."""
        issuer = self.issuer
        try:
            with provider_errors(issuer):
                updated = await self.adapter.update_client(issuer.key, planned.client)
        except ClientNotFound:  # deleted since it was authorized
            raise InvalidToken(_NOT_AUTHORIZED) from None
        try:
            body = configuration_response(
                updated,
                client_uri=registration_client_uri(issuer.registration_endpoint, updated.client_id),
                registration_access_token=planned.registration_access_token or token,
                issued_client_secret=planned.client_secret,
            )
            response = UpdatedResponse(
                on_undelivered=lambda: lifecycle.undelivered(
                    lambda: self._restore(current, "answer_not_written", record)
                ),
                text=json.dumps(body),
                status=200,
                headers=NO_STORE,
                content_type="application/json",
            )
        except Exception as exc:  # applied but not answerable: put the registration back as the client holds it
            log.error(
                "client.response_failed", issuer=issuer.issuer, client_id=current.client_id, cause=type(exc).__name__
            )
            await self._restore(current, "response_failed", record)
            raise ServerError("the update could not be completed; the registration is unchanged") from exc
        log.info(
            "client.updated",
            issuer=issuer.issuer,
            client_id=updated.client_id,
            token_endpoint_auth_method=updated.metadata.token_endpoint_auth_method,
            redirect_uris=len(updated.metadata.redirect_uris or []),
            client_secret_issued=planned.client_secret is not None,
            registration_access_token_rotated=planned.registration_access_token is not None,
        )
        return response

    async def _restore(self, current: ManagedClient, reason: str, record: AuditRecord | None) -> None:
        """Put back the registration ``current`` (as read before the update) whose update's answer was not handed
        over: its metadata, its gateway record (the registration access token hash the client still holds, the
        secret hash) and its secret where the provider returned it (Keycloak; Hydra keeps only a hash, and an
        update without a secret keeps the one it holds). Never raises; a failure is logged for an operator."""
        issuer = self.issuer
        previous = NewClient(
            client_id=current.client_id,
            client_secret=current.client_secret if uses_secret(current) else None,
            client_id_issued_at=current.client_id_issued_at,
            client_secret_expires_at=current.client_secret_expires_at,
            metadata=current.metadata,
            gateway_data=dict(current.gateway_data),
        )
        log.warning("client.update_not_handed_over", issuer=issuer.issuer, client_id=current.client_id, reason=reason)
        try:
            await self.adapter.update_client(issuer.key, previous)
        except Exception as exc:
            restored = False
            log.error(
                "client.restore_failed", issuer=issuer.issuer, client_id=current.client_id, cause=type(exc).__name__
            )
        else:
            restored = True
            log.warning("client.restored", issuer=issuer.issuer, client_id=current.client_id, reason=reason)
        if self.metrics is not None:
            self.metrics.update_restored(issuer=issuer.issuer, reason=reason)
        if self.audit_log is not None:
            self.audit_log.emit_not_handed_over(
                record, "update", issuer=issuer.issuer, client_id=current.client_id, undone=restored
            )

    async def delete(self, request: web.Request) -> web.StreamResponse:
        """RFC 7592 section 2.3, client delete request: 204; the client and its token stop working."""
        issuer = self.issuer
        client, _ = await self.authorize(request, issuer)
        try:
            with provider_errors(issuer):
                try:
                    await self.adapter.delete_client(issuer.key, client.client_id)
                except ProviderRejected as exc:
                    raise ProviderUnavailable(f"delete refused: {exc}") from exc
        except ClientNotFound:  # deleted concurrently: the token is no longer valid either
            raise InvalidToken(_NOT_AUTHORIZED) from None
        self.limits.quota.client_deleted(issuer.key)
        log.info("client.deleted", issuer=issuer.issuer, client_id=client.client_id)
        return web.Response(status=204, headers=NO_STORE)


async def _provider_read(adapter: ProviderAdapter, issuer: IssuerContext, client_id: str) -> ManagedClient:
    """A read the provider refuses (a 4xx other than not-found) is the provider's trouble, not bad metadata."""
    try:
        return await adapter.read_client(issuer.key, client_id)
    except ProviderRejected as exc:
        raise ProviderUnavailable(f"read refused: {exc}") from exc
