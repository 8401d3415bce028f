"""The Hydra adapter's settings: section ``[hydra]``, ``DCR_HYDRA__*`` (see :mod:`adapters.settings`)."""

from __future__ import annotations

from pydantic import Field, SecretStr, field_validator

from adapters.settings import AdapterSettings, check_http_url


class HydraSettings(AdapterSettings):
    """Hydra admin API (``/admin/clients``). It has no authentication: keep it on a private network."""

    admin_url: str = "http://127.0.0.1:4445"
    issuer_path: str = ""
    """Path part of Hydra's issuer (``urls.self.issuer``), usually empty."""
    admin_headers: dict[str, SecretStr] = Field(default_factory=dict)
    """Extra headers for the admin API, e.g. a token checked by a sidecar in front of it."""

    @field_validator("admin_url")
    @classmethod
    def _admin_url(cls, value: str) -> str:
        return check_http_url(value, origin=False).rstrip("/")
