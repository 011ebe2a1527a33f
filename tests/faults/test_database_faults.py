"""The metadata database's connections killed (``pg_terminate_backend``) in the middle of tracking and of
ingestion, on a PostgreSQL workspace of a database of its own: nothing logged is lost or duplicated, an ingest
either commits a whole version or fails with a clear error, and the next operation succeeds."""

from __future__ import annotations

import random
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from conveyor import Workspace
from conveyor.errors import ConveyorError
from tests.faults._chaos import LONG, make_csv, tree_bytes

pytestmark = [pytest.mark.chaos, pytest.mark.postgres]


class Terminator:
    """Kills every session on one database but its own, on demand or at random moments from a thread."""

    def __init__(self, url: str) -> None:
        import sqlalchemy as sa

        self._sa = sa
        self.engine = sa.create_engine(url, isolation_level="AUTOCOMMIT")
        self.database = self.engine.url.database
        self.killed = 0
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def kill(self) -> int:
        query = (
            "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity "
            "WHERE datname = :d AND pid <> pg_backend_pid()"
        )
        with self.engine.connect() as conn:
            killed = int(conn.execute(self._sa.text(query), {"d": self.database}).scalar_one())
        self.killed += killed
        return killed

    def every(self, low: float, high: float, seed: int = 15) -> Terminator:
        rng = random.Random(seed)

        def loop() -> None:
            while not self._stop.wait(rng.uniform(low, high)):
                self.kill()

        self._thread = threading.Thread(target=loop, daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(10)
        self._stop, self._thread = threading.Event(), None

    def close(self) -> None:
        self.stop()
        self.engine.dispose()


@pytest.fixture
def pg_workspace(tmp_path: Path, postgres_url: str) -> Iterator[tuple[Workspace, Terminator]]:
    ws = Workspace.open(tmp_path / "ws", db_url=postgres_url)
    terminator = Terminator(postgres_url)
    try:
        yield ws, terminator
    finally:
        terminator.close()
        ws.close()


def test_tracking_loses_and_duplicates_nothing_when_its_connections_are_killed(
    pg_workspace: tuple[Workspace, Terminator],
) -> None:
    ws, terminator = pg_workspace
    steps = 20_000 if LONG else 3000
    run = ws.runs.start("chaos", name="db-kills")
    terminator.every(0.02, 0.2)
    try:
        for step in range(steps):
            run.log_metrics({"loss": 1 / (step + 1), "acc": step / (step + 1)}, step=step)
            if step % 200 == 0:
                time.sleep(0.05)  # batches land while connections die
            if step % 1000 == 999:
                run.log_param(f"p{step}", step)
        run.end()
    finally:
        terminator.stop()
    assert terminator.killed > 0, "sessions were killed mid-logging"
    history = ws.runs.metric_history(run.id, "loss")
    assert [p.step for p in history] == list(range(steps)), "each step stored once, none lost"
    assert ws.runs.get(run.id).status == "finished"
    assert len(ws.runs.get(run.id).params) == steps // 1000
    print(f"{terminator.killed} sessions killed while {steps} steps were logged: all stored once")


def test_an_ingest_whose_connections_are_killed_commits_whole_or_fails_clearly(
    pg_workspace: tuple[Workspace, Terminator], tmp_path: Path
) -> None:
    ws, terminator = pg_workspace
    csv = make_csv(tmp_path / "data.csv", 8 if LONG else 2)
    rounds = 12 if LONG else 4
    outcomes: list[str] = []
    for i in range(rounds):
        terminator.kill()  # the pool's idle connections are dead: the next checkout must notice
        terminator.every(0.01, 0.3, seed=i)
        try:
            version = ws.data.ingest(csv, name=f"t{i}").version
            outcomes.append(f"v{version.version}")
        except ConveyorError as exc:
            assert "database" in str(exc).lower() or "metadata" in str(exc).lower(), f"a clear error: {exc}"
            outcomes.append(f"{type(exc).__name__}: {exc}")
        finally:
            terminator.stop()
        with Workspace.open(ws.settings.home, db_url=str(ws.settings.db_url)) as again:
            versions = again.data.versions(f"t{i}") if any(a.name == f"t{i}" for a in again.data.list()) else []
            assert [v.rows for v in versions] in ([], [_rows(csv)]), "no half-written version"
            if not versions:
                assert again.data.ingest(csv, name=f"t{i}").version.rows == _rows(csv), "the next ingest succeeds"
    assert tree_bytes(Path(ws.artifacts.root) / "tmp") == 0
    print(f"ingests while sessions were killed: {outcomes}")


def _rows(csv: Path) -> int:
    with csv.open("rb") as fh:
        return sum(chunk.count(b"\n") for chunk in iter(lambda: fh.read(1 << 20), b"")) - 1
