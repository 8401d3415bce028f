"""Client ID Metadata Documents for the conformance suite: where the CIMD profiles' documents come from, and the
documents an authorization server must refuse.

draft-ietf-oauth-client-id-metadata-document (the revision MCP 2025-11-25 and 2026-07-28 cite) and MCP
2026-07-28 ``client-registration``: the ``client_id`` is an https URL with a path; the server fetches it (no
redirects, 200 only, a JSON object, about 5 KB at most), checks that its ``client_id`` is the URL exactly, that it
names ``client_name`` and ``redirect_uris`` and no shared-secret authentication, that the request's
``redirect_uri`` is one of its ``redirect_uris``, and never fetches from special-use addresses (RFC 6890).

Three ways to host the CIMD profiles' documents (:class:`DocumentHosting`):

- ``--cimd-serve-on HOST:PORT --cimd-ca-dir DIR``: the suite serves them itself over https
  (:mod:`gateway.conformance.cimd_host`, certificate from the development CA in DIR, which the target must trust,
  and ``https://HOST:PORT`` a document origin it accepts); ``client_id`` is rewritten to the local URL;
- ``--cimd-docs-dir DIR --cimd-base-url URL``: the suite writes them into DIR, which a running host serves at URL
  (the local stack: ``.stack/cimd/docs`` at ``https://localhost:8443``);
- ``--cimd-published``: the clients' real published URLs (a staging issuer on the internet): the documents are
  the clients' own, so only the cases that need no document host of the suite's run among the refusals.

Pure data and file writes; the runner does the HTTP.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from gateway.conformance.cimd_host import REDIRECT_SUFFIX

MAX_DOCUMENT_BYTES = 5120
"""The draft's recommended cap on a document ("5 kilobytes"); the oversized case sends more than this."""
_NAME = re.compile(r"[a-z0-9-]+")


@dataclass(frozen=True)
class DocumentHosting:
    """Where the run's documents live (see the module docstring). ``directory`` and ``base_url`` for a host the
    suite writes to (its own or the stack's); ``published`` for the clients' real URLs."""

    base_url: str | None = None
    directory: Path | None = None
    published: bool = False

    @property
    def local(self) -> bool:
        return self.directory is not None and self.base_url is not None

    def url(self, name: str) -> str:
        if not _NAME.fullmatch(name) or self.base_url is None:
            raise ValueError(f"no local document URL for {name!r}")
        return f"{self.base_url.rstrip('/')}/{name}.json"

    def write(self, name: str, body: bytes) -> str:
        """Serve ``body`` at :meth:`url` (the host serves it as ``application/json``, whatever it is)."""
        url = self.url(name)
        assert self.directory is not None  # noqa: S101 (url() checked base_url; local hosting has both)
        self.directory.mkdir(parents=True, exist_ok=True)
        (self.directory / f"{name}.json").write_bytes(body)
        (self.directory / f"{name}.json{REDIRECT_SUFFIX}").unlink(missing_ok=True)
        return url

    def publish(self, name: str, document: Mapping[str, Any], *, client_id: str | None = None) -> str:
        """Serve ``document`` at :meth:`url` with its ``client_id`` set to that URL (or to ``client_id``)."""
        url = self.url(name)
        return self.write(name, json.dumps({**document, "client_id": client_id or url}).encode())

    def redirect(self, name: str, target: str) -> str:
        """Make :meth:`url` answer ``302`` to ``target``."""
        url = self.url(name)
        assert self.directory is not None  # noqa: S101
        self.directory.mkdir(parents=True, exist_ok=True)
        (self.directory / f"{name}.json").unlink(missing_ok=True)
        (self.directory / f"{name}.json{REDIRECT_SUFFIX}").write_text(target + "\n")
        return url


@dataclass(frozen=True)
class RefusedDocument:
    """An authorization request naming a document the server must refuse, before anything reaches the provider."""

    name: str
    title: str
    error: str
    """The error of the ``400`` JSON answer: ``invalid_client`` for the document, ``invalid_request`` for a
    ``redirect_uri`` the document does not list (RFC 6749 section 4.1.2.1: never redirected to)."""
    needs_host: bool = True
    """Needs a document host the suite writes to (else n/a with ``--cimd-published``)."""


REFUSED_DOCUMENTS = (
    RefusedDocument("cimd-http-url", "client_id is an http URL (CIMD: https only)", "invalid_client", False),
    RefusedDocument("cimd-client-id-mismatch", "the document's client_id is not its URL", "invalid_client"),
    RefusedDocument(
        "cimd-redirect-not-in-document",
        "redirect_uri not among the document's redirect_uris (never redirected to)",
        "invalid_request",
    ),
    RefusedDocument(
        "cimd-private-address", "document URL on a private address (https://10.1.2.3/...)", "invalid_client", False
    ),
    RefusedDocument(
        "cimd-loopback-address",
        "document URL on a loopback address that is no development origin (https://127.0.0.2/...)",
        "invalid_client",
        False,
    ),
    RefusedDocument("cimd-redirect-on-fetch", "the document URL answers 302 (no redirects)", "invalid_client"),
    RefusedDocument("cimd-oversized", f"a document of more than {MAX_DOCUMENT_BYTES} bytes", "invalid_client"),
    RefusedDocument("cimd-not-json", "the document is not JSON", "invalid_client"),
    RefusedDocument(
        "cimd-shared-secret", "token_endpoint_auth_method client_secret_basic (a shared secret)", "invalid_client"
    ),
    RefusedDocument("cimd-missing-redirect-uris", "a document without redirect_uris", "invalid_client"),
)


def base_document(name: str, redirect_uri: str) -> dict[str, Any]:
    """A valid public client's document (the refused cases each change one thing)."""
    return {
        "client_name": f"dcr-gateway conformance {name}",
        "redirect_uris": [redirect_uri],
        "grant_types": ["authorization_code"],
        "response_types": ["code"],
        "token_endpoint_auth_method": "none",
    }


def _http_url(hosting: DocumentHosting, document: dict[str, Any]) -> str:
    if hosting.local:
        return "http://" + hosting.publish("cimd-http-url", document).removeprefix("https://")
    return "http://client.example.com/cimd-http-url.json"


def _oversized(hosting: DocumentHosting, document: dict[str, Any]) -> str:
    url = hosting.url("cimd-oversized")
    padded = {**document, "client_id": url, "client_name": "x" * (MAX_DOCUMENT_BYTES + 512)}
    return hosting.write("cimd-oversized", json.dumps(padded).encode())


def _redirect_on_fetch(hosting: DocumentHosting, document: dict[str, Any]) -> str:
    return hosting.redirect("cimd-redirect-on-fetch", hosting.publish("cimd-redirect-target", document))


def _loopback(hosting: DocumentHosting) -> str:
    port = urlsplit(hosting.base_url).port if hosting.base_url else None
    return f"https://127.0.0.2{f':{port}' if port else ''}/cimd-loopback-address.json"


_PREPARE: dict[str, Callable[[DocumentHosting, dict[str, Any]], str]] = {
    "cimd-http-url": _http_url,
    "cimd-client-id-mismatch": lambda hosting, document: hosting.publish(
        "cimd-client-id-mismatch", document, client_id=hosting.url("cimd-someone-else")
    ),
    "cimd-redirect-not-in-document": lambda hosting, document: hosting.publish(
        "cimd-redirect-not-in-document", document
    ),
    "cimd-private-address": lambda hosting, document: "https://10.1.2.3/cimd-private-address.json",
    "cimd-loopback-address": lambda hosting, document: _loopback(hosting),
    "cimd-redirect-on-fetch": _redirect_on_fetch,
    "cimd-oversized": _oversized,
    "cimd-not-json": lambda hosting, document: hosting.write(
        "cimd-not-json", b"<!doctype html><title>not a client metadata document</title>\n"
    ),
    "cimd-shared-secret": lambda hosting, document: hosting.publish(
        "cimd-shared-secret", {**document, "token_endpoint_auth_method": "client_secret_basic"}
    ),
    "cimd-missing-redirect-uris": lambda hosting, document: hosting.publish(
        "cimd-missing-redirect-uris", {k: v for k, v in document.items() if k != "redirect_uris"}
    ),
}


def refused_client_id(case: RefusedDocument, hosting: DocumentHosting, redirect_uri: str) -> str:
    """Prepare ``case`` on ``hosting`` (write what it serves) and return the ``client_id`` to send; the documents
    list ``redirect_uri``."""
    prepare = _PREPARE.get(case.name)
    if prepare is None:
        raise ValueError(f"unknown refused document case {case.name!r}")
    return prepare(hosting, base_document(case.name, redirect_uri))
