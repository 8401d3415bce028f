"""``make matrix``: the adapter contract suite and the conformance suite against every supported provider version.

A *cell* is one provider at one version on one database. For each cell, in turn, this runs one pytest session with
``DCR_TEST_ONLY_PROVIDER`` (only the tests that exercise that provider), ``DCR_KEYCLOAK_VERSION`` /
``DCR_HYDRA_VERSION`` and ``DCR_KEYCLOAK_DB`` / ``DCR_HYDRA_DB`` set: the session starts that provider (fetched or
built once into the cache, keyed by version) and the gateways in front of it, exactly as ``make test`` does, and
runs the suites of the cell:

- ``contract``: the adapter contract suite (tests/integration/test_adapter_contract.py);
- ``conformance``: the conformance matrix through a gateway (tests/integration/test_conformance.py);
- ``lengths``: the stored-length and encoding limits, which depend on the provider's database
  (tests/integration/test_provider_lengths.py);
- ``listing``: ``clients list``/``gc`` and the quota's recount in admin calls per page, and the managed marker's search
  (refused, ignored or honoured, by release) (tests/integration/test_scale_listing.py);
- ``concurrency`` (PostgreSQL cells): the tests whose outcome depends on how the database answers concurrent writes.

The versions are versions.env's ``KEYCLOAK_MATRIX`` and ``HYDRA_MATRIX``; the PostgreSQL cells run each provider's
default version on PostgreSQL (:mod:`devstack.postgres`). The table (version x suite: pass, xfail with its reason,
fail) is printed and written as JSON (``--json``, default build/matrix/matrix.json), with every cell's JUnit XML and
pytest output beside it.

    python -m devstack.matrix                      # every cell (make matrix)
    python -m devstack.matrix --ends               # the oldest and newest version of each provider (.ci/run)
    python -m devstack.matrix --cells keycloak-24.0.5,hydra-v2.3.0-postgres
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
import xml.etree.ElementTree as ET
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from devstack.providers import REPO_ROOT, pinned_versions

SUITES: Mapping[str, tuple[str, ...]] = {
    "contract": ("tests/integration/test_adapter_contract.py",),
    "conformance": ("tests/integration/test_conformance.py",),
    "lengths": ("tests/integration/test_provider_lengths.py",),
    "listing": ("tests/integration/test_scale_listing.py",),
    "concurrency": (
        "tests/integration/test_loopback_redirects.py",
        "tests/integration/test_resource_binding.py",
        "tests/integration/test_document_clients.py",
        "tests/integration/test_scale_out.py",
        "tests/integration/test_rfc7592.py",
    ),
}
"""Suite name -> the test files it runs (each cell runs only the tests of them that exercise its provider)."""
BASE_SUITES = ("contract", "conformance", "lengths", "listing")
DEFAULT_DATABASE = {"keycloak": "dev-file", "hydra": "memory"}
DEFAULT_OUTPUT = REPO_ROOT / "build" / "matrix" / "matrix.json"
REASON_LENGTH = 800
"""An expected failure's reason is shown whole up to this many characters (the release defects name the version and
what was observed)."""
RELEASE_DEFECT_PROPERTY = "release_defect"
"""The JUnit property tests/integration/test_conformance.py records for a conformance cell that failed as a known
defect of the provider's release: the suite shows it as an expected failure."""


@dataclass(frozen=True)
class Cell:
    provider: str
    version: str
    database: str

    @property
    def name(self) -> str:
        suffix = "" if self.database == DEFAULT_DATABASE[self.provider] else f"-{self.database}"
        return f"{self.provider}-{self.version}{suffix}"

    @property
    def suites(self) -> tuple[str, ...]:
        return (*BASE_SUITES, "concurrency") if self.database == "postgres" else BASE_SUITES

    def env(self) -> dict[str, str]:
        upper = self.provider.upper()
        return {
            "DCR_TEST_ONLY_PROVIDER": self.provider,
            f"DCR_{upper}_VERSION": self.version,
            f"DCR_{upper}_DB": self.database,
        }


@dataclass
class SuiteResult:
    outcome: str = "not run"
    """``pass``, ``xfail`` (passed, with expected failures), ``fail``, ``skip`` (every test skipped) or ``not run``."""
    passed: int = 0
    failed: int = 0
    xfailed: int = 0
    skipped: int = 0
    reasons: list[str] = field(default_factory=list)
    """The expected failures' and skips' reasons, and the failing tests."""


@dataclass
class CellResult:
    cell: Cell
    seconds: float = 0.0
    prepare_seconds: float = 0.0
    suites: dict[str, SuiteResult] = field(default_factory=dict)
    error: str | None = None

    @property
    def ok(self) -> bool:
        return self.error is None and all(s.outcome in ("pass", "xfail") for s in self.suites.values())


def all_cells(versions: Mapping[str, str]) -> list[Cell]:
    """Every version of each provider on its development database, then each default version on PostgreSQL."""
    cells = [Cell("keycloak", v, "dev-file") for v in versions["KEYCLOAK_MATRIX"].split(",")]
    cells += [Cell("hydra", v, "memory") for v in versions["HYDRA_MATRIX"].split(",")]
    cells += [
        Cell("keycloak", versions["KEYCLOAK_VERSION"], "postgres"),
        Cell("hydra", versions["HYDRA_VERSION"], "postgres"),
    ]
    return cells


def end_cells(versions: Mapping[str, str]) -> list[Cell]:
    """The oldest and the newest version of each provider (what .ci/run runs besides the full suite)."""
    cells = []
    for provider, key, database in (("keycloak", "KEYCLOAK_MATRIX", "dev-file"), ("hydra", "HYDRA_MATRIX", "memory")):
        listed = versions[key].split(",")
        cells += [Cell(provider, v, database) for v in dict.fromkeys((listed[0], listed[-1]))]
    return cells


def _script(provider: str) -> Path:
    return REPO_ROOT / "deploy" / "providers" / f"{provider}.sh"


def prepare(cell: Cell, log: Path) -> None:
    """Fetch or build the cell's provider into the cache (a no-op when it is there)."""
    env = {**os.environ, **cell.env()}
    with log.open("ab") as out:
        subprocess.run(["bash", str(_script(cell.provider)), "ensure"], env=env, stdout=out, stderr=out, check=True)


def suite_of(testcase: ET.Element) -> str | None:
    """The suite a JUnit ``testcase`` belongs to, from its ``classname`` (``tests.integration.test_x.TestClass``)."""
    where = testcase.get("classname", "").replace(".", "/")
    for name, files in SUITES.items():
        if any(where.startswith(f.removesuffix(".py")) for f in files):
            return name
    return None


def read_junit(path: Path, suites: Sequence[str]) -> dict[str, SuiteResult]:
    """Per suite: how many tests passed, failed, failed as expected, were skipped; with the reasons."""
    results = {name: SuiteResult() for name in suites}
    for testcase in ET.parse(path).getroot().iter("testcase"):  # noqa: S314 (our own pytest wrote it)
        name = suite_of(testcase)
        if name not in results:
            continue
        result = results[name]
        test = f"{testcase.get('classname', '').rsplit('.', 1)[-1]}::{testcase.get('name')}"
        failure = testcase.find("failure")
        if failure is None:
            failure = testcase.find("error")
        skipped = testcase.find("skipped")
        if failure is not None:
            result.failed += 1
            result.reasons.append(f"FAIL {test}: {(failure.get('message') or '').splitlines()[0][:200]}")
        elif skipped is not None and skipped.get("type") == "pytest.xfail":
            result.xfailed += 1
            result.reasons.append(f"XFAIL {test}: {skipped.get('message', '')[:REASON_LENGTH]}")
        elif skipped is not None:
            result.skipped += 1
            result.reasons.append(f"SKIP {test}: {skipped.get('message', '')[:REASON_LENGTH]}")
        else:
            result.passed += 1
        for prop in testcase.iter("property"):
            if prop.get("name") == RELEASE_DEFECT_PROPERTY:  # passed, with a conformance cell failing as expected
                result.xfailed += 1
                result.reasons.append(f"XFAIL {test}: {prop.get('value', '')[:REASON_LENGTH]}")
    for result in results.values():
        if result.failed:
            result.outcome = "fail"
        elif result.xfailed:
            result.outcome = "xfail"  # passed, with expected failures
        elif result.passed:
            result.outcome = "pass"
        elif result.skipped:
            result.outcome = "skip"
    return results


def run_cell(cell: Cell, out_dir: Path, pytest_args: Sequence[str]) -> CellResult:
    result = CellResult(cell)
    cell_dir = out_dir / cell.name
    cell_dir.mkdir(parents=True, exist_ok=True)
    log = cell_dir / "pytest.log"
    log.write_text("")
    started = time.monotonic()
    try:
        prepare(cell, cell_dir / "prepare.log")
    except subprocess.CalledProcessError as exc:
        result.error = (
            f"could not fetch or build {cell.provider} {cell.version} (see {cell_dir / 'prepare.log'}): {exc}"
        )
        result.seconds = time.monotonic() - started
        return result
    result.prepare_seconds = time.monotonic() - started
    files = [f for suite in cell.suites for f in SUITES[suite]]
    junit = cell_dir / "junit.xml"
    junit.unlink(missing_ok=True)  # an earlier run's report must never stand for this one
    argv = [
        sys.executable,
        "-m",
        "pytest",
        "-q",
        "-rfEx",
        "-p",
        "no:cacheprovider",
        f"--junitxml={junit}",
        f"--basetemp={cell_dir / 'tmp'}",
        *pytest_args,
        *files,
    ]
    with log.open("ab") as out:
        status = subprocess.run(
            argv, check=False, cwd=REPO_ROOT, env={**os.environ, **cell.env()}, stdout=out, stderr=out
        ).returncode
    result.seconds = time.monotonic() - started
    if junit.exists():
        result.suites = read_junit(junit, cell.suites)
    if status not in (0, 1) or not junit.exists():
        tail = log.read_text(errors="replace").splitlines()[-5:]
        result.error = f"pytest exited {status}: {' / '.join(tail)[:500]}"
    return result


def cell_result_from_json(entry: Mapping[str, Any]) -> CellResult:
    """A cell's result as :func:`main` wrote it to the JSON file."""
    return CellResult(
        cell=Cell(entry["provider"], entry["version"], entry["database"]),
        seconds=float(entry.get("seconds", 0.0)),
        prepare_seconds=float(entry.get("prepare_seconds", 0.0)),
        suites={name: SuiteResult(**suite) for name, suite in (entry.get("suites") or {}).items()},
        error=entry.get("error"),
    )


def _cell_text(suite: SuiteResult) -> str:
    counts = f"{suite.passed}"
    if suite.outcome == "fail":
        return f"FAIL {suite.failed}/{suite.passed + suite.failed + suite.xfailed}"
    if suite.outcome == "xfail":
        return f"pass {counts} + xfail {suite.xfailed}"
    if suite.outcome == "pass":
        return f"pass {counts}"
    return suite.outcome


def table(results: Sequence[CellResult]) -> str:
    """The matrix as a Markdown table (the README's "Supported providers" table is this table), then the reasons."""
    suites = list(SUITES)
    header = ["provider", "version", "database", *suites, "time"]
    rows = [header, ["---"] * len(header)]
    notes: list[str] = []
    for result in results:
        cell = result.cell
        texts = [_cell_text(result.suites[s]) if s in result.suites else "-" for s in suites]
        if result.error:
            texts = [f"ERROR: {result.error[:80]}", *texts[1:]]
        rows.append([cell.provider, cell.version, cell.database, *texts, f"{result.seconds:.0f} s"])
        for name, suite in result.suites.items():
            notes += [f"- {cell.name} {name}: {reason}" for reason in suite.reasons if not reason.startswith("SKIP")]
        if result.error:
            notes.append(f"- {cell.name}: {result.error}")
    lines = ["| " + " | ".join(row) + " |" for row in rows]
    return "\n".join(lines + (["", *notes] if notes else []))


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m devstack.matrix", description=__doc__.split("\n\n")[0])
    parser.add_argument("--ends", action="store_true", help="only the oldest and newest version of each provider")
    parser.add_argument("--cells", help="comma-separated cell names (e.g. keycloak-24.0.5,hydra-v2.3.0-postgres)")
    parser.add_argument("--list", action="store_true", help="print the cells and exit")
    parser.add_argument("--json", type=Path, default=DEFAULT_OUTPUT, help=f"where to write the JSON ({DEFAULT_OUTPUT})")
    parser.add_argument(
        "--merge",
        action="store_true",
        help="keep the other cells of an earlier --json file: the table and the file show them with the cells run now "
        "(a cell run again replaces its earlier result)",
    )
    parser.add_argument("pytest_args", nargs="*", help="passed to every cell's pytest (after --)")
    args = parser.parse_args(argv)
    versions = pinned_versions()
    cells = end_cells(versions) if args.ends else all_cells(versions)
    if args.cells:
        wanted = args.cells.split(",")
        known = {cell.name: cell for cell in all_cells(versions)}
        unknown = [name for name in wanted if name not in known]
        if unknown:
            parser.error(f"unknown cells {unknown}; cells: {', '.join(known)}")
        cells = [known[name] for name in wanted]
    if args.list:
        print("\n".join(cell.name for cell in cells))
        return 0
    out_dir = args.json.parent
    out_dir.mkdir(parents=True, exist_ok=True)
    started = time.monotonic()
    results: list[CellResult] = []
    for index, cell in enumerate(cells, 1):
        print(f"matrix: [{index}/{len(cells)}] {cell.name} ...", flush=True)
        result = run_cell(cell, out_dir, args.pytest_args)
        results.append(result)
        outcome = "ok" if result.ok else "FAILED"
        print(f"matrix: [{index}/{len(cells)}] {cell.name} {outcome} in {result.seconds:.0f} s", flush=True)
    took = time.monotonic() - started
    if args.merge and args.json.exists():
        earlier = [cell_result_from_json(entry) for entry in json.loads(args.json.read_text()).get("cells", [])]
        ran = {result.cell.name for result in results}
        order = [cell.name for cell in all_cells(versions)]
        # earlier cells of versions no longer in versions.env are dropped
        merged = [result for result in earlier if result.cell.name not in ran and result.cell.name in order] + results
        results = sorted(merged, key=lambda r: order.index(r.cell.name) if r.cell.name in order else len(order))
    text = table(results)
    print(text)
    print(f"matrix: {len(results)} cells, {took:.0f} s in this run; JSON: {args.json}")
    document = {
        "seconds": round(took, 1),
        "cell_seconds": round(sum(r.seconds for r in results), 1),
        "cells": [
            {
                "name": r.cell.name,
                **asdict(r.cell),
                "ok": r.ok,
                "seconds": round(r.seconds, 1),
                "prepare_seconds": round(r.prepare_seconds, 1),
                "error": r.error,
                "suites": {name: asdict(s) for name, s in r.suites.items()},
            }
            for r in results
        ],
        "table": text,
    }
    args.json.write_text(json.dumps(document, indent=2) + "\n")
    return 0 if all(r.ok for r in results) else 1


if __name__ == "__main__":
    sys.exit(main())
