"""The pipelines service, reached as ``ws.pipelines``: register, run, resume and inspect pipeline runs."""

from __future__ import annotations

import builtins
import importlib
import socket
import sys
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, cast

import sqlalchemy as sa

from conveyor._process import alive
from conveyor.errors import BadInput, Conflict, InvalidSpec, NotFound, did_you_mean
from conveyor.pipelines._definition import Binding, Node, Pipeline, Step
from conveyor.pipelines._executors import Executor, make_executor
from conveyor.pipelines._runner import Progress, run_pipeline
from conveyor.pipelines._schedule import Schedule, add_schedule, list_schedules, remove_schedules, trigger_run
from conveyor.pipelines._spec import load_spec, parse_spec, pipeline_from_spec
from conveyor.store._heartbeat import Liveness
from conveyor.store._helpers import lock_or_create
from conveyor.store._schema import PipelineRow, PipelineRunRow, StepRunRow, utcnow

if TYPE_CHECKING:
    from conveyor.workspace import Workspace

__all__ = ["PipelineInfo", "PipelineRun", "Pipelines", "StepRun"]


@dataclass(frozen=True)
class PipelineInfo:
    name: str
    kind: str
    definition: dict[str, Any]
    description: str
    created_at: datetime
    updated_at: datetime


@dataclass(frozen=True)
class StepRun:
    name: str
    status: str
    cached: bool
    attempts: int
    cache_key: str | None
    inputs: dict[str, Any]
    outputs: dict[str, Any]
    error: str | None
    started_at: datetime | None
    ended_at: datetime | None

    @property
    def seconds(self) -> float | None:
        if self.started_at is None or self.ended_at is None:
            return None
        return (self.ended_at - self.started_at).total_seconds()


@dataclass(frozen=True)
class PipelineRun:
    id: str
    pipeline: str
    status: str
    params: dict[str, Any]
    executor: str
    trigger: dict[str, Any]
    started_at: datetime
    ended_at: datetime | None
    error: str | None
    steps: list[StepRun]

    @property
    def seconds(self) -> float | None:
        return None if self.ended_at is None else (self.ended_at - self.started_at).total_seconds()

    def step(self, name: str) -> StepRun:
        for s in self.steps:
            if s.name == name:
                return s
        raise NotFound(
            f"Run {self.id} has no step {name!r}.{did_you_mean(name, [s.name for s in self.steps])}", step=name
        )


class Pipelines:
    """Pipelines and their runs."""

    def __init__(self, workspace: Workspace) -> None:
        self._ws = workspace

    # -- definitions ---------------------------------------------------------------------------------

    def apply(self, path: str | Path) -> PipelineInfo:
        """Register (or update) the pipeline a YAML file declares; it is checked fully first.

        Raises:
            NotFound / InvalidSpec: as for :func:`load_spec` and :func:`pipeline_from_spec`.
        """
        spec = load_spec(Path(path))
        pipeline_from_spec(spec)
        return self._save(spec["name"], "yaml", {"spec": spec}, spec.get("description", ""))

    def apply_text(self, text: str, source: str = "<request>", *, trusted_only: bool = True) -> PipelineInfo:
        """Register (or update) the pipeline a YAML text declares (what ``PUT /api/v1/pipelines`` receives).

        With ``trusted_only`` (the default, for text that came from elsewhere) its steps may name only
        functions of trusted modules (:meth:`trusted_modules`), checked by name before anything is imported;
        the pipeline stays restricted so: each later run checks its functions again against the trusted modules
        of that moment.

        Raises:
            InvalidSpec: as for :func:`parse_spec` and :func:`pipeline_from_spec`.
            Forbidden: with ``trusted_only``, a step names a function outside the trusted modules.
        """
        spec = parse_spec(text, source)
        pipeline_from_spec(spec, self.trusted_modules() if trusted_only else None)
        definition: dict[str, Any] = {"spec": spec}
        if trusted_only:
            definition["trusted_only"] = True
        return self._save(spec["name"], "yaml", definition, spec.get("description", ""))

    def trusted_modules(self) -> dict[str, str]:
        """The modules whose functions restricted pipelines (specs sent over the API) may name, each with where
        it was trusted: ``[pipelines] trusted_modules`` / ``CONVEYOR_TRUSTED_MODULES``, and the project's own
        packages, i.e. the top-level package of each Python pipeline registered on this machine
        (``conveyor pipeline register my_project.pipelines:churn`` trusts ``my_project``). A module's
        submodules are trusted with it."""
        trusted = {name: "setting pipelines.trusted_modules" for name in self._ws.settings.trusted_modules}
        with self._ws.store.read() as session:
            rows = session.execute(sa.select(PipelineRow.name, PipelineRow.definition).filter_by(kind="python"))
            for name, definition in rows:
                package = str(definition.get("reference", "")).partition(":")[0].split(".")[0]
                if package and package != "conveyor" and package not in sys.stdlib_module_names:
                    trusted.setdefault(package, f"project package of registered pipeline {name!r}")
        return trusted

    def register(self, reference: str) -> PipelineInfo:
        """Register a Python pipeline by ``module:attribute`` (so schedules can run it by name)."""
        built = _import_pipeline(reference)
        return self._save(built.name, "python", {"reference": reference}, built.description)

    def _save(self, name: str, kind: str, definition: dict[str, Any], description: str) -> PipelineInfo:
        with self._ws.store.write() as session:
            row = lock_or_create(
                session, PipelineRow, name=name, created_by=self._ws.actor, kind=kind, definition=definition
            )
            row.kind, row.definition, row.description, row.updated_at = kind, definition, description, utcnow()
            return _info(row)

    def get(self, name: str) -> PipelineInfo:
        with self._ws.store.read() as session:
            row = session.scalars(sa.select(PipelineRow).filter_by(name=name)).first()
            if row is None:
                names = session.scalars(sa.select(PipelineRow.name)).all()
                raise NotFound(
                    f"No pipeline named {name!r}.{did_you_mean(name, names)} Register one with 'conveyor apply -f "
                    "pipeline.yaml' or run a Python one as MODULE:ATTRIBUTE.",
                    name=name,
                )
            return _info(row)

    def list(self) -> builtins.list[PipelineInfo]:
        with self._ws.store.read() as session:
            return [_info(r) for r in session.scalars(sa.select(PipelineRow).order_by(PipelineRow.name))]

    def definition(self, target: str | Pipeline) -> Pipeline:
        """The pipeline ``target`` names: a :class:`Pipeline`, a registered name, ``module:attribute`` or a YAML
        file."""
        if isinstance(target, Pipeline):
            return target
        if target.endswith((".yaml", ".yml")):
            return pipeline_from_spec(load_spec(Path(target)))
        if ":" in target and not Path(target).exists():
            try:
                return _import_pipeline(target)
            except InvalidSpec:
                if "/" in target or "." in target.split(":", 1)[0]:
                    raise
        info = self.get(target)
        if info.kind == "yaml":
            restricted = bool(info.definition.get("trusted_only"))
            return pipeline_from_spec(info.definition["spec"], self.trusted_modules() if restricted else None)
        return _import_pipeline(info.definition["reference"])

    # -- runs ----------------------------------------------------------------------------------------

    def run(
        self,
        target: str | Pipeline,
        *,
        params: dict[str, Any] | None = None,
        executor: str | Executor | None = None,
        force: bool = False,
        trigger: dict[str, Any] | None = None,
        progress: Progress | None = None,
    ) -> PipelineRun:
        """Run a pipeline to the end (steps in parallel where the graph allows) and return the run.

        A failed step fails the run (unless it continues on failure); the returned run says which step, with
        its error; ``logs(run.id, step)`` has the step's output and traceback.

        Raises:
            InvalidSpec: an unknown parameter, or a definition that does not check.
            BadInput: an unknown executor.
            StoreUnavailable: the Dask scheduler cannot be reached.
        """
        pipeline = self.definition(target)
        values = pipeline.resolve_params(params)
        outcome = run_pipeline(
            self._ws, pipeline, make_executor(executor), params=values, force=force, trigger=trigger, progress=progress
        )
        return self.get_run(outcome.run_id)

    def resume(
        self, run_id: str, *, executor: str | Executor | None = None, progress: Progress | None = None
    ) -> PipelineRun:
        """Finish a run that failed or whose runner was stopped: steps that succeeded keep their outputs, the
        others run again, with the run's own parameters and definition.

        Raises:
            NotFound: no such run.
            Conflict: the run already succeeded.
        """
        run = self.get_run(run_id)
        if run.status == "succeeded":
            raise Conflict(f"Run {run_id} already succeeded; there is nothing to resume. Start a new run instead.")
        with self._ws.store.read() as session:
            row = session.get(PipelineRunRow, run_id)
            assert row is not None
            graph = dict(row.graph)
            host, pid, beating = row.runner_host, row.runner_pid, row.heartbeat_at is not None
        # get_run marked it crashed if its runner is gone: still running means alive here, or beating elsewhere
        local = host == socket.gethostname() and pid is not None and alive(pid)
        if run.status == "running" and (local or beating):
            raise Conflict(
                f"Run {run_id} is still running in process {pid} on {host}; wait for it, or stop that process and "
                "resume.",
                run_id=run_id,
            )
        pipeline = _pipeline_from_graph(self._ws, run.pipeline, graph)
        run_pipeline(
            self._ws, pipeline, make_executor(executor), params=dict(run.params), run_id=run_id, progress=progress
        )
        return self.get_run(run_id)

    def mark_crashed(self) -> builtins.list[str]:
        """Mark each ``running`` pipeline run whose runner process is gone as ``crashed``; returns their ids.

        The runner is gone when its PID no longer runs on this machine (or now belongs to a process that started
        at another time), or, for a runner on another machine, when its heartbeat is older than a minute. The
        run ends at its last heartbeat; its steps that were running become ``crashed`` (their outputs were never
        recorded), those not started ``not run``. Steps that succeeded keep their outputs: ``resume`` finishes the
        run. Reads of runs call this first, and so does the scheduler.
        """
        with self._ws.store.read() as session:
            running = session.execute(
                sa.select(
                    PipelineRunRow.id,
                    PipelineRunRow.runner_host,
                    PipelineRunRow.runner_pid,
                    PipelineRunRow.runner_key,
                    PipelineRunRow.heartbeat_at,
                ).where(PipelineRunRow.status == "running")
            ).all()
            if not running:
                return []
            liveness = Liveness(session)
            gone = []
            for run_id, host, pid, key, beat in running:
                dead, why = liveness.gone(host, pid, key, beat)
                if dead:
                    gone.append((run_id, host, pid, beat, why))
        marked = []
        now = utcnow()
        with self._ws.store.write() as session:
            for run_id, host, pid, beat, why in gone:
                error = (
                    f"The runner process (PID {pid} on {host}) is gone: {why}. Steps that succeeded keep their "
                    f"outputs; finish the run with 'conveyor pipeline resume {run_id}'."
                )
                changed = session.execute(
                    sa.update(PipelineRunRow)
                    .where(PipelineRunRow.id == run_id, PipelineRunRow.status == "running")
                    .values(status="crashed", ended_at=min(beat or now, now), error=error),
                    execution_options={"synchronize_session": False},
                )
                if not cast(sa.CursorResult[Any], changed).rowcount:
                    continue  # it ended meanwhile
                steps = StepRunRow.pipeline_run_id == run_id
                session.execute(
                    sa.update(StepRunRow)
                    .where(steps, StepRunRow.status == "running")
                    .values(
                        status="crashed",
                        ended_at=min(beat or now, now),
                        error="the runner died while this step ran; its output was not recorded",
                    ),
                    execution_options={"synchronize_session": False},
                )
                session.execute(
                    sa.update(StepRunRow)
                    .where(steps, StepRunRow.status.in_(("pending", "retrying")))
                    .values(status="not run", error="the runner died before this step could start"),
                    execution_options={"synchronize_session": False},
                )
                marked.append(run_id)
        return marked

    def get_run(self, run_id: str) -> PipelineRun:
        """The pipeline run with this id, its steps in the graph's order.

        Raises:
            NotFound: no such run.
        """
        self.mark_crashed()
        return self._get_run(run_id)

    def _get_run(self, run_id: str) -> PipelineRun:
        with self._ws.store.read() as session:
            row = session.get(PipelineRunRow, run_id)
            if row is None:
                raise NotFound(
                    f"No pipeline run with id {run_id!r}. List runs with 'conveyor pipeline runs'.", run_id=run_id
                )
            order = [n["name"] for n in row.graph.get("nodes", [])]
            steps = {s.step: s for s in session.scalars(sa.select(StepRunRow).filter_by(pipeline_run_id=run_id))}
            return PipelineRun(
                id=row.id,
                pipeline=row.pipeline_name,
                status=row.status,
                params=dict(row.params),
                executor=row.executor,
                trigger=dict(row.trigger or {}),
                started_at=row.started_at,
                ended_at=row.ended_at,
                error=row.error,
                steps=[_step(steps[name]) for name in order if name in steps],
            )

    def runs(self, pipeline: str | None = None, limit: int = 50) -> builtins.list[PipelineRun]:
        """The most recent runs, newest first."""
        self.mark_crashed()
        with self._ws.store.read() as session:
            query = sa.select(PipelineRunRow.id).order_by(PipelineRunRow.started_at.desc()).limit(limit)
            if pipeline is not None:
                query = query.where(PipelineRunRow.pipeline_name == pipeline)
            ids = session.scalars(query).all()
        return [self._get_run(i) for i in ids]

    def logs(self, run_id: str, step: str) -> str:
        """What the step printed (stdout and stderr) and, when it failed, its traceback.

        Raises:
            NotFound: no such run or step.
        """
        found = self.get_run(run_id).step(step)
        with self._ws.store.read() as session:
            row = session.scalars(sa.select(StepRunRow).filter_by(pipeline_run_id=run_id, step=found.name)).one()
            digest = row.logs_digest
        if digest is None:
            return ""
        return self._ws.artifacts.get_bytes(digest).decode("utf-8", errors="replace")

    # -- schedules and triggers (``_schedule.py``) ---------------------------------------------------

    def schedule(
        self,
        name: str,
        *,
        cron: str | None = None,
        timezone: str = "UTC",
        on_data: str | None = None,
        params: dict[str, Any] | None = None,
    ) -> Schedule:
        """Run the registered pipeline ``name`` by itself: at the times of ``cron`` (five fields, read in
        ``timezone``), or on each new latest version of the data asset ``on_data``. Scheduling the same thing
        twice returns the existing schedule. The scheduler (in ``conveyor server``, or ``conveyor scheduler``)
        fires it; a cron schedule missed while no scheduler ran fires once, not once per missed time.

        Raises:
            BadInput: neither or both of cron and on_data, a bad cron expression or timezone (with examples).
            NotFound: no registered pipeline or data asset of that name (with "did you mean").
            InvalidSpec: a parameter the pipeline does not have.
        """
        return add_schedule(self._ws, name, cron=cron, timezone=timezone, on_data=on_data, params=params)

    def unschedule(self, name: str, schedule_id: str | None = None) -> builtins.list[Schedule]:
        """Remove the schedules of ``name`` (only ``schedule_id``, if given); returns the removed ones.

        Raises:
            NotFound: the pipeline has no schedules, or not that one.
        """
        return remove_schedules(self._ws, name, schedule_id)

    def schedules(self, name: str | None = None) -> builtins.list[Schedule]:
        """Every schedule, or those of pipeline ``name``."""
        return list_schedules(self._ws, name)

    def trigger(
        self, name: str, *, reason: dict[str, Any], params: dict[str, Any] | None = None, wait: bool = False
    ) -> str:
        """Start a run of the registered pipeline ``name`` now and return its id; ``reason`` (a JSON object with a
        ``kind``, e.g. ``{"kind": "alert", "alert": "churn-drift"}``) is recorded as the run's ``trigger``.

        The run goes on in a detached process (it outlives the caller); ``wait=True`` runs it here instead and
        returns when it ended (check its status with :meth:`get_run`).

        Raises:
            BadInput: a reason that is not a JSON object with a text ``kind`` (or over 16 KB).
            NotFound: no registered pipeline of that name.
            InvalidSpec: a parameter the pipeline does not have.
            ConveyorError: the run's process exited before recording the run (its log is quoted).
        """
        return trigger_run(self._ws, name, reason=reason, params=params, wait=wait)


def _import_pipeline(reference: str) -> Pipeline:
    module_name, _, attribute = reference.partition(":")
    if not module_name or not attribute:
        raise BadInput(f"{reference!r} is not MODULE:ATTRIBUTE (for example my_project.pipelines:churn).")
    try:
        target: Any = importlib.import_module(module_name)
        for part in attribute.split("."):
            target = getattr(target, part)
    except (ImportError, AttributeError) as exc:
        raise InvalidSpec(
            f"Cannot import the pipeline {reference} ({exc}). Check the module is importable here (installed, or on "
            "PYTHONPATH)."
        ) from exc
    if not isinstance(target, Pipeline):
        raise InvalidSpec(f"{reference} is a {type(target).__name__}, not a pipeline; decorate it with @pipeline.")
    return target


def _pipeline_from_graph(ws: Workspace, name: str, graph: dict[str, Any]) -> Pipeline:
    """The pipeline exactly as a run recorded it (functions from their stored pickles)."""
    import cloudpickle

    nodes = []
    for item in graph["nodes"]:
        func = None
        if item.get("pickle"):
            func = cloudpickle.loads(ws.artifacts.get_bytes(item["pickle"]))
        made = Step(
            name=item["step"],
            func=func,
            sql=item.get("sql"),
            sql_inputs=tuple(item.get("sql_inputs", ())),
            **item.get("options", {}),
        )
        args = {k: Binding(v["kind"], v["value"]) for k, v in item["args"].items()}
        nodes.append(Node(item["name"], made, args))
    return Pipeline(name, tuple(nodes), dict(graph.get("defaults", {})), graph.get("description", ""))


def _info(row: PipelineRow) -> PipelineInfo:
    return PipelineInfo(row.name, row.kind, dict(row.definition), row.description, row.created_at, row.updated_at)


def _step(row: StepRunRow) -> StepRun:
    return StepRun(
        name=row.step,
        status=row.status,
        cached=row.cached,
        attempts=row.attempts,
        cache_key=row.cache_key,
        inputs=dict(row.inputs or {}),
        outputs=dict(row.outputs or {}),
        error=row.error,
        started_at=row.started_at,
        ended_at=row.ended_at,
    )
