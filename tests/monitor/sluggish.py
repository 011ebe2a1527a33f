"""A model class for the loop's rollback test, in a module of its own so that a pipeline step and a serving
worker import the same class (a step's own module is loaded under the pipeline's name)."""

from __future__ import annotations

import time
from typing import Any

from sklearn.linear_model import LogisticRegression


class Sluggish(LogisticRegression):
    """As good as its parent, but every call takes 0.25 s more (a heavier model, a slow feature lookup)."""

    def predict(self, X: Any) -> Any:  # noqa: N803 - scikit-learn's name
        time.sleep(0.25)
        return super().predict(X)

    def predict_proba(self, X: Any) -> Any:  # noqa: N803 - scikit-learn's name
        time.sleep(0.25)
        return super().predict_proba(X)
