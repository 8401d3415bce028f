"""Pure mapping between RFC 7591 client metadata and Hydra's OAuth 2.0 client (``/admin/clients``).

Hydra has a field for almost every RFC 7591 member. What it lacks (``software_id``, ``software_version``,
``application_type``) and the gateway's own data go into the client's free JSON ``metadata`` under
:data:`METADATA_KEY`; the presence of that key marks the client as managed by the gateway.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from typing import Any

from adapters.base import ClientUsage, ManagedClient, NewClient, SettingDifference, UnmanagedClient
from adapters.bindings import admitted_kept, document_gateway_data, merged_redirect_uris
from gateway.oauth.metadata import ClientMetadata

METADATA_KEY = "dcr_gateway"
"""Key in Hydra's client ``metadata`` holding the gateway's data; its presence marks a managed client."""

FORMAT_VERSION = 1

DIRECT_FIELDS = (
    "redirect_uris",
    "grant_types",
    "response_types",
    "token_endpoint_auth_method",
    "client_name",
    "client_uri",
    "logo_uri",
    "scope",
    "contacts",
    "tos_uri",
    "policy_uri",
    "jwks_uri",
    "jwks",
    "post_logout_redirect_uris",
)
"""RFC 7591 / OIDC members Hydra stores in a field of the same name."""

EXTRA_FIELDS = ("software_id", "software_version", "application_type")
"""Members Hydra has no field for: kept in ``metadata``."""


DOCUMENT_URL = "document_url"
"""Key in the gateway's ``metadata`` entry holding a document client's URL (its ``client_id`` towards clients,
draft-ietf-oauth-client-id-metadata-document); the Hydra client's own id is derived from it."""
ADMITTED = "admitted_redirect_uris"
"""Key in the gateway's ``metadata`` entry listing the redirect URIs admitted at run time (RFC 8252 section 7.3),
oldest first: they are in Hydra's ``redirect_uris`` but are no registered metadata."""


def to_hydra(client: NewClient, *, stored_id: str | None = None) -> dict[str, Any]:
    """The body of ``POST /admin/clients`` (or ``PUT /admin/clients/{id}``) for a new registration; with
    ``stored_id``, for the document client of the URL ``client.client_id``, stored under ``stored_id``."""
    registered = client.metadata.registered()
    body: dict[str, Any] = {"client_id": stored_id or client.client_id}
    if client.client_secret is not None:
        body["client_secret"] = client.client_secret
    for name in DIRECT_FIELDS:
        if name in registered:
            body[name] = registered[name]
    body["metadata"] = {
        METADATA_KEY: {
            "managed": True,
            "v": FORMAT_VERSION,
            "client_id_issued_at": client.client_id_issued_at,
            "client_secret_expires_at": client.client_secret_expires_at,
            "extra": {name: registered[name] for name in EXTRA_FIELDS if name in registered},
            "gateway": document_gateway_data(client) if stored_id else dict(client.gateway_data),
        }
    }
    if stored_id:
        body["metadata"][METADATA_KEY][DOCUMENT_URL] = client.client_id
    # Consent stays on: skipping it would let any registered client obtain tokens silently.
    body["skip_consent"] = False
    return body


def replacing(body: dict[str, Any], current: dict[str, Any]) -> dict[str, Any]:
    """``body`` (from :func:`to_hydra`) as the full replacement of ``current``: what is adapter state rather than
    registered metadata carries over, so a replacement never undoes it behind another instance's cache: the
    ``audience`` list (RFC 8707 resources bound to the client) and the admitted redirect URIs that still derive
    from a registered one."""
    audience = current.get("audience")
    if isinstance(audience, list) and audience:
        body["audience"] = list(audience)
    registered = list(body.get("redirect_uris") or [])
    kept = admitted_kept(_ours(current).get(ADMITTED) or [], registered)
    if kept:
        body["redirect_uris"] = merged_redirect_uris(registered, kept)
        body["metadata"][METADATA_KEY][ADMITTED] = kept
    return body


def _ours(hydra_client: dict[str, Any]) -> dict[str, Any]:
    metadata = hydra_client.get("metadata")
    ours = metadata.get(METADATA_KEY) if isinstance(metadata, dict) else None
    return ours if isinstance(ours, dict) else {}


def document_url_of(hydra_client: dict[str, Any]) -> str | None:
    """The document URL of a managed document client, ``None`` for any other client."""
    url = _ours(hydra_client).get(DOCUMENT_URL)
    return url if isinstance(url, str) and is_managed(hydra_client) else None


def admitted_of(hydra_client: dict[str, Any]) -> list[str]:
    """The redirect URIs admitted at run time (:data:`ADMITTED`)."""
    admitted = _ours(hydra_client).get(ADMITTED)
    return [uri for uri in admitted if isinstance(uri, str)] if isinstance(admitted, list) else []


def is_managed(hydra_client: dict[str, Any]) -> bool:
    """Whether the gateway created (or adopted) this Hydra client."""
    metadata = hydra_client.get("metadata")
    return (
        isinstance(metadata, dict)
        and isinstance(metadata.get(METADATA_KEY), dict)
        and bool(metadata[METADATA_KEY].get("managed"))
    )


def _epoch(timestamp: Any) -> int | None:
    if not isinstance(timestamp, str):
        return None
    try:
        return int(datetime.fromisoformat(timestamp.replace("Z", "+00:00")).timestamp())
    except ValueError:
        return None


def from_hydra(hydra_client: dict[str, Any]) -> ManagedClient:
    """A Hydra client as RFC 7591 metadata. Hydra's own values win: they are what it enforces."""
    ours = (hydra_client.get("metadata") or {}).get(METADATA_KEY) or {}
    fields: dict[str, Any] = {}
    admitted = set(admitted_of(hydra_client))
    for name in DIRECT_FIELDS:
        value = hydra_client.get(name)
        if name == "redirect_uris" and isinstance(value, list) and admitted:
            value = [uri for uri in value if uri not in admitted]  # admitted at run time, not registered
        if value in (None, "", [], {}) or (name == "jwks" and not (value or {}).get("keys")):
            continue
        fields[name] = value
    fields.update(ours.get("extra") or {})
    issued_at = ours.get("client_id_issued_at") or _epoch(hydra_client.get("created_at")) or 0
    secret = hydra_client.get("client_secret") or None
    return ManagedClient(
        client_id=document_url_of(hydra_client) or str(hydra_client["client_id"]),
        metadata=ClientMetadata.model_validate(fields),
        client_id_issued_at=int(issued_at),
        client_secret=secret,
        client_secret_expires_at=int(ours.get("client_secret_expires_at") or 0),
        gateway_data=dict(ours.get("gateway") or {}),
    )


# ------------------------------------------------------------------------------------ client hygiene

PRIVILEGED_GRANTS = {
    "client_credentials": "client_credentials grant (tokens without a user)",
    "urn:ietf:params:oauth:grant-type:jwt-bearer": "jwt-bearer grant (RFC 7523 assertions)",
    "password": "password grant",
    "implicit": "implicit grant",
}
"""Grant types that make a client more than what an anonymous RFC 7591 registration may get."""


def usage_from_hydra(hydra_client: dict[str, Any]) -> ClientUsage:
    """What Hydra can tell about a client's use: its record's ``created_at`` and ``updated_at``. Its admin API
    lists consent sessions and tokens only per subject, never per client, so sessions stay unknown."""
    return ClientUsage(
        created_at=_epoch(hydra_client.get("created_at")),
        updated_at=_epoch(hydra_client.get("updated_at")),
    )


def hydra_labels(hydra_client: dict[str, Any]) -> dict[str, str]:
    """The top-level scalar values of the client's ``metadata`` as strings (JSON spelling for booleans)."""
    metadata = hydra_client.get("metadata")
    labels: dict[str, str] = {}
    if isinstance(metadata, dict):
        for key, value in metadata.items():
            if isinstance(value, bool):
                labels[str(key)] = "true" if value else "false"
            elif isinstance(value, str | int | float):
                labels[str(key)] = str(value)
    return labels


def hydra_privileges(hydra_client: dict[str, Any]) -> tuple[str, ...]:
    """Why adopting this client would put a privileged client under the gateway's lifecycle."""
    privileges = [PRIVILEGED_GRANTS[g] for g in hydra_client.get("grant_types") or [] if g in PRIVILEGED_GRANTS]
    if hydra_client.get("skip_consent"):
        privileges.append("skips consent")
    return tuple(privileges)


def hydra_differences(hydra_client: dict[str, Any]) -> tuple[SettingDifference, ...]:
    """Where the client differs from what :func:`to_hydra` gives every managed client."""
    if hydra_client.get("skip_consent"):
        return (SettingDifference("skip_consent", "true", "false", "the user consents to every managed client"),)
    return ()


def unmanaged_from_hydra(hydra_client: dict[str, Any]) -> UnmanagedClient:
    """An adoption candidate (no secret: Hydra returns none on reads anyway)."""
    return UnmanagedClient(
        client_id=str(hydra_client["client_id"]),
        client_name=hydra_client.get("client_name") or None,
        labels=hydra_labels(hydra_client),
        privileges=hydra_privileges(hydra_client),
        differences=hydra_differences(hydra_client),
    )


def adoption_patch(
    hydra_client: dict[str, Any], gateway_data: Mapping[str, Any], adopted_at: int, *, conform: bool = True
) -> list[dict[str, Any]]:
    """The JSON Patch (RFC 6902) for ``PATCH /admin/clients/{id}`` that marks a client managed.

    ``metadata`` changes: the shim's own keys stay and :data:`METADATA_KEY` is added, so Hydra keeps the
    client's configuration and its hashed secret (its PATCH leaves the secret alone unless the patch sets one).
    With ``conform``, ``skip_consent`` is set to false as on every managed client (:func:`hydra_differences`).
    """
    existing = hydra_client.get("metadata")
    metadata = dict(existing) if isinstance(existing, dict) else {}
    metadata[METADATA_KEY] = {
        "managed": True,
        "v": FORMAT_VERSION,
        "client_id_issued_at": _epoch(hydra_client.get("created_at")) or adopted_at,
        "client_secret_expires_at": int(hydra_client.get("client_secret_expires_at") or 0),
        "extra": {},
        "gateway": dict(gateway_data),
        "adopted_at": adopted_at,
    }
    patch: list[dict[str, Any]] = [{"op": "add", "path": "/metadata", "value": metadata}]
    if conform and hydra_differences(hydra_client):
        patch.append({"op": "add", "path": "/skip_consent", "value": False})
    return patch
