"""The benchmark harness: peers in their own environment, side-by-side runs, a table of ratios, and
``docs/benchmarks.md`` written from the stored results of every benchmark.

A benchmark is a function ``run(ctx) -> Result`` registered in ``benchmarks/__main__.py``. It measures
Conveyor and its peer one after the other in the same run, on the same data, and reports each side's
samples; the harness computes medians and the ratio and checks the target.
"""

from __future__ import annotations

import hashlib
import json
import os
import platform
import statistics
import subprocess
import sys
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Literal

ROOT = Path(__file__).resolve().parent.parent
BENCH_DIR = ROOT / "benchmarks"
RESULTS_DIR = BENCH_DIR / "results"
WORK_DIR = BENCH_DIR / ".work"
PEER_VENV = ROOT / ".venv-bench"
PEER_REQUIREMENTS = BENCH_DIR / "requirements-peers.txt"
DOCS = ROOT / "docs" / "benchmarks.md"


@dataclass
class Side:
    """One subject's measurements (Conveyor or a peer)."""

    name: str
    samples: list[float]
    unit: str
    detail: dict[str, Any] = field(default_factory=dict)

    @property
    def median(self) -> float:
        return statistics.median(self.samples)


@dataclass
class Result:
    """A benchmark's outcome: both sides, the ratio, and whether Conveyor met its target."""

    name: str
    title: str
    conveyor: Side
    peer: Side | None
    better: Literal["lower", "higher"]
    target: str
    met: bool
    notes: list[str] = field(default_factory=list)
    measured_at: str = field(default_factory=lambda: datetime.now(UTC).isoformat(timespec="seconds"))
    machine: dict[str, Any] = field(default_factory=lambda: machine_info())  # noqa: PLW0108 - defined below

    @property
    def ratio(self) -> float | None:
        """How many times better Conveyor is than the peer (above 1: Conveyor wins)."""
        if self.peer is None or self.conveyor.median == 0 or self.peer.median == 0:
            return None
        if self.better == "lower":
            return self.peer.median / self.conveyor.median
        return self.conveyor.median / self.peer.median


@dataclass
class Context:
    """What a benchmark gets: where to work, how to reach the peers, how many repetitions."""

    repeat: int
    work: Path

    def peer_python(self) -> Path:
        return PEER_VENV / "bin" / "python"

    def peer_bin(self, name: str) -> Path:
        return PEER_VENV / "bin" / name

    def conveyor_bin(self) -> Path:
        return Path(sys.executable).parent / "conveyor"


def timed(
    command: Sequence[str],
    *,
    env: dict[str, str] | None = None,
    timeout: float = 600,
    cwd: Path | None = None,
) -> tuple[float, str]:
    """Run a command to completion; return its wall time in seconds and its stdout.

    ``cwd`` keeps tools that write beside themselves (MLflow's ``mlruns/``) out of the checkout.

    Raises:
        RuntimeError: the command failed (its stderr is quoted).
    """
    started = time.perf_counter()
    completed = subprocess.run(
        list(command),
        capture_output=True,
        text=True,
        env={**os.environ, **(env or {})},
        timeout=timeout,
        check=False,
        cwd=cwd,
    )
    seconds = time.perf_counter() - started
    if completed.returncode != 0:
        raise RuntimeError(f"{' '.join(command)} failed ({completed.returncode}):\n{completed.stderr[-3000:]}")
    return seconds, completed.stdout


def write_parquet(path: Path, tables: Iterable[Any], row_group_size: int | None = None) -> Path:
    """Write Arrow tables one after another into one Parquet file (lz4), through a temporary file, so a big data
    set is made a block at a time and an interrupted run leaves no half-written file."""
    import pyarrow.parquet as pq

    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".writing")
    writer = None
    try:
        for table in tables:
            writer = writer or pq.ParquetWriter(tmp, table.schema, compression="lz4")
            writer.write_table(table, row_group_size=row_group_size)
    finally:
        if writer is not None:
            writer.close()
    tmp.replace(path)
    return path


def ensure_peer_environment() -> None:
    """Create ``.venv-bench`` with the pinned peers, or refresh it when the pins changed."""
    digest = hashlib.sha256(PEER_REQUIREMENTS.read_bytes()).hexdigest()
    stamp = PEER_VENV / ".requirements-sha256"
    if stamp.exists() and stamp.read_text().strip() == digest:
        return
    print(f"Setting up the peers' environment in {PEER_VENV} (once; pinned in {PEER_REQUIREMENTS.name})…")
    if not (PEER_VENV / "bin" / "python").exists():
        subprocess.run([sys.executable, "-m", "venv", str(PEER_VENV)], check=True)
    pip = [str(PEER_VENV / "bin" / "python"), "-m", "pip", "install", "--quiet"]
    subprocess.run([*pip, "--upgrade", "pip"], check=True)
    subprocess.run([*pip, "-r", str(PEER_REQUIREMENTS)], check=True)
    stamp.write_text(digest)


def machine_info() -> dict[str, Any]:
    cpu = platform.processor() or platform.machine()
    cpuinfo = Path("/proc/cpuinfo")
    if cpuinfo.exists():
        for line in cpuinfo.read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    memory_gib = None
    meminfo = Path("/proc/meminfo")
    if meminfo.exists():
        first = meminfo.read_text().splitlines()[0].split()
        memory_gib = round(int(first[1]) / 1024 / 1024, 1)
    return {
        "cpu": cpu,
        "cores": os.cpu_count(),
        "memory_gib": memory_gib,
        "os": platform.platform(terse=True),
        "python": platform.python_version(),
    }


def peer_versions(packages: Sequence[str]) -> dict[str, str]:
    python = PEER_VENV / "bin" / "python"
    code = "import json, importlib.metadata as m, sys; print(json.dumps({p: m.version(p) for p in sys.argv[1:]}))"
    out = subprocess.run([str(python), "-c", code, *packages], capture_output=True, text=True, check=True).stdout
    versions: dict[str, str] = json.loads(out)
    return versions


def save(result: Result) -> Path:
    RESULTS_DIR.mkdir(parents=True, exist_ok=True)
    path = RESULTS_DIR / f"{result.name}.json"
    data = asdict(result)
    data["ratio"] = result.ratio
    path.write_text(json.dumps(data, indent=2) + "\n")
    return path


def _fmt(value: float, unit: str) -> str:
    if unit == "s":
        return f"{value:.2f} s"
    if unit == "ms":
        return f"{value:.2f} ms"
    if abs(value) < 100 and value != int(value):  # ranks, ratios: small numbers keep their decimals
        return f"{value:.2f} {unit}"
    return f"{value:,.0f} {unit}"


def write_docs() -> None:
    """Regenerate docs/benchmarks.md from every stored result."""
    results = [json.loads(p.read_text()) for p in sorted(RESULTS_DIR.glob("*.json"))]
    lines = [
        "# Benchmarks",
        "",
        "Written by `make bench` (`python -m benchmarks`); do not edit by hand. Each benchmark runs Conveyor and",
        "its peer one after the other in the same run, on the same machine and data; the ratio says how many",
        "times better Conveyor is (above 1: Conveyor wins). Peers are installed from pinned versions in",
        "`benchmarks/requirements-peers.txt` into `.venv-bench`.",
        "",
        "| benchmark | Conveyor | peer | ratio | target | met | measured |",
        "| --- | --- | --- | --- | --- | --- | --- |",
    ]
    for r in results:
        conveyor = r["conveyor"]
        peer = r["peer"]
        c_median = statistics.median(conveyor["samples"])
        p_text = "—"
        if peer:
            p_text = f"{peer['name']}: {_fmt(statistics.median(peer['samples']), peer['unit'])}"
        ratio = "—" if r["ratio"] is None else f"{r['ratio']:.1f}×"
        lines.append(
            f"| {r['title']} | {_fmt(c_median, conveyor['unit'])} | {p_text} | {ratio} | {r['target']} | "
            f"{'yes' if r['met'] else '**no**'} | {r['measured_at'][:10]} |"
        )
    for r in results:
        machine = r["machine"]
        lines += [
            "",
            f"## {r['title']}",
            "",
            f"Measured {r['measured_at']} on {machine['cpu']}, {machine['cores']} cores, "
            f"{machine['memory_gib']} GiB, {machine['os']}, Python {machine['python']}.",
            "",
        ]
        for side in (r["conveyor"], r["peer"]):
            if not side:
                continue
            samples = ", ".join(_fmt(s, side["unit"]) for s in side["samples"])
            lines.append(
                f"- **{side['name']}**: median {_fmt(statistics.median(side['samples']), side['unit'])} ({samples})"
            )
            for key, value in side["detail"].items():
                lines.append(f"  - {key}: {value}")
        lines += [f"- {note}" for note in r["notes"]]
    DOCS.write_text("\n".join(lines) + "\n")


def print_table(results: Sequence[Result]) -> None:
    from rich.console import Console
    from rich.table import Table

    table = Table("benchmark", "Conveyor", "peer", "ratio", "target", "met", title="Benchmarks")
    for r in results:
        peer = "—" if r.peer is None else f"{r.peer.name}: {_fmt(r.peer.median, r.peer.unit)}"
        ratio = "—" if r.ratio is None else f"{r.ratio:.1f}×"
        table.add_row(
            r.title, _fmt(r.conveyor.median, r.conveyor.unit), peer, ratio, r.target, "yes" if r.met else "NO"
        )
    Console().print(table)


Benchmark = Callable[[Context], Result]
