"""Automatic featurisation from column kinds, kept inside the fitted model so serving takes raw rows.

Kinds: ``numeric`` (numbers and booleans), ``categorical`` (few distinct values), ``high_cardinality``
(many distinct values: target-encoded), ``datetime`` (dates, timestamps, ISO-8601 text: calendar parts),
``text`` (free text of several words: TF-IDF) and ``ignored`` (constant or identifier-like columns).
"""

from __future__ import annotations

import warnings
from typing import Any, Literal

import numpy as np
import pandas as pd
from sklearn.base import BaseEstimator, TransformerMixin
from sklearn.compose import ColumnTransformer
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import FunctionTransformer, OneHotEncoder

__all__ = ["ColumnKind", "DateFeatures", "Featurizer", "TextColumn", "build_featurizer", "infer_column_kinds"]

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


class Featurizer(TransformerMixin, BaseEstimator):  # type: ignore[misc]
    """AutoML's featurisation as one fitted object of NumPy arrays, vectorised over the rows of a request.

    It makes the same features as :func:`build_featurizer` — numeric columns as they are (trees) or
    median-imputed with missing indicators and standardised (``scale=True``: linear models); categorical
    columns one-hot (rare levels beyond ``max_categories`` grouped, unknown levels in that group or ignored,
    missing as its own level); high-cardinality columns target-encoded (cross-fitted while fitting); dates as
    year, month, day of week, day of year and days since 1970; free text as TF-IDF — but keeps only arrays
    (levels, encodings, medians, scales), so a 1-row request costs a few dictionary look-ups and array
    operations, and the stored model is small and quick to write.
    """

    def __init__(
        self,
        kinds: dict[str, Any] | None = None,
        scale: bool = False,
        target_type: str = "auto",
        max_categories: int = _MAX_CATEGORIES,
        text_features: int = 50,
    ) -> None:
        self.kinds = kinds
        self.scale = scale
        self.target_type = target_type
        self.max_categories = max_categories
        self.text_features = text_features

    # -- fitting ---------------------------------------------------------------------------------------

    def fit(self, x: Any, y: Any = None) -> Featurizer:
        self.fit_transform(x, y)
        return self

    def fit_transform(self, x: Any, y: Any = None, **_: Any) -> np.ndarray[Any, np.dtype[np.float64]]:
        from sklearn.model_selection import KFold
        from sklearn.preprocessing import TargetEncoder

        frame = x if isinstance(x, pd.DataFrame) else pd.DataFrame(x)
        kinds = dict(self.kinds or {})

        def of(kind: str) -> list[str]:
            return [c for c, k in kinds.items() if k == kind]

        self.numeric_ = of("numeric")
        self.categorical_ = of("categorical")
        self.high_ = of("high_cardinality")
        self.dates_ = of("datetime")
        self.text_ = of("text")
        self.feature_names_in_ = np.asarray(list(kinds), dtype=object)
        self.n_features_in_ = len(kinds)
        self.rows_ = len(frame)  # how many rows it was fitted on
        self.levels_ = []
        self.infrequent_ = []
        for name in self.categorical_:
            counts = pd.Series(_as_text(frame[name])).value_counts(sort=True)
            keep = counts.index.to_numpy(dtype=str)
            grouped = len(keep) > self.max_categories
            if grouped:
                keep = keep[: self.max_categories - 1]
            self.levels_.append(np.sort(keep))
            self.infrequent_.append(grouped)
        self.encoder_levels_ = []
        self.encodings_ = []
        encoded_fit = None
        if self.high_:
            encoder = TargetEncoder(target_type=self.target_type, cv=KFold(5, shuffle=True, random_state=0))
            texts = pd.DataFrame({c: _as_text(frame[c]) for c in self.high_}, dtype=object)
            encoded_fit = np.asarray(encoder.fit_transform(texts, y), dtype=float)
            self.classes_out_ = max(1, len(encoder.classes_) if encoder.target_type_ == "multiclass" else 1)
            for i in range(len(self.high_)):
                levels = np.asarray(encoder.categories_[i], dtype=str)
                order = np.argsort(levels)
                rows = [encoder.encodings_[i * self.classes_out_ + k] for k in range(self.classes_out_)]
                self.encoder_levels_.append(levels[order])
                self.encodings_.append(np.asarray([r[order] for r in rows], dtype=float))  # (outputs, levels)
            self.target_mean_ = np.asarray(encoder.target_mean_, dtype=float).reshape(-1)
        self.text_steps_ = [
            TextColumn(max_features=self.text_features, dense=True).fit(frame[[name]]) for name in self.text_
        ]
        raw = self._raw(frame, encoded_fit)
        if self.scale:
            self._fit_scaling(raw)
        return self._finish(raw)

    def _fit_scaling(self, raw: np.ndarray[Any, Any]) -> None:
        scaled = self._scaled_columns()
        block = raw[:, scaled]
        with np.errstate(all="ignore"), warnings.catch_warnings():
            warnings.simplefilter("ignore")  # an all-missing column has no median: 0 then
            medians = np.nanmedian(block, axis=0) if len(block) else np.zeros(block.shape[1])
        self.medians_ = np.where(np.isnan(medians), 0.0, medians)
        self.indicators_ = np.flatnonzero(np.isnan(block).any(axis=0))
        filled = np.where(np.isnan(block), self.medians_, block)
        full = np.hstack([filled, np.isnan(block[:, self.indicators_]).astype(float)])
        self.means_ = full.mean(axis=0)
        std = full.std(axis=0)
        self.scales_ = np.where(std > 0, std, 1.0)

    # -- transforming ----------------------------------------------------------------------------------

    def transform(self, x: Any) -> np.ndarray[Any, np.dtype[np.float64]]:
        """Features of ``x``: a DataFrame, or a dict of column arrays (what ``AutoMLModel`` hands over once for
        every member, so a request's columns are taken out of pandas only once)."""
        if isinstance(x, dict):
            return self._finish(self._raw(x, None))
        frame = x if isinstance(x, pd.DataFrame) else pd.DataFrame(x, columns=self.feature_names_in_)
        return self._finish(self._raw(frame, None))

    def _raw(self, frame: Any, encoded: np.ndarray[Any, Any] | None) -> np.ndarray[Any, Any]:
        n = len(next(iter(frame.values()), ())) if isinstance(frame, dict) else len(frame)
        blocks: list[np.ndarray[Any, Any]] = []
        if self.numeric_:
            blocks.append(np.column_stack([_as_float(frame[c]) for c in self.numeric_]))
        for name in self.dates_:
            blocks.append(_date_parts(frame[name]))
        if self.high_:
            if encoded is None:
                parts = []
                for i, name in enumerate(self.high_):
                    codes, known = _lookup(self.encoder_levels_[i], _as_text(frame[name]))
                    table = self.encodings_[i]
                    values = table[:, np.where(known, codes, 0)].T
                    parts.append(np.where(known[:, None], values, self.target_mean_[None, : table.shape[0]]))
                encoded = np.hstack(parts)
            blocks.append(encoded)
        for i, name in enumerate(self.categorical_):
            levels = self.levels_[i]
            codes, known = _lookup(levels, _as_text(frame[name]))
            width = len(levels) + (1 if self.infrequent_[i] else 0)
            onehot = np.zeros((n, width))
            rows = np.arange(n)
            onehot[rows[known], codes[known]] = 1.0
            if self.infrequent_[i]:
                onehot[rows[~known], len(levels)] = 1.0
            blocks.append(onehot)
        for name, step in zip(self.text_, self.text_steps_, strict=True):
            blocks.append(np.asarray(step.transform(pd.DataFrame({name: frame[name]})), dtype=float))
        return np.hstack(blocks) if blocks else np.empty((n, 0))

    def _scaled_columns(self) -> np.ndarray[Any, Any]:
        """Which raw columns linear models impute and standardise: numeric, dates and target encodings."""
        width = len(self.numeric_) + 5 * len(self.dates_) + len(self.high_) * getattr(self, "classes_out_", 1)
        return np.arange(width)

    def _finish(self, raw: np.ndarray[Any, Any]) -> np.ndarray[Any, np.dtype[np.float64]]:
        if not self.scale:
            return raw
        scaled = self._scaled_columns()
        block = raw[:, scaled]
        missing = np.isnan(block)
        filled = np.where(missing, self.medians_, block)
        full = np.hstack([filled, missing[:, self.indicators_].astype(float)])
        full = (full - self.means_) / self.scales_
        return np.hstack([full, raw[:, len(scaled) :]])


def _values(column: Any) -> np.ndarray[Any, Any]:
    return column.to_numpy() if isinstance(column, pd.Series) else np.asarray(column)


def _as_text(column: Any) -> np.ndarray[Any, Any]:
    """Categorical values as text, missing ones as ``__missing__`` (as ``categories_as_text``)."""
    values = _values(column)
    if values.dtype.kind == "U":
        return values
    values = values.astype(object)
    missing = pd.isna(values)
    if missing.any():
        values = np.where(missing, _MISSING, values)
    return values.astype(str)


def _as_float(column: Any) -> np.ndarray[Any, Any]:
    values = _values(column)
    if values.dtype.kind in "fiub":
        return values.astype(float)
    try:
        return np.asarray(values.astype(object), dtype=float)  # None is NaN here
    except (TypeError, ValueError):
        return np.asarray(pd.to_numeric(pd.Series(values), errors="coerce"), dtype=float)


def _lookup(levels: np.ndarray[Any, Any], values: np.ndarray[Any, Any]) -> tuple[Any, Any]:
    """Positions of ``values`` in the sorted ``levels`` and whether each is one of them."""
    if len(levels) == 0:
        return np.zeros(len(values), dtype=int), np.zeros(len(values), dtype=bool)
    codes = np.searchsorted(levels, values)
    codes = np.minimum(codes, len(levels) - 1)
    return codes, levels[codes] == values


def _date_parts(column: pd.Series) -> np.ndarray[Any, Any]:
    values = _values(column)
    try:
        if values.dtype.kind not in "MOU":
            raise TypeError(values.dtype)
        with warnings.catch_warnings():
            warnings.simplefilter("error")  # numpy's deprecated parsing of time zones: pandas reads those
            stamps = values.astype("datetime64[ns]")
    except (TypeError, ValueError, DeprecationWarning, UserWarning):
        parsed = pd.to_datetime(pd.Series(values), errors="coerce", format="ISO8601", utc=True)
        stamps = parsed.dt.tz_convert(None).to_numpy(dtype="datetime64[ns]")
    days = stamps.astype("datetime64[D]")
    missing = np.isnat(days)
    day_numbers = days.astype(np.int64).astype(float)
    years = days.astype("datetime64[Y]")
    months = days.astype("datetime64[M]")
    out = np.column_stack(
        [
            years.astype(np.int64) + 1970.0,
            (months - years).astype(np.int64) + 1.0,
            (day_numbers + 3) % 7,  # 1970-01-01 was a Thursday: Monday is 0
            (days - years).astype(np.int64) + 1.0,
            (stamps - np.datetime64(0, "ns")).astype(np.int64) / 86_400e9,
        ]
    ).astype(float)
    out[missing] = np.nan
    return out
