"""Every call the gateway makes to the provider's admin API, counted and timed in one place: the adapter the app
binds is instrumented (:func:`instrument_adapter`), not each adapter (the pluggable-backend habit: shared concerns
stay in the layer that calls the plugin).

Operations are the adapter's protocol methods (:mod:`adapters.base`): a fixed set, so they are safe label values.
Only the outermost call is counted: an adapter method that calls another of its own through ``self`` is one
operation (the one the gateway asked for), timed whole.
"""

from __future__ import annotations

import functools
import inspect
import time
from collections.abc import AsyncIterator, Callable
from contextvars import ContextVar
from typing import Any

from adapters.base import (
    AdapterError,
    ClientConflict,
    ClientNotFound,
    ProviderAdapter,
    ProviderAuthError,
    ProviderMisconfigured,
    ProviderRejected,
    ProviderUnavailable,
)
from gateway.observability.metrics import GatewayMetrics

ADMIN_OPERATIONS = (
    "check",
    "create_client",
    "read_client",
    "update_client",
    "delete_client",
    "list_clients",
    "usage",
    "list_unmanaged",
    "adopt_client",
    "list_with_usage",
    "count_managed",
    "registrable_scopes",
    "read_document_client",
    "put_document_client",
    "delete_document_client",
    "list_document_clients",
    "bind_resource",
    "admit_redirect_uri",
)
"""The admin-API operations of :mod:`adapters.base`'s protocols (``start``/``close`` are not admin calls)."""

_IN_CALL: ContextVar[bool] = ContextVar("dcr_adapter_call", default=False)


def outcome_of(exc: BaseException | None) -> str:
    """The ``outcome`` label of one admin call."""
    if exc is None:
        return "success"
    for kind, outcome in (
        (ClientNotFound, "not_found"),
        (ClientConflict, "conflict"),
        (ProviderMisconfigured, "misconfigured"),
        (ProviderAuthError, "auth_error"),
        (ProviderRejected, "rejected"),
        (ProviderUnavailable, "unavailable"),
        (AdapterError, "error"),
    ):
        if isinstance(exc, kind):
            return outcome
    return "error"


def instrument_adapter(adapter: ProviderAdapter, metrics: GatewayMetrics) -> ProviderAdapter:
    """Count and time every admin call of ``adapter`` (the same object, its operations wrapped in place, so the
    capability checks of :mod:`adapters.base`, ``isinstance(adapter, DocumentClients)`` and the like, still hold).
    Instrumenting again (the same adapter handed to a second app) sends the counts to the new ``metrics``."""
    adapter._dcr_metrics = metrics  # type: ignore[attr-defined]  # a later app takes the counts over
    if getattr(adapter, "_dcr_instrumented", False):
        return adapter
    provider = adapter.name
    for name in ADMIN_OPERATIONS:
        method = getattr(adapter, name, None)
        if method is None or not callable(method):
            continue
        if inspect.isasyncgenfunction(method):
            setattr(adapter, name, _timed_iterator(method, provider, name, adapter))
        elif inspect.iscoroutinefunction(method):
            setattr(adapter, name, _timed_call(method, provider, name, adapter))
    adapter._dcr_instrumented = True  # type: ignore[attr-defined]
    return adapter


def _record(adapter: object, provider: str, operation: str, failure: BaseException | None, started: float) -> None:
    metrics: GatewayMetrics = getattr(adapter, "_dcr_metrics")  # noqa: B009 (set by instrument_adapter)
    metrics.provider_request(
        provider=provider, operation=operation, outcome=outcome_of(failure), seconds=time.perf_counter() - started
    )


def _timed_call(method: Callable[..., Any], provider: str, operation: str, adapter: object) -> Callable[..., Any]:
    @functools.wraps(method)
    async def timed(*args: Any, **kwargs: Any) -> Any:
        if _IN_CALL.get():
            return await method(*args, **kwargs)
        token = _IN_CALL.set(True)
        started = time.perf_counter()
        failure: BaseException | None = None
        try:
            return await method(*args, **kwargs)
        except BaseException as exc:
            failure = exc
            raise
        finally:
            _IN_CALL.reset(token)
            _record(adapter, provider, operation, failure, started)

    return timed


def _timed_iterator(
    method: Callable[..., AsyncIterator[Any]], provider: str, operation: str, adapter: object
) -> Callable[..., AsyncIterator[Any]]:
    """A listing is one operation, timed from its first page to its last (or to the caller stopping early)."""

    @functools.wraps(method)
    async def timed(*args: Any, **kwargs: Any) -> AsyncIterator[Any]:
        if _IN_CALL.get():
            async for item in method(*args, **kwargs):
                yield item
            return
        started = time.perf_counter()
        failure: BaseException | None = None
        iterator = method(*args, **kwargs)
        try:
            while True:
                token = _IN_CALL.set(True)
                try:
                    item = await iterator.__anext__()
                except StopAsyncIteration:
                    break
                finally:
                    _IN_CALL.reset(token)
                yield item
        except GeneratorExit:
            raise
        except BaseException as exc:
            failure = exc
            raise
        finally:
            closing = getattr(iterator, "aclose", None)
            if closing is not None:
                await closing()
            _record(adapter, provider, operation, failure, started)

    return timed
