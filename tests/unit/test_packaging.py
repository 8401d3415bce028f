"""Only what the product uses ships in it (issue 9 part 4): the packages the wheel holds (pyproject's
``[tool.setuptools.packages.find]``) have no development-stack module, and the installed code imports nothing
that is only a development dependency."""

from __future__ import annotations

import ast
import sys
import tomllib
from pathlib import Path

from setuptools import find_packages

ROOT = Path(__file__).resolve().parents[2]
DEV_ONLY_IMPORTS = ("devstack", "gateway.devstack", "testcontainers", "ory_hydra_client", "pytest")
CONTRACT_PLUGIN = "gateway.testing"
"""The adapter contract suite: a pytest plugin for adapter authors, shipped with its own extra (``contract``:
pytest, pytest-asyncio); the service never imports it."""


def pyproject() -> dict[str, object]:
    return tomllib.loads((ROOT / "pyproject.toml").read_text())


def shipped_packages() -> list[str]:
    find = pyproject()["tool"]["setuptools"]["packages"]["find"]  # type: ignore[index]
    return find_packages(str(ROOT), include=find.get("include", ("*",)), exclude=find.get("exclude", ()))


def test_the_wheel_holds_no_development_stack() -> None:
    packages = shipped_packages()
    assert "gateway" in packages
    assert "adapters" in packages
    assert not [name for name in packages if "devstack" in name.split(".")]
    assert {name.split(".")[0] for name in packages} == {"gateway", "adapters"}


def _imports(package: str) -> list[tuple[Path, str]]:
    found = []
    for path in (ROOT / package.replace(".", "/")).glob("*.py"):
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if isinstance(node, ast.Import):
                found += [(path, alias.name) for alias in node.names]
            elif isinstance(node, ast.ImportFrom) and not node.level:
                found.append((path, node.module or ""))
    return found


def test_shipped_code_imports_no_development_dependency() -> None:
    offenders = []
    for package in shipped_packages():
        if package == CONTRACT_PLUGIN or package.startswith(CONTRACT_PLUGIN + "."):
            continue
        for path in (ROOT / package.replace(".", "/")).glob("*.py"):
            for node in ast.walk(ast.parse(path.read_text(), str(path))):
                names = (
                    [alias.name for alias in node.names]
                    if isinstance(node, ast.Import)
                    else [node.module or ""]
                    if isinstance(node, ast.ImportFrom) and not node.level
                    else []
                )
                offenders += [f"{path.relative_to(ROOT)}: {n}" for n in names if n.startswith(DEV_ONLY_IMPORTS)]
    assert offenders == []


def test_runtime_dependencies_are_what_the_service_imports() -> None:
    project = pyproject()["project"]
    runtime = {spec.split("==")[0] for spec in project["dependencies"]}  # type: ignore[index]
    dev = {spec.split("==")[0] for spec in project["optional-dependencies"]["dev"]}  # type: ignore[index]
    assert "ory-hydra-client" not in runtime
    assert {"ory-hydra-client", "testcontainers", "import-linter"} <= dev


def test_the_contract_plugin_needs_only_its_extra_and_the_service_never_imports_it() -> None:
    extras = pyproject()["project"]["optional-dependencies"]  # type: ignore[index]
    contract = {spec.split("==")[0] for spec in extras["contract"]}
    assert {"pytest", "pytest-asyncio"} <= contract
    third_party = {
        name.split(".")[0]
        for _, name in _imports(CONTRACT_PLUGIN)
        if not name.startswith(("gateway", "adapters", "__future__"))
    }
    assert third_party - sys.stdlib_module_names <= {"pytest", "pytest_asyncio", "aiohttp", "pydantic"}
    service = [
        f"{path.relative_to(ROOT)}: {name}"
        for package in shipped_packages()
        if not package.startswith(CONTRACT_PLUGIN)
        for path, name in _imports(package)
        if name.startswith(CONTRACT_PLUGIN)
    ]
    assert service == []
