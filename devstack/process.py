"""Child processes for the development stack and the tests: spawn, wait until ready, stop.

Every service runs in its own process group (``start_new_session``) with its output in a log file, so
``stop()`` can end it together with its children (``kc.sh`` runs Java as a child) and a stack started by one
command can be stopped by another through its pid.
"""

from __future__ import annotations

import collections
import contextlib
import os
import signal
import socket
import subprocess
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO

LOOPBACK = "127.0.0.1"


class ServiceError(RuntimeError):
    """A service did not start, or died while we waited for it."""


_HANDED_OUT: collections.deque[int] = collections.deque(maxlen=256)
"""The ports :func:`free_port` gave this process most recently: chosen, maybe not bound yet by whoever asked."""


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now (the OS picks it), and not one of the last 256 this
    process handed out: those may still be waiting for their server to bind them, and the OS may offer a port again
    as soon as the probe socket is closed (two listeners of one gateway once got the same port that way)."""
    while True:
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
            sock.bind((LOOPBACK, 0))
            port: int = sock.getsockname()[1]
        if port not in _HANDED_OUT:
            _HANDED_OUT.append(port)
            return port


def port_in_use(port: int, host: str = LOOPBACK) -> bool:
    """Whether something accepts connections on ``host:port``."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.settimeout(0.5)
        return sock.connect_ex((host, port)) == 0


def http_ok(url: str, timeout: float = 2.0) -> bool:
    """Whether ``GET url`` answers 2xx (no redirects are followed for 3xx: they count as not ready)."""
    try:
        with urllib.request.urlopen(url, timeout=timeout) as response:  # noqa: S310 (loopback URLs we built)
            status: int = response.status
            return 200 <= status < 300
    except (urllib.error.URLError, OSError, ValueError):
        return False


def tail(path: Path | None, lines: int = 40) -> str:
    """The last lines of a log file, for error messages."""
    if path is None:
        return "(output above)"
    try:
        text = path.read_text(errors="replace")
    except OSError:
        return ""
    return "\n".join(text.splitlines()[-lines:])


@dataclass
class Service:
    """One running child process with a readiness URL and a log file."""

    name: str
    process: subprocess.Popen[bytes]
    log_path: Path | None
    """None: the output goes to our own stdout/stderr (foreground use)."""
    ready_url: str
    started_at: float = field(default_factory=time.monotonic)
    ready_check: Callable[[], bool] | None = None
    """Replaces ``GET ready_url`` as the readiness test (e.g. a TLS handshake with a development CA)."""

    def is_ready(self) -> bool:
        return self.ready_check() if self.ready_check is not None else http_ok(self.ready_url)

    @property
    def pid(self) -> int:
        return self.process.pid

    def wait_ready(self, timeout: float) -> float:
        """Poll ``ready_url`` until it answers 2xx; return the seconds since start. Raise if the process dies."""
        deadline = time.monotonic() + timeout
        while True:
            code = self.process.poll()
            if code is not None:
                raise ServiceError(
                    f"{self.name} exited with status {code} before it was ready; "
                    f"log {self.log_path}:\n{tail(self.log_path)}"
                )
            if self.is_ready():
                return time.monotonic() - self.started_at
            if time.monotonic() > deadline:
                self.stop()
                raise ServiceError(
                    f"{self.name} was not ready at {self.ready_url} within {timeout:.0f} s; "
                    f"log {self.log_path}:\n{tail(self.log_path)}"
                )
            time.sleep(0.25)

    def stop(self, timeout: float = 15.0) -> None:
        """Terminate the whole process group; kill it if it is still there after ``timeout``."""
        if self.process.poll() is None:
            terminate_group(self.process.pid, timeout)
        with contextlib.suppress(subprocess.TimeoutExpired):
            self.process.wait(timeout=1)


def spawn(
    name: str,
    argv: Sequence[str],
    *,
    log_path: Path | None,
    ready_url: str,
    env: Mapping[str, str] | None = None,
    cwd: Path | None = None,
    ready_check: Callable[[], bool] | None = None,
) -> Service:
    """Start ``argv`` in a new session with stdout+stderr appended to ``log_path``; do not wait for it.

    ``log_path=None`` leaves the output on our own stdout/stderr. ``ready_check``: see :attr:`Service.ready_check`.
    """
    full_env = dict(os.environ)
    if env:
        full_env.update(env)
    with contextlib.ExitStack() as stack:
        output: IO[bytes] | None = None
        if log_path is not None:
            log_path.parent.mkdir(parents=True, exist_ok=True)
            output = stack.enter_context(log_path.open("ab"))
            output.write(f"--- {time.strftime('%Y-%m-%d %H:%M:%S')} starting {name}: {' '.join(argv)}\n".encode())
            output.flush()
        process = subprocess.Popen(
            list(argv),
            stdin=subprocess.DEVNULL,
            stdout=output,
            stderr=subprocess.STDOUT if output else None,
            env=full_env,
            cwd=cwd,
            start_new_session=True,
        )
    return Service(name=name, process=process, log_path=log_path, ready_url=ready_url, ready_check=ready_check)


def pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return not _is_zombie(pid)


def cmdline(pid: int) -> list[str]:
    """The argv of a running process (empty when it is gone)."""
    try:
        raw = Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return []
    return [part.decode(errors="replace") for part in raw.split(b"\0") if part]


def _is_zombie(pid: int) -> bool:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat.rsplit(")", 1)[-1].split()[0] == "Z"


def terminate_group(pid: int, timeout: float = 15.0) -> None:
    """SIGTERM the process group led by ``pid``, wait up to ``timeout``, then SIGKILL what is left."""
    try:
        os.killpg(pid, signal.SIGTERM)
    except ProcessLookupError:
        return
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if not _group_alive(pid):
            return
        time.sleep(0.1)
    with contextlib.suppress(ProcessLookupError):
        os.killpg(pid, signal.SIGKILL)


def _group_alive(pgid: int) -> bool:
    try:
        os.killpg(pgid, 0)
    except ProcessLookupError:
        return False
    # Members that are only zombies (not yet reaped by their parent) count as gone.
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[-1].split()
        except OSError:
            continue
        if int(fields[2]) == pgid and fields[0] != "Z":
            return True
    return False
