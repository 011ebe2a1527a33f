"""Automatic featurisation from column kinds, kept inside the fitted model so serving takes raw rows.

Kinds: ``numeric`` (numbers and booleans), ``categorical`` (few distinct values), ``high_cardinality``
(many distinct values: target-encoded), ``datetime`` (dates, timestamps, ISO-8601 text: calendar parts),
``text`` (free text of several words: TF-IDF) and ``ignored`` (constant or identifier-like columns).
"""

from __future__ import annotations

from typing import Any, Literal

import numpy as np
import pandas as pd
from sklearn.base import BaseEstimator, TransformerMixin
from sklearn.compose import ColumnTransformer
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import FunctionTransformer, OneHotEncoder

__all__ = ["ColumnKind", "DateFeatures", "TextColumn", "build_featurizer", "infer_column_kinds"]

ColumnKind = Literal["numeric", "categorical", "high_cardinality", "datetime", "text", "ignored"]
_MAX_CATEGORIES = 32
_MISSING = "__missing__"
_TEXT_MIN_WORDS = 3.0
_IDENTIFIER_UNIQUE = 0.95


def infer_column_kinds(frame: pd.DataFrame, exclude: tuple[str, ...] = ()) -> dict[str, ColumnKind]:
    """Each column's kind (see the module docstring).

    Numbers and booleans are numeric; dates, timestamps and text that all parses as ISO-8601 are datetime;
    text of several words per value with many distinct values is free text; other text is categorical,
    high-cardinality above 32 distinct values, and ignored when (nearly) every value is distinct (an
    identifier). A column holding one value (and no missing ones) or none is ignored.
    """
    kinds: dict[str, ColumnKind] = {}
    for name in frame.columns:
        if name in exclude:
            continue
        kinds[str(name)] = _kind(frame[name])
    return kinds


def _kind(column: pd.Series) -> ColumnKind:  # noqa: PLR0911 - one answer per kind
    present = column.dropna()
    distinct = present.nunique()
    if distinct == 0 or (distinct == 1 and len(present) == len(column)):
        return "ignored"  # constant (a single value and missing is still a signal: kept)
    if pd.api.types.is_bool_dtype(column.dtype) or pd.api.types.is_numeric_dtype(column.dtype):
        return "numeric"
    if pd.api.types.is_datetime64_any_dtype(column.dtype) or _holds_dates(column):
        return "datetime"
    sample = present.head(2000).astype(str)
    distinct = sample.nunique()
    if distinct <= _MAX_CATEGORIES:
        return "categorical"
    words = float(np.mean([len(v.split()) for v in sample]))
    if words >= _TEXT_MIN_WORDS:
        return "text"
    if len(sample) >= 50 and distinct / len(sample) >= _IDENTIFIER_UNIQUE:
        return "ignored"
    return "high_cardinality"


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


class TextColumn(TransformerMixin, BaseEstimator):  # type: ignore[misc]
    """TF-IDF of one free-text column (words and word pairs, the ``max_features`` most frequent), dense or
    sparse; missing values are empty text."""

    def __init__(self, max_features: int = 100, dense: bool = True) -> None:
        self.max_features = max_features
        self.dense = dense

    def fit(self, x: Any, y: Any = None) -> TextColumn:
        from sklearn.feature_extraction.text import TfidfVectorizer

        self.vectorizer_ = TfidfVectorizer(max_features=self.max_features, ngram_range=(1, 2), min_df=2)
        try:
            self.vectorizer_.fit(self._texts(x))
        except ValueError:  # every value empty or too rare: fall back to single words seen once
            self.vectorizer_ = TfidfVectorizer(max_features=self.max_features)
            self.vectorizer_.fit([*self._texts(x), "empty"])
        self.n_features_in_ = 1
        return self

    def transform(self, x: Any) -> Any:
        matrix = self.vectorizer_.transform(self._texts(x))
        return matrix.toarray() if self.dense else matrix

    def get_feature_names_out(self, input_features: Any = None) -> np.ndarray[Any, np.dtype[Any]]:
        return np.asarray([f"tfidf_{w}" for w in self.vectorizer_.get_feature_names_out()], dtype=object)

    @staticmethod
    def _texts(x: Any) -> list[str]:
        frame = pd.DataFrame(x)
        column = frame.iloc[:, 0]
        return [v if isinstance(v, str) else "" for v in column.astype(object).where(column.notna(), "")]


def categories_as_text(x: Any) -> pd.DataFrame:
    """Categorical values as text, missing ones as the level ``__missing__`` (the same at fit and serve time,
    whatever types the request carried)."""
    frame = pd.DataFrame(x)
    return frame.astype(object).where(frame.notna(), _MISSING).astype(str)


def build_featurizer(
    kinds: dict[str, ColumnKind],
    *,
    scale: bool = False,
    target_type: str = "auto",
) -> ColumnTransformer:
    """A ColumnTransformer for the given column kinds.

    With ``scale=False`` (trees): numeric columns pass through (missing values stay NaN for learners that
    handle them). With ``scale=True`` (linear models): numeric columns are median-imputed with missing
    indicators and standardised. Categorical columns are read as text with a ``__missing__`` level and
    one-hot encoded with rare levels grouped and unknown levels ignored; high-cardinality columns are
    target-encoded (cross-fitted, so the encoding does not leak the row's own target); datetime columns
    become calendar features; free text becomes TF-IDF; ignored columns are dropped.
    """
    from sklearn.impute import SimpleImputer
    from sklearn.preprocessing import StandardScaler, TargetEncoder

    def columns(kind: str) -> list[str]:
        return [c for c, k in kinds.items() if k == kind]

    def scaled(*steps: tuple[str, Any]) -> Pipeline:
        tail: list[tuple[str, Any]] = (
            [("impute", SimpleImputer(strategy="median", add_indicator=True)), ("scale", StandardScaler())]
            if scale
            else []
        )
        return Pipeline([*steps, *tail]) if steps or tail else Pipeline([("identity", "passthrough")])

    as_text = ("as_text", FunctionTransformer(categories_as_text, feature_names_out="one-to-one"))
    transformers: list[tuple[str, Any, Any]] = []
    if numeric := columns("numeric"):
        transformers.append(("numeric", scaled() if scale else "passthrough", numeric))
    if categorical := columns("categorical"):
        onehot = OneHotEncoder(
            handle_unknown="infrequent_if_exist", max_categories=_MAX_CATEGORIES, sparse_output=False
        )
        transformers.append(("categorical", Pipeline([as_text, ("onehot", onehot)]), categorical))
    if high := columns("high_cardinality"):
        from sklearn.model_selection import KFold

        encoder = TargetEncoder(target_type=target_type, cv=KFold(5, shuffle=True, random_state=0))
        transformers.append(("high_cardinality", scaled(as_text, ("target_encode", encoder)), high))
    if dates := columns("datetime"):
        transformers.append(("datetime", scaled(("calendar", DateFeatures())), dates))
    for name in columns("text"):
        transformers.append((f"text_{name}", TextColumn(max_features=200 if scale else 50, dense=True), [name]))
    return ColumnTransformer(transformers, remainder="drop", verbose_feature_names_out=True, sparse_threshold=0.0)
