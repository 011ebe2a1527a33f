"""Model cards: what a model version is for, what it learnt from, how well it does, why it answers as it does and
whether it treats groups alike. Reached as ``ws.cards``; ``conveyor models card REF``; the studio's card page.

A card is computed once per version and stored with it (file ``model_card.json``); ``refresh`` computes it again.
What goes in:

- **owner and intended use**: editable (``conveyor models card REF --owner … --intended-use …``), kept as the
  version's tags ``card.owner`` and ``card.intended_use``.
- **training data**: the data version the training run read, with its rows and per-column null shares.
- **evaluation**: the version's metrics and its run's held-out ``test_*`` metrics.
- **explanations**: SHAP values for tree models (``TreeExplainer``) and linear models (``LinearExplainer``) that take
  the data's columns as they are; permutation importance (scikit-learn) for anything else, such as AutoML's
  ensembles with their own featurisation. Global importance over a sample of the training data (at most
  ``sample`` rows, 2,000 by default, drawn with a fixed seed) and, with SHAP, the largest contributions for three
  rows.
- **fairness**, per declared sensitive column (``conveyor train --sensitive COL`` records them on the run, or
  ``--sensitive`` here): fairlearn's ``MetricFrame`` on the same sample, by group: selection rate, true and false
  positive rates and accuracy for binary classifiers (accuracy alone for others), mean absolute error for
  regressors; and the demographic-parity and equalized-odds differences. The held-out split of training is not
  stored, so the card evaluates on a sample of the training data and says so.
- **guardrails** from the training run, and the **lineage** upstream of the version.
"""

from __future__ import annotations

import contextlib
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

import numpy as np
import orjson

from conveyor.errors import BadInput, NotFound

if TYPE_CHECKING:
    import pandas as pd

    from conveyor.registry import ModelVersion
    from conveyor.workspace import Workspace

__all__ = ["CARD_FILE", "Cards", "ModelCard"]

CARD_FILE = "model_card.json"
SAMPLE_ROWS = 2_000
LOCAL_ROWS = 3
TOP_FEATURES = 15
_TREES = (
    "DecisionTree", "RandomForest", "ExtraTrees", "GradientBoosting", "HistGradientBoosting", "XGB", "LGBM",
)  # fmt: skip
_LINEAR = ("LogisticRegression", "LinearRegression", "Ridge", "Lasso", "ElasticNet", "SGDClassifier", "SGDRegressor")


@dataclass
class ModelCard:
    """A model version's card (see the module's docstring); ``to_markdown()`` for people, ``to_dict()`` for
    scripts."""

    model: str
    created_at: str
    owner: str
    intended_use: str
    task: str
    data: dict[str, Any]
    metrics: dict[str, float]
    explanations: dict[str, Any]
    fairness: dict[str, Any]
    guardrails: list[dict[str, Any]]
    lineage: list[dict[str, str]]
    notes: list[str] = field(default_factory=list)
    seconds: float = 0.0

    def to_dict(self) -> dict[str, Any]:
        return {
            "model": self.model,
            "created_at": self.created_at,
            "owner": self.owner,
            "intended_use": self.intended_use,
            "task": self.task,
            "data": self.data,
            "metrics": self.metrics,
            "explanations": self.explanations,
            "fairness": self.fairness,
            "guardrails": self.guardrails,
            "lineage": self.lineage,
            "notes": self.notes,
            "seconds": self.seconds,
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> ModelCard:
        return cls(**{k: data[k] for k in cls.__dataclass_fields__ if k in data})

    def to_markdown(self) -> str:
        lines = [f"# Model card: {self.model}", ""]
        lines += [f"- **Owner**: {self.owner or '(not set: conveyor models card REF --owner NAME)'}"]
        lines += [f"- **Intended use**: {self.intended_use or '(not set: --intended-use TEXT)'}"]
        lines += [
            f"- **Task**: {self.task}",
            f"- **Card computed**: {self.created_at[:19]} UTC in {self.seconds:.1f} s",
        ]
        lines += ["", "## Training data", "", *self._data_lines(), "", "## Evaluation", ""]
        if self.metrics:
            lines += ["| metric | value |", "| --- | --- |"]
            lines += [f"| {k} | {v:.4g} |" for k, v in sorted(self.metrics.items())]
        else:
            lines.append("No metrics recorded.")
        lines += ["", "## Explanations", "", *self._explanation_lines(), "", "## Fairness", "", *self._fairness_lines()]
        lines += ["", "## Guardrails", ""]
        lines += [f"- {g['status']}: {g['check']}: {g['message']}" for g in self.guardrails] or ["None recorded."]
        lines += ["", "## Lineage (upstream)", ""]
        lines += [f"- {n['kind']}: {n['label']}" for n in self.lineage] or ["Nothing recorded."]
        if self.notes:
            lines += ["", "## Notes", ""] + [f"- {n}" for n in self.notes]
        return "\n".join(lines) + "\n"

    def _data_lines(self) -> list[str]:
        if not self.data.get("ref"):
            return ["No training data version on record."]
        columns = self.data.get("columns", [])
        lines = [f"{self.data['ref']}: {self.data.get('rows', 0):,} rows, {len(columns)} columns."]
        nulls = [c for c in columns if c.get("null_share")]
        if nulls:
            lines.append("Missing values: " + ", ".join(f"{c['name']} {c['null_share']:.1%}" for c in nulls) + ".")
        return lines

    def _explanation_lines(self) -> list[str]:
        ex = self.explanations
        if not ex.get("global"):
            return [str(ex.get("skipped", "Not computed."))]
        lines = [f"{ex['method']} over {ex['rows']:,} rows of the training data.", ""]
        lines += ["| feature | importance |", "| --- | --- |"]
        lines += [f"| {g['feature']} | {g['importance']:.4g} |" for g in ex["global"]]
        for local in ex.get("local", []):
            parts = ", ".join(f"{c['feature']} {c['contribution']:+.3g}" for c in local["contributions"])
            lines.append(f"\nRow {local['row']} (prediction {local['prediction']}): {parts}.")
        return lines

    def _fairness_lines(self) -> list[str]:
        if not self.fairness.get("by_feature"):
            return [
                str(self.fairness.get("skipped", "No sensitive feature declared (conveyor train --sensitive COL)."))
            ]
        lines = []
        for feature, found in self.fairness["by_feature"].items():
            names = sorted({m for g in found["groups"].values() for m in g})
            lines += [f"### {feature}", "", "| group | " + " | ".join(names) + " |", "|" + " --- |" * (len(names) + 1)]
            for group, values in found["groups"].items():
                lines.append(f"| {group} | " + " | ".join(_fmt(values.get(m)) for m in names) + " |")
            for key in ("demographic_parity_difference", "equalized_odds_difference", "max_error_difference"):
                if found.get(key) is not None:
                    lines.append(f"\n{key.replace('_', ' ')}: {found[key]:.4g}")
            lines.append("")
        lines.append(str(self.fairness.get("note", "")))
        return lines


def _fmt(value: Any) -> str:
    return "—" if value is None else f"{value:.4g}"


class Cards:
    """Model cards of model versions. Reached as ``ws.cards``."""

    def __init__(self, ws: Workspace) -> None:
        self._ws = ws

    def get(
        self,
        ref: str,
        *,
        sensitive: list[str] | None = None,
        refresh: bool = False,
        sample: int = SAMPLE_ROWS,
    ) -> ModelCard:
        """The card of a model version: the stored one, or computed (and stored) the first time, with ``refresh``
        or when ``sensitive`` columns are given.

        Raises:
            NotFound: no such model version.
            BadInput: a sensitive column the training data lacks; ``sample`` out of range.
        """
        if not 50 <= sample <= 200_000:
            raise BadInput(f"sample {sample} must be from 50 to 200000 rows.")
        registry = self._ws.models
        version = registry.get(ref)
        if CARD_FILE in version.files and not refresh and not sensitive:
            card = ModelCard.from_dict(orjson.loads(registry.file_bytes(version, CARD_FILE)))
            card.owner, card.intended_use = (
                version.tags.get("card.owner", ""),
                version.tags.get("card.intended_use", ""),
            )
            return card
        card = _build(self._ws, version, sensitive, sample)
        blob = self._ws.artifacts.put_bytes(orjson.dumps(card.to_dict(), option=orjson.OPT_SERIALIZE_NUMPY))
        registry._add_file(version, CARD_FILE, {"digest": blob.digest, "size": blob.size})
        return card

    def describe(self, ref: str, *, owner: str | None = None, intended_use: str | None = None) -> ModelVersion:
        """Set the card's owner and intended use (tags of the version)."""
        tags = {}
        if owner is not None:
            tags["card.owner"] = owner
        if intended_use is not None:
            tags["card.intended_use"] = intended_use
        if not tags:
            return self._ws.models.get(ref)
        return self._ws.models.set_tags(ref, tags)


def _build(ws: Workspace, version: ModelVersion, sensitive: list[str] | None, sample: int) -> ModelCard:
    started = time.perf_counter()
    notes: list[str] = []
    run = ws.runs.get(version.run_id) if version.run_id else None
    inputs = [str(c["name"]) for c in version.signature.get("inputs", [])]
    target = run.params.get("target") if run else None
    declared = list(sensitive or [])
    if not declared and run and run.tags.get("sensitive"):
        declared = [c for c in run.tags["sensitive"].split(",") if c]
    data, frame = _training_data(ws, version, run, sample, declared)
    metrics = {
        k: float(v) for k, v in version.metrics.items() if isinstance(v, (int, float)) and not isinstance(v, bool)
    }
    if run:
        metrics.update({k: v for k, v in run.metrics.items() if k.startswith("test_")})
    model = ws.models.load(version)
    task = (
        "classification"
        if hasattr(model, "predict_proba") or getattr(model, "classes_", None) is not None
        else "regression"
    )
    explanations: dict[str, Any] = {"skipped": "No training data on record to explain the model with."}
    fairness: dict[str, Any] = {"skipped": "No sensitive feature declared (conveyor train --sensitive COL)."}
    if frame is not None and inputs and all(c in frame.columns for c in inputs):
        x = frame[inputs]
        y = frame[target] if target and target in frame.columns else None
        explanations = _explain(model, x, y, task)
        if declared and y is None:
            fairness = {"skipped": f"The training data has no target column {target!r} to compare groups on."}
        elif declared and y is not None:
            fairness = fairness_by_group(model, x, y, frame[declared], task)
    elif frame is not None:
        notes.append("The training data lacks some of the model's inputs; no explanations.")
    return ModelCard(
        model=version.ref,
        created_at=datetime.now(UTC).isoformat(),
        owner=version.tags.get("card.owner", ""),
        intended_use=version.tags.get("card.intended_use", ""),
        task=task,
        data=data,
        metrics=metrics,
        explanations=explanations,
        fairness=fairness,
        guardrails=_guardrails(ws, run.id) if run else [],
        lineage=_upstream(ws, version.ref),
        notes=notes,
        seconds=round(time.perf_counter() - started, 3),
    )


def _training_data(
    ws: Workspace, version: ModelVersion, run: Any, sample: int, declared: list[str]
) -> tuple[dict[str, Any], pd.DataFrame | None]:
    """The training data version's summary and a sample of its rows (None without one)."""
    refs: list[str] = list(version.inputs or (run.inputs if run else []))
    if not refs:
        return {}, None
    found = ws.data.get(refs[0])
    profile = found.profile or {}
    columns = profile.get("columns", {}) if isinstance(profile, dict) else {}
    summary = [
        {"name": name, "null_share": float(c.get("null_fraction") or 0.0), "kind": c.get("kind")}
        for name, c in columns.items()
        if isinstance(c, dict)
    ]
    data = {"ref": found.ref, "rows": found.rows, "columns": summary or [{"name": c["name"]} for c in found.schema]}
    frame = ws.data.to_pandas(found.ref)
    if len(frame) > sample:
        frame = frame.sample(sample, random_state=0)
    absent = [c for c in declared if c not in frame.columns]
    if absent:
        raise BadInput(f"The training data {found.ref} has no column {', '.join(absent)} to check fairness on.")
    return data, frame


def _guardrails(ws: Workspace, run_id: str) -> list[dict[str, Any]]:
    with contextlib.suppress(NotFound):
        found: list[dict[str, Any]] = orjson.loads(ws.runs.artifact_bytes(run_id, "guardrails.json"))
        return found
    return []


def _upstream(ws: Workspace, ref: str) -> list[dict[str, str]]:
    with contextlib.suppress(NotFound):
        graph = ws.lineage.show(f"model:{ref}", direction="up", depth=4)
        return [{"kind": n.kind, "label": n.label} for n in graph.nodes if n.side != "root"]
    return []


def _estimator_kind(model: Any) -> str | None:
    name = type(model).__name__
    if any(name.startswith(t) for t in _TREES):
        return "tree"
    if name in _LINEAR:
        return "linear"
    return None


def _explain(model: Any, x: pd.DataFrame, y: pd.Series | None, task: str) -> dict[str, Any]:
    started = time.perf_counter()
    kind = _estimator_kind(model)
    from pandas.api.types import is_bool_dtype, is_numeric_dtype

    numeric = all(is_numeric_dtype(t) or is_bool_dtype(t) for t in x.dtypes)
    if kind is not None and numeric:
        import shap

        features = x.astype(float)
        explainer = (
            shap.TreeExplainer(model)
            if kind == "tree"
            else shap.LinearExplainer(model, shap.maskers.Independent(features, 200))
        )
        values = np.asarray(explainer.shap_values(features))
        if values.ndim == 3:  # (rows, features, classes) or (classes, rows, features): the positive class
            values = values[..., -1] if values.shape[0] == len(features) else values[-1]
        importance = np.abs(values).mean(axis=0)
        order = np.argsort(-importance)[:TOP_FEATURES]
        predicted = np.asarray(model.predict(features.head(LOCAL_ROWS)))
        local = []
        for i in range(min(LOCAL_ROWS, len(features))):
            top = np.argsort(-np.abs(values[i]))[:5]
            local.append(
                {
                    "row": int(features.index[i]) if str(features.index[i]).isdigit() else i,
                    "prediction": predicted[i].item() if hasattr(predicted[i], "item") else predicted[i],
                    "contributions": [{"feature": str(x.columns[j]), "contribution": float(values[i, j])} for j in top],
                }
            )
        return {
            "method": f"SHAP ({'TreeExplainer' if kind == 'tree' else 'LinearExplainer'}), mean |SHAP value|",
            "rows": len(features),
            "global": [{"feature": str(x.columns[j]), "importance": float(importance[j])} for j in order],
            "local": local,
            "seconds": round(time.perf_counter() - started, 3),
        }
    if y is None:
        return {"skipped": "Permutation importance needs the target column, which the training data lacks."}
    from sklearn.inspection import permutation_importance

    scoring = "r2" if task == "regression" else "accuracy"
    found = permutation_importance(model, x, y, n_repeats=5, random_state=0, scoring=scoring)
    order = np.argsort(-found.importances_mean)[:TOP_FEATURES]
    return {
        "method": f"permutation importance (drop in {scoring} when a column is shuffled, 5 repeats)",
        "rows": len(x),
        "global": [{"feature": str(x.columns[j]), "importance": float(found.importances_mean[j])} for j in order],
        "local": [],
        "seconds": round(time.perf_counter() - started, 3),
    }


def fairness_by_group(model: Any, x: pd.DataFrame, y: pd.Series, groups: pd.DataFrame, task: str) -> dict[str, Any]:
    """fairlearn's MetricFrame by group of each column of ``groups`` (used by the card and the loop's gate)."""
    from fairlearn import metrics as fm
    from sklearn import metrics as skm

    predicted = np.asarray(model.predict(x))
    by_feature: dict[str, Any] = {}
    classes = sorted(set(np.asarray(y).tolist()) | set(predicted.tolist()), key=str)
    for column in groups.columns:
        feature = groups[column].astype(str).fillna("(missing)")
        found: dict[str, Any] = {}
        if task == "classification" and len(classes) == 2:
            positive = classes[-1]
            truth, guess = (np.asarray(y) == positive).astype(int), (predicted == positive).astype(int)
            frame = fm.MetricFrame(
                metrics={
                    "selection_rate": fm.selection_rate,
                    "true_positive_rate": fm.true_positive_rate,
                    "false_positive_rate": fm.false_positive_rate,
                    "accuracy": skm.accuracy_score,
                    "count": fm.count,
                },
                y_true=truth,
                y_pred=guess,
                sensitive_features=feature,
            )
            found["demographic_parity_difference"] = float(
                fm.demographic_parity_difference(truth, guess, sensitive_features=feature)
            )
            found["equalized_odds_difference"] = float(
                fm.equalized_odds_difference(truth, guess, sensitive_features=feature)
            )
        elif task == "classification":
            frame = fm.MetricFrame(
                metrics={"accuracy": skm.accuracy_score, "count": fm.count},
                y_true=np.asarray(y),
                y_pred=predicted,
                sensitive_features=feature,
            )
        else:
            frame = fm.MetricFrame(
                metrics={"mean_absolute_error": skm.mean_absolute_error, "count": fm.count},
                y_true=np.asarray(y, dtype=float),
                y_pred=predicted.astype(float),
                sensitive_features=feature,
            )
            errors = frame.by_group["mean_absolute_error"]
            found["max_error_difference"] = float(errors.max() - errors.min())
        found["groups"] = {
            str(group): {k: _plain(v) for k, v in row.items()}
            for group, row in frame.by_group.to_dict(orient="index").items()
        }
        by_feature[str(column)] = found
    return {
        "by_feature": by_feature,
        "rows": len(x),
        "note": f"On {len(x):,} rows of the training data (the held-out split of training is not stored).",
    }


def _plain(value: Any) -> float | None:
    number = float(value)
    return None if not np.isfinite(number) else number
