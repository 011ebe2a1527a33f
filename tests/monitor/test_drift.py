"""Drift between two tables: defaults per column kind and size, the data set verdict, and bad input (missing
columns either way, all-null and constant columns, empty and one-row current data, mixed types)."""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from conveyor.errors import BadInput
from conveyor.monitor import Table, compute_drift

RNG = np.random.default_rng(3)


def _frame(n: int, shift: float = 0.0) -> pa.Table:
    plans = np.array(["basic", "plus", "pro"])
    p = [0.8, 0.1, 0.1] if shift else [1 / 3] * 3
    return pa.table(
        {
            "age": RNG.normal(40 + 10 * shift, 10, n),
            "visits": RNG.poisson(4, n).astype("int64"),
            "plan": plans[RNG.choice(3, n, p=p)],
            "stars": RNG.integers(1, 4, n),
        }
    )


def _drift(ref: pa.Table, cur: pa.Table, **kw):  # type: ignore[no-untyped-def]
    return compute_drift(Table("ref", table=ref), Table("cur", table=cur), **kw)


def test_defaults_follow_column_kind_and_reference_size() -> None:
    large = _drift(_frame(5000), _frame(5000))
    assert {c.column: c.metric for c in large.columns} == {
        "age": "wasserstein",
        "visits": "wasserstein",
        "plan": "js",
        "stars": "js",  # three distinct numbers: compared as categories
    }
    small = _drift(_frame(500), _frame(500))
    assert {c.column: c.metric for c in small.columns} == {"age": "ks", "visits": "ks", "plan": "chi2", "stars": "chi2"}
    assert not large.drifted and large.share_drifted == 0.0


def test_a_shift_drifts_the_shifted_columns_and_the_data_set() -> None:
    report = _drift(_frame(3000), _frame(3000, shift=1.0))
    drifted = {c.column for c in report.columns if c.drifted}
    assert drifted == {"age", "plan"}
    assert report.share_drifted == 0.5 and report.drifted
    body = report.to_dict()
    assert set(body) >= {"columns", "share_drifted", "drifted", "rows", "seconds"}
    assert body["rows"] == {"reference": 3000, "current": 3000}
    assert set(body["columns"][0]) >= {"column", "type", "metric", "value", "threshold", "drifted"}


def test_one_metric_for_every_column_it_applies_to_and_thresholds() -> None:
    report = _drift(_frame(2000), _frame(2000, shift=0.2), metric="ks", threshold=1e-12)
    metrics = {c.column: c.metric for c in report.columns}
    assert metrics["age"] == "ks" and metrics["plan"] == "js"
    assert report.column("age").threshold == 1e-12
    per_column = _drift(_frame(2000), _frame(2000), thresholds={"age": 1e-9})
    assert per_column.column("age").threshold == 1e-9 and per_column.column("age").drifted
    with pytest.raises(BadInput, match=r"needs a metric"):
        _drift(_frame(10), _frame(10), threshold=0.2)
    with pytest.raises(BadInput, match=r"No column 'agee'.*Did you mean 'age'"):
        _drift(_frame(10), _frame(10), columns=["agee"])


def test_prediction_drift_uses_the_default_for_the_prediction_column() -> None:
    ref = _frame(2000).append_column("score", pa.array(RNG.beta(2, 5, 2000)))
    cur = _frame(2000).append_column("score", pa.array(RNG.beta(5, 2, 2000)))
    found = _drift(ref, cur, prediction="score").column("score")
    assert found.metric == "prediction:wasserstein" and found.drifted


def test_missing_columns_either_way_are_reported_not_fatal() -> None:
    ref = _frame(300)
    cur = _frame(300).drop_columns(["plan"]).append_column("extra", pa.array(np.ones(300)))
    report = _drift(ref, cur)
    assert report.missing == {"in_current": ["plan"], "in_reference": ["extra"]}
    assert report.column("plan").drifted is None
    assert report.column("plan").message == "missing from the current data"
    assert any("missing from the current data: plan" in m for m in report.messages)
    assert report.column("age").drifted is not None


def test_all_null_constant_empty_and_single_row_columns() -> None:
    n = 2000
    ref = pa.table(
        {
            "empty": pa.array([None] * n, pa.float64()),
            "const": np.full(n, 7.0),
            "gone": RNG.normal(size=n),
            "x": RNG.normal(size=n),
        }
    )
    cur = pa.table(
        {
            "empty": pa.array([None] * n, pa.float64()),
            "const": np.full(n, 7.0),
            "gone": pa.array([None] * n, pa.float64()),
            "x": RNG.normal(size=n),
        }
    )
    report = _drift(ref, cur)
    assert report.column("empty").drifted is None
    assert "every reference value is null" in (report.column("empty").message or "")
    assert report.column("const").drifted is False and report.column("const").value == 0.0
    assert report.column("gone").drifted is True
    assert "every current value is null" in (report.column("gone").message or "")

    nothing = _drift(ref, cur.slice(0, 0))
    assert all(c.drifted is None for c in nothing.columns) and not nothing.drifted
    assert any("has no rows" in m for m in nothing.messages)

    one = _drift(ref, cur.slice(0, 1))
    assert one.column("x").value is not None and one.rows["current"] == 1


def test_mixed_types_and_text_in_a_numeric_column_are_compared_with_a_note() -> None:
    ref = pd.DataFrame({"code": [1, "a", 2.5, None] * 100, "amount": np.arange(400.0)})
    cur = pd.DataFrame({"code": [1, "a", 2.5, "b"] * 100, "amount": [*map(str, range(390)), *["n/a"] * 10]})
    from conveyor.monitor._service import _arrow

    (rt, rn), (ct, cn) = _arrow(ref, "reference"), _arrow(cur, "current")
    report = compute_drift(Table("r", table=rt, notes=rn), Table("c", table=ct, notes=cn))
    code = report.column("code")
    assert code.type == "categorical" and "mixed types (float, int, str) compared as text" in (code.message or "")
    amount = report.column("amount")
    assert amount.type == "numeric" and amount.value is not None
    assert "10 values are not numbers (e.g. 'n/a')" in (amount.message or "")


def test_parquet_files_are_read_column_by_column(tmp_path: Path) -> None:
    ref, cur = _frame(4000), _frame(4000, shift=1.0)
    for name, table in (("ref", ref), ("cur", cur)):
        pq.write_table(table.slice(0, 2000), tmp_path / f"{name}-1.parquet")
        pq.write_table(table.slice(2000), tmp_path / f"{name}-2.parquet")
    from_files = compute_drift(
        Table("ref", parquet=sorted(tmp_path.glob("ref-*.parquet"))),
        Table("cur", parquet=sorted(tmp_path.glob("cur-*.parquet"))),
        chart=True,
    )
    in_memory = _drift(ref, cur)
    assert [(c.column, c.value) for c in from_files.columns] == [(c.column, c.value) for c in in_memory.columns]
    html = from_files.to_html()
    assert not re.search(r"<script[^>]*\ssrc=", html)  # plotly.js is embedded: nothing fetched, works offline
    assert html.count("Plotly.newPlot") == 4 and html.count("<tr>") == 5


def test_each_column_reports_its_data_quality_against_the_reference(cli, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    n = 2_000
    reference = pa.table(
        {
            "age": np.linspace(18, 90, n),
            "plan": np.array(["basic", "plus", "pro"])[np.arange(n) % 3],
            "score": np.arange(n, dtype=float),
        }
    )
    age = np.linspace(10, 100, n)  # 18 → 90 in the reference: values below and above its range
    age[:200] = np.nan
    plan = np.array(["basic", "plus", "pro", "enterprise", "trial"], dtype=object)[np.arange(n) % 5]
    score = np.arange(n).astype(str).astype(object)
    score[:50] = "n/a"  # text where the reference had numbers
    current = pa.table({"age": age, "plan": plan, "score": score})
    report = _drift(reference, current)
    age_q = report.column("age").detail["quality"]
    assert age_q["null_share"] == pytest.approx(0.1) and age_q["reference_null_share"] == 0.0
    inside = (age[200:] >= 18) & (age[200:] <= 90)
    assert age_q["below_range"] + age_q["above_range"] == int((~inside).sum()) > 0
    assert age_q["out_of_range_share"] == pytest.approx((~inside).sum() / n)
    plan_q = report.column("plan").detail["quality"]
    assert plan_q["unseen_categories"] == 2 and plan_q["unseen_share"] == pytest.approx(0.4)
    assert plan_q["unseen_examples"] == ["enterprise", "trial"] and plan_q["unseen_exact"] is True
    assert report.column("score").detail["quality"]["type_errors"] == 50

    pq.write_table(reference, tmp_path / "ref.parquet")
    pq.write_table(current, tmp_path / "cur.parquet")
    shown = cli("drift", str(tmp_path / "ref.parquet"), str(tmp_path / "cur.parquet"))
    assert shown.code == 0, shown.err
    text = " ".join(shown.out.split())
    assert "10.0% null (reference 0.0%)" in text and "outside the reference's range" in text
    assert (
        "2 unseen categories (40.0% of rows: 'enterprise', 'trial')" in text and "50 values of the wrong type" in text
    )
