"""Online serving: requests per second, latency, a soak and deploy-to-live, against MLflow and a Flask app.

The reference model for every server: scikit-learn's breast-cancer data, ``StandardScaler`` +
``LogisticRegression``, trained by the same code on each side (``benchmarks/peers/serving_peers.py``); every
server is checked to score the same five rows the same way before it is measured. Every request is one row of
30 features as JSON. The servers run one after another in the same run, each alone on the machine while it is
measured:

1. ``mlflow models serve --env-manager local`` on the model logged with ``mlflow.sklearn`` (MLflow's default
   of one uvicorn worker), ``POST /invocations`` with ``{"dataframe_records": [row]}``;
2. the seeds' plain Flask app (pickle, ``model.predict(pd.DataFrame(request.json))``) on Flask's built-in
   threaded server, ``POST /predict`` with ``[row]``;
3. Conveyor: the model registered in a fresh workspace and deployed as an endpoint, ``POST /predict`` with
   ``[row]``.

Then, in the same run and workspace, the models Conveyor's own AutoML makes (what ships, with the LR above as
their reference): the quickstart's AutoML model (its call, on its churn data) and an XGBoost/LightGBM ensemble
on 8 generated numeric columns. Each is registered by AutoML, timed in process (one-row ``predict_proba``), and
served by a Conveyor endpoint with its defaults (engine auto: the learners' ONNX conversions), then by the
Flask app and ``mlflow models serve`` on Conveyor's portable MLflow export of the same version (``mlflow.pyfunc``
loads it without conveyor installed; the peers' environment has no onnxruntime, so there it scores natively).
Every server is checked to give the same labels for a few rows of both classes, and the export's probabilities
are compared with Conveyor's, before timing.

Load comes from ``wrk`` (a Lua script sets the POST body and prints a JSON summary when done): 64
connections on 2 threads, then one connection on one thread for the unloaded latency. Conveyor alone then
takes a soak at 64 connections (the LR model), with its workers' memory read before and after. wrk and the
servers share the machine's cores, as they would on a small production box; wrk is closed-loop (a slow response
delays the next request on its connection), so its percentiles understate queueing under overload.

Durations (seconds) come from the environment so a quick run exists: ``SERVING_BENCH_QUICK=1`` (load 3,
latency 3, soak 10, warm-up 1), or each of ``SERVING_BENCH_LOAD_S``, ``SERVING_BENCH_LATENCY_S``,
``SERVING_BENCH_SOAK_S``, ``SERVING_BENCH_WARMUP_S``; the AutoML models' servers take the same durations. A
result measured with other than the default durations says so in its notes. All traffic goes to 127.0.0.1.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import socket
import statistics
import subprocess
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import httpx

from benchmarks._harness import BENCH_DIR, Context, Result, Side, peer_versions, print_table, save, timed
from benchmarks.peers.serving_peers import PROBA_CALLS, PROBA_WARMUP

LOOPBACK = "127.0.0.1"
CONNECTIONS, THREADS = 64, 2
WRK_TIMEOUT = "5s"  # a response slower than this counts as a socket error (wrk's default is 2 s)
MODEL_NAME = "breast-cancer"
ENDPOINT = "breast-cancer"

TARGET_RATIO = 10.0  # Conveyor's requests/s over each peer's
TARGET_P99_MS = 25.0  # at 64 connections, worst run
TARGET_LATENCY_MS = 1.5  # median at one connection
TARGET_RSS_GROWTH_PCT = 10.0  # any worker, over the soak
TARGET_DEPLOY_S = 3.0  # deploy call to first good prediction

PEERS_SCRIPT = BENCH_DIR / "peers" / "serving_peers.py"
START_TIMEOUT_S = 180.0  # MLflow's import alone takes many seconds on a small machine


@dataclass(frozen=True)
class Durations:
    load: float = 15.0
    latency: float = 10.0
    soak: float = 60.0
    warmup: float = 3.0

    @classmethod
    def from_env(cls) -> Durations:
        base = cls(3.0, 3.0, 10.0, 1.0) if os.environ.get("SERVING_BENCH_QUICK", "") not in ("", "0") else cls()

        def pick(name: str, default: float) -> float:
            value = os.environ.get(f"SERVING_BENCH_{name}_S")
            return float(value) if value else default

        return cls(
            pick("LOAD", base.load), pick("LATENCY", base.latency), pick("SOAK", base.soak), pick("WARMUP", base.warmup)
        )

    @property
    def official(self) -> bool:
        return self == Durations()

    def __str__(self) -> str:
        return f"load {self.load:g} s, latency {self.latency:g} s, soak {self.soak:g} s, warm-up {self.warmup:g} s"


# -- wrk ---------------------------------------------------------------------------------------------------

_LUA = """-- Written by benchmarks/serving.py: POST one JSON body; print a JSON summary when done.
wrk.method = "POST"
wrk.headers["Content-Type"] = "application/json"
wrk.body = [==[{body}]==]

function done(summary, latency, requests)
  local e = summary.errors
  io.write(string.format(
    'WRK_SUMMARY {{"requests": %d, "duration_us": %d, "connect": %d, "read": %d, "write": %d, ' ..
    '"status": %d, "timeout": %d, "p50_us": %.1f, "p90_us": %.1f, "p99_us": %.1f, "mean_us": %.1f, ' ..
    '"max_us": %.1f}}\\n',
    summary.requests, summary.duration, e.connect, e.read, e.write, e.status, e.timeout,
    latency:percentile(50), latency:percentile(90), latency:percentile(99), latency.mean, latency.max))
end
"""


@dataclass(frozen=True)
class WrkRun:
    """One wrk run's summary, as its Lua ``done`` printed it."""

    connections: int
    requests: int
    seconds: float
    errors: dict[str, int]
    p50_ms: float
    p90_ms: float
    p99_ms: float
    mean_ms: float
    max_ms: float

    @property
    def per_second(self) -> float:
        return self.requests / self.seconds if self.seconds else 0.0

    @property
    def error_count(self) -> int:
        """Non-2xx responses (wrk counts status ≥ 400; servers are checked for 200s beforehand) + socket errors."""
        return sum(self.errors.values())

    def brief(self) -> str:
        latency = f"p50 {self.p50_ms:.2f} ms, p99 {self.p99_ms:.2f} ms"
        return f"{self.per_second:,.0f} req/s, {latency}, {self.error_count} errors"


def wrk(url: str, body: bytes, *, connections: int, threads: int, seconds: float, work: Path) -> WrkRun:
    """Run wrk against ``url`` (which must be on 127.0.0.1) POSTing ``body``; return its summary."""
    if urlsplit(url).hostname != LOOPBACK:
        raise RuntimeError(f"refusing to send load to {url}: the benchmark only targets {LOOPBACK}")
    text = body.decode()
    if "]==]" in text:
        raise RuntimeError("the request body would end the Lua long string")
    script = work / "post.lua"
    script.write_text(_LUA.format(body=text))
    wrk_bin = shutil.which("wrk")
    if wrk_bin is None:
        raise RuntimeError("wrk is not installed (apt-get install wrk)")
    command = [
        wrk_bin,
        f"-t{threads}",
        f"-c{connections}",
        f"-d{max(1, round(seconds))}s",
        f"--timeout={WRK_TIMEOUT}",
        "--latency",
        f"-s{script}",
        url,
    ]
    _, out = timed(command, timeout=seconds + 120)
    line = next((li for li in out.splitlines() if li.startswith("WRK_SUMMARY ")), None)
    if line is None:
        raise RuntimeError(f"wrk printed no summary:\n{out[-2000:]}")
    data = json.loads(line.removeprefix("WRK_SUMMARY "))
    return WrkRun(
        connections=connections,
        requests=int(data["requests"]),
        seconds=data["duration_us"] / 1e6,
        errors={k: int(data[k]) for k in ("connect", "read", "write", "status", "timeout")},
        p50_ms=data["p50_us"] / 1000,
        p90_ms=data["p90_us"] / 1000,
        p99_ms=data["p99_us"] / 1000,
        mean_ms=data["mean_us"] / 1000,
        max_ms=data["max_us"] / 1000,
    )


# -- servers -----------------------------------------------------------------------------------------------


@dataclass
class Server:
    """A server that is up and answering: where to POST, what, and which processes are its own."""

    name: str
    url: str
    body: bytes
    wrap: Callable[[list[dict[str, Any]]], Any]  # records → this server's request JSON
    pid: int  # the top process; its descendants are the workers
    live_seconds: float  # from start (or deploy call) to the first correct prediction
    base: str = ""  # Conveyor's base URL, for its other routes


@dataclass
class Measured:
    server: Server
    loads: list[WrkRun] = field(default_factory=list)
    singles: list[WrkRun] = field(default_factory=list)
    rss_mib: float = 0.0
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def worst_p99_ms(self) -> float:
        return max(r.p99_ms for r in self.loads)

    @property
    def errors(self) -> int:
        return sum(r.error_count for r in self.loads) + sum(r.error_count for r in self.singles)

    def detail(self) -> dict[str, Any]:
        return {
            "64 connections, per run": "; ".join(r.brief() for r in self.loads),
            "1 connection, per run": "; ".join(r.brief() for r in self.singles),
            "worst p99 at 64 connections": f"{self.worst_p99_ms:.2f} ms",
            "errors (non-2xx + socket), all runs": self.errors,
            "first correct prediction after start": f"{self.server.live_seconds:.2f} s",
            "server processes' RSS after the runs": f"{self.rss_mib:.0f} MiB",
            **self.extra,
        }


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind((LOOPBACK, 0))
        return int(sock.getsockname()[1])


def _predictions(url: str, payload: Any, timeout: float = 5.0) -> list[Any] | None:
    """The server's predictions for ``payload``, or None while it does not answer 200."""
    try:
        response = httpx.post(
            url, content=json.dumps(payload), headers={"Content-Type": "application/json"}, timeout=timeout
        )
    except httpx.HTTPError:
        return None
    if response.status_code != 200:
        return None
    predictions = response.json().get("predictions")
    return list(predictions) if isinstance(predictions, list) else None


def _wait_live(
    url: str, payload: Any, expected: list[Any], started: float, alive: Callable[[], bool], what: str
) -> float:
    """Poll with a real prediction until the answer is right; seconds since ``started``."""
    deadline = started + START_TIMEOUT_S
    while time.perf_counter() < deadline:
        got = _predictions(url, payload, timeout=2.0)
        if got is not None:
            if got != expected:
                raise RuntimeError(f"{what} predicted {got}, expected {expected}: not the same model")
            return time.perf_counter() - started
        if not alive():
            raise RuntimeError(f"{what} exited before it answered")
        time.sleep(0.005)  # fine-grained: deploy-to-live is measured with this loop
    raise RuntimeError(f"{what} did not answer within {START_TIMEOUT_S:.0f} s")


def _check_same_model(server: Server, rows: list[dict[str, Any]], expected: list[Any]) -> None:
    got = _predictions(server.url, server.wrap(rows))
    if got != expected:
        raise RuntimeError(f"{server.name} scored the check rows {got}, expected {expected}")


def _tree_rss_mib(pid: int) -> float:
    import psutil

    with contextlib.suppress(psutil.Error):
        top = psutil.Process(pid)
        total = 0
        for p in [top, *top.children(recursive=True)]:
            with contextlib.suppress(psutil.Error):
                total += p.memory_info().rss
        return total / 2**20
    return 0.0


def _group_alive(pgid: int) -> bool:
    try:
        os.killpg(pgid, 0)
    except ProcessLookupError:
        return False
    return True


def _kill_group(process: subprocess.Popen[bytes]) -> None:
    """SIGTERM the whole process group, SIGKILL what lingers.

    The group, not the process: ``mlflow models serve`` runs uvicorn as a child, and a child can outlive its
    parent. The group id stays reserved while any member lives, so this never signals a stranger.
    """
    with contextlib.suppress(ProcessLookupError):
        os.killpg(process.pid, signal.SIGTERM)
    deadline = time.monotonic() + 15
    while time.monotonic() < deadline:
        process.poll()  # reap the leader so it does not linger as a zombie member
        if not _group_alive(process.pid):
            return
        time.sleep(0.05)
    with contextlib.suppress(ProcessLookupError):
        os.killpg(process.pid, signal.SIGKILL)
    process.wait(timeout=15)


@contextlib.contextmanager
def _peer_process(
    name: str, command: list[str], env: dict[str, str], url: str, wrap: Callable[[list[dict[str, Any]]], Any],
    row: dict[str, Any], expected: Any, log: Path, cwd: Path,
) -> Iterator[Server]:  # fmt: skip
    with log.open("ab") as log_file:
        started = time.perf_counter()
        process = subprocess.Popen(command, env=env, stdout=log_file, stderr=log_file, cwd=cwd, start_new_session=True)
    try:
        live = _wait_live(url, wrap([row]), [expected], started, lambda: process.poll() is None, name)
        yield Server(name, url, json.dumps(wrap([row])).encode(), wrap, process.pid, live, url)
    except RuntimeError as exc:
        tail = log.read_text(errors="replace").strip().splitlines()[-20:]
        raise RuntimeError(f"{exc}; last lines of {log}:\n" + "\n".join(tail)) from exc
    finally:
        _kill_group(process)


def _peer_env(prep: dict[str, Any], ctx: Context) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("MLFLOW_", "VIRTUAL_ENV", "PYTHON"))}
    # MLFLOW_MODELS_WORKERS is dropped above so MLflow runs with its own default (one uvicorn worker).
    env["PATH"] = f"{ctx.peer_bin('python').parent}:{env.get('PATH', '/usr/bin:/bin')}"
    env["MLFLOW_TRACKING_URI"] = str(prep["tracking_uri"])
    return env


# -- Conveyor ----------------------------------------------------------------------------------------------


def _deploy(ws: Any, endpoint: str, ref: str, **create_options: Any) -> tuple[str, int, float]:
    """Create and deploy ``ref``: the base URL, the supervisor's process id, and when deploy was called
    (``time.perf_counter()``; create only writes the endpoint's row and is not counted in deploy-to-live)."""
    ws.endpoints.create(endpoint, auth="none", **create_options)
    called = time.perf_counter()
    ws.endpoints.deploy(endpoint, ref, deployment="blue")
    found = ws.endpoints.get(endpoint)
    return str(found.url), int(found.pid), called


def _workers(pid: int) -> list[Any]:
    """The serving workers: the supervisor's children, or the process itself when it serves alone."""
    import psutil

    top = psutil.Process(pid)
    workers = []
    for child in top.children():
        with contextlib.suppress(psutil.Error):
            # multiprocessing's resource tracker is a helper, not a worker: its memory says nothing of serving.
            if not any("resource_tracker" in part for part in child.cmdline()):
                workers.append(child)
    return workers or [top]


def _process_tree(pid: int) -> list[Any]:
    """The process and its descendants, as psutil handles (they notice if a pid is reused later)."""
    import psutil

    try:
        top = psutil.Process(pid)
        return [top, *top.children(recursive=True)]
    except psutil.Error:
        return []


def _kill_survivors(processes: list[Any]) -> None:
    """Last resort after delete/stop: nothing the benchmark started may outlive it."""
    import psutil

    for p in processes:
        with contextlib.suppress(psutil.Error):
            p.terminate()  # psutil refuses if the pid now belongs to another process
    _, alive = psutil.wait_procs(processes, timeout=10)
    for p in alive:
        with contextlib.suppress(psutil.Error):
            p.kill()


@contextlib.contextmanager
def _conveyor_endpoint(
    ws: Any, endpoint: str, row: dict[str, Any], expected: Any, ref: str = f"{MODEL_NAME}:1", **idle_options: Any
) -> Iterator[Server]:
    pid: int | None = None
    try:
        url, pid, started = _deploy(ws, endpoint, ref, **idle_options)
        if urlsplit(url).hostname != LOOPBACK:
            raise RuntimeError(f"Conveyor served at {url}; the benchmark expects {LOOPBACK}")
        base = url.rstrip("/")
        live = _wait_live(f"{base}/predict", [row], [expected], started, lambda: _alive(pid), "Conveyor")

        def wrap(rows: list[dict[str, Any]]) -> Any:
            return rows

        yield Server("Conveyor", f"{base}/predict", json.dumps([row]).encode(), wrap, pid, live, base)
    finally:
        processes = _process_tree(pid) if pid is not None else []
        with contextlib.suppress(Exception):  # a half-made endpoint must not hide the original error
            ws.endpoints.delete(endpoint)
        _kill_survivors(processes)


def _alive(pid: int | None) -> bool:
    import psutil

    if pid is None:
        return False
    try:
        return bool(psutil.Process(pid).status() != psutil.STATUS_ZOMBIE)
    except psutil.Error:
        return False


# -- measuring ---------------------------------------------------------------------------------------------


def _measure(server: Server, durations: Durations, repeat: int, work: Path) -> Measured:
    print(f"  {server.name}: up in {server.live_seconds:.2f} s; measuring", flush=True)

    def go(connections: int, threads: int, seconds: float) -> WrkRun:
        return wrk(server.url, server.body, connections=connections, threads=threads, seconds=seconds, work=work)

    go(CONNECTIONS, THREADS, durations.warmup)  # first requests pay for lazy imports and caches: not counted
    measured = Measured(server)
    for _ in range(repeat):
        measured.loads.append(go(CONNECTIONS, THREADS, durations.load))
        print(f"    64 connections: {measured.loads[-1].brief()}", flush=True)
    for _ in range(repeat):
        measured.singles.append(go(1, 1, durations.latency))
        print(f"    1 connection: {measured.singles[-1].brief()}", flush=True)
    measured.rss_mib = _tree_rss_mib(server.pid)
    return measured


def _mlflow_route(server: Server, rows: list[dict[str, Any]], expected: list[Any], seconds: float, work: Path) -> str:
    """Conveyor's MLflow-format route with MLflow's very body: the comparison protocol for protocol."""
    url = f"{server.base}/invocations"
    got = _predictions(url, {"dataframe_records": rows})
    if got is None:
        return "not measured: POST /invocations did not answer 200 (not in this Conveyor yet)"
    if got != expected:
        return f"not measured: /invocations predicted {got}, expected {expected}"
    body = json.dumps({"dataframe_records": rows[:1]}).encode()
    run = wrk(url, body, connections=CONNECTIONS, threads=THREADS, seconds=seconds, work=work)
    print(f"    /invocations, 64 connections: {run.brief()}", flush=True)
    return run.brief()


@dataclass
class Soak:
    run: WrkRun
    rss_before_mib: dict[int, float]
    rss_after_mib: dict[int, float]

    @property
    def max_growth_pct(self) -> float:
        growths = [
            100 * (self.rss_after_mib[pid] - before) / before
            for pid, before in self.rss_before_mib.items()
            if pid in self.rss_after_mib and before > 0
        ]
        return max(growths) if growths else float("nan")

    @property
    def same_workers(self) -> bool:
        """A worker replaced during the soak (a crash, a recycle) would hide growth and is itself a finding."""
        return set(self.rss_before_mib) == set(self.rss_after_mib)


def _rss_by_worker(pid: int) -> dict[int, float]:
    return {p.pid: p.memory_info().rss / 2**20 for p in _workers(pid)}


def _soak(server: Server, durations: Durations, work: Path) -> Soak:
    # The load runs before it warmed the workers up, so this reading is after warm-up.
    before = _rss_by_worker(server.pid)
    run = wrk(server.url, server.body, connections=CONNECTIONS, threads=THREADS, seconds=durations.soak, work=work)
    after = _rss_by_worker(server.pid)
    soak = Soak(run, before, after)
    print(f"    soak {durations.soak:.0f} s: {run.brief()}, worker RSS growth {soak.max_growth_pct:.1f} %", flush=True)
    return soak


def _cold_start(ws: Any, row: dict[str, Any], expected: Any) -> tuple[float | None, str]:
    """Seconds from the first request after scale-to-zero to its answer, or None and why not."""
    import psutil

    idle_s = 2.0
    try:
        with _conveyor_endpoint(ws, "cold-start", row, expected, idle_timeout=idle_s) as server:
            # Scaled to zero = the supervisor is up with no worker processes left.
            deadline = time.monotonic() + idle_s + 60
            while psutil.Process(server.pid).children():
                if time.monotonic() > deadline:
                    return None, f"not measured: no scale-to-zero seen within {idle_s + 60:.0f} s"
                time.sleep(0.1)
            started = time.perf_counter()
            seconds = _wait_live(server.url, [row], [expected], started, lambda: True, "Conveyor after idle")
            return seconds, f"idle_timeout={idle_s:g}"
    except Exception as exc:  # optional figure: report why, never fail the benchmark for it
        return None, f"not measured: {type(exc).__name__}: {exc}"


# -- the peers ---------------------------------------------------------------------------------------------


def _mlflow_wrap(records: list[dict[str, Any]]) -> Any:
    return {"dataframe_records": records}


def _flask_wrap(records: list[dict[str, Any]]) -> Any:
    return records


def _measure_mlflow_serve(
    ctx: Context, env: dict[str, str], model_uri: str, rows: list[dict[str, Any]], expected: list[Any],
    durations: Durations, log: str,
) -> Measured:  # fmt: skip
    """``mlflow models serve`` on ``model_uri`` (a registered model's URI or a model folder), checked and measured."""
    port = _free_port()
    command = [str(ctx.peer_bin("mlflow")), "models", "serve", "-m", model_uri,
               "--env-manager", "local", "-h", LOOPBACK, "-p", str(port)]  # fmt: skip
    url = f"http://{LOOPBACK}:{port}/invocations"
    return _measure_peer(ctx, env, "mlflow models serve", command, url, _mlflow_wrap, rows, expected, durations, log)


def _measure_flask(
    ctx: Context, env: dict[str, str], mode: list[str], rows: list[dict[str, Any]], expected: list[Any],
    durations: Durations, log: str,
) -> Measured:  # fmt: skip
    """The Flask app (``serving_peers.py MODE MODEL``: a pickle, or an MLflow folder), checked and measured."""
    port = _free_port()
    command = [str(ctx.peer_python()), str(PEERS_SCRIPT), *mode, str(port)]
    url = f"http://{LOOPBACK}:{port}/predict"
    return _measure_peer(ctx, env, "Flask app", command, url, _flask_wrap, rows, expected, durations, log)


def _measure_peer(
    ctx: Context, env: dict[str, str], name: str, command: list[str], url: str,
    wrap: Callable[[list[dict[str, Any]]], Any], rows: list[dict[str, Any]], expected: list[Any],
    durations: Durations, log: str,
) -> Measured:  # fmt: skip
    with _peer_process(
        name, command, env, url, wrap, rows[0], expected[0], ctx.work / f"{log}.log", ctx.work
    ) as server:  # fmt: skip
        _check_same_model(server, rows, expected)
        return _measure(server, durations, ctx.repeat, ctx.work)


# -- the models Conveyor's AutoML makes --------------------------------------------------------------------

TARGET_AUTOML_SHARE = 0.5  # an AutoML model's requests/s on Conveyor over the hand-made LR's, same run
AUTOML_CHECK_PER_CLASS = 4  # check rows per predicted class, so a server that answers one class fails
PROBA_TOLERANCE = 1e-4  # the export scored natively in the peers' environment vs Conveyor's copy


@dataclass(frozen=True)
class AutoMLCase:
    """One model Conveyor's AutoML makes, as the benchmark trains it."""

    key: str  # names the endpoint, the registered model, the results
    label: str  # in titles: "Serving {label}: …"
    call: str  # the training call, for the notes
    train: Callable[[Any, str], tuple[Any, Any]]  # (workspace, name to register) → (AutoML result, features)
    proba_target_ms: float  # in-process one-row predict_proba, median
    rps_target: float | None  # Conveyor at 64 connections, if the issue sets one


def _train_quickstart(ws: Any, name: str) -> tuple[Any, Any]:
    """The quickstart's AutoML call on the quickstart's data (its pipeline drops the id column by SQL)."""
    from conveyor.quickstart._churn import ID_COLUMN, TARGET, make_churn_frame
    from conveyor.quickstart._pipeline import AUTOML_BUDGET

    frame = make_churn_frame(20_000, 7).drop(columns=[ID_COLUMN])
    result = ws.train.automl(frame, TARGET, time_budget=AUTOML_BUDGET, seed=7, register=name)
    return result, frame.drop(columns=[TARGET])


def boosting_frame(rows: int = 5_000, seed: int = 0) -> Any:
    """8 numeric columns and a binary ``y`` with interactions a linear model misses; the same every time."""
    import numpy as np
    import pandas as pd

    rng = np.random.default_rng(seed)
    x = rng.normal(size=(rows, 8))
    frame = pd.DataFrame(x, columns=[f"x{i}" for i in range(8)])
    signal = x[:, 0] * x[:, 1] + np.sin(2 * x[:, 2]) + x[:, 3] + 0.5 * x[:, 4] + rng.normal(0, 0.5, rows)
    frame["y"] = (signal > 0).astype("int64")
    return frame


def _train_boosting(ws: Any, name: str) -> tuple[Any, Any]:
    frame = boosting_frame()
    result = ws.train.automl(frame, "y", time_budget=30, learners=["xgboost", "lightgbm"], seed=0, register=name)
    return result, frame.drop(columns=["y"])


AUTOML_CASES = [
    AutoMLCase(
        "automl-quickstart",
        "the quickstart's AutoML model",
        "ws.train.automl(make_churn_frame(20_000, 7) without customer_id, 'churned', "
        "time_budget=AUTOML_BUDGET (from conveyor.quickstart), seed=7, register=...)",
        _train_quickstart,
        proba_target_ms=1.0,
        rps_target=5000.0,
    ),
    AutoMLCase(
        "automl-boosting",
        "an AutoML XGBoost/LightGBM ensemble",
        "ws.train.automl(8 numeric columns × 5,000 rows (benchmarks.serving.boosting_frame), 'y', time_budget=30, "
        "learners=['xgboost', 'lightgbm'], seed=0, register=...)",
        _train_boosting,
        proba_target_ms=2.0,
        rps_target=None,
    ),
]


@dataclass
class AutoMLServed:
    """An AutoML model measured on Conveyor and on the peers (its portable MLflow export)."""

    case: AutoMLCase
    ref: str
    model_bytes: int  # the registered version's model file
    inference: str  # model.inference of the registered model, loaded back
    engine: str  # what the endpoint reports for its deployment
    trained: str
    check_rows: int
    proba_ms: list[float]
    peer: dict[str, Any]  # serving_peers.py score: the export in the peers' environment
    max_proba_diff: float
    conveyor: Measured
    flask: Measured
    mlflow: Measured


def _check_rows(model: Any, features: Any) -> Any:
    """The first few rows of each predicted class and the first row with a missing value (if the data has
    one), in the data's order: the first row is the data's first."""
    head = features.head(500)
    labels = list(model.predict(head))
    picked = {
        i for label in set(labels) for i in [j for j, got in enumerate(labels) if got == label][:AUTOML_CHECK_PER_CLASS]
    }
    missing = [i for i, gap in enumerate(head.isna().any(axis=1)) if gap]
    return head.iloc[sorted(picked | set(missing[:1]))].reset_index(drop=True)


def _endpoint_engine(server: Server) -> str:
    """The engine Conveyor's endpoint reports for its deployment (``GET /``)."""
    try:
        described = httpx.get(f"{server.base}/", timeout=5.0).json()
        return str(described["deployments"][0]["engine"])
    except (httpx.HTTPError, ValueError, KeyError, IndexError) as exc:
        return f"unknown ({type(exc).__name__})"


def _serve_automl(ctx: Context, ws: Any, case: AutoMLCase, env: dict[str, str], durations: Durations) -> AutoMLServed:
    import numpy as np

    from benchmarks.peers.serving_peers import proba_median_ms

    print(f"  {case.key}: training {case.call}", flush=True)
    result, features = case.train(ws, case.key)
    ref = str(result.model_ref)
    version = ws.models.get(ref)
    model = ws.models.load(ref)  # what serving loads: the registered file, not the object AutoML returned
    inference = str(getattr(model, "inference", "native"))
    trained = (
        f"{len(result.trials)} trials in {result.seconds:.1f} s (budget {result.time_budget:g} s), best learner "
        f"{result.best_learner}, members {', '.join(getattr(model, 'learners', None) or [result.best_learner])}, "
        f"{sum(len(pipelines) for pipelines, _ in getattr(model, 'members', None) or [])} fitted pipelines, "
        f"refit {result.refit}; held-out " + ", ".join(f"{k} {v:.3f}" for k, v in sorted(result.test_metrics.items()))
    )
    print(f"  {ref}: {trained}; {version.size:,} bytes; inference {inference}", flush=True)

    check = _check_rows(model, features)
    rows: list[dict[str, Any]] = json.loads(check.to_json(orient="records", double_precision=15))
    expected: list[Any] = model.predict(check).tolist()
    probabilities = np.asarray(model.predict_proba(check))
    proba_ms = [proba_median_ms(model, check.head(1)) for _ in range(ctx.repeat)]
    print(f"  in-process predict_proba, one row: {', '.join(f'{ms:.3f} ms' for ms in proba_ms)}", flush=True)

    export_dir = ctx.work / f"{case.key}-mlflow"
    ws.models.export(ref, export_dir, format="mlflow")
    check_path = ctx.work / f"{case.key}-check.parquet"
    check.to_parquet(check_path)
    _, out = timed(
        [str(ctx.peer_python()), str(PEERS_SCRIPT), "score", str(export_dir), str(check_path), str(ctx.repeat)],
        env={"MLFLOW_TRACKING_URI": ""},
        cwd=ctx.work,
    )
    peer: dict[str, Any] = json.loads(out.strip().splitlines()[-1])
    if peer["conveyor_importable"]:
        raise RuntimeError("the peers' environment can import conveyor: the export's portability is not tested")
    if peer["predictions"] != expected:
        raise RuntimeError(f"the MLflow export of {ref} predicted {peer['predictions']}, Conveyor {expected}")
    max_diff = float(np.max(np.abs(np.asarray(peer["probabilities"]) - probabilities)))
    # A learner library of another version than the export pins (the peers' environment is pinned for the other
    # benchmarks) may score a little differently; without such a difference the export must agree.
    excuses = [pin for pin in peer["unmet_pins"] if not pin.startswith("onnxruntime==")]
    if max_diff > PROBA_TOLERANCE and not excuses:
        raise RuntimeError(f"the MLflow export of {ref} gives probabilities {max_diff:.2e} away from Conveyor's")
    print(
        f"  the export in the peers' environment scores {peer['engine']}; probabilities within {max_diff:.1e} of "
        f"Conveyor's; unmet pins of the export there: {', '.join(peer['unmet_pins']) or 'none'}",
        flush=True,
    )

    with _conveyor_endpoint(ws, case.key, rows[0], expected[0], ref=ref) as server:
        _check_same_model(server, rows, expected)
        engine = _endpoint_engine(server)
        conveyor = _measure(server, durations, ctx.repeat, ctx.work)
    flask = _measure_flask(ctx, env, ["flask-mlflow", str(export_dir)], rows, expected, durations, f"{case.key}-flask")
    mlflow = _measure_mlflow_serve(ctx, env, str(export_dir), rows, expected, durations, f"{case.key}-mlflow-serve")
    return AutoMLServed(
        case,
        ref,
        version.size,
        inference,
        engine,
        trained,
        len(rows),
        proba_ms,
        peer,
        max_diff,
        conveyor,
        flask,
        mlflow,
    )


def _automl_results(
    ctx: Context, durations: Durations, versions: dict[str, str], served: AutoMLServed, lr: Measured
) -> list[Result]:
    case, conveyor = served.case, served.conveyor
    rps = statistics.median(r.per_second for r in conveyor.loads)
    lr_rps = statistics.median(r.per_second for r in lr.loads)
    share = rps / lr_rps if lr_rps else 0.0
    size = f"{served.model_bytes:,} bytes ({served.model_bytes / 2**20:.2f} MiB)"
    peer = served.peer
    ort = "has onnxruntime" if peer["onnxruntime_importable"] else "has no onnxruntime"
    peer_env = (
        "The peers serve Conveyor's portable MLflow export of the same version (`ws.models.export(ref, DIR, "
        "format='mlflow')`: model.pkl + Conveyor's runtime as code; conveyor is not installed in their "
        f"environment), loaded with mlflow.pyfunc.load_model. Their environment {ort}, so there the model scores "
        f"{peer['engine']} (its learners themselves), whatever model.inference says."
    )
    unmet = ", ".join(peer["unmet_pins"]) or "none"
    agreement = (
        f"the export's probabilities in the peers' environment are within {served.max_proba_diff:.1e} of "
        f"Conveyor's for those rows; the export's pinned requirements that environment does not meet: {unmet}"
    )
    if served.max_proba_diff > PROBA_TOLERANCE:
        agreement += (
            " (a learner library there is not the version the export pins, and scores a little differently; the "
            "labels agree)"
        )
    notes = [
        f"Model: {case.call}; {served.trained}. Registered model file: {size}.",
        f"{served.check_rows} check rows (both predicted classes, and a row with missing values where the data "
        f"has them) are scored the same by every server before timing; {agreement}.",
        peer_env,
        f"One row per request as JSON (the data's first row); wrk {THREADS} threads × {CONNECTIONS} connections "
        f"for {durations.load:g} s, {_runs(ctx.repeat)} per server after a {durations.warmup:g} s warm-up; servers "
        "one after another, each alone, wrk on the same 2-core machine.",
    ]
    if not durations.official:
        notes.append(f"Not the official durations (quick mode): {durations}.")
    c_detail = {
        "model": served.ref,
        "registered model file": size,
        "model.inference": served.inference,
        "endpoint engine (GET /)": served.engine,
        "endpoint": "defaults (engine auto, default batching, one worker per core)",
        "share of the hand-made LR's requests/s on Conveyor, same run": f"{100 * share:.0f} % "
        f"({rps:,.0f} vs {lr_rps:,.0f} req/s)",
        **conveyor.detail(),
    }
    c_side = Side("Conveyor", [r.per_second for r in conveyor.loads], "req/s", c_detail)
    mlflow_side = Side(
        f"MLflow {versions['mlflow']} (mlflow models serve)",
        [r.per_second for r in served.mlflow.loads],
        "req/s",
        {"command": "mlflow models serve -m EXPORT_DIR --env-manager local", **served.mlflow.detail()},
    )
    flask_side = Side(
        f"Flask {versions['Flask']} app (built-in server)",
        [r.per_second for r in served.flask.loads],
        "req/s",
        {
            "command": "app.run(threaded=True); mlflow.pyfunc.load_model(EXPORT_DIR) + "
            "model.predict(pd.DataFrame(request.json))",
            **served.flask.detail(),
        },
    )
    wanted = [f"p99 ≤ {TARGET_P99_MS:g} ms", f"≥ {100 * TARGET_AUTOML_SHARE:.0f} % of the hand-made LR's req/s"]
    met = conveyor.worst_p99_ms <= TARGET_P99_MS and share >= TARGET_AUTOML_SHARE and conveyor.errors == 0
    if case.rps_target is not None:
        wanted.insert(0, f"≥ {case.rps_target:,.0f} req/s")
        met = met and rps >= case.rps_target
    target = ", ".join([*wanted, "0 errors"])

    def versus(suffix: str, other: Side) -> Result:
        return Result(
            name=f"serving-{case.key}{suffix}",
            title=f"Serving {case.label}: requests/s at {CONNECTIONS} connections vs {other.name.split()[0]}",
            conveyor=c_side,
            peer=other,
            better="higher",
            target=target,
            met=met,
            notes=notes,
        )

    latency = Result(
        name=f"serving-{case.key}-latency",
        title=f"Serving {case.label}: median latency at one connection",
        conveyor=Side("Conveyor", [r.p50_ms for r in conveyor.singles], "ms"),
        peer=Side(mlflow_side.name, [r.p50_ms for r in served.mlflow.singles], "ms"),
        better="lower",
        target=f"≤ {TARGET_LATENCY_MS:g} ms",
        met=statistics.median(r.p50_ms for r in conveyor.singles) <= TARGET_LATENCY_MS,
        notes=[
            f"wrk -t1 -c1 for {durations.latency:g} s, {_runs(ctx.repeat)} per server; each sample is a run's p50.",
            f"{flask_side.name}: median p50 {statistics.median(r.p50_ms for r in served.flask.singles):.2f} ms.",
            *notes,
        ],
    )
    in_process = Result(
        name=f"serving-{case.key}-predict",
        title=f"{case.label[0].upper()}{case.label[1:]}: in-process predict_proba of one row",
        conveyor=Side(
            "Conveyor",
            served.proba_ms,
            "ms",
            {"model": served.ref, "model.inference": served.inference, "registered model file": size},
        ),
        peer=Side(
            "its MLflow export, mlflow.pyfunc in the peers' environment",
            list(served.peer["proba_ms"]),
            "ms",
            {
                "how it scores there": f"{peer['engine']} (the environment {ort})",
                "unmet pins of the export there": unmet,
            },
        ),
        better="lower",
        target=f"≤ {case.proba_target_ms:g} ms",
        met=statistics.median(served.proba_ms) <= case.proba_target_ms,
        notes=[
            "Conveyor: `ws.models.load(ref).predict_proba(row)` on a one-row DataFrame (the data's first row), "
            "in the benchmark's own process; the peer: `mlflow.pyfunc.load_model(EXPORT_DIR).get_raw_model()"
            f".predict_proba(row)` on the same row. Each sample is the median of {PROBA_CALLS:,} calls after "
            f"{PROBA_WARMUP} uncounted ones.",
            *notes[:1],
        ],
    )
    return [versus("", mlflow_side), versus("-flask", flask_side), latency, in_process]


# -- the benchmark -----------------------------------------------------------------------------------------


def _prepare(ctx: Context) -> dict[str, Any]:
    peer_work = ctx.work / "peers"
    peer_work.mkdir(parents=True, exist_ok=True)
    _, out = timed(
        [str(ctx.peer_python()), str(PEERS_SCRIPT), "prepare", str(peer_work)],
        env={"MLFLOW_TRACKING_URI": ""},
        cwd=peer_work,
    )
    prep: dict[str, Any] = json.loads(out.strip().splitlines()[-1])
    return prep


def _register(ctx: Context, check_rows: list[dict[str, Any]], expected: list[Any]) -> Any:
    from benchmarks.peers.serving_peers import train
    from conveyor.workspace import Workspace

    model, features = train()
    if model.predict(features.head(len(check_rows))).tolist() != expected:
        raise RuntimeError("the model trained here scores differently from the peers' copy")
    ws, _ = Workspace.init(ctx.work / "conveyor")
    ws.models.register(MODEL_NAME, model, input_example=features.head(20))
    # As a user would before serving (`conveyor models export breast-cancer:1 --format onnx`): the version then
    # carries a checked ONNX conversion and endpoints score it with ONNX Runtime.
    ws.models.to_onnx(f"{MODEL_NAME}:1", validation=features)
    return ws


def run(ctx: Context) -> Result:
    from conveyor import __version__

    durations = Durations.from_env()
    print(f"  durations: {durations}", flush=True)
    prep = _prepare(ctx)
    rows: list[dict[str, Any]] = prep["rows"]
    expected: list[Any] = prep["predictions"]
    row, first = rows[0], expected[0]
    env = _peer_env(prep, ctx)
    versions = peer_versions(["mlflow", "Flask", "Werkzeug", "uvicorn", "scikit-learn", "pandas"])

    mlflow = _measure_mlflow_serve(ctx, env, str(prep["model_uri"]), rows, expected, durations, "mlflow-serve")
    flask = _measure_flask(ctx, env, ["flask", str(prep["pickle"])], rows, expected, durations, "flask")

    ws = _register(ctx, rows, expected)
    try:
        deploy_seconds: list[float] = []
        for i in range(ctx.repeat):
            with _conveyor_endpoint(ws, f"live-{i}", row, first) as server:
                deploy_seconds.append(server.live_seconds)
        print(f"  Conveyor deploy-to-live: {', '.join(f'{s:.2f} s' for s in deploy_seconds)}", flush=True)
        with _conveyor_endpoint(ws, ENDPOINT, row, first) as server:
            _check_same_model(server, rows, expected)
            conveyor = _measure(server, durations, ctx.repeat, ctx.work)
            conveyor.extra["POST /invocations with MLflow's body, 64 connections, one run"] = _mlflow_route(
                server, rows, expected, durations.load, ctx.work
            )
            soak = _soak(server, durations, ctx.work)
            workers = len(_workers(server.pid))
        cold_seconds, cold_note = _cold_start(ws, row, first)
        # The models Conveyor's own AutoML makes, served the same ways in the same run; the LR above is their
        # reference.
        served = [_serve_automl(ctx, ws, case, env, durations) for case in AUTOML_CASES]
    finally:
        ws.close()

    results = _results(ctx, durations, versions, __version__, mlflow, flask, conveyor, soak, workers)
    results += [_deploy_result(ctx, deploy_seconds, mlflow, flask, cold_seconds, cold_note)]
    for automl in served:
        results += _automl_results(ctx, durations, versions, automl, conveyor)
    headline, others = results[0], results[1:]
    for result in others:
        save(result)  # the harness saves the returned headline; the rest are stored here
    print_table(others)
    return headline


def _runs(n: int) -> str:
    return f"{n} run" if n == 1 else f"{n} runs"


def _results(
    ctx: Context,
    durations: Durations,
    versions: dict[str, str],
    conveyor_version: str,
    mlflow: Measured,
    flask: Measured,
    conveyor: Measured,
    soak: Soak,
    workers: int,
) -> list[Result]:
    common = [
        f"One row of 30 features per request as JSON; wrk {THREADS} threads × {CONNECTIONS} connections for "
        f"{durations.load:g} s, {_runs(ctx.repeat)} per server after a {durations.warmup:g} s warm-up; servers one "
        "after another, each alone, wrk on the same 2-core machine. Errors are non-2xx responses plus socket "
        f"errors (connect, read, write, timeouts over {WRK_TIMEOUT}).",
        "Same model everywhere: StandardScaler + LogisticRegression on scikit-learn's breast-cancer data, trained "
        "by the same code in each environment; each server's predictions for 5 rows are checked before timing.",
    ]
    if not durations.official:
        common.append(f"Not the official durations (quick mode): {durations}.")
    c_side = Side(
        "Conveyor",
        [r.per_second for r in conveyor.loads],
        "req/s",
        {
            "version": conveyor_version,
            "worker processes": workers,
            "engine": "ONNX Runtime (the version's ONNX export, made with models.to_onnx as "
            "`conveyor models export --format onnx` does); default batching",
            **conveyor.detail(),
        },
    )
    mlflow_side = Side(
        f"MLflow {versions['mlflow']} (mlflow models serve)",
        [r.per_second for r in mlflow.loads],
        "req/s",
        {
            "command": "mlflow models serve --env-manager local (its default: one uvicorn worker, uvicorn "
            f"{versions['uvicorn']}); POST /invocations with dataframe_records",
            **mlflow.detail(),
        },
    )
    flask_side = Side(
        f"Flask {versions['Flask']} app (built-in server)",
        [r.per_second for r in flask.loads],
        "req/s",
        {
            "command": f"app.run(threaded=True): Werkzeug {versions['Werkzeug']} development server, one process, "
            "a thread per request; pickle + model.predict(pd.DataFrame(request.json))",
            **flask.detail(),
        },
    )
    healthy = conveyor.worst_p99_ms <= TARGET_P99_MS and conveyor.errors == 0
    tail = f"p99 ≤ {TARGET_P99_MS:g} ms, 0 errors"

    def versus(name: str, title: str, peer: Side) -> Result:
        result = Result(
            name=name,
            title=title,
            conveyor=c_side,
            peer=peer,
            better="higher",
            target=f"≥ {TARGET_RATIO:g}× {peer.name.split()[0]}, {tail}",
            met=False,
            notes=common,
        )
        result.met = healthy and (result.ratio or 0) >= TARGET_RATIO
        return result

    latency = Result(
        name="serving-latency",
        title="Serving: median latency at one connection",
        conveyor=Side("Conveyor", [r.p50_ms for r in conveyor.singles], "ms"),
        peer=Side(mlflow_side.name, [r.p50_ms for r in mlflow.singles], "ms"),
        better="lower",
        target=f"≤ {TARGET_LATENCY_MS:g} ms",
        met=statistics.median(r.p50_ms for r in conveyor.singles) <= TARGET_LATENCY_MS,
        notes=[
            f"wrk -t1 -c1 for {durations.latency:g} s, {_runs(ctx.repeat)} per server; each sample is a run's p50.",
            f"{flask_side.name}: median p50 {statistics.median(r.p50_ms for r in flask.singles):.2f} ms.",
            *common[1:],
        ],
    )
    growth = soak.max_growth_pct
    soak_result = Result(
        name="serving-soak",
        title=f"Serving: soak at {CONNECTIONS} connections, worker memory growth",
        conveyor=Side(
            "Conveyor",
            [growth],
            "%",
            {
                "load": soak.run.brief(),
                "worker RSS before → after (MiB)": ", ".join(
                    f"pid {pid}: {before:.0f} → {soak.rss_after_mib.get(pid, float('nan')):.0f}"
                    for pid, before in soak.rss_before_mib.items()
                ),
                "same worker processes throughout": soak.same_workers,
            },
        ),
        peer=None,
        better="lower",
        target=f"0 errors, worker RSS growth ≤ {TARGET_RSS_GROWTH_PCT:g} %",
        met=soak.run.error_count == 0 and soak.same_workers and growth <= TARGET_RSS_GROWTH_PCT,
        notes=[
            f"Conveyor only: {durations.soak:g} s of wrk at {CONNECTIONS} connections right after the measured runs "
            "(so the workers are warm); each worker's RSS is read before and after, and the sample is the largest "
            "growth of any worker.",
            *common[2:],
        ],
    )
    return [
        versus("serving", f"Serving: requests/s at {CONNECTIONS} connections vs MLflow", mlflow_side),
        versus("serving-flask", f"Serving: requests/s at {CONNECTIONS} connections vs Flask", flask_side),
        latency,
        soak_result,
    ]


def _deploy_result(
    ctx: Context,
    deploy_seconds: list[float],
    mlflow: Measured,
    flask: Measured,
    cold_seconds: float | None,
    cold_note: str,
) -> Result:
    cold = f"{cold_seconds:.2f} s ({cold_note})" if cold_seconds is not None else cold_note
    return Result(
        name="serving-deploy",
        title="Serving: deploy to first prediction",
        conveyor=Side(
            "Conveyor",
            deploy_seconds,
            "s",
            {"cold start after scale-to-zero (first request to its answer)": cold},
        ),
        peer=Side("mlflow models serve", [mlflow.server.live_seconds], "s"),
        better="lower",
        target=f"≤ {TARGET_DEPLOY_S:g} s",
        met=statistics.median(deploy_seconds) <= TARGET_DEPLOY_S,
        notes=[
            f"Conveyor: seconds from calling `ws.endpoints.deploy` (the model already registered) to the first "
            f"correct prediction over HTTP, polled every 5 ms; {ctx.repeat} fresh endpoint(s) in one workspace. "
            "Cold start: after the endpoint scaled to zero (no worker processes left), from the first request to "
            "the first correct answer (refusals retried every 5 ms).",
            "MLflow: seconds from starting `mlflow models serve` (model already logged and registered) to its "
            f"first correct prediction, once. The Flask app: {flask.server.live_seconds:.2f} s from start.",
        ],
    )
