"""Access control applied to one registration request (RFC 7591 section 3, section 2.3; RFC 6750 section 2.1).

The registration handler runs three steps around reading the body and validating it::

    token = access.authenticate(request)        # Authorization: Bearer, before the body is read
    admission = access.admit(document, token)   # software statement verified, its claims merged; the mode
    ... validate_registration(admission.document, caller=Caller(authenticated=admission.authenticated, ...))
    await access.redeem(token)                  # one use of a signed token with max_uses

A use is counted only once the registration passed validation, so a typo in a redirect URI does not burn a
single-use token; the count is checked and incremented in one atomic step of the counter store, so two
concurrent registrations cannot both take the last use.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol

import structlog
from aiohttp import hdrs

from gateway.access.settings import AccessMode, IssuerAccess
from gateway.access.software_statement import SOFTWARE_STATEMENT, merge_software_statement, verify_software_statement
from gateway.access.tokens import InitialAccessToken, verify_initial_access_token
from gateway.limits.store import KEPT_PREFIX as INITIAL_ACCESS_TOKEN_USES
from gateway.oauth.bearer import bearer_token
from gateway.oauth.errors import InvalidSoftwareStatement, InvalidToken, OAuthError, TemporarilyUnavailable

if TYPE_CHECKING:
    from aiohttp import web

log = structlog.get_logger(__name__)

USE_COUNT_RETRY_AFTER_SECONDS = 5


class CounterStore(Protocol):
    """What use counts need of :class:`gateway.limits.store.CounterStore` (structural: any store fits)."""

    async def incr(self, key: str, *, window_seconds: float, amount: int = 1) -> tuple[int, float]: ...


@dataclass(frozen=True)
class Admission:
    """The outcome of access control for one request: what validation sees and who the caller is."""

    document: dict[str, Any]
    """The request's metadata with the software statement's claims merged over it (RFC 7591 section 3.1.1)."""
    authenticated: bool
    """A configured credential (initial access token or software statement) was presented and verified."""
    software_statement: Mapping[str, Any] | None = None
    """The verified software statement's claims."""
    initial_access_token: InitialAccessToken | None = None


class RegistrationAccess:
    """The access control of one issuer, applied to one request."""

    def __init__(
        self,
        access: IssuerAccess,
        *,
        issuer: str,
        issuer_key: str,
        store: CounterStore | None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.access = access
        self.issuer = issuer
        self.issuer_key = issuer_key
        self.store = store
        self.clock = clock

    def authenticate(self, request: web.BaseRequest) -> InitialAccessToken | None:
        """RFC 7591 section 3: the initial access token, "as an OAuth 2.0 Bearer Token"; RFC 6750 section 2.1:
        only the ``Authorization`` header is accepted (never the query, never the body, which holds client
        metadata). ``None`` when no token is configured for this issuer (any header is then ignored) or none
        was sent and the mode does not require one."""
        if not self.access.accepts_initial_access_tokens:
            return None
        try:
            verified = self._verified_token(request)
        except InvalidToken as exc:
            self._deny("initial_access_token", exc)
            raise
        if verified is None:
            return None
        log.info(
            "access.initial_access_token",
            issuer=self.issuer,
            kind=verified.kind,
            jti=verified.jti,
            max_uses=verified.max_uses,
        )
        return verified

    def _verified_token(self, request: web.BaseRequest) -> InitialAccessToken | None:
        token = bearer_token(request, credential="initial access token")
        if token is None:
            if self.access.requires_initial_access_token:
                raise InvalidToken(
                    "this registration endpoint requires an initial access token: "
                    "'Authorization: Bearer <token>' (RFC 7591 section 3)",
                    token_presented=False,
                )
            return None
        return verify_initial_access_token(token, self.access, audience=self.issuer, now=self.clock())

    def admit(self, document: Mapping[str, Any], token: InitialAccessToken | None) -> Admission:
        """RFC 7591 section 2.3: verify a software statement (in every mode, when trusted issuers are
        configured), enforce the issuer's mode, and merge the statement's claims over the request."""
        statement = document.get(SOFTWARE_STATEMENT)
        claims: dict[str, Any] | None = None
        if statement is not None and self.access.accepts_software_statements:
            try:
                claims = verify_software_statement(statement, self.access, now=self.clock(), audience=self.issuer)
            except OAuthError as exc:
                self._deny("software_statement", exc)
                raise
            log.info("access.software_statement", issuer=self.issuer, statement_issuer=claims.get("iss"))
        elif statement is not None:
            log.info("access.software_statement_ignored", issuer=self.issuer, reason="no trusted issuers configured")
        if claims is None and self.access.requires_software_statement:
            self._deny("software_statement.missing")
            raise InvalidSoftwareStatement(
                "software_statement: required at this registration endpoint (RFC 7591 section 2.3)"
            )
        if self.access.mode is AccessMode.EITHER and token is None and claims is None:
            self._deny("credential.missing")
            raise InvalidToken(
                "this registration endpoint requires an initial access token ('Authorization: Bearer <token>', "
                "RFC 7591 section 3) or a software_statement (section 2.3)",
                token_presented=False,
            )
        return Admission(
            document=merge_software_statement(document, claims),
            authenticated=token is not None or claims is not None,
            software_statement=claims,
            initial_access_token=token,
        )

    async def redeem(self, token: InitialAccessToken | None) -> None:
        """One use of a signed token carrying ``max_uses``, counted in the (possibly shared) counter store for
        as long as the token lives; past ``max_uses`` it is refused like an expired one. If the count cannot
        be checked the registration is refused (503): a single-use token must not become a many-use one."""
        if token is None or token.max_uses is None or token.jti is None:
            return
        if self.store is None:
            log.error("access.use_count_unavailable", issuer=self.issuer, reason="no counter store")
            raise self._unavailable()
        window = max((token.expires_at or 0) - self.clock(), 0) + self.access.token_leeway + 1
        try:
            count, _ = await self.store.incr(
                f"{INITIAL_ACCESS_TOKEN_USES}{self.issuer_key}:{token.jti}", window_seconds=window
            )
        except Exception as exc:  # CounterStoreUnavailable, or anything a third-party store raises
            log.error("access.use_count_unavailable", issuer=self.issuer, cause=type(exc).__name__)
            raise self._unavailable() from exc
        if count > token.max_uses:
            self._deny("initial_access_token.used_up")
            raise InvalidToken("the initial access token has been used up")

    def _unavailable(self) -> TemporarilyUnavailable:
        return TemporarilyUnavailable(
            "cannot count the uses of this initial access token right now; retry later",
            headers={hdrs.RETRY_AFTER: str(USE_COUNT_RETRY_AFTER_SECONDS)},
        )

    def _deny(self, reason: str, error: OAuthError | None = None) -> None:
        # The description is the gateway's own wording (no token, no client-chosen text beyond a short iss).
        log.warning(
            "access.denied",
            issuer=self.issuer,
            reason=reason,
            error=error.error if error else None,
            detail=error.description if error else None,
        )
