"""Finding an adapter by name: built-ins first, then the ``dcr_gateway.adapters`` entry-point group.

A third party adds a provider without forking by publishing a package with::

    [project.entry-points."dcr_gateway.adapters"]
    myidp = "my_package.adapter:create_adapter"

where ``create_adapter(settings)`` returns an object satisfying
:class:`adapters.base.ProviderAdapter`. An adapter with settings declares their model on the factory
(:func:`adapters.settings.adapter_settings`); its section is named after the adapter (:func:`settings_sections`).
"""

from __future__ import annotations

import importlib
from collections.abc import Collection
from importlib.metadata import entry_points
from typing import cast

from pydantic import BaseModel

from adapters.base import AdapterFactory
from adapters.settings import SETTINGS_MODEL_ATTRIBUTE

ENTRY_POINT_GROUP = "dcr_gateway.adapters"

BUILTINS: dict[str, str] = {
    "hydra": "adapters.hydra.adapter:create_adapter",
    "keycloak": "adapters.keycloak.adapter:create_adapter",
    "memory": "adapters.memory.adapter:create_adapter",
}


class UnknownAdapter(LookupError):
    """No built-in adapter and no entry point has that name."""


class AdapterLoadError(LookupError):
    """An adapter exists under that name but could not be imported."""


def _load(target: str) -> AdapterFactory:
    module_name, _, attribute = target.partition(":")
    module = importlib.import_module(module_name)
    return cast(AdapterFactory, getattr(module, attribute))


def available() -> list[str]:
    """Names of every adapter that can be loaded: built-ins and installed entry points."""
    names = set(BUILTINS)
    names.update(ep.name for ep in entry_points(group=ENTRY_POINT_GROUP))
    return sorted(names)


def get_factory(name: str) -> AdapterFactory:
    """The factory for adapter ``name``. Built-ins win over entry points of the same name."""
    try:
        if name in BUILTINS:
            return _load(BUILTINS[name])
        for ep in entry_points(group=ENTRY_POINT_GROUP):
            if ep.name == name:
                return cast(AdapterFactory, ep.load())
    except (ImportError, AttributeError) as exc:
        raise AdapterLoadError(f"adapter {name!r} could not be loaded: {exc}") from exc
    raise UnknownAdapter(f"no adapter named {name!r}; available: {', '.join(available())}")


def settings_model(factory: AdapterFactory) -> type[BaseModel] | None:
    """The settings model the factory declares (:func:`adapters.settings.adapter_settings`), if any."""
    model = getattr(factory, SETTINGS_MODEL_ATTRIBUTE, None)
    return model if isinstance(model, type) and issubclass(model, BaseModel) else None


def settings_sections(skip: Collection[str] = ()) -> dict[str, type[BaseModel]]:
    """Settings section name -> model, for every installed adapter that declares settings, but those in ``skip``
    (not even imported; an entry point that cannot be loaded has none here: selecting it reports why)."""
    sections: dict[str, type[BaseModel]] = {}
    for name in available():
        if name in skip:
            continue
        try:
            factory = get_factory(name)
        except LookupError:
            continue
        model = settings_model(factory)
        if model is not None:
            sections[name] = model
    return sections
