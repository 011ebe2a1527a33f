"""Conveyor's side of the tracking benchmarks (run in a fresh process). Prints one JSON object.

python -m benchmarks._tracking_side log-metric HOME N
python -m benchmarks._tracking_side log-batch HOME BATCHES SIZE
python -m benchmarks._tracking_side search HOME RUNS QUERIES [DB_URL]
"""

from __future__ import annotations

import json
import random
import statistics
import sys
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

LEARNERS = ["lgbm", "xgboost", "rf", "extra_trees", "linear", "hgb"]


def log_metric(home: Path, n: int) -> dict[str, float]:
    from conveyor import Workspace

    with Workspace.open(home) as ws:
        with ws.runs.start("bench") as run:
            run.log_metric("warm-up", 0.0)
            run.flush()
            started = time.perf_counter()
            for i in range(n):
                run.log_metric("loss", 1.0 / (i + 1), step=i)
            calls = time.perf_counter() - started
            run.flush()  # timed until every value is stored
            seconds = time.perf_counter() - started
        assert len(ws.runs.metric_history(run.id, "loss")) == n
    return {"seconds": seconds, "calls_seconds": calls, "values": n, "per_second": n / seconds}


def log_batch(home: Path, batches: int, size: int) -> dict[str, float]:
    from conveyor import Workspace

    with Workspace.open(home) as ws:
        with ws.runs.start("bench") as run:
            run.log_metric("warm-up", 0.0)
            run.flush()
            started = time.perf_counter()
            for b in range(batches):
                run.log_batch(metrics=[(f"m{i % 10}", float(i), b * size + i) for i in range(size)])
            run.flush()
            seconds = time.perf_counter() - started
        assert len(ws.runs.metric_history(run.id, "m0")) == batches * size // 10
    total = batches * size
    return {"seconds": seconds, "values": total, "per_second": total / seconds}


def populate(ws: object, runs: int) -> float:
    """Write ``runs`` finished runs straight into the tables (the same generator as MLflow's side)."""
    import sqlalchemy as sa

    from conveyor.store._schema import (
        ExperimentRow,
        RunLatestMetricRow,
        RunParamRow,
        RunRow,
        RunTagRow,
        new_id,
    )

    rng = random.Random(7)
    started = time.perf_counter()
    base = datetime.now(UTC) - timedelta(seconds=runs)
    with ws.store.write() as session:  # type: ignore[attr-defined]
        experiment = ExperimentRow(name="bench", created_by="bench")
        session.add(experiment)
        session.flush()
        run_rows, params, tags, metrics = [], [], [], []
        for i in range(runs):
            run_id = new_id()
            start = base + timedelta(seconds=i)
            run_rows.append(
                {
                    "id": run_id,
                    "experiment_id": experiment.id,
                    "name": f"trial-{i}",
                    "status": "finished",
                    "started_at": start,
                    "ended_at": start + timedelta(milliseconds=500),
                    "created_at": start,
                    "created_by": "bench",
                }
            )
            learner = LEARNERS[rng.randrange(len(LEARNERS))]
            params += [
                {"run_id": run_id, "key": "learner", "value": learner},
                {"run_id": run_id, "key": "lr", "value": repr(round(rng.uniform(0.001, 0.3), 4))},
                {"run_id": run_id, "key": "depth", "value": str(rng.randrange(2, 12))},
            ]
            tags.append({"run_id": run_id, "key": "team", "value": rng.choice(["risk", "growth", "ops"])})
            auc, loss = rng.uniform(0.5, 1.0), rng.uniform(0.1, 2.0)
            metrics += [
                {"run_id": run_id, "key": "auc", "value": auc, "step": 0, "timestamp": start},
                {"run_id": run_id, "key": "loss", "value": loss, "step": 0, "timestamp": start},
            ]
        for table, rows in (
            (RunRow, run_rows),
            (RunParamRow, params),
            (RunTagRow, tags),
            (RunLatestMetricRow, metrics),
        ):
            for chunk in range(0, len(rows), 50_000):
                session.execute(sa.insert(table), rows[chunk : chunk + 50_000])
    with ws.store.engine.connect() as conn:  # type: ignore[attr-defined]  # fresh statistics, as after real use
        conn.execute(sa.text("ANALYZE"))
        conn.commit()
    return time.perf_counter() - started


def search(home: Path, runs: int, queries: int, db_url: str | None = None) -> dict[str, object]:
    from conveyor import Workspace

    with Workspace.open(home, db_url=db_url) as ws:
        seconds = populate(ws, runs)
        results: dict[str, object] = {"populate_seconds": seconds, "backend": ws.store.dialect}
        for name, expression, order_by in (
            ("metric", "metrics.auc > 0.8 and params.learner = 'lgbm'", ["metrics.auc desc"]),
            ("params", "params.learner = 'rf' and tags.team = 'risk'", ["started_at desc"]),
        ):
            samples, found = [], 0
            for _ in range(queries):
                t = time.perf_counter()
                page = ws.runs.search(expression, experiments=["bench"], order_by=order_by, max_results=100)
                samples.append(time.perf_counter() - t)
                found = len(page.runs)
            results[name] = {
                "median_ms": statistics.median(samples) * 1000,
                "samples_ms": [s * 1000 for s in samples],
                "returned": found,
            }
    return results


if __name__ == "__main__":
    mode, home = sys.argv[1], Path(sys.argv[2])
    rest = sys.argv[3:]
    if mode == "search":
        out = search(home, int(rest[0]), int(rest[1]), rest[2] if len(rest) > 2 else None)
    elif mode == "log-metric":
        out = log_metric(home, int(rest[0]))
    else:
        out = log_batch(home, int(rest[0]), int(rest[1]))
    print(json.dumps(out))
