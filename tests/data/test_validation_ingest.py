"""Validation rules applied during ingestion: good rows become the version, bad rows a quarantine version."""

from __future__ import annotations

from pathlib import Path

import pytest

from conveyor.errors import InvalidSpec, ValidationFailed

RULES = """
columns:
  age: {type: integer, not_null: true, min: 0, max: 130}
  plan: {allowed: [basic, premium]}
table:
  rows: {min: 1}
"""


@pytest.fixture
def files(tmp_path: Path) -> tuple[Path, Path]:
    data = tmp_path / "people.csv"
    data.write_text("name,age,plan\nann,31,basic\nbob,150,basic\ncy,,premium\ndee,40,gold\neve,22,premium\n")
    rules = tmp_path / "rules.yaml"
    rules.write_text(RULES)
    return data, rules


def test_bad_rows_are_quarantined_with_the_rule(workspace, files: tuple[Path, Path]) -> None:  # type: ignore[no-untyped-def]
    data, rules = files
    result = workspace.data.ingest(data, name="people", rules=rules)
    v = result.version
    assert v.rows == 2
    assert [r["name"] for r in workspace.data.read_table(v).to_pylist()] == ["ann", "eve"]
    assert v.validation is not None
    assert v.validation["rows_quarantined"] == 3 and v.validation["quarantine"] == "people_quarantine:1"
    bad = workspace.data.read_table("people_quarantine:1").to_pylist()
    assert sorted((r["name"], r["_rule"]) for r in bad) == [
        ("bob", "age.max"),
        ("cy", "age.not_null"),
        ("dee", "plan.allowed"),
    ]
    assert all(r["_reason"] for r in bad)
    assert workspace.data.get("people_quarantine:1").parents == [v.id]
    assert any("3 rows quarantined" in n for n in result.notes)


def test_fail_on_invalid_commits_nothing(workspace, files: tuple[Path, Path]) -> None:  # type: ignore[no-untyped-def]
    data, rules = files
    with pytest.raises(ValidationFailed, match="age.max"):
        workspace.data.ingest(data, name="people", rules=rules, fail_on_invalid=True)
    assert workspace.data.list() == []


def test_clean_data_passes_and_changed_rules_revalidate(workspace, files: tuple[Path, Path], tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    data, rules = files
    data.write_text("name,age,plan\nann,31,basic\n")
    first = workspace.data.ingest(data, name="people", rules=rules, fail_on_invalid=True)
    assert first.created and first.version.validation["rows_quarantined"] == 0
    assert [a.name for a in workspace.data.list()] == ["people"], "no quarantine asset when nothing failed"
    looser = tmp_path / "looser.yaml"
    looser.write_text("columns:\n  age: {max: 40}\n")
    same = workspace.data.ingest(data, name="people", rules=looser)
    assert (same.created, same.version.version) == (False, 1), "re-validated, same rows: no new version"
    stricter = tmp_path / "stricter.yaml"
    stricter.write_text("columns:\n  age: {max: 30}\n")
    with pytest.raises(ValidationFailed, match="Every row broke a rule"):
        workspace.data.ingest(data, name="people", rules=stricter)
    assert [v.version for v in workspace.data.versions("people")] == [1]


def test_a_broken_rules_file_is_explained(workspace, files: tuple[Path, Path], tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    data, _ = files
    broken = tmp_path / "broken.yaml"
    broken.write_text("columns:\n  age: {maxx: 3}\n")
    with pytest.raises(InvalidSpec, match=r"broken.yaml.*line 2.*Did you mean 'max'"):
        workspace.data.ingest(data, name="people", rules=broken)
    assert workspace.data.list() == []


def test_bad_lines_are_refused_skipped_or_quarantined_with_their_line_numbers(tmp_path: Path, cli) -> None:  # type: ignore[no-untyped-def]
    import json

    from conveyor import Workspace

    home = str(tmp_path / "ws")
    assert cli("--home", home, "init").code == 0
    source = tmp_path / "ragged.csv"
    source.write_text('id,name,amount\n1,ann,3.5\n2,"bo, jr",4\n3,cy,5,EXTRA\n4,di,6\n5\n6,ed,7\n')
    refused = cli("--home", home, "data", "ingest", str(source), "--name", "r", "--json")
    assert refused.code == 2 and "line 4 has 4 fields" in json.loads(refused.out)["error"]["message"]
    skipped = json.loads(cli("--home", home, "data", "ingest", str(source), "--name", "r", "--bad-lines", "skip",
                             "--json").out)  # fmt: skip
    assert skipped["rows"] == 4 and skipped["bad_lines"] == {"policy": "skip", "count": 2, "lines": [4, 6]}
    assert "2 malformed line(s) left out (line 4, 6)" in skipped["notes"][0]
    kept = json.loads(cli("--home", home, "data", "ingest", str(source), "--name", "r", "--bad-lines", "quarantine",
                          "--json").out)  # fmt: skip
    assert kept["version"] == 1 and kept["rows"] == 4 and "stored in r_quarantine:1" in kept["notes"][0]
    with Workspace.open(home) as ws:
        quarantine = ws.data.to_pandas("r_quarantine:1")
        assert quarantine["line"].tolist() == [4, 6]
        assert quarantine["text"].tolist() == ["3,cy,5,EXTRA", "5"]
        assert quarantine["reason"].tolist()[0] == "4 fields where the header has 3"
        assert ws.data.to_pandas("r:1")["name"].tolist() == ["ann", "bo, jr", "di", "ed"]  # quoted commas kept
    again = json.loads(cli("--home", home, "data", "ingest", str(source), "--name", "r", "--bad-lines", "quarantine",
                           "--json").out)  # fmt: skip
    assert again["created"] is False  # same file, same policy: no new version
    wrong = cli("--home", home, "data", "ingest", str(source), "--name", "r", "--bad-lines", "fix", "--json")
    assert wrong.code == 2 and "must be one of error, skip, quarantine" in json.loads(wrong.out)["error"]["message"]
