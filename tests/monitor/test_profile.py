"""Reference profiles: built out of core (batch by batch), equal to the sketches drift builds from whole columns,
exact at their edges, stored and read back without pickle, and stored with a model version once."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from conveyor.errors import BadInput
from conveyor.monitor import CategoricalSketch, NumericSketch, Profile, Table, build_profile, compute_drift
from conveyor.monitor._columns import prepare_column
from conveyor.monitor._metrics import sketch_column


def _table(n: int, seed: int = 0, shift: float = 0.0) -> pa.Table:
    rng = np.random.default_rng(seed)
    age = rng.normal(40 + shift, 10, n)
    age[rng.random(n) < 0.05] = np.nan
    return pa.table(
        {
            "age": age,
            "visits": rng.poisson(30, n).astype("int64"),
            "plan": np.array(["basic", "plus", "pro"])[rng.choice(3, n)],
            "stars": rng.integers(1, 4, n),  # three distinct numbers: compared as categories
            "empty": pa.nulls(n, pa.float64()),
            "blob": pa.array([b"x"] * n, pa.binary()),
        }
    )


def test_a_profile_holds_the_sketches_drift_builds_from_whole_columns() -> None:
    table = _table(3_000)
    profile = build_profile(Table("t", table=table), batch_rows=700)  # five batches, out of core
    for name in ("age", "visits"):
        expected = sketch_column(prepare_column(name, table.column(name), "numeric"))
        got = profile.sketches[name]
        assert isinstance(got, NumericSketch) and isinstance(expected, NumericSketch)
        assert (got.count, got.nulls) == (expected.count, expected.nulls)
        np.testing.assert_array_equal(got.edges, expected.edges)
        np.testing.assert_allclose(got.cdf, expected.cdf, rtol=0, atol=1e-15)
        np.testing.assert_allclose(got.sums, expected.sums, rtol=1e-12)
        np.testing.assert_array_equal(got.sample, expected.sample)  # under the exact limit: every value
        assert got.mean == pytest.approx(expected.mean, rel=1e-12) and got.std == pytest.approx(expected.std, rel=1e-9)
    plan = profile.sketches["plan"]
    assert isinstance(plan, CategoricalSketch) and plan.counts == dict(pd.Series(table["plan"]).value_counts())
    stars = profile.sketches["stars"]
    assert isinstance(stars, CategoricalSketch) and set(stars.counts) == {"1", "2", "3"}
    assert "null" in profile.skipped["empty"] and "not compared" in profile.skipped["blob"]


def test_a_large_column_is_sketched_from_a_sample_and_counted_exactly_at_its_edges(tmp_path) -> None:  # type: ignore[no-untyped-def]
    table = _table(60_000, seed=4)
    pq.write_table(table, tmp_path / "a.parquet", row_group_size=9_000)
    profile = build_profile(Table("t", parquet=[tmp_path / "a.parquet"]), exact_limit=1_000, bins=200, batch_rows=5_000)
    sketch = profile.sketches["age"]
    assert isinstance(sketch, NumericSketch) and sketch.sample is None  # above the exact limit: no full sample
    values = np.sort(table.column("age").to_numpy(zero_copy_only=False))
    values = values[np.isfinite(values)]
    assert sketch.edges[0] == values[0] and sketch.edges[-1] == values[-1]  # extremes always among the edges
    exact_cdf = np.searchsorted(values, sketch.edges, side="right") / values.size
    np.testing.assert_allclose(sketch.cdf, exact_cdf, rtol=0, atol=1e-15)  # exact at every edge
    ends = np.searchsorted(values, sketch.edges, side="right")
    np.testing.assert_allclose(sketch.sums, np.add.reduceat(values, np.concatenate(([0], ends[:-1]))), rtol=1e-9)
    assert sketch.mean == pytest.approx(values.mean()) and sketch.std == pytest.approx(values.std(), rel=1e-9)
    # Drift against the profile agrees with drift against the table it came from (sketch mode on both sides).
    current = Table("c", table=_table(60_000, seed=5, shift=3.0))
    from_table = compute_drift(Table("t", parquet=[tmp_path / "a.parquet"]), current, exact_limit=1_000)
    from_profile = compute_drift(profile, current, exact_limit=1_000)
    for a, b in zip(from_table.columns, from_profile.columns, strict=True):
        assert (a.column, a.metric, a.drifted) == (b.column, b.metric, b.drifted), (a, b)
        if a.value is not None:
            assert b.value == pytest.approx(a.value, abs=0.02), (a.column, a.value, b.value)
    assert from_profile.reference == "profile of t" and from_profile.column("age").drifted


def test_a_profile_is_stored_without_pickle_and_read_back_equal() -> None:
    profile = build_profile(Table("t", table=_table(2_000)))
    back = Profile.from_bytes(profile.to_bytes())
    assert back.summary() == profile.summary()
    for name, sketch in profile.sketches.items():
        other = back.sketches[name]
        if isinstance(sketch, NumericSketch):
            assert isinstance(other, NumericSketch)
            np.testing.assert_array_equal(other.edges, sketch.edges)
            np.testing.assert_array_equal(other.cdf, sketch.cdf)
            np.testing.assert_array_equal(other.sample, sketch.sample)
        else:
            assert other == sketch
    with pytest.raises(BadInput, match="not a Conveyor reference profile"):
        Profile.from_bytes(b"PK\x03\x04 not an npz")
    with pytest.raises(BadInput, match="No column 'nope' to profile"):
        build_profile(Table("t", table=_table(10)), columns=["nope"])


def test_a_model_versions_reference_profile_is_computed_once_from_its_training_data(workspace) -> None:  # type: ignore[no-untyped-def]
    from sklearn.linear_model import LogisticRegression

    rng = np.random.default_rng(1)
    frame = pd.DataFrame({"x": rng.normal(size=4_000), "z": rng.normal(size=4_000)})
    frame["y"] = (frame["x"] + rng.normal(0, 0.3, 4_000) > 0).astype(int)
    data, _ = workspace.data.commit_table(pa.Table.from_pandas(frame), name="train", source={"kind": "test"})
    model = LogisticRegression().fit(frame[["x", "z"]], frame["y"])
    with workspace.runs.start("profiles") as run:
        run.log_input(data)
        run.log_model(model, input_example=frame[["x", "z"]].head(20))
    workspace.models.register_from_run(run.id, "m")

    profile = workspace.monitors.reference("m")
    assert set(profile.sketches) == {"x", "z", "prediction"}  # the model's inputs and its predictions; not y
    assert profile.source == data.ref and profile.rows == 4_000
    assert "reference_profile.npz" in workspace.models.get("m").files
    again = workspace.monitors.reference("m")  # read back, not computed again
    assert again.created_at == profile.created_at and again.summary() == profile.summary()
    assert workspace.monitors.reference("m", refresh=True).created_at != profile.created_at

    shifted = frame.assign(x=frame["x"] + 2).drop(columns=["y"])
    shifted["prediction"] = model.predict(shifted[["x", "z"]])
    report = workspace.monitors.drift("model:m", shifted)
    assert report.reference == f"profile of {data.ref}"
    assert report.column("x").drifted and not report.column("z").drifted and report.column("prediction").drifted

    # A model whose run read no data version: the reference data must be named.
    workspace.models.register("bare", model, input_example=frame[["x", "z"]].head(20))
    with pytest.raises(BadInput, match="no training data version on record.*--data"):
        workspace.monitors.reference("bare")
    with pytest.raises(BadInput, match="lacks columns model bare:1 takes: z"):
        workspace.monitors.reference("bare", frame[["x"]])
    assert set(workspace.monitors.reference("bare", frame).sketches) == {"x", "z", "prediction"}
    # Rows the model cannot score: the inputs are profiled, the predictions skipped with the reason.
    texts = frame.assign(z="high")
    unscored = workspace.monitors.reference("bare", texts)
    assert set(unscored.sketches) == {"x", "z"}
    assert unscored.skipped["prediction"].startswith("the model did not score the reference rows: ValueError")


def test_cli_shows_a_models_profile_and_drift_compares_with_it(workspace, cli, tmp_path) -> None:  # type: ignore[no-untyped-def]
    from sklearn.linear_model import LinearRegression

    rng = np.random.default_rng(2)
    frame = pd.DataFrame({"size": rng.normal(50, 10, 3_000), "kind": rng.choice(["a", "b"], 3_000)})
    model = LinearRegression().fit(frame[["size"]], frame["size"] * 2)
    workspace.models.register("price", model, input_example=frame[["size"]].head(10))
    home = str(workspace.settings.home)
    frame.to_parquet(tmp_path / "train.parquet")

    missing = cli("--home", home, "monitor", "profile", "price")
    assert missing.code == 2 and "--data" in missing.err
    shown = cli("--home", home, "monitor", "profile", "price", "--data", str(tmp_path / "train.parquet"), "--json")
    assert shown.code == 0, shown.err
    columns = {c["column"]: c for c in shown.json["columns"]}
    assert set(columns) == {"size", "prediction"} and columns["size"]["count"] == 3_000
    text = cli("--home", home, "monitor", "profile", "price:1")
    assert text.code == 0 and "conveyor drift model:price:1" in text.out

    frame.assign(size=frame["size"] + 15).to_parquet(tmp_path / "today.parquet")
    drifted = cli("--home", home, "drift", "model:price", str(tmp_path / "today.parquet"), "--json")
    assert drifted.code == 0, drifted.err
    verdicts = {c["column"]: c["drifted"] for c in drifted.json["columns"]}
    assert verdicts["size"] is True and drifted.json["reference"] == f"profile of {tmp_path / 'train.parquet'}"
    nope = cli("--home", home, "drift", "model:nope", str(tmp_path / "today.parquet"))
    assert nope.code != 0 and "nope" in nope.err


def test_dates_and_timestamps_are_profiled_and_compared_as_their_ticks() -> None:
    days = pa.array(np.arange(19_000, 19_000 + 3_000, dtype=np.int32), pa.date32())
    stamps = pa.array(np.arange(3_000, dtype=np.int64) * 60_000_000, pa.timestamp("us"))
    table = pa.table({"signup": days, "seen": stamps})
    profile = build_profile(Table("t", table=table), batch_rows=1_000)
    assert {name: s.kind for name, s in profile.sketches.items()} == {"signup": "numeric", "seen": "numeric"}
    later = pa.table({"signup": pa.array(np.arange(19_500, 22_500, dtype=np.int32), pa.date32()), "seen": stamps})
    report = compute_drift(profile, Table("c", table=later))
    assert report.column("signup").drifted and not report.column("seen").drifted
    assert compute_drift(Table("t", table=table), Table("c", table=later)).column("signup").drifted
