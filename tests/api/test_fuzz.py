"""Fuzz the control plane from its own OpenAPI document (schemathesis, in process): with an admin token and
without one. What must hold: no 5xx, every status and body is one the document declares, and what the
document refuses the API refuses too. The example count is bounded here; `make bench` runs a longer pass.

``POST /datastores`` is left out: a generated URL could name a host outside this machine and the server would
try to reach it when it checks the store (its refusals are tested by hand in tests/data).
"""

from __future__ import annotations

import os
from typing import Any

import pyarrow as pa
import pytest
import schemathesis
from schemathesis.generation import GenerationMode

from conveyor.api import create_app
from conveyor.workspace import Workspace
from tests.api_client import token_for
from tests.fuzzing import _node_id_for_schemathesis, checks  # noqa: F401 - the fixture applies here

MAX_EXAMPLES = int(os.environ.get("CONVEYOR_FUZZ_EXAMPLES", "8"))
UNSAFE = {("POST", "/api/v1/datastores")}


@pytest.fixture(scope="module")
def fuzz_ws(tmp_path_factory: pytest.TempPathFactory) -> Any:
    ws = Workspace.open(tmp_path_factory.mktemp("fuzz") / "ws")
    ws.data.commit_table(pa.table({"x": [1, 2, 3], "y": ["a", "b", "c"]}), name="facts", source={"kind": "test"})
    yield ws
    ws.close()


@pytest.fixture(scope="module")
def admin_token(fuzz_ws: Workspace) -> str:
    return token_for(fuzz_ws, "admin")


def _schema(ws: Workspace, *, examples: int, coverage: bool) -> Any:
    # schemathesis' ASGI client calls itself "testserver"; the app answers that name here.
    app = create_app(ws, hosts=frozenset({"testserver", "127.0.0.1", "localhost"}))
    schema = schemathesis.openapi.from_asgi("/openapi.json", app)
    schema.config.generation.update(
        modes=[GenerationMode.POSITIVE, GenerationMode.NEGATIVE],
        max_examples=examples,
        deterministic=True,
        database="none",
        # The token is the test's to send; generating Authorization values would only earn 401s.
        with_security_parameters=False,
    )
    schema.config.phases.update(phases=["examples", "coverage", "fuzzing"] if coverage else ["examples", "fuzzing"])
    return schema.exclude(
        func=lambda ctx: (ctx.operation.method.upper(), ctx.operation.path) in UNSAFE  # type: ignore[no-any-return]
    )


@pytest.fixture(scope="module")
def api_schema(fuzz_ws: Workspace) -> Any:
    return _schema(fuzz_ws, examples=MAX_EXAMPLES, coverage=True)


@pytest.fixture(scope="module")
def api_schema_no_token(fuzz_ws: Workspace) -> Any:
    return _schema(fuzz_ws, examples=2, coverage=False)


with_token = schemathesis.pytest.from_fixture("api_schema")
without_token = schemathesis.pytest.from_fixture("api_schema_no_token")


@with_token.parametrize()
def test_fuzz_with_an_admin_token(case: Any, admin_token: str) -> None:
    case.call_and_validate(headers={"Authorization": f"Bearer {admin_token}"}, checks=checks(), timeout=60)


@without_token.parametrize()
def test_fuzz_without_a_token(case: Any) -> None:
    response = case.call_and_validate(checks=checks(), timeout=60)
    if case.operation.path != "/api/v1/health":
        # FastAPI reads a JSON body before any dependency runs: one that does not parse is refused first.
        unparsable = response.status_code == 400 and "parsing the body" in response.text
        assert response.status_code == 401 or unparsable, case.as_curl_command()
