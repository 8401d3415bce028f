"""The client registration endpoint, RFC 7591 section 3.1, as a short list of named steps::

    initial access token -> read body (size limit, deadline) -> software statement -> validate (defaults + rules)
    -> quota slot -> redeem the initial access token -> issue credentials -> create -> respond

Each step either returns the next step's input or raises an :class:`~gateway.oauth.errors.OAuthError`, which
the registration pipeline (:mod:`gateway.pipeline`: rate limits, CORS, ``no-store``, 405) turns into the RFC 7591
section 3.2.2 JSON response. What registration shares with RFC 7592 lives in :mod:`gateway.registration`.
"""

from __future__ import annotations

import json
from typing import Any

import structlog
from aiohttp import web

from adapters.base import ManagedClient, NewClient, ProviderAdapter
from gateway.access.control import RegistrationAccess
from gateway.access.tokens import InitialAccessToken
from gateway.lifecycle import HandedOverResponse, Lifecycle
from gateway.limits.guard import Limits
from gateway.oauth.errors import ServerError
from gateway.oauth.metadata import ClientMetadata
from gateway.observability import audit
from gateway.observability.audit import AuditLog, AuditRecord
from gateway.observability.metrics import GatewayMetrics
from gateway.pipeline import NO_STORE, Handler, read_json_object
from gateway.registration.records import registration_client_uri
from gateway.registration.service import (
    Caller,
    IssuerContext,
    RegistrationSettings,
    client_information,
    create,
    issue_credentials,
    remove_client,
    validate_registration,
)
from gateway.registration.tokens import mint_registration_access_token

log = structlog.get_logger(__name__)


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


class CreatedResponse(HandedOverResponse):
    """The 201 of a registration, knowing the client it hands over (to roll it back if it cannot be written)."""

    def __init__(self, *, client_id: str, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.client_id = client_id
        self.quota_counted = False
        """The quota counted this client (:meth:`~gateway.limits.quota.Reservation.created`): a roll-back frees
        its slot."""


def registration_handler(
    *,
    issuer: IssuerContext,
    adapter: ProviderAdapter,
    settings: RegistrationSettings,
    access: RegistrationAccess,
    limits: Limits,
    lifecycle: Lifecycle | None = None,
    audit_log: AuditLog | None = None,
    metrics: GatewayMetrics | None = None,
) -> Handler:
    """``POST {issuer path}{registration path}`` for one issuer; everything it uses is handed over here, when
    the app is built.

    The provider's create and the 201 that hands its credentials over are one section
    (:meth:`gateway.lifecycle.Lifecycle.create_and_answer`): a cancelled request (the shutdown's bound) does not
    interrupt it, and a client whose 201 could not be written (the request was cancelled, the client went away)
    is deleted again, so none is kept that nobody holds credentials for (RFC 7591 section 3.2.1).

    Such a roll-back is recorded as what it is: the audit event ``CLIENT_DELETE`` with ``reason:
    "not_handed_over"`` and caller ``gateway`` (:data:`gateway.observability.audit.NOT_HANDED_OVER`; the
    request's own event says ``CLIENT_REGISTER`` 201 when the 201 was built but could not be written, or
    ``CLIENT_REGISTER_ERROR`` 499 when the request was cancelled first),
    ``dcr_gateway_registrations_rolled_back_total{reason}`` counts it, and the quota slot the 201 had kept is
    freed (:meth:`~gateway.limits.quota.ClientQuota.client_deleted`)."""
    lifecycle = lifecycle or Lifecycle()

    async def register(request: web.Request) -> web.StreamResponse:
        # The rate limits ran in the pipeline. A quota slot (403) is taken only once the body is read and the
        # metadata valid, so nothing a client controls (a body that never arrives) happens while a slot is held;
        # it is kept only on 201.
        token = access.authenticate(request)  # RFC 7591 section 3: initial access token, before the body is read
        document = await read_json_object(request, settings.max_body_bytes, settings.body_timeout)
        audit.note(software_statement="software_statement" in document)  # presented, verified or not
        admission = access.admit(document, token)  # section 2.3: software statement verified, claims merged; mode
        caller = Caller(
            source=limits.rate.source_of(request),
            authenticated=admission.authenticated,
            software_statement=admission.software_statement,
        )
        metadata = await validate_registration(admission.document, issuer=issuer, settings=settings, caller=caller)
        record = audit.current()  # the request's: a roll-back may run after the request's context ended
        async with limits.quota.reserve(issuer.key) as slot:
            response = await lifecycle.create_and_answer(
                registration(metadata, token, caller, record),
                answered=lambda answer: answer.status == 201,
                roll_back=lambda answer: roll_back(answer, "request_cancelled", record),
            )
            if response.status == 201:
                slot.created()
                if isinstance(response, CreatedResponse):
                    response.quota_counted = True
        return response

    async def roll_back(response: web.StreamResponse, reason: str, record: AuditRecord | None) -> None:
        client_id = getattr(response, "client_id", None)
        if client_id is None:
            return
        log.warning("client.not_handed_over", issuer=issuer.issuer, client_id=client_id, reason=reason)
        removed = await remove_client(adapter, issuer, client_id, reason=reason, created=True)
        if removed and getattr(response, "quota_counted", False):
            limits.quota.client_deleted(issuer.key)
        if metrics is not None:
            metrics.registration_rolled_back(issuer=issuer.issuer, reason=reason)
        if audit_log is not None:
            audit_log.emit_not_handed_over(record, "delete", issuer=issuer.issuer, client_id=client_id, undone=removed)

    async def registration(
        metadata: ClientMetadata, token: InitialAccessToken | None, caller: Caller, record: AuditRecord | None
    ) -> web.StreamResponse:
        await access.redeem(token)  # a use of a max_uses token counts once the metadata passed and a slot is held
        registration_access_token, token_hash = mint_registration_access_token()
        issued = issue_credentials(metadata, settings, registration_access_token_hash=token_hash, caller=caller)
        managed = await create(adapter, issuer, issued)
        audit.note(client_id=managed.client_id)
        try:
            body = registered_response(managed, issued, issuer, registration_access_token)
            response = CreatedResponse(
                client_id=managed.client_id,
                on_undelivered=lambda: lifecycle.undelivered(lambda: roll_back(response, "answer_not_written", record)),
                text=json.dumps(body),
                status=201,
                headers=NO_STORE,
                content_type="application/json",
            )
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
