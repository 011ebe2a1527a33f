"""MLflow exports load where Conveyor is not installed: every AutoML task, and custom models with ``--code``.

Each export is loaded by the real ``mlflow.pyfunc.load_model`` in a child Python in which ``import conveyor``
fails and the source tree is off ``sys.path``; the child also reports every package the load and the prediction
imported, and each must be one that ``requirements.txt`` (or MLflow itself) brings in.
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
import textwrap
from collections.abc import Iterator
from importlib import metadata
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
import yaml

from conveyor.errors import BadInput
from tests.automl_models import tabular

_CHILD = textwrap.dedent(
    """
    import json, sys
    from pathlib import Path
    folder, rows, blocked = sys.argv[1], sys.argv[2], set(json.loads(Path(sys.argv[3]).read_text()))
    blocked.add("conveyor")

    class NotInstalled:
        # Packages requirements.txt would not install are not found, as in an environment built from it.
        def __init__(self, finder):
            self.finder = finder

        def find_spec(self, name, path=None, target=None):
            if name.partition(".")[0] in blocked:
                return None
            return self.finder.find_spec(name, path, target)

        def __getattr__(self, name):  # find_distributions, invalidate_caches, ...
            return getattr(self.finder, name)

    sys.meta_path[:] = [NotInstalled(f) if hasattr(f, "find_spec") else f for f in sys.meta_path]
    sys.path[:] = [p for p in sys.path if not (Path(p or ".") / "conveyor").exists()]
    try:
        import conveyor  # noqa: F401
    except ImportError:
        pass
    else:
        raise SystemExit("conveyor is importable in the child")
    import pandas as pd
    frame = pd.read_parquet(rows)
    import mlflow.pyfunc
    model = mlflow.pyfunc.load_model(folder)
    predictions = model.predict(frame)
    values = getattr(predictions, "tolist", lambda: list(predictions))()
    print(json.dumps({"predictions": values}, default=str))
    """
)


def _load_without_conveyor(folder: Path, rows: pd.DataFrame, tmp_path: Path) -> dict[str, Any]:
    """Load and predict in a child Python that has only what requirements.txt installs (plus MLflow and
    pyarrow, which the test itself uses): ``conveyor`` and every other installed package fail to import."""
    tmp_path.mkdir(parents=True, exist_ok=True)
    data = tmp_path / "rows.parquet"
    rows.reset_index(drop=True).to_parquet(data)
    blocked = tmp_path / "blocked.json"
    blocked.write_text(json.dumps(sorted(_not_installed_by(folder))))
    done = subprocess.run(
        [sys.executable, "-I", "-c", _CHILD, str(folder), str(data), str(blocked)],
        capture_output=True,
        text=True,
        timeout=300,
        cwd=tmp_path,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    return dict(json.loads(done.stdout.strip().splitlines()[-1]))


def _not_installed_by(folder: Path) -> set[str]:
    """Top-level modules of installed distributions that neither requirements.txt nor MLflow brings in."""
    names = _requirement_names(folder)
    assert not [n for n in names if "conveyor" in n.lower()], names
    installed = {_canonical(d.metadata["Name"]) for d in metadata.distributions()}
    for name in names:  # each is a real distribution (installed here; xgboost is installed as xgboost-cpu)
        assert _canonical(name) in installed or _canonical(name) == "xgboost", name
    allowed = _closure([*names, "mlflow-skinny", "pyarrow"])
    return {
        root
        for root, owners in metadata.packages_distributions().items()
        if root not in sys.stdlib_module_names and not {_canonical(d) for d in owners} & allowed
    }


def _requirement_names(folder: Path) -> list[str]:
    lines = [line for line in (folder / "requirements.txt").read_text().splitlines() if line.strip()]
    assert all(re.fullmatch(r"[A-Za-z0-9_.\-]+==[0-9][A-Za-z0-9.+\-]*", line) for line in lines), lines
    return [line.split("==")[0] for line in lines]


def _canonical(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def _closure(distributions: list[str]) -> set[str]:
    """The distributions pip installs for these: each one and its dependencies (no extras)."""
    seen: set[str] = set()
    todo = list(distributions)
    while todo:
        name = _canonical(todo.pop())
        if name in seen:
            continue
        seen.add(name)
        try:
            requires = metadata.requires(name) or []
        except metadata.PackageNotFoundError:
            continue
        for requirement in requires:
            if "extra ==" in requirement:
                continue
            todo.append(re.split(r"[\s;<>=!~\[(]", requirement, maxsplit=1)[0])
    return seen


@pytest.fixture(scope="module")
def automl_models(automl_task_models: tuple[Any, Any]) -> Iterator[tuple[Any, dict[str, pd.DataFrame]]]:
    """The session's registered AutoML model per task (tests/automl_models.py), and rows for each."""
    ws, _ = automl_task_models
    inputs = tabular()[["size", "rooms", "kind"]].head(7)
    future = pd.DataFrame(
        {"store": ["north", "south", "north"], "week": pd.to_datetime(["2024-04-21", "2024-04-21", "2024-05-12"])}
    )
    yield ws, {"clf": inputs, "reg": inputs, "fc": future}


@pytest.mark.slow
@pytest.mark.parametrize("name", ["clf", "reg", "fc"])
def test_an_automl_model_of_each_task_loads_and_predicts_where_conveyor_is_not_installed(  # type: ignore[no-untyped-def]
    automl_models, name: str, tmp_path: Path, cli
) -> None:
    ws, rows = automl_models
    frame = rows[name]
    expected = np.asarray(ws.models.load(name).predict(frame))
    folder = tmp_path / "mlflow"
    exported = cli("--home", str(ws.settings.home), "models", "export", name, str(folder), "--format", "mlflow")
    assert exported.code == 0, exported.err

    mlmodel = yaml.safe_load((folder / "MLmodel").read_text())
    pyfunc, sklearn = mlmodel["flavors"]["python_function"], mlmodel["flavors"]["sklearn"]
    assert pyfunc["loader_module"] == "mlflow.sklearn" and pyfunc["code"] == "code" and sklearn["code"] == "code"
    assert pyfunc["model_path"] == sklearn["pickled_model"] == "model.pkl"
    assert sklearn["serialization_format"] == "cloudpickle"
    assert pyfunc["env"] == {"conda": "conda.yaml", "virtualenv": "python_env.yaml"}
    assert (folder / pyfunc["model_path"]).is_file() and (folder / "conda.yaml").is_file()
    (runtime,) = [p for p in (folder / "code").iterdir()]
    assert runtime.name.startswith("conveyor_runtime_") and (runtime / "train").is_dir()
    assert b"conveyor.train" not in (folder / "model.pkl").read_bytes(), "no reference to the conveyor package"
    bundled = [p.read_text() for p in runtime.rglob("*.py")]
    assert not [s for s in bundled if re.search(r"^\s*(from|import)\s+conveyor\b", s, re.MULTILINE)]

    child = _load_without_conveyor(folder, frame, tmp_path)
    if name == "clf":
        assert child["predictions"] == expected.tolist()
    else:
        np.testing.assert_allclose(np.asarray(child["predictions"], dtype=float), expected.astype(float), rtol=1e-9)


_USER_MODULE = '''
import numpy as np
from sklearn.base import BaseEstimator, RegressorMixin


class Scaled(RegressorMixin, BaseEstimator):
    """A user's own model class, living in the user's module."""

    def __init__(self, factor=2.0):
        self.factor = factor

    def fit(self, x, y):
        self.mean_ = float(np.mean(y))
        return self

    def predict(self, x):
        return np.asarray(x["a"], dtype=float) * self.factor + self.mean_
'''


def test_a_custom_model_names_its_module_and_is_bundled_with_code(  # type: ignore[no-untyped-def]
    workspace, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, cli
) -> None:
    source = tmp_path / "src"
    source.mkdir()
    (source / "shopmodels.py").write_text(_USER_MODULE)
    monkeypatch.syspath_prepend(str(source))
    monkeypatch.delitem(sys.modules, "shopmodels", raising=False)
    import shopmodels  # type: ignore[import-not-found]

    x = pd.DataFrame({"a": [1.0, 2.0, 3.0]})
    model = shopmodels.Scaled(3.0).fit(x, [1.0, 2.0, 3.0])
    v = workspace.models.register("scaled", model)
    assert v.format == "joblib"

    with pytest.raises(BadInput, match=r"needs your own module\(s\) shopmodels \(for shopmodels.Scaled\).*--code"):
        workspace.models.export("scaled", tmp_path / "bare")
    assert not (tmp_path / "bare").exists()
    with pytest.raises(BadInput, match="--code .*missing.py does not exist"):
        workspace.models.export("scaled", tmp_path / "bad", code=[tmp_path / "missing.py"])
    with pytest.raises(BadInput, match="--format onnx takes none"):
        workspace.models.export("scaled", tmp_path / "onnx", format="onnx", code=[source / "shopmodels.py"])

    folder = tmp_path / "out"
    result = cli(
        "--home", str(workspace.settings.home), "models", "export", "scaled", str(folder),
        "--code", str(source / "shopmodels.py"),
    )  # fmt: skip
    assert result.code == 0, result.err
    assert (folder / "code" / "shopmodels.py").is_file()
    assert not [p for p in (folder / "code").iterdir() if p.name.startswith("conveyor_runtime_")]
    child = _load_without_conveyor(folder, x, tmp_path / "run")
    np.testing.assert_allclose(child["predictions"], [5.0, 8.0, 11.0])
    mlmodel = yaml.safe_load((folder / "MLmodel").read_text())
    assert mlmodel["flavors"]["python_function"]["code"] == "code"


def test_a_plain_scikit_learn_model_exports_as_skops_with_no_code(workspace, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    from sklearn.linear_model import LogisticRegression

    rng = np.random.default_rng(1)
    x = pd.DataFrame({"a": rng.normal(size=60), "b": rng.normal(size=60)})
    model = LogisticRegression().fit(x, (x["a"] > 0).astype(int))
    workspace.models.register("plain", model)
    result = workspace.models.export("plain", tmp_path / "out")
    assert result.files == ["MLmodel", "conda.yaml", "model.skops", "python_env.yaml", "requirements.txt"]
    mlmodel = yaml.safe_load((tmp_path / "out" / "MLmodel").read_text())
    assert "code" not in mlmodel["flavors"]["python_function"] and mlmodel["flavors"]["sklearn"]["code"] is None
    child = _load_without_conveyor(tmp_path / "out", x, tmp_path)
    assert child["predictions"] == model.predict(x).tolist()
