"""The image ``make image`` builds (``localhost/dcr-gateway:<project version>``), run in front of the real Hydra.

``podman run`` does not work in the project's sandbox, so the image's root filesystem (``podman image mount``)
is run as a container runtime would run it (tests/integration/image_chroot.py): read-only, a tmpfs on /tmp, the
image's own ENTRYPOINT + CMD, USER and Env read from ``podman image inspect``. The gateway answers ``/healthz``,
serves discovery with its registration endpoint and registers a client (RFC 7591) that Hydra then holds; nothing
of the development stack or the test tooling is inside, and nothing outside /tmp is writable.

CI (``CI`` set) builds the image first (``.ci/run``: ``make image`` before ``make test``) and a missing (or
stale) image fails here. Elsewhere, a missing image, or one built from another commit or before uncommitted
changes to its sources, is (re)built with podman (deploy/image/build.sh) first, and the module is skipped only
where podman or root (a mount namespace, the rootful image store) is not available.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import tomllib
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import aiohttp
import pytest

from devstack.process import LOOPBACK, Service, free_port, spawn
from devstack.providers import HydraProvider
from gateway.settings import Settings
from tests.integration.conftest import GATEWAY_READY_TIMEOUT, client_record

REPO = Path(__file__).resolve().parents[2]
RUNNER = Path(__file__).with_name("image_chroot.py")
BUILD_SCRIPT = REPO / "deploy" / "image" / "build.sh"
PYPROJECT = tomllib.loads((REPO / "pyproject.toml").read_text())
VERSION: str = PYPROJECT["project"]["version"]
IMAGE = f"localhost/dcr-gateway:{VERSION}"
IMAGE_USER = "10001:10001"
pytestmark = pytest.mark.timeout(900)  # a missing image is built first (minutes when the base is bootstrapped too)
WRITABLE = "/tmp"  # noqa: S108 (the image's only writable directory, a fresh tmpfs)


def _unavailable(reason: str) -> None:
    """On CI a missing prerequisite is a failure; elsewhere the module is skipped with the reason."""
    if os.environ.get("CI"):
        pytest.fail(f"{reason} (CI builds the image with `make image` before `make test`)")
    pytest.skip(reason)


@dataclass(frozen=True)
class MountedImage:
    """An image's configuration (``podman image inspect``) and its root filesystem (``podman image mount``)."""

    config: dict[str, Any]
    labels: dict[str, str]
    root: Path

    @property
    def env(self) -> dict[str, str]:
        return dict(entry.split("=", 1) for entry in self.config.get("Env") or [])

    @property
    def argv(self) -> list[str]:
        return [*(self.config.get("Entrypoint") or []), *(self.config.get("Cmd") or [])]

    def site_packages(self) -> Path:
        (found,) = self.root.glob("opt/dcr-gateway/lib/python3*/site-packages")
        return found


def _podman(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["podman", *args], capture_output=True, text=True, check=False)


IMAGE_INPUTS = ("Dockerfile", ".dockerignore", "pyproject.toml", "README.md", "gateway", "adapters")
"""What the production image is built from: a change to any of them since the image was built makes it stale."""


def _git(*args: str) -> str:
    completed = subprocess.run(["git", "-C", str(REPO), *args], capture_output=True, text=True, check=False)
    return completed.stdout.strip() if completed.returncode == 0 else ""


def _image_problem() -> str | None:
    """Why the image cannot be tested as this checkout's: missing, or built from another commit, or the checkout
    has uncommitted changes to what the image is built from (None: it is this checkout's)."""
    inspected = _podman(
        "image", "inspect", "--format", '{{index .Config.Labels "org.opencontainers.image.revision"}}', IMAGE
    )
    if inspected.returncode != 0:
        return "is missing"
    head = _git("rev-parse", "HEAD") or "unknown"
    if inspected.stdout.strip() != head:
        return f"was built from revision {inspected.stdout.strip()}, not the checkout's {head}"
    if _git("status", "--porcelain", "--", *IMAGE_INPUTS):
        return f"may predate the checkout's uncommitted changes to {', '.join(IMAGE_INPUTS)}"
    return None


@pytest.fixture(scope="module")
def image() -> Iterator[MountedImage]:
    if shutil.which("podman") is None:
        _unavailable("podman is not installed: `make image` installs it (as root on Debian) and builds the image")
    if os.geteuid() != 0 or shutil.which("unshare") is None:
        _unavailable("running the image needs root and unshare(1): podman image mount, a private mount namespace")
    problem = _image_problem()
    if problem is not None:
        if os.environ.get("CI"):
            pytest.fail(f"{IMAGE} {problem}: .ci/run runs `make image` before `make test`")
        built = subprocess.run(
            [str(BUILD_SCRIPT), "build"], env={**os.environ, "DCR_IMAGE_BUILDER": "podman"}, check=False
        )
        assert built.returncode == 0, f"{IMAGE} {problem}; deploy/image/build.sh build failed ({built.returncode})"
        assert _image_problem() is None
    inspected = _podman("image", "inspect", IMAGE)
    assert inspected.returncode == 0, inspected.stderr
    (details,) = json.loads(inspected.stdout)
    mounted = _podman("image", "mount", IMAGE)
    assert mounted.returncode == 0, mounted.stderr
    try:
        yield MountedImage(
            config=details["Config"], labels=details["Config"].get("Labels") or {}, root=Path(mounted.stdout.strip())
        )
    finally:
        _podman("image", "unmount", IMAGE)


def run_in_image(
    image: MountedImage,
    tmp_path: Path,
    name: str,
    *,
    env: dict[str, str],
    argv: Sequence[str] | None = None,
    user: str | None = None,
) -> tuple[list[str], Path]:
    """The command line that runs ``argv`` (default: the image's ENTRYPOINT + CMD) as ``user`` (default: the
    image's USER) with exactly ``env`` in the image's read-only root filesystem; and the spec file it reads."""
    root = tmp_path / f"{name}-root"
    root.mkdir()
    spec = tmp_path / f"{name}.json"
    spec.write_text(
        json.dumps(
            {
                "source": str(image.root),
                "root": str(root),
                "user": image.config.get("User", "") if user is None else user,
                "cwd": image.config.get("WorkingDir") or "/",
                "argv": list(argv) if argv is not None else image.argv,
                "env": env,
            }
        )
    )
    command = ["unshare", "--mount", "--propagation", "private", "--", sys.executable, str(RUNNER), str(spec)]
    return command, spec


def _has_management_listener() -> bool:
    """Whether this checkout has the management listener's settings (issue 11, item 4)."""
    return "management" in Settings.model_fields


def gateway_env(image: MountedImage, hydra: HydraProvider, port: int, management_port: int) -> dict[str, str]:
    """The image's own Env plus the settings of a gateway in front of ``hydra``: the Hydra issuer as its public
    URL (the discovery document's issuer must be it, RFC 8414 section 3.3), listening on ``port``. The listeners
    bind to 127.0.0.1 instead of the image's 0.0.0.0: the process shares the host's network namespace here."""
    env = image.env | hydra.gateway_env(port) | {"DCR_PUBLIC_URL": hydra.issuer, "DCR_HOST": LOOPBACK}
    if _has_management_listener():
        env |= {"DCR_MANAGEMENT__HOST": LOOPBACK, "DCR_MANAGEMENT__PORT": str(management_port)}
    else:
        # Until the management listener's settings are merged, the gateway refuses the unknown variable.
        env.pop("DCR_MANAGEMENT__HOST", None)
    return env


@dataclass(frozen=True)
class RunningGateway:
    url: str
    """The public listener."""
    management_url: str
    pid: int


@pytest.fixture(scope="module")
def gateway_in_image(
    image: MountedImage, hydra_provider: HydraProvider, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[RunningGateway]:
    """The image's entrypoint serving in front of the session's Hydra."""
    tmp_path = tmp_path_factory.mktemp("image")
    port, management_port = free_port(), free_port()
    env = gateway_env(image, hydra_provider, port, management_port)
    command, _ = run_in_image(image, tmp_path, "gateway", env=env)
    service: Service = spawn(
        "gateway-image", command, log_path=tmp_path / "gateway.log", ready_url=f"http://{LOOPBACK}:{port}/healthz"
    )
    try:
        service.wait_ready(GATEWAY_READY_TIMEOUT)
        yield RunningGateway(f"http://{LOOPBACK}:{port}", f"http://{LOOPBACK}:{management_port}", service.pid)
    finally:
        service.stop()
    log = (tmp_path / "gateway.log").read_text()
    assert "Traceback" not in log, log


# --------------------------------------------------------------------------------------- what the image is


def test_the_image_config_is_the_deployment_contract(image: MountedImage) -> None:
    """Numeric non-root user, exec-form entrypoint ``dcr-gateway serve``, listeners on every container interface
    (8080 public, 9180 management), no byte-code writes, and the project's version and commit as OCI labels."""
    config = image.config
    assert config["User"] == IMAGE_USER
    assert config["Entrypoint"] == ["dcr-gateway"]
    assert config["Cmd"] == ["serve"]
    assert set(config["ExposedPorts"]) == {"8080/tcp", "9180/tcp"}
    env = image.env
    assert env["DCR_HOST"] == "0.0.0.0"  # noqa: S104 (inside a container: every interface of its own namespace)
    assert env["DCR_PORT"] == "8080"
    assert env["DCR_MANAGEMENT__HOST"] == "0.0.0.0"  # noqa: S104
    assert env["PYTHONDONTWRITEBYTECODE"] == "1"
    assert env["PATH"].split(":")[0] == "/opt/dcr-gateway/bin"
    assert image.labels["org.opencontainers.image.version"] == VERSION
    assert image.labels["org.opencontainers.image.title"] == "dcr-gateway"
    assert re.fullmatch(r"[0-9a-f]{40}|unknown", image.labels["org.opencontainers.image.revision"])


def _dist_name(dist_info: Path) -> str:
    return re.sub(r"[-_.]+", "-", dist_info.name.rsplit("-", 1)[0]).lower()


def _requirement_name(requirement: str) -> str:
    return re.sub(r"[-_.]+", "-", re.split(r"[\s<>=!~;\[]", requirement, maxsplit=1)[0]).lower()


def test_the_image_holds_the_gateway_and_adapters_only(image: MountedImage) -> None:
    """The wheel's packages and the runtime dependencies: no development stack, tests or benchmarks anywhere in
    the image, no development tool (the ``dev`` extra), no pip or setuptools."""
    site = image.site_packages()
    top_level = {path.name for path in site.iterdir()}
    assert {"gateway", "adapters"} <= top_level
    assert not {"devstack", "tests", "bench", "examples"} & top_level
    dists = {_dist_name(path) for path in site.glob("*.dist-info")}
    assert f"dcr-gateway-{VERSION}.dist-info" in {path.name.replace("_", "-") for path in site.glob("*.dist-info")}
    runtime = {_requirement_name(requirement) for requirement in PYPROJECT["project"]["dependencies"]}
    development = {_requirement_name(r) for r in PYPROJECT["project"]["optional-dependencies"]["dev"]} - runtime
    assert development, "the dev extra names packages"
    assert not development & dists, f"development packages in the image: {sorted(development & dists)}"
    assert not {"pip", "setuptools"} & dists
    found = [
        str(path.relative_to(image.root))
        for directory in ("opt", "usr/local/lib", "usr/lib/python3", "srv", "app", "home", "root")
        if (image.root / directory).is_dir()
        for path in (image.root / directory).rglob("*")
        if path.name in {"devstack", "conftest.py", "login_consent.py"}
    ]
    assert found == []


# --------------------------------------------------------------------------------------- the image running


def test_the_entrypoint_runs_as_the_image_user_on_a_read_only_root(gateway_in_image: RunningGateway) -> None:
    """The serving process (unshare and the runner exec'd into it): the image's uid and gid, no supplementary
    group, and its root mount read-only."""
    status = Path(f"/proc/{gateway_in_image.pid}/status").read_text()
    uid, gid = IMAGE_USER.split(":")
    assert re.search(rf"^Uid:\t{uid}\t{uid}\t{uid}\t{uid}$", status, re.M), status
    assert re.search(rf"^Gid:\t{gid}\t{gid}\t{gid}\t{gid}$", status, re.M), status
    assert re.search(r"^Groups:\s*$", status, re.M), status
    assert Path(f"/proc/{gateway_in_image.pid}/cmdline").read_bytes().split(b"\0")[1:3] == [
        b"/opt/dcr-gateway/bin/dcr-gateway",
        b"serve",
    ]
    mounts = {
        fields[4]: fields[5].split(",")
        for fields in (
            line.split() for line in Path(f"/proc/{gateway_in_image.pid}/mountinfo").read_text().splitlines()
        )
    }
    assert "ro" in mounts["/"], mounts
    assert "rw" in mounts[WRITABLE], mounts


async def test_the_image_serves_health_discovery_and_registration_in_front_of_hydra(
    gateway_in_image: RunningGateway, hydra_provider: HydraProvider, http: aiohttp.ClientSession
) -> None:
    url, management_url = gateway_in_image.url, gateway_in_image.management_url
    async with http.get(f"{url}/healthz") as response:
        assert response.status == 200
    if _has_management_listener():
        async with http.get(f"{management_url}/healthz") as response:
            assert response.status == 200
    # RFC 8414 section 3: the provider's metadata with the gateway's registration endpoint (on its public URL).
    async with http.get(f"{url}/.well-known/oauth-authorization-server") as response:
        assert response.status == 200
        metadata = await response.json()
    assert metadata["issuer"] == hydra_provider.issuer
    assert metadata["registration_endpoint"] == f"{hydra_provider.issuer}/register"
    # RFC 7591 section 3.2.1: 201 with the client's information; Hydra holds the client.
    async with http.post(
        f"{url}/register",
        json={"client_name": "image smoke test", "redirect_uris": ["http://127.0.0.1:9/callback"]},
    ) as response:
        body = await response.json()
        assert response.status == 201, body
    client_id = body["client_id"]
    record = await client_record(hydra_provider, http, client_id)
    assert record is not None
    assert record["redirect_uris"] == ["http://127.0.0.1:9/callback"]
    # RFC 7592 section 2.3: deleted again through the gateway, with its registration access token.
    configuration_path = urlsplit(body["registration_client_uri"]).path  # on the public URL: Hydra's issuer
    async with http.delete(
        f"{url}{configuration_path}",
        headers={"Authorization": f"Bearer {body['registration_access_token']}"},
    ) as response:
        assert response.status == 204
    assert await client_record(hydra_provider, http, client_id) is None


WRITE_PROBE = """
import errno, json, os, sys
result = {}
for directory in sys.argv[1:]:
    path = os.path.join(directory, "probe-%d" % os.getpid())
    try:
        with open(path, "w") as handle:
            handle.write("x")
        os.remove(path)
        result[directory] = "written"
    except OSError as exc:
        result[directory] = errno.errorcode[exc.errno]
print(json.dumps(result))
"""

PROBED = ["/", "/opt/dcr-gateway", "/opt/dcr-gateway/bin", "/etc", "/var/tmp", "/usr/lib", WRITABLE]  # noqa: S108


def _probe_writes(image: MountedImage, tmp_path: Path, name: str, user: str | None) -> dict[str, str]:
    command, _ = run_in_image(
        image, tmp_path, name, env=image.env, argv=["python3", "-c", WRITE_PROBE, *PROBED], user=user
    )
    completed = subprocess.run(command, capture_output=True, text=True, timeout=60, check=False)
    assert completed.returncode == 0, completed.stderr
    result: dict[str, str] = json.loads(completed.stdout)
    return result


def test_the_image_user_can_write_only_to_tmp_and_the_root_is_read_only(image: MountedImage, tmp_path: Path) -> None:
    """As the image's user only /tmp is writable; even root gets EROFS everywhere else, so the gateway that
    serves in the same read-only root (the test above) writes nothing outside /tmp."""
    as_user = _probe_writes(image, tmp_path, "probe-user", user=None)
    assert as_user.pop(WRITABLE) == "written"
    assert set(as_user.values()) <= {"EACCES", "EROFS"}, as_user
    as_root = _probe_writes(image, tmp_path, "probe-root", user="0:0")
    assert as_root.pop(WRITABLE) == "written"
    assert set(as_root.values()) == {"EROFS"}, as_root
