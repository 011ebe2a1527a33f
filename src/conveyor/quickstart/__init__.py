"""The quickstart: the whole lifecycle on a synthetic churn data set, as calls into the services."""

from conveyor.quickstart._churn import TARGET, make_churn_frame
from conveyor.quickstart._lifecycle import QuickstartResult, Stage, run_quickstart
from conveyor.quickstart._pipeline import churn_pipeline

__all__ = ["TARGET", "QuickstartResult", "Stage", "churn_pipeline", "make_churn_frame", "run_quickstart"]
