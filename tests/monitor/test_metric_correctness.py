"""Drift metrics against SciPy (exact mode, 1e-9), sketch mode within its documented tolerance, invariants as
properties (hypothesis), and a metric registered by another package through the entry-point group."""

from __future__ import annotations

import itertools
import sys
import textwrap
from pathlib import Path

import numpy as np
import pyarrow as pa
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy import stats  # type: ignore[import-untyped]
from scipy.spatial.distance import jensenshannon  # type: ignore[import-untyped]

from conveyor.monitor import drift_metrics, get_metric
from conveyor.monitor._columns import CATEGORICAL, NUMERIC, prepare_column
from conveyor.monitor._metrics import _shares_at, jensen_shannon, ks_statistic, wasserstein

RNG = np.random.default_rng(11)


def _num(values: np.ndarray):  # type: ignore[no-untyped-def]
    return prepare_column("x", pa.chunked_array([pa.array(np.asarray(values, dtype=float))]), NUMERIC)


BUILT_IN = drift_metrics()


def _score(name: str, a: np.ndarray, b: np.ndarray, **kw):  # type: ignore[no-untyped-def]
    metric = BUILT_IN[name](**kw) if name in BUILT_IN else get_metric(name, **kw)
    return metric.score(metric.sketch(_num(a)), _num(b))


@pytest.mark.parametrize(("n1", "n2"), [(40, 70), (3000, 12_000), (20_000, 15_000)])
def test_exact_ks_equals_scipy(n1: int, n2: int) -> None:
    a, b = RNG.normal(0, 1, n1), RNG.normal(0.05, 1.1, n2)
    found = _score("ks", a, b)
    expected = stats.ks_2samp(a, b)
    assert found.detail["mode"] == "exact"
    assert found.detail["statistic"] == pytest.approx(expected.statistic, abs=1e-9)
    assert found.value == pytest.approx(expected.pvalue, abs=1e-9)


def test_exact_ks_statistic_with_ties_equals_scipy() -> None:
    a, b = np.sort(RNG.integers(0, 30, 500).astype(float)), np.sort(RNG.integers(2, 33, 800).astype(float))
    assert ks_statistic(a, b) == pytest.approx(stats.ks_2samp(a, b).statistic, abs=1e-12)


@pytest.mark.parametrize(("n1", "n2"), [(1, 1), (57, 300), (10_000, 25_000)])
def test_exact_wasserstein_equals_scipy(n1: int, n2: int) -> None:
    a, b = RNG.lognormal(0, 1, n1), RNG.lognormal(0.2, 1, n2)
    found = _score("wasserstein", a, b)
    assert found.detail["mode"] == "exact"
    assert found.detail["distance"] == pytest.approx(stats.wasserstein_distance(a, b), abs=1e-9)
    assert found.value == pytest.approx(stats.wasserstein_distance(a, b) / max(np.std(a), 0.001), abs=1e-9)


def test_weighted_wasserstein_equals_scipy() -> None:
    u, v = np.sort(RNG.normal(size=50)), np.sort(RNG.normal(size=80))
    uw, vw = RNG.random(50), RNG.random(80)
    assert wasserstein(u, v, uw, vw) == pytest.approx(stats.wasserstein_distance(u, v, uw, vw), abs=1e-9)


def test_jensen_shannon_equals_scipy_on_the_same_shares() -> None:
    for _ in range(20):
        p, q = RNG.random(12), RNG.random(12)
        p[RNG.integers(0, 12)] = 0
        assert jensen_shannon(p, q) == pytest.approx(float(jensenshannon(p, q)), abs=1e-9)


def test_numeric_jensen_shannon_is_scipys_over_reference_deciles() -> None:
    a, b = RNG.normal(0, 1, 5000), RNG.normal(0.3, 1, 4000)
    metric = get_metric("js")
    sketch = metric.sketch(_num(a))
    p, q, cuts = _shares_at(sketch, _num(b), 10)  # type: ignore[arg-type]
    # the cuts are reference values at its deciles, to within one sketch cell
    assert np.abs(np.searchsorted(np.sort(a), cuts, side="right") / a.size - np.arange(1, 10) / 10).max() <= 1e-3
    edges = np.concatenate(([-np.inf], cuts, [np.inf]))
    expected_p = np.array([np.sum((a > lo) & (a <= hi)) for lo, hi in itertools.pairwise(edges)])
    expected_q = np.array([np.sum((b > lo) & (b <= hi)) for lo, hi in itertools.pairwise(edges)])
    assert p == pytest.approx(expected_p / a.size, abs=1e-9)
    assert q == pytest.approx(expected_q / b.size, abs=1e-9)
    assert metric.score(sketch, _num(b)).value == pytest.approx(float(jensenshannon(p, q)), abs=1e-9)


def test_chi_squared_equals_scipys_contingency_test() -> None:
    ref = list("aaaabbbccd" * 30)
    cur = list("aabbbbcccdde" * 20)
    metric = get_metric("chi2")
    column = lambda v: prepare_column("c", pa.chunked_array([pa.array(v)]), CATEGORICAL)  # noqa: E731
    found = metric.score(metric.sketch(column(ref)), column(cur))
    keys = sorted(set(ref) | set(cur))
    table = [[ref.count(k) for k in keys], [cur.count(k) for k in keys]]
    expected = stats.chi2_contingency(table, correction=False)
    assert found.value == pytest.approx(expected.pvalue, abs=1e-9)
    assert found.detail["statistic"] == pytest.approx(expected.statistic, abs=1e-9)


@pytest.mark.parametrize("shift", [0.0, 0.05, 0.5])
def test_sketch_mode_stays_within_its_error_bound(shift: float) -> None:
    a, b = RNG.normal(0, 1, 60_000), RNG.standard_t(5, 50_000) + shift
    exact_ks = stats.ks_2samp(a, b).statistic
    exact_w = stats.wasserstein_distance(a, b) / np.std(a)
    ks = _score("ks", a, b, exact_limit=1000)
    w = _score("wasserstein", a, b, exact_limit=1000)
    assert ks.detail["mode"] == w.detail["mode"] == "sketch"
    assert ks.detail["statistic"] <= exact_ks + 1e-12
    assert exact_ks - ks.detail["statistic"] <= ks.detail["error_bound"]
    assert exact_ks - ks.detail["statistic"] <= 0.001  # the documented tolerance (docs/monitoring.md)
    assert abs(w.value - exact_w) <= w.detail["error_bound"]
    assert abs(w.value - exact_w) <= 0.005  # the documented tolerance (docs/monitoring.md)


finite = st.floats(-1e6, 1e6, allow_nan=False, allow_infinity=False)
samples = st.lists(finite, min_size=1, max_size=60)
exact_samples = st.lists(st.integers(-10_000, 10_000), min_size=1, max_size=60)


@settings(max_examples=30, deadline=None)
@given(samples, st.sampled_from(["ks", "wasserstein", "psi", "js"]))
def test_identical_data_never_drifts(values: list[float], name: str) -> None:
    found = _score(name, np.array(values), np.array(values))
    assert not found.drifted
    if name != "ks":
        assert found.value == pytest.approx(0.0, abs=1e-12)


@settings(max_examples=30, deadline=None)
@given(samples, samples)
def test_ks_statistic_is_symmetric(a: list[float], b: list[float]) -> None:
    first = _score("ks", np.array(a), np.array(b)).detail["statistic"]
    second = _score("ks", np.array(b), np.array(a)).detail["statistic"]
    assert first == pytest.approx(second, abs=1e-12)


@settings(max_examples=30, deadline=None)
@given(samples, samples)
def test_wasserstein_distance_is_symmetric(a: list[float], b: list[float]) -> None:
    first = _score("wasserstein", np.array(a), np.array(b)).detail["distance"]
    second = _score("wasserstein", np.array(b), np.array(a)).detail["distance"]
    assert first == pytest.approx(second, rel=1e-9, abs=1e-6)


@settings(max_examples=30, deadline=None)
@given(exact_samples, exact_samples, st.sampled_from([0.25, 2.0, 8.0, 1024.0]), st.integers(-1000, 1000))
def test_scale_and_shift_invariance(a: list[int], b: list[int], scale: float, offset: int) -> None:
    # whole numbers scaled by powers of two and shifted by whole numbers: exact in floating point
    x, y = np.array(a, dtype=float), np.array(b, dtype=float)
    moved = lambda v: v * scale + offset  # noqa: E731
    for name in ("ks", "psi", "js"):  # rank-based: invariant under any increasing map
        assert _score(name, x, y).value == pytest.approx(_score(name, moved(x), moved(y)).value, rel=1e-6, abs=1e-9)
    if np.std(x) > 1e-3 and np.std(x) * scale > 1e-3:  # normalised by the reference's spread (floored at 0.001)
        assert _score("wasserstein", x, y).value == pytest.approx(
            _score("wasserstein", moved(x), moved(y)).value, rel=1e-6, abs=1e-6
        )


def test_a_metric_from_another_package_registers_through_the_entry_point_group(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / "plug_drift.py").write_text(
        textwrap.dedent(
            """
            from conveyor.monitor import DriftMetric

            class MeanShift(DriftMetric):
                name = "mean_shift"
                kinds = frozenset({"numeric"})
                default_threshold = 0.5

                def measure(self, reference, current):
                    return abs(float(current.values.mean()) - reference.mean), {}
            """
        )
    )
    info = tmp_path / "plug_drift-1.0.dist-info"
    info.mkdir()
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: plug-drift\nVersion: 1.0\n")
    (info / "entry_points.txt").write_text("[conveyor.drift_metrics]\nmean_shift = plug_drift:MeanShift\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    assert "mean_shift" in drift_metrics()
    found = _score("mean_shift", np.zeros(10), np.ones(10))
    assert found.value == 1.0 and found.drifted
    sys.modules.pop("plug_drift", None)
