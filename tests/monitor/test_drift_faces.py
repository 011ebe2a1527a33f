"""Ad-hoc drift through every face: ws.monitors.drift, ``conveyor drift`` (--json, --html, files and data
versions) and ``POST /api/v1/drift`` (data references only)."""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.csv as pa_csv
import pyarrow.parquet as pq
import pytest

from conveyor.workspace import Workspace
from tests.api_client import api_client

RNG = np.random.default_rng(5)


def _table(n: int, shift: float) -> pa.Table:
    return pa.table(
        {
            "amount": RNG.gamma(2.0 + shift, 10.0, n),
            "region": np.array(["north", "south", "east", "west"])[
                RNG.choice(4, n, p=[0.7, 0.1, 0.1, 0.1] if shift else None)
            ],
            "tenure": RNG.integers(0, 60, n),
        }
    )


@pytest.fixture
def versions(workspace: Workspace) -> Workspace:
    workspace.data.commit_table(_table(3000, 0.0), name="sales", source={"kind": "test"})
    workspace.data.commit_table(_table(2000, 2.0), name="sales", source={"kind": "test"})
    return workspace


def test_sdk_compares_data_versions_and_frames(versions: Workspace) -> None:
    report = versions.monitors.drift("sales:1", "sales@latest")
    assert report.reference == "sales:1" and report.current == "sales:2"
    assert {c.column for c in report.columns if c.drifted} == {"amount", "region"}
    frame = _table(500, 0.0).to_pandas()
    same = versions.monitors.drift(frame, frame, columns=["amount"])
    assert [c.column for c in same.columns] == ["amount"] and not same.drifted


def test_cli_json_html_and_files(versions: Workspace, cli, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    home = str(versions.settings.home)
    result = cli("--home", home, "drift", "sales:1", "sales@latest", "--json", "--html", str(tmp_path / "d.html"))
    assert result.code == 0, result.err
    body = result.json
    assert set(body) >= {"columns", "share_drifted", "drifted", "rows", "seconds"}
    assert body["rows"] == {"reference": 3000, "current": 2000} and body["drifted"] is True
    first = body["columns"][0]
    assert {k: first[k] for k in ("column", "type", "metric")} == {
        "column": "amount",
        "type": "numeric",
        "metric": "wasserstein",
    }
    assert {"value", "threshold", "drifted"} <= set(first)
    page = (tmp_path / "d.html").read_text()
    assert page.count("Plotly.newPlot") == 3 and not re.search(r"<script[^>]*\ssrc=", page)

    pq.write_table(_table(400, 0.0), tmp_path / "ref.parquet")
    pa_csv.write_csv(_table(400, 0.0), tmp_path / "cur.csv")
    files = cli("--home", home, "drift", str(tmp_path / "ref.parquet"), str(tmp_path / "cur.csv"), "--metric", "psi")
    assert files.code == 0, files.err
    assert "no drift" in files.out and "psi" in files.out

    unknown = cli("--home", home, "drift", "sales:1", "sales:2", "--metric", "kss")
    assert unknown.code == 2 and "No drift metric named 'kss'. Did you mean 'ks'?" in unknown.err
    missing = cli("--home", home, "drift", str(tmp_path / "nope.parquet"), "sales:2")
    assert missing.code == 2 and "does not exist" in missing.err
    no_asset = cli("--home", home, "drift", "sale:1", "sales:2")
    assert no_asset.code == 2 and "Did you mean 'sales'?" in no_asset.err


def test_rest_drift_takes_data_references_only(versions: Workspace, tmp_path: Path) -> None:
    reader = api_client(versions, "reader")
    found = reader.post("/api/v1/drift", json={"reference": "sales:1", "current": "sales:2", "metric": "ks"})
    assert found.status_code == 200, found.text
    body = found.json()
    assert body["drifted"] is True and body["rows"] == {"reference": 3000, "current": 2000}
    assert {c["column"]: c["metric"] for c in body["columns"]} == {"amount": "ks", "region": "js", "tenure": "ks"}
    pq.write_table(_table(10, 0.0), tmp_path / "secret.parquet")
    path = reader.post("/api/v1/drift", json={"reference": str(tmp_path / "secret.parquet"), "current": "sales:2"})
    assert path.status_code == 400 and path.json()["error"]["code"] == "invalid_reference"
    bad = reader.post("/api/v1/drift", json={"reference": "sales:1", "current": "sales:2", "threshold": -1})
    assert bad.status_code in (400, 422)
    anonymous = api_client(versions, None).post("/api/v1/drift", json={"reference": "sales:1", "current": "sales:2"})
    assert anonymous.status_code == 401


def test_rest_computes_a_models_profile_with_write_rights_and_drift_reads_it(versions: Workspace) -> None:
    from sklearn.linear_model import LinearRegression

    frame = _table(3000, 0.0).to_pandas()
    model = LinearRegression().fit(frame[["amount", "tenure"]], frame["amount"])
    versions.models.register("spend", model, input_example=frame[["amount", "tenure"]].head(10))
    reader, writer = api_client(versions, "reader"), api_client(versions, "data-scientist")

    none_yet = reader.get("/api/v1/models/spend:1/profile")
    assert none_yet.status_code == 404 and "no reference profile yet" in none_yet.json()["error"]["message"]
    from_drift = reader.post("/api/v1/drift", json={"reference": "model:spend", "current": "sales:2"})
    assert from_drift.status_code == 404  # a read never computes (computing writes a file to the version)
    assert reader.post("/api/v1/models/spend/profile", json={"data": "sales:1"}).status_code == 403
    path = writer.post("/api/v1/models/spend/profile", json={"data": "/etc/passwd"})
    assert path.status_code == 400 and path.json()["error"]["code"] == "invalid_reference"  # never a path
    made = writer.post("/api/v1/models/spend/profile", json={"data": "sales:1"})
    assert made.status_code == 200, made.text
    assert {c["column"] for c in made.json()["columns"]} == {"amount", "tenure", "prediction"}
    assert reader.get("/api/v1/models/spend@latest/profile").json()["source"] == "sales:1"
    drift = reader.post("/api/v1/drift", json={"reference": "model:spend", "current": "sales:2"})
    assert drift.status_code == 200, drift.text
    assert drift.json()["reference"] == "profile of sales:1" and drift.json()["drifted"] is True
