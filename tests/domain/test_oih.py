"""The OIH parsers on their own: qs's corner cases, xml2js's, and an XML body that attacks."""

from __future__ import annotations

from typing import Any

import pytest

from hookgate.domain import oih, qs


@pytest.mark.parametrize(
    ("query", "parsed"),
    [
        ("a[]=1&a[]=2&a[5]=z", {"a": ["1", "2", "z"]}),
        ("a[1]=x&a[0]=y", {"a": ["y", "x"]}),
        ("a[21]=x", {"a": {"21": "x"}}),
        ("a=1&a[b]=2", {"a": ["1", {"b": "2"}]}),
        ("a[b]=1&a=c", {"a": {"b": "1", "c": True}}),
        ("a[b][c][d][e][f][g][h]=1", {"a": {"b": {"c": {"d": {"e": {"f": {"[g][h]": "1"}}}}}}}),
        ("[]=a&e&f=&&=g", {"0": "a", "e": "", "f": ""}),
        ("x=%E2%9C%93&y=a+b&z=%zz+1&w=%C3", {"x": "✓", "y": "a b", "z": "%zz+1", "w": "%C3"}),
        ("toString=1&__proto__=2&a[__proto__][b]=3", {"toString": "1", "a": {}}),
    ],
)
def test_query_strings_parse_as_qs_does_for_express(query: str, parsed: dict[str, Any]) -> None:
    assert qs.parse_qs(query) == parsed


def test_a_form_body_has_no_depth_limit_and_a_larger_array_limit() -> None:
    body = "a[b][c][d][e][f][g][h]=1&l[99]=x"
    assert qs.parse_qs(body, qs.form_options(body)) == {
        "a": {"b": {"c": {"d": {"e": {"f": {"g": {"h": "1"}}}}}}},
        "l": ["x"],
    }


@pytest.mark.parametrize(
    ("body", "query", "form"),
    [
        ("a]b[c]=1", {"a]b": {"c": "1"}}, {"a": {"c": "1"}}),
        ("a[b][]=1&a[b][0]=2", {"a": {"b": ["1", "2"]}}, {"a": {"b": [["1", "2"]]}}),
        ("a=1&a", {"a": ["1", ""]}, {"a": ""}),
        ("x[valueOf]=1", {"x": {"valueOf": "1"}}, {"x": {"valueOf": "1"}}),
    ],
)
def test_a_form_body_parses_as_body_parsers_older_qs_does(
    body: str, query: dict[str, Any], form: dict[str, Any]
) -> None:
    """Express's qs 6.5 reads the query, body-parser 1.15's qs 6.2 the form body: they differ."""
    assert qs.parse_qs(body) == query
    assert qs.parse_qs(body, qs.form_options(body)) == form


def test_multipart_fields_skip_prototype_names_and_replace_an_empty_first_value() -> None:
    fields = oih.multipart_fields(
        oih.Part(name=name, filename=None, content_type=None, data=value)
        for name, value in [
            ("a", b""),
            ("a", b"x"),
            ("toString", b"1"),
            ("b[c]", b"2"),
            ("b[toString]", b"3"),
        ]
    )
    # qs 6.3 skips the [toString] segment, so "3" merges into b as a key set to true.
    assert qs.parse_qs_fields(fields) == {"a": "x", "b": {"c": "2", "3": True}}


@pytest.mark.parametrize(
    "attack",
    [
        b'<!DOCTYPE a [<!ENTITY e "x"><!ENTITY f "&e;&e;&e;">]><a>&f;</a>',
        b'<!DOCTYPE a [<!ENTITY e SYSTEM "file:///etc/passwd">]><a>&e;</a>',
    ],
)
def test_xml_with_entity_declarations_is_refused_not_expanded(attack: bytes) -> None:
    with pytest.raises(ValueError, match="not well-formed XML"):
        oih.parse_xml(attack)


def test_xml_text_between_children_is_joined_under_the_text_key() -> None:
    assert oih.parse_xml(b"<a>x<b>1</b>y<b>2</b></a>") == {"a": {"_": "xy", "b": ["1", "2"]}}


def test_xml_cdata_marks_its_element_as_xml2js_does() -> None:
    """xml2js keeps whitespace-only CDATA, and its ``cdata`` mark overwrites a child so named."""
    assert oih.parse_xml(b"<a><![CDATA[ ]]></a>") == {"a": " "}
    assert oih.parse_xml(b"<r><cdata>1</cdata><![CDATA[zz]]></r>") == {"r": "zz"}


def test_xml_after_the_root_element_is_ignored_as_xml2js_does() -> None:
    assert oih.parse_xml(b"<a/><b/>") == {"a": ""}


def test_an_element_named_like_the_text_key_is_refused() -> None:
    with pytest.raises(ValueError):
        oih.parse_xml(b"<a>t<_>1</_></a>")
