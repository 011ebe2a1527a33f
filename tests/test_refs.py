"""One parser for every reference users type."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from conveyor.errors import InvalidReference
from conveyor.refs import Ref, parse_ref, validate_name


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("churn", Ref("churn")),
        ("churn:3", Ref("churn", version=3)),
        ("churn@latest", Ref("churn", alias="latest")),
        ("churn:latest", Ref("churn", alias="latest")),
        ("churn@champion", Ref("churn", alias="champion")),
        ("azureml:churn:2", Ref("churn", version=2)),
        ("sales.eu-2024_v2", Ref("sales.eu-2024_v2")),
    ],
)
def test_parse(text: str, expected: Ref) -> None:
    assert parse_ref(text) == expected
    assert parse_ref(str(expected)) == expected


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("", "is not a valid"),
        ("../etc", "is not a valid"),
        ("a/b", "is not a valid"),
        (".hidden", "is not a valid"),
        ("churn:0", "whole number from 1"),
        ("churn:x", "whole number from 1"),
        ("churn@", "not a valid alias"),
        ("churn@1st", "not a valid alias"),
        ("x" * 129, "is not a valid"),
    ],
)
def test_bad_references_are_explained(text: str, message: str) -> None:
    with pytest.raises(InvalidReference, match=message):
        parse_ref(text, "model")


@given(st.text(max_size=40))
def test_a_valid_name_never_escapes_its_folder(name: str) -> None:
    try:
        validate_name(name)
    except InvalidReference:
        return
    assert "/" not in name and "\\" not in name and not name.startswith(".") and name.strip() == name
