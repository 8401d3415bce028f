"""``dcr-gateway clients list | show | delete | gc | adopt``.

Reads the same settings as ``serve`` (``--config FILE``, ``DCR_*`` environment), builds the configured adapter,
starts it with its own HTTP session and closes it. ``--issuer`` names one issuer (an adapter key such as a
Keycloak realm, an issuer path, or the issuer URL); by default every issuer the adapter serves. ``list``, ``show``,
``delete`` and ``gc`` act on the clients of this gateway's deployment (setting ``deployment``) only, unless
``--all-deployments``; ``adopt`` records this deployment in what it adopts.

Exit codes: 0 done; 1 nothing matched, or something was refused or failed; 2 bad usage, configuration, or a
provider that cannot be reached or refuses the gateway's admin credentials. Admin credentials, client secrets
and token hashes are never printed; registration access tokens minted by ``adopt --apply`` are printed once
(stdout, or ``--tokens-out FILE``, created with mode 0600), as JSON lines.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import shutil
import sys
import tempfile
import textwrap
import time
import unicodedata
from collections.abc import AsyncIterator, Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, TextIO

from adapters.base import (
    AdapterError,
    ClientNotFound,
    Issuer,
    ProviderAdapter,
    ProviderAuthError,
    ProviderUnavailable,
)
from gateway.clients.operations import (
    DEFAULT_CONCURRENCY,
    DURATION_UNITS,
    Adopted,
    AdoptionSelector,
    AmbiguousClient,
    ClientRecord,
    GcOutcome,
    HygieneUnsupported,
    OtherDeployment,
    Skipped,
    adopt,
    find_client,
    format_duration,
    garbage_pages,
    managed_client_pages,
    parse_duration,
    parse_instant,
    parse_label,
    plan_adoption,
)
from gateway.observability.audit import OPERATOR, AuditLog, AuditPathUnusable
from gateway.registration.records import registration_client_uri

if TYPE_CHECKING:
    from gateway.settings import Settings

EXIT_OK = 0
EXIT_NOTHING = 1
EXIT_USAGE = 2

Confirm = Callable[[str], bool]


class UsageError(ValueError):
    """Bad arguments or configuration: exit code 2."""


# ------------------------------------------------------------------------------------------- parser


def add_subcommand(subparsers: Any) -> None:
    """Add ``clients`` and its actions to the ``dcr-gateway`` parser's subparsers."""
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--config", help="TOML settings file, as for serve (DCR_* environment variables win)")
    common.add_argument(
        "--issuer", help="one issuer: adapter key (Keycloak realm), issuer path or issuer URL (default: all)"
    )
    common.add_argument(
        "--concurrency",
        type=_positive_int,
        default=DEFAULT_CONCURRENCY,
        help=f"admin calls in flight at once (default {DEFAULT_CONCURRENCY})",
    )

    scoped = argparse.ArgumentParser(add_help=False)
    scoped.add_argument(
        "--all-deployments",
        action="store_true",
        help="act on the managed clients of every gateway deployment sharing the provider (default: only this "
        "gateway's deployment, setting deployment / DCR_DEPLOYMENT)",
    )

    clients = subparsers.add_parser("clients", help="list, show, delete, garbage-collect and adopt clients")
    actions = clients.add_subparsers(dest="clients_command", required=True, metavar="ACTION")

    listing = actions.add_parser("list", parents=[common, scoped], help="managed clients, with usage when known")
    listing.add_argument("--json", action="store_true", help="a JSON array instead of a table")

    show = actions.add_parser("show", parents=[common, scoped], help="one managed client's metadata and usage")
    show.add_argument("client_id", metavar="CLIENT_ID", help="the managed client to show (its client_id)")
    show.add_argument("--json", action="store_true", help="a JSON object instead of text")

    delete = actions.add_parser("delete", parents=[common, scoped], help="delete one managed client")
    delete.add_argument("client_id", metavar="CLIENT_ID", help="the managed client to delete (its client_id)")
    delete.add_argument("--yes", action="store_true", help="do not ask for confirmation")

    gc = actions.add_parser(
        "gc", parents=[common, scoped], help="delete managed clients unused for a while (dry run unless --apply)"
    )
    gc.add_argument(
        "--unused-for",
        required=True,
        type=_duration,
        metavar="DURATION",
        help=f"a whole number and a lowercase unit, {DURATION_UNITS}: e.g. 90m, 12h, 30d, 1d12h; "
        "2M, 1y and 12H are refused",
    )
    gc.add_argument("--prefix", help="only managed clients whose client_id starts with PREFIX")
    gc.add_argument(
        "--as-of",
        type=_instant,
        metavar="TIME",
        help="judge idleness as of TIME (epoch seconds or ISO 8601) instead of now; a future TIME only for a dry run",
    )
    gc.add_argument("--apply", action="store_true", help="delete (default: only print what would be deleted)")

    adopt_parser = actions.add_parser(
        "adopt",
        parents=[common],
        help="take over clients a registration shim created (dry run unless --apply)",
    )
    adopt_parser.add_argument("client_ids", nargs="*", metavar="CLIENT_ID", help="adopt these clients")
    adopt_parser.add_argument("--prefix", help="clients whose client_id starts with PREFIX")
    adopt_parser.add_argument(
        "--attribute",
        action="append",
        default=[],
        type=_label,
        metavar="KEY=VALUE",
        help="clients with this Keycloak attribute / Hydra metadata value (repeatable; all must match)",
    )
    adopt_parser.add_argument(
        "--include-privileged",
        action="store_true",
        help="also adopt clients with a service account, client_credentials, password grant or skipped consent",
    )
    adopt_parser.add_argument(
        "--keep-settings",
        action="store_true",
        help="keep the settings in which a client differs from managed clients (consent not required, full scope "
        "allowed, no PKCE S256, skipped consent); by default adoption changes them, and the dry run lists each",
    )
    adopt_parser.add_argument(
        "--tokens-out",
        metavar="FILE",
        help="write the registration access tokens to FILE (new, mode 0600) instead of standard output",
    )
    adopt_parser.add_argument("--apply", action="store_true", help="adopt (default: only print what would be)")

    for parser in (listing, show, delete, gc, adopt_parser):
        parser.set_defaults(func=main)


def _positive_int(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError("must be at least 1")
    return value


def _duration(text: str) -> int:
    try:
        return parse_duration(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def _instant(text: str) -> int:
    try:
        return parse_instant(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def _label(text: str) -> tuple[str, str]:
    try:
        return parse_label(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


# ------------------------------------------------------------------------------------- entry points


def main(args: argparse.Namespace) -> int:
    """``dcr-gateway clients ...``: settings, adapter, one action."""
    from adapters.registry import get_factory
    from gateway.logging import configure_logging
    from gateway.settings import load_settings

    try:
        settings = load_settings(args.config)
    except ValueError as exc:  # ConfigurationError: one line per problem, as `dcr-gateway serve` prints them
        for problem in getattr(exc, "problems", None) or [str(exc)]:
            print(f"dcr-gateway: invalid configuration: {problem}", file=sys.stderr)
        return EXIT_USAGE
    configure_logging(settings.log_level, settings.log_format)
    try:
        adapter = get_factory(settings.provider)(settings)
    except (ValueError, LookupError, ImportError) as exc:
        print(f"dcr-gateway: {exc}", file=sys.stderr)
        return EXIT_USAGE
    return asyncio.run(run(args, settings, adapter))


AUDITED_COMMANDS = frozenset({"adopt", "gc", "delete"})
"""The subcommands that change clients, and so write audit events."""


async def run(
    args: argparse.Namespace,
    settings: Settings,
    adapter: ProviderAdapter,
    *,
    out: TextIO | None = None,
    err: TextIO | None = None,
    now: int | None = None,
    confirm: Confirm | None = None,
) -> int:
    """Run one action with ``adapter`` (started here with its own HTTP session, and closed)."""
    import aiohttp

    context = Context(
        args=args,
        settings=settings,
        adapter=adapter,
        out=out or sys.stdout,
        err=err or sys.stderr,
        now=int(time.time()) if now is None else now,
        confirm=confirm or _ask,
    )
    timeout = aiohttp.ClientTimeout(total=settings.provider_timeout)
    async with aiohttp.ClientSession(timeout=timeout, cookie_jar=aiohttp.DummyCookieJar()) as session:
        try:
            if args.clients_command in AUDITED_COMMANDS:
                context.open_audit_log()
            await adapter.start(session)
            context.issuers = select_issuers(adapter.issuers(), settings.public_url, args.issuer)
            return await ACTIONS[args.clients_command](context)
        except UsageError as exc:
            context.error(str(exc))
            return EXIT_USAGE
        except HygieneUnsupported as exc:
            context.error(str(exc))
            return EXIT_USAGE
        except ProviderAuthError as exc:
            context.error(f"the provider refused the gateway's admin credentials: {exc}")
            return EXIT_USAGE
        except ProviderUnavailable as exc:
            context.error(f"the provider is unavailable: {exc}")
            return EXIT_USAGE
        except AdapterError as exc:  # a refusal the command cannot act on: the adapter's message, for logs
            context.error(f"the provider refused: {exc}")
            return EXIT_USAGE
        finally:
            await adapter.close()
            if context.audit_log is not None:
                context.audit_log.close()


@dataclass
class Context:
    args: argparse.Namespace
    settings: Settings
    adapter: ProviderAdapter
    out: TextIO
    err: TextIO
    now: int
    confirm: Confirm
    issuers: list[Issuer] | None = None
    audit_log: AuditLog | None = None

    def open_audit_log(self) -> None:
        """Open the audit file before any change: a path that cannot be opened stops the command here
        (:class:`UsageError`, exit 2), not half-way; a write that fails later is logged and counted
        (:meth:`AuditLog.emit` never raises)."""
        self.audit_log = AuditLog(enabled=self.settings.audit.enabled, path=self.settings.audit.path)
        try:
            self.audit_log.check()
        except AuditPathUnusable as exc:
            raise UsageError(str(exc)) from None

    def audit(
        self, operation: str, *, success: bool, issuer_key: str, client_id: str, error: str | None = None
    ) -> None:
        """The audit event (:mod:`gateway.observability.audit`) of one client this command changed or failed to:
        ``CLIENT_ADOPT``, ``CLIENT_GC``, ``CLIENT_DELETE`` (``*_ERROR``), caller ``operator``."""
        if self.audit_log is None:
            self.audit_log = AuditLog(enabled=self.settings.audit.enabled, path=self.settings.audit.path)
        path = next((issuer.path for issuer in self.issuers or [] if issuer.key == issuer_key), "")
        self.audit_log.emit(
            operation,
            success=success,
            issuer=f"{self.settings.public_url}{path}",
            client_id=client_id,
            caller=OPERATOR,
            deployment=self.settings.deployment,
            error=error,
        )

    @property
    def issuer_keys(self) -> list[str]:
        return [issuer.key for issuer in self.issuers or []]

    @property
    def deployment(self) -> str | None:
        """The deployment whose clients the action touches; ``None`` with ``--all-deployments``."""
        return None if getattr(self.args, "all_deployments", False) else self.settings.deployment

    def scope_note(self, skipped: Skipped) -> None:
        """Say that other deployments' clients were left out, and how many (none: nothing to say)."""
        if skipped.count and self.deployment is not None:
            others = sorted(skipped.deployments)
            self.note(
                f"note: {skipped.count} managed clients of other deployments ({', '.join(map(repr, others))}) left "
                f"out: this gateway is deployment {self.deployment!r} (--all-deployments includes them)"
            )

    def registration_endpoint(self, issuer_key: str) -> str:
        path = next(issuer.path for issuer in self.issuers or [] if issuer.key == issuer_key)
        return f"{self.settings.public_url}{path}{self.settings.registration_path}"

    def say(self, line: str, end: str = "\n") -> None:
        print(line, file=self.out, end=end, flush=True)

    def note(self, line: str) -> None:
        print(line, file=self.err, flush=True)

    def error(self, line: str) -> None:
        print(f"dcr-gateway clients: {line}", file=self.err, flush=True)


def _ask(prompt: str) -> bool:
    """A yes/no question on standard error, answered on standard input (no answer: no)."""
    print(prompt, end="", file=sys.stderr, flush=True)
    answer = sys.stdin.readline()
    return answer.strip().lower() in {"y", "yes"}


def select_issuers(issuers: Sequence[Issuer], public_url: str, wanted: str | None) -> list[Issuer]:
    """All issuers, or the one ``wanted`` names by key, path or URL."""
    if wanted is None:
        return list(issuers)
    name = wanted.rstrip("/")
    for issuer in issuers:
        if name in (issuer.key, issuer.path, f"{public_url}{issuer.path}"):
            return [issuer]
    known = ", ".join(f"{i.key} ({public_url}{i.path})" for i in issuers)
    raise UsageError(f"no issuer {wanted!r}; this adapter serves: {known}")


# --------------------------------------------------------------------------------------- formatting


def printable(text: object) -> str:
    """Client-chosen text made safe for a terminal: control characters (escape sequences) are escaped."""
    return "".join(
        ch if not unicodedata.category(ch).startswith("C") else ch.encode("unicode_escape").decode("ascii")
        for ch in str(text)
    )


def when(timestamp: int | None) -> str:
    if not timestamp:
        return "-"
    return datetime.fromtimestamp(timestamp, UTC).strftime("%Y-%m-%dT%H:%MZ")


def sessions_text(record: ClientRecord) -> str:
    usage = record.usage
    if usage is None or (usage.active_sessions is None and usage.offline_sessions is None):
        return "-"
    return f"{usage.active_sessions or 0}+{usage.offline_sessions or 0} offline"


def dump_json(value: Any) -> str:
    return json.dumps(value, indent=2, sort_keys=False)  # ensure_ascii: no raw control characters in output


def _label_of(issuer: str, client_id: str, name: str | None) -> str:
    named = f' "{printable(name)}"' if name else ""
    return f"{printable(issuer)} {printable(client_id)}{named}"


# ------------------------------------------------------------------------------------------ actions


LIST_HEADER = ["ISSUER", "CLIENT_ID", "NAME", "CREATED", "LAST USED", "SESSIONS", "AUTH METHOD", "REDIRECTS"]


def _list_row(record: ClientRecord, every: bool) -> list[str]:
    summary = record.summary()
    usage = record.usage
    return [
        printable(record.issuer),
        printable(record.client.client_id),
        printable(summary["client_name"] or "-"),
        when((usage.created_at if usage else None) or record.client.client_id_issued_at),
        when(usage.last_used_at if usage else None),
        sessions_text(record),
        printable(summary["token_endpoint_auth_method"] or "-"),
        str(summary["redirect_uris"]),
        *([printable(summary["deployment"])] if every else []),
    ]


JSON_SPOOL_BYTES = 1 << 20
"""How much of ``list --json``'s array is held in memory before the rest is spooled to a temporary file."""

NAME_COLUMN = LIST_HEADER.index("NAME")
NAME_WIDTH = 24
"""The NAME column is at least this wide: a later page's longer name is cut there, not at the first page's."""
CLIENT_ID_COLUMN = LIST_HEADER.index("CLIENT_ID")


def _fit(cell: str, width: int, column: int) -> str:
    """A later page's cell in a column sized by the first page: cut with an ellipsis where wider (never a client
    id: ``show`` and ``delete`` take it), padded where narrower."""
    if len(cell) > width and column != CLIENT_ID_COLUMN:
        cell = cell[: width - 1] + "…"
    return cell.ljust(width)


async def list_action(context: Context) -> int:
    """Reads the listing one provider page at a time (issue 12: one page in memory, not every client). The table
    is printed page by page, its columns sized by the header and the first page; the JSON array is spooled
    (:data:`JSON_SPOOL_BYTES` in memory, then a temporary file) and written only once the listing is complete, so
    a failing page leaves nothing on standard output."""
    if context.args.json:
        return await _list_json(context)
    skipped = Skipped()
    every = context.deployment is None
    header = LIST_HEADER + (["DEPLOYMENT"] if every else [])
    widths: list[int] = []
    listed = 0
    async for page in _listing_pages(context, skipped):
        rows = [_list_row(record, every) for record in page]
        if not widths:
            widths = [max(len(title), *(len(row[i]) for row in rows)) for i, title in enumerate(header)]
            widths[NAME_COLUMN] = max(widths[NAME_COLUMN], NAME_WIDTH)
            context.say("  ".join(title.ljust(width) for title, width in zip(header, widths, strict=True)).rstrip())
        for row in rows:
            cells = (_fit(cell, width, i) for i, (cell, width) in enumerate(zip(row, widths, strict=True)))
            context.say("  ".join(cells).rstrip())
        listed += len(page)
    context.scope_note(skipped)
    if not listed:
        context.note("no managed clients")
    return EXIT_OK


def _listing_pages(context: Context, skipped: Skipped) -> AsyncIterator[list[ClientRecord]]:
    """The managed clients ``list`` shows, page by page (:func:`managed_client_pages` with the command's issuers,
    deployment and concurrency); what it could not read goes to ``skipped``."""
    return managed_client_pages(
        context.adapter,
        context.issuer_keys,
        concurrency=context.args.concurrency,
        deployment=context.deployment,
        skipped=skipped,
    )


async def _list_json(context: Context) -> int:
    skipped = Skipped()
    listed = 0
    with tempfile.SpooledTemporaryFile(max_size=JSON_SPOOL_BYTES, mode="w+", encoding="utf-8") as spool:
        async for page in _listing_pages(context, skipped):
            for record in page:
                spool.write(("[\n" if listed == 0 else ",\n") + textwrap.indent(dump_json(record.summary()), "  "))
                listed += 1
        spool.write("\n]\n" if listed else "[]\n")
        spool.seek(0)
        shutil.copyfileobj(spool, context.out)
        context.out.flush()
    context.scope_note(skipped)
    return EXIT_OK


async def _find(context: Context) -> ClientRecord | None:
    try:
        return await find_client(
            context.adapter, context.issuer_keys, context.args.client_id, deployment=context.deployment
        )
    except OtherDeployment as exc:
        context.error(
            f"no managed client {printable(context.args.client_id)!r} in deployment {context.deployment!r}: it "
            f"belongs to deployment {printable(exc.deployment)!r} (pass --all-deployments to act on it)"
        )
        return None
    except ClientNotFound:
        context.error(f"no managed client {printable(context.args.client_id)!r}")
        return None
    except AmbiguousClient as exc:
        raise UsageError(f"{exc} with --issuer") from None


async def show_action(context: Context) -> int:
    record = await _find(context)
    if record is None:
        return EXIT_NOTHING
    details = record.details()
    if context.args.json:
        context.say(dump_json(details))
        return EXIT_OK
    usage = details.pop("usage") or {}
    for key, value in [*details.items(), *((f"usage.{k}", v) for k, v in usage.items())]:
        if value is None:
            continue
        if key.endswith("_at") and isinstance(value, int) and value:
            shown = f"{value} ({when(value)})"
        elif isinstance(value, list):
            shown = " ".join(map(str, value))
        elif isinstance(value, dict):
            shown = json.dumps(value)
        else:
            shown = str(value)
        context.say(f"{key}: {printable(shown)}")
    return EXIT_OK


async def delete_action(context: Context) -> int:
    record = await _find(context)
    if record is None:
        return EXIT_NOTHING
    label = _label_of(record.issuer, record.client.client_id, record.client.metadata.client_name)
    if not context.args.yes and not await asyncio.to_thread(context.confirm, f"delete managed client {label}? [y/N] "):
        context.error("not deleted (confirm, or pass --yes)")
        return EXIT_NOTHING
    try:
        await context.adapter.delete_client(record.issuer, record.client.client_id)
    except ClientNotFound:
        context.audit(
            "delete", success=False, issuer_key=record.issuer, client_id=record.client.client_id, error="not_found"
        )
        context.error(f"{label} was deleted meanwhile")
        return EXIT_NOTHING
    context.audit("delete", success=True, issuer_key=record.issuer, client_id=record.client.client_id)
    context.say(f"deleted {label}")
    return EXIT_OK


async def gc_action(context: Context) -> int:
    args = context.args
    as_of = context.now if args.as_of is None else args.as_of
    if args.apply and as_of > context.now:
        # A later time makes clients look older than they are: preview it, never delete by it.
        raise UsageError("--as-of in the future is for a dry run only; drop --apply")
    skipped = Skipped()
    total = stale = deleted = failed = 0
    sessions_untold = sessions_unlisted = False
    async for page in garbage_pages(
        context.adapter,
        context.issuer_keys,
        unused_for=args.unused_for,
        now=as_of,
        apply=args.apply,
        prefix=args.prefix,
        concurrency=args.concurrency,
        deployment=context.deployment,
        skipped=skipped,
    ):
        for outcome in page:
            _report_gc(context, outcome)
            total += 1
            stale += outcome.decision.stale
            deleted += outcome.deleted
            failed += outcome.error is not None
            sessions_untold = sessions_untold or outcome.sessions_untold
            sessions_unlisted = sessions_unlisted or outcome.sessions_unlisted
    context.scope_note(skipped)
    note = _sessions_note(context, untold=sessions_untold, unlisted=sessions_unlisted)
    if note:
        context.note(note)
    summary = f"{total} managed clients, {stale} stale"
    if args.apply:
        context.say(f"{summary}: {deleted} deleted" + (f", {failed} not deleted" if failed else ""))
    else:
        context.say(f"{summary}: dry run, nothing deleted (pass --apply to delete)")
    return EXIT_NOTHING if failed else EXIT_OK


SESSIONS_UNTOLD_CAUSE = {"hydra": "Hydra's admin API has no per-client sessions"}
"""Why a provider tells no session counts even for one client, by adapter name."""


def _sessions_note(context: Context, *, untold: bool, unlisted: bool) -> str | None:
    """What ``gc`` could not know of sessions, and the provider's real cause: sessions told for no client even when
    asked alone (Hydra: its admin API has none), or only missing from the listing (Keycloak without
    ``realm-management/view-realm``: read per client, for the clients stale by their times)."""
    name = context.adapter.name
    if untold or (unlisted and name in SESSIONS_UNTOLD_CAUSE):
        cause = SESSIONS_UNTOLD_CAUSE.get(name, "it told no session counts")
        return (
            f"note: the provider cannot tell whether a client is in use now ({cause}): unused means not created or "
            f"changed for {format_duration(context.args.unused_for)}"
        )
    if not unlisted:
        return None
    unread: dict[str, str] = getattr(context.adapter, "session_stats_unread", None) or {}
    causes = sorted({unread[key] for key in context.issuer_keys if key in unread})
    because = f" ({'; '.join(causes)})" if causes else ""
    return (
        "note: session counts were read per client, only for the clients stale by their times: the listing could "
        f"not read them{because}"
    )


def _report_gc(context: Context, outcome: GcOutcome) -> None:
    """One line per judged client, printed as its page is done; an audit event for each deletion tried."""
    label = _label_of(outcome.issuer, outcome.client.client_id, outcome.client.metadata.client_name)
    if outcome.deleted or outcome.error:
        context.audit(
            "gc",
            success=outcome.deleted,
            issuer_key=outcome.issuer,
            client_id=outcome.client.client_id,
            error=None if outcome.deleted else "not_deleted",
        )
    if outcome.error:
        verb = "not deleted"
        reason = f"{outcome.decision.reason}; {outcome.error}"
    else:
        verb = "keep" if not outcome.decision.stale else "deleted" if outcome.deleted else "would delete"
        reason = outcome.decision.reason
    context.say(f"{verb:<13}{label}: {printable(reason)}")


async def adopt_action(context: Context) -> int:
    args = context.args
    selector = AdoptionSelector(prefix=args.prefix, labels=dict(args.attribute), client_ids=frozenset(args.client_ids))
    if selector.empty:
        raise UsageError("adopt needs client IDs, --prefix or --attribute: it never adopts every client")
    plan = await plan_adoption(
        context.adapter, context.issuer_keys, selector, include_privileged=args.include_privileged
    )
    report = context.note if args.apply and not args.tokens_out else context.say
    verb = "keep" if args.keep_settings else "change"
    for candidate in plan.candidates:
        label = _label_of(candidate.issuer, candidate.client.client_id, candidate.client.client_name)
        if candidate.refusal:
            report(f"{'refused':<13}{label}: {printable(candidate.refusal)}")
        elif not args.apply:
            report(f"{'would adopt':<13}{label}")
            for difference in candidate.client.differences:
                report(f"{'':<13}{verb}: {printable(difference)}")
    for client_id, why in plan.unmatched.items():
        report(f"{'not adopted':<13}{printable(client_id)}: {why}")
    adoptable = plan.adoptable
    if not adoptable:
        report("nothing to adopt")
        return EXIT_NOTHING
    if not args.apply:
        differing = sum(len(c.client.differences) for c in adoptable)
        report(f"dry run: {len(adoptable)} would be adopted (pass --apply to adopt and issue their tokens)")
        if differing and not args.keep_settings:
            report(
                f"{differing} settings differ from what managed clients have and would be changed by --apply "
                "(--keep-settings keeps them)"
            )
        elif differing:
            report(f"{differing} settings differ from what managed clients have and would be kept (--keep-settings)")
        return EXIT_OK

    sink = _open_tokens_file(args.tokens_out) if args.tokens_out else context.out
    adopted: list[Adopted] = []
    differences = {(c.issuer, c.client.client_id): c.client.differences for c in adoptable}

    def deliver(result: Adopted) -> None:
        line = {
            "client_id": result.client.client_id,
            "registration_access_token": result.registration_access_token,
            "registration_client_uri": registration_client_uri(
                context.registration_endpoint(result.issuer), result.client.client_id
            ),
        }
        sink.write(json.dumps(line) + "\n")
        sink.flush()
        context.audit("adopt", success=True, issuer_key=result.issuer, client_id=result.client.client_id)
        adopted.append(result)
        report(
            f"{'adopted':<13}{_label_of(result.issuer, result.client.client_id, result.client.metadata.client_name)}"
        )
        for difference in differences.get((result.issuer, result.client.client_id), ()):
            report(f"{'':<13}{'kept' if args.keep_settings else 'changed'}: {printable(difference)}")

    try:
        failures = await adopt(
            context.adapter,
            adoptable,
            on_adopted=deliver,
            deployment=context.settings.deployment,
            keep_settings=args.keep_settings,
            concurrency=args.concurrency,
        )
    finally:
        if sink is not context.out:
            sink.close()
    for failure in failures:
        context.audit(
            "adopt", success=False, issuer_key=failure.issuer, client_id=failure.client_id, error="not_adopted"
        )
        report(f"{'failed':<13}{printable(failure.issuer)} {printable(failure.client_id)}: {printable(failure.error)}")
    where = f" (registration access tokens in {args.tokens_out})" if args.tokens_out else ""
    report(f"{len(adopted)} adopted, {len(failures)} failed{where}")
    return EXIT_NOTHING if failures or not adopted else EXIT_OK


def _open_tokens_file(path: str) -> TextIO:
    """A new file readable by its owner only; an existing file is never overwritten (it may hold tokens)."""
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        raise UsageError(f"--tokens-out {path!r} exists; not overwritten") from None
    except OSError as exc:
        raise UsageError(f"--tokens-out {path!r}: {exc.strerror}") from None
    return os.fdopen(fd, "w", encoding="utf-8")


ACTIONS = {
    "list": list_action,
    "show": show_action,
    "delete": delete_action,
    "gc": gc_action,
    "adopt": adopt_action,
}
