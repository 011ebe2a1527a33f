"""Authentication, the permission matrix (every route × every role, generated from the tables), browser
safety, and the probes of issue 10 as regressions."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from conveyor.api import create_app
from conveyor.api._app import api_routes
from conveyor.api._permissions import ROUTE_PERMISSIONS
from conveyor.governance import PERMISSIONS, ROLES, role_allows
from conveyor.workspace import Workspace
from tests.api_client import api_client, token_for

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def ws(tmp_path_factory: pytest.TempPathFactory) -> Workspace:
    workspace = Workspace.open(tmp_path_factory.mktemp("auth") / "ws")
    yield workspace
    workspace.close()


@pytest.fixture(scope="module")
def app(ws: Workspace):  # type: ignore[no-untyped-def]
    return create_app(ws)


@pytest.fixture(scope="module")
def clients(ws: Workspace, app) -> dict[str, TestClient]:  # type: ignore[no-untyped-def]
    return {
        role: TestClient(app, base_url="http://127.0.0.1", headers={"Authorization": f"Bearer {token_for(ws, role)}"})
        for role in ROLES
    }


def _concrete(path: str) -> str:
    """A path template with every parameter filled with a name that exists nowhere."""
    return re.sub(r"\{[^}]+\}", "nothing-here", path)


def test_every_route_has_a_rule_and_every_rule_a_route(app) -> None:  # type: ignore[no-untyped-def]
    routes = set(api_routes(app))
    rules = set(ROUTE_PERMISSIONS)
    assert routes - rules == set(), "routes without a permission rule"
    assert rules - routes == set(), "a rule for a route that does not exist is a typo waiting to bite"
    assert set(ROUTE_PERMISSIONS.values()) <= set(PERMISSIONS)


def test_every_route_refuses_a_caller_without_a_token(app) -> None:  # type: ignore[no-untyped-def]
    anonymous = TestClient(app, base_url="http://127.0.0.1")
    for method, path in api_routes(app):
        response = anonymous.request(method, _concrete(path), json={})
        if ROUTE_PERMISSIONS[(method, path)] == "public":
            assert response.status_code == 200, (method, path)
            continue
        assert response.status_code == 401, (method, path, response.text)
        assert response.headers["www-authenticate"] == "Bearer"
        assert response.json()["error"]["code"] == "unauthorized"


def test_the_permission_matrix_role_by_route(app, clients: dict[str, TestClient]) -> None:  # type: ignore[no-untyped-def]
    """Generated from the tables: a role without the route's permission gets 403; with it, anything but 403
    and 401 (the request then fails on the made-up names, as it should)."""
    checked = 0
    for method, path in api_routes(app):
        permission = ROUTE_PERMISSIONS[(method, path)]
        for role, client in clients.items():
            if method == "POST" and path.endswith("/deployments") and role_allows(role, permission):
                continue  # would start deploying a model that does not exist: covered by the serving tests
            response = client.request(method, _concrete(path), json={})
            if role_allows(role, permission):
                assert response.status_code not in (401, 403), (role, method, path, response.text)
            else:
                assert response.status_code == 403, (role, method, path, response.text)
                body = response.json()["error"]
                assert body["code"] == "forbidden"
                assert permission in body["message"] and role in body["message"]
            checked += 1
    assert checked > 200


@pytest.mark.parametrize(
    "header",
    ["Bearer cvy_short", "Bearer " + "x" * 47, "Basic dXNlcjpwYXNz", "Bearer", "Bearer cvy_" + "A" * 43],
)
def test_malformed_and_unknown_tokens_are_refused(app, header: str) -> None:  # type: ignore[no-untyped-def]
    client = TestClient(app, base_url="http://127.0.0.1", headers={"Authorization": header})
    response = client.get("/api/v1/endpoints")
    assert response.status_code == 401
    assert "conveyor tokens create" in response.json()["error"]["message"]


def test_revoked_expired_and_disabled(ws: Workspace, app) -> None:  # type: ignore[no-untyped-def]
    from datetime import timedelta

    import sqlalchemy as sa

    from conveyor.store._schema import TokenRow

    ws.identities.add_user("dora", "reader")
    issued = ws.identities.create_token("dora")
    client = TestClient(app, base_url="http://127.0.0.1", headers={"Authorization": f"Bearer {issued.secret}"})
    assert client.get("/api/v1/me").json()["name"] == "dora"

    ws.identities.disable("dora")  # same process: forgotten at once
    response = client.get("/api/v1/me")
    assert response.status_code == 401 and "disabled" in response.json()["error"]["message"]
    ws.identities.enable("dora")
    assert client.get("/api/v1/me").status_code == 200

    ws.identities.revoke(issued.token.id)
    assert client.get("/api/v1/me").status_code == 401
    assert ws.identities.tokens("dora")[0].status == "revoked"

    short = ws.identities.create_token("dora", expires_in=timedelta(minutes=5))
    with ws.store.write() as session:  # time passes
        session.execute(sa.update(TokenRow).where(TokenRow.id == short.token.id).values(expires_at=TokenRow.created_at))
    ws.identities._forget()
    expired = TestClient(app, base_url="http://127.0.0.1", headers={"Authorization": f"Bearer {short.secret}"})
    response = expired.get("/api/v1/me")
    assert response.status_code == 401 and "expired" in response.json()["error"]["message"]


def test_tokens_over_rest_are_shown_once_and_scoped_to_their_owner(ws: Workspace) -> None:
    reader = api_client(ws, "reader", user="rhea")
    made = reader.post("/api/v1/tokens", json={"name": "laptop", "expires": "30d"})
    assert made.status_code == 201, made.text
    secret = made.json()["secret"]
    listed = reader.get("/api/v1/tokens").json()
    assert {t["user"] for t in listed} == {"rhea"}
    assert secret not in str(listed) and all(t["prefix"] == t["prefix"][:12] for t in listed)
    # a reader cannot mint a token for somebody else, nor revoke theirs
    other = reader.post("/api/v1/tokens", json={"user": "test-admin"})
    assert other.status_code == 403
    admin_tokens = ws.identities.tokens("test-admin")
    assert reader.delete(f"/api/v1/tokens/{admin_tokens[0].id}").status_code == 404
    assert reader.delete(f"/api/v1/tokens/{made.json()['token']['id']}").json()["status"] == "revoked"
    bad = reader.post("/api/v1/tokens", json={"expires": "soon"})
    assert bad.status_code == 400 and "30d" in bad.json()["error"]["message"]


def test_host_header_and_cross_site_requests(ws: Workspace, app) -> None:  # type: ignore[no-untyped-def]
    token = token_for(ws)
    headers = {"Authorization": f"Bearer {token}"}
    rebound = TestClient(app, base_url="http://attacker.example", headers=headers)
    response = rebound.get("/api/v1/endpoints")
    assert response.status_code == 400 and response.json()["error"]["code"] == "bad_host"
    local = TestClient(app, base_url="http://127.0.0.1:8420", headers=headers)
    assert local.get("/api/v1/endpoints").status_code == 200
    assert TestClient(app, base_url="http://localhost:8420", headers=headers).get("/api/v1/me").status_code == 200
    for extra in ({"Origin": "http://evil.example"}, {"Origin": "null"}, {"Sec-Fetch-Site": "cross-site"}):
        response = local.post("/api/v1/endpoints/churn/stop", headers=extra)
        assert response.status_code == 403, extra
        assert response.json()["error"]["code"] == "cross_origin"
    # a body-less cross-site POST without a token (what a web page can send) never reaches a route
    anonymous = TestClient(app, base_url="http://127.0.0.1")
    assert anonymous.post("/api/v1/endpoints/churn/keys/primary").status_code == 401
    # same-origin browser requests (the studio, later) pass
    same = local.get("/api/v1/me", headers={"Origin": "http://127.0.0.1:8420", "Sec-Fetch-Site": "same-origin"})
    assert same.status_code == 200
    # no permissive CORS
    preflight = local.options(
        "/api/v1/endpoints", headers={"Origin": "http://127.0.0.1:3000", "Access-Control-Request-Method": "GET"}
    )
    assert "access-control-allow-origin" not in preflight.headers


def test_no_auth_mode_acts_as_the_local_user(ws: Workspace) -> None:
    from conveyor.governance._context import os_user

    client = TestClient(create_app(ws, auth="none"), base_url="http://127.0.0.1")
    me = client.get("/api/v1/me").json()
    assert me["name"] == os_user() and me["role"] == "admin"
    # the browser guard stays on
    assert client.get("/api/v1/me", headers={"Host": "evil.example"}).status_code == 400


def test_the_openapi_document_declares_the_bearer_scheme_and_the_errors(app) -> None:  # type: ignore[no-untyped-def]
    spec = app.openapi()
    assert spec["components"]["securitySchemes"]["token"] == {
        "type": "http",
        "scheme": "bearer",
        "description": spec["components"]["securitySchemes"]["token"]["description"],
    }
    for path, operations in spec["paths"].items():
        for method, operation in operations.items():
            if path == "/api/v1/health":
                assert "security" not in operation and "503" in operation["responses"]
                continue
            assert {"400", "401", "403", "404", "422", "503"} <= set(operation["responses"]), (method, path)
            assert operation.get("security") == [{"token": []}], (method, path)
            for status, response in operation["responses"].items():
                if status[0] in "45":
                    assert list(response["content"]) == ["application/json"], (method, path, status)


def test_audit_records_the_api_caller(ws: Workspace) -> None:
    client = api_client(ws, "admin", user="audra")
    assert client.post("/api/v1/users", json={"name": "newbie", "role": "reader"}).status_code == 201
    entry = ws.audit.list(limit=1, actor="audra")[0]
    assert entry.role == "admin"
    assert entry.action == "POST /api/v1/users"
    assert entry.source.startswith("api:")
    assert ["users", "insert", ws.identities.get_user("newbie").id] in entry.targets


def test_the_permission_matrix_in_the_docs_is_the_one_in_the_code() -> None:
    from conveyor.governance._roles import matrix_markdown

    text = (ROOT / "docs" / "security.md").read_text()
    assert matrix_markdown() in text, "docs/security.md is stale: paste conveyor.governance._roles.matrix_markdown()"
    from conveyor.api._permissions import routes_markdown

    assert routes_markdown() in text, "docs/security.md is stale: paste conveyor.api._permissions.routes_markdown()"


def test_requests_that_ask_for_more_than_their_route_need_more(ws: Workspace) -> None:
    import pyarrow as pa

    ws.data.commit_table(pa.table({"x": [1, 2]}), name="numbers", source={"kind": "test"})
    reader = api_client(ws, "reader")
    assert reader.post("/api/v1/data/sql", json={"query": "select sum(x) as s from numbers"}).status_code == 200
    saved = reader.post("/api/v1/data/sql", json={"query": "select * from numbers", "save_as": "copy"})
    assert saved.status_code == 403 and "data.write" in saved.json()["error"]["message"]

    scientist = api_client(ws, "data-scientist")
    for url in ("/", "file:///etc", "sqlite:///" + str(ws.settings.home / "conveyor.db"), "http://127.0.0.1:8420/"):
        refused = scientist.post("/api/v1/datastores", json={"name": "sneaky", "url": url, "check": False})
        assert refused.status_code == 403, (url, refused.text)
        assert "Only an admin" in refused.json()["error"]["message"]
    admin = api_client(ws, "admin")
    folder = ws.settings.home / "drop"
    folder.mkdir()
    made = admin.post("/api/v1/datastores", json={"name": "drop", "url": str(folder)})
    assert made.status_code == 201, made.text
    (folder / "rows.csv").write_text("a,b\n1,2\n")
    escape = scientist.post("/api/v1/data/leak/ingest", json={"store": "drop", "path": "../../../../etc/os-release"})
    assert escape.status_code == 400, escape.text
    fine = scientist.post("/api/v1/data/rows/ingest", json={"store": "drop", "path": "rows.csv"})
    assert fine.status_code == 201, fine.text
