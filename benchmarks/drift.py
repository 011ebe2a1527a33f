"""Drift over 1M current rows × 20 columns (15 numeric, 5 categorical) against a 1M-row reference, both in
Parquet: Conveyor's ``compute_drift`` (defaults: normalised Wasserstein for numbers, Jensen–Shannon for
categories) against Evidently's DataDriftPreset (the same defaults at this size) on the same files.

Each side runs in its own process and measures itself from reading the files to the verdict (imports not
included), and reports its peak RSS (``ru_maxrss``, the whole process). Targets: ≤ 2 s and ≤ 600 MB for
Conveyor, ≥ 30× faster than Evidently.
"""

from __future__ import annotations

import hashlib
import json
import subprocess
import sys
from pathlib import Path
from typing import Any

from benchmarks._harness import BENCH_DIR, ROOT, Context, Result, Side, timed, write_parquet

ROWS = 1_000_000
TARGET_SECONDS = 2.0
TARGET_RSS_MIB = 600.0
TARGET_RATIO = 30.0
EVIDENTLY_VENV = ROOT / ".venv-bench-evidently"
EVIDENTLY_REQUIREMENTS = BENCH_DIR / "requirements-evidently.txt"

_CONVEYOR_SIDE = """
import json, resource, sys, time
from pathlib import Path
from conveyor.monitor import Table, compute_drift
started = time.perf_counter()
report = compute_drift(Table("reference", parquet=[Path(sys.argv[1])]), Table("current", parquet=[Path(sys.argv[2])]))
seconds = time.perf_counter() - started
print(json.dumps({
    "seconds": seconds,
    "peak_rss_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
    "drifted": sorted(c.column for c in report.columns if c.drifted),
}))
"""


def make_parquet(path: Path, shift: float, seed: int, rows: int = ROWS) -> Path:
    """15 numeric columns (normal, log-normal, integers; the first four shifted in the current data) and 5
    categorical ones (8 to 200 levels; the first skewed in the current data). Written once and reused."""
    if path.exists():
        return path
    return write_parquet(path, [_drift_table(shift, seed, rows)])


def _drift_table(shift: float, seed: int, rows: int) -> Any:
    import numpy as np
    import pyarrow as pa

    rng = np.random.default_rng(seed)
    columns: dict[str, object] = {}
    for i in range(15):
        moved = shift if i < 4 else 0.0
        if i % 3 == 0:
            columns[f"num_{i}"] = rng.normal(moved, 1.0 + i / 10, rows)
        elif i % 3 == 1:
            columns[f"num_{i}"] = rng.lognormal(moved, 0.75, rows)
        else:
            columns[f"num_{i}"] = rng.integers(0, 1000 + int(300 * moved), rows)
    for i, levels in enumerate((8, 12, 30, 60, 200)):
        names = np.array([f"level_{k}" for k in range(levels)])
        p = np.ones(levels)
        if shift and i == 0:
            p[0] = levels
        columns[f"cat_{i}"] = pa.array(names[rng.choice(levels, rows, p=p / p.sum())])
    return pa.table(columns)


def ensure_evidently() -> Path:
    """Evidently's own environment (it needs pandas 2; the other peers are pinned to pandas 3); its Python."""
    digest = hashlib.sha256(EVIDENTLY_REQUIREMENTS.read_bytes()).hexdigest()
    stamp = EVIDENTLY_VENV / ".requirements-sha256"
    python = EVIDENTLY_VENV / "bin" / "python"
    if stamp.exists() and stamp.read_text().strip() == digest:
        return python
    print(f"Setting up Evidently's environment in {EVIDENTLY_VENV} (once)…", flush=True)
    if not python.exists():
        subprocess.run([sys.executable, "-m", "venv", str(EVIDENTLY_VENV)], check=True)
    subprocess.run([str(python), "-m", "pip", "install", "--quiet", "-r", str(EVIDENTLY_REQUIREMENTS)], check=True)
    stamp.write_text(digest)
    return python


def run(ctx: Context) -> Result:
    data = BENCH_DIR / ".work" / "data"
    reference = make_parquet(data / f"drift-reference-{ROWS}.parquet", 0.0, 1)
    current = make_parquet(data / f"drift-current-{ROWS}.parquet", 0.5, 2)
    peer_script = BENCH_DIR / "peers" / "evidently_drift.py"
    peer_python = ensure_evidently()
    conveyor: list[dict[str, object]] = []
    evidently: list[dict[str, object]] = []
    for _ in range(ctx.repeat):
        _, out = timed([sys.executable, "-c", _CONVEYOR_SIDE, str(reference), str(current)])
        conveyor.append(json.loads(out))
        _, out = timed([str(peer_python), str(peer_script), str(reference), str(current)], timeout=1800)
        evidently.append(json.loads(out))
    seconds = [float(s["seconds"]) for s in conveyor]  # type: ignore[arg-type]
    rss = max(float(s["peak_rss_mib"]) for s in conveyor)  # type: ignore[arg-type]
    peer_seconds = [float(s["seconds"]) for s in evidently]  # type: ignore[arg-type]
    peer_rss = max(float(s["peak_rss_mib"]) for s in evidently)  # type: ignore[arg-type]
    result = Result(
        name="drift",
        title=f"Drift, {ROWS // 1_000_000}M current × 20 columns against a {ROWS // 1_000_000}M-row reference",
        conveyor=Side(
            "Conveyor drift",
            seconds,
            "s",
            {"peak RSS": f"{rss:.0f} MiB", "drifted columns": ", ".join(conveyor[0]["drifted"])},  # type: ignore[arg-type]
        ),
        peer=Side(
            f"Evidently {_version(peer_python, 'evidently')} DataDriftPreset",
            peer_seconds,
            "s",
            {"peak RSS": f"{peer_rss:.0f} MiB"},
        ),
        better="lower",
        target=f"≤ {TARGET_SECONDS:.0f} s, ≤ {TARGET_RSS_MIB:.0f} MB, ≥ {TARGET_RATIO:.0f}× Evidently",
        met=False,
        notes=[
            "Both sides read the two Parquet files and compute every column's drift in their own process; imports "
            "are not timed; peak RSS is the process's ru_maxrss.",
        ],
    )
    ratio = result.ratio or 0.0
    result.met = max(seconds) <= TARGET_SECONDS and rss <= TARGET_RSS_MIB and ratio >= TARGET_RATIO
    return result


def _version(python: Path, package: str) -> str:
    code = f"import importlib.metadata as m; print(m.version({package!r}))"
    return subprocess.run([str(python), "-c", code], capture_output=True, text=True, check=True).stdout.strip()


# -- reference profiles: 10M rows streamed from Parquet ----------------------------------------------------

PROFILE_ROWS = (1_000_000, 10_000_000)
TARGET_PROFILE_RSS_MIB = 1024.0  # flat: the 10M-row profile within 1 GB
TARGET_LINEARITY = 1.5  # 10M rows take at most 1.5 × ten times the 1M-row time

_PROFILE_SIDE = """
import json, resource, sys, time
from pathlib import Path
from conveyor.monitor import Table, build_profile
started = time.perf_counter()
profile = build_profile(Table("reference", parquet=[Path(sys.argv[1])]))
seconds = time.perf_counter() - started
print(json.dumps({
    "seconds": seconds,
    "peak_rss_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
    "rows": profile.rows,
    "columns": len(profile.sketches),
    "bytes": len(profile.to_bytes()),
}))
"""


def make_large_parquet(path: Path, rows: int) -> Path:
    """The drift benchmark's reference columns, ``rows`` of them, made and written a million rows (one row group)
    at a time, so making the file takes no more memory than a million rows. Written once and reused."""
    if path.exists():
        return path
    block = 1_000_000
    parts = (_drift_table(0.0, 100 + start // block, min(block, rows - start)) for start in range(0, rows, block))
    return write_parquet(path, parts)


def run_profile(ctx: Context) -> Result:
    data = BENCH_DIR / ".work" / "data"
    measured: dict[int, list[dict[str, float]]] = {}
    for rows in PROFILE_ROWS:
        path = make_large_parquet(data / f"profile-reference-{rows}.parquet", rows)
        measured[rows] = []
        for _ in range(ctx.repeat):
            _, out = timed([sys.executable, "-c", _PROFILE_SIDE, str(path)], timeout=3600)
            measured[rows].append(json.loads(out))
    small, large = PROFILE_ROWS
    seconds = {rows: [float(m["seconds"]) for m in runs] for rows, runs in measured.items()}
    rss = {rows: max(float(m["peak_rss_mib"]) for m in runs) for rows, runs in measured.items()}
    import statistics

    growth = statistics.median(seconds[large]) / statistics.median(seconds[small])
    scale = large / small
    return Result(
        name="drift-profile",
        title=(
            f"Reference profile of {large // 1_000_000}M rows × 20 columns streamed from Parquet "
            f"(and of {small // 1_000_000}M)"
        ),
        conveyor=Side(
            f"{large // 1_000_000}M rows",
            seconds[large],
            "s",
            {"peak RSS": f"{rss[large]:.0f} MiB", "profile file": f"{int(measured[large][0]['bytes']):,} bytes"},
        ),
        peer=Side(
            f"{small // 1_000_000}M rows (same code)",
            seconds[small],
            "s",
            {"peak RSS": f"{rss[small]:.0f} MiB"},
        ),
        better="lower",
        target=(
            f"memory flat (≤ {TARGET_PROFILE_RSS_MIB:.0f} MB at {large // 1_000_000}M rows), time linear "
            f"(≤ {TARGET_LINEARITY:g} × {scale:g} the {small // 1_000_000}M-row time)"
        ),
        met=rss[large] <= TARGET_PROFILE_RSS_MIB and growth <= TARGET_LINEARITY * scale,
        notes=[
            f"Time grows {growth:.1f}× for {scale:g}× the rows; peak RSS {rss[small]:.0f} MiB at {small:,} rows, "
            f"{rss[large]:.0f} MiB at {large:,} rows (ru_maxrss of the process, imports included).",
            "`build_profile` reads each column in batches of 1M rows: two passes per numeric column (counts, extremes, "
            "a 200,000-value uniform sample; then exact counts and sums between the sample's quantiles), one per "
            "categorical column. The 'ratio' column compares the two sizes, not two tools: there is no peer.",
        ],
    )
