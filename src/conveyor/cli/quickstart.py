"""``conveyor quickstart``: the whole lifecycle on synthetic churn data, then keep serving."""

from __future__ import annotations

import contextlib
from typing import TYPE_CHECKING, Annotated, Any

import typer

from conveyor.cli._output import JsonFlag, Output
from conveyor.cli._state import open_workspace
from conveyor.errors import ConveyorError

if TYPE_CHECKING:
    from rich.console import Console


def register(app: typer.Typer) -> None:
    @app.command("quickstart")
    def quickstart(
        ctx: typer.Context,
        serve: Annotated[
            bool,
            typer.Option("--serve/--no-serve", help="Keep the endpoint and the API running until Ctrl+C."),
        ] = True,
        rows: Annotated[int, typer.Option(help="Rows of synthetic churn data.", min=100, max=5_000_000)] = 20_000,
        seed: Annotated[int, typer.Option(help="Seed of the synthetic data and the model.")] = 7,
        port: Annotated[
            int | None,
            typer.Option(help="API port when serving; default: 8420, else a free one.", min=0, max=65535),
        ] = None,
        loop: Annotated[
            bool,
            typer.Option(
                "--loop",
                help="Then close the loop on a live endpoint: normal traffic, drift, an alert, retraining, gates, "
                "a canary, promotion.",
            ),
        ] = False,
        json_output: JsonFlag = False,
    ) -> None:
        """Generate churn data, ingest it, train in a tracked run, register, deploy and score over HTTP.

        Everything lands in the workspace (embedded SQLite and local files unless configured otherwise).
        With --no-serve the endpoint is stopped after scoring and the command exits. With --loop a monitored
        endpoint (churn-live) then sees its data drift, retrains, and promotes the challenger through a canary;
        a timeline is printed (and a 'loop' key in --json).
        """
        from conveyor.quickstart import Stage, run_quickstart
        from conveyor.quickstart._lifecycle import ENDPOINT

        out = Output(json_output)
        ws = open_workspace(ctx, create=True)
        timeline = out.err if json_output else out.console
        show_timeline = not json_output or out.interactive
        status = out.err.status("starting…") if out.interactive else contextlib.nullcontext()

        def on_start(name: str) -> None:
            if out.interactive and hasattr(status, "update"):
                status.update(f"[bold]{name}[/]…")

        def on_done(stage: Stage) -> None:
            if show_timeline:
                timeline.print(f"[green]✓[/] {stage.name:<12} {stage.seconds:6.2f}s  {stage.summary}")

        if show_timeline:
            timeline.print(f"Conveyor quickstart in [bold]{ws.settings.home}[/]")
        try:
            with status:
                result = run_quickstart(ws, rows=rows, seed=seed, on_start=on_start, on_done=on_done)
        except BaseException:
            with contextlib.suppress(ConveyorError):
                ws.endpoints.stop(ENDPOINT)
            raise

        payload: dict[str, Any] = result.to_json()
        if loop:
            payload["loop"] = _loop(ws, seed, timeline if show_timeline else None)
        if not serve:
            _stop(ws, loop)
            out.emit(payload, lambda console: _summary(console, payload, None))
            return

        from conveyor.cli.server import base_url, bind_socket, serve_api

        sock = bind_socket(
            ws.settings.server_host,
            ws.settings.server_port if port is None else port,
            fallback=port is None,
        )
        api = base_url(sock)
        issued = ws.identities.bootstrap()
        try:
            out.emit(
                {**payload, "api": api, "api_token": None if issued is None else issued.secret},
                lambda console: _summary(console, payload, api),
            )
            if show_timeline:
                if issued is not None:
                    timeline.print(f"API token for {issued.token.user} (admin; shown once): [bold]{issued.secret}[/]")
                else:
                    timeline.print("The API needs a token: `conveyor tokens create` makes one.")
            if show_timeline:
                timeline.print("Serving until Ctrl+C.")
            serve_api(ws, sock)
        finally:
            _stop(ws, loop)
            if show_timeline:
                timeline.print("Stopped the endpoint.")


def _stop(ws: Any, loop: bool) -> None:
    """Stop the quickstart's endpoint (and the loop's live one)."""
    from conveyor.quickstart._lifecycle import ENDPOINT
    from conveyor.quickstart._loop import LIVE_ENDPOINT

    ws.endpoints.stop(ENDPOINT)
    if loop:
        ws.endpoints.stop(LIVE_ENDPOINT)


def _loop(ws: Any, seed: int, timeline: Console | None) -> dict[str, Any]:
    """The closed loop after the lifecycle, its steps printed as they happen."""
    from conveyor.quickstart._loop import LIVE_ENDPOINT, run_loop

    def on_step(name: str, seconds: float, summary: str) -> None:
        if timeline is not None:
            mark = "[red]✗[/]" if name in ("failed", "rejected", "rolled_back") else "[green]✓[/]"
            timeline.print(f"{mark} {name:<12} {seconds:6.2f}s  {summary}")

    if timeline is not None:
        timeline.print("\n[bold]The loop[/] (monitor → alert → retrain → gates → canary → promotion)")
    try:
        found = run_loop(ws, seed=seed, on_step=on_step)
    except BaseException:
        with contextlib.suppress(ConveyorError):
            ws.endpoints.stop(LIVE_ENDPOINT)
        raise
    if timeline is not None:
        fast = found.alert_to_promotion_seconds
        timeline.print(
            f"Loop {found.stage} in {found.seconds:.1f}s"
            + (f" ({fast:.1f}s from the alert to 100 % traffic)" if fast is not None else "")
            + f": champion {found.champion_before} → {found.champion_after}, traffic {found.traffic}"
        )
    return found.to_json()


def _summary(console: Console, data: dict[str, Any], api: str | None) -> None:
    console.print(f"\n[bold]Done in {data['seconds']:.1f}s.[/]")
    console.print(f"  data       {data['data']}")
    console.print(f"  run        {data['run_id']}  (conveyor runs show {data['run_id']})")
    console.print(f"  model      {data['model']}  (alias champion)")
    routes = data.get("routes", {})
    console.print(f"  predict    {data['endpoint']}")
    for label, key in (("MLflow", "invocations"), ("OIP (V2)", "v2_infer"), ("metrics", "metrics")):
        if key in routes:
            console.print(f"  {label:<10} {routes[key]}")
    console.print(f"  predicted  {data['predictions']}")
    if api:
        endpoint = data["endpoint"]
        console.print(f"  studio     {api}/   (log in with the API token)")
        console.print(f"  API        {api}/docs   (health: {api}/api/v1/health)")
        console.print(
            "Try (the endpoint needs its key):\n"
            "  KEY=$(conveyor endpoints keys churn --json | "
            "python3 -c 'import json,sys; print(json.load(sys.stdin)[\"primary\"])')\n"
            f"  curl -s {endpoint} -H \"Authorization: Bearer $KEY\" -H 'content-type: application/json' -d "
            '\'[{"tenure_months": 3, "plan": "basic", "contract": "month-to-month", "signup_date": "2024-10-01", '
            '"payment_method": "invoice", "region": "south", "monthly_charges": 24.5, "total_charges": 73.5, '
            '"support_calls_90d": 4, "avg_session_minutes": 5.0, "days_since_last_login": 30, "devices": 1, '
            '"has_autopay": false, "satisfaction_score": 2}]\''
        )
