"""``dcr-gateway initial-access-token``: what it prints is what the gateway accepts."""

from __future__ import annotations

import io
import json
import stat
import time
from pathlib import Path

import pytest
from test_access_tokens import HS256_SECRET, public_jwk, rsa_key

from gateway.access.settings import IssuerAccessSettings
from gateway.access.tokens import hash_initial_access_token, verify_initial_access_token
from gateway.cli import main

ISSUER = "http://127.0.0.1:8080/realms/mcp"


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = main(["initial-access-token", *argv])
    out, err = capsys.readouterr()
    return code, out, err


def test_new_static_prints_a_token_and_the_hash_to_configure(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run(capsys, "new-static")
    assert code == 0
    lines = dict(line.split(":", 1) for line in out.splitlines())
    token, stored = lines["token"].strip(), lines["hash"].strip()
    assert stored == hash_initial_access_token(token)
    access = IssuerAccessSettings.model_validate({"initial_access_tokens": {"static_token_hashes": [stored]}})
    assert verify_initial_access_token(token, access.compiled, audience=ISSUER, now=0).kind == "static"


def test_hash_reads_the_token_from_standard_input(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr("sys.stdin", io.StringIO("abc\n"))
    code, out, _ = run(capsys, "hash")
    assert (code, out) == (0, "sha256:ungWv48Bz-pBQUDeXa4iI7ADYaOWF3qctBD_YfIAFa0\n")
    monkeypatch.setattr("sys.stdin", io.StringIO(""))
    code, out, err = run(capsys, "hash")
    assert code == 2
    assert "no token on standard input" in err


@pytest.mark.parametrize("alg", ["ES256", "EdDSA"])
def test_keygen_then_mint_gives_a_token_the_printed_key_verifies(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, alg: str
) -> None:
    private = tmp_path / "iat.jwk"
    code, out, _ = run(capsys, "keygen", "--alg", alg, "--private-key-out", str(private))
    assert code == 0
    assert stat.S_IMODE(private.stat().st_mode) == 0o600
    public_set = json.loads(out)
    assert "d" not in public_set["keys"][0]
    code, out, _ = run(
        capsys, "mint", "--audience", ISSUER, "--private-key", str(private), "--expires-in", "15m", "--max-uses", "3"
    )
    assert code == 0
    access = IssuerAccessSettings.model_validate({"initial_access_tokens": {"jwks": public_set}}).compiled
    verified = verify_initial_access_token(out.strip(), access, audience=ISSUER, now=time.time())
    assert verified.max_uses == 3
    assert verified.expires_at is not None
    assert 890 <= verified.expires_at - time.time() <= 900
    # keygen never overwrites a key
    code, _, err = run(capsys, "keygen", "--private-key-out", str(private))
    assert code == 2
    assert "exists" in err


def test_mint_with_the_hs256_secret_from_the_environment(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("DCR_ACCESS__INITIAL_ACCESS_TOKENS__HS256_SECRET", HS256_SECRET)
    code, out, err = run(capsys, "mint", "--audience", ISSUER, "--hs256-secret-env", "--jti", "ops-42")
    assert code == 0, err
    assert HS256_SECRET not in out + err
    access = IssuerAccessSettings.model_validate({"initial_access_tokens": {"hs256_secret": HS256_SECRET}})
    assert verify_initial_access_token(out.strip(), access.compiled, audience=ISSUER, now=time.time()).jti == "ops-42"


@pytest.mark.parametrize(
    ("argv", "env", "message"),
    [
        (["--hs256-secret-env", "NO_SUCH_VARIABLE"], {}, "NO_SUCH_VARIABLE is not set"),
        (["--hs256-secret-env", "SHORT_SECRET"], {"SHORT_SECRET": "short"}, "at least 32 bytes"),
        (["--hs256-secret-env", "--max-uses", "0"], {}, "at least 1"),
    ],
)
def test_mint_refuses_bad_inputs(
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
    argv: list[str],
    env: dict[str, str],
    message: str,
) -> None:
    monkeypatch.setenv("DCR_ACCESS__INITIAL_ACCESS_TOKENS__HS256_SECRET", HS256_SECRET)
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    code, _, err = run(capsys, "mint", "--audience", ISSUER, *argv)
    assert code == 2
    assert message in err


def test_mint_refuses_a_public_or_unsupported_key_file(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    public = tmp_path / "public.jwk"
    public.write_text(json.dumps(public_jwk(rsa_key())))
    code, _, err = run(capsys, "mint", "--audience", ISSUER, "--private-key", str(public))
    assert (code, "not a private JWK" in err) == (2, True)
    rsa = tmp_path / "rsa.jwk"
    rsa.write_text(json.dumps(rsa_key().as_dict(private=True)))
    code, _, err = run(capsys, "mint", "--audience", ISSUER, "--private-key", str(rsa))
    assert (code, "only EC P-256" in err) == (2, True)


def test_durations(capsys: pytest.CaptureFixture[str]) -> None:
    from gateway.access.cli import parse_duration

    assert [parse_duration(v) for v in ("90", "90s", "15m", "12h", "7d")] == [90, 90, 900, 43200, 604800]
    with pytest.raises(SystemExit):
        main(["initial-access-token", "mint", "--audience", ISSUER, "--hs256-secret-env", "--expires-in", "soon"])
