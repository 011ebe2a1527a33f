"""A writer process for the concurrency test: ``python concurrent_writer.py HOME DB_URL WORKER N START_AT``.

It opens the workspace (the first to arrive runs the migrations), waits for the common start time, then
commits N small data versions to the shared asset and N metric values to its own run, and prints the
versions it got as JSON.
"""

from __future__ import annotations

import json
import sys
import time

import pyarrow as pa

from conveyor import Workspace


def main() -> None:
    home, db_url, worker, count, start_at = (
        sys.argv[1],
        sys.argv[2],
        int(sys.argv[3]),
        int(sys.argv[4]),
        float(sys.argv[5]),
    )
    time.sleep(max(0.0, start_at - time.time()))
    ws = Workspace.open(home, db_url=db_url)
    versions = []
    with ws.runs.start("concurrency", name=f"worker-{worker}") as run:
        for i in range(count):
            table = pa.table({"worker": [worker], "i": [i]})
            version, created = ws.data.commit_table(table, name="shared", source={"kind": "test", "worker": worker})
            assert created
            versions.append(version.version)
            run.log_metric("i", float(i), step=i)
    ws.close()
    print(json.dumps({"worker": worker, "run": run.id, "versions": versions}))


if __name__ == "__main__":
    main()
