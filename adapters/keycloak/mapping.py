"""Pure mapping between RFC 7591 client metadata and Keycloak's ``ClientRepresentation``.

Follows what Keycloak's own registration does (its ``DescriptionConverter``), and differs where that is not
faithful to what MCP clients need:

- the code flow is switched on by ``response_types`` containing ``code`` (``standardFlowEnabled``); the
  grant types only switch refresh tokens (``use.refresh.tokens``), the device grant and service accounts;
- ``token_endpoint_auth_method`` ``none`` makes a public client, the secret methods use the
  ``client-secret`` authenticator, ``client_secret_jwt`` ``client-secret-jwt``, ``private_key_jwt``
  ``client-jwt``;
- PKCE S256 is required on every client (attribute ``pkce.code.challenge.method``);
- loopback IP redirect URIs are registered twice, as given and without their port: Keycloak retries a
  ``http://127.0.0.1:<port>`` request without the port, so the port-less copy is what makes any port work
  (RFC 8252 section 7.3);
- a registration naming scopes keeps the realm's default client scopes (Keycloak's own registration drops
  them) and adds the named realm scopes as optional scopes;
- what Keycloak has no field for (``contacts``, ``software_id``, ``software_version``,
  ``application_type``, the registered redirect URIs before expansion, the exact auth method) goes into
  client attributes, JSON-encoded under :data:`METADATA_ATTRIBUTE`; attribute :data:`MANAGED_ATTRIBUTE`
  marks the client as managed by the gateway.
"""

from __future__ import annotations

import ipaddress
import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit, urlunsplit

from adapters.base import ClientUsage, ManagedClient, NewClient, SettingDifference, UnmanagedClient
from adapters.bindings import admitted_kept, document_gateway_data, merged_redirect_uris
from gateway.oauth.metadata import (
    CLIENT_CREDENTIALS,
    CLIENT_SECRET_BASIC,
    CLIENT_SECRET_JWT,
    CLIENT_SECRET_POST,
    DEVICE_CODE,
    NONE,
    PRIVATE_KEY_JWT,
    REFRESH_TOKEN,
    ClientMetadata,
)

MANAGED_ATTRIBUTE = "dcr.gateway.managed"
METADATA_ATTRIBUTE = "dcr.gateway.metadata"
GATEWAY_ATTRIBUTE = "dcr.gateway.data"
DOCUMENT_ATTRIBUTE = "dcr.gateway.document"
"""Attribute of a document client (draft-ietf-oauth-client-id-metadata-document): its URL, also its ``clientId``."""
ADMITTED_ATTRIBUTE = "dcr.gateway.admitted.redirect.uris"
"""Attribute listing (JSON) the redirect URIs admitted at run time (RFC 8252 section 7.3), oldest first: in
``redirectUris`` but no registered metadata (the registered view is :data:`METADATA_ATTRIBUTE`'s)."""
FORMAT_VERSION = 1

AUTHENTICATOR = {
    CLIENT_SECRET_BASIC: "client-secret",
    CLIENT_SECRET_POST: "client-secret",
    CLIENT_SECRET_JWT: "client-secret-jwt",
    PRIVATE_KEY_JWT: "client-jwt",
}

ATTRIBUTE_URIS = {"logo_uri": "logoUri", "policy_uri": "policyUri", "tos_uri": "tosUri"}

# Keycloak's own OIDC built-ins: the protocol scope is implicit, not a realm client scope.
IMPLICIT_SCOPES = frozenset({"openid"})


@dataclass(frozen=True)
class RealmScopes:
    """The realm's client scopes (names) and its default sets, read once through the admin API."""

    names: frozenset[str]
    default_default: tuple[str, ...]
    default_optional: tuple[str, ...]


def keycloak_redirect_uris(redirect_uris: Iterable[str]) -> list[str]:
    """Registered redirect URIs plus, for ``http`` loopback IP literals with a port, the same URI without
    the port (RFC 8252 section 7.3: any port must be accepted for loopback IP redirect URIs)."""
    expanded: list[str] = []
    for uri in redirect_uris:
        if uri not in expanded:
            expanded.append(uri)
        parts = urlsplit(uri)
        host = parts.hostname or ""
        if parts.scheme == "http" and parts.port is not None and _is_loopback_ip(host):
            netloc = f"[{host}]" if ":" in host else host
            portless = urlunsplit((parts.scheme, netloc, parts.path, parts.query, ""))
            if portless not in expanded:
                expanded.append(portless)
    return expanded


def _is_loopback_ip(host: str) -> bool:
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def registrable_scope_names(realm: RealmScopes) -> frozenset[str]:
    """The scope values a client registered through the gateway can get: ``openid`` and the realm's default and
    default-optional client scopes (Keycloak's "Allowed Client Scopes" policy for anonymous registration).
    :func:`scope_assignment` attaches only these, and discovery advertises only these (RFC 8414 section 2)."""
    return frozenset(realm.default_default) | frozenset(realm.default_optional) | IMPLICIT_SCOPES


def scope_assignment(scope: str | None, realm: RealmScopes) -> tuple[list[str] | None, list[str] | None, str | None]:
    """Default and optional client scopes for a registration, and the ``scope`` value to echo.

    No ``scope``: Keycloak applies the realm's defaults (``None, None``) and nothing is echoed. With a
    ``scope``: the realm defaults stay (explicitly), the named scopes among the realm's default optional
    scopes are kept optional (Keycloak's "Allowed Client Scopes" policy: an anonymous client cannot attach
    any other realm scope), and the echo lists the requested scopes the client can really get, in request
    order (other names are ignored by Keycloak at authorization time, so claiming them would not be faithful).
    """
    if scope is None:
        return None, None, None
    requested = [s for s in scope.split(" ") if s]
    allowed = registrable_scope_names(realm)
    known = [s for s in requested if s in allowed]
    default = list(realm.default_default)
    optional = list(realm.default_optional)
    for name in known:
        if name in realm.names and name not in default and name not in optional:
            optional.append(name)
    echo = " ".join(dict.fromkeys(known)) or None
    return default, optional, echo


def to_keycloak(client: NewClient, realm: RealmScopes, *, document: bool = False) -> dict[str, Any]:
    """The ``ClientRepresentation`` for ``POST /admin/realms/{realm}/clients``; with ``document``, of the document
    client whose ``clientId`` is the URL ``client.client_id`` (marked with :data:`DOCUMENT_ATTRIBUTE`)."""
    m = client.metadata
    method = m.token_endpoint_auth_method or CLIENT_SECRET_BASIC
    grant_types = m.grant_types or []
    default_scopes, optional_scopes, scope_echo = scope_assignment(m.scope, realm)
    attributes: dict[str, str] = {
        "pkce.code.challenge.method": "S256",
        "use.refresh.tokens": "true" if REFRESH_TOKEN in grant_types else "false",
        "oauth2.device.authorization.grant.enabled": "true" if DEVICE_CODE in grant_types else "false",
        "client.secret.creation.time": str(client.client_id_issued_at),
        MANAGED_ATTRIBUTE: "true",
    }
    if m.post_logout_redirect_uris:
        attributes["post.logout.redirect.uris"] = "##".join(m.post_logout_redirect_uris)
    for name, attribute in ATTRIBUTE_URIS.items():
        value = getattr(m, name)
        if value is not None:
            attributes[attribute] = value
    if m.jwks is not None:
        attributes["use.jwks.string"] = "true"
        attributes["jwks.string"] = json.dumps(m.jwks)
        attributes["use.jwks.url"] = "false"
    elif m.jwks_uri is not None:
        attributes["use.jwks.url"] = "true"
        attributes["jwks.url"] = m.jwks_uri
    registered = m.registered()
    if scope_echo is None:
        registered.pop("scope", None)
    else:
        registered["scope"] = scope_echo
    attributes[METADATA_ATTRIBUTE] = json.dumps(
        {
            "v": FORMAT_VERSION,
            "client_id_issued_at": client.client_id_issued_at,
            "client_secret_expires_at": client.client_secret_expires_at,
            "registered": registered,
        },
        separators=(",", ":"),
    )
    gateway_data = document_gateway_data(client) if document else dict(client.gateway_data)
    attributes[GATEWAY_ATTRIBUTE] = json.dumps(gateway_data, separators=(",", ":"))
    if document:
        attributes[DOCUMENT_ATTRIBUTE] = client.client_id

    representation: dict[str, Any] = {
        "clientId": client.client_id,
        "protocol": "openid-connect",
        "enabled": True,
        "description": (
            "Client ID Metadata Document, through dcr-gateway"
            if document
            else "Registered through dcr-gateway (RFC 7591)"
        ),
        "publicClient": method == NONE,
        "redirectUris": keycloak_redirect_uris(m.redirect_uris or []),
        "webOrigins": ["+"],  # CORS for browser clients at the token endpoint: the redirect URIs' origins
        "standardFlowEnabled": "code" in (m.response_types or []),
        "implicitFlowEnabled": False,
        "directAccessGrantsEnabled": False,
        "serviceAccountsEnabled": CLIENT_CREDENTIALS in grant_types,
        "frontchannelLogout": False,
        # Keycloak's anonymous-registration policies, enforced here because its admin API skips them:
        # the user consents to every registered client, and tokens carry only what its scopes map.
        "consentRequired": True,
        "fullScopeAllowed": False,
        "attributes": attributes,
    }
    if method != NONE:
        representation["clientAuthenticatorType"] = AUTHENTICATOR[method]
    if client.client_secret is not None:
        representation["secret"] = client.client_secret
    if m.client_name is not None:
        representation["name"] = m.client_name
    if m.client_uri is not None:
        representation["baseUrl"] = m.client_uri
    if default_scopes is not None:
        representation["defaultClientScopes"] = default_scopes
    if optional_scopes is not None:
        representation["optionalClientScopes"] = optional_scopes
    return representation


def registered_view(client: NewClient, realm: RealmScopes, *, document: bool = False) -> ManagedClient:
    """What :func:`to_keycloak` registers, as the gateway answers it (no read-back round trip)."""
    return from_keycloak(to_keycloak(client, realm, document=document), client_secret=client.client_secret)


AUDIENCE_MAPPER = "dcr-gateway resource audience"
"""Name of the Audience mapper of a resource's client scope."""


def audience_mapper(resource: str) -> dict[str, Any]:
    """The ``ProtocolMapperRepresentation`` that adds ``resource`` to the access token's ``aud`` (RFC 8707
    section 2: the token is meant for that resource) and to introspection, not to ID tokens."""
    return {
        "name": AUDIENCE_MAPPER,
        "protocol": "openid-connect",
        "protocolMapper": "oidc-audience-mapper",
        "config": {
            "included.custom.audience": resource,
            "access.token.claim": "true",
            "introspection.token.claim": "true",
            "id.token.claim": "false",
            "lightweight.claim": "false",
        },
    }


def resource_scope_representation(name: str, resource: str) -> dict[str, Any]:
    """The ``ClientScopeRepresentation`` of the scope that binds ``resource``: an OpenID Connect scope left out
    of the token's ``scope`` claim, shown on the consent screen as the resource, carrying :func:`audience_mapper`."""
    return {
        "name": name,
        "description": f"RFC 8707 resource {resource} (dcr-gateway)",
        "protocol": "openid-connect",
        "attributes": {
            "include.in.token.scope": "false",
            "display.on.consent.screen": "true",
            "consent.screen.text": resource,
        },
        "protocolMappers": [audience_mapper(resource)],
    }


def document_url_of(representation: dict[str, Any]) -> str | None:
    """The URL of a managed document client, ``None`` for any other client."""
    url = (representation.get("attributes") or {}).get(DOCUMENT_ATTRIBUTE)
    return url if isinstance(url, str) and url and is_managed(representation) else None


def admitted_of(representation: dict[str, Any]) -> list[str]:
    """The redirect URIs admitted at run time (:data:`ADMITTED_ATTRIBUTE`)."""
    try:
        value = json.loads((representation.get("attributes") or {}).get(ADMITTED_ATTRIBUTE) or "[]")
    except ValueError:
        return []
    return [uri for uri in value if isinstance(uri, str)] if isinstance(value, list) else []


def replacing(representation: dict[str, Any], current: dict[str, Any]) -> dict[str, Any]:
    """``representation`` (from :func:`to_keycloak`) as the full replacement of ``current`` (RFC 7592 section 2.2,
    or a new version of a document): Keycloak's update keeps whatever a representation leaves out, so what the
    metadata omits is cleared explicitly (an empty attribute value removes the attribute); the admitted redirect
    URIs that still derive from a registered one carry over (adapter state, not metadata)."""
    representation["id"] = current["id"]
    representation.setdefault("name", "")
    representation.setdefault("baseUrl", "")
    attributes = representation["attributes"]
    for attribute in ("logoUri", "policyUri", "tosUri", "post.logout.redirect.uris", "jwks.url", "jwks.string"):
        attributes.setdefault(attribute, "")
    attributes.setdefault("use.jwks.url", "false")
    attributes.setdefault("use.jwks.string", "false")
    registered = list(representation.get("redirectUris") or [])
    kept = admitted_kept(admitted_of(current), registered)
    representation["redirectUris"] = merged_redirect_uris(registered, kept)
    attributes[ADMITTED_ATTRIBUTE] = json.dumps(kept, separators=(",", ":")) if kept else ""
    return representation


def is_managed(representation: dict[str, Any]) -> bool:
    """Whether the gateway created (or adopted) this Keycloak client."""
    attributes = representation.get("attributes") or {}
    return attributes.get(MANAGED_ATTRIBUTE) == "true"


def _json_attribute(attributes: dict[str, Any], name: str) -> dict[str, Any]:
    try:
        value = json.loads(attributes.get(name) or "{}")
    except ValueError:
        return {}
    return value if isinstance(value, dict) else {}


def from_keycloak(representation: dict[str, Any], *, client_secret: str | None = None) -> ManagedClient:
    """A Keycloak client as RFC 7591 metadata.

    The registered metadata kept in :data:`METADATA_ATTRIBUTE` is the base; Keycloak's own fields override
    it where they decide behaviour (name, public/confidential, flows), so an edit by an administrator shows.
    """
    attributes = representation.get("attributes") or {}
    stored = _json_attribute(attributes, METADATA_ATTRIBUTE)
    fields: dict[str, Any] = dict(stored.get("registered") or {})
    if representation.get("name"):  # an update clears an omitted name to ""
        fields["client_name"] = representation["name"]
    if representation.get("publicClient"):
        fields["token_endpoint_auth_method"] = NONE
    elif fields.get("token_endpoint_auth_method") in (None, NONE):
        authenticator = representation.get("clientAuthenticatorType", "client-secret")
        fields["token_endpoint_auth_method"] = {
            "client-secret": CLIENT_SECRET_BASIC,
            "client-secret-jwt": CLIENT_SECRET_JWT,
            "client-jwt": PRIVATE_KEY_JWT,
        }.get(authenticator, CLIENT_SECRET_BASIC)
    if "redirect_uris" not in fields and representation.get("redirectUris"):
        admitted = set(admitted_of(representation))  # admitted at run time, not registered
        fields["redirect_uris"] = [uri for uri in representation["redirectUris"] if uri not in admitted]
    secret = client_secret
    if secret is None and not representation.get("publicClient"):
        secret = representation.get("secret") or None
    return ManagedClient(
        client_id=str(representation["clientId"]),
        metadata=ClientMetadata.model_validate(fields),
        client_id_issued_at=int(stored.get("client_id_issued_at") or 0),
        client_secret=secret if fields.get("token_endpoint_auth_method") != NONE else None,
        client_secret_expires_at=int(stored.get("client_secret_expires_at") or 0),
        gateway_data=_json_attribute(attributes, GATEWAY_ATTRIBUTE),
        provider_ref=representation.get("id"),
    )


# ------------------------------------------------------------------------------------ client hygiene

BUILT_IN_CLIENTS = frozenset(
    {"account", "account-console", "admin-cli", "broker", "realm-management", "security-admin-console"}
)
"""Clients every Keycloak realm has: the realm needs them, the gateway never takes them over."""


def keycloak_protection(representation: dict[str, Any], admin_client_id: str) -> str | None:
    """Why this client can never be adopted, or ``None``: the gateway's own admin client, and Keycloak's
    built-in and realm-management clients (``realm_client``: the clients holding a realm's admin roles)."""
    client_id = representation.get("clientId")
    if client_id == admin_client_id:
        return "the gateway's own admin client"
    attributes = representation.get("attributes") or {}
    if client_id in BUILT_IN_CLIENTS or attributes.get("realm_client") == "true":
        return "a Keycloak built-in client"
    return None


REALM_MANAGEMENT_CLIENT = "realm-management"
"""The client holding a realm's admin roles (``manage-clients``, ``view-users``, ``realm-admin``, ...)."""
ADMIN_REALM_ROLES = frozenset({"admin", "create-realm"})
"""Realm roles that administer Keycloak (the master realm's)."""
UNCHECKABLE_SERVICE_ACCOUNT = (
    "a service account whose roles the gateway cannot read (its admin credentials lack realm-management "
    "view-users): it could be another gateway's or tool's admin client"
)


def service_account_protection(client_roles: Iterable[str], realm_roles: Iterable[str]) -> str | None:
    """Why a client whose service account holds these effective roles may never be adopted, or ``None``.

    Any ``realm-management`` role (or a realm admin role) means the client administers the realm: another
    gateway's admin client, a provisioning tool. Putting it under this gateway's RFC 7592 and ``gc`` would let a
    registration access token or a clean-up delete or change it.
    """
    held = sorted(set(client_roles))
    if held:
        return f"a service account holding realm-management roles ({', '.join(held)}): an admin client"
    admin = sorted(set(realm_roles) & ADMIN_REALM_ROLES)
    if admin:
        return f"a service account holding realm admin roles ({', '.join(admin)}): an admin client"
    return None


def keycloak_differences(representation: dict[str, Any]) -> tuple[SettingDifference, ...]:
    """Where the client differs from what :func:`to_keycloak` gives every managed client."""
    differences: list[SettingDifference] = []
    if representation.get("consentRequired") is not True:
        differences.append(
            SettingDifference("consentRequired", "false", "true", "the user consents to every managed client")
        )
    if representation.get("fullScopeAllowed", True) is not False:
        differences.append(
            SettingDifference("fullScopeAllowed", "true", "false", "tokens carry only what the client's scopes map")
        )
    pkce = (representation.get("attributes") or {}).get("pkce.code.challenge.method") or "unset"
    if representation.get("standardFlowEnabled", True) and pkce != "S256":
        differences.append(
            SettingDifference("pkce.code.challenge.method", pkce, "S256", "PKCE S256 required, as MCP requires")
        )
    return tuple(differences)


def conforming_update(representation: dict[str, Any], attributes: dict[str, str]) -> dict[str, Any]:
    """The fields of a partial update that bring the client in line with :func:`keycloak_differences` (Keycloak's
    update leaves every field the body omits as it is); ``attributes`` gets the PKCE attribute."""
    changes: dict[str, Any] = {}
    for difference in keycloak_differences(representation):
        if difference.setting == "consentRequired":
            changes["consentRequired"] = True
        elif difference.setting == "fullScopeAllowed":
            changes["fullScopeAllowed"] = False
        else:
            attributes["pkce.code.challenge.method"] = "S256"
    return changes


def keycloak_privileges(representation: dict[str, Any]) -> tuple[str, ...]:
    """What makes the client more than an anonymous RFC 7591 registration may get (see :func:`to_keycloak`)."""
    privileges: list[str] = []
    if representation.get("serviceAccountsEnabled"):
        privileges.append("service account (client_credentials grant)")
    if representation.get("directAccessGrantsEnabled"):
        privileges.append("direct access grants (password grant)")
    if representation.get("implicitFlowEnabled"):
        privileges.append("implicit flow")
    if representation.get("bearerOnly"):
        privileges.append("bearer-only resource server")
    return tuple(privileges)


def unmanaged_from_keycloak(representation: dict[str, Any], admin_client_id: str) -> UnmanagedClient:
    """An adoption candidate; its attributes are what ``--attribute KEY=VALUE`` selects on. No secret."""
    attributes = representation.get("attributes") or {}
    return UnmanagedClient(
        client_id=str(representation["clientId"]),
        client_name=representation.get("name") or None,
        labels={str(k): v for k, v in attributes.items() if isinstance(v, str)},
        privileges=keycloak_privileges(representation),
        protected=keycloak_protection(representation, admin_client_id),
        differences=keycloak_differences(representation),
    )


def registered_from_keycloak(representation: dict[str, Any]) -> dict[str, Any]:
    """RFC 7591 metadata describing a client the gateway did not create (inverse of :func:`to_keycloak`,
    following Keycloak's ``DescriptionConverter``), kept as the registered view when it is adopted."""
    attributes = representation.get("attributes") or {}
    standard_flow = bool(representation.get("standardFlowEnabled", True))
    grant_types: list[str] = []
    if standard_flow:
        grant_types.append("authorization_code")
        if attributes.get("use.refresh.tokens", "true") != "false":
            grant_types.append(REFRESH_TOKEN)
    if representation.get("implicitFlowEnabled"):
        grant_types.append("implicit")
    if representation.get("directAccessGrantsEnabled"):
        grant_types.append("password")
    if representation.get("serviceAccountsEnabled"):
        grant_types.append(CLIENT_CREDENTIALS)
    if attributes.get("oauth2.device.authorization.grant.enabled") == "true":
        grant_types.append(DEVICE_CODE)
    registered: dict[str, Any] = {
        "redirect_uris": list(representation.get("redirectUris") or []),
        "grant_types": grant_types,
        "response_types": ["code"] if standard_flow else [],
    }
    if representation.get("publicClient"):
        registered["token_endpoint_auth_method"] = NONE
    else:
        registered["token_endpoint_auth_method"] = {
            "client-secret-jwt": CLIENT_SECRET_JWT,
            "client-jwt": PRIVATE_KEY_JWT,
        }.get(representation.get("clientAuthenticatorType", "client-secret"), CLIENT_SECRET_BASIC)
    if representation.get("name"):
        registered["client_name"] = representation["name"]
    if representation.get("baseUrl"):
        registered["client_uri"] = representation["baseUrl"]
    for name, attribute in ATTRIBUTE_URIS.items():
        if attributes.get(attribute):
            registered[name] = attributes[attribute]
    logout = [uri for uri in (attributes.get("post.logout.redirect.uris") or "").split("##") if uri and uri != "+"]
    if logout:
        registered["post_logout_redirect_uris"] = logout
    if attributes.get("use.jwks.url") == "true" and attributes.get("jwks.url"):
        registered["jwks_uri"] = attributes["jwks.url"]
    return registered


def adoption_attributes(
    representation: dict[str, Any], gateway_data: Mapping[str, Any], adopted_at: int
) -> dict[str, str]:
    """The client's attributes with the managed marker added: every existing attribute is kept, and the
    registered view and gateway data the adapter reads back are stored as for a registration.

    Keycloak keeps no creation time; ``client_id_issued_at`` is the secret's creation time when Keycloak
    recorded one, else the adoption time.
    """
    attributes = {str(k): v for k, v in (representation.get("attributes") or {}).items() if isinstance(v, str)}
    secret_created = attributes.get("client.secret.creation.time", "")
    attributes[MANAGED_ATTRIBUTE] = "true"
    attributes[METADATA_ATTRIBUTE] = json.dumps(
        {
            "v": FORMAT_VERSION,
            "client_id_issued_at": int(secret_created) if secret_created.isdigit() else adopted_at,
            "client_secret_expires_at": 0,
            "registered": registered_from_keycloak(representation),
            "adopted_at": adopted_at,
        },
        separators=(",", ":"),
    )
    attributes[GATEWAY_ATTRIBUTE] = json.dumps(dict(gateway_data), separators=(",", ":"))
    return attributes


def usage_from_keycloak(
    representation: dict[str, Any], *, sessions: int | None, offline_sessions: int | None
) -> ClientUsage:
    """What Keycloak can tell: its session counts (in use now; ``None`` when they were not read) and the times the
    gateway recorded (Keycloak keeps no creation, update or last-use time of a client)."""
    stored = _json_attribute(representation.get("attributes") or {}, METADATA_ATTRIBUTE)
    issued_at = stored.get("client_id_issued_at")
    adopted_at = stored.get("adopted_at")
    return ClientUsage(
        created_at=issued_at if isinstance(issued_at, int) and issued_at > 0 else None,
        updated_at=adopted_at if isinstance(adopted_at, int) else None,
        active_sessions=sessions,
        offline_sessions=offline_sessions,
    )
