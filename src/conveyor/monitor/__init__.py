"""Monitoring: drift metrics behind one contract, drift between two data sets, and reference profiles computed
once out of core and stored with model versions.

Reached as ``ws.monitors``. Later: data quality and performance signals, monitors of endpoints with schedules,
alerts and retraining actions.
"""

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
from conveyor.monitor._profile import Profile, build_profile
from conveyor.monitor._service import Monitors

__all__ = [
    "CategoricalSketch",
    "Column",
    "ColumnDrift",
    "DriftMetric",
    "DriftReport",
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
]
