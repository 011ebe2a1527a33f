"""Training the walking-skeleton learner on realistic tabular data."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from conveyor.errors import BadInput, NotFound, ValidationFailed
from conveyor.quickstart import TARGET, make_churn_frame
from conveyor.train import infer_column_kinds, train_tabular


@pytest.fixture(scope="module")
def churn() -> pd.DataFrame:
    return make_churn_frame(4000, seed=1)


def test_the_churn_data_is_deterministic_and_realistic(churn: pd.DataFrame) -> None:
    assert make_churn_frame(4000, seed=1).equals(churn)
    assert 0.15 < churn[TARGET].mean() < 0.4
    assert churn["total_charges"].isna().any() and churn["satisfaction_score"].isna().any()
    month_to_month = churn.loc[churn["contract"] == "month-to-month", TARGET].mean()
    two_year = churn.loc[churn["contract"] == "two-year", TARGET].mean()
    assert month_to_month > 2 * two_year


def test_column_kinds(churn: pd.DataFrame) -> None:
    kinds = infer_column_kinds(churn, exclude=(TARGET,))
    assert kinds["signup_date"] == "datetime"
    assert kinds["plan"] == "categorical"
    assert kinds["tenure_months"] == "numeric"
    assert kinds["has_autopay"] == "numeric"


def test_classifier_learns_the_signal_and_takes_raw_rows(churn: pd.DataFrame) -> None:
    result = train_tabular(churn, TARGET, exclude=["customer_id"], seed=0)
    assert result.task == "classification"
    assert result.metrics["roc_auc"] > 0.72, result.metrics
    raw = churn.drop(columns=[TARGET, "customer_id"]).head(3).astype(object)
    raw.loc[0, "plan"] = "a plan never seen in training"
    raw.loc[1, "signup_date"] = None
    assert len(result.model.predict(raw)) == 3


def test_regression_is_inferred_for_a_continuous_target(churn: pd.DataFrame) -> None:
    result = train_tabular(churn, "monthly_charges", exclude=["customer_id", "total_charges"], seed=0)
    assert result.task == "regression"
    assert result.metrics["r2"] > 0.5


def test_bad_targets_are_explained(churn: pd.DataFrame) -> None:
    with pytest.raises(NotFound, match="Did you mean 'churned'"):
        train_tabular(churn, "churnd")
    one_class = churn.assign(**{TARGET: True})
    with pytest.raises(ValidationFailed, match="single class"):
        train_tabular(one_class, TARGET)
    with pytest.raises(BadInput, match="needs a numeric target"):
        train_tabular(churn, "plan", task="regression")
    with pytest.raises(ValidationFailed, match="at least 20"):
        train_tabular(pd.DataFrame({"x": np.arange(5), "y": [0, 1, 0, 1, 0]}), "y")
