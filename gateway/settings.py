"""Every knob of the gateway, in one place.

Settings come from environment variables prefixed ``DCR_`` (nested fields with ``__``, e.g.
``DCR_HYDRA__ADMIN_URL``) and, optionally, a TOML file named by ``DCR_CONFIG_FILE`` or ``--config``.
Environment variables win over the file. Secrets are ``SecretStr`` so they never print.
"""

from __future__ import annotations

import os
import re
import tomllib
from contextvars import ContextVar
from enum import StrEnum
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, Field, SecretStr, field_validator, model_validator
from pydantic_settings import (
    BaseSettings,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
    TomlConfigSettingsSource,
)

from gateway.access.settings import AccessSettings
from gateway.limits.settings import LimitSettings
from gateway.policy.settings import PolicySettings

_DEPLOYMENT_NAME = re.compile(r"[a-z0-9][a-z0-9._-]{0,62}", re.ASCII)

_CONFIG_FILE: ContextVar[str | None] = ContextVar("dcr_config_file", default=None)
"""The file :func:`load_settings` was given; kept out of ``os.environ`` so it does not leak into children."""


class Mode(StrEnum):
    """How requests reach the gateway."""

    FRONT_DOOR = "front-door"
    """The gateway owns the issuer's origin and reverse-proxies the paths on its allow-list (see
    :class:`FrontDoorSettings`) that it does not serve itself."""
    PATH_ROUTING = "path-routing"
    """An ingress sends only the well-known and registration paths to the gateway."""


class KeycloakSettings(BaseModel):
    """Keycloak admin access: a service-account client holding ``realm-management/manage-clients``."""

    admin_url: str | None = None
    """Base URL of Keycloak for admin calls (defaults to ``provider_url``)."""
    realms: list[str] = Field(default_factory=lambda: ["mcp"])
    """Realms served; each is its own issuer ``/realms/{realm}``."""
    client_id: str = "dcr-gateway"
    client_secret: SecretStr = SecretStr("")
    verify_tls: bool = True


class HydraSettings(BaseModel):
    """Hydra admin API (``/admin/clients``). It has no authentication: keep it on a private network."""

    admin_url: str = "http://127.0.0.1:4445"
    issuer_path: str = ""
    """Path part of Hydra's issuer (``urls.self.issuer``), usually empty."""
    admin_headers: dict[str, SecretStr] = Field(default_factory=dict)
    """Extra headers for the admin API, e.g. a token checked by a sidecar in front of it."""


class FrontDoorSettings(BaseModel):
    """The front-door proxy (``[front_door]`` / ``DCR_FRONT_DOOR__*``): what it forwards, and what one client
    may hold of it, so a slow or hostile client cannot deny the provider to everyone else."""

    allowed_paths: list[str] = Field(default_factory=list)
    """Path prefixes forwarded in addition to what the adapter names for its issuers (Keycloak: each served
    realm's ``protocol/openid-connect``, ``login-actions``, ``broker``, ``device`` and the ``/resources`` its
    pages load; Hydra: its public OAuth 2.0 and OpenID endpoints). Everything else is answered 404. ``["/"]``
    forwards everything (the behaviour before the allow-list)."""
    account_pages: bool = False
    """Forward the provider's self-service account pages (Keycloak's ``/realms/{r}/account``)."""
    max_body_bytes: int = Field(default=256 * 1024, ge=0)
    """Largest request body forwarded (413 beyond it); no OAuth or login endpoint needs more."""
    body_timeout_seconds: float = Field(default=10.0, gt=0)
    """A request body must arrive whole within this many seconds (408 after it); it is read before an
    upstream connection is taken."""
    send_timeout_seconds: float = Field(default=30.0, gt=0)
    """A client that takes no part of a response for this long loses its connection (its upstream one is
    freed)."""
    pool_size: int = Field(default=100, ge=1)
    """Connections to the provider at most; a request waits up to the connect timeout for one, then 503."""
    max_concurrent_per_source: int = Field(default=32, ge=0)
    """Requests one source address (IPv6: per ``limits.ipv6_prefix_length`` prefix) may have in flight at
    the provider; more get 429 (0: no bound)."""
    connect_timeout_seconds: float | None = Field(default=None, gt=0)
    """Connecting to the provider (and waiting for a pool slot); default ``provider_timeout``."""
    read_timeout_seconds: float | None = Field(default=None, gt=0)
    """Each wait for the provider's answer data (not the whole exchange); default ``provider_timeout``."""

    @field_validator("allowed_paths")
    @classmethod
    def _absolute_prefixes(cls, value: list[str]) -> list[str]:
        for prefix in value:
            if not prefix.startswith("/"):
                raise ValueError("front_door.allowed_paths entries must start with '/'")
        return value


class Settings(BaseSettings):
    """Parsed configuration for one gateway fronting one provider."""

    model_config = SettingsConfigDict(
        env_prefix="DCR_",
        env_nested_delimiter="__",
        extra="ignore",
        validate_default=True,
        hide_input_in_errors=True,  # a bad value may be a secret (HS256 key, Redis URL): never echo inputs
    )

    # which gateway this is
    deployment: str = "default"
    """Name of this gateway deployment (``production``, ``staging``), recorded in every client it registers or
    adopts; ``dcr-gateway clients`` acts only on its own deployment's clients, so gateways sharing a realm keep
    apart. Clients registered before deployments were recorded belong to ``default``."""

    # where the gateway listens and how it is reached
    host: str = "127.0.0.1"
    port: int = 8080
    public_url: str = "http://127.0.0.1:8080"
    """The issuer's public origin (scheme://host[:port]) as clients see it."""
    mode: Mode = Mode.FRONT_DOOR
    trust_forwarded_for: bool = False
    """Front door: keep an incoming ``X-Forwarded-For`` and append to it (only behind a load balancer you trust);
    by default the gateway is the edge and replaces it, so clients cannot spoof their address to the provider."""
    block_native_registration: bool = True
    """Front door: answer 404 on the provider's own registration endpoints (Keycloak's
    ``/realms/{r}/clients-registrations/...``, Hydra's ``/oauth2/register``), so the gateway is the only way in."""
    blocked_paths: list[str] = Field(default_factory=list)
    """Front door: path prefixes answered 404 instead of proxied, e.g. ``["/admin"]`` to keep Keycloak's admin
    console and REST API off the public origin (administrators then use the provider's internal address)."""

    front_door: FrontDoorSettings = Field(default_factory=FrontDoorSettings)
    """Front door: the proxy's allow-list, body limits, timeouts and pool (``DCR_FRONT_DOOR__*``)."""

    # the provider
    provider: str = "hydra"
    """Adapter name: ``hydra``, ``keycloak``, ``memory`` or an entry point of group ``dcr_gateway.adapters``."""
    provider_url: str = "http://127.0.0.1:4444"
    """Internal URL of the provider's public listener (discovery is fetched and requests proxied there)."""
    provider_timeout: float = 10.0
    keycloak: KeycloakSettings = Field(default_factory=KeycloakSettings)
    hydra: HydraSettings = Field(default_factory=HydraSettings)

    # registration (RFC 7591)
    registration_path: str = "/register"
    """Registration endpoint path, relative to each issuer's path (``/register``, ``/realms/mcp/register``)."""
    max_body_bytes: int = 64 * 1024
    client_secret_expires_in: int = 0
    """Seconds until issued client secrets expire; 0 means never (RFC 7591 section 3.2.1)."""
    allow_client_credentials: bool = False
    """Anonymous registrations never get ``client_credentials``; later, authenticated ones may."""
    allow_jwks_uri: bool = False
    """``jwks_uri`` makes the provider fetch a client-chosen URL (SSRF): off for anonymous registration."""
    policy: PolicySettings = Field(default_factory=PolicySettings)
    """The registration policy (``[policy]`` / ``DCR_POLICY__*``, see :mod:`gateway.policy.settings`); the two
    ``allow_*`` flags above are its legacy spelling: ``true`` widens the privilege to ``anyone``."""
    rotate_registration_access_token: bool = False
    """RFC 7592 section 2.2: issue a new registration access token on every update (the old one stops working).
    Off by default: the OpenID Foundation's Brazil DCR tests expect the token to survive an update."""
    access: AccessSettings = Field(default_factory=AccessSettings)
    """Who may register, per issuer (``[access]`` / ``DCR_ACCESS__*``, see :mod:`gateway.access.settings`):
    ``open`` by default; initial access tokens and software statements (RFC 7591 sections 3 and 2.3)."""

    # discovery (RFC 8414)
    discovery_refresh_seconds: float = 60.0
    discovery_retry_seconds: float = 5.0

    # abuse limits: rate limits and a quota of managed clients (DCR_LIMITS__*)
    limits: LimitSettings = Field(default_factory=LimitSettings)

    # browsers (MCP Inspector)
    cors_allowed_origins: list[str] = Field(default_factory=lambda: ["*"])

    # logging
    log_level: str = "INFO"
    log_format: Literal["auto", "json", "console"] = "auto"

    @field_validator("public_url", "provider_url")
    @classmethod
    def _strip_trailing_slash(cls, value: str) -> str:
        return value.rstrip("/")

    @field_validator("deployment")
    @classmethod
    def _deployment_name(cls, value: str) -> str:
        if not _DEPLOYMENT_NAME.fullmatch(value):
            raise ValueError(
                "deployment must be 1 to 63 characters: lowercase letters, digits, '.', '_' or '-', starting with a "
                "letter or digit (e.g. production, staging-eu)"
            )
        return value

    @field_validator("registration_path")
    @classmethod
    def _leading_slash(cls, value: str) -> str:
        if not value.startswith("/"):
            raise ValueError("registration_path must start with '/'")
        return value.rstrip("/") or "/register"

    @model_validator(mode="after")
    def _keycloak_admin_default(self) -> Settings:
        if self.keycloak.admin_url is None:
            self.keycloak.admin_url = self.provider_url
        return self

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        sources: list[PydanticBaseSettingsSource] = [init_settings, env_settings]
        config_file = _CONFIG_FILE.get() or os.environ.get("DCR_CONFIG_FILE")
        if config_file:
            sources.append(TomlConfigSettingsSource(settings_cls, toml_file=Path(config_file)))
        return tuple(sources)


class ConfigFileError(ValueError):
    """The named configuration file does not exist or cannot be read."""


def load_settings(config_file: str | None = None, **overrides: Any) -> Settings:
    """Parse settings once, at start-up (``DCR_*`` environment, then the optional TOML file).

    A named file that does not exist is an error, never a silent start on defaults.
    """
    config_file = config_file or os.environ.get("DCR_CONFIG_FILE")
    if config_file and not Path(config_file).is_file():
        raise ConfigFileError(f"configuration file {config_file!r} does not exist")
    token = _CONFIG_FILE.set(config_file)
    try:
        return Settings(**overrides)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigFileError(f"configuration file {config_file!r} is not valid TOML: {exc}") from exc
    finally:
        _CONFIG_FILE.reset(token)
