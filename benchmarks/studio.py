"""The studio's pages with a big workspace: 100,000 runs, 1,000 model versions, 100 endpoints.

Each page is requested through the real app in this process (FastAPI's test client: routing, the session check,
the service calls, template rendering; no network), 30 times after 3 warm-up requests; the figure is each page's
p95 server time. The runs pages must stay under 150 ms, every page under 300 ms. No peer: MLflow's UI renders in
the browser from its REST API, so there is no server page to time side by side.
"""

from __future__ import annotations

import statistics
import time
from typing import Any

from benchmarks._harness import Context, Result, Side

RUNS, VERSIONS, ENDPOINTS, SAMPLES = 100_000, 1_000, 100, 30
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


def run(ctx: Context) -> Result:
    from fastapi.testclient import TestClient

    from conveyor import Workspace
    from conveyor.api import create_app

    pages: dict[str, list[float]] = {}
    fills: list[dict[str, float]] = []
    for i in range(ctx.repeat):
        with Workspace.open(ctx.work / f"ws-{i}") as ws:
            fills.append(_fill(ws))
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
            }
            for label, url in urls.items():
                for _ in range(3):
                    assert client.get(url).status_code == 200, url
                samples = []
                for _ in range(SAMPLES):
                    started = time.perf_counter()
                    answer = client.get(url)
                    samples.append((time.perf_counter() - started) * 1000)
                    assert answer.status_code == 200
                pages.setdefault(label, []).append(statistics.quantiles(samples, n=20)[18])  # p95
    worst = {label: max(values) for label, values in pages.items()}
    slowest = max(worst, key=lambda label: worst[label])
    runs_ok = all(v <= RUNS_TARGET_MS for label, v in worst.items() if label.startswith("/runs"))
    conveyor = Side(
        "Conveyor studio",
        [max(values) for values in zip(*pages.values(), strict=True)],
        "ms",
        {
            **{f"p95 {label}": ", ".join(f"{v:.1f} ms" for v in values) for label, values in pages.items()},
            "filling (untimed)": "; ".join(
                f"{k} {statistics.median(f[k] for f in fills):.1f} s" for k in ("runs", "versions", "endpoints")
            ),
        },
    )
    return Result(
        name="studio-pages",
        title="Studio pages with 100,000 runs, 1,000 model versions and 100 endpoints (p95 server time)",
        conveyor=conveyor,
        peer=None,
        better="lower",
        target=f"every page ≤ {PAGE_TARGET_MS:.0f} ms, runs pages ≤ {RUNS_TARGET_MS:.0f} ms (p95)",
        met=worst[slowest] <= PAGE_TARGET_MS and runs_ok,
        notes=[
            f"The figure is the slowest page's p95 ({slowest}). {SAMPLES} requests per page after 3 warm-up "
            "requests, through the real app in one process (routing, session check, services, templates).",
            "SQLite; 100,000 finished runs with 3 params, a tag and 2 metrics each, written straight into the "
            "tables as the tracking benchmark does; 50 models × 20 versions; 100 endpoints created, not started.",
        ],
    )
