"""Tracking: logging throughput against MLflow on SQLite, and search over 100,000 runs.

Each sample is a fresh process and a fresh store on both sides, sides alternating. Conveyor's logging time
runs from the first call until every value is stored (``run.flush()``), so buffering does not flatter it.
"""

from __future__ import annotations

import json
import shutil
import statistics
import sys
import uuid

from benchmarks._harness import BENCH_DIR, ROOT, Context, Result, Side, timed

LOG_METRIC_CALLS = 3_000
BATCHES, BATCH_SIZE = 100, 1_000  # MLflow's log_batch takes at most 1,000 metrics per call
SEARCH_RUNS, SEARCH_QUERIES = 100_000, 15
PEER_SEARCH_QUERIES = 3  # MLflow takes seconds per search at this size
PG_ADMIN_URL = "postgresql+psycopg://postgres@127.0.0.1:5432/postgres"


def _conveyor(ctx: Context, *args: str) -> dict[str, object]:
    _, out = timed([sys.executable, "-m", "benchmarks._tracking_side", *args], env={"PYTHONPATH": str(ROOT)}, cwd=ROOT)
    return dict(json.loads(out))


def _mlflow(ctx: Context, *args: str) -> dict[str, object]:
    script = BENCH_DIR / "peers" / "mlflow_tracking.py"
    _, out = timed([str(ctx.peer_python()), str(script), *args], env={"MLFLOW_TRACKING_URI": ""}, cwd=ctx.work)
    return dict(json.loads(out.strip().splitlines()[-1]))


def _fresh(ctx: Context, name: str) -> str:
    path = ctx.work / name
    shutil.rmtree(path, ignore_errors=True)
    return str(path)


def run_log_metric(ctx: Context) -> Result:
    ours, theirs, calls = [], [], []
    version = ""
    for i in range(ctx.repeat):
        c = _conveyor(ctx, "log-metric", _fresh(ctx, f"c-{i}"), str(LOG_METRIC_CALLS))
        ours.append(float(c["per_second"]))  # type: ignore[arg-type]
        calls.append(float(c["calls_seconds"]) * 1e6 / LOG_METRIC_CALLS)  # type: ignore[arg-type]
        m = _mlflow(ctx, "log-metric", _fresh(ctx, f"m-{i}"), str(LOG_METRIC_CALLS))
        theirs.append(float(m["per_second"]))  # type: ignore[arg-type]
        version = str(m["mlflow"])
    conveyor = Side(
        "Conveyor (SQLite)",
        ours,
        "values/s",
        {"time inside log_metric per call (µs)": ", ".join(f"{c:.1f}" for c in calls)},
    )
    peer = Side(f"MLflow {version} (SQLite)", theirs, "values/s")
    ratio = conveyor.median / peer.median
    return Result(
        name="tracking-log-metric",
        title=f"One-at-a-time log_metric, {LOG_METRIC_CALLS:,} calls (SQLite)",
        conveyor=conveyor,
        peer=peer,
        better="higher",
        target="≥ 50× MLflow",
        met=ratio >= 50,
        notes=[
            f"{LOG_METRIC_CALLS:,} calls of `run.log_metric('loss', v, step=i)` in one run; values per second from "
            "the first call until every value is stored (Conveyor: `run.flush()` returns; MLflow writes "
            "synchronously). A fresh process and SQLite file per sample, median of "
            f"{ctx.repeat}, sides alternating.",
            "Conveyor's calls only validate and buffer; a background thread commits batches (one chunk row per "
            "metric per batch). SIGKILL can lose at most the last ~0.1 s; crashes, Ctrl+C and SIGTERM flush.",
        ],
    )


def run_log_batch(ctx: Context) -> Result:
    ours, theirs = [], []
    version = ""
    for i in range(ctx.repeat):
        c = _conveyor(ctx, "log-batch", _fresh(ctx, f"c-{i}"), str(BATCHES), str(BATCH_SIZE))
        ours.append(float(c["per_second"]))  # type: ignore[arg-type]
        m = _mlflow(ctx, "log-batch", _fresh(ctx, f"m-{i}"), str(BATCHES // 5), str(BATCH_SIZE))
        theirs.append(float(m["per_second"]))  # type: ignore[arg-type]
        version = str(m["mlflow"])
    conveyor = Side("Conveyor (SQLite)", ours, "values/s")
    peer = Side(f"MLflow {version} (SQLite)", theirs, "values/s")
    ratio = conveyor.median / peer.median
    return Result(
        name="tracking-log-batch",
        title=f"Batched logging, batches of {BATCH_SIZE:,} metrics (SQLite)",
        conveyor=conveyor,
        peer=peer,
        better="higher",
        target="≥ 20× MLflow log_batch",
        met=ratio >= 20,
        notes=[
            f"Conveyor: {BATCHES} calls of `run.log_batch(metrics=[(key, value, step)] × {BATCH_SIZE:,})` over 10 "
            f"keys, timed until stored. MLflow: `MlflowClient.log_batch` with {BATCH_SIZE:,} `Metric`s per call "
            f"(its maximum), {BATCHES // 5} calls (it is slow enough that fewer calls give a stable rate). "
            f"Values per second, fresh process and SQLite file per sample, median of {ctx.repeat}.",
        ],
    )


def _postgres_database() -> str | None:
    try:
        import sqlalchemy as sa

        admin = sa.create_engine(PG_ADMIN_URL, isolation_level="AUTOCOMMIT")
        name = f"conveyor_bench_{uuid.uuid4().hex[:10]}"
        with admin.connect() as conn:
            conn.execute(sa.text(f'CREATE DATABASE "{name}"'))
        admin.dispose()
        return name
    except Exception:  # PostgreSQL is optional for the benchmark
        return None


def _drop_database(name: str) -> None:
    import sqlalchemy as sa

    admin = sa.create_engine(PG_ADMIN_URL, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(sa.text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
    admin.dispose()


def run_search(ctx: Context) -> Result:
    sqlite_metric, sqlite_params, pg_metric, pg_params, peer_metric, peer_params = [], [], [], [], [], []
    version = ""
    populate: dict[str, list[float]] = {"Conveyor SQLite": [], "Conveyor PostgreSQL": [], "MLflow SQLite": []}
    for i in range(ctx.repeat):
        c = _conveyor(ctx, "search", _fresh(ctx, f"c-{i}"), str(SEARCH_RUNS), str(SEARCH_QUERIES))
        sqlite_metric.append(float(c["metric"]["median_ms"]))  # type: ignore[index]
        sqlite_params.append(float(c["params"]["median_ms"]))  # type: ignore[index]
        populate["Conveyor SQLite"].append(float(c["populate_seconds"]))  # type: ignore[arg-type]
        database = _postgres_database()
        if database is not None:
            try:
                url = f"postgresql+psycopg://postgres@127.0.0.1:5432/{database}"
                p = _conveyor(ctx, "search", _fresh(ctx, f"p-{i}"), str(SEARCH_RUNS), str(SEARCH_QUERIES), url)
                pg_metric.append(float(p["metric"]["median_ms"]))  # type: ignore[index]
                pg_params.append(float(p["params"]["median_ms"]))  # type: ignore[index]
                populate["Conveyor PostgreSQL"].append(float(p["populate_seconds"]))  # type: ignore[arg-type]
            finally:
                _drop_database(database)
        m = _mlflow(ctx, "search", _fresh(ctx, f"m-{i}"), str(SEARCH_RUNS), str(PEER_SEARCH_QUERIES))
        peer_metric.append(float(m["metric"]["median_ms"]))  # type: ignore[index]
        peer_params.append(float(m["params"]["median_ms"]))  # type: ignore[index]
        populate["MLflow SQLite"].append(float(m["populate_seconds"]))  # type: ignore[arg-type]
        version = str(m["mlflow"])

    def fmt(samples: list[float]) -> str:
        return ", ".join(f"{s:.1f} ms" for s in samples) if samples else "not measured (PostgreSQL unreachable)"

    conveyor = Side(
        "Conveyor (SQLite)",
        sqlite_metric,
        "ms",
        {
            "PostgreSQL, same query": fmt(pg_metric),
            "second query (params + tag filter, newest first), SQLite": fmt(sqlite_params),
            "second query, PostgreSQL": fmt(pg_params),
            "writing the 100,000 runs (untimed set-up)": "; ".join(
                f"{k}: {statistics.median(v):.1f} s" for k, v in populate.items() if v
            ),
        },
    )
    peer = Side(
        f"MLflow {version} (SQLite, `search_runs`)",
        peer_metric,
        "ms",
        {"second query": fmt(peer_params)},
    )
    worst = max([conveyor.median, statistics.median(pg_metric) if pg_metric else 0.0])
    met = worst <= 100 and bool(pg_metric)
    return Result(
        name="tracking-search",
        title=f"Search {SEARCH_RUNS:,} runs: `metrics.auc > 0.8 and params.learner = 'lgbm'` by auc, 100 per page",
        conveyor=conveyor,
        peer=peer,
        better="lower",
        target="median ≤ 100 ms on SQLite and on PostgreSQL",
        met=met,
        notes=[
            f"{SEARCH_RUNS:,} finished runs in one experiment, each with 3 params (learner of 6, lr, depth), 1 tag "
            "(team of 3) and 2 metrics (auc, loss), written straight into each side's tables with the same "
            "generator (seed 7) so that set-up does not dominate; then the query is timed "
            f"{SEARCH_QUERIES} times (MLflow: {PEER_SEARCH_QUERIES}, as each takes seconds) in the same process "
            f"and the median taken (one sample per fresh store; median of {ctx.repeat}).",
            "Timed: the whole search call returning 100 complete runs (params, metrics, tags, artifacts, inputs). "
            "The second query (`params.learner = 'rf' and tags.team = 'risk'`, newest first) is reported too.",
            "Conveyor walks the (key, value, run_id) index of the latest-metric table in order and checks each "
            "run's other conditions by primary key until the page is full.",
        ],
    )
