"""Provider releases (issue 13): version parsing, the release defects the conformance suite expects, the matrix
runner's cells and how it reads a cell's JUnit report, and which tests a matrix cell keeps."""

from __future__ import annotations

from pathlib import Path

import pytest

from adapters.base import ProviderVersion, version_tuple
from devstack import matrix
from devstack.providers import pinned_versions
from gateway.conformance.report import Cell, Outcome, Report, Row
from gateway.conformance.runner import _expect_release_defects
from gateway.conformance.versions import release_defect


@pytest.mark.parametrize(
    ("text", "parsed"),
    [
        ("26.7.3", (26, 7, 3)),
        ("v2.3.0", (2, 3, 0)),
        ("V25.4.0", (25, 4, 0)),
        ("26.8.0-rc1", (26, 8, 0)),
        ("24.0.5.redhat-00001", (24, 0, 5)),
        ("master", ()),
        ("", ()),
        (None, ()),
    ],
)
def test_version_tuple(text: str | None, parsed: tuple[int, ...]) -> None:
    assert version_tuple(text) == parsed


def test_at_least_is_false_for_an_unknown_version() -> None:
    assert ProviderVersion("hydra", "v25.4.0").at_least(25, 4)
    assert not ProviderVersion("hydra", "v2.3.0").at_least(25, 4)
    assert not ProviderVersion("keycloak", None).at_least(1)


def test_the_refresh_audience_defect_is_expected_on_keycloak_24_only() -> None:
    reason = release_defect("keycloak", "24.0.5", "resource-audience-after-refresh", "check")
    assert reason is not None and "24.0.5" in reason
    assert release_defect("keycloak", "25.0.6", "resource-audience-after-refresh", "check") is None
    assert release_defect("keycloak", None, "resource-audience-after-refresh", "check") is None
    assert release_defect("hydra", "v2.2.0", "resource-audience-after-refresh", "check") is None
    assert release_defect("keycloak", "24.0.5", "resource-audience", "check") is None


def _report(outcome: Outcome) -> Report:
    report = Report(issuer="http://127.0.0.1/realms/mcp", provider="keycloak", login=None, sections=[])
    cells = {"check": Cell(outcome, "aud [] does not name the resource")}
    report.rows.append(Row("authorization", "resource-audience-after-refresh", "", cells))
    return report


def test_a_release_defect_turns_the_failure_into_an_expected_one_naming_the_version() -> None:
    report = _report(Outcome.FAIL)
    _expect_release_defects(report, "keycloak", "24.0.5")
    cell = report.rows[0].cells["check"]
    assert cell.outcome is Outcome.XFAIL
    assert "Keycloak 24.0.5" in cell.detail and "aud []" in cell.detail
    assert any("keycloak 24.0.5" in note for note in report.notes)


def test_a_release_defect_that_passes_is_an_xpass_and_other_releases_are_untouched() -> None:
    passing = _report(Outcome.PASS)
    _expect_release_defects(passing, "keycloak", "24.0.5")
    assert passing.rows[0].cells["check"].outcome is Outcome.XPASS
    newer = _report(Outcome.FAIL)
    _expect_release_defects(newer, "keycloak", "26.7.3")
    assert newer.rows[0].cells["check"].outcome is Outcome.FAIL


def test_the_matrix_has_every_pinned_version_and_a_postgres_cell_per_provider() -> None:
    versions = pinned_versions()
    names = [cell.name for cell in matrix.all_cells(versions)]
    for version in versions["KEYCLOAK_MATRIX"].split(","):
        assert f"keycloak-{version}" in names
    for version in versions["HYDRA_MATRIX"].split(","):
        assert f"hydra-{version}" in names
    assert f"keycloak-{versions['KEYCLOAK_VERSION']}-postgres" in names
    assert f"hydra-{versions['HYDRA_VERSION']}-postgres" in names
    assert versions["KEYCLOAK_VERSION"] in versions["KEYCLOAK_MATRIX"].split(",")
    assert versions["HYDRA_VERSION"] in versions["HYDRA_MATRIX"].split(",")
    ends = [cell.name for cell in matrix.end_cells(versions)]
    keycloak = versions["KEYCLOAK_MATRIX"].split(",")
    hydra = versions["HYDRA_MATRIX"].split(",")
    assert ends == [f"keycloak-{keycloak[0]}", f"keycloak-{keycloak[-1]}", f"hydra-{hydra[0]}", f"hydra-{hydra[-1]}"]


def test_a_postgres_cell_sets_the_database_and_runs_the_concurrency_suite() -> None:
    cell = matrix.Cell("hydra", "v2.3.0", "postgres")
    assert cell.env() == {"DCR_TEST_ONLY_PROVIDER": "hydra", "DCR_HYDRA_VERSION": "v2.3.0", "DCR_HYDRA_DB": "postgres"}
    assert "concurrency" in cell.suites
    assert "concurrency" not in matrix.Cell("hydra", "v2.3.0", "memory").suites


JUNIT = """<?xml version="1.0" encoding="utf-8"?>
<testsuites><testsuite name="pytest">
<testcase classname="tests.integration.test_adapter_contract.TestKeycloakAdapter" name="test_a"/>
<testcase classname="tests.integration.test_adapter_contract.TestKeycloakAdapter" name="test_b"/>
<testcase classname="tests.integration.test_conformance" name="test_matrix">
  <failure message="AssertionError: aud []&#10;more">trace</failure></testcase>
<testcase classname="tests.integration.test_provider_lengths" name="test_x">
  <skipped type="pytest.xfail" message="Keycloak 24.0.5 stores it shorter"/></testcase>
<testcase classname="tests.integration.test_provider_lengths" name="test_y"/>
<testcase classname="tests.integration.test_conformance" name="test_gateway">
  <properties><property name="release_defect" value="resource-audience-after-refresh/check: Keycloak 24.0.5"/>
  </properties></testcase>
<testcase classname="tests.unit.test_other" name="test_z"/>
</testsuite></testsuites>
"""


def test_read_junit_sorts_the_outcomes_into_suites(tmp_path: Path) -> None:
    path = tmp_path / "junit.xml"
    path.write_text(JUNIT)
    results = matrix.read_junit(path, ("contract", "conformance", "lengths"))
    assert (results["contract"].outcome, results["contract"].passed) == ("pass", 2)
    assert results["conformance"].outcome == "fail"
    assert results["conformance"].reasons[0] == "FAIL test_conformance::test_matrix: AssertionError: aud []"
    # a test that passed with a conformance cell failing as a known release defect: counted as an expected failure
    assert (results["conformance"].passed, results["conformance"].xfailed) == (1, 1)
    assert results["conformance"].reasons[1] == (
        "XFAIL test_conformance::test_gateway: resource-audience-after-refresh/check: Keycloak 24.0.5"
    )
    assert (results["lengths"].outcome, results["lengths"].xfailed, results["lengths"].passed) == ("xfail", 1, 1)
    assert "Keycloak 24.0.5" in results["lengths"].reasons[0]
    table = matrix.table([matrix.CellResult(matrix.Cell("keycloak", "24.0.5", "dev-file"), 12.0, 1.0, results)])
    assert "| keycloak | 24.0.5 | dev-file | pass 2 | FAIL 1/3 | pass 1 + xfail 1 | - | - | 12 s |" in table
    assert "- keycloak-24.0.5 lengths: XFAIL test_provider_lengths::test_x: Keycloak 24.0.5 stores it shorter" in table


def test_merge_reads_back_what_the_json_holds(tmp_path: Path) -> None:
    result = matrix.CellResult(
        matrix.Cell("hydra", "v2.2.0", "memory"),
        33.0,
        4.0,
        {
            "contract": matrix.SuiteResult("pass", 44),
            "conformance": matrix.SuiteResult("xfail", 3, 0, 1, 0, ["XFAIL x"]),
        },
    )
    entry = {"provider": "hydra", "version": "v2.2.0", "database": "memory", "seconds": 33.0, "prepare_seconds": 4.0}
    entry["suites"] = {name: vars(suite) for name, suite in result.suites.items()}
    again = matrix.cell_result_from_json(entry)
    assert again == result
    assert matrix.table([again]) == matrix.table([result])


def test_free_port_never_hands_out_a_port_twice_in_a_row_of_256(monkeypatch: pytest.MonkeyPatch) -> None:
    """The OS may offer a just-probed port again; two listeners of one process (a gateway's public and management
    ports, a cell's Keycloak and its gateway) once got the same one. A repeating OS is simulated here."""
    from devstack import process

    offered = iter([41001, 41001, 41002, 41001, 41002, 41003])

    class Probe:
        def __init__(self, *args: object) -> None:
            self.port = next(offered)

        def __enter__(self) -> Probe:
            return self

        def __exit__(self, *args: object) -> None:
            return None

        def bind(self, address: object) -> None:
            return None

        def getsockname(self) -> tuple[str, int]:
            return ("127.0.0.1", self.port)

    monkeypatch.setattr(process, "_HANDED_OUT", process.collections.deque(maxlen=256))
    monkeypatch.setattr(process.socket, "socket", Probe)
    assert [process.free_port(), process.free_port(), process.free_port()] == [41001, 41002, 41003]
