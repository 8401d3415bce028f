"""Client profiles: what each MCP client type sends to the registration endpoint and then does (data files).

Every ``profiles/*.json`` except ``bad-registrations.json`` is one client type (facts from the MCP clients'
SDKs and issue trackers, cited in each file's ``source``): the RFC 7591 section 2 registration body it sends,
the redirect URI and scope it then uses at the authorization endpoint, whether it runs in a browser (CORS) and
whether it changes the port of a loopback redirect (RFC 8252 section 7.3). ``bad-registrations.json`` is a
table of registrations a safe endpoint refuses, each with the exact RFC 7591 section 3.2.2 error expected.

Bodies may hold placeholders the runner fills at run time: a string that is exactly ``"{name}"`` is replaced
by the variable's value (any JSON value; ``None`` drops the member), and ``{name}`` inside a longer string by
its text. Variables: ``as_scopes`` (the server's ``scopes_supported``, space-separated), ``registered_scope``
(in the flow: the ``scope`` the registration answer names, else the one requested; RFC 7591 section 2 lets the
server replace it, and a client asking for more gets ``invalid_scope``), ``random_port``, ``generated_jwks`` /
``generated_private_jwks`` (a key pair made for the run).

Everything here is pure: parsing and substitution, no I/O beyond reading the package's own data files.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any

STEPS = ("discovery", "register", "authorize", "token", "refresh", "other-port")
"""The columns of the client matrix, in the order a client goes through them."""
CIMD_STEPS = ("discovery", "document", "authorize", "token", "refresh", "other-port")
"""The columns of a client identified by its Client ID Metadata Document: no registration, its document instead."""
ALL_STEPS = tuple(dict.fromkeys(STEPS + CIMD_STEPS))
BAD_REGISTRATIONS_FILE = "bad-registrations.json"
_PLACEHOLDER = re.compile(r"\{([a-z_]+)\}")


class ProfileError(ValueError):
    """A profile file does not have the expected shape."""


@dataclass(frozen=True)
class Flow:
    """What the client does after registering (RFC 6749 section 4.1 with PKCE and RFC 8707 ``resource``)."""

    redirect_uri: str
    """The redirect URI it sends on the authorization request (one of those it registered, placeholders allowed)."""
    scope: str | None
    """The ``scope`` of its authorization request, ``None`` for none (placeholders allowed)."""
    other_port: bool = False
    """Whether it listens on another port than the registered one (RFC 8252 section 7.3 loopback IP redirects)."""


@dataclass(frozen=True)
class MetadataDocument:
    """A client's Client ID Metadata Document (draft-ietf-oauth-client-id-metadata-document section 4) as the
    client publishes it."""

    published_url: str
    """Where the client publishes it: its ``client_id`` on every authorization server (``--cimd-published``)."""
    document: Mapping[str, Any]
    """Its members as published (``client_id`` is ``published_url``; served locally, it is rewritten to the local
    URL)."""


@dataclass(frozen=True)
class Profile:
    """One client type: its registration body and its flow, as data."""

    name: str
    title: str
    source: str
    registration: Mapping[str, Any]
    flow: Flow
    expected_auth_method: str | None = None
    """The ``token_endpoint_auth_method`` the response must carry; default: the requested one, else RFC 7591's
    ``client_secret_basic``."""
    browser_origin: str | None = None
    """Set for clients running in a browser: discovery and registration must answer CORS for this origin."""
    trim_grant_types: bool = False
    """The client drops grant types the server does not list in ``grant_types_supported`` (VS Code)."""
    abort_on_5xx: bool = False
    """A 5xx on any probed well-known URL aborts the client's discovery (MCP TypeScript SDK)."""
    oidc_fields: tuple[str, ...] = ()
    """Members the client requires in an OpenID discovery document (MCP TypeScript SDK)."""
    expected_failures: Mapping[str, Mapping[str, str]] = field(default_factory=dict)
    """Provider name -> step -> reason: what that provider legitimately cannot do (a strict expected failure)."""
    initial_access_token: bool = False
    """The client registers with an initial access token (RFC 7591 section 3): servers commonly refuse its
    privileged metadata (``jwks``) to anonymous callers. Without a token given to the suite, its row is n/a."""
    cimd: MetadataDocument | None = None
    """Set for a client that identifies itself by a Client ID Metadata Document instead of registering (MCP
    2025-11-25 and later): ``registration`` is then empty, and the row has a ``document`` step instead."""


@dataclass(frozen=True)
class BadRegistration:
    """A registration request a safe endpoint refuses, with the exact answer expected (RFC 7591 section 3.2.2)."""

    name: str
    title: str
    status: int
    error: str
    body: Any = None
    """A JSON value to send (placeholders allowed); ignored when ``raw`` or ``oversized_bytes`` is set."""
    raw: str | None = None
    """A body sent verbatim as ``application/json`` (non-JSON, ``null``, ``NaN``...)."""
    oversized_bytes: int | None = None
    """Send a syntactically valid JSON object of about this many bytes."""


def _require(data: Mapping[str, Any], key: str, kind: type | tuple[type, ...], where: str) -> Any:
    value = data.get(key)
    if not isinstance(value, kind):
        raise ProfileError(f"{where}: {key!r} is missing or not a {kind}")
    return value


def parse_profile(data: Mapping[str, Any], where: str = "profile") -> Profile:
    """A :class:`Profile` from one file's JSON object."""
    name = _require(data, "name", str, where)
    cimd = _metadata_document(data["cimd"], f"{where}.cimd") if "cimd" in data else None
    registration = (data.get("registration") or {}) if cimd is not None else _require(data, "registration", dict, where)
    flow = _require(data, "flow", dict, where)
    discovery = data.get("discovery") or {}
    expected_failures = data.get("expected_failures") or {}
    for provider, steps in expected_failures.items():
        unknown = set(steps) - set(CIMD_STEPS if cimd is not None else STEPS)
        if unknown:
            raise ProfileError(f"{where}: expected_failures[{provider!r}] names unknown steps {sorted(unknown)}")
    return Profile(
        name=name,
        title=str(data.get("title") or name),
        source=str(data.get("source") or ""),
        registration=registration,
        flow=Flow(
            redirect_uri=_require(flow, "redirect_uri", str, f"{where}.flow"),
            scope=flow.get("scope"),
            other_port=bool(flow.get("other_port", False)),
        ),
        expected_auth_method=(data.get("expect") or {}).get("token_endpoint_auth_method"),
        browser_origin=data.get("browser_origin"),
        trim_grant_types=bool(data.get("trim_grant_types", False)),
        abort_on_5xx=bool(discovery.get("abort_on_5xx", False)),
        oidc_fields=tuple(discovery.get("oidc_fields") or ()),
        expected_failures={provider: dict(steps) for provider, steps in expected_failures.items()},
        initial_access_token=bool(data.get("initial_access_token", False)),
        cimd=cimd,
    )


def _metadata_document(data: Any, where: str) -> MetadataDocument:
    if not isinstance(data, Mapping):
        raise ProfileError(f"{where}: not an object")
    url = _require(data, "published_url", str, where)
    document = _require(data, "document", dict, where)
    if document.get("client_id") != url:
        raise ProfileError(f"{where}: the document's client_id is not its published_url {url!r}")
    if not isinstance(document.get("redirect_uris"), list) or not document["redirect_uris"]:
        raise ProfileError(f"{where}: the document has no redirect_uris")
    return MetadataDocument(published_url=url, document=document)


def parse_bad_registrations(data: Mapping[str, Any], where: str = BAD_REGISTRATIONS_FILE) -> list[BadRegistration]:
    """The table of refused registrations from ``bad-registrations.json``."""
    cases = _require(data, "cases", list, where)
    parsed = []
    for index, case in enumerate(cases):
        at = f"{where}: cases[{index}]"
        parsed.append(
            BadRegistration(
                name=_require(case, "name", str, at),
                title=str(case.get("title") or case["name"]),
                status=_require(case, "status", int, at),
                error=_require(case, "error", str, at),
                body=case.get("body"),
                raw=case.get("raw"),
                oversized_bytes=case.get("oversized_bytes"),
            )
        )
    return parsed


def _profile_files(directory: Path | None) -> list[tuple[str, str]]:
    if directory is not None:
        return [(path.name, path.read_text()) for path in sorted(directory.glob("*.json"))]
    root = resources.files("gateway.conformance").joinpath("profiles")
    entries = sorted((entry for entry in root.iterdir() if entry.name.endswith(".json")), key=lambda e: e.name)
    return [(entry.name, entry.read_text()) for entry in entries]


def load_profiles(directory: Path | None = None) -> tuple[list[Profile], list[BadRegistration]]:
    """The client profiles and the refused registrations shipped in the package (or found in ``directory``)."""
    profiles: list[Profile] = []
    bad: list[BadRegistration] = []
    for file_name, text in _profile_files(directory):
        try:
            data = json.loads(text)
        except json.JSONDecodeError as exc:
            raise ProfileError(f"{file_name}: not JSON: {exc}") from exc
        if file_name == BAD_REGISTRATIONS_FILE:
            bad.extend(parse_bad_registrations(data, file_name))
        else:
            profiles.append(parse_profile(data, file_name))
    names = [profile.name for profile in profiles] + [case.name for case in bad]
    duplicates = sorted({name for name in names if names.count(name) > 1})
    if duplicates:
        raise ProfileError(f"duplicate profile names: {duplicates}")
    return profiles, bad


def substitute(value: Any, variables: Mapping[str, Any]) -> Any:
    """``value`` with its placeholders filled from ``variables`` (see the module docstring).

    A string that is exactly ``"{name}"`` becomes the variable's value; a dict member whose value becomes
    ``None`` is dropped. An unknown placeholder is an error, not a silent literal.
    """
    if isinstance(value, str):
        whole = _PLACEHOLDER.fullmatch(value)
        if whole:
            return _lookup(variables, whole.group(1))
        return _PLACEHOLDER.sub(lambda match: str(_lookup(variables, match.group(1))), value)
    if isinstance(value, Mapping):
        filled = {key: substitute(item, variables) for key, item in value.items()}
        return {key: item for key, item in filled.items() if item is not None}
    if isinstance(value, list):
        return [substitute(item, variables) for item in value]
    return value


def _lookup(variables: Mapping[str, Any], name: str) -> Any:
    if name not in variables:
        raise ProfileError(f"unknown placeholder {{{name}}}; known: {sorted(variables)}")
    return variables[name]
