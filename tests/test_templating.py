"""The template language: variables, fallbacks, nested spintax, errors with positions."""

from __future__ import annotations

import random

import pytest
from hypothesis import given, settings, strategies as st

from appliance.templating import (MissingValue, TemplateSyntaxError, check, missing_values, parse, render,
                                  variables)

KNOWN = {"first_name", "company", "unsubscribe_url", "sender_name"}


def r(text, values=None, seed=1, **kw):
    return render(parse(text), values or {}, random.Random(seed), **kw)


def test_variables_and_fallbacks():
    assert r("Hi {{first_name}},", {"first_name": "Ada"}) == "Hi Ada,"
    assert r("Hi {{ first_name | there }},", {}) == "Hi there,"
    assert r("Hi {{first_name|}}!", {}) == "Hi !"  # an explicit empty fallback
    assert r("Hi {{first_name|there}}", {"first_name": "  "}) == "Hi there"
    with pytest.raises(MissingValue) as err:
        r("Hi {{first_name}}", {})
    assert err.value.name == "first_name"


def test_spintax_nested_and_deterministic_per_seed():
    seen = {r("{Hi|Hello {there|friend}}", seed=s) for s in range(200)}
    assert seen == {"Hi", "Hello there", "Hello friend"}
    assert r("{a|b|c}", seed=7) == r("{a|b|c}", seed=7)


def test_escapes_and_html():
    assert r("\\{not spintax\\} a\\|b") == "{not spintax} a|b"
    assert r("{{company}}", {"company": "<b>&Co</b>"}, escape_html=True) == "&lt;b&gt;&amp;Co&lt;/b&gt;"


@pytest.mark.parametrize("text, line, column, words", [
    ("Hi {{first_name", 1, 4, "not closed by '}}'"),
    ("Hi {{first name}}", 1, 4, "not a variable name"),
    ("Hello\n{Hi|Hey", 2, 1, "not closed by '}'"),
    ("a } b", 1, 3, "without a matching '{'"),
    ("{only one}", 1, 1, "at least two options"),
    ("x }} y", 1, 3, "without a matching '{{'"),
    ("{{a|{b}}}", 1, 1, "cannot contain braces"),
])
def test_syntax_errors_have_positions(text, line, column, words):
    with pytest.raises(TemplateSyntaxError) as err:
        parse(text)
    first = err.value.errors[0]
    assert (first.line, first.column) == (line, column) and words in first.message


def test_unknown_variables_are_reported_with_position():
    problems = check("Hi {{first_name}}\nfrom {{sender_name}} at {{compnay}}", KNOWN)
    assert [(p.line, p.column, p.message) for p in problems] == [(2, 25, "unknown variable {{compnay}}")]
    assert check("{Hi|Hello} {{first_name|there}}, {{unsubscribe_url}}", KNOWN) == []


def test_missing_values_for_the_launch_check():
    nodes = parse("{{first_name}} at {{company|your company}} {{sender_name}}")
    assert missing_values(nodes, {"sender_name": "Sam"}) == ["first_name"]
    assert [v.name for v in variables(nodes)] == ["first_name", "company", "sender_name"]


def test_no_access_to_python():
    # nothing but names: attribute access, calls and dunder tricks are not even variables
    for text in ("{{config.secret}}", "{{__class__}}x", "{{ cycler.__init__ }}", "{{ ''.join }}"):
        assert check(text, KNOWN), text
    assert r("{{__class__|x}}", {}) == "x"  # a legal name, but only ever looked up in the values


@settings(max_examples=300)
@given(st.lists(st.sampled_from(list("ab{}|\\ \n") + ["{{", "}}", "{{x}}", "{{x|y}}"]), max_size=40).map("".join))
def test_any_input_parses_or_reports_positioned_errors(text):
    try:
        nodes = parse(text)
    except TemplateSyntaxError as exc:
        assert exc.errors and all(e.line >= 1 and e.column >= 1 for e in exc.errors)
        return
    names = {v.name: "v" for v in variables(nodes)}
    render(nodes, names, random.Random(0))  # a parsed template always renders when values exist
