"""The Helm chart (``deploy/helm/dcr-gateway``, issue 11 item 3) validated with the tools the project builds
(``make chart-tools``: helm, helm-unittest, psacheck from the Go module proxy) and the pinned kubernetes-validate
wheel: ``helm lint --strict`` and ``helm template`` of every ``ci/*-values.yaml`` at the oldest and newest
Kubernetes the chart supports, the renderings strictly against those versions' schemas (and the project's
ServiceMonitor/HTTPRoute schemas), Pod Security "restricted", the helm-unittest suites, and the settings the chart
sets against the gateway's own settings model. Each check is also shown to fail on a broken input.

``deploy/helm/check.sh`` (``make chart-check``) runs the same checks from a shell. Without the tools these tests
skip locally (run ``make chart-tools``) and fail under CI (``CI`` set), where ``make test`` has built them.
"""

from __future__ import annotations

import base64
import ipaddress
import json
import os
import re
import shutil
import subprocess
import sys
import tarfile
import threading
import tomllib
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, HTTPServer
from pathlib import Path
from typing import Any, get_args

import pytest
import yaml
from pydantic import SecretStr

from devstack.process import free_port
from devstack.providers import HydraProvider, start_gateway
from gateway.policy.uris import _SPECIAL_USE_NETWORKS, is_public_address
from gateway.settings import _env_candidates, _Node, _node, load_settings, settings_class

ROOT = Path(__file__).resolve().parents[2]
HELM_DIR = ROOT / "deploy" / "helm"
CHART = HELM_DIR / "dcr-gateway"
CI_VALUES = sorted((CHART / "ci").glob("*-values.yaml"))
KUBE_VERSIONS = ("1.29.0", "1.37.0")
"""Oldest and newest Kubernetes the chart supports (Chart.yaml ``kubeVersion``; the wheel bundles 1.25-1.37)."""
CRD_APIS = ("--api-versions", "monitoring.coreos.com/v1", "--api-versions", "gateway.networking.k8s.io/v1")
PENDING_SECTIONS = {"management": "DCR_MANAGEMENT__", "shutdown": "DCR_SHUTDOWN__"}
"""Settings of the issue-11 design that other branches add (management listener, graceful shutdown): the chart sets
them already; they are checked against the settings model as soon as it has them, and left out until then."""


# ------------------------------------------------------------------------------------------------ fixtures


@pytest.fixture(scope="module")
def tools() -> dict[str, Path]:
    out = subprocess.run(
        [str(HELM_DIR / "tools.sh"), "path"], capture_output=True, text=True, check=True, timeout=30
    ).stdout
    paths = {name: Path(path) for name, path in (line.split(" ", 1) for line in out.splitlines())}
    missing = sorted(name for name, path in paths.items() if not os.access(path, os.X_OK))
    if missing:
        message = f"chart tools not built: {', '.join(missing)} (make chart-tools)"
        if os.environ.get("CI"):
            pytest.fail(message)
        pytest.skip(message)
    return paths


def run(*args: str | Path, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    return subprocess.run([str(arg) for arg in args], capture_output=True, text=True, timeout=timeout, check=False)


def helm_template(
    tools: dict[str, Path], *args: str | Path, version: str = KUBE_VERSIONS[-1], chart: Path = CHART
) -> subprocess.CompletedProcess[str]:
    return run(tools["helm"], "template", "rel", chart, "--namespace", "dcr", "--kube-version", version, *args)


def render(tools: dict[str, Path], *args: str | Path, version: str = KUBE_VERSIONS[-1]) -> list[dict[str, Any]]:
    result = helm_template(tools, *args, version=version)
    assert result.returncode == 0, result.stderr
    return [doc for doc in yaml.safe_load_all(result.stdout) if doc]


def only(docs: list[dict[str, Any]], kind: str, name: str | None = None) -> dict[str, Any]:
    found = [doc for doc in docs if doc["kind"] == kind and (name is None or doc["metadata"]["name"] == name)]
    assert len(found) == 1, f"{len(found)} {kind} documents"
    return found[0]


def validate(*files: Path, versions: tuple[str, ...] = KUBE_VERSIONS) -> subprocess.CompletedProcess[str]:
    flags = [arg for version in versions for arg in ("--kube-version", version)]
    return run(sys.executable, HELM_DIR / "validate_manifests.py", *flags, *files)


def write(path: Path, docs: list[dict[str, Any]]) -> Path:
    path.write_text(yaml.safe_dump_all(docs, sort_keys=False))
    return path


# ------------------------------------------------------------------------------------ every ci values file


@pytest.mark.parametrize("values", CI_VALUES, ids=lambda path: path.name)
def test_lint_strict(tools: dict[str, Path], values: Path) -> None:
    for version in KUBE_VERSIONS:
        result = run(tools["helm"], "lint", "--strict", "--kube-version", version, CHART, "-f", values)
        assert result.returncode == 0, result.stdout + result.stderr
        assert "0 chart(s) failed" in result.stdout


@pytest.mark.parametrize("values", CI_VALUES, ids=lambda path: path.name)
def test_renderings_are_valid_kubernetes_and_pod_security_restricted(
    tools: dict[str, Path], values: Path, tmp_path: Path
) -> None:
    """Without and with the CRD APIs, at both versions: strict schemas, then PSA restricted over every Pod."""
    for version in KUBE_VERSIONS:
        for apis in ((), CRD_APIS):
            target = tmp_path / f"{version}-{'crds' if apis else 'plain'}.yaml"
            result = helm_template(tools, "-f", values, *apis, version=version)
            assert result.returncode == 0, result.stderr
            target.write_text(result.stdout)
            checked = validate(target, versions=(version,))
            assert checked.returncode == 0, checked.stdout + checked.stderr
            assert "documents valid" in checked.stdout
            psa = run(tools["psacheck"], target)
            assert psa.returncode == 0, psa.stdout + psa.stderr
            assert "2 pod template(s) checked against restricted" in psa.stdout  # the Deployment and the test Pod


def _pod_env(docs: list[dict[str, Any]]) -> dict[str, str]:
    """The gateway container's environment as the kubelet would build it from the chart's own objects (external
    Secrets and ConfigMaps stand in with well-formed values)."""
    deployment = only(docs, "Deployment")
    container = deployment["spec"]["template"]["spec"]["containers"][0]
    configmaps = {doc["metadata"]["name"]: doc["data"] for doc in docs if doc["kind"] == "ConfigMap"}
    secrets = {doc["metadata"]["name"]: doc.get("data", {}) for doc in docs if doc["kind"] == "Secret"}
    stand_ins = {
        "DCR_LIMITS__REDIS_URL": "redis://redis.example:6379/0",
        "DCR_HYDRA__ADMIN_HEADERS": '{"X-Admin-Token": "t"}',
    }
    env: dict[str, str] = {}
    for source in container.get("envFrom", []):
        name = source.get("configMapRef", {}).get("name")
        env.update(configmaps.get(name, {}))
    for item in container.get("env", []):
        if "value" in item:
            env[item["name"]] = item["value"]
            continue
        ref = item["valueFrom"]["secretKeyRef"]
        if ref["name"] in secrets:
            env[item["name"]] = base64.b64decode(secrets[ref["name"]][ref["key"]]).decode()
        else:
            env[item["name"]] = stand_ins.get(item["name"], "a-stand-in-secret-of-at-least-32-bytes!!")
    return env


@pytest.mark.parametrize("values", CI_VALUES, ids=lambda path: path.name)
def test_settings_the_chart_sets_start_a_gateway(
    tools: dict[str, Path], values: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Every DCR_* variable the chart sets is a setting the gateway knows, with a value it accepts (the gateway
    refuses to start on an unknown DCR_* name)."""
    env = _pod_env(render(tools, "-f", values))
    fields = settings_class().model_fields
    for section, prefix in PENDING_SECTIONS.items():
        if section not in fields:
            env = {name: value for name, value in env.items() if not name.startswith(prefix)}
    for name in [name for name in os.environ if name.startswith("DCR_")]:
        monkeypatch.delenv(name)
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    settings = load_settings()
    assert settings.public_url == env["DCR_PUBLIC_URL"]
    assert settings.provider == env["DCR_PROVIDER"]
    assert settings.port == int(env["DCR_PORT"])


def test_unittest_suites(tools: dict[str, Path]) -> None:
    result = run(tools["helm-unittest"], "--strict", "-f", "tests/*_test.yaml", CHART)
    assert result.returncode == 0, result.stdout + result.stderr
    counts = re.search(r"Tests:\s+(\d+) passed, (\d+) total", result.stdout)
    assert counts, result.stdout
    assert counts[1] == counts[2]
    assert int(counts[2]) >= 40


# ------------------------------------------------------------------------------------------ template logic


def test_checksums_follow_the_config_and_the_secret(tools: dict[str, Path]) -> None:
    base = ("-f", CHART / "ci" / "keycloak-values.yaml")

    def checksums(*extra: str) -> dict[str, str]:
        annotations = only(render(tools, *base, *extra), "Deployment")["spec"]["template"]["metadata"]["annotations"]
        return {key: annotations[key] for key in ("checksum/config", "checksum/secret")}

    before = checksums()
    assert before == checksums()  # stable
    config_changed = checksums("--set", "config.logLevel=DEBUG")
    assert config_changed["checksum/config"] != before["checksum/config"]
    assert config_changed["checksum/secret"] == before["checksum/secret"]
    secret_changed = checksums("--set", "auth.keycloakClientSecret=rotated")
    assert secret_changed["checksum/secret"] != before["checksum/secret"]
    assert secret_changed["checksum/config"] == before["checksum/config"]


def test_management_port_is_never_public(tools: dict[str, Path]) -> None:
    docs = render(tools, "-f", CHART / "ci" / "ingress-values.yaml")
    public = only(docs, "Service", "rel-dcr-gateway")
    assert [port["targetPort"] for port in public["spec"]["ports"]] == ["http"]
    management = only(docs, "Service", "rel-dcr-gateway-management")
    assert management["spec"]["type"] == "ClusterIP"
    backend = only(docs, "Ingress")["spec"]["rules"][0]["http"]["paths"][0]["backend"]["service"]
    assert backend == {"name": "rel-dcr-gateway", "port": {"name": "http"}}


@pytest.mark.parametrize("values", CI_VALUES, ids=lambda path: path.name)
def test_selectors_match_the_gateway_pods_and_never_the_test_pod(tools: dict[str, Path], values: Path) -> None:
    """Every selector the chart renders (Services, PDB, NetworkPolicy, ServiceMonitor's Service, spread and
    anti-affinity) selects the gateway's pods, and none selects the `helm test` Pod (which would make it an
    endpoint of the Services or subject it to the gateway's NetworkPolicy egress)."""
    docs = render(tools, "-f", values, *CRD_APIS)
    pod_labels = only(docs, "Deployment")["spec"]["template"]["metadata"]["labels"]
    test_labels = only(docs, "Pod")["metadata"]["labels"]
    selectors = [only(docs, "Deployment")["spec"]["selector"]["matchLabels"]]
    for doc in docs:
        if doc["kind"] == "Service":
            selectors.append(doc["spec"]["selector"])
        elif doc["kind"] in ("PodDisruptionBudget",):
            selectors.append(doc["spec"]["selector"]["matchLabels"])
        elif doc["kind"] == "NetworkPolicy":
            selectors.append(doc["spec"]["podSelector"]["matchLabels"])
    assert len(selectors) >= 3
    for selector in selectors:
        assert selector.items() <= pod_labels.items(), selector
        assert not selector.items() <= test_labels.items(), selector


def test_chart_deploys_the_project_version() -> None:
    chart = yaml.safe_load((CHART / "Chart.yaml").read_text())
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    assert chart["apiVersion"] == "v2"
    assert chart["appVersion"] == project["version"]
    assert chart["kubeVersion"] == f">={KUBE_VERSIONS[0]}-0"
    values = yaml.safe_load((CHART / "values.yaml").read_text())
    assert values["image"]["repository"] == "dcr-gateway"
    assert values["image"]["tag"] == ""  # the appVersion


def test_packaged_chart_keeps_the_test_hook_not_the_suites(tools: dict[str, Path], tmp_path: Path) -> None:
    """``helm package`` honours .helmignore: the unit-test suites and the CI values stay in the repository, the
    `helm test` Pod (templates/tests/) ships."""
    result = run(tools["helm"], "package", CHART, "--destination", tmp_path)
    assert result.returncode == 0, result.stderr
    (archive,) = tmp_path.glob("dcr-gateway-*.tgz")
    with tarfile.open(archive) as tar:
        names = set(tar.getnames())
    assert "dcr-gateway/templates/tests/test-connection.yaml" in names
    assert "dcr-gateway/values.schema.json" in names
    assert not [name for name in names if name.startswith(("dcr-gateway/tests/", "dcr-gateway/ci/"))]


def test_chart_readme_values_table_is_current() -> None:
    """deploy/helm/dcr-gateway/README.md's table is what values.yaml's ``# --`` comments give (helm-docs style)."""
    result = run(sys.executable, HELM_DIR / "values_doc.py", "--check")
    assert result.returncode == 0, result.stderr
    readme = (CHART / "README.md").read_text()
    for key in ("config.publicUrl", "auth.existingSecret", "redis.existingSecret", "networkPolicy.managementFrom"):
        assert f"| `{key}` |" in readme


def test_kubernetes_older_than_supported_is_refused(tools: dict[str, Path]) -> None:
    result = helm_template(tools, "-f", CHART / "ci" / "default-values.yaml", version="1.28.9")
    assert result.returncode != 0
    assert "kubeVersion" in result.stderr or "incompatible" in result.stderr


class _FakeGateway(BaseHTTPRequestHandler):
    issuer = ""

    def do_GET(self) -> None:
        if self.path == "/readyz":
            body = b'{"status": "ready"}'
        elif self.path == "/.well-known/oauth-authorization-server":
            body = f'{{"issuer": "{self.issuer}"}}'.encode()
        else:
            self.send_error(404)
            return
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: Any) -> None:
        pass


@pytest.fixture
def fake_gateway() -> Iterator[tuple[str, type[_FakeGateway]]]:
    handler = type("Handler", (_FakeGateway,), {"issuer": "https://auth.example.com"})
    server = HTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}", handler
    finally:
        server.shutdown()
        server.server_close()


def run_script(script: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-c", script],
        env={**os.environ, **env},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def test_helm_test_pod_script_checks_readiness_and_the_issuer(
    tools: dict[str, Path], fake_gateway: tuple[str, type[_FakeGateway]]
) -> None:
    """The `helm test` Pod's own script (rendered), run with python against a server shaped like the gateway:
    it passes when /readyz and discovery answer with the configured issuer, and fails on another issuer."""
    base, handler = fake_gateway
    pod = only(render(tools, "-f", CHART / "ci" / "default-values.yaml"), "Pod")
    assert pod["metadata"]["annotations"]["helm.sh/hook"] == "test"
    container = pod["spec"]["containers"][0]
    assert container["command"] == ["python", "-c"]
    env = {item["name"]: item["value"] for item in container["env"]}
    assert env["READYZ_URL"] == "http://rel-dcr-gateway-management:9180/readyz"
    env["READYZ_URL"] = f"{base}/readyz"
    env["DISCOVERY_URL"] = env["DISCOVERY_URL"].replace("http://rel-dcr-gateway:8080", base)
    script = container["args"][0]
    ok = run_script(script, env)
    assert ok.returncode == 0, ok.stdout + ok.stderr
    assert "issuer https://auth.example.com" in ok.stdout
    handler.issuer = "https://elsewhere.example.com"
    wrong = run_script(script, env)
    assert wrong.returncode != 0
    assert "FAIL issuer" in wrong.stderr


@pytest.mark.integration
def test_the_charts_environment_runs_a_gateway_in_front_of_hydra(
    tools: dict[str, Path], hydra_provider: HydraProvider, tmp_path: Path
) -> None:
    """The pod's environment exactly as the chart renders it (only the listen addresses moved from 0.0.0.0 to
    127.0.0.1) starts ``dcr-gateway serve`` in front of the real Hydra, and the `helm test` Pod's script passes
    against it: readiness, then discovery whose issuer is the configured public origin."""
    port, management_port = free_port(), free_port()
    docs = render(
        tools,
        "-f",
        CHART / "ci" / "hydra-values.yaml",
        "--set",
        f"config.publicUrl={hydra_provider.issuer}",
        "--set",
        f"config.providerUrl={hydra_provider.public_url}",
        "--set",
        f"config.hydra.adminUrl={hydra_provider.admin_url}",
        "--set",
        "config.hydra.issuerPath=",
        "--set",
        "auth.hydraAdminHeaders=null",
        "--set",
        f"service.containerPort={port}",
        "--set",
        f"management.port={management_port}",
    )
    env = _pod_env(docs)
    fields = settings_class().model_fields
    for section, prefix in PENDING_SECTIONS.items():
        if section not in fields:
            env = {name: value for name, value in env.items() if not name.startswith(prefix)}
    env["DCR_HOST"] = "127.0.0.1"
    if "DCR_MANAGEMENT__HOST" in env:
        env["DCR_MANAGEMENT__HOST"] = "127.0.0.1"
    service = start_gateway("gateway-chart-env", env=env, log_path=tmp_path / "gateway.log")
    try:
        service.wait_ready(60)
        container = only(docs, "Pod")["spec"]["containers"][0]
        test_env = {item["name"]: item["value"] for item in container["env"]}
        readyz_port = management_port if "management" in fields else port
        test_env["READYZ_URL"] = f"http://127.0.0.1:{readyz_port}/readyz"
        # the public Service (rel-dcr-gateway:8080) forwards to the container port
        test_env["DISCOVERY_URL"] = test_env["DISCOVERY_URL"].replace("rel-dcr-gateway:8080", f"127.0.0.1:{port}")
        assert test_env["EXPECTED_ISSUER"] == hydra_provider.issuer
        result = run_script(container["args"][0], test_env)
        assert result.returncode == 0, result.stdout + result.stderr + (tmp_path / "gateway.log").read_text()[-3000:]
        assert f"issuer {hydra_provider.issuer}" in result.stdout
    finally:
        service.stop()


# ------------------------------------------------------------------------------- each check can fail


def test_values_schema_rejects_a_misspelt_key_and_a_bad_value(tools: dict[str, Path]) -> None:
    default = ("-f", CHART / "ci" / "default-values.yaml")
    typo = run(tools["helm"], "lint", "--strict", CHART, *default, "--set", "podDisruptionBudget.enable=true")
    assert typo.returncode != 0
    assert "enable" in typo.stdout + typo.stderr
    path = helm_template(tools, *default, "--set", "config.publicUrl=https://auth.example.com/issuer")
    assert path.returncode != 0
    assert "publicUrl" in path.stderr
    secret = helm_template(tools, *default, "--set", "config.env.DCR_LIMITS__REDIS_URL=redis://u:p@r:6379")
    assert secret.returncode != 0


def test_kubernetes_schema_rejects_unknown_and_too_new_fields(tools: dict[str, Path], tmp_path: Path) -> None:
    docs = render(tools, "-f", CHART / "ci" / "default-values.yaml")
    assert validate(write(tmp_path / "ok.yaml", docs)).returncode == 0

    only(docs, "Deployment")["spec"]["template"]["spec"]["containers"][0]["livenessprobe"] = {}
    unknown = validate(write(tmp_path / "unknown.yaml", docs))
    assert unknown.returncode == 1
    assert "livenessprobe" in unknown.stdout
    assert "Kubernetes 1.29.0" in unknown.stdout
    assert "Kubernetes 1.37.0" in unknown.stdout

    # Pod-level resources exist from Kubernetes 1.32 on: valid for the newest version, not for the oldest.
    docs = render(tools, "-f", CHART / "ci" / "default-values.yaml")
    only(docs, "Deployment")["spec"]["template"]["spec"]["resources"] = {"limits": {"cpu": "1"}}
    too_new = write(tmp_path / "too-new.yaml", docs)
    assert validate(too_new, versions=("1.37.0",)).returncode == 0
    oldest = validate(too_new, versions=("1.29.0",))
    assert oldest.returncode == 1
    assert "resources" in oldest.stdout


def test_custom_resources_are_checked_not_skipped(tools: dict[str, Path], tmp_path: Path) -> None:
    docs = render(tools, "-f", CHART / "ci" / "servicemonitor-values.yaml", *CRD_APIS)
    only(docs, "ServiceMonitor")["spec"]["endpoints"][0]["intervall"] = "30s"
    monitor = validate(write(tmp_path / "sm.yaml", docs))
    assert monitor.returncode == 1
    assert "intervall" in monitor.stdout

    docs = render(tools, "-f", CHART / "ci" / "httproute-values.yaml")
    del only(docs, "HTTPRoute")["spec"]["parentRefs"]
    route = validate(write(tmp_path / "route.yaml", docs))
    assert route.returncode == 1
    assert "parentRefs" in route.stdout

    widget = {"apiVersion": "example.com/v1", "kind": "Widget", "metadata": {"name": "w"}}
    unknown = validate(write(tmp_path / "widget.yaml", [widget]))
    assert unknown.returncode == 1
    assert "no schema for example.com/v1 Widget" in unknown.stdout


def test_pod_security_check_rejects_what_restricted_forbids(tools: dict[str, Path], tmp_path: Path) -> None:
    result = helm_template(
        tools,
        "-f",
        CHART / "ci" / "default-values.yaml",
        "--set",
        "securityContext.allowPrivilegeEscalation=true",
        "--set",
        "podSecurityContext.seccompProfile.type=Unconfined",
        "--set-json",
        'securityContext.capabilities={"add": ["NET_RAW"]}',
    )
    assert result.returncode == 0, result.stderr
    psa = run(tools["psacheck"], write(tmp_path / "weak.yaml", list(yaml.safe_load_all(result.stdout))))
    assert psa.returncode == 1
    for rule in ("allowPrivilegeEscalation != false", "seccompProfile", "unrestricted capabilities"):
        assert f"Deployment/rel-dcr-gateway: FORBIDDEN by restricted:latest: {rule}" in psa.stdout
    nothing = run(tools["psacheck"], write(tmp_path / "no-pods.yaml", [{"apiVersion": "v1", "kind": "ConfigMap"}]))
    assert nothing.returncode == 2
    assert "no Pod template found" in nothing.stderr


@pytest.mark.parametrize(
    ("template", "broken", "fixed", "failing_test"),
    [
        ("pdb.yaml", '(gt (int (include "dcr-gateway.minReplicas" .)) 1)', "true", "renders no PDB with a single"),
        (
            "deployment.yaml",
            "{{- if not .Values.autoscaling.enabled }}",
            "{{- if true }}",
            "leaves replicas to the HPA",
        ),
        ("servicemonitor.yaml", '(.Capabilities.APIVersions.Has "monitoring.coreos.com/v1")', "true", "is absent when"),
    ],
    ids=["pdb-single-replica", "replicas-with-hpa", "servicemonitor-without-api"],
)
def test_unittest_suites_catch_a_broken_template(
    tools: dict[str, Path], tmp_path: Path, template: str, broken: str, fixed: str, failing_test: str
) -> None:
    """A copy of the chart with one guard removed: the helm-unittest suites fail, naming the case."""
    chart = tmp_path / "dcr-gateway"
    shutil.copytree(CHART, chart)
    path = chart / "templates" / template
    source = path.read_text()
    assert broken in source
    path.write_text(source.replace(broken, fixed))
    result = run(tools["helm-unittest"], "--strict", "-f", "tests/*_test.yaml", chart)
    assert result.returncode != 0
    assert failing_test in result.stdout


def test_ci_values_cover_the_matrix() -> None:
    """The values files every check above runs over (an empty ci/ would leave the parametrised checks empty)."""
    assert {path.name.removesuffix("-values.yaml") for path in CI_VALUES} >= {
        "default",
        "hpa-pdb",
        "redis-existing-secrets",
        "servicemonitor",
        "networkpolicy",
        "ingress",
        "httproute",
        "keycloak",
        "hydra",
    }


# ------------------------------------------------------------------ secrets, shutdown grace, CIMD egress


def _holds_secret(annotation: Any) -> bool:
    return annotation is SecretStr or any(_holds_secret(arg) for arg in get_args(annotation))


def _secret_paths(annotation: Any, path: tuple[str, ...] = ()) -> Iterator[tuple[str, ...]]:
    """Paths of the settings that carry a secret (``SecretStr``, or a mapping of them such as header maps), with
    a mapping's key written as a sample name."""
    node = _node(annotation)
    if node.kind == "model" and node.model is not None:
        for name, info in node.model.model_fields.items():
            yield from _secret_paths(info.annotation, (*path, name))
    elif node.kind == "mapping":
        if _holds_secret(node.item):
            yield path
            yield (*path, "default")  # the placeholder of the names check
            yield (*path, "Authorization")
        else:
            yield from _secret_paths(node.item, (*path, "default"))
    elif _holds_secret(annotation):
        yield path


def _env(path: tuple[str, ...]) -> str:
    return "DCR_" + "__".join(part.upper() for part in path)


def _chart_own_names(tools: dict[str, Path]) -> set[str]:
    """The names the chart's ConfigMap renders from its own values, over every ci values file."""
    own: set[str] = set()
    for values in CI_VALUES:
        document = yaml.safe_load(values.read_text()) or {}
        given = set((document.get("config") or {}).get("env") or {})
        own |= set(only(render(tools, "-f", values), "ConfigMap", "rel-dcr-gateway")["data"]) - given
    return own


def test_every_secret_setting_is_refused_in_config_env(tools: dict[str, Path], tmp_path: Path) -> None:
    """``config.env`` lands in a plain ConfigMap: each secret-bearing setting of the gateway's models (nested and
    per-key forms included), a whole section given as JSON that carries one, and the OTLP exporter's headers are
    refused at render time with what to do instead; every other setting passes."""
    paths = sorted(set(_secret_paths(settings_class())))
    assert {"DCR_KEYCLOAK__CLIENT_SECRET", "DCR_LIMITS__REDIS_URL", "DCR_HYDRA__ADMIN_HEADERS__AUTHORIZATION"} <= {
        _env(path) for path in paths
    }
    cases: dict[str, str] = {_env(path): "leaked" for path in paths}
    for path in paths:  # the same secret inside its section's JSON: DCR_LIMITS='{"redis_url": ...}'
        for cut in range(1, len(path)):
            value: Any = "leaked"
            for part in reversed(path[cut:]):
                value = {part: value}
            cases.setdefault(_env(path[:cut]), json.dumps(value))
    for prefix in ("", "TRACES_", "METRICS_", "LOGS_"):
        cases[f"OTEL_EXPORTER_OTLP_{prefix}HEADERS"] = "authorization=Bearer leaked"
    for name, value in cases.items():
        values = tmp_path / "env.yaml"
        values.write_text(yaml.safe_dump({"config": {"env": {name: value}}}))
        result = helm_template(tools, "-f", CHART / "ci" / "default-values.yaml", "-f", values)
        assert result.returncode != 0, f"config.env.{name}={value} rendered into the ConfigMap"
        assert "extraEnv" in result.stderr and "secretKeyRef" in result.stderr, (name, result.stderr)
        assert "leaked" not in result.stderr, (name, result.stderr)
    secret_names = {_env(path[:cut]) for path in paths for cut in range(1, len(path) + 1)}
    others = {
        "DCR_" + "__".join((part or "default").upper() for part in path)
        for path in _env_candidates(_Node("model", model=settings_class()))
    } - secret_names
    others -= _chart_own_names(tools) | {"DCR_SHUTDOWN"}  # refused: the chart sets those (next test)
    values = tmp_path / "others.yaml"
    values.write_text(yaml.safe_dump({"config": {"env": dict.fromkeys(sorted(others), "x")}}))
    configmap = only(render(tools, "-f", CHART / "ci" / "default-values.yaml", "-f", values), "ConfigMap")
    assert others <= set(configmap["data"])


@pytest.mark.parametrize(
    ("sets", "provider_timeout"),
    [
        ((), None),
        (("--set-string", "config.env.DCR_PROVIDER_TIMEOUT=4"), 4.0),
        (("--set-string", "config.env.DCR_PROVIDER_TIMEOUT=12.5", "--set", "shutdown.drainSeconds=0"), 12.5),
    ],
)
def test_the_grace_period_covers_the_gateways_worst_shutdown(
    tools: dict[str, Path], sets: tuple[str, ...], provider_timeout: float | None
) -> None:
    """Kubernetes sends SIGKILL after ``terminationGracePeriodSeconds``: by default it covers the drain, the bound
    on in-flight requests, and 3 x the provider timeout the gateway then waits for a cut create to be rolled back
    (gateway/server.py), from the ConfigMap the pod reads and the gateway's defaults."""
    docs = render(tools, "-f", CHART / "ci" / "default-values.yaml", *sets)
    data = only(docs, "ConfigMap")["data"]
    grace = only(docs, "Deployment")["spec"]["template"]["spec"]["terminationGracePeriodSeconds"]
    default = settings_class().model_fields["provider_timeout"].default
    timeout = float(data.get("DCR_PROVIDER_TIMEOUT", default))
    assert timeout == (provider_timeout or default)
    worst = float(data["DCR_SHUTDOWN__DRAIN_SECONDS"]) + float(data["DCR_SHUTDOWN__TIMEOUT_SECONDS"]) + 3 * timeout
    assert grace >= worst


def test_config_env_cannot_override_what_the_chart_sets(tools: dict[str, Path], tmp_path: Path) -> None:
    """A name the chart renders from a value (``DCR_SHUTDOWN__TIMEOUT_SECONDS`` from ``shutdown.timeoutSeconds``, which
    the grace period is computed from, ``DCR_PORT``, ...) is refused in ``config.env``, naming that value: a second
    copy would make a duplicate key in the ConfigMap and let the grace period fall behind the gateway's settings."""
    own = _chart_own_names(tools)
    assert {"DCR_SHUTDOWN__TIMEOUT_SECONDS", "DCR_SHUTDOWN__DRAIN_SECONDS", "DCR_PORT", "DCR_LIMITS__BACKEND"} <= own
    for name in sorted(own | {"DCR_SHUTDOWN"}):  # the section as JSON, too
        values = tmp_path / "env.yaml"
        values.write_text(yaml.safe_dump({"config": {"env": {name: "1"}}}))
        extra = ("--set", "tracing.otlpEndpoint=http://collector:4318") if name.startswith("OTEL_") else ()
        result = helm_template(tools, "-f", CHART / "ci" / "default-values.yaml", "-f", values, *extra)
        assert result.returncode != 0, f"config.env.{name} rendered next to the chart's own"
        assert f"config.env.{name} " in result.stderr and " instead" in result.stderr, result.stderr


_SPECIAL_USE_SAMPLES = (
    *(
        ipaddress.ip_network(network)
        for network in (
            "0.0.0.0/8",
            "10.0.0.0/8",
            "100.64.0.0/10",
            "127.0.0.0/8",
            "169.254.0.0/16",
            "172.16.0.0/12",
            "192.0.0.0/24",
            "192.0.2.0/24",
            "192.88.99.0/24",
            "192.168.0.0/16",
            "198.18.0.0/15",
            "198.51.100.0/24",
            "203.0.113.0/24",
            "224.0.0.0/4",
            "240.0.0.0/4",
            "::/128",
            "::1/128",
            "::/96",
            "::ffff:0:0/96",
            "64:ff9b:1::/48",
            "100::/64",
            "2001::/23",
            "2001:db8::/32",
            "2001:2::/48",
            "2001:10::/28",
            "fc00::/7",
            "fe80::/10",
            "ff00::/8",
        )
    ),
    *_SPECIAL_USE_NETWORKS,
)
"""IANA's special-purpose registries (RFC 6890) and the ranges the gateway's own check adds."""


def _allowed(rule: dict[str, Any], address: ipaddress.IPv4Address | ipaddress.IPv6Address) -> bool:
    for peer in rule.get("to", []):
        block = peer.get("ipBlock")
        if block is None:
            continue
        cidr = ipaddress.ip_network(block["cidr"])
        if cidr.version == address.version and address in cidr:
            excepted = (ipaddress.ip_network(e) for e in block.get("except", []))
            if not any(e.version == address.version and address in e for e in excepted):
                return True
    return False


def test_cimd_egress_reaches_public_addresses_only_over_both_families(tools: dict[str, Path]) -> None:
    """The CIMD rule of the NetworkPolicy lets through no address the gateway's own check
    (:func:`gateway.policy.uris.is_public_address`) refuses, IPv4 and IPv6 (embedded IPv4 forms included), and
    public addresses of both families (dual-stack clusters) pass."""
    policy = only(render(tools, "-f", CHART / "ci" / "networkpolicy-values.yaml"), "NetworkPolicy")
    [rule] = [rule for rule in policy["spec"]["egress"] if rule["ports"] == [{"port": 443, "protocol": "TCP"}]]
    samples: list[ipaddress.IPv4Address | ipaddress.IPv6Address] = []
    for network in _SPECIAL_USE_SAMPLES:
        samples += [network.network_address, network.broadcast_address, network[network.num_addresses // 2]]
    samples += [
        ipaddress.ip_address(text)
        for text in ("::ffff:10.0.0.1", "64:ff9b::a00:1", "64:ff9b::7f00:1", "2002:a00:1::1", "::ffff:0:a00:1")
    ]
    let_through = [
        str(address) for address in samples if not is_public_address(str(address)) and _allowed(rule, address)
    ]
    assert not let_through, f"special-use addresses reachable for CIMD fetches: {let_through}"
    for public in ("93.184.215.14", "8.8.8.8", "2606:4700:4700::1111", "2a00:1450:4001:82a::200e"):
        assert is_public_address(public)
        assert _allowed(rule, ipaddress.ip_address(public)), public
