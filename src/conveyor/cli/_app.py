"""The root of the ``conveyor`` command: global options, the command tree (each command built when the command
line reaches it), and the one place errors become exit codes (0 success, 2 bad input or usage, 1 anything else).
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


class _PlainValues:
    """Typer's coercion of one parameter, without Pydantic where it is not needed.

    Typer (0.29) coerces every parameter through a Pydantic TypeAdapter that it builds on first use, importing
    Pydantic (a tenth of a second) even for a missing value or a default. The common values are answered here as
    Typer answers them: a missing value, a default already of its type, a string for a ``str``, strings for a
    ``list[str]``, digits for an ``int`` within its range. Anything else (paths, choices, floats typed on the
    command line, values Typer refuses) goes to Typer's own coercion, so its checks and messages stay its own.
    """

    def __init__(self, descriptor: Any) -> None:
        self._descriptor = descriptor
        self._typer: Any = None

    def coerce(self, value: Any, param: Any, ctx: ClickContext) -> Any:
        multiple = param.multiple or param.nargs == -1
        if value is None:
            return () if multiple else None
        annotation, info = self._descriptor.annotation, self._descriptor.parameter_info
        if info.parser is None:
            if multiple:
                if annotation == list[str] and all(type(item) is str for item in value):
                    return list(value)
            elif annotation is int and type(value) is str and value.isascii() and value.isdigit():
                value = int(value)  # a count typed on the command line; its range is checked below
            if type(value) is annotation and annotation in (str, bool, int, float):
                in_range = annotation in (str, bool) or (
                    (info.min is None or value >= info.min) and (info.max is None or value <= info.max)
                )
                if in_range:
                    return value
        if self._typer is None:
            from typer._coercion import build_runtime_param

            self._typer = build_runtime_param(self._descriptor)
        return self._typer.coerce(value, param=param, ctx=ctx)


def _plain_values(command: ClickCommand) -> None:
    """Give ``command``'s parameters, its help option, and its subcommands' (built already) :class:`_PlainValues`."""
    for param in command.params:
        _plain_param(param)
    make_help_option = command.get_help_option

    def get_help_option(ctx: ClickContext) -> Any:
        option = make_help_option(ctx)
        if option is not None:
            _plain_param(option)
        return option

    command.get_help_option = get_help_option  # type: ignore[method-assign]
    if isinstance(command, TyperGroup) and not isinstance(command, _LazyGroup):  # a lazy group does its own
        for sub in command.commands.values():
            _plain_values(sub)


def _plain_param(param: Any) -> None:
    if getattr(param, "_runtime_param", 0) is None and hasattr(param, "type_descriptor"):
        param._runtime_param = _PlainValues(param.type_descriptor)


class _RootGroup(_Group):
    """The ``conveyor`` group: the top-level commands of :data:`_COMMANDS` and the command groups of
    :data:`_GROUPS`, each listed from its help line and built when the command line reaches it, so that
    ``conveyor --help`` imports no command module and ``conveyor runs list`` builds six commands, not ninety."""

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
        _plain_values(self)

    def list_commands(self, ctx: ClickContext) -> list[str]:
        return [*_COMMANDS, *(name for name in self.commands if name not in _COMMANDS)]

    def get_command(self, ctx: ClickContext, cmd_name: str) -> ClickCommand | None:
        if cmd_name in _COMMANDS and cmd_name not in self.commands:
            self.commands[cmd_name] = self._build(cmd_name)
        return super().get_command(ctx, cmd_name)

    def _build(self, name: str) -> ClickCommand:
        """A top-level command: its module registers it on a Typer of its own, built as Typer builds commands."""
        module = importlib.import_module(f"conveyor.cli.{_COMMANDS[name][0]}")
        holder = typer.Typer()
        module.register(holder)
        (info,) = holder.registered_commands
        command = typer.main.get_command_from_info(
            info, pretty_exceptions_short=True, rich_markup_mode=self.rich_markup_mode
        )
        _plain_values(command)
        return command

    def format_commands(self, ctx: ClickContext, formatter: HelpFormatter) -> None:
        rows = []
        for name in self.list_commands(ctx):
            if name in _COMMANDS and name not in self.commands:
                rows.append((name, _COMMANDS[name][1]))  # its help line, without importing it
                continue
            command = self.get_command(ctx, name)
            if command is not None and not command.hidden:
                rows.append((name, command.get_short_help_str(limit=500)))
        with formatter.section("Commands"):
            formatter.write_dl(rows)


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
        for command in self.commands.values():
            _plain_values(command)
        self._loaded = True

    def list_commands(self, ctx: ClickContext) -> list[str]:
        self._load()
        return super().list_commands(ctx)

    def get_command(self, ctx: ClickContext, cmd_name: str) -> ClickCommand | None:
        self._load()
        return super().get_command(ctx, cmd_name)


#: ``conveyor NAME``: (module whose ``register(app)`` adds it, its help line: the first sentence of its docstring,
#: which a test compares).
_COMMANDS: dict[str, tuple[str, str]] = {
    "init": ("init", "Create a workspace: its folder, conveyor.toml, the metadata database and the artifact store."),
    "quickstart": (
        "quickstart",
        "Generate churn data, ingest it, train in a tracked run, register, deploy and score over HTTP.",
    ),
    "server": (
        "server",
        "Run the studio (/), the REST API (OpenAPI at /docs) and the scheduler over the workspace until Ctrl+C.",
    ),
    "scheduler": (
        "scheduler",
        "Fire pipeline schedules (cron times, new data versions) and run scheduled monitors until Ctrl+C or SIGTERM.",
    ),
    "sql": ("sql", "Query data assets with DuckDB."),
    "drift": ("drift", "Compare the distribution of every column of CURRENT with REFERENCE."),
    "apply": ("apply", "Check a YAML spec fully and register it (again: it replaces the previous definition)."),
    "train": ("train", "Search learners and hyperparameters for TARGET under a strict time budget (AutoML)."),
    "sweep": (
        "sweep",
        "Run a sweep: every trial in its own process and a child run; early termination stops the weak ones.",
    ),
}

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
            help="Workspace folder (env CONVEYOR_HOME); default: nearest .conveyor/, else ~/.conveyor. Only init "
            "and quickstart create one.",
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
    verbose: Annotated[
        bool,
        typer.Option("--verbose", help="Say on stderr which workspace the command used and where it keeps things."),
    ] = False,
    version: Annotated[
        bool,
        typer.Option("--version", callback=_version, is_eager=True, help="Print the version and exit."),
    ] = False,
) -> None:
    """Conveyor: the machine-learning lifecycle on your own machine or cluster."""
    state = State(home=home, db_url=db_url, artifacts_url=artifacts_url, verbose=verbose)
    ctx.obj = state
    ctx.call_on_close(state.close)


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
