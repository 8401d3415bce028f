"""A throwaway PostgreSQL server for the providers' production-database cells (no Docker).

Keycloak and Hydra use PostgreSQL in production; the default local stack does not (Keycloak's ``dev-file`` H2,
Hydra's in-memory SQLite), and some of their behaviour depends on the database: column lengths, how concurrent
writes fail. ``DCR_KEYCLOAK_DB=postgres`` and ``DCR_HYDRA_DB=postgres`` (``make matrix`` sets them for its
PostgreSQL cells) make :func:`devstack.providers.start_keycloak` and :func:`~devstack.providers.start_hydra` put
each provider they start on its own fresh database of one server started here on demand.

The server is Debian's ``postgresql`` package (``make system-deps``), started as a foreground process on loopback
with its own data directory, like the nginx and Redis of the tests: never a system service. As root it runs as
the ``postgres`` system user (PostgreSQL refuses root). ``fsync`` is off: a test database need not survive a
power cut, and nothing the cells check depends on durability.
"""

from __future__ import annotations

import atexit
import contextlib
import os
import secrets
import shutil
import subprocess
import tempfile
import threading
from dataclasses import dataclass, field
from pathlib import Path

from devstack.process import LOOPBACK, Service, free_port, spawn

DB_USER = "dcr"
"""The superuser of the throwaway cluster (development only)."""
READY_TIMEOUT = 60.0
DATABASES = ("dev-file", "memory", "postgres")


def postgres_bindir() -> Path | None:
    """The directory of ``initdb`` and ``postgres``: ``$DCR_POSTGRES_BINDIR``, else the newest of Debian's
    ``/usr/lib/postgresql/<major>/bin``, else ``pg_config --bindir``; ``None`` when PostgreSQL is not installed."""
    configured = os.environ.get("DCR_POSTGRES_BINDIR")
    if configured:
        return Path(configured)
    root = Path("/usr/lib/postgresql")
    if root.is_dir():
        majors = sorted((p for p in root.iterdir() if (p / "bin" / "initdb").exists()), key=_major, reverse=True)
        if majors:
            return majors[0] / "bin"
    pg_config = shutil.which("pg_config")
    if pg_config:
        out = subprocess.run([pg_config, "--bindir"], capture_output=True, text=True, check=False).stdout.strip()
        if out and (Path(out) / "initdb").exists():
            return Path(out)
    return None


def _major(path: Path) -> int:
    try:
        return int(path.name)
    except ValueError:
        return 0


def available() -> bool:
    """Whether a PostgreSQL server can be started here (``make system-deps`` installs one)."""
    return postgres_bindir() is not None


def _as_owner() -> list[str]:
    """The command prefix that runs PostgreSQL's programs as a non-root user (``postgres``) when we are root."""
    if os.geteuid() != 0:
        return []
    runuser = shutil.which("runuser") or "/usr/sbin/runuser"
    return [runuser, "-u", "postgres", "--"]


@dataclass
class PostgresServer:
    """One running cluster on ``127.0.0.1:port`` with superuser :data:`DB_USER` and a random password."""

    port: int
    password: str
    service: Service
    root: Path
    bindir: Path
    _databases: int = 0
    _lock: threading.Lock = field(default_factory=threading.Lock)

    @property
    def version(self) -> str:
        """``PostgreSQL 15.x`` as the server binary reports it."""
        out = subprocess.run([str(self.bindir / "postgres"), "--version"], capture_output=True, text=True, check=False)
        return out.stdout.strip().removeprefix("postgres (PostgreSQL) ")

    def create_database(self, prefix: str) -> str:
        """A new empty database named ``{prefix}_{n}``; its name."""
        with self._lock:
            self._databases += 1
            name = f"{prefix}_{self._databases}"
        self.psql(f'CREATE DATABASE "{name}"')
        return name

    def psql(self, sql: str, database: str = "postgres") -> str:
        """Run one SQL statement with ``psql`` as the superuser; its unaligned output."""
        result = subprocess.run(
            [
                str(self.bindir / "psql"),
                "-h",
                LOOPBACK,
                "-p",
                str(self.port),
                "-U",
                DB_USER,
                "-d",
                database,
                "-v",
                "ON_ERROR_STOP=1",
                "-At",
                "-c",
                sql,
            ],
            capture_output=True,
            text=True,
            env={**os.environ, "PGPASSWORD": self.password},
            check=False,
        )
        if result.returncode != 0:
            raise RuntimeError(f"psql {sql!r}: {result.stderr.strip()}")
        return result.stdout

    def jdbc_url(self, database: str) -> str:
        return f"jdbc:postgresql://{LOOPBACK}:{self.port}/{database}"

    def dsn(self, database: str) -> str:
        """A ``postgres://`` DSN with the password (for Hydra's ``DSN``: pass it in the environment only)."""
        return f"postgres://{DB_USER}:{self.password}@{LOOPBACK}:{self.port}/{database}?sslmode=disable"

    def stop(self) -> None:
        self.service.stop()
        shutil.rmtree(self.root, ignore_errors=True)


def start_postgres(*, port: int | None = None, log_path: Path | None = None) -> PostgresServer:
    """``initdb`` a fresh cluster in a new temporary directory and start ``postgres`` on ``127.0.0.1:port``; wait
    until it accepts connections."""
    bindir = postgres_bindir()
    if bindir is None:
        raise RuntimeError("PostgreSQL is not installed (make system-deps installs Debian's postgresql)")
    port = port or free_port()
    root = Path(tempfile.mkdtemp(prefix="dcr-postgres-"))
    data, sockets = root / "data", root / "run"
    sockets.mkdir()
    password = secrets.token_urlsafe(18)
    pwfile = root / "pwfile"
    pwfile.write_text(password + "\n")
    if os.geteuid() == 0:
        import pwd

        owner = pwd.getpwnam("postgres")
        for path in (root, sockets, pwfile):
            os.chown(path, owner.pw_uid, owner.pw_gid)
    root.chmod(0o700)
    log_path = log_path or root / "postgres.log"
    initdb = subprocess.run(
        [
            *_as_owner(),
            str(bindir / "initdb"),
            "-D",
            str(data),
            "-U",
            DB_USER,
            f"--pwfile={pwfile}",
            "--auth-local=scram-sha-256",
            "--auth-host=scram-sha-256",
            "-E",
            "UTF8",
            "--locale=C.UTF-8",
        ],
        capture_output=True,
        text=True,
        check=False,
    )
    pwfile.unlink()
    if initdb.returncode != 0:
        shutil.rmtree(root, ignore_errors=True)
        raise RuntimeError(f"initdb failed: {initdb.stderr.strip()[-2000:]}")
    argv = [
        *_as_owner(),
        str(bindir / "postgres"),
        "-D",
        str(data),
        "-h",
        LOOPBACK,
        "-p",
        str(port),
        "-k",
        str(sockets),
        "-c",
        "fsync=off",
        "-c",
        "full_page_writes=off",
        "-c",
        "max_connections=300",
    ]

    def ready() -> bool:
        probe = subprocess.run(
            [str(bindir / "pg_isready"), "-q", "-h", LOOPBACK, "-p", str(port)], check=False, capture_output=True
        )
        return probe.returncode == 0

    service = spawn("postgres", argv, log_path=log_path, ready_url=f"postgresql://{LOOPBACK}:{port}", ready_check=ready)
    server = PostgresServer(port=port, password=password, service=service, root=root, bindir=bindir)
    try:
        service.wait_ready(READY_TIMEOUT)
    except BaseException:
        server.stop()
        raise
    return server


_SHARED: dict[str, PostgresServer] = {}
_shared_lock = threading.Lock()


def shared_server() -> PostgresServer:
    """The process's one PostgreSQL server, started on first use and stopped when the process exits: every
    provider started with a ``postgres`` database gets its own database on it."""
    with _shared_lock:
        server = _SHARED.get("server")
        if server is None or server.service.process.poll() is not None:
            server = _SHARED["server"] = start_postgres()
            atexit.register(_stop_shared)
        return server


def _stop_shared() -> None:
    with _shared_lock:
        server = _SHARED.pop("server", None)
        if server is not None:
            with contextlib.suppress(Exception):
                server.stop()


def keycloak_database() -> str:
    """``DCR_KEYCLOAK_DB``: ``dev-file`` (default, Keycloak's H2 file database) or ``postgres``."""
    value = os.environ.get("DCR_KEYCLOAK_DB", "dev-file")
    if value not in ("dev-file", "postgres"):
        raise ValueError(f"DCR_KEYCLOAK_DB={value!r}: dev-file or postgres")
    return value


def hydra_database() -> str:
    """``DCR_HYDRA_DB``: ``memory`` (default, in-memory SQLite) or ``postgres``."""
    value = os.environ.get("DCR_HYDRA_DB", "memory")
    if value not in ("memory", "postgres"):
        raise ValueError(f"DCR_HYDRA_DB={value!r}: memory or postgres")
    return value
