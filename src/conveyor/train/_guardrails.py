"""The data guardrails report: what AutoML found in the data before training, and what it did about it."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any, Literal

import numpy as np
import pandas as pd

__all__ = ["Guardrail", "check_data", "check_model"]

Status = Literal["passed", "fixed", "warning"]
_LEAK_SAMPLE = 2000
_LEAK_MAX_COLUMNS = 200
LEAK_THRESHOLD = 0.99
"""A column alone reaching this (a depth-4 tree's accuracy, a rank correlation, a share of variance explained) is
suspected of leaking the target."""


@dataclass(frozen=True)
class Guardrail:
    """One check: its name, the outcome, a sentence for people, and the columns it concerns."""

    check: str
    status: Status
    message: str
    columns: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def check_data(
    x: pd.DataFrame,
    y: pd.Series,
    kinds: dict[str, str],
    task: str,
    dropped_unlabelled: int = 0,
    allow_leaks: tuple[str, ...] | list[str] = (),
) -> list[Guardrail]:
    """Check class balance, missing values, cardinality, constant columns and target leakage (``allow_leaks``:
    columns the user says are legitimately strong; they are checked and reported, not warned about)."""
    report: list[Guardrail] = []
    if dropped_unlabelled:
        report.append(
            Guardrail(
                "missing_target",
                "fixed",
                f"{dropped_unlabelled:,} rows without a target value were left out of training.",
            )
        )
    if task == "classification":
        report.append(_imbalance(y))
    report.append(_missing(x, kinds))
    constant = [c for c, k in kinds.items() if k == "ignored" and x[c].dropna().nunique() <= 1]  # incl. all-missing
    identifiers = [c for c, k in kinds.items() if k == "ignored" and c not in constant]
    report.append(
        Guardrail(
            "constant_columns",
            "fixed" if constant else "passed",
            f"{len(constant)} column(s) hold a single value (or none) and were dropped: {', '.join(constant)}."
            if constant
            else "No constant columns.",
            constant,
        )
    )
    high = [c for c, k in kinds.items() if k == "high_cardinality"]
    parts = []
    if high:
        parts.append(f"target-encoded (cross-fitted): {', '.join(high)}")
    if identifiers:
        parts.append(f"dropped as identifiers (nearly every value distinct): {', '.join(identifiers)}")
    report.append(
        Guardrail(
            "high_cardinality",
            "fixed" if parts else "passed",
            f"High-cardinality columns {'; '.join(parts)}." if parts else "No high-cardinality columns.",
            high + identifiers,
        )
    )
    report.append(_leakage(x, y, kinds, task, allow_leaks))
    return report


def check_model(task: str, metrics: dict[str, float], y: np.ndarray[Any, Any], source: str) -> Guardrail:
    """Whether the model beats the trivial one on held-out rows: R² above 0 (predicting the mean), ROC AUC
    above 0.5 and accuracy above always answering the most common class."""
    if task == "regression" and "r2" in metrics:
        r2 = metrics["r2"]
        if r2 <= 0:
            return Guardrail(
                "useless_model",
                "warning",
                f"The model is no better than predicting the mean: R² {r2:.3f} ≤ 0 on the {source}. It has learned "
                "nothing usable; check that the target is right and that the features carry information about it.",
            )
        return Guardrail(
            "useless_model", "passed", f"The model beats predicting the mean: R² {r2:.3f} on the {source}."
        )
    if task == "classification":
        auc, accuracy = metrics.get("roc_auc"), metrics.get("accuracy")
        counts = np.bincount(np.asarray(y, dtype=int)) if len(y) else np.array([1])
        majority = float(counts.max() / counts.sum())
        if auc is not None and auc <= 0.5:
            return Guardrail(
                "useless_model",
                "warning",
                f"The model ranks no better than chance: ROC AUC {auc:.3f} ≤ 0.5 on the {source}. Check the target "
                "and the features.",
            )
        if accuracy is not None and accuracy <= majority:
            return Guardrail(
                "useless_model",
                "warning",
                f"The model is no more accurate than always answering the most common class: accuracy "
                f"{accuracy:.3f} vs that class's share {majority:.3f} on the {source}. Its probabilities may still "
                "rank rows (see ROC AUC), but its answers are no better than the trivial one.",
            )
        detail = ", ".join(
            part
            for part in (
                f"ROC AUC {auc:.3f}" if auc is not None else "",
                f"accuracy {accuracy:.3f} vs the most common class's share {majority:.3f}"
                if accuracy is not None
                else "",
            )
            if part
        )
        return Guardrail("useless_model", "passed", f"The model beats the trivial one: {detail} on the {source}.")
    return Guardrail("useless_model", "passed", "No held-out metric to compare with a trivial model.")


def _imbalance(y: pd.Series) -> Guardrail:
    counts = y.value_counts()
    ratio = float(counts.min() / counts.max())
    minority = counts.idxmin()
    share = counts.min() / counts.sum()
    if ratio < 0.2:
        return Guardrail(
            "class_imbalance",
            "warning",
            f"Class {minority!r} is {share:.1%} of rows ({counts.min():,} of {counts.sum():,}); the smallest to "
            f"largest class ratio is {ratio:.2f}. Folds are stratified; prefer roc_auc, f1_macro or "
            "balanced_accuracy over accuracy, and collect more rows of the rare class if you can.",
        )
    return Guardrail("class_imbalance", "passed", f"Classes are balanced enough (smallest/largest {ratio:.2f}).")


def _missing(x: pd.DataFrame, kinds: dict[str, str]) -> Guardrail:
    rates = x.isna().mean()
    columns = [str(c) for c in rates.index if rates[c] > 0 and kinds.get(str(c)) != "ignored"]
    if not columns:
        return Guardrail("missing_values", "passed", "No missing values.")
    worst = sorted(columns, key=lambda c: -rates[c])
    detail = ", ".join(f"{c} {rates[c]:.0%}" for c in worst[:8])
    mostly = [c for c in columns if rates[c] > 0.5]
    status: Status = "warning" if mostly else "fixed"
    extra = f" More than half is missing in {', '.join(mostly)}; check the source." if mostly else ""
    return Guardrail(
        "missing_values",
        status,
        f"Missing values in {len(columns)} column(s) ({detail}): imputed (median, with missing indicators) for "
        f"linear models, handled natively by tree learners.{extra}",
        worst,
    )


def _leakage(
    x: pd.DataFrame, y: pd.Series, kinds: dict[str, str], task: str, allow: tuple[str, ...] | list[str] = ()
) -> Guardrail:
    """A column that predicts the target (almost) perfectly on its own is suspect: it may be known only after
    the outcome. The message gives each suspect's evidence and the threshold."""
    rows = len(x)
    if len(x) > _LEAK_SAMPLE:
        index = x.sample(_LEAK_SAMPLE, random_state=0).index
        x, y = x.loc[index], y.loc[index]
    suspects: dict[str, str] = {}
    columns = [c for c, k in kinds.items() if k in ("numeric", "categorical", "high_cardinality")]
    for name in columns[:_LEAK_MAX_COLUMNS]:
        column = x[name]
        check = _numeric_leak if kinds[name] == "numeric" else _categorical_leak
        evidence = check(column, y, task)
        if evidence is not None:
            suspects[name] = evidence
    sample = f"on {len(x):,} sampled rows" if rows > len(x) else f"on all {len(x):,} rows"
    allowed = {c: e for c, e in suspects.items() if c in allow}
    warned = {c: e for c, e in suspects.items() if c not in allow}
    said = f" Allowed by you (--allow-leak): {'; '.join(f'{c} ({e})' for c, e in allowed.items())}." if allowed else ""
    if warned:
        return Guardrail(
            "target_leakage",
            "warning",
            f"Suspected target leakage {sample} (threshold {LEAK_THRESHOLD:.0%}): "
            + "; ".join(f"{c}: {e}" for c, e in warned.items())
            + ". If such a value is only known after the outcome, drop the column (--exclude COL) or the model will "
            "fail in production; if it is legitimately that strong, say so with --allow-leak COL." + said,
            list(warned),
        )
    return Guardrail(
        "target_leakage",
        "passed",
        f"No single column predicts the target almost perfectly ({sample}, threshold {LEAK_THRESHOLD:.0%})." + said,
    )


def _numeric_leak(column: pd.Series, y: pd.Series, task: str) -> str | None:
    """The evidence that ``column`` alone predicts the target, or None."""
    values = pd.to_numeric(column, errors="coerce").astype(float)
    present = values.notna()
    if present.sum() < 20:
        return None
    if task == "regression":
        corr = values[present].rank().corr(pd.Series(y[present]).astype(float).rank())
        return f"rank correlation with the target {corr:+.3f}" if abs(corr) >= LEAK_THRESHOLD else None
    from sklearn.tree import DecisionTreeClassifier

    labels = pd.Series(y[present]).astype(str)
    counts = labels.value_counts()
    if counts.max() / counts.sum() > 0.95 or counts.min() < 3:
        return None
    # A depth-4 tree has at most 16 leaves on one column: its training accuracy is an honest enough estimate,
    # and one fit per column keeps the check cheap (it runs inside the time budget).
    column_values = values[present].to_numpy().reshape(-1, 1)
    tree = DecisionTreeClassifier(max_depth=4, random_state=0).fit(column_values, labels)
    accuracy = float(tree.score(column_values, labels))
    return f"alone, a depth-4 tree on it is {accuracy:.1%} accurate" if accuracy >= LEAK_THRESHOLD else None


def _categorical_leak(column: pd.Series, y: pd.Series, task: str) -> str | None:
    """The evidence that ``column`` alone predicts the target, or None."""
    frame = pd.DataFrame({"c": column.astype(object).where(column.notna(), "__missing__").astype(str), "y": y})
    groups = frame.groupby("c")["y"]
    if groups.ngroups > len(frame) / 5 or groups.ngroups < 2:
        return None
    if task == "regression":
        target = frame["y"].astype(float)
        total = float(((target - target.mean()) ** 2).sum())
        within = float(((target - groups.transform("mean").astype(float)) ** 2).sum())
        explained = 1 - within / total if total > 0 else 0.0
        return (
            f"its {groups.ngroups} values explain {explained:.1%} of the target's variance"
            if (explained >= LEAK_THRESHOLD)
            else None
        )
    purity = float(groups.agg(lambda s: s.value_counts().iloc[0]).sum() / len(frame))
    majority = float(frame["y"].value_counts().iloc[0] / len(frame))
    if purity >= LEAK_THRESHOLD and majority < 0.95 and bool(np.isfinite(purity)):
        return f"{purity:.1%} of rows have their value's most common target ({groups.ngroups} values)"
    return None
