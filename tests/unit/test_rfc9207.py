"""RFC 9207 ``iss`` added to authorization responses the provider sends without it."""

from __future__ import annotations

from urllib.parse import parse_qs, urlsplit

from gateway.rfc9207 import form_post_with_iss, with_iss

ISSUER = "http://127.0.0.1:8080"
QUOTED = "http%3A%2F%2F127.0.0.1%3A8080"


def test_a_code_response_gets_iss_in_its_query() -> None:
    location = with_iss("http://localhost:4000/cb?code=abc&state=xyz", ISSUER)
    assert location is not None
    query = parse_qs(urlsplit(location).query)
    assert query == {"code": ["abc"], "state": ["xyz"], "iss": [ISSUER]}


def test_an_error_response_gets_iss_too() -> None:
    location = with_iss("https://app.example/cb?error=access_denied&state=s", ISSUER)
    assert location is not None and parse_qs(urlsplit(location).query)["iss"] == [ISSUER]


def test_a_fragment_response_gets_iss_in_the_fragment() -> None:
    location = with_iss("https://app.example/cb#access_token=t&state=s", ISSUER)
    assert location is not None
    parts = urlsplit(location)
    assert parts.query == ""
    assert parse_qs(parts.fragment)["iss"] == [ISSUER]


def test_redirects_that_are_not_authorization_responses_are_left_alone() -> None:
    assert with_iss("http://127.0.0.1:8090/login?login_challenge=abc", ISSUER) is None
    assert with_iss("http://127.0.0.1:8080/oauth2/auth?client_id=x&redirect_uri=y", ISSUER) is None


def test_a_response_that_has_iss_is_left_alone() -> None:
    assert with_iss(f"http://localhost/cb?code=a&iss={ISSUER}", ISSUER) is None


def test_a_form_post_page_gets_a_hidden_iss_input() -> None:
    page = (
        b'<html><body><form method="post" action="https://app.example/cb">'
        b'<input type="hidden" name="code" value="c"/></form></body></html>'
    )
    changed = form_post_with_iss(page, ISSUER)
    assert changed is not None
    assert b'name="iss" value="http://127.0.0.1:8080"' in changed
    assert changed.index(b'name="iss"') < changed.index(b"</form>")
    assert form_post_with_iss(changed, ISSUER) is None
    assert form_post_with_iss(b"<html><form><input name='login'/></form></html>", ISSUER) is None


def test_private_use_redirect_uris_keep_their_form() -> None:
    """Before: re-assembling the URL turned ``myapp:///callback`` into ``myapp:/callback``."""
    assert with_iss("myapp:///callback?code=x&state=s", ISSUER) == f"myapp:///callback?code=x&state=s&iss={QUOTED}"
    assert with_iss("myapp:///callback#code=x", ISSUER) == f"myapp:///callback#code=x&iss={QUOTED}"
    assert with_iss("https://a.example/cb?code=x#frag", ISSUER) == f"https://a.example/cb?code=x&iss={QUOTED}#frag"
