"""Converting a fitted model to ONNX (skl2onnx; onnxmltools for LightGBM and XGBoost) and proving the
conversion equivalent on real rows with ONNX Runtime.

Conveyor's featurisation (``conveyor.train``) is converted too: its categorical step (text with a
``__missing__`` level) becomes an identity on string inputs, whose missing values the caller sends as
``__missing__``, and one-hot encoders with grouped rare levels get a converter of their own (skl2onnx's refuses
them). Calendar features from dates have no ONNX equivalent; such models are refused with that reason.
"""

from __future__ import annotations

import copy
import threading
from dataclasses import dataclass
from typing import Any

from conveyor.errors import BadInput

__all__ = ["MISSING_TEXT", "TOLERANCE", "Conversion", "NotConvertible", "convert", "onnx_feeds"]

#: The largest difference allowed between the model's and ONNX Runtime's probabilities (or predictions).
TOLERANCE = 1e-5
#: How missing values of text columns are sent to a converted Conveyor model.
MISSING_TEXT = "__missing__"
_OPSET = {"": 17, "ai.onnx.ml": 3}
_registered = threading.Lock()
_done: list[bool] = []


class NotConvertible(BadInput):
    """The model cannot be converted to ONNX, or the conversion does not compute what the model computes."""

    http_status = 422
    code = "not_convertible"


@dataclass(frozen=True)
class Conversion:
    """An ONNX model and what it was checked on."""

    data: bytes
    inputs: list[dict[str, str]]
    outputs: list[str]
    kind: str  # "classifier" | "regressor"
    max_abs_diff: float
    rows: int
    missing_text: str | None
    opset: dict[str, int]


def _missing_packages() -> list[str]:
    missing = []
    for module, package in (("skl2onnx", "skl2onnx"), ("onnxruntime", "onnxruntime")):
        try:
            __import__(module)
        except ImportError:
            missing.append(package)
    return missing


def convert(model: Any, frame: Any, ref: str) -> Conversion:
    """Convert ``model`` and check it on the rows of ``frame`` (a DataFrame of model inputs).

    Raises:
        NotConvertible: a part of the model has no ONNX converter, or ONNX Runtime's probabilities (or
            predictions) differ from the model's by more than ``TOLERANCE``.
        BadInput: ``frame`` is empty, or the ONNX packages are not installed.
    """
    missing = _missing_packages()
    if missing:
        raise BadInput(
            f"Converting to ONNX needs {', '.join(missing)}: pip install 'conveyor-ml[onnx]'.", packages=missing
        )
    if len(frame) == 0:
        raise BadInput(f"No rows to check the ONNX conversion of {ref} on; pass a data version with rows.")
    _register_converters()
    _refuse_unconvertible(model, ref)
    per_column = _takes_named_columns(model)
    kind = "classifier" if hasattr(model, "predict_proba") and hasattr(model, "classes_") else "regressor"
    missing_text = MISSING_TEXT if _uses_conveyor_text(model) else None
    failure: NotConvertible | None = None
    # Doubles first (exact for most converters); tree ensembles that only run on floats get a second try,
    # and the equivalence check decides.
    for precision in ("double", "float"):
        try:
            return _convert_checked(model, frame, ref, per_column, kind, missing_text, precision)
        except NotConvertible as exc:
            if failure is None or "max_abs_diff" in exc.details:
                failure = exc
    assert failure is not None
    raise failure


def _convert_checked(
    model: Any, frame: Any, ref: str, per_column: bool, kind: str, missing_text: str | None, precision: str
) -> Conversion:
    import onnxruntime as ort
    from skl2onnx import to_onnx

    inputs = _input_types(model, frame, per_column, ref, precision)
    options = {id(est): {"zipmap": False} for est in _estimators(model) if _is_classifier(est)}
    try:
        onx = to_onnx(model, initial_types=inputs, options=options, target_opset=_OPSET)
    except Exception as exc:
        raise NotConvertible(
            f"{ref} cannot be converted to ONNX: {type(exc).__name__}: {_first_line(exc)}. Serve it as it is "
            "(skops), or retrain with parts that have ONNX converters (scikit-learn estimators, LightGBM, XGBoost).",
            ref=ref,
        ) from exc
    data = onx.SerializeToString()
    spec = [{"name": name, "type": "string" if _is_text(t) else precision} for name, t in inputs]
    try:
        session = ort.InferenceSession(data, providers=["CPUExecutionProvider"])
        results = session.run(None, onnx_feeds(frame, spec, missing_text, per_column))
    except Exception as exc:
        raise NotConvertible(
            f"The ONNX conversion of {ref} fails on the validation rows: {type(exc).__name__}: {_first_line(exc)}.",
            ref=ref,
        ) from exc
    outputs = [o.name for o in session.get_outputs()]
    diff = _difference(model, frame, results, kind, ref)
    return Conversion(data, spec, outputs, kind, diff, len(frame), missing_text, dict(_OPSET))


def onnx_feeds(
    frame: Any, inputs: list[dict[str, str]], missing_text: str | None, per_column: bool = True
) -> dict[str, Any]:
    """ONNX Runtime inputs from a DataFrame of raw rows, as a converted model expects them."""
    import pandas as pd

    def numbers(values: Any, precision: str) -> Any:
        return pd.DataFrame(values).astype("float32" if precision == "float" else "float64").to_numpy()

    if not per_column:
        return {inputs[0]["name"]: numbers(frame, inputs[0]["type"])}
    feeds: dict[str, Any] = {}
    for spec in inputs:
        column = frame[[spec["name"]]]
        if spec["type"] == "string":
            if missing_text is not None:
                text = column.astype(object).where(column.notna(), missing_text).astype(str)
            else:
                text = column.astype(str)
            feeds[spec["name"]] = text.to_numpy().astype(object)
        else:
            feeds[spec["name"]] = numbers(column, spec["type"])
    return feeds


def _difference(model: Any, frame: Any, results: list[Any], kind: str, ref: str) -> float:
    import numpy as np

    if kind == "classifier":
        expected = np.asarray(model.predict_proba(frame), dtype=np.float64)
        actual = np.asarray(results[1], dtype=np.float64)
        labels_differ = not np.array_equal(np.asarray(results[0]).ravel(), np.asarray(model.predict(frame)).ravel())
        what = "probabilities"
    else:
        expected = np.asarray(model.predict(frame), dtype=np.float64).ravel()
        actual = np.asarray(results[0], dtype=np.float64).ravel()
        labels_differ = False
        what = "predictions"
    if expected.shape != actual.shape:
        raise NotConvertible(
            f"The ONNX conversion of {ref} returns {what} of shape {actual.shape}, the model {expected.shape}.",
            ref=ref,
        )
    diff = float(np.nanmax(np.abs(expected - actual))) if expected.size else 0.0
    scale = 1.0 if kind == "classifier" else max(1.0, float(np.nanmax(np.abs(expected))) if expected.size else 1.0)
    if diff > TOLERANCE * scale or np.isnan(actual).sum() != np.isnan(expected).sum():
        raise NotConvertible(
            f"The ONNX conversion of {ref} is not equivalent: its {what} differ from the model's by up to "
            f"{diff:.3g} on {len(frame)} validation rows (allowed: {TOLERANCE * scale:.0e}). It was not stored.",
            ref=ref,
            max_abs_diff=diff,
        )
    if labels_differ and diff > 0:
        raise NotConvertible(
            f"The ONNX conversion of {ref} predicts other classes than the model on some validation rows "
            f"(probabilities differ by up to {diff:.3g}). It was not stored.",
            ref=ref,
        )
    return diff


# -- what can be converted ---------------------------------------------------------------------------


def _estimators(model: Any) -> list[Any]:
    found = [model]
    # A fitted ColumnTransformer's parts are in transformers_ (transformers holds the unfitted templates).
    parts = getattr(model, "steps", None) or getattr(model, "transformers_", None) or []
    for item in parts:
        part = item[1]
        if not isinstance(part, str):
            found.extend(_estimators(part))
    return found


def _is_classifier(est: Any) -> bool:
    from sklearn.base import is_classifier
    from sklearn.pipeline import Pipeline

    return bool(is_classifier(est)) and not isinstance(est, Pipeline)


def _takes_named_columns(model: Any) -> bool:
    """Whether the model picks its columns by name (a ColumnTransformer first), so ONNX gets one input each."""
    from sklearn.compose import ColumnTransformer
    from sklearn.pipeline import Pipeline

    first = model
    while isinstance(first, Pipeline):
        first = first.steps[0][1]
    return isinstance(first, ColumnTransformer)


def _input_types(model: Any, frame: Any, per_column: bool, ref: str, precision: str) -> list[tuple[str, Any]]:
    import pandas as pd
    from skl2onnx.common.data_types import DoubleTensorType, FloatTensorType, StringTensorType

    number = DoubleTensorType if precision == "double" else FloatTensorType
    names = [str(c) for c in getattr(model, "feature_names_in_", frame.columns)]
    absent = [n for n in names if n not in frame.columns]
    if absent:
        raise BadInput(f"The validation rows for {ref} lack the model's columns: {', '.join(absent)}.", ref=ref)
    numeric = {
        n: pd.api.types.is_numeric_dtype(frame[n].dtype) or pd.api.types.is_bool_dtype(frame[n].dtype) for n in names
    }
    if per_column:
        return [(n, number([None, 1]) if numeric[n] else StringTensorType([None, 1])) for n in names]
    text = [n for n in names if not numeric[n]]
    if text:
        raise NotConvertible(
            f"{ref} takes text columns ({', '.join(text)}) without a ColumnTransformer to encode them; ONNX needs "
            "numbers. Put the encoding in the model as a Pipeline(ColumnTransformer(...), estimator).",
            ref=ref,
        )
    return [("input", number([None, len(names)]))]


def _refuse_unconvertible(model: Any, ref: str) -> None:
    import numpy as np
    from sklearn.preprocessing import FunctionTransformer

    for est in _estimators(model):
        trees = [e.tree_ for e in getattr(est, "estimators_", [est]) if hasattr(e, "tree_")]
        forest = type(est).__name__.endswith(
            ("ForestClassifier", "ForestRegressor", "TreesClassifier", "TreesRegressor")
        )
        if not forest and any(not np.isfinite(t.threshold[t.children_left >= 0]).all() for t in trees):
            raise NotConvertible(
                f"{ref} cannot be converted to ONNX: its {type(est).__name__} learned splits that send missing "
                "values one way and every number the other, which skl2onnx cannot express. Serve it as it is "
                "(skops), or use HistGradientBoosting, LightGBM or XGBoost for data with missing values.",
                ref=ref,
            )
        module = type(est).__module__
        if module.startswith("conveyor.") and type(est).__name__ == "DateFeatures":
            raise NotConvertible(
                f"{ref} cannot be converted to ONNX: it derives calendar features from date columns "
                f"({', '.join(map(str, getattr(est, 'feature_names_in_', [])))}) and ONNX has no operator that "
                "parses dates. Serve it as it is (skops), or train without date columns or with them as numbers.",
                ref=ref,
            )
        if isinstance(est, FunctionTransformer) and est.func is not None and not _is_conveyor_text(est.func):
            name = getattr(est.func, "__qualname__", repr(est.func))
            raise NotConvertible(
                f"{ref} cannot be converted to ONNX: FunctionTransformer({name}) runs Python code that ONNX "
                "cannot express. Serve it as it is (skops).",
                ref=ref,
            )


def _is_conveyor_text(func: Any) -> bool:
    return getattr(func, "__module__", "").startswith("conveyor.train") and func.__name__ == "categories_as_text"


def _uses_conveyor_text(model: Any) -> bool:
    from sklearn.preprocessing import FunctionTransformer

    return any(isinstance(e, FunctionTransformer) and _is_conveyor_text(e.func) for e in _estimators(model))


def _is_text(tensor_type: Any) -> bool:
    from skl2onnx.common.data_types import StringTensorType

    return isinstance(tensor_type, StringTensorType)


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return (text[0] if text else type(exc).__name__)[:400]


# -- converters skl2onnx lacks ------------------------------------------------------------------------


def _register_converters() -> None:
    with _registered:
        if _done:
            return
        _register_text_identity()
        _register_one_hot_with_rare_levels()
        _register_boosting_libraries()
        _register_numpy_safe_histogram_boosting()
        _register_forest_missing_values()
        _done.append(True)


def _register_text_identity() -> None:
    """Conveyor's ``categories_as_text`` step: text stays text (missing values arrive as ``__missing__``)."""
    from skl2onnx import update_registered_converter
    from skl2onnx.common._apply_operation import apply_concat, apply_identity
    from skl2onnx.operator_converters.function_transformer import convert_sklearn_function_transformer
    from sklearn.preprocessing import FunctionTransformer

    def shape(operator: Any) -> None:
        if operator.raw_operator.func is not None and not _is_conveyor_text(operator.raw_operator.func):
            raise RuntimeError("FunctionTransformer runs Python code that ONNX cannot express")
        rows = operator.inputs[0].get_first_dimension()
        widths = [v.type.shape[1] for v in operator.inputs]
        operator.outputs[0].type = copy.deepcopy(operator.inputs[0].type)
        operator.outputs[0].type.shape = [rows, None if None in widths else sum(widths)]

    def converter(scope: Any, operator: Any, container: Any) -> None:
        if operator.raw_operator.func is None or not _is_conveyor_text(operator.raw_operator.func):
            convert_sklearn_function_transformer(scope, operator, container)
            return
        names = [i.full_name for i in operator.inputs]
        output = operator.outputs[0].full_name
        if len(names) == 1:
            apply_identity(scope, names[0], output, container)
        else:
            apply_concat(scope, names, output, container, axis=1)

    update_registered_converter(FunctionTransformer, "SklearnFunctionTransformer", shape, converter)


def _register_one_hot_with_rare_levels() -> None:
    """One-hot encoding with ``max_categories``/``min_frequency`` (rare and unknown levels in one column)."""
    from skl2onnx import update_registered_converter
    from skl2onnx.common.data_types import FloatTensorType, StringTensorType
    from skl2onnx.operator_converters.one_hot_encoder import convert_sklearn_one_hot_encoder
    from skl2onnx.shape_calculators.one_hot_encoder import calculate_sklearn_one_hot_encoder_output_shapes
    from sklearn.preprocessing import OneHotEncoder

    def ours(op: Any) -> bool:
        return bool(getattr(op, "_infrequent_enabled", False)) or op.handle_unknown == "infrequent_if_exist"

    def shape(operator: Any) -> None:
        op = operator.raw_operator
        if not ours(op):
            calculate_sklearn_one_hot_encoder_output_shapes(operator)
            return
        width = sum(len(op._compute_transformed_categories(i)) for i in range(len(op.categories_)))
        operator.outputs[0].type = FloatTensorType([operator.inputs[0].get_first_dimension(), width])

    def converter(scope: Any, operator: Any, container: Any) -> None:

        op = operator.raw_operator
        if not ours(op):
            convert_sklearn_one_hot_encoder(scope, operator, container)
            return
        if op.drop_idx_ is not None:
            raise RuntimeError("OneHotEncoder with both drop and rare-level grouping has no ONNX converter here")
        columns = [(inp, j) for inp in operator.inputs for j in range(inp.type.shape[1] or 1)]
        if len(columns) != len(op.categories_):
            raise RuntimeError("the one-hot encoder's inputs do not match its categories")
        parts = []
        for index, (inp, j) in enumerate(columns):
            if not isinstance(inp.type, StringTensorType):
                raise RuntimeError("rare-level one-hot encoding is converted for text columns only")
            levels = [str(c) for c in op._compute_transformed_categories(index)]
            parts.extend(_one_hot_column(scope, container, inp.full_name, j, levels))
        container.add_node("Concat", parts, operator.outputs[0].full_name, axis=1,
                           name=scope.get_unique_operator_name("Concat"))  # fmt: skip

    update_registered_converter(OneHotEncoder, "SklearnOneHotEncoder", shape, converter)


def _one_hot_column(scope: Any, container: Any, source: str, position: int, levels: list[str]) -> list[str]:
    """Nodes one-hot encoding column ``position`` of ``source``; a last level ``infrequent_sklearn`` is 1 for
    every value that is none of the frequent levels (a rare one, or one never seen)."""
    import numpy as np
    from skl2onnx.proto import onnx_proto

    rare = levels[-1] == "infrequent_sklearn"
    frequent = levels[:-1] if rare else levels
    index = scope.get_unique_variable_name("position")
    container.add_initializer(index, onnx_proto.TensorProto.INT64, [1], [position])
    column = scope.get_unique_variable_name("column")
    container.add_node("Gather", [source, index], column, axis=1, name=scope.get_unique_operator_name("Gather"))
    encoded = scope.get_unique_variable_name("encoded")
    container.add_node(
        "OneHotEncoder",
        column,
        encoded,
        op_domain="ai.onnx.ml",
        name=scope.get_unique_operator_name("OneHotEncoder"),
        cats_strings=np.array([c.encode("utf-8") for c in frequent]),
        zeros=1,
    )
    shape = scope.get_unique_variable_name("shape")
    container.add_initializer(shape, onnx_proto.TensorProto.INT64, [2], [-1, len(frequent)])
    flat = scope.get_unique_variable_name("flat")
    container.add_node("Reshape", [encoded, shape], flat, name=scope.get_unique_operator_name("Reshape"))
    if not rare:
        return [flat]
    axes = scope.get_unique_variable_name("axes")
    container.add_initializer(axes, onnx_proto.TensorProto.INT64, [1], [1])
    total = scope.get_unique_variable_name("total")
    container.add_node("ReduceSum", [flat, axes], total, keepdims=1, name=scope.get_unique_operator_name("ReduceSum"))
    one = scope.get_unique_variable_name("one")
    container.add_initializer(one, onnx_proto.TensorProto.FLOAT, [1], [1.0])
    other = scope.get_unique_variable_name("rare")
    container.add_node("Sub", [one, total], other, name=scope.get_unique_operator_name("Sub"))
    return [flat, other]


def _register_boosting_libraries() -> None:
    """LightGBM and XGBoost inside scikit-learn pipelines, through onnxmltools, when they are installed."""
    from skl2onnx import update_registered_converter
    from skl2onnx.common.shape_calculator import (
        calculate_linear_classifier_output_shapes,
        calculate_linear_regressor_output_shapes,
    )

    classifier_options = {"nocl": [True, False], "zipmap": [True, False, "columns"]}
    try:
        from lightgbm import LGBMClassifier, LGBMRegressor
        from onnxmltools.convert.lightgbm.operator_converters.LightGbm import convert_lightgbm
    except ImportError:
        pass
    else:
        update_registered_converter(
            LGBMClassifier,
            "LightGbmLGBMClassifier",
            calculate_linear_classifier_output_shapes,
            convert_lightgbm,
            options=classifier_options,
        )
        update_registered_converter(
            LGBMRegressor, "LightGbmLGBMRegressor", calculate_linear_regressor_output_shapes, convert_lightgbm
        )
    try:
        from onnxmltools.convert.xgboost.operator_converters.XGBoost import convert_xgboost
        from xgboost import XGBClassifier, XGBRegressor
    except ImportError:
        pass
    else:
        update_registered_converter(
            XGBClassifier,
            "XGBoostXGBClassifier",
            calculate_linear_classifier_output_shapes,
            convert_xgboost,
            options=classifier_options,
        )
        update_registered_converter(
            XGBRegressor, "XGBoostXGBRegressor", calculate_linear_regressor_output_shapes, convert_xgboost
        )


class _PlainAttributes:
    """A converter container that turns NumPy integers and booleans in list attributes into ints (onnx's
    ``make_attribute`` refuses them; skl2onnx's histogram-boosting converter passes them with NumPy 2)."""

    def __init__(self, container: Any) -> None:
        self._container = container

    def __getattr__(self, name: str) -> Any:
        return getattr(self._container, name)

    def add_node(self, *args: Any, **attributes: Any) -> Any:
        import numpy as np

        def plain(value: Any) -> Any:
            if isinstance(value, list):
                return [int(v) if isinstance(v, np.integer | np.bool_ | bool) else v for v in value]
            return value

        return self._container.add_node(*args, **{k: plain(v) for k, v in attributes.items()})


def _register_numpy_safe_histogram_boosting() -> None:
    from skl2onnx import update_registered_converter
    from skl2onnx._supported_operators import sklearn_operator_name_map
    from skl2onnx.common._registration import get_converter, get_shape_calculator
    from sklearn.ensemble import HistGradientBoostingClassifier, HistGradientBoostingRegressor

    def wrap(original: Any) -> Any:
        def converter(scope: Any, operator: Any, container: Any) -> None:
            original._fct(scope, operator, _PlainAttributes(container))

        return converter

    for cls in (HistGradientBoostingClassifier, HistGradientBoostingRegressor):
        alias = sklearn_operator_name_map[cls]
        original = get_converter(alias)
        update_registered_converter(
            cls, alias, get_shape_calculator(alias), wrap(original), options=original.get_allowed_options()
        )


# -- AutoML models: features in NumPy, learners in ONNX Runtime -------------------------------------------


def compile_automl(model: Any, frame: Any, *, deadline: float | None = None) -> str:
    """Convert the learners of an AutoML model to ONNX, each checked against the learner itself, and store the
    conversions in the model (``AutoMLModel.compiled``), which then scores through ONNX Runtime.

    The featurisation stays NumPy (``conveyor.train.Featurizer``: dates, text and target encodings have no
    ONNX operators worth their cost); each learner's graph takes its features. A learner is converted in
    doubles where its converter takes them, else in floats, and kept only if its probabilities (or
    predictions) on the features of ``frame`` (and, for learners that take missing values, on those rows
    with each feature missing in turn) agree with the learner's to ``TOLERANCE``; any other learner stays
    native. Pipelines whose fitted featurisers are identical (the trees of a refitted ensemble) share one
    feature matrix. Returns what was done, also kept as ``model.inference``. ``deadline`` (``time.monotonic``)
    stops converting once passed: the rest stays native.
    """
    if _missing_packages():
        model.inference = f"native (not converted: {', '.join(_missing_packages())} not installed)"
        return str(model.inference)
    _register_converters()
    columns = {str(c): frame[c].to_numpy() for c in frame.columns}
    state = _Compiling(deadline)
    model.feature_groups, compiled = [], []
    for pipelines, _ in model.members or []:
        done = [state.add(pipeline, columns) for pipeline in pipelines]
        model.feature_groups.append([group for group, _ in done])
        compiled.append([data for _, data in done])
    model.compiled = compiled if state.converted else None
    if state.converted == state.total:
        model.inference = (
            f"onnx ({state.total} learner(s) checked on {len(frame)} rows: max difference {state.worst:.1e})"
        )
    elif state.converted:
        model.inference = f"onnx for {state.converted} of {state.total} learners; the rest native: {state.reasons[0]}"
    else:
        model.inference = f"native ({state.reasons[0] if state.reasons else 'nothing to convert'})"
    return str(model.inference)


class _Compiling:
    """What ``compile_automl`` has converted so far: the distinct featurisers' features, the reasons learners
    stayed native, the largest difference seen."""

    def __init__(self, deadline: float | None) -> None:
        self.deadline = deadline
        self.groups: dict[bytes, int] = {}  # a fitted featuriser's pickle → its index in ``features``
        self.features: list[Any] = []
        self.reasons: list[str] = []
        self.worst = 0.0
        self.converted = self.total = 0

    def add(self, pipeline: Any, columns: dict[str, Any]) -> tuple[int, bytes | None]:
        """One pipeline: which featuriser group makes its features, and its learner's graph (None: native)."""
        import pickle
        import time

        self.total += 1
        featurizer, learner = _parts(pipeline)
        if featurizer is None:
            self.reasons.append("a member is not a featuriser + learner pipeline")
            return -1, None
        key = pickle.dumps(featurizer)  # identically fitted featurisers share one feature matrix
        group = self.groups.setdefault(key, len(self.features))
        if group == len(self.features):
            self.features.append(featurizer.transform(columns))
        needed = _conversion_seconds(learner)
        if self.deadline is not None and (now := time.monotonic()) + needed > self.deadline:
            self.reasons.append(
                "no time left in the budget to convert"
                if now > self.deadline
                else f"converting {type(learner).__name__} would take about {needed:.1f} s, past the time budget"
            )
            return group, None
        try:
            data, diff = _convert_learner(learner, self.features[group])
        except NotConvertible as exc:
            self.reasons.append(str(exc))
            return group, None
        self.worst = max(self.worst, diff)
        self.converted += 1
        return group, data


_SECONDS_PER_NODE = 40e-6  # skl2onnx's tree converters (measured: 26-34 us a node, random and extra trees)
_SECONDS_PER_LEARNER = 0.3  # anything else: a linear model or a boosted ensemble (measured: 0.05-0.3 s)


def _conversion_seconds(learner: Any) -> float:
    """About how long converting (and checking) ``learner`` takes: by its node count for scikit-learn's forests,
    whose conversions grow with it (616k nodes: 21 s on 2 cores), else a fixed small cost."""
    trees = [e.tree_ for e in getattr(learner, "estimators_", []) if hasattr(e, "tree_")]
    nodes = sum(int(t.node_count) for t in trees)
    return _SECONDS_PER_LEARNER + nodes * _SECONDS_PER_NODE


def _parts(pipeline: Any) -> tuple[Any, Any]:
    steps = getattr(pipeline, "named_steps", {})
    featurizer, learner = steps.get("features"), steps.get("learner")
    if featurizer is None or learner is None or len(steps) != 2 or not hasattr(featurizer, "feature_names_in_"):
        return None, None
    return featurizer, learner


def _convert_learner(learner: Any, features: Any) -> tuple[bytes, float]:
    """One learner as ONNX over a feature matrix, checked on ``features`` (and, when the learner takes missing
    values, on rows with each feature missing in turn); returns the bytes and the largest difference."""
    import numpy as np
    import onnxruntime as ort
    from skl2onnx import to_onnx
    from skl2onnx.common.data_types import DoubleTensorType, FloatTensorType

    name = type(learner).__name__
    _refuse_unconvertible(learner, name)
    check = _with_missing(learner, np.asarray(features, dtype=np.float64))
    classifier = _is_classifier(learner)
    expected = (
        np.asarray(learner.predict_proba(check), dtype=np.float64)
        if classifier
        else np.asarray(learner.predict(check), dtype=np.float64).reshape(-1)
    )
    failure = f"{name} has no ONNX converter here"
    for tensor, dtype in ((DoubleTensorType, np.float64), (FloatTensorType, np.float32)):
        options = {id(learner): {"zipmap": False}} if classifier else None
        try:
            with np.errstate(all="ignore"):  # skl2onnx's float32 threshold search overflows near the largest float
                onx = to_onnx(
                        learner, initial_types=[("features", tensor([None, check.shape[1]]))], options=options,
                    target_opset=_OPSET,
                )  # fmt: skip
            data = onx.SerializeToString()
            session = ort.InferenceSession(data, providers=["CPUExecutionProvider"])
            results = session.run(None, {"features": check.astype(dtype)})
        except Exception as exc:  # noqa: BLE001 - any converter or runtime failure means: stay native
            failure = f"{name} cannot be converted to ONNX: {type(exc).__name__}: {_first_line(exc)}"
            continue
        actual = np.asarray(results[1] if classifier else results[0], dtype=np.float64)
        actual = actual if classifier else actual.reshape(-1)
        if actual.shape != expected.shape:
            failure = f"the ONNX conversion of {name} answers in shape {actual.shape}, the learner {expected.shape}"
            continue
        diff = float(np.max(np.abs(actual - expected))) if expected.size else 0.0
        scale = 1.0 if classifier else max(1.0, float(np.max(np.abs(expected))) if expected.size else 1.0)
        if not np.isfinite(diff) or diff > TOLERANCE * scale:
            failure = (
                f"the ONNX conversion of {name} differs from it by up to {diff:.3g} (allowed {TOLERANCE * scale:.0e})"
            )
            continue
        return data, diff
    raise NotConvertible(failure)


def _with_missing(learner: Any, features: Any) -> Any:
    """``features`` plus, when the learner takes missing values, copies of its first rows with each feature
    missing in turn (so a conversion that mishandles missing values is caught before it serves them)."""
    import numpy as np

    head = features[: min(len(features), 3)]
    if not len(head):
        return features
    probe = np.repeat(head, features.shape[1], axis=0)
    for j in range(features.shape[1]):
        probe[j * len(head) : (j + 1) * len(head), j] = np.nan
    try:
        if _is_classifier(learner):
            learner.predict_proba(probe[:1])
        else:
            learner.predict(probe[:1])
    except ValueError:  # the learner refuses missing values (linear models: features are imputed first)
        return features
    return np.vstack([features, probe])


def _register_forest_missing_values() -> None:
    """Random forests and extra trees fitted on missing values send them left or right at each split
    (``tree_.missing_go_to_left``); skl2onnx writes every split as "missing goes right". The ONNX tree
    operators take the direction per node (``nodes_missing_value_tracks_true``): fill it in from the tree. (A
    split at +inf, "every number one way, missing the other", then needs nothing else.)"""
    from skl2onnx.operator_converters import random_forest

    original = random_forest.add_tree_to_attribute_pairs
    if getattr(original, "_conveyor", False):
        return

    def with_missing(attr_pairs: Any, is_classifier: Any, tree: Any, *args: Any, **kwargs: Any) -> None:
        original(attr_pairs, is_classifier, _FiniteSplits(tree), *args, **kwargs)
        go_left = getattr(tree, "missing_go_to_left", None)
        if go_left is None:
            return
        tracks = attr_pairs["nodes_missing_value_tracks_true"]
        count = tree.node_count
        branch = tree.children_left[:count] >= 0
        tracks[-count:] = [
            int(left) if is_branch else 0 for left, is_branch in zip(go_left[:count], branch, strict=True)
        ]

    with_missing._conveyor = True  # type: ignore[attr-defined]
    random_forest.add_tree_to_attribute_pairs = with_missing


class _FiniteSplits:
    """A fitted tree whose splits at +inf ("every number one way") are at the largest float32 instead:
    skl2onnx's threshold adjustment never ends on an infinite threshold."""

    def __init__(self, tree: Any) -> None:
        import numpy as np

        self._tree = tree
        self.threshold = np.minimum(tree.threshold, float(np.finfo(np.float32).max))

    def __getattr__(self, name: str) -> Any:
        return getattr(self._tree, name)
