"""The root of the ``conveyor`` command: global options, the workspace, and the one place errors become
exit codes (0 success, 2 bad input or usage, 1 anything else).
"""

from __future__ import annotations

import contextvars
import importlib
import sys
import traceback
from typing import TYPE_CHECKING, Annotated, Any

import typer
import typer.main
from typer.core import TyperGroup
from typer.models import TyperInfo

from conveyor._version import __version__
from conveyor.cli._output import current_output
from conveyor.cli._state import State, act_as_local_user, open_workspace
from conveyor.errors import ConveyorError

if TYPE_CHECKING:
    # Typer's own copy of click, as TyperGroup's methods name it.
    from typer._click import Command as ClickCommand
    from typer._click import Context as ClickContext
    from typer._click import HelpFormatter

__all__ = ["State", "act_as_local_user", "app", "main", "open_workspace"]


class _Group(TyperGroup):
    """A command group whose help lists each command's first sentence whole (Click cuts it at the terminal's
    width with "...")."""

    def format_commands(self, ctx: ClickContext, formatter: HelpFormatter) -> None:
        rows = []
        for name in self.list_commands(ctx):
            command = self.get_command(ctx, name)
            if command is not None and not command.hidden:
                rows.append((name, command.get_short_help_str(limit=500)))
        if rows:
            with formatter.section("Commands"):
                formatter.write_dl(rows)


class _RootGroup(_Group):
    """The ``conveyor`` group: its own commands, then the command groups of :data:`_GROUPS`, each loaded when the
    command line reaches it, so ``conveyor --help`` and ``conveyor runs list`` do not build ninety commands."""

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        for name, (modules, attribute, help_text) in _GROUPS.items():
            self.commands[name] = _LazyGroup(
                name=name,
                help=help_text,
                modules=modules,
                attribute=attribute,
                rich_markup_mode=self.rich_markup_mode,
            )


class _LazyGroup(_Group):
    """A command group listed by name and help; its module is imported and its commands built on first use."""

    def __init__(self, *, modules: tuple[str, ...], attribute: str, **kwargs: Any) -> None:
        super().__init__(no_args_is_help=True, **kwargs)
        self._modules = modules
        self._attribute = attribute
        self._loaded = False

    def _load(self) -> None:
        if self._loaded:
            return
        # A group's first module holds its Typer app; the others attach commands to it when imported.
        loaded = [importlib.import_module(f"conveyor.cli.{module}") for module in self._modules]
        group = typer.main.get_group_from_info(
            TyperInfo(getattr(loaded[0], self._attribute), name=self.name, help=self.help),
            pretty_exceptions_short=True,
            suggest_commands=self.suggest_commands,
            rich_markup_mode=self.rich_markup_mode,
        )
        self.commands = group.commands
        self.no_args_is_help = group.no_args_is_help
        self._loaded = True

    def list_commands(self, ctx: ClickContext) -> list[str]:
        self._load()
        return super().list_commands(ctx)

    def get_command(self, ctx: ClickContext, cmd_name: str) -> ClickCommand | None:
        self._load()
        return super().get_command(ctx, cmd_name)


#: ``conveyor NAME ...``: (modules, Typer attribute of the first, help line).
_GROUPS: dict[str, tuple[tuple[str, ...], str, str]] = {
    "data": (
        ("data", "data_quality", "data_stream"),
        "app",
        "Data: datastores, ingestion, versions, profiles, diffs, export.",
    ),
    "pipeline": (("pipeline",), "app", "Pipelines: run, resume, runs, logs, register, schedule."),
    "runs": (("runs",), "app", "Tracked runs: list, search, show, compare, history, experiments."),
    "models": (("models",), "app", "The model registry: register, show, alias, tag, export."),
    "monitor": (("monitor",), "app", "Monitoring: monitors of endpoints, alerts, feedback, reference profiles."),
    "endpoints": (("endpoints",), "app", "Online endpoints: create, deploy, traffic, mirror, rollback, keys, logs."),
    "export": (("export",), "app", "Export an endpoint to run elsewhere: Docker, Kubernetes."),
    "batch": (("batch",), "app", "Batch scoring: a model over a data version, into a new version."),
    "lineage": (("lineage",), "app", "Lineage: what data, runs, models, endpoints came from and led to."),
    "users": (("governance",), "users_app", "Users of the REST API and their roles: add, list, role."),
    "tokens": (("governance",), "tokens_app", "API tokens: create (shown once), list, revoke."),
    "audit": (("governance",), "audit_app", "The hash-chained audit log: list, verify."),
    "secrets": (("governance",), "secrets_app", "Secrets encrypted at rest: set, list, delete."),
}


app = typer.Typer(
    name="conveyor",
    cls=_RootGroup,
    help="Conveyor: data, pipelines, training, tracking, registry, serving and monitoring in one tool.",
    no_args_is_help=True,
    add_completion=False,
    # Click's plain help: Typer's Rich help loads Markdown, Pygments and tracebacks (~0.1 s more per --help).
    rich_markup_mode=None,
    context_settings={"help_option_names": ["-h", "--help"]},
    pretty_exceptions_enable=False,
)


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


def _register_commands() -> None:
    from conveyor.cli import apply, drift, init, quickstart, scheduler, server, sql, sweep, train

    init.register(app)
    quickstart.register(app)
    server.register(app)
    scheduler.register(app)
    sql.register(app)
    drift.register(app)
    apply.register(app)
    train.register(app)
    sweep.register(app)


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
