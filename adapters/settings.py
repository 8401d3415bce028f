"""Adapter settings: each adapter owns its section of the gateway's settings.

An adapter declares a pydantic model for its settings with :func:`adapter_settings` on its factory. The section is
named after the adapter (the entry point's name, or the built-in's: ``[keycloak]`` and ``DCR_KEYCLOAK__*``,
``[hydra]`` and ``DCR_HYDRA__*``, ``[myidp]`` and ``DCR_MYIDP__*``), read from the same environment and TOML file
as every other setting, and validated by the adapter's model: make it ``extra="forbid"`` (as
:class:`AdapterSettings` does) so that an unknown key stops the start with its name and the closest valid one, like
any other unknown setting (:func:`gateway.settings.load_settings`). The factory reads its validated section with
``settings.section(name, Model)``.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TypeVar
from urllib.parse import urlsplit

from pydantic import BaseModel, ConfigDict

SETTINGS_MODEL_ATTRIBUTE = "settings_model"
"""The attribute :func:`adapter_settings` sets on a factory, read by :func:`adapters.registry.settings_model`."""

F = TypeVar("F", bound=Callable[..., object])


class AdapterSettings(BaseModel):
    """A convenient base for an adapter's settings model: unknown keys are refused."""

    model_config = ConfigDict(extra="forbid")


def adapter_settings(model: type[BaseModel]) -> Callable[[F], F]:
    """Declare ``model`` as the settings of the adapter ``factory`` creates::

    @adapter_settings(MyIdpSettings)
    def create_adapter(settings: Settings) -> MyIdpAdapter:
        mine = settings.section("myidp", MyIdpSettings)
    """

    def declare(factory: F) -> F:
        factory.__dict__[SETTINGS_MODEL_ATTRIBUTE] = model
        return factory

    return declare


def check_http_url(value: str, *, origin: bool) -> str:
    """``value`` if it is an absolute ``http``/``https`` URL with a host (and, for an ``origin``, nothing after the
    port); else a ``ValueError`` saying what is allowed. The value is echoed unless it carries userinfo."""
    shown = repr(value) if "@" not in value else "the value"
    expected = "scheme://host[:port], e.g. https://auth.example.com" if origin else "e.g. http://keycloak.internal:8080"
    try:
        parts = urlsplit(value)
        parts.port  # noqa: B018 (raises on a port out of range)
    except ValueError:
        raise ValueError(f"{shown} is not a valid URL; expected an http(s) URL, {expected}") from None
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ValueError(f"{shown} is not an absolute http(s) URL; expected {expected}")
    if origin and (parts.path.strip("/") or parts.query or parts.fragment or parts.username is not None):
        raise ValueError(f"{shown} is not an origin; expected {expected} (no path, query or userinfo)")
    return value
