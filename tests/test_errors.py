"""The error tree maps each kind once to an exit code and an HTTP status."""

from __future__ import annotations

import pytest

from conveyor import errors
from conveyor.errors import ConveyorError, did_you_mean


@pytest.mark.parametrize(
    ("kind", "exit_code", "status"),
    [
        (errors.ConveyorError, 1, 500),
        (errors.BadInput, 2, 400),
        (errors.InvalidConfig, 2, 400),
        (errors.InvalidReference, 2, 400),
        (errors.InvalidSpec, 2, 422),
        (errors.ValidationFailed, 2, 422),
        (errors.NotFound, 2, 404),
        (errors.Conflict, 2, 409),
        (errors.Unauthorized, 2, 401),
        (errors.Forbidden, 2, 403),
        (errors.StoreUnavailable, 2, 503),
        (errors.StoreError, 1, 500),
        (errors.ArtifactCorrupted, 1, 500),
        (errors.ArtifactMissing, 1, 500),
        (errors.UserCodeError, 1, 422),
        (errors.EndpointError, 1, 502),
    ],
)
def test_each_kind_has_its_exit_code_and_status(kind: type[ConveyorError], exit_code: int, status: int) -> None:
    assert kind.exit_code == exit_code
    assert kind.http_status == status
    assert kind.__name__ in (errors.__doc__ or ""), "the tree in the module docstring lists every kind"


def test_every_exported_error_is_in_the_tree() -> None:
    kinds = [getattr(errors, n) for n in errors.__all__ if isinstance(getattr(errors, n), type)]
    assert all(issubclass(k, ConveyorError) for k in kinds)
    assert len({k.code for k in kinds}) == len(kinds), "codes are unique"


def test_to_dict_is_json_ready() -> None:
    error = errors.NotFound("No model named 'x'.", name="x", candidates={"a", "b"}, where=object)
    body = error.to_dict()
    assert body["code"] == "not_found"
    assert body["message"] == "No model named 'x'."
    assert body["details"]["name"] == "x"
    assert sorted(body["details"]["candidates"]) == ["a", "b"]
    assert isinstance(body["details"]["where"], str)


def test_did_you_mean() -> None:
    assert did_you_mean("chrun", ["churn", "sales"]) == " Did you mean 'churn'?"
    assert did_you_mean("zzz", ["churn"]) == ""
    assert "one of" in did_you_mean("model", ["model1", "model2", "modelx"])
