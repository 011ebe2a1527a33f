"""Pipeline specs sent over the REST API may name only functions of trusted modules; nothing else is imported,
and nothing runs. Specs applied on the machine (conveyor apply -f, the SDK) are not restricted."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pyarrow as pa
import pytest
from starlette.testclient import TestClient

from conveyor import Workspace
from conveyor.config import resolve_settings
from conveyor.errors import Forbidden, InvalidConfig
from conveyor.pipelines._task import SQL_STEP_CONFIG, _run_sql

ROOT = Path(__file__).resolve().parents[2]
YAML = {"content-type": "application/yaml"}


def _spec(function: str, inputs: str = "", name: str = "probe") -> str:
    return f"name: {name}\nsteps:\n  - name: only\n    function: {function}\n" + (
        f"    inputs:\n{inputs}" if inputs else ""
    )


def _open(home: Path, trusted: list[str] | None) -> Workspace:
    home.mkdir(parents=True, exist_ok=True)
    if trusted is not None:
        listed = ", ".join(f'"{m}"' for m in trusted)
        (home / "conveyor.toml").write_text(f"[pipelines]\ntrusted_modules = [{listed}]\n")
    return Workspace.open(home)


@pytest.fixture
def trusted_ws(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Workspace]:
    monkeypatch.setenv("PYTHONPATH", str(ROOT))
    ws = _open(tmp_path / "ws", ["tests.pipelines.steps"])
    yield ws
    ws.close()


@pytest.fixture
def client(trusted_ws: Workspace) -> TestClient:
    from tests.api_client import api_client

    return api_client(trusted_ws, "admin")


@pytest.mark.parametrize(
    "function",
    ["os:system", "builtins:eval", "subprocess:run", "conveyor._process:alive", "posix:system"],
)
def test_the_probe_is_refused_over_rest_and_nothing_runs(
    client: TestClient, trusted_ws: Workspace, tmp_path: Path, function: str
) -> None:
    marker = tmp_path / "pwned"
    spec = _spec(function, f"      command: touch {marker}\n")
    response = client.put("/api/v1/pipelines", content=spec, headers=YAML)
    assert response.status_code == 403, response.text
    error = response.json()["error"]
    assert error["code"] == "forbidden"
    module = function.split(":", maxsplit=1)[0]
    assert f"names the function {function}, but module {module!r} is not trusted" in error["message"]
    assert "[pipelines] trusted_modules" in error["message"] and "CONVEYOR_TRUSTED_MODULES" in error["message"]
    assert "trusted: tests.pipelines.steps (setting pipelines.trusted_modules)" in error["message"]
    assert error["details"] == {"function": function, "module": module, "setting": "pipelines.trusted_modules"}
    # nothing was registered, so nothing can be started
    started = client.post("/api/v1/pipelines/probe/runs", json={})
    assert started.status_code == 404
    assert trusted_ws.pipelines.list() == [] and trusted_ws.pipelines.runs() == []
    assert not marker.exists()


def test_the_module_is_checked_before_it_is_imported(client: TestClient) -> None:
    import sys

    assert "antigravity" not in sys.modules  # importing it opens a web browser: a side effect of import alone
    response = client.put("/api/v1/pipelines", content=_spec("antigravity:geohash"), headers=YAML)
    assert response.status_code == 403
    assert "antigravity" not in sys.modules


@pytest.mark.parametrize(
    ("function", "defined_in"),
    [
        ("tests.pipelines.steps:os.system", "os"),  # through a module the trusted one imported
        ("tests.pipelines.steps:time.sleep", "time"),
        ("tests.pipelines.steps:Path", "pathlib"),  # `from pathlib import Path` in a trusted module
    ],
)
def test_what_a_trusted_module_only_imports_stays_untrusted(client: TestClient, function: str, defined_in: str) -> None:
    response = client.put("/api/v1/pipelines", content=_spec(function, "      command: x\n"), headers=YAML)
    assert response.status_code == 403, response.text
    message = response.json()["error"]["message"]
    assert f"names the function {function}, which is defined in module {defined_in!r}" in message


def test_special_attributes_are_refused(client: TestClient) -> None:
    response = client.put(
        "/api/v1/pipelines", content=_spec("tests.pipelines.steps:__loader__.load_module"), headers=YAML
    )
    assert response.status_code == 403
    assert "special attribute" in response.json()["error"]["message"]


def test_trusted_functions_apply_over_rest_and_run(client: TestClient, trusted_ws: Workspace) -> None:
    spec = _spec("tests.pipelines.steps:make_numbers", "      n: 3\n", name="nums")
    response = client.put("/api/v1/pipelines", content=spec, headers=YAML)
    assert response.status_code == 200, response.text
    assert response.json()["definition"]["trusted_only"] is True
    run = trusted_ws.pipelines.run("nums")
    assert run.status == "succeeded", run.error


def test_a_submodule_of_a_trusted_package_is_trusted(tmp_path: Path) -> None:
    with _open(tmp_path / "ws", ["tests"]) as ws:
        assert ws.pipelines.apply_text(_spec("tests.pipelines.steps:make_numbers")).name == "probe"
        with pytest.raises(Forbidden, match="module 'testsuite' is not trusted"):
            ws.pipelines.apply_text(_spec("testsuite:run"))


def test_a_restricted_pipeline_is_checked_again_when_it_runs(tmp_path: Path) -> None:
    home = tmp_path / "ws"
    with _open(home, ["tests.pipelines.steps"]) as ws:
        ws.pipelines.apply_text(_spec("tests.pipelines.steps:make_numbers", name="nums"))
    # the admin stops trusting the module: the pipeline sent over the API no longer runs, nor loads
    with _open(home, []) as ws:
        with pytest.raises(Forbidden, match="tests.pipelines.steps:make_numbers, but module"):
            ws.pipelines.run("nums")
        with pytest.raises(Forbidden):
            ws.pipelines.trigger("nums", reason={"kind": "api"})
        assert ws.pipelines.runs() == []


def test_specs_applied_on_the_machine_are_not_restricted(tmp_path: Path) -> None:
    with _open(tmp_path / "ws", None) as ws:
        spec = tmp_path / "nums.yaml"
        spec.write_text(_spec("tests.pipelines.steps:make_numbers", name="nums"))
        info = ws.pipelines.apply(spec)
        assert "trusted_only" not in info.definition
        assert ws.pipelines.run("nums").status == "succeeded"
        assert ws.pipelines.apply_text(spec.read_text(), trusted_only=False).name == "nums"
        with pytest.raises(Forbidden, match=r"\(none are, so far\)"):
            ws.pipelines.apply_text(spec.read_text())


def test_the_packages_of_registered_python_pipelines_are_trusted(tmp_path: Path) -> None:
    with _open(tmp_path / "ws", None) as ws:
        ws.pipelines.register("tests.pipelines.steps:numbers")
        assert ws.pipelines.trusted_modules() == {"tests": "project package of registered pipeline 'numbers'"}
        assert ws.pipelines.apply_text(_spec("tests.pipelines.steps:make_numbers", name="nums")).name == "nums"
        with pytest.raises(Forbidden, match="module 'os' is not trusted"):
            ws.pipelines.apply_text(_spec("os:system"))


def test_the_cli_apply_stays_trusted_and_forbidden_exits_2(cli, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    home = tmp_path / "ws"
    spec = tmp_path / "nums.yaml"
    spec.write_text(_spec("tests.pipelines.steps:make_numbers", name="nums"))
    assert cli("--home", str(home), "init").code == 0
    applied = cli("--home", str(home), "apply", "-f", str(spec))
    assert applied.code == 0, applied.err
    # the same pipeline sent over the API is restricted, and refused wherever it runs once no longer trusted
    with _open(home, ["tests.pipelines.steps"]) as ws:
        ws.pipelines.apply_text(spec.read_text())
    (home / "conveyor.toml").write_text("[pipelines]\ntrusted_modules = []\n")
    refused = cli("--home", str(home), "pipeline", "run", "nums")
    assert refused.code == 2
    assert "tests.pipelines.steps:make_numbers, but module 'tests.pipelines.steps' is not trusted" in refused.err


def test_the_trusted_modules_setting(tmp_path: Path) -> None:
    home = tmp_path / "ws"
    home.mkdir()
    (home / "conveyor.toml").write_text('[pipelines]\ntrusted_modules = ["my_project"]\n')
    settings = resolve_settings(home, env={"CONVEYOR_TRUSTED_MODULES": " my_project.steps, other ,"})
    assert settings.trusted_modules == ("my_project", "my_project.steps", "other")
    for bad, message in [
        ('["os"]', "'os' is part of the standard library"),
        ('["conveyor._process"]', "'conveyor._process' is part of Conveyor"),
        ('["my-project"]', "'my-project' is not a Python module name"),
        ('"my_project"', "must be a list of module names"),
    ]:
        (home / "conveyor.toml").write_text(f"[pipelines]\ntrusted_modules = {bad}\n")
        with pytest.raises(InvalidConfig, match=message):
            resolve_settings(home, env={})
    (home / "conveyor.toml").write_text("")
    with pytest.raises(InvalidConfig, match="'subprocess' is part of the standard library"):
        resolve_settings(home, env={"CONVEYOR_TRUSTED_MODULES": "subprocess"})


def test_a_pipeline_name_that_looks_like_a_file_is_refused(client: TestClient) -> None:
    spec = _spec("tests.pipelines.steps:make_numbers", name="nums.yaml")
    response = client.put("/api/v1/pipelines", content=spec, headers=YAML)
    assert response.status_code == 422
    assert "ends like a YAML file name" in response.json()["error"]["message"]


@pytest.mark.parametrize(
    "query",
    [
        "SELECT * FROM read_text('/etc/passwd')",
        "COPY (SELECT 1) TO '{marker}'",
        "ATTACH '{marker}' AS other",
        "LOAD httpfs",
        "SET enable_external_access = true",
    ],
)
def test_sql_steps_see_their_inputs_only(tmp_path: Path, query: str) -> None:
    import duckdb

    marker = tmp_path / "written"
    frame = pa.table({"x": [1, 2, 3]})
    assert _run_sql("SELECT sum(x) AS s FROM frame WHERE x >= $t", {"frame": frame}, {"t": 2}).to_pylist() == [{"s": 5}]
    with pytest.raises(duckdb.Error):
        _run_sql(query.format(marker=marker), {"frame": frame}, {})
    assert not marker.exists() and SQL_STEP_CONFIG["enable_external_access"] is False


def test_a_sql_step_reading_a_file_fails_its_run(trusted_ws: Workspace) -> None:
    spec = "name: sneaky\nsteps:\n  - name: read\n    sql: SELECT * FROM read_text('/etc/hostname')\n"
    trusted_ws.pipelines.apply_text(spec)
    run = trusted_ws.pipelines.run("sneaky")
    assert run.status == "failed" and "file system operations are disabled" in (run.step("read").error or "")


def test_executors_named_over_the_api_stay_local_and_bounded() -> None:
    from conveyor.pipelines._executors import LocalExecutor, make_executor, max_local_workers

    for spec in ("dask://attacker.example:8786", "tcp://10.0.0.1:8786", "dask-local"):
        with pytest.raises(Forbidden, match=f"Executor '{spec}' is not allowed in requests sent over the API"):
            make_executor(spec, trusted_only=True)
    too_many = f"local:{max_local_workers() + 1}"
    with pytest.raises(Forbidden, match=f"at most {max_local_workers()}"):
        make_executor(too_many, trusted_only=True)
    allowed = make_executor(f"local:{max_local_workers()}", trusted_only=True)
    assert isinstance(allowed, LocalExecutor) and allowed.workers == max_local_workers()
    assert make_executor(too_many).capacity == max_local_workers() + 1  # the user on the machine decides


def test_a_sql_step_cannot_read_duckdbs_default_temp_folder(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """With external access off DuckDB still reads its temp folder (.tmp under the working folder by default)."""
    import duckdb

    monkeypatch.chdir(tmp_path)
    (tmp_path / ".tmp").mkdir()
    (tmp_path / ".tmp" / "planted.csv").write_text("secret\nleaked\n")
    with pytest.raises(duckdb.Error):
        _run_sql("SELECT * FROM read_csv('.tmp/planted.csv')", {"frame": pa.table({"x": [1]})}, {})
