"""Each adapter owns its settings (issue 9): a section named after the adapter, validated by the adapter's own model
(unknown keys refused, with the closest name), from the same environment variables and TOML file as every other
setting; the built-in adapters' sections keep their names (``[keycloak]``, ``DCR_KEYCLOAK__*``, ``[hydra]``,
``DCR_HYDRA__*``)."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from importlib.metadata import EntryPoint, EntryPoints
from pathlib import Path

import pytest
from pydantic import SecretStr

from adapters import registry
from adapters.memory.adapter import MemoryAdapter
from adapters.registry import ENTRY_POINT_GROUP, get_factory, settings_model, settings_sections
from adapters.settings import AdapterSettings, adapter_settings
from gateway.settings import ConfigurationError, Settings, load_settings


class IdpSettings(AdapterSettings):
    """A third-party adapter's settings."""

    tenant: str = "main"
    api_key: SecretStr = SecretStr("")
    page_size: int = 50


class StrictSettings(AdapterSettings):
    endpoint: str


seen: list[IdpSettings] = []


@adapter_settings(IdpSettings)
def create_idp_adapter(settings: Settings) -> MemoryAdapter:
    seen.append(settings.section("testidp", IdpSettings))
    return MemoryAdapter(public_url=settings.provider_url)


@adapter_settings(StrictSettings)
def create_strict_adapter(settings: Settings) -> MemoryAdapter:
    settings.section("strictidp", StrictSettings)
    return MemoryAdapter(public_url=settings.provider_url)


@pytest.fixture(autouse=True)
def environment(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """No ``DCR_*`` variable of the caller's shell; the test adapters installed as entry points."""
    for name in list(os.environ):
        if name.startswith("DCR_"):
            monkeypatch.delenv(name)
    points = [
        EntryPoint(name="testidp", value=f"{__name__}:create_idp_adapter", group=ENTRY_POINT_GROUP),
        EntryPoint(name="strictidp", value=f"{__name__}:create_strict_adapter", group=ENTRY_POINT_GROUP),
        EntryPoint(name="broken", value="no_such_module_anywhere:factory", group=ENTRY_POINT_GROUP),
    ]

    def entry_points(*, group: str) -> EntryPoints:
        return EntryPoints(point for point in points if point.group == group)

    monkeypatch.setattr(registry, "entry_points", entry_points)
    seen.clear()
    yield


def test_the_built_in_sections_are_the_models_their_adapters_declare() -> None:
    for name in ("keycloak", "hydra"):
        model = settings_model(get_factory(name))
        assert model is not None
        assert Settings.model_fields[name].annotation is model
    assert settings_model(get_factory("memory")) is None
    assert settings_sections() == {
        "hydra": settings_model(get_factory("hydra")),
        "keycloak": settings_model(get_factory("keycloak")),
        "strictidp": StrictSettings,
        "testidp": IdpSettings,
    }  # the broken entry point has no section; selecting it says why


def test_a_third_party_section_comes_from_the_environment_validated_by_its_model(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("DCR_PROVIDER", "testidp")
    monkeypatch.setenv("DCR_TESTIDP__TENANT", "acme")
    monkeypatch.setenv("DCR_TESTIDP__API_KEY", "s3cret-key")
    settings = load_settings()
    section = settings.section("testidp", IdpSettings)
    assert section.tenant == "acme"
    assert section.api_key.get_secret_value() == "s3cret-key"
    assert section.page_size == 50
    get_factory("testidp")(settings)
    assert seen == [section]


def test_a_third_party_section_comes_from_the_toml_file(tmp_path: Path) -> None:
    config = tmp_path / "gateway.toml"
    config.write_text('provider = "testidp"\n[testidp]\ntenant = "from-file"\npage_size = 10\n')
    section = load_settings(str(config)).section("testidp", IdpSettings)
    assert (section.tenant, section.page_size) == ("from-file", 10)


def test_an_unknown_key_of_a_third_party_section_is_refused_with_the_closest_name(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("DCR_TESTIDP__TENNANT", "acme")
    with pytest.raises(ConfigurationError) as raised:
        load_settings()
    assert raised.value.problems == [
        "unknown environment variable DCR_TESTIDP__TENNANT: did you mean DCR_TESTIDP__TENANT?"
    ]
    monkeypatch.delenv("DCR_TESTIDP__TENNANT")
    config = tmp_path / "gateway.toml"
    config.write_text("[testidp]\npage_sise = 10\n")
    with pytest.raises(ConfigurationError) as raised:
        load_settings(str(config))
    assert raised.value.problems == [
        "unknown setting testidp.page_sise in gateway.toml: did you mean testidp.page_size?"
    ]


def test_a_bad_value_of_a_third_party_section_names_the_variable(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DCR_TESTIDP__PAGE_SIZE", "many")
    with pytest.raises(ConfigurationError) as raised:
        load_settings()
    (problem,) = raised.value.problems
    assert problem.startswith("DCR_TESTIDP__PAGE_SIZE (testidp.page_size in TOML): ")


def test_a_required_setting_left_out_is_a_configuration_error_naming_it(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DCR_PROVIDER", "strictidp")
    settings = load_settings()  # other adapters' gateways are not stopped by it
    with pytest.raises(ConfigurationError) as raised:
        get_factory("strictidp")(settings)
    assert raised.value.problems == ["DCR_STRICTIDP__ENDPOINT (strictidp.endpoint in TOML): Field required"]
    monkeypatch.setenv("DCR_STRICTIDP__ENDPOINT", "http://idp.internal")
    get_factory("strictidp")(load_settings())


def test_the_built_in_names_keep_working(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DCR_KEYCLOAK__REALMS", "mcp,partners")
    monkeypatch.setenv("DCR_HYDRA__ADMIN_URL", "http://hydra-admin.internal:4445")
    settings = load_settings()
    assert settings.keycloak.realms == ["mcp", "partners"]
    assert settings.hydra.admin_url == "http://hydra-admin.internal:4445"
    monkeypatch.setenv("DCR_KEYCLOAK__REALMZ", "x")
    with pytest.raises(ConfigurationError, match="did you mean DCR_KEYCLOAK__REALMS"):
        load_settings()


def test_loading_settings_imports_no_built_in_adapter_it_does_not_need() -> None:
    """A Hydra gateway does not import python-keycloak to read its settings (the built-ins' sections are fields)."""
    code = (
        "import sys; from gateway.settings import load_settings; load_settings(); "
        "print(sorted(m for m in sys.modules if m.startswith(('adapters.keycloak', 'adapters.hydra.', 'keycloak'))))"
    )
    environment = {key: value for key, value in os.environ.items() if not key.startswith("DCR_")}
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, env=environment)
    assert out.stdout.split("\n")[0] == "['adapters.hydra.settings', 'adapters.keycloak', 'adapters.keycloak.settings']"
