"""Properties of the redirect URI validator (RFC 6749 section 3.1.2, RFC 8252, RFC 9700 section 4.1) and of
the host allow-list, over generated URIs and hosts (hypothesis)."""

from __future__ import annotations

from urllib.parse import urlsplit, urlunsplit

import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

from gateway.oauth.errors import InvalidRedirectUri, OAuthError
from gateway.policy.uris import (
    FORBIDDEN_SCHEMES,
    RedirectRules,
    check_redirect_uri,
    host_allowed,
    is_loopback_host,
    normalize_host,
)

LOOPBACK_HOSTS = ["127.0.0.1", "127.3.4.5", "[::1]", "localhost", "LOCALHOST"]
_LDH = "abcdefghijklmnopqrstuvwxyz0123456789"
LABEL = st.text(_LDH, min_size=1, max_size=8) | st.builds(
    lambda a, b, c: f"{a}{b}{c}",
    st.text(_LDH, min_size=1, max_size=3),
    st.sampled_from("-_"),
    st.text(_LDH, min_size=1, max_size=3),
)
NAME = st.lists(LABEL, min_size=1, max_size=4).map(".".join).filter(lambda n: not n.split(".")[-1].isdigit())
UNICODE_NAME = st.sampled_from(["bücher.example", "пример.испытание", "例え.テスト", "ÉXAMPLE.com", "faß.de"])
HOST = st.one_of(
    st.sampled_from(LOOPBACK_HOSTS),
    NAME,
    NAME.map(str.upper),
    UNICODE_NAME,
    st.ip_addresses(v=4).map(str),
    st.ip_addresses(v=6).map(lambda ip: f"[{ip}]"),
)
PRIVATE_USE = st.builds(
    lambda first, rest: first + rest, st.sampled_from("abcdefghijklmnopqrstuvwxyz"), st.text(_LDH + "+.-", max_size=10)
).filter(lambda s: s not in FORBIDDEN_SCHEMES and s not in ("http", "https"))
SCHEME = st.one_of(
    st.sampled_from(["http", "https", "HTTP", "Https"]), st.sampled_from(sorted(FORBIDDEN_SCHEMES)), PRIVATE_USE
)
_PCHAR = _LDH + "ABCXYZ._~!$&'()+,;=:-"
PATH = st.lists(st.text(_PCHAR, max_size=10), max_size=3).map(lambda segments: "".join("/" + s for s in segments))
QUERY = st.text(_LDH + "=&_-", max_size=16)
PORT = st.one_of(st.none(), st.integers(min_value=1, max_value=65535))
APPLICATION_TYPE = st.sampled_from([None, "native", "web"])


@st.composite
def uris(draw: st.DrawFn, scheme: st.SearchStrategy[str] = SCHEME) -> str:
    chosen = draw(scheme)
    host = draw(HOST)
    port = draw(PORT)
    netloc = host if port is None else f"{host}:{port}"
    query = draw(QUERY)
    return f"{chosen}://{netloc}{draw(PATH)}" + (f"?{query}" if query else "")


def accepts(uri: str, application_type: str | None = None, rules: RedirectRules | None = None) -> bool:
    try:
        check_redirect_uri(
            uri,
            field_name="redirect_uris[0]",
            application_type=application_type,
            max_length=2000,
            rules=rules or RedirectRules(),
        )
    except InvalidRedirectUri:
        return False
    return True


@settings(max_examples=150, deadline=None)
@given(st.text(max_size=80), APPLICATION_TYPE)
@example("http://[::1%25eth0]/cb", None)
@example("https://[v1.x]/cb", None)
@example("http://127.0.0.1:99999/cb", None)
@example("https://a.example:-1/cb", None)
@example("https://%ZZ/cb", None)
@example("cursor:", "native")
def test_any_string_is_accepted_or_refused_with_invalid_redirect_uri_never_another_error(
    uri: str, application_type: str | None
) -> None:
    try:
        check_redirect_uri(uri, field_name="redirect_uris[0]", application_type=application_type, max_length=2000)
    except OAuthError as exc:
        assert type(exc) is InvalidRedirectUri
        assert exc.description.startswith("redirect_uris[0]")


@settings(max_examples=100, deadline=None)
@given(uris(), st.text(max_size=10), APPLICATION_TYPE)
def test_a_uri_with_a_fragment_is_refused(uri: str, fragment: str, application_type: str | None) -> None:
    assert not accepts(f"{uri}#{fragment}", application_type)


@settings(max_examples=100, deadline=None)
@given(uris(), st.text(_LDH + "._~-:", max_size=12), APPLICATION_TYPE)
def test_a_uri_with_userinfo_is_refused(uri: str, userinfo: str, application_type: str | None) -> None:
    scheme, rest = uri.split("://", 1)
    assert not accepts(f"{scheme}://{userinfo}@{rest}", application_type)


@settings(max_examples=100, deadline=None)
@given(uris(st.sampled_from(sorted(FORBIDDEN_SCHEMES))), APPLICATION_TYPE)
@example("JavaScript://x/%0aalert(1)", None)
def test_a_uri_with_a_forbidden_scheme_is_refused(uri: str, application_type: str | None) -> None:
    assert not accepts(uri, application_type)


@settings(max_examples=150, deadline=None)
@given(uris(), APPLICATION_TYPE)
def test_every_accepted_http_uri_is_on_a_loopback_host(uri: str, application_type: str | None) -> None:
    if not accepts(uri, application_type):
        return
    parts = urlsplit(uri)
    if parts.scheme.lower() == "http":
        assert is_loopback_host(parts.hostname or "")


@settings(max_examples=150, deadline=None)
@given(uris(), st.booleans())
def test_a_web_client_gets_only_https_and_loopback_only_when_allowed(uri: str, web_loopback: bool) -> None:
    if not accepts(uri, "web", RedirectRules(web_loopback=web_loopback)):
        return
    parts = urlsplit(uri)
    assert parts.scheme.lower() in ("https", "http")
    if not web_loopback:
        assert parts.scheme.lower() == "https"
        assert not is_loopback_host(parts.hostname or "")


@settings(max_examples=150, deadline=None)
@given(uris(), APPLICATION_TYPE)
def test_accepted_uris_round_trip(uri: str, application_type: str | None) -> None:
    """What was checked is what the provider parses: re-serialising the parsed URI and parsing it again gives
    the same components, and the URI is accepted again (the check is stable)."""
    if not accepts(uri, application_type):
        return
    parts = urlsplit(uri)
    assert urlsplit(urlunsplit(parts)) == parts
    assert accepts(urlunsplit(parts), application_type)
    assert parts.scheme and not parts.fragment and parts.username is None


def _is_entry_or_subdomain(host: str, entry: str) -> bool:
    """Independent oracle: compare label lists from the right."""
    host_labels, entry_labels = host.split("."), entry.split(".")
    return host_labels == entry_labels or (
        len(host_labels) > len(entry_labels) and host_labels[-len(entry_labels) :] == entry_labels
    )


@st.composite
def host_near(draw: st.DrawFn, entry: str) -> str:
    """Hosts that look like ``entry``: itself, subdomains, and the usual tricks."""
    other = draw(NAME)
    return draw(
        st.sampled_from(
            [
                entry,
                f"{other}.{entry}",
                f"{other}-{entry}",
                f"{other}{entry}",
                f"{entry}.{other}",
                f"{entry}-{other}",
                entry.upper(),
                f"{entry}.",
                other,
                f"{other}.{other}.{entry}",
            ]
        )
    )


@settings(max_examples=150, deadline=None)
@given(st.data(), NAME)
def test_the_host_allow_list_accepts_only_the_entry_and_its_subdomains(data: st.DataObject, entry: str) -> None:
    host = data.draw(host_near(entry))
    try:
        normalized = normalize_host(host)
    except ValueError:
        return
    accepted = host_allowed(normalized, (normalize_host(entry),))
    assert accepted == _is_entry_or_subdomain(normalized, normalize_host(entry))
    uri_accepted = accepts(f"https://{host}/cb", None, RedirectRules(allowed_hosts=(normalize_host(entry),)))
    assert uri_accepted == accepted


@settings(max_examples=100, deadline=None)
@given(st.ip_addresses(v=4).map(str), st.ip_addresses(v=4).map(str))
def test_ip_literals_in_the_allow_list_match_only_themselves(host: str, entry: str) -> None:
    assert host_allowed(normalize_host(host), (normalize_host(entry),)) == (host == entry)


@settings(max_examples=100, deadline=None)
@given(HOST)
def test_host_normalisation_is_idempotent(host: str) -> None:
    try:
        once = normalize_host(host)
    except ValueError:
        return
    assert normalize_host(once) == once
    assert once == once.lower() and once.isascii() and not once.endswith(".")


@pytest.mark.parametrize(
    ("host", "expected"),
    [
        ("EXAMPLE.com", "example.com"),
        ("example.com.", "example.com"),
        ("a.example｡com", "a.example.com"),  # an ideographic full stop is a dot to a browser
        ("bücher.example", "xn--bcher-kva.example"),
        ("faß.de", "xn--fa-hia.de"),  # IDNA 2008 / UTS 46 non-transitional, as browsers resolve it
        ("[::1]", "::1"),
        ("[0:0::1]", "::1"),
    ],
)
def test_hosts_are_normalised_as_browsers_resolve_them(host: str, expected: str) -> None:
    assert normalize_host(host) == expected


@pytest.mark.parametrize("host", ["127.1", "0x7f.1", "a.b.123", "a..b", "", "-a.example", "xn--zz.example"])
def test_ambiguous_or_invalid_hosts_are_refused(host: str) -> None:
    with pytest.raises(ValueError):
        normalize_host(host)
