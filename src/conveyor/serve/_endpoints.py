"""Online endpoints, the control plane: create, deploy, split and mirror traffic, keys, roll back, delete.

The tables hold what should be served (deployments, traffic, mirror shares, keys, settings); every change
bumps the endpoint's ``revision``. A running endpoint is one supervisor process (``conveyor.serve``) with its
worker processes; after a change the control plane signals the supervisor (SIGHUP) and waits until it reports
the new revision applied, or starts it when it is not running. A change the supervisor cannot apply (a model
that fails to load) is undone in the tables and reported, so what the tables say is what is served.
"""

from __future__ import annotations

import builtins
import contextlib
import dataclasses
import math
import os
import re
import secrets
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, Concatenate, ParamSpec, TypeVar

import orjson
import sqlalchemy as sa

from conveyor._process import alive, terminate
from conveyor.errors import BadInput, Conflict, ConveyorError, EndpointError, InvalidSpec, NotFound, did_you_mean
from conveyor.governance import add_edge
from conveyor.refs import validate_name
from conveyor.serve._spec import Batching, DeploymentSpec, EndpointSpec, OnnxSpec, is_loopback, key_digest, status_path
from conveyor.store._locks import named_lock
from conveyor.store._schema import DeploymentRow, EndpointRow, ModelRow, ModelVersionRow, utcnow

if TYPE_CHECKING:
    from conveyor.governance import Secrets
    from conveyor.workspace import Workspace

__all__ = ["Deployment", "Endpoint", "Endpoints", "Orphan"]

_START_TIMEOUT_S = 120.0
#: How long a change waits for another change of the same endpoint (a deploy may take minutes) to finish.
_LOCK_TIMEOUT_S = 600.0
_HISTORY = 20
AUTH_MODES = ("key", "none")
MAX_IDLE_TIMEOUT_S = 31_536_000
MAX_RATE_LIMIT = 1e9
ENGINES = ("auto", "onnx", "native")


@dataclass(frozen=True)
class Deployment:
    id: str
    endpoint: str
    name: str
    model: str
    model_version_id: str
    traffic: int
    mirror: int
    batching: dict[str, Any]
    engine: str
    created_at: datetime
    updated_at: datetime
    #: Refuse request fields the model does not take (422) instead of leaving them out.
    strict: bool = False


@dataclass(frozen=True)
class Endpoint:
    """An endpoint: its base URL (while it runs), deployments, live traffic and mirrored shares.

    ``status`` is ``created`` (nothing deployed), ``running``, ``idle`` (scaled to zero; the next request
    wakes it), ``stopped`` or ``failed``.
    """

    id: str
    name: str
    url: str | None
    status: str
    auth: str
    deployments: list[Deployment]
    traffic: dict[str, int]
    mirror: dict[str, int]
    revision: int
    settings: dict[str, Any]
    pid: int | None
    workers: list[int]
    created_at: datetime
    error: str | None = None
    routes: dict[str, str] = field(default_factory=dict)
    description: str = ""


P = ParamSpec("P")
R = TypeVar("R")


def _one_at_a_time(method: Callable[Concatenate[Endpoints, str, P], R]) -> Callable[Concatenate[Endpoints, str, P], R]:
    """Run the method under its endpoint's lock: one lifecycle change of an endpoint at a time, in any process."""
    import functools

    @functools.wraps(method)
    def locked(self: Endpoints, name: str, /, *args: P.args, **kwargs: P.kwargs) -> R:
        with self._locked(name):
            return method(self, name, *args, **kwargs)

    return locked


@dataclass(frozen=True)
class Orphan:
    """A serving process of this workspace that no endpoint record accounts for.

    ``pid`` is a supervisor (with its ``workers``) whose endpoint was deleted or records another process, or a
    worker whose supervisor is gone; ``reason`` says which. ``conveyor endpoints gc`` ends them.
    """

    pid: int
    endpoint: str
    reason: str
    workers: list[int] = field(default_factory=list)


class Endpoints:
    """The endpoints service, reached as ``ws.endpoints``."""

    def __init__(self, workspace: Workspace) -> None:
        self._ws = workspace

    # -- create and change ------------------------------------------------------------------------

    @_one_at_a_time
    def create(
        self,
        name: str,
        *,
        auth: str = "key",
        host: str = "127.0.0.1",
        port: int = 0,
        workers: int = 0,
        idle_timeout: float = 0.0,
        max_body_mb: float = 10.0,
        rate_limit: float = 0.0,
        collect: float = 0.0,
        description: str = "",
    ) -> Endpoint:
        """Create an endpoint (nothing runs until a model is deployed to it).

        Args:
            auth: ``key`` (requests need ``Authorization: Bearer KEY``) or ``none`` (loopback only).
            host: the address the endpoint listens on.
            port: its port (0: a free one, kept across restarts).
            workers: worker processes (0: one per core); at most the workspace's ``max_workers``.
            idle_timeout: seconds without a request after which the endpoint scales to zero (0: never).
            max_body_mb: the largest request body accepted (413 above it).
            rate_limit: requests per second the endpoint accepts (0: no limit; 429 above it).
            collect: the fraction of requests whose rows and predictions are kept as data asset
                ``NAME_requests`` for monitoring (0: none).

        Raises:
            Conflict: an endpoint of that name exists.
            InvalidSpec: a setting is out of range, or ``auth="none"`` on a non-loopback address.
            BadInput: more workers than the workspace's ``max_workers``.
        """
        validate_name(name, "endpoint")
        self._check_workers(name, workers)
        settings = _check_settings(
            auth=auth,
            host=host,
            port=port,
            workers=workers,
            idle_timeout=idle_timeout,
            max_body_mb=max_body_mb,
            rate_limit=rate_limit,
            collect=collect,
        )
        with self._ws.store.write() as session:
            if session.scalars(sa.select(EndpointRow.id).filter_by(name=name)).first() is not None:
                raise Conflict(
                    f"Endpoint {name!r} exists. Deploy to it with 'conveyor endpoints deploy {name} --model M', or "
                    f"delete it first with 'conveyor endpoints delete {name}'.",
                    name=name,
                )
            row = EndpointRow(
                name=name,
                description=description,
                created_by=self._ws.actor,
                auth=auth,
                settings=settings,
                revision=1,
                status="created",
            )
            if auth == "key":
                for which in ("primary", "secondary"):
                    _write_key(row, which, _new_key(), self._ws.secrets)
            session.add(row)
        return self.get(name)

    @_one_at_a_time
    def deploy(
        self,
        endpoint: str,
        model: str,
        *,
        deployment: str = "default",
        traffic: int | None = None,
        max_batch_size: int = 64,
        max_latency_ms: float = 0.0,
        max_queue: int = 512,
        engine: str = "auto",
        timeout: float = _START_TIMEOUT_S,
        strict: bool = False,
    ) -> Deployment:
        """Serve model version ``model`` (``name``, ``name:3``, ``name@alias``) as ``endpoint``/``deployment``.

        The endpoint is created (with keys) if it does not exist. A deployment of the same name gets the new
        model version; the old one keeps serving until the new one is loaded and warmed up. ``traffic``: the
        deployment's share of live requests (the others keep their proportions in the rest); by default a
        new endpoint's first deployment takes 100 and a further deployment 0, so it can be tested through
        the ``conveyor-deployment`` header before it takes traffic. ``engine``: ``auto`` scores with ONNX
        Runtime when the version has an ONNX export (``conveyor models export --format onnx``) and with the
        model itself otherwise; ``onnx`` converts the version first if needed; ``native`` never uses ONNX.
        ``strict``: refuse (422) request fields the model does not take; by default they are left out of
        scoring, as MLflow does, and named in the ``conveyor-ignored-fields`` response header.

        Raises:
            NotFound: the model version does not exist.
            InvalidSpec: a setting is out of range.
            EndpointError: the model failed to load or warm up (the endpoint keeps what it served before).
            NotConvertible: ``engine="onnx"`` and the model cannot be converted.
        """
        validate_name(endpoint, "endpoint")
        if engine not in ENGINES:
            raise InvalidSpec(
                f"engine must be one of {', '.join(ENGINES)}; got {engine!r}.{did_you_mean(engine, ENGINES)}"
            )
        validate_name(deployment, "deployment")
        if traffic is not None and not 0 <= traffic <= 100:
            raise InvalidSpec(f"Traffic is a percentage between 0 and 100; got {traffic}.")
        batching = Batching(max_batch_size, max_latency_ms, max_queue).check()
        version = self._ws.models.get(model)
        if engine == "onnx" and "model.onnx" not in version.files:
            self._ws.models.to_onnx(version.ref)
        created = written = False
        with contextlib.suppress(Conflict):
            self.create(endpoint)
            created = True
        try:
            with self._ws.store.read() as session:
                current = self._row(session, endpoint)
                pid, settings = current.pid, dict(current.settings)
            if pid is None or not alive(pid):
                self._check_capacity(endpoint, settings)  # before anything is written
            revision, deployment_id = self._record_deployment(
                endpoint, deployment, version.id, batching, engine, traffic, strict
            )
            written = True
            self._apply(endpoint, revision, timeout, start=True)
        except ConveyorError as exc:
            self._deploy_failed(endpoint, exc, created=created, written=written)
            raise
        return next(d for d in self.get(endpoint).deployments if d.id == deployment_id)

    def _record_deployment(
        self,
        endpoint: str,
        deployment: str,
        version_id: str,
        batching: Batching,
        engine: str,
        traffic: int | None,
        strict: bool = False,
    ) -> tuple[int, str]:
        """Write the deployment of a version into the tables (the previous state remembered); revision and id."""
        with self._ws.store.write() as session:
            ep = self._row(session, endpoint, lock=True)
            rows = self._deployment_rows(session, ep.id)
            _remember(ep, rows)
            row = next((r for r in rows if r.name == deployment), None)
            if row is None:
                row = DeploymentRow(
                    endpoint_id=ep.id, name=deployment, created_by=self._ws.actor, status="active", traffic=0, mirror=0
                )
                session.add(row)
                rows.append(row)
            row.model_version_id = version_id
            row.settings = {"batching": _batching_dict(batching), "engine": engine, "strict": bool(strict)}
            row.status = "active"
            row.updated_at = utcnow()
            if traffic is not None:
                _give_share(rows, row, traffic)
            elif len(rows) == 1:
                row.traffic = 100
            row.mirror = 0 if row.traffic else row.mirror
            session.flush()
            add_edge(session, "model_version", version_id, "served_by", "deployment", row.id)
            return _bump(ep), row.id

    def _deploy_failed(self, endpoint: str, exc: ConveyorError, *, created: bool, written: bool) -> None:
        """Leave no trace of a deploy that failed: a new endpoint goes, an existing one gets its tables back.

        Raises:
            EndpointError: the new endpoint's process could not start (said to be removed).
        """
        if created:
            self._remove(endpoint)
            if isinstance(exc, EndpointError):
                raise EndpointError(f"{exc.message}\nThe endpoint was new, so it was removed.", **exc.details) from exc
            return
        if written and not isinstance(exc, EndpointError):  # (an EndpointError put the tables back already)
            self._undo(endpoint)

    @_one_at_a_time
    def set_traffic(self, name: str, weights: dict[str, int], *, timeout: float = _START_TIMEOUT_S) -> Endpoint:
        """Split live traffic: ``{"blue": 90, "green": 10}`` (percentages summing to 100; others get 0).

        Applied live: requests in flight finish on the deployment that took them.

        Raises:
            InvalidSpec: no shares, an unknown deployment, a share outside 0–100, or shares not summing to 100.
        """
        with self._ws.store.write() as session:
            ep = self._row(session, name, lock=True)
            rows = self._deployment_rows(session, ep.id)
            if not weights:
                example = " ".join(f"{r.name}={100 if i == 0 else 0}" for i, r in enumerate(rows)) or "blue=100"
                raise InvalidSpec(
                    f"Give the traffic share of at least one deployment of {name!r}, summing to 100 "
                    f"(e.g. {example}); got none.",
                )
            _check_shares(name, weights, rows, "traffic")
            total = sum(weights.values())
            if total != 100:
                raise InvalidSpec(
                    f"Traffic shares must sum to 100; these sum to {total} "
                    f"({', '.join(f'{k}={v}' for k, v in weights.items())}). Adjust them, e.g. "
                    f"{_suggest(weights)}.",
                    total=total,
                )
            _remember(ep, rows)
            for row in rows:
                row.traffic = weights.get(row.name, 0)
                if row.traffic and row.mirror:
                    row.mirror = 0
                row.updated_at = utcnow()
            revision = _bump(ep)
        self._apply(name, revision, timeout)
        return self.get(name)

    @_one_at_a_time
    def set_mirror(self, name: str, shares: dict[str, int], *, timeout: float = _START_TIMEOUT_S) -> Endpoint:
        """Mirror a share of live requests to deployments that take no live traffic: ``{"green": 20}``.

        A mirrored request is scored by the shadow deployment after the live answer is sent; its result is
        only counted (metrics and access log), never returned. Deployments not named stop being mirrored to.

        Raises:
            InvalidSpec: an unknown deployment, a share outside 0–100, or a deployment that takes live traffic.
        """
        with self._ws.store.write() as session:
            ep = self._row(session, name, lock=True)
            rows = self._deployment_rows(session, ep.id)
            _check_shares(name, shares, rows, "mirror")
            live = [r.name for r in rows if r.name in shares and shares[r.name] and r.traffic]
            if live:
                raise InvalidSpec(
                    f"Deployment {live[0]!r} takes live traffic, so mirroring to it would score requests twice. "
                    f"Mirror to a deployment with 0% traffic (deploy one with --traffic 0).",
                    deployment=live[0],
                )
            _remember(ep, rows)
            for row in rows:
                row.mirror = shares.get(row.name, 0)
                row.updated_at = utcnow()
            revision = _bump(ep)
        self._apply(name, revision, timeout)
        return self.get(name)

    @_one_at_a_time
    def rollback(self, name: str, *, timeout: float = _START_TIMEOUT_S) -> Endpoint:
        """Undo the last change of deployments or traffic: model versions, traffic and mirror shares as before.

        Raises:
            Conflict: there is nothing to roll back to.
        """
        with self._ws.store.write() as session:
            ep = self._row(session, name, lock=True)
            if not ep.settings.get("history"):
                raise Conflict(f"Endpoint {name!r} has no earlier state to roll back to.", name=name)
            # A deployment made since then stays, without traffic: rolling back never deletes one.
            revision = self._restore_previous(session, ep, delete_newer=False)
        self._apply(name, revision, timeout)
        return self.get(name)

    def keys(self, name: str) -> dict[str, str]:
        """The endpoint's primary and secondary keys (either is accepted).

        Raises:
            Conflict: the endpoint has no auth.
        """
        with self._ws.store.read() as session:
            ep = self._row(session, name)
            found = _read_keys(ep, self._ws.secrets)
            if ep.auth == "none" or set(found) != {"primary", "secondary"}:
                raise Conflict(f"Endpoint {name!r} has no auth, so it has no keys.", name=name)
            return found

    @_one_at_a_time
    def regenerate_key(
        self, name: str, which: str = "secondary", *, timeout: float = _START_TIMEOUT_S
    ) -> dict[str, str]:
        """Replace one key (clients move to the other key first); the old key stops working at once.

        Raises:
            InvalidSpec: ``which`` is neither ``primary`` nor ``secondary``.
            Conflict: the endpoint has no auth.
        """
        if which not in ("primary", "secondary"):
            raise InvalidSpec(f"Which key: 'primary' or 'secondary'; got {which!r}.")
        self.keys(name)
        with self._ws.store.write() as session:
            ep = self._row(session, name, lock=True)
            _write_key(ep, which, _new_key(), self._ws.secrets)
            revision = _bump(ep)
        self._apply(name, revision, timeout)
        return self.keys(name)

    @_one_at_a_time
    def delete(self, name: str, *, deployment: str | None = None) -> None:
        """Delete a deployment (it must take no live traffic unless it is the last) or the whole endpoint.

        Raises:
            NotFound: no such endpoint or deployment.
            Conflict: the deployment still takes live traffic while others exist.
        """
        if deployment is None:
            self.stop(name)
            self._remove(name)
            return
        with self._ws.store.write() as session:
            ep = self._row(session, name, lock=True)
            rows = self._deployment_rows(session, ep.id)
            row = self._find(name, rows, deployment)
            others = [r for r in rows if r is not row]
            if row.traffic and others:
                raise Conflict(
                    f"Deployment {deployment!r} takes {row.traffic}% of live traffic; move it first, e.g. "
                    f"'conveyor endpoints traffic {name} {others[0].name}=100'.",
                    deployment=deployment,
                )
            _remember(ep, rows)
            session.delete(row)
            revision = _bump(ep)
            last = not others
        if last:
            self.stop(name)
        else:
            self._apply(name, revision, _START_TIMEOUT_S)

    def _remove(self, name: str) -> None:
        """Delete the endpoint's rows and status file (its process is already stopped)."""
        with self._ws.store.write() as session:
            ep = self._row(session, name, lock=True)
            session.execute(sa.delete(DeploymentRow).where(DeploymentRow.endpoint_id == ep.id))
            session.delete(ep)
        with contextlib.suppress(FileNotFoundError):
            self._status_path(name).unlink()

    @_one_at_a_time
    def stop(self, name: str, *, timeout: float = 20.0) -> Endpoint:
        """Stop the endpoint's processes; in-flight requests finish first. ``start`` brings it back.

        Raises:
            NotFound: no such endpoint.
        """
        with self._ws.store.read() as session:
            pid = self._row(session, name).pid
        if pid is not None:
            terminate(pid, timeout)
        with self._ws.store.write() as session:
            ep = self._row(session, name, lock=True)
            ep.pid, ep.url, ep.updated_at = None, None, utcnow()
            ep.status = "stopped" if ep.status != "created" else "created"
        return self.get(name)

    @_one_at_a_time
    def start(self, name: str, *, timeout: float = _START_TIMEOUT_S) -> Endpoint:
        """Start a stopped endpoint with what it served.

        Raises:
            Conflict: the endpoint has no deployments.
        """
        with self._ws.store.read() as session:
            ep = self._row(session, name)
            revision = ep.revision
        self._apply(name, revision, timeout, start=True)
        return self.get(name)

    # -- read -------------------------------------------------------------------------------------

    def get(self, name: str) -> Endpoint:
        """The endpoint with its deployments and runtime state.

        Raises:
            NotFound: no endpoint has that name.
        """
        with self._ws.store.read() as session:
            ep = self._row(session, name)
            rows = session.execute(self._deployments_query().where(DeploymentRow.endpoint_id == ep.id)).all()
            return self._endpoint(ep, [(d, m, v) for d, m, v in rows])

    def list(self) -> builtins.list[Endpoint]:
        """Every endpoint, by name (two queries however many there are)."""
        with self._ws.store.read() as session:
            endpoints = session.scalars(sa.select(EndpointRow).order_by(EndpointRow.name)).all()
            by_endpoint: dict[str, builtins.list[Any]] = {ep.id: [] for ep in endpoints}
            for d, m, v in session.execute(self._deployments_query()).all():
                if d.endpoint_id in by_endpoint:
                    by_endpoint[d.endpoint_id].append((d, m, v))
            return [self._endpoint(ep, by_endpoint[ep.id]) for ep in endpoints]

    @staticmethod
    def _deployments_query() -> Any:
        return (
            sa.select(DeploymentRow, ModelRow.name, ModelVersionRow.version)
            .join(ModelVersionRow, ModelVersionRow.id == DeploymentRow.model_version_id)
            .join(ModelRow, ModelRow.id == ModelVersionRow.model_id)
            .order_by(DeploymentRow.name)
        )

    def _endpoint(self, ep: EndpointRow, rows: builtins.list[Any]) -> Endpoint:
        deployments = [
            Deployment(
                id=d.id,
                endpoint=ep.name,
                name=d.name,
                model=f"{m}:{v}",
                model_version_id=d.model_version_id,
                traffic=d.traffic,
                mirror=d.mirror,
                batching=dict(d.settings.get("batching", {})),
                engine=str(d.settings.get("engine", "auto")),
                created_at=d.created_at,
                updated_at=d.updated_at,
                strict=bool(d.settings.get("strict", False)),
            )
            for d, m, v in rows
        ]
        status, url, pid = ep.status, ep.url, ep.pid
        workers: builtins.list[int] = []
        error = None
        if status in ("running", "idle", "starting"):
            runtime = self.runtime(ep.name)
            if pid is None or not alive(pid):
                status, url, pid = "exited", None, None
            elif runtime is not None and runtime.get("pid") == pid:
                status = str(runtime.get("state", status))
                workers = list(runtime.get("workers", []))
                error = runtime.get("error")
        settings = {k: v for k, v in ep.settings.items() if k != "history"}
        return Endpoint(
            id=ep.id,
            name=ep.name,
            url=url,
            status=status,
            auth=ep.auth,
            deployments=deployments,
            traffic={d.name: d.traffic for d in deployments},
            mirror={d.name: d.mirror for d in deployments if d.mirror},
            revision=ep.revision,
            settings=settings,
            pid=pid,
            workers=workers,
            created_at=ep.created_at,
            error=error,
            routes=_routes(url, ep.name),
            description=ep.description,
        )

    def orphans(self) -> builtins.list[Orphan]:
        """Serving processes of this workspace that were not expected: see :class:`Orphan`.

        Found through ``/proc`` (Linux): processes running ``conveyor.serve --endpoint`` for this workspace's
        folder. Empty where ``/proc`` is not available.
        """
        processes = _serving_processes(self._ws.settings.home)
        if not processes:
            return []
        with self._ws.store.read() as session:
            recorded = dict(session.execute(sa.select(EndpointRow.name, EndpointRow.pid)).all())
        supervisors = {pid: name for pid, (name, sid) in processes.items() if pid == sid}
        found: builtins.list[Orphan] = []
        for pid, name in sorted(supervisors.items()):
            workers = sorted(p for p, (_, sid) in processes.items() if sid == pid and p != pid)
            if name not in recorded:
                found.append(Orphan(pid, name, f"endpoint {name!r} no longer exists", workers))
            elif recorded[name] != pid:
                expected = recorded[name]
                what = f"process {expected}" if expected is not None else "no process (it is stopped)"
                found.append(Orphan(pid, name, f"endpoint {name!r} records {what}", workers))
        for pid, (name, sid) in sorted(processes.items()):
            if pid != sid and sid not in supervisors:
                found.append(Orphan(pid, name, f"a worker of endpoint {name!r} whose supervisor is gone"))
        return found

    def gc(self, *, grace: float = 10.0) -> builtins.list[dict[str, Any]]:
        """End the orphaned serving processes (SIGTERM, then SIGKILL after ``grace`` seconds); what was ended.

        Each orphan is checked again under its endpoint's lock, so a process a deploy is starting right now
        is never taken for one.
        """
        ended: builtins.list[dict[str, Any]] = []
        for orphan in self.orphans():
            with self._locked(orphan.endpoint):
                if orphan not in self.orphans():
                    continue
                signal_used = _end(orphan.pid, grace, group=not orphan.reason.startswith("a worker"))
                ended.append({**dataclasses.asdict(orphan), "signal": signal_used})
        return ended

    def claims(self, name: str, pid: int) -> bool:
        """Whether process ``pid`` may serve endpoint ``name``: it exists and records no other live process."""
        with self._ws.store.read() as session:
            row = session.execute(sa.select(EndpointRow.pid).filter_by(name=name)).first()
        if row is None:
            return False
        recorded = row[0]
        return recorded is None or recorded == pid or not alive(recorded)

    def runtime(self, name: str) -> dict[str, Any] | None:
        """What the endpoint's supervisor last reported (state, revision, worker pids), if it ran."""
        try:
            found: dict[str, Any] = orjson.loads(self._status_path(name).read_bytes())
        except (FileNotFoundError, orjson.JSONDecodeError):
            return None
        return found

    def logs(self, name: str, *, deployment: str | None = None, tail: int = 50) -> builtins.list[dict[str, Any]]:
        """The last ``tail`` access-log records (JSON objects), optionally of one deployment only.

        Raises:
            NotFound: no such endpoint.
        """
        self.get(name)
        path = self._log_dir() / f"{name}.access.log"
        if not path.exists():
            return []
        records: builtins.list[dict[str, Any]] = []
        for line in _tail_lines(path, tail if deployment is None else tail * 20):
            with contextlib.suppress(orjson.JSONDecodeError):
                record = orjson.loads(line)
                if deployment is None or record.get("deployment") == deployment:
                    records.append(record)
        return records[-tail:]

    def process_log(self, name: str, *, tail: int = 50) -> builtins.list[str]:
        """The last lines of the endpoint's process log (start, reloads, worker restarts, errors).

        Raises:
            InvalidReference: ``name`` is not an endpoint name (so it can name no other file).
        """
        validate_name(name, "endpoint")
        path = self._log_dir() / f"{name}.log"
        return [line.decode(errors="replace") for line in _tail_lines(path, tail)] if path.exists() else []

    def invoke(
        self,
        name: str,
        records: builtins.list[dict[str, Any]],
        *,
        deployment: str | None = None,
        timeout: float = 30.0,
    ) -> builtins.list[Any]:
        """Score records through the endpoint over HTTP (``POST /predict``, with its key); the predictions.

        Raises:
            NotFound: the endpoint is not running.
            InvalidSpec: the endpoint refused the rows (a 4xx; its message is quoted).
            EndpointError: the endpoint failed or did not answer.
        """
        import httpx

        endpoint = self.get(name)
        if endpoint.url is None:
            raise NotFound(
                f"Endpoint {name!r} is {endpoint.status}; deploy a model to it or 'conveyor endpoints start {name}'."
            )
        headers = {}
        if endpoint.auth == "key":
            headers["Authorization"] = f"Bearer {self.keys(name)['primary']}"
        if deployment is not None:
            headers["conveyor-deployment"] = deployment
        try:
            response = httpx.post(
                f"{endpoint.url}/predict", content=orjson.dumps(records), headers=headers, timeout=timeout
            )
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

    def spec(self, name: str) -> EndpointSpec:
        """What the endpoint serves, as its serving processes (and exported bundles) see it.

        Raises:
            NotFound: no such endpoint.
        """
        with self._ws.store.read() as session:
            ep = self._row(session, name)
            rows = self._deployment_rows(session, ep.id)
            deployments = []
            for row in sorted(rows, key=lambda r: r.name):
                version = self._ws.models.get_by_id(row.model_version_id)
                onnx = version.files.get("model.onnx") if row.settings.get("engine") != "native" else None
                batching = row.settings.get("batching", {})
                deployments.append(
                    DeploymentSpec(
                        id=row.id,
                        name=row.name,
                        model=version.ref,
                        model_name=version.name,
                        model_version=version.version,
                        model_version_id=version.id,
                        format=version.format,
                        digest=version.digest,
                        trusted_types=version.trusted_types,
                        signature=version.signature,
                        traffic=row.traffic,
                        mirror=row.mirror,
                        batching=Batching(**batching),
                        onnx=None
                        if onnx is None
                        else OnnxSpec(
                            digest=onnx["digest"],
                            inputs=list(onnx["inputs"]),
                            outputs=list(onnx["outputs"]),
                            kind=onnx.get("kind", "classifier"),
                            missing_text=onnx.get("missing_text"),
                            classes=onnx.get("classes"),
                        ),
                        example=self._example(version),
                        strict=bool(row.settings.get("strict", False)),
                    )
                )
            settings = ep.settings
            keys = list(_read_keys(ep, self._ws.secrets).values()) if ep.auth == "key" else []
            return EndpointSpec(
                name=ep.name,
                revision=ep.revision,
                auth=ep.auth,
                key_digests=[key_digest(k) for k in keys],
                deployments=deployments,
                workers=int(settings.get("workers", 0)),
                idle_timeout_s=float(settings.get("idle_timeout", 0.0)),
                max_body_bytes=int(float(settings.get("max_body_mb", 10.0)) * 1024 * 1024),
                rate_limit=float(settings.get("rate_limit", 0.0)),
                collect={"sample": settings["collect"]} if settings.get("collect") else None,
            )

    def _example(self, version: Any) -> builtins.list[dict[str, Any]] | None:
        """The first row of the version's stored input example, as JSON values a request would hold."""
        import io

        import pandas as pd

        from conveyor.registry._models import EXAMPLE

        if EXAMPLE not in version.files:
            return None
        frame = pd.read_parquet(io.BytesIO(self._ws.models.file_bytes(version, EXAMPLE))).head(1)
        names = [c["name"] for c in version.signature.get("inputs", [])]
        if not len(frame) or any(n not in frame.columns for n in names):
            return None
        return [{n: _json_value(frame[n].iloc[0]) for n in names}]

    def blob(self, digest: str, what: str) -> bytes:
        """Verified bytes of a stored file by digest (a model file or its ONNX conversion)."""
        return self._ws.models._verified(digest, what)

    # -- runtime ----------------------------------------------------------------------------------

    def _apply(self, name: str, revision: int, timeout: float, *, start: bool = False) -> None:
        """Make the running endpoint serve ``revision``: signal its supervisor, or (``start``) start one.

        A change to an endpoint that is not running is only recorded; it applies when it starts.

        Raises:
            EndpointError: the revision could not be applied (the tables are put back as they were).
            Conflict: ``start`` and the endpoint has no deployments.
        """
        with self._ws.store.read() as session:
            ep = self._row(session, name)
            pid, settings, has_deployments = ep.pid, dict(ep.settings), bool(self._deployment_rows(session, ep.id))
        running = pid is not None and alive(pid)
        if not running and not start:
            return
        if not has_deployments:
            raise Conflict(f"Endpoint {name!r} has no deployments; deploy a model to it first.", name=name)
        if running:
            assert pid is not None
            os.kill(pid, signal.SIGHUP)
            error = self._wait_revision(name, pid, revision, timeout)
            if error is not None:
                self._undo(name)
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGHUP)
                raise EndpointError(f"Endpoint {name!r} kept serving what it served before: {error}", name=name)
            return
        self._start_process(name, settings, revision, timeout)

    def _wait_revision(self, name: str, pid: int, revision: int, timeout: float) -> str | None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            status = self.runtime(name)
            if status is not None and status.get("pid") == pid:
                if status.get("failed_revision") == revision:
                    return str(status.get("error"))
                if (status.get("revision") or 0) >= revision and status.get("state") in ("running", "idle"):
                    return None
            if not alive(pid):
                return f"its process exited; see 'conveyor endpoints logs {name} --process'."
            time.sleep(0.02)
        return f"it did not apply the change within {timeout:.0f} s."

    def _check_workers(self, name: str, workers: int) -> None:
        """Raises:
        BadInput: ``workers`` is over the workspace's ``max_workers``.
        """
        limit = self._ws.settings.max_workers
        if workers > limit:
            raise BadInput(
                f"Endpoint {name!r} asks for {workers} workers; this workspace allows at most {limit} per endpoint "
                f"(max_workers). Ask for fewer, or raise the limit: [serving] max_workers in "
                f"{self._ws.settings.config_path} or CONVEYOR_MAX_WORKERS.",
                workers=workers,
                max_workers=limit,
            )

    def workers_of(self, settings: dict[str, Any]) -> int:
        """How many workers an endpoint with these settings runs (0 means one per core, within ``max_workers``)."""
        return int(settings.get("workers", 0)) or min(os.cpu_count() or 1, self._ws.settings.max_workers)

    def _check_capacity(self, name: str, settings: dict[str, Any]) -> None:
        """Refuse to start an endpoint whose processes would take the workspace past ``max_processes``.

        Each running endpoint counts as its supervisor plus the workers it runs when awake (an idle one may wake
        at any moment), and so does any orphaned serving process of the workspace.

        Raises:
            BadInput: too many workers for one endpoint, or too many processes in all.
        """
        workers = self.workers_of(settings)
        self._check_workers(name, workers)
        limit = self._ws.settings.max_processes
        used = 0
        with self._ws.store.read() as session:
            running = session.execute(
                sa.select(EndpointRow.name, EndpointRow.pid, EndpointRow.settings).where(EndpointRow.pid.is_not(None))
            ).all()
        for other, pid, other_settings in running:
            if other != name and pid is not None and alive(pid):
                used += 1 + self.workers_of(dict(other_settings))
        used += sum(1 + len(o.workers) for o in self.orphans())
        wanted = 1 + workers
        if used + wanted > limit:
            raise BadInput(
                f"Starting endpoint {name!r} needs {wanted} processes (a supervisor and {workers} workers), but the "
                f"workspace's endpoints already use {used} of at most {limit} (max_processes). Stop an endpoint "
                f"('conveyor endpoints stop NAME'), give this one fewer workers, or raise the limit: "
                f"[serving] max_processes in {self._ws.settings.config_path} or CONVEYOR_MAX_PROCESSES.",
                processes=used + wanted,
                max_processes=limit,
            )

    def _start_process(self, name: str, settings: dict[str, Any], revision: int, timeout: float) -> None:
        from conveyor.workspace import workspace_env

        log_path = self._log_dir() / f"{name}.log"
        with contextlib.suppress(FileNotFoundError):
            self._status_path(name).unlink()
        host = str(settings.get("host", "127.0.0.1"))
        port = int(settings.get("port", 0))
        command = [sys.executable, "-m", "conveyor.serve", "--endpoint", name, "--host", host, "--port", str(port)]
        env = {**os.environ, **workspace_env(self._ws.settings)}
        # One start at a time in the workspace between counting processes and recording the new one, so two
        # endpoints starting at once cannot both take the last free places.
        with self._locked("*capacity*"):
            self._check_capacity(name, settings)
            with log_path.open("ab") as log:
                process = subprocess.Popen(
                    command, stdout=subprocess.PIPE, stderr=log, env=env, start_new_session=True, close_fds=True
                )
            # Recorded at once, so the process is never one the workspace does not know of (an orphan to gc).
            with self._ws.store.write() as session:
                ep = self._row(session, name, lock=True)
                ep.pid, ep.url, ep.status, ep.updated_at = process.pid, None, "starting", utcnow()
        announced: dict[str, Any] = {}

        def read_announcement() -> None:
            assert process.stdout is not None
            line = process.stdout.readline()
            with contextlib.suppress(orjson.JSONDecodeError):
                announced.update(orjson.loads(line))

        reader = threading.Thread(target=read_announcement, daemon=True)
        reader.start()
        reader.join(timeout)
        if "port" not in announced:
            self._fail_start(name, process, log_path, f"did not start listening within {timeout:.0f} s")
        url = f"http://{_url_host(host)}:{announced['port']}"
        error = self._wait_revision(name, process.pid, revision, timeout)
        if error is not None or process.poll() is not None:
            self._fail_start(name, process, log_path, error or f"exited with status {process.returncode}")
        with self._ws.store.write() as session:
            ep = self._row(session, name, lock=True)
            ep.pid, ep.url, ep.status, ep.updated_at = process.pid, url, "running", utcnow()
            ep.settings = {**ep.settings, "port": int(announced["port"])}

    def _fail_start(self, name: str, process: subprocess.Popen[bytes], log_path: Path, what: str) -> None:
        if process.poll() is None:
            terminate(process.pid, 5.0)
        tail = [line.decode(errors="replace") for line in _tail_lines(log_path, 15)] if log_path.exists() else []
        self._undo(name)
        with self._ws.store.write() as session:
            ep = self._row(session, name, lock=True)
            ep.pid, ep.url, ep.status = None, None, "failed"
        raise EndpointError(
            f"Endpoint {name!r} could not start: its process {what}. Last lines of its log ({log_path}):\n"
            + "\n".join(tail),
            log=str(log_path),
        )

    def _undo(self, name: str) -> None:
        """Put back the state before the last change (the change could not be served)."""
        with self._ws.store.write() as session:
            ep = self._row(session, name, lock=True)
            if ep.settings.get("history"):
                # The change that failed made any deployment the previous state lacks: it goes.
                self._restore_previous(session, ep, delete_newer=True)

    def _restore_previous(self, session: Any, ep: EndpointRow, *, delete_newer: bool) -> int:
        """Pop the endpoint's last remembered state and put its deployments back; the new revision."""
        history = list(ep.settings["history"])
        previous = history.pop()
        for row in self._deployment_rows(session, ep.id):
            before = previous["deployments"].get(row.name)
            if before is None and delete_newer:
                session.delete(row)
                continue
            if before is None:
                row.traffic, row.mirror = 0, 0
            else:
                row.model_version_id = before["model_version_id"]
                row.traffic, row.mirror = before["traffic"], before["mirror"]
                row.settings = before.get("settings", row.settings)
            row.updated_at = utcnow()
        ep.settings = {**ep.settings, "history": history}
        return _bump(ep)

    def _row(self, session: Any, name: str, *, lock: bool = False) -> EndpointRow:
        try:
            validate_name(name, "endpoint")
        except ConveyorError:
            raise NotFound(
                f"No endpoint named {_shown_name(name)}: endpoint names are 1-128 letters, digits, '_', '.' or "
                "'-'. List them with 'conveyor endpoints list'.",
                name=name,
            ) from None
        statement = sa.select(EndpointRow).filter_by(name=name)
        if lock:
            statement = statement.with_for_update()
        ep = session.scalars(statement).first()
        if ep is None:
            names = session.scalars(sa.select(EndpointRow.name)).all()
            raise NotFound(
                f"No endpoint named {name!r}.{did_you_mean(name, names)} List them with 'conveyor endpoints list'.",
                name=name,
            )
        row: EndpointRow = ep
        return row

    @staticmethod
    def _deployment_rows(session: Any, endpoint_id: str) -> builtins.list[DeploymentRow]:
        return list(session.scalars(sa.select(DeploymentRow).filter_by(endpoint_id=endpoint_id)).all())

    @staticmethod
    def _find(endpoint: str, rows: builtins.list[DeploymentRow], name: str) -> DeploymentRow:
        row = next((r for r in rows if r.name == name), None)
        if row is None:
            names = [r.name for r in rows]
            raise NotFound(
                f"Endpoint {endpoint!r} has no deployment {_shown_name(name)}.{did_you_mean(name, names)} "
                f"Deployments: {', '.join(names) or '(none)'}."
            )
        return row

    def _locked(self, name: str) -> contextlib.AbstractContextManager[None]:
        """The endpoint's lock (a file lock on SQLite, an advisory lock on PostgreSQL; re-entrant per thread)."""
        return named_lock(
            self._ws.store.engine,
            self._ws.settings.home / "run",
            f"endpoint:{name}",
            timeout=_LOCK_TIMEOUT_S,
            busy=f"Endpoint {name!r} is busy with another change (a deploy, start, stop or delete) that has not "
            f"finished in {_LOCK_TIMEOUT_S:.0f} s; see 'conveyor endpoints logs {name} --process', then try again.",
        )

    def _log_dir(self) -> Path:
        folder = self._ws.settings.home / "logs" / "endpoints"
        folder.mkdir(parents=True, exist_ok=True)
        return folder

    def _status_path(self, name: str) -> Path:
        return status_path(self._ws.settings.home, name)


# -- helpers ----------------------------------------------------------------------------------------


def _json_value(value: Any) -> Any:
    """A value of a pandas frame as a JSON request carries it (dates as ISO-8601 text, missing as null)."""
    import numpy as np

    if hasattr(value, "isoformat"):  # a datetime, pandas Timestamp, date or time
        return value.isoformat()
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, float) and math.isnan(value):
        return None
    return value if isinstance(value, str | int | float | bool) or value is None else str(value)


def _serving_processes(home: Path) -> dict[int, tuple[str, int]]:
    """``{pid: (endpoint, session id)}`` of the live ``conveyor.serve --endpoint`` processes of workspace ``home``."""
    proc = Path("/proc")
    if not proc.is_dir():
        return {}
    wanted = f"CONVEYOR_HOME={home}".encode()
    found: dict[int, tuple[str, int]] = {}
    for entry in proc.iterdir():
        if not entry.name.isdigit():
            continue
        pid = int(entry.name)
        try:
            argv = (entry / "cmdline").read_bytes().split(b"\0")
            if b"conveyor.serve" not in argv or b"--endpoint" not in argv:
                continue
            if wanted not in (entry / "environ").read_bytes().split(b"\0"):
                continue
            if _zombie(pid):
                continue  # exited, waiting for its parent to reap it
            found[pid] = (argv[argv.index(b"--endpoint") + 1].decode(errors="replace"), os.getsid(pid))
        except (OSError, IndexError):
            continue  # gone meanwhile, or not ours to read
    return found


def _end(pid: int, grace: float, *, group: bool) -> str:
    """SIGTERM ``pid``, then SIGKILL it (its process group when ``group``) if it still runs after ``grace``."""
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + grace
    while time.monotonic() < deadline:
        if not _running(pid):
            return "SIGTERM"
        time.sleep(0.05)
    with contextlib.suppress(ProcessLookupError, PermissionError):
        if group:
            os.killpg(pid, signal.SIGKILL)
        else:
            os.kill(pid, signal.SIGKILL)
    return "SIGKILL"


def _running(pid: int) -> bool:
    """Like ``alive``, and a zombie that is not our child (its parent has yet to reap it) counts as ended."""
    if not alive(pid):
        return False
    try:
        return not _zombie(pid)
    except OSError:
        return False


def _zombie(pid: int) -> bool:
    """Whether process ``pid`` has exited and waits for its parent to reap it (``/proc``; OSError if gone)."""
    return Path(f"/proc/{pid}/stat").read_bytes().rpartition(b")")[2].split()[0] == b"Z"


# -- keys: the one place endpoint keys are read and written (moving them to encrypted secrets changes only this) --


def _read_keys(ep: EndpointRow, secrets: Secrets) -> dict[str, str]:
    """The endpoint's keys that are set, in clear: ``{"primary": ..., "secondary": ...}`` (stored sealed with
    the workspace's secret key; a key stored in clear by an older version is returned as it is)."""
    found = {"primary": ep.primary_key, "secondary": ep.secondary_key}
    return {which: secrets.unseal(key) for which, key in found.items() if key}


def _write_key(ep: EndpointRow, which: str, key: str, secrets: Secrets) -> None:
    """Store key ``which`` (``primary`` or ``secondary``) of the endpoint, sealed."""
    sealed = secrets.seal(key)
    if which == "primary":
        ep.primary_key = sealed
    else:
        ep.secondary_key = sealed


def _new_key() -> str:
    return secrets.token_urlsafe(32)


def _bump(ep: EndpointRow) -> int:
    ep.revision += 1
    ep.updated_at = utcnow()
    return ep.revision


def _remember(ep: EndpointRow, rows: builtins.list[DeploymentRow]) -> None:
    """Push the current deployments/traffic onto the endpoint's history (for rollback and undo)."""
    state = {
        "deployments": {
            r.name: {
                "model_version_id": r.model_version_id,
                "traffic": r.traffic,
                "mirror": r.mirror,
                "settings": r.settings,
            }
            for r in rows
        },
        "at": utcnow().isoformat(),
    }
    history = [*ep.settings.get("history", []), state][-_HISTORY:]
    ep.settings = {**ep.settings, "history": history}


def _give_share(rows: builtins.list[DeploymentRow], row: DeploymentRow, share: int) -> None:
    """Give ``row`` ``share`` percent; the others split the rest in their current proportions."""
    others = [r for r in rows if r is not row]
    rest = 100 - share
    row.traffic = share if others else 100
    current = sum(r.traffic for r in others)
    if not others:
        return
    if current == 0:
        others[0].traffic = rest
        for r in others[1:]:
            r.traffic = 0
        return
    assigned = 0
    for r in others:
        r.traffic = rest * r.traffic // current
        assigned += r.traffic
    max(others, key=lambda r: r.traffic).traffic += rest - assigned


def _shown_name(name: Any) -> str:
    """A name as an error message quotes it: in quotes, control characters escaped, at most ~130 characters."""
    text = "".join(c if c.isprintable() else repr(c)[1:-1] for c in str(name))
    return f"'{text if len(text) <= 130 else text[:127] + '...'}'"


def _check_shares(endpoint: str, shares: dict[str, int], rows: builtins.list[DeploymentRow], what: str) -> None:
    names = [r.name for r in rows]
    for name, share in shares.items():
        if name not in names:
            raise InvalidSpec(
                f"Endpoint {endpoint!r} has no deployment {_shown_name(name)}.{did_you_mean(name, names)} "
                f"Deployments: {', '.join(names) or '(none)'}.",
                deployment=name,
            )
        if isinstance(share, bool) or not isinstance(share, int) or not 0 <= share <= 100:
            shown = _shown_name(share) if isinstance(share, str) else repr(share)
            raise InvalidSpec(f"The {what} share of {name!r} must be a whole percentage 0–100; got {shown}.")


def _suggest(weights: dict[str, int]) -> str:
    names = list(weights)
    if len(names) == 1:
        return f"{names[0]}=100"
    return f"{names[0]}={100 - sum(weights[n] for n in names[1:])} " + " ".join(f"{n}={weights[n]}" for n in names[1:])


def _batching_dict(batching: Batching) -> dict[str, Any]:
    return {
        "max_batch_size": batching.max_batch_size,
        "max_latency_ms": batching.max_latency_ms,
        "max_queue": batching.max_queue,
    }


def _check_settings(
    *,
    auth: str,
    host: str,
    port: int,
    workers: int,
    idle_timeout: float,
    max_body_mb: float,
    rate_limit: float,
    collect: float,
) -> dict[str, Any]:
    if auth not in AUTH_MODES:
        raise InvalidSpec(f"auth must be 'key' or 'none'; got {auth!r}.{did_you_mean(auth, AUTH_MODES)}")
    if not _HOST.fullmatch(host) and not _is_ip(host):
        raise InvalidSpec(
            f"host must be an IP address (e.g. 127.0.0.1, 0.0.0.0, ::1) or a host name; got {_shown_name(host)}."
        )
    for setting, value in (("idle_timeout", idle_timeout), ("max_body_mb", max_body_mb), ("rate_limit", rate_limit)):
        if not math.isfinite(value):
            raise InvalidSpec(f"{setting} must be a finite number; got {value}.")
    if not math.isfinite(collect):
        raise InvalidSpec(f"collect is the fraction of requests kept, 0–1; got {collect}.")
    if auth == "none" and not is_loopback(host):
        raise InvalidSpec(
            f"An endpoint without auth may only listen on loopback (127.0.0.1), not {host}; use --auth key."
        )
    if not 0 <= port <= 65535:
        raise InvalidSpec(f"port must be between 0 and 65535; got {port}.")
    if workers < 0:
        raise InvalidSpec(f"workers must be 0 (one per core) or more; got {workers}.")
    if not 0 <= idle_timeout <= MAX_IDLE_TIMEOUT_S:
        raise InvalidSpec(
            f"idle_timeout must be 0 (never) or up to {MAX_IDLE_TIMEOUT_S} seconds (a year); got {idle_timeout}."
        )
    if not 0 < max_body_mb <= 1024:
        raise InvalidSpec(f"max_body_mb must be more than 0 and at most 1024; got {max_body_mb}.")
    if not 0 <= rate_limit <= MAX_RATE_LIMIT:
        raise InvalidSpec(
            f"rate_limit must be 0 (none) or up to {MAX_RATE_LIMIT:.0f} requests per second; got {rate_limit}."
        )
    if not 0 <= collect <= 1:
        raise InvalidSpec(f"collect is the fraction of requests kept, 0–1; got {collect}.")
    return {
        "host": host,
        "port": port,
        "workers": workers,
        "idle_timeout": idle_timeout,
        "max_body_mb": max_body_mb,
        "rate_limit": rate_limit,
        "collect": collect,
    }


_LABEL = r"[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?"
_HOST = re.compile(rf"(?=.{{1,253}}$){_LABEL}(?:\.{_LABEL})*")


def _is_ip(host: str) -> bool:
    import ipaddress

    try:
        ipaddress.ip_address(host)
    except ValueError:
        return False
    return True


def _routes(url: str | None, name: str) -> dict[str, str]:
    if url is None:
        return {}
    return {
        "predict": f"{url}/predict",
        "invocations": f"{url}/invocations",
        "v2_infer": f"{url}/v2/models/{name}/infer",
        "v2_ready": f"{url}/v2/health/ready",
        "metrics": f"{url}/metrics",
    }


def _url_host(host: str) -> str:
    if host in ("0.0.0.0", "::"):  # noqa: S104 - a wildcard bind is reached through loopback here
        return "127.0.0.1"
    return f"[{host}]" if ":" in host else host


def _tail_lines(path: Path, count: int) -> builtins.list[bytes]:
    with path.open("rb") as f:
        f.seek(0, os.SEEK_END)
        size = f.tell()
        chunk = min(size, max(65536, count * 400))
        f.seek(size - chunk)
        lines = f.read().splitlines()
    return lines[-count:] if count > 0 else []
