"""The dcr-gateway adapter contract suite on the SQLite adapter (README "Writing an adapter", step 5)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import aiohttp
import pytest
import pytest_asyncio
from dcr_gateway_sqlite import adapter as sqlite_adapter
from dcr_gateway_sqlite.adapter import SqliteAdapter, plant_unmanaged

from gateway.testing.adapter_contract import AdapterContract, PlantUnmanaged


class TestSqliteAdapter(AdapterContract):
    clients_to_list = 7  # more than a page: the adapter fixture makes pages of 3

    @pytest_asyncio.fixture
    async def adapter(self, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> AsyncIterator[SqliteAdapter]:
        monkeypatch.setattr(sqlite_adapter, "PAGE_SIZE", 3)
        instance = SqliteAdapter(path=str(tmp_path / "clients.db"), public_url="http://idp.internal")
        async with aiohttp.ClientSession() as session:
            await instance.start(session)
            yield instance
            await instance.close()

    @pytest_asyncio.fixture
    async def unreachable_adapter(self, tmp_path: Path) -> AsyncIterator[SqliteAdapter]:
        instance = SqliteAdapter(
            path=str(tmp_path / "no-such-directory" / "clients.db"), public_url="http://idp.internal"
        )
        async with aiohttp.ClientSession() as session:
            await instance.start(session)
            yield instance
            await instance.close()

    @pytest_asyncio.fixture
    async def plant_unmanaged(self, tmp_path: Path) -> AsyncIterator[PlantUnmanaged]:
        async def plant(issuer: str, client_id: str) -> None:
            plant_unmanaged(str(tmp_path / "clients.db"), client_id)

        yield plant  # the database goes with tmp_path
