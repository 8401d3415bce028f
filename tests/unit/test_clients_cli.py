"""``dcr-gateway clients`` end to end through its argument parser, with the in-memory reference adapter.

What the real providers do is proved in tests/integration/test_clients_cli.py; these pin the command's
behaviour: output, exit codes, dry runs, confirmations and the once-only token output.
"""

from __future__ import annotations

import io
import json
import os
import stat
import tempfile
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from adapters.base import (
    DEPLOYMENT_KEY,
    Capabilities,
    ClientUsage,
    Issuer,
    ManagedClient,
    NewClient,
    ProviderUnavailable,
    SettingDifference,
    UnmanagedClient,
)
from adapters.memory.adapter import MemoryAdapter
from gateway.cli import build_parser
from gateway.cli import main as cli_main
from gateway.clients.cli import run
from gateway.oauth.metadata import ClientMetadata
from gateway.registration.tokens import TOKEN_HASH_KEY, verify_registration_access_token
from gateway.settings import Settings

PUBLIC = "https://auth.example.com"
NOW = 1_800_000_000
DAY = 86400
ISSUER = "default"


class Output:
    def __init__(self, code: int, out: str, err: str) -> None:
        self.code, self.out, self.err = code, out, err


async def clients(adapter: Any, *argv: str, confirm: Any = None, deployment: str = "default") -> Output:
    args = build_parser().parse_args(["clients", *argv])
    out, err = io.StringIO(), io.StringIO()
    settings = Settings(
        provider="memory", public_url=PUBLIC, provider_url="http://provider.internal", deployment=deployment
    )
    code = await run(args, settings, adapter, out=out, err=err, now=NOW, confirm=confirm)
    return Output(code, out.getvalue(), err.getvalue())


def new_client(
    client_id: str, *, name: str | None = None, secret: str | None = None, issued_at: int = NOW
) -> NewClient:
    metadata = ClientMetadata(
        client_name=name,
        redirect_uris=["http://127.0.0.1:3000/callback", "https://app.example.com/cb"],
        token_endpoint_auth_method="client_secret_basic" if secret else "none",
        grant_types=["authorization_code"],
        response_types=["code"],
    )
    return NewClient(
        client_id=client_id,
        client_secret=secret,
        client_id_issued_at=issued_at,
        client_secret_expires_at=0,
        metadata=metadata,
        gateway_data={TOKEN_HASH_KEY: "sha256:stored-hash-never-shown"},
    )


@pytest.fixture
async def memory() -> MemoryAdapter:
    adapter = MemoryAdapter(public_url="http://provider.internal")
    await adapter.create_client(
        ISSUER, new_client("c-stale", name="Stale", secret="s3cret-stale", issued_at=NOW - 40 * DAY)
    )
    await adapter.create_client(ISSUER, new_client("c-busy", name="Busy", issued_at=NOW - 40 * DAY))
    await adapter.create_client(ISSUER, new_client("c-fresh", name="Fresh", issued_at=NOW - DAY))
    adapter.usages[ISSUER] = {
        "c-stale": ClientUsage(created_at=NOW - 40 * DAY, active_sessions=0, offline_sessions=0),
        "c-busy": ClientUsage(created_at=NOW - 40 * DAY, active_sessions=0, offline_sessions=3),
    }
    adapter.add_unmanaged(ISSUER, "legacy-stale")
    return adapter


# ------------------------------------------------------------------------------------- list / show


async def test_list_json_has_every_managed_client_and_no_credentials(memory: MemoryAdapter) -> None:
    result = await clients(memory, "list", "--json")
    assert result.code == 0
    rows = {row["client_id"]: row for row in json.loads(result.out)}
    assert sorted(rows) == ["c-busy", "c-fresh", "c-stale"]
    assert rows["c-stale"] == {
        "issuer": ISSUER,
        "client_id": "c-stale",
        "deployment": "default",
        "client_name": "Stale",
        "client_id_issued_at": NOW - 40 * DAY,
        "token_endpoint_auth_method": "client_secret_basic",
        "redirect_uris": 2,
        "usage": {
            "created_at": NOW - 40 * DAY,
            "updated_at": None,
            "last_used_at": None,
            "active_sessions": 0,
            "offline_sessions": 0,
        },
    }
    assert "s3cret" not in result.out
    assert "stored-hash" not in result.out


async def test_list_table_escapes_client_chosen_names(memory: MemoryAdapter) -> None:
    await memory.create_client(ISSUER, new_client("c-evil", name="\x1b]0;pwned\x07Evil"))
    result = await clients(memory, "list")
    assert result.code == 0
    lines = result.out.splitlines()
    assert lines[0].split() == [
        "ISSUER",
        "CLIENT_ID",
        "NAME",
        "CREATED",
        "LAST",
        "USED",
        "SESSIONS",
        "AUTH",
        "METHOD",
        "REDIRECTS",
    ]
    assert "\x1b" not in result.out
    assert "\\x1b]0;pwned\\x07Evil" in result.out
    busy = next(line for line in lines if "c-busy" in line)
    assert "0+3 offline" in busy
    assert "2026-12-06T08:00Z" in busy  # created NOW - 40 days, as a UTC time


async def test_list_with_no_managed_client_says_so(memory: MemoryAdapter) -> None:
    memory.clients[ISSUER].clear()
    result = await clients(memory, "list")
    assert (result.code, result.out, result.err) == (0, "", "no managed clients\n")


async def test_show_gives_metadata_and_usage_but_no_secret_or_token_hash(memory: MemoryAdapter) -> None:
    result = await clients(memory, "show", "c-stale", "--json")
    assert result.code == 0
    details = json.loads(result.out)
    assert details["client_id"] == "c-stale"
    assert details["redirect_uris"] == ["http://127.0.0.1:3000/callback", "https://app.example.com/cb"]
    assert details["registration_access_token_issued"] is True
    assert details["usage"]["active_sessions"] == 0
    assert "client_secret" not in details
    assert "s3cret" not in result.out and "stored-hash" not in result.out

    text = await clients(memory, "show", "c-stale")
    assert "client_name: Stale" in text.out.splitlines()
    assert f"client_id_issued_at: {NOW - 40 * DAY} (2026-12-06T08:00Z)" in text.out
    assert "s3cret" not in text.out and "stored-hash" not in text.out


@pytest.mark.parametrize("client_id", ["nope", "legacy-stale"])
async def test_show_of_an_unknown_or_unmanaged_client_matches_nothing(memory: MemoryAdapter, client_id: str) -> None:
    result = await clients(memory, "show", client_id)
    assert (result.code, result.out) == (1, "")
    assert f"no managed client '{client_id}'" in result.err


# ------------------------------------------------------------------------------------------ delete


async def test_delete_asks_and_a_no_keeps_the_client(memory: MemoryAdapter) -> None:
    questions: list[str] = []

    def refuse(question: str) -> bool:
        questions.append(question)
        return False

    result = await clients(memory, "delete", "c-fresh", confirm=refuse)
    assert result.code == 1
    assert questions == ['delete managed client default c-fresh "Fresh"? [y/N] ']
    assert "not deleted (confirm, or pass --yes)" in result.err
    assert "c-fresh" in memory.clients[ISSUER]


async def test_delete_after_a_yes_or_with_yes(memory: MemoryAdapter) -> None:
    result = await clients(memory, "delete", "c-fresh", confirm=lambda _: True)
    assert (result.code, result.out) == (0, 'deleted default c-fresh "Fresh"\n')
    assert "c-fresh" not in memory.clients[ISSUER]

    def never(_: str) -> bool:
        raise AssertionError("--yes must not ask")

    result = await clients(memory, "delete", "c-busy", "--yes", confirm=never)
    assert result.code == 0
    assert "c-busy" not in memory.clients[ISSUER]


async def test_delete_never_reaches_an_unmanaged_client(memory: MemoryAdapter) -> None:
    result = await clients(memory, "delete", "legacy-stale", "--yes")
    assert result.code == 1
    assert "legacy-stale" in memory.unmanaged[ISSUER]


# ---------------------------------------------------------------------------------------------- gc


async def test_gc_is_a_dry_run_by_default(memory: MemoryAdapter) -> None:
    result = await clients(memory, "gc", "--unused-for", "30d")
    assert result.code == 0
    assert result.out.splitlines() == [
        'would delete default c-stale "Stale": created 40d ago (>= 30d), no sessions',
        'keep         default c-busy "Busy": in use: 0 active and 3 offline sessions',
        'keep         default c-fresh "Fresh": created 1d ago, less than 30d',
        "3 managed clients, 1 stale: dry run, nothing deleted (pass --apply to delete)",
    ]
    assert sorted(memory.clients[ISSUER]) == ["c-busy", "c-fresh", "c-stale"]
    # c-fresh has no session counts, but it is kept by its times: nothing was judged stale without them
    assert "cannot tell whether a client is in use now" not in result.err
    assert "read per client, only for the clients stale by their times" in result.err
    known = await clients(memory, "gc", "--unused-for", "30d", "--prefix", "c-s")
    assert known.err == ""


async def test_gc_apply_deletes_only_stale_managed_clients(memory: MemoryAdapter) -> None:
    result = await clients(memory, "gc", "--unused-for", "30d", "--apply")
    assert result.code == 0
    # deletions come after the listing (issue 12: a deletion while paging would shift an offset-paged listing)
    assert 'deleted      default c-stale "Stale": created 40d ago (>= 30d), no sessions' in result.out.splitlines()
    assert result.out.splitlines()[-1] == "3 managed clients, 1 stale: 1 deleted"
    assert sorted(memory.clients[ISSUER]) == ["c-busy", "c-fresh"]
    assert memory.unmanaged[ISSUER] == {"legacy-stale"}


async def test_gc_prefix_limits_what_is_considered(memory: MemoryAdapter) -> None:
    result = await clients(memory, "gc", "--unused-for", "0s", "--prefix", "c-f", "--apply")
    assert result.code == 0
    assert result.out.splitlines()[-1] == "1 managed clients, 1 stale: 1 deleted"
    assert sorted(memory.clients[ISSUER]) == ["c-busy", "c-stale"]


async def test_gc_as_of_previews_a_later_run_but_never_deletes_by_it(memory: MemoryAdapter) -> None:
    later = await clients(memory, "gc", "--unused-for", "30d", "--as-of", str(NOW + 30 * DAY))
    assert later.code == 0
    assert (
        'would delete default c-fresh "Fresh": created 31d ago (>= 30d), sessions unknown to the provider' in later.out
    )
    refused = await clients(memory, "gc", "--unused-for", "30d", "--as-of", str(NOW + 30 * DAY), "--apply")
    assert refused.code == 2
    assert "--as-of in the future is for a dry run only; drop --apply" in refused.err
    earlier = await clients(memory, "gc", "--unused-for", "30d", "--as-of", str(NOW - 20 * DAY), "--apply")
    assert earlier.code == 0
    assert earlier.out.splitlines()[-1] == "3 managed clients, 0 stale: 0 deleted"
    assert sorted(memory.clients[ISSUER]) == ["c-busy", "c-fresh", "c-stale"]


@pytest.mark.parametrize("duration", ["30", "thirty days", "-1d", "2M", "1y", "1D"])
def test_gc_needs_a_duration_with_a_unit(duration: str, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_info:
        build_parser().parse_args(["clients", "gc", f"--unused-for={duration}"])
    assert exit_info.value.code == 2
    err = capsys.readouterr().err
    assert "is not a duration" in err
    assert "m (minutes)" in err


def test_gc_help_documents_the_duration_units(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        build_parser().parse_args(["clients", "gc", "--help"])
    out = " ".join(capsys.readouterr().out.split())
    assert "90m" in out and "12h" in out and "30d" in out
    assert "m (minutes)" in out


# ------------------------------------------------------------------------------------------- adopt


@pytest.fixture
def shims(memory: MemoryAdapter) -> MemoryAdapter:
    for candidate in (
        UnmanagedClient(client_id="shim-a", client_name="Shim A", labels={"origin": "shim"}),
        UnmanagedClient(client_id="shim-b", labels={"origin": "shim"}, privileges=("client_credentials grant",)),
        UnmanagedClient(client_id="shim-admin", labels={"origin": "shim"}, protected="the gateway's own admin client"),
        UnmanagedClient(client_id="other-c", labels={"origin": "shim"}),
    ):
        memory.add_unmanaged_client(ISSUER, candidate)
    return memory


async def test_adopt_dry_run_reports_and_changes_nothing(shims: MemoryAdapter) -> None:
    result = await clients(shims, "adopt", "--prefix", "shim-")
    assert result.code == 0
    assert result.out.splitlines() == [
        'would adopt  default shim-a "Shim A"',
        "refused      default shim-admin: never adopted: the gateway's own admin client",
        "refused      default shim-b: privileged (client_credentials grant): pass --include-privileged to adopt it",
        "dry run: 1 would be adopted (pass --apply to adopt and issue their tokens)",
    ]
    assert "shim-a" not in shims.clients[ISSUER]


async def test_adopt_apply_prints_each_token_once_and_the_token_verifies(shims: MemoryAdapter) -> None:
    result = await clients(shims, "adopt", "--prefix", "shim-", "--include-privileged", "--apply")
    assert result.code == 0
    lines = [json.loads(line) for line in result.out.splitlines()]  # stdout holds only the tokens
    assert sorted(line["client_id"] for line in lines) == ["shim-a", "shim-b"]
    for line in lines:
        assert set(line) == {"client_id", "registration_access_token", "registration_client_uri"}
        assert line["registration_client_uri"] == f"{PUBLIC}/register/{line['client_id']}"
        adopted = shims.clients[ISSUER][line["client_id"]]
        assert verify_registration_access_token(line["registration_access_token"], adopted.gateway_data[TOKEN_HASH_KEY])
        assert adopted.gateway_data["authenticated"] is False
    assert "adopted      default shim-a" in result.err
    assert "refused      default shim-admin" in result.err
    assert "2 adopted, 0 failed" in result.err
    assert "shim-admin" in shims.unmanaged[ISSUER]
    assert "other-c" in shims.unmanaged[ISSUER]

    listed = await clients(shims, "list", "--json")
    assert {"shim-a", "shim-b"} <= {row["client_id"] for row in json.loads(listed.out)}
    again = await clients(shims, "adopt", "shim-a", "--apply")
    assert again.code == 1
    assert "not adopted  shim-a: managed already" in again.err


async def test_adopt_by_attribute_and_ids_must_all_match(shims: MemoryAdapter) -> None:
    result = await clients(shims, "adopt", "--attribute", "origin=shim", "other-c", "shim-zzz")
    assert result.code == 0
    assert result.out.splitlines() == [
        "would adopt  default other-c",
        "not adopted  shim-zzz: not found, or not matching the other criteria",
        "dry run: 1 would be adopted (pass --apply to adopt and issue their tokens)",
    ]


async def test_adopt_tokens_out_is_a_new_owner_only_file(shims: MemoryAdapter, tmp_path: Path) -> None:
    tokens = tmp_path / "tokens.jsonl"
    result = await clients(shims, "adopt", "shim-a", "--apply", "--tokens-out", str(tokens))
    assert result.code == 0
    assert stat.S_IMODE(os.stat(tokens).st_mode) == 0o600
    (line,) = [json.loads(text) for text in tokens.read_text().splitlines()]
    assert line["client_id"] == "shim-a"
    assert line["registration_access_token"] not in result.out + result.err
    assert f"1 adopted, 0 failed (registration access tokens in {tokens})" in result.out


async def test_adopt_never_overwrites_a_tokens_file_and_then_adopts_nothing(
    shims: MemoryAdapter, tmp_path: Path
) -> None:
    tokens = tmp_path / "tokens.jsonl"
    tokens.write_text("earlier tokens\n")
    result = await clients(shims, "adopt", "shim-a", "--apply", "--tokens-out", str(tokens))
    assert result.code == 2
    assert "exists; not overwritten" in result.err
    assert tokens.read_text() == "earlier tokens\n"
    assert "shim-a" in shims.unmanaged[ISSUER]


async def test_adopt_without_a_selector_is_a_usage_error(shims: MemoryAdapter) -> None:
    result = await clients(shims, "adopt", "--apply")
    assert result.code == 2
    assert "it never adopts every client" in result.err
    assert "shim-a" in shims.unmanaged[ISSUER]


async def test_adopt_with_nothing_matching_exits_1(shims: MemoryAdapter) -> None:
    result = await clients(shims, "adopt", "--prefix", "nobody-", "--apply")
    assert (result.code, result.out, result.err) == (1, "", "nothing to adopt\n")


# ------------------------------------------------------------------------------------------ errors


async def test_an_unavailable_provider_is_exit_2(memory: MemoryAdapter) -> None:
    memory.unavailable = True
    result = await clients(memory, "list")
    assert result.code == 2
    assert result.err == "dcr-gateway clients: the provider is unavailable: memory provider marked unavailable\n"


async def test_an_unknown_issuer_is_exit_2(memory: MemoryAdapter) -> None:
    result = await clients(memory, "list", "--issuer", "/realms/none")
    assert result.code == 2
    assert "no issuer '/realms/none'" in result.err


class PlainAdapter:
    """A provider adapter without the optional client hygiene capability."""

    name = "plain"
    capabilities = MemoryAdapter.capabilities

    def __init__(self, inner: MemoryAdapter) -> None:
        self._inner = inner

    def issuers(self) -> list[Issuer]:
        return self._inner.issuers()

    async def start(self, session: Any) -> None: ...

    async def close(self) -> None: ...

    async def create_client(self, issuer: str, client: NewClient) -> ManagedClient:
        return await self._inner.create_client(issuer, client)

    async def read_client(self, issuer: str, client_id: str) -> ManagedClient:
        return await self._inner.read_client(issuer, client_id)

    async def update_client(self, issuer: str, client: NewClient) -> ManagedClient:
        return await self._inner.update_client(issuer, client)

    async def delete_client(self, issuer: str, client_id: str) -> None:
        await self._inner.delete_client(issuer, client_id)

    async def list_clients(self, issuer: str) -> AsyncIterator[ManagedClient]:
        async for client in self._inner.list_clients(issuer):
            yield client


async def test_without_usage_support_list_works_and_gc_refuses(memory: MemoryAdapter) -> None:
    assert isinstance(PlainAdapter.capabilities, Capabilities)
    plain = PlainAdapter(memory)
    listed = await clients(plain, "list", "--json")
    assert listed.code == 0
    assert all(row["usage"] is None for row in json.loads(listed.out))
    result = await clients(plain, "gc", "--unused-for", "0s", "--apply")
    assert result.code == 2
    assert "adapter 'plain' cannot tell client usage; gc needs it" in result.err
    assert len(memory.clients[ISSUER]) == 3


def test_bad_configuration_is_exit_2(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert cli_main(["clients", "list", "--config", str(tmp_path / "missing.toml")]) == 2
    assert "does not exist" in capsys.readouterr().err


# ------------------------------------------------------------------------------------------- deployments


def plant(adapter: MemoryAdapter, client_id: str, deployment: str | None, *, issued_at: int = NOW - 40 * DAY) -> None:
    """A managed client of another gateway deployment sharing the provider (``None``: registered before
    deployments were recorded, so its marker names none)."""
    data: dict[str, Any] = {TOKEN_HASH_KEY: "sha256:x"}
    if deployment is not None:
        data[DEPLOYMENT_KEY] = deployment
    adapter.clients[ISSUER][client_id] = ManagedClient(
        client_id=client_id,
        metadata=ClientMetadata(client_name=client_id),
        client_id_issued_at=issued_at,
        gateway_data=data,
    )


@pytest.fixture
def shared(memory: MemoryAdapter) -> MemoryAdapter:
    """Production's clients (the ``memory`` fixture's, registered by a ``default`` gateway), a legacy one and
    staging's."""
    plant(memory, "legacy-one", None)
    plant(memory, "staging-one", "staging")
    return memory


async def test_registrations_record_the_gateway_deployment(memory: MemoryAdapter) -> None:
    staging = MemoryAdapter(public_url="http://provider.internal", deployment="staging")
    created = await staging.create_client(ISSUER, new_client("c-new"))
    assert created.gateway_data[DEPLOYMENT_KEY] == "staging"
    assert memory.clients[ISSUER]["c-stale"].gateway_data[DEPLOYMENT_KEY] == "default"


async def test_list_shows_only_this_deployments_clients_unless_told(shared: MemoryAdapter) -> None:
    production = await clients(shared, "list", "--json")
    assert sorted(row["client_id"] for row in json.loads(production.out)) == [
        "c-busy",
        "c-fresh",
        "c-stale",
        "legacy-one",  # no deployment recorded: the default deployment's
    ]
    assert "1 managed clients of other deployments ('staging') left out" in production.err
    staging = await clients(shared, "list", "--json", deployment="staging")
    assert [row["client_id"] for row in json.loads(staging.out)] == ["staging-one"]
    every = await clients(shared, "list", "--all-deployments")
    table = every.out.splitlines()
    assert table[0].split()[-1] == "DEPLOYMENT"
    assert next(line for line in table if line.split()[1] == "staging-one").split()[-1] == "staging"
    assert every.err == ""


async def test_a_staging_gc_never_deletes_production_clients(shared: MemoryAdapter) -> None:
    result = await clients(shared, "gc", "--unused-for", "0s", "--apply", deployment="staging")
    assert result.code == 0, result.err
    assert result.out.splitlines()[-1] == "1 managed clients, 1 stale: 1 deleted"
    assert sorted(shared.clients[ISSUER]) == ["c-busy", "c-fresh", "c-stale", "legacy-one"]
    assert "4 managed clients of other deployments ('default') left out" in result.err


async def test_gc_of_every_deployment_must_be_asked_for(shared: MemoryAdapter) -> None:
    result = await clients(shared, "gc", "--unused-for", "30d", "--all-deployments")
    assert "would delete default staging-one" in result.out
    assert "would delete default legacy-one" in result.out


async def test_show_and_delete_refuse_another_deployments_client(shared: MemoryAdapter) -> None:
    for argv in (("show", "staging-one"), ("delete", "staging-one", "--yes")):
        result = await clients(shared, *argv)
        assert result.code == 1
        assert "it belongs to deployment 'staging' (pass --all-deployments to act on it)" in result.err
    assert "staging-one" in shared.clients[ISSUER]
    deleted = await clients(shared, "delete", "staging-one", "--yes", "--all-deployments")
    assert deleted.code == 0, deleted.err
    assert "staging-one" not in shared.clients[ISSUER]


async def test_adoption_records_the_deployment(shims: MemoryAdapter) -> None:
    result = await clients(shims, "adopt", "shim-a", "--apply", deployment="staging")
    assert result.code == 0, result.err
    assert shims.clients[ISSUER]["shim-a"].gateway_data[DEPLOYMENT_KEY] == "staging"


CONSENT = SettingDifference("consentRequired", "false", "true", "the user consents to every managed client")


@pytest.fixture
def differing(memory: MemoryAdapter) -> MemoryAdapter:
    memory.add_unmanaged_client(ISSUER, UnmanagedClient(client_id="shim-d", differences=(CONSENT,)))
    return memory


async def test_adopt_dry_run_lists_each_setting_it_would_change(differing: MemoryAdapter) -> None:
    result = await clients(differing, "adopt", "shim-d")
    assert result.out.splitlines() == [
        "would adopt  default shim-d",
        "             change: consentRequired is false, managed clients have true (the user consents to every "
        "managed client)",
        "dry run: 1 would be adopted (pass --apply to adopt and issue their tokens)",
        "1 settings differ from what managed clients have and would be changed by --apply (--keep-settings keeps them)",
    ]


async def test_adopt_changes_differing_settings_unless_told_to_keep_them(differing: MemoryAdapter) -> None:
    applied = await clients(differing, "adopt", "shim-d", "--apply")
    assert applied.code == 0, applied.err
    assert "             changed: consentRequired is false" in applied.err
    assert differing.conformed[ISSUER]["shim-d"] == (CONSENT,)

    differing.add_unmanaged_client(ISSUER, UnmanagedClient(client_id="shim-e", differences=(CONSENT,)))
    dry = await clients(differing, "adopt", "shim-e", "--keep-settings")
    assert "             keep: consentRequired is false" in dry.out
    kept = await clients(differing, "adopt", "shim-e", "--apply", "--keep-settings")
    assert kept.code == 0, kept.err
    assert "             kept: consentRequired is false" in kept.err
    assert "shim-e" not in differing.conformed.get(ISSUER, {})


def test_the_deployment_setting_is_a_plain_name() -> None:
    assert Settings().deployment == "default"
    assert Settings(deployment="staging-eu").deployment == "staging-eu"
    for bad in ("", "Production", "prod eu", "x" * 64, "-dash", "a/b"):
        with pytest.raises(ValueError, match="deployment must be 1 to 63 characters"):
            Settings(deployment=bad)


# ------------------------------------------------------------------------------- scale (issue 12)


class Recorder(io.StringIO):
    """Standard output that notes each write in ``events``, between the listing pages the adapter reads."""

    def __init__(self, events: list[str]) -> None:
        super().__init__()
        self.events = events

    def write(self, text: str) -> int:
        self.events.append("out")
        return super().write(text)


def paged(memory: MemoryAdapter, page_size: int, events: list[str]) -> dict[str, int]:
    """Page ``memory``'s listing by ``page_size``, noting in ``events`` when each page is read; returns the count
    of per-client ``usage`` calls."""
    memory.page_size = page_size
    listing = memory.list_with_usage
    usage = memory.usage
    calls = {"usage": 0}

    async def list_with_usage(issuer: str) -> AsyncIterator[Any]:
        async for page in listing(issuer):
            events.append("page")
            yield page

    async def counted_usage(issuer: str, client_id: str) -> ClientUsage:
        calls["usage"] += 1
        return await usage(issuer, client_id)

    memory.list_with_usage = list_with_usage  # type: ignore[method-assign]
    memory.usage = counted_usage  # type: ignore[method-assign]
    return calls


async def run_recorded(adapter: MemoryAdapter, events: list[str], *argv: str) -> Output:
    args = build_parser().parse_args(["clients", *argv])
    out, err = Recorder(events), io.StringIO()
    settings = Settings(provider="memory", public_url=PUBLIC, provider_url="http://provider.internal")
    code = await run(args, settings, adapter, out=out, err=err, now=NOW)
    return Output(code, out.getvalue(), err.getvalue())


async def test_list_prints_each_page_before_reading_the_next_and_asks_no_usage_per_client(
    memory: MemoryAdapter,
) -> None:
    for index in range(7):
        await memory.create_client(ISSUER, new_client(f"p-{index}", name=f"Paged {index}"))
    events: list[str] = []
    calls = paged(memory, 3, events)
    result = await run_recorded(memory, events, "list")
    assert result.code == 0
    assert events.count("page") == 4  # 10 clients, 3 a page
    first_output = events.index("out")
    assert first_output < events.index("page", events.index("page") + 1), "the whole list was held first"
    events.clear()
    result = await run_recorded(memory, events, "list", "--json")  # spooled (bounded memory), written once complete
    assert result.code == 0
    assert events.count("page") == 4 and events.index("out") > max(i for i, e in enumerate(events) if e == "page")
    assert calls["usage"] == 0, "the usage comes with the page"
    rows = json.loads((await clients(memory, "list", "--json")).out)
    assert len(rows) == 10 and rows[0]["client_id"] == "c-stale"


async def test_list_json_is_the_same_document_streamed() -> None:
    adapter = MemoryAdapter(public_url="http://provider.internal")
    assert (await clients(adapter, "list", "--json")).out == "[]\n"
    await adapter.create_client(ISSUER, new_client("only", name="Only"))
    out = (await clients(adapter, "list", "--json")).out
    assert out == json.dumps(json.loads(out), indent=2) + "\n"


def failing_after(memory: MemoryAdapter, pages: int) -> None:
    """Make ``memory``'s listing fail (the provider unavailable) after ``pages`` pages."""
    listing = memory.list_with_usage

    async def list_with_usage(issuer: str) -> AsyncIterator[Any]:
        read = 0
        async for page in listing(issuer):
            if read == pages:
                raise ProviderUnavailable("listing page timed out")
            read += 1
            yield page

    memory.list_with_usage = list_with_usage  # type: ignore[method-assign]


async def test_list_json_prints_nothing_when_a_page_fails(memory: MemoryAdapter) -> None:
    """All or nothing: a listing failing after its first page leaves no partial JSON array on standard output."""
    for index in range(7):
        await memory.create_client(ISSUER, new_client(f"p-{index}", name=f"Paged {index}"))
    memory.page_size = 3
    failing_after(memory, 2)
    result = await clients(memory, "list", "--json")
    assert result.code != 0
    assert result.out == ""
    assert "the provider is unavailable: listing page timed out" in result.err


async def test_list_json_spools_past_its_memory_bound(memory: MemoryAdapter, monkeypatch: pytest.MonkeyPatch) -> None:
    """The array is spooled (memory bounded, then a temporary file) and the same document comes out."""
    import gateway.clients.cli as clients_cli

    for index in range(20):
        await memory.create_client(ISSUER, new_client(f"p-{index}", name=f"Paged {index}"))
    memory.page_size = 4
    expected = json.loads((await clients(memory, "list", "--json")).out)
    rolled: list[bool] = []
    spooled = tempfile.SpooledTemporaryFile

    class Recording(spooled):  # type: ignore[misc,valid-type]
        def __exit__(self, *exc: object) -> None:
            rolled.append(bool(self._rolled))
            super().__exit__(*exc)

    monkeypatch.setattr(clients_cli, "JSON_SPOOL_BYTES", 256)
    monkeypatch.setattr(tempfile, "SpooledTemporaryFile", Recording)
    out = (await clients(memory, "list", "--json")).out
    assert rolled == [True], "spooled to disk past the bound"
    assert json.loads(out) == expected and len(expected) == 23
    assert out == json.dumps(expected, indent=2) + "\n"


async def test_list_table_columns_line_up_across_pages(memory: MemoryAdapter) -> None:
    """The widths come from the header and the first page; a wider name later is cut to its column, so every row
    lines up with the header (``--json`` and ``show`` give the whole name)."""
    memory.page_size = 3
    await memory.create_client(ISSUER, new_client("p-long", name="A name much longer than any on the first page"))
    result = await clients(memory, "list")
    assert result.code == 0
    lines = result.out.splitlines()
    header = lines[0]
    starts = [header.index(title) for title in ("CLIENT_ID", "NAME", "CREATED", "LAST USED", "SESSIONS")]
    for line in lines[1:]:
        for start in starts:
            assert line[start - 2 : start] == "  " and line[start] != " ", (line, header)
    long_row = next(line for line in lines if "p-long" in line)
    assert "A name much longer" in long_row and "…" in long_row
    assert "p-long" in long_row  # a client id is never cut


async def test_gc_judges_page_by_page_and_deletes_after_the_listing(memory: MemoryAdapter) -> None:
    for index in range(7):
        await memory.create_client(ISSUER, new_client(f"old-{index}", name=f"Old {index}", issued_at=NOW - 90 * DAY))
    memory.usages[ISSUER].update(
        {f"old-{i}": ClientUsage(created_at=NOW - 90 * DAY, active_sessions=0, offline_sessions=0) for i in range(7)}
    )
    events: list[str] = []
    calls = paged(memory, 3, events)
    dry = await run_recorded(memory, events, "gc", "--unused-for", "30d")
    assert dry.code == 0
    assert events.index("out") < events.index("page", events.index("page") + 1)
    assert calls["usage"] == 0, "a dry run judges on the page's usage"
    assert dry.out.splitlines()[-1] == "10 managed clients, 8 stale: dry run, nothing deleted (pass --apply to delete)"

    applied = await run_recorded(memory, events, "gc", "--unused-for", "30d", "--apply")
    assert applied.code == 0
    assert applied.out.splitlines()[-1] == "10 managed clients, 8 stale: 8 deleted"
    assert calls["usage"] == 8, "usage is read again right before each deletion"
    assert sorted(memory.clients[ISSUER]) == ["c-busy", "c-fresh"], "no client skipped by deletions while paging"


async def test_gc_reads_sessions_per_client_only_for_clients_the_page_calls_stale(memory: MemoryAdapter) -> None:
    """A listing that cannot read sessions (Keycloak without ``view-realm``): ``usage`` is asked for the clients
    stale by their times, and one that holds a session is kept."""
    for index in range(4):
        await memory.create_client(ISSUER, new_client(f"quiet-{index}", issued_at=NOW - 90 * DAY))
    told = ClientUsage(created_at=NOW - 90 * DAY, active_sessions=1, offline_sessions=0)
    listing = memory.list_with_usage
    usage_calls: list[str] = []

    async def without_sessions(issuer: str) -> AsyncIterator[Any]:
        async for page in listing(issuer):
            yield [(client, ClientUsage(created_at=usage.created_at)) for client, usage in page]

    async def usage(issuer: str, client_id: str) -> ClientUsage:
        usage_calls.append(client_id)
        return told if client_id == "quiet-2" else ClientUsage(created_at=NOW - 90 * DAY, active_sessions=0)

    memory.list_with_usage = without_sessions  # type: ignore[method-assign]
    memory.usage = usage  # type: ignore[method-assign]
    result = await clients(memory, "gc", "--unused-for", "30d", "--prefix", "q")
    assert sorted(usage_calls) == ["quiet-0", "quiet-1", "quiet-2", "quiet-3"]
    assert "keep         default quiet-2: in use: 1 active and 0 offline sessions" in result.out.splitlines()
    assert result.out.splitlines()[-1].startswith("4 managed clients, 3 stale")
    # every stale one's sessions were read: nothing was judged without them, and Hydra is not the cause
    assert result.err == ""


async def test_gc_says_sessions_are_unknown_only_where_the_provider_told_none(memory: MemoryAdapter) -> None:
    """The "cannot tell" note comes from clients whose sessions were read per client and still unknown."""
    await memory.create_client(ISSUER, new_client("quiet-0", issued_at=NOW - 90 * DAY))
    result = await clients(memory, "gc", "--unused-for", "30d", "--prefix", "q")
    assert "would delete default quiet-0: created 90d ago (>= 30d), sessions unknown to the provider" in result.out
    assert "note: the provider cannot tell whether a client is in use now (it told no session counts)" in result.err
    assert "unused means not created or changed for 30d" in result.err
    assert "Hydra" not in result.err
