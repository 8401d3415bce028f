"""The conformance matrix as results, and its three renderings: a readable table, JSON and JUnit XML.

Cells are ``pass``, ``FAIL``, ``xfail`` (an expected failure, with its reason: what the provider legitimately
cannot do), ``XPASS`` (an expected failure that passed: reported, the expectation is stale), ``WARNING`` (a SHOULD
of the MCP specification not met, as the official MCP conformance suite reports it: shown, not failing), ``n/a``
(the step does not apply to this client, with the reason) or ``blocked`` (an earlier step of the same client
failed). The run fails on any ``FAIL`` or ``XPASS``. Rows name the MCP revisions whose requirements they check
(``revisions``: in the table's note column, the JSON rows and each JUnit test case's properties).
Pure functions: no I/O.
"""

from __future__ import annotations

import xml.etree.ElementTree as ET
from collections import Counter
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any


class Outcome(StrEnum):
    PASS = "pass"
    FAIL = "FAIL"
    XFAIL = "xfail"
    XPASS = "XPASS"
    WARNING = "WARNING"
    NA = "n/a"
    BLOCKED = "blocked"


FAILING = frozenset({Outcome.FAIL, Outcome.XPASS})


@dataclass
class Cell:
    outcome: Outcome
    detail: str = ""
    seconds: float = 0.0


@dataclass
class Row:
    section: str
    name: str
    title: str
    cells: dict[str, Cell] = field(default_factory=dict)
    note: str = ""
    """Free text shown after the cells (e.g. which MCP spec versions probe a discovery location)."""
    revisions: tuple[str, ...] = ()
    """The MCP specification revisions whose requirements this row checks (e.g. ``2025-11-25``, ``2026-07-28``)."""


@dataclass
class Section:
    name: str
    title: str
    columns: tuple[str, ...]
    note_column: str | None = None


@dataclass
class CreatedClient:
    """A client this run registered (any 2xx answer carrying a ``client_id``, a wrongly accepted refusal too),
    and whether the run deleted it again (RFC 7592 section 2.3). Never holds its secret or registration token."""

    client_id: str
    registered_by: str
    """The profile or refused registration whose request created it."""
    registration_client_uri: str | None = None
    deleted: bool = False
    detail: str = ""
    """Why it was not deleted (kept with ``--keep-clients``, no RFC 7592 fields, the DELETE's answer)."""
    document: bool = False
    """Created by the target from a Client ID Metadata Document (``client_id`` is the document's URL), not
    registered: no RFC 7592 for it."""


@dataclass
class RateLimitPause:
    """A ``429 Too Many Requests`` (RFC 6585 section 4) the run answered by pausing for its ``Retry-After``."""

    method: str
    url: str
    retry_after: float
    """Seconds the server asked for (RFC 9110 section 10.2.3), or the suite's back-off when it named none."""
    paused: float
    """Seconds this answer added to the run's pause (less than ``retry_after`` when another pause overlapped)."""
    retried: bool
    """False when waiting would have gone past ``--max-wait``: the 429 then stands, in the cell that got it."""


@dataclass
class Report:
    issuer: str
    provider: str | None
    login: str | None
    sections: list[Section]
    rows: list[Row] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    seconds: float = 0.0
    max_wait: float | None = None
    """The most the run may pause, in total, for ``Retry-After`` (``--max-wait``)."""
    pauses: list[RateLimitPause] = field(default_factory=list)
    created_clients: list[CreatedClient] = field(default_factory=list)
    keep_clients: bool = False

    @property
    def paused_seconds(self) -> float:
        return sum(pause.paused for pause in self.pauses)

    @property
    def left_behind(self) -> list[CreatedClient]:
        """Clients this run registered and did not delete (kept on purpose, or the delete failed)."""
        return [client for client in self.created_clients if not client.deleted]

    def row(self, name: str, section: str | None = None) -> Row:
        for row in self.rows:
            if row.name == name and (section is None or row.section == section):
                return row
        raise KeyError(name)

    def cell(self, name: str, column: str, section: str | None = None) -> Cell:
        return self.row(name, section).cells[column]

    def counts(self) -> Counter[Outcome]:
        return Counter(cell.outcome for row in self.rows for cell in row.cells.values())

    @property
    def failed(self) -> bool:
        return any(cell.outcome in FAILING for row in self.rows for cell in row.cells.values())

    def failures(self) -> list[tuple[str, str, Cell]]:
        return [
            (row.name, column, cell)
            for row in self.rows
            for column, cell in row.cells.items()
            if cell.outcome in FAILING
        ]


def _table(header: list[str], lines: list[list[str]]) -> list[str]:
    widths = [max(len(line[i]) for line in [header, *lines]) for i in range(len(header))]
    out = ["  ".join(value.ljust(width) for value, width in zip(header, widths, strict=True)).rstrip()]
    out.append("  ".join("-" * width for width in widths))
    out.extend("  ".join(value.ljust(w) for value, w in zip(line, widths, strict=True)).rstrip() for line in lines)
    return out


def render_text(report: Report) -> str:
    """The matrix as people read it: one table per section, then every non-pass cell with its reason."""
    out = [f"dcr-gateway conformance: issuer {report.issuer}"]
    out.append(f"provider: {report.provider or 'unknown (no expected failures apply)'}")
    out.append(
        f"login: {report.login or 'none (discovery and registration steps only: pass --login to run the flows)'}"
    )
    out.extend(report.notes)
    for section in report.sections:
        rows = [row for row in report.rows if row.section == section.name]
        if not rows:
            continue
        out.append("")
        out.append(section.title)
        header = [section.name, *section.columns, *([section.note_column] if section.note_column else [])]
        lines = [
            [
                row.name,
                *(_cell_text(row.cells.get(column)) for column in section.columns),
                *([row.note] if section.note_column else []),
            ]
            for row in rows
        ]
        out.extend(_table(header, lines))
    details = [
        f"  {row.name} / {column}: {cell.outcome.value}: {cell.detail}"
        for row in report.rows
        for column, cell in row.cells.items()
        if cell.outcome is not Outcome.PASS and cell.detail
    ]
    if details:
        out.append("")
        out.append("details")
        out.extend(details)
    counts = report.counts()
    summary = ", ".join(f"{counts[outcome]} {outcome.value}" for outcome in Outcome if counts[outcome])
    out.append("")
    out.append(f"{'FAILED' if report.failed else 'PASSED'}: {summary} in {report.seconds:.1f} s")
    return "\n".join(out) + "\n"


def _cell_text(cell: Cell | None) -> str:
    return "" if cell is None else cell.outcome.value


def to_json(report: Report) -> dict[str, Any]:
    """Everything in the report as JSON-ready data (for ``--json FILE``)."""
    return {
        "issuer": report.issuer,
        "provider": report.provider,
        "login": report.login,
        "passed": not report.failed,
        "seconds": round(report.seconds, 3),
        "notes": report.notes,
        "counts": {outcome.value: report.counts()[outcome] for outcome in Outcome},
        "rate_limits": {
            "max_wait_seconds": report.max_wait,
            "paused_seconds": round(report.paused_seconds, 3),
            "pauses": [
                {
                    "method": pause.method,
                    "url": pause.url,
                    "retry_after": pause.retry_after,
                    "paused_seconds": round(pause.paused, 3),
                    "retried": pause.retried,
                }
                for pause in report.pauses
            ],
        },
        "keep_clients": report.keep_clients,
        "created_clients": [
            {
                "client_id": client.client_id,
                "registered_by": client.registered_by,
                "registration_client_uri": client.registration_client_uri,
                "deleted": client.deleted,
                "detail": client.detail,
                "document": client.document,
            }
            for client in report.created_clients
        ],
        "sections": [
            {
                "name": section.name,
                "title": section.title,
                "columns": list(section.columns),
                "rows": [
                    {
                        "name": row.name,
                        "title": row.title,
                        "note": row.note,
                        "revisions": list(row.revisions),
                        "cells": {
                            column: {
                                "outcome": cell.outcome.value,
                                "detail": cell.detail,
                                "seconds": round(cell.seconds, 3),
                            }
                            for column, cell in row.cells.items()
                        },
                    }
                    for row in report.rows
                    if row.section == section.name
                ],
            }
            for section in report.sections
        ],
    }


def to_junit(report: Report) -> str:
    """JUnit XML (for CI test reports): one ``testsuite`` per section, one ``testcase`` per cell.

    ``FAIL`` and ``XPASS`` are ``<failure>``; ``xfail``, ``n/a`` and ``blocked`` are ``<skipped>`` with the reason.
    """
    suites = ET.Element("testsuites", name="dcr-gateway conformance", time=f"{report.seconds:.3f}")
    for section in report.sections:
        rows = [row for row in report.rows if row.section == section.name]
        cells = [(row, column, cell) for row in rows for column, cell in row.cells.items()]
        suite = ET.SubElement(
            suites,
            "testsuite",
            name=f"{section.name} ({report.issuer})",
            tests=str(len(cells)),
            failures=str(sum(cell.outcome in FAILING for _, _, cell in cells)),
            skipped=str(sum(cell.outcome in {Outcome.XFAIL, Outcome.NA, Outcome.BLOCKED} for _, _, cell in cells)),
            time=f"{sum(cell.seconds for _, _, cell in cells):.3f}",
        )
        for row, column, cell in cells:
            case = ET.SubElement(
                suite, "testcase", classname=f"{section.name}.{row.name}", name=column, time=f"{cell.seconds:.3f}"
            )
            if row.revisions:
                case_properties = ET.SubElement(case, "properties")
                ET.SubElement(case_properties, "property", name="mcp_revisions", value=", ".join(row.revisions))
            if cell.outcome is Outcome.FAIL:
                ET.SubElement(case, "failure", message=cell.detail[:500]).text = cell.detail
            elif cell.outcome is Outcome.XPASS:
                ET.SubElement(case, "failure", message="unexpected pass: " + cell.detail[:480]).text = cell.detail
            elif cell.outcome is Outcome.WARNING:
                ET.SubElement(case, "system-err").text = f"WARNING: {cell.detail}"
            elif cell.outcome is not Outcome.PASS:
                ET.SubElement(case, "skipped", message=f"{cell.outcome.value}: {cell.detail}"[:500])
    suite = ET.SubElement(
        suites,
        "testsuite",
        name=f"run ({report.issuer})",
        tests="0",
        failures="0",
        skipped="0",
        time=f"{report.seconds:.3f}",
    )
    properties = ET.SubElement(suite, "properties")
    ET.SubElement(properties, "property", name="rate_limit_paused_seconds", value=f"{report.paused_seconds:.1f}")
    ET.SubElement(properties, "property", name="max_wait_seconds", value=f"{report.max_wait or 0:g}")
    for client in report.created_clients:
        state = "deleted" if client.deleted else f"not deleted: {client.detail}"
        ET.SubElement(properties, "property", name=f"created_client {client.client_id}", value=state)
    ET.SubElement(suite, "system-out").text = "\n".join(report.notes) + "\n"
    ET.indent(suites)
    return ET.tostring(suites, encoding="unicode", xml_declaration=True) + "\n"
