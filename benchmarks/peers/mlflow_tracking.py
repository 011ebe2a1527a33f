"""The MLflow side of the tracking benchmarks (run in .venv-bench). Prints one JSON object.

mlflow_tracking.py log-metric WORK N          one-at-a-time mlflow.log_metric, N calls
mlflow_tracking.py log-batch WORK BATCHES SIZE MlflowClient.log_batch of SIZE metrics, BATCHES times
mlflow_tracking.py search WORK RUNS QUERIES   RUNS runs written straight into MLflow's SQLite tables
                                              (same generator as Conveyor's side), then search_runs
mlflow_tracking.py populate WORK RUNS         only the writing (the studio benchmark then starts `mlflow server`)
"""

from __future__ import annotations

import json
import random
import sqlite3
import statistics
import sys
import time
import uuid
from pathlib import Path

import mlflow
from mlflow.entities import Metric
from mlflow.tracking import MlflowClient

LEARNERS = ["lgbm", "xgboost", "rf", "extra_trees", "linear", "hgb"]


def tracking(work: Path) -> None:
    work.mkdir(parents=True, exist_ok=True)
    mlflow.set_tracking_uri(f"sqlite:///{work / 'mlflow.db'}")
    mlflow.set_experiment("bench")


def log_metric(work: Path, n: int) -> dict[str, float]:
    tracking(work)
    with mlflow.start_run():
        mlflow.log_metric("warm-up", 0.0)
        started = time.perf_counter()
        for i in range(n):
            mlflow.log_metric("loss", 1.0 / (i + 1), step=i)
        seconds = time.perf_counter() - started
    return {"seconds": seconds, "values": n, "per_second": n / seconds}


def log_batch(work: Path, batches: int, size: int) -> dict[str, float]:
    tracking(work)
    client = MlflowClient()
    with mlflow.start_run() as run:
        client.log_batch(run.info.run_id, metrics=[Metric("warm-up", 0.0, 0, 0)])
        started = time.perf_counter()
        for b in range(batches):
            now = int(time.time() * 1000)
            metrics = [Metric(f"m{i % 10}", float(i), now, b * size + i) for i in range(size)]
            client.log_batch(run.info.run_id, metrics=metrics)
        seconds = time.perf_counter() - started
    total = batches * size
    return {"seconds": seconds, "values": total, "per_second": total / seconds}


def populate(work: Path, runs: int) -> dict[str, object]:
    """RUNS finished runs written straight into MLflow's tables; returns the experiment's id and the time."""
    tracking(work)
    experiment_id = mlflow.get_experiment_by_name("bench").experiment_id
    connection = sqlite3.connect(work / "mlflow.db")
    rng = random.Random(7)
    started = time.perf_counter()
    base = int(time.time() * 1000) - runs * 1000
    run_rows, params, tags, metrics = [], [], [], []
    for i in range(runs):
        run_id = uuid.uuid4().hex
        start = base + i * 1000
        run_rows.append(
            (
                run_id,
                f"trial-{i}",
                "LOCAL",
                "bench",
                "",
                "bench",
                "FINISHED",
                start,
                start + 500,
                None,
                "",
                "active",
                f"file:///tmp/{run_id}",
                experiment_id,
            )
        )
        learner = LEARNERS[rng.randrange(len(LEARNERS))]
        params += [
            ("learner", learner, run_id),
            ("lr", repr(round(rng.uniform(0.001, 0.3), 4)), run_id),
            ("depth", str(rng.randrange(2, 12)), run_id),
        ]
        tags.append(("team", rng.choice(["risk", "growth", "ops"]), run_id))
        auc, loss = rng.uniform(0.5, 1.0), rng.uniform(0.1, 2.0)
        metrics += [("auc", auc, start, run_id, 0, 0), ("loss", loss, start, run_id, 0, 0)]
    connection.executemany(
        "INSERT INTO runs (run_uuid, name, source_type, source_name, entry_point_name, user_id, status, start_time,"
        " end_time, deleted_time, source_version, lifecycle_stage, artifact_uri, experiment_id)"
        " VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?)",
        run_rows,
    )
    connection.executemany("INSERT INTO params (key, value, run_uuid) VALUES (?,?,?)", params)
    connection.executemany("INSERT INTO tags (key, value, run_uuid) VALUES (?,?,?)", tags)
    connection.executemany(
        "INSERT INTO metrics (key, value, timestamp, run_uuid, step, is_nan) VALUES (?,?,?,?,?,?)", metrics
    )
    connection.executemany(
        "INSERT INTO latest_metrics (key, value, timestamp, run_uuid, step, is_nan) VALUES (?,?,?,?,?,?)", metrics
    )
    connection.commit()
    connection.close()
    return {"experiment_id": experiment_id, "populate_seconds": time.perf_counter() - started}


def search(work: Path, runs: int, queries: int) -> dict[str, object]:
    filled = populate(work, runs)
    experiment_id = str(filled["experiment_id"])
    client = MlflowClient()
    results: dict[str, object] = {"populate_seconds": filled["populate_seconds"]}
    for name, filter_string, order_by in (
        ("metric", "metrics.auc > 0.8 and params.learner = 'lgbm'", ["metrics.auc DESC"]),
        ("params", "params.learner = 'rf' and tags.team = 'risk'", ["attributes.start_time DESC"]),
    ):
        samples, found = [], 0
        for _ in range(queries):
            t = time.perf_counter()
            page = client.search_runs([experiment_id], filter_string, order_by=order_by, max_results=100)
            samples.append(time.perf_counter() - t)
            found = len(page)
        results[name] = {
            "median_ms": statistics.median(samples) * 1000,
            "samples_ms": [s * 1000 for s in samples],
            "returned": found,
        }
    return results


if __name__ == "__main__":
    mode, work = sys.argv[1], Path(sys.argv[2])
    args = [int(a) for a in sys.argv[3:]]
    out = {"log-metric": log_metric, "log-batch": log_batch, "search": search, "populate": populate}[mode](work, *args)
    out["mlflow"] = mlflow.__version__
    print(json.dumps(out))
