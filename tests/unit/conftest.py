"""Fixtures of the unit tests (the log capture fixtures are in tests/conftest.py)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable, Mapping

import pytest
import uvloop
from gateway_factory import Gateways

ON_BOTH_LOOPS = frozenset({"test_shutdown.py"})
"""Modules whose tests run on the standard library's loop and on uvloop (``dcr-gateway serve``'s default)."""


@pytest.fixture
async def gateways() -> AsyncIterator[Gateways]:
    """In-process gateways in front of fake upstreams (see :mod:`gateway_factory`), closed after the test."""
    started = Gateways()
    yield started
    await started.close()


def pytest_asyncio_loop_factories(
    config: pytest.Config, item: pytest.Item
) -> Mapping[str, Callable[[], asyncio.AbstractEventLoop]] | None:
    """The graceful-shutdown tests (signals, drain, rollback) on both event loops ``DCR_EVENT_LOOP`` offers."""
    if item.path.name in ON_BOTH_LOOPS:
        return {"asyncio": asyncio.new_event_loop, "uvloop": uvloop.new_event_loop}
    return None
