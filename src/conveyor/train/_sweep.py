"""Sweeps: the user's training function or script, run once per point of a search space, tracked.

A sweep file (YAML)::

    experiment: churn-lr            # default: the file's name
    function: my_project.train:fit  # or  script: train.py   (one of the two)
    metric: auc
    goal: maximize                  # or minimize
    sampler: tpe                    # tpe | random | grid
    seed: 7
    space:
      lr:      {type: loguniform, low: 1.0e-4, high: 0.3}
      depth:   {type: int, low: 2, high: 10}
      dropout: {type: uniform, low: 0.0, high: 0.5}
      learner: {type: choice, values: [lgbm, rf]}
    early_termination: {policy: median, warmup_steps: 2}   # or successive_halving (min_resource,
                                                           # reduction_factor), or none
    limits: {max_trials: 20, concurrency: 2, timeout: 600, trial_timeout: 120}

A function is called as ``fn(params, trial)``: ``trial.report(value, step)`` reports an intermediate
value of the metric (and stops the trial when early termination says so); the return value is the final
metric (a number, or a dict holding ``metric``). A script is run as ``python SCRIPT --name value ...`` and
reports through ``conveyor.train.report(value, step=None)`` (the final value without a step).

Every trial runs in its own process, so a pruned or overrunning trial is stopped for real. The sweep is a
tracked run; each trial is a child run with its parameters, the reported values as the metric's history,
its final value and its state (``finished``, ``pruned`` as a tag, ``failed`` with the error, ``killed``).
"""

from __future__ import annotations

import math
import os
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import orjson

from conveyor.errors import BadInput, InvalidSpec, NotFound, did_you_mean

if TYPE_CHECKING:
    from collections.abc import Callable

    from conveyor.workspace import Workspace

__all__ = ["SweepResult", "SweepSpec", "SweepTrial", "load_sweep", "report", "run_sweep"]

_REPORT_FD = "CONVEYOR_SWEEP_FD"
_TOP_KEYS = {
    "experiment",
    "function",
    "script",
    "metric",
    "goal",
    "sampler",
    "seed",
    "space",
    "early_termination",
    "limits",
    "executor",
}
_TYPES = {"choice", "uniform", "loguniform", "int"}
_SAMPLERS = {"tpe", "random", "grid"}
_POLICIES = {"none", "median", "successive_halving"}
_LIMITS = {"max_trials", "concurrency", "timeout", "trial_timeout"}


@dataclass(frozen=True)
class SweepSpec:
    experiment: str
    metric: str
    goal: str
    sampler: str
    space: dict[str, dict[str, Any]]
    function: str | None = None
    script: str | None = None
    seed: int | None = None
    early_termination: dict[str, Any] = field(default_factory=lambda: {"policy": "none"})
    max_trials: int = 20
    concurrency: int = 1
    timeout: float | None = None
    trial_timeout: float | None = None
    executor: str = "local"
    base_dir: str = "."


@dataclass(frozen=True)
class SweepTrial:
    number: int
    run_id: str
    params: dict[str, Any]
    state: str  # finished | pruned | failed | killed
    value: float | None
    seconds: float
    error: str | None = None


@dataclass(frozen=True)
class SweepResult:
    run_id: str
    experiment: str
    metric: str
    goal: str
    best: SweepTrial | None
    trials: list[SweepTrial]
    seconds: float


def _fail(message: str, source: str) -> InvalidSpec:
    return InvalidSpec(f"{source}: {message}", file=source)


def _number(value: Any, where: str, source: str) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(float(value)):
        raise _fail(f"{where} must be a finite number, not {value!r}.", source)
    return float(value)


def _check_space(space: Any, sampler: str, source: str) -> dict[str, dict[str, Any]]:  # noqa: PLR0912
    if not isinstance(space, dict) or not space:
        raise _fail("'space' must map each parameter to {type: ..., ...}; it is empty or not a mapping.", source)
    checked: dict[str, dict[str, Any]] = {}
    for name, spec in space.items():
        where = f"space.{name}"
        if not isinstance(spec, dict) or "type" not in spec:
            raise _fail(f"{where} needs a type: one of {', '.join(sorted(_TYPES))}.", source)
        kind = spec["type"]
        if kind not in _TYPES:
            raise _fail(f"{where}.type {kind!r} is unknown.{did_you_mean(str(kind), _TYPES)}", source)
        allowed = (
            {"type", "values"} if kind == "choice" else {"type", "low", "high"} | ({"step"} if kind == "int" else set())
        )
        for key in spec:
            if key not in allowed:
                raise _fail(
                    f"{where}.{key} is not a key of a {kind} parameter.{did_you_mean(str(key), allowed)}", source
                )
        if kind == "choice":
            values = spec.get("values")
            if not isinstance(values, list) or not values:
                raise _fail(f"{where}.values must be a non-empty list.", source)
            checked[name] = {"type": kind, "values": values}
            continue
        if "low" not in spec or "high" not in spec:
            raise _fail(f"{where} needs low and high.", source)
        low, high = _number(spec["low"], f"{where}.low", source), _number(spec["high"], f"{where}.high", source)
        if not low < high:
            raise _fail(f"{where}: low ({spec['low']}) must be below high ({spec['high']}).", source)
        if kind == "loguniform" and low <= 0:
            raise _fail(f"{where}: a loguniform range must be above 0 (low is {spec['low']}).", source)
        if kind == "int":
            if low != int(low) or high != int(high):
                raise _fail(f"{where}: an int range needs whole-number bounds.", source)
            step = spec.get("step", 1)
            if isinstance(step, bool) or not isinstance(step, int) or step < 1:
                raise _fail(f"{where}.step must be a whole number ≥ 1.", source)
            checked[name] = {"type": kind, "low": int(low), "high": int(high), "step": step}
        else:
            checked[name] = {"type": kind, "low": low, "high": high}
        if sampler == "grid" and kind in ("uniform", "loguniform"):
            raise _fail(
                f"{where}: the grid sampler needs finite choices; make it a choice (values: [...]) or an int range.",
                source,
            )
    return checked


def load_sweep(path: str | Path) -> SweepSpec:  # noqa: PLR0912
    """Read and check a sweep file.

    Raises:
        NotFound: the file does not exist.
        InvalidSpec: a key is unknown (the closest is suggested), missing, or out of range.
    """
    import yaml

    file = Path(path)
    if not file.is_file():
        raise NotFound(f"No sweep file {str(file)!r}.")
    source = str(file)
    try:
        data = yaml.safe_load(file.read_text(encoding="utf-8"))
    except yaml.YAMLError as exc:
        raise _fail(f"not valid YAML: {exc}", source) from exc
    if not isinstance(data, dict):
        raise _fail("a sweep file is a mapping (experiment, function or script, metric, space, ...).", source)
    for key in data:
        if key not in _TOP_KEYS:
            raise _fail(f"unknown key {key!r}.{did_you_mean(str(key), _TOP_KEYS)}", source)
    if ("function" in data) == ("script" in data):
        raise _fail("give exactly one of 'function: module:name' or 'script: path.py'.", source)
    if "function" in data and ":" not in str(data["function"]):
        raise _fail(f"function {data['function']!r} must be written module:name (e.g. my_project.train:fit).", source)
    if "script" in data and not (file.parent / str(data["script"])).is_file():
        raise _fail(f"script {data['script']!r} does not exist next to the sweep file.", source)
    if not isinstance(data.get("metric"), str) or not data["metric"]:
        raise _fail("'metric' (the name of the value to optimise) is required.", source)
    goal = data.get("goal", "maximize")
    if goal not in ("maximize", "minimize"):
        raise _fail(f"goal {goal!r} must be maximize or minimize.", source)
    sampler = data.get("sampler", "tpe")
    if sampler not in _SAMPLERS:
        raise _fail(f"sampler {sampler!r} is unknown.{did_you_mean(str(sampler), _SAMPLERS)}", source)
    space = _check_space(data.get("space"), sampler, source)
    stop = data.get("early_termination") or {"policy": "none"}
    if not isinstance(stop, dict) or stop.get("policy", "none") not in _POLICIES:
        raise _fail(f"early_termination.policy must be one of {', '.join(sorted(_POLICIES))}.", source)
    limits = data.get("limits") or {}
    for key in limits:
        if key not in _LIMITS:
            raise _fail(f"unknown limit {key!r}.{did_you_mean(str(key), _LIMITS)}", source)
    max_trials = limits.get("max_trials", 20)
    concurrency = limits.get("concurrency", 1)
    for name, value in (("max_trials", max_trials), ("concurrency", concurrency)):
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise _fail(f"limits.{name} must be a whole number ≥ 1, not {value!r}.", source)
    timeouts = {}
    for name in ("timeout", "trial_timeout"):
        if limits.get(name) is not None:
            timeouts[name] = _number(limits[name], f"limits.{name}", source)
            if timeouts[name] <= 0:
                raise _fail(f"limits.{name} must be above 0.", source)
    executor = str(data.get("executor", "local"))
    if executor not in ("local", "dask-local") and not executor.startswith("dask://"):
        raise _fail(f"executor {executor!r} must be local, dask-local or dask://HOST:PORT.", source)
    seed = data.get("seed")
    if seed is not None and (isinstance(seed, bool) or not isinstance(seed, int)):
        raise _fail(f"seed must be a whole number, not {seed!r}.", source)
    return SweepSpec(
        experiment=str(data.get("experiment") or file.stem),
        metric=data["metric"],
        goal=goal,
        sampler=sampler,
        space=space,
        function=data.get("function"),
        script=data.get("script"),
        seed=seed,
        early_termination=dict(stop),
        max_trials=max_trials,
        concurrency=concurrency,
        timeout=timeouts.get("timeout"),
        trial_timeout=timeouts.get("trial_timeout"),
        executor=executor,
        base_dir=str(file.parent.resolve()),
    )


# -- inside a trial's process -----------------------------------------------------------------------


def report(value: float, step: int | None = None) -> None:
    """From a sweep's script: report the metric (at ``step`` for an intermediate value, without a step for
    the final one). Outside a sweep it does nothing."""
    fd = os.environ.get(_REPORT_FD)
    if fd is None:
        return
    line = orjson.dumps({"value": float(value), "step": step}) + b"\n"
    os.write(int(fd), line)


class _Trial:
    """What a sweep function receives besides its parameters."""

    def __init__(self, params: dict[str, Any]) -> None:
        self.params = params

    def report(self, value: float, step: int) -> None:
        report(value, step)


def _trial_main() -> None:  # pragma: no cover - runs in the trial's process (covered by the tests from outside)
    import importlib

    target, params = sys.argv[2], orjson.loads(sys.argv[3])
    sys.path.insert(0, str(Path.cwd()))
    module_name, _, attribute = target.partition(":")
    function: Callable[..., Any] = getattr(importlib.import_module(module_name), attribute)
    result = function(params, _Trial(params))
    if isinstance(result, dict):
        metric = os.environ["CONVEYOR_SWEEP_METRIC"]
        if metric not in result:
            raise KeyError(f"the function returned {sorted(result)} without the sweep's metric {metric!r}")
        result = result[metric]
    report(float(result))


# -- the driver -----------------------------------------------------------------------------------


def _command(spec: SweepSpec, params: dict[str, Any]) -> list[str]:
    if spec.function is not None:
        return [sys.executable, "-m", "conveyor.train._sweep", "trial", spec.function, orjson.dumps(params).decode()]
    assert spec.script is not None
    command = [sys.executable, str(Path(spec.base_dir) / spec.script)]
    for name, value in params.items():
        command += [f"--{name}", str(value)]
    return command


class _Process:
    """A trial process on this machine: reports arrive on a pipe, output goes to a file (never a full pipe)."""

    def __init__(self, command: list[str], cwd: str, metric: str) -> None:
        read_fd, write_fd = os.pipe()
        self.log = tempfile.TemporaryFile()  # noqa: SIM115 - closed in result()
        env = {**os.environ, _REPORT_FD: str(write_fd), "CONVEYOR_SWEEP_METRIC": metric}
        self.process = subprocess.Popen(
            command,
            cwd=cwd,
            env=env,
            pass_fds=(write_fd,),
            stdout=self.log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        os.close(write_fd)
        self.reader = os.fdopen(read_fd, "rb", buffering=0)
        os.set_blocking(read_fd, False)
        self.buffer = b""
        self.closed = False

    def read(self) -> tuple[list[bytes], bool]:
        if self.closed:
            return [], True
        while True:
            try:
                chunk = self.reader.read(65536)
            except BlockingIOError:
                chunk = None
            if chunk is None:  # nothing more for now
                break
            if not chunk:  # every writer closed: the process is over
                self.closed = True
                break
            self.buffer += chunk
        *lines, self.buffer = self.buffer.split(b"\n")
        return [line for line in lines if line.strip()], self.closed

    def kill(self) -> None:
        if self.process.poll() is None:
            self.process.kill()

    def result(self) -> tuple[int, bytes]:
        code = self.process.wait()
        self.reader.close()
        self.log.seek(0)
        output = self.log.read()
        self.log.close()
        return code, output


def _on_dask_worker(command: list[str], cwd: str, metric: str, queue_name: str, stop_name: str) -> tuple[int, bytes]:
    """Runs on a Dask worker: the trial's process there, its reports relayed through a distributed Queue,
    stopped when the driver sets the Event."""
    import importlib

    distributed: Any = importlib.import_module("distributed")  # untyped; Any keeps mypy --strict honest here
    queue, stop = distributed.Queue(queue_name), distributed.Event(stop_name)
    trial = _Process(command, cwd, metric)
    checked = 0.0
    while True:
        lines, done = trial.read()
        for line in lines:
            queue.put(line.decode())
        if done:
            break
        if time.monotonic() - checked > 0.2:
            checked = time.monotonic()
            if stop.is_set():
                trial.kill()
        time.sleep(0.02)
    return trial.result()


class _DaskTrial:
    queue: Any
    stop: Any

    def __init__(self, client: Any, command: list[str], cwd: str, metric: str) -> None:
        import importlib
        import uuid

        distributed: Any = importlib.import_module("distributed")
        name = uuid.uuid4().hex[:12]
        self.queue = distributed.Queue(f"conveyor-sweep-{name}", client=client)
        self.stop = distributed.Event(f"conveyor-sweep-stop-{name}", client=client)
        self.future = client.submit(
            _on_dask_worker, command, cwd, metric, self.queue.name, self.stop.name, pure=False, key=f"sweep-{name}"
        )

    def read(self) -> tuple[list[bytes], bool]:
        done = self.future.done()  # checked before draining: every put precedes the task's end
        lines = []
        while self.queue.qsize():
            lines.append(str(self.queue.get()).encode())
        return lines, done

    def kill(self) -> None:
        self.stop.set()

    def result(self) -> tuple[int, bytes]:
        try:
            code, output = self.future.result(timeout=30)
        except Exception as exc:  # noqa: BLE001 - a lost worker or a stopped task is the trial's failure
            return -1, f"the Dask task failed: {type(exc).__name__}: {exc}".encode()
        return int(code), bytes(output)


@dataclass
class _Running:
    number: int
    trial: Any
    run: Any
    handle: _Process | _DaskTrial
    started: float
    final: float | None = None
    pruned: bool = False
    steps: int = 0


def _sampler(spec: SweepSpec) -> Any:
    import optuna

    if spec.sampler == "random":
        return optuna.samplers.RandomSampler(seed=spec.seed)
    if spec.sampler == "grid":  # the grid's points are enqueued (Optuna's GridSampler only works in optimize())
        return optuna.samplers.RandomSampler(seed=spec.seed)
    return optuna.samplers.TPESampler(seed=spec.seed)


def _pruner(spec: SweepSpec) -> Any:
    import optuna

    policy = spec.early_termination
    if policy.get("policy") == "median":
        return optuna.pruners.MedianPruner(
            n_startup_trials=int(policy.get("startup_trials", 2)), n_warmup_steps=int(policy.get("warmup_steps", 0))
        )
    if policy.get("policy") == "successive_halving":
        return optuna.pruners.SuccessiveHalvingPruner(
            min_resource=policy.get("min_resource", "auto"), reduction_factor=int(policy.get("reduction_factor", 3))
        )
    return optuna.pruners.NopPruner()


def _grid(space: dict[str, dict[str, Any]]) -> list[dict[str, Any]]:
    """Every point of a finite space, in order."""
    import itertools

    axes = {
        name: p["values"] if p["type"] == "choice" else list(range(p["low"], p["high"] + 1, p["step"]))
        for name, p in space.items()
    }
    return [dict(zip(axes, values, strict=True)) for values in itertools.product(*axes.values())]


def _suggest(trial: Any, space: dict[str, dict[str, Any]]) -> dict[str, Any]:
    params: dict[str, Any] = {}
    for name, p in space.items():
        if p["type"] == "choice":
            params[name] = trial.suggest_categorical(name, p["values"])
        elif p["type"] == "int":
            params[name] = trial.suggest_int(name, p["low"], p["high"], step=p["step"])
        else:
            params[name] = trial.suggest_float(name, p["low"], p["high"], log=p["type"] == "loguniform")
    return params


def run_sweep(  # noqa: PLR0912, PLR0915
    ws: Workspace,
    spec: SweepSpec,
    *,
    on_trial: Callable[[SweepTrial], None] | None = None,
) -> SweepResult:
    """Run a sweep to its limits; return every trial and the best.

    Raises:
        BadInput: no trial produced a value (the first trial's error is quoted).
    """
    import optuna

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    study = optuna.create_study(
        direction="maximize" if spec.goal == "maximize" else "minimize", sampler=_sampler(spec), pruner=_pruner(spec)
    )
    started = time.monotonic()
    deadline = None if spec.timeout is None else started + spec.timeout
    max_trials = spec.max_trials
    if spec.sampler == "grid":
        points = _grid(spec.space)
        max_trials = min(max_trials, len(points))
        for point in points[:max_trials]:
            study.enqueue_trial(point)
    finished: list[SweepTrial] = []
    running: dict[int, _Running] = {}
    client, cluster = _dask_client(spec.executor, spec.concurrency)
    with ws.runs.start(spec.experiment, name="sweep", tags={"kind": "sweep", "sampler": spec.sampler}) as parent:
        parent.log_params(
            {
                "metric": spec.metric,
                "goal": spec.goal,
                "max_trials": max_trials,
                "space": orjson.dumps(spec.space).decode(),
            }
        )
        launched = 0
        try:
            while running or (launched < max_trials and (deadline is None or time.monotonic() < deadline)):
                while (
                    len(running) < spec.concurrency
                    and launched < max_trials
                    and (deadline is None or time.monotonic() < deadline)
                ):
                    trial = study.ask()
                    params = _suggest(trial, spec.space)
                    run = parent.child(f"trial-{trial.number}")
                    run.log_params(params)
                    command = _command(spec, params)
                    handle: _Process | _DaskTrial = (
                        _Process(command, spec.base_dir, spec.metric)
                        if client is None
                        else _DaskTrial(client, command, spec.base_dir, spec.metric)
                    )
                    running[trial.number] = _Running(trial.number, trial, run, handle, time.monotonic())
                    launched += 1
                active = False
                for state in list(running.values()):
                    lines, exited = state.handle.read()
                    active = active or bool(lines) or exited
                    for line in lines:
                        if not state.pruned:  # nothing counts after the pruning decision
                            _handle(state, orjson.loads(line), spec)
                    if state.pruned or exited:
                        finished.append(_finish(study, state, spec, "pruned" if state.pruned else "exited"))
                        del running[state.number]
                        _notify(on_trial, finished[-1])
                if not active:
                    time.sleep(0.02)
                now = time.monotonic()
                for state in list(running.values()):
                    over_deadline = deadline is not None and now >= deadline
                    over_trial = spec.trial_timeout is not None and now >= state.started + spec.trial_timeout
                    if over_deadline or over_trial:
                        why = (
                            "the sweep's timeout" if over_deadline else f"the trial timeout ({spec.trial_timeout:g} s)"
                        )
                        finished.append(_finish(study, state, spec, "killed", why))
                        del running[state.number]
                        _notify(on_trial, finished[-1])
        finally:
            for state in running.values():
                state.handle.kill()
                state.handle.result()
                state.run.end("killed", error="the sweep was stopped")
            if client is not None:
                client.close()
            if cluster is not None:
                cluster.close()
        completed = [t for t in finished if t.state == "finished" and t.value is not None]
        best = None
        if completed:
            best = (max if spec.goal == "maximize" else min)(completed, key=lambda t: t.value or 0.0)
            parent.log_metric(spec.metric, best.value or 0.0)
            parent.log_params({f"best.{k}": v for k, v in best.params.items()})
            parent.set_tags({"best_trial_run": best.run_id})
        parent.log_metrics(
            {
                "trials": len(finished),
                "pruned": sum(t.state == "pruned" for t in finished),
                "failed": sum(t.state == "failed" for t in finished),
            }
        )
        if best is None:
            first_error = next((t.error for t in finished if t.error), "no trial finished")
            raise BadInput(f"No trial of the sweep produced a value of {spec.metric!r}: {first_error}")
    return SweepResult(
        parent.id,
        spec.experiment,
        spec.metric,
        spec.goal,
        best,
        sorted(finished, key=lambda t: t.number),
        time.monotonic() - started,
    )


def _notify(callback: Callable[[SweepTrial], None] | None, trial: SweepTrial) -> None:
    if callback is not None:
        callback(trial)


def _handle(state: _Running, message: dict[str, Any], spec: SweepSpec) -> None:
    value = float(message["value"])
    step = message.get("step")
    if step is None:
        state.final = value
        return
    state.steps += 1
    state.run.log_metric(spec.metric, value, step=int(step))
    state.trial.report(value, int(step))
    if state.trial.should_prune():
        state.pruned = True


def _finish(study: Any, state: _Running, spec: SweepSpec, how: str, why: str = "") -> SweepTrial:
    import optuna

    seconds = time.monotonic() - state.started
    if how != "exited":
        state.handle.kill()
    code, output = state.handle.result()
    if output:
        state.run.log_bytes("trial.log", output, "text/plain")
    params = dict(state.trial.params)
    if how == "exited":
        if code == 0 and state.final is not None:
            study.tell(state.trial, state.final)
            state.run.log_metric(spec.metric, state.final, step=state.steps)
            state.run.end("finished")
            return SweepTrial(state.number, state.run.id, params, "finished", state.final, seconds)
        last = [line for line in output.decode(errors="replace").strip().splitlines() if line.strip()]
        error = last[-1] if last else f"exit code {code}"
        if code == 0:
            error = f"the trial ended without reporting a final value of {spec.metric!r}"
        study.tell(state.trial, state=optuna.trial.TrialState.FAIL)
        state.run.end("failed", error=error)
        return SweepTrial(state.number, state.run.id, params, "failed", None, seconds, error)
    if how == "pruned":
        study.tell(state.trial, state=optuna.trial.TrialState.PRUNED)
        state.run.set_tag("pruned", "true")
        state.run.end("finished")
        return SweepTrial(state.number, state.run.id, params, "pruned", None, seconds)
    study.tell(state.trial, state=optuna.trial.TrialState.FAIL)
    error = f"stopped by {why}"
    state.run.end("killed", error=error)
    return SweepTrial(state.number, state.run.id, params, "killed", None, seconds, error)


def _dask_client(executor: str, workers: int) -> tuple[Any, Any]:
    """(client, cluster) for ``dask-local`` or ``dask://HOST:PORT``; (None, None) for local processes.

    Raises:
        BadInput: Dask is not installed.
        StoreUnavailable: the scheduler cannot be reached.
    """
    if executor == "local":
        return None, None
    from conveyor.pipelines._dask import DaskExecutor

    dask = DaskExecutor(executor, workers=workers)
    dask.start()
    return dask.client(), dask._cluster


if __name__ == "__main__":  # pragma: no cover
    if len(sys.argv) > 1 and sys.argv[1] == "trial":
        _trial_main()
