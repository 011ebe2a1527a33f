"""Schedules (cron, data triggers), the scheduler's firing rules, triggers, and the scheduler processes."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pyarrow as pa
import pytest
import sqlalchemy as sa

from conveyor import Workspace
from conveyor.errors import BadInput, ConveyorError, InvalidSpec, NotFound
from conveyor.pipelines import Fired, Scheduler
from conveyor.store._schema import ScheduleRow
from tests.conftest import wait_until

ROOT = Path(__file__).resolve().parents[2]
NUMBERS = "tests.pipelines.steps:numbers"
FROM_DATA = "tests.pipelines.steps:from_data"


class Launches:
    """A stand-in for starting runs: records each call and returns a fake run id."""

    def __init__(self, fail: bool = False) -> None:
        self.calls: list[tuple[str, dict[str, Any], dict[str, Any]]] = []
        self.fail = fail
        self._lock = threading.Lock()

    def __call__(self, pipeline: str, reason: dict[str, Any], params: dict[str, Any]) -> str:
        if self.fail:
            raise NotFound(f"No registered pipeline named {pipeline!r}.")
        with self._lock:
            self.calls.append((pipeline, reason, params))
            return f"run-{len(self.calls)}"


def _backdate(ws: Workspace, schedule_id: str, when: datetime) -> None:
    """Pretend the schedule was made at ``when`` (so ticks can use fixed dates)."""
    with ws.store.write() as session:
        session.execute(sa.update(ScheduleRow).where(ScheduleRow.id == schedule_id).values(created_at=when))


def _utc(*args: int) -> datetime:
    return datetime(*args, tzinfo=UTC)  # type: ignore[misc]


def _commit(ws: Workspace, values: list[int]) -> Any:
    version, _ = ws.data.commit_table(pa.table({"x": values}), name="nums", source={"kind": "test"})
    return version


@pytest.fixture
def registered(workspace: Workspace) -> Workspace:
    workspace.pipelines.register(NUMBERS)
    return workspace


@pytest.fixture
def registered_any(any_workspace: Workspace) -> Workspace:
    """``registered`` on each metadata backend in turn (SQLite, PostgreSQL)."""
    any_workspace.pipelines.register(NUMBERS)
    return any_workspace


# -- cron ------------------------------------------------------------------------------------------------


def test_cron_fires_once_per_due_time(registered_any: Workspace) -> None:
    registered = registered_any
    made = registered.pipelines.schedule("numbers", cron="0 * * * *", params={"n": 3})
    _backdate(registered, made.id, _utc(2025, 1, 10, 9, 20))
    launches = Launches()
    scheduler = Scheduler(registered, launch=launches)

    assert scheduler.tick(_utc(2025, 1, 10, 9, 59, 59)) == [], "no cron time since it was made"
    fired = scheduler.tick(_utc(2025, 1, 10, 10, 0, 5))
    assert [(f.pipeline, f.run_id, f.error) for f in fired] == [("numbers", "run-1", None)]
    assert fired[0].reason == {
        "kind": "schedule",
        "schedule_id": made.id,
        "cron": "0 * * * *",
        "timezone": "UTC",
        "due": "2025-01-10T10:00:00+00:00",
    }
    assert launches.calls == [("numbers", fired[0].reason, {"n": 3})]
    assert scheduler.tick(_utc(2025, 1, 10, 10, 0, 20)) == []
    assert scheduler.tick(_utc(2025, 1, 10, 10, 59)) == [], "not again within the same hour"
    assert len(scheduler.tick(_utc(2025, 1, 10, 11, 0, 1))) == 1
    (now,) = registered.pipelines.schedules("numbers")
    assert now.last_fired_at == _utc(2025, 1, 10, 11, 0, 1)
    assert now.next_at == _utc(2025, 1, 10, 12, 0)


def test_a_scheduler_down_across_three_cron_times_fires_once(registered_any: Workspace) -> None:
    registered = registered_any
    made = registered.pipelines.schedule("numbers", cron="0 * * * *")
    _backdate(registered, made.id, _utc(2025, 1, 10, 9, 20))
    scheduler = Scheduler(registered, launch=Launches())
    # Down from 09:20 to 12:10: 10:00, 11:00 and 12:00 were missed.
    fired = scheduler.tick(_utc(2025, 1, 10, 12, 10))
    assert len(fired) == 1
    assert fired[0].reason["due"] == "2025-01-10T12:00:00+00:00"
    assert fired[0].reason["first_due"] == "2025-01-10T10:00:00+00:00"
    assert scheduler.tick(_utc(2025, 1, 10, 12, 11)) == []
    assert len(scheduler.tick(_utc(2025, 1, 10, 13, 0))) == 1


def test_cron_times_are_read_in_the_schedule_timezone(registered_any: Workspace) -> None:
    registered = registered_any
    paris = registered.pipelines.schedule("numbers", cron="0 9 * * *", timezone="Europe/Paris")
    utc = registered.pipelines.schedule("numbers", cron="0 9 * * *")
    assert paris.id != utc.id
    for made in (paris, utc):
        _backdate(registered, made.id, _utc(2025, 3, 28, 12, 0))
    scheduler = Scheduler(registered, launch=Launches())

    def fired_at(*when: int) -> list[str]:
        return [f.schedule_id for f in scheduler.tick(_utc(*when))]

    assert fired_at(2025, 3, 29, 7, 59) == []
    assert fired_at(2025, 3, 29, 8, 0) == [paris.id], "09:00 in Paris is 08:00 UTC in winter"
    assert fired_at(2025, 3, 29, 9, 0) == [utc.id]
    # Daylight saving starts on 30 March: 09:00 in Paris is now 07:00 UTC.
    assert fired_at(2025, 3, 30, 7, 0) == [paris.id]
    assert fired_at(2025, 3, 30, 8, 30) == []
    assert fired_at(2025, 3, 30, 9, 0) == [utc.id]
    (listed,) = [s for s in registered.pipelines.schedules() if s.id == paris.id]
    assert listed.next_at == datetime(2025, 3, 31, 9, 0, tzinfo=ZoneInfo("Europe/Paris"))


def test_a_launch_that_fails_is_reported_and_not_retried_in_the_same_period(registered: Workspace) -> None:
    made = registered.pipelines.schedule("numbers", cron="@hourly")
    _backdate(registered, made.id, _utc(2025, 1, 10, 9, 20))
    scheduler = Scheduler(registered, launch=Launches(fail=True))
    (fired,) = scheduler.tick(_utc(2025, 1, 10, 10, 1))
    assert fired.run_id is None and fired.error is not None and "No registered pipeline" in fired.error
    assert scheduler.tick(_utc(2025, 1, 10, 10, 2)) == [], "at most once per due time"


# -- data triggers ---------------------------------------------------------------------------------------


def test_a_data_trigger_fires_once_per_new_version(any_workspace: Workspace) -> None:
    workspace = any_workspace
    first = _commit(workspace, [1, 2])
    workspace.pipelines.register(FROM_DATA)
    made = workspace.pipelines.schedule("from-data", on_data="nums", params={"threshold": 1})
    assert made.kind == "data" and made.asset == "nums" and made.last_seen_version_id == first.id
    launches = Launches()
    scheduler = Scheduler(workspace, launch=launches)
    assert scheduler.tick() == [], "a version that existed before the schedule does not fire it"

    second = _commit(workspace, [1, 2, 3])
    (fired,) = scheduler.tick()
    assert fired.reason == {
        "kind": "data",
        "schedule_id": made.id,
        "asset": "nums",
        "version": "nums:2",
        "version_id": second.id,
    }
    assert launches.calls == [("from-data", fired.reason, {"threshold": 1})]
    assert scheduler.tick() == []

    _commit(workspace, [4])
    fourth = _commit(workspace, [5])
    (fired,) = scheduler.tick()
    assert fired.reason["version"] == "nums:4", "two versions between checks: one run, for the latest"
    (now,) = workspace.pipelines.schedules("from-data")
    assert now.last_seen_version_id == fourth.id and now.last_fired_at is not None


# -- two schedulers --------------------------------------------------------------------------------------


def test_two_schedulers_on_one_workspace_fire_each_schedule_once(registered_any: Workspace) -> None:
    registered = registered_any
    made = [registered.pipelines.schedule("numbers", cron="0 * * * *", params={"n": n}) for n in range(12)]
    for s in made:
        _backdate(registered, s.id, _utc(2025, 1, 10, 9, 20))
    # A second process's view: its own engine and sessions on the same database.
    other = Workspace.open(registered.settings.home, db_url=registered.settings.db_url)
    try:
        launches = Launches()
        schedulers = [Scheduler(registered, launch=launches), Scheduler(other, launch=launches)]
        barrier = threading.Barrier(2)
        results: list[list[Fired]] = [[], []]

        def run(i: int) -> None:
            barrier.wait()
            results[i] = schedulers[i].tick(_utc(2025, 1, 10, 10, 0, 1))

        threads = [threading.Thread(target=run, args=(i,)) for i in range(2)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(60)
        fired = sorted(f.schedule_id for f in results[0] + results[1])
        assert fired == sorted(s.id for s in made), "every due schedule fired exactly once"
        assert len(launches.calls) == len(made)
    finally:
        other.close()


def test_a_scheduler_with_a_stale_view_does_not_fire_again(registered_any: Workspace) -> None:
    registered = registered_any
    made = registered.pipelines.schedule("numbers", cron="0 * * * *")
    _backdate(registered, made.id, _utc(2025, 1, 10, 9, 20))
    stale = registered.pipelines.schedules()  # what a second scheduler read just before the first fired
    first, second = Scheduler(registered, launch=Launches()), Scheduler(registered, launch=Launches())
    assert len(first.tick(_utc(2025, 1, 10, 10, 0, 1))) == 1
    assert second._fire_due(stale, _utc(2025, 1, 10, 10, 0, 2)) == []


# -- definitions and errors ------------------------------------------------------------------------------


def test_schedules_are_listed_idempotent_and_removed(registered: Workspace) -> None:
    hourly = registered.pipelines.schedule("numbers", cron=" 0  *  * * * ", params={"n": 2})
    assert hourly.cron == "0 * * * *"
    assert registered.pipelines.schedule("numbers", cron="0 * * * *", params={"n": 2}).id == hourly.id
    daily = registered.pipelines.schedule("numbers", cron="@daily")
    assert [s.id for s in registered.pipelines.schedules()] == [hourly.id, daily.id]
    assert registered.pipelines.schedules("other") == []
    assert [s.id for s in registered.pipelines.unschedule("numbers", hourly.id)] == [hourly.id]
    with pytest.raises(NotFound, match=f"has no schedule '{hourly.id}'.*Its schedules: {daily.id}"):
        registered.pipelines.unschedule("numbers", hourly.id)
    assert [s.id for s in registered.pipelines.unschedule("numbers")] == [daily.id]
    with pytest.raises(NotFound, match="Pipeline 'numbers' has no schedules"):
        registered.pipelines.unschedule("numbers")


@pytest.mark.parametrize(
    ("kwargs", "error", "message"),
    [
        ({"cron": "61 * * * *"}, BadInput, r"'61 \* \* \* \*' is not a cron expression.*out of range.*'0 \* \* \* \*'"),
        ({"cron": "0 * * *"}, BadInput, "it has 4 fields, not 5.*for example"),
        ({"cron": "0 9 * * *", "timezone": "Europe/Pari"}, BadInput, "Unknown timezone 'Europe/Pari'.*'Europe/Paris'"),
        ({}, BadInput, "exactly one of a cron expression"),
        ({"cron": "@daily", "on_data": "nums"}, BadInput, "exactly one of"),
        ({"on_data": "nmus"}, NotFound, "No data asset named 'nmus'. Did you mean 'nums'"),
        ({"on_data": "nums:1"}, BadInput, "give its name \\('nums'\\)"),
        ({"on_data": "nums", "timezone": "Europe/Paris"}, BadInput, "--timezone applies to cron schedules"),
        ({"cron": "@daily", "params": {"m": 3}}, InvalidSpec, "has no parameter 'm'.*Its parameters: n"),
    ],
)
def test_bad_schedules_are_explained(
    registered: Workspace, kwargs: dict[str, Any], error: type[Exception], message: str
) -> None:
    _commit(registered, [1])
    with pytest.raises(error, match=message):
        registered.pipelines.schedule("numbers", **kwargs)
    assert registered.pipelines.schedules() == []


def test_only_registered_pipelines_are_scheduled_or_triggered(registered: Workspace) -> None:
    with pytest.raises(NotFound, match="No registered pipeline named 'numbrs'. Did you mean 'numbers'.*register"):
        registered.pipelines.schedule("numbrs", cron="@daily")
    with pytest.raises(NotFound, match="No registered pipeline named"):
        registered.pipelines.trigger(NUMBERS, reason={"kind": "alert"})
    with pytest.raises(BadInput, match="needs a 'kind'"):
        registered.pipelines.trigger("numbers", reason={"alert": "drift"})
    with pytest.raises(BadInput, match="keep it under 16 KB"):
        registered.pipelines.trigger("numbers", reason={"kind": "alert", "blob": "x" * 20_000})
    with pytest.raises(InvalidSpec, match="has no parameter 'm'"):
        registered.pipelines.trigger("numbers", reason={"kind": "alert"}, params={"m": 1})


# -- triggers (real runs) --------------------------------------------------------------------------------


@pytest.fixture
def importable(monkeypatch: pytest.MonkeyPatch) -> None:
    """Started processes import the test steps, as a user's project would be importable."""
    monkeypatch.setenv("PYTHONPATH", str(ROOT))


def _finished(ws: Workspace, run_id: str) -> Any:
    run = ws.pipelines.get_run(run_id)
    return run if run.status != "running" else None


def test_trigger_starts_a_detached_run_that_records_its_reason(registered: Workspace, importable: None) -> None:
    reason = {"kind": "alert", "alert": "churn-drift", "value": 0.31}
    run_id = registered.pipelines.trigger("numbers", reason=reason, params={"n": 4})
    started = registered.pipelines.get_run(run_id)  # recorded by the time trigger returns
    assert started.pipeline == "numbers" and started.params == {"n": 4}
    assert {k: v for k, v in started.trigger.items() if k != "trigger_id"} == reason
    assert len(started.trigger["trigger_id"]) == 26
    run = wait_until(lambda: _finished(registered, run_id), timeout=90, what="the triggered run to end")
    assert run.status == "succeeded", run.error
    assert run.step("total").outputs["value"] == 12
    logs = list((registered.settings.home / "logs" / "pipelines").glob("numbers.*.log"))
    assert len(logs) == 1
    # The run is recorded as ended a moment before the detached process prints its JSON and exits.
    printed = wait_until(lambda: logs[0].read_text().strip(), timeout=30, what="the run's JSON in its log")
    assert json.loads(printed)["id"] == run_id


def test_trigger_with_wait_runs_here(registered: Workspace) -> None:
    run_id = registered.pipelines.trigger("numbers", reason={"kind": "manual"}, params={"n": 2}, wait=True)
    run = registered.pipelines.get_run(run_id)
    assert run.status == "succeeded" and run.trigger["kind"] == "manual"
    assert run.step("total").outputs["value"] == 2


def test_a_run_that_cannot_start_is_reported_with_its_log(
    registered: Workspace, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    # The started process cannot import the pipeline's module (this one can: pytest put the project on its path).
    monkeypatch.delenv("PYTHONPATH", raising=False)
    monkeypatch.chdir(tmp_path)
    with pytest.raises(ConveyorError, match="did not start: its process exited with status 2") as caught:
        registered.pipelines.trigger("numbers", reason={"kind": "test"})
    assert "Last lines of its log" in caught.value.message
    assert "No module named 'tests'" in caught.value.message
    assert registered.pipelines.runs() == []


# -- the command line and the scheduler processes -------------------------------------------------------


def test_schedule_commands(cli, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    home = str(tmp_path / "ws")
    assert cli("--home", home, "init").code == 0
    assert cli("--home", home, "pipeline", "register", NUMBERS).code == 0
    made = cli("--home", home, "pipeline", "schedule", "numbers", "--cron", "0 9 * * 1-5", "--timezone",
               "Europe/Paris", "-p", "n=3", "--json")  # fmt: skip
    assert made.code == 0, made.err
    schedule = made.json
    assert schedule["cron"] == "0 9 * * 1-5" and schedule["timezone"] == "Europe/Paris"
    assert schedule["params"] == {"n": 3}
    listed = cli("--home", home, "pipeline", "schedules", "--json").json
    assert [s["id"] for s in listed["schedules"]] == [schedule["id"]]
    human = cli("--home", home, "pipeline", "schedules")
    assert "cron '0 9 * * 1-5' (Europe/Paris)" in human.out
    bad = cli("--home", home, "pipeline", "schedule", "numbers", "--cron", "0 9 * *")
    assert bad.code == 2 and "is not a cron expression" in bad.err
    once = cli("--home", home, "scheduler", "--once", "--json")
    assert once.code == 0 and once.json == {"fired": [], "monitors": [], "workspace": home}  # nothing due or watched
    removed = cli("--home", home, "pipeline", "unschedule", "numbers", "--json")
    assert removed.code == 0 and [s["id"] for s in removed.json["removed"]] == [schedule["id"]]
    again = cli("--home", home, "pipeline", "unschedule", "numbers")
    assert again.code == 2 and "has no schedules" in again.err


def _start(args: list[str], home: Path) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-m", "conveyor", "--home", str(home), *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, "PYTHONPATH": str(ROOT), "COLUMNS": "200"},
    )


def _data_triggered_run(ws: Workspace, version: str) -> Any:
    for run in ws.pipelines.runs("from-data"):
        if run.trigger.get("version") == version and run.status != "running":
            return run
    return None


@pytest.mark.parametrize(
    "command",
    [["scheduler", "--interval", "0.2"], ["server", "--port", "0", "--scheduler-interval", "0.2"]],
    ids=["scheduler", "server"],
)
def test_a_scheduler_process_fires_a_data_trigger_and_stops_on_sigterm(tmp_path: Path, command: list[str]) -> None:
    home = tmp_path / "ws"
    with Workspace.open(home) as ws:
        _commit(ws, [1, 2, 3])
        ws.pipelines.register(FROM_DATA)
        ws.pipelines.schedule("from-data", on_data="nums")
        process = _start(command, home)
        try:
            _commit(ws, [1, 2, 3, 4, 5])
            run = wait_until(lambda: _data_triggered_run(ws, "nums:2"), timeout=90, what="the data-triggered run")
            assert run.status == "succeeded", run.error
            assert run.step("count_rows").outputs["value"] == 4
            assert run.trigger["kind"] == "data" and run.trigger["asset"] == "nums"
        finally:
            process.send_signal(signal.SIGTERM)
            out, err = process.communicate(timeout=30)
        assert process.returncode == 0, err
        assert f"run {run.id}" in out
        assert len(ws.pipelines.runs("from-data")) == 1, "one run for one new version"
