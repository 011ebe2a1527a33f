"""The studio's pages with a big workspace: 100,000 runs, 1,000 model versions, 100 endpoints, on SQLite and on
PostgreSQL, beside MLflow's UI on the same 100,000 runs.

Each page is requested through the real app in this process (FastAPI's test client: routing, the session check,
the service calls, template rendering; no network), 30 times after 3 warm-up requests; the figure is each page's
p95 server time. The runs pages must stay under 150 ms, every page under 300 ms, on both databases.

MLflow's UI renders in the browser from its REST API, so its side is the request its runs table makes:
``POST /ajax-api/2.0/mlflow/runs/search`` (100 runs, newest first; then the next page by its token; then the
same filter as ours) to ``mlflow server`` on the same runs in SQLite, over loopback HTTP with keep-alive.
"""

from __future__ import annotations

import json
import socket
import statistics
import subprocess
import time
from pathlib import Path
from typing import Any

from benchmarks._harness import BENCH_DIR, Context, Result, Side, ensure_peer_environment, timed

RUNS, VERSIONS, ENDPOINTS, SAMPLES = 100_000, 1_000, 100, 30
PEER_SAMPLES = 5  # MLflow takes seconds per search at this size: the slowest of 5 after one warm-up
PAGE_TARGET_MS, RUNS_TARGET_MS = 300.0, 150.0


def _fill(ws: Any) -> dict[str, float]:
    import numpy as np
    from sklearn.linear_model import LogisticRegression

    from benchmarks._tracking_side import populate

    timings = {"runs": populate(ws, RUNS)}
    started = time.perf_counter()
    rng = np.random.default_rng(0)
    x = rng.normal(size=(200, 3))
    model = LogisticRegression().fit(x, (x[:, 0] > 0).astype(int))
    for i in range(VERSIONS):
        ws.models.register(f"model-{i % 50}", model)
    ws.models.set_alias("model-0", "champion", 1)
    timings["versions"] = time.perf_counter() - started
    started = time.perf_counter()
    for i in range(ENDPOINTS):
        ws.endpoints.create(f"endpoint-{i}", collect=0.1)
    ws.monitors.create("watch", "endpoint-0", window="1h")
    timings["endpoints"] = time.perf_counter() - started
    return timings


def _p95(get: Any, samples_wanted: int = 0) -> float:
    """p95 of SAMPLES calls of ``get`` (ms) after 3 warm-up calls (fewer of each with ``samples_wanted``: the
    slowest of them then); ``get`` returns a status code."""
    count = samples_wanted or SAMPLES
    for _ in range(3 if not samples_wanted else 1):
        assert get() == 200
    samples = []
    for _ in range(count):
        started = time.perf_counter()
        status = get()
        samples.append((time.perf_counter() - started) * 1000)
        assert status == 200
    return statistics.quantiles(samples, n=20)[18] if len(samples) >= 20 else max(samples)


def _pages(ws: Any) -> dict[str, float]:
    from fastapi.testclient import TestClient

    from conveyor.api import create_app

    client = TestClient(create_app(ws), base_url="http://127.0.0.1")
    token = ws.identities.bootstrap()
    assert token is not None
    client.post("/login", data={"token": token.secret, "next": "/"})
    second = client.get("/runs", params={"format": "json"}).json()["next_page"]
    run_id = client.get("/runs", params={"format": "json"}).json()["runs"][0]["id"]
    urls = {
        "/": "/",
        "/runs (first page)": "/runs",
        "/runs (second page)": f"/runs?page={second}",
        "/runs?q=metrics.auc > 0.9 and params.learner = 'lgbm'&order=metrics.auc desc": (
            "/runs?q=metrics.auc%20%3E%200.9%20and%20params.learner%20%3D%20%27lgbm%27&order=metrics.auc%20desc"
        ),
        "/runs/{id}": f"/runs/{run_id}",
        "/models": "/models",
        "/models/{ref}": "/models/model-0:1",
        "/endpoints": "/endpoints",
        "/endpoints/{name}": "/endpoints/endpoint-0",
        "/monitors": "/monitors",
        "/monitors/{name}": "/monitors/watch",
        "/data": "/data",
    }
    return {label: _p95(lambda url=url: client.get(url).status_code) for label, url in urls.items()}


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _mlflow_runs_table(ctx: Context, work: Path) -> tuple[dict[str, float], str]:
    """p95 of the requests MLflow's runs table makes, against ``mlflow server`` on RUNS runs in SQLite."""
    import httpx

    work.mkdir(parents=True, exist_ok=True)
    _, out = timed(
        [str(ctx.peer_python()), str(BENCH_DIR / "peers" / "mlflow_tracking.py"), "populate", str(work), str(RUNS)],
        env={"MLFLOW_TRACKING_URI": ""},
        cwd=work,
    )
    filled = json.loads(out.strip().splitlines()[-1])
    port = _free_port()
    command = [str(ctx.peer_bin("mlflow")), "server", "--backend-store-uri", f"sqlite:///{work / 'mlflow.db'}"]
    command += ["--default-artifact-root", str(work / "artifacts"), "--host", "127.0.0.1", "--port", str(port)]
    server = subprocess.Popen(
        [*command, "--workers", "1"], cwd=work, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    try:
        base = f"http://127.0.0.1:{port}"
        with httpx.Client(base_url=base, timeout=60) as client:
            deadline = time.monotonic() + 120
            while True:
                try:
                    if client.get("/health").status_code == 200:
                        break
                except httpx.TransportError:
                    pass
                if time.monotonic() > deadline or server.poll() is not None:
                    raise RuntimeError("mlflow server did not start")
                time.sleep(0.5)
            search = "/ajax-api/2.0/mlflow/runs/search"
            body = {
                "experiment_ids": [str(filled["experiment_id"])],
                "run_view_type": "ACTIVE_ONLY",
                "max_results": 100,
                "order_by": ["attributes.start_time DESC"],
            }
            first = client.post(search, json=body).json()
            assert len(first["runs"]) == 100
            filtered = {
                **body,
                "filter": "metrics.auc > 0.9 and params.learner = 'lgbm'",
                "order_by": ["metrics.auc DESC"],
            }
            second = {**body, "page_token": first["next_page_token"]}
            figures = {
                "runs/search (first page)": _p95(lambda: client.post(search, json=body).status_code, PEER_SAMPLES),
                "runs/search (second page)": _p95(lambda: client.post(search, json=second).status_code, PEER_SAMPLES),
                "runs/search (filtered, by auc)": _p95(
                    lambda: client.post(search, json=filtered).status_code, PEER_SAMPLES
                ),
            }
            version = client.get("/version").text.strip()
    finally:
        server.terminate()
        server.wait(30)
    return figures, version


def run(ctx: Context) -> Result:
    from benchmarks.tracking import _drop_database, _postgres_database
    from conveyor import Workspace

    ensure_peer_environment()
    pages: dict[str, dict[str, list[float]]] = {"SQLite": {}, "PostgreSQL": {}}
    fills: dict[str, list[dict[str, float]]] = {"SQLite": [], "PostgreSQL": []}
    peer: dict[str, list[float]] = {}
    version = ""
    for i in range(ctx.repeat):
        with Workspace.open(ctx.work / f"ws-{i}") as ws:
            fills["SQLite"].append(_fill(ws))
            for label, value in _pages(ws).items():
                pages["SQLite"].setdefault(label, []).append(value)
        database = _postgres_database()
        if database is not None:
            try:
                url = f"postgresql+psycopg://postgres@127.0.0.1:5432/{database}"
                with Workspace.open(ctx.work / f"pg-{i}", db_url=url) as ws:
                    fills["PostgreSQL"].append(_fill(ws))
                    for label, value in _pages(ws).items():
                        pages["PostgreSQL"].setdefault(label, []).append(value)
            finally:
                _drop_database(database)
        figures, version = _mlflow_runs_table(ctx, ctx.work / f"mlflow-{i}")
        for label, value in figures.items():
            peer.setdefault(label, []).append(value)
    worst = {(db, label): max(values) for db, found in pages.items() for label, values in found.items()}
    slowest = max(worst, key=lambda key: worst[key])
    runs_ok = all(v <= RUNS_TARGET_MS for (_, label), v in worst.items() if label.startswith("/runs"))
    both = bool(pages["PostgreSQL"])
    details = {
        f"p95 {label} ({db})": ", ".join(f"{v:.1f} ms" for v in values)
        for db, found in pages.items()
        for label, values in found.items()
    }
    details["filling (untimed)"] = "; ".join(
        f"{db}: " + ", ".join(f"{k} {statistics.median(f[k] for f in done):.1f} s" for k in ("runs", "versions"))
        for db, done in fills.items()
        if done
    )
    conveyor = Side("Conveyor studio `/runs` (SQLite)", pages["SQLite"]["/runs (first page)"], "ms", details)
    mlflow = Side(
        f"MLflow {version} UI's runs table request (SQLite)",
        peer["runs/search (first page)"],
        "ms",
        {f"p95 {label}": ", ".join(f"{v:.1f} ms" for v in values) for label, values in peer.items()},
    )
    return Result(
        name="studio-pages",
        title="Studio pages with 100,000 runs, 1,000 model versions and 100 endpoints (p95 server time)",
        conveyor=conveyor,
        peer=mlflow,
        better="lower",
        target=f"every page ≤ {PAGE_TARGET_MS:.0f} ms, runs pages ≤ {RUNS_TARGET_MS:.0f} ms (p95), SQLite and "
        "PostgreSQL",
        met=worst[slowest] <= PAGE_TARGET_MS and runs_ok and both,
        notes=[
            f"The figure is the runs table's first page (p95). The slowest page of all: {slowest[1]} on "
            f"{slowest[0]}, {worst[slowest]:.1f} ms. {SAMPLES} requests per page after 3 warm-up requests, through "
            "the real app in one process (routing, session check, services, templates: the whole HTML page).",
            "100,000 finished runs with 3 params, a tag and 2 metrics each, written straight into the tables as "
            "the tracking benchmark does (the same generator on MLflow's side); 50 models × 20 versions; 100 "
            "endpoints created, not started. PostgreSQL: a fresh database on this machine's server.",
            "MLflow: the REST request its UI's runs table sends (100 runs, newest first), to `mlflow server` "
            "(uvicorn, 1 worker) over loopback HTTP: JSON only, the browser then renders it; ours is the finished "
            f"HTML page. MLflow takes seconds per request at this size, so its figure is the slowest of "
            f"{PEER_SAMPLES} requests after one warm-up, not a p95 of {SAMPLES}.",
        ],
    )
