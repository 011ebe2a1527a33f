"""``conveyor init``: create a workspace (idempotent)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Annotated

import typer

from conveyor.cli._output import JsonFlag, Output
from conveyor.cli._state import State, act_as_local_user

if TYPE_CHECKING:
    from rich.console import Console


def register(app: typer.Typer) -> None:
    @app.command("init")
    def init(
        ctx: typer.Context,
        path: Annotated[
            str | None,
            typer.Argument(help="Workspace folder; default: the one --home or the environment names."),
        ] = None,
        json_output: JsonFlag = False,
    ) -> None:
        """Create a workspace: its folder, conveyor.toml, the metadata database and the artifact store.

        Running it again on an existing workspace changes nothing and reports what is there. URLs given with
        --db-url / --artifacts-url are written into conveyor.toml (never a password: use ${VAR} for one).
        The first time, it adds you (the OS user) as an admin and prints your API token once.
        """
        from conveyor.workspace import Workspace

        out = Output(json_output)
        state: State = ctx.find_root().obj
        act_as_local_user(ctx)
        ws, created = Workspace.init(path or state.home, db_url=state.db_url, artifacts_url=state.artifacts_url)
        state.use(ws)
        issued = ws.identities.bootstrap()
        info = {**ws.describe(), "created": created}
        if issued is not None:
            info["admin"] = {"user": issued.token.user, "token": issued.secret, "expires_at": issued.token.expires_at}

        def human(console: Console) -> None:
            verb = "Created" if created else "Already a workspace:"
            console.print(f"[green]✓[/] {verb} [bold]{info['home']}[/]")
            console.print(f"  metadata   {info['db_url']} ({info['db_backend']})")
            console.print(f"  artifacts  {info['artifacts_url']}")
            console.print(f"  settings   {info['config']}")
            if issued is not None:
                console.print(
                    f"  admin      [bold]{issued.token.user}[/], API token (shown once, keep it safe):\n"
                    f"             [bold]{issued.secret}[/]"
                )
                console.print("             send it as 'Authorization: Bearer <token>' to `conveyor server`")
            if created:
                console.print("Next: [bold]conveyor quickstart[/] runs the whole lifecycle on sample data.")

        out.emit(info, human)
