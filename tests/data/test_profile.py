"""Data profiles: statistics checked against numpy/pandas, the HTML report, diffs, and the CLI commands."""

from __future__ import annotations

import dataclasses
import json
import math
import re
from datetime import date, time, timedelta
from pathlib import Path
from typing import Any

import numpy as np
import orjson
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from conveyor.data import compute_profile, diff_profiles, diff_versions, profile_of, render_profile_html
from conveyor.data._profile import EXACT_LIMIT, QUANTILES, TOP_K, Bins, js_distance, psi
from conveyor.errors import NotFound

N = 5_000


def make_frame(rows: int = N, seed: int = 7) -> pd.DataFrame:
    """Numbers (with nulls), a category, booleans (with nulls), dates (with nulls) and free text."""
    rng = np.random.default_rng(seed)
    amount = rng.normal(100.0, 15.0, rows)
    amount[rng.random(rows) < 0.1] = np.nan  # nulls (written as nulls, not NaN: see to_table)
    flag = pd.array(rng.random(rows) < 0.3, dtype="boolean")
    flag[rng.random(rows) < 0.05] = pd.NA
    days = pd.Series([date(2024, 1, 1) + timedelta(days=int(d)) for d in rng.integers(0, 400, rows)], dtype=object)
    days[rng.random(rows) < 0.02] = None
    return pd.DataFrame(
        {
            "amount": amount,
            "quantity": rng.integers(-5, 60, rows),
            "region": rng.choice(["north", "south", "east", "west", "centre"], rows, p=[0.4, 0.3, 0.15, 0.1, 0.05]),
            "flag": flag,
            "day": days,
            "note": [f"note {i}" for i in range(rows)],
        }
    )


def to_table(frame: pd.DataFrame) -> pa.Table:
    """An Arrow table (pandas' NaN become nulls; the dates are a date32 column)."""
    return pa.Table.from_pandas(frame, preserve_index=False)


def plain(value: Any) -> Any:
    """A numpy scalar as the Python value a profile holds."""
    return value.item() if isinstance(value, np.generic) else value


def write(frame: pd.DataFrame, path: Path) -> Path:
    pq.write_table(to_table(frame), path)
    return path


@pytest.fixture(scope="module")
def frame() -> pd.DataFrame:
    return make_frame()


@pytest.fixture(scope="module")
def profile(frame: pd.DataFrame, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    return compute_profile([write(frame, tmp_path_factory.mktemp("p") / "part.parquet")])


def test_numeric_statistics_match_pandas(frame: pd.DataFrame, profile: dict[str, Any]) -> None:
    assert profile["rows"] == N
    assert list(profile["columns"]) == list(frame.columns)
    for name in ("amount", "quantity"):
        column, values = profile["columns"][name], frame[name].dropna()
        assert column["kind"] == "numeric"
        assert column["count"] == len(values)
        assert column["nulls"] == N - len(values)
        assert column["null_fraction"] == pytest.approx((N - len(values)) / N)
        assert column["distinct"] == values.nunique()
        assert column["distinct_approximate"] is False
        assert column["min"] == pytest.approx(values.min())
        assert column["max"] == pytest.approx(values.max())
        assert column["mean"] == pytest.approx(values.mean())
        assert column["std"] == pytest.approx(values.std(ddof=1))
        assert column["quantiles_approximate"] is False
        for key, q in QUANTILES.items():
            assert column["quantiles"][key] == pytest.approx(values.quantile(q)), (name, key)
        histogram = column["histogram"]
        assert sum(histogram["counts"]) == column["count"]
        expected, _ = np.histogram(values.to_numpy(), bins=np.asarray(histogram["edges"], dtype=float))
        assert histogram["counts"] == expected.tolist()
    assert profile["columns"]["amount"]["type"] == "double"
    assert len(profile["columns"]["amount"]["histogram"]["counts"]) == 20
    assert profile["columns"]["amount"]["nan"] == 0
    assert profile["columns"]["quantity"]["type"] == "int64"
    # Integers get whole-number bins: 65 values (-5..59) in bins of width 4.
    assert profile["columns"]["quantity"]["histogram"]["edges"][:3] == [-5, -1, 3]


def test_top_values_match_value_counts(frame: pd.DataFrame, profile: dict[str, Any]) -> None:
    for name in ("region", "quantity"):
        counts = frame[name].value_counts()
        expected = sorted(counts.items(), key=lambda item: (-item[1], item[0]))[:TOP_K]
        top = profile["columns"][name]["top"]
        assert [(t["value"], t["count"]) for t in top] == [
            (getattr(v, "item", lambda v=v: v)(), c) for v, c in expected
        ]
    region = profile["columns"]["region"]
    assert region["kind"] == "string"
    assert region["distinct"] == 5
    assert region["min"] is None and region["mean"] is None and region["histogram"] is None
    assert region["length_bytes"] == {
        "min": frame["region"].str.len().min(),
        "max": frame["region"].str.len().max(),
        "mean": pytest.approx(frame["region"].str.len().mean()),
    }
    # Every note is different: no top values (they would all be 1).
    assert profile["columns"]["note"]["distinct"] == N
    assert profile["columns"]["note"]["top"] is None


def test_booleans_and_dates(frame: pd.DataFrame, profile: dict[str, Any]) -> None:
    flag, values = profile["columns"]["flag"], frame["flag"].dropna().astype(bool)
    assert flag["kind"] == "boolean"
    assert flag["nulls"] == frame["flag"].isna().sum()
    assert flag["mean"] == pytest.approx(values.mean())
    assert {t["value"]: t["count"] for t in flag["top"]} == {True: values.sum(), False: (~values).sum()}
    assert flag["top"][0]["value"] is False  # the more frequent first
    assert flag["distinct"] == 2 and flag["histogram"] is None

    day, days = profile["columns"]["day"], pd.to_datetime(frame["day"].dropna())
    assert day["kind"] == "temporal"
    assert day["type"] == "date32[day]"
    assert day["nulls"] == frame["day"].isna().sum()
    assert day["min"] == days.min().date().isoformat()
    assert day["max"] == days.max().date().isoformat()
    assert day["distinct"] == days.nunique()
    assert day["quantiles"]["p50"] == pd.Timestamp(days.quantile(0.5)).round("D").date().isoformat()
    assert sum(day["histogram"]["counts"]) == day["count"]
    assert day["histogram"]["edges"][0] == day["min"]
    assert all(re.fullmatch(r"\d{4}-\d\d-\d\d", edge) for edge in day["histogram"]["edges"])


def test_profile_is_json_without_nan_and_keeps_odd_floats_out(tmp_path: Path) -> None:
    table = pa.table(
        {
            "x": [1.0, float("nan"), 3.0, float("inf"), None, -float("inf"), 2.0],
            "empty": pa.array([None] * 7, type=pa.float64()),
            "constant": [5.5] * 7,
            "blank": ["", "", "a", None, "", "b", "a"],
        }
    )
    pq.write_table(table, tmp_path / "odd.parquet")
    profile = compute_profile([tmp_path / "odd.parquet"])
    json.dumps(profile, allow_nan=False)  # raises on NaN or infinity anywhere
    assert orjson.loads(orjson.dumps(profile)) == profile
    x = profile["columns"]["x"]
    assert (x["nan"], x["infinite"], x["nulls"], x["count"]) == (1, 2, 1, 6)
    assert (x["min"], x["max"], x["mean"]) == (1.0, 3.0, 2.0)
    assert sum(x["histogram"]["counts"]) == 3  # the finite values only
    empty = profile["columns"]["empty"]
    assert (empty["count"], empty["null_fraction"], empty["min"], empty["histogram"]) == (0, 1.0, None, None)
    constant = profile["columns"]["constant"]
    assert constant["std"] == 0.0
    assert constant["histogram"] == {"edges": [5.5, 5.5], "counts": [7]}
    blank = profile["columns"]["blank"]
    assert blank["top"][0] == {"value": "", "count": 3}
    assert blank["length_bytes"]["min"] == 0


def test_distinct_and_quantiles_are_estimated_beyond_the_limit(tmp_path: Path) -> None:
    rows = 3 * EXACT_LIMIT
    rng = np.random.default_rng(1)
    unique = rng.permutation(rows)
    table = pa.table(
        {
            "id": unique,
            "score": rng.normal(0, 1, rows),
            "level": rng.choice(["low", "mid", "high"], rows),
            "bucket": rng.integers(0, 500, rows),
            "clock": pa.array(rng.choice([time(9), time(12, 30), time(18)], rows), type=pa.time64("us")),
        }
    )
    pq.write_table(table.slice(0, rows // 2), tmp_path / "a.parquet")
    pq.write_table(table.slice(rows // 2), tmp_path / "b.parquet")
    profile = compute_profile([tmp_path / "a.parquet", tmp_path / "b.parquet"])
    assert profile["rows"] == rows
    ids = profile["columns"]["id"]
    assert ids["distinct_approximate"] is True
    assert ids["distinct"] == pytest.approx(rows, rel=0.03)
    assert ids["top"] is None
    assert ids["quantiles_approximate"] is True
    assert ids["quantiles"]["p50"] == pytest.approx(np.median(unique), rel=0.01)
    assert (ids["min"], ids["max"]) == (0, rows - 1)  # exact whatever the size
    assert sum(ids["histogram"]["counts"]) == rows
    # Few distinct values are counted one by one: exact, with top values, however many rows.
    for name, distinct in (("level", 3), ("bucket", 500)):
        column = profile["columns"][name]
        assert (column["distinct"], column["distinct_approximate"]) == (distinct, False)
        counts = table.column(name).to_pandas().value_counts()
        assert column["top"][0] == {"value": plain(counts.index[0]), "count": counts.iloc[0]}
    clock = profile["columns"]["clock"]
    assert (clock["kind"], clock["distinct"], clock["distinct_approximate"]) == ("other", 3, False)
    assert {t["value"] for t in clock["top"]} == {"09:00:00", "12:30:00", "18:00:00"}
    score = profile["columns"]["score"]
    assert score["distinct"] == pytest.approx(rows, rel=0.03)
    for key, q in QUANTILES.items():
        assert score["quantiles"][key] == pytest.approx(np.quantile(table.column("score"), q), abs=0.05)


def test_whole_number_bins() -> None:
    assert Bins.spanning(0, 3, whole=True).edges == [0, 1, 2, 3, 4]
    sixty_five = Bins.spanning(-5, 59, whole=True)  # 65 values: bins of 4 (65 / 20, rounded up), so 17 of them
    assert (sixty_five.width, sixty_five.count, sixty_five.edges[-1]) == (4, 17, 63)
    hours = Bins.spanning(0, 30 * 3_600_000_000, whole=True, granule=3_600_000_000)
    assert hours.width == 2 * 3_600_000_000  # 30 hours in 20 bins: 2-hour bins, on the hour
    assert Bins.spanning(1.5, 1.5, whole=False).edges == [1.5, 1.5]


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    values=st.lists(
        st.one_of(st.none(), st.floats(min_value=-1e9, max_value=1e9, allow_nan=False, allow_infinity=False)),
        min_size=1,
        max_size=300,
    ),
    integers=st.lists(st.integers(min_value=-(2**40), max_value=2**40), min_size=1, max_size=50),
)
def test_properties_hold_for_any_numbers(tmp_path: Path, values: list[float | None], integers: list[int]) -> None:
    path = tmp_path / "h.parquet"
    pq.write_table(pa.table({"x": pa.array(values, type=pa.float64())}), path)
    column = compute_profile([path])["columns"]["x"]
    present = [v for v in values if v is not None]
    assert column["count"] == len(present)
    if not present:
        assert column["quantiles"] is None and column["histogram"] is None
    else:
        quantiles = [column["min"], *column["quantiles"].values(), column["max"]]
        assert quantiles == sorted(quantiles)  # monotone, from min to max
        assert column["min"] <= column["quantiles"]["p50"] <= column["max"]
        assert sum(column["histogram"]["counts"]) == len(present)
        assert all(c >= 0 for c in column["histogram"]["counts"])
        assert 1 <= column["distinct"] <= len(present)
    pq.write_table(pa.table({"n": pa.array(integers, type=pa.int64())}), path)
    ints = compute_profile([path])["columns"]["n"]
    edges, counts = ints["histogram"]["edges"], ints["histogram"]["counts"]
    assert edges[0] <= min(integers) and max(integers) < edges[-1]
    expected, _ = np.histogram(integers, bins=np.asarray(edges, dtype=float))
    assert counts == expected.tolist()


def test_html_report_embeds_plotly_and_draws_each_column(profile: dict[str, Any]) -> None:
    profile = json.loads(json.dumps(profile))
    profile["columns"]["</script><script>alert(1)</script>"] = profile["columns"].pop("quantity")
    report = render_profile_html("sales:3", profile)
    assert report.startswith("<!DOCTYPE html>")
    assert "Profile of sales:3" in report
    assert len(report) > 1_000_000 and "plotly.js v" in report  # the bundle itself, inline
    assert report.count("Plotly.newPlot") == report.count("class='chart ")
    numeric = [n for n, c in profile["columns"].items() if c["kind"] in ("numeric", "temporal")]
    assert report.count("class='chart histogram'") == len(numeric) == 3
    assert report.count("class='chart top-values'") == sum(1 for c in profile["columns"].values() if c["top"])
    assert report.count("class='chart nulls'") == 1
    assert not re.search(r"<script[^>]*\ssrc=", report)  # nothing fetched: works offline
    assert "<script>alert(1)" not in report
    assert "&lt;/script&gt;&lt;script&gt;alert(1)" in report


def test_diff_finds_schema_changes_row_counts_and_shifts(frame: pd.DataFrame, tmp_path: Path) -> None:
    before = compute_profile([write(frame, tmp_path / "a.parquet")])
    changed = frame.assign(amount=frame["amount"] + 30, quantity=frame["quantity"].astype(float), extra=1)
    after = compute_profile([write(changed.iloc[: N - 500], tmp_path / "b.parquet")])
    diff = diff_profiles("sales:1", before, "sales:2", after)
    assert (diff["a"], diff["b"]) == ("sales:1", "sales:2")
    assert diff["rows"] == {"a": N, "b": N - 500, "change": -500, "relative": -0.1}
    assert diff["schema"]["added"] == [{"name": "extra", "type": "int64"}]
    assert diff["schema"]["removed"] == []
    assert diff["schema"]["type_changed"] == [{"name": "quantity", "a": "int64", "b": "double"}]
    amount = diff["columns"]["amount"]
    assert amount["mean"]["change"] == pytest.approx(30, abs=1)
    assert amount["mean_shift_std"] == pytest.approx(2.0, abs=0.1)
    assert diff["shifts"][0]["column"] in ("amount", "quantity")
    assert {s["column"] for s in diff["shifts"][:2]} == {"amount", "quantity"}
    assert any("mean" in reason for reason in diff["shifts"][0]["reasons"] + diff["shifts"][1]["reasons"])
    # Histogram edges differ (the amounts moved), so no PSI is made up from bins that do not line up.
    assert "psi" not in amount
    # Categories with every value in the top values compare as distributions.
    assert diff["columns"]["region"]["js_distance"] == pytest.approx(0, abs=0.05)
    json.dumps(diff, allow_nan=False)


def test_diff_of_identical_profiles_is_quiet(profile: dict[str, Any]) -> None:
    diff = diff_profiles("a:1", profile, "a:2", profile)
    assert diff["schema"] == {"added": [], "removed": [], "type_changed": []}
    assert diff["rows"]["change"] == 0
    assert diff["shifts"] == []
    assert diff["columns"]["amount"]["psi"] == 0.0 and diff["columns"]["amount"]["js_distance"] == 0.0


def test_psi_and_js_distance() -> None:
    assert js_distance([10, 0], [0, 10]) == pytest.approx(1.0)
    assert js_distance([5, 5], [5, 5]) == 0.0
    assert psi([50, 50], [90, 10]) == pytest.approx(0.4 * math.log(0.9 / 0.5) + 0.4 * math.log(0.5 / 0.1))


def test_profile_and_diff_of_stored_versions(workspace, frame: pd.DataFrame) -> None:  # type: ignore[no-untyped-def]
    first, _ = workspace.data.commit_table(to_table(frame), name="sales", source={})
    shifted = frame.assign(amount=frame["amount"] * 2)
    second, created = workspace.data.commit_table(to_table(shifted), name="sales", source={}, mode="append")
    assert created and len(second.files) == 2
    version, profile = profile_of(workspace.data, "sales:2")
    assert version.ref == "sales:2"
    assert profile["rows"] == 2 * N  # both files of the appended version
    assert profile["columns"]["amount"]["count"] == frame["amount"].count() * 2
    stored = {"rows": 1, "columns": {}}
    assert profile_of(workspace.data, dataclasses.replace(first, profile=stored))[1] == stored
    diff = diff_versions(workspace.data, "sales:1", "sales:2")
    assert diff["rows"]["change"] == N
    amount = diff["columns"]["amount"]
    # Shared edges were counted in both versions' files: an honest distribution comparison.
    assert amount["psi"] > 0.25 and 0 < amount["js_distance"] <= 1
    assert diff["columns"]["quantity"]["psi"] == pytest.approx(0, abs=1e-9)
    with pytest.raises(NotFound):
        profile_of(workspace.data, "sales:9")
    with pytest.raises(NotFound):
        diff_versions(workspace.data, "sales:1", "nope")


# -- the command line ------------------------------------------------------------------------------------------


@pytest.fixture
def home(tmp_path: Path, cli, frame: pd.DataFrame) -> str:  # type: ignore[no-untyped-def]
    home = str(tmp_path / "ws")
    assert cli("--home", home, "init").code == 0
    frame.to_csv(tmp_path / "sales.csv", index=False)
    assert cli("--home", home, "data", "ingest", str(tmp_path / "sales.csv"), "--name", "sales").code == 0
    changed = frame.drop(columns=["note"]).assign(amount=frame["amount"] - 50, extra="x")
    changed.iloc[:1000].to_csv(tmp_path / "sales.csv", index=False)
    assert cli("--home", home, "data", "ingest", str(tmp_path / "sales.csv"), "--name", "sales").code == 0
    return home


def test_cli_profile(cli, home: str, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    result = cli("--home", home, "data", "profile", "sales:1", "--json")
    assert result.code == 0, result.err
    payload = result.json
    assert set(payload) == {"ref", "rows", "columns", "workspace"}
    assert (payload["ref"], payload["rows"]) == ("sales:1", N)
    assert payload["columns"]["region"]["distinct"] == 5
    human = cli("--home", home, "data", "profile", "sales")
    assert human.code == 0
    assert "sales:2" in human.out and "1,000 rows" in human.out
    assert "region" in human.out and "north" in human.out

    report = tmp_path / "reports" / "sales.html"
    written = cli("--home", home, "data", "profile", "sales:1", "--html", str(report), "--json")
    assert written.code == 0, written.err
    assert written.json["html"] == str(report)
    assert "Plotly.newPlot" in report.read_text()
    assert [p.name for p in report.parent.iterdir()] == ["sales.html"]  # no temporary file left behind
    assert str(report) in cli("--home", home, "data", "profile", "sales:1", "--html", str(report)).out
    refused = cli("--home", home, "data", "profile", "sales:1", "--html", str(tmp_path))
    assert refused.code == 2 and "folder" in refused.err


def test_cli_diff(cli, home: str) -> None:  # type: ignore[no-untyped-def]
    result = cli("--home", home, "data", "diff", "sales:1", "sales:2", "--json")
    assert result.code == 0, result.err
    diff = result.json
    assert diff["rows"] == {"a": N, "b": 1000, "change": -4000, "relative": -0.8}
    assert diff["schema"]["added"] == [{"name": "extra", "type": "string"}]
    assert diff["schema"]["removed"] == [{"name": "note", "type": "string"}]
    assert diff["shifts"][0]["column"] == "amount"
    human = cli("--home", home, "data", "diff", "sales:1", "sales:2")
    assert human.code == 0
    lines = human.out.splitlines()
    assert lines[0] == "sales:1 → sales:2"
    assert any("+ extra" in line for line in lines) and any("- note" in line for line in lines)
    assert "rows: 5,000 → 1,000 (-4,000, -80.0%)" in human.out
    assert "amount" in human.out.split("biggest shifts:")[1]


@pytest.mark.parametrize(
    "args",
    [["profile", "nope"], ["profile", "sales:7"], ["diff", "sales:1", "nope:1"], ["diff", "sales:9", "sales:1"]],
)
def test_cli_unknown_refs_exit_2(cli, home: str, args: list[str]) -> None:  # type: ignore[no-untyped-def]
    result = cli("--home", home, "data", *args, "--json")
    assert result.code == 2
    assert result.json["error"]["code"]
    assert "Error:" in result.err
