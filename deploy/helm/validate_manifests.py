"""Validate rendered Kubernetes manifests strictly (unknown fields are errors) against the Kubernetes JSON schemas
bundled by the pinned ``kubernetes-validate`` wheel, for every given Kubernetes version, and against the project's
own schemas (``deploy/helm/schemas/``) for the custom resources the chart renders (ServiceMonitor, HTTPRoute).

    python deploy/helm/validate_manifests.py --kube-version 1.29.0 --kube-version 1.37.0 rendered.yaml ...

A kind with no schema is an error, never a silent pass. Exit status 0 when every document is valid, 1 otherwise
(one line per problem: file, kind/name, version, field path, message).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

import jsonschema
import kubernetes_validate
import yaml

SCHEMAS = Path(__file__).resolve().parent / "schemas"
# (apiVersion, kind) -> the project's own schema file, for custom resources the wheel does not carry
CUSTOM_SCHEMAS = {
    ("monitoring.coreos.com/v1", "ServiceMonitor"): SCHEMAS / "servicemonitor-monitoring-v1.json",
    ("gateway.networking.k8s.io/v1", "HTTPRoute"): SCHEMAS / "httproute-gateway-v1.json",
}


def documents(path: Path) -> list[dict[str, Any]]:
    docs = [doc for doc in yaml.safe_load_all(path.read_text()) if doc]
    for doc in docs:
        if not isinstance(doc, dict) or "kind" not in doc or "apiVersion" not in doc:
            raise SystemExit(f"{path}: a document without kind/apiVersion: {str(doc)[:80]}")
    return docs


def problems(doc: dict[str, Any], versions: list[str]) -> list[str]:
    name = f"{doc['kind']}/{doc.get('metadata', {}).get('name', '?')}"
    custom = CUSTOM_SCHEMAS.get((doc["apiVersion"], doc["kind"]))
    if custom is not None:
        schema = json.loads(custom.read_text())
        validator = jsonschema.Draft202012Validator(schema)
        return [
            f"{name} ({custom.name}): {'.'.join(map(str, error.absolute_path)) or '<root>'}: {error.message}"
            for error in sorted(validator.iter_errors(doc), key=lambda e: list(map(str, e.absolute_path)))
        ]
    found = []
    for version in versions:
        try:
            kubernetes_validate.validate(doc, version, strict=True)
        except kubernetes_validate.ValidationError as exc:
            path = ".".join(map(str, exc.path)) or "<root>"
            found.append(f"{name} (Kubernetes {version}): {path}: {exc.message}")
        except kubernetes_validate.SchemaNotFoundError:
            found.append(f"{name} (Kubernetes {version}): no schema for {doc['apiVersion']} {doc['kind']}")
    return found


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--kube-version", action="append", required=True, help="e.g. 1.29.0 (repeatable)")
    parser.add_argument("files", nargs="+", type=Path)
    args = parser.parse_args(argv)
    failed = False
    for path in args.files:
        docs = documents(path)
        if not docs:
            print(f"{path}: no documents", file=sys.stderr)
            return 1
        found = [problem for doc in docs for problem in problems(doc, args.kube_version)]
        for problem in found:
            print(f"{path}: {problem}")
        failed = failed or bool(found)
        kinds = sorted({doc["kind"] for doc in docs})
        verdict = "INVALID" if found else "valid"
        print(
            f"{path}: {len(docs)} documents {verdict} ({', '.join(kinds)}; Kubernetes {', '.join(args.kube_version)})"
        )
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
