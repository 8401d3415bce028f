"""The abuse-limit knobs (``Settings.limits``, environment ``DCR_LIMITS__*``).

Production defaults are deliberately modest; the local stack and the test gateways raise them (see
:data:`devstack.providers.DEVELOPMENT_LIMITS_ENV`).
"""

from __future__ import annotations

from enum import StrEnum
from urllib.parse import urlsplit, urlunsplit

from pydantic import BaseModel, ConfigDict, Field, SecretStr, model_validator


class Backend(StrEnum):
    """Where the rate-limit counters live."""

    MEMORY = "memory"
    """Per gateway instance: N instances behind a load balancer allow up to N times each budget."""
    REDIS = "redis"
    """Shared by every instance pointing at the same Redis (and key prefix): one budget for all."""


class BackendFailure(StrEnum):
    """What a rate-limited request gets while the shared (Redis) store cannot be reached."""

    LOCAL = "local"
    """Each instance counts in its own memory until Redis answers again: still limited, no longer shared."""
    OPEN = "open"
    """Requests pass unlimited (the quota still holds)."""
    CLOSED = "closed"
    """Registration answers ``503 temporarily_unavailable`` with ``Retry-After`` until Redis is back."""


class LimitSettings(BaseModel):
    """Rate limits on registration requests and a quota of managed clients, per issuer.

    A limit of ``0`` turns that one limit off; ``enabled = false`` turns all of them off (the counter store
    stays available for other users, such as initial-access-token use counts).
    """

    model_config = ConfigDict(extra="forbid")  # a misspelt key stops the start (issue 8 item 9)

    enabled: bool = True
    per_source_limit: int = Field(default=20, ge=0)
    """Registration requests one source address may send per issuer and window (IPv6: per ``/64``)."""
    per_source_window_seconds: float = Field(default=60.0, gt=0)
    global_limit: int = Field(default=300, ge=0)
    """Registration requests all sources together may send per issuer and window."""
    global_window_seconds: float = Field(default=60.0, gt=0)
    ipv6_prefix_length: int = Field(default=64, ge=1, le=128)
    """IPv6 sources are counted per prefix: one host usually holds a whole /64 and can rotate within it."""
    forwarded_for_hops: int = Field(default=1, ge=1)
    """With ``trust_forwarded_for``: how many proxies you trust in front of the gateway; the source is the
    ``X-Forwarded-For`` entry that many places from the right (entries further left are client-supplied)."""

    max_clients_per_issuer: int = Field(default=10_000, ge=0)
    """Quota of managed clients per issuer (0: no quota), counted through the adapter's client listing."""
    quota_refresh_seconds: float = Field(default=300.0, gt=0)
    """How old the cached client count may get before it is listed again (in the background)."""

    backend: Backend = Backend.MEMORY
    redis_url: SecretStr | None = None
    """``redis://[user:password@]host:port/db`` or ``rediss://``; it can carry a password, so it is never logged."""
    key_prefix: str = "dcr-gateway:"
    """Prefix of every Redis key, so several deployments can share one Redis."""
    redis_timeout_seconds: float = Field(default=0.5, gt=0)
    """Per Redis command (and connect); a slow Redis must not hold registrations."""
    on_backend_failure: BackendFailure = BackendFailure.LOCAL
    backend_retry_seconds: float = Field(default=5.0, gt=0)
    """After a Redis failure, how long the store is not tried again (requests take the failure path meanwhile)."""
    memory_max_keys: int = Field(default=100_000, ge=1)
    """Bound of the in-memory store; expired keys are swept, and the oldest dropped beyond this."""

    @model_validator(mode="after")
    def _redis_needs_url(self) -> LimitSettings:
        if self.backend is Backend.REDIS and not (self.redis_url and self.redis_url.get_secret_value()):
            raise ValueError("limits.redis_url is required when limits.backend is 'redis'")
        return self


def redacted_url(url: str) -> str:
    """``url`` fit for a log line: scheme, user, host, port and database only. A password can sit in the userinfo
    or in the query (redis-py reads ``?password=``), so the password becomes ``***`` and the query is dropped."""
    parts = urlsplit(url)
    try:
        port = parts.port
    except ValueError:
        port = None
    host = parts.hostname or ""
    if ":" in host:
        host = f"[{host}]"
    if port is not None:
        host = f"{host}:{port}"
    if parts.username is not None or parts.password is not None:
        user = parts.username or ""
        host = f"{user}:***@{host}" if parts.password is not None else f"{user}@{host}"
    return urlunsplit((parts.scheme, host, parts.path, "", ""))
