"""The provider's authorization, PAR, token and revocation endpoints, checked by the gateway on the way through.

What the front door does there before forwarding (and after, for the authorization endpoint's redirects):

- **Client ID Metadata Documents** (MCP 2026-07-28; draft-ietf-oauth-client-id-metadata-document section 4): an
  https ``client_id`` is resolved into a provider client (:mod:`gateway.authorization.documents`); the
  ``redirect_uri`` must be one of the document's (exactly, or a loopback one with another port, RFC 8252 section
  7.3). A refusal is answered to the user agent, never redirected (RFC 6749 section 4.1.2.1), and nothing reaches
  the provider. Where the provider stores the client under another id (Hydra), ``client_id`` is translated on every
  endpoint.
- **Loopback redirect URIs from any port** (RFC 8252 section 7.3) where the provider does not allow them itself
  (Hydra for ``localhost``, Keycloak for ``[::1]``): the port-specific URI is admitted for the managed client.
- **RFC 8707 resource indicators**: every ``resource`` must be one of the issuer's protected resources, else
  ``invalid_target`` (a redirect error at the authorization endpoint once the redirect URI is known to be
  registered, HTTP 400 at the token and PAR endpoints); the provider is prepared to put it in the token's ``aud``
  and the request names it the provider's way (:class:`adapters.base.ResourceBinding`).
- **RFC 9207**: ``iss`` is added to every authorization response redirect (and form-post page) lacking it.
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from urllib.parse import quote, urlsplit

import structlog
from aiohttp import hdrs, web

from adapters.base import (
    AdapterError,
    ClientNotFound,
    Issuer,
    LoopbackRedirects,
    ProviderAdapter,
    ResourceIndicators,
    addressable_client_id,
)
from adapters.bindings import DOCUMENT_ID_PREFIX
from gateway.authorization.documents import DocumentClientResolver
from gateway.authorization.parameters import (
    FORM,
    Pairs,
    encode,
    every,
    parse,
    replaced,
    single,
    with_audiences,
    with_scope_values,
)
from gateway.cimd.url import looks_like_url
from gateway.limits.guard import Limits
from gateway.oauth.errors import InvalidClient, InvalidRequest, InvalidTarget, OAuthError
from gateway.oauth.metadata import ClientMetadata
from gateway.oauth.redirects import is_loopback_redirect, match_redirect_uri
from gateway.pipeline import error_response
from gateway.proxy import FrontDoorProxy, Rewrite
from gateway.registration.service import IssuerContext, provider_errors
from gateway.rfc8707 import ProtectedResources, resource_problem
from gateway.rfc9207 import form_post_with_iss, with_iss

log = structlog.get_logger(__name__)

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]

REGISTERED_TTL_SECONDS = 30.0
"""How long a managed client's registered redirect URIs are reused without asking the provider again."""
MAX_REGISTERED_CACHED = 10_000


def _host_only(uri: str) -> str:
    """The URI's host as written (brackets kept for IPv6), without userinfo or port."""
    host = urlsplit(uri).hostname or ""
    return f"[{host}]" if ":" in host else host


class RedirectedError(Exception):
    """An authorization error to send to the client's (verified) redirect URI (RFC 6749 section 4.1.2.1)."""

    def __init__(self, redirect_uri: str, error: OAuthError, state: str | None, response_mode: str | None) -> None:
        super().__init__(error.description)
        self.redirect_uri = redirect_uri
        self.error = error
        self.state = state
        self.response_mode = response_mode


@dataclass
class _Asked:
    """The parameters of an authorization request the checks look at."""

    client_id: str
    redirect_uri: str | None
    state: str | None
    response_mode: str | None
    request_uri: str | None
    redirect_errors: bool
    resource_error: InvalidTarget | None = None


@dataclass(frozen=True)
class Checked:
    """The outcome of checking a request's parameters: ``None`` pairs when nothing changes."""

    pairs: Pairs | None


class AuthorizationEndpoints:
    """The checked endpoints of one issuer (their paths come from :class:`adapters.base.Issuer`)."""

    def __init__(
        self,
        *,
        issuer: IssuerContext,
        paths: Issuer,
        adapter: ProviderAdapter,
        documents: DocumentClientResolver | None,
        resources: ProtectedResources,
        proxy: FrontDoorProxy,
        limits: Limits,
    ) -> None:
        self.issuer = issuer
        self.limits = limits
        self.paths = paths
        self.adapter = adapter
        self.documents = documents
        self.resources = resources
        self.proxy = proxy
        self._registered: dict[str, tuple[float, tuple[str, ...] | None]] = {}

    # ------------------------------------------------------------------ routes

    def routes(self) -> list[web.RouteDef]:
        """One catch-all-methods route per checked endpoint the provider has."""
        table: list[tuple[str | None, Handler]] = [
            (self.paths.authorization_path, self.authorization),
            (self.paths.par_path, self.pushed_authorization),
            (self.paths.token_path, self.token),
            (self.paths.revocation_path, self.revocation),
        ]
        return [web.route("*", path, handler) for path, handler in table if path]

    @property
    def documents_enabled(self) -> bool:
        return self.documents is not None and self.documents.enabled_for(self.issuer.key)

    # ------------------------------------------------------------------ handlers

    async def authorization(self, request: web.Request) -> web.StreamResponse:
        """RFC 6749 section 3.1 (GET, and POST with a form, OpenID Connect Core 3.1.2.1); RFC 9207 ``iss`` added to
        its responses; errors for a verified redirect URI are redirected (section 4.1.2.1)."""

        async def check(pairs: Pairs) -> Checked:
            return await self._check_authorization(request, pairs, redirect_errors=True)

        return await self._checked_exchange(
            request, check, Rewrite(location=self._with_iss, html=self._form_post_with_iss), any_method=True
        )

    async def pushed_authorization(self, request: web.Request) -> web.StreamResponse:
        """RFC 9126 section 2.1: the same checks as the authorization endpoint, errors as JSON (section 2.3)."""

        async def check(pairs: Pairs) -> Checked:
            return await self._check_authorization(request, pairs, redirect_errors=False)

        return await self._checked_exchange(request, check, Rewrite())

    async def token(self, request: web.Request) -> web.StreamResponse:
        """RFC 6749 section 3.2: ``client_id`` translated, ``resource`` checked (400 ``invalid_target``, RFC 8707
        section 2.2) and bound the provider's way."""
        return await self._checked_exchange(request, self._check_token, Rewrite())

    async def revocation(self, request: web.Request) -> web.StreamResponse:
        """RFC 7009 section 2.1: only ``client_id`` is translated."""

        async def check(pairs: Pairs) -> Checked:
            client_id = single(pairs, "client_id")
            if client_id is not None:
                self._refuse_stored_document_id(client_id, pairs)
            return Checked(self._translated_client_id(pairs))

        return await self._checked_exchange(request, check, Rewrite())

    async def _checked_exchange(
        self,
        request: web.Request,
        check: Callable[[Pairs], Awaitable[Checked]],
        rewrite: Rewrite,
        *,
        any_method: bool = False,
    ) -> web.StreamResponse:
        """Read the request, check its parameters (``check``), forward it with what changed and ``rewrite``. Only
        POST is checked unless ``any_method`` (the authorization endpoint's GET); anything else is forwarded as it
        is, for the provider to answer. A refusal is the gateway's answer and nothing reaches the provider."""
        body = await self._body(request)
        if isinstance(body, web.StreamResponse):
            return body
        try:
            encoded = self._encoded_parameters(request, body)
            if encoded is None or not (any_method or request.method == hdrs.METH_POST):
                return await self.proxy.forward(request, body, rewrite)
            checked = await check(parse(encoded))
        except RedirectedError as exc:
            return self._error_redirect(exc)
        except OAuthError as exc:
            return error_response(exc)
        return await self.proxy.forward(request, body, self._changed(request, checked, rewrite))

    # ------------------------------------------------------------------ checks

    async def _check_authorization(self, request: web.Request, pairs: Pairs, *, redirect_errors: bool) -> Checked:
        client_id = single(pairs, "client_id")
        if client_id is None:
            return Checked(None)  # the provider answers a request without a client
        self._refuse_stored_document_id(client_id, pairs)
        asked = _Asked(
            client_id=client_id,
            redirect_uri=single(pairs, "redirect_uri"),
            state=single(pairs, "state"),
            response_mode=single(pairs, "response_mode"),
            request_uri=single(pairs, "request_uri"),
            redirect_errors=redirect_errors,
        )
        resources = every(pairs, "resource") if self.resources.enforced else []
        audiences: list[str] = []
        try:
            audiences = self._audiences(resources)
        except InvalidTarget as error:
            asked.resource_error = error
        if looks_like_url(client_id) and self.documents is not None and self.documents_enabled:
            if single(pairs, "request") is not None:
                raise InvalidRequest(
                    "request objects (RFC 9101) are not accepted for a client metadata document client; send the "
                    "parameters in the request or push them first (RFC 9126)"
                )
            provider_client_id = await self._document_client(request, self.documents, asked, single(pairs, "scope"))
        else:
            provider_client_id = client_id
            await self._registered_client(request, asked)

        changed = pairs
        if audiences:
            changed = replaced(changed, "resource", audiences)
            scopes, audience_values = await self._bindings(provider_client_id, audiences)
            changed = with_audiences(with_scope_values(changed, scopes), audience_values)
        if provider_client_id != client_id:
            changed = replaced(changed, "client_id", [provider_client_id])
        return Checked(changed if changed != pairs else None)

    async def _document_client(
        self, request: web.Request, documents: DocumentClientResolver, asked: _Asked, scope: str | None
    ) -> str:
        """The document client's provider id, once its document accepted the request (and the client is up to
        date at the provider)."""

        def acceptable(metadata: ClientMetadata) -> None:
            """Before the provider client is created or changed: the redirect URI is one of the document's
            (section 4.2 of the draft, MCP), and every ``resource`` is a protected resource (a refusal then goes
            to that verified redirect URI, and nothing is written to the provider)."""
            registered = metadata.redirect_uris or []
            if asked.redirect_uri is not None and match_redirect_uri(asked.redirect_uri, registered) is None:
                raise InvalidRequest("redirect_uri is not one of the redirect_uris of the client's metadata document")
            if asked.redirect_uri is None and asked.request_uri is None and len(registered) != 1:
                raise InvalidRequest("redirect_uri is required: the client's metadata document lists several")
            if asked.resource_error is not None:
                target = asked.redirect_uri or (registered[0] if asked.request_uri is None else None)
                if asked.redirect_errors and target is not None:
                    raise RedirectedError(target, asked.resource_error, asked.state, asked.response_mode)
                raise asked.resource_error

        resolved = await documents.resolve(
            request, self.issuer, asked.client_id, accept=acceptable, requested_scope=scope
        )
        if asked.redirect_uri is not None:
            match = match_redirect_uri(asked.redirect_uri, resolved.metadata.redirect_uris or [])
            if match is not None:
                await self._admit_loopback(request, resolved.stored_client_id, asked.redirect_uri, match)
        return resolved.stored_client_id

    async def _registered_client(self, request: web.Request, asked: _Asked) -> None:
        """A registered (or unknown) client: a ``resource`` refusal goes to its redirect URI only when that is one
        it registered; a loopback redirect URI's port is admitted where the provider would refuse it."""
        redirect_uri = asked.redirect_uri
        if asked.resource_error is not None:
            if asked.redirect_errors and redirect_uri is not None:
                registered = await self._registered_redirects(request, asked.client_id)
                if match_redirect_uri(redirect_uri, registered) is not None:
                    raise RedirectedError(redirect_uri, asked.resource_error, asked.state, asked.response_mode)
            raise asked.resource_error
        if redirect_uri is not None and is_loopback_redirect(redirect_uri) and self._provider_needs(redirect_uri):
            match = match_redirect_uri(redirect_uri, await self._registered_redirects(request, asked.client_id))
            if match is not None:
                await self._admit_loopback(request, asked.client_id, redirect_uri, match)

    def _refuse_stored_document_id(self, client_id: str, pairs: Pairs) -> None:
        """A document client is addressed by its URL, never by the id the provider stores it under (Hydra's
        ``cimd-...``): that would skip the document's checks (a changed or removed document, its redirect URIs).
        The provider's own return to its authorization endpoint after login or consent carries the stored id with
        its verifier (Hydra checks the verifier), and is let through."""
        if self.documents is None or not self.documents_enabled or not client_id.startswith(DOCUMENT_ID_PREFIX):
            return
        if not self.documents.derives_ids(self.issuer.key):
            return
        if single(pairs, "login_verifier") is not None or single(pairs, "consent_verifier") is not None:
            return
        raise InvalidClient("a client metadata document client is identified by its document's URL")

    def _audiences(self, resources: list[str]) -> list[str]:
        """The audiences the requested resources bind (RFC 8707 section 2), once each; ``invalid_target`` naming the
        first one that is malformed or not a protected resource of this issuer."""
        audiences: list[str] = []
        for resource in resources:
            problem = resource_problem(resource)
            audience = None if problem else self.resources.audience_for(resource)
            if audience is None:
                raise InvalidTarget(problem or "resource is not a protected resource of this authorization server")
            audiences.append(audience)
        return list(dict.fromkeys(audiences))

    async def _check_token(self, pairs: Pairs) -> Checked:
        client_id = single(pairs, "client_id")
        if client_id is not None:
            self._refuse_stored_document_id(client_id, pairs)
        changed = self._translated_client_id(pairs) or pairs
        resources = every(pairs, "resource")
        if resources and self.resources.enforced:
            audiences = self._audiences(resources)
            changed = replaced(changed, "resource", audiences)
            provider_client_id = single(changed, "client_id")
            if provider_client_id is not None and single(pairs, "grant_type") == "client_credentials":
                # no authorization request came first: the binding is asked for here. An authorization code or a
                # refresh token carries the audience its authorization request bound (the provider keeps it).
                scopes, audience_values = await self._bindings(provider_client_id, audiences)
                changed = with_audiences(with_scope_values(changed, scopes), audience_values)
        return Checked(changed if changed != pairs else None)

    def _translated_client_id(self, pairs: Pairs) -> Pairs | None:
        """``client_id`` as the provider knows it, when the gateway stores a document client under another id."""
        client_id = single(pairs, "client_id")
        if client_id is None or not looks_like_url(client_id) or self.documents is None or not self.documents_enabled:
            return None
        stored = self.documents.stored_client_id(self.issuer.key, client_id)
        return replaced(pairs, "client_id", [stored]) if stored != client_id else None

    async def _bindings(self, client_id: str, audiences: list[str]) -> tuple[list[str], list[str]]:
        """The scope and ``audience`` values that make the provider issue ``audiences`` to ``client_id``."""
        if not isinstance(self.adapter, ResourceIndicators):
            return [], []
        scopes: list[str] = []
        audience_values: list[str] = []
        for audience in dict.fromkeys(audiences):
            try:
                with provider_errors(self.issuer):
                    binding = await self.adapter.bind_resource(self.issuer.key, client_id, audience)
            except ClientNotFound:
                return [], []  # no such client: the provider answers the request as it would
            if binding.scope:
                scopes.append(binding.scope)
            if binding.audience:
                audience_values.append(binding.audience)
        return scopes, audience_values

    def _provider_needs(self, redirect_uri: str) -> bool:
        """Whether the provider might refuse this loopback URI's port on its own, whatever the registered URI it
        matches (that one registered without a port, or with another): then the client's URIs are looked at."""
        if not isinstance(self.adapter, LoopbackRedirects):
            return False
        portless = urlsplit(redirect_uri)._replace(netloc=_host_only(redirect_uri)).geturl()
        return not (self.adapter.admits_any_port(portless) and self.adapter.admits_any_port(redirect_uri))

    async def _admit_loopback(self, request: web.Request, client_id: str, redirect_uri: str, registered: str) -> None:
        """RFC 8252 section 7.3: ``redirect_uri`` matched the registered loopback URI ``registered`` but for its
        port; where the provider would not accept that on its own, the exact URI is admitted first."""
        if registered == redirect_uri or not isinstance(self.adapter, LoopbackRedirects):
            return
        if self.adapter.admits_any_port(registered):
            return
        # an admission writes to the provider: counted per source, so nobody churns a client's admitted URIs
        await self.limits.admit(request, issuer=self.issuer.key, operation="loopback")
        try:
            with provider_errors(self.issuer):
                await self.adapter.admit_redirect_uri(self.issuer.key, client_id, redirect_uri)
        except ClientNotFound:
            return
        log.info("authorize.loopback_admitted", issuer=self.issuer.issuer, client_id=client_id)

    async def _registered_redirects(self, request: web.Request, client_id: str) -> list[str]:
        """A managed client's registered redirect URIs (cached briefly); none for an unknown or unmanaged client,
        or when the provider cannot tell now (the provider then judges the request itself)."""
        if not addressable_client_id(client_id):
            return []
        now = time.monotonic()
        cached = self._registered.get(client_id)
        if cached is not None and cached[0] > now:
            return list(cached[1] or ())
        uris: tuple[str, ...] | None
        # a provider read on an unauthenticated request: counted per source (cached answers are free)
        await self.limits.admit(request, issuer=self.issuer.key, operation="client_lookup")
        try:
            client = await self.adapter.read_client(self.issuer.key, client_id)
            uris = tuple(client.metadata.redirect_uris or ())
        except ClientNotFound:
            uris = None
        except AdapterError as exc:
            log.warning("authorize.client_unreadable", issuer=self.issuer.issuer, cause=str(exc))
            return []
        if len(self._registered) >= MAX_REGISTERED_CACHED:
            self._registered.clear()
        self._registered[client_id] = (now + REGISTERED_TTL_SECONDS, uris)
        return list(uris or ())

    # ------------------------------------------------------------------ plumbing

    async def _body(self, request: web.Request) -> bytes | web.StreamResponse | None:
        return await self.proxy.read_body(request)

    @staticmethod
    def _encoded_parameters(request: web.Request, body: bytes | None) -> str | None:
        """The request's parameters as sent: the query of a GET, the form body of a POST; ``None`` for other
        methods (forwarded unchanged for the provider to answer). A POST these checks cannot read is refused rather
        than forwarded unchecked (``invalid_request``): a body that is not ``application/x-www-form-urlencoded``
        UTF-8 (RFC 6749 appendix B), or parameters in the query as well (providers merge them into the form)."""
        if request.method in (hdrs.METH_GET, hdrs.METH_HEAD):
            return request.rel_url.raw_query_string
        if request.method != hdrs.METH_POST:
            return None
        if request.rel_url.raw_query_string:
            raise InvalidRequest("parameters are accepted in the body of a POST request, not in its query")
        if body is None:
            return ""
        if request.content_type != FORM:
            raise InvalidRequest(f"the request body must be {FORM} (RFC 6749 appendix B)")
        try:
            return body.decode("utf-8")
        except UnicodeDecodeError:
            raise InvalidRequest("the request body is not UTF-8 (RFC 6749 appendix B)") from None

    @staticmethod
    def _changed(request: web.Request, checked: Checked, rewrite: Rewrite) -> Rewrite:
        if checked.pairs is None:
            return rewrite
        encoded = encode(checked.pairs)
        if request.method == hdrs.METH_POST:
            return Rewrite(body=encoded.encode("ascii"), location=rewrite.location, html=rewrite.html)
        return Rewrite(query=encoded, location=rewrite.location, html=rewrite.html)

    def _with_iss(self, location: str) -> str | None:
        return with_iss(location, self.issuer.issuer)

    def _form_post_with_iss(self, body: bytes) -> bytes | None:
        return form_post_with_iss(body, self.issuer.issuer)

    def _error_redirect(self, exc: RedirectedError) -> web.StreamResponse:
        """RFC 6749 section 4.1.2.1 error response to the verified redirect URI, with ``state`` and RFC 9207
        ``iss``; a form-post request gets the error as JSON instead (no page is rendered here)."""
        if exc.response_mode == "form_post":
            return error_response(exc.error)
        parameters = [("error", exc.error.error), ("error_description", exc.error.description)]
        if exc.state is not None:
            parameters.append(("state", exc.state))
        parameters.append(("iss", self.issuer.issuer))
        encoded = "&".join(f"{name}={quote(value, safe='')}" for name, value in parameters)
        if exc.response_mode == "fragment":
            location = f"{exc.redirect_uri.split('#', 1)[0]}#{encoded}"
        else:
            separator = "&" if "?" in exc.redirect_uri else "?"
            location = f"{exc.redirect_uri}{separator}{encoded}"
        log.info("authorize.refused", issuer=self.issuer.issuer, error=exc.error.error, reason=exc.error.description)
        return web.Response(status=302, headers={hdrs.LOCATION: location, hdrs.CACHE_CONTROL: "no-store"})
