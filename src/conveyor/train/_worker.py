"""The trial worker: a separate process that fits and scores trial configurations fold by fold, so a trial
that overruns the time budget can be stopped by killing the process.

Protocol (``multiprocessing`` pipe, parent → worker): ``("data", payload)`` once, then
``("trial", number, config, keep_above)`` per trial, answered by one ``("fold", number, k, score, seconds)``
per fold (the parent replies ``"go"`` or ``"stop"``: pruning) and a final ``("done", number, result)``,
``("pruned", number)`` or ``("error", number, message)``. After the search, ``("refit", index, config)`` fits
a configuration once on every row of the data and answers ``("refitted", index, model, seconds)`` (or
``("error", index, message)``). ``("quit",)`` ends the worker.
"""

from __future__ import annotations

import contextlib
import os
import signal
import time
import traceback
import warnings
from typing import Any

import numpy as np

__all__ = ["main"]


def main(conn: Any, parent: int | None = None) -> None:
    """Serve trials on ``conn`` until told to quit or the pipe closes (or ``parent``, the search's process, is
    gone: a fit notices the closed pipe only when it ends, which on big data is minutes later)."""
    if parent is not None:
        _exit_with_the_parent(parent)
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl+C is the parent's to handle; it stops us
    warnings.simplefilter("ignore")
    os.environ.setdefault("PYTHONWARNINGS", "ignore")
    _preload()
    data: dict[str, Any] | None = None
    while True:
        try:
            message = conn.recv()
        except (EOFError, OSError):
            return
        kind = message[0]
        if kind == "quit":
            return
        if kind == "data":
            data = message[1]
            conn.send(("ready",))
            continue
        if kind in ("trial", "refit") and data is not None:
            number = message[1]
            try:
                if kind == "trial":
                    _run_trial(conn, data, number, message[2], message[3])
                else:
                    _refit(conn, data, number, message[2])
            except (EOFError, OSError):
                return
            except Exception as exc:  # noqa: BLE001 - a learner failing is a failed trial, reported to the parent
                detail = "".join(traceback.format_exception_only(type(exc), exc)).strip()
                conn.send(("error", number, detail[-2000:]))


def _preload() -> None:
    """Import scikit-learn now, while the parent reads and checks the data, and LightGBM and XGBoost on a
    background thread while the first (scikit-learn) trials run, so trials do not wait for imports."""
    import importlib
    import threading

    def load(modules: tuple[str, ...]) -> None:
        for module in modules:
            with contextlib.suppress(ImportError):  # reported by the trial that needs it
                importlib.import_module(module)

    load(
        (
            "conveyor.train._learners",
            "conveyor.train._featurize",
            "conveyor.train._metrics",
            "sklearn.ensemble",
            "sklearn.linear_model",
            "sklearn.impute",
            "sklearn.feature_extraction.text",
        )
    )
    threading.Thread(target=load, args=(("lightgbm", "xgboost"),), daemon=True).start()


def _refit(conn: Any, data: dict[str, Any], index: int, config: dict[str, Any]) -> None:
    """Fit ``config`` once on every row the search validated on (the model that ships)."""
    from conveyor.train._learners import build_model

    model = build_model(config, data["kinds"], data["task"], data["n_classes"], data["seed"], data["n_jobs"])
    started = time.perf_counter()
    model.fit(data["x"], data["y"])
    conn.send(("refitted", index, model, time.perf_counter() - started))


def _run_trial(conn: Any, data: dict[str, Any], number: int, config: dict[str, Any], keep_above: float) -> None:
    from conveyor.train._learners import build_model
    from conveyor.train._metrics import score

    x, y, folds, spec = data["x"], data["y"], data["folds"], data["metric"]
    task, n_classes = data["task"], data["n_classes"]
    predictions = []
    models = []
    scores = []
    fit_seconds = 0.0
    started = time.perf_counter()
    for k, (train_idx, val_idx) in enumerate(folds):
        model = build_model(config, data["kinds"], task, n_classes, data["seed"], data["n_jobs"])
        t0 = time.perf_counter()
        model.fit(x.iloc[train_idx], y[train_idx])
        fit_seconds += time.perf_counter() - t0
        x_val = x.iloc[val_idx]
        if task == "classification":
            proba = np.asarray(model.predict_proba(x_val), dtype=float)
            pred = np.zeros((len(val_idx), n_classes))
            pred[:, np.asarray(model.classes_, dtype=int)] = proba
        else:
            pred = np.asarray(model.predict(x_val), dtype=float)
        if not np.all(np.isfinite(pred)):
            raise ValueError("the learner predicted non-finite values")
        value = score(spec, y[val_idx], pred)
        predictions.append(pred)
        models.append(model)
        scores.append(value)
        conn.send(("fold", number, k, value, time.perf_counter() - started))
        if conn.recv() == "stop":
            conn.send(("pruned", number))
            return
    oof = np.concatenate(predictions, axis=0)
    y_val = np.concatenate([y[v] for _, v in folds])
    mean = score(spec, y_val, oof) if len(folds) > 1 else scores[0]
    result = {
        "score": float(mean),
        "fold_scores": scores,
        "oof": oof.astype(np.float32),
        "fit_seconds": fit_seconds,
        "seconds": time.perf_counter() - started,
        "models": models if mean > keep_above else None,
    }
    conn.send(("done", number, result))


def _exit_with_the_parent(parent: int) -> None:
    """A thread that ends this process (at once: a fit cannot be interrupted) when ``parent`` is no longer its
    parent, i.e. the search was SIGKILLed. A poll of the parent's PID rather than ``PR_SET_PDEATHSIG``: that fires
    when the starting *thread* ends, and the search may start a worker from another thread."""
    import threading

    def watch() -> None:
        while os.getppid() == parent:
            time.sleep(0.5)
        os._exit(0)

    threading.Thread(target=watch, daemon=True, name="conveyor-parent-watch").start()


if __name__ == "__main__":
    import sys
    from multiprocessing.connection import Connection

    main(Connection(int(sys.argv[1])), int(sys.argv[2]) if len(sys.argv) > 2 else os.getppid())
