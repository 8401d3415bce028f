"""The pure parts of the document fetch: HTTP freshness (RFC 9111 section 4.2.1) and the body as one JSON object
(RFC 8259), without a network."""

from __future__ import annotations

from email.utils import formatdate

import pytest

from gateway.cimd.errors import DocumentRefused
from gateway.cimd.fetch import freshness, parse_document

NOW = 1_800_000_000.0


@pytest.mark.parametrize(
    ("headers", "expected"),
    [
        ({}, None),
        ({"Cache-Control": "max-age=60"}, 60),
        ({"Cache-Control": "Max-Age=60"}, 60),
        ({"Cache-Control": 'max-age="60"'}, 60),
        ({"Cache-Control": "public,max-age=60 , immutable"}, 60),
        ({"Cache-Control": "max-age=60, s-maxage=10"}, 10),
        ({"Cache-Control": "max-age=60", "Age": "70"}, 0),
        ({"Cache-Control": "max-age=60", "Age": "x"}, 60),
        ({"Cache-Control": "max-age=-5"}, None),
        ({"Cache-Control": "max-age=1e3"}, None),
        ({"Cache-Control": "max-age=٣"}, None),  # a non-ASCII digit is not a delta-seconds
        ({"Cache-Control": "no-store"}, 0),
        ({"Cache-Control": "max-age=600, no-cache"}, 0),
        ({"Cache-Control": 'no-cache="Set-Cookie", max-age=600'}, 0),
        ({"Cache-Control": "private, max-age=600"}, 600),
        ({"Expires": formatdate(NOW + 120, usegmt=True)}, 120),
        ({"Expires": formatdate(NOW - 120, usegmt=True)}, 0),
        ({"Expires": "0"}, 0),
        ({"Expires": "not a date"}, 0),
        ({"Expires": formatdate(NOW + 120, usegmt=True), "Date": formatdate(NOW - 60, usegmt=True)}, 180),
        ({"Expires": formatdate(NOW + 120, usegmt=True), "Cache-Control": "max-age=5"}, 5),
    ],
)
def test_freshness(headers: dict[str, str], expected: float | None) -> None:
    assert freshness(headers, NOW) == expected


def test_a_json_object() -> None:
    assert parse_document(b'{"client_id": "https://a.example/c", "n": [1, {"x": null}]}') == {
        "client_id": "https://a.example/c",
        "n": [1, {"x": None}],
    }


@pytest.mark.parametrize(
    ("body", "words"),
    [
        (b"", "not valid JSON"),
        (b"{", "not valid JSON"),
        (b"{} {}", "not valid JSON"),
        (b"{'a': 1}", "not valid JSON"),
        (b'{"a": Infinity}', "not valid JSON"),
        (b'{"a": -Infinity}', "not valid JSON"),
        (b'{"a": 1, "b": {"c": 1, "c": 2}}', "duplicate member 'c'"),
        (b"\xff\xfe{\x00}\x00", "not UTF-8"),
        (b"[]", "JSON array, not an object"),
        (b"1", "JSON number, not an object"),
        (b"true", "JSON boolean, not an object"),
        (b"null", "JSON null, not an object"),
        (b'"x"', "JSON string, not an object"),
    ],
)
def test_refusals(body: bytes, words: str) -> None:
    with pytest.raises(DocumentRefused) as info:
        parse_document(body)
    assert info.value.stage == "document"
    assert words in info.value.reason
