"""Forecasting as tabular learning: lag, rolling and calendar features from each series' history, a
direct multi-horizon model (the horizon step is a feature), rolling-origin validation, and the seasonal-naive
baseline every model must beat.

A row of the feature table is one (series, forecast origin, step h): the last ``lags`` values up to the
origin, rolling means and spread ending at the origin, the seasonal-naive forecast, calendar parts of the
target time, h, and the series id; its label is the value h steps after the origin. Values and label are
taken relative to the series' level at the origin (the mean of its last season), so trees, which cannot
extrapolate, still follow trends; the level is added back to the forecast.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd
from sklearn.base import BaseEstimator

from conveyor.errors import BadInput, NotFound, ValidationFailed, did_you_mean

__all__ = ["ForecastData", "Forecaster", "prepare_forecast"]

_SEASONS = {"h": 24, "D": 7, "B": 5, "W": 52, "M": 12, "Q": 4, "min": 60}


@dataclass
class ForecastData:
    """The feature table and what validation and the baseline need."""

    x: pd.DataFrame
    y: np.ndarray[Any, Any]
    folds: list[tuple[np.ndarray[Any, Any], np.ndarray[Any, Any]]]
    baseline: np.ndarray[Any, Any]  # the seasonal-naive forecast of every row (relative to the level)
    level: np.ndarray[Any, Any]  # each row's level: label + level is the value itself
    forecaster: Forecaster
    history: pd.DataFrame  # an input example: rows naming forecast times (and series) after the training data
    validation: str


class Forecaster(BaseEstimator):  # type: ignore[misc]
    """A fitted forecaster: it forecasts the next ``horizon`` steps of every series, with the fitted model or,
    when no model beat it, the seasonal-naive rule.

    It keeps the tail of its training data (the last ``lags`` values of each series, ``tail``), so it is
    asked as any other model is, one row per answer: ``predict`` of rows holding a time (and the series id)
    returns the forecast for that time, which must be one of the ``horizon`` steps after the series' last
    training time. Given recent history instead (rows that also hold the target), ``predict`` forecasts the
    ``horizon`` steps after it and returns rows of (series id, time, forecast), as :meth:`forecast` does.
    """

    def __init__(
        self,
        time_column: str = "t",
        target: str = "y",
        series_id: str | None = None,
        horizon: int = 1,
        freq: Any = None,
        season: int = 1,
        lags: int = 7,
        windows: tuple[int, ...] = (3, 7),
        model: Any = None,
        tail: tuple[list[Any], np.ndarray[Any, Any], list[np.ndarray[Any, Any]]] | None = None,
    ) -> None:
        self.time_column = time_column
        self.target = target
        self.series_id = series_id
        self.horizon = horizon
        self.freq = freq
        self.season = season
        self.lags = lags
        self.windows = windows
        self.model = model
        self.tail = tail

    def fit(self, x: Any, y: Any = None) -> Forecaster:  # fitted by AutoML
        return self

    def predict(self, x: pd.DataFrame) -> Any:
        """Forecasts for rows of (time[, series id]) from the kept tail, one per row (an array); or, for rows
        of recent history (with the target), the ``horizon`` steps after it (see :meth:`forecast`).

        Raises:
            BadInput: a series the model does not know, or a time that is not one of its forecast times.
        """
        frame = x if isinstance(x, pd.DataFrame) else pd.DataFrame(x)
        if self.target in frame.columns:
            return self.forecast(frame)
        return self._forecast_rows(frame)

    def forecast(self, history: pd.DataFrame) -> pd.DataFrame:
        """The ``horizon`` steps after the recent history given (time, series id, target) of each series.

        Raises:
            BadInput: a series with fewer than ``lags`` values.
        """
        frames = []
        for key, unsorted in _series(history, self.series_id):
            group = unsorted.sort_values(self.time_column)
            values = group[self.target].to_numpy(dtype=float)
            if len(values) < self.lags:
                raise BadInput(
                    f"Series {key!r} has {len(values)} values; the forecaster needs the last {self.lags}.",
                )
            times = _times(group[self.time_column])
            future, forecast = self._ahead(values, times[-1], key)
            out = pd.DataFrame({self.time_column: future, "forecast": forecast})
            if self.series_id is not None:
                out.insert(0, self.series_id, key)
            frames.append(out)
        return pd.concat(frames, ignore_index=True)

    def _ahead(self, values: np.ndarray[Any, Any], last_time: Any, key: Any) -> tuple[list[Any], Any]:
        """The next ``horizon`` times after ``last_time`` and their forecasts from ``values`` (oldest first)."""
        origin = len(values) - 1
        steps = np.arange(1, self.horizon + 1)
        future = [_step(last_time, self.freq, int(h)) for h in steps]
        rows = _features(values, np.full(len(steps), origin), steps, future, self, key)
        level = rows["level"].to_numpy()
        relative = rows["seasonal_naive"].to_numpy() if self.model is None else np.asarray(self.model.predict(rows))
        return future, level + relative

    def example(self, rows: int = 3) -> pd.DataFrame:
        """Rows a request could hold: the first ``rows`` forecast times of each series (at most 200 rows)."""
        keys, last_times, _ = self._tail()
        records = []
        for key, last in zip(keys, last_times, strict=True):
            for h in range(1, min(rows, self.horizon) + 1):
                record = {self.time_column: _step(last, self.freq, h)}
                if self.series_id is not None:
                    record = {self.series_id: key, **record}
                records.append(record)
        return pd.DataFrame(records[:200])

    def _tail(self) -> tuple[list[Any], np.ndarray[Any, Any], list[np.ndarray[Any, Any]]]:
        if self.tail is None:
            raise BadInput(
                "This forecaster keeps no training tail (it was made by an older Conveyor), so it forecasts only "
                f"from history: pass rows with {self.target!r}, or train it again.",
            )
        return self.tail

    def _forecast_rows(self, frame: pd.DataFrame) -> np.ndarray[Any, Any]:
        keys, last_times, tails = self._tail()
        if self.time_column not in frame.columns:
            raise BadInput(
                f"A forecast request names the time to forecast in {self.time_column!r}"
                f"{' and the series in ' + repr(self.series_id) if self.series_id else ''}; "
                f"the rows have {', '.join(map(str, frame.columns)) or 'no columns'}.",
            )
        index = {str(k): i for i, k in enumerate(keys)}
        if self.series_id is not None:
            if self.series_id not in frame.columns:
                raise BadInput(f"A forecast request names the series in {self.series_id!r}; the rows lack it.")
            wanted = [str(k) for k in frame[self.series_id].tolist()]
        else:
            wanted = ["None"] * len(frame)
        times = _request_times(frame[self.time_column], numeric=isinstance(self.freq, float | int))
        out = np.empty(len(frame), dtype=float)
        for key in dict.fromkeys(wanted):
            i = index.get(key)
            if i is None:
                known = list(index)
                raise BadInput(
                    f"Series {key!r} is not one this model was trained on.{did_you_mean(key, known)} "
                    f"Series: {', '.join(known[:20])}{' …' if len(known) > 20 else ''}.",
                )
            future, forecast = self._ahead(tails[i], last_times[i], keys[i])
            by_time = {_time_key(t): f for t, f in zip(future, forecast, strict=True)}
            for row in np.flatnonzero(np.asarray(wanted, dtype=object) == key):
                value = by_time.get(_time_key(times[row]))
                if value is None:
                    raise BadInput(
                        f"Time {_show_time(times[row])} in row {row} is not a forecast time of "
                        f"{'series ' + repr(key) if self.series_id else 'the series'}: the model forecasts the "
                        f"{self.horizon} steps after its training data, {_show_time(future[0])} to "
                        f"{_show_time(future[-1])} (every {self.freq}). Retrain on newer data to forecast later times.",
                    )
                out[row] = value
        return out


def _request_times(column: pd.Series, *, numeric: bool) -> np.ndarray[Any, Any]:
    """A request's times as the tail's: numbers, or naive UTC datetime64 from ISO-8601 text or dates."""
    try:
        if numeric:
            return pd.to_numeric(column).to_numpy(dtype=float)
        parsed = pd.to_datetime(column, format="ISO8601" if column.dtype == object else None)
        if getattr(parsed.dt, "tz", None) is not None:
            parsed = parsed.dt.tz_convert("UTC").dt.tz_localize(None)
        return parsed.to_numpy(dtype="datetime64[ns]")
    except (ValueError, TypeError) as exc:
        raise BadInput(f"Cannot read the times to forecast: {exc}. Use ISO-8601 dates or numbers.") from exc


def _time_key(value: Any) -> Any:
    if isinstance(value, float | int | np.number):
        return round(float(value), 9)
    return np.datetime64(value, "ns").astype(np.int64).item()


def _show_time(value: Any) -> str:
    if isinstance(value, float | int | np.number):
        return f"{float(value):g}"
    return str(np.datetime64(value, "s")).replace("T00:00:00", "")


def _keep_tail(data: pd.DataFrame, forecaster: Forecaster) -> tuple[list[Any], np.ndarray[Any, Any], list[Any]]:
    """The last ``lags`` values and the last time of each series: what forecasting from the end needs."""
    keys, last_times, tails = [], [], []
    for key, unsorted in _series(data, forecaster.series_id):
        group = unsorted.sort_values(forecaster.time_column)
        keys.append(key.item() if isinstance(key, np.generic) else key)
        last_times.append(group[forecaster.time_column].to_numpy()[-1])
        tails.append(group[forecaster.target].to_numpy(dtype=float)[-forecaster.lags :].copy())
    return keys, np.asarray(last_times), tails


def prepare_forecast(
    frame: pd.DataFrame,
    target: str,
    time_column: str | None,
    series_id: str | None,
    horizon: int | None,
    folds: int,
) -> ForecastData:
    """Check the data and build the feature table with rolling-origin folds.

    Raises:
        BadInput: no time column or horizon, a non-numeric target, times that do not parse.
        NotFound: an unknown time or series column.
        ValidationFailed: duplicate times in a series, series too short for the horizon.
    """
    columns = [str(c) for c in frame.columns]
    if not time_column:
        raise BadInput("Forecasting needs --time-column: the column holding each row's time.")
    if not horizon or horizon < 1:
        raise BadInput(f"Forecasting needs --horizon, a number of steps ≥ 1; got {horizon!r}.")
    for name, role in ((time_column, "time"), (series_id, "series id")):
        if name is not None and name not in frame.columns:
            raise NotFound(f"No {role} column {name!r}.{did_you_mean(name, columns)} Columns: {', '.join(columns)}.")
    y = frame[target]
    if not pd.api.types.is_numeric_dtype(y.dtype) or pd.api.types.is_bool_dtype(y.dtype):
        raise BadInput(f"Forecasting needs a numeric target; {target!r} holds {y.dtype} values.", target=target)
    keep = [time_column, target] + ([series_id] if series_id else [])
    data = frame[keep].dropna(subset=[time_column, target])
    try:
        data[time_column] = _times(data[time_column])
    except (ValueError, TypeError) as exc:
        raise BadInput(f"Cannot read the times in {time_column!r}: {exc}. Use ISO-8601 dates or numbers.") from exc
    duplicated = data.duplicated(subset=[c for c in (series_id, time_column) if c])
    if duplicated.any():
        row = data[duplicated].iloc[0]
        raise ValidationFailed(
            f"Time {row[time_column]} appears more than once{' in series ' + repr(row[series_id]) if series_id else ''}"
            "; aggregate to one value per time first.",
        )
    first = next(iter(_series(data, series_id)))[1].sort_values(time_column)[time_column]
    freq = _frequency(first)
    season = _season(freq)
    lags = int(min(max(season, 7), 60))
    windows = tuple(sorted({min(3, lags), min(max(season, 7), lags), lags}))
    forecaster = Forecaster(time_column, target, series_id, int(horizon), freq, season, lags, windows)
    parts, labels, origins, baseline = _table(data, forecaster)
    if not parts:
        raise ValidationFailed(
            f"The series are too short: forecasting {horizon} steps with {lags} lags needs at least "
            f"{lags + int(horizon) + 1} values per series.",
        )
    x = pd.concat(parts, ignore_index=True)
    y_all = np.concatenate(labels)
    origin_times = np.concatenate(origins)
    target_times = pd.to_datetime(x.pop("_target_time")).to_numpy() if "_target_time" in x else None
    fold_list, cutoffs = _rolling_folds(origin_times, target_times, x, int(horizon), folds)
    if not fold_list:
        raise ValidationFailed(
            f"Not enough history for rolling-origin validation of a {horizon}-step horizon; give longer series "
            "or a shorter --horizon.",
        )
    validation = (
        f"rolling-origin: {len(fold_list)} forecast origins ({', '.join(str(c)[:19] for c in cutoffs)}), "
        f"each validated on the next {horizon} steps and trained only on what came before"
    )
    forecaster.tail = _keep_tail(data, forecaster)
    return ForecastData(
        x,
        y_all - x["level"].to_numpy(),
        fold_list,
        np.concatenate(baseline) - x["level"].to_numpy(),
        x["level"].to_numpy(),
        forecaster,
        forecaster.example(),
        validation,
    )


def _table(data: pd.DataFrame, forecaster: Forecaster) -> tuple[list[Any], list[Any], list[Any], list[Any]]:
    """Feature rows, labels, origin times and seasonal-naive forecasts of every (series, origin, step)."""
    parts, labels, origins, baseline = [], [], [], []
    for key, unsorted in _series(data, forecaster.series_id):
        group = unsorted.sort_values(forecaster.time_column)
        values = group[forecaster.target].to_numpy(dtype=float)
        times = group[forecaster.time_column].to_numpy()
        origin_idx, steps = [], []
        for h in range(1, forecaster.horizon + 1):
            o = np.arange(forecaster.lags - 1, len(values) - h)
            origin_idx.append(o)
            steps.append(np.full(len(o), h))
        o_all, h_all = np.concatenate(origin_idx), np.concatenate(steps)
        if len(o_all) == 0:
            continue
        rows = _features(values, o_all, h_all, list(times[o_all + h_all]), forecaster, key)
        parts.append(rows)
        labels.append(values[o_all + h_all])
        origins.append(times[o_all])
        baseline.append(rows["seasonal_naive"].to_numpy() + rows["level"].to_numpy())
    return parts, labels, origins, baseline


def _series(frame: pd.DataFrame, series_id: str | None) -> Any:
    if series_id is None:
        return [(None, frame)]
    return list(frame.groupby(series_id, sort=True))


def _times(column: pd.Series) -> np.ndarray[Any, Any]:
    if pd.api.types.is_numeric_dtype(column.dtype):
        return column.to_numpy()
    return pd.to_datetime(column, format="ISO8601" if column.dtype == object else None).to_numpy()


def _frequency(times: pd.Series) -> Any:
    if pd.api.types.is_numeric_dtype(times.dtype):
        diffs = np.diff(times.to_numpy())
        return float(np.median(diffs)) if len(diffs) else 1.0
    index = pd.DatetimeIndex(times)
    if len(index) >= 3:
        with pd.option_context("future.infer_freq_returns_offset", True):
            inferred = pd.infer_freq(index[: min(len(index), 500)])
        if inferred is not None:
            return str(getattr(inferred, "freqstr", inferred))
    return pd.Timedelta(np.median(np.diff(index.asi8)), unit="ns")


def _season(freq: Any) -> int:  # noqa: PLR0911 - one answer per frequency
    """Steps per season: a week of days, a day of hours, a year of weeks, months or quarters."""
    if isinstance(freq, str):
        if freq[:1].isdigit():  # "2D", "15min": no natural season
            return 1
        base = freq.split("-")[0]
        if base.startswith("min"):
            return _SEASONS["min"]
        for prefix in ("h", "D", "B", "W", "M", "Q"):
            if base.upper().startswith(prefix.upper()):
                return _SEASONS[prefix]
        return 1
    if isinstance(freq, pd.Timedelta):
        if freq == pd.Timedelta(hours=1):
            return 24
        if freq == pd.Timedelta(days=1):
            return 7
        if freq == pd.Timedelta(days=7):
            return 52
    return 1


def _step(origin: Any, freq: Any, h: int) -> Any:
    if isinstance(freq, float | int):
        return origin + freq * h
    offset = pd.tseries.frequencies.to_offset(freq) if isinstance(freq, str) else freq
    return (pd.Timestamp(origin) + h * offset).to_datetime64()


def _features(
    values: np.ndarray[Any, Any],
    origins: np.ndarray[Any, Any],
    steps: np.ndarray[Any, Any],
    target_times: list[Any],
    forecaster: Forecaster,
    key: Any,
) -> pd.DataFrame:
    lags, season = forecaster.lags, forecaster.season
    columns: dict[str, Any] = {"h": steps.astype(float)}
    for k in range(lags):
        columns[f"lag_{k + 1}"] = values[origins - k]
    cumsum = np.concatenate([[0.0], np.cumsum(values)])
    cumsq = np.concatenate([[0.0], np.cumsum(values**2)])
    for w in forecaster.windows:
        total = cumsum[origins + 1] - cumsum[origins + 1 - w]
        mean = total / w
        columns[f"mean_{w}"] = mean
        var = (cumsq[origins + 1] - cumsq[origins + 1 - w]) / w - mean**2
        columns[f"std_{w}"] = np.sqrt(np.clip(var, 0, None))
    back = season * np.ceil(steps / season).astype(int)
    columns["seasonal_naive"] = values[origins + steps - back]
    level_window = max(season, min(7, lags))
    level = (cumsum[origins + 1] - cumsum[origins + 1 - level_window]) / level_window
    for name in [*(f"lag_{k + 1}" for k in range(lags)), *(f"mean_{w}" for w in forecaster.windows), "seasonal_naive"]:
        columns[name] = columns[name] - level
    columns["level"] = level
    frame = pd.DataFrame(columns)
    if target_times and not isinstance(target_times[0], float | int | np.number):
        when = pd.DatetimeIndex(pd.to_datetime(target_times))
        frame["month"] = when.month.astype(float)
        frame["dayofweek"] = when.day_of_week.astype(float)
        frame["dayofyear"] = when.day_of_year.astype(float)
        frame["hour"] = when.hour.astype(float)
        frame["_target_time"] = when
    if forecaster.series_id is not None:
        frame["series"] = str(key)
    return frame


def _rolling_folds(
    origin_times: np.ndarray[Any, Any],
    target_times: np.ndarray[Any, Any] | None,
    x: pd.DataFrame,
    horizon: int,
    folds: int,
) -> tuple[list[tuple[np.ndarray[Any, Any], np.ndarray[Any, Any]]], list[Any]]:
    unique = np.unique(origin_times)
    if target_times is None:  # numeric times: the target time is the origin plus h steps
        step = np.median(np.diff(unique)) if len(unique) > 1 else 1
        target_times = origin_times + x["h"].to_numpy() * step
    result, cutoffs = [], []
    for k in range(folds, 0, -1):
        position = len(unique) - horizon - (k - 1) * horizon  # the latest origins with all steps known
        if position < 0:
            continue
        cutoff = unique[position]
        val = np.flatnonzero(origin_times == cutoff)
        train = np.flatnonzero(target_times <= cutoff)
        if len(train) >= 20 and len(val):
            result.append((train, val))
            cutoffs.append(cutoff)
    return result, cutoffs
