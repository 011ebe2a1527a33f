"""Endpoints as real processes: deploy, keys, blue/green under load, mirror, rollback, crashes, scale to zero."""

from __future__ import annotations

import os
import signal
import threading
import time
from collections.abc import Callable
from typing import Any

import httpx
import orjson
import pytest

from conveyor.errors import Conflict, EndpointError, InvalidSpec, NotFound


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    try:
        finished, _ = os.waitpid(pid, os.WNOHANG)
    except ChildProcessError:
        return True
    return finished != pid


def _wait(condition: Callable[[], Any], seconds: float = 30.0, what: str = "condition") -> Any:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        value = condition()
        if value:
            return value
        time.sleep(0.05)
    raise AssertionError(f"timed out waiting for {what}")


@pytest.fixture
def churn(workspace, churn_training):  # type: ignore[no-untyped-def]
    result, signature, frame = churn_training
    workspace.models.register("churn", result.model, signature=signature)
    workspace.models.register("churn", result.model, signature=signature)
    records = orjson.loads(frame.to_json(orient="records", date_format="iso"))
    yield workspace, records, result.model.predict(frame).tolist()
    for endpoint in workspace.endpoints.list():
        workspace.endpoints.delete(endpoint.name)


class Load:
    """Sends requests in a loop from a thread and counts every outcome that is not a 200."""

    def __init__(self, url: str, key: str, records: list[dict[str, Any]]) -> None:
        self.url, self.key, self.records = url, key, records
        self.ok = 0
        self.failures: list[str] = []
        self.deployments: set[str] = set()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def __enter__(self) -> Load:
        self._thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self._stop.set()
        self._thread.join(30)

    def _run(self) -> None:
        headers = {"Authorization": f"Bearer {self.key}"}
        with httpx.Client(timeout=30) as client:
            while not self._stop.is_set():
                try:
                    response = client.post(f"{self.url}/predict", json=self.records, headers=headers)
                except httpx.HTTPError as exc:
                    self.failures.append(repr(exc))
                    continue
                if response.status_code == 200:
                    self.ok += 1
                    self.deployments.add(response.json()["deployment"])
                else:
                    self.failures.append(f"{response.status_code} {response.text[:200]}")


@pytest.mark.slow
def test_blue_green_under_load_mirror_and_rollback(churn) -> None:  # type: ignore[no-untyped-def]
    ws, records, expected = churn
    blue = ws.endpoints.deploy("churn", "churn:1", deployment="blue", traffic=100)
    endpoint = ws.endpoints.get("churn")
    assert endpoint.status == "running" and endpoint.url and endpoint.url.startswith("http://127.0.0.1:")
    assert endpoint.traffic == {"blue": 100} and blue.model == "churn:1"
    assert len(endpoint.workers) == (os.cpu_count() or 1) and all(_alive(p) for p in endpoint.workers)
    assert endpoint.routes["v2_infer"] == f"{endpoint.url}/v2/models/churn/infer"
    assert ws.endpoints.invoke("churn", records) == expected
    keys = ws.endpoints.keys("churn")
    assert keys["primary"] != keys["secondary"]
    assert httpx.post(f"{endpoint.url}/predict", json=records).status_code == 401
    assert httpx.post(f"{endpoint.url}/predict", json=records, headers={"Authorization": "Bearer x"}).status_code == 403
    edges = ws.lineage.edges("deployment", blue.id, direction="upstream")
    assert ("model_version", "served_by") in {(e.from_kind, e.relation) for e in edges}

    with Load(endpoint.url, keys["primary"], records) as load:
        _wait(lambda: load.ok > 5, what="first requests")
        green = ws.endpoints.deploy("churn", "churn:2", deployment="green")
        assert green.traffic == 0 and ws.endpoints.get("churn").traffic == {"blue": 100, "green": 0}
        assert ws.endpoints.invoke("churn", records, deployment="green") == expected
        ws.endpoints.set_traffic("churn", {"blue": 50, "green": 50})
        _wait(lambda: load.deployments == {"blue", "green"}, what="both deployments answering")
        ws.endpoints.set_traffic("churn", {"green": 100})
        seen_before = load.ok
        _wait(lambda: load.ok > seen_before + 2, what="the request in flight at the switch")
        load.deployments.clear()
        seen_before = load.ok
        _wait(lambda: load.ok > seen_before + 20, what="requests after the switch")
        assert load.deployments == {"green"}
        ws.endpoints.rollback("churn")
        assert ws.endpoints.get("churn").traffic == {"blue": 50, "green": 50}
    assert load.failures == [] and load.ok > 20

    with pytest.raises(InvalidSpec, match="must sum to 100; these sum to 95"):
        ws.endpoints.set_traffic("churn", {"blue": 90, "green": 5})
    with pytest.raises(InvalidSpec, match="no deployment 'gren'.*Did you mean 'green'"):
        ws.endpoints.set_traffic("churn", {"gren": 100})
    with pytest.raises(InvalidSpec, match="takes live traffic"):
        ws.endpoints.set_mirror("churn", {"green": 20})
    ws.endpoints.set_traffic("churn", {"blue": 100})
    ws.endpoints.set_mirror("churn", {"green": 100})
    for _ in range(3):
        assert ws.endpoints.invoke("churn", records) == expected

    def mirrored() -> float:
        text = httpx.get(f"{endpoint.url}/metrics", headers={"Authorization": f"Bearer {keys['primary']}"}).text
        for line in text.splitlines():
            if line.startswith("conveyor_endpoint_mirrored_total") and 'deployment="green"' in line:
                return float(line.rsplit(" ", 1)[1])
        return 0.0

    _wait(lambda: mirrored() >= 3, what="mirrored requests counted")
    metrics = httpx.get(f"{endpoint.url}/metrics", headers={"Authorization": f"Bearer {keys['primary']}"}).text
    for family in (
        "conveyor_endpoint_requests_total",
        "conveyor_endpoint_request_seconds_bucket",
        "conveyor_endpoint_batch_rows_bucket",
        "conveyor_endpoint_queue_depth",
        "conveyor_endpoint_model_load_seconds",
    ):
        assert family in metrics, family
    with pytest.raises(Conflict, match="takes 100% of live traffic"):
        ws.endpoints.delete("churn", deployment="blue")

    # Rotating a key: the old one stops working at once, the other keeps working.
    rotated = ws.endpoints.regenerate_key("churn", "secondary")
    assert rotated["primary"] == keys["primary"] and rotated["secondary"] != keys["secondary"]
    old = httpx.post(f"{endpoint.url}/predict", json=records, headers={"Authorization": f"Bearer {keys['secondary']}"})
    assert old.status_code == 403
    new = httpx.post(
        f"{endpoint.url}/predict", json=records, headers={"Authorization": f"Bearer {rotated['secondary']}"}
    )
    assert new.status_code == 200

    logged = _wait(lambda: ws.endpoints.logs("churn", deployment="blue", tail=5), what="access log lines")
    assert all(r["deployment"] == "blue" and r["endpoint"] == "churn" for r in logged)
    supervisor = ws.endpoints.get("churn").pid
    ws.endpoints.stop("churn")
    assert not _alive(supervisor) and ws.endpoints.get("churn").status == "stopped"
    with pytest.raises(NotFound, match="is stopped"):
        ws.endpoints.invoke("churn", records)
    restarted = ws.endpoints.start("churn")
    assert restarted.url == endpoint.url, "the port is kept across restarts"
    assert ws.endpoints.invoke("churn", records) == expected


def _explode() -> None:
    raise RuntimeError("this model refuses to load")


class FailsToLoad:
    """Pickles fine; unpickling it in the serving process raises."""

    def __reduce__(self):  # type: ignore[no-untyped-def]
        return (_explode, ())


@pytest.mark.slow
def test_a_model_that_fails_to_load_changes_nothing(churn) -> None:  # type: ignore[no-untyped-def]
    ws, records, expected = churn
    ws.models.register("broken", FailsToLoad())
    with pytest.raises(EndpointError, match="Last lines of its log") as info:
        ws.endpoints.deploy("lonely", "broken:1", timeout=60)
    assert "this model refuses to load" in str(info.value)
    assert "The endpoint was new, so it was removed." in str(info.value)
    with pytest.raises(NotFound):  # no half-made endpoint is left behind
        ws.endpoints.get("lonely")

    ws.endpoints.deploy("churn", "churn:1", deployment="blue")
    with pytest.raises(EndpointError, match="kept serving what it served before.*refuses to load"):
        ws.endpoints.deploy("churn", "broken:1", deployment="blue")
    endpoint = ws.endpoints.get("churn")
    assert [(d.name, d.model) for d in endpoint.deployments] == [("blue", "churn:1")]
    assert ws.endpoints.invoke("churn", records) == expected


@pytest.mark.slow
def test_a_crashed_worker_is_replaced(churn) -> None:  # type: ignore[no-untyped-def]
    ws, records, expected = churn
    ws.endpoints.create("churn", workers=2)
    ws.endpoints.deploy("churn", "churn:1")
    before = ws.endpoints.get("churn").workers
    os.kill(before[0], signal.SIGKILL)
    after = _wait(
        lambda: (w := ws.endpoints.get("churn").workers) and len(w) == 2 and before[0] not in w and w,
        what="a replacement worker",
    )
    assert before[1] in after
    for _ in range(10):
        assert ws.endpoints.invoke("churn", records) == expected
    assert any("worker_died" in line for line in ws.endpoints.process_log("churn"))


@pytest.mark.slow
def test_scale_to_zero_and_wake_on_the_next_request(churn) -> None:  # type: ignore[no-untyped-def]
    ws, records, expected = churn
    ws.endpoints.create("churn", idle_timeout=1.0, workers=1)
    ws.endpoints.deploy("churn", "churn:1")
    _wait(lambda: ws.endpoints.get("churn").status == "idle", what="scale to zero")
    idle = ws.endpoints.get("churn")
    assert idle.workers == [] and idle.url is not None and _alive(idle.pid)
    assert ws.endpoints.invoke("churn", records) == expected
    assert ws.endpoints.get("churn").status == "running"
    # Changing traffic while idle applies without waking it.
    ws.endpoints.deploy("churn", "churn:2", deployment="green")
    assert ws.endpoints.invoke("churn", records, deployment="green") == expected


@pytest.mark.slow
def test_collected_requests_land_in_the_lake(churn) -> None:  # type: ignore[no-untyped-def]
    ws, records, expected = churn
    ws.endpoints.create("churn", collect=1.0)
    ws.endpoints.deploy("churn", "churn:1")
    for _ in range(3):
        ws.endpoints.invoke("churn", records)
    ws.endpoints.stop("churn")  # workers flush their buffers on the way out
    frame = ws.data.to_pandas("churn_requests")
    assert len(frame) == 3 * len(records)
    assert {"request_id", "ts", "deployment", "model", "prediction", "tenure_months"} <= set(frame.columns)
    assert sorted(frame["prediction"].tolist()) == sorted(expected * 3)
    assert frame["request_id"].nunique() == 3
    # Monitoring can walk from the served traffic back to the deployment (and on to the model and its data).
    deployment = ws.endpoints.get("churn").deployments[0]
    collected = ws.data.versions("churn_requests")
    upstream = {
        (e.from_kind, e.from_id, e.relation)
        for v in collected
        for e in ws.lineage.edges("data_version", v.id, direction="upstream")
    }
    assert ("deployment", deployment.id, "collected") in upstream


def test_bad_settings_and_unknown_names(workspace) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(NotFound, match="No endpoint named 'x'"):
        workspace.endpoints.get("x")
    with pytest.raises(NotFound, match="No model named 'nope'"):
        workspace.endpoints.deploy("x", "nope@champion")
    with pytest.raises(InvalidSpec, match="only listen on loopback"):
        workspace.endpoints.create("open", auth="none", host="0.0.0.0")
    with pytest.raises(InvalidSpec, match="auth must be 'key' or 'none'"):
        workspace.endpoints.create("odd", auth="token")
    workspace.endpoints.create("quiet", auth="none")
    with pytest.raises(Conflict, match="exists"):
        workspace.endpoints.create("quiet")
    with pytest.raises(Conflict, match="no auth"):
        workspace.endpoints.keys("quiet")
    assert workspace.endpoints.get("quiet").status == "created"


@pytest.mark.slow
def test_cli_deploy_show_keys_traffic(cli, workspace, churn_training, tmp_path) -> None:  # type: ignore[no-untyped-def]
    result, signature, frame = churn_training
    workspace.models.register("churn", result.model, signature=signature)
    workspace.models.set_alias("churn", "champion", 1)
    home = str(workspace.settings.home)
    try:
        deployed = cli(
            "--home", home, "endpoints", "deploy", "churn", "--model", "churn@champion", "-d", "blue", "--strict",
            "--json",
        )  # fmt: skip
        assert deployed.code == 0, deployed.err
        shown = orjson.loads(cli("--home", home, "endpoints", "show", "churn", "--json").out)
        assert {"name", "url", "deployments", "traffic"} <= set(shown)
        assert [d["strict"] for d in shown["deployments"]] == [True]
        assert workspace.endpoints.spec("churn").deployments[0].strict
        assert shown["traffic"] == {"blue": 100} and shown["url"].startswith("http://127.0.0.1:")
        keys = orjson.loads(cli("--home", home, "endpoints", "keys", "churn", "--json").out)
        assert set(keys) - {"workspace"} == {"primary", "secondary"}  # --json objects name their workspace
        bad = cli("--home", home, "endpoints", "traffic", "churn", "blue=90", "--json")
        assert bad.code == 2 and "sum to 100" in orjson.loads(bad.out)["error"]["message"]
        rows = tmp_path / "rows.json"
        rows.write_bytes(frame.head(2).to_json(orient="records", date_format="iso").encode())
        invoked = cli("--home", home, "endpoints", "invoke", "churn", "--data", str(rows), "--json")
        assert orjson.loads(invoked.out)["predictions"] == result.model.predict(frame.head(2)).tolist()
        tagged = tmp_path / "tagged.json"
        tagged.write_bytes(orjson.dumps([{**orjson.loads(rows.read_bytes())[0], "order_id": 7}]))
        refused = cli("--home", home, "endpoints", "invoke", "churn", "--data", str(tagged), "--json")
        assert refused.code != 0 and "Unknown field 'order_id'" in refused.out + refused.err
        logs = cli("--home", home, "endpoints", "logs", "churn", "--process", "--json")
        assert any("ready" in line for line in orjson.loads(logs.out)["lines"])
    finally:
        assert cli("--home", home, "endpoints", "delete", "churn", "--json").code == 0
    assert cli("--home", home, "endpoints", "show", "churn").code == 2
