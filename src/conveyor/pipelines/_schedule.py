"""Schedules and triggers: when a registered pipeline runs by itself.

A schedule runs a *registered* pipeline by name (``conveyor pipeline register`` / ``conveyor apply -f``):

- **cron**: ``schedule("churn", cron="0 * * * *", timezone="Europe/Paris")``, five-field cron expressions
  (or ``@hourly``, ``@daily``, ...) read in the schedule's IANA timezone, so ``0 9 * * *`` in Europe/Paris
  stays at 09:00 local time across daylight-saving changes;
- **data**: ``schedule("churn", on_data="churn-raw")`` runs the pipeline once per new latest version of the
  asset (versions that exist when the schedule is made do not fire it).

:func:`trigger_run` starts a run now, for a reason recorded on the run (``PipelineRun.trigger``): a schedule, a
new data version, a monitoring alert, a person. It starts ``python -m conveyor pipeline run NAME`` as a
detached process (so the run outlives the caller) and returns the new run's id once the run is recorded.

The :class:`Scheduler` fires due schedules. It runs inside ``conveyor server`` (a background thread) and alone
as ``conveyor scheduler``; several may run on one workspace without firing a schedule twice.

Missed runs: when the scheduler was down (or late) across one or more times of a cron schedule, it runs the
pipeline **once** when it next checks, not once per missed time; the run's trigger says which time it stood
for (``due``) and, if times were missed, the first of them (``first_due``). A data schedule likewise fires
once for the latest version, however many versions were committed meanwhile.
"""

from __future__ import annotations

import json
import logging
import os
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any, cast
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import sqlalchemy as sa
from sqlalchemy.orm import Session

from conveyor.errors import BadInput, ConveyorError, NotFound, did_you_mean
from conveyor.refs import parse_ref
from conveyor.store._schema import (
    DataAssetRow,
    DataVersionRow,
    PipelineRow,
    PipelineRunRow,
    ScheduleRow,
    new_id,
    utcnow,
)

if TYPE_CHECKING:
    from conveyor.workspace import Workspace

__all__ = [
    "DEFAULT_INTERVAL",
    "Fired",
    "Schedule",
    "Scheduler",
    "add_schedule",
    "check_cron",
    "check_timezone",
    "list_schedules",
    "remove_schedules",
    "trigger_run",
]

log = logging.getLogger("conveyor.scheduler")

#: seconds between two checks of the schedules (cron times fire at most this late).
DEFAULT_INTERVAL = 15.0
#: how long :func:`trigger_run` waits for the started process to record its run.
START_TIMEOUT = 120.0
MAX_REASON_BYTES = 16_384
_CRON_HELP = (
    "Use five fields, minute hour day-of-month month day-of-week, for example '0 * * * *' (every hour), "
    "'*/15 * * * *' (every 15 minutes), '30 6 * * 1-5' (06:30 on weekdays); or @hourly, @daily, @weekly, "
    "@monthly, @yearly."
)


@dataclass(frozen=True)
class Schedule:
    """When a pipeline runs by itself: ``kind`` is ``"cron"`` (``cron`` in ``timezone``) or ``"data"`` (each new
    latest version of ``asset``). ``params`` override the pipeline's defaults for the runs it starts.

    ``next_at`` is the next cron time (UTC) it fires at (``None`` for data schedules); a time in the past means
    it is due and fires at the scheduler's next check.
    """

    id: str
    pipeline: str
    kind: str
    cron: str | None
    timezone: str
    asset: str | None
    params: dict[str, Any]
    enabled: bool
    last_fired_at: datetime | None
    last_seen_version_id: str | None
    next_at: datetime | None
    created_at: datetime
    created_by: str


@dataclass(frozen=True)
class Fired:
    """A schedule the scheduler fired: the run it started, or why the run could not start."""

    schedule_id: str
    pipeline: str
    reason: dict[str, Any]
    run_id: str | None = None
    error: str | None = None


# -- checks ------------------------------------------------------------------------------------------------


def check_cron(expression: str) -> str:
    """The cron expression, whitespace normalised.

    Raises:
        BadInput: not a five-field cron expression or a known macro (the message has examples).
    """
    from croniter import CroniterError, croniter

    text = " ".join(str(expression).split())
    reason = ""
    if not text:
        reason = "it is empty"
    elif not text.startswith("@") and len(text.split(" ")) != 5:
        reason = f"it has {len(text.split(' '))} fields, not 5"
    else:
        try:
            croniter(text)
        except (CroniterError, ValueError, KeyError) as exc:
            reason = str(exc) or type(exc).__name__
    if reason:
        raise BadInput(f"{expression!r} is not a cron expression ({reason}). {_CRON_HELP}", cron=expression)
    return text


def check_timezone(name: str) -> ZoneInfo:
    """The timezone named ``name`` (IANA: ``UTC``, ``Europe/Paris``, ``America/New_York``).

    Raises:
        BadInput: an unknown name (with "did you mean").
    """
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError, TypeError) as exc:
        from zoneinfo import available_timezones

        raise BadInput(
            f"Unknown timezone {name!r}.{did_you_mean(str(name), available_timezones())} Use an IANA name such as "
            "'UTC', 'Europe/Paris' or 'America/New_York'.",
            timezone=name,
        ) from exc


def check_reason(reason: Any) -> dict[str, Any]:
    """A trigger's reason as plain JSON.

    Raises:
        BadInput: not a JSON object with a text ``kind``, or larger than 16 KB.
    """
    example = '{"kind": "alert", "alert": "churn-drift", "metric": "psi", "value": 0.31}'
    if not isinstance(reason, Mapping):
        raise BadInput(f"A trigger's reason is a JSON object saying what started the run, e.g. {example}.")
    kind = reason.get("kind")
    if not isinstance(kind, str) or not kind.strip():
        raise BadInput(f"A trigger's reason needs a 'kind' (text) saying what started the run, e.g. {example}.")
    try:
        text = json.dumps(dict(reason), allow_nan=False)
    except (TypeError, ValueError) as exc:
        raise BadInput(f"A trigger's reason must be plain JSON (text, numbers, lists, objects): {exc}.") from exc
    if len(text.encode()) > MAX_REASON_BYTES:
        raise BadInput(
            f"A trigger's reason is {len(text.encode())} bytes; keep it under {MAX_REASON_BYTES // 1024} KB "
            "(link to the details instead of embedding them)."
        )
    plain: dict[str, Any] = json.loads(text)
    return plain


def _require_registered(session: Session, name: str) -> None:
    if session.scalar(sa.select(PipelineRow.name).filter_by(name=name)) is not None:
        return
    names = session.scalars(sa.select(PipelineRow.name)).all()
    raise NotFound(
        f"No registered pipeline named {name!r}.{did_you_mean(name, names)} Schedules and triggers run a pipeline "
        "by its registered name; register it first with 'conveyor pipeline register MODULE:ATTRIBUTE' or "
        "'conveyor apply -f pipeline.yaml'.",
        name=name,
    )


def _check_params(ws: Workspace, name: str, params: Mapping[str, Any] | None) -> dict[str, Any]:
    given = dict(params or {})
    ws.pipelines.definition(name).resolve_params(given)  # InvalidSpec: unknown parameter (did you mean)
    return given


def _asset_name(on_data: str) -> str:
    ref = parse_ref(on_data, "data asset")
    if not ref.is_latest:
        raise BadInput(
            f"A data trigger watches an asset for new versions: give its name ({ref.name!r}), not {on_data!r}.",
            asset=on_data,
        )
    return ref.name


def _latest_version(session: Session, asset: str) -> tuple[str, str] | None:
    """``(id, "name:N")`` of the asset's latest version; ``None`` when the asset has none (or is gone)."""
    row = session.execute(
        sa.select(DataVersionRow.id, DataVersionRow.version)
        .join(DataAssetRow, DataAssetRow.id == DataVersionRow.asset_id)
        .where(DataAssetRow.name == asset)
        .order_by(DataVersionRow.version.desc())
        .limit(1)
    ).first()
    return None if row is None else (str(row[0]), f"{asset}:{row[1]}")


# -- schedules -------------------------------------------------------------------------------------------


def add_schedule(
    ws: Workspace,
    name: str,
    *,
    cron: str | None = None,
    timezone: str = "UTC",
    on_data: str | None = None,
    params: Mapping[str, Any] | None = None,
) -> Schedule:
    """Schedule the registered pipeline ``name`` (see :meth:`Pipelines.schedule`)."""
    if (cron is None) == (on_data is None):
        raise BadInput(
            "A schedule needs exactly one of a cron expression (--cron '0 * * * *': every hour) or a data asset "
            "whose new versions start the pipeline (--on-data churn)."
        )
    with ws.store.read() as session:
        _require_registered(session, name)
    given = _check_params(ws, name, params)
    if cron is not None:
        values: dict[str, Any] = {"kind": "cron", "cron": check_cron(cron), "timezone": timezone, "asset": None}
        check_timezone(timezone)
    else:
        assert on_data is not None
        if timezone != "UTC":
            raise BadInput(
                "--timezone applies to cron schedules; a data trigger fires when a new version is committed, "
                "whatever the time."
            )
        values = {"kind": "data", "cron": None, "timezone": "UTC", "asset": _asset_name(on_data)}
    with ws.store.write() as session:
        seen = None
        if values["kind"] == "data":
            asset = session.scalar(sa.select(DataAssetRow.name).filter_by(name=values["asset"]))
            if asset is None:
                names = session.scalars(sa.select(DataAssetRow.name)).all()
                raise NotFound(
                    f"No data asset named {values['asset']!r}.{did_you_mean(values['asset'], names)} A data trigger "
                    "watches an existing asset; list them with 'conveyor data list'.",
                    asset=values["asset"],
                )
            latest = _latest_version(session, values["asset"])
            seen = None if latest is None else latest[0]
        for row in session.scalars(sa.select(ScheduleRow).filter_by(pipeline_name=name)):
            same = all(getattr(row, key) == value for key, value in values.items())
            if same and dict(row.params or {}) == given:
                return _to_schedule(row)  # the same schedule again: nothing new to fire
        row = ScheduleRow(
            pipeline_name=name, params=given, last_seen_version_id=seen, created_by=ws.actor, enabled=True, **values
        )
        session.add(row)
        session.flush()
        return _to_schedule(row)


def remove_schedules(ws: Workspace, name: str, schedule_id: str | None = None) -> list[Schedule]:
    """Delete the schedules of ``name`` (or only ``schedule_id``); returns what was deleted.

    Raises:
        NotFound: the pipeline has no schedules, or not that one.
    """
    with ws.store.write() as session:
        rows = list(session.scalars(sa.select(ScheduleRow).filter_by(pipeline_name=name)))
        chosen = [r for r in rows if schedule_id is None or r.id == schedule_id]
        if not chosen:
            if rows:
                ids = [r.id for r in rows]
                raise NotFound(
                    f"Pipeline {name!r} has no schedule {schedule_id!r}.{did_you_mean(schedule_id or '', ids)} Its "
                    f"schedules: {', '.join(ids)}.",
                    schedule_id=schedule_id,
                )
            scheduled = session.scalars(sa.select(ScheduleRow.pipeline_name).distinct()).all()
            raise NotFound(
                f"Pipeline {name!r} has no schedules.{did_you_mean(name, scheduled)} List them with 'conveyor "
                "pipeline schedules'.",
                name=name,
            )
        removed = [_to_schedule(r) for r in chosen]
        for r in chosen:
            session.delete(r)
        return removed


def list_schedules(ws: Workspace, name: str | None = None) -> list[Schedule]:
    """Every schedule (of ``name`` only, if given), by pipeline then age."""
    with ws.store.read() as session:
        query = sa.select(ScheduleRow).order_by(ScheduleRow.pipeline_name, ScheduleRow.created_at, ScheduleRow.id)
        if name is not None:
            query = query.where(ScheduleRow.pipeline_name == name)
        return [_to_schedule(r) for r in session.scalars(query)]


def _to_schedule(row: ScheduleRow) -> Schedule:
    next_at = None
    if row.kind == "cron" and row.cron:
        next_at = _next_cron_time(row.cron, row.timezone, row.last_fired_at or row.created_at)
    return Schedule(
        id=row.id,
        pipeline=row.pipeline_name,
        kind=row.kind,
        cron=row.cron,
        timezone=row.timezone,
        asset=row.asset,
        params=dict(row.params or {}),
        enabled=bool(row.enabled),
        last_fired_at=row.last_fired_at,
        last_seen_version_id=row.last_seen_version_id,
        next_at=next_at,
        created_at=row.created_at,
        created_by=row.created_by,
    )


def _next_cron_time(cron: str, timezone: str, after: datetime) -> datetime:
    """The first time strictly after ``after`` that ``cron`` names, read in ``timezone``; UTC."""
    from croniter import croniter

    local = after.astimezone(ZoneInfo(timezone))
    return cast(datetime, croniter(cron, local).get_next(datetime)).astimezone(UTC)


def _due_times(cron: str, timezone: str, after: datetime, now: datetime) -> tuple[datetime, datetime] | None:
    """The first and the last cron time in ``(after, now]``, or ``None`` when there is none."""
    from croniter import croniter

    first = _next_cron_time(cron, timezone, after)
    if first > now:
        return None
    last = cast(datetime, croniter(cron, now.astimezone(ZoneInfo(timezone))).get_prev(datetime)).astimezone(UTC)
    following = _next_cron_time(cron, timezone, last)
    if following <= now:  # ``now`` is exactly a cron time (get_prev is strictly before)
        last = following
    return first, max(first, last)


# -- triggers --------------------------------------------------------------------------------------------


def trigger_run(
    ws: Workspace,
    name: str,
    *,
    reason: Mapping[str, Any],
    params: Mapping[str, Any] | None = None,
    wait: bool = False,
    timeout: float = START_TIMEOUT,
) -> str:
    """Start a run of the registered pipeline ``name`` and return its id (see :meth:`Pipelines.trigger`).

    The run's ``trigger`` is ``reason`` plus a ``trigger_id`` (a fresh ULID). Without ``wait`` the run is a
    detached ``python -m conveyor --home HOME pipeline run NAME --json --trigger-json ...`` process (its output
    in ``HOME/logs/pipelines/``); the id is known once that process has recorded the run, found by the
    ``trigger_id`` no other run carries.
    """
    trigger = check_reason(reason)
    with ws.store.read() as session:
        _require_registered(session, name)
    given = _check_params(ws, name, params)
    trigger["trigger_id"] = new_id()
    if wait:
        return ws.pipelines.run(name, params=given, trigger=trigger).id
    return _start_detached(ws, name, given, trigger, timeout)


def _start_detached(ws: Workspace, name: str, params: dict[str, Any], trigger: dict[str, Any], timeout: float) -> str:
    from conveyor.workspace import workspace_env

    trigger_id = str(trigger["trigger_id"])
    folder = ws.settings.home / "logs" / "pipelines"
    folder.mkdir(parents=True, exist_ok=True)
    log_path = folder / f"{name}.{trigger_id}.log"
    command = [
        sys.executable, "-m", "conveyor", "--home", str(ws.settings.home),
        "pipeline", "run", name, "--json", "--trigger-json", json.dumps(trigger),
    ]  # fmt: skip
    for key, value in params.items():
        command += ["--param", f"{key}={json.dumps(value)}"]
    env = {**os.environ, **workspace_env(ws.settings)}
    since = utcnow() - timedelta(minutes=1)
    with log_path.open("ab") as out:
        process = subprocess.Popen(
            command,
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=subprocess.STDOUT,
            env=env,
            start_new_session=True,  # Ctrl+C or SIGTERM to the caller does not stop the run
            close_fds=True,
        )
    deadline = time.monotonic() + timeout
    try:
        while True:
            run_id = _run_with_trigger(ws, name, trigger_id, since)
            if run_id is not None:
                return run_id
            if process.poll() is not None:
                run_id = _run_with_trigger(ws, name, trigger_id, since)
                if run_id is not None:
                    return run_id
                tail = log_path.read_text(errors="replace").strip().splitlines()[-15:]
                raise ConveyorError(
                    f"The run of pipeline {name!r} did not start: its process exited with status "
                    f"{process.returncode}. Last lines of its log ({log_path}):\n" + "\n".join(tail),
                    pipeline=name,
                    log=str(log_path),
                )
            if time.monotonic() > deadline:
                raise ConveyorError(
                    f"The run of pipeline {name!r} was not recorded within {timeout:.0f} s; its process "
                    f"({process.pid}) is still starting and may record it later. Its log: {log_path}",
                    pipeline=name,
                    log=str(log_path),
                )
            time.sleep(0.05)
    finally:
        if process.returncode is None:  # reap it when it ends, so a long-lived caller keeps no zombies
            threading.Thread(target=process.wait, daemon=True, name="conveyor-run-reaper").start()


def _run_with_trigger(ws: Workspace, name: str, trigger_id: str, since: datetime) -> str | None:
    with ws.store.read() as session:
        rows = session.execute(
            sa.select(PipelineRunRow.id, PipelineRunRow.trigger).where(
                PipelineRunRow.pipeline_name == name, PipelineRunRow.started_at >= since
            )
        ).all()
    for run_id, trigger in rows:
        if (trigger or {}).get("trigger_id") == trigger_id:
            return str(run_id)
    return None


# -- the scheduler ---------------------------------------------------------------------------------------

Launch = Callable[[str, dict[str, Any], dict[str, Any]], str]
"""Starts a run: ``launch(pipeline, reason, params) -> run id``."""


class Scheduler:
    """Fires due schedules of one workspace.

    :meth:`tick` checks every enabled schedule once at ``now``:

    - a **cron** schedule is due when one of its cron times passed since it last fired (since it was made, if
      it never fired). It then fires **once**, however many cron times passed: a scheduler that was down
      across three hourly times runs the pipeline once when it comes back, not three times. ``last_fired_at``
      becomes ``now``, so the next run is at the first cron time after it.
    - a **data** schedule is due when its asset's latest version is not the one it last saw; it fires once
      and remembers that version (several versions committed between two checks give one run, for the
      latest). The run's trigger names the version.

    Deciding to fire is one conditional ``UPDATE ... WHERE last_fired_at IS <the value read>`` (or
    ``last_seen_version_id`` for data schedules), committed before the run starts: when two schedulers (say
    ``conveyor server`` and ``conveyor scheduler``) see the same due schedule, only the one whose update
    changed the row fires it. A run that then fails to start is reported (:class:`Fired` ``error``) and not
    retried until the next due time: schedules fire at most once per due time.

    Args:
        launch: starts a run and returns its id; default :func:`trigger_run` (a detached process).
        clock: the current UTC time (tests inject one).
    """

    def __init__(self, ws: Workspace, *, launch: Launch | None = None, clock: Callable[[], datetime] = utcnow) -> None:
        self._ws = ws
        self._launch = launch or self._trigger
        self._clock = clock

    def _trigger(self, pipeline: str, reason: dict[str, Any], params: dict[str, Any]) -> str:
        return trigger_run(self._ws, pipeline, reason=reason, params=params)

    def tick(self, now: datetime | None = None) -> list[Fired]:
        """Fire the schedules due at ``now`` (default: the clock); returns what fired. Marks runs and pipeline
        runs whose process died as ``crashed`` first (``mark_crashed``)."""
        at = self._clock() if now is None else now
        if at.tzinfo is None:
            raise ValueError("Scheduler.tick needs a timezone-aware time (e.g. datetime.now(UTC))")
        for mark in (self._ws.runs.mark_crashed, self._ws.pipelines.mark_crashed):  # runs whose process died
            try:
                mark()
            except Exception:
                log.exception("could not check for runs whose process died")
        return self._fire_due(list_schedules(self._ws), at.astimezone(UTC))

    def _fire_due(self, schedules: list[Schedule], now: datetime) -> list[Fired]:
        fired = []
        for schedule in schedules:
            if not schedule.enabled:
                continue
            try:
                reason = self._claim(schedule, now)
            except Exception:
                log.exception("could not check schedule %s of pipeline %s", schedule.id, schedule.pipeline)
                continue
            if reason is not None:
                fired.append(self._start(schedule, reason))
        return fired

    def _claim(self, schedule: Schedule, now: datetime) -> dict[str, Any] | None:
        """The reason to fire ``schedule`` now, having recorded that it fired; ``None`` when it is not due or
        another scheduler fired it first."""
        row = ScheduleRow
        if schedule.kind == "cron":
            assert schedule.cron is not None
            due = _due_times(schedule.cron, schedule.timezone, schedule.last_fired_at or schedule.created_at, now)
            if due is None:
                return None
            update = sa.update(row).where(row.id == schedule.id, row.enabled.is_(True))
            update = update.where(_is(row.last_fired_at, schedule.last_fired_at)).values(last_fired_at=now)
            reason: dict[str, Any] = {
                "kind": "schedule",
                "schedule_id": schedule.id,
                "cron": schedule.cron,
                "timezone": schedule.timezone,
                "due": due[1].isoformat(),
            }
            if due[0] != due[1]:
                reason["first_due"] = due[0].isoformat()
            with self._ws.store.write() as session:
                return reason if _updated(session, update) else None
        if schedule.kind == "data":
            assert schedule.asset is not None
            with self._ws.store.write() as session:
                latest = _latest_version(session, schedule.asset)
                if latest is None or latest[0] == schedule.last_seen_version_id:
                    return None
                update = sa.update(row).where(row.id == schedule.id, row.enabled.is_(True))
                update = update.where(_is(row.last_seen_version_id, schedule.last_seen_version_id))
                update = update.values(last_seen_version_id=latest[0], last_fired_at=now)
                if not _updated(session, update):
                    return None
            return {
                "kind": "data",
                "schedule_id": schedule.id,
                "asset": schedule.asset,
                "version": latest[1],
                "version_id": latest[0],
            }
        log.warning("schedule %s has an unknown kind %r; skipped", schedule.id, schedule.kind)
        return None

    def _start(self, schedule: Schedule, reason: dict[str, Any]) -> Fired:
        try:
            run_id = self._launch(schedule.pipeline, reason, dict(schedule.params))
        except ConveyorError as exc:
            log.warning("schedule %s could not start pipeline %s: %s", schedule.id, schedule.pipeline, exc.message)
            return Fired(schedule.id, schedule.pipeline, reason, error=exc.message)
        except Exception as exc:
            log.exception("schedule %s could not start pipeline %s", schedule.id, schedule.pipeline)
            return Fired(schedule.id, schedule.pipeline, reason, error=f"{type(exc).__name__}: {exc}")
        log.info("schedule %s started run %s of pipeline %s", schedule.id, run_id, schedule.pipeline)
        return Fired(schedule.id, schedule.pipeline, reason, run_id=run_id)

    def serve_forever(
        self,
        stop: threading.Event,
        interval: float = DEFAULT_INTERVAL,
        report: Callable[[Fired], None] | None = None,
    ) -> None:
        """Check the schedules now and then every ``interval`` seconds until ``stop`` is set; each firing is
        passed to ``report``. A failing check (the database unreachable, say) is logged and tried again."""
        while not stop.is_set():
            try:
                for fired in self.tick():
                    if report is not None:
                        report(fired)
            except Exception:
                log.exception("checking the schedules failed; trying again in %.0f s", interval)
            stop.wait(interval)

    def start(
        self, interval: float = DEFAULT_INTERVAL, report: Callable[[Fired], None] | None = None
    ) -> tuple[threading.Thread, threading.Event]:
        """:meth:`serve_forever` in a daemon thread; set the returned event to stop it (then join the thread)."""
        stop = threading.Event()
        thread = threading.Thread(
            target=self.serve_forever, args=(stop, interval, report), name="conveyor-scheduler", daemon=True
        )
        thread.start()
        return thread, stop


def _is(column: Any, value: Any) -> Any:
    return column.is_(None) if value is None else column == value


def _updated(session: Session, statement: Any) -> bool:
    result = session.execute(statement, execution_options={"synchronize_session": False})
    return cast(sa.CursorResult[Any], result).rowcount == 1
