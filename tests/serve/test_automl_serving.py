"""Every task AutoML offers ships: classification, regression and forecasting models deploy, answer on every
route, batch-score and export. One small model per task, trained once for the module."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import orjson
import pandas as pd
import pyarrow as pa
import pytest

from tests.automl_models import tabular
from tests.serve.slim import serving_like_the_image


@pytest.fixture(scope="module")
def trained(automl_task_models: tuple[Any, Any]) -> Iterator[tuple[Any, dict[str, pd.DataFrame]]]:
    """The session's workspace with one registered AutoML model per task, and the rows each model takes."""
    ws, forecast = automl_task_models
    inputs = tabular()[["size", "rooms", "kind"]]
    future = pd.DataFrame({"store": ["north", "south", "north"], "week": ["2024-04-21", "2024-04-21", "2024-05-12"]})
    assert str(forecast.example["week"].min())[:10] == "2024-04-21"  # the week after the last one
    yield ws, {"clf": inputs.head(5), "reg": inputs.head(5), "fc": future}
    for endpoint in ws.endpoints.list():
        ws.endpoints.delete(endpoint.name)


def _records(frame: pd.DataFrame) -> list[dict[str, Any]]:
    return list(orjson.loads(frame.to_json(orient="records", date_format="iso")))


def _v2(frame: pd.DataFrame) -> dict[str, Any]:
    inputs = []
    for name in frame.columns:
        values = frame[name].tolist()
        datatype = "FP64" if frame[name].dtype.kind == "f" else "BYTES"
        inputs.append({"name": name, "shape": [len(values)], "datatype": datatype, "data": values})
    return {"inputs": inputs}


@pytest.mark.slow
@pytest.mark.parametrize("model", ["clf", "reg", "fc"])
def test_an_automl_model_of_each_task_deploys_serves_batch_scores_and_exports(  # type: ignore[no-untyped-def]
    trained, model: str, tmp_path: Path, cli
) -> None:
    import mlflow.pyfunc  # the dev extra installs mlflow-skinny: never skipped

    ws, rows = trained
    frame = rows[model]
    loaded = ws.models.load(model)
    expected = np.asarray(loaded.predict(frame))
    assert expected.shape == (len(frame),) and np.isfinite(expected.astype(float) if model != "clf" else 0).all()
    version = ws.models.get(model)
    assert "input_example.parquet" in version.files  # what warm-up scores
    # AutoML converted the learners to ONNX (checked against them): the model scores through ONNX Runtime.
    inner = getattr(loaded, "model", loaded)
    assert inner.inference.startswith("onnx"), inner.inference
    assert ws.runs.get(version.run_id).tags["inference"] == inner.inference == version.tags["inference"]

    ws.endpoints.deploy(f"ep-{model}", model)
    endpoint = ws.endpoints.get(f"ep-{model}")
    assert endpoint.status == "running"
    headers = {"Authorization": f"Bearer {ws.endpoints.keys(endpoint.name)['primary']}"}
    with httpx.Client(base_url=endpoint.url, headers=headers, timeout=30) as client:
        predict = client.post("/predict", json=_records(frame))
        assert predict.status_code == 200, predict.text
        invocations = client.post("/invocations", json={"dataframe_records": _records(frame)})
        assert invocations.status_code == 200, invocations.text
        v2 = client.post(f"/v2/models/{endpoint.name}/infer", json=_v2(frame))
        assert v2.status_code == 200, v2.text
    answers = [
        predict.json()["predictions"],
        invocations.json()["predictions"],
        v2.json()["outputs"][0]["data"],
    ]
    for answer in answers:
        if model == "clf":
            assert answer == expected.tolist()
        else:
            np.testing.assert_allclose(np.asarray(answer, dtype=float), expected.astype(float), rtol=1e-9)

    table = pa.Table.from_pandas(frame.reset_index(drop=True), preserve_index=False)
    ws.data.commit_table(table, name=f"{model}_rows", source={"kind": "test"})
    scored = ws.batch.score(model, f"{model}_rows", output=f"{model}_scored", executor="local:1")
    assert scored.rows == len(frame) and scored.failed_rows == 0
    out = ws.data.to_pandas(scored.output)
    if model == "clf":
        assert out["prediction"].tolist() == expected.tolist() and "probability" in out.columns
    else:
        np.testing.assert_allclose(out["prediction"].to_numpy(dtype=float), expected.astype(float), rtol=1e-9)

    # The Docker export: its image installs only what serving this model needs, and that is enough.
    image = tmp_path / "image"
    made = cli("--home", str(ws.settings.home), "export", "docker", endpoint.name, "--out", str(image), "--json")
    assert made.code == 0, made.err
    assert made.json["packages"] > 10 and made.json["packages_mb"] > 0
    with serving_like_the_image(image, "k1,k2") as url:
        slim = httpx.post(f"{url}/predict", json=_records(frame), headers={"Authorization": "Bearer k1"}, timeout=30)
    assert slim.status_code == 200, slim.text
    if model == "clf":
        assert slim.json()["predictions"] == expected.tolist()
    else:
        np.testing.assert_allclose(np.asarray(slim.json()["predictions"], dtype=float), expected.astype(float))

    folder = tmp_path / "mlflow"
    exported = cli("--home", str(ws.settings.home), "models", "export", model, str(folder), "--format", "mlflow")
    assert exported.code == 0, exported.err
    assert (folder / "MLmodel").is_file()
    # MLflow enforces the signature's types itself: a datetime column takes datetimes, not ISO text.
    typed = frame.assign(week=pd.to_datetime(frame["week"])) if model == "fc" else frame
    mlflow_predictions = np.asarray(mlflow.pyfunc.load_model(str(folder)).predict(typed))
    if model == "clf":
        assert mlflow_predictions.tolist() == expected.tolist()
    else:
        np.testing.assert_allclose(mlflow_predictions.astype(float), expected.astype(float), rtol=1e-9)


@pytest.mark.slow
def test_a_forecast_for_a_time_the_model_does_not_forecast_names_the_times_it_does(trained) -> None:  # type: ignore[no-untyped-def]
    ws, _ = trained
    ws.endpoints.deploy("ep-fc-bad", "fc")
    url = ws.endpoints.get("ep-fc-bad").url
    headers = {"Authorization": f"Bearer {ws.endpoints.keys('ep-fc-bad')['primary']}"}
    late = httpx.post(f"{url}/predict", json=[{"store": "north", "week": "2025-01-05"}], headers=headers)
    assert late.status_code == 400
    assert "is not a forecast time of series 'north'" in late.json()["error"]["message"]
    assert "2024-04-21 to 2024-05-12" in late.json()["error"]["message"]
    unknown = httpx.post(f"{url}/predict", json=[{"store": "nort", "week": "2024-04-21"}], headers=headers)
    assert unknown.status_code == 400 and "Did you mean 'north'" in unknown.json()["error"]["message"]
