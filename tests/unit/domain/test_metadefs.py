"""Checking an image property value (always a string) against a metadef definition."""

from __future__ import annotations

from typing import Any

import pytest

from glimpse.domain.errors import InvalidInput
from glimpse.domain.metadefs import (
    check_property_definition,
    property_schema,
    suggestion,
    value_problem,
)

DISTROS = ["arch", "centos", "debian", "fedora", "opensuse", "rhel", "ubuntu", "windows"]


@pytest.mark.parametrize(
    ("value", "schema"),
    [
        ("ubuntu", {"type": "string", "enum": DISTROS}),
        ("anything", {"type": "string"}),
        ("42", {"type": "integer", "minimum": 1, "maximum": 64}),
        ("1.5", {"type": "number", "maximum": 2}),
        ("2", {"type": "integer", "enum": [1, 2]}),
        ("True", {"type": "boolean"}),
        ("no", {"type": "boolean"}),
        ("0-3,5", {"type": "string", "pattern": "^[0-9]+(-[0-9]+)?(,[0-9]+(-[0-9]+)?)*$"}),
        ("a, b", {"type": "array", "items": {"type": "string", "enum": ["a", "b"]}}),
        ("abc", {"type": "string", "minLength": 3, "maxLength": 3}),
    ],
)
def test_values_that_fit(value: str, schema: dict[str, Any]) -> None:
    assert value_problem(value, schema) is None


@pytest.mark.parametrize(
    ("value", "schema", "expected"),
    [
        ("Ubuntu", {"type": "string", "enum": DISTROS}, "did you mean 'ubuntu'?"),
        ("xyz", {"type": "string", "enum": DISTROS}, "allowed values (arch, centos"),
        ("four", {"type": "integer"}, "not an integer"),
        ("0", {"type": "integer", "minimum": 1}, "less than the minimum 1"),
        ("65", {"type": "integer", "maximum": 64}, "greater than the maximum 64"),
        ("x", {"type": "number"}, "not a number"),
        ("maybe", {"type": "boolean"}, "not a boolean"),
        ("3", {"type": "integer", "enum": [1, 2]}, "allowed values (1, 2)"),
        ("0,a", {"type": "string", "pattern": "^[0-9,]+$"}, "does not match"),
        ("a,c", {"type": "array", "items": {"type": "string", "enum": ["a", "b"]}}, "(a, b)"),
        ("ab", {"type": "string", "minLength": 3}, "shorter than 3"),
        ("abcd", {"type": "string", "maxLength": 3}, "longer than 3"),
    ],
)
def test_values_that_do_not_fit(value: str, schema: dict[str, Any], expected: str) -> None:
    problem = value_problem(value, schema)
    assert problem is not None and expected in problem, problem


@pytest.mark.parametrize(
    ("value", "expected"),
    [("RHEL", "rhel"), ("org.fedora", "fedora"), ("com.ubuntu", "ubuntu"),
     ("opensus", "opensuse"), ("centso", "centos"), ("beos", None)],
)
def test_suggestions(value: str, expected: str | None) -> None:
    assert suggestion(value, DISTROS) == expected


def test_property_definitions_keep_known_keys_only() -> None:
    stored = property_schema({
        "title": "T", "type": "array", "unknown": 1, "description": None,
        "items": {"type": "string", "enum": ["a"], "extra": True},
    })
    assert stored == {"title": "T", "type": "array", "items": {"type": "string", "enum": ["a"]}}
    assert check_property_definition("p", {"title": "T", "type": "string"}) == {
        "title": "T", "type": "string"}
    for bad in ({"type": "string"}, {"title": "T"}, {"title": "T", "type": "text"}, "x"):
        with pytest.raises(InvalidInput):
            check_property_definition("p", bad)
    with pytest.raises(InvalidInput):
        check_property_definition("p" * 81, {"title": "T", "type": "string"})
