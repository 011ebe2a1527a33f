"""``conveyor quickstart --loop``: after the lifecycle, the closed loop on a live endpoint.

An endpoint of the quickstart's own (``churn-live``, every request collected) serves the champion; a monitor
watches it with the retraining pipeline ``churn-retrain`` as its action. A period of normal traffic (with its
labels) passes quietly; then the world drifts (prices rise, customers grow price-sensitive): the monitor alerts,
the pipeline retrains on the labelled requests, the challenger beats the champion on held-out requests, runs as a
canary while traffic flows, and is promoted. Every step is timed and printed.
"""

from __future__ import annotations

import contextlib
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import orjson

from conveyor.pipelines import current_step, pipeline, step
from conveyor.quickstart._churn import ID_COLUMN, TARGET, make_churn_frame

if TYPE_CHECKING:
    import pandas as pd

    from conveyor.workspace import Workspace

__all__ = ["LIVE_ENDPOINT", "MONITOR", "LoopResult", "retrain_pipeline", "run_loop"]

LIVE_ENDPOINT = "churn-live"
MONITOR = "churn-live-watch"
RETRAIN = "churn-retrain"
RETRAIN_BUDGET = 8.0  # seconds of AutoML search for the challenger
NORMAL_ROWS = 1_000
DRIFTED_ROWS = 3_000
BATCH = 50
CANARY_SECONDS = 4.0


@step(cache=False)
def retrain(data: str, target: str, seed: int) -> str:
    """AutoML on the labelled requests the monitor hands over; the new version of ``churn`` is registered (the
    loop makes it ``@challenger``)."""
    from conveyor.quickstart._pipeline import EXPERIMENT, MODEL
    from conveyor.registry import infer_signature

    ws = current_step().workspace
    version = ws.data.get(data)
    result = ws.train.automl(
        version, target, time_budget=RETRAIN_BUDGET, experiment=EXPERIMENT, run_name="retrain", seed=seed,
        tags={"source": "quickstart-loop", "pipeline_run": current_step().run_id},
    )  # fmt: skip
    example = result.example
    signature = infer_signature(example, result.model.predict(example.head(50)))
    registered = ws.models.register(MODEL, result.model, run_id=result.run_id, signature=signature)
    print(f"{registered.ref}: {result.best_learner}, held-out ROC AUC {result.test_metrics['roc_auc']:.3f}")
    return registered.ref


@pipeline(name=RETRAIN)
def retrain_pipeline(data: str = "", target: str = TARGET, seed: int = 7) -> None:
    """Retrain the churn model on the endpoint's labelled requests (the monitor's retraining action)."""
    retrain(data, target, seed)


@dataclass
class LoopResult:
    """What the loop did: the alert, the retraining run, the champion before and after, the final traffic."""

    alert: dict[str, Any]
    retraining_run: str | None
    champion_before: str
    champion_after: str
    challenger: str | None
    stage: str
    traffic: dict[str, int]
    timeline: list[dict[str, Any]] = field(default_factory=list)
    seconds: float = 0.0
    alert_to_promotion_seconds: float | None = None

    def to_json(self) -> dict[str, Any]:
        return {
            "alert": self.alert,
            "retraining_run": self.retraining_run,
            "champion_before": self.champion_before,
            "champion_after": self.champion_after,
            "challenger": self.challenger,
            "stage": self.stage,
            "traffic": self.traffic,
            "timeline": self.timeline,
            "seconds": round(self.seconds, 2),
            "alert_to_promotion_seconds": None
            if self.alert_to_promotion_seconds is None
            else round(self.alert_to_promotion_seconds, 2),
        }


def _records(frame: pd.DataFrame) -> list[dict[str, Any]]:
    records: list[dict[str, Any]] = orjson.loads(frame.drop(columns=[TARGET, ID_COLUMN]).to_json(orient="records"))
    return records


class _Traffic:
    """Sends customers to the live endpoint, in batches, each request with its own id; returns the labels."""

    def __init__(self, ws: Workspace) -> None:
        import httpx

        endpoint = ws.endpoints.get(LIVE_ENDPOINT)
        key = ws.endpoints.keys(LIVE_ENDPOINT)["primary"]
        self.client = httpx.Client(base_url=str(endpoint.url), headers={"authorization": f"Bearer {key}"}, timeout=30)

    def send(self, frame: pd.DataFrame, prefix: str) -> list[dict[str, Any]]:
        labels: list[dict[str, Any]] = []
        records = _records(frame)
        truth = frame[TARGET].tolist()
        for start in range(0, len(records), BATCH):
            rid = f"{prefix}-{start}"
            answer = self.client.post("/predict", json=records[start : start + BATCH], headers={"x-request-id": rid})
            answer.raise_for_status()
            labels += [
                {"request_id": rid, "row": i, TARGET: truth[start + i]}
                for i in range(len(records[start : start + BATCH]))
            ]
        return labels

    def close(self) -> None:
        self.client.close()


def _wait_collected(ws: Workspace, rows: int, timeout: float = 30.0) -> None:
    """Until the endpoint's workers have appended ``rows`` requests to the lake (they flush every few seconds)."""
    from conveyor.errors import NotFound

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with contextlib.suppress(NotFound):
            if ws.data.get(f"{LIVE_ENDPOINT}_requests").rows >= rows:
                return
        time.sleep(0.25)
    raise TimeoutError(f"the endpoint did not collect {rows} requests in {timeout:.0f} s")


def run_loop(ws: Workspace, *, seed: int = 7, on_step: Callable[[str, float, str], None] | None = None) -> LoopResult:
    """Run the closed loop (see the module's docstring); ``on_step(name, seconds, summary)`` reports progress."""
    import pandas as pd

    from conveyor.quickstart._pipeline import MODEL

    started = time.perf_counter()
    last = [started]
    timeline: list[dict[str, Any]] = []

    def done(name: str, summary: str) -> None:
        now = time.perf_counter()
        timeline.append({"step": name, "seconds": round(now - last[0], 2), "summary": summary})
        if on_step:
            on_step(name, now - last[0], summary)
        last[0] = now

    ws.pipelines.register(f"{__name__}:retrain_pipeline")
    _clear(ws)
    ws.endpoints.create(LIVE_ENDPOINT, collect=1.0)
    champion = ws.models.get(f"{MODEL}@champion")
    ws.endpoints.deploy(LIVE_ENDPOINT, champion.ref, deployment="blue")
    ws.monitors.create(
        MONITOR, LIVE_ENDPOINT, signals=["drift", "quality", "prediction", "performance"], window="1h",
        alerts=["log"], action=f"retrain:{RETRAIN}",
        retrain={"canary": 20, "canary_seconds": CANARY_SECONDS, "canary_min_requests": 10}, replace=True,
    )  # fmt: skip
    done("live", f"{LIVE_ENDPOINT} serves {champion.ref} (every request collected); monitor {MONITOR} watches it")

    traffic = _Traffic(ws)
    try:
        normal = make_churn_frame(NORMAL_ROWS, seed + 1)
        labels = traffic.send(normal, "normal")
        _wait_collected(ws, NORMAL_ROWS)
        ws.monitors.feedback(MONITOR, pd.DataFrame(labels), label=TARGET)
        calm = ws.monitors.run(MONITOR)
        done("normal", f"{NORMAL_ROWS:,} customers scored and labelled: monitor {calm.status}")

        drifted = make_churn_frame(DRIFTED_ROWS, seed + 2, drift=1.0)
        labels = traffic.send(drifted, "drifted")
        _wait_collected(ws, NORMAL_ROWS + DRIFTED_ROWS)
        ws.monitors.feedback(MONITOR, pd.DataFrame(labels), label=TARGET)
        result = ws.monitors.run(MONITOR)
        alert = result.alert
        alerted = time.perf_counter()
        done("drift", f"prices rose, {DRIFTED_ROWS:,} customers later: monitor {result.status}: {result.message[:160]}")
        if alert is None or not alert.action or alert.action.get("stage") != "training":
            why = (alert.action or {}).get("error") if alert else "no alert was raised"
            raise RuntimeError(f"the loop could not start retraining: {why}")

        promotion = _follow(ws, alert.id, traffic, drifted, done)
    finally:
        traffic.close()
    endpoint = ws.endpoints.get(LIVE_ENDPOINT)
    promoted_at = time.perf_counter()
    return LoopResult(
        alert={"id": alert.id, "signals": alert.signals, "message": alert.message},
        retraining_run=promotion.get("run_id"),
        champion_before=champion.ref,
        champion_after=ws.models.get(f"{MODEL}@champion").ref,
        challenger=promotion.get("challenger"),
        stage=str(promotion.get("stage")),
        traffic=dict(endpoint.traffic),
        timeline=timeline,
        seconds=promoted_at - started,
        alert_to_promotion_seconds=promoted_at - alerted if promotion.get("stage") == "promoted" else None,
    )


def _clear(ws: Workspace) -> None:
    """Remove what an earlier ``--loop`` left (its monitor and live endpoint); refuse to touch an endpoint of
    that name that the quickstart did not make."""
    from conveyor.errors import Conflict, NotFound

    try:
        ws.endpoints.get(LIVE_ENDPOINT)
    except NotFound:
        return
    if not any(m.name == MONITOR for m in ws.monitors.list(LIVE_ENDPOINT)):
        raise Conflict(
            f"An endpoint named {LIVE_ENDPOINT!r} exists that the quickstart did not make; the loop needs that name. "
            f"Delete it (conveyor endpoints delete {LIVE_ENDPOINT}) or run the loop in another workspace (--home)."
        )
    ws.monitors.delete(MONITOR)
    ws.endpoints.delete(LIVE_ENDPOINT)


def _follow(
    ws: Workspace, alert_id: str, traffic: _Traffic, drifted: pd.DataFrame, done: Callable[[str, str], None]
) -> dict[str, Any]:
    """Advance the promotion until it ends, sending traffic while its canary runs."""
    from conveyor.monitor._loop import ACTIVE_STAGES

    seen = 0
    deadline = time.monotonic() + 300
    promotion: dict[str, Any] = {}
    stop = threading.Event()
    sender: threading.Thread | None = None
    try:
        while time.monotonic() < deadline:
            ws.monitors.advance()
            promotion = next((a.action or {} for a in ws.monitors.alerts(MONITOR) if a.id == alert_id), {})
            steps = promotion.get("timeline", [])
            for entry in steps[seen:]:
                done(entry["stage"], entry["message"])
            seen = len(steps)
            if promotion.get("stage") not in ACTIVE_STAGES:
                break
            if promotion.get("stage") == "canary" and sender is None and "deployment" in promotion.get("canary", {}):
                sender = threading.Thread(target=_keep_sending, args=(traffic, drifted, stop), daemon=True)
                sender.start()
            time.sleep(0.5)
    finally:
        stop.set()
        if sender is not None:
            sender.join(10)
    return promotion


def _keep_sending(traffic: _Traffic, frame: pd.DataFrame, stop: threading.Event) -> None:
    records = _records(frame.head(200))
    i = 0
    while not stop.is_set():
        with contextlib.suppress(Exception):
            traffic.client.post("/predict", json=records[i % 200 : i % 200 + 1], headers={"x-request-id": f"live-{i}"})
        i += 1
        time.sleep(0.02)
