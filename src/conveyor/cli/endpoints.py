"""``conveyor endpoints``: create endpoints, deploy model versions, split and mirror traffic, keys, logs."""

from __future__ import annotations

import contextlib
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import orjson
import typer
from rich.console import Console
from rich.table import Table

from conveyor.cli._output import JsonFlag, Output, YesFlag, fmt_time
from conveyor.cli._state import open_workspace
from conveyor.errors import BadInput, InvalidSpec, NotFound

if TYPE_CHECKING:
    from conveyor.serve import Endpoint

app = typer.Typer(no_args_is_help=True)

EndpointName = Annotated[str, typer.Argument(help="Endpoint name.")]


def _show(console: Console, endpoint: Endpoint) -> None:
    state = {"running": "green", "idle": "cyan", "failed": "red", "exited": "red"}.get(endpoint.status, "yellow")
    console.print(
        f"[bold]{endpoint.name}[/]  [{state}]{endpoint.status}[/]  {endpoint.url or '(not running)'}"
        f"  auth: {endpoint.auth}  revision {endpoint.revision}"
    )
    if endpoint.error:
        console.print(f"  [red]{endpoint.error}[/]")
    table = Table(box=None)
    for column in ("deployment", "model", "traffic", "mirror", "batching", "updated"):
        table.add_column(column, no_wrap=True)
    for d in endpoint.deployments:
        batching = d.batching
        table.add_row(
            d.name,
            d.model,
            f"{d.traffic}%",
            f"{d.mirror}%" if d.mirror else "",
            f"≤{batching.get('max_batch_size', '?')} rows, {batching.get('max_latency_ms', 0):g} ms",
            fmt_time(d.updated_at),
        )
    console.print(table)
    if endpoint.routes:
        for label, url in endpoint.routes.items():
            console.print(f"  {label:<12} {url}")


def _parse_shares(pairs: list[str], what: str) -> dict[str, int]:
    shares: dict[str, int] = {}
    for pair in pairs:
        name, sep, value = pair.partition("=")
        if not sep or not name or not value.strip().isdigit():
            raise InvalidSpec(f"Give {what} as DEPLOYMENT=PERCENT (e.g. blue=90 green=10); got {pair!r}.")
        if name in shares:
            raise InvalidSpec(f"Deployment {name!r} is given twice.")
        shares[name] = int(value)
    return shares


@app.command("create")
def create(
    ctx: typer.Context,
    name: EndpointName,
    auth: Annotated[
        str, typer.Option(help="key: requests need 'Authorization: Bearer KEY'; none: loopback only.")
    ] = "key",
    host: Annotated[str, typer.Option(help="Address to listen on.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="Port (0 picks a free one, kept across restarts).", min=0, max=65535)] = 0,
    workers: Annotated[int, typer.Option(help="Worker processes (0: one per core).", min=0)] = 0,
    idle_timeout: Annotated[
        float, typer.Option(help="Scale to zero after this many idle seconds (0: never); the next request wakes it.")
    ] = 0.0,
    max_body_mb: Annotated[float, typer.Option(help="Largest request body (413 above it).")] = 10.0,
    rate_limit: Annotated[float, typer.Option(help="Requests per second accepted (0: no limit; 429 above it).")] = 0.0,
    collect: Annotated[
        float, typer.Option(help="Fraction of requests kept as data asset NAME_requests for monitoring (0–1).")
    ] = 0.0,
    json_output: JsonFlag = False,
) -> None:
    """Create an endpoint with keys (it starts serving when a model is deployed to it)."""
    out = Output(json_output)
    endpoint = open_workspace(ctx).endpoints.create(
        name,
        auth=auth,
        host=host,
        port=port,
        workers=workers,
        idle_timeout=idle_timeout,
        max_body_mb=max_body_mb,
        rate_limit=rate_limit,
        collect=collect,
    )
    out.emit(
        endpoint,
        lambda console: console.print(
            f"[green]✓[/] created endpoint {name}; deploy with: conveyor endpoints deploy {name} --model MODEL@champion"
        ),
    )


@app.command("deploy")
def deploy(
    ctx: typer.Context,
    name: Annotated[str, typer.Argument(help="Endpoint name (created with keys if new).")],
    model: Annotated[str, typer.Option("--model", "-m", help="Model version: NAME, NAME:VERSION or NAME@ALIAS.")],
    deployment: Annotated[str, typer.Option("--deployment", "-d", help="Deployment name within the endpoint.")] = (
        "default"
    ),
    traffic: Annotated[
        int | None,
        typer.Option(
            help="This deployment's % of live traffic (default: 100 for the first, 0 for later ones).", min=0, max=100
        ),
    ] = None,
    max_batch_size: Annotated[int, typer.Option(help="Most rows scored in one model call.", min=1)] = 64,
    max_latency_ms: Annotated[
        float, typer.Option(help="Wait up to this long to fill a batch (0: score what is queued at once).", min=0)
    ] = 0.0,
    max_queue: Annotated[int, typer.Option(help="Requests waiting per worker before 503 + Retry-After.", min=1)] = 512,
    engine: Annotated[
        str,
        typer.Option(help="auto: ONNX Runtime when the version has an ONNX export; onnx: convert it first; native."),
    ] = "auto",
    strict: Annotated[
        bool,
        typer.Option(
            "--strict",
            help="Refuse (422) request fields the model does not take; by default they are ignored and named in "
            "the conveyor-ignored-fields response header.",
        ),
    ] = False,
    json_output: JsonFlag = False,
) -> None:
    """Deploy a model version to an endpoint; the previous model serves until the new one is warm."""
    out = Output(json_output)
    ws = open_workspace(ctx)
    with out.err.status(f"deploying {model} to {name}/{deployment}…") if out.interactive else contextlib.nullcontext():
        ws.endpoints.deploy(
            name,
            model,
            deployment=deployment,
            traffic=traffic,
            max_batch_size=max_batch_size,
            max_latency_ms=max_latency_ms,
            max_queue=max_queue,
            engine=engine,
            strict=strict,
        )
    endpoint = ws.endpoints.get(name)
    d = next(d for d in endpoint.deployments if d.name == deployment)

    def human(console: Console) -> None:
        console.print(f"[green]✓[/] {d.model} serving as {name}/{deployment} ({d.traffic}% of traffic)")
        _show(console, endpoint)

    out.emit(endpoint, human)


@app.command("traffic")
def traffic(
    ctx: typer.Context,
    name: EndpointName,
    shares: Annotated[
        list[str], typer.Argument(help="DEPLOYMENT=PERCENT pairs summing to 100, e.g. blue=90 green=10.")
    ],
    json_output: JsonFlag = False,
) -> None:
    """Split live traffic between deployments (applied live, no request dropped)."""
    out = Output(json_output)
    endpoint = open_workspace(ctx).endpoints.set_traffic(name, _parse_shares(shares, "traffic"))
    out.emit(endpoint, lambda console: _show(console, endpoint))


@app.command("mirror")
def mirror(
    ctx: typer.Context,
    name: EndpointName,
    shares: Annotated[
        list[str],
        typer.Argument(help="DEPLOYMENT=PERCENT of live requests copied to a 0%-traffic deployment; =0 stops."),
    ],
    json_output: JsonFlag = False,
) -> None:
    """Mirror (shadow) a share of live requests to a deployment; its answers are counted, never returned."""
    out = Output(json_output)
    endpoint = open_workspace(ctx).endpoints.set_mirror(name, _parse_shares(shares, "mirror shares"))
    out.emit(endpoint, lambda console: _show(console, endpoint))


@app.command("rollback")
def rollback(ctx: typer.Context, name: EndpointName, json_output: JsonFlag = False) -> None:
    """Undo the last change of models or traffic (model versions, traffic and mirror as they were)."""
    out = Output(json_output)
    endpoint = open_workspace(ctx).endpoints.rollback(name)
    out.emit(endpoint, lambda console: _show(console, endpoint))


@app.command("keys")
def keys(
    ctx: typer.Context,
    name: EndpointName,
    regenerate: Annotated[
        str | None, typer.Option(help="Replace one key: primary or secondary (the old one stops working at once).")
    ] = None,
    json_output: JsonFlag = False,
) -> None:
    """Show the endpoint's keys, or regenerate one of them."""
    out = Output(json_output)
    endpoints = open_workspace(ctx).endpoints
    found = endpoints.regenerate_key(name, regenerate) if regenerate else endpoints.keys(name)

    def human(console: Console) -> None:
        console.print(f"primary    {found['primary']}")
        console.print(f"secondary  {found['secondary']}")
        console.print("[dim]send as: Authorization: Bearer KEY[/]")

    out.emit(found, human)


@app.command("list")
def list_endpoints(ctx: typer.Context, json_output: JsonFlag = False) -> None:
    """List endpoints and their deployments, and any serving process no endpoint accounts for."""
    out = Output(json_output)
    service = open_workspace(ctx).endpoints
    endpoints = service.list()
    orphans = service.orphans()

    def human(console: Console) -> None:
        if not endpoints:
            console.print("No endpoints yet. Deploy one with: conveyor endpoints deploy NAME --model MODEL@champion")
        for e in endpoints:
            _show(console, e)
        if orphans:
            console.print(
                f"[yellow]{len(orphans)} serving process(es) no endpoint accounts for[/] "
                "(end them with 'conveyor endpoints gc'):"
            )
            for o in orphans:
                workers = f", workers {', '.join(map(str, o.workers))}" if o.workers else ""
                console.print(f"  pid {o.pid}{workers}: {o.reason}", markup=False, highlight=False)

    out.emit({"endpoints": endpoints, "orphans": orphans}, human)


@app.command("gc")
def gc(
    ctx: typer.Context,
    grace: Annotated[float, typer.Option(help="Seconds between SIGTERM and SIGKILL.", min=0, max=600)] = 10.0,
    json_output: JsonFlag = False,
) -> None:
    """End serving processes no endpoint accounts for (orphans), by PID: SIGTERM, then SIGKILL."""
    out = Output(json_output)
    ended = open_workspace(ctx).endpoints.gc(grace=grace)

    def human(console: Console) -> None:
        if not ended:
            console.print("No orphaned serving processes.")
        for o in ended:
            console.print(f"[green]✓[/] ended pid {o['pid']} ({o['signal']}): {o['reason']}", highlight=False)

    out.emit({"ended": ended}, human)


@app.command("show")
def show(ctx: typer.Context, name: EndpointName, json_output: JsonFlag = False) -> None:
    """Show an endpoint: URL and routes, deployments, traffic, mirror, status."""
    out = Output(json_output)
    endpoint = open_workspace(ctx).endpoints.get(name)
    out.emit(endpoint, lambda console: _show(console, endpoint))


@app.command("logs")
def logs(
    ctx: typer.Context,
    name: EndpointName,
    deployment: Annotated[
        str | None, typer.Option("--deployment", "-d", help="Only this deployment's requests.")
    ] = None,
    tail: Annotated[int, typer.Option(help="How many records.", min=1)] = 50,
    process: Annotated[
        bool, typer.Option("--process", help="The process log (starts, reloads, errors) instead.")
    ] = False,
    json_output: JsonFlag = False,
) -> None:
    """Show the endpoint's access log (JSON records), or its process log with --process."""
    out = Output(json_output)
    endpoints = open_workspace(ctx).endpoints
    if process:
        lines = endpoints.process_log(name, tail=tail)
        out.emit({"lines": lines}, lambda console: console.print("\n".join(lines), markup=False, highlight=False))
        return
    records = endpoints.logs(name, deployment=deployment, tail=tail)

    def human(console: Console) -> None:
        if not records:
            console.print("No requests logged yet.")
        for r in records:
            console.print(
                f"{fmt_time_epoch(r.get('ts'))}  {r.get('status')}  {r.get('method')} {r.get('path')}  "
                f"{r.get('deployment') or '-'}  {r.get('ms')} ms  {r.get('id')}",
                markup=False,
                highlight=False,
            )

    out.emit({"records": records}, human)


def fmt_time_epoch(ts: Any) -> str:
    from datetime import UTC, datetime

    if not isinstance(ts, int | float):
        return "?"
    return datetime.fromtimestamp(ts, UTC).strftime("%Y-%m-%d %H:%M:%S.%f")[:-3]


@app.command("invoke")
def invoke(
    ctx: typer.Context,
    name: EndpointName,
    data: Annotated[Path, typer.Option("--data", help="JSON file: a list of records.")],
    deployment: Annotated[str | None, typer.Option("--deployment", "-d", help="Send to this deployment only.")] = None,
    json_output: JsonFlag = False,
) -> None:
    """Score the records in a JSON file through the endpoint (with its key)."""
    out = Output(json_output)
    records = _read_records(data)
    predictions = open_workspace(ctx).endpoints.invoke(name, records, deployment=deployment)
    out.emit({"predictions": predictions}, lambda console: console.print(predictions))


@app.command("stop")
def stop(ctx: typer.Context, name: EndpointName, json_output: JsonFlag = False) -> None:
    """Stop an endpoint's processes (in-flight requests finish first); 'start' brings it back."""
    out = Output(json_output)
    endpoint = open_workspace(ctx).endpoints.stop(name)
    out.emit(endpoint, lambda console: console.print(f"[green]✓[/] stopped {name}"))


@app.command("start")
def start(ctx: typer.Context, name: EndpointName, json_output: JsonFlag = False) -> None:
    """Start a stopped endpoint with what it served before."""
    out = Output(json_output)
    endpoint = open_workspace(ctx).endpoints.start(name)
    out.emit(endpoint, lambda console: _show(console, endpoint))


@app.command("delete")
def delete(
    ctx: typer.Context,
    name: EndpointName,
    deployment: Annotated[
        str | None, typer.Option("--deployment", "-d", help="Delete only this deployment (it must take 0% traffic).")
    ] = None,
    yes: YesFlag = False,
    json_output: JsonFlag = False,
) -> None:
    """Delete an endpoint (stopping it) or one of its deployments (asks first on a terminal; --yes skips)."""
    out = Output(json_output)
    ws = open_workspace(ctx)
    target = f"deployment {deployment} of endpoint {name}" if deployment else f"endpoint {name} and its deployments"
    ws.endpoints.get(name)  # a misspelt name fails before the question
    out.confirm(f"Delete {target}?", yes)
    ws.endpoints.delete(name, deployment=deployment)
    what = f"{name}/{deployment}" if deployment else name
    out.emit({"deleted": what}, lambda console: console.print(f"[green]✓[/] deleted {what}"))


def _read_records(path: Path) -> list[dict[str, Any]]:
    if not path.is_file():
        raise NotFound(f"No such file: {str(path)!r}.")
    try:
        records = orjson.loads(path.read_bytes())
    except orjson.JSONDecodeError as exc:
        raise BadInput(f"{str(path)!r} is not valid JSON: {exc}.") from exc
    if isinstance(records, dict) and isinstance(records.get("records"), list):
        records = records["records"]
    if not isinstance(records, list) or not records or not all(isinstance(r, dict) for r in records):
        raise BadInput(f"{str(path)!r} must hold a non-empty JSON list of records (objects).")
    return records
