"""Fixtures of the unit tests (the log capture fixtures are in tests/conftest.py)."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest
from gateway_factory import Gateways


@pytest.fixture
async def gateways() -> AsyncIterator[Gateways]:
    """In-process gateways in front of fake upstreams (see :mod:`gateway_factory`), closed after the test."""
    started = Gateways()
    yield started
    await started.close()
