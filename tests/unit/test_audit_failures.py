"""The audit log never turns an operation into a failure: a write that fails (a full disk: ``/dev/full``) is logged
as ``audit.write_failed`` and counted (``dcr_gateway_audit_write_failures_total``), and the registration is
answered 201 and kept; ``dcr-gateway clients gc/adopt`` finish every client. An audit path that cannot be opened
stops ``serve`` before anything is served (one line naming ``DCR_AUDIT__PATH``, exit 2).
"""

from __future__ import annotations

import io
import os
import subprocess
import sys
from typing import Any

import pytest
from gateway_factory import REGISTER, Gateways
from prometheus_client import generate_latest
from test_access_http import provider_document

from adapters.base import ClientUsage, NewClient
from adapters.memory.adapter import MemoryAdapter
from devstack.process import free_port
from gateway.app import AUDIT, METRICS, create_app
from gateway.cli import build_parser
from gateway.clients.cli import run
from gateway.oauth.metadata import ClientMetadata
from gateway.observability.audit import AuditLog, AuditPathUnusable
from gateway.registration.tokens import TOKEN_HASH_KEY
from gateway.settings import Settings

FULL = "/dev/full"
"""Opens for appending; every write fails with ENOSPC (a full disk)."""
MISSING = "/nonexistent/dir/audit.log"
NATIVE = {"redirect_uris": ["http://127.0.0.1:3000/callback"], "token_endpoint_auth_method": "none"}
NOW = 1_800_000_000
DAY = 86400

pytestmark = pytest.mark.skipif(not os.path.exists(FULL), reason="needs /dev/full")


def failures(metrics_text: str) -> float:
    for line in metrics_text.splitlines():
        if line.startswith("dcr_gateway_audit_write_failures_total "):
            return float(line.split()[1])
    raise AssertionError("no dcr_gateway_audit_write_failures_total")


async def test_a_failed_audit_write_leaves_the_registration_created_and_answered(
    gateways: Gateways, capsys: pytest.CaptureFixture[str]
) -> None:
    client, adapter = await gateways.start(provider_document(), limits={"enabled": False}, audit={"path": FULL})
    response = await client.post(REGISTER, json=NATIVE)
    assert response.status == 201, await response.text()
    body = await response.json()
    assert body["client_id"] in adapter.clients["default"]
    assert failures(generate_latest(client.server.app[METRICS].registry).decode()) == 1
    logged = capsys.readouterr()
    lines = [line for line in (logged.out + logged.err).splitlines() if "audit.write_failed" in line]
    assert len(lines) == 1
    assert body["client_id"] not in lines[0]  # the event's content is not repeated in the log line
    assert "CLIENT_REGISTER" not in lines[0]


def test_emit_never_raises_and_tells_its_failure_hook() -> None:
    told: list[str] = []
    log = AuditLog(path=FULL, on_write_failure=lambda: told.append("x"))
    log.emit("register", success=True, issuer="https://as.example", client_id="c1")
    log.emit("delete", success=False, issuer="https://as.example", client_id="c1")
    assert told == ["x", "x"]
    log.close()


def test_an_unopenable_audit_path_is_refused_when_the_app_is_built() -> None:
    settings = Settings(
        provider="memory", public_url="https://as.example", provider_url="http://127.0.0.1:1", audit={"path": MISSING}
    )
    with pytest.raises(AuditPathUnusable, match="DCR_AUDIT__PATH"):
        create_app(settings)
    off = settings.model_copy(update={"audit": settings.audit.model_copy(update={"enabled": False})})
    assert not create_app(off)[AUDIT].enabled  # no audit log, no check


def test_serve_with_an_unwritable_audit_path_stops_with_one_line() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "gateway", "serve"],
        env={
            **{k: v for k, v in os.environ.items() if not k.upper().startswith("DCR_")},
            "DCR_PROVIDER": "memory",
            "DCR_PORT": str(free_port()),
            "DCR_MANAGEMENT__PORT": str(free_port()),
            "DCR_AUDIT__PATH": MISSING,
        },
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert "DCR_AUDIT__PATH" in lines[0]
    assert MISSING in lines[0]
    assert "Traceback" not in result.stderr


def _client(client_id: str) -> NewClient:
    return NewClient(
        client_id=client_id,
        client_secret=None,
        client_id_issued_at=NOW - 40 * DAY,
        client_secret_expires_at=0,
        metadata=ClientMetadata(client_name=client_id, redirect_uris=["https://app.example/cb"]),
        gateway_data={TOKEN_HASH_KEY: "sha256:x"},
    )


async def _clients(adapter: Any, audit: dict[str, Any], *argv: str) -> tuple[int, str, str]:
    args = build_parser().parse_args(["clients", *argv])
    out, err = io.StringIO(), io.StringIO()
    settings = Settings(
        provider="memory", public_url="https://as.example", provider_url="http://provider.internal", audit=audit
    )
    code = await run(args, settings, adapter, out=out, err=err, now=NOW, confirm=None)
    return code, out.getvalue(), err.getvalue()


async def test_clients_gc_and_adopt_finish_every_client_when_the_audit_write_fails() -> None:
    adapter = MemoryAdapter(public_url="http://provider.internal")
    for client_id in ("c-one", "c-two", "c-three"):
        await adapter.create_client("default", _client(client_id))
        adapter.usages.setdefault("default", {})[client_id] = ClientUsage(
            created_at=NOW - 40 * DAY, active_sessions=0, offline_sessions=0
        )
    code, out, _ = await _clients(adapter, {"path": FULL}, "gc", "--unused-for", "30d", "--apply")
    assert code == 0, out
    assert adapter.clients["default"] == {}
    assert out.splitlines()[-1] == "3 managed clients, 3 stale: 3 deleted"

    for client_id in ("legacy-one", "legacy-two"):
        adapter.add_unmanaged("default", client_id)
    code, out, _ = await _clients(adapter, {"path": FULL}, "adopt", "legacy-one", "legacy-two", "--apply")
    assert code == 0, out
    assert sorted(adapter.clients["default"]) == ["legacy-one", "legacy-two"]


async def test_clients_gc_with_an_unopenable_audit_path_changes_nothing() -> None:
    adapter = MemoryAdapter(public_url="http://provider.internal")
    await adapter.create_client("default", _client("c-one"))
    code, _, err = await _clients(adapter, {"path": MISSING}, "gc", "--unused-for", "30d", "--apply")
    assert code == 2
    assert "DCR_AUDIT__PATH" in err
    assert list(adapter.clients["default"]) == ["c-one"]
