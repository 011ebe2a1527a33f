"""Monitors of endpoints: definitions, runs over a window of collected requests, results as a time series,
alerts and their deliveries, the retraining action, labels sent as feedback, and the scheduler that runs due
monitors.

A run reads the requests the endpoint collected in ``[now - window, now)`` (its ``<endpoint>_requests`` asset:
turn collection on with ``conveyor endpoints create E --collect 0.1``), computes the monitor's signals (see
``conveyor.monitor._signals``) and stores one result. When a signal alerts, one alert is stored, sent on every
channel (each attempt recorded) and the action runs: ``retrain:PIPELINE`` starts a run of that registered
pipeline (not while the run a previous alert started is still going). The lineage graph records
``monitor --raised--> alert --triggered--> pipeline_run``.

Scheduled monitors (``--schedule CRON``) run when a cron time passed since their last run; deciding is one
conditional update, so two schedulers on a workspace never run a monitor twice for one time.
"""

from __future__ import annotations

import contextlib
import logging
import re
import threading
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any, cast

import sqlalchemy as sa

from conveyor.errors import BadInput, Conflict, ConveyorError, NotFound, did_you_mean
from conveyor.monitor import _signals as sig
from conveyor.monitor._alerts import check_channel, deliver
from conveyor.refs import validate_name
from conveyor.store._schema import (
    AlertDeliveryRow,
    AlertRow,
    MonitorResultRow,
    MonitorRow,
    new_id,
    utcnow,
)

if TYPE_CHECKING:
    import pyarrow as pa
    from sqlalchemy.orm import Session

    from conveyor.workspace import Workspace

__all__ = ["Alert", "Monitor", "MonitorResult", "MonitorScheduler", "parse_window"]

log = logging.getLogger("conveyor.monitor")

MAX_WINDOW = 90 * 24 * 3600
_WINDOW = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([smhdw]?)\s*$", re.IGNORECASE)
_UNITS = {"": 1, "s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}


def parse_window(text: str | int | float) -> int:
    """A window as seconds, from ``90s``, ``15m``, ``1h``, ``7d``, ``2w`` or a number of seconds.

    Raises:
        BadInput: not a duration, or outside 1 s – 90 days.
    """
    if isinstance(text, (int, float)) and not isinstance(text, bool):
        seconds = float(text)
    else:
        match = _WINDOW.match(str(text))
        if match is None:
            raise BadInput(f"Window {text!r} is not a duration; use e.g. 15m, 1h, 1d (or seconds).")
        seconds = float(match.group(1)) * _UNITS[match.group(2).lower()]
    if not 1 <= seconds <= MAX_WINDOW:
        raise BadInput(f"Window {text!r} must be from 1 second to 90 days.")
    return int(seconds)


def format_window(seconds: int) -> str:
    for unit, size in (("w", 604800), ("d", 86400), ("h", 3600), ("m", 60)):
        if seconds % size == 0:
            return f"{seconds // size}{unit}"
    return f"{seconds}s"


@dataclass(frozen=True)
class Monitor:
    """A monitor of an endpoint (see the module's docstring)."""

    id: str
    name: str
    endpoint: str
    reference: str | None
    signals: list[str]
    window_seconds: int
    schedule: str | None
    timezone: str
    alerts: list[dict[str, str]]
    action: dict[str, Any] | None
    thresholds: dict[str, Any]
    enabled: bool
    last_run_at: datetime | None
    last_status: str | None
    created_at: datetime
    created_by: str

    @property
    def window(self) -> str:
        return format_window(self.window_seconds)

    @property
    def next_at(self) -> datetime | None:
        """The next cron time the scheduler runs it at (None without a schedule)."""
        if not self.schedule or not self.enabled:
            return None
        from zoneinfo import ZoneInfo

        from croniter import croniter

        after = (self.last_run_at or self.created_at).astimezone(ZoneInfo(self.timezone))
        return cast(datetime, croniter(self.schedule, after).get_next(datetime)).astimezone(UTC)

    def effective_thresholds(self) -> dict[str, Any]:
        return {**sig.DEFAULT_THRESHOLDS, **self.thresholds}

    def to_dict(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "name": self.name,
            "endpoint": self.endpoint,
            "reference": self.reference,
            "signals": self.signals,
            "window": self.window,
            "window_seconds": self.window_seconds,
            "schedule": self.schedule,
            "timezone": self.timezone,
            "next_at": self.next_at,
            "alerts": [f"{a['kind']}:{a['target']}" if a.get("target") else a["kind"] for a in self.alerts],
            "action": self.action,
            "thresholds": self.effective_thresholds(),
            "enabled": self.enabled,
            "last_run_at": self.last_run_at,
            "last_status": self.last_status,
            "created_at": self.created_at,
            "created_by": self.created_by,
        }


@dataclass(frozen=True)
class Alert:
    """An alert: why it was raised, its deliveries (one per attempt) and what its action did."""

    id: str
    monitor: str
    result_id: str
    at: datetime
    message: str
    signals: list[str]
    action: dict[str, Any] | None
    deliveries: list[dict[str, Any]] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "monitor": self.monitor,
            "result_id": self.result_id,
            "at": self.at,
            "message": self.message,
            "signals": self.signals,
            "action": self.action,
            "deliveries": self.deliveries,
        }


@dataclass(frozen=True)
class MonitorResult:
    """One run of a monitor over one window. ``status`` is ``ok``, ``alert``, ``empty`` (no requests in the
    window) or ``error`` (``message`` says why)."""

    id: str
    monitor: str
    at: datetime
    window_start: datetime
    window_end: datetime
    rows: int
    status: str
    signals: dict[str, Any]
    message: str
    seconds: float
    trigger: str
    alert: Alert | None = None

    def to_dict(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "monitor": self.monitor,
            "at": self.at,
            "window_start": self.window_start,
            "window_end": self.window_end,
            "rows": self.rows,
            "status": self.status,
            "signals": self.signals,
            "message": self.message,
            "seconds": self.seconds,
            "trigger": self.trigger,
            "alert": None if self.alert is None else self.alert.to_dict(),
        }


def _monitor(row: MonitorRow) -> Monitor:
    return Monitor(
        id=row.id,
        name=row.name,
        endpoint=row.endpoint,
        reference=row.reference,
        signals=list(row.signals),
        window_seconds=row.window_seconds,
        schedule=row.schedule,
        timezone=row.timezone,
        alerts=list(row.alerts),
        action=row.action,
        thresholds=dict(row.thresholds),
        enabled=row.enabled,
        last_run_at=row.last_run_at,
        last_status=row.last_status,
        created_at=row.created_at,
        created_by=row.created_by,
    )


def _result(row: MonitorResultRow, monitor: str, alert: Alert | None = None) -> MonitorResult:
    return MonitorResult(
        id=row.id,
        monitor=monitor,
        at=row.at,
        window_start=row.window_start,
        window_end=row.window_end,
        rows=row.rows,
        status=row.status,
        signals=dict(row.signals),
        message=row.message,
        seconds=row.seconds,
        trigger=row.trigger,
        alert=alert,
    )


def _row(session: Session, name: str) -> MonitorRow:
    row = session.execute(sa.select(MonitorRow).where(MonitorRow.name == name)).scalar_one_or_none()
    if row is None:
        names = list(session.execute(sa.select(MonitorRow.name)).scalars())
        raise NotFound(
            f"No monitor {name!r}.{did_you_mean(name, names)} See them with: conveyor monitor list.", monitor=name
        )
    return row


def _check_signals(signals: Iterable[str]) -> list[str]:
    chosen = [str(s).strip().lower() for s in signals if str(s).strip()]
    if not chosen:
        raise BadInput(f"Give at least one signal: {', '.join(sig.SIGNALS)}.")
    for name in chosen:
        if name not in sig.SIGNALS:
            raise BadInput(
                f"Unknown signal {name!r}.{did_you_mean(name, sig.SIGNALS)} Use: {', '.join(sig.SIGNALS)}.",
                signal=name,
            )
    return list(dict.fromkeys(chosen))


def _check_action(
    ws: Workspace, action: str | Mapping[str, Any] | None, options: Mapping[str, Any] | None = None
) -> dict[str, Any] | None:
    from conveyor.monitor._loop import check_loop_options

    if action is None or action == "":
        if options:
            raise BadInput("Retraining options (margin, canary, approval) need --action retrain:PIPELINE.")
        return None
    given = dict(options or {})
    if isinstance(action, Mapping):
        kind, target = str(action.get("kind", "")), str(action.get("pipeline", ""))
        given = {**dict(action.get("options", {})), **given}
    else:
        kind, _, target = str(action).partition(":")
    if kind != "retrain" or not target:
        raise BadInput(f"Unknown action {action!r}; use retrain:PIPELINE (a registered pipeline).")
    ws.pipelines.get(target)  # NotFound names the registered ones
    return {"kind": "retrain", "pipeline": target, "options": check_loop_options(given)}


def create(
    ws: Workspace,
    name: str,
    endpoint: str,
    *,
    signals: Iterable[str] = ("drift", "quality", "prediction"),
    window: str | int = "1h",
    reference: str | None = None,
    schedule: str | None = None,
    timezone: str = "UTC",
    alerts: Iterable[str] = ("log",),
    action: str | Mapping[str, Any] | None = None,
    thresholds: Mapping[str, Any] | None = None,
    retrain: Mapping[str, Any] | None = None,
    replace: bool = False,
) -> Monitor:
    """Create (or with ``replace``, redefine) a monitor; see :meth:`Monitors.create`."""
    from conveyor.monitor._service import looks_like_path
    from conveyor.pipelines._schedule import check_cron, check_timezone

    validate_name(name, "monitor")
    found = ws.endpoints.get(endpoint)
    if not float(found.settings.get("collect") or 0):
        raise BadInput(
            f"Endpoint {endpoint!r} does not collect its requests, so a monitor would see nothing. Collection is "
            "chosen when an endpoint is made: create one that keeps a share of its requests (conveyor endpoints "
            "create NAME --collect 0.1), deploy the model to it, and monitor that one.",
            endpoint=endpoint,
        )
    chosen = _check_signals(signals)
    seconds = parse_window(window)
    if reference is not None:
        if looks_like_path(reference):
            raise BadInput(
                f"A monitor's reference is a data version (name, name:3, name@latest), not a file: ingest it first "
                f"(conveyor data ingest {reference} --name NAME)."
            )
        reference = ws.data.get(reference).ref
    cron = check_cron(schedule) if schedule else None
    check_timezone(timezone)
    channels = [check_channel(a) for a in alerts]
    if any(c["kind"] == "email" for c in channels):
        from conveyor.monitor._alerts import smtp_settings

        if smtp_settings(ws) is None:
            raise BadInput(
                "Email alerts need an SMTP server: set [smtp] host (and port, from) in conveyor.toml, or "
                "CONVEYOR_SMTP_HOST."
            )
    checked_action = _check_action(ws, action, retrain)
    checked = sig.check_thresholds(dict(thresholds or {}))
    values = {
        "endpoint": endpoint,
        "reference": reference,
        "signals": chosen,
        "window_seconds": seconds,
        "schedule": cron,
        "timezone": timezone,
        "alerts": channels,
        "action": checked_action,
        "thresholds": checked,
        "enabled": True,
    }
    with ws.store.write() as session:
        row = session.execute(sa.select(MonitorRow).where(MonitorRow.name == name)).scalar_one_or_none()
        if row is not None and not replace:
            raise Conflict(
                f"Monitor {name!r} exists (on endpoint {row.endpoint}). Redefine it with --replace, or delete it: "
                f"conveyor monitor delete {name}.",
                monitor=name,
            )
        if row is None:
            row = MonitorRow(name=name, created_by=ws.actor, **values)
            session.add(row)
        else:
            for key, value in values.items():
                setattr(row, key, value)
        session.flush()
        return _monitor(row)


def get(ws: Workspace, name: str) -> Monitor:
    with ws.store.read() as session:
        return _monitor(_row(session, name))


def list_all(ws: Workspace, endpoint: str | None = None) -> list[Monitor]:
    query = sa.select(MonitorRow).order_by(MonitorRow.name)
    if endpoint is not None:
        query = query.where(MonitorRow.endpoint == endpoint)
    with ws.store.read() as session:
        return [_monitor(row) for row in session.execute(query).scalars()]


def delete(ws: Workspace, name: str) -> Monitor:
    with ws.store.write() as session:
        row = _row(session, name)
        found = _monitor(row)
        session.delete(row)
        return found


def history(ws: Workspace, name: str, limit: int = 100) -> list[MonitorResult]:
    """The monitor's results, newest first, each with the alert it raised."""
    if not 1 <= limit <= 100_000:
        raise BadInput(f"limit {limit} must be from 1 to 100000.")
    with ws.store.read() as session:
        monitor = _row(session, name)
        rows = list(
            session.execute(
                sa.select(MonitorResultRow)
                .where(MonitorResultRow.monitor_id == monitor.id)
                .order_by(MonitorResultRow.at.desc(), MonitorResultRow.id.desc())
                .limit(limit)
            ).scalars()
        )
        found = _alerts_of(session, name, [r.id for r in rows])
        return [_result(r, name, found.get(r.id)) for r in rows]


def alerts(ws: Workspace, name: str, limit: int = 100) -> list[Alert]:
    with ws.store.read() as session:
        monitor = _row(session, name)
        ids = list(
            session.execute(
                sa.select(AlertRow.result_id)
                .where(AlertRow.monitor_id == monitor.id)
                .order_by(AlertRow.at.desc())
                .limit(limit)
            ).scalars()
        )
        found = _alerts_of(session, name, ids)
        return [found[i] for i in ids if i in found]


def _alerts_of(session: Session, monitor: str, result_ids: list[str]) -> dict[str, Alert]:
    if not result_ids:
        return {}
    rows = list(session.execute(sa.select(AlertRow).where(AlertRow.result_id.in_(result_ids))).scalars())
    deliveries: dict[str, list[dict[str, Any]]] = {}
    if rows:
        for d in session.execute(
            sa.select(AlertDeliveryRow)
            .where(AlertDeliveryRow.alert_id.in_([r.id for r in rows]))
            .order_by(AlertDeliveryRow.id)
        ).scalars():
            deliveries.setdefault(d.alert_id, []).append(
                {
                    "channel": d.channel,
                    "target": d.target,
                    "attempt": d.attempt,
                    "at": d.at,
                    "ok": d.ok,
                    "status_code": d.status_code,
                    "error": d.error,
                }
            )
    return {
        r.result_id: Alert(
            r.id, monitor, r.result_id, r.at, r.message, list(r.signals), r.action, deliveries.get(r.id, [])
        )
        for r in rows
    }


# -- running ---------------------------------------------------------------------------------------------


def _main_model(ws: Workspace, endpoint: str) -> str | None:
    """The model version the endpoint's largest traffic share goes to (``name:version``)."""
    found = ws.endpoints.get(endpoint)
    live = sorted(found.deployments, key=lambda d: (d.traffic, d.created_at), reverse=True)
    return live[0].model if live else None


def _baseline(ws: Workspace, model: str) -> dict[str, float]:
    """The model's own test figures (``test_<metric>`` of its version or training run), by performance metric."""
    version = ws.models.get(model)
    metrics: dict[str, Any] = dict(version.metrics)
    if version.run_id:
        with contextlib.suppress(NotFound):
            metrics = {**ws.runs.get(version.run_id).metrics, **metrics}
    found = {}
    for name in sig.PERFORMANCE_METRICS:
        value = metrics.get(f"test_{name}")
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            found[name] = float(value)
    return found


def run(
    ws: Workspace,
    name: str,
    *,
    now: datetime | None = None,
    trigger: str = "manual",
    sleep: Callable[[float], None] = time.sleep,
) -> MonitorResult:
    """Run a monitor now on its last window; store and return the result (and alert, if one was raised).

    A failure to compute (a reference that cannot be read, a model without a training data version) is a
    result with status ``error`` saying why, not an exception: the time series shows it.
    """
    started = time.perf_counter()
    end = (now or utcnow()).astimezone(UTC)
    monitor = get(ws, name)
    start = end - timedelta(seconds=monitor.window_seconds)
    thresholds = monitor.effective_thresholds()
    rows, status, message = 0, "ok", ""
    outcomes: dict[str, sig.SignalResult] = {}
    details: dict[str, Any] = {}
    try:
        rows, outcomes, details = _compute(ws, monitor, start, end, thresholds)
        if rows == 0:
            status = "empty"
            message = (
                details.pop("empty", "") or f"No requests collected between {start:%Y-%m-%d %H:%M} and {end:%H:%M} UTC."
            )
        elif any(o.alert for o in outcomes.values()):
            status = "alert"
            problems = [p for o in outcomes.values() for p in o.problems]
            message = f"Monitor {name} on {monitor.endpoint}: " + "; ".join(problems[:6])
            if len(problems) > 6:
                message += f"; and {len(problems) - 6} more"
    except ConveyorError as exc:
        status, message = "error", exc.message
    except Exception as exc:
        log.exception("monitor %s failed", name)
        status, message = "error", f"{type(exc).__name__}: {exc}"
    signals = {**details, **{n: o.to_dict() for n, o in outcomes.items()}}
    result_id = new_id()
    with ws.store.write() as session:
        row = _row(session, name)
        session.add(
            MonitorResultRow(
                id=result_id,
                monitor_id=row.id,
                at=utcnow(),
                window_start=start,
                window_end=end,
                rows=rows,
                status=status,
                signals=_plain(signals),
                message=message[:20_000],
                seconds=round(time.perf_counter() - started, 4),
                trigger=trigger,
            )
        )
        row.last_status = status
        if trigger == "manual":
            row.last_run_at = end  # a scheduled run claimed its time already
    alert = None
    if status == "alert":
        model = details.get("model")
        alert = _raise_alert(ws, monitor, result_id, message, outcomes, start, end, rows, sleep, model)
    with ws.store.read() as session:
        stored = session.get(MonitorResultRow, result_id)
        assert stored is not None
        return _result(stored, name, alert)


def _reference_types(ws: Workspace, reference: Any) -> dict[str, Any]:
    """The Arrow type of each reference column: from a table's schema, or for a stored profile, from the data
    version it was computed from (when it still resolves)."""
    from conveyor.monitor._profile import Profile

    if not isinstance(reference, Profile):
        return {f.name: f.type for f in reference.schema}
    with contextlib.suppress(ConveyorError):
        version = ws.data.get(reference.source)
        types = {str(c["name"]): _arrow_type(str(c["type"])) for c in version.schema}
        return {name: found for name, found in types.items() if found is not None}
    return {}


def _arrow_type(text: str) -> Any:
    """The Arrow type a data version's schema names (``date32[day]``, ``timestamp[us]``), or None."""
    import pyarrow as pa

    try:
        return pa.type_for_alias(text.replace("[day]", ""))
    except (ValueError, KeyError):
        return None


def _align_temporal(window: pa.Table, types: dict[str, Any]) -> pa.Table:
    """Requests carry dates as text (JSON has no date type): read them as the reference's date or timestamp type,
    so they are compared as dates rather than counted as type errors. Text that does not parse stays text."""
    import pyarrow as pa
    import pyarrow.compute as pc

    for name, wanted in types.items():
        if name not in window.column_names or not pa.types.is_temporal(wanted):
            continue
        column = window.column(name)
        if not (pa.types.is_string(column.type) or pa.types.is_large_string(column.type)):
            continue
        try:
            parsed = pc.cast(pc.cast(column, pa.timestamp("us")), wanted)
        except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
            continue
        window = window.set_column(window.column_names.index(name), name, parsed)
    return window


def _reference(ws: Workspace, monitor: Monitor, model: str | None) -> tuple[Any, str]:
    """The monitor's reference (a context giving a table or a profile) and its label."""
    if monitor.reference is not None:
        return ws.monitors._side(monitor.reference, "reference"), monitor.reference
    if model is None:
        raise BadInput(f"Endpoint {monitor.endpoint} serves no model; give the monitor a --reference DATA.")
    return contextlib.nullcontext(ws.monitors.reference(model)), f"model:{model}"


def _compute(
    ws: Workspace, monitor: Monitor, start: datetime, end: datetime, thresholds: dict[str, Any]
) -> tuple[int, dict[str, sig.SignalResult], dict[str, Any]]:
    from conveyor.monitor._drift import compute_drift
    from conveyor.monitor._metrics import SMALL_REFERENCE
    from conveyor.monitor._service import PREDICTION
    from conveyor.monitor._table import Table

    window = sig.read_window(ws, monitor.endpoint, start, end)
    if window is None:
        asset = sig.collected_asset(monitor.endpoint)
        return 0, {}, {"empty": f"Endpoint {monitor.endpoint} has collected no requests yet ({asset} does not exist)."}
    model = _main_model(ws, monitor.endpoint)
    details: dict[str, Any] = {"model": model}
    if monitor.reference is None and model is not None and "model" in window.column_names:
        import pyarrow.compute as pc

        window = window.filter(pc.equal(window.column("model"), model))  # the rows this model scored
    rows = window.num_rows
    if rows == 0:
        return 0, {}, details
    outcomes: dict[str, sig.SignalResult] = {}
    inputs = [str(c["name"]) for c in ws.models.get(model).signature.get("inputs", [])] if model else []
    reference_ctx, details["reference"] = _reference(ws, monitor, model)
    known = {"request_id", "row", "ts", "deployment", "model", "prediction", "score"}
    columns = inputs or [c for c in window.column_names if c not in known]
    with reference_ctx as reference:
        window = _align_temporal(window, _reference_types(ws, reference))
        current = Table(f"{monitor.endpoint} {start:%Y-%m-%d %H:%M}–{end:%H:%M} UTC", table=window)
        wants_inputs = {"drift", "quality"} & set(monitor.signals)
        if wants_inputs:
            present = [c for c in columns if c in reference.columns]
            metric = thresholds.get("metric")
            if metric is None and rows <= SMALL_REFERENCE:
                # Normalised Wasserstein's own sampling noise exceeds its 0.1 threshold below a few hundred rows:
                # small windows compare numbers with KS, whose p-value accounts for the sample's size.
                metric = "ks"
                details["note"] = f"{rows} rows in the window (at most {SMALL_REFERENCE}): numeric columns by KS"
            report = compute_drift(
                reference, current, columns=present, metric=metric, drift_share=thresholds["drift_share"]
            )
            if "drift" in monitor.signals:
                outcomes["drift"] = sig.drift_signal(report, rows, thresholds)
            if "quality" in monitor.signals:
                outcomes["quality"] = sig.quality_signal(report, rows, thresholds)
        if "prediction" in monitor.signals:
            if PREDICTION in reference.columns and PREDICTION in window.column_names:
                predicted = compute_drift(reference, current, columns=[PREDICTION], prediction=PREDICTION)
                outcomes["prediction"] = sig.prediction_signal(predicted, rows, thresholds, "")
            else:
                why = (
                    "the reference holds no predictions (a data version: give the model's profile instead, the default)"
                    if PREDICTION not in reference.columns
                    else "the collected requests hold no predictions"
                )
                outcomes["prediction"] = sig.prediction_signal(None, rows, thresholds, why)
    if "performance" in monitor.signals:
        joined = sig.join_feedback(ws, monitor.endpoint, window)
        outcomes["performance"] = sig.performance_signal(joined, thresholds, _baseline(ws, model) if model else {})
    return rows, outcomes, details


def _raise_alert(
    ws: Workspace,
    monitor: Monitor,
    result_id: str,
    message: str,
    outcomes: dict[str, sig.SignalResult],
    start: datetime,
    end: datetime,
    rows: int,
    sleep: Callable[[float], None],
    model: str | None,
) -> Alert:
    from conveyor.governance import add_edge

    alert_id = new_id()
    alerting = [n for n, o in outcomes.items() if o.alert]
    at = utcnow()
    action = _act(ws, monitor, alert_id, alerting, model)
    payload = {
        "alert_id": alert_id,
        "monitor": monitor.name,
        "endpoint": monitor.endpoint,
        "at": at.isoformat(),
        "window": {"start": start.isoformat(), "end": end.isoformat()},
        "rows": rows,
        "signals": alerting,
        "problems": [p for o in outcomes.values() for p in o.problems],
        "message": message,
        "action": action,
    }
    attempts = deliver(ws, monitor.alerts, payload, sleep=sleep)
    with ws.store.write() as session:
        session.add(
            AlertRow(
                id=alert_id,
                monitor_id=monitor.id,
                result_id=result_id,
                at=at,
                message=message[:20_000],
                signals=alerting,
                action=action,
            )
        )
        session.flush()
        for a in attempts:
            session.add(
                AlertDeliveryRow(
                    alert_id=alert_id,
                    channel=a.channel,
                    target=a.target[:512],
                    attempt=a.attempt,
                    ok=a.ok,
                    status_code=a.status_code,
                    error=None if a.error is None else a.error[:2000],
                )
            )
        add_edge(session, "monitor", monitor.id, "raised", "alert", alert_id)
        if action and action.get("run_id"):
            add_edge(session, "alert", alert_id, "triggered", "pipeline_run", str(action["run_id"]))
    with ws.store.read() as session:
        return _alerts_of(session, monitor.name, [result_id])[result_id]


def _act(
    ws: Workspace, monitor: Monitor, alert_id: str, alerting: list[str], model: str | None
) -> dict[str, Any] | None:
    """Start the monitor's action; what it did (or why it did not) is recorded on the alert. A started retraining
    is a promotion in the stage ``training`` that :func:`conveyor.monitor._loop.advance` carries on."""
    if not monitor.action:
        return None
    from conveyor.monitor._loop import ACTIVE_STAGES, OPEN_DAYS
    from conveyor.pipelines._schedule import trigger_run

    pipeline = str(monitor.action["pipeline"])
    found: dict[str, Any] = {
        "kind": "retrain",
        "pipeline": pipeline,
        "champion": model,
        "options": dict(monitor.action.get("options", {})),
    }
    with ws.store.read() as session:
        for earlier in session.execute(
            sa.select(AlertRow.id, AlertRow.action)
            .where(AlertRow.monitor_id == monitor.id, AlertRow.at >= utcnow() - timedelta(days=OPEN_DAYS))
            .order_by(AlertRow.at.desc())
            .limit(50)
        ).all():
            if earlier.action and earlier.action.get("stage") in ACTIVE_STAGES:
                found["skipped"] = f"alert {earlier.id}'s retraining is still {earlier.action['stage']}"
                return found
    if model is None:
        found["error"] = f"endpoint {monitor.endpoint} serves no model to retrain"
        return found
    reason = {
        "kind": "alert",
        "monitor": monitor.name,
        "endpoint": monitor.endpoint,
        "alert_id": alert_id,
        "signals": alerting,
    }
    try:
        params = _training_params(ws, monitor, pipeline, model)
        found["run_id"] = trigger_run(ws, pipeline, reason=reason, params=params)
    except ConveyorError as exc:
        found["error"] = exc.message
        return found
    except Exception as exc:  # noqa: BLE001 - the alert says why the retraining did not start
        found["error"] = f"{type(exc).__name__}: {exc}"
        return found
    if params.get("data"):
        found["data"] = params["data"]
    found["stage"] = "training"
    found["timeline"] = [
        {
            "at": utcnow().isoformat(),
            "stage": "training",
            "message": f"pipeline {pipeline} run {found['run_id']} started",
        }
    ]
    return found


def _training_params(ws: Workspace, monitor: Monitor, pipeline: str, model: str) -> dict[str, Any]:
    """What the retraining pipeline is given: when it declares a ``data`` parameter, a new version of
    ``<endpoint>_labelled`` (the collected requests with their labels, under the training target's name, less the
    held-out slice); ``target`` too when declared."""
    import pyarrow as pa

    from conveyor.monitor._loop import holdout, labelled_rows

    declared = ws.pipelines.definition(pipeline).params
    if "data" not in declared:
        return {}
    table = labelled_rows(ws, monitor.endpoint)
    if table is None or table.num_rows == 0:
        return {}
    version = ws.models.get(model)
    target = "label"
    if version.run_id:
        with contextlib.suppress(NotFound):
            target = ws.runs.get(version.run_id).params.get("target", "label") or "label"
    inputs = [str(c["name"]) for c in version.signature.get("inputs", [])]
    rows = table.column("row").to_pylist() if "row" in table.column_names else [0] * table.num_rows
    keep = pa.array(
        [not holdout(str(i), int(r or 0)) for i, r in zip(table.column("request_id").to_pylist(), rows, strict=True)]
    )
    kept = table.filter(keep)
    columns = {c: kept.column(c) for c in inputs if c in kept.column_names}
    columns[target] = kept.column("label")
    stored, _ = ws.data.commit_table(
        pa.table(columns),
        name=f"{monitor.endpoint}_labelled",
        source={"kind": "monitor", "monitor": monitor.name, "endpoint": monitor.endpoint},
        description=f"Requests of endpoint {monitor.endpoint} with their labels ({target}), less the held-out slice.",
    )
    params: dict[str, Any] = {"data": stored.ref}
    if "target" in declared:
        params["target"] = target
    return params


def _plain(value: Any) -> Any:
    """JSON-safe: NaN and infinities become None, NumPy scalars plain numbers, times ISO text."""
    import math

    import numpy as np

    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, datetime):
        return value.isoformat()
    return value


# -- feedback --------------------------------------------------------------------------------------------


def feedback(
    ws: Workspace,
    name: str,
    data: Any,
    *,
    label: str | None = None,
    id_column: str = "request_id",
    row_column: str = "row",
) -> dict[str, Any]:
    """Store labels for an endpoint's requests (see :meth:`Monitors.feedback`)."""
    import pyarrow as pa
    import pyarrow.compute as pc

    monitor = get(ws, name)
    with ws.monitors._side(data, "feedback") as table:
        names = table.columns
        if id_column not in names:
            raise BadInput(
                f"The feedback has no {id_column!r} column (the request id the endpoint answered with, header "
                f"x-request-id). Its columns: {', '.join(names[:20])}.{did_you_mean(id_column, names)}"
            )
        others = [c for c in names if c not in (id_column, row_column)]
        if label is None:
            if len(others) != 1:
                raise BadInput(
                    f"Name the label column with --label (the feedback has {len(others)} candidates: "
                    f"{', '.join(others[:10])})."
                )
            label = others[0]
        elif label not in names:
            raise BadInput(f"The feedback has no column {label!r}.{did_you_mean(label, names)}")
        arrow = pa.table({c: table.column(c) for c in (id_column, row_column, label) if c in names})
    if arrow.num_rows == 0:
        raise BadInput("The feedback holds no rows.")
    ids = pc.cast(arrow.column(id_column), pa.string())
    if ids.null_count:
        raise BadInput(f"{ids.null_count} feedback row(s) have no {id_column}; every label needs its request id.")
    if row_column in arrow.column_names:
        try:
            rows = pc.cast(arrow.column(row_column), pa.int64())
        except (pa.ArrowInvalid, pa.ArrowNotImplementedError) as exc:
            raise BadInput(f"Column {row_column!r} must hold whole numbers (the row's index in its request).") from exc
        rows = pc.fill_null(rows, 0)
    else:
        rows = pa.array([0] * arrow.num_rows, pa.int64())
    labels = arrow.column(label)
    if pa.types.is_null(labels.type) or labels.null_count == arrow.num_rows:
        raise BadInput(f"Column {label!r} holds no labels (every value is empty).")
    stored = pa.table(
        {
            "request_id": ids,
            "row": rows,
            "label": labels,
            "ts": pa.array([time.time()] * arrow.num_rows, pa.float64()),
        }
    )
    asset = sig.feedback_asset(monitor.endpoint)
    kwargs: dict[str, Any] = {
        "name": asset,
        "source": {"kind": "feedback", "monitor": monitor.name, "endpoint": monitor.endpoint},
        "description": f"Labels for the requests of endpoint {monitor.endpoint}, joined by request id and row.",
    }
    try:
        version, _ = ws.data.commit_table(stored, mode="append", **kwargs)
    except ConveyorError as exc:
        raise BadInput(
            f"These labels do not match the type of the labels stored before in {asset}: {exc.message}"
        ) from exc
    matched = _matched(ws, monitor.endpoint, stored)
    return {
        "monitor": monitor.name,
        "endpoint": monitor.endpoint,
        "asset": version.ref,
        "rows": stored.num_rows,
        "matched": matched,
        "unmatched": stored.num_rows - matched,
    }


def _matched(ws: Workspace, endpoint: str, labels: pa.Table) -> int:
    """How many labels name a (request id, row) the endpoint collected."""
    with sig._parts(ws, sig.collected_asset(endpoint)) as paths:
        if paths is None:
            return 0
        con = sig._duckdb()
        try:
            con.register("labels", labels)
            has_row = "row" in [
                r[0]
                for r in con.execute("DESCRIBE SELECT * FROM read_parquet(?, union_by_name = true)", [paths]).fetchall()
            ]
            row = "c.row" if has_row else "0"
            found = con.execute(
                f"SELECT count(*) FROM labels l WHERE EXISTS (SELECT 1 FROM read_parquet(?, union_by_name = true) c "
                f"WHERE c.request_id = l.request_id AND {row} = l.row)",
                [paths],
            ).fetchone()
        finally:
            con.close()
    return int(found[0]) if found else 0


# -- scheduling ------------------------------------------------------------------------------------------


class MonitorScheduler:
    """Runs monitors whose cron time passed since their last run (inside ``conveyor server`` and
    ``conveyor scheduler``). Claiming a due monitor is one conditional update of ``last_run_at``."""

    def __init__(self, ws: Workspace, *, clock: Callable[[], datetime] = utcnow) -> None:
        self._ws = ws
        self._clock = clock
        #: the promotions (retrain → gates → canary) the last tick moved on
        self.advanced: list[dict[str, Any]] = []

    def tick(self, now: datetime | None = None) -> list[MonitorResult]:
        at = (now or self._clock()).astimezone(UTC)
        done = []
        for monitor in list_all(self._ws):
            next_at = monitor.next_at
            if next_at is None or next_at > at:
                continue
            if not self._claim(monitor, at):
                continue
            try:
                done.append(run(self._ws, monitor.name, now=at, trigger="schedule"))
            except NotFound:
                continue  # deleted meanwhile
        from conveyor.monitor._loop import advance

        self.advanced = advance(self._ws, now=at)
        return done

    def _claim(self, monitor: Monitor, at: datetime) -> bool:
        column = MonitorRow.last_run_at
        same = column.is_(None) if monitor.last_run_at is None else column == monitor.last_run_at
        update = sa.update(MonitorRow).where(MonitorRow.id == monitor.id, same).values(last_run_at=at)
        with self._ws.store.write() as session:
            result = session.execute(update, execution_options={"synchronize_session": False})
            return cast(sa.CursorResult[Any], result).rowcount == 1

    def serve_forever(
        self, stop: threading.Event, interval: float, report: Callable[[MonitorResult], None] | None = None
    ) -> None:
        while not stop.is_set():
            try:
                for result in self.tick():
                    if report is not None:
                        report(result)
            except Exception:
                log.exception("running due monitors failed; trying again in %.0f s", interval)
            stop.wait(interval)

    def start(
        self, interval: float, report: Callable[[MonitorResult], None] | None = None
    ) -> tuple[threading.Thread, threading.Event]:
        stop = threading.Event()
        thread = threading.Thread(
            target=self.serve_forever, args=(stop, interval, report), name="conveyor-monitors", daemon=True
        )
        thread.start()
        return thread, stop
