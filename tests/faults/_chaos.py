"""Helpers of the fault-injection suite: real processes, SIGKILLed at chosen or random moments.

Every test here is marked ``chaos``. A short version runs in ``make test``; ``CONVEYOR_CHAOS_LONG=1``
(``make chaos``) runs the long versions: more kills, at random moments, on bigger data.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

#: ``make chaos`` sets it: repeat the kills, at random moments, on bigger data.
LONG = os.environ.get("CONVEYOR_CHAOS_LONG", "") == "1"

long_only = pytest.mark.skipif(not LONG, reason="long fault run: set CONVEYOR_CHAOS_LONG=1 (make chaos)")


def start_script(body: str, *args: str, env: dict[str, str] | None = None) -> subprocess.Popen[str]:
    """A Python process running ``body`` (``sys.argv[1:]`` are ``args``), stdout and stderr piped."""
    script = "import sys, os, time\nfrom conveyor import Workspace\n" + textwrap.dedent(body)
    return subprocess.Popen(
        [sys.executable, "-c", script, *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, **(env or {})},
    )


def start_cli(*args: str, log: Path) -> subprocess.Popen[bytes]:
    """``conveyor ARGS`` as its own process (output into ``log``)."""
    with log.open("ab") as out:
        return subprocess.Popen([sys.executable, "-m", "conveyor", *args], stdout=out, stderr=subprocess.STDOUT)


def sigkill(process: subprocess.Popen[str] | subprocess.Popen[bytes]) -> None:
    """SIGKILL, then reap (so no zombie keeps its PID looking alive)."""
    process.send_signal(signal.SIGKILL)
    process.wait(timeout=30)
    assert process.returncode == -signal.SIGKILL


def cli_json(*args: str, timeout: float = 120) -> object:
    """Run ``conveyor ARGS --json`` to the end in its own process and return its JSON."""
    import orjson

    done = subprocess.run(
        [sys.executable, "-m", "conveyor", *args, "--json"],
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    return orjson.loads(done.stdout)


def tree_bytes(folder: Path) -> int:
    """Bytes of every file under ``folder`` (0 when it does not exist)."""
    return sum(p.stat().st_size for p in folder.rglob("*") if p.is_file()) if folder.exists() else 0


def make_csv(path: Path, megabytes: float, seed: int = 0) -> Path:
    """A CSV of about ``megabytes`` MB (ints, floats, strings, dates), written once and reused; returns ``path``."""
    if path.exists():
        return path
    import numpy as np
    import pyarrow as pa
    import pyarrow.csv as pa_csv

    rows = int(megabytes * 1e6 / 61)  # about 61 bytes a row
    rng = np.random.default_rng(seed)
    table = pa.table(
        {
            "id": np.arange(rows),
            "a": rng.integers(0, 1_000_000, rows),
            "b": np.round(rng.normal(size=rows) * 100, 3),
            "c": np.round(rng.random(rows), 6),
            "kind": pa.array(rng.choice(["alpha", "beta", "gamma", "delta"], rows)),
            "day": pa.array(np.datetime64("2024-01-01") + rng.integers(0, 700, rows).astype("timedelta64[D]")),
            "tag": pa.array([f"t{x:08d}" for x in rng.integers(0, 10**8, rows)]),
        }
    )
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".writing")
    pa_csv.write_csv(table, tmp)
    tmp.replace(path)
    return path


def _stat(pid: int) -> list[str] | None:
    """The fields of ``/proc/PID/stat`` after the command name (state first), or None when it is gone."""
    try:
        text = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    return text[text.rindex(")") + 2 :].split()


def alive(pid: int) -> bool:
    """Whether ``pid`` runs (a zombie, dead but not yet reaped, does not)."""
    fields = _stat(pid)
    return fields is not None and fields[0] not in ("Z", "X")


def session_processes(sid: int) -> list[int]:
    """The live processes of session ``sid`` (a process started with ``start_new_session=True`` leads one, and
    whatever it starts stays in it unless it makes a session of its own). Linux only (``/proc``)."""
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            fields = _stat(int(entry.name))
            if fields is not None and fields[0] not in ("Z", "X") and int(fields[3]) == sid:
                found.append(int(entry.name))
    return sorted(found)


def process_line(pid: int) -> str:
    """A process's command line, for messages."""
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")[:200]
    except OSError:
        return "(gone)"


def cpu_seconds(pid: int) -> float:
    """CPU time ``pid`` has used so far (user + system; 0 when it is gone)."""
    fields = _stat(pid)
    if fields is None:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
