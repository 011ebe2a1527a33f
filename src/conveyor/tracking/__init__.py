"""Tracking: experiments and runs with parameters, metrics by step, tags, artifacts, inputs and outputs.

Reached as ``ws.runs``. ``run.log_*`` calls return at once; a background writer stores them in batches
(``_writer``). ``ws.runs.search`` takes a filter expression and an ordering and runs indexed SQL
(``_search``).
"""

from conveyor.tracking._runs import (
    ActiveRun,
    Artifact,
    Comparison,
    Experiment,
    Metric,
    Run,
    RunPage,
    Tracking,
)

__all__ = ["ActiveRun", "Artifact", "Comparison", "Experiment", "Metric", "Run", "RunPage", "Tracking"]
