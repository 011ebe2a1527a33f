"""The serving process of an endpoint: ``python -m conveyor.serve --endpoint NAME`` (or ``--bundle DIR``).

The supervisor reads what to serve (an :class:`EndpointSpec` and the verified model bytes), binds the
endpoint's socket once, imports the heavy libraries, and forks the worker processes, which inherit the socket,
the bytes and the imports, so a worker is serving a few hundred milliseconds after it is forked. Each worker
loads the models, makes a warm-up prediction, tells the supervisor it is ready, then runs uvicorn on the shared
socket.

The supervisor then:

- restarts a worker that dies (and gives up, saying so, if workers keep dying at start);
- on SIGHUP re-reads the spec: traffic, mirror shares and keys change in shared memory, live; anything else
  (a new deployment, another model version, new settings) starts a new generation of workers and stops the old
  one only when every new worker is ready, so no request is dropped and a model that fails to load changes
  nothing;
- scales to zero: after ``idle_timeout_s`` without a request it stops the workers but keeps the socket; the
  next connection wakes it and a worker accepts it;
- on SIGTERM stops the workers, which finish their in-flight requests first.

It reports its state in a small JSON status file the control plane reads (``runtime``).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import ctypes
import json
import multiprocessing
import os
import select
import shutil
import signal
import socket
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import orjson
import uvicorn

from conveyor.errors import ConveyorError, InvalidSpec, ValidationFailed
from conveyor.serve._spec import BUNDLE_SPEC, BundleBlobs, EndpointSpec, bundle_keys, is_loopback, status_path

__all__ = ["main"]

_READY_TIMEOUT_S = 120.0
_DRAIN_S = 2.0
_MAX_QUICK_DEATHS = 5
#: How often a supervisor checks that its endpoint still exists and is still its own.
_CLAIM_CHECK_S = 2.0


# -- where the spec comes from -------------------------------------------------------------------------


class WorkspaceSource:
    """The spec and model bytes of an endpoint of the workspace named by the environment."""

    def __init__(self, endpoint: str) -> None:
        self.endpoint = endpoint
        self.status: Path | None = None
        self.logs: Path | None = None

    def load(self, blobs: dict[str, bytes]) -> EndpointSpec:
        from conveyor.workspace import Workspace

        with Workspace.open() as ws:
            self.status = status_path(ws.settings.home, self.endpoint)
            self.logs = ws.settings.home / "logs" / "endpoints"
            spec = ws.endpoints.spec(self.endpoint)
            _fetch(spec, blobs, ws.endpoints.blob)
            if not spec.workers:  # one per core, within the workspace's max_workers
                spec = replace(spec, workers=ws.endpoints.workers_of({}))
        return spec

    def still_wanted(self) -> bool:
        """Whether the endpoint still exists and records this process (or none that runs) as its server.

        A supervisor whose endpoint was deleted, or that another supervisor replaced, exits by itself. When the
        workspace cannot be read (a database restart), it keeps serving.
        """
        from conveyor.workspace import Workspace

        try:
            with Workspace.open() as ws:
                return ws.endpoints.claims(self.endpoint, os.getpid())
        except ConveyorError:
            return True

    def collect(self, spec: EndpointSpec) -> Callable[[dict[str, list[Any]], list[str]], None] | None:
        if not spec.collect:
            return None
        asset = str(spec.collect.get("asset") or f"{spec.name}_requests")
        opened: list[Any] = []

        def commit(columns: dict[str, list[Any]], deployments: list[str]) -> None:
            import pyarrow as pa

            from conveyor.workspace import Workspace

            if not opened:
                opened.append(Workspace.open())
            ws = opened[0]
            kwargs: dict[str, Any] = {
                "name": asset,
                "source": {"kind": "endpoint", "endpoint": spec.name},
                "description": f"Requests scored by endpoint {spec.name} (sampled).",
                "edges": [("deployment", deployment_id, "collected") for deployment_id in deployments],
            }
            table = pa.table(columns)
            try:
                ws.data.commit_table(table, mode="append", **kwargs)
            except ValidationFailed as exc:
                # The rows changed shape (a new model with other inputs, or collection from an older Conveyor
                # without ``row``/``score``): start a new version rather than drop them; older ones keep theirs.
                sys.stderr.write(
                    orjson.dumps({"event": "collected_schema_changed", "asset": asset, "why": exc.message}).decode()
                    + "\n"
                )
                ws.data.commit_table(table, mode="new", **kwargs)

        return commit


class BundleSource:
    """The spec and model files of an exported bundle; keys from ``CONVEYOR_ENDPOINT_KEYS``."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self.status: Path | None = None
        self.logs: Path | None = None

    def load(self, blobs: dict[str, bytes]) -> EndpointSpec:
        path = self.folder / BUNDLE_SPEC
        if not path.is_file():
            raise InvalidSpec(f"{self.folder} is not an endpoint bundle: it has no {BUNDLE_SPEC}.")
        spec = EndpointSpec.from_json(path.read_bytes())
        if spec.auth != "none":
            keys = bundle_keys()
            if not keys:
                raise InvalidSpec(
                    f"Endpoint {spec.name!r} needs keys: set CONVEYOR_ENDPOINT_KEYS=PRIMARY,SECONDARY (e.g. from a "
                    "Kubernetes Secret)."
                )
            spec = replace(spec, key_digests=keys)
        workers = os.environ.get("CONVEYOR_WORKERS")
        if workers and workers.isdigit():
            spec = replace(spec, workers=int(workers))
        _fetch(spec, blobs, BundleBlobs(self.folder))
        return spec

    def collect(self, spec: EndpointSpec) -> Callable[[dict[str, list[Any]], list[str]], None] | None:
        return None

    def still_wanted(self) -> bool:
        return True  # a bundle has no workspace that could delete it


def _fetch(spec: EndpointSpec, blobs: dict[str, bytes], blob: Callable[[str, str], bytes]) -> None:
    wanted = {d.digest: f"model file of {d.model}" for d in spec.deployments}
    wanted |= {d.onnx.digest: f"ONNX file of {d.model}" for d in spec.deployments if d.onnx is not None}
    for digest in set(blobs) - set(wanted):
        del blobs[digest]
    for digest, what in wanted.items():
        if digest not in blobs:
            blobs[digest] = blob(digest, what)


# -- workers ------------------------------------------------------------------------------------------


@dataclass
class _Generation:
    """Workers forked from one spec, sharing its traffic/mirror/keys memory."""

    spec: EndpointSpec
    weights: Any
    mirror: Any
    keys: Any
    workers: dict[int, _Worker] = field(default_factory=dict)

    @classmethod
    def of(cls, spec: EndpointSpec) -> _Generation:
        n = len(spec.deployments)
        generation = cls(
            spec,
            multiprocessing.RawArray(ctypes.c_int, n),
            multiprocessing.RawArray(ctypes.c_int, n),
            multiprocessing.RawArray(ctypes.c_char, 64 * 2),
        )
        generation.update(spec)
        return generation

    def update(self, spec: EndpointSpec) -> None:
        """Apply traffic, mirror shares and keys in place (workers read them on every request)."""
        for i, d in enumerate(spec.deployments):
            self.weights[i] = d.traffic
            self.mirror[i] = d.mirror
        self.keys.raw = "".join(spec.key_digests[:2]).ljust(128).encode()
        self.spec = spec


@dataclass
class _Worker:
    pid: int
    ready_fd: int
    last_request: Any
    started: float
    stopping: bool = False


def _structure(spec: EndpointSpec) -> Any:
    """What a running worker cannot change in place: everything except traffic, mirror shares and keys."""
    return (
        spec.auth,
        spec.workers,
        spec.max_body_bytes,
        spec.rate_limit,
        orjson.dumps(spec.collect),
        tuple(
            (d.name, d.model_version_id, d.digest, d.batching, orjson.dumps(d.signature), d.onnx is not None)
            for d in spec.deployments
        ),
    )


class Supervisor:
    def __init__(
        self,
        source: WorkspaceSource | BundleSource,
        sock: socket.socket,
        host: str,
        workers: int,
        metrics_dir: Path,
    ) -> None:
        self.source = source
        self.sock = sock
        self.host = host
        self.port = sock.getsockname()[1]
        self.default_workers = workers
        self.metrics_dir = metrics_dir
        self.blobs: dict[str, bytes] = {}
        self.current: _Generation | None = None
        self.state = "starting"
        self.error: str | None = None
        self.failed_revision: int | None = None
        self._deaths: list[float] = []
        self._reload = False
        self._stop = False
        self._next_claim_check = time.monotonic() + _CLAIM_CHECK_S
        self._wakeup_r, self._wakeup_w = os.pipe()
        os.set_blocking(self._wakeup_r, False)
        os.set_blocking(self._wakeup_w, False)

    # signals only set flags; the loop acts on them
    def _on_hup(self, *_: Any) -> None:
        self._reload = True

    def _on_term(self, *_: Any) -> None:
        self._stop = True

    def run(self, spec: EndpointSpec) -> None:
        # Signals also write a byte to a pipe the loop selects on, so a reload starts at once, not after a nap.
        signal.set_wakeup_fd(self._wakeup_w, warn_on_full_buffer=False)
        signal.signal(signal.SIGHUP, self._on_hup)
        signal.signal(signal.SIGTERM, self._on_term)
        signal.signal(signal.SIGINT, self._on_term)
        signal.signal(signal.SIGCHLD, lambda *_: None)
        started = time.monotonic()
        generation = _Generation.of(spec)
        try:
            self._start(generation)
        except ConveyorError as exc:
            self.state, self.error = "failed", exc.message
            self._report()
            raise
        self.current = generation
        self.state = "running"
        self._log(
            {"event": "ready", "seconds": round(time.monotonic() - started, 3), "workers": len(generation.workers)}
        )
        self._report()
        while not self._stop:
            self._tick()
        self._shutdown()

    def _workers_wanted(self, spec: EndpointSpec) -> int:
        return spec.workers or self.default_workers

    def _tick(self) -> None:
        if time.monotonic() >= self._next_claim_check:
            self._next_claim_check = time.monotonic() + _CLAIM_CHECK_S
            if not self.source.still_wanted():
                self._log({"event": "endpoint_gone", "endpoint": getattr(self.source, "endpoint", "")})
                self.source.status = None  # not ours to report any more
                self._stop = True
                return
        if self._reload:
            self._reload = False
            self._apply_reload()
        self._reap()
        generation = self.current
        if generation is None:
            return
        if self.state == "idle":
            readable = self._wait([self.sock])
            if self.sock in readable and not self._stop and not self._reload:
                self._wake(generation)
            return
        self._wait([])
        idle = generation.spec.idle_timeout_s
        if idle > 0 and generation.workers:
            last = max(max(w.last_request.value, w.started) for w in generation.workers.values() if not w.stopping)
            if time.monotonic() - last > idle:
                self._log({"event": "scale_to_zero", "idle_s": idle})
                self._stop_workers(list(generation.workers.values()))
                generation.workers.clear()
                self.state = "idle"
                self._report()

    def _wait(self, also: list[Any]) -> list[Any]:
        """Sleep until a signal arrives, one of ``also`` is readable, or 0.2 s pass."""
        try:
            readable, _, _ = select.select([self._wakeup_r, *also], [], [], 0.2)
        except InterruptedError:
            return []
        if self._wakeup_r in readable:
            with contextlib.suppress(BlockingIOError):
                os.read(self._wakeup_r, 4096)
        return [r for r in readable if r is not self._wakeup_r]

    def _wake(self, generation: _Generation) -> None:
        started = time.monotonic()
        try:
            self._start(generation)
        except ConveyorError as exc:
            self._log({"event": "wake_failed", "error": exc.message})
            return
        self.state = "running"
        self._log({"event": "woke", "seconds": round(time.monotonic() - started, 3)})
        self._report()

    def _apply_reload(self) -> None:
        assert self.current is not None
        try:
            spec = self.source.load(self.blobs)
        except ConveyorError as exc:
            self.failed_revision, self.error = None, exc.message
            self._log({"event": "reload_failed", "error": exc.message})
            self._report()
            return
        if spec.revision == self.current.spec.revision and not self.error:
            self._report()
            return
        if _structure(spec) == _structure(self.current.spec):
            self.current.update(spec)
            self.error = self.failed_revision = None
            self._log({"event": "updated", "revision": spec.revision})
            self._report()
            return
        generation = _Generation.of(spec)
        if self.state == "idle":
            self.current = generation
            self.error = self.failed_revision = None
            self._report()
            return
        try:
            self._start(generation)
        except ConveyorError as exc:
            self.failed_revision, self.error = spec.revision, exc.message
            self._log({"event": "deploy_failed", "revision": spec.revision, "error": exc.message})
            self._report()
            return
        old = list(self.current.workers.values())
        self._stop_accepting(old)
        self.current = generation
        self.error = self.failed_revision = None
        self._log({"event": "rolled", "revision": spec.revision})
        self._report()
        self._stop_workers(old)

    def _start(self, generation: _Generation) -> None:
        """Fork the generation's workers and wait until each is ready.

        Raises:
            InvalidSpec: a worker could not load a model or warm up (its reason is quoted); none is left running.
        """
        wanted = self._workers_wanted(generation.spec)
        started = [self._fork(generation) for _ in range(wanted)]
        deadline = time.monotonic() + _READY_TIMEOUT_S
        try:
            for worker in started:
                self._wait_ready(worker, deadline)
        except InvalidSpec:
            self._stop_workers(started, timeout=5.0)
            for w in started:
                generation.workers.pop(w.pid, None)
            raise

    def _fork(self, generation: _Generation) -> _Worker:
        read_fd, write_fd = os.pipe()
        last_request = multiprocessing.RawValue(ctypes.c_double, 0.0)
        pid = os.fork()
        if pid == 0:  # the worker
            os.close(read_fd)
            code = 0
            try:
                _serve_worker(self, generation, last_request, write_fd)
            except BaseException:  # noqa: BLE001 - anything here ends the worker; the supervisor reports it
                import traceback

                traceback.print_exc()
                code = 3
            finally:
                os._exit(code)
        os.close(write_fd)
        worker = _Worker(pid, read_fd, last_request, time.monotonic())
        generation.workers[pid] = worker
        return worker

    def _wait_ready(self, worker: _Worker, deadline: float) -> None:
        message = b""
        while time.monotonic() < deadline:
            readable, _, _ = select.select([worker.ready_fd], [], [], 0.2)
            if readable:
                chunk = os.read(worker.ready_fd, 65536)
                if not chunk:
                    break
                message += chunk
                if message.endswith(b"\n"):
                    break
        text = message.decode(errors="replace").strip()
        if text == "ready":
            # The pipe stays open: the worker says "closed" on it when it stops accepting connections.
            return
        os.close(worker.ready_fd)
        worker.ready_fd = -1
        raise InvalidSpec(text or "A serving worker exited before it was ready; see the endpoint's log.")

    def _reap(self) -> None:
        while True:
            try:
                pid, status = os.waitpid(-1, os.WNOHANG)
            except ChildProcessError:
                return
            if pid == 0:
                return
            self._forget_metrics(pid)
            generation = self.current
            worker = None if generation is None else generation.workers.get(pid)
            if generation is None or worker is None or worker.stopping:
                continue
            if worker.ready_fd >= 0:
                os.close(worker.ready_fd)
                worker.ready_fd = -1
            del generation.workers[pid]
            now = time.monotonic()
            self._deaths = [t for t in self._deaths if now - t < 60] + [now]
            self._log({"event": "worker_died", "pid": pid, "status": status})
            if len(self._deaths) > _MAX_QUICK_DEATHS:
                self.state, self.error = "failed", f"workers died {len(self._deaths)} times in a minute; not restarting"
                self._report()
                continue
            if self.state == "running":
                try:
                    replacement = self._fork(generation)
                    self._wait_ready(replacement, time.monotonic() + _READY_TIMEOUT_S)
                    self._log({"event": "worker_restarted", "pid": replacement.pid})
                except InvalidSpec as exc:
                    self._log({"event": "restart_failed", "error": exc.message})
                self._report()

    def _stop_accepting(self, workers: list[_Worker], timeout: float = 5.0) -> None:
        """SIGTERM the workers and return once none of them accepts new connections (they drain after)."""
        for w in workers:
            w.stopping = True
            with contextlib.suppress(ProcessLookupError):
                os.kill(w.pid, signal.SIGTERM)
        deadline = time.monotonic() + timeout
        for w in workers:
            while w.ready_fd >= 0 and time.monotonic() < deadline:
                readable, _, _ = select.select([w.ready_fd], [], [], 0.1)
                if readable:
                    # "closed" or end of file (the worker exited): either way it no longer accepts.
                    os.close(w.ready_fd)
                    w.ready_fd = -1

    def _stop_workers(self, workers: list[_Worker], timeout: float = 15.0) -> None:
        self._stop_accepting(workers)
        deadline = time.monotonic() + timeout
        pending = {w.pid for w in workers}
        while pending and time.monotonic() < deadline:
            for pid in list(pending):
                try:
                    done, _ = os.waitpid(pid, os.WNOHANG)
                except ChildProcessError:
                    done = pid
                if done == pid:
                    pending.discard(pid)
                    self._forget_metrics(pid)
            if pending:
                time.sleep(0.02)
        for pid in pending:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
            with contextlib.suppress(ChildProcessError):
                os.waitpid(pid, 0)

    def _forget_metrics(self, pid: int) -> None:
        """Drop a dead worker's live gauges (queue depth, load time) from the summed metrics."""
        from prometheus_client import multiprocess

        with contextlib.suppress(OSError):
            multiprocess.mark_process_dead(pid, str(self.metrics_dir))  # type: ignore[no-untyped-call]

    def _shutdown(self) -> None:
        if self.current is not None:
            self._stop_workers(list(self.current.workers.values()))
        self.state = "stopped"
        self._report()

    def _report(self) -> None:
        if self.source.status is None:
            return
        generation = self.current
        status = {
            "pid": os.getpid(),
            "host": self.host,
            "port": self.port,
            "state": self.state,
            "revision": None if generation is None else generation.spec.revision,
            "workers": [] if generation is None else [w.pid for w in generation.workers.values() if not w.stopping],
            "error": self.error,
            "failed_revision": self.failed_revision,
            "updated_at": time.time(),
        }
        path = self.source.status
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f".{path.name}.{os.getpid()}")
        tmp.write_bytes(orjson.dumps(status))
        tmp.replace(path)

    def _log(self, event: dict[str, Any]) -> None:
        event = {"ts": time.time(), "pid": os.getpid(), **event}
        sys.stderr.write(orjson.dumps(event).decode() + "\n")
        sys.stderr.flush()


def _serve_worker(supervisor: Supervisor, generation: _Generation, last_request: Any, ready_fd: int) -> None:
    """The body of a forked worker: load, warm up, say ready, serve until SIGTERM."""
    signal.set_wakeup_fd(-1)
    for sig in (signal.SIGHUP, signal.SIGTERM, signal.SIGINT, signal.SIGCHLD):
        signal.signal(sig, signal.SIG_DFL)
    os.close(supervisor._wakeup_r)
    os.close(supervisor._wakeup_w)
    from conveyor.serve._app import EndpointApp, Shared
    from conveyor.serve._observe import AccessLog, Collector, Metrics
    from conveyor.serve._runtime import load_deployment

    spec = generation.spec
    blobs = supervisor.blobs
    try:
        deployments = [load_deployment(d, lambda digest, what: blobs[digest]) for d in spec.deployments]
        for deployment in deployments:
            _warm_up(deployment)
    except ConveyorError as exc:
        os.write(ready_fd, f"{exc.message}\n".encode())
        os._exit(3)
    except Exception as exc:  # noqa: BLE001 - any failure to load is reported to the supervisor as text
        os.write(ready_fd, f"Loading the models failed: {type(exc).__name__}: {exc}\n".encode())
        os._exit(3)

    def keys() -> list[str]:
        raw = generation.keys.raw.decode().strip()
        return [raw[i : i + 64] for i in range(0, len(raw), 64)]

    shared = Shared(generation.weights, generation.mirror, keys, last_request)
    access = None
    if supervisor.source.logs is not None:
        supervisor.source.logs.mkdir(parents=True, exist_ok=True)
        stream = (supervisor.source.logs / f"{spec.name}.access.log").open("ab")
        access = AccessLog(stream, spec.name)
    commit = supervisor.source.collect(spec)
    collector = None
    if commit is not None and spec.collect is not None:
        collector = Collector(spec.name, float(spec.collect.get("sample", 1.0)), commit)
    app = EndpointApp(spec, deployments, shared, metrics=Metrics(spec.name), access_log=access, collector=collector)
    os.write(ready_fd, b"ready\n")
    config = uvicorn.Config(
        app,
        loop=_loop_kind(),
        http=_http_kind(),
        log_level="warning",
        access_log=False,
        lifespan="off",
        timeout_graceful_shutdown=10,
        server_header=False,
        proxy_headers=False,
        date_header=False,
        backlog=4096,
    )
    # uvicorn re-raises the signal that stopped it once it is done; a handler of our own keeps the process
    # alive for the flushes below.
    signal.signal(signal.SIGTERM, lambda *_: None)
    try:
        _DrainingServer(config, app, ready_fd).run(sockets=[supervisor.sock])
    finally:
        if access is not None:
            access.flush()
        if collector is not None:
            collector.close()


class _DrainingServer(uvicorn.Server):
    """uvicorn's server, stopping gently: stop accepting, answer with ``Connection: close``, then exit.

    Plain uvicorn closes idle keep-alive connections at once on SIGTERM, and a client that sends its next
    request at that moment sees a reset. Draining first lets active clients finish a request and reconnect to
    the new workers sharing the socket; idle connections are closed after ``_DRAIN_S``.
    """

    def __init__(self, config: Any, app: Any, notify_fd: int) -> None:
        super().__init__(config)
        self._app = app
        self._notify_fd = notify_fd
        self._supervisor = os.getppid()
        self._drain_from: float | None = None
        self._loop: asyncio.AbstractEventLoop | None = None

    async def serve(self, sockets: list[socket.socket] | None = None) -> None:
        self._loop = asyncio.get_running_loop()
        await super().serve(sockets)

    def handle_exit(self, sig: int, frame: Any) -> None:
        if self._drain_from is None:
            self._drain_from = time.monotonic()
            self._app.draining = True
            if self._loop is not None:
                # From a signal handler: let the loop close the listeners on its next turn, not in mid-step.
                self._loop.call_soon_threadsafe(self._stop_listening)
        else:
            self.should_exit = True

    def _stop_listening(self) -> None:
        for server in self.servers:
            server.close()
        with contextlib.suppress(OSError):
            os.write(self._notify_fd, b"closed\n")
            os.close(self._notify_fd)

    async def on_tick(self, counter: int) -> bool:
        if self._drain_from is None and os.getppid() != self._supervisor:
            # The supervisor died (SIGKILL, the OOM killer): nothing would restart, reload or stop this worker,
            # and it would hold the endpoint's port against the next start. Drain and exit, as on SIGTERM.
            self.handle_exit(signal.SIGTERM, None)
        draining = self._drain_from is not None
        if draining and (not self.server_state.connections or time.monotonic() - (self._drain_from or 0) > _DRAIN_S):
            self.should_exit = True
        result: bool = await super().on_tick(counter)
        return result


def _warm_up(deployment: Any) -> None:
    """Score one row of the model's own input so the first real request pays no lazy-initialisation cost.

    The row is the version's stored input example when it has one: a model that cannot score it fails the
    deploy. Without one, a row is made from the signature (zeros, empty text); a model may rightly refuse such
    a row (a forecaster asked for a time it does not forecast), so only a failure other than a refusal counts.

    Raises:
        BadInput: the model refused its own example.
    """
    from conveyor.errors import BadInput
    from conveyor.serve._protocols import records_to_columns

    signature = deployment.spec.signature
    inputs = signature.get("inputs", [])
    if not inputs:
        return
    if deployment.spec.example:
        try:
            columns = records_to_columns(deployment.spec.example, signature)
        except InvalidSpec:
            columns = None  # an example that does not fit the signature: make a row instead
        if columns is not None:
            try:
                deployment.score(columns, deployment.has_proba)
            except BadInput as exc:
                raise BadInput(f"The model refused its own input example at warm-up: {exc.message}") from exc
            return
    example = {c["name"]: _example_value(c["type"]) for c in inputs}
    with contextlib.suppress(BadInput):
        deployment.score(records_to_columns([example], signature), deployment.has_proba)


def _example_value(kind: str) -> object:
    return {
        "integer": 0,
        "long": 0,
        "float": 0.0,
        "double": 0.0,
        "boolean": False,
        "datetime": "2000-01-01",
    }.get(kind, "")


def _loop_kind() -> str:
    try:
        import uvloop  # noqa: F401
    except ImportError:
        return "asyncio"
    return "uvloop"


def _http_kind() -> str:
    try:
        import httptools  # noqa: F401
    except ImportError:
        return "h11"
    return "httptools"


def _preimport(spec: EndpointSpec) -> None:
    """Import what every worker needs once, before forking, so workers start in milliseconds."""
    import numpy  # noqa: F401
    import pandas  # noqa: F401

    import conveyor.serve._app
    import conveyor.serve._observe
    import conveyor.serve._protocols  # noqa: F401

    with contextlib.suppress(ImportError):
        import uvloop  # noqa: F401
    if any(d.onnx is not None for d in spec.deployments):
        import onnxruntime  # noqa: F401
    # A deployment served from its ONNX file alone needs neither scikit-learn nor skops (~2 s of imports).
    native = [d for d in spec.deployments if d.onnx is None or not d.onnx.self_sufficient]
    if native:
        import sklearn  # noqa: F401
    if any(d.format == "skops" for d in native):
        import skops.io  # noqa: F401


_METRICS_PREFIX = "conveyormetrics"


def _metrics_folder() -> Path:
    """A new folder for prometheus-client's multiprocess files, named after this process
    (``conveyormetrics-<owner>-<random>`` in the temporary folder), after removing the folders of this user's
    supervisors that are gone: a SIGKILLed supervisor cannot remove its own, and nothing else would."""
    from conveyor._owner import left_by_a_gone_process, this_process

    with contextlib.suppress(OSError):
        for entry in os.scandir(tempfile.gettempdir()):
            if not left_by_a_gone_process(entry.name, (_METRICS_PREFIX,)):
                continue
            with contextlib.suppress(OSError):
                if entry.is_dir(follow_symlinks=False) and entry.stat(follow_symlinks=False).st_uid == os.getuid():
                    shutil.rmtree(entry.path, ignore_errors=True)
    return Path(tempfile.mkdtemp(prefix=f"{_METRICS_PREFIX}-{this_process().tag()}-"))


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m conveyor.serve", description="Serve a Conveyor endpoint.")
    source_group = parser.add_mutually_exclusive_group(required=True)
    source_group.add_argument("--endpoint", help="an endpoint of the workspace named by the environment")
    source_group.add_argument("--bundle", type=Path, help="a folder written by 'conveyor export docker|k8s'")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--workers", type=int, default=0, help="worker processes (default: one per core)")
    args = parser.parse_args(argv)

    source: WorkspaceSource | BundleSource = (
        WorkspaceSource(args.endpoint) if args.endpoint else BundleSource(args.bundle)
    )
    supervisor_log = {"ts": time.time(), "pid": os.getpid(), "event": "starting"}
    sys.stderr.write(json.dumps(supervisor_log) + "\n")
    blobs: dict[str, bytes] = {}
    try:
        spec = source.load(blobs)
        if spec.auth == "none" and not is_loopback(args.host):
            raise InvalidSpec(
                f"Endpoint {spec.name!r} has no auth, so it may only listen on loopback (127.0.0.1), not "
                f"{args.host}. Use keys: 'conveyor endpoints create {spec.name} --auth key'."
            )
        if not spec.deployments:
            raise InvalidSpec(f"Endpoint {spec.name!r} has no deployments; deploy a model to it first.")
    except ConveyorError as exc:
        sys.stderr.write(json.dumps({"event": "failed", "error": exc.message}) + "\n")
        raise SystemExit(2) from exc

    sys.stderr.write(json.dumps({"ts": time.time(), "event": "spec_loaded", "revision": spec.revision}) + "\n")
    metrics_dir = _metrics_folder()
    from conveyor.serve._observe import metrics_dir_env

    metrics_dir_env(metrics_dir)
    _preimport(spec)
    family = socket.AF_INET6 if ":" in args.host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((args.host, args.port))
    except OSError as exc:
        sys.stderr.write(json.dumps({"event": "failed", "error": f"cannot listen on {args.host}:{args.port}: {exc}"}))
        raise SystemExit(1) from exc
    sock.listen(4096)
    sock.set_inheritable(True)
    workers = args.workers or int(os.environ.get("CONVEYOR_WORKERS", "0") or 0) or (os.cpu_count() or 1)
    supervisor = Supervisor(source, sock, args.host, workers, metrics_dir)
    supervisor.blobs = blobs
    sys.stdout.write(json.dumps({"port": supervisor.port, "pid": os.getpid()}) + "\n")
    sys.stdout.flush()
    try:
        supervisor.run(spec)
    except ConveyorError as exc:
        sys.stderr.write(json.dumps({"event": "failed", "error": exc.message}) + "\n")
        raise SystemExit(1) from exc
    finally:
        shutil.rmtree(metrics_dir, ignore_errors=True)
