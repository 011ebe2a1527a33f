"""The serving benchmark's peers, run in the peers' environment (``.venv-bench``).

``python serving_peers.py prepare WORK``: train the benchmark's model (scikit-learn's breast-cancer data,
``StandardScaler`` + ``LogisticRegression``), log and register it with ``mlflow.sklearn`` in a SQLite tracking
store under WORK (for ``mlflow models serve``), pickle it to ``WORK/model.pkl`` (for the Flask app), and print
one JSON line: the tracking URI, the model URI, the pickle's path, one feature row and the models' predictions
for the first rows (so the benchmark can check every server scores the same model the same way).

``python serving_peers.py flask PICKLE PORT``: the plain Flask app of the seeds' example, on 127.0.0.1 with
Flask's built-in server (threaded, its default), as such tutorials run it.

For the models Conveyor's AutoML makes, the peers serve Conveyor's portable MLflow export
(``conveyor models export REF DIR --format mlflow``), which bundles Conveyor's small runtime as code: this
environment has no ``conveyor`` (and no ``onnxruntime``, so the models' learners score natively here).

``python serving_peers.py flask-mlflow EXPORT_DIR PORT``: the same Flask app, the model loaded from the export
with ``mlflow.pyfunc.load_model``.

``python serving_peers.py score EXPORT_DIR ROWS_PARQUET REPEAT``: load the export the same way and print one
JSON line: its predictions and probabilities for the rows, how the model scores here, whether ``conveyor``
and ``onnxruntime`` are importable here, which of the export's pinned requirements this environment does not
meet, and REPEAT medians of a one-row ``predict_proba`` (milliseconds).
"""

from __future__ import annotations

import json
import pickle
import statistics
import sys
import time
from pathlib import Path
from typing import Any

CHECK_ROWS = 5
PROBA_CALLS, PROBA_WARMUP = 1000, 50  # one-row predict_proba timings: calls per sample, and not counted first


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


def proba_median_ms(model: Any, row: Any) -> float:
    """The median of ``PROBA_CALLS`` one-row ``model.predict_proba(row)`` calls, in milliseconds (after
    ``PROBA_WARMUP`` calls that are not counted); the same code times Conveyor's copy of a model."""
    for _ in range(PROBA_WARMUP):
        model.predict_proba(row)
    times = []
    for _ in range(PROBA_CALLS):
        started = time.perf_counter()
        model.predict_proba(row)
        times.append(time.perf_counter() - started)
    return statistics.median(times) * 1000


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
    with pickle_path.open("rb") as file:
        _flask_app(pickle.load(file), port)  # our own pickle, written by ``prepare`` above


def serve_flask_mlflow(model_dir: Path, port: int) -> None:
    """The same Flask app on an MLflow model folder: ``mlflow.pyfunc.load_model``, predict on ``request.json``."""
    import mlflow

    _flask_app(mlflow.pyfunc.load_model(str(model_dir)), port)


def _flask_app(model: Any, port: int) -> None:
    """``POST /predict`` with a JSON list of records (like Conveyor's /predict) on Flask's built-in (Werkzeug)
    server, threaded as it is by default: what the tutorials ship."""
    import pandas as pd
    from flask import Flask, jsonify, request

    app = Flask(__name__)

    @app.route("/predict", methods=["POST"])
    def predict() -> Any:
        prediction = model.predict(pd.DataFrame(request.json))
        return jsonify({"predictions": prediction.tolist()})

    app.run(host="127.0.0.1", port=port, threaded=True)


def _unmet_pins(model_dir: Path) -> list[str]:
    """The export's ``requirements.txt`` pins this environment does not meet (``--env-manager local`` ignores
    them): ``name==wanted (here: installed or missing)``."""
    from importlib import metadata

    unmet = []
    for line in (model_dir / "requirements.txt").read_text().splitlines():
        name, _, wanted = line.strip().partition("==")
        if not wanted:
            continue
        try:
            here = metadata.version(name)
        except metadata.PackageNotFoundError:
            here = "missing"
        if here != wanted:
            unmet.append(f"{name}=={wanted} (here: {here})")
    return unmet


def score(model_dir: Path, rows_path: Path, repeat: int) -> None:
    """How the export scores here: predictions, probabilities and one-row ``predict_proba`` timings."""
    import importlib.util

    import mlflow
    import pandas as pd

    model = mlflow.pyfunc.load_model(str(model_dir))
    raw = model.get_raw_model()  # the fitted model itself, as the sklearn flavor unpickled it
    rows = pd.read_parquet(rows_path)
    onnxruntime = importlib.util.find_spec("onnxruntime") is not None
    print(
        json.dumps(
            {
                "predictions": model.predict(rows).tolist(),
                "probabilities": raw.predict_proba(rows).tolist(),
                "inference": str(getattr(raw, "inference", "")),
                # A Conveyor AutoML model runs its learners' ONNX graphs only where onnxruntime imports.
                "engine": "onnx" if onnxruntime and getattr(raw, "compiled", None) else "native",
                "conveyor_importable": importlib.util.find_spec("conveyor") is not None,
                "onnxruntime_importable": onnxruntime,
                "unmet_pins": _unmet_pins(model_dir),
                "proba_ms": [proba_median_ms(raw, rows.head(1)) for _ in range(repeat)],
            }
        )
    )


if __name__ == "__main__":
    if sys.argv[1] == "prepare":
        prepare(Path(sys.argv[2]))
    elif sys.argv[1] == "flask":
        serve_flask(Path(sys.argv[2]), int(sys.argv[3]))
    elif sys.argv[1] == "flask-mlflow":
        serve_flask_mlflow(Path(sys.argv[2]), int(sys.argv[3]))
    elif sys.argv[1] == "score":
        score(Path(sys.argv[2]), Path(sys.argv[3]), int(sys.argv[4]))
    else:
        raise SystemExit(
            f"unknown command {sys.argv[1]!r}: use 'prepare WORK', 'flask PICKLE PORT', "
            "'flask-mlflow EXPORT_DIR PORT' or 'score EXPORT_DIR ROWS_PARQUET REPEAT'"
        )
