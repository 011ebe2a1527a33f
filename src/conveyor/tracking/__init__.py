"""Tracking: experiments and runs with parameters, metrics by step, tags, artifacts and inputs.

Reached as ``ws.runs``. Later: the buffered background writer, search expressions, compare and charts.
"""

from conveyor.tracking._runs import ActiveRun, Artifact, Metric, Run, Tracking

__all__ = ["ActiveRun", "Artifact", "Metric", "Run", "Tracking"]
