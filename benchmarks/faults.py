"""Faults leave nothing behind: 20 `conveyor data ingest` processes of a ~400 MB CSV, each SIGKILLed at a random
moment, and the scratch space left after the next `Workspace.open` (issue 15, item 3).

The "peer" is what the kill itself left in scratch (what piled up before scratch carried its owner: 150–240 MB
a kill); Conveyor's figure is what is left once the workspace has been opened again.
"""

from __future__ import annotations

import random
import signal
import subprocess
import time
from pathlib import Path

from benchmarks._harness import BENCH_DIR, Context, Result, Side
from benchmarks.ingest import make_csv

ROWS = 2_350_000  # about 400 MB with the ingest benchmark's 20 columns
KILLS = 20


def _tree_bytes(folder: Path) -> int:
    return sum(p.stat().st_size for p in folder.rglob("*") if p.is_file()) if folder.exists() else 0


def _orphan_blob_bytes(home: Path) -> int:
    """Blobs no data version lists: a kill between storing a part and committing its version leaves one (harmless,
    content-addressed: the next ingestion of the same content reuses it)."""
    from conveyor import Workspace

    with Workspace.open(home) as ws:
        listed = {
            f["digest"].removeprefix("sha256:")
            for asset in ws.data.list()
            for version in ws.data.versions(asset.name)
            for f in version.files
        }
        blobs = Path(ws.artifacts.root) / "blobs" / "sha256"
        return sum(p.stat().st_size for p in blobs.rglob("*") if p.is_file() and p.parent.name + p.name not in listed)


def run_killed_ingests(ctx: Context) -> Result:
    from conveyor import Workspace

    csv = make_csv(BENCH_DIR / ".work" / "data" / f"ingest-{ROWS}.csv", rows=ROWS)
    size_mb = csv.stat().st_size / 1e6
    home = ctx.work / "ws"
    Workspace.open(home).close()
    tmp = home / "artifacts" / "tmp"
    rng = random.Random(20)
    # one ingestion to the end first: the kills then land anywhere in its length (reading, writing Parquet,
    # hashing, profiling, committing)
    started = time.perf_counter()
    whole = [str(ctx.conveyor_bin()), "--home", str(home), "data", "ingest", str(csv), "--name", "whole"]
    subprocess.run(whole, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    full = time.perf_counter() - started
    left_by_kill: list[float] = []
    left_after_open: list[float] = []
    kill_at: list[float] = []
    finished = 0
    for i in range(KILLS):
        command = [str(ctx.conveyor_bin()), "--home", str(home), "data", "ingest", str(csv), "--name", f"big{i}"]
        process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        delay = rng.uniform(1.0, full)
        time.sleep(delay)
        if process.poll() is None:
            process.send_signal(signal.SIGKILL)
            kill_at.append(delay)
        else:
            finished += 1
        process.wait()
        left_by_kill.append(float(_tree_bytes(tmp)))
        Workspace.open(home).close()
        left_after_open.append(float(_tree_bytes(tmp)))
    orphans = _orphan_blob_bytes(home)
    met = max(left_after_open) == 0
    return Result(
        name="faults-killed-ingest-scratch",
        title=f"Scratch left after {KILLS} SIGKILLed ingests of a {size_mb:.0f} MB CSV",
        conveyor=Side(
            "after the next open",
            left_after_open,
            "bytes",
            {"largest": f"{max(left_after_open):,.0f} bytes", "total": f"{sum(left_after_open):,.0f} bytes"},
        ),
        peer=Side(
            "left by the kill",
            left_by_kill,
            "bytes",
            {"total": f"{sum(left_by_kill) / 1e6:,.0f} MB over {KILLS} kills"},
        ),
        better="lower",
        target="0 bytes after each open",
        met=met,
        notes=[
            f"One ingestion run to the end took {full:.1f} s (process start included); the kills landed at random "
            f"in it: {len(kill_at)} ingests killed {min(kill_at, default=0):.1f}–{max(kill_at, default=0):.1f} s after "
            f"they started; {finished} had finished before their kill time.",
            f"Blobs no version lists (a kill between storing a part and committing its version; reused by the next "
            f"ingestion of the same content): {orphans / 1e6:,.1f} MB.",
        ],
    )
