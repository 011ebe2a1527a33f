"""The data commands a user types: datastores, SQL ingestion, conveyor sql, export."""

from __future__ import annotations

import csv
import io
from pathlib import Path

import pytest


@pytest.fixture
def home(tmp_path: Path, cli) -> str:  # type: ignore[no-untyped-def]
    home = str(tmp_path / "ws")
    assert cli("--home", home, "init").code == 0
    source = tmp_path / "sales.csv"
    source.write_text("region,amount\nnorth,10\nsouth,20\nnorth,5\n")
    assert cli("--home", home, "data", "ingest", str(source), "--name", "sales").code == 0
    return home


def test_sql_prints_a_table_json_or_csv(cli, home: str) -> None:  # type: ignore[no-untyped-def]
    query = "SELECT region, sum(amount) AS total FROM sales GROUP BY region ORDER BY region"
    as_json = cli("--home", home, "sql", query, "--json")
    assert as_json.code == 0
    assert as_json.json == {
        "columns": ["region", "total"],
        "rows": [{"region": "north", "total": 15}, {"region": "south", "total": 20}],
        "workspace": home,
    }
    as_csv = cli("--home", home, "sql", query, "--csv")
    assert list(csv.reader(io.StringIO(as_csv.out))) == [["region", "total"], ["north", "15"], ["south", "20"]]
    human = cli("--home", home, "sql", query)
    assert "north" in human.out and "2 rows" in human.out


def test_sql_save_as_and_bad_sql(cli, home: str) -> None:  # type: ignore[no-untyped-def]
    saved = cli("--home", home, "sql", "SELECT * FROM sales WHERE amount > 6", "--save-as", "big_sales", "--json")
    assert saved.code == 0 and saved.json["rows"] == 2 and saved.json["name"] == "big_sales"
    shown = cli("--home", home, "data", "show", "big_sales", "--json").json
    assert shown["source"]["inputs"] == ["sales:1"]
    bad = cli("--home", home, "sql", "SELECT * FROM sale")
    assert bad.code == 2 and "sale" in bad.err
    assert cli("--home", home, "sql", "DELETE FROM sales").code == 2


def test_export(cli, home: str, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    target = tmp_path / "out.csv"
    result = cli("--home", home, "data", "export", "sales:1", str(target), "--json")
    assert result.code == 0 and result.json["rows"] == 3
    assert target.read_text().splitlines()[0] == "region,amount"


def test_datastore_commands(cli, home: str, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    folder = tmp_path / "drop"
    folder.mkdir()
    (folder / "more.csv").write_text("region,amount\neast,7\n")
    added = cli("--home", home, "data", "store", "add", "drop", str(folder), "--json")
    assert added.code == 0 and added.json["kind"] == "local"
    assert cli("--home", home, "data", "store", "list", "--json").json["datastores"][0]["name"] == "drop"
    ingested = cli("--home", home, "data", "ingest", "more.csv", "--store", "drop", "--name", "more", "--json")
    assert ingested.code == 0 and ingested.json["rows"] == 1
    refused = cli("--home", home, "data", "store", "add", "db", "postgresql://u:pw@127.0.0.1/x")
    assert refused.code == 2 and "carries a password" in refused.err and "pw" not in refused.err.replace("password", "")
    bad_pair = cli("--home", home, "data", "store", "add", "db", "postgresql://u@127.0.0.1/x", "-c", "password")
    assert bad_pair.code == 2 and "KEY=VALUE" in bad_pair.err
    no_name = cli("--home", home, "data", "ingest", "x.csv")
    assert no_name.code == 2 and "--name" in no_name.err
    assert cli("--home", home, "data", "store", "remove", "drop").code == 0
    assert cli("--home", home, "data", "store", "show", "drop").code == 2
