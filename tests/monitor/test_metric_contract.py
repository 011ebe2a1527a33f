"""The contract every drift metric passes (as scikit-learn's check_estimator): each registered metric, built-in or
from an entry point, is run through the same checks."""

from __future__ import annotations

import math

import numpy as np
import pyarrow as pa
import pytest

from conveyor.errors import BadInput
from conveyor.monitor import Column, DriftMetric, Score, drift_metrics, get_metric
from conveyor.monitor._columns import CATEGORICAL, NUMERIC, prepare_column

METRICS = sorted(drift_metrics())
RNG = np.random.default_rng(7)


def _numeric(values: np.ndarray, name: str = "x") -> Column:
    return prepare_column(name, pa.chunked_array([pa.array(values)]), NUMERIC)


def _categorical(values: list[str], name: str = "c") -> Column:
    return prepare_column(name, pa.chunked_array([pa.array(values)]), CATEGORICAL)


def _sides(metric: DriftMetric, size: int, shifted: bool) -> tuple[Column, Column]:
    if metric.applies_to(NUMERIC):
        return _numeric(RNG.normal(0, 1, size)), _numeric(RNG.normal(1.5 if shifted else 0, 1, size))
    letters = np.array(list("abcdef"))
    p = np.array([0.6, 0.1, 0.1, 0.1, 0.05, 0.05]) if shifted else np.full(6, 1 / 6)
    return (
        _categorical(letters[RNG.integers(0, 6, size)].tolist()),
        _categorical(letters[RNG.choice(6, size, p=p)].tolist()),
    )


def test_every_built_in_metric_is_registered() -> None:
    assert {"psi", "js", "wasserstein", "ks", "chi2", "prediction"} <= set(METRICS)


@pytest.mark.parametrize("name", METRICS)
def test_declares_its_contract(name: str) -> None:
    metric = get_metric(name)
    assert isinstance(metric, DriftMetric)
    assert metric.name == name
    assert metric.kinds <= {NUMERIC, CATEGORICAL} and metric.kinds
    assert isinstance(metric.is_p_value, bool)


@pytest.mark.parametrize("name", METRICS)
@pytest.mark.parametrize("size", [50, 5000])
def test_identical_data_does_not_drift_and_a_shift_does(name: str, size: int) -> None:
    metric = get_metric(name)
    reference, _ = _sides(metric, size, shifted=False)
    sketch = metric.sketch(reference)
    same = metric.score(sketch, reference)
    assert isinstance(same, Score)
    assert not same.drifted, same
    _, shifted = _sides(metric, size, shifted=True)
    moved = metric.score(sketch, shifted)
    assert moved.drifted, moved
    assert math.isfinite(moved.value)


@pytest.mark.parametrize("name", METRICS)
def test_the_sketch_is_reusable_and_scoring_is_deterministic(name: str) -> None:
    metric = get_metric(name)
    reference, current = _sides(metric, 500, shifted=True)
    sketch = metric.sketch(reference)
    assert metric.score(sketch, current) == metric.score(sketch, current)
    assert metric.score(sketch, reference).value == metric.score(metric.sketch(reference), reference).value


@pytest.mark.parametrize("name", METRICS)
def test_threshold_is_configurable_and_checked(name: str) -> None:
    metric = get_metric(name, 0.01)
    reference, current = _sides(metric, 200, shifted=False)
    assert metric.score(metric.sketch(reference), current).threshold == 0.01
    with pytest.raises(BadInput, match=r"must be a positive number"):
        get_metric(name, -1)


@pytest.mark.parametrize("name", METRICS)
def test_one_value_on_the_current_side_is_scored(name: str) -> None:
    metric = get_metric(name)
    reference, _ = _sides(metric, 300, shifted=False)
    one = _numeric(np.array([0.1])) if reference.kind == NUMERIC else _categorical(["a"])
    found = metric.score(metric.sketch(reference), one)
    assert math.isfinite(found.value)


@pytest.mark.parametrize("name", METRICS)
def test_an_empty_current_side_or_a_wrong_kind_is_refused_with_a_message(name: str) -> None:
    metric = get_metric(name)
    reference, _ = _sides(metric, 100, shifted=False)
    sketch = metric.sketch(reference)
    empty = _numeric(np.array([], dtype=float)) if reference.kind == NUMERIC else _categorical([])
    with pytest.raises(BadInput, match=r"has no values in the current data"):
        metric.score(sketch, empty)
    with pytest.raises(BadInput, match=r"all null"):
        metric.sketch(_numeric(np.array([np.nan, np.nan])) if reference.kind == NUMERIC else _categorical([None]))  # type: ignore[list-item]


def test_unknown_metric_names_suggest_the_near_one() -> None:
    with pytest.raises(BadInput, match=r"No drift metric named 'wasserstien'\. Did you mean 'wasserstein'\?"):
        get_metric("wasserstien")


def test_p_value_thresholds_stay_below_one() -> None:
    with pytest.raises(BadInput, match=r"p-value and must be between 0 and 1"):
        get_metric("ks", 5)
