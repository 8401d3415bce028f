"""Settings: ``DCR_*`` environment (nested with ``__``), an optional TOML file, secrets that never print, and the
``dcr-gateway`` command's handling of bad configuration."""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from pydantic import SecretStr, ValidationError

from gateway import cli
from gateway.settings import Settings, load_settings


@pytest.fixture(autouse=True)
def clean_environment(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """No ``DCR_*`` variable from the caller's shell; whatever a test (or load_settings) sets is undone after it."""
    for name in list(os.environ):
        if name.startswith("DCR_"):
            monkeypatch.delenv(name)
    monkeypatch.delenv("DCR_CONFIG_FILE", raising=False)  # recorded, so undone even when load_settings sets it
    yield


def write_toml(path: Path, text: str) -> Path:
    path.write_text(text)
    return path


# --- sources -----------------------------------------------------------------------------------------------


def test_defaults_describe_the_local_hydra_gateway() -> None:
    settings = Settings()
    assert (settings.host, settings.port, settings.public_url) == ("127.0.0.1", 8080, "http://127.0.0.1:8080")
    assert (settings.provider, settings.provider_url) == ("hydra", "http://127.0.0.1:4444")
    assert settings.registration_path == "/register"
    assert settings.keycloak.realms == ["mcp"]


def test_environment_variables_with_prefix_and_nested_delimiter(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DCR_PORT", "9001")
    monkeypatch.setenv("DCR_PROVIDER", "keycloak")
    monkeypatch.setenv("DCR_KEYCLOAK__REALMS", '["a","b"]')
    monkeypatch.setenv("DCR_KEYCLOAK__CLIENT_ID", "svc")
    monkeypatch.setenv("DCR_HYDRA__ADMIN_URL", "http://hydra-admin.internal:4445")
    monkeypatch.setenv("DCR_CORS_ALLOWED_ORIGINS", '["http://localhost:6274"]')
    monkeypatch.setenv("PORT", "1")  # no prefix: not ours
    settings = Settings()
    assert settings.port == 9001
    assert settings.provider == "keycloak"
    assert settings.keycloak.realms == ["a", "b"]
    assert settings.keycloak.client_id == "svc"
    assert settings.hydra.admin_url == "http://hydra-admin.internal:4445"
    assert settings.cors_allowed_origins == ["http://localhost:6274"]


def test_unknown_variables_with_the_prefix_are_ignored(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DCR_TEST_PROVIDERS", "containers")  # the test suite's own switch
    monkeypatch.setenv("DCR_NO_SUCH_SETTING", "x")
    assert Settings().provider == "hydra"


CONFIG = """
port = 7000
public_url = "https://auth.example.com/"
provider = "keycloak"
provider_url = "http://keycloak.internal:8080"

[keycloak]
realms = ["mcp", "partners"]
client_id = "from-file"
client_secret = "file-secret"
"""


def test_toml_file_named_by_dcr_config_file(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("DCR_CONFIG_FILE", str(write_toml(tmp_path / "gateway.toml", CONFIG)))
    settings = Settings()
    assert settings.port == 7000
    assert settings.public_url == "https://auth.example.com"
    assert settings.provider == "keycloak"
    assert settings.keycloak.realms == ["mcp", "partners"]
    assert settings.keycloak.client_id == "from-file"
    assert settings.keycloak.client_secret.get_secret_value() == "file-secret"


def test_toml_file_through_load_settings(tmp_path: Path) -> None:
    settings = load_settings(config_file=str(write_toml(tmp_path / "gateway.toml", CONFIG)))
    assert settings.port == 7000
    assert settings.keycloak.realms == ["mcp", "partners"]


def test_environment_wins_over_the_file_field_by_field(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("DCR_PORT", "7001")
    monkeypatch.setenv("DCR_KEYCLOAK__CLIENT_ID", "from-env")
    settings = load_settings(config_file=str(write_toml(tmp_path / "gateway.toml", CONFIG)))
    assert settings.port == 7001
    assert settings.keycloak.client_id == "from-env"
    # the rest of the [keycloak] table still comes from the file
    assert settings.keycloak.realms == ["mcp", "partners"]
    assert settings.keycloak.client_secret.get_secret_value() == "file-secret"
    assert settings.provider == "keycloak"


def test_keyword_overrides_win_over_environment_and_file(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """``dcr-gateway serve --host/--port`` pass these."""
    monkeypatch.setenv("DCR_PORT", "7001")
    settings = load_settings(config_file=str(write_toml(tmp_path / "gateway.toml", CONFIG)), port=7002)
    assert settings.port == 7002


def test_load_settings_config_file_does_not_leak_into_later_settings(tmp_path: Path) -> None:
    load_settings(config_file=str(write_toml(tmp_path / "gateway.toml", CONFIG)))
    assert "DCR_CONFIG_FILE" not in os.environ
    assert Settings().port == 8080


# --- secrets -----------------------------------------------------------------------------------------------


def test_secrets_never_show_in_repr_str_or_json(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DCR_KEYCLOAK__CLIENT_SECRET", "kc-s3cret-value")
    monkeypatch.setenv("DCR_HYDRA__ADMIN_HEADERS", json.dumps({"X-Admin-Token": "hydra-s3cret-value"}))
    settings = Settings()
    assert isinstance(settings.keycloak.client_secret, SecretStr)
    assert settings.keycloak.client_secret.get_secret_value() == "kc-s3cret-value"
    assert settings.hydra.admin_headers["X-Admin-Token"].get_secret_value() == "hydra-s3cret-value"
    for rendering in (repr(settings), str(settings), settings.model_dump_json(), repr(settings.model_dump())):
        assert "kc-s3cret-value" not in rendering
        assert "hydra-s3cret-value" not in rendering
    assert "**********" in settings.model_dump_json()


# --- validation --------------------------------------------------------------------------------------------


def test_trailing_slashes_are_stripped_from_urls() -> None:
    settings = Settings(public_url="https://auth.example.com//", provider_url="http://hydra:4444/")
    assert settings.public_url == "https://auth.example.com"
    assert settings.provider_url == "http://hydra:4444"


@pytest.mark.parametrize("path", ["register", "", "realms/mcp/register"])
def test_registration_path_must_start_with_a_slash(path: str) -> None:
    with pytest.raises(ValidationError, match="registration_path must start with '/'"):
        Settings(registration_path=path)


def test_registration_path_loses_its_trailing_slash() -> None:
    assert Settings(registration_path="/register/").registration_path == "/register"
    assert Settings(registration_path="/clients").registration_path == "/clients"


def test_keycloak_admin_url_defaults_to_the_provider_url(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DCR_PROVIDER_URL", "http://keycloak.internal:8080/")
    assert Settings().keycloak.admin_url == "http://keycloak.internal:8080"
    monkeypatch.setenv("DCR_KEYCLOAK__ADMIN_URL", "http://keycloak-admin.internal:8080")
    assert Settings().keycloak.admin_url == "http://keycloak-admin.internal:8080"


# --- the dcr-gateway command -------------------------------------------------------------------------------


@pytest.fixture
def no_server(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """``serve`` must never get as far as running a server here, nor reconfigure the process's logging."""
    from aiohttp import web

    import gateway.logging

    calls: list[str] = []

    def run_app(*args: Any, **kwargs: Any) -> None:
        raise AssertionError("dcr-gateway serve tried to start a server")

    monkeypatch.setattr(web, "run_app", run_app)
    monkeypatch.setattr(gateway.logging, "configure_logging", lambda *args, **kwargs: calls.append("logging"))
    return calls


@pytest.mark.parametrize(
    ("name", "value", "field"),
    [
        ("DCR_PORT", "not-a-port", "port"),
        ("DCR_REGISTRATION_PATH", "register", "registration_path"),
        ("DCR_LOG_FORMAT", "xml", "log_format"),
    ],
)
def test_serve_with_an_invalid_setting_exits_2_with_a_readable_message(
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    no_server: list[str],
    name: str,
    value: str,
    field: str,
) -> None:
    monkeypatch.setenv(name, value)
    assert cli.main(["serve"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("dcr-gateway: invalid configuration:")
    assert field in err
    assert "Traceback" not in err
    assert no_server == []


def test_serve_with_an_invalid_config_file_exits_2(
    capsys: pytest.CaptureFixture[str], no_server: list[str], tmp_path: Path
) -> None:
    config = write_toml(tmp_path / "bad.toml", 'registration_path = "no-slash"\n')
    assert cli.main(["serve", "--config", str(config)]) == 2
    err = capsys.readouterr().err
    assert "invalid configuration" in err
    assert "registration_path must start with '/'" in err


def test_serve_with_malformed_json_in_a_complex_variable_exits_2(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], no_server: list[str]
) -> None:
    monkeypatch.setenv("DCR_KEYCLOAK__REALMS", "not json")
    assert cli.main(["serve"]) == 2
    assert "keycloak" in capsys.readouterr().err


def test_serve_with_a_malformed_toml_file_exits_2(
    capsys: pytest.CaptureFixture[str], no_server: list[str], tmp_path: Path
) -> None:
    config = write_toml(tmp_path / "broken.toml", "port = \n")
    assert cli.main(["serve", "--config", str(config)]) == 2
    assert "broken.toml" in capsys.readouterr().err


def test_a_missing_config_file_is_an_error(tmp_path: Path) -> None:
    with pytest.raises((ValidationError, ValueError, OSError)):
        load_settings(config_file=str(tmp_path / "typo.toml"))


def test_serve_with_an_unknown_adapter_exits_2_naming_the_available_ones(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], no_server: list[str]
) -> None:
    monkeypatch.setenv("DCR_PROVIDER", "no-such-idp")
    assert cli.main(["serve"]) == 2
    err = capsys.readouterr().err
    assert "no adapter named 'no-such-idp'" in err
    assert "hydra, keycloak, memory" in err


def test_adapters_lists_the_builtins(capsys: pytest.CaptureFixture[str]) -> None:
    assert cli.main(["adapters"]) == 0
    names = capsys.readouterr().out.split()
    assert {"hydra", "keycloak", "memory"} <= set(names)
    assert names == sorted(names)


def test_a_subcommand_is_required(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exited:
        cli.main([])
    assert exited.value.code == 2
    assert "dcr-gateway" in capsys.readouterr().err
