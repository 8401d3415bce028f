"""``dcr-gateway clients list | show | delete | gc | adopt`` against the real Hydra and the real Keycloak.

The command runs as a subprocess with the same ``DCR_*`` environment as the session's gateways. "Shim" clients
are created directly through each provider's admin API, as a hand-written registration shim would have; test
clients get a per-test client_id prefix, and ``gc`` runs with ``--prefix`` so it never touches clients of other
tests sharing the session's providers. Everything a test creates is deleted at its end.
"""

from __future__ import annotations

import asyncio
import json
import os
import re
import stat
import sys
import time
import uuid
from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import aiohttp
import pytest

from adapters.base import ManagedClient, NewClient
from adapters.hydra.adapter import HydraAdapter
from adapters.keycloak.adapter import KeycloakAdapter
from devstack.providers import HydraProvider, KeycloakProvider
from gateway.oauth.metadata import ClientMetadata
from gateway.registration.tokens import TOKEN_HASH_KEY, verify_registration_access_token
from tests.integration.conftest import (
    GatewayProcess,
    keycloak_admin_headers,
    master_admin_headers,
)
from tests.integration.flows import (
    LOOPBACK_CALLBACK,
    WEB_CALLBACK,
    confidential_client,
    keycloak_sign_in,
    native_client,
)

CLI = Path(sys.executable).parent / "dcr-gateway"
CLI_TIMEOUT = 120.0
HYDRA = "default"  # the Hydra adapter's issuer key


@dataclass(frozen=True)
class Run:
    code: int
    out: str
    err: str

    @property
    def lines(self) -> list[str]:
        return self.out.splitlines()


async def clients(env: Mapping[str, str], *argv: str, stdin: str = "") -> Run:
    """``dcr-gateway clients ARGV`` with ``env`` (and no other ``DCR_*`` variable)."""
    full_env = {k: v for k, v in os.environ.items() if not k.startswith("DCR_")} | dict(env)
    process = await asyncio.create_subprocess_exec(
        str(CLI),
        "clients",
        *argv,
        env=full_env,
        stdin=asyncio.subprocess.PIPE,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    out, err = await asyncio.wait_for(process.communicate(stdin.encode()), CLI_TIMEOUT)
    assert process.returncode is not None
    return Run(process.returncode, out.decode(), err.decode())


def public_client(client_id: str, name: str) -> NewClient:
    """A managed client as a registration creates it (public, loopback redirect, refreshable)."""
    return NewClient(
        client_id=client_id,
        client_secret=None,
        client_id_issued_at=int(time.time()),
        client_secret_expires_at=0,
        metadata=ClientMetadata(
            client_name=name,
            redirect_uris=[LOOPBACK_CALLBACK],
            token_endpoint_auth_method="none",
            grant_types=["authorization_code", "refresh_token"],
            response_types=["code"],
        ),
    )


def audit_lines(text: str, event: str) -> dict[str, dict[str, Any]]:
    """The audit events named ``event`` (``dcr_gateway.audit``, on standard error) by client id."""
    found = [json.loads(line) for line in text.splitlines() if line.startswith("{") and '"audience": "audit"' in line]
    return {entry["client_id"]: entry for entry in found if entry["event"] == event}


def token_lines(text: str) -> dict[str, dict[str, str]]:
    lines = [json.loads(line) for line in text.splitlines()]
    for line in lines:
        assert set(line) == {"client_id", "registration_access_token", "registration_client_uri"}
    return {line["client_id"]: line for line in lines}


async def json_of(response: aiohttp.ClientResponse, expected: int) -> Any:
    body = await response.text()
    assert response.status == expected, f"{response.method} {response.url}: {response.status} {body}"
    return json.loads(body) if body else None


async def rfc7592_get(http: aiohttp.ClientSession, uri: str, token: str) -> tuple[int, Any]:
    async with http.get(uri, headers={"Authorization": f"Bearer {token}"}) as response:
        return response.status, await response.json(content_type=None)


async def adopt_privileged_by_attribute(
    env: Mapping[str, str], origin: str, tokens_file: Path, *, expected: list[str]
) -> Run:
    """``adopt --attribute origin=ORIGIN --include-privileged --apply --tokens-out FILE``: it succeeds, adopts
    ``expected`` and writes their tokens to the owner-only ``tokens_file`` only, never to its output."""
    privileged = await clients(
        env,
        "adopt",
        "--attribute",
        f"origin={origin}",
        "--include-privileged",
        "--apply",
        "--tokens-out",
        str(tokens_file),
    )
    assert privileged.code == 0, privileged.err
    assert owner_only_token_lines(tokens_file) == expected
    assert "registration_access_token" not in privileged.out + privileged.err
    return privileged


def owner_only_token_lines(tokens_file: Path) -> list[str]:
    """The client_ids in a ``--tokens-out`` file, which only its owner may read."""
    assert stat.S_IMODE(tokens_file.stat().st_mode) == 0o600
    return sorted(token_lines(tokens_file.read_text()))


def prefix() -> str:
    return f"t{uuid.uuid4().hex[:10]}-"


# ============================================================================================ Hydra


@pytest.fixture
def hydra_env(hydra_gateway: GatewayProcess, hydra_provider: HydraProvider) -> dict[str, str]:
    """The environment of the session's Hydra gateway: registration_client_uri names that gateway."""
    return hydra_provider.gateway_env()


@dataclass(kw_only=True)
class CreatedClients:
    """What a test created on a provider, to delete at its end."""

    prefixes: list[str] = field(default_factory=list)
    """client_id prefixes handed out by :meth:`prefix`."""
    tracked: list[str] = field(default_factory=list)
    """client_ids (e.g. of registrations through the gateway) to delete at the end, like prefixed ones."""

    def prefix(self) -> str:
        value = prefix()
        self.prefixes.append(value)
        return value

    def is_ours(self, client_id: str) -> bool:
        return client_id.startswith(tuple(self.prefixes)) or client_id in self.tracked


@dataclass
class HydraAdmin(CreatedClients):
    http: aiohttp.ClientSession
    admin_url: str
    public_url: str

    async def create_shim(self, body: dict[str, Any]) -> None:
        async with self.http.post(f"{self.admin_url}/admin/clients", json=body) as response:
            await json_of(response, 201)

    async def get(self, client_id: str) -> dict[str, Any] | None:
        async with self.http.get(f"{self.admin_url}/admin/clients/{client_id}") as response:
            if response.status == 404:
                return None
            found: dict[str, Any] = await json_of(response, 200)
            return found

    async def cleanup(self) -> None:
        async with self.http.get(f"{self.admin_url}/admin/clients", params={"page_size": "500"}) as response:
            everything = await json_of(response, 200)
        for client in everything:
            if self.is_ours(client["client_id"]):
                async with self.http.delete(f"{self.admin_url}/admin/clients/{client['client_id']}"):
                    pass


@pytest.fixture
async def hydra_admin(http: aiohttp.ClientSession, hydra_provider: HydraProvider) -> AsyncIterator[HydraAdmin]:
    admin = HydraAdmin(http, hydra_provider.admin_url, hydra_provider.public_url)
    yield admin
    await admin.cleanup()


async def test_hydra_list_show_and_delete_registered_clients(
    http: aiohttp.ClientSession, hydra_gateway: GatewayProcess, hydra_env: dict[str, str], hydra_admin: HydraAdmin
) -> None:
    async with http.post(f"{hydra_gateway.url}/register", json=native_client("cli list")) as response:
        registered = await json_of(response, 201)
    client_id = registered["client_id"]
    hydra_admin.tracked.append(client_id)
    shim_id = hydra_admin.prefix() + "shim"
    await hydra_admin.create_shim({"client_id": shim_id, "redirect_uris": ["https://shim.example.com/cb"]})
    listed = await clients(hydra_env, "list", "--json")
    assert listed.code == 0, listed.err
    rows = {row["client_id"]: row for row in json.loads(listed.out)}
    assert rows[client_id]["client_name"] == "cli list"
    assert rows[client_id]["token_endpoint_auth_method"] == "none"
    assert rows[client_id]["redirect_uris"] == 1
    assert abs(rows[client_id]["usage"]["created_at"] - time.time()) < 120
    assert shim_id not in rows, "unmanaged clients are not listed"
    table = await clients(hydra_env, "list")
    assert any(line.split()[:3] == [HYDRA, client_id, "cli"] for line in table.lines), table.out

    shown = await clients(hydra_env, "show", client_id, "--json")
    assert shown.code == 0, shown.err
    details = json.loads(shown.out)
    assert details["redirect_uris"] == registered["redirect_uris"]
    assert details["registration_access_token_issued"] is True
    for run in (listed, table, shown):
        assert registered["registration_access_token"] not in run.out + run.err

    assert (await clients(hydra_env, "show", shim_id)).code == 1
    refused = await clients(hydra_env, "delete", shim_id, "--yes")
    assert refused.code == 1
    assert f"no managed client '{shim_id}'" in refused.err
    assert await hydra_admin.get(shim_id) is not None

    unconfirmed = await clients(hydra_env, "delete", client_id)  # standard input gives no answer
    assert unconfirmed.code == 1
    assert "not deleted (confirm, or pass --yes)" in unconfirmed.err
    assert await hydra_admin.get(client_id) is not None
    confirmed = await clients(hydra_env, "delete", client_id, stdin="y\n")
    assert confirmed.code == 0, confirmed.err
    assert confirmed.out == f'deleted {HYDRA} {client_id} "cli list"\n'
    assert await hydra_admin.get(client_id) is None


async def test_hydra_gc_deletes_only_stale_managed_clients(
    hydra_env: dict[str, str], hydra_admin: HydraAdmin, hydra_adapter: HydraAdapter
) -> None:
    p = hydra_admin.prefix()
    old = await hydra_adapter.create_client(HYDRA, public_client(p + "old", "old one"))
    created = time.time()
    await hydra_admin.create_shim({"client_id": p + "shim", "redirect_uris": ["https://shim.example.com/cb"]})

    dry = await clients(hydra_env, "gc", "--unused-for", "0s", "--prefix", p)
    assert dry.code == 0, dry.err
    # Hydra rounds created_at to the second and keeps updated_at exact: either can be the later one
    assert re.fullmatch(
        rf'would delete {HYDRA} {p}old "old one": (created|updated) \d+s ago \(>= 0s\), '
        "sessions unknown to the provider",
        dry.lines[0],
    ), dry.out
    assert dry.lines[-1] == "1 managed clients, 1 stale: dry run, nothing deleted (pass --apply to delete)"
    assert await hydra_admin.get(old.client_id) is not None

    # Hydra's own record times decide: judged as of a moment when one client was older than 5 s and the other
    # did not exist yet (so how long the command takes to start on a loaded machine does not matter).
    await asyncio.sleep(max(0.0, 7 - (time.time() - created)))
    as_of = int(time.time())
    await asyncio.sleep(1.5)
    new = await hydra_adapter.create_client(HYDRA, public_client(p + "new", "new one"))
    applied = await clients(hydra_env, "gc", "--unused-for", "5s", "--as-of", str(as_of), "--prefix", p, "--apply")
    assert applied.code == 0, applied.err
    assert applied.lines[-1] == "2 managed clients, 1 stale: 1 deleted"
    assert f'deleted      {HYDRA} {p}old "old one"' in applied.out
    gc_events = audit_lines(applied.err, "CLIENT_GC")  # the audit log: one event per deleted client
    assert list(gc_events) == [old.client_id]
    assert gc_events[old.client_id]["caller"] == "operator"
    assert gc_events[old.client_id]["outcome"] == "success"
    assert gc_events[old.client_id]["issuer"] == hydra_env["DCR_PUBLIC_URL"]
    kept = next(line for line in applied.lines if line.startswith(f'keep         {HYDRA} {p}new "new one": '))
    assert kept.endswith("0s ago, less than 5s"), "judged as of a time before it existed: idle 0s"
    assert await hydra_admin.get(old.client_id) is None
    assert await hydra_admin.get(new.client_id) is not None

    everything = await clients(hydra_env, "gc", "--unused-for", "0s", "--prefix", p, "--apply")
    assert everything.code == 0, everything.err
    assert everything.lines[-1] == "1 managed clients, 1 stale: 1 deleted"
    assert await hydra_admin.get(new.client_id) is None
    shim = await hydra_admin.get(p + "shim")
    assert shim is not None, "gc never touches unmanaged clients"
    assert "dcr_gateway" not in (shim.get("metadata") or {})


@dataclass(frozen=True)
class Shims:
    p: str
    """Prefix of the shim's clients: ``pub`` (public), ``conf`` (confidential), ``service`` (client_credentials),
    all with metadata/attribute ``origin``."""
    q: str
    """Prefix of two more: ``attr`` (another ``origin``) and ``named`` (no marker)."""
    origin: str


@pytest.fixture
async def hydra_shims(hydra_admin: HydraAdmin) -> Shims:
    """Clients a hand-written registration shim created in Hydra."""
    p, q = hydra_admin.prefix(), hydra_admin.prefix()
    origin = f"shim-{p}"
    await hydra_admin.create_shim(
        {
            "client_id": p + "pub",
            "client_name": "Shim public",
            "redirect_uris": [LOOPBACK_CALLBACK],
            "token_endpoint_auth_method": "none",
            "grant_types": ["authorization_code", "refresh_token"],
            "metadata": {"origin": origin},
        }
    )
    await hydra_admin.create_shim(
        {
            "client_id": p + "conf",
            "client_secret": "shim-conf-secret",
            "redirect_uris": ["https://app.example.com/cb"],
            "metadata": {"origin": origin, "team": "blue"},
        }
    )
    await hydra_admin.create_shim(
        {
            "client_id": p + "service",
            "client_secret": "shim-service-secret",
            "grant_types": ["client_credentials"],
            "token_endpoint_auth_method": "client_secret_post",
            "metadata": {"origin": origin},
        }
    )
    await hydra_admin.create_shim({"client_id": q + "attr", "metadata": {"origin": f"other-{q}"}})
    await hydra_admin.create_shim({"client_id": q + "named"})
    return Shims(p, q, origin)


async def test_hydra_adopt_by_prefix_issues_working_rfc7592_tokens(
    http: aiohttp.ClientSession,
    hydra_gateway: GatewayProcess,
    hydra_env: dict[str, str],
    hydra_admin: HydraAdmin,
    hydra_adapter: HydraAdapter,
    hydra_shims: Shims,
) -> None:
    p, origin = hydra_shims.p, hydra_shims.origin
    dry = await clients(hydra_env, "adopt", "--prefix", p)
    assert dry.code == 0, dry.err
    assert f'would adopt  {HYDRA} {p}pub "Shim public"' in dry.lines
    assert f"would adopt  {HYDRA} {p}conf" in dry.lines
    assert (
        f"refused      {HYDRA} {p}service: privileged (client_credentials grant (tokens without a user)): "
        "pass --include-privileged to adopt it"
    ) in dry.lines
    assert dry.lines[-1] == "dry run: 2 would be adopted (pass --apply to adopt and issue their tokens)"
    assert "dcr_gateway" not in ((await hydra_admin.get(p + "pub")) or {})["metadata"]

    applied = await clients(hydra_env, "adopt", "--prefix", p, "--apply")
    assert applied.code == 0, applied.err
    tokens = token_lines(applied.out)
    assert sorted(tokens) == [p + "conf", p + "pub"]
    assert "2 adopted, 0 failed" in applied.err
    adopted = audit_lines(applied.err, "CLIENT_ADOPT")  # the audit log: one event per adopted client, no token
    assert sorted(adopted) == [p + "conf", p + "pub"]
    assert {event["caller"] for event in adopted.values()} == {"operator"}
    for line in tokens.values():
        assert line["registration_access_token"] not in applied.err
    conf = await hydra_admin.get(p + "conf")
    assert conf is not None
    assert conf["metadata"]["origin"] == origin and conf["metadata"]["team"] == "blue", "the shim's metadata stays"
    assert conf["metadata"]["dcr_gateway"]["managed"] is True
    assert conf["redirect_uris"] == ["https://app.example.com/cb"]

    # The printed token is the adopted client's RFC 7592 registration access token, and only its.
    for client_id, line in tokens.items():
        assert line["registration_client_uri"] == f"{hydra_gateway.url}/register/{client_id}"
        stored: ManagedClient = await hydra_adapter.read_client(HYDRA, client_id)
        assert verify_registration_access_token(line["registration_access_token"], stored.gateway_data[TOKEN_HASH_KEY])
        status, body = await rfc7592_get(http, line["registration_client_uri"], line["registration_access_token"])
        assert status == 200, body
        assert body["client_id"] == client_id
    status, body = await rfc7592_get(
        http, tokens[p + "pub"]["registration_client_uri"], tokens[p + "conf"]["registration_access_token"]
    )
    assert (status, body["error"]) == (401, "invalid_token")


async def test_hydra_adopt_privileged_by_attribute_and_by_id(
    http: aiohttp.ClientSession, hydra_env: dict[str, str], hydra_admin: HydraAdmin, hydra_shims: Shims, tmp_path: Path
) -> None:
    p, q, origin = hydra_shims.p, hydra_shims.q, hydra_shims.origin
    first = await clients(hydra_env, "adopt", "--prefix", p, "--apply")
    assert sorted(token_lines(first.out)) == [p + "conf", p + "pub"], first.err

    await adopt_privileged_by_attribute(hydra_env, origin, tmp_path / "tokens.jsonl", expected=[p + "service"])
    # Adoption kept the secret: the shim's client_credentials client still gets tokens with it.
    form = {"grant_type": "client_credentials", "client_id": p + "service", "client_secret": "shim-service-secret"}
    async with http.post(f"{hydra_admin.public_url}/oauth2/token", data=form) as response:
        assert "access_token" in await json_of(response, 200)

    by_attribute = await clients(hydra_env, "adopt", "--attribute", f"origin=other-{q}", "--apply")
    assert by_attribute.code == 0, by_attribute.err
    assert sorted(token_lines(by_attribute.out)) == [q + "attr"]
    by_id = await clients(hydra_env, "adopt", q + "named", p + "pub", "--apply")
    assert by_id.code == 0, by_id.err
    assert sorted(token_lines(by_id.out)) == [q + "named"]
    assert f"not adopted  {p}pub: managed already" in by_id.err

    listed = {row["client_id"] for row in json.loads((await clients(hydra_env, "list", "--json")).out)}
    assert {p + "pub", p + "conf", p + "service", q + "attr", q + "named"} <= listed
    covered = await clients(hydra_env, "gc", "--unused-for", "1d", "--prefix", p)
    assert covered.lines[-1] == "3 managed clients, 0 stale: dry run, nothing deleted (pass --apply to delete)"
    assert all(line.startswith("keep ") for line in covered.lines[:-1])


# ========================================================================================= Keycloak


def keycloak_env_for(provider: KeycloakProvider, gateway: GatewayProcess) -> dict[str, str]:
    port = urlsplit(gateway.url).port
    assert port is not None
    return provider.gateway_env(port)


@pytest.fixture
def keycloak_env(keycloak_gateway: GatewayProcess, keycloak_provider: KeycloakProvider) -> dict[str, str]:
    return keycloak_env_for(keycloak_provider, keycloak_gateway)


@dataclass
class KeycloakAdmin(CreatedClients):
    http: aiohttp.ClientSession
    provider: KeycloakProvider

    async def headers(self) -> dict[str, str]:
        return await keycloak_admin_headers(self.http, self.provider)

    async def create_shim(self, representation: dict[str, Any]) -> None:
        async with self.http.post(
            f"{self.provider.admin_realm_url}/clients", json=representation, headers=await self.headers()
        ) as response:
            await json_of(response, 201)

    async def get(self, client_id: str) -> dict[str, Any] | None:
        async with self.http.get(
            f"{self.provider.admin_realm_url}/clients",
            params={"clientId": client_id, "search": "false"},
            headers=await self.headers(),
        ) as response:
            found = await json_of(response, 200)
        return found[0] if found else None

    async def cleanup(self) -> None:
        headers = await self.headers()
        async with self.http.get(
            f"{self.provider.admin_realm_url}/clients", params={"max": "1000"}, headers=headers
        ) as response:
            everything = await json_of(response, 200)
        for client in everything:
            if self.is_ours(client["clientId"]):
                async with self.http.delete(f"{self.provider.admin_realm_url}/clients/{client['id']}", headers=headers):
                    pass


@pytest.fixture
async def keycloak_admin(
    http: aiohttp.ClientSession, keycloak_provider: KeycloakProvider
) -> AsyncIterator[KeycloakAdmin]:
    admin = KeycloakAdmin(http, keycloak_provider)
    yield admin
    await admin.cleanup()


async def test_keycloak_list_show_and_delete_registered_clients(
    http: aiohttp.ClientSession,
    keycloak_gateway: GatewayProcess,
    keycloak_env: dict[str, str],
    keycloak_provider: KeycloakProvider,
    keycloak_admin: KeycloakAdmin,
) -> None:
    realm = keycloak_provider.realm
    body = confidential_client("kc cli list", "client_secret_post")
    async with http.post(f"{keycloak_gateway.issuer}/register", json=body) as response:
        registered = await json_of(response, 201)
    client_id = registered["client_id"]
    keycloak_admin.tracked.append(client_id)
    listed = await clients(keycloak_env, "list", "--json", "--issuer", f"/realms/{realm}")
    assert listed.code == 0, listed.err
    row = next(row for row in json.loads(listed.out) if row["client_id"] == client_id)
    assert row["issuer"] == realm
    assert row["client_name"] == "kc cli list"
    # issue 12: list reads sessions for the whole realm in one client-session-stats call, which the least-privilege
    # account (manage-clients only) may not make: unknown here, never two calls per client (show reads them)
    assert row["usage"]["active_sessions"] is None and row["usage"]["offline_sessions"] is None
    assert row["usage"]["created_at"] == registered["client_id_issued_at"]
    assert keycloak_provider.legacy_client_id not in {row["client_id"] for row in json.loads(listed.out)}

    shown = await clients(keycloak_env, "show", client_id)
    assert shown.code == 0, shown.err
    assert f"redirect_uris: {WEB_CALLBACK}" in shown.lines
    assert "token_endpoint_auth_method: client_secret_post" in shown.lines
    assert "usage.active_sessions: 0" in shown.lines
    for run in (listed, shown):
        assert registered["client_secret"] not in run.out + run.err, "Keycloak returns secrets on reads"
        assert registered["registration_access_token"] not in run.out + run.err
        assert keycloak_provider.admin_client_secret not in run.out + run.err

    for legacy in (keycloak_provider.legacy_client_id, keycloak_provider.admin_client_id):
        refused = await clients(keycloak_env, "delete", legacy, "--yes")
        assert refused.code == 1
        assert f"no managed client '{legacy}'" in refused.err
    deleted = await clients(keycloak_env, "delete", client_id, "--yes")
    assert deleted.code == 0, deleted.err
    assert (await clients(keycloak_env, "show", client_id)).code == 1


async def test_keycloak_gc_keeps_clients_with_sessions(
    http: aiohttp.ClientSession,
    keycloak_env: dict[str, str],
    keycloak_provider: KeycloakProvider,
    keycloak_admin: KeycloakAdmin,
    keycloak_adapter: KeycloakAdapter,
) -> None:
    realm = keycloak_provider.realm
    p = keycloak_admin.prefix()
    await keycloak_adapter.create_client(realm, public_client(p + "idle", "idle one"))
    busy = await keycloak_adapter.create_client(realm, public_client(p + "busy", "busy one"))
    await keycloak_admin.create_shim(
        {"clientId": p + "shim", "publicClient": True, "redirectUris": [LOOPBACK_CALLBACK]}
    )

    # A user signs in with the busy client: Keycloak now counts a session for it.
    await keycloak_sign_in(http, keycloak_provider, busy.client_id)

    shown = json.loads((await clients(keycloak_env, "show", busy.client_id, "--json")).out)
    assert shown["usage"]["active_sessions"] == 1

    # issue 12: without view-realm the listing reads no sessions; kept by their times, the clients need none, and
    # the note names that cause (never Hydra's)
    recent = await clients(keycloak_env, "gc", "--unused-for", "30d", "--prefix", p)
    assert recent.code == 0, recent.err
    assert "cannot tell whether a client is in use now" not in recent.err and "Hydra" not in recent.err
    note = next(line for line in recent.err.splitlines() if line.startswith("note: session counts"))
    assert note.startswith("note: session counts were read per client, only for the clients stale by their times")
    assert "lacks realm-management/view-realm" in note

    dry = await clients(keycloak_env, "gc", "--unused-for", "0s", "--prefix", p)
    assert dry.code == 0, dry.err
    keep, stale, summary = sorted(dry.lines[:-1]) + dry.lines[-1:]
    assert keep == f'keep         {realm} {p}busy "busy one": in use: 1 active and 0 offline sessions'
    assert stale.startswith(f'would delete {realm} {p}idle "idle one": created ')
    assert stale.endswith("(>= 0s), no sessions")
    assert summary == "2 managed clients, 1 stale: dry run, nothing deleted (pass --apply to delete)"
    assert await keycloak_admin.get(p + "idle") is not None

    applied = await clients(keycloak_env, "gc", "--unused-for", "0s", "--prefix", p, "--apply")
    assert applied.code == 0, applied.err
    assert applied.lines[-1] == "2 managed clients, 1 stale: 1 deleted"
    assert await keycloak_admin.get(p + "idle") is None
    assert await keycloak_admin.get(p + "busy") is not None, "a client holding a session is in use"
    assert await keycloak_admin.get(p + "shim") is not None, "gc never touches unmanaged clients"


async def test_keycloak_adopt_keeps_configuration_and_secret_brings_guarantees_and_refuses_privileged(
    http: aiohttp.ClientSession,
    keycloak_gateway: GatewayProcess,
    keycloak_env: dict[str, str],
    keycloak_provider: KeycloakProvider,
    keycloak_admin: KeycloakAdmin,
    tmp_path: Path,
) -> None:
    realm = keycloak_provider.realm
    p = keycloak_admin.prefix()
    origin = f"shim-{p}"
    await keycloak_admin.create_shim(
        {
            "clientId": p + "pub",
            "name": "Shim public",
            "publicClient": True,
            "redirectUris": [LOOPBACK_CALLBACK],
            "attributes": {"origin": origin, "pkce.code.challenge.method": "S256"},
        }
    )
    await keycloak_admin.create_shim(
        {
            "clientId": p + "conf",
            "secret": "shim-conf-secret",
            "redirectUris": ["https://app.example.com/cb"],
            "attributes": {"origin": origin},
        }
    )
    await keycloak_admin.create_shim(
        {
            "clientId": p + "service",
            "secret": "shim-service-secret",
            "serviceAccountsEnabled": True,
            "standardFlowEnabled": False,
            "attributes": {"origin": origin},
        }
    )

    never = await clients(
        keycloak_env, "adopt", keycloak_provider.admin_client_id, "realm-management", "--include-privileged", "--apply"
    )
    assert never.code == 1
    assert f"refused      {realm} {keycloak_provider.admin_client_id} " in never.err
    assert "never adopted: the gateway's own admin client" in never.err
    assert "never adopted: a Keycloak built-in client" in never.err
    admin_client = await keycloak_admin.get(keycloak_provider.admin_client_id)
    assert admin_client is not None and "dcr.gateway.managed" not in admin_client["attributes"]

    dry = await clients(keycloak_env, "adopt", "--prefix", p)
    assert dry.code == 0, dry.err
    assert f'would adopt  {realm} {p}pub "Shim public"' in dry.lines
    assert (
        f"refused      {realm} {p}service: never adopted: a service account whose roles the gateway cannot read "
        "(its admin credentials lack realm-management view-users): it could be another gateway's or tool's admin "
        "client"
    ) in dry.lines
    # what adoption will change to give the shim's clients the managed-client guarantees, each named
    assert (
        "             change: consentRequired is false, managed clients have true (the user consents to every "
        "managed client)"
    ) in dry.lines
    assert (
        "             change: fullScopeAllowed is true, managed clients have false (tokens carry only what the "
        "client's scopes map)"
    ) in dry.lines
    assert "             change: pkce.code.challenge.method is unset, managed clients have S256" in " ".join(dry.lines)

    applied = await clients(keycloak_env, "adopt", "--prefix", p, "--apply")
    assert applied.code == 0, applied.err
    tokens = token_lines(applied.out)
    assert sorted(tokens) == [p + "conf", p + "pub"]
    conf = await keycloak_admin.get(p + "conf")
    assert conf is not None
    assert conf["secret"] == "shim-conf-secret"
    assert conf["attributes"]["origin"] == origin
    assert conf["attributes"]["dcr.gateway.managed"] == "true"
    # the managed-client guarantees (README): consent required, full scope off, PKCE S256
    assert conf["consentRequired"] is True and conf["fullScopeAllowed"] is False
    assert conf["attributes"]["pkce.code.challenge.method"] == "S256"
    assert conf["redirectUris"] == ["https://app.example.com/cb"], "the rest of the configuration is kept"
    for client_id, line in tokens.items():
        assert line["registration_client_uri"] == f"{keycloak_gateway.issuer}/register/{client_id}"
        status, body = await rfc7592_get(http, line["registration_client_uri"], line["registration_access_token"])
        assert status == 200, body
        assert body["client_id"] == client_id
    status, body = await rfc7592_get(
        http, tokens[p + "conf"]["registration_client_uri"], tokens[p + "conf"]["registration_access_token"]
    )
    assert body["client_secret"] == "shim-conf-secret"

    # the service account: its roles cannot be checked with least-privilege credentials, so never adopted
    privileged = await clients(
        keycloak_env, "adopt", "--attribute", f"origin={origin}", "--include-privileged", "--apply"
    )
    assert privileged.code == 1
    assert "never adopted: a service account whose roles the gateway cannot read" in privileged.err
    service = await keycloak_admin.get(p + "service")
    assert service is not None and "dcr.gateway.managed" not in service["attributes"]

    listed = {row["client_id"] for row in json.loads((await clients(keycloak_env, "list", "--json")).out)}
    assert {p + "pub", p + "conf"} <= listed
    assert keycloak_provider.legacy_client_id not in listed
    covered = await clients(keycloak_env, "gc", "--unused-for", "0s", "--prefix", p)
    stale = [line for line in covered.lines if line.startswith("would delete ")]
    assert len(stale) == 2
    assert all(line.endswith("(>= 0s), no sessions") for line in stale)


# ================================================================= deployments and adoption guarantees (issue 8)


async def test_hydra_deployments_keep_a_staging_gc_off_production_clients(
    http: aiohttp.ClientSession,
    hydra_gateway: GatewayProcess,
    hydra_env: dict[str, str],
    hydra_admin: HydraAdmin,
    hydra_provider: HydraProvider,
) -> None:
    """Two gateway deployments share one Hydra: each one's ``list`` and ``gc --apply`` touch only its own
    clients; a client registered before deployments were recorded belongs to ``default``."""
    p = hydra_admin.prefix()
    async with http.post(f"{hydra_gateway.url}/register", json=native_client("production client")) as response:
        registered = await json_of(response, 201)
    production_id = registered["client_id"]
    hydra_admin.tracked.append(production_id)
    record = await hydra_admin.get(production_id)
    assert record is not None
    assert record["metadata"]["dcr_gateway"]["gateway"]["deployment"] == "default"

    staging_adapter = HydraAdapter(
        admin_url=hydra_provider.admin_url, public_url=hydra_provider.public_url, deployment="staging"
    )
    await staging_adapter.start(http)
    await staging_adapter.create_client(HYDRA, public_client(p + "staging", "staging client"))
    staged = await hydra_admin.get(p + "staging")
    assert staged is not None and staged["metadata"]["dcr_gateway"]["gateway"]["deployment"] == "staging"
    # a managed client from before deployments were recorded: its marker names none
    await hydra_admin.create_shim(
        {
            "client_id": p + "legacy",
            "redirect_uris": [LOOPBACK_CALLBACK],
            "metadata": {"dcr_gateway": {"managed": True, "v": 1, "client_id_issued_at": 1, "gateway": {}}},
        }
    )
    staging_env = hydra_env | {"DCR_DEPLOYMENT": "staging"}

    production_list = {row["client_id"] for row in json.loads((await clients(hydra_env, "list", "--json")).out)}
    assert {production_id, p + "legacy"} <= production_list
    assert p + "staging" not in production_list
    staging_list = await clients(staging_env, "list", "--json")
    assert {row["client_id"] for row in json.loads(staging_list.out)} == {p + "staging"}
    assert "of other deployments" in staging_list.err
    every = {
        row["client_id"] for row in json.loads((await clients(hydra_env, "list", "--json", "--all-deployments")).out)
    }
    assert {production_id, p + "legacy", p + "staging"} <= every

    # staging collects everything it owns that is idle, and nothing of production's
    applied = await clients(staging_env, "gc", "--unused-for", "0s", "--apply")
    assert applied.code == 0, applied.err
    assert f'deleted      {HYDRA} {p}staging "staging client"' in applied.out
    assert production_id not in applied.out and p + "legacy" not in applied.out
    assert await hydra_admin.get(p + "staging") is None
    assert await hydra_admin.get(production_id) is not None
    assert await hydra_admin.get(p + "legacy") is not None
    await staging_adapter.close()


async def test_hydra_adoption_turns_skipped_consent_off_unless_kept(
    hydra_env: dict[str, str], hydra_admin: HydraAdmin
) -> None:
    p = hydra_admin.prefix()
    for name in ("a", "b"):
        await hydra_admin.create_shim(
            {
                "client_id": p + name,
                "redirect_uris": [LOOPBACK_CALLBACK],
                "token_endpoint_auth_method": "none",
                "skip_consent": True,
            }
        )
    dry = await clients(hydra_env, "adopt", p + "a", "--include-privileged")
    assert dry.code == 0, dry.err
    assert (
        "             change: skip_consent is true, managed clients have false (the user consents to every managed "
        "client)"
    ) in dry.lines
    assert (await hydra_admin.get(p + "a") or {})["skip_consent"] is True, "a dry run changes nothing"

    applied = await clients(hydra_env, "adopt", p + "a", "--include-privileged", "--apply")
    assert applied.code == 0, applied.err
    adopted = await hydra_admin.get(p + "a")
    assert adopted is not None and adopted["skip_consent"] is False
    assert adopted["metadata"]["dcr_gateway"]["gateway"]["deployment"] == "default"

    kept = await clients(hydra_env, "adopt", p + "b", "--include-privileged", "--keep-settings", "--apply")
    assert kept.code == 0, kept.err
    assert "             kept: skip_consent is true" in kept.err
    assert (await hydra_admin.get(p + "b") or {})["skip_consent"] is True


async def grant_realm_management_roles(
    http: aiohttp.ClientSession, keycloak: KeycloakProvider, client_id: str, roles: list[str]
) -> None:
    """Give ``client_id``'s service account these ``realm-management`` roles, as an operator does for an admin
    client (another gateway's, a provisioning tool's)."""
    headers = await master_admin_headers(http, keycloak)
    base = keycloak.admin_realm_url

    async def one(path: str, **params: str) -> Any:
        async with http.get(f"{base}{path}", params=params, headers=headers) as response:
            return await json_of(response, 200)

    internal = (await one("/clients", clientId=client_id, search="false"))[0]["id"]
    user = await one(f"/clients/{internal}/service-account-user")
    management = (await one("/clients", clientId="realm-management", search="false"))[0]["id"]
    representations = [await one(f"/clients/{management}/roles/{role}") for role in roles]
    async with http.post(
        f"{base}/users/{user['id']}/role-mappings/clients/{management}", json=representations, headers=headers
    ) as response:
        assert response.status == 204, await response.text()


async def test_keycloak_another_gateways_admin_client_is_never_adoptable(
    http: aiohttp.ClientSession,
    keycloak_env: dict[str, str],
    keycloak_provider: KeycloakProvider,
    keycloak_admin: KeycloakAdmin,
) -> None:
    """A staging gateway's admin client (a service account holding manage-clients) is refused even with
    ``--include-privileged``: by the gateway's least-privilege credentials, which cannot read a service account's
    roles, and by credentials that can (view-users), which see the admin role. A service account without admin
    roles stays adoptable with ``--include-privileged`` when its roles can be checked."""
    realm = keycloak_provider.realm
    p = keycloak_admin.prefix()
    for name in ("staging-gateway", "ops", "worker"):
        await keycloak_admin.create_shim(
            {
                "clientId": p + name,
                "secret": f"dev-only-{name}-secret",
                "serviceAccountsEnabled": True,
                "standardFlowEnabled": False,
            }
        )
    await grant_realm_management_roles(http, keycloak_provider, p + "staging-gateway", ["manage-clients"])
    # "ops": admin credentials of a gateway allowed to check service accounts (manage-clients and view-users)
    await grant_realm_management_roles(http, keycloak_provider, p + "ops", ["manage-clients", "view-users"])

    refused = await clients(keycloak_env, "adopt", p + "staging-gateway", "--include-privileged", "--apply")
    assert refused.code == 1
    assert (
        f"refused      {realm} {p}staging-gateway: never adopted: a service account whose roles the gateway cannot read"
    ) in refused.err
    staging_gateway = await keycloak_admin.get(p + "staging-gateway")
    assert staging_gateway is not None and "dcr.gateway.managed" not in staging_gateway["attributes"]

    ops_env = keycloak_env | {
        "DCR_KEYCLOAK__CLIENT_ID": p + "ops",
        "DCR_KEYCLOAK__CLIENT_SECRET": "dev-only-ops-secret",
    }
    checked = await clients(ops_env, "adopt", "--prefix", p, "--include-privileged")
    assert checked.code == 0, checked.err
    assert (
        f"refused      {realm} {p}staging-gateway: never adopted: a service account holding realm-management roles "
        "(manage-clients): an admin client"
    ) in checked.lines
    assert f"refused      {realm} {p}ops: never adopted: the gateway's own admin client" in checked.lines
    assert f"would adopt  {realm} {p}worker" in checked.lines
    applied = await clients(ops_env, "adopt", "--prefix", p, "--include-privileged", "--apply")
    assert applied.code == 0, applied.err
    assert sorted(token_lines(applied.out)) == [p + "worker"]
    assert "dcr.gateway.managed" not in ((await keycloak_admin.get(p + "staging-gateway")) or {})["attributes"]
    # adoption kept the worker's secret and service account: it still gets tokens
    form = {"grant_type": "client_credentials", "client_id": p + "worker", "client_secret": "dev-only-worker-secret"}
    async with http.post(keycloak_provider.token_endpoint, data=form) as response:
        assert "access_token" in await json_of(response, 200)


async def test_keycloak_deployments_are_recorded_and_keep_listings_apart(
    http: aiohttp.ClientSession,
    keycloak_gateway: GatewayProcess,
    keycloak_env: dict[str, str],
    keycloak_provider: KeycloakProvider,
    keycloak_admin: KeycloakAdmin,
) -> None:
    realm = keycloak_provider.realm
    p = keycloak_admin.prefix()
    async with http.post(f"{keycloak_gateway.issuer}/register", json=native_client("kc production")) as response:
        production_id = (await json_of(response, 201))["client_id"]
    keycloak_admin.tracked.append(production_id)
    record = await keycloak_admin.get(production_id)
    assert record is not None and json.loads(record["attributes"]["dcr.gateway.data"])["deployment"] == "default"

    staging_adapter = KeycloakAdapter(  # a gateway configured with DCR_DEPLOYMENT=staging
        server_url=keycloak_provider.base_url,
        public_url=keycloak_provider.base_url,
        realms=[realm],
        client_id=keycloak_provider.admin_client_id,
        client_secret=keycloak_provider.admin_client_secret,
        deployment="staging",
    )
    await staging_adapter.start(http)
    try:
        await staging_adapter.create_client(realm, public_client(p + "staging", "kc staging"))
    finally:
        await staging_adapter.close()
    staging_env = keycloak_env | {"DCR_DEPLOYMENT": "staging"}
    production = {row["client_id"] for row in json.loads((await clients(keycloak_env, "list", "--json")).out)}
    assert production_id in production and p + "staging" not in production
    staging = await clients(staging_env, "gc", "--unused-for", "0s", "--apply")
    assert staging.code == 0, staging.err
    assert f'deleted      {realm} {p}staging "kc staging"' in staging.out
    assert production_id not in staging.out
    assert await keycloak_admin.get(production_id) is not None
