"""Four processes writing to one workspace at once lose nothing, on SQLite and on PostgreSQL."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

import pytest

from conveyor import Workspace

WRITER = Path(__file__).with_name("concurrent_writer.py")
PROCESSES = 4
WRITES = 25


@pytest.mark.slow
def test_four_concurrent_writers_lose_nothing(tmp_path: Path, db_url: str) -> None:
    home = tmp_path / "ws"
    start_at = time.time() + 3.0  # all four open the fresh workspace (and race to migrate it) together
    processes = [
        subprocess.Popen(
            [sys.executable, str(WRITER), str(home), db_url, str(worker), str(WRITES), str(start_at)],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for worker in range(PROCESSES)
    ]
    results = []
    for process in processes:
        out, err = process.communicate(timeout=240)
        assert process.returncode == 0, err
        results.append(json.loads(out.strip().splitlines()[-1]))

    allocated = sorted(v for r in results for v in r["versions"])
    assert allocated == list(range(1, PROCESSES * WRITES + 1)), "every version number given out exactly once"

    with Workspace.open(home, db_url=db_url) as ws:
        versions = ws.data.versions("shared")
        assert [v.version for v in versions] == list(range(1, PROCESSES * WRITES + 1))
        seen = set()
        for v in versions:
            rows = ws.data.read_table(v).to_pylist()
            assert len(rows) == 1
            seen.add((rows[0]["worker"], rows[0]["i"]))
        assert seen == {(w, i) for w in range(PROCESSES) for i in range(WRITES)}
        for r in results:
            history = ws.runs.metric_history(r["run"], "i")
            assert [m.value for m in history] == [float(i) for i in range(WRITES)]
            assert ws.runs.get(r["run"]).status == "finished"
