"""A dcr-gateway adapter whose "provider" is a SQLite database: one table of OAuth clients, shared with whatever
else manages clients there (the rows without the managed mark, which the gateway never touches).

It follows the gateway README's "Writing an adapter" step by step: the settings model (section ``[sqlite]``,
``DCR_SQLITE__*``), the factory declared as an entry point of group ``dcr_gateway.adapters``, the
:class:`adapters.base.ProviderAdapter` methods with the contract's rules and errors, the optional
:class:`adapters.base.AdminApiCheck`, and the contract suite in ``tests/``.

A real provider's admin API would take the place of the SQL; the rules stay the same.
"""

from __future__ import annotations

import asyncio
import json
import sqlite3
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import TYPE_CHECKING, TypeVar

from adapters.base import (
    DEFAULT_DEPLOYMENT,
    Capabilities,
    ClientConflict,
    ClientMetadata,
    ClientNotFound,
    Issuer,
    ManagedClient,
    NewClient,
    ProviderMisconfigured,
    ProviderUnavailable,
    with_deployment,
)
from adapters.settings import AdapterSettings, adapter_settings

if TYPE_CHECKING:
    import aiohttp

    from gateway.settings import Settings

NAME = "sqlite"
"""The entry point's name: ``DCR_PROVIDER=sqlite``, settings section ``[sqlite]`` / ``DCR_SQLITE__*``."""
PAGE_SIZE = 100
"""Rows per page of :meth:`SqliteAdapter.list_clients` (keyset pagination on ``client_id``)."""
ISSUER_KEY = "default"

SCHEMA = """
CREATE TABLE IF NOT EXISTS clients (
    client_id TEXT PRIMARY KEY,
    managed INTEGER NOT NULL DEFAULT 0,
    secret TEXT,
    issued_at INTEGER NOT NULL DEFAULT 0,
    secret_expires_at INTEGER NOT NULL DEFAULT 0,
    metadata TEXT NOT NULL DEFAULT '{}',
    gateway_data TEXT NOT NULL DEFAULT '{}'
)
"""
"""One row per client. ``managed`` is the gateway's mark: a row without it (another tool's client) is invisible."""

T = TypeVar("T")


class SqliteSettings(AdapterSettings):
    """``[sqlite]`` / ``DCR_SQLITE__*``: where the clients are. Unknown keys are refused (:class:`AdapterSettings`)."""

    path: str = "clients.db"
    """The database file; its directory must exist (the file is created on first use)."""
    issuer_path: str = ""
    """Path part of the issuer URL (empty: the provider's root)."""
    timeout: float = 5.0
    """Seconds to wait for a lock held by another writer."""


class SqliteAdapter:
    """The :class:`adapters.base.ProviderAdapter` (and :class:`adapters.base.AdminApiCheck`) over :data:`SCHEMA`."""

    name = NAME
    capabilities = Capabilities()  # TEXT columns: no length limit below the registration policy's own

    def __init__(
        self,
        *,
        path: str,
        public_url: str,
        issuer_path: str = "",
        timeout: float = 5.0,
        deployment: str = DEFAULT_DEPLOYMENT,
    ) -> None:
        self._path = path
        self._public_url = public_url.rstrip("/")
        self._issuer_path = issuer_path.rstrip("/")
        self._timeout = timeout
        self._deployment = deployment

    def issuers(self) -> list[Issuer]:
        return [
            Issuer(
                key=ISSUER_KEY,
                path=self._issuer_path,
                metadata_url=f"{self._public_url}{self._issuer_path}/.well-known/openid-configuration",
            )
        ]

    async def start(self, session: aiohttp.ClientSession) -> None:
        """Nothing to open: each call opens the database (so that an unreachable one is a per-call failure)."""

    async def close(self) -> None:
        """Nothing to release."""

    async def check(self) -> None:
        """:class:`adapters.base.AdminApiCheck`: the database opens and holds the clients table."""
        await self._run(lambda db: db.execute("SELECT count(*) FROM clients").fetchone(), sent=False)

    # ---------------------------------------------------------------------------------------- storage

    async def _run(self, work: Callable[[sqlite3.Connection], T], *, sent: bool = True) -> T:
        """``work`` in a transaction on a worker thread. Failures become the contract's errors (rule 6): a database
        that cannot be opened changed nothing (``request_sent=False``); a lock or I/O error mid-way may have."""
        return await asyncio.to_thread(self._transaction, work, sent)

    def _transaction(self, work: Callable[[sqlite3.Connection], T], sent: bool) -> T:
        if not Path(self._path).parent.is_dir():
            raise ProviderUnavailable(f"sqlite: no directory for {self._path!r}", request_sent=False)
        try:
            db = sqlite3.connect(self._path, timeout=self._timeout)
        except sqlite3.Error as exc:
            raise ProviderUnavailable(f"sqlite: cannot open the database: {exc}", request_sent=False) from exc
        try:
            with db:
                db.execute(SCHEMA)
                return work(db)
        except sqlite3.IntegrityError as exc:
            raise ClientConflict("sqlite: a client with this client_id exists") from exc
        except sqlite3.DatabaseError as exc:
            if "no such table" in str(exc) or "not a database" in str(exc):
                raise ProviderMisconfigured(
                    f"sqlite: {exc}; set DCR_SQLITE__PATH (TOML sqlite.path)", setting="DCR_SQLITE__PATH"
                ) from exc
            raise ProviderUnavailable(f"sqlite: {exc}", request_sent=sent) from exc
        finally:
            db.close()

    @staticmethod
    def _managed_row(db: sqlite3.Connection, client_id: str) -> sqlite3.Row | None:
        db.row_factory = sqlite3.Row
        row: sqlite3.Row | None = db.execute(
            "SELECT * FROM clients WHERE client_id = ? AND managed = 1", (client_id,)
        ).fetchone()
        return row

    def _read_back(self, db: sqlite3.Connection, client_id: str) -> ManagedClient:
        """What is stored now, in the transaction that wrote it."""
        row = self._managed_row(db, client_id)
        if row is None:
            raise ProviderUnavailable(f"sqlite: client {client_id!r} vanished while written")
        return self._client(row)

    @staticmethod
    def _client(row: sqlite3.Row) -> ManagedClient:
        return ManagedClient(
            client_id=row["client_id"],
            metadata=ClientMetadata.model_validate(json.loads(row["metadata"])),
            client_id_issued_at=row["issued_at"],
            client_secret=row["secret"],
            client_secret_expires_at=row["secret_expires_at"],
            gateway_data=json.loads(row["gateway_data"]),
        )

    # ------------------------------------------------------------------------------------- operations

    async def create_client(self, issuer: str, client: NewClient) -> ManagedClient:
        """Rule 2: the gateway's id and secret as given; rule 4: its gateway data plus the deployment."""
        client = with_deployment(client, self._deployment)

        def insert(db: sqlite3.Connection) -> ManagedClient:
            db.execute(
                "INSERT INTO clients (client_id, managed, secret, issued_at, secret_expires_at, metadata, gateway_data)"
                " VALUES (?, 1, ?, ?, ?, ?, ?)",  # a taken id (managed or not) is an IntegrityError: ClientConflict
                (
                    client.client_id,
                    client.client_secret,
                    client.client_id_issued_at,
                    client.client_secret_expires_at,
                    json.dumps(client.metadata.registered()),
                    json.dumps(dict(client.gateway_data)),
                ),
            )
            return self._read_back(db, client.client_id)

        return await self._run(insert, sent=True)

    async def read_client(self, issuer: str, client_id: str) -> ManagedClient:
        def select(db: sqlite3.Connection) -> ManagedClient:
            row = self._managed_row(db, client_id)
            if row is None:  # absent and unmanaged look the same (rule 1)
                raise ClientNotFound(client_id)
            return self._client(row)

        return await self._run(select)

    async def update_client(self, issuer: str, client: NewClient) -> ManagedClient:
        """Rule 5: a full replacement; no secret keeps the current one, ``none`` drops it."""
        client = with_deployment(client, self._deployment)

        def replace(db: sqlite3.Connection) -> ManagedClient:
            current = self._managed_row(db, client.client_id)
            if current is None:
                raise ClientNotFound(client.client_id)
            secret = None
            if client.metadata.token_endpoint_auth_method != "none":
                secret = client.client_secret or current["secret"]
            db.execute(
                "UPDATE clients SET secret = ?, secret_expires_at = ?, metadata = ?, gateway_data = ?"
                " WHERE client_id = ? AND managed = 1",
                (
                    secret,
                    client.client_secret_expires_at,
                    json.dumps(client.metadata.registered()),
                    json.dumps(dict(client.gateway_data)),
                    client.client_id,
                ),
            )
            return self._read_back(db, client.client_id)

        return await self._run(replace)

    async def delete_client(self, issuer: str, client_id: str) -> None:
        def delete(db: sqlite3.Connection) -> None:
            if db.execute("DELETE FROM clients WHERE client_id = ? AND managed = 1", (client_id,)).rowcount == 0:
                raise ClientNotFound(client_id)

        await self._run(delete)

    async def list_clients(self, issuer: str) -> AsyncIterator[ManagedClient]:
        """Every managed client, a page of :data:`PAGE_SIZE` at a time (keyset: no client is skipped or repeated
        when others are created or deleted meanwhile)."""
        after = ""
        while True:

            def page(db: sqlite3.Connection, after: str = after) -> list[ManagedClient]:
                db.row_factory = sqlite3.Row
                rows = db.execute(
                    "SELECT * FROM clients WHERE managed = 1 AND client_id > ? ORDER BY client_id LIMIT ?",
                    (after, PAGE_SIZE),
                ).fetchall()
                return [self._client(row) for row in rows]

            clients = await self._run(page)
            for client in clients:
                yield client
            if len(clients) < PAGE_SIZE:
                return
            after = clients[-1].client_id


@adapter_settings(SqliteSettings)
def create_adapter(settings: Settings) -> SqliteAdapter:
    """The entry point (``sqlite = "dcr_gateway_sqlite.adapter:create_adapter"``): no I/O here."""
    section = settings.section(NAME, SqliteSettings)
    return SqliteAdapter(
        path=section.path,
        public_url=settings.provider_url,
        issuer_path=section.issuer_path,
        timeout=section.timeout,
        deployment=settings.deployment,
    )


def plant_unmanaged(path: str, client_id: str) -> None:
    """Insert a client the gateway did not create (another tool's row), for the contract suite."""
    with sqlite3.connect(path) as db:
        db.execute(SCHEMA)
        db.execute("INSERT INTO clients (client_id, managed) VALUES (?, 0)", (client_id,))
    db.close()
