"""Online serving: requests per second, latency, a soak and deploy-to-live, against MLflow and a Flask app.

One model for every server: scikit-learn's breast-cancer data, ``StandardScaler`` + ``LogisticRegression``,
trained by the same code on each side (``benchmarks/peers/serving_peers.py``); every server is checked to
score the same five rows the same way before it is measured. Every request is one row of 30 features as
JSON. The servers run one after another in the same run, each alone on the machine while it is measured:

1. ``mlflow models serve --env-manager local`` on the model logged with ``mlflow.sklearn`` (MLflow's default
   of one uvicorn worker), ``POST /invocations`` with ``{"dataframe_records": [row]}``;
2. the seeds' plain Flask app (pickle, ``model.predict(pd.DataFrame(request.json))``) on Flask's built-in
   threaded server, ``POST /predict`` with ``[row]``;
3. Conveyor: the model registered in a fresh workspace and deployed as an endpoint, ``POST /predict`` with
   ``[row]``.

Load comes from ``wrk`` (a Lua script sets the POST body and prints a JSON summary when done): 64
connections on 2 threads, then one connection on one thread for the unloaded latency. Conveyor alone then
takes a soak at 64 connections, with its workers' memory read before and after. wrk and the servers share
the machine's cores, as they would on a small production box; wrk is closed-loop (a slow response delays
the next request on its connection), so its percentiles understate queueing under overload.

Durations (seconds) come from the environment so a quick run exists: ``SERVING_BENCH_QUICK=1`` (load 3,
latency 3, soak 10, warm-up 1), or each of ``SERVING_BENCH_LOAD_S``, ``SERVING_BENCH_LATENCY_S``,
``SERVING_BENCH_SOAK_S``, ``SERVING_BENCH_WARMUP_S``. A result measured with other than the default durations
says so in its notes. All traffic goes to 127.0.0.1.
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
    ws: Any, endpoint: str, row: dict[str, Any], expected: Any, **idle_options: Any
) -> Iterator[Server]:
    pid: int | None = None
    try:
        url, pid, started = _deploy(ws, endpoint, f"{MODEL_NAME}:1", **idle_options)
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

    def mlflow_wrap(records: list[dict[str, Any]]) -> Any:
        return {"dataframe_records": records}

    def flask_wrap(records: list[dict[str, Any]]) -> Any:
        return records

    port = _free_port()
    mlflow_cmd = [str(ctx.peer_bin("mlflow")), "models", "serve", "-m", str(prep["model_uri"]),
                  "--env-manager", "local", "-h", LOOPBACK, "-p", str(port)]  # fmt: skip
    with _peer_process(
        "mlflow models serve", mlflow_cmd, env, f"http://{LOOPBACK}:{port}/invocations", mlflow_wrap,
        row, first, ctx.work / "mlflow-serve.log", ctx.work,
    ) as server:  # fmt: skip
        _check_same_model(server, rows, expected)
        mlflow = _measure(server, durations, ctx.repeat, ctx.work)

    port = _free_port()
    flask_cmd = [str(ctx.peer_python()), str(PEERS_SCRIPT), "flask", str(prep["pickle"]), str(port)]
    with _peer_process(
        "Flask app", flask_cmd, env, f"http://{LOOPBACK}:{port}/predict", flask_wrap,
        row, first, ctx.work / "flask.log", ctx.work,
    ) as server:  # fmt: skip
        _check_same_model(server, rows, expected)
        flask = _measure(server, durations, ctx.repeat, ctx.work)

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
    finally:
        ws.close()

    results = _results(ctx, durations, versions, __version__, mlflow, flask, conveyor, soak, workers)
    results += [_deploy_result(ctx, deploy_seconds, mlflow, flask, cold_seconds, cold_note)]
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
