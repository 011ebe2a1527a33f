"""Fitted models and the rows they were trained on, shared by the registry tests."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest


def churn_frame(n: int = 600, seed: int = 0) -> tuple[pd.DataFrame, pd.Series]:
    """Numbers with missing values, a text column with missing values and many rare levels, and a target."""
    rng = np.random.default_rng(seed)
    x = pd.DataFrame(
        {
            "tenure": rng.integers(0, 72, n),
            "charges": rng.normal(70, 20, n),
            "plan": rng.choice(["basic", "plus", "pro", None], n),
            "city": rng.choice([f"city{i}" for i in range(60)], n),
        }
    )
    x.loc[rng.random(n) < 0.1, "charges"] = np.nan
    y = ((x["charges"].fillna(70) > 75) ^ (x["plan"] == "pro") ^ (x["tenure"] < 6)).astype(int)
    return x, y


@pytest.fixture
def churn() -> tuple[pd.DataFrame, pd.Series]:
    return churn_frame()


@pytest.fixture
def conveyor_pipeline(churn):  # type: ignore[no-untyped-def]
    """Conveyor's own featurisation (text with a missing level, rare levels grouped) + HistGradientBoosting."""
    from sklearn.ensemble import HistGradientBoostingClassifier
    from sklearn.pipeline import Pipeline

    from conveyor.train._featurize import build_featurizer, infer_column_kinds

    x, y = churn
    model = Pipeline(
        [("features", build_featurizer(infer_column_kinds(x))), ("learner", HistGradientBoostingClassifier())]
    )
    return model.fit(x, y)
