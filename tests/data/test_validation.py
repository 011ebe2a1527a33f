"""Validation rules: parsing rules files (with line numbers) and quarantining the rows that break them."""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path

import polars as pl
import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from conveyor.data import RuleOutcome, Rules, apply_rules, load_rules, parse_rules
from conveyor.errors import InvalidSpec, NotFound, ValidationFailed


def check(data: dict[str, list[object]] | pl.DataFrame, rules: str) -> RuleOutcome:
    frame = data if isinstance(data, pl.DataFrame) else pl.DataFrame(data, strict=False)
    return apply_rules(frame.lazy(), parse_rules(rules, "rules.yaml"))


def quarantine(outcome: RuleOutcome) -> list[tuple[int, str, str]]:
    return [(r["_row"], r["_rule"], r["_reason"]) for r in outcome.quarantined.iter_rows(named=True)]


def spec_error(text: str) -> str:
    with pytest.raises(InvalidSpec) as info:
        parse_rules(text, "rules.yaml")
    assert info.value.exit_code == 2
    return info.value.message


# -- each column rule ----------------------------------------------------------------------------------


def test_min_and_max_pass_good_rows_and_quarantine_bad_ones() -> None:
    out = check({"age": [0, 130, -1, 131, None]}, "columns:\n  age: {min: 0, max: 130}\n")
    assert quarantine(out) == [
        (3, "age.min", "age is -1, below the minimum 0"),
        (4, "age.max", "age is 131, above the maximum 130"),
    ]
    assert out.valid.collect()["age"].to_list() == [0, 130, None]


def test_not_null() -> None:
    out = check({"id": ["a", None, "c"]}, "columns:\n  id: {not_null: true}\n")
    assert quarantine(out) == [(2, "id.not_null", "id is missing (null), but it must have a value")]
    assert out.valid.collect()["id"].to_list() == ["a", "c"]


def test_not_null_false_is_no_rule() -> None:
    out = check({"id": ["a", None]}, "columns:\n  id: {not_null: false}\n")
    assert out.summary["rules"] == {}
    assert out.valid.collect().height == 2


def test_allowed_strings_compare_as_written_not_as_yaml_booleans() -> None:
    out = check({"answer": ["yes", "no", "NO", "maybe", None]}, "columns:\n  answer: {allowed: [yes, no, NO]}\n")
    assert quarantine(out) == [(4, "answer.allowed", "answer is 'maybe', not one of 'yes', 'no', 'NO'")]


def test_allowed_integers() -> None:
    out = check({"level": [1, 2, 5]}, "columns:\n  level: {allowed: [1, 2, 3]}\n")
    assert quarantine(out) == [(3, "level.allowed", "level is 5, not one of 1, 2, 3")]


def test_regex_searches_and_anchors_match_the_whole_value() -> None:
    out = check(
        {"email": ["a@b.io", "nobody", "x@y@z", None]},
        "columns:\n  email: {regex: '^[^@]+@[^@]+$'}\n",
    )
    assert quarantine(out) == [
        (2, "email.regex", "email is 'nobody', which does not match the pattern '^[^@]+@[^@]+$'"),
        (3, "email.regex", "email is 'x@y@z', which does not match the pattern '^[^@]+@[^@]+$'"),
    ]
    unanchored = check({"code": ["xx-12", "ab"]}, "columns:\n  code: {regex: '[0-9]+'}\n")
    assert [r[0] for r in quarantine(unanchored)] == [2]


def test_regex_on_a_numeric_column_matches_its_text() -> None:
    out = check({"zip": [12345, 123]}, "columns:\n  zip: {regex: '^[0-9]{5}$'}\n")
    assert quarantine(out) == [(2, "zip.regex", "zip is '123', which does not match the pattern '^[0-9]{5}$'")]


def test_unique_quarantines_every_repeat_after_the_first_and_names_it() -> None:
    out = check(
        {"id": [7, 8, 7, None, None, 7, 8]},
        "columns:\n  id: {unique: true}\n",
    )
    assert quarantine(out) == [
        (3, "id.unique", "id is 7, a duplicate of row 1"),
        (6, "id.unique", "id is 7, a duplicate of row 1"),
        (7, "id.unique", "id is 8, a duplicate of row 2"),
    ]
    assert out.valid.collect()["id"].to_list() == [7, 8, None, None]  # nulls are not duplicates


def test_unique_is_judged_over_the_whole_input_including_rows_breaking_other_rules() -> None:
    out = check(
        {"id": ["a", "a"], "age": [200, 1]},
        "columns:\n  age: {max: 130}\n  id: {unique: true}\n",
    )
    assert quarantine(out) == [
        (1, "age.max", "age is 200, above the maximum 130"),
        (2, "id.unique", "id is 'a', a duplicate of row 1"),
    ]
    assert out.valid.collect().height == 0


def test_unique_compares_typed_values() -> None:
    out = check({"n": ["1", " 1", "2"]}, "columns:\n  n: {type: integer, unique: true}\n")
    assert quarantine(out) == [(2, "n.unique", "n is 1, a duplicate of row 1")]


# -- types ----------------------------------------------------------------------------------------------


def test_integer_type_keeps_unparseable_values_verbatim_in_quarantine() -> None:
    out = check({"age": ["42", "abc", " 7 ", "1.5", "", None]}, "columns:\n  age: {type: integer}\n")
    assert quarantine(out) == [
        (2, "age.type", "age is 'abc', not an integer"),
        (4, "age.type", "age is '1.5', not an integer"),
        (5, "age.type", "age is '', not an integer"),
    ]
    assert out.quarantined["age"].to_list() == ["abc", "1.5", ""]
    valid = out.valid.collect()
    assert valid.schema["age"] == pl.Int64
    assert valid["age"].to_list() == [42, 7, None]


def test_integer_type_from_floats_refuses_fractions() -> None:
    out = check({"n": [1.0, 2.5, None]}, "columns:\n  n: {type: integer}\n")
    assert quarantine(out) == [(2, "n.type", "n is '2.5', not an integer")]
    assert out.valid.collect()["n"].to_list() == [1, None]


def test_number_type() -> None:
    out = check({"x": ["1.5", "2", "1e3", "one"]}, "columns:\n  x: {type: number, max: 100}\n")
    assert quarantine(out) == [
        (3, "x.max", "x is 1e3, above the maximum 100"),
        (4, "x.type", "x is 'one', not a number"),
    ]
    valid = out.valid.collect()
    assert valid.schema["x"] == pl.Float64
    assert valid["x"].to_list() == [1.5, 2.0]


def test_boolean_type() -> None:
    out = check({"b": ["true", "No", "1", "maybe"]}, "columns:\n  b: {type: boolean}\n")
    assert quarantine(out) == [(4, "b.type", "b is 'maybe', not a boolean (true/false, 1/0, yes/no)")]
    assert out.valid.collect()["b"].to_list() == [True, False, True]


def test_date_type_with_bounds() -> None:
    out = check(
        {"d": ["2020-01-01", "2019-12-31", "01/02/2020", "2031-01-01"]},
        "columns:\n  d: {type: date, min: 2020-01-01, max: '2030-12-31'}\n",
    )
    assert quarantine(out) == [
        (2, "d.min", "d is 2019-12-31, below the minimum 2020-01-01"),
        (3, "d.type", "d is '01/02/2020', not a date (YYYY-MM-DD)"),
        (4, "d.max", "d is 2031-01-01, above the maximum 2030-12-31"),
    ]
    valid = out.valid.collect()
    assert valid.schema["d"] == pl.Date
    assert valid["d"].to_list() == [dt.date(2020, 1, 1)]


def test_date_type_with_a_format() -> None:
    out = check({"d": ["31/12/2020", "2020-12-31"]}, "columns:\n  d: {type: date, format: '%d/%m/%Y'}\n")
    assert quarantine(out) == [(2, "d.type", "d is '2020-12-31', not a date (%d/%m/%Y)")]
    assert out.valid.collect()["d"].to_list() == [dt.date(2020, 12, 31)]


def test_datetime_type_reads_iso_variants() -> None:
    out = check(
        {"t": ["2020-01-01T10:00:00", "2020-01-01 10:00", "2020-01-01T10:00:00.250", "2020-01-01", "noon"]},
        "columns:\n  t: {type: datetime, max: 2020-01-01T10:00:00}\n",
    )
    assert quarantine(out) == [
        (3, "t.max", "t is 2020-01-01T10:00:00.250, above the maximum 2020-01-01T10:00:00"),
        (5, "t.type", "t is 'noon', not a datetime (YYYY-MM-DD HH:MM[:SS])"),
    ]
    valid = out.valid.collect()
    assert valid.schema["t"] == pl.Datetime("us")
    assert valid["t"].to_list() == [dt.datetime(2020, 1, 1, 10), dt.datetime(2020, 1, 1, 10), dt.datetime(2020, 1, 1)]


def test_string_type_casts_to_text() -> None:
    out = check({"code": [1, 2]}, "columns:\n  code: {type: string, allowed: ['1']}\n")
    assert quarantine(out) == [(2, "code.allowed", "code is '2', not one of '1'")]
    valid = out.valid.collect()
    assert valid.schema["code"] == pl.String
    assert valid["code"].to_list() == ["1"]


def test_columns_already_of_the_type_are_not_type_failures() -> None:
    out = check({"n": [1, 2], "d": [dt.date(2020, 1, 1), None]}, "columns:\n  n: {type: integer}\n  d: {type: date}\n")
    assert out.summary["rules"]["n.type"]["failed"] == 0
    assert out.quarantined.height == 0
    assert out.valid.collect().schema == pl.Schema({"n": pl.Int64, "d": pl.Date})


# -- rows, summary, valid frame ----------------------------------------------------------------------------


RULES = """
columns:
  age: {type: integer, not_null: true, min: 0, max: 130}
  email: {regex: '^[^@]+@[^@]+$'}
  plan: {allowed: [basic, standard, premium]}
  customer_id: {unique: true, not_null: true}
table:
  rows: {min: 1, max: 10}
"""


def customers() -> pl.DataFrame:
    return pl.DataFrame(
        {
            "customer_id": [1, 2, 2, 3, None],
            "plan": ["basic", "gold", "standard", "premium", None],
            "age": ["5", "abc", "150", None, "7"],
            "email": ["a@b", "x", "c@d", "e@f", "g@h"],
        }
    )


def test_a_row_breaking_several_rules_is_quarantined_once_under_the_first_and_counted_for_each() -> None:
    out = check(customers(), RULES)
    assert quarantine(out) == [
        (2, "age.type", "age is 'abc', not an integer"),
        (3, "age.max", "age is 150, above the maximum 130"),
        (4, "age.not_null", "age is missing (null), but it must have a value"),
        (5, "customer_id.not_null", "customer_id is missing (null), but it must have a value"),
    ]
    summary = out.summary
    assert summary["rows_checked"] == 5
    assert summary["rows_valid"] == 1
    assert summary["rows_quarantined"] == 4
    assert summary["ok"] is False
    # Row 2 breaks age.type, email.regex and plan.allowed; row 3 is a duplicate id: each is counted.
    assert {rule: info["failed"] for rule, info in summary["rules"].items()} == {
        "age.type": 1,
        "age.not_null": 1,
        "age.min": 0,
        "age.max": 1,
        "email.regex": 1,
        "plan.allowed": 1,
        "customer_id.not_null": 1,
        "customer_id.unique": 1,
    }
    assert summary["failed_rules"] == [
        "age.type",
        "age.not_null",
        "age.max",
        "email.regex",
        "plan.allowed",
        "customer_id.not_null",
        "customer_id.unique",
    ]
    assert summary["rules"]["email.regex"]["examples"] == [
        {"row": 2, "value": "x", "reason": "email is 'x', which does not match the pattern '^[^@]+@[^@]+$'"}
    ]
    assert summary["rules"]["customer_id.unique"]["examples"] == [
        {"row": 3, "value": "2", "reason": "customer_id is 2, a duplicate of row 2"}
    ]
    assert summary["table_failures"] == []
    assert json.loads(json.dumps(summary)) == summary


def test_valid_rows_keep_the_columns_order_and_types_and_quarantine_is_text() -> None:
    out = check(customers(), RULES)
    valid = out.valid.collect()
    assert valid.columns == ["customer_id", "plan", "age", "email"]
    assert valid.schema == pl.Schema({"customer_id": pl.Int64, "plan": pl.String, "age": pl.Int64, "email": pl.String})
    assert valid.rows() == [(1, "basic", 5, "a@b")]
    assert out.quarantined.columns == ["customer_id", "plan", "age", "email", "_rule", "_reason", "_row"]
    assert out.quarantined.schema["customer_id"] == pl.String
    assert out.quarantined.schema["_row"] == pl.Int64
    assert out.quarantined.row(0)[:4] == ("2", "gold", "abc", "x")


def test_examples_are_capped_at_three_per_rule() -> None:
    out = check({"n": list(range(10))}, "columns:\n  n: {max: 4}\n")
    examples = out.summary["rules"]["n.max"]["examples"]
    assert [e["row"] for e in examples] == [6, 7, 8]
    assert out.summary["rules"]["n.max"]["failed"] == 5


def test_message_and_raise_if_failed() -> None:
    out = check(customers(), RULES)
    with pytest.raises(ValidationFailed) as info:
        out.raise_if_failed()
    assert info.value.message.startswith("4 of 5 rows break the rules: age.type: 1 (e.g. row 2: age is 'abc'")
    assert "nothing was committed" in info.value.message
    assert info.value.details["summary"]["rows_quarantined"] == 4
    good = check({"age": [1]}, "columns:\n  age: {min: 0}\n")
    good.raise_if_failed()
    assert good.ok
    assert good.message() == "All 1 rows pass the rules."


def test_an_empty_frame() -> None:
    empty = pl.DataFrame(schema={"age": pl.String, "id": pl.Int64})
    out = check(empty, "columns:\n  age: {type: integer, min: 0}\n  id: {unique: true}\ntable:\n  rows: {min: 1}\n")
    assert out.quarantined.height == 0
    assert out.quarantined.columns == ["age", "id", "_rule", "_reason", "_row"]
    assert out.summary["rows_checked"] == 0
    assert out.summary["rows_quarantined"] == 0
    assert out.summary["table_failures"] == [
        {
            "rule": "table.rows.min",
            "limit": 1,
            "actual": 0,
            "reason": "0 rows pass the column rules, fewer than the minimum 1",
        }
    ]
    assert out.valid.collect().schema == pl.Schema({"age": pl.Int64, "id": pl.Int64})


# -- table rules ---------------------------------------------------------------------------------------


def test_table_row_range_counts_valid_rows_and_quarantines_nothing() -> None:
    out = check({"n": [1, 2, 3, 99]}, "columns:\n  n: {max: 10}\ntable:\n  rows: {min: 1, max: 2}\n")
    assert out.summary["table_failures"] == [
        {
            "rule": "table.rows.max",
            "limit": 2,
            "actual": 3,
            "reason": "3 rows pass the column rules (4 read), more than the maximum 2",
        }
    ]
    assert [r[1] for r in quarantine(out)] == ["n.max"]
    assert out.valid.collect().height == 3
    assert not out.ok


def test_table_rules_alone() -> None:
    out = check({"n": [1, 2]}, "table:\n  rows: {min: 1, max: 2}\n")
    assert out.ok
    assert out.summary["table_failures"] == []
    too_few = check({"n": [1, 2]}, "table:\n  rows: {min: 3}\n")
    assert [f["rule"] for f in too_few.summary["table_failures"]] == ["table.rows.min"]
    assert too_few.quarantined.height == 0
    assert too_few.valid.collect().height == 2
    assert "table.rows.min: 2 rows pass the column rules, fewer than the minimum 3" in too_few.message()


# -- errors applying rules --------------------------------------------------------------------------------


def test_a_column_the_rules_name_must_exist() -> None:
    with pytest.raises(ValidationFailed) as info:
        check({"age": [1], "email": ["a"]}, "columns:\n  email: {not_null: true}\n  agee: {min: 0}\n")
    assert info.value.message == (
        "rules.yaml, line 3: column 'agee' is not in the data. Did you mean 'age'? The data has: age, email. "
        "Fix the name in the rules file."
    )
    assert info.value.exit_code == 2


def test_a_column_with_no_rules_must_only_exist() -> None:
    assert check({"notes": [None]}, "columns:\n  notes: {}\n").ok
    with pytest.raises(ValidationFailed, match="column 'notes' is not in the data"):
        check({"other": [1]}, "columns:\n  notes:\n")


def test_bounds_on_a_text_column_ask_for_a_type() -> None:
    with pytest.raises(ValidationFailed) as info:
        check({"age": ["1", "x"]}, "columns:\n  age: {min: 0}\n")
    assert info.value.message.startswith(
        "rules.yaml, line 2: age.min is 0, a number, but column 'age' holds text (String). "
        "Declare the column's type (e.g. 'type: integer')"
    )


def test_allowed_values_of_the_wrong_kind_for_the_column() -> None:
    with pytest.raises(ValidationFailed, match=r"level.allowed lists 'a', 'b', but column 'level' holds integers"):
        check({"level": [1]}, "columns:\n  level: {allowed: [a, b]}\n")


def test_categorical_columns_compare_as_text() -> None:
    frame = pl.DataFrame({"plan": ["basic", "gold", "basic"]}, schema={"plan": pl.Categorical})
    out = check(frame, "columns:\n  plan: {allowed: [basic], unique: true}\n")
    assert quarantine(out) == [
        (2, "plan.allowed", "plan is 'gold', not one of 'basic'"),
        (3, "plan.unique", "plan is 'basic', a duplicate of row 1"),
    ]
    assert out.valid.collect().schema["plan"] == pl.Categorical


def test_quarantine_column_names_are_reserved() -> None:
    with pytest.raises(ValidationFailed, match="'_row'"):
        check({"_row": [1]}, "table:\n  rows: {min: 1}\n")


# -- rules files -----------------------------------------------------------------------------------------


def test_parse_rules_reads_the_format() -> None:
    rules = parse_rules(RULES, "rules.yaml")
    assert isinstance(rules, Rules)
    assert [c.name for c in rules.columns] == ["age", "email", "plan", "customer_id"]
    age = rules.columns[0]
    assert (age.type, age.not_null, age.min, age.max, age.line) == ("integer", True, 0, 130, 3)
    assert rules.table.min_rows == 1
    assert rules.table.max_rows == 10
    assert rules.rule_ids == [
        "age.type",
        "age.not_null",
        "age.min",
        "age.max",
        "email.regex",
        "plan.allowed",
        "customer_id.not_null",
        "customer_id.unique",
        "table.rows.min",
        "table.rows.max",
    ]


def test_rules_round_trip_through_to_dict() -> None:
    rules = parse_rules(RULES, "rules.yaml")
    again = parse_rules(yaml.safe_dump(rules.to_dict()), "copy.yaml")
    assert again.to_dict() == rules.to_dict()
    assert json.loads(json.dumps(rules.to_dict())) == rules.to_dict()
    dated = parse_rules("columns:\n  d: {type: date, min: 2020-01-01, allowed: [2020-01-02]}\n")
    assert dated.to_dict() == {"columns": {"d": {"type": "date", "min": "2020-01-01", "allowed": ["2020-01-02"]}}}


def test_load_rules_reads_a_file_and_names_it_in_errors(tmp_path: Path) -> None:
    path = tmp_path / "rules.yaml"
    path.write_text("columns:\n  age: {min: 0}\n")
    assert load_rules(path).columns[0].min == 0
    path.write_text("columns:\n  age: {minn: 0}\n")
    with pytest.raises(InvalidSpec, match=rf"^{path}, line 2: unknown key 'minn'"):
        load_rules(path)
    with pytest.raises(NotFound, match="No rules file"):
        load_rules(tmp_path / "missing.yaml")
    path.write_bytes(b"columns:\n  age: {min: 0}\n  \xff: {}\n")
    with pytest.raises(InvalidSpec, match=r"line 3: byte b'\\xff' is not UTF-8"):
        load_rules(path)


def test_bad_yaml_syntax_names_the_line() -> None:
    message = spec_error("columns:\n  age: {min: 0\n  email: {regex: 'x'}\n")
    assert message.startswith("rules.yaml, line 3: YAML syntax error: ")
    assert "Fix the syntax" in message
    unclosed = spec_error("columns:\n  email: {regex: '^x}\n")
    assert unclosed.startswith("rules.yaml, line 3: YAML syntax error: found unexpected end of stream")


def test_unknown_rule_offers_did_you_mean() -> None:
    assert spec_error("columns:\n  age: {type: integer}\n  id: {uniqe: true}\n") == (
        "rules.yaml, line 3: unknown key 'uniqe' in column 'id'. Did you mean 'unique'? "
        "Allowed: type, not_null, min, max, allowed, regex, unique, format."
    )
    assert "Did you mean 'not_null'?" in spec_error("columns:\n  id: {nullable: false}\n")
    assert "Did you mean 'allowed'?" in spec_error("columns:\n  id: {enum: [a]}\n")


def test_unknown_top_level_and_table_keys() -> None:
    assert spec_error("colums:\n  a: {}\n") == (
        "rules.yaml, line 1: unknown key 'colums' in the rules file. Did you mean 'columns'? Allowed: columns, table."
    )
    assert spec_error("table:\n  row: {min: 1}\n").startswith(
        "rules.yaml, line 2: unknown key 'row' in 'table'. Did you mean 'rows'?"
    )
    assert spec_error("table:\n  rows: {min: 1, maximum: 3}\n").startswith(
        "rules.yaml, line 2: unknown key 'maximum' in 'table.rows'. Did you mean 'max'?"
    )


def test_unknown_type_offers_did_you_mean() -> None:
    assert spec_error("columns:\n  age: {type: int}\n") == (
        "rules.yaml, line 2: age.type is 'int', not a known type. Did you mean 'integer'? "
        "Use one of: integer, number, string, boolean, date, datetime."
    )
    assert spec_error("columns:\n  t:\n    type: datetme\n").startswith(
        "rules.yaml, line 3: t.type is 'datetme', not a known type. Did you mean one of: 'datetime', 'date'?"
    )


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("columns:\n  a: {not_null: 'yes'}\n", "line 2: a.not_null is 'yes'; it must be true or false (unquoted)."),
        ("columns:\n  a: {unique: [1]}\n", "line 2: a.unique must be true or false, not a list."),
        ("columns:\n  a: {type: integer, min: ten}\n", "line 2: a.min is 'ten'; a integer column needs a number here."),
        ("columns:\n  a: {type: date, max: 2020-13-01}\n", "line 2: a.max '2020-13-01' is not an ISO date"),
        ("columns:\n  a: {type: string, min: 1}\n", "line 2: a.min: min and max apply to integer, number, date"),
        ("columns:\n  a: {min: 5, max: 1}\n", "line 2: a.max (1) is below a.min (5); swap them."),
        ("columns:\n  a: {allowed: basic}\n", "line 2: a.allowed must be a non-empty list"),
        ("columns:\n  a: {allowed: []}\n", "line 2: a.allowed must be a non-empty list"),
        ("columns:\n  a: {allowed: [x, null]}\n", "line 2: a.allowed lists a null; nulls always pass"),
        ("columns:\n  a: {type: integer, allowed: [1, x]}\n", "line 2: a.allowed lists 'x'; a integer column needs"),
        ("columns:\n  a: {regex: '(?<=x)y'}\n", "line 2: a.regex '(?<=x)y' does not compile: look-around"),
        ("columns:\n  a: {format: '%Y'}\n", "line 2: a.format only applies to 'type: date' or 'type: datetime'"),
        ("columns:\n  a: {type: date, format: 'YYYY'}\n", "line 2: a.format 'YYYY' has no '%' fields"),
        ("columns:\n  a: {min: 1}\n  a: {max: 2}\n", "line 3: 'a' is given twice in 'columns' (lines 2 and 3)"),
        ("columns:\n  age:\n  type: integer\n", "line 3: the rules of column 'type' must be a mapping of rule: "),
        ("columns:\n  - age\n", "line 2: 'columns' must be a mapping ('key: value' lines)"),
        ("table:\n  rows: {min: -1}\n", "line 2: table.rows.min is -1; it must be a whole number, 0 or more."),
        ("table:\n  rows: {min: 5, max: 1}\n", "line 2: table.rows.min (5) is above table.rows.max (1)."),
        ("- a\n", "line 1: the rules file must be a mapping"),
        ("", "rules.yaml: the rules file is empty"),
        (
            "columns:\n  a: {min: !!python/name:os.system }\n",
            "line 2: 'tag:yaml.org,2002:python/name:os.system' cannot be read: could not determine a constructor",
        ),
    ],
)
def test_wrong_values_are_explained(text: str, expected: str) -> None:
    assert expected in spec_error(text)


def test_a_rule_name_used_as_a_column_says_to_indent_it() -> None:
    message = spec_error("columns:\n  age:\n  type: integer\n")
    assert message.endswith("'type' is a rule name: indent it under its column.")


def test_more_than_one_document_is_refused() -> None:
    assert spec_error("columns: {}\n---\ntable: {}\n").startswith("rules.yaml, line 2: YAML syntax error: ")


# -- properties ------------------------------------------------------------------------------------------


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    st.lists(
        st.tuples(
            st.one_of(st.none(), st.integers(-50, 200).map(str), st.sampled_from(["x", "1.5", " 3 ", ""])),
            st.one_of(st.none(), st.integers(0, 5)),
        ),
        max_size=40,
    )
)
def test_every_row_is_either_valid_or_quarantined_once(rows: list[tuple[str | None, int | None]]) -> None:
    frame = pl.DataFrame(
        {"age": [r[0] for r in rows], "id": [r[1] for r in rows]}, schema={"age": pl.String, "id": pl.Int64}
    )
    out = apply_rules(
        frame.lazy(), parse_rules("columns:\n  age: {type: integer, min: 0, max: 130}\n  id: {unique: true}\n")
    )
    valid = out.valid.collect()
    assert valid.height + out.quarantined.height == len(rows)
    assert out.summary["rows_valid"] == valid.height
    assert sorted(out.quarantined["_row"].to_list()) == out.quarantined["_row"].to_list()
    assert len(set(out.quarantined["_row"].to_list())) == out.quarantined.height
    assert all(0 <= v <= 130 for v in valid["age"].to_list() if v is not None)
    ids = [v for v in valid["id"].to_list() if v is not None]
    assert len(ids) == len(set(ids))
    # The quarantine holds the input's values, verbatim, at the rows it names.
    for row in out.quarantined.iter_rows(named=True):
        assert row["age"] == rows[row["_row"] - 1][0]
    # A row is valid exactly when it reads as an integer in range and repeats no earlier id.
    seen: set[int] = set()
    expected = []
    for age, id_ in rows:
        try:
            number = None if age is None else int(age)
        except ValueError:
            number = -1
        ok = number is None or 0 <= number <= 130
        if id_ is not None and id_ in seen:
            ok = False
        if id_ is not None:
            seen.add(id_)
        if ok:
            expected.append(None if age is None else int(age))
    assert valid["age"].to_list() == expected


def test_the_documented_examples_parse() -> None:
    import conveyor.data._validation as module

    guide = (Path(__file__).resolve().parents[2] / "docs" / "data-validation.md").read_text()
    example = guide.split("```yaml\n", 1)[1].split("```", 1)[0]
    rules = parse_rules(example, "data-validation.md")
    assert [c.name for c in rules.columns] == [
        "customer_id", "age", "email", "plan", "signup", "churned", "last_seen", "notes"
    ]  # fmt: skip
    assert rules.columns[6].format == "%d/%m/%Y %H:%M"
    docstring = module.__doc__ or ""
    block = docstring.split("::\n\n", 1)[1].split("\n\n", 1)[0]
    from_docstring = parse_rules("\n".join(line.removeprefix("    ") for line in block.splitlines()))
    assert from_docstring.table.max_rows == 10_000_000
    assert len(from_docstring.columns) == 8
