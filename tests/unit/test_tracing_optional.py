"""Tracing is optional (issue 11 item 7): off by default nothing of OpenTelemetry is imported; on when
``DCR_TRACING__ENABLED=true`` or ``OTEL_EXPORTER_OTLP_ENDPOINT`` is set (unless explicitly disabled); asked for
without the ``tracing`` extra, ``dcr-gateway serve`` stops with one line naming the extra and exit status 2."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap

import pytest

from gateway.tracing import TracingSettings

_BLOCK_OTEL = """
import sys
class _NoOtel:
    def find_spec(self, name, path=None, target=None):
        if name == "opentelemetry" or name.startswith("opentelemetry."):
            raise ModuleNotFoundError(f"No module named {name!r}")
        return None
sys.meta_path.insert(0, _NoOtel())
"""


def _python(code: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    clean = {k: v for k, v in os.environ.items() if not k.startswith(("DCR_", "OTEL_"))}
    return subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code)],
        env={**clean, **env},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


@pytest.mark.parametrize(
    ("enabled", "environ", "wanted"),
    [
        (None, {}, False),
        (True, {}, True),
        (None, {"OTEL_EXPORTER_OTLP_ENDPOINT": "http://127.0.0.1:4318"}, True),
        (None, {"OTEL_EXPORTER_OTLP_TRACES_ENDPOINT": "http://127.0.0.1:4318/v1/traces"}, True),
        (False, {"OTEL_EXPORTER_OTLP_ENDPOINT": "http://127.0.0.1:4318"}, False),
    ],
)
def test_tracing_is_off_unless_configured(enabled: bool | None, environ: dict[str, str], wanted: bool) -> None:
    assert TracingSettings(enabled=enabled).wanted(environ) is wanted


def test_off_by_default_the_gateway_imports_nothing_of_opentelemetry() -> None:
    # redis-py imports the OpenTelemetry API and metrics SDK by itself when they are installed
    # (redis.observability); the gateway's own tracing pieces are what must stay out
    result = _python(
        """
        import sys
        from adapters.memory.adapter import MemoryAdapter
        from gateway.app import create_app
        from gateway.settings import Settings
        from gateway import server
        settings = Settings(public_url="http://gateway.test", provider="memory", provider_url="http://127.0.0.1:9")
        create_app(settings, adapter=MemoryAdapter(public_url="http://127.0.0.1:9"))
        ours = ("opentelemetry.instrumentation", "opentelemetry.sdk.trace", "opentelemetry.exporter")
        print(sorted(m for m in sys.modules if m.startswith(ours)))
        """,
        {},
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip().splitlines()[-1] == "[]"


def test_off_without_the_extra_the_gateway_builds_as_before() -> None:
    result = _python(
        _BLOCK_OTEL
        + """
from adapters.memory.adapter import MemoryAdapter
from gateway.app import create_app
from gateway.settings import Settings
settings = Settings(public_url="http://gateway.test", provider="memory", provider_url="http://127.0.0.1:9")
app = create_app(settings, adapter=MemoryAdapter(public_url="http://127.0.0.1:9"))
print("built", len(app.middlewares))
""",
        {},
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip().splitlines()[-1] == "built 1"


def test_enabled_without_the_extra_stops_the_start_with_one_line() -> None:
    result = _python(
        _BLOCK_OTEL
        + """
import sys
from gateway.cli import main
sys.exit(main(["serve"]))
""",
        {"DCR_TRACING__ENABLED": "true", "DCR_PROVIDER": "memory", "DCR_PORT": "9"},
    )
    assert result.returncode == 2, (result.stdout, result.stderr)
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, lines
    assert "tracing" in lines[0]
    assert "dcr-gateway[tracing]" in lines[0]
    assert "Traceback" not in result.stderr


def test_enabled_with_the_extra_builds_an_app_with_a_server_span_middleware() -> None:
    pytest.importorskip("opentelemetry.sdk")
    result = _python(
        """
        from adapters.memory.adapter import MemoryAdapter
        from gateway.app import create_app
        from gateway.settings import Settings
        settings = Settings(public_url="http://gateway.test", provider="memory", provider_url="http://127.0.0.1:9")
        app = create_app(settings, adapter=MemoryAdapter(public_url="http://127.0.0.1:9"))
        print([m.__name__ for m in app.middlewares][0])
        """,
        {"OTEL_EXPORTER_OTLP_ENDPOINT": "http://127.0.0.1:9"},
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip().splitlines()[-1] == "tracing_middleware"


def test_header_attributes_set_after_the_span_started_are_redacted_before_export(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The redaction works on ended spans: a header attribute an instrumentation sets late (as the aiohttp server
    instrumentation does) is exported as ``[REDACTED]`` when its name may carry a credential, configured admin
    headers and ``..._SANITIZE_FIELDS`` included; other headers are kept."""
    pytest.importorskip("opentelemetry.sdk")
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import SimpleSpanProcessor
    from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

    from gateway.tracing import Tracing

    monkeypatch.setenv("OTEL_INSTRUMENTATION_HTTP_CAPTURE_HEADERS_SANITIZE_FIELDS", "x-tenant-.*")
    provider = TracerProvider()
    tracing = Tracing.with_provider(provider)
    tracing.redact_headers(["X-Sidecar"])
    exporter = InMemorySpanExporter()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    headers = {
        "authorization": "Bearer rat-1",
        "proxy_authorization": "Basic p-1",
        "cookie": "sid=c-1",
        "x_api_key": "k-1",
        "x_sidecar": "s-1",
        "x_tenant_secretless": "t-1",
        "content_type": "application/json",
    }
    with provider.get_tracer("test").start_as_current_span("POST") as span:
        for name, value in headers.items():
            span.set_attribute(f"http.request.header.{name}", (value,))
        span.set_attribute("http.response.header.set_cookie", ("sid=c-2",))
    (exported,) = exporter.get_finished_spans()
    attributes = dict(exported.attributes or {})
    assert attributes.pop("http.request.header.content_type") == ("application/json",)
    assert set(attributes.values()) == {("[REDACTED]",)}
    assert len(attributes) == len(headers)  # the rest: redacted, not dropped
    provider.shutdown()
