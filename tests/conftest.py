"""Session-wide fixtures: real Hydra and Keycloak processes, started once per test session.

``hydra_provider`` and ``keycloak_provider`` start fresh providers on free ports (never the local stack's
fixed ports, so tests run while ``make stack-up`` is up) and yield frozen dataclasses
(:class:`devstack.providers.HydraProvider` / ``KeycloakProvider``).

Keycloak takes 10-30 s to start, so when the collected tests need a provider it is spawned as soon as
collection ends, in parallel with Hydra and with whatever tests run before the first one that needs it; the
fixture then only waits for it. Logs go to pytest's temporary directory (``pytest --basetemp`` to choose it;
the path is in every start-up error and in the fixtures' ``log_path``).

``--providers=containers`` (or ``DCR_TEST_PROVIDERS=containers``) starts the same pinned versions from their
images through testcontainers instead (needs a Docker engine; see :mod:`devstack.containers`); the
fixtures yield the same dataclasses, with the containers' published ports. The default, ``local``, is what CI
runs.
"""

from __future__ import annotations

import io
import os
import signal
import tempfile
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from types import FrameType
from typing import Protocol

import pytest
import structlog

from devstack.process import free_port
from devstack.providers import (
    HydraProvider,
    KeycloakProvider,
    keycloak_provider_for,
    start_hydra_and_login,
    start_keycloak,
)
from gateway.logging import configure_logging

HYDRA_READY_TIMEOUT = 60.0
KEYCLOAK_READY_TIMEOUT = 240.0


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption(
        "--providers",
        choices=("local", "containers"),
        default=None,
        help="where hydra_provider/keycloak_provider come from: local processes (default; also "
        "$DCR_TEST_PROVIDERS) or containers of the pinned images (testcontainers; needs a Docker engine)",
    )


def providers_mode(config: pytest.Config) -> str:
    """``local`` or ``containers``: ``--providers``, else ``$DCR_TEST_PROVIDERS``, else ``local``."""
    from devstack.containers import providers_mode as resolve

    try:
        return resolve(config.getoption("providers"), os.environ)
    except ValueError as exc:
        raise pytest.UsageError(str(exc)) from exc


def pytest_configure(config: pytest.Config) -> None:
    providers_mode(config)  # a bad $DCR_TEST_PROVIDERS fails the run at once, not after collection


ONLY_PROVIDER_ENV = "DCR_TEST_ONLY_PROVIDER"
"""``hydra`` or ``keycloak``: run only the tests that exercise that provider (a cell of ``make matrix``)."""
PROVIDER_NAMES = ("hydra", "keycloak")


def exercised_providers(item: pytest.Item) -> set[str]:
    """The providers a test runs against: those named by one of its parameters (``target``, ``provider``:
    ``"keycloak"``) when it has such a parameter, else those whose session fixture (``hydra_provider``,
    ``keycloak_provider``) is in its fixture closure."""
    callspec = getattr(item, "callspec", None)
    if callspec is not None:
        named = {value for value in callspec.params.values() if isinstance(value, str) and value in PROVIDER_NAMES}
        if named:
            return named
    names = set(getattr(item, "fixturenames", ()))
    return {name for name in PROVIDER_NAMES if f"{name}_provider" in names}


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """With ``$DCR_TEST_ONLY_PROVIDER``, deselect every test that does not exercise that provider."""
    only = os.environ.get(ONLY_PROVIDER_ENV)
    if not only:
        return
    if only not in PROVIDER_NAMES:
        raise pytest.UsageError(f"{ONLY_PROVIDER_ENV}={only!r}: one of {', '.join(PROVIDER_NAMES)}")
    keep: list[pytest.Item] = []
    dropped: list[pytest.Item] = []
    for item in items:
        (keep if only in exercised_providers(item) else dropped).append(item)
    if dropped:
        config.hook.pytest_deselected(items=dropped)
        items[:] = keep


class _Handle(Protocol):
    """A started provider (a local :class:`Service` or a container): wait until it serves, stop it."""

    def wait_ready(self, timeout: float) -> float: ...

    def stop(self) -> None: ...


Provider = HydraProvider | KeycloakProvider


@dataclass
class _Started:
    services: Sequence[_Handle]
    resolve: Callable[[], Provider]
    """The provider as the tests see it (containers know their published ports only once started)."""
    timeout: float
    ready: bool = False

    @property
    def provider(self) -> Provider:
        return self.resolve()

    def wait(self) -> None:
        if not self.ready:
            for service in self.services:
                service.wait_ready(self.timeout)
            self.ready = True

    def stop(self) -> None:
        for service in reversed(self.services):
            service.stop()


_STARTED = pytest.StashKey[dict[str, _Started]]()


def _run_dir(config: pytest.Config, name: str) -> Path:
    factory = getattr(config, "_tmp_path_factory", None)
    if isinstance(factory, pytest.TempPathFactory):
        return factory.mktemp(name)
    return Path(tempfile.mkdtemp(prefix=f"dcr-{name}-"))


def _start_hydra(config: pytest.Config) -> _Started:
    services, provider = start_hydra_and_login(
        public_port=free_port(),
        admin_port=free_port(),
        gateway_port=free_port(),
        login_port=free_port(),
        log_dir=_run_dir(config, "hydra"),
    )
    return _Started(services, lambda: provider, HYDRA_READY_TIMEOUT)


def _start_keycloak(config: pytest.Config) -> _Started:
    run_dir = _run_dir(config, "keycloak")
    port = free_port()
    log_path = run_dir / "keycloak.log"
    service = start_keycloak(http_port=port, home=run_dir / "home", log_path=log_path)
    provider = keycloak_provider_for(port, log_path)
    return _Started([service], lambda: provider, KEYCLOAK_READY_TIMEOUT)


def _start_hydra_container(config: pytest.Config) -> _Started:
    from devstack.containers import HydraInContainer

    hydra = HydraInContainer(gateway_port=free_port(), login_port=free_port(), log_dir=_run_dir(config, "hydra"))
    hydra.start()
    return _Started([hydra], lambda: hydra.provider, HYDRA_READY_TIMEOUT)


def _start_keycloak_container(config: pytest.Config) -> _Started:
    from devstack.containers import KeycloakInContainer

    keycloak = KeycloakInContainer(log_dir=_run_dir(config, "keycloak"))
    keycloak.start()
    return _Started([keycloak], lambda: keycloak.provider, KEYCLOAK_READY_TIMEOUT)


Starter = Callable[[pytest.Config], _Started]
_LOCAL_STARTERS: dict[str, Starter] = {"hydra_provider": _start_hydra, "keycloak_provider": _start_keycloak}
_CONTAINER_STARTERS: dict[str, Starter] = {
    "hydra_provider": _start_hydra_container,
    "keycloak_provider": _start_keycloak_container,
}


def _starters(config: pytest.Config) -> dict[str, Starter]:
    return _CONTAINER_STARTERS if providers_mode(config) == "containers" else _LOCAL_STARTERS


def _started(config: pytest.Config) -> dict[str, _Started]:
    return config.stash.setdefault(_STARTED, {})


def pytest_collection_finish(session: pytest.Session) -> None:
    """Spawn the providers the collected tests need (without waiting), so they boot in parallel."""
    if session.config.option.collectonly:
        return
    needed = {name for item in session.items for name in getattr(item, "fixturenames", ())}
    started = _started(session.config)
    for name, start in _starters(session.config).items():
        if name in needed and name not in started:
            started[name] = start(session.config)
    if started and signal.getsignal(signal.SIGTERM) is signal.SIG_DFL:
        # A terminated run (CI timeout, `kill`) still stops the providers: they run in their own sessions.
        signal.signal(signal.SIGTERM, _interrupt)


def _interrupt(signum: int, frame: FrameType | None) -> None:
    raise KeyboardInterrupt


def pytest_sessionfinish(session: pytest.Session) -> None:
    """Stop providers that were spawned but never used (e.g. after ``-x`` stopped the run early)."""
    started = _started(session.config)
    for entry in started.values():
        entry.stop()
    started.clear()


def _acquire(config: pytest.Config, name: str) -> _Started:
    """The provider spawned at collection (or spawn it now), once it is ready."""
    started = _started(config)
    entry = started.get(name) or _starters(config)[name](config)
    started[name] = entry
    try:
        entry.wait()
    except BaseException:
        entry.stop()
        started.pop(name, None)
        raise
    return entry


def _release(config: pytest.Config, name: str) -> None:
    entry = _started(config).pop(name, None)
    if entry is not None:
        entry.stop()


@pytest.fixture(scope="session")
def hydra_provider(pytestconfig: pytest.Config) -> Iterator[HydraProvider]:
    """A fresh Hydra (in-memory) plus the dev login & consent app; its issuer is ``gateway_port``'s origin."""
    provider = _acquire(pytestconfig, "hydra_provider").provider
    assert isinstance(provider, HydraProvider)
    yield provider
    _release(pytestconfig, "hydra_provider")


@pytest.fixture(scope="session")
def keycloak_provider(pytestconfig: pytest.Config) -> Iterator[KeycloakProvider]:
    """A fresh Keycloak (own home and H2 database) with realm ``mcp`` from deploy/keycloak/realm-mcp.json."""
    provider = _acquire(pytestconfig, "keycloak_provider").provider
    assert isinstance(provider, KeycloakProvider)
    yield provider
    _release(pytestconfig, "keycloak_provider")


# ------------------------------------------------------------------------------------------ log capture


@pytest.fixture
def capture_logs() -> Iterator[Callable[[str], io.StringIO]]:
    """``capture_logs(level)``: from then on the gateway's JSON log lines at ``level`` go to the returned stream;
    structlog's defaults come back after the test. Loggers are never cached: a cached logger would keep writing
    to this test's stream in later tests."""

    def start(level: str) -> io.StringIO:
        stream = io.StringIO()
        configure_logging(level, "json", cache_loggers=False, stream=stream)
        return stream

    yield start
    structlog.reset_defaults()


@pytest.fixture
def json_logs(capture_logs: Callable[[str], io.StringIO]) -> io.StringIO:
    """The gateway's JSON logs, DEBUG and up, of this test."""
    return capture_logs("DEBUG")


@pytest.fixture
def info_logs(capture_logs: Callable[[str], io.StringIO]) -> io.StringIO:
    """The gateway's JSON logs, INFO and up, of this test."""
    return capture_logs("INFO")
