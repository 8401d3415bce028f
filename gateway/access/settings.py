"""The access-control knobs (``Settings.access``, environment ``DCR_ACCESS__*``, TOML ``[access]``).

One default for every issuer, plus overrides keyed by issuer path (``/realms/mcp``, ``/`` for a root issuer)
or adapter issuer key (the Keycloak realm, ``default`` for Hydra). An override replaces whole sections of the
default (``mode``, ``initial_access_tokens``, ``software_statements``); the sections it leaves out are
inherited. Keys and hashes are checked when the settings are loaded, so a bad one stops the gateway at
start-up. RFC 7591 sections 2.3 and 3.
"""

from __future__ import annotations

import base64
import binascii
from dataclasses import dataclass, field
from enum import StrEnum
from pathlib import Path
from typing import Any

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    PrivateAttr,
    SecretStr,
    ValidationError,
    field_validator,
    model_validator,
)

from gateway.access.jose import (
    KeyConfigError,
    VerificationKey,
    hs256_key,
    public_keys,
    read_jwks_file,
)

STATIC_HASH_SCHEME = "sha256"
INITIAL_ACCESS_TOKEN_ALGORITHMS = frozenset({"ES256", "EdDSA", "Ed25519"})
"""Asymmetric algorithms of signed initial access tokens (HS256 has its own secret)."""


class AccessMode(StrEnum):
    """What a registration at an issuer must present (RFC 7591 section 3 and section 2.3).

    In every mode, a credential the issuer is configured to verify is verified when it is presented, and a bad
    one is refused: a caller is never silently downgraded to anonymous. A credential of a kind the issuer has
    no configuration for is ignored (section 2.3: the server "MAY ignore the software statement if it does not
    support this feature").
    """

    OPEN = "open"
    """Anyone may register (the MCP default); a verified token or statement makes the caller authenticated."""
    INITIAL_ACCESS_TOKEN = "initial_access_token"
    """An initial access token is required (``Authorization: Bearer``)."""
    SOFTWARE_STATEMENT = "software_statement"
    """A software statement from a trusted issuer is required."""
    EITHER = "initial_access_token_or_software_statement"
    """At least one of them is required."""
    BOTH = "initial_access_token_and_software_statement"
    """Both are required."""

    @property
    def requires_initial_access_token(self) -> bool:
        return self in (AccessMode.INITIAL_ACCESS_TOKEN, AccessMode.BOTH)

    @property
    def requires_software_statement(self) -> bool:
        return self in (AccessMode.SOFTWARE_STATEMENT, AccessMode.BOTH)


class InitialAccessTokenSettings(BaseModel):
    """How initial access tokens (RFC 7591 section 3) are verified. Never the plain tokens: hashes and keys."""

    model_config = ConfigDict(extra="forbid")  # a misspelt key stops the start (issue 8 item 9)

    static_token_hashes: list[str] = Field(default_factory=list)
    """``sha256:<base64url>`` of each static token (``dcr-gateway initial-access-token hash`` prints it)."""
    hs256_secret: SecretStr | None = None
    """Shared secret of HS256-signed tokens (at least 32 bytes); minting needs the same secret."""
    jwks: dict[str, Any] | None = None
    """Public keys of ES256 (EC P-256) or EdDSA (OKP Ed25519) signed tokens, as a JWK Set or a single JWK."""
    jwks_file: Path | None = None
    """The same, read from a JSON file at start-up."""
    leeway_seconds: int = Field(default=30, ge=0, le=300)
    """Clock skew allowed on ``exp``, ``nbf`` and ``iat``."""

    @field_validator("static_token_hashes")
    @classmethod
    def _hash_format(cls, values: list[str]) -> list[str]:
        for i, value in enumerate(values):
            check_static_hash(value, where=f"static_token_hashes[{i}]")
        return values

    @property
    def configured(self) -> bool:
        return bool(self.static_token_hashes or self.hs256_secret or self.jwks or self.jwks_file)


class TrustedSoftwareStatementIssuer(BaseModel):
    """An issuer of software statements (its ``iss``) and the public keys its statements are signed with."""

    model_config = ConfigDict(extra="forbid")  # a misspelt key stops the start (issue 8 item 9)

    issuer: str = Field(min_length=1)
    jwks: dict[str, Any] | None = None
    """Public keys (RSA, EC, OKP) as a JWK Set or a single JWK; never symmetric or private keys."""
    jwks_file: Path | None = None

    @model_validator(mode="after")
    def _one_key_source(self) -> TrustedSoftwareStatementIssuer:
        if (self.jwks is None) == (self.jwks_file is None):
            raise ValueError(f"trusted issuer {self.issuer!r}: set exactly one of jwks, jwks_file")
        return self


class SoftwareStatementSettings(BaseModel):
    """Whose software statements (RFC 7591 section 2.3) are trusted."""

    model_config = ConfigDict(extra="forbid")  # a misspelt key stops the start (issue 8 item 9)

    trusted_issuers: list[TrustedSoftwareStatementIssuer] = Field(default_factory=list)
    leeway_seconds: int = Field(default=30, ge=0, le=300)
    """Clock skew allowed on ``exp``, ``nbf`` and ``iat`` (``exp`` is honoured when present)."""

    @field_validator("trusted_issuers")
    @classmethod
    def _unique_issuers(cls, values: list[TrustedSoftwareStatementIssuer]) -> list[TrustedSoftwareStatementIssuer]:
        seen = [entry.issuer for entry in values]
        duplicates = sorted({iss for iss in seen if seen.count(iss) > 1})
        if duplicates:
            raise ValueError(f"trusted issuers listed twice: {', '.join(duplicates)} (list each once, with all keys)")
        return values

    @property
    def configured(self) -> bool:
        return bool(self.trusted_issuers)


@dataclass(frozen=True)
class IssuerAccess:
    """The settings of one issuer, compiled: parsed keys and decoded hashes, ready for each request."""

    mode: AccessMode
    static_token_digests: tuple[bytes, ...] = ()
    token_keys: tuple[VerificationKey, ...] = ()
    token_leeway: int = 30
    statement_keys: dict[str, tuple[VerificationKey, ...]] = field(default_factory=dict)
    statement_leeway: int = 30

    @property
    def accepts_initial_access_tokens(self) -> bool:
        return bool(self.static_token_digests or self.token_keys)

    @property
    def accepts_software_statements(self) -> bool:
        return bool(self.statement_keys)

    @property
    def requires_initial_access_token(self) -> bool:
        """The mode needs a token, or ``either`` where tokens are the only kind configured."""
        either_alone = self.mode is AccessMode.EITHER and not self.accepts_software_statements
        return self.mode.requires_initial_access_token or either_alone

    @property
    def requires_software_statement(self) -> bool:
        """The mode needs a statement, or ``either`` where statements are the only kind configured."""
        either_alone = self.mode is AccessMode.EITHER and not self.accepts_initial_access_tokens
        return self.mode.requires_software_statement or either_alone


class IssuerAccessSettings(BaseModel):
    """Access control of one issuer."""

    model_config = ConfigDict(extra="forbid")  # a misspelt key stops the start (issue 8 item 9)

    mode: AccessMode = AccessMode.OPEN
    initial_access_tokens: InitialAccessTokenSettings = Field(default_factory=InitialAccessTokenSettings)
    software_statements: SoftwareStatementSettings = Field(default_factory=SoftwareStatementSettings)

    _compiled: IssuerAccess | None = PrivateAttr(default=None)

    @model_validator(mode="after")
    def _compile(self) -> IssuerAccessSettings:
        try:
            self._compiled = compile_access(self)
        except KeyConfigError as exc:
            raise ValueError(str(exc)) from None
        return self

    @property
    def compiled(self) -> IssuerAccess:
        if self._compiled is None:  # set by the validator; only a model_construct() skips it
            self._compiled = compile_access(self)
        return self._compiled


class IssuerAccessOverride(BaseModel):
    """Sections of one issuer's access control that differ from the default; the others are inherited."""

    model_config = ConfigDict(extra="forbid")  # a misspelt key stops the start (issue 8 item 9)

    mode: AccessMode | None = None
    initial_access_tokens: InitialAccessTokenSettings | None = None
    software_statements: SoftwareStatementSettings | None = None


class AccessSettings(IssuerAccessSettings):
    """The default access control for every issuer, and per-issuer overrides."""

    issuers: dict[str, IssuerAccessOverride] = Field(default_factory=dict)
    """Overrides keyed by issuer path (``/realms/mcp``; ``/`` for a root issuer) or adapter issuer key
    (``mcp``, ``default``). When both name the same issuer, the path wins."""

    _merged: dict[str, IssuerAccessSettings] = PrivateAttr(default_factory=dict)

    @model_validator(mode="after")
    def _merge_overrides(self) -> AccessSettings:
        merged: dict[str, IssuerAccessSettings] = {}
        for name, override in self.issuers.items():
            try:
                merged[name] = IssuerAccessSettings(
                    mode=override.mode or self.mode,
                    initial_access_tokens=override.initial_access_tokens or self.initial_access_tokens,
                    software_statements=override.software_statements or self.software_statements,
                )
            except ValidationError as exc:
                reason = "; ".join(str(error["msg"]).removeprefix("Value error, ") for error in exc.errors())
                raise ValueError(f"issuers[{name!r}]: {reason}") from None
        self._merged = merged
        return self

    def for_issuer(self, *, key: str, path: str) -> IssuerAccess:
        """The compiled access control of the issuer with adapter key ``key`` and issuer path ``path``."""
        for name in (path or "/", key):
            if name in self._merged:
                return self._merged[name].compiled
        return self.compiled

    def unknown_overrides(self, issuers: list[tuple[str, str]]) -> list[str]:
        """Override names that match none of the served issuers ``(key, path)``: a typo would otherwise leave
        an issuer open without a word (the app factory can refuse to start on them)."""
        known = {name for key, path in issuers for name in (key, path or "/")}
        return sorted(name for name in self.issuers if name not in known)


def check_static_hash(value: str, *, where: str) -> bytes:
    """``sha256:<base64url of 32 bytes>``, the stored form of a static initial access token."""
    scheme, _, encoded = value.partition(":")
    if scheme != STATIC_HASH_SCHEME or not encoded:
        raise ValueError(f"{where}: must be 'sha256:<base64url>' (dcr-gateway initial-access-token hash)")
    try:
        digest = base64.urlsafe_b64decode(encoded + "=" * (-len(encoded) % 4))
    except (binascii.Error, ValueError):
        raise ValueError(f"{where}: the part after 'sha256:' is not base64url") from None
    if len(digest) != 32:
        raise ValueError(f"{where}: a SHA-256 hash has 32 bytes, this one {len(digest)}")
    return digest


def compile_access(settings: IssuerAccessSettings) -> IssuerAccess:
    """Parse keys and hashes once; refuse a mode that needs a credential nothing is configured to verify."""
    tokens = settings.initial_access_tokens
    statements = settings.software_statements
    if settings.mode.requires_initial_access_token and not tokens.configured:
        raise KeyConfigError(
            f"mode {settings.mode.value!r} needs initial_access_tokens (static_token_hashes, hs256_secret, jwks "
            "or jwks_file)"
        )
    if settings.mode.requires_software_statement and not statements.configured:
        raise KeyConfigError(f"mode {settings.mode.value!r} needs software_statements.trusted_issuers")
    if settings.mode is AccessMode.EITHER and not (tokens.configured or statements.configured):
        raise KeyConfigError(
            f"mode {settings.mode.value!r} needs initial_access_tokens or software_statements.trusted_issuers"
        )

    token_keys: list[VerificationKey] = []
    if tokens.hs256_secret is not None:
        token_keys.append(hs256_key(tokens.hs256_secret.get_secret_value(), where="initial_access_tokens.hs256_secret"))
    if tokens.jwks is not None:
        token_keys += public_keys(
            tokens.jwks, where="initial_access_tokens.jwks", allowed=INITIAL_ACCESS_TOKEN_ALGORITHMS
        )
    if tokens.jwks_file is not None:
        where = "initial_access_tokens.jwks_file"
        document = read_jwks_file(tokens.jwks_file, where=where)
        token_keys += public_keys(document, where=where, allowed=INITIAL_ACCESS_TOKEN_ALGORITHMS)

    statement_keys: dict[str, tuple[VerificationKey, ...]] = {}
    for i, trusted in enumerate(statements.trusted_issuers):
        where = f"software_statements.trusted_issuers[{i}]"
        document = trusted.jwks if trusted.jwks_file is None else read_jwks_file(trusted.jwks_file, where=where)
        statement_keys[trusted.issuer] = public_keys(document, where=where)

    return IssuerAccess(
        mode=settings.mode,
        static_token_digests=tuple(
            check_static_hash(value, where="static_token_hashes") for value in tokens.static_token_hashes
        ),
        token_keys=tuple(token_keys),
        token_leeway=tokens.leeway_seconds,
        statement_keys=statement_keys,
        statement_leeway=statements.leeway_seconds,
    )
