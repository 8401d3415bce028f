"""One table of client metadata fields (issue 9 part 5): each field of :class:`ClientMetadata` carries its row
(RFC section, JSON type, default, echoed, length limit, the rules that read it), and the rules, the parser's
error wording and the README's field list are derived from it."""

from __future__ import annotations

import inspect
from pathlib import Path

import pytest

from gateway.oauth.errors import OAuthError
from gateway.oauth.fields import Kind, Limit
from gateway.oauth.metadata import FIELDS, ClientMetadata, markdown_table, parse_metadata
from gateway.policy.rules import RULES, SAME_HOST_URIS, TEXT_FIELDS, apply_defaults

README = Path(__file__).resolve().parents[2] / "README.md"
BEGIN, END = "<!-- client-metadata-fields:begin -->", "<!-- client-metadata-fields:end -->"


def test_every_field_of_the_model_has_exactly_one_row() -> None:
    assert list(FIELDS) == list(ClientMetadata.model_fields)


def test_every_rule_a_row_names_is_a_rule_of_the_policy() -> None:
    names = {rule.__name__ for rule in RULES}
    for name, field in FIELDS.items():
        assert field.rules, name
        assert set(field.rules) <= names, (name, set(field.rules) - names)


def test_a_rule_a_row_names_reads_that_field() -> None:
    """The rules column is true: the rule's code names the field, or a field group of the table holding it, or
    reads the fields the adapter declares (its columns, its message templates)."""
    source = {rule.__name__: inspect.getsource(rule) for rule in RULES}
    source["rfc7591_defaults"] += inspect.getsource(apply_defaults)
    groups = {"SAME_HOST_URIS": SAME_HOST_URIS, "TEXT_FIELDS": TEXT_FIELDS}
    adapter_declared = {"stored_lengths_fit": "stored_lengths", "display_text_literal": "message_template_fields"}
    for name, field in FIELDS.items():
        for rule in field.rules:
            code = source[rule]
            assert (
                f'"{name}"' in code
                or f".{name}" in code
                or any(group in code and name in members for group, members in groups.items())
                or (rule in adapter_declared and adapter_declared[rule] in code)
            ), (name, rule)


def test_the_rules_take_their_field_groups_from_the_table() -> None:
    assert tuple(SAME_HOST_URIS) == tuple(n for n, f in FIELDS.items() if f.shown_to_user and f.kind is Kind.URI)
    assert tuple(TEXT_FIELDS) == tuple(n for n, f in FIELDS.items() if f.limit is Limit.TEXT)


@pytest.mark.parametrize("name", list(FIELDS))
def test_a_value_of_the_wrong_json_type_is_refused_in_the_rows_words(name: str) -> None:
    with pytest.raises(OAuthError) as refused:
        parse_metadata({name: 12345})
    assert refused.value.description == f"{name}: must be {FIELDS[name].kind.shape(FIELDS[name].choices)}"


def test_the_readme_field_list_is_the_table() -> None:
    text = README.read_text()
    block = text[text.index(BEGIN) + len(BEGIN) : text.index(END)].strip()
    assert block == markdown_table().strip(), (
        "README's client metadata field list is generated: replace it with the output of "
        "python -c 'from gateway.oauth.metadata import markdown_table; print(markdown_table())'"
    )
