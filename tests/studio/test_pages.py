"""The studio's pages through the real app: log in with a token, every page and its JSON twin, forms that need a
CSRF token and the right role, helpful 404s and inline search errors, an empty workspace that says what to run,
and the API docs without a CDN."""

from __future__ import annotations

import re
from typing import Any

import numpy as np
import pandas as pd
import pytest
from fastapi.testclient import TestClient

from conveyor.api import create_app
from conveyor.workspace import Workspace
from tests.api_client import token_for


def _browser(ws: Workspace, role: str | None = "admin") -> TestClient:
    client = TestClient(create_app(ws), base_url="http://127.0.0.1")
    if role is not None:
        answer = client.post("/login", data={"token": token_for(ws, role), "next": "/"}, follow_redirects=False)
        assert answer.status_code == 303 and answer.headers["location"] == "/"
    return client


def _csrf(html: str) -> str:
    found = re.search(r'name="csrf" value="([0-9a-f]+)"', html)
    assert found, "every page with a form carries the session's CSRF token"
    return found.group(1)


@pytest.fixture(scope="module")
def filled(tmp_path_factory: pytest.TempPathFactory) -> Any:
    from sklearn.linear_model import LogisticRegression

    ws = Workspace.open(tmp_path_factory.mktemp("studio") / "ws")
    rng = np.random.default_rng(0)
    frame = pd.DataFrame({"x": rng.normal(size=200), "z": rng.normal(size=200)})
    frame["y"] = (frame["x"] > 0).astype(int)
    model = LogisticRegression().fit(frame[["x", "z"]], frame["y"])
    with ws.runs.start("studio", name="fit") as run:
        run.log_params({"learner": "lr", "C": 1.0})
        for step in range(5):
            run.log_metric("loss", 1.0 / (step + 1), step=step)
        run.log_metrics({"test_accuracy": 0.91})
        run.log_model(model, input_example=frame[["x", "z"]].head(5))
        with run.child("trial-1") as child:
            child.log_metrics({"score": 0.8})
    ws.models.register_from_run(run.id, "m")
    ws.models.register_from_run(run.id, "m")
    ws.models.set_alias("m", "champion", 1)
    ws.endpoints.create("e", collect=0.5)
    import pyarrow as pa

    ws.data.commit_table(pa.Table.from_pandas(frame), name="table", source={"kind": "test"})
    ws.pipelines.register("tests.pipelines.steps:numbers")
    ws.pipelines.run("numbers", params={"n": 3})
    yield ws, run.id
    ws.close()


def test_pages_need_a_session_and_logging_in_keeps_it_in_a_strict_cookie(filled) -> None:  # type: ignore[no-untyped-def]
    ws, _ = filled
    anonymous = TestClient(create_app(ws), base_url="http://127.0.0.1")
    for page in ("/", "/runs", "/models/m", "/endpoints", "/monitors"):
        answer = anonymous.get(page, follow_redirects=False)
        assert answer.status_code == 303 and answer.headers["location"].startswith("/login?next=")
    bad = anonymous.post("/login", data={"token": "cvy_" + "x" * 43, "next": "/"})
    assert bad.status_code == 401 and "log in" in bad.text.lower() and 'role="alert"' in bad.text
    good = anonymous.post("/login", data={"token": token_for(ws, "reader"), "next": "/runs"}, follow_redirects=False)
    cookie = good.headers["set-cookie"]
    assert good.status_code == 303 and good.headers["location"] == "/runs"
    assert "HttpOnly" in cookie and "SameSite=strict" in cookie and "conveyor_session=" in cookie
    # No open redirect: only paths on this site.
    for target in ("https://evil.example/", "//evil.example/x", "/\\evil.example"):
        answer = anonymous.post(
            "/login", data={"token": token_for(ws, "reader"), "next": target}, follow_redirects=False
        )
        assert answer.headers["location"] == "/"
    out = anonymous.post("/logout", data={}, follow_redirects=False)
    assert out.status_code == 303 and anonymous.get("/", follow_redirects=False).status_code == 303


def test_a_user_logs_in_with_a_password_is_locked_out_after_five_failures_and_logging_out_ends_the_session(
    filled,
) -> None:  # type: ignore[no-untyped-def]
    from conveyor.errors import BadInput

    ws, _ = filled
    token_for(ws, "reader", user="pat")
    with pytest.raises(BadInput, match="at least 10"):
        ws.identities.set_password("pat", "short")
    with pytest.raises(BadInput, match="name"):
        ws.identities.set_password("pat", "PAT       ")
    assert ws.identities.set_password("pat", "a long enough phrase").has_password
    client = TestClient(create_app(ws), base_url="http://127.0.0.1")
    unknown = client.post("/login", data={"user": "nobody", "password": "a long enough phrase"})
    wrong = client.post("/login", data={"user": "pat", "password": "not the phrase"})
    assert unknown.status_code == wrong.status_code == 401
    assert "Wrong user name or password" in unknown.text and "Wrong user name or password" in wrong.text
    good = client.post("/login", data={"user": "pat", "password": "a long enough phrase"}, follow_redirects=False)
    assert good.status_code == 303 and good.headers["x-conveyor-user"] == "pat"
    assert client.get("/runs").status_code == 200
    sessions = [t for t in ws.identities.tokens("pat") if t.name == "studio session"]
    assert len(sessions) == 1 and sessions[0].status == "active"
    # Logging out (with the page's CSRF token) revokes the session's token, not just the cookie.
    secret = client.cookies.get("conveyor_session")
    client.post("/logout", data={"csrf": _csrf(client.get("/runs").text)}, follow_redirects=False)
    assert [t.status for t in ws.identities.tokens("pat") if t.name == "studio session"] == ["revoked"]
    from conveyor.errors import Unauthorized

    with pytest.raises(Unauthorized):
        ws.identities.authenticate(secret)
    # Five failures lock this user out from this address, even for the right password, and say for how long.
    for _ in range(5):
        client.post("/login", data={"user": "pat", "password": "guess guess guess"})
    locked = client.post("/login", data={"user": "pat", "password": "a long enough phrase"})
    assert locked.status_code == 401 and "Too many failed log-ins" in locked.text
    # A disabled user with the right password is refused.
    token_for(ws, "reader", user="sam")
    ws.identities.set_password("sam", "another long phrase")
    ws.identities.disable("sam")
    refused = client.post("/login", data={"user": "sam", "password": "another long phrase"})
    assert refused.status_code == 401 and "disabled" in refused.text
    nothing = client.post("/login", data={"user": "", "password": "", "token": ""})
    assert nothing.status_code == 401 and "user name and password, or an API token" in nothing.text


def test_every_page_renders_and_answers_its_json_twin(filled) -> None:  # type: ignore[no-untyped-def]
    ws, run_id = filled
    client = _browser(ws, "reader")
    pages = {
        "/": "Recent runs",
        "/runs": "fit",
        f"/runs/{run_id}": "Metric curves",
        "/models": "@champion",
        "/models/m:1": "Move an alias here",
        "/endpoints": ">e<",
        "/endpoints/e": "Deployments and traffic",
        "/monitors": "No monitors yet",
        "/data": "table",
        "/data/table:1": "Distributions",
        "/pipelines": "numbers",
        "/lineage?ref=data:table:1": "Nodes",
    }
    for page, expected in pages.items():
        answer = client.get(page)
        assert answer.status_code == 200, (page, answer.text[:300])
        assert expected in answer.text, page
        assert "<h1>" in answer.text and 'lang="en"' in answer.text  # a heading and a language on every page
        twin = client.get(page, params={"format": "json"})
        assert twin.status_code == 200 and twin.headers["content-type"] == "application/json", page
    run = client.get(f"/runs/{run_id}", params={"format": "json"}).json()
    assert run["curves"]["loss"]["y"] == [1.0, 0.5, pytest.approx(1 / 3), 0.25, 0.2]
    assert [c["name"] for c in run["children"]] == ["trial-1"]
    assert '<script src="/studio/static/plotly.min.js">' in client.get(f"/runs/{run_id}").text
    assert client.get("/studio/static/plotly.min.js").headers["content-type"].startswith("text/javascript")
    runs = client.get("/runs", params={"format": "json"}).json()
    assert [r["name"] for r in runs["runs"]] == ["fit"]  # top-level runs; children with children=1
    assert {r["name"] for r in client.get("/runs", params={"format": "json", "children": 1}).json()["runs"]} == {
        "fit",
        "trial-1",
    }


def test_a_bad_search_is_shown_inline_and_an_unknown_name_gets_a_suggestion(filled) -> None:  # type: ignore[no-untyped-def]
    ws, _ = filled
    client = _browser(ws, "reader")
    bad = client.get("/runs", params={"q": "metrics.loss >"})
    assert bad.status_code == 400 and 'class="error"' in bad.text and "metrics.loss &gt;" in bad.text
    missing = client.get("/models/mm:1")
    assert missing.status_code == 404 and "Did you mean" in missing.text and "<h1>Not found</h1>" in missing.text
    assert client.get("/runs/0000").status_code == 404
    assert client.get("/monitors/nope").status_code == 404


def test_moving_an_alias_needs_the_csrf_token_and_the_promote_permission(filled) -> None:  # type: ignore[no-untyped-def]
    ws, _ = filled
    reader = _browser(ws, "reader")
    token = _csrf(reader.get("/models/m:2").text)
    refused = reader.post("/models/m/alias", data={"alias": "champion", "version": 2, "csrf": token})
    assert refused.status_code == 403 and "models.promote" in refused.text
    operator = _browser(ws, "operator")
    forged = operator.post("/models/m/alias", data={"alias": "champion", "version": 2, "csrf": "0" * 40})
    assert forged.status_code == 403 and "CSRF" in forged.text
    assert operator.post("/models/m/alias", data={"alias": "champion", "version": 2}).status_code == 403
    token = _csrf(operator.get("/models/m:2").text)
    moved = operator.post(
        "/models/m/alias", data={"alias": "champion", "version": 2, "csrf": token}, follow_redirects=False
    )
    assert moved.status_code == 303 and ws.models.get("m@champion").version == 2
    # A form posted from another site never reaches the handler (the browser guard).
    cross = operator.post("/models/m/alias", data={"alias": "champion", "version": 1, "csrf": token},
                          headers={"origin": "https://evil.example"})  # fmt: skip
    assert cross.status_code == 403 and ws.models.get("m@champion").version == 2


def test_a_traffic_split_form_is_checked(filled) -> None:  # type: ignore[no-untyped-def]
    ws, _ = filled
    operator = _browser(ws, "operator")
    token = _csrf(operator.get("/endpoints/e").text)
    bad = operator.post("/endpoints/e/traffic", data={"csrf": token, "traffic.blue": "lots"})
    assert bad.status_code == 400 and "whole number" in bad.text
    reader = _browser(ws, "reader")
    refused = reader.post("/endpoints/e/traffic", data={"csrf": _csrf(reader.get("/endpoints/e").text)})
    assert refused.status_code == 403 and "endpoints.write" in refused.text


def test_an_empty_workspace_says_what_to_run(tmp_path) -> None:  # type: ignore[no-untyped-def]
    ws = Workspace.open(tmp_path / "empty")
    try:
        client = _browser(ws, "reader")
        home = client.get("/")
        assert "conveyor quickstart" in home.text and "This workspace is empty" in home.text
        assert "No runs match" in client.get("/runs").text
        assert "No models yet" in client.get("/models").text
    finally:
        ws.close()


def test_the_api_docs_load_their_assets_from_the_server(filled) -> None:  # type: ignore[no-untyped-def]
    ws, _ = filled
    client = TestClient(create_app(ws), base_url="http://127.0.0.1")
    for page, asset in (("/docs", "swagger-ui-bundle.js"), ("/redoc", "redoc.standalone.js")):
        html = client.get(page).text
        assert f"/studio/docs-assets/{asset}" in html and "cdn.jsdelivr" not in html and "googleapis" not in html
        assert client.get(f"/studio/docs-assets/{asset}").status_code == 200


def test_pipeline_runs_draw_their_steps_and_runs_compare_side_by_side(filled) -> None:  # type: ignore[no-untyped-def]
    ws, run_id = filled
    client = _browser(ws, "reader")
    pipeline_run = client.get("/pipelines", params={"format": "json"}).json()["runs"][0]
    page = client.get(f"/pipelines/runs/{pipeline_run['id']}")
    assert page.status_code == 200 and 'id="dag"' in page.text
    dag = client.get(f"/pipelines/runs/{pipeline_run['id']}", params={"format": "json"}).json()["dag"]
    assert [n["name"] for n in dag["nodes"]] == ["make_numbers", "double", "total"]
    assert [n["x"] for n in dag["nodes"]] == [0, 1, 2] and len(dag["edges"]) == 2  # a chain, drawn left to right
    child = client.get("/runs", params={"format": "json", "children": 1}).json()["runs"]
    ids = ",".join(r["id"] for r in child[:2])
    compared = client.get("/compare", params={"runs": ids})
    assert compared.status_code == 200 and "parcoords" in compared.text
    assert client.get("/compare", params={"runs": run_id}).status_code == 400  # one run is not a comparison
    bad = client.get("/lineage", params={"ref": "modle:m:1"})
    assert bad.status_code == 400 and "Did you mean" in bad.text


def test_the_audit_page_is_for_roles_that_may_read_the_log(filled) -> None:  # type: ignore[no-untyped-def]
    ws, _ = filled
    assert _browser(ws, "reader").get("/audit").status_code == 403
    operator = _browser(ws, "operator")
    page = operator.get("/audit")
    assert page.status_code == 200 and "conveyor audit verify" in page.text
    found = operator.get("/audit", params={"format": "json", "action": "alias"}).json()["events"]
    assert all("alias" in e["action"] for e in found)


def test_the_data_diff_page_names_what_moved_between_two_versions(filled) -> None:  # type: ignore[no-untyped-def]
    import pyarrow as pa

    ws, _ = filled
    rng = np.random.default_rng(1)
    before = pd.DataFrame({"a": rng.normal(size=500), "b": rng.normal(size=500), "gone": np.arange(500)})
    after = pd.DataFrame({"a": rng.normal(size=400), "b": rng.normal(loc=3.0, size=400), "new": ["x"] * 400})
    ws.data.commit_table(pa.Table.from_pandas(before), name="shifting", source={"kind": "test"})
    ws.data.commit_table(pa.Table.from_pandas(after), name="shifting", source={"kind": "test"})
    client = _browser(ws, "reader")
    page = client.get("/data/shifting:2/diff")  # default: from the version before
    assert page.status_code == 200, page.text[:300]
    assert "added <code>new</code>" in page.text and "removed <code>gone</code>" in page.text
    twin = client.get("/data/shifting:2/diff", params={"other": "1", "format": "json"}).json()
    assert twin["diff"]["a"] == "shifting:1" and twin["diff"]["rows"]["change"] == -100
    assert twin["diff"]["shifts"][0]["column"] == "b"  # the column whose mean moved 3 std leads
    assert "what changed from shifting:1" in client.get("/data/shifting:2").text
    first = client.get("/data/shifting:1/diff")
    assert first.status_code == 400 and "nothing before it" in first.text
    assert client.get("/data/shifting:2/diff", params={"other": "9"}).status_code == 404


def test_run_artifacts_open_in_the_page_sandboxed_and_through_the_rest_api(filled) -> None:  # type: ignore[no-untyped-def]
    from tests.api_client import api_client

    ws, _ = filled
    report = b"<html><body><h1>evaluation</h1><script>document.title = 'ran'</script></body></html>"
    with ws.runs.start("studio", name="with-report") as run:
        run.log_bytes("evaluation.html", report)
        run.log_bytes("charts/roc.json", b'{"x": [0, 1]}')
    client = _browser(ws, "reader")
    page = client.get(f"/runs/{run.id}").text
    assert f'src="/runs/{run.id}/artifacts/evaluation.html" sandbox="allow-scripts"' in page
    assert f'href="/runs/{run.id}/artifacts/charts/roc.json"' in page
    shown = client.get(f"/runs/{run.id}/artifacts/evaluation.html")
    assert shown.status_code == 200 and shown.content == report
    assert shown.headers["content-type"].startswith("text/html")
    assert shown.headers["content-security-policy"] == "sandbox allow-scripts"  # an opaque origin: no session
    assert shown.headers["x-content-type-options"] == "nosniff"
    assert client.get(f"/runs/{run.id}/artifacts/charts/roc.json").headers["content-type"] == "application/json"
    missing = client.get(f"/runs/{run.id}/artifacts/evaluation.htm")
    assert missing.status_code == 404 and "evaluation.html" in missing.text  # the nearest name
    assert client.get(f"/runs/{run.id}/artifacts/../../conveyor.db").status_code == 404
    anonymous = TestClient(create_app(ws), base_url="http://127.0.0.1")
    assert anonymous.get(f"/runs/{run.id}/artifacts/evaluation.html", follow_redirects=False).status_code == 303
    rest = api_client(ws, "reader")
    answer = rest.get(f"/api/v1/runs/{run.id}/artifacts/charts/roc.json")
    assert answer.status_code == 200 and answer.json() == {"x": [0, 1]}
    assert api_client(ws, None).get(f"/api/v1/runs/{run.id}/artifacts/charts/roc.json").status_code == 401
    assert rest.get(f"/api/v1/runs/{run.id}/artifacts/nope").status_code == 404


def test_the_live_figures_of_a_stopped_endpoint_are_empty_not_an_error(filled) -> None:  # type: ignore[no-untyped-def]
    ws, _ = filled
    client = _browser(ws, "reader")
    live = client.get("/endpoints/e/live")
    assert live.status_code == 200 and live.json()["deployments"] == {} and live.json()["status"] != "running"
    assert client.get("/endpoints/nope/live").status_code == 404
    assert 'id="live"' not in client.get("/endpoints/e").text  # the chart is drawn only for a running endpoint


def test_columns_are_chosen_runs_compare_with_overlaid_curves_and_step_logs_show(filled) -> None:  # type: ignore[no-untyped-def]
    ws, run_id = filled
    with ws.runs.start("studio", name="second") as other:
        other.log_params({"learner": "rf", "C": 2.0})
        for step in range(4):
            other.log_metric("loss", 2.0 / (step + 1), step=step)
    client = _browser(ws, "reader")
    chosen = client.get("/runs", params={"col": ["params.C", "metrics.test_accuracy"], "format": "json"}).json()
    assert chosen["param_keys"] == ["C"] and chosen["metric_keys"] == ["test_accuracy"]
    assert "learner" in chosen["columns"]["params"] and "loss" in chosen["columns"]["metrics"]
    page = client.get("/runs", params={"col": ["params.C"]}).text
    assert 'value="params.C" checked' in page and 'value="params.learner" >' in page
    assert client.get("/runs", params={"col": ["nonsense"], "format": "json"}).json()["param_keys"]  # ignored
    compared = client.get("/compare", params={"runs": f"{run_id},{other.id}", "format": "json"}).json()
    assert [line["run"] for line in compared["curves"]["loss"]] == ["fit", "second"]
    assert compared["curves"]["loss"][1]["y"] == [2.0, 1.0, pytest.approx(2 / 3), 0.5]
    assert "Metric curves" in client.get("/compare", params={"runs": f"{run_id},{other.id}"}).text
    pipeline_run = ws.pipelines.runs(limit=1)[0]
    shown = client.get(f"/pipelines/runs/{pipeline_run.id}", params={"format": "json"}).json()
    assert "making 3 numbers" in shown["logs"]["make_numbers"]["tail"]  # what the step printed
    assert "<h2>Logs</h2>" in client.get(f"/pipelines/runs/{pipeline_run.id}").text
