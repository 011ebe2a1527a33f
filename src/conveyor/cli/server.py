"""``conveyor server``: the control-plane REST API (FastAPI on uvicorn)."""

from __future__ import annotations

import errno
import socket
from typing import TYPE_CHECKING, Annotated, Literal

import typer

from conveyor.cli._output import Output
from conveyor.cli._state import open_workspace
from conveyor.errors import BadInput

if TYPE_CHECKING:
    from collections.abc import Callable, Sequence

    from conveyor.pipelines import Fired
    from conveyor.workspace import Workspace

_LOOPBACK = {"127.0.0.1", "localhost", "::1"}


def bind_socket(host: str, port: int, *, fallback: bool = False) -> socket.socket:
    """A listening socket on ``host:port``; with ``fallback``, a free port when that one is taken.

    Raises:
        BadInput: the address is in use (without fallback) or cannot be bound.
    """
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host, port))
    except OSError as exc:
        if exc.errno == errno.EADDRINUSE and fallback:
            sock.bind((host, 0))
        else:
            sock.close()
            reason = "is already in use" if exc.errno == errno.EADDRINUSE else f"cannot be bound ({exc.strerror})"
            raise BadInput(f"{host}:{port} {reason}; pick another with --port (0 picks a free one).") from exc
    sock.listen(2048)
    return sock


class _Stopped(Exception):
    """SIGTERM arrived after uvicorn finished its graceful shutdown."""


def _on_sigterm(_signum: int, _frame: object) -> None:
    raise _Stopped


def serve_api(
    ws: Workspace,
    sock: socket.socket,
    *,
    scheduler_interval: float | None = None,
    on_fire: Callable[[Fired], None] | None = None,
    auth: Literal["token", "none"] = "token",
    extra_hosts: Sequence[str] = (),
) -> None:
    """Serve the REST API on ``sock`` until Ctrl+C or SIGTERM, then return normally.

    uvicorn drains in-flight requests and then re-raises the signal it caught; turning that into a normal
    return lets callers run their clean-up (the quickstart stops its endpoint) and exit 0.

    With ``scheduler_interval`` (seconds), the pipeline scheduler and the runner of scheduled monitors run in
    background threads meanwhile; each schedule fired is passed to ``on_fire``. ``auth="none"`` is for loopback
    only (the caller checks); ``extra_hosts`` are Host names to answer besides loopback and the bound address.
    """
    import signal

    import uvicorn

    from conveyor.api import create_app
    from conveyor.api._auth import allowed_hosts

    hosts = allowed_hosts(str(sock.getsockname()[0]), list(extra_hosts))
    app = create_app(ws, auth=auth, hosts=hosts)
    config = uvicorn.Config(app, log_level="warning", lifespan="off", timeout_graceful_shutdown=5)
    background = []
    if scheduler_interval is not None:
        from conveyor.pipelines import Scheduler

        background.append(Scheduler(ws).start(scheduler_interval, on_fire))
        background.append(ws.monitors.scheduler().start(scheduler_interval))  # scheduled monitors
    previous = signal.signal(signal.SIGTERM, _on_sigterm)
    try:
        uvicorn.Server(config).run(sockets=[sock])
    except (KeyboardInterrupt, _Stopped):
        pass
    finally:
        signal.signal(signal.SIGTERM, previous)
        for _, stop in background:
            stop.set()
        for thread, _ in background:
            thread.join(10)


def base_url(sock: socket.socket) -> str:
    host, port = sock.getsockname()[:2]
    return f"http://[{host}]:{port}" if ":" in host else f"http://{host}:{port}"


def register(app: typer.Typer) -> None:
    @app.command("server")
    def server(
        ctx: typer.Context,
        host: Annotated[
            str | None,
            typer.Option(help="Address to bind; default: host in conveyor.toml, else 127.0.0.1."),
        ] = None,
        port: Annotated[
            int | None,
            typer.Option(
                help="Port; default: port in conveyor.toml, else 8420; 0 picks a free one.",
                min=0,
                max=65535,
            ),
        ] = None,
        no_scheduler: Annotated[
            bool,
            typer.Option(
                "--no-scheduler", help="Do not fire pipeline schedules nor run scheduled monitors in this server."
            ),
        ] = False,
        scheduler_interval: Annotated[
            float, typer.Option("--scheduler-interval", help="Seconds between two checks of the schedules.", min=0.05)
        ] = 15.0,
        no_auth: Annotated[
            bool,
            typer.Option(
                "--no-auth",
                help="Development only, loopback only: no tokens; every caller acts as you (an admin).",
            ),
        ] = False,
        allowed_host: Annotated[
            list[str] | None,
            typer.Option(
                "--allowed-host",
                help="Another Host name clients use to reach this server (e.g. conveyor.internal); repeatable.",
            ),
        ] = None,
    ) -> None:
        """Run the studio (/), the REST API (OpenAPI at /docs) and the scheduler over the workspace until Ctrl+C.

        Every route but /api/v1/health needs 'Authorization: Bearer <token>' (`conveyor tokens create`);
        requests for other Host names and cross-site browser requests are refused.
        """
        out = Output(json_mode=False)
        ws = open_workspace(ctx)
        host = host or ws.settings.server_host
        if no_auth and host not in _LOOPBACK:
            raise BadInput(
                f"--no-auth serves the workspace to anyone who can reach {host}; it is allowed on loopback only "
                "(--host 127.0.0.1). Use tokens instead: `conveyor tokens create`."
            )
        issued = None if no_auth else ws.identities.bootstrap()
        sock = bind_socket(host, ws.settings.server_port if port is None else port)
        url = base_url(sock)
        if no_auth:
            out.note(
                "[bold red]WARNING: --no-auth: no tokens are checked.[/] Every program on this machine that can "
                f"reach {url} acts as you, with the admin role. Use it for development only."
            )
        elif host not in _LOOPBACK:
            out.note(f"Listening on {host}: reachable from other machines; every route but health needs a token.")
        out.console.print(f"Conveyor API for [bold]{ws.settings.home}[/] on {url}")
        out.console.print(f"  studio  {url}/\n  health  {url}/api/v1/health\n  docs    {url}/docs")
        if issued is not None:
            out.console.print(
                f"  admin   {issued.token.user}, first API token (shown once, keep it safe):\n"
                f"          [bold]{issued.secret}[/]"
            )
        elif not no_auth:
            out.console.print("  auth    send 'Authorization: Bearer <token>'; `conveyor tokens create` makes one")
        if no_scheduler:
            out.console.print("  schedules and monitors are not run here (--no-scheduler)")
        else:
            out.console.print(
                f"  schedules and monitors checked every {scheduler_interval:g} s (--no-scheduler to turn off)"
            )
        out.console.print("Press Ctrl+C to stop.")

        def on_fire(fired: Fired) -> None:
            from conveyor.cli.scheduler import describe

            out.console.print(describe(fired))

        serve_api(
            ws,
            sock,
            scheduler_interval=None if no_scheduler else scheduler_interval,
            on_fire=on_fire,
            auth="none" if no_auth else "token",
            extra_hosts=allowed_host or (),
        )
