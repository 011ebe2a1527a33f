"""What every schemathesis run in the suite checks, and the pytest shim it needs."""

from __future__ import annotations

from typing import Any

import pytest
from schemathesis.checks import CHECKS

CHECK_NAMES = [
    "not_a_server_error",
    "status_code_conformance",
    "content_type_conformance",
    "response_headers_conformance",
    "response_schema_conformance",
    "negative_data_rejection",
]


def checks() -> list[Any]:
    """No 5xx; every status, content type, header and body one the document lists; schema-violating
    requests refused."""
    return [CHECKS.get_one(name) for name in CHECK_NAMES]


@pytest.fixture(autouse=True)
def _node_id_for_schemathesis(request: pytest.FixtureRequest) -> None:
    # schemathesis 4.32's from_fixture() reads pytest's private Node._nodeid, renamed in pytest 9.2 (the same
    # break as pytest-benchmark#321); giving it the attribute back keeps the lazy schemas working.
    if not hasattr(request.node, "_nodeid"):
        request.node._nodeid = request.node.nodeid
