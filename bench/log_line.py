"""What one log line costs, in process: ``log.info("http.request", ...)`` as the gateway's middleware calls it, with
the configuration ``dcr-gateway serve`` installs (:func:`gateway.logging.configure_logging`, loggers cached), a
``request_id`` bound, written to a file (issue 12: the access log at INFO). In-process and noisy: the best of
``--repeat`` runs of ``--lines`` lines each, in microseconds per line, for each format asked.

    PYTHONPATH=. .venv/bin/python bench/log_line.py
    PYTHONPATH=. .venv/bin/python bench/log_line.py --at main     # the same with gateway/logging.py at a revision
"""

from __future__ import annotations

import argparse
import importlib.util
import subprocess
import sys
import tempfile
import timeit
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import structlog

ROOT = Path(__file__).resolve().parents[1]


def configure(fmt: str, stream: Any, at: str | None) -> None:
    if at is None:
        from gateway.logging import configure_logging
    else:  # gateway/logging.py as it was at a git revision
        source = Path(tempfile.mkdtemp()) / "logging_at.py"
        shown = subprocess.run(
            ["git", "-C", str(ROOT), "show", f"{at}:gateway/logging.py"], capture_output=True, check=True
        )
        source.write_bytes(shown.stdout)
        spec = importlib.util.spec_from_file_location("logging_at", source)
        assert spec is not None and spec.loader is not None
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
        configure_logging = module.configure_logging
    configure_logging("INFO", fmt, stream=stream)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument("--formats", default="json,console")
    parser.add_argument("--lines", type=int, default=20000)
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--at", help="a git revision: gateway/logging.py as it was there")
    args = parser.parse_args(argv)
    for fmt in args.formats.split(","):
        with tempfile.NamedTemporaryFile("w", suffix=".log") as file:
            configure(fmt, file, args.at)
            log = structlog.get_logger("gateway.app")
            structlog.contextvars.clear_contextvars()
            structlog.contextvars.bind_contextvars(request_id="06c0b4fc6b6d1837")

            def line(log: Any = log) -> None:
                log.info(
                    "http.request",
                    method="GET",
                    path="/realms/mcp/protocol/openid-connect/certs",
                    status=200,
                    duration_ms=2.11,
                )

            best = min(timeit.repeat(line, number=args.lines, repeat=args.repeat)) / args.lines
            print(f"{fmt:8s} {args.at or 'this checkout':14s} {best * 1e6:6.1f} us/line", flush=True)
            structlog.reset_defaults()
    return 0


if __name__ == "__main__":
    sys.exit(main())
