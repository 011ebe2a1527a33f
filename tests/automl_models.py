"""One small AutoML model per task, trained once per test session and shared by the tests that deploy,
score and export what AutoML ships (training them is the slow part)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

if TYPE_CHECKING:
    from conveyor import Workspace


def tabular(rows: int = 400, seed: int = 5) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    frame = pd.DataFrame(
        {
            "size": rng.normal(50, 10, rows),
            "rooms": rng.integers(1, 6, rows).astype(float),
            "kind": rng.choice(["flat", "house", "loft"], rows),
        }
    )
    frame["price"] = 3 * frame["size"] + 10 * frame["rooms"] + np.where(frame["kind"] == "house", 40, 0)
    frame["price"] += rng.normal(0, 5, rows)
    frame["dear"] = np.where(frame["price"] > frame["price"].median(), "yes", "no")
    return frame


def weekly_sales(weeks: int = 120) -> pd.DataFrame:
    rng = np.random.default_rng(2)
    parts = []
    for store, base in (("north", 100.0), ("south", 60.0)):
        t = pd.date_range("2022-01-02", periods=weeks, freq="W-SUN")
        y = base + 0.3 * np.arange(weeks) + 8 * np.sin(np.arange(weeks) * 2 * np.pi / 52) + rng.normal(0, 1, weeks)
        parts.append(pd.DataFrame({"store": store, "week": t.strftime("%Y-%m-%d"), "sales": y}))
    return pd.concat(parts, ignore_index=True)


def train_one_per_task(ws: Workspace) -> Any:
    """Register ``clf``, ``reg`` and ``fc`` (forecasting, 4 weeks ahead); returns the forecasting result."""
    frame = tabular()
    # A linear learner finishes trials even on a busy machine; what is tested is the model AutoML wraps it in.
    quick: dict[str, Any] = {"time_budget": 10, "learners": ["linear"]}
    ws.train.automl(frame.drop(columns=["price"]), "dear", task="classification", **quick, register="clf")
    ws.train.automl(frame.drop(columns=["dear"]), "price", task="regression", **quick, register="reg")
    return ws.train.automl(
        weekly_sales(),
        "sales",
        task="forecasting",
        time_column="week",
        series_id="store",
        horizon=4,
        **quick,
        register="fc",
    )
