"""The learners AutoML searches over, their hyperparameter spaces, and how a trial's configuration becomes an
sklearn Pipeline (featurisation + learner)."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Literal

from conveyor.errors import BadInput, did_you_mean

__all__ = ["LEARNERS", "Param", "build_model", "cost_size", "default_params", "initial_points", "suggest"]


@dataclass(frozen=True)
class Param:
    name: str
    kind: Literal["int", "float", "cat"]
    low: float = 0.0
    high: float = 0.0
    log: bool = False
    choices: tuple[Any, ...] = ()
    default: Any = None


_TREES = [
    Param("n_estimators", "int", 16, 400, log=True, default=150),
    Param("max_features", "float", 0.1, 1.0, default=0.5),
    Param("min_samples_leaf", "int", 1, 32, log=True, default=1),
    Param("max_depth", "int", 4, 40, log=True, default=40),
]
_BOOSTING_COMMON = [
    Param("learning_rate", "float", 0.01, 0.3, log=True, default=0.1),
    Param("n_estimators", "int", 30, 1000, log=True, default=100),
]

# Learners in the order their default configurations are tried (cheap first).
SPACES: dict[str, list[Param]] = {
    "linear": [
        Param("C", "float", 1e-3, 1e2, log=True, default=1.0),  # classification: inverse regularisation
        Param("alpha", "float", 1e-4, 1e2, log=True, default=1.0),  # regression: regularisation strength
        Param("l1_ratio", "float", 0.0, 1.0, default=0.0),  # 0: ridge / L2, 1: lasso / L1
    ],
    "hist_gb": [
        Param("learning_rate", "float", 0.01, 0.3, log=True, default=0.1),
        Param("max_iter", "int", 30, 600, log=True, default=100),
        Param("max_leaf_nodes", "int", 4, 128, log=True, default=31),
        Param("min_samples_leaf", "int", 2, 100, log=True, default=20),
        Param("l2_regularization", "float", 1e-8, 10.0, log=True, default=1e-8),
    ],
    "lightgbm": [
        *_BOOSTING_COMMON,
        Param("num_leaves", "int", 4, 256, log=True, default=31),
        Param("min_child_samples", "int", 2, 100, log=True, default=20),
        Param("subsample", "float", 0.5, 1.0, default=1.0),
        Param("colsample_bytree", "float", 0.3, 1.0, default=1.0),
        Param("reg_lambda", "float", 1e-8, 10.0, log=True, default=1e-8),
        Param("reg_alpha", "float", 1e-8, 10.0, log=True, default=1e-8),
    ],
    "xgboost": [
        *_BOOSTING_COMMON,
        Param("max_depth", "int", 2, 10, default=6),
        Param("min_child_weight", "float", 0.01, 20.0, log=True, default=1.0),
        Param("subsample", "float", 0.5, 1.0, default=1.0),
        Param("colsample_bytree", "float", 0.3, 1.0, default=1.0),
        Param("reg_lambda", "float", 1e-3, 10.0, log=True, default=1.0),
        Param("reg_alpha", "float", 1e-8, 10.0, log=True, default=1e-8),
    ],
    "random_forest": _TREES,
    "extra_trees": _TREES,
}
LEARNERS = tuple(SPACES)


def check_learners(names: list[str] | tuple[str, ...] | None) -> tuple[str, ...]:
    """The learners to search (all by default).

    Raises:
        BadInput: an unknown learner name.
    """
    if not names:
        return LEARNERS
    for name in names:
        if name not in SPACES:
            raise BadInput(
                f"Unknown learner {name!r}.{did_you_mean(name, LEARNERS)} Learners: {', '.join(LEARNERS)}.",
                learner=name,
            )
    return tuple(dict.fromkeys(names))


def _relevant(learner: str, task: str) -> list[Param]:
    params = SPACES[learner]
    if learner == "linear":
        keep = {"C"} if task == "classification" else {"alpha", "l1_ratio"}
        return [p for p in params if p.name in keep]
    return params


# Low-cost starting points (as FLAML's low-cost initial configurations): a few shallow trees, so the first
# trials of every boosting learner finish in a fraction of a second and the search grows from there.
LOW_COST: dict[str, dict[str, Any]] = {
    "lightgbm": {"n_estimators": 30, "num_leaves": 8, "learning_rate": 0.2},
    "xgboost": {"n_estimators": 30, "max_depth": 3, "learning_rate": 0.2},
    "hist_gb": {"max_iter": 30, "max_leaf_nodes": 8, "learning_rate": 0.2},
    # Forests cost the most per tree (50 fully grown trees over half the columns: 9 s on 20k rows x 20 columns,
    # a third of a 30 s budget): they start at the space's fewest trees over a third of the columns.
    "random_forest": {"n_estimators": 16, "max_features": 0.33},
    "extra_trees": {"n_estimators": 16, "max_features": 0.33},
}
# After the defaults, each boosting learner's "more, smaller steps" point (a lower learning rate, more and smaller
# trees): where boosting usually ends up on data of 10k rows and more, reached in one trial rather than after
# dozens of the sampler's (FLAML's local search grows its configurations that way).
GROWN: dict[str, dict[str, Any]] = {
    "lightgbm": {"n_estimators": 500, "num_leaves": 15, "learning_rate": 0.05, "colsample_bytree": 0.8},
    "xgboost": {"n_estimators": 500, "max_depth": 4, "learning_rate": 0.05, "colsample_bytree": 0.8},
    "hist_gb": {"max_iter": 500, "max_leaf_nodes": 15, "learning_rate": 0.05},
}
# Learners whose fits cost the most per trial: let in after the cheap ones' first configurations.
EXPENSIVE = ("random_forest", "extra_trees")


def initial_points(learners: tuple[str, ...], task: str) -> list[dict[str, Any]]:
    """The configurations tried before the sampler proposes any: each cheap learner's low-cost point, then each
    cheap learner's defaults, then the expensive learners' low-cost points, then the boosting learners' grown
    points (Optuna parameters, for ``enqueue_trial``); the sampler grows them from there."""

    def point(name: str, changes: dict[str, Any]) -> dict[str, Any]:
        return {**default_params(name, task), **{f"{name}.{k}": v for k, v in changes.items()}}

    cheap = [name for name in learners if name not in EXPENSIVE]
    points = [point(name, LOW_COST[name]) for name in cheap if name in LOW_COST]
    points += [default_params(name, task) for name in cheap]
    points += [point(name, LOW_COST[name]) for name in learners if name in EXPENSIVE]
    points += [point(name, GROWN[name]) for name in cheap if name in GROWN]
    return points


def default_params(learner: str, task: str) -> dict[str, Any]:
    """Optuna parameters (prefixed) of a learner's default configuration, for ``study.enqueue_trial``."""
    return {"learner": learner, **{f"{learner}.{p.name}": p.default for p in _relevant(learner, task)}}


def suggest(trial: Any, learners: tuple[str, ...], task: str) -> dict[str, Any]:
    """Ask an Optuna trial for a learner and its hyperparameters; returns ``{"learner", "params"}``."""
    learner = str(trial.suggest_categorical("learner", list(learners)))
    params: dict[str, Any] = {}
    for p in _relevant(learner, task):
        key = f"{learner}.{p.name}"
        if p.kind == "int":
            params[p.name] = trial.suggest_int(key, int(p.low), int(p.high), log=p.log)
        elif p.kind == "float":
            params[p.name] = trial.suggest_float(key, p.low, p.high, log=p.log)
        else:
            params[p.name] = trial.suggest_categorical(key, list(p.choices))
    return {"learner": learner, "params": params}


def cost_size(config: dict[str, Any]) -> float:
    """A configuration's fitting cost relative to others of its learner (trees x how much each tree does), to
    predict a trial's seconds from the learner's earlier trials on the same data."""
    learner, p = config["learner"], config["params"]
    if learner in ("random_forest", "extra_trees"):
        return float(p["n_estimators"] * p["max_features"])
    if learner == "xgboost":
        return float(p["n_estimators"] * p["max_depth"] * p["colsample_bytree"])
    if learner == "lightgbm":
        return float(p["n_estimators"] * math.log2(max(2, p["num_leaves"])) * p["colsample_bytree"])
    if learner == "hist_gb":
        return float(p["max_iter"] * math.log2(max(2, p["max_leaf_nodes"])))
    return 1.0


def build_estimator(config: dict[str, Any], task: str, seed: int, n_jobs: int) -> Any:  # noqa: PLR0911
    """The unfitted learner for a trial configuration (classes are encoded 0..k-1 by the caller)."""
    learner, p = config["learner"], dict(config["params"])
    classification = task == "classification"
    if learner == "linear":
        from sklearn import linear_model

        if classification:
            return linear_model.LogisticRegression(C=p["C"], max_iter=500)
        if p["l1_ratio"] < 0.01:
            return linear_model.Ridge(alpha=p["alpha"])
        return linear_model.ElasticNet(
            alpha=p["alpha"], l1_ratio=p["l1_ratio"], max_iter=2000, selection="random", random_state=seed
        )
    if learner in ("random_forest", "extra_trees"):
        from sklearn import ensemble

        kind = {"random_forest": "RandomForest", "extra_trees": "ExtraTrees"}[learner]
        cls = getattr(ensemble, f"{kind}{'Classifier' if classification else 'Regressor'}")
        return cls(**p, n_jobs=n_jobs, random_state=seed)
    if learner == "hist_gb":
        from sklearn import ensemble

        cls = ensemble.HistGradientBoostingClassifier if classification else ensemble.HistGradientBoostingRegressor
        return cls(**p, early_stopping=False, random_state=seed)
    if learner == "lightgbm":
        import lightgbm

        cls = lightgbm.LGBMClassifier if classification else lightgbm.LGBMRegressor
        return cls(**p, subsample_freq=1, n_jobs=n_jobs, random_state=seed, verbose=-1)
    if learner == "xgboost":
        import xgboost

        cls = xgboost.XGBClassifier if classification else xgboost.XGBRegressor
        return cls(**p, tree_method="hist", n_jobs=n_jobs, random_state=seed, verbosity=0)
    raise BadInput(f"Unknown learner {learner!r}. Learners: {', '.join(LEARNERS)}.")


def build_model(
    config: dict[str, Any], kinds: dict[str, Any], task: str, n_classes: int, seed: int, n_jobs: int
) -> Any:
    """An unfitted sklearn Pipeline: the featurisation for ``kinds`` (scaled for linear models), then the learner."""
    from sklearn.pipeline import Pipeline

    from conveyor.train._featurize import Featurizer

    target_type = "continuous" if task != "classification" else "binary" if n_classes == 2 else "multiclass"
    linear = config["learner"] == "linear"
    features = Featurizer(dict(kinds), scale=linear, target_type=target_type, text_features=200 if linear else 50)
    return Pipeline([("features", features), ("learner", build_estimator(config, task, seed, n_jobs))])
