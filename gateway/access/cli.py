"""``dcr-gateway initial-access-token``: what an operator needs to hand out initial access tokens (RFC 7591
section 3: "The method by which the initial access token is obtained by the client or developer is generally
out of band").

- ``new-static``: a new random static token, and the hash to configure (the gateway never holds the token);
- ``hash``: the hash of a token read from standard input (never from the command line, which ``ps`` shows);
- ``keygen``: a new ES256 or EdDSA key pair: the private JWK to a file (mode 0600), the public JWK printed for
  ``access.initial_access_tokens.jwks``;
- ``mint``: a signed token for one issuer, with an expiry and optionally a number of uses, signed with that
  private key or with the HS256 secret (read from an environment variable, never from the command line).
"""

from __future__ import annotations

import argparse
import json
import os
import re
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

from joserfc.errors import JoseError
from joserfc.jwk import ECKey, JWKRegistry, Key, OctKey, OKPKey

from gateway.access.jose import HS256_MIN_SECRET_BYTES, PRIVATE_MEMBERS
from gateway.access.tokens import hash_initial_access_token, mint_initial_access_token, new_static_token

DEFAULT_SECRET_ENV = "DCR_ACCESS__INITIAL_ACCESS_TOKENS__HS256_SECRET"
_DURATION = re.compile(r"(\d+)([smhd]?)")
_UNIT_SECONDS = {"": 1, "s": 1, "m": 60, "h": 3600, "d": 86400}


class UsageError(Exception):
    """Bad arguments or inputs: printed, exit status 2."""


def parse_duration(text: str) -> int:
    """``90``, ``90s``, ``15m``, ``12h``, ``7d`` -> seconds (positive)."""
    match = _DURATION.fullmatch(text.strip())
    if match is None or int(match.group(1)) <= 0:
        raise argparse.ArgumentTypeError(f"{text!r} is not a duration such as 3600, 90s, 15m, 12h or 7d")
    return int(match.group(1)) * _UNIT_SECONDS[match.group(2)]


def plain_text(text: str) -> str:
    """``text`` (a reST docstring) as a terminal shows it: without ``literal`` and :role:`target` markup."""
    text = re.sub(r":[a-z]+:`~?([^`]+)`", r"\1", text)
    return text.replace("``", "")


def add_subcommand(subparsers: Any) -> None:
    """Add ``initial-access-token`` and its commands to the ``dcr-gateway`` parser."""
    parser = subparsers.add_parser(
        "initial-access-token",
        help="create initial access tokens (RFC 7591 section 3) and the hashes or keys the gateway verifies",
        description=plain_text(__doc__.split("\n\n", 1)[1]) if __doc__ else None,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    commands = parser.add_subparsers(dest="iat_command", required=True)

    new_static = commands.add_parser("new-static", help="print a new random static token and its hash")
    new_static.set_defaults(func=_guarded(_new_static))

    hash_ = commands.add_parser("hash", help="print the hash of a token read from standard input")
    hash_.set_defaults(func=_guarded(_hash))

    keygen = commands.add_parser("keygen", help="create a key pair for signed tokens")
    keygen.add_argument(
        "--alg",
        choices=("ES256", "EdDSA"),
        default="ES256",
        help="signature algorithm of the key pair: ES256 (EC P-256, the default) or EdDSA (Ed25519)",
    )
    keygen.add_argument("--private-key-out", type=Path, required=True, help="file for the private JWK (mode 0600)")
    keygen.set_defaults(func=_guarded(_keygen))

    mint = commands.add_parser("mint", help="print a signed token for one issuer")
    mint.add_argument("--audience", required=True, help="the issuer URL the token is for (its 'aud')")
    mint.add_argument("--expires-in", type=parse_duration, default=3600, help="lifetime: 3600, 90s, 15m, 12h, 7d")
    mint.add_argument("--max-uses", type=int, help="registrations the token allows (default: unlimited until exp)")
    mint.add_argument("--jti", help="token id (default: random); use counts are kept per id")
    key_source = mint.add_mutually_exclusive_group(required=True)
    key_source.add_argument("--private-key", type=Path, help="private JWK file (ES256 or EdDSA), from keygen")
    key_source.add_argument(
        "--hs256-secret-env",
        metavar="NAME",
        nargs="?",
        const=DEFAULT_SECRET_ENV,
        help=f"environment variable holding the HS256 secret (default {DEFAULT_SECRET_ENV})",
    )
    mint.set_defaults(func=_guarded(_mint))


def _guarded(command: Callable[[argparse.Namespace], None]) -> Callable[[argparse.Namespace], int]:
    """``command`` as a subcommand: 0 when it returns, 2 (with its message) on a :class:`UsageError`."""

    def run(args: argparse.Namespace) -> int:
        try:
            command(args)
        except UsageError as exc:
            print(f"dcr-gateway initial-access-token: {exc}", file=sys.stderr)
            return 2
        return 0

    return run


def _new_static(args: argparse.Namespace) -> None:
    token, stored = new_static_token()
    print(f"token: {token}")
    print(f"hash:  {stored}")
    print(
        "Give the token to the client developer (shown only now); add the hash to "
        "access.initial_access_tokens.static_token_hashes.",
        file=sys.stderr,
    )


def _hash(args: argparse.Namespace) -> None:
    token = sys.stdin.readline().rstrip("\r\n")
    if not token:
        raise UsageError('no token on standard input (e.g. `printf %s "$TOKEN" | dcr-gateway ... hash`)')
    print(hash_initial_access_token(token))


def _keygen(args: argparse.Namespace) -> None:
    key: ECKey | OKPKey = ECKey.generate_key("P-256") if args.alg == "ES256" else OKPKey.generate_key("Ed25519")
    kid = key.thumbprint()
    private = {**key.as_dict(private=True), "kid": kid, "alg": args.alg, "use": "sig"}
    public = {**key.as_dict(private=False), "kid": kid, "alg": args.alg, "use": "sig"}
    path: Path = args.private_key_out
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        raise UsageError(f"{str(path)!r} exists; not overwriting a key") from None
    except OSError as exc:
        raise UsageError(f"cannot create {str(path)!r}: {exc.strerror}") from None
    with os.fdopen(fd, "w", encoding="utf-8") as out:
        json.dump(private, out)
    print(json.dumps({"keys": [public]}))
    print(
        f"Private key written to {path}; configure the printed JWK Set as access.initial_access_tokens.jwks.",
        file=sys.stderr,
    )


def _mint(args: argparse.Namespace) -> None:
    if args.max_uses is not None and args.max_uses < 1:
        raise UsageError("--max-uses must be at least 1")
    key, alg, kid = _hs256_key(args.hs256_secret_env) if args.hs256_secret_env else _private_key(args.private_key)
    print(
        mint_initial_access_token(
            key, alg, audience=args.audience, expires_in=args.expires_in, max_uses=args.max_uses, jti=args.jti, kid=kid
        )
    )


def _hs256_key(name: str) -> tuple[Key, str, str | None]:
    secret = os.environ.get(name, "")
    if not secret:
        raise UsageError(f"environment variable {name} is not set")
    if len(secret.encode("utf-8")) < HS256_MIN_SECRET_BYTES:
        raise UsageError(f"the HS256 secret in {name} must be at least {HS256_MIN_SECRET_BYTES} bytes")
    return OctKey.import_key(secret.encode("utf-8")), "HS256", None


def _private_key(path: Path) -> tuple[Key, str, str | None]:
    try:
        jwk = json.loads(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise UsageError(f"cannot read {str(path)!r}: {exc.strerror}") from None
    except ValueError:
        raise UsageError(f"{str(path)!r} is not a JSON JWK") from None
    if not isinstance(jwk, dict) or not PRIVATE_MEMBERS & jwk.keys():
        raise UsageError(f"{str(path)!r} is not a private JWK")
    if jwk.get("kty") == "EC" and jwk.get("crv") == "P-256":
        alg = "ES256"
    elif jwk.get("kty") == "OKP" and jwk.get("crv") == "Ed25519":
        alg = "EdDSA"
    else:
        raise UsageError(
            f"{str(path)!r}: only EC P-256 (ES256) and OKP Ed25519 (EdDSA) keys sign initial access tokens"
        )
    try:
        key = JWKRegistry.import_key(jwk)
    except (JoseError, ValueError, TypeError):
        raise UsageError(f"{str(path)!r} is not a valid JWK") from None
    kid = jwk.get("kid")
    return key, alg, kid if isinstance(kid, str) else None
