"""AutoML quality against FLAML at the same time budget, and budget overrun.

Data sets: scikit-learn's bundled breast_cancer (binary, ROC AUC), wine and digits (multiclass, log loss),
diabetes (regression, R²), and a synthetic churn set with categorical columns and missing values (binary,
ROC AUC). Each is split into outer folds; on each fold both sides search on the training part with the same
budget and metric (one thread each, fresh processes, sides alternating) and are scored on the outer test part.
Per data set the side with the better mean outer score gets rank 1 (ties 1.5); the target is a mean rank at
least as good as FLAML's, and a budget overrun of at most 5%.

Smaller runs for a quick check (environment variables)::

    CONVEYOR_BENCH_AUTOML_BUDGET=5 CONVEYOR_BENCH_AUTOML_FOLDS=2 \\
    CONVEYOR_BENCH_AUTOML_DATASETS=breast_cancer,synthetic python -m benchmarks --only automl --repeat 1
"""

from __future__ import annotations

import json
import os
import statistics
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from benchmarks._harness import BENCH_DIR, ROOT, Context, Result, Side, print_table, save, timed

DATASETS = {  # name: (task, metric, greater is better)
    "breast_cancer": ("classification", "roc_auc", True),
    "wine": ("classification", "log_loss", False),
    "digits": ("classification", "log_loss", False),
    "diabetes": ("regression", "r2", True),
    "synthetic": ("classification", "roc_auc", True),
    # Medium sets (10k-100k rows), generated here: no download at run time.
    "friedman": ("regression", "r2", True),
    "classify30k": ("classification", "roc_auc", True),
    "churn20k": ("classification", "roc_auc", True),
}
MEDIUM = ("friedman", "classify30k", "churn20k")
MEDIUM_SPLITS = 2  # outer splits of a medium set (25% test each): its folds are big, its searches long
TARGET = "target"


def _settings() -> tuple[list[float], int, list[str]]:
    budgets = [float(b) for b in os.environ.get("CONVEYOR_BENCH_AUTOML_BUDGET", "30,60").split(",")]
    folds = int(os.environ.get("CONVEYOR_BENCH_AUTOML_FOLDS", "5"))
    names = os.environ.get("CONVEYOR_BENCH_AUTOML_DATASETS", ",".join(DATASETS)).split(",")
    unknown = [n for n in names if n not in DATASETS]
    if unknown:
        raise SystemExit(f"Unknown data sets {unknown}; choose from {', '.join(DATASETS)}.")
    return budgets, folds, names


def synthetic(rows: int = 3000, seed: int = 0) -> pd.DataFrame:
    """Churn-like data: numbers with missing values, categories (one with 60 levels), a binary target."""
    rng = np.random.default_rng(seed)
    plan = rng.choice(["basic", "plus", "pro", "team"], rows, p=[0.4, 0.3, 0.2, 0.1])
    region = rng.choice([f"r{i:02d}" for i in range(60)], rows)
    region_effect = {f"r{i:02d}": rng.normal(0, 0.7) for i in range(60)}
    channel = rng.choice(["web", "store", "phone", None], rows, p=[0.5, 0.25, 0.15, 0.1])
    tenure = rng.gamma(2.0, 10.0, rows)
    charges = rng.normal(70, 25, rows)
    calls = rng.poisson(1.5, rows).astype(float)
    logit = (
        -0.05 * tenure
        + 0.015 * (charges - 70)
        + 0.35 * calls
        + np.where(plan == "basic", 0.7, np.where(plan == "team", -0.8, 0.0))
        + np.array([region_effect[r] for r in region])
        + np.where(channel == "phone", 0.5, 0.0)
        + 0.3 * np.sin(tenure / 5)
    )
    target = (rng.random(rows) < 1 / (1 + np.exp(-logit))).astype(int)
    frame = pd.DataFrame(
        {
            "plan": plan,
            "region": region,
            "channel": channel,
            "tenure": tenure,
            "charges": charges,
            "support_calls": calls,
            TARGET: target,
        }
    )
    frame.loc[rng.random(rows) < 0.15, "charges"] = np.nan
    frame.loc[rng.random(rows) < 0.1, "support_calls"] = np.nan
    frame.loc[rng.random(rows) < 0.05, "plan"] = None
    return frame


def load(name: str) -> pd.DataFrame:
    from sklearn import datasets

    if name == "synthetic":
        return synthetic()
    if name == "friedman":  # Friedman #1: 5 informative columns (interaction, sine, square), 5 noise; 20,000 rows
        x, y = datasets.make_friedman1(n_samples=20_000, n_features=10, noise=1.0, random_state=0)
        return pd.DataFrame(x, columns=[f"x{i}" for i in range(10)]).assign(**{TARGET: y})
    if name == "classify30k":  # 30,000 rows, 20 columns (8 informative, 4 redundant), 3% flipped labels
        x, y = datasets.make_classification(
            n_samples=30_000, n_features=20, n_informative=8, n_redundant=4, flip_y=0.03, class_sep=0.8,
            random_state=0,
        )  # fmt: skip
        return pd.DataFrame(x, columns=[f"x{i}" for i in range(20)]).assign(**{TARGET: y})
    if name == "churn20k":  # the quickstart's churn data: numbers, categories, booleans, dates, missing values
        from conveyor.quickstart import TARGET as CHURNED
        from conveyor.quickstart import make_churn_frame

        frame = make_churn_frame(20_000, 7).drop(columns=["customer_id"])
        return frame.rename(columns={CHURNED: TARGET}).assign(**{TARGET: lambda f: f[TARGET].astype(int)})

    frame = getattr(datasets, f"load_{name}")(as_frame=True).frame
    frame.columns = [str(c) for c in frame.columns]
    return frame


def _splits(name: str, frame: pd.DataFrame, folds: int) -> list[tuple[np.ndarray, np.ndarray]]:
    from sklearn.model_selection import KFold, ShuffleSplit, StratifiedKFold, StratifiedShuffleSplit

    task = DATASETS[name][0]
    classification = task == "classification"
    if name in MEDIUM:
        shuffled = StratifiedShuffleSplit if classification else ShuffleSplit
        return list(shuffled(MEDIUM_SPLITS, test_size=0.25, random_state=0).split(frame, frame[TARGET]))
    splitter = (
        StratifiedKFold(folds, shuffle=True, random_state=0)
        if classification
        else KFold(folds, shuffle=True, random_state=0)
    )
    return list(splitter.split(frame, frame[TARGET]))


def _conveyor(train: Path, test: Path, task: str, metric: str, budget: float) -> dict[str, Any]:
    _, out = timed(
        [sys.executable, "-m", "benchmarks.automl", "side", str(train), str(test), task, metric, str(budget)],
        env={"PYTHONPATH": str(ROOT), "PYTHONFAULTHANDLER": "1"},
        cwd=ROOT,
        timeout=budget * 3 + 120,
    )
    return dict(json.loads(out.strip().splitlines()[-1]))


def _flaml(ctx: Context, train: Path, test: Path, task: str, metric: str, budget: float) -> dict[str, Any]:
    script = BENCH_DIR / "peers" / "flaml_automl.py"
    _, out = timed(
        [str(ctx.peer_python()), str(script), str(train), str(test), TARGET, task, metric, str(budget), "0"],
        cwd=ctx.work,
        timeout=budget * 3 + 120,
    )
    return dict(json.loads(out.strip().splitlines()[-1]))


def run(ctx: Context) -> Result:
    """One comparison per budget (30 s and 60 s by default); the last is the headline, the others are saved."""
    budgets, folds, names = _settings()
    results = [_compare(ctx, budget, folds, names, last=budget == budgets[-1]) for budget in budgets]
    for result in results[:-1]:
        save(result)
    print_table(results[:-1])
    return results[-1]


def _compare(ctx: Context, budget: float, folds: int, names: list[str], *, last: bool) -> Result:
    per_dataset: dict[str, dict[str, Any]] = {}
    overrun = {"Conveyor": [], "FLAML": []}  # type: dict[str, list[float]]
    version = ""
    for name in names:
        task, metric, greater = DATASETS[name]
        frame = load(name)
        scores: dict[str, list[float]] = {"Conveyor": [], "FLAML": []}
        trials: dict[str, list[int]] = {"Conveyor": [], "FLAML": []}
        for k, (train_idx, test_idx) in enumerate(_splits(name, frame, folds)):
            train, test = ctx.work / f"{name}-{k}-train.parquet", ctx.work / f"{name}-{k}-test.parquet"
            frame.iloc[train_idx].to_parquet(train)
            frame.iloc[test_idx].to_parquet(test)
            order = ["Conveyor", "FLAML"] if k % 2 == 0 else ["FLAML", "Conveyor"]
            for side in order:
                if side == "Conveyor":
                    out = _conveyor(train, test, task, metric, budget)
                else:
                    out = _flaml(ctx, train, test, task, metric, budget)
                scores[side].append(float(out["score"]))
                trials[side].append(int(out["trials"]))
                overrun[side].append(max(0.0, float(out["seconds"]) - budget) / budget)
                version = str(out.get("flaml", version))
            print(
                f"  {name} fold {k}: Conveyor {scores['Conveyor'][-1]:.4f}, FLAML {scores['FLAML'][-1]:.4f}", flush=True
            )
        mean = {side: statistics.mean(v) for side, v in scores.items()}
        sign = 1 if greater else -1
        diff = sign * (mean["Conveyor"] - mean["FLAML"])
        tie = abs(diff) < 1e-4
        rank = {"Conveyor": 1.5 if tie else (1.0 if diff > 0 else 2.0)}
        rank["FLAML"] = 3.0 - rank["Conveyor"]
        per_dataset[name] = {"metric": metric, "mean": mean, "rank": rank, "scores": scores, "trials": trials}

    def ranks(side: str) -> list[float]:
        return [per_dataset[n]["rank"][side] for n in names]

    def detail(side: str) -> dict[str, Any]:
        info: dict[str, Any] = {"mean rank": f"{statistics.mean(ranks(side)):.2f}"}
        for n in names:
            d = per_dataset[n]
            info[n] = (
                f"{d['metric']} {d['mean'][side]:.4f} (folds: {', '.join(f'{s:.4f}' for s in d['scores'][side])}; "
                f"{'trials' if side == 'Conveyor' else 'improving configs (config_history)'} per fold: "
                f"{', '.join(map(str, d['trials'][side]))})"
            )
        info["budget overrun"] = f"max {max(overrun[side]):.1%}, mean {statistics.mean(overrun[side]):.1%}"
        return info

    # One sample each, the mean rank over data sets (what the target compares); ranks per data set in detail.
    per_set_c, per_set_f = ranks("Conveyor"), ranks("FLAML")
    mean_c, mean_f = statistics.mean(per_set_c), statistics.mean(per_set_f)
    conveyor = Side(
        "Conveyor",
        [mean_c],
        "mean rank",
        {**detail("Conveyor"), "rank per data set": ", ".join(f"{r:g}" for r in per_set_c)},
    )
    peer = Side(
        f"FLAML {version}",
        [mean_f],
        "mean rank",
        {**detail("FLAML"), "rank per data set": ", ".join(f"{r:g}" for r in per_set_f)},
    )
    worst_overrun = max(overrun["Conveyor"])
    splits = f"{folds} outer folds" + (
        f" ({MEDIUM_SPLITS} shuffled 75/25 splits for the medium sets)" if set(names) & set(MEDIUM) else ""
    )
    return Result(
        name="automl" if last else f"automl-{budget:g}s",
        title=f"AutoML quality at a {budget:g} s budget, {len(names)} data sets × {splits} (rank: 1 best)",
        conveyor=conveyor,
        peer=peer,
        better="lower",
        target="mean rank ≤ FLAML's; budget overrun ≤ 5%",
        met=mean_c <= mean_f and worst_overrun <= 0.05,
        notes=[
            f"Mean rank: Conveyor {mean_c:.2f}, FLAML {mean_f:.2f}. Per data set the side with the better mean "
            "outer-fold score ranks 1 (a tie within 1e-4 ranks both 1.5).",
            f"Both sides: the same outer folds (seed 0), budget {budget:g} s, the same metric, one thread "
            "(Conveyor's default; FLAML n_jobs=1), a fresh process per fit, sides alternating per fold.",
            "Overrun: wall time of the fit call beyond the budget, as a share of it (Conveyor: `ws.train.automl`, "
            "everything included; FLAML: `AutoML.fit`, which retrains its best configuration after the budget).",
        ],
    )


def _side(train_path: str, test_path: str, task: str, metric: str, budget: str) -> None:
    """Conveyor's side: search on TRAIN in a fresh workspace, score TEST, print one JSON line."""
    import tempfile

    from sklearn import metrics as m

    from conveyor import Workspace

    train, test = pd.read_parquet(train_path), pd.read_parquet(test_path)
    with tempfile.TemporaryDirectory() as home:
        ws = Workspace.open(home)
        started = time.monotonic()
        result = ws.train.automl(train, TARGET, task=task, metric=metric, time_budget=float(budget), test_size=0.0)
        seconds = time.monotonic() - started
        x_test, y_test = test.drop(columns=[TARGET]), test[TARGET]
        if task == "regression":
            score = float(m.r2_score(y_test, result.model.predict(x_test)))
        else:
            proba = result.model.predict_proba(x_test)
            classes = list(result.model.classes_)
            if metric == "roc_auc":
                score = float(m.roc_auc_score((y_test == classes[1]).astype(int), proba[:, 1]))
            else:
                score = float(m.log_loss(y_test, np.clip(proba, 1e-15, 1), labels=classes))
        ws.close()
    print(
        json.dumps(
            {"score": score, "seconds": seconds, "trials": len(result.trials), "best_learner": result.best_learner}
        )
    )


if __name__ == "__main__" and len(sys.argv) > 1 and sys.argv[1] == "side":
    _side(*sys.argv[2:7])
