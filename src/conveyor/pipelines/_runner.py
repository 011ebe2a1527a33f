"""Running a pipeline: the DAG walked in parallel, cache hits reused, retries with backoff, failures contained.

Every step's state lives in the store (``step_runs``), written as it changes, so ``pipeline show`` can watch a
run and ``pipeline resume`` can finish one whose runner was killed. The runner records its process (host, PID,
start key) and writes a heartbeat every ``HEARTBEAT_SECONDS`` from a thread, so that readers can mark a run
whose runner died (SIGKILL, power cut) as ``crashed`` instead of ``running`` forever (``Pipelines.mark_crashed``).
A step's table outputs become data versions only after the step succeeded; a failed or killed attempt leaves
its blobs unreferenced and nothing visible.

Cache key of a step: SHA-256 of its code (source or SQL), the versions of Conveyor and the libraries that
shape results, its literal and parameter arguments, and the identities of its inputs (data version ids,
upstream output descriptors). A step whose key matches a successful earlier step run is not run again.
"""

from __future__ import annotations

import hashlib
import logging
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from importlib import metadata
from typing import TYPE_CHECKING, Any, cast

import orjson
import sqlalchemy as sa

from conveyor._owner import this_process
from conveyor.errors import UserCodeError
from conveyor.governance import add_edge
from conveyor.pipelines._definition import Node, Pipeline
from conveyor.pipelines._executors import Executor
from conveyor.pipelines._task import StepResult, StepTask
from conveyor.store._heartbeat import HEARTBEAT_SECONDS, beat_value
from conveyor.store._schema import PipelineRunRow, StepRunRow, utcnow

if TYPE_CHECKING:
    from conveyor.workspace import Workspace

__all__ = ["RunOutcome", "run_pipeline"]

_LIBRARIES = ("conveyor-ml", "pandas", "polars", "pyarrow", "numpy", "scikit-learn", "duckdb")
_POLL_SECONDS = 0.05
DONE = ("succeeded", "cached")
log = logging.getLogger("conveyor.pipelines")

# The statements the loop runs for every step, built once (Core, on the table: no ORM bookkeeping per step).
_STEP_RUNS = cast(sa.Table, StepRunRow.__table__)
_UPDATE_STEP = sa.update(_STEP_RUNS).where(_STEP_RUNS.c.id == sa.bindparam("step_run_id"))
_CACHE_HIT = (
    sa.select(_STEP_RUNS.c.outputs, _STEP_RUNS.c.logs_digest)
    .where(_STEP_RUNS.c.cache_key == sa.bindparam("cache_key"), _STEP_RUNS.c.status.in_(DONE))
    .order_by(_STEP_RUNS.c.ended_at.desc())
    .limit(1)
)


@dataclass(frozen=True)
class RunOutcome:
    run_id: str
    status: str
    steps: dict[str, str]
    seconds: float
    error: str | None = None


Progress = Callable[[str, str, dict[str, Any]], None]


def library_versions() -> str:
    pins = []
    for name in _LIBRARIES:
        try:
            pins.append(f"{name}=={metadata.version(name)}")
        except metadata.PackageNotFoundError:
            continue
    return ";".join(pins)


def run_pipeline(
    ws: Workspace,
    pipeline: Pipeline,
    executor: Executor,
    *,
    params: dict[str, Any],
    force: bool = False,
    run_id: str | None = None,
    trigger: dict[str, Any] | None = None,
    progress: Progress | None = None,
) -> RunOutcome:
    """Run (or, with ``run_id``, resume) a pipeline to the end and return how it went."""
    return _Run(ws, pipeline, executor, params, force, run_id, trigger or {}, progress).execute()


class _Run:
    def __init__(
        self,
        ws: Workspace,
        pipeline: Pipeline,
        executor: Executor,
        params: dict[str, Any],
        force: bool,
        run_id: str | None,
        trigger: dict[str, Any],
        progress: Progress | None,
    ) -> None:
        self.ws, self.pipeline, self.executor, self.params, self.force = ws, pipeline, executor, params, force
        self.progress = progress or (lambda *_: None)
        self.trigger = trigger
        self.run_id = run_id
        self.state: dict[str, str] = {}
        self.outputs: dict[str, dict[str, Any]] = {}
        self.step_ids: dict[str, str] = {}
        self.attempts: dict[str, int] = {}
        self.retry_at: dict[str, float] = {}
        self.keys: dict[str, str | None] = {}
        self.inputs: dict[str, dict[str, dict[str, Any]]] = {}
        self.functions: dict[str, bytes | None] = {}
        self.libraries = library_versions()
        self.settings = {
            "home": str(ws.settings.home),
            "db_url": ws.settings.db_url,
            "artifacts_url": ws.settings.artifacts_url,
            "options": dict(ws.settings.artifacts_options),
        }
        self.failure: str | None = None
        self.data: dict[str, dict[str, Any]] = {}
        # Derived once from the (immutable) definition instead of on every pass of the loop.
        self.nodes = {n.name: n for n in pipeline.nodes}
        self.upstream = {n.name: n.upstream for n in pipeline.nodes}
        self.codes: dict[int, str] = {}
        self.pickles: dict[int, bytes] = {}
        self.hints: dict[int, dict[str, Any]] = {}
        self.started: set[str] = set()  # steps whose row has its started_at (set by their first attempt)

    def _data_descriptor(self, ref: str) -> dict[str, Any]:
        version = self.ws.data.get(ref)
        return {"kind": "data", "id": version.id, "ref": version.ref}

    def _graph_json(self) -> dict[str, Any]:
        """The graph as it runs: enough to resume it without the code that defined it (functions are stored
        as cloudpickle blobs, one per distinct step)."""
        digests: dict[int, str] = {}
        nodes = []
        for n in self.pipeline.nodes:
            pickled = None
            if n.step.func is not None:
                key = id(n.step.func)
                if key not in digests:
                    digests[key] = self.ws.artifacts.put_bytes(self._function(n) or b"").digest
                pickled = digests[key]
            nodes.append(
                {
                    "name": n.name,
                    "step": n.step.name,
                    "function": n.step.reference(),
                    "pickle": pickled,
                    "sql": n.step.sql,
                    "sql_inputs": list(n.step.sql_inputs),
                    "options": {
                        "cache": n.step.cache,
                        "retries": n.step.retries,
                        "retry_backoff": n.step.retry_backoff,
                        "timeout": n.step.timeout,
                        "continue_on_failure": n.step.continue_on_failure,
                    },
                    "args": {k: b.to_json() for k, b in n.args.items()},
                    "upstream": n.upstream,
                }
            )
        return {
            "fingerprint": self.pipeline.fingerprint(),
            "description": self.pipeline.description,
            "defaults": dict(self.pipeline.params),
            "nodes": nodes,
            "data": self.data,
        }

    # -- set-up --------------------------------------------------------------------------------------

    def _begin(self) -> None:
        if self.run_id is None:
            self.data = {
                b.value: self._data_descriptor(b.value)
                for n in self.pipeline.nodes
                for b in n.args.values()
                if b.kind == "data"
            }
            graph = self._graph_json()
            me = this_process()
            with self.ws.store.write() as session:
                row = PipelineRunRow(
                    pipeline_name=self.pipeline.name,
                    status="running",
                    params=self.params,
                    graph=graph,
                    executor=self.executor.name,
                    trigger=self.trigger,
                    runner_host=me.host,
                    runner_pid=me.pid,
                    runner_key=me.key,
                    heartbeat_at=beat_value(session),
                    created_by=self.ws.actor,
                )
                session.add(row)
                session.flush()
                self.run_id = row.id
                step_rows = [
                    StepRunRow(pipeline_run_id=row.id, step=node.name, status="pending") for node in self.pipeline.nodes
                ]
                session.add_all(step_rows)
                session.flush()
                for step_row in step_rows:
                    self.step_ids[step_row.step] = step_row.id
            for node in self.pipeline.nodes:
                self.state[node.name] = "pending"
            return
        me = this_process()
        with self.ws.store.write() as session:
            run = session.get(PipelineRunRow, self.run_id)
            assert run is not None
            self.data = dict(run.graph.get("data", {}))
            run.status, run.ended_at, run.error = "running", None, None
            run.runner_host, run.runner_pid, run.runner_key = me.host, me.pid, me.key
            run.executor, run.heartbeat_at = self.executor.name, beat_value(session)
            for step_row in session.scalars(sa.select(StepRunRow).filter_by(pipeline_run_id=self.run_id)):
                self.step_ids[step_row.step] = step_row.id
                if step_row.status in DONE:
                    self.state[step_row.step] = step_row.status
                    self.outputs[step_row.step] = dict(step_row.outputs)
                else:
                    self.state[step_row.step] = "pending"
                    step_row.status, step_row.error, step_row.started_at, step_row.ended_at = (
                        "pending",
                        None,
                        None,
                        None,
                    )

    # -- the loop ------------------------------------------------------------------------------------

    def execute(self) -> RunOutcome:
        started = time.perf_counter()
        self.executor.start()  # before anything is recorded: an unreachable cluster leaves no run behind
        running: set[str] = set()
        beating = threading.Event()
        try:
            self._begin()
            assert self.run_id is not None
            threading.Thread(
                target=self._heartbeat, args=(beating,), name="conveyor-pipeline-heartbeat", daemon=True
            ).start()
            self.progress("run", self.run_id, {"pipeline": self.pipeline.name, "steps": len(self.pipeline.nodes)})
            while True:
                self._start_ready(running)
                if not running and (self.failure is not None or not self._waiting_retries()):
                    break
                finished = self.executor.poll(_POLL_SECONDS if running else 0.0)
                for key, _ in finished:
                    running.discard(key)
                self._finish(finished)
                if not running and self._waiting_retries():
                    time.sleep(min(_POLL_SECONDS, max(0.0, min(self.retry_at.values()) - time.monotonic())))
        except BaseException as exc:
            if self.run_id is not None:
                stopped = "killed" if isinstance(exc, KeyboardInterrupt | SystemExit) else "failed"
                self._abandon(running, stopped, repr(exc))
            raise
        finally:
            beating.set()
            self.executor.close()
        status = "failed" if self.failure else "succeeded"
        self._close(status, self.failure)
        return RunOutcome(self.run_id, status, dict(self.state), time.perf_counter() - started, self.failure)

    def _heartbeat(self, stop: threading.Event) -> None:
        """Beat every ``HEARTBEAT_SECONDS`` until ``stop``. A run marked ``crashed`` while this runner could not be
        reached (another machine) is running again: the runner writes each step's true state as it goes on."""
        table = PipelineRunRow
        while not stop.wait(HEARTBEAT_SECONDS):
            try:
                with self.ws.store.write(audited=False) as session:
                    beaten = session.execute(
                        sa.update(table)
                        .where(table.id == self.run_id, table.status == "running")
                        .values(heartbeat_at=beat_value(session)),
                        execution_options={"synchronize_session": False},
                    )
                    if cast(sa.CursorResult[Any], beaten).rowcount:
                        continue
                with self.ws.store.write() as session:  # a change of status: an audited action
                    session.execute(
                        sa.update(table)
                        .where(table.id == self.run_id, table.status == "crashed")
                        .values(status="running", ended_at=None, error=None, heartbeat_at=beat_value(session)),
                        execution_options={"synchronize_session": False},
                    )
            except Exception:  # a missed beat is retried at the next one; the run goes on
                log.debug("could not write the heartbeat of pipeline run %s", self.run_id, exc_info=True)

    def _waiting_retries(self) -> bool:
        return "retrying" in self.state.values()

    def _start_ready(self, running: set[str]) -> None:
        """Start every step that can start, up to the executor's capacity. The steps found ready in one pass
        are claimed in one transaction; a cache hit takes no capacity, so a pass that had hits is followed by
        another (their downstream steps may now be ready)."""
        while True:
            batch: list[Node] = []
            for node in self.pipeline.nodes:
                state = self.state[node.name]
                if state not in ("pending", "retrying"):
                    continue
                if state == "retrying" and time.monotonic() < self.retry_at.get(node.name, 0.0):
                    continue
                upstream = [self.state[u] for u in self.upstream[node.name]]
                if any(s in ("failed", "skipped") for s in upstream):
                    self._skip(node)
                    continue
                if self.failure is not None:
                    continue  # a step failed for good: start nothing new, let running steps finish
                if not all(s in DONE for s in upstream):
                    continue
                if len(running) + len(batch) >= self.executor.capacity:
                    break
                batch.append(node)
            if not batch:
                return
            hits = self._claim(batch)
            for node in batch:
                if node.name not in hits:
                    self._submit(node)
                    running.add(node.name)
            if not hits:
                return

    # -- one step ------------------------------------------------------------------------------------

    def _resolve_inputs(self, node: Node) -> dict[str, dict[str, Any]]:
        inputs: dict[str, dict[str, Any]] = {}
        for arg, binding in node.args.items():
            if binding.kind == "output":
                inputs[arg] = self.outputs[binding.value]
            elif binding.kind == "param":
                inputs[arg] = {"kind": "value", "value": self.params[binding.value]}
            elif binding.kind == "data":
                inputs[arg] = self.data.get(binding.value) or self._data_descriptor(binding.value)
            else:
                inputs[arg] = {"kind": "value", "value": binding.value}
        return inputs

    def _cache_key(self, node: Node, inputs: dict[str, dict[str, Any]]) -> str:
        material = {
            "code": self._code(node),
            "libraries": self.libraries,
            "inputs": {k: _identity(v) for k, v in sorted(inputs.items())},
            "params": {k: v for k, v in sorted(self.params.items())} if node.step.sql else {},
        }
        return "sha256:" + hashlib.sha256(orjson.dumps(material, option=orjson.OPT_SORT_KEYS)).hexdigest()

    def _code(self, node: Node) -> str:
        key = id(node.step)
        if key not in self.codes:
            self.codes[key] = node.step.code()
        return self.codes[key]

    def _claim(self, batch: list[Node]) -> set[str]:
        """Record, in one transaction, how each step of ``batch`` starts: a pending step whose cache key matches
        an earlier successful step run is ``cached`` (its outputs reused); any other is ``running`` (one more
        attempt). Returns the names of the cache hits; the others are for :meth:`_submit`."""
        plans: list[tuple[Node, dict[str, dict[str, Any]], str | None]] = []
        for node in batch:
            if self.state[node.name] == "pending":
                inputs = self._resolve_inputs(node)
                self.inputs[node.name] = inputs
                key = self._cache_key(node, inputs) if node.step.cache else None
                self.keys[node.name] = key
                plans.append((node, inputs, None if self.force else key))
            else:  # a retry: no cache lookup
                plans.append((node, self.inputs.get(node.name) or self._resolve_inputs(node), None))
        hits: dict[str, dict[str, Any]] = {}
        with self.ws.store.write() as session:
            for node, inputs, lookup in plans:
                step_id = self.step_ids[node.name]
                hit = None
                if lookup is not None:
                    hit = session.execute(_CACHE_HIT, {"cache_key": lookup}).first()
                if hit is not None:
                    now = utcnow()
                    outputs = dict(hit.outputs)
                    session.execute(
                        _UPDATE_STEP,
                        {
                            "step_run_id": step_id,
                            "status": "cached",
                            "cached": True,
                            "cache_key": lookup,
                            "inputs": inputs,
                            "outputs": outputs,
                            "started_at": now,
                            "ended_at": now,
                            "logs_digest": hit.logs_digest,
                        },
                    )
                    self._edges(session, step_id, inputs, outputs)
                    hits[node.name] = outputs
                    continue
                values: dict[str, Any] = {
                    "step_run_id": step_id,
                    "status": "running",
                    "attempts": self.attempts.get(node.name, 0) + 1,
                    "inputs": inputs,
                    "cache_key": self.keys.get(node.name),
                }
                if node.name not in self.started:
                    values["started_at"] = utcnow()
                session.execute(_UPDATE_STEP, values)
        for node, _, _ in plans:
            if node.name in hits:
                self.outputs[node.name] = hits[node.name]
                self.state[node.name] = "cached"
                self.progress("cached", node.name, {})
        return set(hits)

    def _submit(self, node: Node) -> None:
        """Hand a claimed step (its row already says ``running``) to the executor."""
        inputs = self.inputs.get(node.name) or self._resolve_inputs(node)
        attempt = self.attempts.get(node.name, 0) + 1
        self.attempts[node.name] = attempt
        self.started.add(node.name)
        task = StepTask(
            run_id=self.run_id or "",
            node=node.name,
            attempt=attempt,
            function=self._function(node),
            sql=node.step.sql,
            inputs=inputs,
            params=dict(self.params),
            settings=self.settings,
            timeout=node.step.timeout,
            forms=self._forms(node),
        )
        self.state[node.name] = "running"
        self.progress("start", node.name, {"attempt": attempt})
        self.executor.submit(node.name, task)

    def _forms(self, node: Node) -> dict[str, str | None]:
        from conveyor.pipelines._values import table_form

        key = id(node.step)
        if key not in self.hints:
            self.hints[key] = node.step.annotations()
        hints = self.hints[key]
        return {arg: table_form(hints.get(arg)) for arg in node.args}

    def _function(self, node: Node) -> bytes | None:
        if node.step.func is None:
            return None
        if node.name not in self.functions and id(node.step.func) in self.pickles:
            self.functions[node.name] = self.pickles[id(node.step.func)]
        if node.name not in self.functions:
            import cloudpickle

            module = sys.modules.get(getattr(node.step.func, "__module__", "") or "")
            by_value = module is not None and not module.__name__.startswith("conveyor.")
            if by_value and module is not None and module.__name__ != "__main__":
                cloudpickle.register_pickle_by_value(module)
            try:
                self.functions[node.name] = self.pickles[id(node.step.func)] = cloudpickle.dumps(node.step.func)
            finally:
                if by_value and module is not None and module.__name__ != "__main__":
                    cloudpickle.unregister_pickle_by_value(module)
        return self.functions[node.name]

    def _finish(self, finished: list[tuple[str, StepResult]]) -> None:
        """Record the results of one poll: the successes in one transaction, then each failure."""
        succeeded = [(self.nodes[k], r) for k, r in finished if r.ok and r.output is not None]
        if succeeded:
            self._succeed(succeeded)
        for name, result in finished:
            if not (result.ok and result.output is not None):
                self._fail(self.nodes[name], result)

    def _fail(self, node: Node, result: StepResult) -> None:
        name = node.name
        attempts = self.attempts.get(name, 1)
        if attempts <= node.step.retries:
            delay = node.step.retry_backoff * (2 ** (attempts - 1))
            self.retry_at[name] = time.monotonic() + delay
            self.state[name] = "retrying"
            self._record_failure(name, result, "retrying")
            self.progress("retry", name, {"attempt": attempts, "delay": delay, "error": result.error})
            return
        self.state[name] = "failed"
        self._record_failure(name, result, "failed")
        self.progress("fail", name, {"error": result.error, "user": result.user_error})
        if not node.step.continue_on_failure and self.failure is None:
            owner = "the step's code" if result.user_error else "the platform"
            refs = [str(d["ref"]) for d in self.inputs.get(name, {}).values() if d.get("ref")]
            read = f" (it read {', '.join(refs)})" if refs else ""
            self.failure = f"step {name!r} failed{read}: {result.error} [raised by {owner}]"

    def _succeed(self, succeeded: list[tuple[Node, StepResult]]) -> None:
        outputs: dict[str, dict[str, Any]] = {}
        for node, result in succeeded:
            assert result.output is not None
            output = result.output
            if output["kind"] == "table":
                # Its own transaction, before the step's row is marked: if the runner dies in between, a resume
                # re-runs the step and the identical content maps to this same version.
                output = self._commit_table(node, output, self.inputs.get(node.name, {}))
            outputs[node.name] = output
        with self.ws.store.write() as session:
            for node, result in succeeded:
                step_id = self.step_ids[node.name]
                output = outputs[node.name]
                session.execute(
                    _UPDATE_STEP,
                    {
                        "step_run_id": step_id,
                        "status": "succeeded",
                        "outputs": output,
                        "ended_at": utcnow(),
                        "error": None,
                        "logs_digest": result.logs_digest,
                    },
                )
                self._edges(session, step_id, self.inputs.get(node.name, {}), output)
        for node, result in succeeded:
            self.outputs[node.name] = outputs[node.name]
            self.state[node.name] = "succeeded"
            self.progress("done", node.name, {"seconds": result.seconds})

    def _commit_table(self, node: Node, output: dict[str, Any], inputs: dict[str, dict[str, Any]]) -> dict[str, Any]:
        parents = [d["id"] for d in inputs.values() if d.get("kind") == "data"]
        version = self.ws.data.commit_stored(
            [{"digest": output["digest"], "rows": output["rows"], "bytes": output["bytes"]}],
            name=f"{self.pipeline.name}.{node.name}",
            source={"kind": "pipeline", "pipeline": self.pipeline.name, "run": self.run_id, "step": node.name},
            parents=parents,
        )
        return {"kind": "data", "id": version.id, "ref": version.ref}

    def _edges(self, session: Any, step_run_id: str, inputs: dict[str, dict[str, Any]], output: dict[str, Any]) -> None:
        for descriptor in inputs.values():
            if descriptor.get("kind") == "data":
                add_edge(session, "data_version", descriptor["id"], "read_by", "step_run", step_run_id)
        if output.get("kind") == "data":
            add_edge(session, "step_run", step_run_id, "produced", "data_version", output["id"])
        elif output.get("kind") == "model":
            add_edge(session, "step_run", step_run_id, "produced", "model_version", output["id"])

    def _record_failure(self, name: str, result: StepResult, status: str) -> None:
        with self.ws.store.write() as session:
            row = session.get(StepRunRow, self.step_ids[name])
            assert row is not None
            kind = "timeout" if result.timed_out else ("user code" if result.user_error else "platform")
            row.status, row.error, row.logs_digest = status, f"[{kind}] {result.error}", result.logs_digest
            if status == "failed":
                row.ended_at = utcnow()

    def _skip(self, node: Node) -> None:
        self.state[node.name] = "skipped"
        with self.ws.store.write() as session:
            row = session.get(StepRunRow, self.step_ids[node.name])
            assert row is not None
            failed = [u for u in self.upstream[node.name] if self.state[u] in ("failed", "skipped")]
            row.status, row.error = "skipped", f"not run: {', '.join(failed)} did not succeed"
        self.progress("skip", node.name, {})

    def _abandon(self, running: set[str], status: str, reason: str) -> None:
        with self.ws.store.write() as session:
            for name in running:
                row = session.get(StepRunRow, self.step_ids[name])
                if row is not None:
                    row.status, row.error, row.ended_at = "killed", f"the runner stopped: {reason}", utcnow()
        self._close(status, f"the runner stopped: {reason}")

    def _close(self, status: str, error: str | None) -> None:
        with self.ws.store.write() as session:
            run = session.get(PipelineRunRow, self.run_id)
            assert run is not None
            run.status, run.ended_at, run.error = status, utcnow(), error
            leftover = sa.select(StepRunRow).where(
                StepRunRow.pipeline_run_id == self.run_id, StepRunRow.status.in_(("pending", "retrying"))
            )
            for row in session.scalars(leftover):
                row.status, row.error = "not run", row.error or "the run stopped before this step could start"
        self.progress("end", self.run_id or "", {"status": status})


def _identity(descriptor: dict[str, Any]) -> Any:
    kind = descriptor.get("kind")
    if kind in ("data", "model"):
        return [kind, descriptor["id"]]
    if kind in ("table", "object", "file"):
        return [kind, descriptor["digest"]]
    return ["value", descriptor.get("value")]


def user_error(outcome: RunOutcome) -> UserCodeError:
    """The error that reports a failed run."""
    return UserCodeError(f"Pipeline run {outcome.run_id} failed: {outcome.error}", run_id=outcome.run_id)
