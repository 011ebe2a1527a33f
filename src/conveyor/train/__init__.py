"""Training: automatic featurisation and a tabular learner with holdout evaluation.

Later: AutoML (learner and hyperparameter search under a time budget), sweeps, forecasting, reports.
"""

from conveyor.train._featurize import DateFeatures, build_featurizer, infer_column_kinds
from conveyor.train._fit import TrainingResult, train_tabular

__all__ = [
    "DateFeatures",
    "TrainingResult",
    "build_featurizer",
    "infer_column_kinds",
    "train_tabular",
]
