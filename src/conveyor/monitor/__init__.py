"""Monitoring: drift metrics behind one contract, drift between two data sets, and reference profiles computed
once out of core and stored with model versions.

Reached as ``ws.monitors``: monitors of endpoints compute drift, data-quality, prediction and performance signals
over windows of collected requests, on demand or on a schedule, store each result, send alerts (log, webhook,
email) and start retraining pipelines.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from conveyor import _lazy

if TYPE_CHECKING:
    from conveyor.monitor._columns import Column
    from conveyor.monitor._drift import ColumnDrift, DriftReport, Table, compute_drift
    from conveyor.monitor._metrics import (
        CategoricalSketch,
        DriftMetric,
        NumericSketch,
        Score,
        default_metric,
        drift_metrics,
        get_metric,
    )
    from conveyor.monitor._monitors import Alert, Monitor, MonitorResult, MonitorScheduler, parse_window
    from conveyor.monitor._profile import Profile, build_profile
    from conveyor.monitor._service import Monitors
    from conveyor.monitor._signals import DEFAULT_THRESHOLDS, PERFORMANCE_METRICS, SIGNALS

__all__ = [
    "DEFAULT_THRESHOLDS",
    "PERFORMANCE_METRICS",
    "SIGNALS",
    "Alert",
    "CategoricalSketch",
    "Column",
    "ColumnDrift",
    "DriftMetric",
    "DriftReport",
    "Monitor",
    "MonitorResult",
    "MonitorScheduler",
    "Monitors",
    "NumericSketch",
    "Profile",
    "Score",
    "Table",
    "build_profile",
    "compute_drift",
    "default_metric",
    "drift_metrics",
    "get_metric",
    "parse_window",
]

_HOME = {
    "Column": "_columns",
    "ColumnDrift": "_drift",
    "DriftReport": "_drift",
    "Table": "_drift",
    "compute_drift": "_drift",
    "CategoricalSketch": "_metrics",
    "DriftMetric": "_metrics",
    "NumericSketch": "_metrics",
    "Score": "_metrics",
    "default_metric": "_metrics",
    "drift_metrics": "_metrics",
    "get_metric": "_metrics",
    "Alert": "_monitors",
    "Monitor": "_monitors",
    "MonitorResult": "_monitors",
    "MonitorScheduler": "_monitors",
    "parse_window": "_monitors",
    "Profile": "_profile",
    "build_profile": "_profile",
    "Monitors": "_service",
    "DEFAULT_THRESHOLDS": "_signals",
    "PERFORMANCE_METRICS": "_signals",
    "SIGNALS": "_signals",
}


def __getattr__(name: str) -> Any:
    return _lazy.load(__name__, _HOME, name)


def __dir__() -> list[str]:
    return sorted(__all__)
