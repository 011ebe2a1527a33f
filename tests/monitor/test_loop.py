"""The closed loop through a real endpoint and real pipeline runs: an alert retrains, the challenger is compared
with the champion on held-out labelled requests, goes through a canary judged from the endpoint's own metrics and
is promoted; a worse challenger is rejected and a failed retraining leaves the champion in place."""

from __future__ import annotations

import time
from typing import Any

import httpx
import numpy as np
import pandas as pd
import pyarrow as pa
import pytest

from conveyor.errors import BadInput, Conflict
from conveyor.monitor._loop import _quantile, check_loop_options, holdout, traffic_between
from tests.conftest import wait_until


def _frame(n: int, seed: int, concept: str) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    frame = pd.DataFrame({"x": rng.normal(0, 1, n), "z": rng.normal(0, 1, n)})
    driver = frame["x"] if concept == "x" else frame["z"]
    frame["y"] = (driver + rng.normal(0, 0.2, n) > 0).astype(int)
    return frame


def _send(client: httpx.Client, frame: pd.DataFrame, prefix: str) -> list[str]:
    ids = []
    for i in range(0, len(frame), 5):
        rid = f"{prefix}-{i}"
        answer = client.post("/predict", json=frame[["x", "z"]].iloc[i : i + 5].to_dict(orient="records"),
                              headers={"x-request-id": rid})  # fmt: skip
        assert answer.status_code == 200, answer.text
        ids.append(rid)
    return ids


def _labels(frame: pd.DataFrame, prefix: str) -> pd.DataFrame:
    return pd.DataFrame(
        {"request_id": [f"{prefix}-{i - i % 5}" for i in range(len(frame))], "row": [i % 5 for i in range(len(frame))],
         "y": frame["y"]}
    )  # fmt: skip


def _settled(ws: Any, alert_id: str) -> dict[str, Any]:
    """Advance until the promotion leaves the training stage (the detached run ends)."""

    def moved() -> dict[str, Any] | None:
        ws.monitors.advance()
        action = ws.monitors.alerts(ws.monitors.list()[0].name)[0].action
        return None if action.get("stage") == "training" else action

    return wait_until(moved, timeout=120, what="the retraining run to end")


def test_loop_options_and_the_holdout_are_checked_and_stable() -> None:
    assert check_loop_options({"canary": "25", "margin": 0.01}) == {"canary": 25, "margin": 0.01}
    for bad in ({"canary": 0}, {"canary": 100}, {"canry": 10}, {"canary_seconds": "soon"}):
        with pytest.raises(BadInput):
            check_loop_options(bad)
    held = [holdout(f"r{i}", 0) for i in range(5_000)]
    assert 0.17 < sum(held) / len(held) < 0.23  # one in five
    assert held == [holdout(f"r{i}", 0) for i in range(5_000)]  # the same in every process and run


def test_canary_statistics_from_prometheus_counters() -> None:
    before = {"requests": 100.0, "errors": 1.0, "buckets": {"0.005": 90.0, "0.05": 99.0, "+Inf": 100.0}}
    after = {"requests": 300.0, "errors": 21.0, "buckets": {"0.005": 100.0, "0.05": 240.0, "+Inf": 300.0}}
    seen = traffic_between(after, before)
    assert seen["requests"] == 200 and seen["error_rate"] == pytest.approx(0.1)
    # 10 of the 200 within 5 ms, 150 within 50 ms: the median's bucket ends at 50 ms; the p95 is beyond the last
    # finite bound, which is as far as the histogram can tell.
    assert seen["p50"] == 0.05 and seen["p95"] == 0.05 and _quantile({}, 0.95) == 0.0


@pytest.mark.slow
def test_an_alert_retrains_and_the_challenger_is_promoted_through_a_canary(workspace) -> None:  # type: ignore[no-untyped-def]
    from sklearn.linear_model import LogisticRegression

    ws = workspace
    old = _frame(2_000, 0, "x")
    data, _ = ws.data.commit_table(pa.Table.from_pandas(old), name="train", source={"kind": "test"})
    champion = LogisticRegression().fit(old[["x", "z"]], old["y"])
    with ws.runs.start("train") as run:
        run.log_input(data)
        run.log_params({"target": "y"})
        run.log_model(champion, input_example=old[["x", "z"]].head(20))
        run.log_metrics({"test_accuracy": float(champion.score(old[["x", "z"]], old["y"]))})
    ws.models.register_from_run(run.id, "m")
    ws.models.set_alias("m", "champion", 1)
    for name in ("better", "worse", "broken", "slow"):
        ws.pipelines.register(f"tests.monitor.retrain_steps:{name}")
    ws.endpoints.create("e", collect=1.0)
    try:
        ws.endpoints.deploy("e", "m:1")
        key = ws.endpoints.keys("e")["primary"]
        client = httpx.Client(base_url=str(ws.endpoints.get("e").url), headers={"authorization": f"Bearer {key}"})
        ws.monitors.create(
            "w", "e", signals=["performance"], action="retrain:broken", window="1h",
            retrain={"canary": 50, "canary_seconds": 1, "canary_min_requests": 10},
        )  # fmt: skip
        # The world changed: the label now follows z, not x. The champion's accuracy falls to a coin toss.
        new = _frame(1_000, 1, "z")
        _send(client, new, "a")
        ws.endpoints.stop("e")  # flush what the workers collected
        ws.monitors.feedback("w", _labels(new, "a"))

        # 1. A retraining that fails: the champion stays, the alert says why.
        failed = ws.monitors.run("w")
        assert failed.status == "alert" and "down from" in failed.message
        assert failed.alert is not None and failed.alert.action["stage"] == "training"
        assert failed.alert.action["data"].startswith("e_labelled:")
        promotion = _settled(ws, failed.alert.id)
        assert promotion["stage"] == "failed" and "no GPU to retrain" in promotion["timeline"][-1]["message"]
        assert ws.models.get("m@champion").version == 1

        # 2. A challenger with a training bug: compared on the held-out rows, rejected, never served.
        ws.monitors.create("w", "e", signals=["performance"], action="retrain:worse", window="1h", replace=True)
        rejected = _settled(ws, ws.monitors.run("w").alert.id)  # type: ignore[union-attr]
        assert rejected["stage"] == "rejected", rejected["timeline"]
        assert rejected["evaluation"]["metric"] == "roc_auc" and rejected["evaluation"]["gain"] < 0
        assert ws.models.get("m@challenger").version == 2 and ws.models.get("m@champion").version == 1
        assert [d.name for d in ws.endpoints.get("e").deployments] == ["default"]

        # 3. A real fix: better on the held-out rows, healthy as a canary, promoted.
        ws.monitors.create(
            "w", "e", signals=["performance"], action="retrain:better", window="1h", replace=True,
            retrain={"canary": 50, "canary_seconds": 1, "canary_min_requests": 10},
        )  # fmt: skip
        alert = ws.monitors.run("w").alert
        assert alert is not None
        canary = _settled(ws, alert.id)
        assert canary["stage"] == "canary" and canary["challenger"] == "m:3"
        assert canary["evaluation"]["gain"] > 0.2  # z now decides; the champion only knew x
        endpoint = ws.endpoints.get("e")
        assert endpoint.traffic == {"default": 50, "m-v3": 50}
        client = httpx.Client(base_url=str(endpoint.url), headers={"authorization": f"Bearer {key}"})
        served = set()
        for i in range(80):
            answer = client.post("/predict", json=[{"x": 0.1, "z": -0.3}], headers={"x-request-id": f"c-{i}"})
            served.add(answer.headers["conveyor-deployment"])
        assert served == {"default", "m-v3"}
        time.sleep(1.1)
        ws.monitors.advance()
        done = ws.monitors.alerts("w")[0].action
        assert done["stage"] == "promoted", done["timeline"]
        assert [s["stage"] for s in done["timeline"]] == ["training", "evaluating", "canary", "canary", "promoted"]
        assert ws.models.get("m@champion").version == 3
        after = ws.endpoints.get("e")
        assert [d.name for d in after.deployments] == ["m-v3"] and after.traffic == {"m-v3": 100}
        # Every step is on the lineage graph: monitor → alert → pipeline run → model version → deployment.
        graph = ws.lineage.show("monitor:w", direction="down", depth=6)
        kinds = {n.kind for n in graph.nodes}
        assert {"monitor", "alert", "pipeline_run", "model_version", "deployment"} <= kinds
        with pytest.raises(Conflict):
            ws.monitors.approve(alert.id)

        # 4. A challenger as accurate but far slower: its canary is rolled back by itself.
        more = _frame(300, 2, "z")
        _send(client, more, "b")
        ws.endpoints.stop("e")
        ws.monitors.feedback("w", _labels(more, "b"))
        ws.monitors.create(
            "w", "e", signals=["performance"], action="retrain:slow", window="1h", replace=True,
            thresholds={"min": {"accuracy": 0.999}},
            retrain={"canary": 50, "canary_seconds": 1, "canary_min_requests": 10, "margin": -0.05},
        )  # fmt: skip
        slow_alert = ws.monitors.run("w").alert
        assert slow_alert is not None, ws.monitors.history("w")[0]
        trial = _settled(ws, slow_alert.id)
        assert trial["stage"] == "canary" and trial["challenger"] == "m:4", trial["timeline"]
        client = httpx.Client(base_url=str(ws.endpoints.get("e").url), headers={"authorization": f"Bearer {key}"})
        served = set()
        for i in range(40):
            answer = client.post("/predict", json=[{"x": 0.1, "z": -0.3}], headers={"x-request-id": f"s-{i}"})
            assert answer.status_code == 200
            served.add(answer.headers["conveyor-deployment"])
        assert served == {"m-v3", "m-v4"}
        ws.monitors.advance()
        back = ws.monitors.alerts("w")[0].action
        assert back["stage"] == "rolled_back" and "p50 latency" in back["timeline"][-1]["message"], back["timeline"]
        assert ws.models.get("m@champion").version == 3
        restored = ws.endpoints.get("e")
        assert [d.name for d in restored.deployments] == ["m-v3"] and restored.traffic == {"m-v3": 100}
    finally:
        ws.endpoints.delete("e")


def test_the_fairness_gate_rejects_a_challenger_that_favours_a_group(workspace) -> None:  # type: ignore[no-untyped-def]
    from sklearn.linear_model import LogisticRegression

    from conveyor.monitor._loop import _fairness_gate

    ws = workspace
    rng = np.random.default_rng(3)
    frame = pd.DataFrame({"x": rng.normal(size=800), "g": rng.integers(0, 2, 800).astype(float)})
    frame["y"] = (frame["x"] > 0).astype(int)
    rows = pa.Table.from_pandas(frame[["x", "g"]].assign(label=frame["y"]))

    def register(labels: pd.Series, declared: bool) -> tuple[Any, Any]:
        model = LogisticRegression().fit(frame[["x", "g"]], labels)
        with ws.runs.start("fair") as run:
            if declared:
                run.set_tags({"sensitive": "g"})
            run.log_model(model, input_example=frame[["x", "g"]].head(5))
        return ws.models.register_from_run(run.id, "f"), model

    bound = {"max_fairness_difference": 0.1}
    fair, fair_model = register(frame["y"], declared=True)
    promotion: dict[str, Any] = {}
    assert _fairness_gate(ws, fair, fair_model, rows, "classification", bound, promotion) is None
    measured = promotion["evaluation"]["fairness"]["g"]
    assert measured["demographic_parity_difference"] < 0.1 and set(measured["groups"]) == {"0.0", "1.0"}
    # Trained on labels that select everyone in group 1: its selection rates differ by about half.
    unfair, unfair_model = register(((frame["x"] > 0) | (frame["g"] == 1)).astype(int), declared=True)
    why = _fairness_gate(ws, unfair, unfair_model, rows, "classification", bound, {})
    assert why is not None and "g demographic parity difference 0.4" in why and "not promoted" in why
    assert (
        _fairness_gate(ws, unfair, unfair_model, rows, "classification", {"max_fairness_difference": None}, {}) is None
    )
    undeclared, model = register(frame["y"], declared=False)
    assert "declares no sensitive column" in str(
        _fairness_gate(ws, undeclared, model, rows, "classification", bound, {})
    )
    without = rows.drop(["g"])
    assert "do not carry the sensitive" in str(
        _fairness_gate(ws, fair, fair_model, without, "classification", bound, {})
    )
    assert check_loop_options({"max_fairness_difference": "0.05"}) == {"max_fairness_difference": 0.05}
    with pytest.raises(BadInput):
        check_loop_options({"max_fairness_difference": -1})
