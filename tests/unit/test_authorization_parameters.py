"""Request parameters of the checked endpoints: parsed, changed and re-encoded."""

from __future__ import annotations

import pytest

from gateway.authorization.parameters import (
    encode,
    every,
    parse,
    replaced,
    single,
    with_audiences,
    with_scope_values,
)
from gateway.oauth.errors import InvalidRequest


def test_repeated_parameters_are_invalid_except_resource_and_audience() -> None:
    pairs = parse("client_id=a&client_id=b&resource=r1&resource=r2")
    with pytest.raises(InvalidRequest, match="client_id parameter is included more than once"):
        single(pairs, "client_id")
    assert every(pairs, "resource") == ["r1", "r2"]


def test_undecodable_percent_encoding_is_invalid_request() -> None:
    with pytest.raises(InvalidRequest, match="percent-encoded UTF-8"):
        parse("client_id=%ff%fe")


def test_changes_keep_order_and_round_trip() -> None:
    pairs = parse("response_type=code&client_id=https%3A%2F%2Fa.example%2Fc.json&scope=mcp&state=s+t")
    changed = replaced(pairs, "client_id", ["cimd-1"])
    changed = with_scope_values(changed, ["resource-ab", "mcp"])
    changed = with_audiences(changed, ["http://127.0.0.1:8000/mcp"])
    assert parse(encode(changed)) == [
        ("response_type", "code"),
        ("client_id", "cimd-1"),
        ("scope", "mcp resource-ab"),
        ("state", "s t"),
        ("audience", "http://127.0.0.1:8000/mcp"),
    ]


def test_adding_what_is_there_changes_nothing() -> None:
    pairs = parse("scope=mcp+resource-ab&audience=http%3A%2F%2Fx")
    assert with_scope_values(pairs, ["resource-ab"]) is pairs
    assert with_audiences(pairs, ["http://x"]) is pairs
