"""RFC 8707 protected resources: the ``resource`` checks and the audience a token is bound to."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from gateway.rfc8707 import ProtectedResources, ResourceSettings, canonical_resource, resource_problem

MCP = "http://127.0.0.1:8000/mcp"


@pytest.mark.parametrize(
    ("value", "words"),
    [
        ("", "empty"),
        ("mcp", "absolute URI"),
        ("/mcp", "absolute URI"),
        ("urn:example:mcp", "absolute URI"),
        ("https://mcp.example.com/mcp#frag", "fragment"),
        ("https://mcp.example.com/m cp", "whitespace"),
        ("https://mcp.example.com/\u00e9", "non-ASCII"),
        ("https://mcp.example.com:99999999/", "absolute URI"),
        ("https://" + "a" * 2050, "longer"),
        ("https://mcp.example.com/tools/../admin", "dot segments"),
        ("https://mcp.example.com/tools/./x", "dot segments"),
        ("https://mcp.example.com/tools/..", "dot segments"),
        ("https://mcp.example.com/tools/x%2F..%2Fy", "percent-encoded"),
        ("https://mcp.example.com/tools/%2e%2e/y", "percent-encoded"),
    ],
)
def test_unusable_resource_values_are_named(value: str, words: str) -> None:
    problem = resource_problem(value)
    assert problem is not None and words in problem


def test_canonical_form_lowers_scheme_and_host_and_drops_a_trailing_slash() -> None:
    assert canonical_resource("HTTPS://MCP.Example.COM/Tools/") == "https://mcp.example.com/Tools"
    assert canonical_resource("https://mcp.example.com/") == "https://mcp.example.com"
    assert canonical_resource("https://mcp.example.com/a?x=1") == "https://mcp.example.com/a?x=1"


def test_exact_entries_bind_the_configured_form() -> None:
    resources = ProtectedResources.of([MCP])
    assert resources.enforced
    assert resources.audience_for(MCP) == MCP
    assert resources.audience_for("HTTP://127.0.0.1:8000/mcp/") == MCP  # MCP: accept upper-case scheme and host
    assert resources.audience_for("http://127.0.0.1:8000/mcpx") is None
    assert resources.audience_for("http://127.0.0.1:8001/mcp") is None
    assert resources.audience_for("http://127.0.0.1:8000/MCP") is None  # the path is case-sensitive


def test_prefix_entries_cover_their_subtree_and_never_another_host() -> None:
    resources = ProtectedResources.of(["https://mcp.example.com/tools/*"])
    assert resources.audience_for("https://mcp.example.com/tools/search") == "https://mcp.example.com/tools/search"
    assert resources.audience_for("https://MCP.example.com/tools/a") == "https://mcp.example.com/tools/a"
    assert resources.audience_for("https://mcp.example.com/tools") == "https://mcp.example.com/tools"
    assert resources.audience_for("https://mcp.example.com/toolsx") is None
    assert resources.audience_for("https://mcp.example.com.evil/tools/a") is None
    assert resources.audience_for("https://mcp.example.com/other") is None


def test_no_entries_is_not_enforced() -> None:
    assert not ProtectedResources.of([]).enforced


def test_settings_refuse_entries_that_are_not_resources() -> None:
    with pytest.raises(ValidationError, match="fragment"):
        ResourceSettings(protected=("https://a.example/#x",))
    with pytest.raises(ValidationError, match="path after the host"):
        ResourceSettings(protected=("https://a.example*",))


def test_per_issuer_entries_replace_the_default() -> None:
    settings = ResourceSettings(protected=(MCP,), issuers={"partners": ("https://p.example/mcp",)})
    assert settings.for_issuer(key="mcp", path="/realms/mcp").audience_for(MCP) == MCP
    partners = settings.for_issuer(key="partners", path="/realms/partners")
    assert partners.audience_for(MCP) is None
    assert partners.audience_for("https://p.example/mcp") == "https://p.example/mcp"
    assert settings.unknown_overrides([("mcp", "/realms/mcp")]) == ["partners"]
