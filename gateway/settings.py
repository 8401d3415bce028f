"""Every knob of the gateway, in one place.

Settings come from environment variables prefixed ``DCR_`` (nested fields with ``__``, e.g.
``DCR_HYDRA__ADMIN_URL``) and, optionally, a TOML file named by ``DCR_CONFIG_FILE`` or ``--config``.
Environment variables win over the file. Secrets are ``SecretStr`` so they never print.

Nothing is silently ignored: a key of the file or a ``DCR_*`` variable that names no setting stops the start with
its name and the closest valid one (the valid names are derived from the models, so a new field needs no edit
here), every model refuses unknown keys (``extra="forbid"``), and every error is one line naming the variable,
the TOML key and what is allowed (:func:`load_settings`, :class:`ConfigurationError`).
"""

from __future__ import annotations

import difflib
import functools
import json
import os
import re
import tomllib
import types
from collections.abc import Iterator, Mapping, Sequence
from contextvars import ContextVar
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path
from typing import Annotated, Any, Literal, TypeVar, Union, get_args, get_origin

from pydantic import BaseModel, Field, ValidationError, create_model, field_validator, model_validator
from pydantic.fields import FieldInfo
from pydantic_settings import (
    BaseSettings,
    EnvSettingsSource,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
    TomlConfigSettingsSource,
)
from pydantic_settings.exceptions import SettingsError

from adapters.hydra.settings import HydraSettings
from adapters.keycloak.settings import KeycloakSettings
from adapters.registry import settings_sections
from adapters.settings import check_http_url
from gateway.access.settings import AccessSettings
from gateway.cimd.settings import CimdSettings
from gateway.lifecycle import ShutdownSettings
from gateway.limits.settings import LimitSettings
from gateway.observability.settings import AuditSettings, ManagementSettings
from gateway.policy.settings import PolicySettings
from gateway.rfc8707.resources import ResourceSettings
from gateway.tracing import TracingSettings

_Section = TypeVar("_Section", bound=BaseModel)

_DEPLOYMENT_NAME = re.compile(r"[a-z0-9][a-z0-9._-]{0,62}", re.ASCII)

_CONFIG_FILE: ContextVar[str | None] = ContextVar("dcr_config_file", default=None)
"""The file :func:`load_settings` was given; kept out of ``os.environ`` so it does not leak into children."""
_SKIP_NAMES_CHECK: ContextVar[bool] = ContextVar("dcr_skip_names_check", default=False)


class EventLoop(StrEnum):
    """The event loop ``dcr-gateway serve`` runs on (``DCR_EVENT_LOOP``)."""

    UVLOOP = "uvloop"
    """uvloop (libuv, written in C): less CPU per request in the loop and the transports; the default."""
    ASYNCIO = "asyncio"
    """The standard library's selector loop."""


class Mode(StrEnum):
    """How requests reach the gateway."""

    FRONT_DOOR = "front-door"
    """The gateway owns the issuer's origin and reverse-proxies the paths on its allow-list (see
    :class:`FrontDoorSettings`) that it does not serve itself."""
    PATH_ROUTING = "path-routing"
    """An ingress sends only the well-known and registration paths to the gateway."""


class FrontDoorSettings(BaseModel):
    """The front-door proxy (``[front_door]`` / ``DCR_FRONT_DOOR__*``): what it forwards, and what one client
    may hold of it, so a slow or hostile client cannot deny the provider to everyone else."""

    allowed_paths: list[str] = Field(default_factory=list)
    """Path prefixes forwarded in addition to what the adapter names for its issuers (Keycloak: each served
    realm's ``protocol/openid-connect``, ``login-actions``, ``broker``, ``device`` and the ``/resources`` its
    pages load; Hydra: its public OAuth 2.0 and OpenID endpoints). Everything else is answered 404. ``["/"]``
    forwards everything (the behaviour before the allow-list)."""
    account_pages: bool = False
    """Forward the provider's self-service account pages (Keycloak's ``/realms/{r}/account``)."""
    max_body_bytes: int = Field(default=256 * 1024, ge=0)
    """Largest request body forwarded (413 beyond it); no OAuth or login endpoint needs more."""
    body_timeout_seconds: float = Field(default=10.0, gt=0)
    """A request body must arrive whole within this many seconds (408 after it); it is read before an
    upstream connection is taken."""
    send_timeout_seconds: float = Field(default=30.0, gt=0)
    """A client that takes no part of a response for this long loses its connection (its upstream one is
    freed)."""
    pool_size: int = Field(default=100, ge=1)
    """Connections to the provider at most; a request waits up to the connect timeout for one, then 503."""
    max_concurrent_per_source: int = Field(default=32, ge=0)
    """Requests one source address (IPv6: per ``limits.ipv6_prefix_length`` prefix) may have in flight at
    the provider; more get 429 (0: no bound)."""
    connect_timeout_seconds: float | None = Field(default=None, gt=0)
    """Connecting to the provider (and waiting for a pool slot); default ``provider_timeout``."""
    read_timeout_seconds: float | None = Field(default=None, gt=0)
    """Each wait for the provider's answer data (not the whole exchange); default ``provider_timeout``."""

    @field_validator("allowed_paths")
    @classmethod
    def _absolute_prefixes(cls, value: list[str]) -> list[str]:
        for prefix in value:
            if not prefix.startswith("/"):
                raise ValueError("front_door.allowed_paths entries must start with '/'")
        return value


class Settings(BaseSettings):
    """Parsed configuration for one gateway fronting one provider."""

    model_config = SettingsConfigDict(
        env_prefix="DCR_",
        env_nested_delimiter="__",
        extra="forbid",  # and unknown DCR_* variables and file keys: see unknown_names()
        validate_default=True,
        hide_input_in_errors=True,  # a bad value may be a secret (HS256 key, Redis URL): never echo inputs
    )

    # which gateway this is
    deployment: str = "default"
    """Name of this gateway deployment (``production``, ``staging``), recorded in every client it registers or
    adopts; ``dcr-gateway clients`` acts only on its own deployment's clients, so gateways sharing a realm keep
    apart. Clients registered before deployments were recorded belong to ``default``."""

    # where the gateway listens and how it is reached
    host: str = "127.0.0.1"
    port: int = Field(default=8080, ge=1, le=65535)
    public_url: str = "http://127.0.0.1:8080"
    """The issuer's public origin (scheme://host[:port]) as clients see it."""
    mode: Mode = Mode.FRONT_DOOR
    trust_forwarded_for: bool = False
    """Front door: keep an incoming ``X-Forwarded-For`` and append to it (only behind a load balancer you trust);
    by default the gateway is the edge and replaces it, so clients cannot spoof their address to the provider."""
    block_native_registration: bool = True
    """Front door: answer 404 on the provider's own registration endpoints (Keycloak's
    ``/realms/{r}/clients-registrations/...``, Hydra's ``/oauth2/register``), so the gateway is the only way in."""
    blocked_paths: list[str] = Field(default_factory=list)
    """Front door: path prefixes answered 404 instead of proxied, e.g. ``["/admin"]`` to keep Keycloak's admin
    console and REST API off the public origin (administrators then use the provider's internal address)."""

    front_door: FrontDoorSettings = Field(default_factory=FrontDoorSettings)
    """Front door: the proxy's allow-list, body limits, timeouts and pool (``DCR_FRONT_DOOR__*``)."""

    # the provider
    provider: str = "hydra"
    """Adapter name: ``hydra``, ``keycloak``, ``memory`` or an entry point of group ``dcr_gateway.adapters``."""
    provider_url: str = "http://127.0.0.1:4444"
    """Internal URL of the provider's public listener (discovery is fetched and requests proxied there)."""
    provider_timeout: float = Field(default=10.0, gt=0)
    # the built-in adapters' own sections (adapters/*/settings.py); a third-party adapter's is added by
    # settings_class(): see adapters.settings
    keycloak: KeycloakSettings = Field(default_factory=KeycloakSettings)
    """``[keycloak]`` / ``DCR_KEYCLOAK__*``: the Keycloak adapter's settings."""
    hydra: HydraSettings = Field(default_factory=HydraSettings)
    """``[hydra]`` / ``DCR_HYDRA__*``: the Hydra adapter's settings."""

    # registration (RFC 7591)
    registration_path: str = "/register"
    """Registration endpoint path, relative to each issuer's path (``/register``, ``/realms/mcp/register``)."""
    max_body_bytes: int = 64 * 1024
    """Largest registration / RFC 7592 request body (413 past it)."""
    body_timeout_seconds: float = Field(default=10.0, gt=0)
    """Seconds a registration / RFC 7592 request body may take to arrive (408 past it, the connection closed)."""
    policy: PolicySettings = Field(default_factory=PolicySettings)
    """The registration policy (``[policy]`` / ``DCR_POLICY__*``, see :mod:`gateway.policy.settings`)."""
    rotate_registration_access_token: bool = False
    """RFC 7592 section 2.2: issue a new registration access token on every update (the old one stops working).
    Off by default: the OpenID Foundation's Brazil DCR tests expect the token to survive an update."""
    access: AccessSettings = Field(default_factory=AccessSettings)
    """Who may register, per issuer (``[access]`` / ``DCR_ACCESS__*``, see :mod:`gateway.access.settings`):
    ``open`` by default; initial access tokens and software statements (RFC 7591 sections 3 and 2.3)."""

    # MCP 2026-07-28 on the authorization path
    cimd: CimdSettings = Field(default_factory=CimdSettings)
    """Client ID Metadata Documents (``[cimd]`` / ``DCR_CIMD__*``, :mod:`gateway.cimd.settings`): on by default,
    any public https host; the fetcher's limits and the host allow/deny lists."""
    resources: ResourceSettings = Field(default_factory=ResourceSettings)
    """RFC 8707 protected resources per issuer (``[resources]`` / ``DCR_RESOURCES__*``,
    :mod:`gateway.rfc8707.resources`); empty: ``resource`` is not enforced."""

    # discovery (RFC 8414)
    discovery_refresh_seconds: float = Field(default=60.0, gt=0)
    """Also how often the provider's admin API is checked for ``/readyz`` while it works."""
    discovery_retry_seconds: float = Field(default=5.0, gt=0)
    """Also how often the admin API is checked again while it does not work."""

    # abuse limits: rate limits and a quota of managed clients (DCR_LIMITS__*)
    limits: LimitSettings = Field(default_factory=LimitSettings)

    # operations: the event loop, SIGTERM (gateway.lifecycle) and OpenTelemetry (gateway.tracing)
    event_loop: EventLoop = EventLoop.UVLOOP
    """The event loop ``dcr-gateway serve`` runs on: ``uvloop`` (default) or ``asyncio``; logged at start-up
    (``server.listening event_loop=...``)."""
    shutdown: ShutdownSettings = Field(default_factory=ShutdownSettings)
    """What SIGTERM does (``[shutdown]`` / ``DCR_SHUTDOWN__*``, :mod:`gateway.lifecycle`): readiness 503, drain,
    listeners closed, requests in flight finished within a bound."""
    tracing: TracingSettings = Field(default_factory=TracingSettings)
    """OpenTelemetry traces (``[tracing]`` / ``DCR_TRACING__*``, :mod:`gateway.tracing`): off unless enabled or
    ``OTEL_EXPORTER_OTLP_ENDPOINT`` is set; needs the ``tracing`` extra."""

    # browsers (MCP Inspector)
    cors_allowed_origins: list[str] = Field(default_factory=lambda: ["*"])

    # logging
    log_level: str = "INFO"
    log_format: Literal["auto", "json", "console"] = "auto"

    # operations: the management listener (metrics, probes) and the audit log
    management: ManagementSettings = Field(default_factory=ManagementSettings)
    """``[management]`` / ``DCR_MANAGEMENT__*``: ``GET /metrics``, ``/healthz``, ``/readyz`` on their own port."""
    audit: AuditSettings = Field(default_factory=AuditSettings)
    """``[audit]`` / ``DCR_AUDIT__*``: the audit log (logger ``dcr_gateway.audit``), on by default."""

    @field_validator("public_url")
    @classmethod
    def _public_origin(cls, value: str) -> str:
        return check_http_url(value, origin=True).rstrip("/")

    @field_validator("provider_url")
    @classmethod
    def _provider_url(cls, value: str) -> str:
        return check_http_url(value, origin=False).rstrip("/")

    @field_validator("deployment")
    @classmethod
    def _deployment_name(cls, value: str) -> str:
        if not _DEPLOYMENT_NAME.fullmatch(value):
            raise ValueError(
                "deployment must be 1 to 63 characters: lowercase letters, digits, '.', '_' or '-', starting with a "
                "letter or digit (e.g. production, staging-eu)"
            )
        return value

    @field_validator("registration_path")
    @classmethod
    def _leading_slash(cls, value: str) -> str:
        if not value.startswith("/"):
            raise ValueError("registration_path must start with '/'")
        return value.rstrip("/") or "/register"

    def section(self, name: str, model: type[_Section]) -> _Section:
        """The validated settings section ``name`` of an adapter (:mod:`adapters.settings`): ``[name]`` in TOML,
        ``DCR_{NAME}__*`` in the environment. A section nobody set holds the model's defaults; a model with
        required fields then raises :class:`ConfigurationError` naming them."""
        value = getattr(self, name, None)
        if value is None:
            try:
                value = model.model_validate({})
            except ValidationError as exc:
                problems = [
                    f"{_env_name((name, *map(str, error['loc'])))} ({_toml_key((name, *map(str, error['loc'])))} in "
                    f"TOML): {error['msg']}"
                    for error in exc.errors(include_url=False, include_input=False)
                ]
                raise ConfigurationError(problems) from None
        if not isinstance(value, model):
            raise TypeError(f"settings section {name!r} holds {type(value).__name__}, not {model.__name__}")
        return value

    @model_validator(mode="after")
    def _management_port_apart(self) -> Settings:
        if self.management.enabled and self.management.port == self.port:
            raise ValueError("management.port must differ from port (the public listener's)")
        return self

    @model_validator(mode="after")
    def _keycloak_admin_default(self) -> Settings:
        if self.keycloak.admin_url is None:
            self.keycloak.admin_url = self.provider_url
        return self

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        env = _EnvSource(settings_cls)
        sources: list[PydanticBaseSettingsSource] = [init_settings, env]
        config_file = _CONFIG_FILE.get() or os.environ.get(CONFIG_FILE_VARIABLE)
        file_source: TomlConfigSettingsSource | None = None
        if config_file and Path(config_file).is_file():
            try:
                file_source = TomlConfigSettingsSource(settings_cls, toml_file=Path(config_file))
            except tomllib.TOMLDecodeError as exc:
                raise ConfigFileError(f"configuration file {config_file!r} is not valid TOML: {exc}") from None
            sources.append(file_source)
        check = _UnknownNamesCheck(settings_cls, config_file=config_file, file_source=file_source)
        return (check, *sources)


# ------------------------------------------------------------------------------------------- errors


class ConfigurationError(ValueError):
    """Settings that cannot start a gateway: one line per problem, each naming the ``DCR_*`` variable and the
    TOML key (or the unknown name and the closest valid one) and what is allowed. Never a value: it may be a
    secret."""

    def __init__(self, problems: Sequence[str]) -> None:
        self.problems = list(problems)
        super().__init__("\n".join(self.problems))


class ConfigFileError(ConfigurationError):
    """The named configuration file does not exist or cannot be read."""

    def __init__(self, problem: str) -> None:
        super().__init__([problem])


def load_settings(config_file: str | None = None, **overrides: Any) -> Settings:
    """Parse settings once, at start-up (``DCR_*`` environment, then the optional TOML file).

    A named file that does not exist is an error, never a silent start on defaults. Every failure is a
    :class:`ConfigurationError` (one line per problem).
    """
    config_file = config_file or os.environ.get(CONFIG_FILE_VARIABLE)
    if config_file and not Path(config_file).is_file():
        raise ConfigFileError(f"configuration file {config_file!r} does not exist ({CONFIG_FILE_VARIABLE}, --config)")
    token = _CONFIG_FILE.set(config_file)
    cls = settings_class()
    try:
        return cls(**overrides)
    except ConfigurationError as exc:  # unknown names: report the bad values too, all in one go
        raise ConfigurationError(exc.problems + _value_problems(cls, overrides)) from None
    except ValidationError as exc:
        raise ConfigurationError(describe_validation_error(exc, cls)) from None
    except SettingsError as exc:  # a value the names check let through and the environment source could not parse
        raise ConfigurationError([str(exc)]) from None
    finally:
        _CONFIG_FILE.reset(token)


def settings_class() -> type[Settings]:
    """:class:`Settings` with a section for every installed third-party adapter that declares its settings
    (:func:`adapters.settings.adapter_settings`), named after it: validated by the adapter's model, with its keys
    known to the unknown-names check. The built-in adapters' sections are fields of :class:`Settings` itself."""
    extra = settings_sections(skip=Settings.model_fields)  # the built-ins' sections are fields already
    return _with_sections(tuple(sorted(extra.items())))


@functools.cache
def _with_sections(sections: tuple[tuple[str, type[BaseModel]], ...]) -> type[Settings]:
    if not sections:
        return Settings
    fields: dict[str, Any] = {name: (model | None, None) for name, model in sections}
    cls: type[Settings] = create_model("Settings", __base__=Settings, __module__=__name__, **fields)
    return cls


def _value_problems(cls: type[Settings], overrides: Mapping[str, Any]) -> list[str]:
    """The value errors of the settings, with the unknown names (already reported) left out."""
    token = _SKIP_NAMES_CHECK.set(True)
    try:
        cls(**overrides)
    except ValidationError as exc:
        known = ValidationError.from_exception_data(
            exc.title,
            [error for error in exc.errors() if error["type"] != "extra_forbidden"],  # type: ignore[misc]
        )
        return describe_validation_error(known, cls)
    except (SettingsError, ConfigurationError):
        return []
    finally:
        _SKIP_NAMES_CHECK.reset(token)
    return []


# ------------------------------------------------------------------------------------ names of settings

CONFIG_FILE_VARIABLE = "DCR_CONFIG_FILE"
ENV_PREFIX = "DCR_"
NESTED_DELIMITER = "__"
OTHER_VARIABLES = frozenset(
    {
        CONFIG_FILE_VARIABLE,
        "DCR_TEST_PROVIDERS",  # the test suite: local or container providers
        "DCR_TEST_ONLY_PROVIDER",  # the test suite: one provider's tests only (a cell of make matrix)
        "DCR_KEYCLOAK_VERSION",  # deploy/providers/*.sh and devstack: the provider version and database
        "DCR_HYDRA_VERSION",
        "DCR_KEYCLOAK_DB",
        "DCR_HYDRA_DB",
        "DCR_POSTGRES_BINDIR",  # devstack.postgres
        "DCR_CONFORMANCE_PASSWORD",  # dcr-gateway conformance
        "DCR_CONFORMANCE_INITIAL_ACCESS_TOKEN",
        "DCR_CACHE_DIR",  # deploy/providers/*.sh
        "DCR_JAVA_HOME",
        "DCR_JVM_DIR",
        "DCR_PYTHON",
    }
)
"""``DCR_*`` variables that are not gateway settings: read by the tools around it, never an error."""
OTHER_PREFIXES = ("DCR_NGINX_",)
"""Prefixes of such variables (deploy/nginx/path-routing.conf.template)."""
_MAX_DEPTH = 8


@dataclass(frozen=True)
class _Node:
    """What a setting's annotation holds: a nested model, a mapping (any key), a sequence, anything, or a value."""

    kind: Literal["model", "mapping", "sequence", "any", "value"]
    model: type[BaseModel] | None = None
    item: Any = None
    """The value annotation of a mapping, the item annotation of a sequence."""
    strings: bool = False
    """A sequence of strings (or a value that is one): a comma-separated list is accepted from the environment."""


def _node(annotation: Any) -> _Node:
    origin = get_origin(annotation)
    args = get_args(annotation)
    node = _Node("value")
    if origin is Annotated:
        node = _node(args[0])
    elif origin is Union or origin is types.UnionType:
        options = [_node(arg) for arg in args if arg is not type(None)]
        rank = ("model", "mapping", "sequence", "any", "value")
        node = min(options, key=lambda option: rank.index(option.kind), default=node)
    elif annotation is Any:
        node = _Node("any")
    elif isinstance(annotation, type) and issubclass(annotation, BaseModel):
        node = _Node("model", model=annotation)
    elif annotation is dict or origin is dict or (isinstance(origin, type) and issubclass(origin, Mapping)):
        node = _Node("mapping", item=args[1] if len(args) == 2 else Any)
    elif annotation in (list, tuple, set, frozenset) or origin in (list, tuple, set, frozenset, Sequence):
        items = [arg for arg in args if arg is not Ellipsis]
        item = items[0] if items else Any
        node = _Node("sequence", item=item, strings=item is str)
    return node


def _fields(model: type[BaseModel]) -> dict[str, FieldInfo]:
    return dict(model.model_fields)


def _toml_key(path: Sequence[str | int]) -> str:
    """``keycloak.client_id``, ``access.issuers."/realms/mcp".mode``, ``...trusted_issuers[0].issuer``."""
    out = ""
    for part in path:
        if isinstance(part, int):
            out += f"[{part}]"
        else:
            text = part if part.replace("_", "").replace("-", "").isalnum() else json.dumps(part)
            out += f".{text}" if out else text
    return out


def _env_name(path: Sequence[str | int]) -> str:
    return ENV_PREFIX + NESTED_DELIMITER.join(str(part).upper() for part in path if not isinstance(part, int))


def _closest(name: str, candidates: Sequence[str]) -> str | None:
    matches = difflib.get_close_matches(name, candidates, n=1, cutoff=0.6)
    return matches[0] if matches else None


def _env_candidates(node: _Node, prefix: tuple[str | None, ...] = ()) -> Iterator[tuple[str | None, ...]]:
    """Every variable path below ``node``; ``None`` stands for a mapping's key (any name)."""
    if len(prefix) > _MAX_DEPTH:
        return
    if node.kind == "model" and node.model is not None:
        for name, info in _fields(node.model).items():
            path = (*prefix, name)
            yield path
            yield from _env_candidates(_node(info.annotation), path)
    elif node.kind == "mapping":
        path = (*prefix, None)
        item = _node(node.item)
        if item.kind in ("value", "sequence", "any"):
            yield path
        yield from _env_candidates(item, path)


def _resolve(model: type[BaseModel], segments: Sequence[str]) -> _Node | None:
    """The setting a variable's ``__``-separated (lower-cased) segments name, or ``None`` when there is none."""
    node = _Node("model", model=model)
    for segment in segments:
        if node.kind == "model" and node.model is not None:
            info = _fields(node.model).get(segment)
            if info is None:
                return None
            node = _node(info.annotation)
        elif node.kind == "mapping" and segment:
            node = _node(node.item)
        elif node.kind == "any" and segment:
            continue
        else:
            return None
    return node


def _value_problem(name: str, node: _Node, value: str) -> str | None:
    """A variable's value that the environment source could not parse: which form is expected (never the value)."""
    if node.kind in ("model", "mapping"):
        try:
            parsed = json.loads(value)
        except ValueError:
            parsed = None
        if not isinstance(parsed, dict):
            return f'{name}: expected a JSON object, e.g. {name}=\'{{"key": "value"}}\''
    elif node.kind == "sequence":
        if node.strings and not value.lstrip().startswith("["):
            return None  # a comma-separated list
        try:
            parsed = json.loads(value)
        except ValueError:
            parsed = None
        if not isinstance(parsed, list):
            example = "a,b or a JSON list" if node.strings else "a JSON list"
            return f'{name}: expected {example}, e.g. {name}=\'["a", "b"]\''
    return None


def unknown_names(
    settings_cls: type[BaseModel],
    *,
    environ: Mapping[str, str] | None = None,
    file_data: Mapping[str, Any] | None = None,
    file_name: str = "the configuration file",
) -> list[str]:
    """One line for every ``DCR_*`` variable in ``environ`` and every key of ``file_data`` (the parsed TOML file)
    that names no setting of ``settings_cls``, with the closest valid name (and for variables whose value the
    environment source could not parse, the form expected). Derived from the models' fields, so new settings
    need no edit here. Variables of the tools around the gateway (:data:`OTHER_VARIABLES`) are not settings."""
    problems: list[str] = []
    root = _Node("model", model=settings_cls)
    for name, value in sorted((environ if environ is not None else os.environ).items()):
        upper = name.upper()
        if not upper.startswith(ENV_PREFIX) or upper in OTHER_VARIABLES or upper.startswith(OTHER_PREFIXES):
            continue
        segments = upper.removeprefix(ENV_PREFIX).lower().split(NESTED_DELIMITER)
        node = _resolve(settings_cls, segments)
        if node is None:
            candidates = [
                ENV_PREFIX
                + NESTED_DELIMITER.join(
                    (segments[i] if i < len(segments) else "<key>") if part is None else part
                    for i, part in enumerate(path)
                ).upper()
                for path in _env_candidates(root)
            ] + [CONFIG_FILE_VARIABLE]
            suggestion = _closest(upper, candidates)
            hint = (
                f"did you mean {suggestion}?"
                if suggestion
                else "no setting has that name (nested settings are joined with '__', e.g. DCR_KEYCLOAK__CLIENT_ID)"
            )
            problems.append(f"unknown environment variable {name}: {hint}")
            continue
        problem = _value_problem(name, node, value)
        if problem:
            problems.append(problem)
    if file_data is not None:
        problems += _unknown_keys(file_data, settings_cls, (), file_name)
    return problems


def _unknown_keys(data: Mapping[str, Any], model: type[BaseModel], path: tuple[str | int, ...], file: str) -> list[str]:
    problems: list[str] = []
    fields = _fields(model)
    for key, value in data.items():
        info = fields.get(key)
        if info is None:
            suggestion = _closest(key, list(fields))
            where = f"[{_toml_key(path)}]" if path else "the top level"
            if suggestion:
                hint = f"did you mean {_toml_key((*path, suggestion))}?"
            elif len(fields) <= 12:
                hint = f"valid keys of {where}: {', '.join(fields)}"
            else:
                hint = f"no setting of {where} has that name"
            problems.append(f"unknown setting {_toml_key((*path, key))} in {file}: {hint}")
        else:
            problems += _unknown_in_value(value, _node(info.annotation), (*path, key), file)
    return problems


def _unknown_in_value(value: Any, node: _Node, path: tuple[str | int, ...], file: str) -> list[str]:
    if node.kind == "model" and node.model is not None and isinstance(value, Mapping):
        return _unknown_keys(value, node.model, path, file)
    problems: list[str] = []
    if node.kind == "mapping" and isinstance(value, Mapping):
        item = _node(node.item)
        for key, entry in value.items():
            problems += _unknown_in_value(entry, item, (*path, str(key)), file)
    elif node.kind == "sequence" and isinstance(value, list):
        item = _node(node.item)
        for index, entry in enumerate(value):
            problems += _unknown_in_value(entry, item, (*path, index), file)
    return problems


def describe_validation_error(exc: ValidationError, settings_cls: type[BaseModel]) -> list[str]:
    """One line per error: ``DCR_PORT (TOML port): Input should be ...``; unknown keys with the closest name."""
    lines: list[str] = []
    for error in exc.errors(include_url=False, include_input=False):
        loc = tuple(part for part in error["loc"] if isinstance(part, (str, int)))
        message = str(error["msg"]).removeprefix("Value error, ")
        if error["type"] == "extra_forbidden" and loc:
            parent = _node_at(settings_cls, loc[:-1])
            names = list(_fields(parent.model)) if parent and parent.kind == "model" and parent.model else []
            suggestion = _closest(str(loc[-1]), names)
            hint = f"did you mean {_toml_key((*loc[:-1], suggestion))}?" if suggestion else "no setting has that name"
            lines.append(f"unknown setting {_toml_key(loc)} ({_env_name(loc)}): {hint}")
            continue
        node = _node_at(settings_cls, loc)
        if not loc:
            lines.append(message)
        elif node is not None and node.kind == "model":
            lines.append(f"{_env_name(loc)}__* ([{_toml_key(loc)}] in TOML): {message}")
        else:
            lines.append(f"{_env_name(loc)} ({_toml_key(loc)} in TOML): {message}")
    return lines


def _node_at(settings_cls: type[BaseModel], loc: Sequence[str | int]) -> _Node | None:
    node: _Node | None = _Node("model", model=settings_cls)
    for part in loc:
        if node is None:
            return None
        if isinstance(part, int):
            node = _node(node.item) if node.kind == "sequence" else None
        elif node.kind == "model" and node.model is not None:
            info = _fields(node.model).get(part)
            node = _node(info.annotation) if info else None
        elif node.kind == "mapping":
            node = _node(node.item)
        else:
            return None
    return node


# ------------------------------------------------------------------------------------------ sources


class _EnvSource(EnvSettingsSource):
    """pydantic-settings' environment source, plus comma-separated lists: ``DCR_KEYCLOAK__REALMS=mcp,partners``
    is ``["mcp", "partners"]`` (a JSON list still works)."""

    def decode_complex_value(self, field_name: str, field: FieldInfo, value: Any) -> Any:
        try:
            return super().decode_complex_value(field_name, field, value)
        except ValueError:
            if (
                field is not None
                and isinstance(value, str)
                and not value.lstrip().startswith("[")
                and _node(field.annotation).strings
            ):
                return [item.strip() for item in value.split(",") if item.strip()]
            raise


class _UnknownNamesCheck(PydanticBaseSettingsSource):
    """First of the sources: stops the settings with every unknown ``DCR_*`` variable and file key at once."""

    def __init__(
        self, settings_cls: type[BaseSettings], *, config_file: str | None, file_source: TomlConfigSettingsSource | None
    ) -> None:
        super().__init__(settings_cls)
        self._config_file = config_file
        self._file_source = file_source

    def get_field_value(self, field: FieldInfo, field_name: str) -> tuple[Any, str, bool]:
        return None, field_name, False

    def __call__(self) -> dict[str, Any]:
        if _SKIP_NAMES_CHECK.get():
            return {}
        problems: list[str] = []
        if self._config_file and self._file_source is None:
            problems.append(f"{CONFIG_FILE_VARIABLE}: configuration file {self._config_file!r} does not exist")
        file_data = self._file_source.toml_data if self._file_source is not None else None
        file_name = Path(self._config_file).name if self._config_file else "the configuration file"
        problems += unknown_names(self.settings_cls, file_data=file_data, file_name=file_name)
        if problems:
            raise ConfigurationError(problems)
        return {}
