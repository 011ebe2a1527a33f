"""The closed loop: an alert's retraining run, then gates, then a canary, then promotion or rollback.

An alert whose monitor has ``--action retrain:PIPELINE`` starts the pipeline (``_monitors._act``) and records,
on the alert, a *promotion* in the stage ``training``. :func:`advance` (called by the scheduler at every check,
by ``conveyor monitor advance`` and by the quickstart's loop) moves each open promotion on as far as it can:

``training``
    waits for the pipeline run. Failed: the promotion is ``failed`` (the champion stays; the alert says why).
    Succeeded: the challenger is the newest version of the champion's model registered after the alert; it gets
    the alias ``challenger``. None registered: ``failed``.
``evaluating``
    scores the champion and the challenger on the same fresh held-out rows: labelled requests whose request id
    falls in the hold-out slice (one in five by a stable hash; the data handed to the pipeline leaves them out).
    The gate: the challenger's primary metric (ROC AUC for binary classifiers with probabilities, accuracy for
    other classifiers, RMSE for regressors) must beat the champion's by ``margin`` (default 0: at least as good),
    and the challenger must carry no failed guardrail. With ``max_fairness_difference``, the challenger's
    demographic-parity and equalized-odds differences (a binary classifier; for a regressor the spread of the mean
    absolute error across groups, in the target's units) on the same rows, per sensitive column its run declared
    (``conveyor train --sensitive COL``), may not exceed it. Fails: ``rejected`` (it stays ``@challenger``, unserved).
    With ``require_approval``: ``awaiting_approval`` until ``conveyor monitor approve ALERT``.
``canary``
    the challenger is deployed beside the champion with ``canary`` % of the traffic (default 10). After
    ``canary_seconds`` (default 60) the endpoint's own metrics over that time decide: the canary's 5xx share may
    not exceed the stable deployment's by more than ``max_error_increase`` (0.02), nor its latency
    ``max_latency_ratio`` (2×) times the stable one's plus 50 ms (p95 when both saw 100 requests, else the
    median: a p95 of twenty requests is one slow request). Healthy: the canary takes 100 %, the alias
    ``champion`` moves to it and the old deployment is deleted (``promoted``). Unhealthy: traffic goes back,
    the canary is deleted (``rolled_back``). A canary that saw fewer than ``canary_min_requests`` (20) requests
    waits, up to ten windows, then rolls back.

Each step is appended to the promotion's ``timeline`` and to the lineage graph (pipeline run → model version,
alert → model version as ``challenger``, model version → deployment).
"""

from __future__ import annotations

import contextlib
import hashlib
from collections.abc import Callable
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any

import sqlalchemy as sa

from conveyor.errors import BadInput, Conflict, ConveyorError, NotFound
from conveyor.store._schema import AlertRow, MonitorRow, utcnow

if TYPE_CHECKING:
    import pyarrow as pa

    from conveyor.workspace import Workspace

__all__ = [
    "ACTIVE_STAGES",
    "LOOP_DEFAULTS",
    "advance",
    "approve",
    "check_loop_options",
    "holdout",
    "labelled_rows",
    "scrape_endpoint",
    "traffic_between",
]

ACTIVE_STAGES = ("training", "evaluating", "awaiting_approval", "canary")
LOOP_DEFAULTS: dict[str, Any] = {
    "margin": 0.0,
    "require_approval": False,
    "canary": 10,
    "canary_seconds": 60.0,
    "canary_min_requests": 20,
    "max_error_increase": 0.02,
    "max_latency_ratio": 2.0,
    "retrain_timeout": 3600.0,
    "max_fairness_difference": None,
}
OPEN_DAYS = 7
"""Promotions are looked at for this many days after their alert (older ones were ended or are stuck for good)."""
TAIL_REQUESTS = 100
"""Requests each side of a canary needs before p95 latencies are compared (medians below that)."""
HOLDOUT_SLICE = 5
"""One labelled request in this many is held out of retraining and kept for comparing the models."""


def check_loop_options(options: dict[str, Any]) -> dict[str, Any]:
    """The loop's options checked (see :data:`LOOP_DEFAULTS`).

    Raises:
        BadInput: an unknown option or a value out of range.
    """
    checked: dict[str, Any] = {}
    for key, value in options.items():
        if key not in LOOP_DEFAULTS:
            raise BadInput(f"Unknown retraining option {key!r}; use: {', '.join(LOOP_DEFAULTS)}.")
        if key == "require_approval":
            checked[key] = bool(value)
            continue
        if key == "max_fairness_difference" and value is None:
            continue
        try:
            number = float(value)
        except (TypeError, ValueError):
            raise BadInput(f"Retraining option {key} must be a number; got {value!r}.") from None
        low, high = {
            "canary": (1, 99),
            "margin": (-1.0, 1e6),
            "canary_min_requests": (0, 1e9),
            "max_fairness_difference": (0.0, 1e9),
        }.get(key, (0.0, 1e7))
        if not low <= number <= high:
            raise BadInput(f"Retraining option {key} must be from {low:g} to {high:g}; got {value!r}.")
        checked[key] = int(number) if key in ("canary", "canary_min_requests") else number
    return checked


def holdout(request_id: str, row: int) -> bool:
    """Whether a labelled request row is held out of retraining (stable across processes and runs)."""
    digest = hashlib.blake2b(f"{request_id}\x00{row}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big") % HOLDOUT_SLICE == 0


def labelled_rows(ws: Workspace, endpoint: str, model: str | None = None) -> pa.Table | None:
    """Every collected request row with its latest label (column ``label``), the model's inputs kept; only the
    rows ``model`` scored when given. None when there are no labels or no collected requests."""
    from conveyor.monitor import _signals as sig

    with sig._parts(ws, sig.collected_asset(endpoint)) as requests, sig._parts(ws, sig.feedback_asset(endpoint)) as fb:
        if requests is None or fb is None:
            return None
        con = sig._duckdb()
        try:
            names = [
                r[0]
                for r in con.sql(
                    "DESCRIBE SELECT * FROM read_parquet($p, union_by_name = true)", params={"p": requests}
                ).fetchall()
            ]
            row = "r.row" if "row" in names else "0"
            where = "WHERE r.model = $model" if model is not None and "model" in names else ""
            params: dict[str, Any] = {"requests": requests, "feedback": fb}
            if where:
                params["model"] = model
            table: pa.Table = con.sql(
                f"""
                WITH labels AS ({sig.LATEST_LABELS})
                SELECT r.*, l.label AS label
                FROM read_parquet($requests, union_by_name = true) r
                JOIN labels l ON r.request_id = l.request_id AND {row} = l.row
                {where}
                ORDER BY r.ts
                """,
                params=params,
            ).to_arrow_table()
        finally:
            con.close()
    return table


# -- the state machine -----------------------------------------------------------------------------------


def _step(promotion: dict[str, Any], stage: str, message: str) -> None:
    promotion["stage"] = stage
    promotion.setdefault("timeline", []).append({"at": utcnow().isoformat(), "stage": stage, "message": message})


def _save(ws: Workspace, alert_id: str, promotion: dict[str, Any]) -> None:
    with ws.store.write() as session:
        row = session.get(AlertRow, alert_id)
        if row is not None:
            row.action = dict(promotion)


def advance(
    ws: Workspace, *, now: datetime | None = None, scrape: Callable[[str], dict[str, Any]] | None = None
) -> list[dict[str, Any]]:
    """Move every open promotion on as far as it can go now; returns the promotions that changed."""
    with ws.store.read() as session:
        rows = session.execute(
            sa.select(AlertRow.id, AlertRow.at, AlertRow.action, MonitorRow.endpoint, MonitorRow.name)
            .join(MonitorRow, MonitorRow.id == AlertRow.monitor_id)
            .where(AlertRow.at >= (now or utcnow()) - timedelta(days=OPEN_DAYS))
            .order_by(AlertRow.at)
        ).all()
    changed = []
    for alert_id, at, action, endpoint, monitor in rows:
        if not action or action.get("stage") not in ACTIVE_STAGES:
            continue
        promotion = dict(action)
        before = promotion.get("stage")
        try:
            _advance_one(
                ws, alert_id, at, endpoint, monitor, promotion, now or utcnow(), scrape or _scraper(ws, endpoint)
            )
        except ConveyorError as exc:
            _step(promotion, "failed", f"{type(exc).__name__}: {exc.message}; the champion stays")
        except Exception as exc:  # noqa: BLE001 - a promotion that breaks must end, recorded, not retry forever
            _step(promotion, "failed", f"{type(exc).__name__}: {exc}; the champion stays")
        if promotion.get("stage") != before or promotion != action:
            _save(ws, alert_id, promotion)
            changed.append({"alert_id": alert_id, "monitor": monitor, **promotion})
    return changed


def _advance_one(
    ws: Workspace,
    alert_id: str,
    alert_at: datetime,
    endpoint: str,
    monitor: str,
    promotion: dict[str, Any],
    now: datetime,
    scrape: Callable[[str], dict[str, Any]],
) -> None:
    options = {**LOOP_DEFAULTS, **promotion.get("options", {})}
    for _ in range(4):  # several stages may pass in one call
        stage = promotion["stage"]
        if stage == "training":
            if not _training_done(ws, alert_id, alert_at, promotion, options, now):
                return
        elif stage == "evaluating":
            _evaluate(ws, alert_id, endpoint, promotion, options)
        elif stage == "canary":
            if "deployment" not in promotion.get("canary", {}):
                _start_canary(ws, endpoint, promotion, options, scrape, now)
                return
            _judge_canary(ws, endpoint, promotion, options, scrape, now)
            return
        else:
            return


def _training_done(
    ws: Workspace,
    alert_id: str,
    alert_at: datetime,
    promotion: dict[str, Any],
    options: dict[str, Any],
    now: datetime,
) -> bool:
    from conveyor.governance import add_edge

    run = ws.pipelines.get_run(str(promotion["run_id"]))
    if run.status in ("pending", "running"):
        if (now - alert_at).total_seconds() > float(options["retrain_timeout"]):
            _step(promotion, "failed", f"the retraining run {run.id} ran past {options['retrain_timeout']:g} s")
            return True
        return False
    if run.status not in ("succeeded", "cached"):
        _step(
            promotion,
            "failed",
            f"the retraining run {run.id} {run.status}: {run.error or 'no error recorded'}; the champion stays",
        )
        return True
    champion = ws.models.get(str(promotion["champion"]))
    fresh = [v for v in ws.models.versions(champion.name) if v.created_at > alert_at and v.id != champion.id]
    if not fresh:
        _step(promotion, "failed", f"the retraining run {run.id} registered no new version of {champion.name}")
        return True
    challenger = max(fresh, key=lambda v: v.version)
    ws.models.set_alias(challenger.name, "challenger", challenger.version)
    with ws.store.write() as session:
        add_edge(session, "pipeline_run", run.id, "registered", "model_version", challenger.id)
        add_edge(session, "alert", alert_id, "challenger", "model_version", challenger.id)
    promotion["challenger"] = challenger.ref
    _step(promotion, "evaluating", f"run {run.id} registered {challenger.ref} (@challenger)")
    return True


def _primary(task: str, binary: bool) -> tuple[str, bool]:
    if task == "regression":
        return "rmse", False
    return ("roc_auc", True) if binary else ("accuracy", True)


def _evaluate(ws: Workspace, alert_id: str, endpoint: str, promotion: dict[str, Any], options: dict[str, Any]) -> None:
    import numpy as np
    import pyarrow as pa

    from conveyor.monitor._signals import performance_metrics

    table = labelled_rows(ws, endpoint)
    if table is None:
        _step(promotion, "rejected", "no labelled requests to compare the models on; the champion stays")
        return
    keep = [
        holdout(str(i), int(r or 0))
        for i, r in zip(
            table.column("request_id").to_pylist(),
            (table.column("row").to_pylist() if "row" in table.column_names else [0] * table.num_rows),
            strict=True,
        )
    ]
    rows = table.filter(pa.array(keep))
    if rows.num_rows < 20:
        _step(
            promotion,
            "rejected",
            f"{rows.num_rows} held-out labelled rows (need 20) to compare the models; the champion stays",
        )
        return
    champion = ws.models.get(str(promotion["champion"]))
    challenger = ws.models.get(str(promotion["challenger"]))
    labels = rows.column("label")
    scores: dict[str, dict[str, Any]] = {}
    model_of: dict[str, Any] = {}
    for role, version in (("champion", champion), ("challenger", challenger)):
        inputs = [str(c["name"]) for c in version.signature.get("inputs", [])]
        lacking = [c for c in inputs if c not in rows.column_names]
        if lacking:
            _step(
                promotion,
                "rejected",
                f"{version.ref} takes columns the endpoint's requests do not carry ({', '.join(lacking[:10])}): "
                "it could not serve them; not promoted",
            )
            return
        frame = rows.select(inputs).to_pandas() if inputs else rows.to_pandas()
        model = ws.models.load(version)
        model_of[version.ref] = model
        predicted = np.asarray(model.predict(frame))
        columns: dict[str, Any] = {"prediction": predicted.tolist(), "label": labels}
        proba = getattr(model, "predict_proba", None)
        if callable(proba):
            with contextlib.suppress(Exception):
                probabilities = np.asarray(proba(frame))
                if probabilities.ndim == 2 and probabilities.shape[1] == 2:
                    columns["score"] = probabilities[:, 1]
        scores[role] = {k: v for k, v in performance_metrics(pa.table(columns)).items() if v is not None}
    task = "regression" if "rmse" in scores["champion"] else "classification"
    binary = "roc_auc" in scores["champion"] and "roc_auc" in scores["challenger"]
    metric, higher = _primary(task, binary)
    old, new = scores["champion"][metric], scores["challenger"][metric]
    gain = (new - old) if higher else (old - new)
    promotion["evaluation"] = {
        "rows": rows.num_rows,
        "metric": metric,
        "champion": scores["champion"],
        "challenger": scores["challenger"],
        "gain": gain,
    }
    failed_guardrails = challenger.tags.get("guardrails") == "failed"
    if failed_guardrails:
        _step(promotion, "rejected", f"{challenger.ref} failed its guardrails; not promoted")
    elif gain < float(options["margin"]):
        _step(
            promotion,
            "rejected",
            f"{challenger.ref} {metric} {new:.4g} vs champion {old:.4g} on {rows.num_rows} held-out rows: "
            f"gain {gain:+.4g} below the margin {float(options['margin']):g}; not promoted",
        )
    elif (
        unfair := _fairness_gate(ws, challenger, model_of[challenger.ref], rows, task, options, promotion)
    ) is not None:
        _step(promotion, "rejected", unfair)
    elif options["require_approval"]:
        _step(
            promotion,
            "awaiting_approval",
            f"{challenger.ref} {metric} {new:.4g} vs {old:.4g}: passed the gates; waiting for approval "
            f"(conveyor monitor approve {alert_id})",
        )
    else:
        _step(
            promotion,
            "canary",
            f"{challenger.ref} {metric} {new:.4g} vs champion {old:.4g} on {rows.num_rows} held-out rows: "
            "passed the gates",
        )


def _fairness_gate(
    ws: Workspace,
    challenger: Any,
    model: Any,
    rows: pa.Table,
    task: str,
    options: dict[str, Any],
    promotion: dict[str, Any],
) -> str | None:
    """Why the challenger fails the fairness bound on the held-out rows, or None when it passes (or no bound is
    set). The bound applies to each declared sensitive column (``conveyor train --sensitive COL``, the run's tag
    ``sensitive``): the demographic-parity and equalized-odds differences of a binary classifier, the spread of the
    mean absolute error across groups of a regressor (in the target's units)."""
    from conveyor.governance._cards import fairness_by_group

    bound = options.get("max_fairness_difference")
    if bound is None:
        return None
    run = ws.runs.get(challenger.run_id) if challenger.run_id else None
    declared = [c for c in ((run.tags.get("sensitive") or "") if run else "").split(",") if c]
    if not declared:
        return (
            f"{challenger.ref} declares no sensitive column, and the monitor requires a fairness bound "
            f"({float(bound):g}): train with --sensitive COL (or tag the run sensitive=COL); not promoted"
        )
    lacking = [c for c in declared if c not in rows.column_names]
    if lacking:
        return (
            f"the endpoint's requests do not carry the sensitive column(s) {', '.join(lacking)}: the fairness bound "
            "cannot be checked; not promoted"
        )
    inputs = [str(c["name"]) for c in challenger.signature.get("inputs", [])] or [
        c for c in rows.column_names if c not in ("label",)
    ]
    frame = rows.select(inputs).to_pandas()
    found = fairness_by_group(model, frame, rows.column("label").to_pandas(), rows.select(declared).to_pandas(), task)
    promotion.setdefault("evaluation", {})["fairness"] = found["by_feature"]
    worst: list[str] = []
    for column, measured in found["by_feature"].items():
        for key in ("demographic_parity_difference", "equalized_odds_difference", "max_error_difference"):
            value = measured.get(key)
            if value is not None and value > float(bound):
                worst.append(f"{column} {key.replace('_', ' ')} {value:.3f}")
    if worst:
        return (
            f"{challenger.ref} exceeds the fairness bound {float(bound):g} on {rows.num_rows} held-out rows: "
            f"{'; '.join(worst)}; not promoted"
        )
    return None


def approve(ws: Workspace, alert_id: str) -> dict[str, Any]:
    """Let a promotion waiting for approval go on to its canary.

    Raises:
        NotFound: no such alert. Conflict: it is not waiting for approval.
    """
    with ws.store.read() as session:
        row = session.get(AlertRow, alert_id)
        if row is None:
            raise NotFound(f"No alert {alert_id!r}. List them with: conveyor monitor alerts MONITOR.")
        promotion = dict(row.action or {})
    if promotion.get("stage") != "awaiting_approval":
        raise Conflict(f"Alert {alert_id}'s promotion is {promotion.get('stage') or 'absent'}, not awaiting approval.")
    _step(promotion, "canary", f"approved by {ws.actor}")
    _save(ws, alert_id, promotion)
    return promotion


def _deployment_name(ref: str) -> str:
    name, _, version = ref.rpartition(":")
    return f"{name}-v{version}"[:64]


def _start_canary(
    ws: Workspace,
    endpoint: str,
    promotion: dict[str, Any],
    options: dict[str, Any],
    scrape: Callable[[str], dict[str, Any]],
    now: datetime,
) -> None:
    from conveyor.governance import add_edge

    found = ws.endpoints.get(endpoint)
    stable = max(found.deployments, key=lambda d: (d.traffic, d.created_at))
    name = _deployment_name(str(promotion["challenger"]))
    share = int(options["canary"])
    deployment = ws.endpoints.deploy(endpoint, str(promotion["challenger"]), deployment=name, traffic=share)
    with ws.store.write() as session:
        add_edge(
            session,
            "model_version",
            ws.models.get(str(promotion["challenger"])).id,
            "deployed_as",
            "deployment",
            deployment.id,
        )
    promotion["canary"] = {
        "deployment": name,
        "stable": stable.name,
        "share": share,
        "started_at": now.isoformat(),
        "baseline": scrape(endpoint),
    }
    _step(
        promotion,
        "canary",
        f"{promotion['challenger']} takes {share}% of {endpoint}'s traffic as {name}; {stable.name} the rest",
    )


def _judge_canary(
    ws: Workspace,
    endpoint: str,
    promotion: dict[str, Any],
    options: dict[str, Any],
    scrape: Callable[[str], dict[str, Any]],
    now: datetime,
) -> None:
    canary = promotion["canary"]
    started = datetime.fromisoformat(canary["started_at"])
    waited = (now - started).total_seconds()
    if waited < float(options["canary_seconds"]):
        return
    current = scrape(endpoint)
    seen = {
        d: traffic_between(current.get(d, {}), canary["baseline"].get(d, {}))
        for d in (canary["deployment"], canary["stable"])
    }
    new, old = seen[canary["deployment"]], seen[canary["stable"]]
    canary["observed"] = seen
    if new["requests"] < int(options["canary_min_requests"]):
        if waited < 10 * float(options["canary_seconds"]):
            return
        _rollback(ws, endpoint, promotion, f"only {new['requests']} requests reached the canary in {waited:.0f} s")
        return
    error_rise = new["error_rate"] - old["error_rate"]
    # p95 needs enough requests to mean anything: below 100 on either side, the medians are compared.
    quantile = "p95" if min(new["requests"], old["requests"]) >= TAIL_REQUESTS else "p50"
    latency_cap = float(options["max_latency_ratio"]) * old[quantile] + 0.05 if old["requests"] else float("inf")
    if error_rise > float(options["max_error_increase"]):
        _rollback(
            ws,
            endpoint,
            promotion,
            f"the canary's error rate {new['error_rate']:.1%} vs {old['error_rate']:.1%} on the stable deployment",
        )
    elif new[quantile] > latency_cap:
        _rollback(
            ws,
            endpoint,
            promotion,
            f"the canary's {quantile} latency {new[quantile] * 1000:.0f} ms above {latency_cap * 1000:.0f} ms "
            f"({options['max_latency_ratio']:g}× the stable deployment's + 50 ms)",
        )
    else:
        _promote(ws, endpoint, promotion, new)


def _rollback(ws: Workspace, endpoint: str, promotion: dict[str, Any], why: str) -> None:
    canary = promotion["canary"]
    ws.endpoints.set_traffic(endpoint, {canary["stable"]: 100, canary["deployment"]: 0})
    with contextlib.suppress(NotFound, Conflict):
        ws.endpoints.delete(endpoint, deployment=canary["deployment"])
    _step(promotion, "rolled_back", f"{why}: rolled back, {canary['stable']} takes all traffic again")


def _promote(ws: Workspace, endpoint: str, promotion: dict[str, Any], seen: dict[str, Any]) -> None:
    canary = promotion["canary"]
    ws.endpoints.set_traffic(endpoint, {canary["deployment"]: 100, canary["stable"]: 0})
    challenger = ws.models.get(str(promotion["challenger"]))
    ws.models.set_alias(challenger.name, "champion", challenger.version)
    with contextlib.suppress(NotFound, Conflict):
        ws.endpoints.delete(endpoint, deployment=canary["stable"])
    _step(
        promotion,
        "promoted",
        f"healthy canary ({seen['requests']} requests, {seen['error_rate']:.1%} errors, "
        f"p95 {seen['p95'] * 1000:.0f} ms): {challenger.ref} takes 100% and is @champion; {canary['stable']} removed",
    )


# -- the endpoint's own metrics --------------------------------------------------------------------------


def _scraper(ws: Workspace, endpoint: str) -> Callable[[str], dict[str, Any]]:
    def scrape(name: str) -> dict[str, Any]:
        return scrape_endpoint(ws, name)

    return scrape


def scrape_endpoint(ws: Workspace, endpoint: str) -> dict[str, Any]:
    """Per deployment: request counts by status class and the latency histogram, from the endpoint's
    ``/metrics`` (cumulative since its start)."""
    import httpx
    from prometheus_client.parser import text_string_to_metric_families

    found = ws.endpoints.get(endpoint)
    if not found.url:
        return {}
    headers = {}
    with contextlib.suppress(Conflict):
        headers["authorization"] = f"Bearer {ws.endpoints.keys(endpoint)['primary']}"
    answer = httpx.get(f"{found.url}/metrics", headers=headers, timeout=10)
    answer.raise_for_status()
    stats: dict[str, Any] = {}
    for family in text_string_to_metric_families(answer.text):
        for sample in family.samples:
            deployment = sample.labels.get("deployment")
            if not deployment:
                continue
            entry = stats.setdefault(deployment, {"requests": 0.0, "errors": 0.0, "buckets": {}})
            if sample.name == "conveyor_endpoint_requests_total":
                entry["requests"] += sample.value
                if sample.labels.get("status", "").startswith("5"):
                    entry["errors"] += sample.value
            elif sample.name == "conveyor_endpoint_request_seconds_bucket":
                bound = sample.labels["le"]
                entry["buckets"][bound] = entry["buckets"].get(bound, 0.0) + sample.value
    return stats


def traffic_between(now: dict[str, Any], before: dict[str, Any]) -> dict[str, Any]:
    """One deployment's requests, error share and p50/p95 latency (s) between two scrapes of ``/metrics``."""
    requests = now.get("requests", 0.0) - before.get("requests", 0.0)
    errors = now.get("errors", 0.0) - before.get("errors", 0.0)
    buckets = {b: c - before.get("buckets", {}).get(b, 0.0) for b, c in now.get("buckets", {}).items()}
    return {
        "requests": int(requests),
        "error_rate": errors / requests if requests else 0.0,
        "p50": _quantile(buckets, 0.5),
        "p95": _quantile(buckets, 0.95),
    }


def _quantile(buckets: dict[str, float], q: float) -> float:
    """The upper bound of the histogram bucket holding the ``q`` quantile (seconds; 0 without observations)."""
    ordered = sorted(((float("inf") if b == "+Inf" else float(b)), c) for b, c in buckets.items())
    total = ordered[-1][1] if ordered else 0.0
    if total <= 0:
        return 0.0
    for bound, count in ordered:
        if count >= q * total:
            return bound if bound != float("inf") else ordered[-2][0] if len(ordered) > 1 else 0.0
    return 0.0
