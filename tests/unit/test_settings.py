"""Settings: ``DCR_*`` environment (nested with ``__``), an optional TOML file, secrets that never print, and the
``dcr-gateway`` command's handling of bad configuration."""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from pydantic import BaseModel, ConfigDict, SecretStr, ValidationError

from gateway import cli
from gateway.settings import ConfigurationError, Settings, load_settings, unknown_names


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


def test_variables_of_the_tools_around_the_gateway_are_not_settings(monkeypatch: pytest.MonkeyPatch) -> None:
    """``DCR_*`` names the test suite, the conformance CLI, the provider scripts and the nginx template read are
    not gateway settings and never stop it."""
    for name in ("DCR_TEST_PROVIDERS", "DCR_CONFORMANCE_PASSWORD", "DCR_CACHE_DIR", "DCR_JAVA_HOME", "DCR_NGINX_NAME"):
        monkeypatch.setenv(name, "x")
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
    import gateway.logging
    import gateway.server

    calls: list[str] = []

    def run(*args: Any, **kwargs: Any) -> None:
        raise AssertionError("dcr-gateway serve tried to start a server")

    monkeypatch.setattr(gateway.server, "run", run)
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
    monkeypatch.setenv("DCR_KEYCLOAK__REALMS", '["mcp"')  # a plain "mcp" is a comma-separated list of one
    assert cli.main(["serve"]) == 2
    assert "DCR_KEYCLOAK__REALMS" in capsys.readouterr().err


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
    assert err.startswith("dcr-gateway: invalid configuration: DCR_PROVIDER (provider in TOML): ")
    assert len(err.splitlines()) == 1


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


# --- unknown names (issue 8 item 9) ------------------------------------------------------------------------


def problems_of(error: pytest.ExceptionInfo[ConfigurationError]) -> list[str]:
    return error.value.problems


@pytest.mark.parametrize(
    ("text", "unknown", "suggestion"),
    [
        ('provder = "keycloak"\n', "provder", "provider"),
        ('[keycloak]\nclientid = "svc"\n', "keycloak.clientid", "keycloak.client_id"),
        ('[hydra]\nadmin_ur = "http://h:4445"\n', "hydra.admin_ur", "hydra.admin_url"),
        ('[policy]\nsame_hosts = "drop"\n', "policy.same_hosts", "policy.same_host"),
        ("[policy.redirect_uris]\nmax_cont = 3\n", "policy.redirect_uris.max_cont", "policy.redirect_uris.max_count"),
        ('[policy.scopes]\nallowd = ["openid"]\n', "policy.scopes.allowd", "policy.scopes.allowed"),
        ('[access]\nmod = "open"\n', "access.mod", "access.mode"),
        (
            "[access.initial_access_tokens]\nstatic_token_hash = []\n",
            "access.initial_access_tokens.static_token_hash",
            "access.initial_access_tokens.static_token_hashes",
        ),
        (
            '[access.issuers."/realms/mcp"]\nmdoe = "open"\n',
            'access.issuers."/realms/mcp".mdoe',
            'access.issuers."/realms/mcp".mode',
        ),
        (
            '[[access.software_statements.trusted_issuers]]\nisuer = "https://x"\njwks = {}\n',
            "access.software_statements.trusted_issuers[0].isuer",
            "access.software_statements.trusted_issuers[0].issuer",
        ),
        ("[limits]\nper_source_limt = 5\n", "limits.per_source_limt", "limits.per_source_limit"),
    ],
)
def test_an_unknown_key_in_the_file_stops_with_its_name_and_the_closest_valid_one(
    tmp_path: Path, text: str, unknown: str, suggestion: str
) -> None:
    config = write_toml(tmp_path / "gateway.toml", text)
    with pytest.raises(ConfigurationError) as error:
        load_settings(config_file=str(config))
    line = problems_of(error)[0]  # then what else is wrong with the values, if anything
    assert unknown in line
    assert "gateway.toml" in line
    assert f"did you mean {suggestion}?" in line


def test_every_unknown_key_of_the_file_is_named_at_once(tmp_path: Path) -> None:
    config = write_toml(tmp_path / "gateway.toml", 'provder = "keycloak"\n[keycloak]\nclientid = "svc"\n')
    with pytest.raises(ConfigurationError) as error:
        load_settings(config_file=str(config))
    assert len(problems_of(error)) == 2


@pytest.mark.parametrize(
    ("name", "suggestion"),
    [
        ("DCR_PROVDER", "DCR_PROVIDER"),
        ("DCR_KEYCLOAK_CLIENT_SECRET", "DCR_KEYCLOAK__CLIENT_SECRET"),
        ("DCR_KEYCLOAK__CLIENTSECRET", "DCR_KEYCLOAK__CLIENT_SECRET"),
        ("DCR_KEYCLOAK__CLIENTID", "DCR_KEYCLOAK__CLIENT_ID"),
        ("DCR_HYDRA__ADMINURL", "DCR_HYDRA__ADMIN_URL"),
        ("DCR_POLICY__REDIRECT_URIS__MAX_CONT", "DCR_POLICY__REDIRECT_URIS__MAX_COUNT"),
        ("DCR_POLICY_SAME_HOST", "DCR_POLICY__SAME_HOST"),
        ("DCR_ACCESS__ISSUERS__PUBLIC__MDOE", "DCR_ACCESS__ISSUERS__PUBLIC__MODE"),
        ("DCR_ACCESS__INITIAL_ACCESS_TOKENS__HS256SECRET", "DCR_ACCESS__INITIAL_ACCESS_TOKENS__HS256_SECRET"),
        ("DCR_LIMITS__PER_SOURCE_LIMT", "DCR_LIMITS__PER_SOURCE_LIMIT"),
        ("dcr_provder", "DCR_PROVIDER"),
    ],
)
def test_an_unknown_dcr_variable_stops_with_its_name_and_the_closest_valid_one(
    monkeypatch: pytest.MonkeyPatch, name: str, suggestion: str
) -> None:
    monkeypatch.setenv(name, "1")
    with pytest.raises(ConfigurationError) as error:
        Settings()
    [line] = problems_of(error)
    assert name in line
    assert f"did you mean {suggestion}?" in line
    assert "1" not in line.replace(name, "").replace(suggestion, "")  # never the value: it may be a secret


@pytest.mark.parametrize("name", ["DCR_PORT__X", "DCR_KEYCLOAK__REALMS__0", "DCR_", "DCR_KEYCLOAK___CLIENT_ID"])
def test_a_variable_nested_below_a_plain_setting_is_unknown(monkeypatch: pytest.MonkeyPatch, name: str) -> None:
    monkeypatch.setenv(name, "1")
    with pytest.raises(ConfigurationError, match="unknown environment variable"):
        Settings()


def test_variables_into_dict_settings_are_known(monkeypatch: pytest.MonkeyPatch) -> None:
    """``hydra.admin_headers`` and ``access.issuers`` take any key; below an ``access.issuers`` entry, only the
    fields of an override."""
    monkeypatch.setenv("DCR_HYDRA__ADMIN_HEADERS__X_TOKEN", "t")
    monkeypatch.setenv("DCR_ACCESS__ISSUERS__PUBLIC__MODE", "open")
    settings = Settings()
    assert settings.hydra.admin_headers["x_token"].get_secret_value() == "t"
    assert "public" in settings.access.issuers


def test_the_development_gateways_environment_is_known() -> None:
    """Every variable the local stack and the test fixtures give a gateway is a setting."""
    from devstack.providers import hydra_gateway_env, keycloak_gateway_env

    for env in (
        hydra_gateway_env(port=1, hydra_public_url="http://h:1", hydra_admin_url="http://h:2"),
        keycloak_gateway_env(port=1, keycloak_url="http://k:1"),
    ):
        assert unknown_names(Settings, environ=env) == []


def test_names_come_from_the_models_so_new_fields_need_no_edit() -> None:
    """A nested settings model added later (e.g. a ``front_door`` table) is known at once, in the file and in
    the environment, and so are typos in it."""

    class FrontDoor(BaseModel):
        model_config = ConfigDict(extra="forbid")
        read_timeout: float = 30.0

    class Extended(Settings):
        front_door: FrontDoor = FrontDoor()
        deployment_name: str = ""

    assert unknown_names(Extended, environ={"DCR_FRONT_DOOR__READ_TIMEOUT": "5", "DCR_DEPLOYMENT_NAME": "x"}) == []
    [line] = unknown_names(Extended, environ={"DCR_FRONT_DOOR__READ_TIMOUT": "5"})
    assert "did you mean DCR_FRONT_DOOR__READ_TIMEOUT?" in line
    [line] = unknown_names(Extended, environ={}, file_data={"front_door": {"read_timout": 5}}, file_name="g.toml")
    assert "did you mean front_door.read_timeout?" in line


def test_unknown_keys_passed_as_json_or_in_code_are_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    """``extra="forbid"`` on every model: a whole table as JSON in one variable, or keyword arguments."""
    monkeypatch.setenv("DCR_KEYCLOAK", '{"clientid": "svc"}')
    with pytest.raises(ValidationError, match="clientid"):
        Settings()
    monkeypatch.delenv("DCR_KEYCLOAK")
    for options in (
        {"keycloak": {"clientid": "x"}},
        {"hydra": {"admin_ur": "x"}},
        {"limits": {"per_source_limt": 1}},
        {"access": {"mod": "open"}},
        {"access": {"initial_access_tokens": {"static_token_hash": []}}},
        {"access": {"issuers": {"/": {"mdoe": "open"}}}},
        {"policy": {"scopes": {"allowd": []}}},
    ):
        with pytest.raises(ValidationError, match="Extra inputs are not permitted"):
            Settings(**options)


def test_a_missing_file_named_by_dcr_config_file_stops_settings_too(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("DCR_CONFIG_FILE", str(tmp_path / "typo.toml"))
    with pytest.raises(ConfigurationError, match="DCR_CONFIG_FILE"):
        Settings()


# --- values: lists, URLs, one line per error (issue 8 item 12) ---------------------------------------------


@pytest.mark.parametrize(
    ("name", "value", "expected"),
    [
        ("DCR_KEYCLOAK__REALMS", "mcp", ["mcp"]),
        ("DCR_KEYCLOAK__REALMS", "mcp, partners", ["mcp", "partners"]),
        ("DCR_KEYCLOAK__REALMS", '["mcp","partners"]', ["mcp", "partners"]),
        ("DCR_BLOCKED_PATHS", "/admin,/metrics", ["/admin", "/metrics"]),
        ("DCR_CORS_ALLOWED_ORIGINS", "http://localhost:6274", ["http://localhost:6274"]),
        ("DCR_POLICY__REDIRECT_URIS__ALLOWED_SCHEMES", "https,cursor", ("https", "cursor")),
        ("DCR_POLICY__GRANT_TYPES", "authorization_code", ("authorization_code",)),
    ],
)
def test_list_settings_take_a_comma_separated_list_or_json(
    monkeypatch: pytest.MonkeyPatch, name: str, value: str, expected: object
) -> None:
    monkeypatch.setenv(name, value)
    settings = Settings()
    current: Any = settings
    for part in name.removeprefix("DCR_").lower().split("__"):
        current = getattr(current, part)
    assert current == expected


@pytest.mark.parametrize(
    ("name", "value", "allowed"),
    [
        ("DCR_HYDRA__ADMIN_HEADERS", "X-Token: abc", "JSON object"),
        ("DCR_ACCESS__ISSUERS", "mcp", "JSON object"),
        ("DCR_KEYCLOAK__REALMS", '["mcp"', "JSON list"),
        ("DCR_POLICY", "strict", "JSON object"),
    ],
)
def test_a_value_that_cannot_be_parsed_names_the_variable_and_what_is_expected(
    monkeypatch: pytest.MonkeyPatch, name: str, value: str, allowed: str
) -> None:
    monkeypatch.setenv(name, value)
    with pytest.raises(ConfigurationError) as error:
        load_settings()
    [line] = problems_of(error)
    assert line.startswith(name)
    assert allowed in line
    assert value not in line


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("public_url", "127.0.0.1:9093"),
        ("public_url", "auth.example.com"),
        ("public_url", "ftp://auth.example.com"),
        ("public_url", "https://auth.example.com/realms/mcp"),
        ("public_url", "https://auth.example.com?x=1"),
        ("public_url", "http://:8080"),
        ("public_url", "http://h:99999"),
        ("provider_url", "keycloak:8080"),
        ("provider_url", "http://"),
    ],
)
def test_urls_must_be_absolute_http_urls(field: str, value: str) -> None:
    with pytest.raises(ValidationError, match="http"):
        Settings(**{field: value})


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"hydra": {"admin_url": "127.0.0.1:4445"}}, "hydra.admin_url"),
        ({"keycloak": {"admin_url": "keycloak:8080"}}, "keycloak.admin_url"),
    ],
)
def test_admin_urls_must_be_absolute_http_urls(options: dict[str, Any], message: str) -> None:
    with pytest.raises(ValidationError, match="http"):
        Settings(**options)


def test_urls_with_a_path_are_fine_for_the_provider() -> None:
    settings = Settings(provider_url="http://keycloak.internal:8080/auth", public_url="https://auth.example.com/")
    assert settings.provider_url == "http://keycloak.internal:8080/auth"


@pytest.mark.parametrize("port", ["0", "-1", "65536"])
def test_the_port_must_be_a_tcp_port(monkeypatch: pytest.MonkeyPatch, port: str) -> None:
    monkeypatch.setenv("DCR_PORT", port)
    with pytest.raises(ValidationError):
        Settings()


def test_serve_prints_one_line_per_error_naming_the_variable_and_the_toml_key(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], no_server: list[str]
) -> None:
    monkeypatch.setenv("DCR_PUBLIC_URL", "127.0.0.1:9093")
    monkeypatch.setenv("DCR_LOG_FORMAT", "xml")
    monkeypatch.setenv("DCR_POLICY__REDIRECT_URIS__MAX_COUNT", "many")
    assert cli.main(["serve"]) == 2
    lines = capsys.readouterr().err.splitlines()
    assert len(lines) == 3, lines
    assert all(line.startswith("dcr-gateway: invalid configuration: ") for line in lines)
    by_name = {line.split(": ")[2].split(" ")[0]: line for line in lines}
    assert set(by_name) == {"DCR_PUBLIC_URL", "DCR_LOG_FORMAT", "DCR_POLICY__REDIRECT_URIS__MAX_COUNT"}
    assert "public_url" in by_name["DCR_PUBLIC_URL"] and "https://" in by_name["DCR_PUBLIC_URL"]
    assert "'json'" in by_name["DCR_LOG_FORMAT"]
    assert "policy.redirect_uris.max_count" in by_name["DCR_POLICY__REDIRECT_URIS__MAX_COUNT"]
    assert "integer" in by_name["DCR_POLICY__REDIRECT_URIS__MAX_COUNT"]


def test_serve_with_an_unknown_variable_exits_2_with_one_line(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], no_server: list[str]
) -> None:
    monkeypatch.setenv("DCR_KEYCLOAK_CLIENT_SECRET", "s3cret")
    assert cli.main(["serve"]) == 2
    err = capsys.readouterr().err
    assert err.splitlines() == [
        "dcr-gateway: invalid configuration: unknown environment variable DCR_KEYCLOAK_CLIENT_SECRET: "
        "did you mean DCR_KEYCLOAK__CLIENT_SECRET?"
    ]


def test_unknown_names_and_bad_values_are_reported_together(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], no_server: list[str], tmp_path: Path
) -> None:
    config = write_toml(tmp_path / "gateway.toml", '[keycloak]\nclientid = "svc"\n')
    monkeypatch.setenv("DCR_PROVDER", "keycloak")
    monkeypatch.setenv("DCR_PUBLIC_URL", "127.0.0.1:9093")
    assert cli.main(["serve", "--config", str(config)]) == 2
    lines = capsys.readouterr().err.splitlines()
    assert len(lines) == 3, lines
    assert "DCR_PROVDER: did you mean DCR_PROVIDER?" in lines[0]
    assert "keycloak.clientid in gateway.toml: did you mean keycloak.client_id?" in lines[1]
    assert lines[2].startswith("dcr-gateway: invalid configuration: DCR_PUBLIC_URL (public_url in TOML): ")


@pytest.mark.parametrize("argv", [["serve"], ["clients", "list"]])
def test_every_command_reading_settings_refuses_unknown_names_the_same_way(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], no_server: list[str], argv: list[str]
) -> None:
    monkeypatch.setenv("DCR_PROVDER", "memory")
    assert cli.main(argv) == 2
    assert capsys.readouterr().err.splitlines() == [
        "dcr-gateway: invalid configuration: unknown environment variable DCR_PROVDER: did you mean DCR_PROVIDER?"
    ]


@pytest.mark.parametrize(
    ("name", "value"),
    [("DCR_ALLOW_CLIENT_CREDENTIALS", "true"), ("DCR_ALLOW_JWKS_URI", "true"), ("DCR_CLIENT_SECRET_EXPIRES_IN", "60")],
)
def test_removed_settings_are_unknown(monkeypatch: pytest.MonkeyPatch, name: str, value: str) -> None:
    """Issue 9 part 4: the legacy ``allow_*`` flags (``DCR_POLICY__CLIENT_CREDENTIALS`` / ``DCR_POLICY__JWKS_URI``
    replace them) and ``client_secret_expires_in`` (no provider enforces secret expiry) are gone: setting one
    stops the start like any unknown name, never silently does nothing."""
    monkeypatch.setenv(name, value)
    with pytest.raises(ConfigurationError) as error:
        Settings()
    [line] = problems_of(error)
    assert f"unknown environment variable {name}" in line
