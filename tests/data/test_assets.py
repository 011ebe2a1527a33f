"""Data assets: ingestion into immutable, content-hashed Parquet versions."""

from __future__ import annotations

import json
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from conveyor.errors import BadInput, InvalidReference, NotFound, ValidationFailed


def write_csv(path: Path, rows: list[str]) -> Path:
    path.write_text("\n".join(rows) + "\n")
    return path


def test_ingest_csv_makes_a_version_with_hash_schema_and_rows(any_workspace, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    source = write_csv(tmp_path / "people.csv", ["name,age,joined", "ann,31,2024-01-02", "bob,,2023-05-06"])
    result = any_workspace.data.ingest(source, name="people")
    v = result.version
    assert result.created
    assert v.ref == "people:1"
    assert v.rows == 2
    assert v.content_hash.startswith("sha256:") and len(v.content_hash) == 71
    assert [c["name"] for c in v.schema] == ["name", "age", "joined"]
    assert v.source["format"] == "csv"
    table = any_workspace.data.read_table("people:1")
    assert table.column("name").to_pylist() == ["ann", "bob"]
    assert table.column("age").to_pylist() == [31, None]


def test_identical_content_makes_no_new_version(any_workspace, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    source = write_csv(tmp_path / "a.csv", ["x,y", "1,2"])
    first = any_workspace.data.ingest(source, name="a")
    again = any_workspace.data.ingest(source, name="a")
    assert again.created is False
    assert again.version.id == first.version.id
    write_csv(source, ["x,y", "1,2", "3,4"])
    changed = any_workspace.data.ingest(source, name="a")
    assert changed.created and changed.version.version == 2
    assert [v.version for v in any_workspace.data.versions("a")] == [1, 2]
    assert any_workspace.data.get("a").version == 2
    assert any_workspace.data.get("a@latest").version == 2
    assert any_workspace.data.get("a:1").rows == 1


def test_parquet_json_and_jsonl_sources(workspace, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    table = pa.table({"k": [1, 2, 3], "v": ["a", "b", None]})
    pq.write_table(table, tmp_path / "t.parquet")
    (tmp_path / "t.json").write_text(json.dumps(table.to_pylist()))
    (tmp_path / "t.jsonl").write_text("\n".join(json.dumps(r) for r in table.to_pylist()))
    for suffix in ("parquet", "json", "jsonl"):
        v = workspace.data.ingest(tmp_path / f"t.{suffix}", name=f"t_{suffix}").version
        assert v.rows == 3
        assert workspace.data.read_table(v).column("v").to_pylist() == ["a", "b", None]
    assert [a.name for a in workspace.data.list()] == ["t_json", "t_jsonl", "t_parquet"]


def test_the_version_is_stored_in_the_artifact_store(workspace, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    v = workspace.data.ingest(write_csv(tmp_path / "a.csv", ["x", "1"]), name="a").version
    (file,) = v.files
    assert workspace.artifacts.exists(file["digest"])
    assert file["rows"] == 1


@pytest.mark.parametrize(
    ("content", "kwargs", "error", "message"),
    [
        (None, {}, NotFound, "No such file"),
        ("", {}, BadInput, "is empty"),
        ("a,b\n1,2\n", {"format": "xlsx"}, BadInput, "Unknown format 'xlsx'"),
        ("a,b\n1,2\n1,2,3\n", {}, ValidationFailed, "line 3 has 3 fields where the header has 2"),
        ('a,b\n1,"open\n2,3\n', {}, ValidationFailed, "quoted field opened on line 2 is never closed"),
        ("a,b\n", {}, BadInput, "has no rows"),
        ('{"a": 1', {"format": "json"}, ValidationFailed, "could not be read as json"),
        ("a,b\n1,2\n", {"name": "../escape"}, InvalidReference, "not a valid data asset name"),
    ],
)
def test_bad_sources_are_explained_and_commit_nothing(  # type: ignore[no-untyped-def]
    workspace, tmp_path: Path, content: str | None, kwargs: dict[str, str], error: type[Exception], message: str
) -> None:
    source = tmp_path / "in.csv"
    if content is not None:
        source.write_text(content)
    with pytest.raises(error, match=message):
        workspace.data.ingest(source, **{"name": "bad", **kwargs})
    assert workspace.data.list() == []


def test_unknown_suffix_asks_for_a_format(workspace, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    (tmp_path / "data.bin").write_text("a\n1\n")
    with pytest.raises(BadInput, match="pass --format"):
        workspace.data.ingest(tmp_path / "data.bin", name="x")
    assert workspace.data.ingest(tmp_path / "data.bin", name="x", format="csv").version.rows == 1


def test_unknown_names_and_versions_suggest_the_fix(workspace, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    workspace.data.ingest(write_csv(tmp_path / "a.csv", ["x", "1"]), name="churn")
    with pytest.raises(NotFound, match="Did you mean 'churn'"):
        workspace.data.get("chrun")
    with pytest.raises(NotFound, match="has no version 7; its latest is churn:1"):
        workspace.data.get("churn:7")
    with pytest.raises(NotFound, match="no alias 'champion'"):
        workspace.data.get("churn@champion")


def test_append_adds_files_without_rewriting_and_keeps_a_checkpoint(any_workspace) -> None:  # type: ignore[no-untyped-def]
    from conveyor.data import Checkpoint

    ws = any_workspace
    first, created = ws.data.commit_table(pa.table({"k": [1, 2]}), name="events", source={"kind": "test"})
    assert created and ws.data.checkpoint("events", "feed") is None
    second, _ = ws.data.commit_table(
        pa.table({"k": [3]}),
        name="events",
        source={"kind": "test"},
        mode="append",
        checkpoint=Checkpoint("feed", {"seq": 3}),
    )
    assert second.version == 2 and second.rows == 3
    assert second.files[0] == first.files[0], "the first version's file is reused, not rewritten"
    assert len(second.files) == 2
    assert second.parents == [first.id]
    assert ws.data.read_table(second).column("k").to_pylist() == [1, 2, 3]
    assert ws.data.checkpoint("events", "feed") == {"seq": 3}
    edges = ws.lineage.edges("data_version", first.id)
    assert [(e.relation, e.to_id) for e in edges] == [("derived", second.id)]


def test_appended_rows_must_match_the_schema(workspace) -> None:  # type: ignore[no-untyped-def]
    workspace.data.commit_table(pa.table({"k": [1], "v": ["a"]}), name="e", source={})
    with pytest.raises(ValidationFailed, match="missing v; new w"):
        workspace.data.commit_table(pa.table({"k": [2], "w": ["b"]}), name="e", source={}, mode="append")
    with pytest.raises(ValidationFailed, match="k is string not int64"):
        workspace.data.commit_table(pa.table({"k": ["2"], "v": ["b"]}), name="e", source={}, mode="append")
    assert [v.version for v in workspace.data.versions("e")] == [1]


def test_bad_encoding_names_the_line_and_byte(workspace, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    (tmp_path / "latin.csv").write_bytes(b"name,city\nann,M\xfcnchen\n")
    with pytest.raises(ValidationFailed, match=r"line 2, column 6: byte b'\\xfc' is not UTF-8"):
        workspace.data.ingest(tmp_path / "latin.csv", name="x")


def test_a_type_that_changes_late_in_the_file_is_read_right(workspace, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    lines = ["code,n", *[f"{i},{i}" for i in range(12_000)], "A-7,1"]
    (tmp_path / "late.csv").write_text("\n".join(lines) + "\n")
    v = workspace.data.ingest(tmp_path / "late.csv", name="late").version
    assert v.rows == 12_001
    assert v.schema[0]["type"] == "string"


def test_profiles_are_stored_at_ingestion(workspace, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    source = write_csv(tmp_path / "p.csv", ["x,y", "1,a", "2,b", "4,"])
    v = workspace.data.ingest(source, name="p").version
    assert v.profile is not None and v.profile["rows"] == 3
    assert v.profile["columns"]["x"]["mean"] == pytest.approx(7 / 3)
    assert v.profile["columns"]["y"]["nulls"] == 1
    quiet = workspace.data.ingest(write_csv(tmp_path / "q.csv", ["x", "1"]), name="q", profile=False).version
    assert quiet.profile is None
    appended, _ = workspace.data.commit_table(pa.table({"x": [5], "y": ["c"]}), name="p", source={}, mode="append")
    assert appended.profile is None, "appends are profiled on demand, not per micro-batch"


def test_a_long_append_chain_records_each_part_once(any_workspace) -> None:  # type: ignore[no-untyped-def]
    import sqlalchemy as sa

    from conveyor.store._schema import DataVersionRow

    ws = any_workspace
    for i in range(40):
        ws.data.commit_table(pa.table({"i": [i]}), name="stream", source={}, mode="append")
    last = ws.data.get("stream")
    assert last.version == 40 and last.rows == 40 and len(last.files) == 40
    assert ws.data.read_table(last).column("i").to_pylist() == list(range(40))
    assert [len(v.files) for v in ws.data.versions("stream")] == list(range(1, 41))
    assert len(ws.data.get("stream:7").files) == 7
    with ws.store.read() as session:
        stored = session.scalars(sa.select(DataVersionRow.files)).all()
    assert all(len(files) == 1 for files in stored), "no version copies its parent's list of parts"
    hashes = {v.content_hash for v in ws.data.versions("stream")}
    assert len(hashes) == 40


def test_dates_are_parsed_and_a_late_odd_value_keeps_the_column_text(workspace, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    good = ["day,at", *[f"2024-01-{1 + i % 28:02d},2024-01-01 10:00:{i % 60:02d}" for i in range(50)]]
    v = workspace.data.ingest(write_csv(tmp_path / "d.csv", good), name="d").version
    assert [c["type"] for c in v.schema] == ["date32[day]", "timestamp[us]"]
    odd = [*good[:30], "31/12/2024,2024-01-01 10:00:00", *good[30:]]
    w = workspace.data.ingest(write_csv(tmp_path / "e.csv", odd), name="e").version
    assert w.rows == 51
    assert w.schema[0]["type"] == "string", "a date in another format: the column stays text, nothing is lost"
    assert "31/12/2024" in workspace.data.read_table(w).column("day").to_pylist()


def test_data_head_fits_a_narrow_terminal_and_names_what_it_left_out(tmp_path: Path, cli, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    home = str(tmp_path / "ws")
    assert cli("--home", home, "init").code == 0
    names = [f"customer_attribute_{i:02d}" for i in range(12)]
    source = tmp_path / "wide.csv"
    source.write_text(",".join(names) + "\n" + ",".join(f"value-{i}" for i in range(12)) + "\n")
    assert cli("--home", home, "data", "ingest", str(source), "--name", "wide").code == 0
    monkeypatch.setenv("COLUMNS", "80")
    narrow = cli("--home", home, "data", "head", "wide")
    assert narrow.code == 0 and "customer_attribute_00" in narrow.out and "…" not in narrow.out.splitlines()[0]
    assert "more column(s): customer_attribute_" in narrow.out and "--wide" in narrow.out
    assert max(len(line) for line in narrow.out.splitlines()) <= 80
    wide = cli("--home", home, "data", "head", "wide", "--wide")
    assert all(name in wide.out for name in names) and "more column" not in wide.out
    picked = cli("--home", home, "data", "head", "wide", "--columns", "customer_attribute_11,customer_attribute_03")
    assert picked.out.split()[:2] == ["customer_attribute_11", "customer_attribute_03"]
    typo = cli("--home", home, "data", "head", "wide", "--columns", "customer_atribute_03")
    assert typo.code == 2 and "'customer_attribute_03'" in typo.err and "Did you mean" in typo.err
