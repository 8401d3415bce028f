"""Client ID Metadata Documents turned into provider clients (draft-ietf-oauth-client-id-metadata-document;
MCP 2026-07-28 basic/authorization/client-registration).

When an authorization request's ``client_id`` is an https URL, :meth:`DocumentClients.resolve`:

1. checks the URL (section 3: https, a path, no dot segments, fragment, userinfo; the host allow/deny lists);
2. gets the document through the hardened fetcher and its cache (:mod:`gateway.cimd`: special-use addresses
   refused, the connection pinned to the checked address, no redirects, 200 only, JSON, size cap, timeouts,
   ``Cache-Control``/``ETag`` within a floor and a ceiling, errors never cached);
3. turns it into RFC 7591 client metadata (section 4.1: ``client_id`` equal to the URL, no shared secret) and runs
   it through the same registration policy as a dynamic registration (:mod:`gateway.policy`);
4. puts the client's host in its display name (MCP: "MUST clearly display the redirect URI hostname"; the draft's
   section 6.4 "SHOULD display the hostname of the client_id"), so the provider's consent page shows it;
5. creates the provider client, or brings it up to date when the document changed (managed, marked as coming from
   a document, with the document's SHA-256 and fetch time), counted by the rate limits and the client quota like a
   registration.

Nothing is created in the provider for a refused URL or document.
"""

from __future__ import annotations

import asyncio
import dataclasses
import re
import time
from collections import OrderedDict
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

import structlog
from aiohttp import web

from adapters.base import DOCUMENT_SOURCE, DocumentClients, ManagedClient, NewClient, ProviderAdapter, with_deployment
from gateway.cimd.cache import DocumentCache
from gateway.cimd.document import client_metadata
from gateway.cimd.errors import DocumentRefused, show
from gateway.cimd.fetch import FetchedDocument
from gateway.cimd.settings import CimdSettings
from gateway.cimd.url import check_client_id_url
from gateway.limits.guard import Limits
from gateway.oauth.errors import InvalidClient, InvalidClientMetadata
from gateway.oauth.metadata import ClientMetadata
from gateway.policy import RegistrationPolicy, check_fetched_uris, validate
from gateway.policy.rules import scopes_allowed
from gateway.policy.settings import ScopeMode
from gateway.registration.service import IssuerContext, RegistrationSettings, provider_errors, registration_policy

log = structlog.get_logger(__name__)

SUPPORTED_GRANT_TYPES = frozenset({"authorization_code", "refresh_token"})
"""What a document client may use: the authorization code grant and refresh (a public or ``private_key_jwt``
client of an MCP server); anything else a document lists is dropped, not fatal (Claude's lists jwt-bearer)."""

SCOPE_TOKEN = re.compile(r"[\x21\x23-\x5b\x5d-\x7e]{1,64}")
"""RFC 6749 section 3.3 ``scope-token`` (at most 64 characters for one the gateway registers on its own)."""
MAX_LEARNED_SCOPES = 16
"""Most scope values a document that names none gets from its authorization requests (anyone can send any)."""


def _learnable(token: str) -> bool:
    return SCOPE_TOKEN.fullmatch(token) is not None


MAX_REMEMBERED = 10_000
LOCK_STRIPES = 64


@dataclass(frozen=True)
class ResolvedDocument:
    """A document client ready at the provider."""

    url: str
    stored_client_id: str
    """What the provider knows it by (:meth:`adapters.base.DocumentClients.stored_client_id`)."""
    metadata: ClientMetadata
    """As registered (after the policy): ``redirect_uris`` are what the authorization request is checked against."""
    document_sha256: str


def display_name(metadata: ClientMetadata, url: str) -> ClientMetadata:
    """``client_name`` followed by the ``client_id`` URL's host and the hosts its redirect URIs go to, in
    parentheses, so the provider's consent page shows who is asking and where the browser will be sent, not only what
    the document says about itself (the draft's section 6.4 "SHOULD display the hostname of the client_id"; MCP
    2026-07-28 security considerations: "MUST clearly display the redirect URI hostname"). The name is shortened
    first, so the hosts always show."""
    host = urlsplit(url).hostname or ""
    redirect_hosts = sorted({_redirect_host(uri) for uri in metadata.redirect_uris or []} - {host})
    shown_hosts = ", ".join(redirect_hosts[:MAX_SHOWN_HOSTS]) + (
        ", ..." if len(redirect_hosts) > MAX_SHOWN_HOSTS else ""
    )
    where = f"{host}, redirects to {shown_hosts}" if redirect_hosts else host
    name = (metadata.client_name or host).strip()
    if len(name) > MAX_SHOWN_NAME:
        name = name[: MAX_SHOWN_NAME - 3].rstrip() + "..."
    return metadata.model_copy(update={"client_name": f"{name} ({where[:MAX_SHOWN_WHERE]})"})


def _redirect_host(uri: str) -> str:
    """A redirect URI's host, or ``scheme:`` for a private-use scheme without one (``cursor:``)."""
    parts = urlsplit(uri)
    return parts.hostname or f"{parts.scheme}:"


MAX_SHOWN_NAME = 100
MAX_SHOWN_WHERE = 140
MAX_SHOWN_HOSTS = 3


class DocumentClientResolver:
    """Client metadata documents -> provider clients, for every issuer the gateway serves."""

    def __init__(
        self,
        *,
        adapter: ProviderAdapter,
        cache: DocumentCache,
        settings: CimdSettings,
        registration: RegistrationSettings,
        limits: Limits,
        deployment: str,
        off_issuers: frozenset[str] = frozenset(),
    ) -> None:
        self._adapter = adapter
        self._off_issuers = off_issuers
        self._cache = cache
        self._settings = settings
        self._registration = registration
        self._limits = limits
        self._deployment = deployment
        self._current: OrderedDict[tuple[str, str], ResolvedDocument] = OrderedDict()
        self._locks = [asyncio.Lock() for _ in range(LOCK_STRIPES)]
        """One create-or-update at a time per document (striped: a bounded number of locks, whatever the number
        of URLs), so concurrent first authorizations of one client make one provider client."""

    def enabled_for(self, issuer_key: str) -> bool:
        """CIMD is on for this issuer and the provider adapter can hold document clients."""
        return (
            self._settings.enabled
            and issuer_key not in self._settings.disabled_issuers
            and issuer_key not in self._off_issuers
            and isinstance(self._adapter, DocumentClients)
        )

    def derives_ids(self, issuer_key: str) -> bool:
        """The provider stores document clients under ids derived from their URLs (Hydra), not the URLs."""
        probe = "https://client.example/metadata.json"
        return self.stored_client_id(issuer_key, probe) != probe

    def stored_client_id(self, issuer_key: str, url: str) -> str:
        """What the provider knows the document client for ``url`` by (``url`` itself without the capability)."""
        if not isinstance(self._adapter, DocumentClients):
            return url
        return self._adapter.stored_client_id(issuer_key, url)

    async def resolve(
        self,
        request: web.BaseRequest,
        issuer: IssuerContext,
        url: str,
        *,
        accept: Callable[[ClientMetadata], None] | None = None,
        requested_scope: str | None = None,
    ) -> ResolvedDocument:
        """The provider client for the document at ``url``, created or updated as needed; ``invalid_client``
        (:class:`~gateway.oauth.errors.InvalidClient`) naming what was wrong when the URL or the document cannot
        be used. ``accept`` checks the request against the document's metadata (its ``redirect_uri``) before
        anything is written to the provider, and raises to refuse it. ``requested_scope``: the request's ``scope``,
        registered (as far as the registration policy allows) when the document names none (:meth:`_scoped`)."""
        adapter = self._adapter
        if not isinstance(adapter, DocumentClients) or not self.enabled_for(issuer.key):
            raise InvalidClient("client metadata documents are not accepted by this authorization server")
        try:
            check_client_id_url(url, self._settings)
            if url not in self._cache:
                # a fetch on the gateway's behalf (and maybe a new provider client): counted like a registration
                # by the rate limits, so no source can make the gateway fetch or create without bound
                await self._limits.admit(request, issuer=issuer.key, operation="document")
            fetched = await self._cache.get(url, validate=self._valid)
            metadata = self._translate(url, fetched.document)
        except DocumentRefused as exc:
            log.info("cimd.refused", issuer=issuer.issuer, client_id=show(url), stage=exc.stage, reason=exc.reason)
            raise InvalidClient(f"client metadata document: {exc.reason}") from None
        try:
            policy = await registration_policy(issuer, self._registration)
            metadata = await check_fetched_uris(validate(metadata, policy), self._registration.resolver)
        except InvalidClientMetadata as exc:
            log.info("cimd.refused", issuer=issuer.issuer, client_id=show(url), stage="policy", reason=exc.description)
            raise InvalidClient(f"client metadata document: {exc.description}") from None
        stored = adapter.stored_client_id(issuer.key, url)
        if stored != url and metadata.token_endpoint_auth_method == "private_key_jwt":
            raise InvalidClient(
                "client metadata document: private_key_jwt is not supported for document clients by this "
                "provider (its client id differs from the URL the client signs its assertions with)"
            )
        metadata = display_name(metadata, url)
        if accept is not None:
            accept(metadata)
        key = (issuer.key, url)
        known = self._current.get(key)
        learned_scope = metadata.scope is None
        metadata = self._scoped(metadata, known, requested_scope, policy, fetched.body_sha256)
        if known is not None and known.document_sha256 == fetched.body_sha256 and known.metadata == metadata:
            self._current.move_to_end(key)
            return known
        async with self._locks[hash(key) % LOCK_STRIPES]:
            known = self._current.get(key)
            if known is None or known.document_sha256 != fetched.body_sha256 or known.metadata != metadata:
                known = await self._bring_up_to_date(
                    request,
                    issuer,
                    adapter,
                    ResolvedDocument(
                        url=url, stored_client_id=stored, metadata=metadata, document_sha256=fetched.body_sha256
                    ),
                    fetched_at=fetched.fetched_at,
                    learned_scope=learned_scope,
                )
                self._remember(key, known)
        return known

    @staticmethod
    def _scoped(
        metadata: ClientMetadata,
        known: ResolvedDocument | None,
        requested: str | None,
        policy: RegistrationPolicy,
        sha256: str,
    ) -> ClientMetadata:
        """A document that names no ``scope`` (a client's published document cannot know every server's scopes;
        Claude's names none) gets the scope values its authorization requests ask for, added to those it already
        holds, within the registration policy (``policy.scopes``), as a registration asking for them would: on a
        provider whose clients may ask only for their registered scopes (Hydra) the request would otherwise fail
        with ``invalid_scope``. A document that names ``scope`` keeps exactly that."""
        if metadata.scope is not None:
            return metadata
        held = set((known.metadata.scope or "").split()) if known and known.document_sha256 == sha256 else set()
        asked = {token for token in (requested or "").split() if _learnable(token)}
        room = max(0, MAX_LEARNED_SCOPES - len(held))
        wanted = held | set(sorted(asked - held)[:room])  # bounded: anyone may send any scope
        if not wanted:
            return metadata
        if known is not None and wanted == held:
            return metadata.model_copy(update={"scope": known.metadata.scope})
        candidate = metadata.model_copy(update={"scope": " ".join(sorted(wanted))})
        # what a lenient allow-list keeps (a strict one would refuse the whole request: here the provider refuses
        # the scope values left out, with its own invalid_scope)
        lenient = dataclasses.replace(policy, scope_mode=ScopeMode.LENIENT)
        return validate(candidate, lenient, rules=(scopes_allowed,))

    @staticmethod
    def _with_held_scope(metadata: ClientMetadata, existing: ManagedClient) -> ClientMetadata:
        """Learned scope values already in the provider's record are kept (another gateway instance may have added
        them): a write only ever adds, within :data:`MAX_LEARNED_SCOPES`."""
        held = [token for token in (existing.metadata.scope or "").split() if _learnable(token)]
        ours = (metadata.scope or "").split()
        merged = sorted(set(ours) | set(held[: max(0, MAX_LEARNED_SCOPES - len(ours))]))
        return metadata.model_copy(update={"scope": " ".join(merged) or None})

    def forget(self, issuer_key: str, url: str) -> None:
        """Drop what is known of ``url`` (its cached document and provider state): the next use fetches again."""
        self._current.pop((issuer_key, url), None)
        self._cache.invalidate(url)

    def _valid(self, fetched: FetchedDocument) -> object:
        """The cache's check before it keeps a document: an invalid one is never cached (draft section 4.3)."""
        return self._translate(fetched.url, fetched.document)

    @staticmethod
    def _translate(url: str, document: Mapping[str, Any]) -> ClientMetadata:
        return client_metadata(url, document, grant_types_supported=SUPPORTED_GRANT_TYPES)

    def _remember(self, key: tuple[str, str], resolved: ResolvedDocument) -> None:
        self._current[key] = resolved
        self._current.move_to_end(key)
        while len(self._current) > MAX_REMEMBERED:
            self._current.popitem(last=False)

    async def _bring_up_to_date(
        self,
        request: web.BaseRequest,
        issuer: IssuerContext,
        adapter: DocumentClients,
        resolved: ResolvedDocument,
        *,
        fetched_at: float,
        learned_scope: bool,
    ) -> ResolvedDocument:
        url, metadata, sha256 = resolved.url, resolved.metadata, resolved.document_sha256
        with provider_errors(issuer):
            existing = await adapter.read_document_client(issuer.key, url)
        if existing is not None and learned_scope and existing.gateway_data.get("document_sha256") == sha256:
            metadata = self._with_held_scope(metadata, existing)
            resolved = dataclasses.replace(resolved, metadata=metadata)
        if existing is not None and _same(existing, metadata, sha256):
            return resolved
        client = with_deployment(
            NewClient(
                client_id=url,
                client_secret=None,
                client_id_issued_at=existing.client_id_issued_at if existing else int(time.time()),
                client_secret_expires_at=0,
                metadata=metadata,
                gateway_data={
                    "source": DOCUMENT_SOURCE,
                    "document_sha256": sha256,
                    "document_fetched_at": int(fetched_at),
                },
            ),
            self._deployment,
        )
        if existing is not None:
            with provider_errors(issuer):
                await adapter.put_document_client(issuer.key, client)
            log.info("cimd.client_updated", issuer=issuer.issuer, client_id=url, document_sha256=sha256)
            return resolved
        # A new provider client: a quota slot, like a registration (the rate limits counted its fetch).
        async with self._limits.quota.reserve(issuer.key) as slot:
            with provider_errors(issuer):
                await adapter.put_document_client(issuer.key, client)
            slot.created()
        log.info("cimd.client_created", issuer=issuer.issuer, client_id=url, document_sha256=sha256)
        return resolved


def _same(existing: ManagedClient, metadata: ClientMetadata, sha256: str) -> bool:
    """The provider client already reflects this document (same hash, same registered metadata)."""
    return existing.gateway_data.get("document_sha256") == sha256 and existing.metadata == metadata
