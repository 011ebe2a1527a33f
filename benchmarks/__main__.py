"""``python -m benchmarks [--only NAME ...] [--repeat N]``: run benchmarks side by side, print the ratios,
store each result in ``benchmarks/results/`` and rewrite ``docs/benchmarks.md``.
"""

from __future__ import annotations

import argparse
import shutil
import sys

from benchmarks import (
    automl,
    batch,
    cards,
    cli_startup,
    drift,
    faults,
    governance,
    ingest,
    pipelines,
    quickstart,
    serving,
    streaming,
    studio,
    tracking,
)
from benchmarks._harness import WORK_DIR, Benchmark, Context, ensure_peer_environment, print_table, save, write_docs

BENCHMARKS: dict[str, Benchmark] = {"quickstart": quickstart.run, "ingest": ingest.run, "streaming": streaming.run}
BENCHMARKS["pipelines-overhead"] = pipelines.run_overhead
BENCHMARKS["pipelines-cached"] = pipelines.run_cached
BENCHMARKS["pipelines-dask"] = pipelines.run_dask
BENCHMARKS["tracking-log-metric"] = tracking.run_log_metric
BENCHMARKS["tracking-log-batch"] = tracking.run_log_batch
BENCHMARKS["tracking-search"] = tracking.run_search
BENCHMARKS["automl"] = automl.run
BENCHMARKS["batch-scoring"] = batch.run
BENCHMARKS["serving"] = serving.run
BENCHMARKS["drift"] = drift.run
BENCHMARKS["drift-profile"] = drift.run_profile
BENCHMARKS["governance-auth"] = governance.run_auth
BENCHMARKS["governance-audit-append"] = governance.run_audit_append
BENCHMARKS["governance-audit-verify"] = governance.run_audit_verify
BENCHMARKS["quickstart-loop"] = quickstart.run_loop
BENCHMARKS["studio-pages"] = studio.run
BENCHMARKS["faults-killed-ingest-scratch"] = faults.run_killed_ingests
BENCHMARKS["model-card"] = cards.run
BENCHMARKS["cli-startup"] = cli_startup.run
#: Benchmarks that need no shared peer environment: they compare Conveyor with itself (with and without a
#: feature), or set up their peer's own environment (drift: Evidently needs pandas 2).
WITHOUT_PEERS = {
    "governance-auth",
    "governance-audit-append",
    "governance-audit-verify",
    "drift",
    "drift-profile",
    "quickstart-loop",
    "model-card",
    "faults-killed-ingest-scratch",
}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks", description=__doc__)
    parser.add_argument("--only", nargs="+", choices=sorted(BENCHMARKS), help="run only these benchmarks")
    parser.add_argument("--repeat", type=int, default=3, help="repetitions per side (default 3)")
    args = parser.parse_args(argv)
    if args.repeat < 1:
        parser.error("--repeat must be at least 1")

    selected = args.only or list(BENCHMARKS)
    if not set(selected) <= WITHOUT_PEERS:
        ensure_peer_environment()
    results = []
    for name in selected:
        work = WORK_DIR / name
        shutil.rmtree(work, ignore_errors=True)
        work.mkdir(parents=True)
        print(f"running {name} ({args.repeat} × each side)…", flush=True)
        result = BENCHMARKS[name](Context(repeat=args.repeat, work=work))
        save(result)
        results.append(result)
    write_docs()
    print_table(results)
    return 0 if all(r.met for r in results) else 1


if __name__ == "__main__":
    sys.exit(main())
