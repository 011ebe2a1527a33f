"""The quickstart's lifecycle done with MLflow, for a side-by-side wall-time comparison.

``python mlflow_quickstart.py CSV WORKDIR`` (in the peers' environment): track a run in a SQLite tracking
store, train the same kind of model on the same churn CSV, log it with a signature, register it, serve it
with ``mlflow models serve`` and score five rows over HTTP. Prints one JSON line.
"""

from __future__ import annotations

import json
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx
import mlflow
import pandas as pd
from mlflow.models import infer_signature
from sklearn.compose import ColumnTransformer
from sklearn.ensemble import HistGradientBoostingClassifier
from sklearn.metrics import accuracy_score, roc_auc_score
from sklearn.model_selection import train_test_split
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import OneHotEncoder


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def main(csv: Path, work: Path) -> None:
    started = time.perf_counter()
    mlflow.set_tracking_uri(f"sqlite:///{work / 'mlflow.db'}")
    mlflow.set_experiment("quickstart-churn")
    frame = pd.read_csv(csv)
    target, drop = "churned", ["customer_id", "signup_date"]
    x = frame.drop(columns=[target, *drop])
    y = frame[target]
    categorical = [c for c in x.columns if not pd.api.types.is_numeric_dtype(x[c]) or x[c].dtype == bool]
    numeric = [c for c in x.columns if c not in categorical]
    x[categorical] = x[categorical].astype(str)
    model = Pipeline(
        [
            (
                "features",
                ColumnTransformer(
                    [
                        ("numeric", "passthrough", numeric),
                        ("categorical", OneHotEncoder(handle_unknown="ignore", sparse_output=False), categorical),
                    ]
                ),
            ),
            ("learner", HistGradientBoostingClassifier(max_iter=200, early_stopping=True, random_state=7)),
        ]
    )
    x_train, x_test, y_train, y_test = train_test_split(x, y, test_size=0.2, random_state=7, stratify=y)
    with mlflow.start_run() as run:
        mlflow.log_input(mlflow.data.from_pandas(frame, source=str(csv)), context="training")
        mlflow.log_params({"learning_rate": 0.1, "max_iter": 200, "early_stopping": True, "target": target})
        model.fit(x_train, y_train)
        proba = model.predict_proba(x_test)[:, 1]
        mlflow.log_metrics(
            {"roc_auc": roc_auc_score(y_test, proba), "accuracy": accuracy_score(y_test, model.predict(x_test))}
        )
        signature = infer_signature(x_test, model.predict(x_test))
        mlflow.sklearn.log_model(
            model,
            name="model",
            signature=signature,
            registered_model_name="churn",
            # MLflow 3.17 saves with skops, which asks callers to vouch for the gradient-boosting trees.
            skops_trusted_types=["sklearn.ensemble._hist_gradient_boosting.predictor.TreePredictor"],
        )

    port = free_port()
    env_uri = f"sqlite:///{work / 'mlflow.db'}"
    server = subprocess.Popen(
        [str(Path(sys.executable).parent / "mlflow"), "models", "serve", "-m", "models:/churn/1",
         "--env-manager", "local", "-h", "127.0.0.1", "-p", str(port)],
        env={"MLFLOW_TRACKING_URI": env_uri, "PATH": str(Path(sys.executable).parent) + ":/usr/bin:/bin"},
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )  # fmt: skip
    try:
        deadline = time.monotonic() + 120
        while True:
            try:
                if httpx.get(f"http://127.0.0.1:{port}/ping", timeout=1).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            if server.poll() is not None or time.monotonic() > deadline:
                raise SystemExit("mlflow models serve did not come up")
            time.sleep(0.05)
        rows = x_test.head(5)
        response = httpx.post(
            f"http://127.0.0.1:{port}/invocations",
            json={"dataframe_records": json.loads(rows.to_json(orient="records"))},
            timeout=30,
        )
        response.raise_for_status()
        predictions = response.json()["predictions"]
    finally:
        server.terminate()
        server.wait(timeout=30)
    print(json.dumps({"seconds": time.perf_counter() - started, "predictions": predictions, "run_id": run.info.run_id}))


if __name__ == "__main__":
    main(Path(sys.argv[1]), Path(sys.argv[2]))
