"""The data guardrails report: what AutoML found in the data before training, and what it did about it."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any, Literal

import numpy as np
import pandas as pd

__all__ = ["Guardrail", "check_data"]

Status = Literal["passed", "fixed", "warning"]
_LEAK_SAMPLE = 2000
_LEAK_MAX_COLUMNS = 200


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
    x: pd.DataFrame, y: pd.Series, kinds: dict[str, str], task: str, dropped_unlabelled: int = 0
) -> list[Guardrail]:
    """Check class balance, missing values, cardinality, constant columns and target leakage."""
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
    report.append(_leakage(x, y, kinds, task))
    return report


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


def _leakage(x: pd.DataFrame, y: pd.Series, kinds: dict[str, str], task: str) -> Guardrail:
    """A column that predicts the target (almost) perfectly on its own is suspect: it may be known only after
    the outcome."""
    if len(x) > _LEAK_SAMPLE:
        index = x.sample(_LEAK_SAMPLE, random_state=0).index
        x, y = x.loc[index], y.loc[index]
    suspects: list[str] = []
    columns = [c for c, k in kinds.items() if k in ("numeric", "categorical", "high_cardinality")]
    for name in columns[:_LEAK_MAX_COLUMNS]:
        column = x[name]
        check = _numeric_leak if kinds[name] == "numeric" else _categorical_leak
        if check(column, y, task):
            suspects.append(name)
    if suspects:
        return Guardrail(
            "target_leakage",
            "warning",
            f"Suspected target leakage: {', '.join(suspects)} predict(s) the target almost perfectly on their "
            "own. If such a value is only known after the outcome, drop the column (--exclude) or the model "
            "will fail in production.",
            suspects,
        )
    return Guardrail("target_leakage", "passed", "No single column predicts the target almost perfectly.")


def _numeric_leak(column: pd.Series, y: pd.Series, task: str) -> bool:
    values = pd.to_numeric(column, errors="coerce").astype(float)
    present = values.notna()
    if present.sum() < 20:
        return False
    if task == "regression":
        corr = values[present].rank().corr(pd.Series(y[present]).astype(float).rank())
        return bool(abs(corr) >= 0.99)
    from sklearn.tree import DecisionTreeClassifier

    labels = pd.Series(y[present]).astype(str)
    counts = labels.value_counts()
    if counts.max() / counts.sum() > 0.95 or counts.min() < 3:
        return False
    # A depth-4 tree has at most 16 leaves on one column: its training accuracy is an honest enough estimate,
    # and one fit per column keeps the check cheap (it runs inside the time budget).
    column_values = values[present].to_numpy().reshape(-1, 1)
    tree = DecisionTreeClassifier(max_depth=4, random_state=0).fit(column_values, labels)
    return bool(tree.score(column_values, labels) >= 0.99)


def _categorical_leak(column: pd.Series, y: pd.Series, task: str) -> bool:
    frame = pd.DataFrame({"c": column.astype(object).where(column.notna(), "__missing__").astype(str), "y": y})
    groups = frame.groupby("c")["y"]
    if groups.ngroups > len(frame) / 5 or groups.ngroups < 2:
        return False
    if task == "regression":
        target = frame["y"].astype(float)
        total = float(((target - target.mean()) ** 2).sum())
        within = float(((target - groups.transform("mean").astype(float)) ** 2).sum())
        return total > 0 and 1 - within / total >= 0.99
    purity = float(groups.agg(lambda s: s.value_counts().iloc[0]).sum() / len(frame))
    majority = float(frame["y"].value_counts().iloc[0] / len(frame))
    return purity >= 0.99 and majority < 0.95 and bool(np.isfinite(purity))
