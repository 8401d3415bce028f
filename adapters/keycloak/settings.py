"""The Keycloak adapter's settings: section ``[keycloak]``, ``DCR_KEYCLOAK__*`` (see :mod:`adapters.settings`)."""

from __future__ import annotations

from pydantic import Field, SecretStr, field_validator

from adapters.settings import AdapterSettings, check_http_url


class KeycloakSettings(AdapterSettings):
    """Keycloak admin access: a service-account client holding ``realm-management/manage-clients``."""

    admin_url: str | None = None
    """Base URL of Keycloak for admin calls (defaults to ``provider_url``)."""
    realms: list[str] = Field(default_factory=lambda: ["mcp"])
    """Realms served; each is its own issuer ``/realms/{realm}``."""
    client_id: str = "dcr-gateway"
    client_secret: SecretStr = SecretStr("")
    verify_tls: bool = True

    @field_validator("admin_url")
    @classmethod
    def _admin_url(cls, value: str | None) -> str | None:
        return None if value is None else check_http_url(value, origin=False).rstrip("/")

    @field_validator("realms")
    @classmethod
    def _realms(cls, value: list[str]) -> list[str]:
        if not value or any(not realm or "/" in realm or realm != realm.strip() for realm in value):
            raise ValueError("expected one or more realm names (no '/', no blanks), e.g. mcp or mcp,partners")
        return value
