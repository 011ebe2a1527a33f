"""The serving benchmark's peers, run in the peers' environment (``.venv-bench``).

``python serving_peers.py prepare WORK``: train the benchmark's model (scikit-learn's breast-cancer data,
``StandardScaler`` + ``LogisticRegression``), log and register it with ``mlflow.sklearn`` in a SQLite tracking
store under WORK (for ``mlflow models serve``), pickle it to ``WORK/model.pkl`` (for the Flask app), and print
one JSON line: the tracking URI, the model URI, the pickle's path, one feature row and the models' predictions
for the first rows (so the benchmark can check every server scores the same model the same way).

``python serving_peers.py flask PICKLE PORT``: the plain Flask app of the seeds' example, on 127.0.0.1 with
Flask's built-in server (threaded, its default), as such tutorials run it.
"""

from __future__ import annotations

import json
import pickle
import sys
from pathlib import Path
from typing import Any

CHECK_ROWS = 5


def train() -> tuple[Any, Any]:
    """The benchmark's model and its feature frame; the same code runs on Conveyor's side."""
    from sklearn.datasets import load_breast_cancer
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import Pipeline
    from sklearn.preprocessing import StandardScaler

    data = load_breast_cancer(as_frame=True)
    model = Pipeline([("scale", StandardScaler()), ("classify", LogisticRegression(max_iter=1000))])
    model.fit(data.data, data.target)
    return model, data.data


def prepare(work: Path) -> None:
    import mlflow
    from mlflow.models import infer_signature

    model, features = train()
    tracking_uri = f"sqlite:///{work / 'mlflow.db'}"
    mlflow.set_tracking_uri(tracking_uri)
    mlflow.set_experiment("serving-benchmark")
    with mlflow.start_run():
        mlflow.sklearn.log_model(
            model,
            name="model",
            # A signature, as MLflow's docs recommend: the server then checks every request against it.
            signature=infer_signature(features, model.predict(features)),
            registered_model_name="breast-cancer",
        )
    pickle_path = work / "model.pkl"
    with pickle_path.open("wb") as file:
        pickle.dump(model, file)
    rows = json.loads(features.head(CHECK_ROWS).to_json(orient="records"))
    print(
        json.dumps(
            {
                "tracking_uri": tracking_uri,
                "model_uri": "models:/breast-cancer/1",
                "pickle": str(pickle_path),
                "rows": rows,
                "predictions": model.predict(features.head(CHECK_ROWS)).tolist(),
                "mlflow": mlflow.__version__,
            }
        )
    )


def serve_flask(pickle_path: Path, port: int) -> None:
    """The seeds' Flask example, kept as plain as the tutorial: load a pickle, predict on ``request.json``."""
    import pandas as pd
    from flask import Flask, jsonify, request

    with pickle_path.open("rb") as file:
        model = pickle.load(file)  # our own pickle, written by ``prepare`` above

    app = Flask(__name__)

    @app.route("/predict", methods=["POST"])
    def predict() -> Any:
        data = request.json  # a JSON list of records, like Conveyor's /predict
        prediction = model.predict(pd.DataFrame(data))
        return jsonify({"predictions": prediction.tolist()})

    # Flask's built-in (Werkzeug) server, threaded as it is by default: what the tutorials ship.
    app.run(host="127.0.0.1", port=port, threaded=True)


if __name__ == "__main__":
    if sys.argv[1] == "prepare":
        prepare(Path(sys.argv[2]))
    elif sys.argv[1] == "flask":
        serve_flask(Path(sys.argv[2]), int(sys.argv[3]))
    else:
        raise SystemExit(f"unknown command {sys.argv[1]!r}: use 'prepare WORK' or 'flask PICKLE PORT'")
