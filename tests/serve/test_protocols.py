"""The request/response protocols of online endpoints: /predict records, MLflow's /invocations, KServe V2."""

from __future__ import annotations

import re
from typing import Any

import numpy as np
import orjson
import pandas as pd
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from conveyor import __version__
from conveyor.errors import InvalidSpec
from conveyor.serve._protocols import (
    MLFLOW_INPUT_KEYS,
    columns_to_frame,
    concat_columns,
    mlflow_response,
    mlflow_to_columns,
    mlflow_to_frame,
    records_to_columns,
    records_to_frame,
    v2_model_metadata,
    v2_response,
    v2_server_metadata,
    v2_to_columns,
    v2_to_frame,
)

SIGNATURE: dict[str, Any] = {
    "inputs": [
        {"name": "tenure_months", "type": "long", "required": True},
        {"name": "monthly_charges", "type": "double", "required": True},
        {"name": "total_charges", "type": "double", "required": False},
        {"name": "devices", "type": "integer", "required": False},
        {"name": "plan", "type": "string", "required": True},
        {"name": "has_autopay", "type": "boolean", "required": True},
        {"name": "signup_date", "type": "datetime", "required": True},
    ],
    "outputs": [{"name": "prediction", "type": "boolean", "required": True}],
}
NAMES = [c["name"] for c in SIGNATURE["inputs"]]
NUMERIC: dict[str, Any] = {
    "inputs": [
        {"name": "age", "type": "long", "required": True},
        {"name": "income", "type": "double", "required": True},
        {"name": "score", "type": "float", "required": False},
    ]
}
JSON = "application/json"

ROWS = [
    {
        "tenure_months": 12,
        "monthly_charges": 39.5,
        "total_charges": 474.0,
        "devices": 2,
        "plan": "basic",
        "has_autopay": True,
        "signup_date": "2024-05-31",
    },
    {
        "tenure_months": 3,
        "monthly_charges": 20,
        "total_charges": None,
        "plan": "premium",
        "has_autopay": False,
        "signup_date": "2024-06-01T10:30:00Z",
    },
]


def expected_frame() -> pd.DataFrame:
    return pd.DataFrame(
        {
            "tenure_months": np.array([12, 3], dtype=np.int64),
            "monthly_charges": [39.5, 20.0],
            "total_charges": [474.0, np.nan],
            "devices": [2.0, np.nan],
            "plan": ["basic", "premium"],
            "has_autopay": [True, False],
            "signup_date": ["2024-05-31", "2024-06-01T10:30:00Z"],
        }
    )


def refused(fragment: str) -> Any:
    return pytest.raises(InvalidSpec, match=re.escape(fragment))


# --- records -----------------------------------------------------------------------------------------------


def test_records_become_typed_columns_in_signature_order() -> None:
    frame = records_to_frame(ROWS, SIGNATURE)
    pd.testing.assert_frame_equal(frame, expected_frame())
    assert list(records_to_columns(ROWS, SIGNATURE)) == NAMES


def test_records_may_be_wrapped() -> None:
    pd.testing.assert_frame_equal(records_to_frame({"records": ROWS}, SIGNATURE), expected_frame())


def test_one_record_keeps_integer_and_boolean_dtypes() -> None:
    columns = records_to_columns(ROWS[:1], SIGNATURE)
    assert columns["tenure_months"].dtype == np.int64
    assert columns["devices"].dtype == np.int64
    assert columns["has_autopay"].dtype == np.bool_
    assert columns["plan"].dtype == object


def test_whole_floats_are_accepted_in_integer_columns_and_fractions_refused() -> None:
    row = {**ROWS[0], "tenure_months": 12.0}
    assert records_to_columns([row], SIGNATURE)["tenure_months"].tolist() == [12]
    assert records_to_columns([row], SIGNATURE)["tenure_months"].dtype == np.int64
    with refused("Field 'tenure_months' in record 0 must be a whole number (long); got 12.5."):
        records_to_columns([{**ROWS[0], "tenure_months": 12.5}], SIGNATURE)


def test_big_integers_keep_every_digit_or_are_refused() -> None:
    big = 2**62 + 1
    assert records_to_columns([{**ROWS[0], "tenure_months": big}], SIGNATURE)["tenure_months"][0] == big
    with refused("outside the 64-bit integer range"):
        records_to_columns([{**ROWS[0], "tenure_months": 2**64}], SIGNATURE)
    assert records_to_columns([{**ROWS[0], "monthly_charges": 2**64}], SIGNATURE)["monthly_charges"][0] == 2.0**64
    with refused("too large for a 64-bit float"):
        records_to_columns([{**ROWS[0], "monthly_charges": 10**400}], SIGNATURE)


@pytest.mark.parametrize(
    ("changes", "fragment"),
    [
        ({"tenure_months": "twelve"}, "Field 'tenure_months' in record 1 must be a number (long); got 'twelve'."),
        ({"tenure_months": True}, "Field 'tenure_months' in record 1 must be a number (long); got True."),
        ({"monthly_charges": [1]}, "Field 'monthly_charges' in record 1 must be a number (double); got a list."),
        ({"monthly_charges": float("nan")}, "Field 'monthly_charges' in record 1 is nan; send a finite number"),
        ({"total_charges": float("inf")}, "Field 'total_charges' in record 1 is inf; send a finite number"),
        ({"tenure_months": None}, "Field 'tenure_months' is required but missing or null in record 1"),
        ({"plan": None}, "Field 'plan' is required but missing or null in record 1"),
        ({"has_autopay": None}, "Field 'has_autopay' is required but missing or null in record 1"),
        ({"signup_date": None}, "Field 'signup_date' is required but missing or null in record 1"),
        ({"has_autopay": 1}, "Field 'has_autopay' in record 1 must be true or false; got 1."),
        ({"has_autopay": "yes"}, "Field 'has_autopay' in record 1 must be true or false; got 'yes'."),
        ({"plan": {"a": 1}}, "Field 'plan' in record 1 must be text; got an object."),
        ({"signup_date": "last tuesday"}, "Field 'signup_date' in record 1 must be an ISO-8601 date"),
        ({"signup_date": 20240101}, "Field 'signup_date' in record 1 must be an ISO-8601 date"),
        ({"signup_date": "2024-02-30"}, "Field 'signup_date' in record 1 must be an ISO-8601 date"),
        ({"tenure_mnths": 3}, "Unknown field 'tenure_mnths' in the request; the model takes: devices, "),
    ],
)
def test_bad_records_are_refused_with_the_field_and_the_fix(changes: dict[str, Any], fragment: str) -> None:
    with refused(fragment):
        records_to_frame([ROWS[0], {**ROWS[1], **changes}], SIGNATURE)


def test_unknown_fields_get_a_did_you_mean() -> None:
    with refused("Did you mean 'tenure_months'?"):
        records_to_frame([{**ROWS[0], "tenure_mnths": 3}], SIGNATURE)


def test_missing_required_field_is_named() -> None:
    row = {k: v for k, v in ROWS[0].items() if k != "plan"}
    with refused("Field 'plan' is required but missing or null in record 0"):
        records_to_frame([row], SIGNATURE)


@pytest.mark.parametrize("body", [[], "text", [1, 2], {"rows": []}, {"records": {}}, None, [ROWS[0], 3]])
def test_bodies_that_are_not_lists_of_records_are_refused(body: Any) -> None:
    with refused('The body must be a non-empty JSON list of records, e.g. [{"tenure_months": 0, '):
        records_to_frame(body, SIGNATURE)


def test_text_columns_take_the_json_text_of_numbers_and_booleans() -> None:
    columns = records_to_columns(
        [{**ROWS[0], "plan": 7}, {**ROWS[0], "plan": True}, {**ROWS[0], "plan": 1.5}], SIGNATURE
    )
    assert columns["plan"].tolist() == ["7", "true", "1.5"]


def test_dates_pandas_reads_are_accepted_beyond_the_common_forms() -> None:
    for text in ["2024-1-5", "20240105", "2024-01-05 10:00:00.123456789", "2024-01-05T10:00:00+02:00"]:
        assert records_to_columns([{**ROWS[0], "signup_date": text}], SIGNATURE)["signup_date"].tolist() == [text]


def test_optional_columns_may_be_null_or_absent() -> None:
    row = {k: v for k, v in ROWS[0].items() if k not in {"total_charges", "devices"}}
    columns = records_to_columns([row, {**row, "devices": None}], SIGNATURE)
    assert np.isnan(columns["total_charges"]).all()
    assert columns["devices"].dtype == np.float64


def test_optional_booleans_and_texts_keep_nulls() -> None:
    signature = {"inputs": [{"name": "flag", "type": "boolean", "required": False}, {"name": "note", "type": "string"}]}
    signature["inputs"][1]["required"] = False
    columns = records_to_columns([{"flag": True, "note": None}, {"flag": None, "note": "x"}], signature)
    assert columns["flag"].tolist() == [True, None]
    assert columns["note"].tolist() == [None, "x"]


def test_without_a_signature_records_pass_as_pandas_reads_them() -> None:
    frame = records_to_frame([{"a": 1, "b": "x"}, {"a": 2}], {"inputs": []})
    assert list(frame.columns) == ["a", "b"]
    assert frame["a"].tolist() == [1, 2]


def test_a_changed_signature_object_is_compiled_again() -> None:
    first = {"inputs": [{"name": "a", "type": "long"}]}
    second = {"inputs": [{"name": "b", "type": "long"}]}
    assert list(records_to_columns([{"a": 1}], first)) == ["a"]
    assert list(records_to_columns([{"b": 1}], second)) == ["b"]


# --- micro-batching ----------------------------------------------------------------------------------------


def test_concatenated_columns_make_the_same_frame_as_one_request() -> None:
    batches = [records_to_columns([row], SIGNATURE) for row in ROWS]
    merged = concat_columns(batches)
    pd.testing.assert_frame_equal(columns_to_frame(merged), records_to_frame(ROWS, SIGNATURE))
    assert merged["devices"].dtype == np.float64  # int64 in one request, NaN in the other


def test_concatenating_one_batch_returns_it() -> None:
    batch = records_to_columns(ROWS, SIGNATURE)
    assert concat_columns([batch]) is batch


def test_concatenation_needs_matching_batches() -> None:
    with refused("at least one batch"):
        concat_columns([])
    with refused("their columns differ"):
        concat_columns([{"a": np.array([1])}, {"b": np.array([1])}])


# --- MLflow ------------------------------------------------------------------------------------------------


def as_split(frame: pd.DataFrame) -> dict[str, Any]:
    split: dict[str, Any] = orjson.loads(frame.to_json(orient="split"))
    return split


def test_dataframe_split_round_trips() -> None:
    frame = expected_frame()
    body = orjson.dumps({"dataframe_split": as_split(frame)})
    pd.testing.assert_frame_equal(mlflow_to_frame(body, JSON, SIGNATURE), frame)


def test_dataframe_split_without_columns_uses_signature_order() -> None:
    split = as_split(expected_frame())
    del split["columns"]
    pd.testing.assert_frame_equal(mlflow_to_frame({"dataframe_split": split}, JSON, SIGNATURE), expected_frame())


def test_dataframe_split_may_leave_columns_out_and_order_them_freely() -> None:
    split = {"columns": ["plan", "signup_date", "has_autopay", "monthly_charges", "tenure_months"]}
    split["data"] = [["basic", "2024-05-31", True, 39.5, 12]]
    frame = mlflow_to_frame({"dataframe_split": split}, JSON, SIGNATURE)
    assert list(frame.columns) == NAMES
    assert frame["tenure_months"].tolist() == [12]


@pytest.mark.parametrize("key", ["dataframe_records", "instances", "inputs"])
def test_records_under_each_key(key: str) -> None:
    pd.testing.assert_frame_equal(mlflow_to_frame({key: ROWS}, JSON, SIGNATURE), expected_frame())


@pytest.mark.parametrize("key", ["instances", "inputs"])
def test_rows_and_column_objects_under_instances_and_inputs(key: str) -> None:
    rows = [[r.get(n) for n in NAMES] for r in ROWS]
    pd.testing.assert_frame_equal(mlflow_to_frame({key: rows}, JSON, SIGNATURE), expected_frame())
    by_column = {n: [r.get(n) for r in ROWS] for n in NAMES}
    pd.testing.assert_frame_equal(mlflow_to_frame({key: by_column}, JSON, SIGNATURE), expected_frame())
    one = mlflow_to_frame({key: ROWS[0]}, JSON, SIGNATURE)
    pd.testing.assert_frame_equal(one, expected_frame().head(1).astype({"devices": "int64"}))


def test_plain_values_fill_a_one_column_signature() -> None:
    signature = {"inputs": [{"name": "text", "type": "string"}]}
    assert mlflow_to_frame({"inputs": ["a", "b"]}, JSON, signature)["text"].tolist() == ["a", "b"]


def test_params_are_allowed_and_other_keys_ignored_as_mlflow_does() -> None:
    body = {"dataframe_records": ROWS, "params": {"threshold": 0.3}, "extra": 1}
    pd.testing.assert_frame_equal(mlflow_to_frame(body, JSON, SIGNATURE), expected_frame())
    with refused("'params' must be a JSON object"):
        mlflow_to_frame({"dataframe_records": ROWS, "params": [1]}, JSON, SIGNATURE)


@pytest.mark.parametrize(
    ("body", "fragment"),
    [
        (b"{not json", "The body is not valid JSON"),
        (ROWS, 'got a list. Wrap records as {"dataframe_records": [{"tenure_months": 0,'),
        ({"dataframe_records": ROWS, "inputs": ROWS}, "The body holds dataframe_records and inputs; send exactly one"),
        ({"dataframe_record": ROWS}, "got keys: 'dataframe_record'. Did you mean one of: 'dataframe_records'"),
        ({}, "got keys: none."),
        ({"dataframe_split": []}, "'dataframe_split' must be an object"),
        ({"dataframe_split": {"data": [[1]], "colums": ["a"]}}, "unknown key 'colums'"),
        ({"dataframe_split": {"columns": ["plan", "plan"], "data": [["a", "b"]]}}, "names 'plan' twice"),
        ({"dataframe_split": {"columns": "plan", "data": [["a"]]}}, "'dataframe_split.columns' must be a list"),
        ({"dataframe_split": {"columns": ["plan"]}}, "'dataframe_split' must hold 'data'"),
        ({"dataframe_split": {"columns": ["plan"], "data": [["a"]], "index": [0, 1]}}, "one label per row"),
        ({"dataframe_split": {"columns": ["plan"], "data": [["a", "b"]]}}, "Row 0 of 'dataframe_split.data' must be"),
        ({"dataframe_split": {"columns": ["plan"], "data": []}}, "must be a non-empty JSON list of rows"),
        ({"dataframe_split": {"columns": ["pln"], "data": [["a"]]}}, "Unknown column 'pln'"),
        ({"dataframe_records": []}, "'dataframe_records' must be a non-empty JSON list of records"),
        ({"instances": []}, "got an empty list"),
        ({"instances": 3}, "'instances' must be a non-empty list of records"),
        ({"inputs": [ROWS[0], [1]]}, "it mixes kinds or holds plain values"),
        ({"inputs": [1, 2]}, "it mixes kinds or holds plain values"),
        ({"inputs": {"plan": ["a"], "tenure_months": [1, 2]}}, "non-empty lists of the same length"),
        ({"inputs": {"plan": ["a"], "tenure_months": 1}}, "Column 'tenure_months' of 'inputs' must be a list"),
        ({"inputs": [[1, 2]]}, "Row 0 of 'inputs' must be a list of 7 values"),
        ({"inputs": {n: [r.get(n) for r in ROWS] for n in NAMES[1:]}}, "Column 'tenure_months' is required"),
    ],
)
def test_bad_mlflow_bodies_are_refused(body: Any, fragment: str) -> None:
    with refused(fragment):
        mlflow_to_frame(body, JSON, SIGNATURE)


@pytest.mark.parametrize(
    ("content_type", "fragment"),
    [
        ("application/json; format=pandas-split", "Content type parameter 'format' is not supported"),
        ("application/json; charset=latin-1", "Charset 'latin-1' is not supported"),
        ("text/plain", "Content type 'text/plain' is not supported"),
    ],
)
def test_content_types_mlflow_refuses_are_refused(content_type: str, fragment: str) -> None:
    with refused(fragment):
        mlflow_to_frame(orjson.dumps({"dataframe_records": ROWS}), content_type, SIGNATURE)


def test_content_type_with_utf8_charset_is_json() -> None:
    body = orjson.dumps({"dataframe_records": ROWS})
    frame = mlflow_to_frame(body, "Application/JSON; charset=UTF-8", SIGNATURE)
    pd.testing.assert_frame_equal(frame, expected_frame())


def test_csv_bodies_are_typed_by_the_signature() -> None:
    text = expected_frame().to_csv(index=False)
    assert "True" in text  # pandas writes booleans as True/False
    pd.testing.assert_frame_equal(mlflow_to_frame(text.encode(), "text/csv", SIGNATURE), expected_frame())
    pd.testing.assert_frame_equal(mlflow_to_frame(text, "text/csv; charset=utf-8", SIGNATURE), expected_frame())


def test_csv_without_a_signature_is_read_by_pandas() -> None:
    frame = mlflow_to_frame(b"a,b\n1,x\n2,y\n", "text/csv", {})
    assert frame["a"].tolist() == [1, 2]
    assert frame["b"].tolist() == ["x", "y"]


@pytest.mark.parametrize(
    ("body", "fragment"),
    [
        (b"plan,tenure_months\n", "a header row and at least one data row"),
        (b"plan,plan\na,b\n", "names a column twice"),
        (b"plan,tenure_months\na\n", "CSV row 1 has 1 values; the header has 2"),
        (b"plan,tenure_mnths\na,1\n", "Unknown column 'tenure_mnths'"),
        (b"tenure_months\n1_000\n", "Column 'tenure_months' in row 0 must be a number (long); got '1_000'"),
        (b"has_autopay\nyes\n", "Column 'has_autopay' in row 0 must be true or false; got 'yes'"),
        (b"monthly_charges\nnan\n", "Column 'monthly_charges' in row 0 is nan"),
        (b"plan\n\xff\n", "not UTF-8"),
    ],
)
def test_bad_csv_bodies_are_refused(body: bytes, fragment: str) -> None:
    lenient = {"inputs": [{**c, "required": False} for c in SIGNATURE["inputs"]]}
    with refused(fragment):
        mlflow_to_frame(body, "text/csv", lenient)


def test_csv_body_must_be_text() -> None:
    with refused("A text/csv body must be text; got a list"):
        mlflow_to_frame([1], "text/csv", SIGNATURE)
    with refused("The CSV body does not parse: Error tokenizing data"):
        mlflow_to_frame('a\n"open', "text/csv", {})
    with refused("The CSV body does not parse: field larger than field limit"):
        mlflow_to_frame("plan\n" + "a" * 200_000, "text/csv", SIGNATURE)


def test_mlflow_response_follows_mlflow() -> None:
    assert mlflow_response(np.array([1, 0])) == {"predictions": [1, 0]}
    assert mlflow_response(np.array([[0.2, 0.8]])) == {"predictions": [[0.2, 0.8]]}
    assert mlflow_response(pd.DataFrame({"a": [1, 2]})) == {"predictions": [{"a": 1}, {"a": 2}]}
    assert mlflow_response(pd.Series([1.5], name="y")) == {"predictions": [{"y": 1.5}]}
    assert mlflow_response([1, 2]) == {"predictions": [1, 2]}


# --- Open Inference Protocol (KServe V2) --------------------------------------------------------------------

V2_TYPES = {"long": "INT64", "integer": "INT32", "double": "FP64", "boolean": "BOOL"}


def v2_request(rows: list[dict[str, Any]], **extra: Any) -> dict[str, Any]:
    inputs = []
    for column in SIGNATURE["inputs"]:
        data = [row.get(column["name"]) for row in rows]
        inputs.append(
            {
                "name": column["name"],
                "shape": [len(rows)],
                "datatype": V2_TYPES.get(column["type"], "BYTES"),
                "data": data,
            }
        )
    return {"inputs": inputs, **extra}


def test_v2_one_tensor_per_input_round_trips() -> None:
    frame, request_id, outputs = v2_to_frame(v2_request(ROWS, id="42"), SIGNATURE)
    pd.testing.assert_frame_equal(frame, expected_frame())
    assert (request_id, outputs) == ("42", None)


def test_v2_accepts_bytes_and_n_by_1_tensors_flat_or_nested() -> None:
    request = v2_request(ROWS)
    request["inputs"][0] = {"name": "tenure_months", "shape": [2, 1], "datatype": "INT32", "data": [[12], [3]]}
    request["inputs"][1] = {"name": "monthly_charges", "shape": [2, 1], "datatype": "FP32", "data": [39.5, 20]}
    frame, _, _ = v2_to_frame(orjson.dumps(request), SIGNATURE)
    pd.testing.assert_frame_equal(frame, expected_frame())


def test_v2_optional_inputs_may_be_left_out() -> None:
    request = v2_request(ROWS)
    request["inputs"] = [t for t in request["inputs"] if t["name"] not in {"devices", "total_charges"}]
    columns, _, _ = v2_to_columns(request, SIGNATURE)
    assert np.isnan(columns["devices"]).all()


def test_v2_single_matrix_maps_columns_in_signature_order() -> None:
    flat = {"inputs": [{"name": "input-0", "shape": [2, 3], "datatype": "FP64", "data": [30, 1e3, 0.5, 40, 2e3, 0.7]}]}
    nested = {"inputs": [{"name": "x", "shape": [2, 3], "datatype": "INT64", "data": [[30, 1000, 1], [40, 2000, 0]]}]}
    for request in (flat, nested):
        frame, _, _ = v2_to_frame(request, NUMERIC)
        assert list(frame.columns) == ["age", "income", "score"]
        assert frame["age"].tolist() == [30, 40]
        assert frame["age"].dtype == np.int64
        assert frame["income"].tolist() == [1000.0, 2000.0]


def test_v2_outputs_and_parameters() -> None:
    request = v2_request(ROWS, outputs=[{"name": "predict_proba"}, {"name": "predict", "parameters": {}}])
    request["parameters"] = {"priority": 1}
    request["inputs"][0]["parameters"] = {"content_type": "np"}
    _, _, outputs = v2_to_columns(request, SIGNATURE)
    assert outputs == ["predict_proba", "predict"]


@pytest.mark.parametrize(
    ("change", "fragment"),
    [
        ({"inputs": []}, "'inputs' must be a non-empty list of tensors"),
        ({"inputs": [1]}, "Input 0 must be an object"),
        ({"inputs": [{"shape": [1]}]}, "Input 0 must have a string 'name'"),
        ({"inputs": [{"name": "plan", "shape": [1], "datatype": "BYTES"}]}, "Input tensor 'plan' has no 'data'"),
        ({"id": 42}, "'id' must be a string; got int"),
        ({"parameters": [1]}, "'parameters' must be an object"),
        ({"outputs": [{"name": "predictions"}]}, "Unknown output 'predictions'; this endpoint gives predict, predict_"),
        ({"outputs": ["predict"]}, "'outputs' must be a list of {\"name\": ...} objects"),
    ],
)
def test_bad_v2_requests_are_refused(change: dict[str, Any], fragment: str) -> None:
    with refused(fragment):
        v2_to_columns({**v2_request(ROWS), **change}, SIGNATURE)


@pytest.mark.parametrize(
    ("index", "tensor", "fragment"),
    [
        (0, {"shape": [3]}, "Input tensor 'tenure_months' has shape [3], which holds 3 values, but its data has 2"),
        (0, {"shape": [-2]}, "The shape of input tensor 'tenure_months' must be a list of sizes"),
        (0, {"shape": "2"}, "The shape of input tensor 'tenure_months' must be a list of sizes"),
        (0, {"shape": [2, 1, 1]}, "this model takes tensors of shape [N], [N, 1] or [N, F]"),
        (0, {"shape": [2, 2], "data": [1, 2, 3, 4]}, "a tensor for one input has shape [N] or [N, 1]"),
        (0, {"shape": [2, 1], "data": [[1, 2], [3]]}, "does not follow its shape [2, 1]"),
        (0, {"shape": [2], "data": [[1], [2]]}, "does not follow its shape [2]"),
        (0, {"shape": [0], "data": []}, "holds no rows"),
        (0, {"data": {"a": 1}}, "must be a JSON array; got an object"),
        (0, {"datatype": "INT46"}, "has datatype 'INT46'; use one of INT8, INT16"),
        (0, {"datatype": "INT8", "data": [12, 300]}, "Element 1 of input tensor 'tenure_months' (INT8) must be one"),
        (0, {"datatype": "UINT8", "data": [12, -1]}, "must be one of whole numbers from 0 to 255; got -1"),
        (0, {"data": [12, 3.5]}, "Element 1 of input tensor 'tenure_months' (INT64) must be one of whole numbers"),
        (0, {"datatype": "FP64", "data": [12, 3.5]}, "Tensor 'tenure_months' in element 1 must be a whole number"),
        (0, {"datatype": "FP64", "data": [12, "3"]}, "(FP64) must be one of numbers; got '3'"),
        (0, {"datatype": "BYTES"}, "has datatype BYTES, but input 'tenure_months' is long; send datatype INT64"),
        (0, {"data": [12, None]}, "Tensor 'tenure_months' is required but missing or null in element 1"),
        (0, {"name": "tenure_mnths"}, "Unknown input tensor 'tenure_mnths'; the model takes: tenure_months, "),
        (0, {"name": "plan"}, "Input tensor 'plan' is sent twice"),
        (4, {"datatype": "FP64"}, "has datatype FP64, but input 'plan' is string; send datatype BYTES"),
        (4, {"data": ["a", 1]}, "Element 1 of input tensor 'plan' (BYTES) must be one of strings; got 1"),
        (5, {"data": [True, 1]}, "(BOOL) must be one of true or false; got 1"),
        (6, {"data": ["2024-01-01", "soon"]}, "Tensor 'signup_date' in element 1 must be an ISO-8601 date"),
        (1, {"shape": [1], "data": [3.0]}, "The input tensors hold different numbers of rows (1, 2)"),
        (0, {"parameters": 3}, "The 'parameters' of input tensor 'tenure_months' must be an object"),
    ],
)
def test_bad_v2_tensors_are_refused(index: int, tensor: dict[str, Any], fragment: str) -> None:
    request = v2_request(ROWS)
    request["inputs"][index] = {**request["inputs"][index], **tensor}
    with refused(fragment):
        v2_to_columns(request, SIGNATURE)


def test_v2_missing_required_tensor_and_did_you_mean() -> None:
    request = v2_request(ROWS)
    request["inputs"] = request["inputs"][1:]
    with refused("Input tensor 'tenure_months' is missing; the model requires: tenure_months, monthly_charges"):
        v2_to_columns(request, SIGNATURE)
    request = v2_request(ROWS)
    request["inputs"][0]["name"] = "tenure_mnths"
    with refused("Did you mean 'tenure_months'?"):
        v2_to_columns(request, SIGNATURE)


def test_v2_matrix_needs_a_datatype_that_fits_every_input() -> None:
    matrix = {"name": "x", "shape": [1, 7], "datatype": "FP64", "data": [1, 2, 3, 4, 5, 6, 7]}
    with refused("Input tensor 'x' has datatype FP64, which does not fit input 'plan' (string)"):
        v2_to_columns({"inputs": [matrix]}, SIGNATURE)
    with refused("Input tensor 'x' has shape [1, 2], but the model takes 3 inputs (age, income, score)"):
        v2_to_columns({"inputs": [{**matrix, "shape": [1, 2], "data": [1, 2]}]}, NUMERIC)
    with refused("Tensor 'x' column 'age' in row 0 must be a whole number"):
        v2_to_columns({"inputs": [{**matrix, "shape": [1, 3], "data": [1.5, 2, 3]}]}, NUMERIC)


def test_v2_body_must_be_an_object() -> None:
    with refused('The body must be a JSON object {"inputs": [...]}; got a list'):
        v2_to_columns([], SIGNATURE)
    with refused("The body is not valid JSON"):
        v2_to_columns(b"[", SIGNATURE)


def test_v2_response_types_each_output() -> None:
    body = v2_response("churn", "3", "42", np.array([True, False]), np.array([[0.1, 0.9], [0.8, 0.2]]))
    assert body == {
        "model_name": "churn",
        "model_version": "3",
        "id": "42",
        "outputs": [
            {"name": "predict", "shape": [2], "datatype": "BOOL", "data": [True, False]},
            {"name": "predict_proba", "shape": [2, 2], "datatype": "FP64", "data": [0.1, 0.9, 0.8, 0.2]},
        ],
    }


@pytest.mark.parametrize(
    ("predictions", "datatype", "data"),
    [
        (np.array([1, 2], dtype=np.int32), "INT64", [1, 2]),
        (np.array([1, 2], dtype=np.uint8), "INT64", [1, 2]),
        (np.array([2**64 - 1], dtype=np.uint64), "UINT64", [2**64 - 1]),
        (np.array([0.5, np.nan], dtype=np.float32), "FP64", [0.5, None]),  # NaN: null in JSON
        (pd.Series(["yes", "no"]), "BYTES", ["yes", "no"]),
        (np.array(["a", None], dtype=object), "BYTES", ["a", None]),
        (np.array([1, 2], dtype=object), "INT64", [1, 2]),
        (["a", "b"], "BYTES", ["a", "b"]),
        (np.array([b"a"]), "BYTES", ["a"]),
        (np.array(["2024-01-01"], dtype="datetime64[D]"), "BYTES", ["2024-01-01"]),
        (np.float64(2.5), "FP64", [2.5]),
    ],
)
def test_v2_response_datatype_follows_the_array(predictions: Any, datatype: str, data: list[Any]) -> None:
    output = orjson.loads(orjson.dumps(v2_response("m", None, None, predictions)["outputs"][0]))
    assert (output["datatype"], output["data"]) == (datatype, data)


def test_v2_response_honours_requested_outputs() -> None:
    body = v2_response("m", None, None, [1], [[0.5, 0.5]], requested_outputs=["predict_proba"])
    assert [o["name"] for o in body["outputs"]] == ["predict_proba"]
    assert "id" not in body
    assert "model_version" not in body
    with refused("Output 'predict_proba' was asked for, but this model gives no probabilities"):
        v2_response("m", None, None, [1], requested_outputs=["predict_proba"])
    with refused("Unknown output 'predicted'"):
        v2_response("m", None, None, [1], requested_outputs=["predicted"])


def test_v2_metadata() -> None:
    metadata = v2_model_metadata("churn", [1, "2"], SIGNATURE, "sklearn", classes=2)
    assert metadata["name"] == "churn"
    assert metadata["versions"] == ["1", "2"]
    assert metadata["platform"] == "sklearn"
    assert metadata["inputs"][:2] == [
        {"name": "tenure_months", "datatype": "INT64", "shape": [-1]},
        {"name": "monthly_charges", "datatype": "FP64", "shape": [-1]},
    ]
    assert [i["datatype"] for i in metadata["inputs"]] == ["INT64", "FP64", "FP64", "INT32", "BYTES", "BOOL", "BYTES"]
    assert metadata["outputs"] == [
        {"name": "predict", "datatype": "BOOL", "shape": [-1]},
        {"name": "predict_proba", "datatype": "FP64", "shape": [-1, 2]},
    ]
    assert v2_model_metadata("m", [], {}, "onnx")["outputs"] == [
        {"name": "predict", "datatype": "BYTES", "shape": [-1]}
    ]
    assert v2_server_metadata() == {"name": "conveyor", "version": __version__, "extensions": []}


def test_v2_metadata_describes_requests_the_decoder_accepts() -> None:
    metadata = v2_model_metadata("churn", ["1"], SIGNATURE, "sklearn")
    request = v2_request(ROWS)
    for tensor, declared in zip(request["inputs"], metadata["inputs"], strict=True):
        tensor["datatype"] = declared["datatype"]
    frame, _, _ = v2_to_frame(request, SIGNATURE)
    pd.testing.assert_frame_equal(frame, expected_frame())


# --- no input makes anything but InvalidSpec escape ---------------------------------------------------------

leaves = (
    st.none()
    | st.booleans()
    | st.integers()
    | st.floats()
    | st.text(max_size=6)
    | st.sampled_from(["2024-05-31", "NaN", "Infinity", "1e400", "true"])
)
keys = st.sampled_from([*NAMES, *MLFLOW_INPUT_KEYS, "records", "columns", "data", "index", "params"]) | st.text(
    max_size=5
)
json_values = st.recursive(leaves, lambda inner: st.lists(inner, max_size=4) | st.dictionaries(keys, inner, max_size=4))
records = st.lists(st.dictionaries(st.sampled_from([*NAMES, "x"]), json_values, max_size=8), max_size=3)
tensors = st.fixed_dictionaries(
    {
        "name": st.sampled_from([*NAMES, "input-0"]) | json_values,
        "shape": st.lists(st.integers(-1, 3), max_size=3) | json_values,
        "datatype": st.sampled_from(["BOOL", "INT8", "UINT64", "FP32", "FP64", "BYTES", "X"]) | json_values,
        "data": st.lists(json_values, max_size=6)
        | st.lists(st.lists(st.integers() | st.floats() | st.text(max_size=3), max_size=3), max_size=3),
    },
    optional={"parameters": json_values},
)
v2_bodies = st.fixed_dictionaries(
    {"inputs": st.lists(tensors, max_size=3) | json_values},
    optional={"id": json_values, "outputs": json_values, "parameters": json_values},
)
fuzz = settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def accepted_or_refused(decode: Any, *args: Any) -> None:
    try:
        columns = decode(*args)
    except InvalidSpec as exc:
        assert exc.message
        return
    if isinstance(columns, tuple):
        columns = columns[0]
    assert len({len(v) for v in columns.values()}) <= 1
    columns_to_frame(columns)


@fuzz
@given(json_values | records)
def test_records_decoder_only_refuses_with_invalid_spec(body: Any) -> None:
    accepted_or_refused(records_to_columns, body, SIGNATURE)
    accepted_or_refused(records_to_columns, body, {"inputs": []})


@fuzz
@given(st.sampled_from(MLFLOW_INPUT_KEYS), json_values | records, json_values)
def test_mlflow_decoder_only_refuses_with_invalid_spec(key: str, data: Any, anything: Any) -> None:
    accepted_or_refused(mlflow_to_columns, {key: data}, JSON, SIGNATURE)
    accepted_or_refused(mlflow_to_columns, {key: data}, JSON, {"inputs": [{"name": "plan", "type": "string"}]})
    accepted_or_refused(mlflow_to_columns, anything, JSON, SIGNATURE)


@fuzz
@given(st.text(alphabet=',\n"01ab.-_ ', max_size=40))
def test_csv_decoder_only_refuses_with_invalid_spec(text: str) -> None:
    accepted_or_refused(mlflow_to_columns, "plan,tenure_months\n" + text, "text/csv", SIGNATURE)
    accepted_or_refused(mlflow_to_columns, text, "text/csv", {})


@fuzz
@given(v2_bodies | json_values)
def test_v2_decoder_only_refuses_with_invalid_spec(body: Any) -> None:
    accepted_or_refused(v2_to_columns, body, SIGNATURE)
    accepted_or_refused(v2_to_columns, body, NUMERIC)
    accepted_or_refused(v2_to_columns, body, {})


# --- fields the model does not take (strict=False, a deployment's default) ----------------------------------


def test_extra_fields_of_records_are_left_out_and_named_once() -> None:
    ignored: list[str] = []
    rows = [{**ROWS[0], "id": 7, "ts": "2024-06-01T10:00:00Z"}, {**ROWS[1], "id": 8, "source": {"app": "ios"}}]
    columns = records_to_columns(rows, SIGNATURE, strict=False, ignored=ignored)
    assert list(columns) == NAMES
    assert ignored == ["id", "ts", "source"]
    pd.testing.assert_frame_equal(columns_to_frame(columns), records_to_frame(ROWS[:2], SIGNATURE))
    clean: list[str] = []
    records_to_columns(ROWS[:2], SIGNATURE, strict=False, ignored=clean)
    assert clean == []
    with refused("Unknown field 'id' in the request"):
        records_to_columns(rows, SIGNATURE)  # strict: today's 422


def test_a_typo_that_leaves_a_required_field_missing_still_gets_its_did_you_mean() -> None:
    row = {k: v for k, v in ROWS[0].items() if k != "tenure_months"} | {"tenure_mnths": 3}
    with refused(
        "Field 'tenure_months' is required but missing or null in record 0; send a value in every record. The "
        "model does not take 'tenure_mnths', so it was left out. Did you mean 'tenure_months'?"
    ):
        records_to_columns([row], SIGNATURE, strict=False)


@pytest.mark.parametrize(
    "body",
    [
        {"dataframe_records": [{**ROWS[0], "id": 1}, {**ROWS[1], "id": 2}]},
        {
            "dataframe_split": {
                "columns": ["id", *NAMES],
                "data": [[i, *(row.get(n) for n in NAMES)] for i, row in enumerate(ROWS[:2])],
            }
        },
        {"instances": [{**ROWS[0], "id": 1}, {**ROWS[1], "id": 2}]},
        {"inputs": {"id": [1, 2], **{n: [ROWS[0].get(n), ROWS[1].get(n)] for n in NAMES}}},
    ],
)
def test_mlflow_bodies_with_extra_columns_score_on_the_signature(body: dict[str, Any]) -> None:
    ignored: list[str] = []
    frame = columns_to_frame(mlflow_to_columns(orjson.dumps(body), JSON, SIGNATURE, strict=False, ignored=ignored))
    assert ignored == ["id"]
    pd.testing.assert_frame_equal(frame, records_to_frame(ROWS[:2], SIGNATURE))
    with refused("Unknown"):
        mlflow_to_columns(orjson.dumps(body), JSON, SIGNATURE)


def test_csv_with_extra_columns_scores_on_the_signature() -> None:
    csv_body = "id," + ",".join(NAMES) + "\n9," + ",".join(str(ROWS[0][n]).lower() for n in NAMES) + "\n"
    assert "devices" in ROWS[0]
    ignored: list[str] = []
    frame = mlflow_to_frame(csv_body, "text/csv", SIGNATURE, strict=False, ignored=ignored)
    assert ignored == ["id"] and list(frame.columns) == NAMES and frame["tenure_months"].tolist() == [12]
    with refused("Unknown column 'id'"):
        mlflow_to_frame(csv_body, "text/csv", SIGNATURE)


def test_v2_tensors_the_model_does_not_take_are_left_out() -> None:
    tensors = [
        {"name": "age", "shape": [2], "datatype": "INT64", "data": [30, 40]},
        {"name": "income", "shape": [2], "datatype": "FP64", "data": [1.5, 2.5]},
        {"name": "request_ts", "shape": [3, 1], "datatype": "BYTES", "data": [["a"], ["b"], ["c"]]},
    ]
    ignored: list[str] = []
    columns, _, _ = v2_to_columns({"inputs": tensors}, NUMERIC, strict=False, ignored=ignored)
    assert ignored == ["request_ts"] and list(columns) == ["age", "income", "score"]
    assert columns["age"].tolist() == [30, 40]
    with refused("Unknown input tensor 'request_ts'"):
        v2_to_columns({"inputs": tensors}, NUMERIC)
    with refused("None of the input tensors is one the model takes: age, income, score"):
        v2_to_columns({"inputs": [{**tensors[2], "shape": [3], "data": ["a", "b", "c"]}]}, NUMERIC, strict=False)
    with refused("income. The model does not take 'incme', so it was left out. Did you mean 'income'?"):
        v2_to_columns({"inputs": [tensors[0], {**tensors[1], "name": "incme"}]}, NUMERIC, strict=False)
