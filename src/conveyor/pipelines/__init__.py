"""Pipelines: DAGs of steps (Python functions or SQL) with caching, retries, timeouts and parallel execution
on local worker processes or a Dask cluster. Reached as ``ws.pipelines``.

Define steps with :func:`step` and pipelines with :func:`pipeline` (or in YAML, ``conveyor apply -f``).
Registered pipelines run by themselves on schedules (:class:`Schedule`: cron, or new data versions) fired by
the :class:`Scheduler`, or when something calls ``ws.pipelines.trigger`` (an alert, say).
"""

from conveyor.pipelines._definition import DataRef, Node, Param, Pipeline, Step, data, pipeline, sql_step, step
from conveyor.pipelines._executors import Executor, LocalExecutor, make_executor
from conveyor.pipelines._schedule import Fired, Schedule, Scheduler
from conveyor.pipelines._service import PipelineInfo, PipelineRun, Pipelines, StepRun
from conveyor.pipelines._spec import PIPELINE_SCHEMA
from conveyor.pipelines._task import StepContext, current_step

__all__ = [
    "PIPELINE_SCHEMA",
    "DataRef",
    "Executor",
    "Fired",
    "LocalExecutor",
    "Node",
    "Param",
    "Pipeline",
    "PipelineInfo",
    "PipelineRun",
    "Pipelines",
    "Schedule",
    "Scheduler",
    "Step",
    "StepContext",
    "StepRun",
    "current_step",
    "data",
    "make_executor",
    "pipeline",
    "sql_step",
    "step",
]
