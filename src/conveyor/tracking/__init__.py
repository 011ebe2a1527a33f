"""Tracking: experiments and runs with parameters, metrics by step, tags, artifacts, inputs and outputs.

Reached as ``ws.runs``. ``run.log_*`` calls return at once; a background writer stores them in batches
(``_writer``). ``ws.runs.search`` takes a filter expression and an ordering and runs indexed SQL
(``_search``).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from conveyor import _lazy

if TYPE_CHECKING:
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

_HOME = {
    "ActiveRun": "_runs",
    "Artifact": "_runs",
    "Comparison": "_runs",
    "Experiment": "_runs",
    "Metric": "_runs",
    "Run": "_runs",
    "RunPage": "_runs",
    "Tracking": "_runs",
}


def __getattr__(name: str) -> Any:
    return _lazy.load(__name__, _HOME, name)


def __dir__() -> list[str]:
    return sorted(__all__)
