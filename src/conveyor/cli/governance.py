"""``conveyor users``, ``conveyor tokens``, ``conveyor audit``, ``conveyor secrets``: who may call the REST API,
what was done, and the workspace's secrets.

On this machine these commands act as the OS user with the admin role (whoever can open the workspace's
files holds everything in it already); tokens are for the REST API (``conveyor server``).
"""

from __future__ import annotations

import sys
from typing import TYPE_CHECKING, Annotated

import typer

from conveyor.cli._output import JsonFlag, Output, fmt_time
from conveyor.cli._state import open_workspace
from conveyor.errors import BadInput

if TYPE_CHECKING:
    from rich.console import Console

users_app = typer.Typer(no_args_is_help=True)
tokens_app = typer.Typer(no_args_is_help=True)
audit_app = typer.Typer(no_args_is_help=True)
secrets_app = typer.Typer(no_args_is_help=True)

RoleArg = Annotated[str, typer.Argument(help="admin, data-scientist, operator or reader.")]


# -- users ---------------------------------------------------------------------------------------------


@users_app.command("add")
def users_add(
    ctx: typer.Context,
    name: Annotated[str, typer.Argument(help="User name (letters, digits, '_', '.', '-').")],
    role: Annotated[str, typer.Option("--role", "-r", help="admin, data-scientist, operator or reader.")] = "reader",
    token: Annotated[bool, typer.Option("--token", help="Also create their first API token (shown once).")] = False,
    json_output: JsonFlag = False,
) -> None:
    """Add a user with a role (see docs/security.md for what each role may do)."""
    out = Output(json_output)
    ws = open_workspace(ctx)
    user = ws.identities.add_user(name, role)
    issued = ws.identities.create_token(name, name="first") if token else None
    payload = {"user": user, "token": None if issued is None else issued.secret}

    def human(console: Console) -> None:
        console.print(f"[green]✓[/] Added [bold]{user.name}[/] ({user.role})")
        if issued is not None:
            console.print(f"  API token (shown once): [bold]{issued.secret}[/]")

    out.emit(payload, human)


@users_app.command("list")
def users_list(ctx: typer.Context, json_output: JsonFlag = False) -> None:
    """List users with their role and whether they are disabled."""
    out = Output(json_output)
    users = open_workspace(ctx).identities.users()

    def human(console: Console) -> None:
        if not users:
            console.print("No users yet. `conveyor init` adds you as the first admin.")
            return
        from rich.table import Table

        table = Table("name", "role", "status", "password", "created", "by", box=None)
        for u in users:
            status = "disabled" if u.disabled else "active"
            password = "set" if u.has_password else "-"
            table.add_row(u.name, u.role, status, password, fmt_time(u.created_at), u.created_by)
        console.print(table)

    out.emit({"users": users}, human)


@users_app.command("role")
def users_role(
    ctx: typer.Context,
    name: Annotated[str, typer.Argument(help="User name.")],
    role: RoleArg,
    json_output: JsonFlag = False,
) -> None:
    """Change a user's role (takes effect on their next request)."""
    out = Output(json_output)
    user = open_workspace(ctx).identities.set_role(name, role)
    out.emit({"user": user}, lambda c: c.print(f"[green]✓[/] {user.name} is now {user.role}"))


@users_app.command("disable")
def users_disable(
    ctx: typer.Context, name: Annotated[str, typer.Argument(help="User name.")], json_output: JsonFlag = False
) -> None:
    """Disable a user: every token of theirs stops working (a running server notices within 2 s)."""
    out = Output(json_output)
    user = open_workspace(ctx).identities.disable(name)
    out.emit({"user": user}, lambda c: c.print(f"[green]✓[/] {user.name} is disabled"))


@users_app.command("enable")
def users_enable(
    ctx: typer.Context, name: Annotated[str, typer.Argument(help="User name.")], json_output: JsonFlag = False
) -> None:
    """Enable a disabled user again (their unexpired, unrevoked tokens work again)."""
    out = Output(json_output)
    user = open_workspace(ctx).identities.enable(name)
    out.emit({"user": user}, lambda c: c.print(f"[green]✓[/] {user.name} is enabled"))


@users_app.command("password")
def users_password(
    ctx: typer.Context,
    name: Annotated[str, typer.Argument(help="User name.")],
    stdin: Annotated[
        bool, typer.Option("--password-stdin", help="Read the password from standard input (for scripts).")
    ] = False,
    clear: Annotated[bool, typer.Option("--clear", help="Remove the password: the user logs in with a token.")] = False,
    json_output: JsonFlag = False,
) -> None:
    """Set a user's password for the studio's login form (asked twice, not echoed; at least 10 characters).

    The REST API still takes only tokens. Five wrong passwords from one address lock that user out there for
    5 minutes.
    """
    out = Output(json_output)
    ws = open_workspace(ctx)
    if clear:
        user = ws.identities.clear_password(name)
        out.emit({"user": user}, lambda c: c.print(f"[green]✓[/] {user.name} has no password now"))
        return
    ws.identities.get_user(name)  # a typo is told before the password is typed
    if stdin:
        password = sys.stdin.readline().rstrip("\r\n")
    elif sys.stdin.isatty():
        password = typer.prompt(f"Password for {name}", hide_input=True, confirmation_prompt=True)
    else:
        raise BadInput("No terminal to ask the password on: pipe it with --password-stdin.")
    user = ws.identities.set_password(name, password)
    out.emit(
        {"user": user},
        lambda c: c.print(f"[green]✓[/] {user.name} can log in to the studio with this password"),
    )


# -- tokens --------------------------------------------------------------------------------------------


@tokens_app.command("create")
def tokens_create(
    ctx: typer.Context,
    user: Annotated[str | None, typer.Option("--user", "-u", help="Whose token; default: you (the OS user).")] = None,
    name: Annotated[str, typer.Option("--name", "-n", help="A label to tell tokens apart.")] = "",
    expires: Annotated[str, typer.Option("--expires", help="30d, 12h, 45m, 2w or never.")] = "90d",
    json_output: JsonFlag = False,
) -> None:
    """Create an API token; it is printed once and stored only as a hash."""
    from conveyor.governance import parse_duration

    out = Output(json_output)
    ws = open_workspace(ctx)
    owner = user or ws.identities.local_user()  # on a workspace without users, you become its first admin
    issued = ws.identities.create_token(owner, name=name, expires_in=parse_duration(expires))
    token = issued.token

    def human(console: Console) -> None:
        until = fmt_time(token.expires_at) if token.expires_at else "never"
        console.print(f"[green]✓[/] Token {token.id} for [bold]{token.user}[/] (expires {until}), shown once:")
        console.print(issued.secret, style="bold", soft_wrap=True)

    out.emit({"token": token, "secret": issued.secret}, human)


@tokens_app.command("list")
def tokens_list(
    ctx: typer.Context,
    user: Annotated[str | None, typer.Option("--user", "-u", help="Only this user's tokens.")] = None,
    json_output: JsonFlag = False,
) -> None:
    """List tokens (never their values: the first characters tell them apart)."""
    out = Output(json_output)
    tokens = open_workspace(ctx).identities.tokens(user)

    def human(console: Console) -> None:
        if not tokens:
            console.print("No tokens. `conveyor tokens create` makes one.")
            return
        from rich.table import Table

        table = Table(box=None)
        for column in ("id", "user", "name", "starts", "status", "expires", "last used"):
            table.add_column(column, no_wrap=column != "name")
        for t in tokens:
            table.add_row(
                t.id,
                t.user,
                t.name,
                t.prefix + "…",
                t.status,
                fmt_time(t.expires_at) or "never",
                fmt_time(t.last_used_at),
            )
        console.print(table)

    out.emit({"tokens": tokens}, human)


@tokens_app.command("revoke")
def tokens_revoke(
    ctx: typer.Context,
    token_id: Annotated[str, typer.Argument(help="The token's id, or the first characters `tokens list` shows.")],
    json_output: JsonFlag = False,
) -> None:
    """Revoke a token: it stops working at once here, within 2 s on a running server."""
    out = Output(json_output)
    token = open_workspace(ctx).identities.revoke(token_id.rstrip("…"))
    out.emit({"token": token}, lambda c: c.print(f"[green]✓[/] Revoked {token.id} of {token.user}"))


# -- audit ---------------------------------------------------------------------------------------------


@audit_app.command("list")
def audit_list(
    ctx: typer.Context,
    limit: Annotated[
        int, typer.Option("--limit", "-n", help="How many entries, newest first.", min=1, max=10_000)
    ] = 20,
    actor: Annotated[str | None, typer.Option("--actor", help="Only this user's actions.")] = None,
    action: Annotated[str | None, typer.Option("--action", help="Only actions containing this text.")] = None,
    table: Annotated[str | None, typer.Option("--table", help="Only actions that changed this table.")] = None,
    before: Annotated[int | None, typer.Option("--before", help="Entries before this number (paging).", min=1)] = None,
    json_output: JsonFlag = False,
) -> None:
    """The audit log: who changed what, when and from where, newest first."""
    out = Output(json_output)
    events = open_workspace(ctx).audit.list(limit=limit, actor=actor, action=action, table=table, before=before)

    def human(console: Console) -> None:
        if not events:
            console.print("No audit entries match.")
            return
        from rich.table import Table

        grid = Table(box=None)
        for column in ("#", "when", "who", "role", "from"):
            grid.add_column(column, no_wrap=True)
        grid.add_column("action")
        grid.add_column("changed")
        for e in events:
            changed = ", ".join(sorted({f"{t[1]} {t[0]}" for t in e.targets if len(t) == 3}))
            grid.add_row(str(e.seq), fmt_time(e.at), e.actor, e.role, e.source, e.action, changed)
        console.print(grid)

    out.emit({"events": events}, human)


@audit_app.command("verify")
def audit_verify(ctx: typer.Context, json_output: JsonFlag = False) -> None:
    """Check the hash chain of the whole log; names the first edited, inserted or deleted entry (exit 1)."""
    out = Output(json_output)
    result = open_workspace(ctx).audit.verify()

    def human(console: Console) -> None:
        if result.ok:
            console.print(
                f"[green]✓[/] {result.entries:,} entries verified in {result.seconds:.2f} s; head #{result.head_seq} "
                f"{result.head_hash}"
            )
        else:
            console.print(f"[red]✗[/] The audit log was tampered with: {result.problem}.")
            console.print(f"  {result.entries:,} entries before it verified.")

    out.emit({"verification": result}, human)
    if not result.ok:
        raise typer.Exit(1)


# -- secrets -------------------------------------------------------------------------------------------


@secrets_app.command("set")
def secrets_set(
    ctx: typer.Context,
    name: Annotated[str, typer.Argument(help="Secret name, referenced as secret:NAME.")],
    description: Annotated[str, typer.Option("--description", "-d", help="What it is for.")] = "",
    json_output: JsonFlag = False,
) -> None:
    """Set a secret from stdin (piped) or a hidden prompt; it is encrypted at rest and never printed.

    Reference it from a datastore with `-c password=secret:NAME`.
    """
    out = Output(json_output)
    if sys.stdin is not None and not sys.stdin.isatty():
        value = sys.stdin.read().rstrip("\r\n")
    else:
        value = typer.prompt(f"Value of {name}", hide_input=True, confirmation_prompt=True)
    if not value:
        raise BadInput(f"No value for secret {name!r}: pipe it on stdin or type it at the prompt.")
    info = open_workspace(ctx).secrets.set(name, value, description=description)
    out.emit({"secret": info}, lambda c: c.print(f"[green]✓[/] Secret {info.name} set (reference: secret:{info.name})"))


@secrets_app.command("list")
def secrets_list(ctx: typer.Context, json_output: JsonFlag = False) -> None:
    """List secrets by name (values are never shown)."""
    out = Output(json_output)
    infos = open_workspace(ctx).secrets.list()

    def human(console: Console) -> None:
        if not infos:
            console.print("No secrets. `conveyor secrets set NAME` stores one.")
            return
        from rich.table import Table

        grid = Table("name", "description", "updated", "created by", box=None)
        for s in infos:
            grid.add_row(s.name, s.description, fmt_time(s.updated_at), s.created_by)
        console.print(grid)

    out.emit({"secrets": infos}, human)


@secrets_app.command("delete")
def secrets_delete(
    ctx: typer.Context, name: Annotated[str, typer.Argument(help="Secret name.")], json_output: JsonFlag = False
) -> None:
    """Delete a secret (anything referencing it fails with a clear error until it is set again)."""
    out = Output(json_output)
    open_workspace(ctx).secrets.delete(name)
    out.emit({"deleted": name}, lambda c: c.print(f"[green]✓[/] Deleted secret {name}"))
