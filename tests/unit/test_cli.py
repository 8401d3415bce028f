"""The ``dcr-gateway`` command as an operator meets it: ``--version``, help that says where settings come from and
has no reST markup, and ``serve`` refusing a bad start in one line (exit status 2, no traceback), run as a real
subprocess (issue 8 items 12 and 14)."""

from __future__ import annotations

import argparse
import os
import socket
import subprocess
from collections.abc import Iterator

import pytest

from devstack.process import LOOPBACK, free_port
from devstack.providers import gateway_command
from gateway import __version__, cli

SERVE_TIMEOUT = 60.0


def test_version(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exited:
        cli.main(["--version"])
    assert exited.value.code == 0
    assert capsys.readouterr().out.strip() == f"dcr-gateway {__version__}"


@pytest.mark.parametrize("argv", [["--help"], ["serve", "--help"]])
def test_help_says_where_settings_come_from(capsys: pytest.CaptureFixture[str], argv: list[str]) -> None:
    with pytest.raises(SystemExit):
        cli.main(argv)
    out = capsys.readouterr().out
    assert "DCR_CONFIG_FILE" in out
    assert "DCR_*" in out
    assert "__" in out  # how nested settings are spelt


def _parsers(
    parser: argparse.ArgumentParser, path: tuple[str, ...]
) -> Iterator[tuple[tuple[str, ...], argparse.ArgumentParser]]:
    yield path, parser
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name, child in action.choices.items():
                yield from _parsers(child, (*path, name))


def test_every_option_has_help_and_no_help_shows_rest_markup(capsys: pytest.CaptureFixture[str]) -> None:
    for path, parser in _parsers(cli.build_parser(), ()):  # every command and subcommand
        for action in parser._actions:
            if isinstance(action, argparse._SubParsersAction):
                assert all(choice.help for choice in action._choices_actions), path
            elif action.dest != "help":
                assert action.help, f"dcr-gateway {' '.join(path)} {action.option_strings or action.dest}: no help"
        rendered = parser.format_help()
        for markup in ("``", ":class:", ":func:", ":data:"):
            assert markup not in rendered, f"dcr-gateway {' '.join(path)} --help shows {markup!r}"


def test_initial_access_token_help_is_plain_text(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        cli.main(["initial-access-token", "--help"])
    out = capsys.readouterr().out
    assert "``" not in out
    assert "new-static: a new random static token" in out
    with pytest.raises(SystemExit):
        cli.main(["initial-access-token", "keygen", "--help"])
    assert "signature algorithm" in capsys.readouterr().out


# --- dcr-gateway serve as a subprocess ---------------------------------------------------------------------


def serve(env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    """``dcr-gateway serve`` with only ``env`` as its ``DCR_*`` settings; must end by itself."""
    base = {name: value for name, value in os.environ.items() if not name.upper().startswith("DCR_")}
    return subprocess.run(
        gateway_command(),
        env={**base, "DCR_PROVIDER": "memory", "DCR_LOG_FORMAT": "json", **env},
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=SERVE_TIMEOUT,
        check=False,
    )


def assert_one_line_exit_2(result: subprocess.CompletedProcess[str]) -> str:
    assert result.returncode == 2, (result.returncode, result.stderr)
    assert "Traceback" not in result.stderr + result.stdout
    lines = result.stderr.splitlines()
    assert len(lines) == 1, lines
    assert lines[0].startswith("dcr-gateway: ")
    return lines[0]


def test_serve_with_a_public_url_that_is_not_a_url() -> None:
    line = assert_one_line_exit_2(serve({"DCR_PUBLIC_URL": "127.0.0.1:9093", "DCR_PORT": str(free_port())}))
    assert "DCR_PUBLIC_URL" in line

    assert "public_url" in line
    assert "scheme://host[:port]" in line


def test_serve_refuses_an_unknown_event_loop_naming_the_setting() -> None:
    line = assert_one_line_exit_2(serve({"DCR_EVENT_LOOP": "libev", "DCR_PORT": str(free_port())}))
    assert "DCR_EVENT_LOOP" in line and "'uvloop' or 'asyncio'" in line, line


def test_serve_on_a_port_in_use() -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as taken:
        taken.bind((LOOPBACK, 0))
        taken.listen()
        port = taken.getsockname()[1]
        line = assert_one_line_exit_2(serve({"DCR_HOST": LOOPBACK, "DCR_PORT": str(port)}))
    assert f"{LOOPBACK}:{port}" in line
    assert "address already in use" in line
    assert "DCR_PORT" in line


def test_serve_with_a_misspelt_variable() -> None:
    result = serve({"DCR_KEYCLOAK__CLIENTSECRET": "s3cret-value", "DCR_PORT": str(free_port())})
    line = assert_one_line_exit_2(result)
    assert line == (
        "dcr-gateway: invalid configuration: unknown environment variable DCR_KEYCLOAK__CLIENTSECRET: "
        "did you mean DCR_KEYCLOAK__CLIENT_SECRET?"
    )
    assert "s3cret-value" not in result.stderr + result.stdout


def test_serve_with_a_realm_list_that_is_not_a_list_is_fine_as_one_realm() -> None:
    """``DCR_KEYCLOAK__REALMS=mcp`` is a list of one (the memory provider serves anyway; the settings load)."""
    result = serve({"DCR_KEYCLOAK__REALMS": "mcp", "DCR_PORT": "not-a-port"})
    line = assert_one_line_exit_2(result)
    assert line.startswith("dcr-gateway: invalid configuration: DCR_PORT (port in TOML)")
