"""The quickstart: the whole lifecycle on a synthetic churn data set, as calls into the services."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from conveyor import _lazy

if TYPE_CHECKING:
    from conveyor.quickstart._churn import TARGET, make_churn_frame
    from conveyor.quickstart._lifecycle import QuickstartResult, Stage, run_quickstart
    from conveyor.quickstart._pipeline import churn_pipeline

__all__ = ["TARGET", "QuickstartResult", "Stage", "churn_pipeline", "make_churn_frame", "run_quickstart"]

_HOME = {
    "TARGET": "_churn",
    "make_churn_frame": "_churn",
    "QuickstartResult": "_lifecycle",
    "Stage": "_lifecycle",
    "run_quickstart": "_lifecycle",
    "churn_pipeline": "_pipeline",
}


def __getattr__(name: str) -> Any:
    return _lazy.load(__name__, _HOME, name)


def __dir__() -> list[str]:
    return sorted(__all__)
