"""The studio in a real browser: Playwright driving Debian's Chromium (headless) against a real server. Log in,
open a run and see its chart drawn, move an alias, compute a model card, change a traffic split, open the
monitors; basic accessibility checked with axe-core on each page. Screenshots land in the test's folder."""

from __future__ import annotations

import os
import shutil
import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest

from conveyor.workspace import Workspace
from tests.api_client import token_for

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")


def _need_chromium() -> str:
    if CHROMIUM is None:
        message = "Chromium is not installed (apt-get install -y chromium); the studio's browser tests need it"
        if os.environ.get("CI", "").lower() == "true":
            pytest.fail(message)
        pytest.skip(message)
    return CHROMIUM


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Workspace, str, str]]:
    """A workspace with a run, two model versions, a running endpoint with two deployments and a monitor, served
    by uvicorn on a free loopback port."""
    import uvicorn
    from sklearn.linear_model import LogisticRegression

    from conveyor.api import create_app

    ws = Workspace.open(tmp_path_factory.mktemp("browser") / "ws")
    rng = np.random.default_rng(1)
    frame = pd.DataFrame({"x": rng.normal(size=300), "z": rng.normal(size=300)})
    frame["y"] = (frame["x"] > 0).astype(int)
    import pyarrow as pa

    data, _ = ws.data.commit_table(pa.Table.from_pandas(frame), name="train", source={"kind": "test"})
    with ws.runs.start("studio", name="fit") as run:
        run.log_input(data)
        run.log_params({"target": "y"})
        for step in range(10):
            run.log_metric("loss", 1.0 / (step + 1), step=step)
        run.log_model(LogisticRegression().fit(frame[["x", "z"]], frame["y"]), input_example=frame[["x", "z"]].head(5))
    ws.models.register_from_run(run.id, "m")
    ws.models.register_from_run(run.id, "m")
    ws.models.set_alias("m", "champion", 1)
    ws.endpoints.create("e", collect=1.0)
    ws.endpoints.deploy("e", "m:1", deployment="blue")
    ws.endpoints.deploy("e", "m:2", deployment="green", traffic=0)
    ws.monitors.create("watch", "e", reference=None, signals=["drift"], window="1h")
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    server = uvicorn.Server(uvicorn.Config(create_app(ws), log_level="warning", lifespan="off"))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    deadline = time.monotonic() + 20
    while not server.started and time.monotonic() < deadline:
        time.sleep(0.05)
    yield ws, f"http://127.0.0.1:{port}", run.id
    server.should_exit = True
    thread.join(10)
    ws.endpoints.delete("e")
    ws.close()


def _accessible(page: Any, name: str) -> None:
    from axe_playwright_python.sync_playwright import Axe

    results = Axe().run(page)
    serious = [v for v in results.response["violations"] if v.get("impact") in ("serious", "critical")]
    assert not serious, f"{name}: " + "; ".join(f"{v['id']}: {v['help']}" for v in serious)


def test_a_person_logs_in_reads_charts_moves_an_alias_and_splits_traffic(served, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    from playwright.sync_api import sync_playwright

    executable = _need_chromium()
    ws, base, run_id = served
    token_for(ws, "admin", user="browser-admin")
    ws.identities.set_password("browser-admin", "correct horse battery")
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=executable, headless=True, args=["--no-sandbox"])
        page = browser.new_page()
        page.goto(f"{base}/runs/{run_id}")
        assert "/login" in page.url  # no session yet
        page.get_by_label("User name").fill("browser-admin")
        page.get_by_label("Password").fill("correct horse battery")
        page.get_by_role("button", name="Log in").click()
        page.wait_for_url(f"{base}/runs/{run_id}")
        page.wait_for_selector(".js-plotly-plot")
        traces = page.evaluate("() => document.querySelector('.js-plotly-plot').data.length")
        points = page.evaluate("() => document.querySelector('.js-plotly-plot').data[0].y.length")
        assert traces == 1 and points == 10  # the loss curve is drawn, every step
        page.screenshot(path=str(tmp_path / "run.png"), full_page=True)
        _accessible(page, "run page")

        page.goto(f"{base}/models/m:2")
        page.get_by_role("button", name="Point it at version 2").click()
        page.wait_for_url(f"{base}/models/m:2")
        assert ws.models.get("m@champion").version == 2
        assert "@champion" in page.content()
        page.screenshot(path=str(tmp_path / "model.png"), full_page=True)
        _accessible(page, "model page")

        page.get_by_role("link", name="Model card →").click()
        page.get_by_label("Owner").fill("studio tests")
        page.get_by_role("button", name="Compute").click()
        page.wait_for_selector("#importance.js-plotly-plot")
        assert page.evaluate("() => document.getElementById('importance').data[0].y.length") == 2  # x and z
        assert "studio tests" in page.content()
        page.screenshot(path=str(tmp_path / "card.png"), full_page=True)
        _accessible(page, "model card")

        for _ in range(5):
            ws.endpoints.invoke("e", [{"x": 0.2, "z": -1.0}])
        page.goto(f"{base}/endpoints/e")
        assert "Traffic since the endpoint started" in page.content()  # from the endpoint's own /metrics
        page.get_by_label("traffic of blue").fill("70")
        page.get_by_label("traffic of green").fill("30")
        page.get_by_role("button", name="Apply the split").click()
        page.wait_for_url(f"{base}/endpoints/e")
        assert ws.endpoints.get("e").traffic == {"blue": 70, "green": 30}
        for _ in range(5):
            ws.endpoints.invoke("e", [{"x": 0.2, "z": -1.0}])
        # The live chart polls every 2 s: after two looks it draws requests/s and p95 for each deployment.
        page.wait_for_function("() => (document.getElementById('live').data || []).length >= 2", timeout=15_000)
        page.screenshot(path=str(tmp_path / "endpoint.png"), full_page=True)
        _accessible(page, "endpoint page")

        for path in ("/", "/runs", "/models", "/monitors", "/monitors/watch"):
            page.goto(base + path)
            assert page.locator("h1").count() == 1
            _accessible(page, path)
        page.screenshot(path=str(tmp_path / "monitors.png"), full_page=True)

        page.keyboard.press("Tab")  # keyboard focus reaches the first link
        assert page.evaluate("() => document.activeElement.tagName") == "A"
        browser.close()
    assert all((tmp_path / f"{n}.png").stat().st_size > 1000 for n in ("run", "model", "card", "endpoint", "monitors"))
