"""Conveyor's exceptions: one root, a small tree, each kind mapped once to an exit code and an HTTP status.

The tree::

    ConveyorError                   exit 1  HTTP 500   something went wrong that is not the caller's input
    ├── BadInput                    exit 2  HTTP 400   the caller asked for something malformed
    │   ├── InvalidConfig           exit 2  HTTP 400   workspace path, TOML or URL that cannot be used
    │   ├── InvalidReference        exit 2  HTTP 400   a name or `name:version` / `name@alias` that does not parse
    │   ├── InvalidSpec             exit 2  HTTP 422   a spec or request body that breaks its schema
    │   └── ValidationFailed        exit 2  HTTP 422   data that breaks the rules it must follow
    ├── NotFound                    exit 2  HTTP 404   an unknown name or version (offers "did you mean")
    ├── Conflict                    exit 2  HTTP 409   the request contradicts what exists
    ├── Unauthorized                exit 2  HTTP 401   no or unknown credentials
    ├── Forbidden                   exit 2  HTTP 403   credentials without the right role
    ├── StoreUnavailable            exit 2  HTTP 503   the metadata database or object store cannot be reached
    ├── StoreError                  exit 1  HTTP 500   the store answered, but wrongly
    │   ├── ArtifactCorrupted       exit 1  HTTP 500   stored bytes no longer match their SHA-256
    │   └── ArtifactMissing         exit 1  HTTP 500   the metadata names a blob the store no longer has
    ├── UserCodeError               exit 1  HTTP 422   code the user wrote raised; carries its traceback
    └── EndpointError               exit 1  HTTP 502   a serving process failed to start or answer

Every message names the offending value, what is allowed, and the fix. Foreign exceptions are wrapped at
layer boundaries with ``raise ... from exc`` so the original stays in ``__cause__``.
"""

from __future__ import annotations

import difflib
from collections.abc import Iterable
from typing import Any, ClassVar

__all__ = [
    "ArtifactCorrupted",
    "ArtifactMissing",
    "BadInput",
    "Conflict",
    "ConveyorError",
    "EndpointError",
    "Forbidden",
    "InvalidConfig",
    "InvalidReference",
    "InvalidSpec",
    "NotFound",
    "StoreError",
    "StoreUnavailable",
    "Unauthorized",
    "UserCodeError",
    "ValidationFailed",
    "did_you_mean",
]


class ConveyorError(Exception):
    """Root of every error Conveyor raises on purpose.

    Attributes:
        exit_code: the CLI's exit status for this kind of error.
        http_status: the REST API's status for this kind of error.
        code: a stable machine-readable name, used in JSON error bodies.
        details: structured context (names, values) for JSON output.
    """

    exit_code: ClassVar[int] = 1
    http_status: ClassVar[int] = 500
    code: ClassVar[str] = "internal_error"

    def __init__(self, message: str, **details: Any) -> None:
        super().__init__(message)
        self.message = message
        self.details = details

    def to_dict(self) -> dict[str, Any]:
        """The error as a JSON-ready object: ``{"code", "message", "details"}``."""
        body: dict[str, Any] = {"code": self.code, "message": self.message}
        if self.details:
            body["details"] = {k: _jsonable(v) for k, v in self.details.items()}
        return body


class BadInput(ConveyorError):
    exit_code = 2
    http_status = 400
    code = "bad_input"


class InvalidConfig(BadInput):
    code = "invalid_config"


class InvalidReference(BadInput):
    code = "invalid_reference"


class InvalidSpec(BadInput):
    http_status = 422
    code = "invalid_spec"


class ValidationFailed(BadInput):
    http_status = 422
    code = "validation_failed"


class NotFound(ConveyorError):
    exit_code = 2
    http_status = 404
    code = "not_found"


class Conflict(ConveyorError):
    exit_code = 2
    http_status = 409
    code = "conflict"


class Unauthorized(ConveyorError):
    exit_code = 2
    http_status = 401
    code = "unauthorized"


class Forbidden(ConveyorError):
    exit_code = 2
    http_status = 403
    code = "forbidden"


class StoreUnavailable(ConveyorError):
    exit_code = 2
    http_status = 503
    code = "store_unavailable"


class StoreError(ConveyorError):
    code = "store_error"


class ArtifactCorrupted(StoreError):
    code = "artifact_corrupted"


class ArtifactMissing(StoreError):
    code = "artifact_missing"


class UserCodeError(ConveyorError):
    http_status = 422
    code = "user_code_error"


class EndpointError(ConveyorError):
    http_status = 502
    code = "endpoint_error"


def did_you_mean(value: str, candidates: Iterable[str]) -> str:
    """A "did you mean" suffix for an unknown ``value``, or an empty string when nothing is close.

    >>> did_you_mean("chrun", ["churn", "sales"])
    " Did you mean 'churn'?"
    """
    close = difflib.get_close_matches(value, list(candidates), n=3, cutoff=0.6)
    if not close:
        return ""
    if len(close) == 1:
        return f" Did you mean {close[0]!r}?"
    return " Did you mean one of: " + ", ".join(repr(c) for c in close) + "?"


def _jsonable(value: Any) -> Any:
    if isinstance(value, str | int | float | bool) or value is None:
        return value
    if isinstance(value, list | tuple | set | frozenset):
        return [_jsonable(v) for v in value]
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in value.items()}
    return str(value)
