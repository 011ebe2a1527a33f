"""Online endpoints: a model version deployed as an HTTP service in its own process.

``deploy`` records the deployment, starts ``python -m conveyor.serve`` for it, waits until the process
says it is ready (model loaded, warm-up prediction done), and records its URL and process id. The process
outlives the command that started it; ``stop`` ends it.
"""

from __future__ import annotations

import builtins
import contextlib
import os
import signal
import subprocess
import sys
import threading
import time
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

import sqlalchemy as sa

from conveyor.errors import EndpointError, InvalidSpec, NotFound, did_you_mean
from conveyor.governance import add_edge
from conveyor.refs import validate_name
from conveyor.store._helpers import lock_or_create
from conveyor.store._schema import DeploymentRow, EndpointRow, ModelRow, ModelVersionRow, utcnow

if TYPE_CHECKING:
    from conveyor.workspace import Workspace

__all__ = ["Deployment", "Endpoint", "Endpoints"]

_START_TIMEOUT_S = 60.0


@dataclass(frozen=True)
class Deployment:
    id: str
    endpoint: str
    name: str
    model: str
    model_version_id: str
    traffic: int
    status: str
    url: str | None
    pid: int | None
    created_at: datetime
    updated_at: datetime

    @property
    def predict_url(self) -> str | None:
        return None if self.url is None else f"{self.url}/predict"


@dataclass(frozen=True)
class Endpoint:
    id: str
    name: str
    url: str | None
    deployments: list[Deployment]
    created_at: datetime


class Endpoints:
    """The endpoints service, reached as ``ws.endpoints``."""

    def __init__(self, workspace: Workspace) -> None:
        self._ws = workspace

    def deploy(
        self,
        endpoint: str,
        model: str,
        *,
        deployment: str = "default",
        host: str = "127.0.0.1",
        port: int = 0,
        timeout: float = _START_TIMEOUT_S,
    ) -> Deployment:
        """Serve model version ``model`` (``name``, ``name:3`` or ``name@alias``) as ``endpoint``/``deployment``.

        A deployment of the same name is stopped and replaced.

        Raises:
            NotFound: the model version does not exist.
            EndpointError: the serving process did not become ready in time (its log is quoted).
        """
        validate_name(endpoint, "endpoint")
        validate_name(deployment, "deployment")
        version = self._ws.models.get(model)
        with contextlib.suppress(NotFound):
            self.stop(endpoint, deployment=deployment)
        with self._ws.store.write() as session:
            ep = lock_or_create(session, EndpointRow, name=endpoint, created_by=self._ws.actor)
            row = session.scalars(sa.select(DeploymentRow).filter_by(endpoint_id=ep.id, name=deployment)).first()
            if row is None:
                row = DeploymentRow(endpoint_id=ep.id, name=deployment, created_by=self._ws.actor, status="starting")
                session.add(row)
            row.model_version_id = version.id
            row.status = "starting"
            row.traffic = 100
            row.url = None
            row.pid = None
            row.updated_at = utcnow()
            session.flush()
            add_edge(session, "model_version", version.id, "served_by", "deployment", row.id)
            deployment_id = row.id

        log_path = self._log_path(endpoint, deployment)
        try:
            pid, url = _start_process(self._ws, deployment_id, host, port, log_path, timeout)
        except EndpointError:
            self._set_state(deployment_id, status="failed", url=None, pid=None)
            raise
        self._set_state(deployment_id, status="running", url=url, pid=pid)
        return next(d for d in self.get(endpoint).deployments if d.id == deployment_id)

    def get(self, name: str) -> Endpoint:
        """The endpoint and its deployments.

        Raises:
            NotFound: no endpoint has that name.
        """
        with self._ws.store.read() as session:
            ep = session.scalars(sa.select(EndpointRow).filter_by(name=name)).first()
            if ep is None:
                names = session.scalars(sa.select(EndpointRow.name)).all()
                raise NotFound(
                    f"No endpoint named {name!r}.{did_you_mean(name, names)} List them with 'conveyor endpoints list'.",
                    name=name,
                )
            rows = session.execute(
                sa.select(DeploymentRow, ModelRow.name, ModelVersionRow.version)
                .join(ModelVersionRow, ModelVersionRow.id == DeploymentRow.model_version_id)
                .join(ModelRow, ModelRow.id == ModelVersionRow.model_id)
                .where(DeploymentRow.endpoint_id == ep.id)
                .order_by(DeploymentRow.name)
            ).all()
            deployments = [_to_deployment(d, ep.name, f"{m}:{v}") for d, m, v in rows]
            running = [d for d in deployments if d.status == "running"]
            return Endpoint(ep.id, ep.name, running[0].url if running else None, deployments, ep.created_at)

    def list(self) -> builtins.list[Endpoint]:
        with self._ws.store.read() as session:
            names = session.scalars(sa.select(EndpointRow.name).order_by(EndpointRow.name)).all()
        return [self.get(n) for n in names]

    def stop(self, name: str, *, deployment: str | None = None, timeout: float = 10.0) -> Endpoint:
        """Stop the serving processes of an endpoint (or of one deployment); they drain and exit.

        Raises:
            NotFound: no such endpoint or deployment.
        """
        endpoint = self.get(name)
        targets = [d for d in endpoint.deployments if deployment is None or d.name == deployment]
        if deployment is not None and not targets:
            raise NotFound(
                f"Endpoint {name!r} has no deployment {deployment!r}."
                f"{did_you_mean(deployment, [d.name for d in endpoint.deployments])}"
            )
        for d in targets:
            if d.pid is not None:
                _terminate(d.pid, timeout)
            if d.status in ("running", "starting"):
                self._set_state(d.id, status="stopped", url=None, pid=None)
        return self.get(name)

    def invoke(self, name: str, records: builtins.list[dict[str, Any]], timeout: float = 30.0) -> builtins.list[Any]:
        """Score records through the endpoint over HTTP; returns the predictions.

        Raises:
            NotFound: the endpoint has no running deployment.
            InvalidSpec: the endpoint refused the rows (a 4xx; its message is quoted).
            EndpointError: the endpoint failed or did not answer.
        """
        import httpx

        endpoint = self.get(name)
        if endpoint.url is None:
            raise NotFound(f"Endpoint {name!r} has no running deployment; deploy a model to it first.")
        try:
            response = httpx.post(f"{endpoint.url}/predict", json=records, timeout=timeout)
        except httpx.HTTPError as exc:
            raise EndpointError(f"Endpoint {name!r} at {endpoint.url} did not answer: {exc}.") from exc
        if 400 <= response.status_code < 500:
            try:
                reason = response.json()["error"]["message"]
            except (ValueError, KeyError, TypeError):
                reason = response.text[:500]
            raise InvalidSpec(f"Endpoint {name!r} refused the rows ({response.status_code}): {reason}")
        if response.status_code != 200:
            raise EndpointError(f"Endpoint {name!r} answered {response.status_code}: {response.text[:500]}")
        predictions: builtins.list[Any] = response.json()["predictions"]
        return predictions

    def _log_path(self, endpoint: str, deployment: str) -> Path:
        folder = self._ws.settings.home / "logs" / "endpoints"
        folder.mkdir(parents=True, exist_ok=True)
        return folder / f"{endpoint}.{deployment}.log"

    def _set_state(self, deployment_id: str, *, status: str, url: str | None, pid: int | None) -> None:
        with self._ws.store.write() as session:
            row = session.get(DeploymentRow, deployment_id)
            if row is not None:
                row.status, row.url, row.pid, row.updated_at = status, url, pid, utcnow()


def _to_deployment(row: DeploymentRow, endpoint: str, model: str) -> Deployment:
    status = row.status
    if status == "running" and row.pid is not None and not _alive(row.pid):
        status = "exited"
    return Deployment(
        id=row.id,
        endpoint=endpoint,
        name=row.name,
        model=model,
        model_version_id=row.model_version_id,
        traffic=row.traffic,
        status=status,
        url=row.url if status == "running" else None,
        pid=row.pid if status == "running" else None,
        created_at=row.created_at,
        updated_at=row.updated_at,
    )


def _start_process(
    ws: Workspace, deployment_id: str, host: str, port: int, log_path: Path, timeout: float
) -> tuple[int, str]:
    import httpx

    from conveyor.workspace import workspace_env

    env = {**os.environ, **workspace_env(ws.settings)}
    command = [
        sys.executable,
        "-m",
        "conveyor.serve",
        "--deployment-id",
        deployment_id,
        "--host",
        host,
        "--port",
        str(port),
    ]
    with log_path.open("ab") as log:
        process = subprocess.Popen(
            command,
            stdout=subprocess.PIPE,
            stderr=log,
            env=env,
            start_new_session=True,
            close_fds=True,
        )
    deadline = time.monotonic() + timeout
    announced: dict[str, Any] = {}

    def read_announcement() -> None:
        import json

        assert process.stdout is not None
        line = process.stdout.readline()
        with contextlib.suppress(ValueError):
            announced.update(json.loads(line))

    reader = threading.Thread(target=read_announcement, daemon=True)
    reader.start()
    reader.join(timeout)
    if "port" not in announced:
        _fail(process, log_path, f"did not start listening within {timeout:.0f} s")
    url = f"http://{host}:{announced['port']}"
    while time.monotonic() < deadline:
        if process.poll() is not None:
            _fail(process, log_path, f"exited with status {process.returncode}")
        try:
            if httpx.get(f"{url}/v2/health/ready", timeout=2.0).status_code == 200:
                return process.pid, url
        except httpx.HTTPError:
            pass
        time.sleep(0.05)
    _fail(process, log_path, f"was not ready within {timeout:.0f} s")
    raise AssertionError("unreachable")


def _fail(process: subprocess.Popen[bytes], log_path: Path, what: str) -> None:
    if process.poll() is None:
        _terminate(process.pid, 5.0)
    tail = log_path.read_text(errors="replace").strip().splitlines()[-15:] if log_path.exists() else []
    raise EndpointError(
        f"The serving process {what}. Last lines of its log ({log_path}):\n" + "\n".join(tail),
        log=str(log_path),
    )


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    with contextlib.suppress(ChildProcessError, OSError):
        finished, _ = os.waitpid(pid, os.WNOHANG)
        if finished == pid:
            return False
    return True


def _terminate(pid: int, timeout: float) -> None:
    """SIGTERM (the server drains in-flight requests), then SIGKILL after ``timeout``."""
    if not _alive(pid):
        return
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if not _alive(pid):
            return
        time.sleep(0.05)
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signal.SIGKILL)
