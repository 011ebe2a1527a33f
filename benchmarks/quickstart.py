"""Cold quickstart: `conveyor quickstart --no-serve` against the same lifecycle done with MLflow.

Cold means a new process and an empty workspace each time (the operating system's file cache stays warm,
as it would for a user running it twice). Both sides: ingest/read the churn CSV, train, track, register,
serve over HTTP and score five rows, then stop serving. Conveyor's time also includes generating the data.
"""

from __future__ import annotations

import json
import shutil

from benchmarks._harness import BENCH_DIR, Context, Result, Side, peer_versions, timed

TARGET_SECONDS = 60.0


def run(ctx: Context) -> Result:
    from conveyor import __version__
    from conveyor.quickstart import make_churn_frame

    csv = ctx.work / "churn.csv"
    make_churn_frame(20_000, seed=7).to_csv(csv, index=False)
    conveyor_samples: list[float] = []
    peer_samples: list[float] = []
    inner: list[float] = []
    for i in range(ctx.repeat):
        home = ctx.work / f"conveyor-{i}"
        shutil.rmtree(home, ignore_errors=True)
        seconds, out = timed([str(ctx.conveyor_bin()), "--home", str(home), "quickstart", "--no-serve", "--json"])
        conveyor_samples.append(seconds)
        inner.append(json.loads(out)["seconds"])

        peer_work = ctx.work / f"mlflow-{i}"
        shutil.rmtree(peer_work, ignore_errors=True)
        peer_work.mkdir(parents=True)
        script = BENCH_DIR / "peers" / "mlflow_quickstart.py"
        seconds, _ = timed(
            [str(ctx.peer_python()), str(script), str(csv), str(peer_work)],
            env={"MLFLOW_TRACKING_URI": ""},
            cwd=peer_work,
        )
        peer_samples.append(seconds)

    versions = peer_versions(["mlflow", "scikit-learn", "pandas"])
    conveyor = Side(
        "Conveyor",
        conveyor_samples,
        "s",
        {"version": __version__, "lifecycle seconds reported by the command": ", ".join(f"{s:.2f}" for s in inner)},
    )
    peer = Side(
        f"MLflow {versions['mlflow']}",
        peer_samples,
        "s",
        {
            "versions": ", ".join(f"{k} {v}" for k, v in versions.items()),
            "serving": "mlflow models serve --env-manager local",
        },
    )
    return Result(
        name="quickstart",
        title="Cold quickstart (data → run → registry → endpoint → 5 scores)",
        conveyor=conveyor,
        peer=peer,
        better="lower",
        target=f"≤ {TARGET_SECONDS:.0f} s",
        met=conveyor.median <= TARGET_SECONDS,
        notes=[
            "Wall time of the whole command in a new process and an empty workspace, median of "
            f"{ctx.repeat} runs, sides alternating.",
            "Not the same training: Conveyor's quickstart runs AutoML with its 10 s budget (a search over six "
            "learners, each trial a child run, evaluation charts); the MLflow side fits one HistGradientBoosting "
            "on the same CSV (one-hot categoricals, no date features), tracks to SQLite, registers, serves with "
            "`mlflow models serve`, and scores the same 5 rows. It does not generate the data; Conveyor's side does.",
        ],
    )
