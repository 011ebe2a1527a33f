"""Pipelines: DAGs of steps (Python functions or SQL) with caching, retries, timeouts and parallel execution
on local worker processes or a Dask cluster. Reached as ``ws.pipelines``.

Define steps with :func:`step` and pipelines with :func:`pipeline` (or in YAML, ``conveyor apply -f``).
Registered pipelines run by themselves on schedules (:class:`Schedule`: cron, or new data versions) fired by
the :class:`Scheduler`, or when something calls ``ws.pipelines.trigger`` (an alert, say).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from conveyor import _lazy

if TYPE_CHECKING:
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

_HOME = {
    "DataRef": "_definition",
    "Node": "_definition",
    "Param": "_definition",
    "Pipeline": "_definition",
    "Step": "_definition",
    "data": "_definition",
    "pipeline": "_definition",
    "sql_step": "_definition",
    "step": "_definition",
    "Executor": "_executors",
    "LocalExecutor": "_executors",
    "make_executor": "_executors",
    "Fired": "_schedule",
    "Schedule": "_schedule",
    "Scheduler": "_schedule",
    "PipelineInfo": "_service",
    "PipelineRun": "_service",
    "Pipelines": "_service",
    "StepRun": "_service",
    "PIPELINE_SCHEMA": "_spec",
    "StepContext": "_task",
    "current_step": "_task",
}


def __getattr__(name: str) -> Any:
    return _lazy.load(__name__, _HOME, name)


def __dir__() -> list[str]:
    return sorted(__all__)
