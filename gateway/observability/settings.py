"""The management listener's and the audit log's settings (``[management]`` / ``DCR_MANAGEMENT__*``,
``[audit]`` / ``DCR_AUDIT__*``)."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field


class ManagementSettings(BaseModel):
    """The management listener: ``GET /metrics`` (Prometheus), ``/healthz`` and ``/readyz`` on their own port, so
    metrics are never on the public origin and probes need no route through the ingress."""

    model_config = ConfigDict(extra="forbid")

    enabled: bool = True
    """Serve the management listener (off: no ``/metrics`` anywhere; the public ``/healthz``/``/readyz`` stay)."""
    host: str = "127.0.0.1"
    """Its listen address (the image sets ``0.0.0.0`` so the kubelet and Prometheus reach it)."""
    port: int = Field(default=9180, ge=1, le=65535)
    """Its port; must differ from ``port``."""


class AuditSettings(BaseModel):
    """The audit log: one JSON line per registration, RFC 7592 read/update/delete, adoption, garbage collection and
    refused registration, logger ``dcr_gateway.audit``, ``audience="audit"``."""

    model_config = ConfigDict(extra="forbid")

    enabled: bool = True
    """Write audit events (on by default)."""
    path: str | None = None
    """Append the audit events to this file instead of standard error (with the other log lines)."""
