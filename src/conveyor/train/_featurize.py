"""Automatic featurisation from column kinds, kept inside the fitted model so serving takes raw rows."""

from __future__ import annotations

from typing import Any, Literal

import numpy as np
import pandas as pd
from sklearn.base import BaseEstimator, TransformerMixin
from sklearn.compose import ColumnTransformer
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import FunctionTransformer, OneHotEncoder

__all__ = ["ColumnKind", "DateFeatures", "build_featurizer", "infer_column_kinds"]

ColumnKind = Literal["numeric", "categorical", "datetime"]
_MAX_CATEGORIES = 32
_MISSING = "__missing__"


def infer_column_kinds(frame: pd.DataFrame, exclude: tuple[str, ...] = ()) -> dict[str, ColumnKind]:
    """Each column's kind: numbers are numeric, dates and timestamps datetime, everything else categorical.

    Text columns whose values all parse as ISO dates are datetime too.
    """
    kinds: dict[str, ColumnKind] = {}
    for name in frame.columns:
        if name in exclude:
            continue
        column = frame[name]
        if pd.api.types.is_bool_dtype(column.dtype) or pd.api.types.is_numeric_dtype(column.dtype):
            kinds[str(name)] = "numeric"
        elif pd.api.types.is_datetime64_any_dtype(column.dtype) or _holds_dates(column):
            kinds[str(name)] = "datetime"
        else:
            kinds[str(name)] = "categorical"
    return kinds


def _holds_dates(column: pd.Series) -> bool:
    sample = column.dropna().head(200)
    if sample.empty:
        return False
    if all(hasattr(v, "year") and hasattr(v, "month") for v in sample):
        return True
    if not all(isinstance(v, str) for v in sample):
        return False
    parsed = pd.to_datetime(sample, errors="coerce", format="ISO8601")
    return bool(parsed.notna().all())


class DateFeatures(TransformerMixin, BaseEstimator):  # type: ignore[misc]
    """Turns date or timestamp columns (or ISO-8601 strings) into year, month, day of week, day of year
    and days since 1970; unparseable values become missing.
    """

    _PARTS = ("year", "month", "dayofweek", "dayofyear", "epoch_days")

    def fit(self, x: Any, y: Any = None) -> DateFeatures:
        frame = pd.DataFrame(x)
        self.feature_names_in_ = np.asarray([str(c) for c in frame.columns], dtype=object)
        self.n_features_in_ = frame.shape[1]
        return self

    def transform(self, x: Any) -> np.ndarray[Any, np.dtype[np.float64]]:
        frame = pd.DataFrame(x)
        out = []
        for name in frame.columns:
            values = pd.to_datetime(frame[name], errors="coerce", format="ISO8601", utc=True)
            epoch = (values - pd.Timestamp("1970-01-01", tz="UTC")) / pd.Timedelta(days=1)
            out.extend(
                [
                    values.dt.year.astype("float64"),
                    values.dt.month.astype("float64"),
                    values.dt.day_of_week.astype("float64"),
                    values.dt.day_of_year.astype("float64"),
                    epoch.astype("float64"),
                ]
            )
        return np.column_stack(out) if out else np.empty((len(frame), 0))

    def get_feature_names_out(self, input_features: Any = None) -> np.ndarray[Any, np.dtype[Any]]:
        names = self.feature_names_in_ if input_features is None else input_features
        return np.asarray([f"{n}_{p}" for n in names for p in self._PARTS], dtype=object)


def categories_as_text(x: Any) -> pd.DataFrame:
    """Categorical values as text, missing ones as the level ``__missing__`` (the same at fit and serve time,
    whatever types the request carried)."""
    frame = pd.DataFrame(x)
    return frame.astype(object).where(frame.notna(), _MISSING).astype(str)


def build_featurizer(kinds: dict[str, ColumnKind]) -> ColumnTransformer:
    """A ColumnTransformer for the given column kinds.

    Numeric columns pass through (missing values stay NaN for learners that handle them); categorical
    columns are read as text with a ``__missing__`` level and one-hot encoded with rare levels grouped and
    unknown levels ignored; datetime columns become calendar features.
    """
    numeric = [c for c, k in kinds.items() if k == "numeric"]
    categorical = [c for c, k in kinds.items() if k == "categorical"]
    dates = [c for c, k in kinds.items() if k == "datetime"]
    transformers: list[tuple[str, Any, list[str]]] = []
    if numeric:
        transformers.append(("numeric", "passthrough", numeric))
    if categorical:
        transformers.append(
            (
                "categorical",
                Pipeline(
                    [
                        (
                            "as_text",
                            FunctionTransformer(categories_as_text, feature_names_out="one-to-one"),
                        ),
                        (
                            "onehot",
                            OneHotEncoder(
                                handle_unknown="infrequent_if_exist",
                                max_categories=_MAX_CATEGORIES,
                                sparse_output=False,
                            ),
                        ),
                    ]
                ),
                categorical,
            )
        )
    if dates:
        transformers.append(("datetime", DateFeatures(), dates))
    return ColumnTransformer(transformers, remainder="drop", verbose_feature_names_out=True)
