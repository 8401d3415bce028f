"""Finding an adapter by name: built-ins first, then the ``dcr_gateway.adapters`` entry-point group.

A third party adds a provider without forking by publishing a package with::

    [project.entry-points."dcr_gateway.adapters"]
    myidp = "my_package.adapter:create_adapter"

where ``create_adapter(settings)`` returns an object satisfying
:class:`adapters.base.ProviderAdapter`.
"""

from __future__ import annotations

import importlib
from importlib.metadata import entry_points
from typing import cast

from adapters.base import AdapterFactory

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
