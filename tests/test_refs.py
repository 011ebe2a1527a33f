"""One parser for every reference users type."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from conveyor.errors import InvalidReference
from conveyor.refs import MAX_VERSION, Ref, parse_ref, validate_name, validate_version


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
        ("churn:99999999999999999999", "out of range; versions are numbered from 1 to 2147483647"),
        ("churn:9223372036854775808", "out of range"),
        ("churn:2147483648", "version 2147483648 is out of range"),
        ("churn:" + "9" * 5000, "out of range"),
        ("churn:²", "whole number from 1"),
        ("churn:٣", "whole number from 1"),
        ("churn:000", "whole number from 1"),
        ("churn:-1", "whole number from 1"),
        ("churn:1.0", "whole number from 1"),
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


def test_the_largest_version_parses_and_leading_zeros_are_ignored() -> None:
    assert parse_ref(f"churn:{MAX_VERSION}") == Ref("churn", version=MAX_VERSION)
    assert parse_ref("churn:007") == Ref("churn", version=7)


@pytest.mark.parametrize("version", [0, -1, MAX_VERSION + 1, 2**63, True, 1.0, "3"])
def test_validate_version_refuses_what_no_version_can_be(version: object) -> None:
    with pytest.raises(InvalidReference, match="churn:"):
        validate_version(version, "churn", "model")
