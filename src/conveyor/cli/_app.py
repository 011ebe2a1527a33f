"""The root of the ``conveyor`` command: global options, the workspace, and the one place errors become
exit codes (0 success, 2 bad input or usage, 1 anything else).
"""

from __future__ import annotations

import contextvars
import sys
import traceback
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Annotated

import typer

from conveyor._version import __version__
from conveyor.cli._output import current_output
from conveyor.errors import ConveyorError

if TYPE_CHECKING:
    from conveyor.workspace import Workspace

__all__ = ["State", "act_as_local_user", "app", "main", "open_workspace"]

app = typer.Typer(
    name="conveyor",
    help="Conveyor: data, pipelines, training, tracking, registry, serving and monitoring in one tool.",
    no_args_is_help=True,
    add_completion=False,
    rich_markup_mode="rich",
    context_settings={"help_option_names": ["-h", "--help"]},
    pretty_exceptions_enable=False,
)


@dataclass
class State:
    """Global options, and the workspace once a command opens it."""

    home: str | None = None
    db_url: str | None = None
    artifacts_url: str | None = None
    workspace: Workspace | None = field(default=None, repr=False)

    def close(self) -> None:
        if self.workspace is not None:
            self.workspace.close()
            self.workspace = None


def _version(value: bool) -> None:
    if value:
        typer.echo(f"conveyor {__version__}")
        raise typer.Exit()


@app.callback()
def root(
    ctx: typer.Context,
    home: Annotated[
        str | None,
        typer.Option(
            "--home",
            help="Workspace folder (env CONVEYOR_HOME); default: nearest .conveyor/, else ~/.conveyor.",
        ),
    ] = None,
    db_url: Annotated[
        str | None,
        typer.Option(
            "--db-url",
            help="Metadata database URL (env CONVEYOR_DB_URL); default: SQLite in the workspace.",
        ),
    ] = None,
    artifacts_url: Annotated[
        str | None,
        typer.Option(
            "--artifacts-url",
            help="Artifact store URL (env CONVEYOR_ARTIFACTS_URL); default: artifacts/ in the workspace.",
        ),
    ] = None,
    version: Annotated[
        bool,
        typer.Option("--version", callback=_version, is_eager=True, help="Print the version and exit."),
    ] = False,
) -> None:
    """Conveyor: the machine-learning lifecycle on your own machine or cluster."""
    state = State(home=home, db_url=db_url, artifacts_url=artifacts_url)
    ctx.obj = state
    ctx.call_on_close(state.close)


def open_workspace(ctx: typer.Context) -> Workspace:
    """The workspace the global options and environment name (opened once per invocation)."""
    from conveyor.workspace import Workspace

    state: State = ctx.find_root().obj
    act_as_local_user(ctx)
    if state.workspace is None:
        state.workspace = Workspace.open(state.home, db_url=state.db_url, artifacts_url=state.artifacts_url)
    return state.workspace


def act_as_local_user(ctx: typer.Context) -> None:
    """Record what this command changes as the OS user running it (the audit log's actor), doing the
    command (``conveyor endpoints deploy``)."""
    from conveyor.governance._context import local_principal, set_principal

    set_principal(local_principal("cli", action=ctx.command_path))


def _register_commands() -> None:
    from conveyor.cli import (
        apply,
        batch,
        data,
        data_quality,
        data_stream,
        drift,
        endpoints,
        export,
        governance,
        init,
        lineage,
        models,
        monitor,
        pipeline,
        quickstart,
        runs,
        scheduler,
        server,
        sql,
        sweep,
        train,
    )

    # These modules' commands (data profile, data diff, data stream) attach themselves to the data group.
    _ = (data_quality, data_stream)

    init.register(app)
    quickstart.register(app)
    server.register(app)
    scheduler.register(app)
    sql.register(app)
    drift.register(app)
    apply.register(app)
    train.register(app)
    sweep.register(app)
    app.add_typer(data.app, name="data", help="Data: datastores, ingestion, versions, profiles, diffs, export.")
    app.add_typer(pipeline.app, name="pipeline", help="Pipelines: run, resume, runs, logs, register, schedule.")
    app.add_typer(runs.app, name="runs", help="Tracked runs: list, search, show, compare, history, experiments.")
    app.add_typer(models.app, name="models", help="The model registry: register, show, alias, tag, export.")
    app.add_typer(
        monitor.app, name="monitor", help="Monitoring: monitors of endpoints, alerts, feedback, reference profiles."
    )
    app.add_typer(
        endpoints.app, name="endpoints", help="Online endpoints: create, deploy, traffic, mirror, rollback, keys, logs."
    )
    app.add_typer(export.app, name="export", help="Export an endpoint to run elsewhere: Docker, Kubernetes.")
    app.add_typer(batch.app, name="batch", help="Batch scoring: a model over a data version, into a new version.")
    app.add_typer(lineage.app, name="lineage", help="Lineage: what data, runs, models, endpoints came from and led to.")
    app.add_typer(governance.users_app, name="users", help="Users of the REST API and their roles: add, list, role.")
    app.add_typer(governance.tokens_app, name="tokens", help="API tokens: create (shown once), list, revoke.")
    app.add_typer(governance.audit_app, name="audit", help="The hash-chained audit log: list, verify.")
    app.add_typer(governance.secrets_app, name="secrets", help="Secrets encrypted at rest: set, list, delete.")


_register_commands()


def _report(exc: ConveyorError) -> None:
    output = current_output()
    if output is not None and output.json_mode:
        from conveyor._json import dumps

        sys.stdout.buffer.write(dumps({"error": exc.to_dict()}) + b"\n")
        sys.stdout.flush()
    typer.secho(f"Error: {exc.message}", err=True, fg=typer.colors.RED)


def main(argv: list[str] | None = None) -> None:
    """Entry point of the ``conveyor`` command."""
    # A copy of the context: who acts (set per command) ends with the command, also when called in-process.
    contextvars.copy_context().run(_main, argv)


def _main(argv: list[str] | None) -> None:
    try:
        result = app(args=argv, prog_name="conveyor", standalone_mode=False)
    except typer.Exit as exc:
        sys.exit(exc.exit_code)
    except typer.TyperException as exc:
        # Usage errors (unknown option, missing argument, bad value): click's own message, exit code 2.
        show = getattr(exc, "show", None)
        if callable(show):
            show()
        else:
            typer.echo(f"Error: {exc}", err=True)
        sys.exit(exc.exit_code)
    except typer.Abort:
        typer.echo("Aborted.", err=True)
        sys.exit(1)
    except ConveyorError as exc:
        _report(exc)
        sys.exit(exc.exit_code)
    except KeyboardInterrupt:
        typer.echo("Interrupted.", err=True)
        sys.exit(130)
    except Exception as exc:  # noqa: BLE001 - the last resort: a bug, reported with its traceback
        typer.secho(f"Internal error: {type(exc).__name__}: {exc}", err=True, fg=typer.colors.RED)
        typer.echo("".join(traceback.format_exception(exc)), err=True)
        typer.echo("This is a bug in Conveyor; please report it with the lines above.", err=True)
        sys.exit(1)
    sys.exit(result if isinstance(result, int) else 0)
