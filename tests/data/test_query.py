"""SQL over data assets (DuckDB), saving results with lineage, and exporting versions."""

from __future__ import annotations

from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from conveyor.errors import BadInput, NotFound


@pytest.fixture
def sales(workspace):  # type: ignore[no-untyped-def]
    workspace.data.commit_table(pa.table({"region": ["n", "s", "n"], "amount": [10, 20, 30]}), name="sales", source={})
    workspace.data.commit_table(
        pa.table({"region": ["n", "s"], "amount": [1, 2]}), name="sales", source={}
    )  # version 2 is the latest
    workspace.data.commit_table(pa.table({"region": ["n", "s"], "manager": ["ann", "bob"]}), name="regions", source={})
    return workspace


def test_assets_are_tables_of_their_latest_version(sales) -> None:  # type: ignore[no-untyped-def]
    result = sales.data.query("SELECT sum(amount) AS total FROM sales")
    assert result.records() == [{"total": 3}]
    assert [v.ref for v in result.inputs] == ["sales:2"]


def test_versions_and_joins(sales) -> None:  # type: ignore[no-untyped-def]
    result = sales.data.query(
        'SELECT r.manager, sum(s.amount) AS total FROM "sales:1" s JOIN regions r USING (region) '
        "GROUP BY r.manager ORDER BY r.manager"
    )
    assert result.records() == [{"manager": "ann", "total": 40}, {"manager": "bob", "total": 20}]
    assert sorted(v.ref for v in result.inputs) == ["regions:1", "sales:1"]
    assert sales.data.query('SELECT count(*) AS n FROM "sales@latest"').records() == [{"n": 2}]


def test_limit_marks_truncation(sales) -> None:  # type: ignore[no-untyped-def]
    result = sales.data.query('SELECT * FROM "sales:1"', limit=2)
    assert result.table.num_rows == 2 and result.truncated
    assert not sales.data.query('SELECT * FROM "sales:1"', limit=3).truncated


def test_save_as_records_the_query_and_its_inputs(sales) -> None:  # type: ignore[no-untyped-def]
    saved = sales.data.save_query("SELECT region, sum(amount) AS total FROM sales GROUP BY region", name="totals")
    v = saved.version
    assert saved.created and v.rows == 2
    assert v.source["kind"] == "sql-query" and v.source["inputs"] == ["sales:2"]
    sales_v2 = sales.data.get("sales:2")
    assert v.parents == [sales_v2.id]
    edges = sales.lineage.edges("data_version", v.id, direction="upstream")
    assert [(e.from_id, e.relation) for e in edges] == [(sales_v2.id, "derived")]


@pytest.mark.parametrize(
    ("query", "error", "message"),
    [
        ("SELEC 1", BadInput, "does not parse"),
        ("", BadInput, "empty"),
        ("SELECT * FROM sale", NotFound, "sale"),
        ('SELECT * FROM "sales:9"', NotFound, "has no version 9"),
        ('SELECT * FROM "nope:1"', NotFound, "No data asset named 'nope'"),
        ("SELECT no_such_column FROM sales", BadInput, "no_such_column"),
    ],
)
def test_bad_queries_are_explained(sales, query: str, error: type[Exception], message: str) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(error, match=message):
        sales.data.query(query)


@pytest.mark.s3
def test_sql_reads_assets_in_an_s3_store(tmp_path: Path, s3_bucket: tuple[str, dict[str, str]]) -> None:
    from conveyor import Workspace

    url, options = s3_bucket
    import os

    os.environ["CONVEYOR_ARTIFACTS_OPTIONS"] = __import__("json").dumps(options)
    try:
        with Workspace.open(tmp_path / "ws", artifacts_url=url) as ws:
            ws.data.commit_table(pa.table({"x": [1, 2, 3]}), name="nums", source={})
            assert ws.data.query("SELECT sum(x) AS s FROM nums").records() == [{"s": 6}]
    finally:
        os.environ.pop("CONVEYOR_ARTIFACTS_OPTIONS")


@pytest.mark.parametrize("suffix", ["parquet", "csv", "jsonl"])
def test_export_writes_the_whole_version(sales, tmp_path: Path, suffix: str) -> None:  # type: ignore[no-untyped-def]
    target = sales.data.export("sales:1", tmp_path / "out" / f"sales.{suffix}")
    assert target.exists()
    assert not [p for p in target.parent.iterdir() if p.name.startswith(".")], "no temporary file left"
    if suffix == "parquet":
        assert pq.read_table(target).column("amount").to_pylist() == [10, 20, 30]
    elif suffix == "csv":
        assert target.read_text().splitlines() == ["region,amount", "n,10", "s,20", "n,30"]
    else:
        assert len(target.read_text().splitlines()) == 3


def test_export_refuses_a_folder_and_json(sales, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(BadInput, match="is a folder"):
        sales.data.export("sales", tmp_path)
    with pytest.raises(BadInput, match="jsonl"):
        sales.data.export("sales", tmp_path / "x.json")
