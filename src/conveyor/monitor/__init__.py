"""Monitoring: drift metrics behind one contract, and drift between two data sets.

Reached as ``ws.monitors``. Later: reference profiles stored with model versions, data quality and performance
signals, monitors of endpoints with schedules, alerts and retraining actions.
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
from conveyor.monitor._service import Monitors

__all__ = [
    "CategoricalSketch",
    "Column",
    "ColumnDrift",
    "DriftMetric",
    "DriftReport",
    "Monitors",
    "NumericSketch",
    "Score",
    "Table",
    "compute_drift",
    "default_metric",
    "drift_metrics",
    "get_metric",
]
