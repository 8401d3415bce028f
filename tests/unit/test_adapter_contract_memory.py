"""The adapter contract suite (:mod:`gateway.testing.adapter_contract`) on the memory adapter."""

from __future__ import annotations

from collections.abc import AsyncIterator

import aiohttp
import pytest

from adapters.memory.adapter import MemoryAdapter
from gateway.testing.adapter_contract import AdapterContract, PlantUnmanaged


class TestMemoryAdapter(AdapterContract):
    @pytest.fixture
    async def adapter(self) -> AsyncIterator[MemoryAdapter]:
        instance = MemoryAdapter(public_url="http://provider.internal")
        async with aiohttp.ClientSession() as session:
            await instance.start(session)
            yield instance
            await instance.close()

    @pytest.fixture
    async def unreachable_adapter(self, adapter: MemoryAdapter) -> MemoryAdapter:
        adapter.unavailable = True
        return adapter

    @pytest.fixture
    def plant_unmanaged(self, adapter: MemoryAdapter) -> PlantUnmanaged:
        async def plant(issuer: str, client_id: str) -> None:
            adapter.add_unmanaged(issuer, client_id)

        return plant
