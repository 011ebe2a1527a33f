"""Evaluating the chosen model on held-out rows: metrics, charts (Plotly figures as JSON, and one offline HTML
page) and permutation feature importance under a deadline."""

from __future__ import annotations

import time
from typing import Any

import numpy as np
import pandas as pd

from conveyor.train._metrics import METRICS, raw_score

__all__ = ["charts", "evaluation_html", "metrics_for", "permutation_importance"]


def metrics_for(task: str, y: np.ndarray[Any, Any], pred: np.ndarray[Any, Any]) -> dict[str, float]:
    """Every metric of the task; ``y`` encoded 0..k-1 and ``pred`` probabilities for classification."""
    out = {}
    for name, spec in METRICS.items():
        if spec.task == task:
            value = raw_score(spec, y, pred)
            if np.isfinite(value):
                out[name] = float(value)
    return out


def charts(task: str, y: np.ndarray[Any, Any], pred: np.ndarray[Any, Any], classes: list[Any]) -> dict[str, Any]:
    """Plotly figures by name: confusion matrix, ROC, precision-recall and calibration curves for
    classification; predicted vs actual and residuals for regression."""
    import plotly.graph_objects as go

    figures: dict[str, Any] = {}
    if task == "regression":
        residuals = y - pred
        lo, hi = float(min(y.min(), pred.min())), float(max(y.max(), pred.max()))
        fig = go.Figure([go.Scattergl(x=y, y=pred, mode="markers", marker={"size": 4, "opacity": 0.6}, name="rows")])
        fig.add_trace(go.Scatter(x=[lo, hi], y=[lo, hi], mode="lines", name="perfect", line={"dash": "dash"}))
        fig.update_layout(title="Predicted vs actual", xaxis_title="actual", yaxis_title="predicted")
        figures["predicted_vs_actual"] = fig
        fig = go.Figure([go.Scattergl(x=pred, y=residuals, mode="markers", marker={"size": 4, "opacity": 0.6})])
        fig.add_hline(y=0, line_dash="dash")
        fig.update_layout(title="Residuals", xaxis_title="predicted", yaxis_title="actual − predicted")
        figures["residuals"] = fig
        fig = go.Figure([go.Histogram(x=residuals, nbinsx=40)])
        fig.update_layout(title="Distribution of residuals", xaxis_title="actual − predicted", yaxis_title="rows")
        figures["residuals_histogram"] = fig
        return figures

    from sklearn import metrics as m
    from sklearn.calibration import calibration_curve

    labels = [str(c) for c in classes]
    predicted = pred.argmax(axis=1)
    matrix = m.confusion_matrix(y, predicted, labels=list(range(len(classes))))
    fig = go.Figure(go.Heatmap(z=matrix, x=labels, y=labels, text=matrix, texttemplate="%{text}", colorscale="Blues"))
    fig.update_layout(
        title="Confusion matrix", xaxis_title="predicted", yaxis_title="actual", yaxis={"autorange": "reversed"}
    )
    figures["confusion_matrix"] = fig
    shown = [1] if len(classes) == 2 else list(range(min(len(classes), 10)))
    roc, pr, calibration = go.Figure(), go.Figure(), go.Figure()
    for k in shown:
        truth = (y == k).astype(int)
        if truth.sum() == 0 or truth.sum() == len(truth):
            continue
        fpr, tpr, _ = m.roc_curve(truth, pred[:, k])
        auc = m.auc(fpr, tpr)
        roc.add_trace(go.Scatter(x=fpr, y=tpr, mode="lines", name=f"{labels[k]} (AUC {auc:.3f})"))
        precision, recall, _ = m.precision_recall_curve(truth, pred[:, k])
        ap = m.average_precision_score(truth, pred[:, k])
        pr.add_trace(go.Scatter(x=recall, y=precision, mode="lines", name=f"{labels[k]} (AP {ap:.3f})"))
        observed, expected = calibration_curve(truth, pred[:, k], n_bins=10, strategy="quantile")
        calibration.add_trace(go.Scatter(x=expected, y=observed, mode="lines+markers", name=labels[k]))
    roc.add_trace(go.Scatter(x=[0, 1], y=[0, 1], mode="lines", name="chance", line={"dash": "dash"}))
    roc.update_layout(title="ROC curve", xaxis_title="false positive rate", yaxis_title="true positive rate")
    pr.update_layout(title="Precision-recall curve", xaxis_title="recall", yaxis_title="precision")
    calibration.add_trace(go.Scatter(x=[0, 1], y=[0, 1], mode="lines", name="perfect", line={"dash": "dash"}))
    calibration.update_layout(
        title="Calibration", xaxis_title="mean predicted probability", yaxis_title="observed frequency"
    )
    figures.update({"roc_curve": roc, "pr_curve": pr, "calibration": calibration})
    return figures


def importance_figure(importance: list[dict[str, Any]]) -> Any:
    import plotly.graph_objects as go

    top = importance[:30][::-1]
    fig = go.Figure(
        go.Bar(
            x=[r["importance"] for r in top],
            y=[r["column"] for r in top],
            orientation="h",
            error_x={"type": "data", "array": [r["std"] for r in top]},
        )
    )
    fig.update_layout(
        title="Permutation feature importance (drop in the metric when a column is shuffled)",
        height=max(300, 22 * len(top) + 120),
    )
    return fig


def permutation_importance(
    model: Any,
    x: pd.DataFrame,
    y: np.ndarray[Any, Any],
    scorer: Any,
    deadline: float,
    repeats: int = 3,
    seed: int = 0,
) -> tuple[list[dict[str, Any]], bool]:
    """How much the score (greater is better) drops when each raw column is shuffled, on up to 2,000 rows.

    Stops at ``deadline`` (``time.monotonic()``); returns the importances (largest first) and whether every
    column was measured.
    """
    rng = np.random.default_rng(seed)
    if len(x) > 2000:
        rows = rng.choice(len(x), 2000, replace=False)
        x, y = x.iloc[rows], y[rows]
    x = x.reset_index(drop=True)
    base = scorer(model, x, y)
    results: list[dict[str, Any]] = []
    complete = True
    for column in x.columns:
        if time.monotonic() >= deadline:
            complete = False
            break
        drops = []
        for _ in range(repeats):
            shuffled = x.copy()
            shuffled[column] = x[column].to_numpy()[rng.permutation(len(x))]
            drops.append(base - scorer(model, shuffled, y))
        results.append({"column": str(column), "importance": float(np.mean(drops)), "std": float(np.std(drops))})
    results.sort(key=lambda r: -float(r["importance"]))
    return results, complete


def evaluation_html(title: str, summary: dict[str, Any], figures: dict[str, Any]) -> str:
    """One offline page with the summary table and every figure (plotly.js embedded once)."""
    import html

    import plotly.io as pio

    rows = "".join(
        f"<tr><th>{html.escape(str(k))}</th><td>{html.escape(_fmt(v))}</td></tr>" for k, v in summary.items()
    )
    parts = [
        "<!doctype html><html><head><meta charset='utf-8'>",
        f"<title>{html.escape(title)}</title>",
        "<style>body{font-family:system-ui,sans-serif;margin:2em;max-width:1100px}"
        "th{text-align:left;padding-right:1em}</style></head><body>",
        f"<h1>{html.escape(title)}</h1><table>{rows}</table>",
    ]
    for index, fig in enumerate(figures.values()):
        parts.append(pio.to_html(fig, full_html=False, include_plotlyjs=index == 0))
    parts.append("</body></html>")
    return "".join(parts)


def _fmt(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.4f}"
    return str(value)
