"""Shared fixtures: workspaces on each backend, PostgreSQL databases, a local S3 server.

A test that needs a service (PostgreSQL, ...) skips with the reason when it is not reachable, except under
CI (``CI=true``), where a missing service fails the run instead of hiding behind a skip.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import orjson
import pytest

PG_HOST, PG_PORT = "127.0.0.1", 5432
PG_ADMIN_URL = f"postgresql+psycopg://postgres@{PG_HOST}:{PG_PORT}/postgres"


def require_service(name: str, host: str, port: int) -> None:
    """Skip (or, under CI, fail) when ``host:port`` does not accept connections."""
    try:
        with socket.create_connection((host, port), timeout=2):
            return
    except OSError as exc:
        message = f"{name} is not reachable on {host}:{port} ({exc.strerror or exc})"
    if os.environ.get("CI", "").lower() == "true":
        pytest.fail(f"{message}; under CI every service the suite uses must be running.")
    pytest.skip(message)


def wait_until(condition, timeout: float = 30.0, interval: float = 0.05, what: str = "condition"):  # type: ignore[no-untyped-def]
    """Poll ``condition()`` until it returns a truthy value; fail with ``what`` after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        value = condition()
        if value:
            return value
        if time.monotonic() > deadline:
            pytest.fail(f"timed out after {timeout:.0f}s waiting for {what}")
        time.sleep(interval)


def http_ok(url: str) -> bool:
    """Whether ``GET url`` answers 200 right now."""
    import httpx

    try:
        return httpx.get(url, timeout=1).status_code == 200
    except httpx.HTTPError:
        return False


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


# -- PostgreSQL ------------------------------------------------------------------------------------------


@pytest.fixture
def postgres_url() -> Iterator[str]:
    """A fresh, empty PostgreSQL database for one test (dropped afterwards)."""
    require_service("PostgreSQL", PG_HOST, PG_PORT)
    import sqlalchemy as sa

    name = f"conveyor_test_{uuid.uuid4().hex[:12]}"
    admin = sa.create_engine(PG_ADMIN_URL, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(sa.text(f'CREATE DATABASE "{name}"'))
    try:
        yield f"postgresql+psycopg://postgres@{PG_HOST}:{PG_PORT}/{name}"
    finally:
        with admin.connect() as conn:
            conn.execute(sa.text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()


@pytest.fixture(params=["sqlite", "postgres"])
def db_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """The metadata database URL of each backend in turn."""
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'meta' / 'conveyor.db'}"
    return str(request.getfixturevalue("postgres_url"))


# -- S3 (moto's server mode) -----------------------------------------------------------------------------


@pytest.fixture(scope="session")
def s3_server() -> Iterator[str]:
    """A real S3-compatible HTTP server on loopback (moto), for the whole session; yields its URL."""
    pytest.importorskip("moto.server", reason="moto[server] is in the dev extra")
    port = free_port()
    env = {**os.environ, "AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing"}
    process = subprocess.Popen(
        [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        env=env,
    )
    url = f"http://127.0.0.1:{port}"

    def up() -> bool:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                return True
        except OSError:
            return process.poll() is not None

    wait_until(up, timeout=30, what="the moto S3 server to listen")
    if process.poll() is not None:
        pytest.fail(f"moto S3 server exited with status {process.returncode}")
    try:
        yield url
    finally:
        process.terminate()
        process.wait(timeout=10)


@pytest.fixture
def s3_bucket(s3_server: str, monkeypatch: pytest.MonkeyPatch) -> tuple[str, dict[str, str]]:
    """A new bucket on the local S3 server: ``(s3://bucket/prefix, storage options)``; credentials set in env."""
    import s3fs

    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")
    bucket = f"conveyor-{uuid.uuid4().hex[:10]}"
    fs = s3fs.S3FileSystem(endpoint_url=s3_server, key="testing", secret="testing")
    fs.mkdir(bucket)
    return f"s3://{bucket}/workspace", {"endpoint_url": s3_server}


# -- workspaces ------------------------------------------------------------------------------------------


@pytest.fixture(autouse=True)
def _isolated_environment(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """No test reads the developer's own workspace or settings."""
    for name in (
        "CONVEYOR_HOME",
        "CONVEYOR_DB_URL",
        "CONVEYOR_ARTIFACTS_URL",
        "CONVEYOR_ARTIFACTS_OPTIONS",
        "CONVEYOR_TRUSTED_MODULES",
        "CONVEYOR_MAX_WORKERS",
        "CONVEYOR_MAX_PROCESSES",
        "CONVEYOR_SECRET_KEY",
        "CONVEYOR_KEY_FILE",
    ):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("HOME", str(tmp_path / "user-home"))


@pytest.fixture
def workspace(tmp_path: Path):  # type: ignore[no-untyped-def]
    """An embedded (SQLite + local files) workspace in a temporary folder."""
    from conveyor import Workspace

    ws = Workspace.open(tmp_path / "ws")
    yield ws
    ws.close()


@pytest.fixture
def any_workspace(tmp_path: Path, db_url: str):  # type: ignore[no-untyped-def]
    """A workspace on each metadata backend in turn (SQLite, PostgreSQL)."""
    from conveyor import Workspace

    ws = Workspace.open(tmp_path / "ws", db_url=db_url)
    yield ws
    ws.close()


@pytest.fixture(scope="session")
def automl_task_models(tmp_path_factory: pytest.TempPathFactory):  # type: ignore[no-untyped-def]
    """A workspace with one registered AutoML model per task (``clf``, ``reg``, ``fc``) and the forecasting
    result, trained once for the session (tests/automl_models.py)."""
    from conveyor import Workspace
    from tests.automl_models import train_one_per_task

    ws = Workspace.open(tmp_path_factory.mktemp("automl-tasks") / "ws")
    forecast = train_one_per_task(ws)
    yield ws, forecast
    for endpoint in ws.endpoints.list():
        ws.endpoints.delete(endpoint.name)
    ws.close()


# -- the command line, run in this process ------------------------------------------------------------


@dataclass
class Result:
    code: int
    out: str
    err: str

    @property
    def json(self) -> Any:
        lines = [line for line in self.out.splitlines() if line.strip()]
        assert len(lines) == 1, f"--json must print exactly one line on stdout, got: {self.out!r}"
        return orjson.loads(lines[0])


@pytest.fixture
def cli(capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch):  # type: ignore[no-untyped-def]
    """Run ``conveyor ARGS...`` in this process; returns its exit code, stdout and stderr."""
    monkeypatch.setenv("COLUMNS", "200")

    from conveyor.cli import main

    def run(*args: str) -> Result:
        capsys.readouterr()
        try:
            main(list(args))
        except SystemExit as exc:
            code = exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 1)
        else:
            code = 0
        captured = capsys.readouterr()
        return Result(code, captured.out, captured.err)

    return run
