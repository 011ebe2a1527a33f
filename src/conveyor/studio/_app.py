"""The studio's pages: server-rendered HTML (Jinja2) over the same services as the CLI and the REST API.

Every page answers ``?format=json`` with the data it shows; charts are Plotly, its JavaScript served by the
studio itself from the Python package (no CDN: the studio works air-gapped). The REST API's ``/docs`` and
``/redoc`` load their assets from here too. Pages need a session (``/login``); forms need a CSRF token and the
permission of the change (moving an alias: ``models.promote``; a traffic split: ``endpoints.write``).
"""

from __future__ import annotations

import contextlib
import math
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any
from urllib.parse import quote

import orjson
from fastapi import APIRouter, Depends, Form, Query, Request
from fastapi.responses import FileResponse, HTMLResponse, RedirectResponse, Response

from conveyor._json import dumps
from conveyor.errors import BadInput, ConveyorError, NotFound
from conveyor.studio._session import COOKIE, LoginNeeded, csrf_token, current_principal, require_form

if TYPE_CHECKING:
    from fastapi import FastAPI
    from jinja2 import Environment

    from conveyor.governance import Principal
    from conveyor.workspace import Workspace

__all__ = ["add_studio"]

_HERE = Path(__file__).parent
RUNS_PAGE = 50
LOG_LINES = 200  # of a step's log on the pipeline run page
STATIC = "/studio/static"

router = APIRouter(include_in_schema=False)


def _env() -> Environment:
    from jinja2 import Environment, FileSystemLoader, select_autoescape

    env = Environment(
        loader=FileSystemLoader(_HERE / "templates"), autoescape=select_autoescape(["html"]), auto_reload=False
    )
    env.filters["time"] = lambda v: "—" if v is None else v.strftime("%Y-%m-%d %H:%M:%S")
    env.filters["num"] = _num
    env.filters["json"] = _script_json
    env.filters["q"] = lambda v: quote(str(v), safe="")  # a query value
    env.filters["seg"] = lambda v: quote(str(v), safe=":@")  # a path segment: churn:3, churn@champion
    env.filters["path"] = lambda v: quote(str(v), safe="/:@")  # an artifact's path: model/model.skops
    return env


def _script_json(value: Any) -> Any:
    """A value as JSON safe inside a ``<script>`` element (``<``, ``>``, ``&`` and ``'`` escaped, as Jinja's
    ``tojson`` does; NumPy values and datetimes allowed)."""
    from markupsafe import Markup

    text = orjson.dumps(value, option=orjson.OPT_SERIALIZE_NUMPY).decode()
    for char, escaped in (("<", "\\u003c"), (">", "\\u003e"), ("&", "\\u0026"), ("'", "\\u0027")):
        text = text.replace(char, escaped)
    return Markup(text)  # noqa: S704 - escaped for a script element above


def _num(value: Any) -> str:
    if value is None:
        return "—"
    if isinstance(value, float):
        return "NaN" if math.isnan(value) else f"{value:.4g}"
    return str(value)


def _ws(request: Request) -> Workspace:
    ws: Workspace = request.app.state.workspace
    return ws


def _page(
    request: Request, template: str, data: dict[str, Any], principal: Principal, *, title: str, status: int = 200
) -> Response:
    """The page as HTML, or with ``?format=json`` the data it shows."""
    if request.query_params.get("format") == "json":
        return Response(dumps(data), media_type="application/json", status_code=status)
    env: Environment = request.app.state.studio_env
    html = env.get_template(template).render(
        **data, title=title, user=principal, csrf=csrf_token(request), static=STATIC, path=request.url.path
    )
    return HTMLResponse(html, status_code=status)


def _caller(request: Request) -> Principal:
    """The caller of a studio page (a dependency of every page); without a session, ``LoginNeeded``, which the
    app turns into a redirect to the login form and back."""
    route = request.scope.get("route")
    return current_principal(request, f"{request.method} {getattr(route, 'path', request.url.path)}")


Caller = Annotated["Principal", Depends(_caller)]


# -- log in, log out ---------------------------------------------------------------------------------------


def _safe_next(target: str | None) -> str:
    """Only a path on this site (no scheme, no //host: an open redirect would send a logged-in user anywhere)."""
    if not target or not target.startswith("/") or target.startswith("//") or "\\" in target:
        return "/"
    return target


@router.get("/login")
def login_form(request: Request, next: str | None = None, why: str | None = None) -> Response:
    env: Environment = request.app.state.studio_env
    html = env.get_template("login.html").render(
        title="Log in", next=_safe_next(next), why=why, error=None, static=STATIC, user=None
    )
    return HTMLResponse(html)


@router.post("/login")
def login(
    request: Request,
    token: str = Form("", max_length=200),
    user: str = Form("", max_length=200),
    password: str = Form("", max_length=1024),
    next: str = Form("/"),
) -> Response:
    """Log in with an API token, or with a user name and password (``conveyor users password NAME``)."""
    from conveyor.errors import Unauthorized

    identities = _ws(request).identities
    try:
        if token.strip():
            secret = token.strip()
            name = identities.authenticate(secret).name
        elif user.strip() and password:
            address = request.client.host if request.client else "unknown"
            secret = identities.login(user.strip(), password, address=address).secret
            name = user.strip()
        else:
            raise Unauthorized("Give a user name and password, or an API token.")
    except Unauthorized as exc:
        env: Environment = request.app.state.studio_env
        html = env.get_template("login.html").render(
            title="Log in", next=_safe_next(next), why=None, error=exc.message, static=STATIC, user=None, name=user
        )
        return HTMLResponse(html, status_code=401)
    answer = RedirectResponse(_safe_next(next), status_code=303)
    secure = request.url.scheme == "https"
    answer.set_cookie(COOKIE, secret, httponly=True, samesite="strict", secure=secure, path="/")
    answer.headers["x-conveyor-user"] = name
    return answer


@router.post("/logout")
def logout(request: Request, csrf: str = Form("")) -> Response:
    import hmac

    secret = request.cookies.get(COOKIE)
    if secret and csrf and hmac.compare_digest(csrf, csrf_token(request)):
        _ws(request).identities.end_session(secret)  # a password session's token dies with it
    answer = RedirectResponse("/login", status_code=303)
    answer.delete_cookie(COOKIE, path="/")
    return answer


# -- pages -------------------------------------------------------------------------------------------------


@router.get("/")
def overview(request: Request, principal: Caller) -> Response:
    ws = _ws(request)
    runs = ws.runs.search("attributes.parent_run_id is null", max_results=10).runs
    models = ws.models.list()[:10]
    endpoints = ws.endpoints.list()
    monitors = ws.monitors.list()
    alerts = [a for m in monitors for a in ws.monitors.alerts(m.name, limit=3)]
    alerts.sort(key=lambda a: a.at, reverse=True)
    data = {
        "runs": runs,
        "models": models,
        "endpoints": endpoints,
        "monitors": monitors,
        "alerts": alerts[:10],
        "empty": not (runs or models or endpoints or monitors),
    }
    return _page(request, "overview.html", data, principal, title="Overview")


@router.get("/runs")
def runs_page(
    request: Request,
    principal: Caller,
    q: str | None = None,
    order: str | None = None,
    page: str | None = None,
    children: int = 0,
    col: Annotated[list[str] | None, Query(max_length=200)] = None,
) -> Response:
    """Runs, a page at a time; ``col`` (repeatable: ``params.lr``, ``metrics.auc``) chooses the columns,
    else the first 6 parameters and 8 metrics of the page."""
    ws = _ws(request)
    filters = [f for f in (q, None if children else "attributes.parent_run_id is null") if f]
    text = " and ".join(f"({f})" for f in filters) if len(filters) > 1 else (filters[0] if filters else None)
    error = None
    try:
        found = ws.runs.search(text, order_by=order or None, max_results=RUNS_PAGE, page_token=page)
        runs, next_page = found.runs, found.next_page_token
    except BadInput as exc:
        runs, next_page, error = [], None, exc.message
    all_metrics = sorted({k for r in runs for k in r.metrics})
    all_params = sorted({k for r in runs for k in r.params})
    chosen = [c for c in (col or [])[:40] if c.startswith(("params.", "metrics."))]
    if chosen:
        param_keys = [c.removeprefix("params.") for c in chosen if c.startswith("params.")]
        metric_keys = [c.removeprefix("metrics.") for c in chosen if c.startswith("metrics.")]
    else:
        param_keys, metric_keys = all_params[:6], all_metrics[:8]
    data = {
        "runs": runs,
        "columns": {"params": all_params, "metrics": all_metrics, "chosen": chosen},
        "next_page": next_page,
        "q": q or "",
        "order": order or "",
        "children": children,
        "error": error,
        "metric_keys": metric_keys,
        "param_keys": param_keys,
    }
    return _page(request, "runs.html", data, principal, title="Runs", status=400 if error else 200)


@router.get("/runs/{run_id}")
def run_page(request: Request, principal: Caller, run_id: str) -> Response:
    ws = _ws(request)
    run = ws.runs.get(run_id)
    curves = {}
    for key in sorted(run.metrics)[:24]:
        try:
            points = ws.runs.metric_history(run_id, key)
        except NotFound:  # a latest value without its history (runs imported from elsewhere): no curve
            continue
        if len(points) > 1:
            curves[key] = {"x": [p.step for p in points], "y": [_finite(p.value) for p in points]}
    children = ws.runs.search(f"attributes.parent_run_id = '{run.id}'", max_results=200).runs
    data = {"run": run, "curves": curves, "children": children}
    return _page(request, "run.html", data, principal, title=f"Run {run.name or run.id}")


@router.get("/runs/{run_id}/artifacts/{path:path}")
def run_artifact(request: Request, principal: Caller, run_id: str, path: str) -> Response:
    """An artifact as the browser should show it (sandboxed: see ``api.runs.artifact_response``)."""
    from conveyor.api.runs import artifact_response

    return artifact_response(_ws(request), run_id, path)


def _finite(value: float) -> float | None:
    return value if math.isfinite(value) else None  # Plotly draws a gap, JSON stays valid


@router.get("/models")
def models_page(request: Request, principal: Caller) -> Response:
    data = {"models": _ws(request).models.list()}
    return _page(request, "models.html", data, principal, title="Models")


@router.get("/models/{ref}")
def model_page(request: Request, principal: Caller, ref: str) -> Response:
    ws = _ws(request)
    version = ws.models.get(ref)
    versions = ws.models.versions(version.name)
    data = {"version": version, "versions": versions[-50:][::-1]}
    return _page(request, "model.html", data, principal, title=f"Model {version.ref}")


@router.post("/models/{name}/alias")
def move_alias(
    request: Request,
    principal: Caller,
    name: str,
    alias: str = Form(max_length=64),
    version: int = Form(),
    csrf: str = Form(""),
) -> Response:
    require_form(request, principal, csrf, "models.promote")
    moved = _ws(request).models.set_alias(name, alias, version)
    return RedirectResponse(f"/models/{quote(moved.ref, safe=':@')}", status_code=303)


@router.get("/models/{ref}/card")
def card_page(request: Request, principal: Caller, ref: str) -> Response:
    from conveyor.governance._cards import CARD_FILE

    ws = _ws(request)
    version = ws.models.get(ref)
    card = ws.cards.get(version.ref).to_dict() if CARD_FILE in version.files else None
    data = {"version": version, "card": card}
    return _page(request, "card.html", data, principal, title=f"Model card: {version.ref}")


@router.post("/models/{ref}/card")
def compute_card(
    request: Request,
    principal: Caller,
    ref: str,
    csrf: str = Form(""),
    owner: str = Form("", max_length=200),
    intended_use: str = Form("", max_length=2_000),
    sensitive: str = Form("", max_length=500),
) -> Response:
    require_form(request, principal, csrf, "models.write")
    ws = _ws(request)
    version = ws.models.get(ref)
    ws.cards.describe(version.ref, owner=owner or None, intended_use=intended_use or None)
    columns = [c.strip() for c in sensitive.split(",") if c.strip()]
    ws.cards.get(version.ref, sensitive=columns or None, refresh=True)
    return RedirectResponse(f"/models/{quote(version.ref, safe=':@')}/card", status_code=303)


@router.get("/endpoints")
def endpoints_page(request: Request, principal: Caller) -> Response:
    data = {"endpoints": _ws(request).endpoints.list()}
    return _page(request, "endpoints.html", data, principal, title="Endpoints")


@router.get("/endpoints/{name}")
def endpoint_page(request: Request, principal: Caller, name: str) -> Response:
    ws = _ws(request)
    endpoint = ws.endpoints.get(name)
    monitors = ws.monitors.list(name)
    data = {
        "endpoint": endpoint,
        "monitors": monitors,
        "traffic": _traffic(ws, endpoint),
        "recent": _recent_requests(ws, name),
    }
    return _page(request, "endpoint.html", data, principal, title=f"Endpoint {name}")


def _traffic(ws: Workspace, endpoint: Any) -> dict[str, Any]:
    """Per deployment, from the endpoint's own metrics since it started: requests, error share, p50 and p95."""
    if endpoint.status != "running":
        return {}
    from conveyor.monitor._loop import scrape_endpoint, traffic_between

    try:
        stats = scrape_endpoint(ws, endpoint.name)
    except Exception:  # noqa: BLE001 - an endpoint that does not answer right now: the page says nothing of it
        return {}
    return {name: traffic_between(found, {}) for name, found in stats.items()}


@router.get("/endpoints/{name}/live")
def endpoint_live(request: Request, principal: Caller, name: str) -> Response:
    """Requests/s, error share and p50/p95 latency per deployment since the last look (the page's live chart
    asks every 2 s): two scrapes of the endpoint's ``/metrics`` at least a second apart, the older kept here."""
    import time

    from conveyor.monitor._loop import scrape_endpoint, traffic_between

    ws = _ws(request)
    endpoint = ws.endpoints.get(name)
    seen: dict[str, tuple[float, dict[str, Any]]] = request.app.state.studio_scrapes
    now = time.monotonic()
    try:
        stats = scrape_endpoint(ws, endpoint.name) if endpoint.status == "running" else {}
    except Exception:  # noqa: BLE001 - an endpoint that does not answer right now: no figures, not an error page
        stats = {}
    before_at, before = seen.get(name, (now, {}))
    interval = now - before_at
    figures = {}
    if before and interval > 0:
        for deployment, found in stats.items():
            moved = traffic_between(found, before.get(deployment, {}))
            figures[deployment] = {
                "requests_per_second": moved["requests"] / interval,
                "error_rate": moved["error_rate"],
                "p50_ms": moved["p50"] * 1000,
                "p95_ms": moved["p95"] * 1000,
            }
    if not before or interval >= 1.0:
        seen[name] = (now, stats)
    return Response(
        dumps({"endpoint": name, "status": endpoint.status, "interval": interval, "deployments": figures}),
        media_type="application/json",
    )


def _recent_requests(ws: Workspace, endpoint: str, rows: int = 20) -> list[dict[str, Any]]:
    """The last requests the endpoint collected (newest first)."""
    from datetime import timedelta

    from conveyor.monitor._signals import read_window
    from conveyor.store._schema import utcnow

    now = utcnow()
    window = read_window(ws, endpoint, now - timedelta(days=1), now + timedelta(minutes=1))
    if window is None or window.num_rows == 0:
        return []
    recent: list[dict[str, Any]] = window.slice(max(window.num_rows - rows, 0)).to_pylist()
    return recent[::-1]


@router.post("/endpoints/{name}/traffic")
async def set_traffic(request: Request, principal: Caller, name: str) -> Response:
    form = await request.form()
    require_form(request, principal, str(form.get("csrf", "")), "endpoints.write")
    weights: dict[str, int] = {}
    for key, value in form.items():
        if key.startswith("traffic."):
            try:
                weights[key.removeprefix("traffic.")] = int(str(value))
            except ValueError:
                raise BadInput(f"Traffic for {key.removeprefix('traffic.')!r} must be a whole number.") from None
    _ws(request).endpoints.set_traffic(name, weights)
    return RedirectResponse(f"/endpoints/{quote(name, safe=':@')}", status_code=303)


@router.get("/monitors")
def monitors_page(request: Request, principal: Caller) -> Response:
    data = {"monitors": _ws(request).monitors.list()}
    return _page(request, "monitors.html", data, principal, title="Monitors")


@router.get("/monitors/{name}")
def monitor_page(request: Request, principal: Caller, name: str) -> Response:
    ws = _ws(request)
    monitor = ws.monitors.get(name)
    results = ws.monitors.history(name, limit=500)
    ordered = sorted(results, key=lambda r: r.at)
    columns: dict[str, list[Any]] = {}
    for i, r in enumerate(ordered):
        for column, found in r.signals.get("drift", {}).get("columns", {}).items():
            columns.setdefault(column, [None] * len(ordered))[i] = found.get("value")
    chart = {
        "x": [r.window_end.isoformat() for r in ordered],
        "share": [r.signals.get("drift", {}).get("share_drifted") for r in ordered],
        "columns": columns,
    }
    data = {"monitor": monitor, "results": results[:100], "alerts": ws.monitors.alerts(name, limit=20), "chart": chart}
    return _page(request, "monitor.html", data, principal, title=f"Monitor {name}")


@router.get("/data")
def data_page(request: Request, principal: Caller) -> Response:
    data = {"assets": _ws(request).data.list()}
    return _page(request, "data.html", data, principal, title="Data")


@router.get("/data/{ref}")
def data_version_page(request: Request, principal: Caller, ref: str) -> Response:
    ws = _ws(request)
    version = ws.data.get(ref)
    versions = ws.data.versions(version.name)
    profile = version.profile or {}
    columns = []
    for column in version.schema:
        found = (profile.get("columns") or {}).get(column["name"], {}) if isinstance(profile, dict) else {}
        histogram = found.get("histogram") if isinstance(found, dict) else None
        top = found.get("top") if isinstance(found, dict) else None
        columns.append({**column, "profile": found, "histogram": histogram, "top": top})
    data = {"version": version, "versions": versions[-50:][::-1], "columns": columns}
    return _page(request, "data_version.html", data, principal, title=f"Data {version.ref}")


@router.get("/data/{ref}/diff")
def data_diff_page(request: Request, principal: Caller, ref: str, other: str = "") -> Response:
    """What changed from version ``ref`` to ``other`` (default: the version before ``ref``)."""
    from conveyor.data import diff_versions

    ws = _ws(request)
    version = ws.data.get(ref)
    versions = ws.data.versions(version.name)
    if not other:
        before = [v for v in versions if v.version < version.version]
        if not before:
            raise BadInput(f"{version.ref} is the first version of {version.name!r}: there is nothing before it.")
        other = before[-1].ref
    elif ":" not in other:
        other = f"{version.name}:{other}"  # a bare number from the page's version picker
    diff = diff_versions(ws.data, other, version, distributions=True)
    data = {"diff": diff, "version": version, "versions": versions[-50:][::-1]}
    return _page(request, "data_diff.html", data, principal, title=f"Data {diff['a']} → {diff['b']}")


@router.get("/pipelines")
def pipelines_page(request: Request, principal: Caller) -> Response:
    ws = _ws(request)
    data = {"pipelines": ws.pipelines.list(), "runs": ws.pipelines.runs(limit=50)}
    return _page(request, "pipelines.html", data, principal, title="Pipelines")


@router.get("/pipelines/runs/{run_id}")
def pipeline_run_page(request: Request, principal: Caller, run_id: str) -> Response:
    ws = _ws(request)
    run = ws.pipelines.get_run(run_id)
    edges: list[tuple[str, str]] = []
    try:
        definition = ws.pipelines.definition(run.pipeline)
        edges = [(up, node.name) for node in definition.nodes for up in node.upstream]
    except ConveyorError:
        pass  # an unregistered pipeline's graph is not kept: the steps are listed without their edges
    logs = {}
    for step in run.steps:
        with contextlib.suppress(ConveyorError):
            text = ws.pipelines.logs(run.id, step.name)
            if text:
                lines = text.splitlines()
                logs[step.name] = {"tail": "\n".join(lines[-LOG_LINES:]), "lines": len(lines)}
    data = {
        "run": run,
        "dag": _layout([s.name for s in run.steps], edges, {s.name: s.status for s in run.steps}),
        "logs": logs,
    }
    return _page(request, "pipeline_run.html", data, principal, title=f"Pipeline run {run.pipeline}")


def _layout(names: list[str], edges: list[tuple[str, str]], status: dict[str, str]) -> dict[str, Any]:
    """Nodes placed by depth (longest path from a source) for a left-to-right drawing."""
    depth = dict.fromkeys(names, 0)
    for _ in names:
        for up, down in edges:
            if up in depth and down in depth:
                depth[down] = max(depth[down], depth[up] + 1)
    rows: dict[int, int] = {}
    position = {}
    for name in names:
        column = depth[name]
        position[name] = (column, rows.get(column, 0))
        rows[column] = rows.get(column, 0) + 1
    return {
        "nodes": [{"name": n, "x": position[n][0], "y": -position[n][1], "status": status.get(n, "")} for n in names],
        "edges": [
            [position[u][0], position[u][1], position[d][0], position[d][1]]
            for u, d in edges
            if u in position and d in position
        ],
    }


@router.get("/lineage")
def lineage_page(
    request: Request, principal: Caller, ref: str | None = None, direction: str = "both", depth: int = 3
) -> Response:
    graph = None
    error = None
    if ref:
        try:
            graph = _ws(request).lineage.show(ref, direction=direction, depth=depth)
        except BadInput as exc:
            error = exc.message
    data = {"ref": ref or "", "graph": graph, "error": error, "direction": direction, "depth": depth}
    return _page(request, "lineage.html", data, principal, title="Lineage", status=400 if error else 200)


@router.get("/audit")
def audit_page(
    request: Request, principal: Caller, actor: str | None = None, action: str | None = None, before: int | None = None
) -> Response:
    from conveyor.errors import Forbidden
    from conveyor.governance import role_allows

    if not role_allows(principal.role, "audit.read"):
        raise Forbidden(f"User {principal.name!r} has the role {principal.role!r}, which may not read the audit log.")
    events = _ws(request).audit.list(limit=100, actor=actor or None, action=action or None, before=before)
    data = {
        "events": events,
        "actor": actor or "",
        "action": action or "",
        "next": events[-1].seq if len(events) == 100 else None,
    }
    return _page(request, "audit.html", data, principal, title="Audit log")


@router.get("/compare")
def compare_page(request: Request, principal: Caller, runs: str = "") -> Response:
    ids = [r for r in runs.split(",") if r][:10]
    if not 2 <= len(ids) <= 10:
        raise BadInput("Compare 2 to 10 runs: /compare?runs=ID,ID (tick them on the runs page).")
    ws = _ws(request)
    chosen = [ws.runs.get(i) for i in ids]
    metrics = sorted({k for r in chosen for k in r.metrics})
    params = sorted({k for r in chosen for k in r.params})
    numeric = [k for k in params if all(_is_number(r.params.get(k)) for r in chosen)]
    dimensions = [{"label": f"params.{k}", "values": [float(r.params[k]) for r in chosen]} for k in numeric]
    dimensions += [
        {"label": f"metrics.{k}", "values": [_finite(r.metrics[k]) if k in r.metrics else None for r in chosen]}
        for k in metrics
    ]
    curves: dict[str, list[dict[str, Any]]] = {}
    for key in metrics:
        if len(curves) >= 6:
            break
        lines = []
        for r in chosen:
            if key in r.metrics:
                history = ws.runs.metric_history(r.id, key)
                if len(history) > 1:
                    lines.append(
                        {
                            "run": r.name or r.id,
                            "x": [m.step for m in history],
                            "y": [_finite(m.value) for m in history],
                        }
                    )
        if lines:
            curves[key] = lines
    data = {"runs": chosen, "metrics": metrics, "params": params, "dimensions": dimensions, "curves": curves}
    return _page(request, "compare.html", data, principal, title=f"Compare {len(chosen)} runs")


def _is_number(text: str | None) -> bool:
    try:
        float(str(text))
    except ValueError:
        return False
    return text is not None


# -- assets ------------------------------------------------------------------------------------------------


@router.get(STATIC + "/plotly.min.js")
def plotly_js() -> Response:
    import plotly

    path = Path(plotly.__file__).parent / "package_data" / "plotly.min.js"
    return FileResponse(path, media_type="text/javascript", headers={"cache-control": "max-age=86400"})


@router.get(STATIC + "/studio.css")
def studio_css() -> Response:
    return FileResponse(
        _HERE / "static" / "studio.css", media_type="text/css", headers={"cache-control": "max-age=3600"}
    )


def _offline_docs(app: FastAPI) -> None:
    """``/docs`` (Swagger UI) and ``/redoc`` with their assets served from the fastapi-offline package."""
    import fastapi_offline
    from fastapi.openapi.docs import get_redoc_html, get_swagger_ui_html
    from fastapi.staticfiles import StaticFiles

    assets = Path(fastapi_offline.__file__).parent / "static"
    app.mount("/studio/docs-assets", StaticFiles(directory=assets), name="docs-assets")

    @app.get("/docs", include_in_schema=False)
    def swagger() -> HTMLResponse:
        return get_swagger_ui_html(
            openapi_url="/openapi.json",
            title="Conveyor API",
            swagger_js_url="/studio/docs-assets/swagger-ui-bundle.js",
            swagger_css_url="/studio/docs-assets/swagger-ui.css",
            swagger_favicon_url="/studio/docs-assets/favicon.png",
        )

    @app.get("/redoc", include_in_schema=False)
    def redoc() -> HTMLResponse:
        return get_redoc_html(
            openapi_url="/openapi.json",
            title="Conveyor API",
            redoc_js_url="/studio/docs-assets/redoc.standalone.js",
            redoc_favicon_url="/studio/docs-assets/favicon.png",
            with_google_fonts=False,
        )


def add_studio(app: FastAPI) -> None:
    """Mount the studio's pages, assets and the offline API docs on the control-plane app."""
    app.state.studio_env = _env()
    app.state.studio_scrapes = {}  # endpoint name -> (monotonic time, last /metrics scrape): the live charts
    app.include_router(router)
    _offline_docs(app)

    @app.exception_handler(LoginNeeded)
    async def login_needed(request: Request, exc: LoginNeeded) -> Response:
        target = request.url.path + (f"?{request.url.query}" if request.url.query else "")
        return RedirectResponse(f"/login?next={quote(target, safe='')}&why={quote(exc.message)}", status_code=303)


def error_page(request: Request, exc: ConveyorError) -> Response | None:
    """A studio page's error as an HTML page (the message names the fix, a 404 suggests the nearest names);
    None for requests that are not the studio's."""
    path = request.url.path
    if path.startswith("/api/") or request.query_params.get("format") == "json":
        return None
    env: Environment = request.app.state.studio_env
    status = exc.http_status
    html = env.get_template("error.html").render(
        title="Not found" if isinstance(exc, NotFound) else "Refused", status=status, message=exc.message,
        static=STATIC, user=None, path=path,
    )  # fmt: skip
    return HTMLResponse(html, status_code=status)
