"""The chart README's values table from values.yaml's helm-docs style ``# --`` comments (a comment starting with
``# --`` describes the key below it; following ``#`` lines continue it).

    python deploy/helm/values_doc.py           rewrite the table in deploy/helm/dcr-gateway/README.md
    python deploy/helm/values_doc.py --check   exit 1 when the README's table is not the one values.yaml gives
"""

from __future__ import annotations

import argparse
import json
import re
import sys
from pathlib import Path
from typing import Any

import yaml

CHART = Path(__file__).resolve().parent / "dcr-gateway"
START, END = "<!-- values:start -->", "<!-- values:end -->"
KEY = re.compile(r"^(?P<indent>\s*)(?P<key>[A-Za-z0-9_.-]+):")


def rows(text: str) -> list[tuple[str, Any, str]]:
    values = yaml.safe_load(text)
    found: list[tuple[str, Any, str]] = []
    stack: list[tuple[int, str]] = []
    description: list[str] | None = None
    for line in text.splitlines():
        stripped = line.strip()
        if stripped.startswith("# --"):
            description = [stripped.removeprefix("# --").strip()]
            continue
        if stripped.startswith("#"):
            if description is not None:
                description.append(stripped.removeprefix("#").strip())
            continue
        match = KEY.match(line)
        if not match or stripped.startswith("-"):
            continue
        indent = len(match["indent"])
        while stack and stack[-1][0] >= indent:
            stack.pop()
        stack.append((indent, match["key"]))
        if description is not None:
            path = [key for _, key in stack]
            value: Any = values
            for key in path:
                value = value[key]
            found.append((".".join(path), value, " ".join(description)))
            description = None
    return found


def table(text: str) -> str:
    lines = ["| key | type | default | description |", "|---|---|---|---|"]
    for path, value, description in rows(text):
        kind = {dict: "object", list: "list", bool: "bool", int: "int", str: "string", type(None): "null"}.get(
            type(value), type(value).__name__
        )
        default = json.dumps(value, separators=(",", ":"))
        cell = description.replace("|", "\\|")
        lines.append(f"| `{path}` | {kind} | `{default}` | {cell} |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--check", action="store_true")
    args = parser.parse_args(argv)
    readme = CHART / "README.md"
    current = readme.read_text()
    head, rest = current.split(START, 1)
    _, tail = rest.split(END, 1)
    wanted = f"{head}{START}\n{table((CHART / 'values.yaml').read_text())}\n{END}{tail}"
    if args.check:
        if wanted != current:
            print(f"{readme}: the values table is out of date: python deploy/helm/values_doc.py", file=sys.stderr)
            return 1
        return 0
    readme.write_text(wanted)
    return 0


if __name__ == "__main__":
    sys.exit(main())
