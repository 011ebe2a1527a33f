"""FLAML's side of the AutoML benchmark (runs in .venv-bench).

``python flaml_automl.py TRAIN.parquet TEST.parquet TARGET TASK METRIC BUDGET SEED`` fits ``flaml.AutoML`` on
TRAIN within BUDGET seconds, scores TEST, and prints one JSON line:
``{"score", "seconds", "trials", "best_learner", "flaml"}``. ``seconds`` is the wall time of ``fit`` (FLAML
retrains the best configuration on all rows after the search, by default outside its budget).
"""

from __future__ import annotations

import json
import sys
import time
import warnings

import numpy as np
import pandas as pd


def main() -> None:
    train_path, test_path, target, task, metric, budget, seed = sys.argv[1:8]
    warnings.simplefilter("ignore")
    import flaml
    from flaml import AutoML
    from sklearn import metrics as m

    train, test = pd.read_parquet(train_path), pd.read_parquet(test_path)
    x_train, y_train = train.drop(columns=[target]), train[target]
    x_test, y_test = test.drop(columns=[target]), test[target]
    for frame in (x_train, x_test):
        for column in frame.columns:
            if frame[column].dtype == object or str(frame[column].dtype).startswith("string"):
                frame[column] = frame[column].astype("category")
    automl = AutoML()
    started = time.perf_counter()
    automl.fit(
        x_train,
        y_train,
        task=task,
        metric=metric,
        time_budget=float(budget),
        seed=int(seed),
        n_jobs=1,
        verbose=0,
    )
    seconds = time.perf_counter() - started
    if task == "regression":
        score = float(m.r2_score(y_test, automl.predict(x_test)))
    else:
        proba = automl.predict_proba(x_test)
        classes = list(automl.classes_)
        if metric == "roc_auc":
            score = float(m.roc_auc_score((y_test == classes[1]).astype(int), proba[:, 1]))
        else:
            score = float(m.log_loss(y_test, np.clip(proba, 1e-15, 1), labels=classes))
    # config_history holds the configurations that improved the best so far, not every trial FLAML ran
    trials = len(getattr(automl, "config_history", {}) or {})
    print(
        json.dumps(
            {
                "score": score,
                "seconds": seconds,
                "trials": trials,
                "best_learner": automl.best_estimator,
                "flaml": flaml.__version__,
            }
        )
    )


if __name__ == "__main__":
    main()
