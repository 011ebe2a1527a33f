"""Steps and pipelines the pipeline tests run (an importable module, as a user's project would have)."""

from __future__ import annotations

import os
import time
from pathlib import Path

import pandas as pd

from conveyor.pipelines import current_step, data, pipeline, sql_step, step


@step
def make_numbers(n: int = 5) -> pd.DataFrame:
    print(f"making {n} numbers")
    return pd.DataFrame({"x": list(range(n))})


@step
def double(frame: pd.DataFrame) -> pd.DataFrame:
    return frame.assign(x=frame.x * 2)


@step
def total(frame: pd.DataFrame) -> int:
    return int(frame.x.sum())


@step
def add(a: int, b: int) -> int:
    return a + b


@step
def explode(frame: pd.DataFrame) -> int:
    raise ValueError(f"cannot handle {len(frame)} rows")


@step(retries=2, retry_backoff=0.05)
def flaky(marker: str) -> str:
    """Fails until it has been tried twice (counted in a file, across worker processes)."""
    path = Path(marker)
    tries = int(path.read_text()) + 1 if path.exists() else 1
    path.write_text(str(tries))
    if tries < 3:
        raise RuntimeError(f"try {tries} fails")
    return f"ok after {tries} tries"


@step(timeout=1.0)
def sleepy(seconds: float) -> str:
    time.sleep(seconds)
    return "woke"


@step(continue_on_failure=True)
def optional_failure(frame: pd.DataFrame) -> int:
    raise RuntimeError("this branch is optional")


@step
def after_optional(value: int) -> int:
    return value


@step
def context_info(value: int) -> dict[str, object]:
    context = current_step()
    return {"node": context.node, "attempt": context.attempt, "pid": os.getpid(), "value": value}


@step
def count_rows(frame: pd.DataFrame) -> int:
    return len(frame)


filter_big = sql_step("filter_big", "SELECT * FROM frame WHERE x >= $threshold", inputs=["frame"])


@pipeline
def numbers(n: int = 5):
    made = make_numbers(n)
    doubled = double(made)
    total(doubled)


@pipeline
def diamond(n: int = 4):
    made = make_numbers(n)
    left = total(double(made))
    right = total(made)
    add(left, right)


@pipeline
def failing():
    made = make_numbers(3)
    explode(made)
    total(made)


@pipeline
def with_branch():
    made = make_numbers(3)
    after_optional(optional_failure(made))
    total(made)


@pipeline
def from_data(threshold: int = 2):
    big = filter_big(data("nums@latest"))
    count_rows(big)


def _square_sum(n: int) -> int:
    return sum(i * i for i in range(n))


@step
def spread(parts: int = 4) -> int:
    """Uses the Dask cluster it runs on to map over partitions."""
    with current_step().dask() as client:
        return int(sum(client.gather(client.map(_square_sum, [1000 + i for i in range(parts)]))))


@pipeline
def partitioned(parts: int = 4):
    spread(parts)


@step
def wait_for(frame: pd.DataFrame, gate: str) -> int:
    """Blocks until the gate file exists (the kill-and-resume test kills the runner meanwhile)."""
    while not Path(gate).exists():
        time.sleep(0.05)
    return len(frame)


@pipeline
def gated_wait(gate: str = "/nonexistent"):
    wait_for(make_numbers(3), gate)
