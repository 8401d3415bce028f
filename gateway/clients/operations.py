"""Operations behind ``dcr-gateway clients``, over a :class:`~adapters.base.ProviderAdapter`.

Decisions are pure functions (:func:`gc_decision`, :func:`adoption_refusal`, :func:`parse_duration`,
:meth:`AdoptionSelector.matches`); the async functions around them do the provider I/O, at most
``concurrency`` admin calls at a time. Only managed clients are listed, shown, deleted or collected; unmanaged
ones are only ever read as adoption candidates, and adopted only when selected and allowed.

Adoption issues each client a registration access token (RFC 7592 section 3) whose hash goes into the client's
gateway data exactly as for a registration, so the RFC 7592 client configuration endpoint and ``gc`` cover the
adopted client from then on. By default it also brings the client's settings in line with every managed client's
(consent required, no full scope, ...); the dry run lists each difference.

Scale (issue 12): ``list`` and ``gc`` go through the provider's listing a page at a time
(:func:`managed_client_pages`, :func:`garbage_pages`) and hand each page on before the next is read, so the
command holds one page, not every client. With an adapter that has :class:`~adapters.base.UsageListing` the usage
comes with the page (admin calls grow with pages, not clients); otherwise it is asked per client, as before.

Deployments: every managed client records the gateway deployment that registered or adopted it
(:func:`adapters.base.deployment_of`; a client from before deployments were recorded belongs to ``default``).
``deployment`` arguments limit listing, showing, deleting and collecting to that deployment's clients; ``None``
means every deployment.
"""

from __future__ import annotations

import asyncio
import functools
import re
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, TypeVar

from adapters.base import (
    DEPLOYMENT_KEY,
    AdapterError,
    AdoptionRefused,
    ClientConflict,
    ClientHygiene,
    ClientNotFound,
    ClientUsage,
    ManagedClient,
    ProviderAdapter,
    ProviderAuthError,
    ProviderUnavailable,
    UnmanagedClient,
    UsageListing,
    addressable_client_id,
    deployment_of,
)
from gateway.oauth.metadata import ClientMetadata
from gateway.registration.records import management_data
from gateway.registration.tokens import TOKEN_HASH_KEY, mint_registration_access_token

DEFAULT_CONCURRENCY = 4
"""Admin calls in flight at once: enough to be quick, few enough not to load a provider serving logins."""

_T = TypeVar("_T")
_R = TypeVar("_R")


class HygieneUnsupported(LookupError):
    """The adapter does not implement :class:`adapters.base.ClientHygiene` (usage, adoption)."""


class AmbiguousClient(LookupError):
    """The client_id exists in more than one issuer: the caller must name the issuer."""


class OtherDeployment(ClientNotFound):
    """The managed client belongs to another gateway deployment (see :func:`adapters.base.deployment_of`)."""

    def __init__(self, client_id: str, deployment: str) -> None:
        super().__init__(f"{client_id!r} belongs to deployment {deployment!r}")
        self.deployment = deployment


def in_deployment(client: ManagedClient, deployment: str | None) -> bool:
    """Whether ``client`` belongs to ``deployment`` (``None``: every deployment)."""
    return deployment is None or deployment_of(client) == deployment


LISTING_CHUNK = 200
"""Clients handed on at a time when the adapter lists without pages (:meth:`ProviderAdapter.list_clients`)."""


@dataclass
class Skipped:
    """Managed clients of other deployments a listing left out: how many, and which deployments (not the clients
    themselves, so a listing of 100,000 holds none of them)."""

    count: int = 0
    deployments: set[str] = field(default_factory=set)

    def add(self, client: ManagedClient) -> None:
        self.count += 1
        self.deployments.add(deployment_of(client))


async def _usage_pages(
    adapter: ProviderAdapter, issuer: str, *, with_usage: bool
) -> AsyncIterator[list[tuple[ManagedClient, ClientUsage | None]]]:
    """The issuer's managed clients a page at a time: with the usage the page carries
    (:class:`~adapters.base.UsageListing`), else in chunks of :data:`LISTING_CHUNK` with usage ``None`` (not read)."""
    if with_usage and isinstance(adapter, UsageListing):
        async for page in adapter.list_with_usage(issuer):
            yield list(page)
        return
    chunk: list[tuple[ManagedClient, ClientUsage | None]] = []
    async for client in adapter.list_clients(issuer):
        chunk.append((client, None))
        if len(chunk) >= LISTING_CHUNK:
            yield chunk
            chunk = []
    if chunk:
        yield chunk


async def _selected_pages(
    adapter: ProviderAdapter,
    issuers: Sequence[str],
    *,
    prefix: str | None,
    deployment: str | None,
    skipped: Skipped | None,
    with_usage: bool = True,
) -> AsyncIterator[tuple[str, list[tuple[ManagedClient, ClientUsage | None]]]]:
    """``(issuer, page)`` of the managed clients with ``prefix`` and of ``deployment``; those only of another
    deployment are counted in ``skipped`` when given."""
    for issuer in issuers:
        async for page in _usage_pages(adapter, issuer, with_usage=with_usage):
            selected: list[tuple[ManagedClient, ClientUsage | None]] = []
            for client, usage in page:
                if prefix is not None and not client.client_id.startswith(prefix):
                    continue
                if in_deployment(client, deployment):
                    selected.append((client, usage))
                elif skipped is not None:
                    skipped.add(client)
            if selected:
                yield issuer, selected


# ------------------------------------------------------------------------------------------ durations

_UNIT_SECONDS = {"w": 7 * 86400, "d": 86400, "h": 3600, "m": 60, "s": 1}
DURATION_UNITS = "s (seconds), m (minutes), h (hours), d (days) or w (weeks)"
"""The units of ``gc --unused-for``, as the help and every refusal name them."""
_DURATION = re.compile(r"(?:[0-9]+w)?(?:[0-9]+d)?(?:[0-9]+h)?(?:[0-9]+m)?(?:[0-9]+s)?", re.ASCII)
_DURATION_PART = re.compile(r"([0-9]+)([wdhms])", re.ASCII)


def parse_duration(text: str) -> int:
    """Seconds in ``90m``, ``12h``, ``30d``, ``2w``, ``0s`` or ``1d12h``: whole numbers, each with a lowercase unit
    (``m`` is minutes), largest unit first, each unit at most once.

    Anything else is refused rather than guessed: ``2M`` (months or minutes?), ``1y`` (which year?), ``12H``, a
    number without a unit, an empty value.
    """
    value = text.strip()
    if not value or not _DURATION.fullmatch(value):
        hint = ""
        if any(ch in "MYy" for ch in value) or "mo" in value:
            hint = "; months and years are not accepted (use days or weeks)"
        elif any(ch.isupper() for ch in value):
            hint = "; units are lowercase"
        raise ValueError(
            f"{text!r} is not a duration: use a whole number and a lowercase unit, {DURATION_UNITS}, "
            f"e.g. 90m, 12h or 30d{hint}"
        )
    return sum(int(number) * _UNIT_SECONDS[unit] for number, unit in _DURATION_PART.findall(value))


def parse_instant(text: str) -> int:
    """Seconds since the epoch from ``1800000000`` or an ISO 8601 time (``2026-12-31``, ``2026-12-31T12:00Z``;
    UTC unless it names an offset)."""
    value = text.strip()
    if value.isdigit():
        return int(value)
    try:
        instant = datetime.fromisoformat(value.replace("Z", "+00:00").replace("z", "+00:00"))
    except ValueError:
        raise ValueError(
            f"{text!r} is not a time: use seconds since the epoch or ISO 8601, e.g. 2026-12-31T12:00Z"
        ) from None
    if instant.tzinfo is None:
        instant = instant.replace(tzinfo=UTC)
    return int(instant.timestamp())


def format_duration(seconds: int) -> str:
    """``31d4h``, ``5m``, ``0s``: the two largest non-zero units."""
    seconds = max(0, int(seconds))
    parts: list[str] = []
    for unit in ("d", "h", "m", "s"):
        count, seconds = divmod(seconds, _UNIT_SECONDS[unit])
        if count:
            parts.append(f"{count}{unit}")
    return "".join(parts[:2]) or "0s"


# --------------------------------------------------------------------------------------- concurrency


async def bounded_map(fn: Callable[[_T], Awaitable[_R]], items: Iterable[_T], concurrency: int) -> list[_R]:
    """``fn`` over ``items`` with at most ``concurrency`` calls running; results in order. The first failure
    cancels the rest and is raised as itself (not as an exception group)."""
    semaphore = asyncio.Semaphore(max(1, concurrency))

    async def one(item: _T) -> _R:
        async with semaphore:
            return await fn(item)

    try:
        async with asyncio.TaskGroup() as group:
            tasks = [group.create_task(one(item)) for item in items]
    except BaseExceptionGroup as failures:
        first: BaseException = failures
        while isinstance(first, BaseExceptionGroup):
            first = first.exceptions[0]
        raise first from None
    return [task.result() for task in tasks]


# ------------------------------------------------------------------------------------- list and show


@dataclass(frozen=True)
class ClientRecord:
    """A managed client of one issuer, with what the provider tells about its use (``None``: not asked or
    the adapter cannot tell)."""

    issuer: str
    client: ManagedClient
    usage: ClientUsage | None = None

    def summary(self) -> dict[str, Any]:
        """One ``list`` row: no secret, no token hash, no client-chosen URIs (only how many)."""
        metadata = self.client.metadata
        return {
            "issuer": self.issuer,
            "client_id": self.client.client_id,
            "deployment": deployment_of(self.client),
            "client_name": metadata.client_name,
            "client_id_issued_at": self.client.client_id_issued_at or None,
            "token_endpoint_auth_method": metadata.token_endpoint_auth_method,
            "redirect_uris": len(metadata.redirect_uris or []),
            "usage": usage_view(self.usage),
        }

    def details(self) -> dict[str, Any]:
        """``show``: the registered metadata (RFC 7591 section 2) and usage; never the secret or token hash."""
        registered = self.client.metadata.registered()
        return {
            "issuer": self.issuer,
            "client_id": self.client.client_id,
            "deployment": deployment_of(self.client),
            "client_id_issued_at": self.client.client_id_issued_at or None,
            "client_secret_expires_at": self.client.client_secret_expires_at,
            **registered,
            "registration_access_token_issued": TOKEN_HASH_KEY in self.client.gateway_data,
            "usage": usage_view(self.usage),
        }


def usage_view(usage: ClientUsage | None) -> dict[str, int | None] | None:
    if usage is None:
        return None
    return {
        "created_at": usage.created_at,
        "updated_at": usage.updated_at,
        "last_used_at": usage.last_used_at,
        "active_sessions": usage.active_sessions,
        "offline_sessions": usage.offline_sessions,
    }


async def usage_of(adapter: ProviderAdapter, issuer: str, client_id: str) -> ClientUsage | None:
    """The client's usage when the adapter can tell (:class:`ClientHygiene`), else ``None``."""
    if not isinstance(adapter, ClientHygiene):
        return None
    return await adapter.usage(issuer, client_id)


async def _collect(iterator: AsyncIterator[_T]) -> list[_T]:
    return [item async for item in iterator]


async def managed_client_pages(
    adapter: ProviderAdapter,
    issuers: Sequence[str],
    *,
    prefix: str | None = None,
    with_usage: bool = True,
    concurrency: int = DEFAULT_CONCURRENCY,
    deployment: str | None = None,
    skipped: Skipped | None = None,
) -> AsyncIterator[list[ClientRecord]]:
    """The managed clients of ``issuers`` and ``deployment`` (whose client_id starts with ``prefix``), with usage,
    one provider page at a time; the next page is read only when the caller asks for it. Other deployments'
    clients are counted in ``skipped`` when given."""
    async for issuer, page in _selected_pages(
        adapter, issuers, prefix=prefix, deployment=deployment, skipped=skipped, with_usage=with_usage
    ):

        async def record(entry: tuple[ManagedClient, ClientUsage | None], issuer: str = issuer) -> ClientRecord:
            client, usage = entry
            if usage is None and with_usage:
                try:
                    usage = await usage_of(adapter, issuer, client.client_id)
                except ClientNotFound:  # deleted since it was listed
                    usage = None
            return ClientRecord(issuer, client, usage)

        yield await bounded_map(record, page, concurrency)


async def managed_clients(
    adapter: ProviderAdapter,
    issuers: Sequence[str],
    *,
    prefix: str | None = None,
    with_usage: bool = True,
    concurrency: int = DEFAULT_CONCURRENCY,
    deployment: str | None = None,
    skipped: Skipped | None = None,
) -> list[ClientRecord]:
    """Every page of :func:`managed_client_pages` in one list (for callers that need them all at once)."""
    pages = managed_client_pages(
        adapter,
        issuers,
        prefix=prefix,
        with_usage=with_usage,
        concurrency=concurrency,
        deployment=deployment,
        skipped=skipped,
    )
    return [record async for page in pages for record in page]


async def find_client(
    adapter: ProviderAdapter,
    issuers: Sequence[str],
    client_id: str,
    *,
    with_usage: bool = True,
    deployment: str | None = None,
) -> ClientRecord:
    """The managed client ``client_id``; :class:`ClientNotFound` when no issuer manages it (unmanaged clients
    are not found either), :class:`OtherDeployment` when it is not ``deployment``'s, :class:`AmbiguousClient` when
    several issuers manage it."""
    found: list[tuple[str, ManagedClient]] = []
    for issuer in issuers:
        try:
            found.append((issuer, await adapter.read_client(issuer, client_id)))
        except ClientNotFound:
            continue
    if not found:
        raise ClientNotFound(client_id)
    if len(found) > 1:
        raise AmbiguousClient(f"{client_id!r} exists in issuers {', '.join(i for i, _ in found)}; name one")
    issuer, client = found[0]
    if not in_deployment(client, deployment):
        raise OtherDeployment(client_id, deployment_of(client))
    usage = await usage_of(adapter, issuer, client_id) if with_usage else None
    return ClientRecord(issuer, client, usage)


# ------------------------------------------------------------------------------------------------ gc


@dataclass(frozen=True)
class GcDecision:
    """Whether a managed client is stale, and why, in words an operator can check."""

    stale: bool
    reason: str


def gc_decision(client: ManagedClient, usage: ClientUsage, *, now: int, unused_for: int) -> GcDecision:
    """A managed client is stale when the provider shows no session holding it and its most recent known
    activity (last use, else last update, else creation) is at least ``unused_for`` seconds old.

    Whatever the provider cannot tell counts for keeping: a client with no known time is never stale.
    """
    sessions = (usage.active_sessions or 0) + (usage.offline_sessions or 0)
    if sessions:
        return GcDecision(
            False,
            f"in use: {usage.active_sessions or 0} active and {usage.offline_sessions or 0} offline sessions",
        )
    created_at = usage.created_at or client.client_id_issued_at or None
    known = [
        (label, value)
        for label, value in (("last used", usage.last_used_at), ("updated", usage.updated_at), ("created", created_at))
        if value is not None
    ]
    if not known:
        return GcDecision(False, "the provider cannot tell when it was created, changed or used")
    label, latest = max(known, key=lambda item: item[1])
    idle = max(0, now - latest)
    if idle < unused_for:
        return GcDecision(False, f"{label} {format_duration(idle)} ago, less than {format_duration(unused_for)}")
    sessions_known = usage.active_sessions is not None or usage.offline_sessions is not None
    sessions_text = "no sessions" if sessions_known else "sessions unknown to the provider"
    return GcDecision(True, f"{label} {format_duration(idle)} ago (>= {format_duration(unused_for)}), {sessions_text}")


@dataclass(frozen=True)
class GcOutcome:
    issuer: str
    client: ManagedClient
    decision: GcDecision
    usage: ClientUsage | None = None
    deleted: bool = False
    error: str | None = None
    read_per_client: bool = False
    """``usage`` was read for this client (:meth:`~adapters.base.ClientHygiene.usage`), not taken from the listing."""

    @property
    def sessions_known(self) -> bool:
        return self.usage is not None and (
            self.usage.active_sessions is not None or self.usage.offline_sessions is not None
        )

    @property
    def sessions_untold(self) -> bool:
        """The provider told no session counts for this client even when asked for it alone: its decision was made
        without knowing whether the client is in use now."""
        return self.read_per_client and not self.sessions_known

    @property
    def sessions_unlisted(self) -> bool:
        """The listing told no session counts and the client was not asked alone (its times kept it)."""
        return not self.read_per_client and not self.sessions_known


def _sessions_unknown(usage: ClientUsage) -> bool:
    return usage.active_sessions is None and usage.offline_sessions is None


@dataclass(frozen=True)
class _StaleCandidate:
    """A client a listing page called stale, kept until the listing is done (``gc --apply``): its id, name and
    issue time only, so a run over 100,000 clients holds no page but this."""

    issuer: str
    client_id: str
    client_name: str | None
    issued_at: int

    def client(self) -> ManagedClient:
        return ManagedClient(
            client_id=self.client_id,
            metadata=ClientMetadata(client_name=self.client_name),
            client_id_issued_at=self.issued_at,
        )


async def garbage_pages(
    adapter: ProviderAdapter,
    issuers: Sequence[str],
    *,
    unused_for: int,
    now: int,
    apply: bool = False,
    prefix: str | None = None,
    concurrency: int = DEFAULT_CONCURRENCY,
    deployment: str | None = None,
    skipped: Skipped | None = None,
) -> AsyncIterator[list[GcOutcome]]:
    """Decide for every managed client (of ``issuers`` and ``deployment``, with ``prefix``) whether it is stale,
    a provider page at a time; with ``apply``, delete the stale ones once the listing is done (a deletion while
    paging would shift an offset-paged listing, Keycloak's, past clients never judged).

    The usage comes with the page where the adapter can tell it so (:class:`~adapters.base.UsageListing`).
    :meth:`~adapters.base.ClientHygiene.usage` is asked per client only where it matters: in a dry run for a
    client the page calls stale but whose sessions it could not read (until ``usage`` shows that it cannot tell
    them either, as on Hydra), and with ``apply`` right before each deletion, so a client that was just used is
    kept.

    A provider that is down or refuses the credentials stops the run (nothing more is deleted); a refusal for
    one client is reported on that client and the run goes on.
    """
    if not isinstance(adapter, ClientHygiene):
        raise HygieneUnsupported(f"adapter {adapter.name!r} cannot tell client usage; gc needs it")
    hygiene = adapter
    sessions_untold: set[str] = set()
    """Issuers whose ``usage`` told no sessions either: asking it again for them gains nothing."""
    stale: list[_StaleCandidate] = []

    async def fresh_usage(issuer: str, client_id: str) -> ClientUsage | None:
        try:
            usage = await hygiene.usage(issuer, client_id)
        except ClientNotFound:
            return None  # deleted since it was listed
        if _sessions_unknown(usage):
            sessions_untold.add(issuer)
        return usage

    async def judge(issuer: str, entry: tuple[ManagedClient, ClientUsage | None]) -> GcOutcome | None:
        client, usage = entry
        read_now = usage is None
        if usage is None:
            usage = await fresh_usage(issuer, client.client_id)
            if usage is None:
                return None
        decision = gc_decision(client, usage, now=now, unused_for=unused_for)
        if decision.stale and apply:
            name = client.metadata.client_name
            stale.append(_StaleCandidate(issuer, client.client_id, name, client.client_id_issued_at))
            return None
        if decision.stale and not read_now and _sessions_unknown(usage) and issuer not in sessions_untold:
            usage = await fresh_usage(issuer, client.client_id)
            if usage is None:
                return None
            read_now = True
            decision = gc_decision(client, usage, now=now, unused_for=unused_for)
        untold = issuer in sessions_untold and _sessions_unknown(usage)  # asked for another: it tells none per client
        return GcOutcome(issuer, client, decision, usage, read_per_client=read_now or untold)

    async def collect(candidate: _StaleCandidate) -> GcOutcome | None:
        issuer, client = candidate.issuer, candidate.client()
        usage = await fresh_usage(issuer, client.client_id)
        if usage is None:
            return None
        decision = gc_decision(client, usage, now=now, unused_for=unused_for)
        if not decision.stale:
            return GcOutcome(issuer, client, decision, usage, read_per_client=True)
        try:
            await adapter.delete_client(issuer, client.client_id)
        except ClientNotFound:
            return GcOutcome(
                issuer, client, decision, usage, read_per_client=True, error="deleted by someone else meanwhile"
            )
        except (ProviderUnavailable, ProviderAuthError):
            raise
        except AdapterError as exc:
            return GcOutcome(issuer, client, decision, usage, read_per_client=True, error=str(exc))
        return GcOutcome(issuer, client, decision, usage, read_per_client=True, deleted=True)

    async for issuer, page in _selected_pages(adapter, issuers, prefix=prefix, deployment=deployment, skipped=skipped):
        outcomes = await bounded_map(functools.partial(judge, issuer), page, concurrency)
        kept = [outcome for outcome in outcomes if outcome is not None]
        if kept:
            yield kept
    for first in range(0, len(stale), LISTING_CHUNK):
        outcomes = await bounded_map(collect, stale[first : first + LISTING_CHUNK], concurrency)
        yield [outcome for outcome in outcomes if outcome is not None]


async def collect_garbage(
    adapter: ProviderAdapter,
    issuers: Sequence[str],
    *,
    unused_for: int,
    now: int,
    apply: bool = False,
    prefix: str | None = None,
    concurrency: int = DEFAULT_CONCURRENCY,
    deployment: str | None = None,
    skipped: Skipped | None = None,
) -> list[GcOutcome]:
    """Every page of :func:`garbage_pages` in one list."""
    pages = garbage_pages(
        adapter,
        issuers,
        unused_for=unused_for,
        now=now,
        apply=apply,
        prefix=prefix,
        concurrency=concurrency,
        deployment=deployment,
        skipped=skipped,
    )
    return [outcome async for page in pages for outcome in page]


# --------------------------------------------------------------------------------------------- adopt


def parse_label(text: str) -> tuple[str, str]:
    """``KEY=VALUE`` of ``--attribute`` (the value may contain ``=``)."""
    key, sep, value = text.partition("=")
    if not sep or not key.strip():
        raise ValueError(f"{text!r} is not KEY=VALUE")
    return key.strip(), value


@dataclass(frozen=True)
class AdoptionSelector:
    """Which unmanaged clients to adopt. Every given criterion must hold; an empty selector selects nothing."""

    prefix: str | None = None
    labels: Mapping[str, str] = field(default_factory=dict)
    """Keycloak attributes / Hydra top-level metadata values that must all be equal."""
    client_ids: frozenset[str] = frozenset()

    @property
    def empty(self) -> bool:
        return not (self.prefix or self.labels or self.client_ids)

    def matches(self, candidate: UnmanagedClient) -> bool:
        if self.empty:
            return False
        if self.prefix and not candidate.client_id.startswith(self.prefix):
            return False
        if self.client_ids and candidate.client_id not in self.client_ids:
            return False
        return all(candidate.labels.get(key) == value for key, value in self.labels.items())


def adoption_refusal(candidate: UnmanagedClient, *, include_privileged: bool) -> str | None:
    """Why ``candidate`` is not adopted, or ``None``. A protected client (the gateway's own admin client, a
    provider built-in) never is, nor one whose id no RFC 7592 request could address (it could never be managed
    afterwards); a privileged one only with ``include_privileged``."""
    if candidate.protected:
        return f"never adopted: {candidate.protected}"
    if not addressable_client_id(candidate.client_id):
        return (
            "never adopted: its client_id is not one URL path segment of unreserved characters (at most 255), "
            "so RFC 7592 and the clients commands could not address it"
        )
    if candidate.privileges and not include_privileged:
        return f"privileged ({'; '.join(candidate.privileges)}): pass --include-privileged to adopt it"
    return None


@dataclass(frozen=True)
class AdoptionCandidate:
    issuer: str
    client: UnmanagedClient
    refusal: str | None = None


@dataclass(frozen=True)
class AdoptionPlan:
    candidates: list[AdoptionCandidate]
    unmatched: dict[str, str]
    """Explicitly named client IDs that are not adoption candidates, with why (managed already, not found)."""

    @property
    def adoptable(self) -> list[AdoptionCandidate]:
        return [c for c in self.candidates if c.refusal is None]


async def plan_adoption(
    adapter: ProviderAdapter, issuers: Sequence[str], selector: AdoptionSelector, *, include_privileged: bool
) -> AdoptionPlan:
    """The unmanaged clients ``selector`` matches, each with a refusal or none. Changes nothing."""
    if not isinstance(adapter, ClientHygiene):
        raise HygieneUnsupported(f"adapter {adapter.name!r} cannot adopt clients")
    candidates = [
        AdoptionCandidate(issuer, candidate, adoption_refusal(candidate, include_privileged=include_privileged))
        for issuer in issuers
        for candidate in await _collect(adapter.list_unmanaged(issuer))
        if selector.matches(candidate)
    ]
    seen = {c.client.client_id for c in candidates}
    unmatched: dict[str, str] = {}
    for client_id in sorted(selector.client_ids - seen):
        try:
            record = await find_client(adapter, issuers, client_id, with_usage=False)
            unmatched[client_id] = f"managed already (deployment {deployment_of(record.client)!r})"
        except AmbiguousClient:
            unmatched[client_id] = "managed already"
        except ClientNotFound:
            unmatched[client_id] = "not found, or not matching the other criteria"
    return AdoptionPlan(candidates, unmatched)


@dataclass(frozen=True)
class Adopted:
    """An adopted client and its registration access token (RFC 7592 section 3), shown once, never stored."""

    issuer: str
    client: ManagedClient
    registration_access_token: str = field(repr=False)


@dataclass(frozen=True)
class AdoptionFailure:
    issuer: str
    client_id: str
    error: str


async def adopt(
    adapter: ProviderAdapter,
    candidates: Sequence[AdoptionCandidate],
    *,
    on_adopted: Callable[[Adopted], None],
    deployment: str,
    keep_settings: bool = False,
    concurrency: int = DEFAULT_CONCURRENCY,
) -> list[AdoptionFailure]:
    """Adopt ``candidates`` (those without a refusal): mark each managed by ``deployment`` with a fresh
    registration access token's hash (RFC 7592 section 3) in its gateway data, keeping its configuration and
    secret; its settings that differ from a managed client's (:attr:`UnmanagedClient.differences`) are changed
    unless ``keep_settings``.

    ``on_adopted`` receives each token as soon as its client is adopted, so a run that stops half way has
    handed out every token it stored. Returns the clients that could not be adopted.
    """
    if not isinstance(adapter, ClientHygiene):
        raise HygieneUnsupported(f"adapter {adapter.name!r} cannot adopt clients")
    hygiene = adapter

    async def one(candidate: AdoptionCandidate) -> AdoptionFailure | None:
        token, token_hash = mint_registration_access_token()
        gateway_data = management_data(token_hash=token_hash, authenticated=False, client_secret=None)
        gateway_data[DEPLOYMENT_KEY] = deployment
        client_id = candidate.client.client_id
        try:
            managed = await hygiene.adopt_client(candidate.issuer, client_id, gateway_data, conform=not keep_settings)
        except ClientConflict:
            return AdoptionFailure(candidate.issuer, client_id, "managed already")
        except ClientNotFound:
            return AdoptionFailure(candidate.issuer, client_id, "deleted meanwhile")
        except AdoptionRefused as exc:
            return AdoptionFailure(candidate.issuer, client_id, str(exc))
        except (ProviderUnavailable, ProviderAuthError):
            raise
        except AdapterError as exc:
            return AdoptionFailure(candidate.issuer, client_id, str(exc))
        on_adopted(Adopted(candidate.issuer, managed, token))
        return None

    results = await bounded_map(one, [c for c in candidates if c.refusal is None], concurrency)
    return [failure for failure in results if failure is not None]
