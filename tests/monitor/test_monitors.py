"""Monitors of endpoints: definitions checked, signals over windows of collected requests, results as a time series,
alerts sent (log, webhook with retries, email through a real SMTP server), feedback joined by request id, and the
scheduler running due monitors once."""

from __future__ import annotations

import email
import http.server
import json
import socket
import threading
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import numpy as np
import pandas as pd
import pyarrow as pa
import pytest

from conveyor.errors import BadInput, Conflict, NotFound
from conveyor.monitor import DEFAULT_THRESHOLDS, MonitorScheduler, parse_window
from conveyor.monitor._signals import performance_metrics


class Hook:
    """A real HTTP receiver on loopback: answers the statuses queued (then 200) and keeps every body."""

    def __init__(self, statuses: list[int] | None = None, delay: float = 0.0) -> None:
        self.statuses = list(statuses or [])
        self.bodies: list[dict[str, Any]] = []
        hook = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                length = int(self.headers.get("content-length", 0))
                hook.bodies.append(json.loads(self.rfile.read(length)))
                time.sleep(delay)
                status = hook.statuses.pop(0) if hook.statuses else 200
                self.send_response(status)
                self.send_header("content-length", "0")
                self.end_headers()

            def log_message(self, *_: Any) -> None:
                pass

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/hook"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def hook() -> Iterator[Hook]:
    receiver = Hook()
    yield receiver
    receiver.close()


def _training(n: int = 3_000, seed: int = 0) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    frame = pd.DataFrame(
        {
            "x": rng.normal(0, 1, n),
            "z": rng.normal(5, 2, n),
            "plan": np.array(["basic", "plus", "pro"])[rng.choice(3, n)],
        }
    )
    frame["y"] = (frame["x"] + rng.normal(0, 0.3, n) > 0).astype(int)
    return frame


def _collected(frame: pd.DataFrame, *, start: float, model: str = "m:1", prefix: str = "r") -> pa.Table:
    """Rows as an endpoint's collector stores them (one request per row)."""
    n = len(frame)
    return pa.table(
        {
            "request_id": [f"{prefix}{i}" for i in range(n)],
            "row": [0] * n,
            "ts": [start + i * 0.01 for i in range(n)],
            "deployment": ["blue"] * n,
            "model": [model] * n,
            "prediction": frame["y"].astype("int64").tolist(),
            "x": frame["x"].tolist(),
            "z": frame["z"].tolist(),
            "plan": frame["plan"].tolist(),
        }
    )


@pytest.fixture
def watched(workspace):  # type: ignore[no-untyped-def]
    """An endpoint that collects (not started: its collected asset is written as the collector writes it) and the
    training data version as the monitors' reference."""
    data, _ = workspace.data.commit_table(pa.Table.from_pandas(_training()), name="train", source={"kind": "test"})
    workspace.endpoints.create("e", collect=1.0)
    yield workspace, data
    for endpoint in workspace.endpoints.list():
        workspace.endpoints.delete(endpoint.name)


def test_windows_read_as_durations() -> None:
    assert [parse_window(w) for w in ("90s", "15m", "1h", "1d", "2w", "3600", 60)] == [
        90, 900, 3600, 86400, 1209600, 3600, 60,
    ]  # fmt: skip
    for bad in ("", "1y", "-5m", "0s", "91d", "1h30"):
        with pytest.raises(BadInput):
            parse_window(bad)


def test_a_monitor_definition_is_checked_before_it_is_stored(watched, tmp_path) -> None:  # type: ignore[no-untyped-def]
    ws, data = watched
    ws.endpoints.create("quiet")  # collects nothing
    with pytest.raises(BadInput, match="does not collect its requests.*--collect 0.1"):
        ws.monitors.create("w", "quiet")
    with pytest.raises(NotFound):
        ws.monitors.create("w", "nope")
    cases: list[tuple[dict[str, Any], str]] = [
        ({"signals": ["drift", "accuracy"]}, "Unknown signal 'accuracy'"),
        ({"signals": []}, "at least one signal"),
        ({"window": "1y"}, "not a duration"),
        ({"schedule": "every hour"}, "not a cron expression"),
        ({"timezone": "Mars/Base"}, "Unknown timezone"),
        ({"alerts": ["slack:#ops"]}, "Unknown alert channel"),
        ({"alerts": ["webhook:file:///etc/passwd"]}, "not an http"),
        ({"alerts": ["webhook:http://user:pw@127.0.0.1/h"]}, "must not carry a user or password"),
        ({"alerts": ["email:nobody"]}, "not an email address"),
        ({"alerts": ["email:ops@example.com"]}, "need an SMTP server"),
        ({"action": "os.system:rm"}, "Unknown action"),
        ({"thresholds": {"drift_shar": 0.3}}, "Unknown threshold 'drift_shar'.*drift_share"),
        ({"thresholds": {"drift_share": 2}}, "must be from"),
        ({"thresholds": {"min": {"acc": 0.8}}}, "Unknown performance metric"),
        ({"thresholds": {"metric": "eval"}}, "metric"),
        ({"reference": str(tmp_path / "ref.csv")}, "not a file"),
    ]
    for options, message in cases:
        with pytest.raises(BadInput, match=message):
            ws.monitors.create("w", "e", **options)
    with pytest.raises(NotFound):
        ws.monitors.create("w", "e", action="retrain:no-such-pipeline")
    with pytest.raises(NotFound):
        ws.monitors.create("w", "e", reference="no-such-data")
    assert ws.monitors.list() == []  # nothing half-made

    made = ws.monitors.create("w", "e", reference="train", window="30m", thresholds={"drift_share": 0.3})
    assert made.reference == data.ref and made.window == "30m" and made.thresholds == {"drift_share": 0.3}
    assert made.effective_thresholds()["min_rows"] == DEFAULT_THRESHOLDS["min_rows"]
    with pytest.raises(Conflict, match="--replace"):
        ws.monitors.create("w", "e")
    again = ws.monitors.create("w", "e", reference="train", window="2h", replace=True)
    assert again.id == made.id and again.window == "2h"
    assert [m.name for m in ws.monitors.list()] == ["w"]
    ws.monitors.delete("w")
    with pytest.raises(NotFound, match="No monitor 'w'"):
        ws.monitors.get("w")


def test_a_run_computes_each_signal_over_its_window_and_alerts_when_the_data_moves(watched, hook) -> None:  # type: ignore[no-untyped-def]
    ws, _ = watched
    hook.statuses = [500, 503]  # delivered at the third attempt
    ws.monitors.create(
        "w",
        "e",
        reference="train",
        signals=["drift", "quality", "prediction"],
        window="1h",
        alerts=["log", f"webhook:{hook.url}"],
    )
    # Nothing collected yet: an empty result that says why.
    empty = ws.monitors.run("w")
    assert empty.status == "empty" and "has collected no requests yet" in empty.message

    # Three windows, two hours apart, ending now (rows are committed after their time, as an endpoint does).
    now = datetime.now(UTC) - timedelta(hours=4)
    normal = _training(400, seed=5)
    ws.data.commit_table(_collected(normal, start=now.timestamp() - 600), name="e_requests", source={"kind": "test"})
    calm = ws.monitors.run("w", now=now)
    assert calm.status == "ok", calm.message
    assert calm.rows == 400 and calm.alert is None
    assert calm.signals["drift"]["share_drifted"] < 0.5 and not calm.signals["quality"]["alert"]
    assert "no predictions" in calm.signals["prediction"]["skipped"]  # a data version reference holds none

    moved = _training(400, seed=6)
    moved["x"] += 3
    moved.loc[moved.index[:200], "z"] = np.nan
    moved["plan"] = "enterprise"
    later = now + timedelta(hours=2)
    ws.data.commit_table(
        _collected(moved, start=later.timestamp() - 600, prefix="d"),
        name="e_requests",
        source={"kind": "test"},
        mode="append",
    )
    result = ws.monitors.run("w", now=later)  # the window holds only the moved rows
    assert result.status == "alert" and result.rows == 400
    # z only lost values (a quality problem); its values that are there did not move.
    assert set(result.signals["drift"]["drifted_columns"]) == {"x", "plan"}
    assert result.signals["note"] == "400 rows in the window (at most 1000): numeric columns by KS"
    problems = " ".join(result.signals["quality"]["problems"])
    assert "z: null share 0.50" in problems and "plan: 100% of values are categories" in problems
    assert "drift in 2 of 3 columns" in result.message
    alert = result.alert
    assert alert is not None and alert.signals == ["drift", "quality"]
    webhook = [d for d in alert.deliveries if d["channel"] == "webhook"]
    assert [(d["attempt"], d["ok"], d["status_code"]) for d in webhook] == [
        (1, False, 500),
        (2, False, 503),
        (3, True, 200),
    ]
    assert [d["ok"] for d in alert.deliveries if d["channel"] == "log"] == [True]
    assert hook.bodies[-1]["alert_id"] == alert.id and hook.bodies[-1]["signals"] == ["drift", "quality"]
    logged = (ws.settings.home / "logs" / "alerts.jsonl").read_text().splitlines()
    assert json.loads(logged[-1])["monitor"] == "w"

    history = ws.monitors.history("w")
    assert [r.status for r in history] == ["alert", "ok", "empty"]  # newest first: the time series
    assert history[0].alert is not None and history[0].alert.id == alert.id
    assert [a.id for a in ws.monitors.alerts("w")] == [alert.id]
    edges = ws.lineage.edges("alert", alert.id, direction="upstream")
    assert [(e.from_kind, e.relation) for e in edges] == [("monitor", "raised")]
    graph = ws.lineage.show("monitor:w", direction="down")
    assert {n.ref for n in graph.nodes} == {"monitor:w", f"alert:{alert.id}"}

    # A window with a single row: drift is not judged on it, and says so.
    single = later + timedelta(hours=2)
    ws.data.commit_table(
        _collected(moved.head(1), start=single.timestamp() - 5, prefix="s"),
        name="e_requests",
        source={"kind": "test"},
        mode="append",
    )
    one = ws.monitors.run("w", now=single)
    assert one.rows == 1 and "drift needs at least 30" in one.signals["drift"]["skipped"]


def test_a_webhook_that_keeps_failing_is_retried_then_recorded_and_the_run_still_stores(watched) -> None:  # type: ignore[no-untyped-def]
    ws, _ = watched
    failing = Hook([500] * 10)
    closed = Hook()
    closed.close()  # nothing listens there any more
    try:
        ws.monitors.create(
            "w", "e", reference="train", alerts=[f"webhook:{failing.url}", f"webhook:{closed.url}"], window="1h"
        )
        now = datetime.now(UTC)
        moved = _training(200, seed=7).assign(x=lambda f: f["x"] + 5)
        ws.data.commit_table(_collected(moved, start=now.timestamp() - 60), name="e_requests", source={"kind": "t"})
        result = ws.monitors.run("w", now=now)
    finally:
        failing.close()
    assert result.status == "alert" and result.alert is not None
    by_target: dict[str, list[dict[str, Any]]] = {}
    for d in result.alert.deliveries:
        by_target.setdefault(d["target"], []).append(d)
    assert [d["status_code"] for d in by_target[failing.url]] == [500, 500, 500, 500]
    assert not any(d["ok"] for d in by_target[closed.url]) and len(by_target[closed.url]) == 4
    assert "ConnectError" in by_target[closed.url][0]["error"]


def test_email_alerts_reach_a_real_smtp_server(watched, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    from aiosmtpd.controller import Controller

    ws, _ = watched
    received: list[Any] = []

    class Inbox:
        async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
            received.append(envelope)
            return "250 OK"

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    controller = Controller(Inbox(), hostname="127.0.0.1", port=port)
    controller.start()
    try:
        monkeypatch.setenv("CONVEYOR_SMTP_HOST", "127.0.0.1")
        monkeypatch.setenv("CONVEYOR_SMTP_PORT", str(port))
        monkeypatch.setenv("CONVEYOR_SMTP_FROM", "conveyor@test.local")
        ws.monitors.create("w", "e", reference="train", alerts=["email:oncall@example.com"], window="1h")
        now = datetime.now(UTC)
        moved = _training(200, seed=8).assign(x=lambda f: f["x"] - 4)
        ws.data.commit_table(_collected(moved, start=now.timestamp() - 60), name="e_requests", source={"kind": "t"})
        result = ws.monitors.run("w", now=now)
    finally:
        controller.stop()
    assert result.alert is not None
    assert [(d["channel"], d["ok"]) for d in result.alert.deliveries] == [("email", True)]
    assert len(received) == 1 and received[0].rcpt_tos == ["oncall@example.com"]
    message = email.message_from_bytes(received[0].content)
    assert " ".join(message["Subject"].split()) == f"[conveyor] {result.alert.message}"
    assert json.loads(message.get_payload())["alert_id"] == result.alert.id


def test_performance_metrics_equal_scikit_learns() -> None:
    from sklearn import metrics as skm

    rng = np.random.default_rng(3)
    truth = rng.integers(0, 2, 500)
    score = np.clip(truth * 0.6 + rng.random(500) * 0.5, 0, 1)
    predicted = (score > 0.5).astype(int)
    found = performance_metrics(pa.table({"prediction": predicted, "label": truth.astype(float), "score": score}))
    assert found["accuracy"] == pytest.approx(skm.accuracy_score(truth, predicted), abs=1e-12)
    assert found["precision"] == pytest.approx(skm.precision_score(truth, predicted), abs=1e-12)
    assert found["recall"] == pytest.approx(skm.recall_score(truth, predicted), abs=1e-12)
    assert found["roc_auc"] == pytest.approx(skm.roc_auc_score(truth, score), abs=1e-12)
    labels = np.array(["no", "yes"])
    texts = performance_metrics(pa.table({"prediction": labels[predicted], "label": labels[truth]}))
    assert texts["f1"] == pytest.approx(skm.f1_score(truth, predicted), abs=1e-12) and texts["roc_auc"] is None
    y = rng.normal(10, 3, 300)
    guess = y + rng.normal(0, 1, 300)
    regression = performance_metrics(pa.table({"prediction": guess, "label": y}))
    assert regression["mae"] == pytest.approx(skm.mean_absolute_error(y, guess), abs=1e-12)
    assert regression["rmse"] == pytest.approx(np.sqrt(skm.mean_squared_error(y, guess)), abs=1e-12)
    assert regression["r2"] == pytest.approx(skm.r2_score(y, guess), abs=1e-12)


def test_feedback_joins_labels_by_request_id_and_performance_alerts_on_a_fall(watched, tmp_path) -> None:  # type: ignore[no-untyped-def]
    ws, _ = watched
    ws.monitors.create(
        "w", "e", reference="train", signals=["performance"], window="1h", thresholds={"min": {"accuracy": 0.9}}
    )
    now = datetime.now(UTC)
    served = _training(300, seed=9)
    ws.data.commit_table(_collected(served, start=now.timestamp() - 60), name="e_requests", source={"kind": "t"})
    skipped = ws.monitors.run("w", now=now)
    assert skipped.status == "ok" and "no labels were sent yet" in skipped.signals["performance"]["skipped"]

    labels = pd.DataFrame({"request_id": [f"r{i}" for i in range(300)], "churned": served["y"]})
    labels.loc[:59, "churned"] = 1 - labels.loc[:59, "churned"]  # 60 of 300 wrong: accuracy 0.8
    labels.loc[300] = ["never-served", 1]
    path = tmp_path / "labels.csv"
    labels.to_csv(path, index=False)
    stored = ws.monitors.feedback("w", str(path))
    assert (stored["rows"], stored["matched"], stored["unmatched"]) == (301, 300, 1)
    result = ws.monitors.run("w", now=now)
    performance = result.signals["performance"]
    assert performance["labelled"] == 300 and performance["metrics"]["accuracy"] == pytest.approx(0.8)
    assert result.status == "alert" and "accuracy 0.8 < 0.9 (min)" in result.message

    # Later labels for the same requests replace the earlier ones.
    fixed = pd.DataFrame({"request_id": [f"r{i}" for i in range(60)], "churned": served["y"][:60]})
    ws.monitors.feedback("w", fixed)
    assert ws.monitors.run("w", now=now).signals["performance"]["metrics"]["accuracy"] == pytest.approx(1.0)

    for bad, message in [
        (pd.DataFrame({"id": ["r1"], "y": [1]}), "no 'request_id' column"),
        (pd.DataFrame({"request_id": ["r1"], "a": [1], "b": [2]}), "Name the label column"),
        (pd.DataFrame({"request_id": ["r1"], "y": [None]}), "holds no labels"),
        (pd.DataFrame({"request_id": ["r1"], "row": ["first"], "y": [1]}), "whole numbers"),
        (pd.DataFrame({"request_id": ["r1"], "y": ["yes"]}), "do not match the type"),
        (pd.DataFrame({"request_id": [], "y": []}), "no rows"),
    ]:
        with pytest.raises(BadInput, match=message):
            ws.monitors.feedback("w", bad)


def test_the_scheduler_runs_a_due_monitor_once_however_many_schedulers_look(watched) -> None:  # type: ignore[no-untyped-def]
    ws, _ = watched
    ws.monitors.create("w", "e", reference="train", schedule="*/5 * * * *", window="1h")
    ws.monitors.create("manual", "e", reference="train", window="1h")
    made = ws.monitors.get("w").created_at
    due = made.replace(minute=made.minute - made.minute % 5, second=0, microsecond=0) + timedelta(minutes=10)
    first, second = MonitorScheduler(ws), MonitorScheduler(ws)
    assert [r.monitor for r in first.tick(due)] == ["w"]
    assert second.tick(due) == []  # already run for this time
    assert first.tick(due + timedelta(minutes=1)) == []  # next cron time not reached
    ran = second.tick(due + timedelta(minutes=5))
    assert [(r.monitor, r.trigger) for r in ran] == [("w", "schedule")]
    assert [r.trigger for r in ws.monitors.history("w")] == ["schedule", "schedule"]
    assert ws.monitors.history("manual") == []


def test_a_served_model_is_watched_against_its_own_profile_end_to_end(workspace, hook) -> None:  # type: ignore[no-untyped-def]
    """Through a real endpoint: requests with the caller's ids are collected with their rows, probabilities and
    predictions; the monitor compares them with the model's reference profile and labels join by id."""
    from sklearn.linear_model import LogisticRegression

    ws = workspace
    frame = _training(2_000)
    data, _ = ws.data.commit_table(pa.Table.from_pandas(frame), name="train", source={"kind": "test"})
    inputs = frame[["x", "z"]]
    model = LogisticRegression().fit(inputs, frame["y"])
    with ws.runs.start("train") as run:
        run.log_input(data)
        run.log_model(model, input_example=inputs.head(20))
        trained = float(model.score(inputs, frame["y"]))
        run.log_metrics({"test_accuracy": trained})
    ws.models.register_from_run(run.id, "m")
    ws.endpoints.create("e", collect=1.0)
    try:
        ws.endpoints.deploy("e", "m:1")
        endpoint = ws.endpoints.get("e")
        key = ws.endpoints.keys("e")["primary"]
        served = _training(300, seed=11)
        shifted = served.assign(x=served["x"] + 2.5)
        with httpx.Client(base_url=str(endpoint.url), headers={"authorization": f"Bearer {key}"}, timeout=30) as c:
            for i in range(0, 300, 3):
                body = shifted[["x", "z"]].iloc[i : i + 3].to_dict(orient="records")
                answer = c.post("/predict", json=body, headers={"x-request-id": f"req-{i}"})
                assert answer.status_code == 200 and answer.headers["x-request-id"] == f"req-{i}"
                assert set(answer.json()) == {"predictions", "model", "deployment"}  # no probabilities unasked
        ws.endpoints.stop("e")  # the workers flush what they collected
        ws.monitors.create("w", "e", signals=["drift", "prediction", "performance"], alerts=[f"webhook:{hook.url}"])
        labels = pd.DataFrame(
            {
                "request_id": [f"req-{i - i % 3}" for i in range(300)],
                "row": [i % 3 for i in range(300)],
                "y": served["y"],
            }
        )
        assert ws.monitors.feedback("w", labels)["matched"] == 300
        result = ws.monitors.run("w")
    finally:
        ws.endpoints.delete("e")
    assert result.rows == 300 and result.signals["reference"] == "model:m:1"
    assert result.signals["drift"]["drifted_columns"] == ["x"]
    assert result.signals["prediction"]["alert"] is True  # x moved, so did the predictions
    metrics = result.signals["performance"]["metrics"]
    expected = (model.predict(shifted[["x", "z"]]) == served["y"]).mean()
    assert metrics["accuracy"] == pytest.approx(expected)
    assert metrics["roc_auc"] is not None  # the positive class's probability was kept with each collected row
    # No bounds given: the accuracy is judged against the model's own test figure, and it fell.
    assert result.signals["performance"]["baseline"] == {"accuracy": pytest.approx(trained)}
    assert f"accuracy {expected:.4g}, down from {trained:.4g} at training" in result.message
    assert result.status == "alert" and hook.bodies and hook.bodies[-1]["monitor"] == "w"


def test_the_cli_creates_runs_shows_and_deletes_a_monitor(watched, cli, tmp_path) -> None:  # type: ignore[no-untyped-def]
    ws, _ = watched
    home = str(ws.settings.home)
    made = cli(
        "--home", home, "monitor", "create", "w", "--endpoint", "e", "--reference", "train", "--window", "1h",
        "--signals", "drift,quality,performance", "--threshold", "drift_share=0.3", "--min", "accuracy=0.9",
        "--schedule", "0 * * * *", "--json",
    )  # fmt: skip
    assert made.code == 0, made.err
    body = made.json
    assert body["thresholds"]["drift_share"] == 0.3 and body["thresholds"]["min"] == {"accuracy": 0.9}
    assert body["schedule"] == "0 * * * *" and body["next_at"] is not None
    bad = cli("--home", home, "monitor", "create", "v", "-e", "e", "--threshold", "drift_share")
    assert bad.code == 2 and "KEY=VALUE" in bad.err
    unknown = cli("--home", home, "monitor", "create", "v", "-e", "e", "--signals", "drfit")
    assert unknown.code == 2 and "Did you mean 'drift'" in unknown.err

    now = datetime.now(UTC)
    moved = _training(300, seed=12).assign(x=lambda f: f["x"] + 4)
    ws.data.commit_table(_collected(moved, start=now.timestamp() - 60), name="e_requests", source={"kind": "t"})
    labels = tmp_path / "labels.csv"
    pd.DataFrame({"request_id": [f"r{i}" for i in range(300)], "y": 1 - moved["y"]}).to_csv(labels, index=False)
    sent = cli("--home", home, "monitor", "feedback", "w", str(labels), "--json")
    assert sent.code == 0, sent.err
    assert sent.json["matched"] == 300
    ran = cli("--home", home, "monitor", "run", "w", "--fail-on-alert")
    assert ran.code == 1 and "drift" in ran.out and "accuracy 0" in ran.out
    listed = cli("--home", home, "monitor", "list", "--json").json["monitors"]
    assert [(m["name"], m["last_status"]) for m in listed] == [("w", "alert")]
    shown = cli("--home", home, "monitor", "show", "w")
    assert shown.code == 0 and "last run" in shown.out and "alert" in shown.out
    page = tmp_path / "history.html"
    history = cli("--home", home, "monitor", "history", "w", "--html", str(page), "--json")
    assert [r["status"] for r in history.json["results"]] == ["alert"]
    text = page.read_text()
    assert "Drift over time" in text and "Performance over time" in text
    assert "<script src=" not in text and "Plotly.newPlot" in text  # Plotly's code is embedded: works offline
    alerts = cli("--home", home, "monitor", "alerts", "w", "--json").json["alerts"]
    assert len(alerts) == 1 and alerts[0]["deliveries"][0]["channel"] == "log"
    lineage = cli("--home", home, "lineage", "show", "monitor:w", "--json")
    assert lineage.code == 0, lineage.err
    assert cli("--home", home, "monitor", "delete", "w").code == 0
    gone = cli("--home", home, "monitor", "show", "w")
    assert gone.code != 0 and "No monitor 'w'" in gone.err


def test_rest_monitors_follow_the_permission_matrix_and_guard_webhooks(watched) -> None:  # type: ignore[no-untyped-def]
    from tests.api_client import api_client

    ws, _ = watched
    reader, operator, admin = api_client(ws, "reader"), api_client(ws, "operator"), api_client(ws, "admin")
    spec = {"name": "w", "endpoint": "e", "reference": "train", "window": "1h"}
    assert reader.post("/api/v1/monitors", json=spec).status_code == 403
    private = operator.post("/api/v1/monitors", json={**spec, "alerts": ["webhook:http://127.0.0.1:9/hook"]})
    assert (
        private.status_code == 403 and "Only an admin may point a webhook there" in private.json()["error"]["message"]
    )
    assert (
        admin.post("/api/v1/monitors", json={**spec, "alerts": ["webhook:http://127.0.0.1:9/hook"]}).status_code == 201
    )
    made = operator.post("/api/v1/monitors", json={**spec, "replace": True})
    assert made.status_code == 201, made.text
    assert made.json()["alerts"] == ["log"]
    bad = operator.post("/api/v1/monitors", json={**spec, "name": "v", "window": "forever"})
    assert bad.status_code == 400 and "not a duration" in bad.json()["error"]["message"]

    now = datetime.now(UTC)
    ws.data.commit_table(
        _collected(_training(100, seed=13), start=now.timestamp() - 60), name="e_requests", source={"kind": "t"}
    )
    assert reader.post("/api/v1/monitors/w/run").status_code == 403
    ran = operator.post("/api/v1/monitors/w/run")
    assert ran.status_code == 200 and ran.json()["rows"] == 100
    labels = {"labels": [{"request_id": f"r{i}", "y": 1} for i in range(100)]}
    assert reader.post("/api/v1/monitors/w/feedback", json=labels).status_code == 403
    fed = operator.post("/api/v1/monitors/w/feedback", json=labels)
    assert fed.status_code == 200 and fed.json()["matched"] == 100
    empty = operator.post("/api/v1/monitors/w/feedback", json={"labels": []})
    assert empty.status_code == 400
    assert [r["status"] for r in reader.get("/api/v1/monitors/w/history").json()["results"]] == ["ok"]
    assert reader.get("/api/v1/monitors/w/alerts").json()["alerts"] == []
    assert reader.get("/api/v1/monitors/w").json()["last_result"]["rows"] == 100
    assert [m["name"] for m in reader.get("/api/v1/monitors").json()] == ["w"]
    assert reader.get("/api/v1/monitors/nope").status_code == 404
    assert reader.delete("/api/v1/monitors/w").status_code == 403
    assert operator.delete("/api/v1/monitors/w").status_code == 204
    assert api_client(ws, None).get("/api/v1/monitors").status_code == 401


def test_a_webhook_that_times_out_is_retried_and_each_attempt_recorded(watched, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    from conveyor.monitor import _alerts

    ws, _ = watched
    monkeypatch.setattr(_alerts, "TIMEOUT_SECONDS", 0.3)  # a receiver slower than the timeout, without a 40 s test
    monkeypatch.setattr(_alerts, "BACKOFF_SECONDS", (0.05, 0.05, 0.05))
    slow = Hook(delay=1.0)
    try:
        ws.monitors.create("w", "e", reference="train", alerts=[f"webhook:{slow.url}", "log"], window="1h")
        now = datetime.now(UTC)
        moved = _training(200, seed=14).assign(x=lambda f: f["x"] + 5, z=lambda f: f["z"] - 6)
        ws.data.commit_table(_collected(moved, start=now.timestamp() - 60), name="e_requests", source={"kind": "t"})
        result = ws.monitors.run("w", now=now)
    finally:
        slow.close()
    assert result.status == "alert" and result.alert is not None
    webhook = [d for d in result.alert.deliveries if d["channel"] == "webhook"]
    assert [d["attempt"] for d in webhook] == [1, 2, 3, 4] and not any(d["ok"] for d in webhook)
    assert all("ReadTimeout" in d["error"] for d in webhook)
    assert [d["ok"] for d in result.alert.deliveries if d["channel"] == "log"] == [True]  # the others still went


def test_a_window_reads_only_the_parts_committed_since_it_began(watched) -> None:  # type: ignore[no-untyped-def]
    from conveyor.monitor._signals import _recent_digests, read_window

    ws, _ = watched
    start = datetime.now(UTC).timestamp()
    first, _ = ws.data.commit_table(_collected(_training(50, seed=15), start=start - 7200), name="e_requests",
                                    source={"kind": "t"})  # fmt: skip
    time.sleep(0.05)
    since = datetime.now(UTC)
    ws.data.commit_table(
        _collected(_training(30, seed=16), start=start, prefix="n"), name="e_requests", source={"kind": "t"},
        mode="append",
    )  # fmt: skip
    third, _ = ws.data.commit_table(
        _collected(_training(20, seed=17), start=start + 1, prefix="m"), name="e_requests", source={"kind": "t"},
        mode="append",
    )  # fmt: skip
    recent = _recent_digests(ws, "e_requests", since)
    assert recent == [f["digest"] for f in third.files if f not in first.files]  # v2's and v3's parts, in order
    assert len(recent) == 2 and _recent_digests(ws, "nothing", since) is None
    window = read_window(ws, "e", since, datetime.now(UTC) + timedelta(seconds=60))
    assert window is not None and 0 < window.num_rows <= 50
    assert {i[0] for i in window.column("request_id").to_pylist()} <= {"n", "m"}  # none of the old version's rows
