"""The registry: versions with signature and requirements, aliases, verified loading."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from sklearn.linear_model import LogisticRegression

from conveyor.errors import ArtifactCorrupted, BadInput, Conflict, NotFound
from conveyor.registry import infer_signature


@pytest.fixture
def fitted() -> tuple[LogisticRegression, pd.DataFrame]:
    rng = np.random.default_rng(0)
    x = pd.DataFrame({"a": rng.normal(size=100), "b": rng.normal(size=100)})
    y = (x["a"] + x["b"] > 0).astype(int)
    return LogisticRegression().fit(x, y), x


def test_register_get_alias_and_load(any_workspace, fitted) -> None:  # type: ignore[no-untyped-def]
    model, x = fitted
    ws = any_workspace
    with ws.runs.start("exp") as run:
        pass
    signature = infer_signature(x, model.predict(x))
    v1 = ws.models.register("clf", model, run_id=run.id, signature=signature, metrics={"auc": 0.9})
    v2 = ws.models.register("clf", model)
    assert (v1.ref, v2.ref) == ("clf:1", "clf:2")
    assert v1.signature["inputs"] == [
        {"name": "a", "type": "double", "required": True},
        {"name": "b", "type": "double", "required": True},
    ]
    assert v1.signature["outputs"][0]["type"] == "long"
    dated = infer_signature(pd.DataFrame({"d": pd.to_datetime(["2024-01-01"]).date, "t": ["x"]}))
    assert [c["type"] for c in dated["inputs"]] == ["datetime", "string"]
    assert any(r.startswith("scikit-learn==") for r in v1.requirements)
    assert ws.models.get("clf").version == 2
    ws.models.set_alias("clf", "champion", 1)
    assert ws.models.get("clf@champion").id == v1.id
    assert ws.models.get("clf:1").aliases == ["champion"]
    ws.models.set_alias("clf", "champion", 2)
    assert ws.models.get("clf@champion").version == 2
    loaded = ws.models.load("clf@champion")
    assert (loaded.predict(x) == model.predict(x)).all()
    assert [(m.name, m.latest_version, m.versions, m.aliases) for m in ws.models.list()] == [
        ("clf", 2, 2, {"champion": 2})
    ]
    edges = ws.lineage.edges("run", run.id)
    assert [(e.relation, e.to_kind, e.to_id) for e in edges] == [("produced", "model_version", v1.id)]


def test_a_tampered_model_file_is_never_loaded(workspace, fitted) -> None:  # type: ignore[no-untyped-def]
    model, _ = fitted
    v = workspace.models.register("clf", model)
    path = workspace.artifacts._path(v.digest)
    os.chmod(path, 0o644)
    data = bytearray(Path(path).read_bytes())
    data[-10] ^= 0xFF
    Path(path).write_bytes(bytes(data))
    with pytest.raises(ArtifactCorrupted, match=v.digest):
        workspace.models.load("clf:1")


def test_registration_errors(workspace, fitted) -> None:  # type: ignore[no-untyped-def]
    model, _ = fitted
    with pytest.raises(NotFound, match="No run with id 'missing'"):
        workspace.models.register("clf", model, run_id="missing")
    with pytest.raises(ZeroDivisionError), workspace.runs.start() as run:
        _ = 1 / 0
    with pytest.raises(Conflict, match="failed; register models only from runs that finished"):
        workspace.models.register("clf", model, run_id=run.id)
    assert workspace.models.list() == [], "nothing half-registered"
    workspace.models.register("clf", model)
    with pytest.raises(NotFound, match="has no version 5"):
        workspace.models.set_alias("clf", "champion", 5)
    with pytest.raises(BadInput, match="'latest' always means"):
        workspace.models.set_alias("clf", "latest", 1)
    with pytest.raises(NotFound, match="no alias 'champ'.*Did you mean"):
        workspace.models.set_alias("clf", "champion", 1)
        workspace.models.get("clf@champ")
    with pytest.raises(NotFound, match="Did you mean 'clf'"):
        workspace.models.get("clff")
