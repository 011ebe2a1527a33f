"""Retraining pipelines the loop tests register: each trains on the labelled requests the monitor hands over
(``data``, ``target``) and registers a new version of model ``m``."""

from __future__ import annotations

from typing import Any

from sklearn.linear_model import LogisticRegression

from conveyor.pipelines import current_step, pipeline, step
from tests.monitor.sluggish import Sluggish


def _fit(data: str, target: str, invert: bool = False, slow: bool = False) -> Any:
    ws = current_step().workspace
    version = ws.data.get(data)
    frame = ws.data.to_pandas(data)
    inputs = frame[["x", "z"]]
    labels = 1 - frame[target] if invert else frame[target]  # a bug in the training code
    model = (Sluggish() if slow else LogisticRegression()).fit(inputs, labels)
    with ws.runs.start("retrain") as run:
        run.log_input(version)
        run.log_params({"target": target})
        run.log_model(model, input_example=inputs.head(20))
    return ws.models.register_from_run(run.id, "m").ref


@step(cache=False)
def retrain(data: str, target: str) -> str:
    return str(_fit(data, target, invert=False))


@step(cache=False)
def retrain_inverted(data: str, target: str) -> str:
    return str(_fit(data, target, invert=True))


@step(cache=False)
def retrain_slow(data: str, target: str) -> str:
    return str(_fit(data, target, slow=True))


@step(cache=False)
def fail(data: str, target: str) -> str:
    raise RuntimeError(f"no GPU to retrain on {data}")


@pipeline
def better(data: str = "", target: str = "y"):
    retrain(data, target)


@pipeline
def worse(data: str = "", target: str = "y"):
    retrain_inverted(data, target)


@pipeline
def broken(data: str = "", target: str = "y"):
    fail(data, target)


@pipeline
def slow(data: str = "", target: str = "y"):
    retrain_slow(data, target)
