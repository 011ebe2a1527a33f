"""SQL ingestion SIGKILLed mid-ingest (``conveyor data ingest --store … --query … --incremental-column id``), from
PostgreSQL and from a SQLite file: no half-written version, the watermark not moved, no scratch after the next
open, no database session left, and the next ingest reads exactly the rows the killed one did not commit."""

from __future__ import annotations

import random
import sqlite3
import subprocess
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from conveyor import Workspace
from tests.conftest import wait_until
from tests.faults._chaos import LONG, cli_json, long_only, sigkill, start_cli, tree_bytes

pytestmark = pytest.mark.chaos

QUERY = "SELECT * FROM orders"
FIRST = 20_000  # rows of the first, whole ingest
MORE = 250_000 if not LONG else 1_000_000  # rows added before a killed ingest (250,000: ~1 s to read on PostgreSQL)


class Source:
    """A database holding ``orders`` (id 1..n, no gaps), registered in the workspace as datastore ``src``."""

    def __init__(self, url: str, add_rows: Callable[[int, int], None], sessions: Callable[[], int]) -> None:
        self.url, self.n = url, 0
        self._add_rows, self.sessions = add_rows, sessions

    def add(self, rows: int) -> None:
        self._add_rows(self.n + 1, self.n + rows)
        self.n += rows


@pytest.fixture
def postgres_source(postgres_url: str) -> Iterator[Source]:
    import sqlalchemy as sa

    engine = sa.create_engine(postgres_url, isolation_level="AUTOCOMMIT")
    name = engine.url.database
    with engine.connect() as conn:
        conn.execute(sa.text("CREATE TABLE orders (id BIGINT PRIMARY KEY, customer INT, amount FLOAT8, note TEXT)"))

    def add_rows(first: int, last: int) -> None:
        with engine.connect() as conn:
            conn.execute(
                sa.text(
                    "INSERT INTO orders SELECT g, (g * 7) % 1000, g * 0.01, md5(g::text) "
                    "FROM generate_series(CAST(:a AS BIGINT), CAST(:b AS BIGINT)) g"
                ),
                {"a": first, "b": last},
            )

    def sessions() -> int:
        """Sessions on the source database other than this fixture's own."""
        with engine.connect() as conn:
            query = "SELECT count(*) FROM pg_stat_activity WHERE datname = :d AND pid <> pg_backend_pid()"
            return int(conn.execute(sa.text(query), {"d": name}).scalar_one())

    yield Source(postgres_url.replace("postgresql+psycopg://", "postgresql://"), add_rows, sessions)
    engine.dispose()


@pytest.fixture
def sqlite_source(tmp_path: Path) -> Source:
    path = tmp_path / "source.db"
    with sqlite3.connect(path) as conn:
        conn.execute("CREATE TABLE orders (id INTEGER PRIMARY KEY, customer INT, amount REAL, note TEXT)")

    def add_rows(first: int, last: int) -> None:
        with sqlite3.connect(path) as conn:
            conn.executemany(
                "INSERT INTO orders VALUES (?, ?, ?, ?)",
                ((i, (i * 7) % 1000, i * 0.01, f"n{i:010d}") for i in range(first, last + 1)),
            )

    return Source(f"sqlite:///{path}", add_rows, lambda: 0)


def _ingest_args(home: Path) -> list[str]:
    ingest = ["data", "ingest", "--store", "src", "--query", QUERY, "--name", "orders", "--incremental-column", "id"]
    return ["--home", str(home), *ingest]


def _first_ingest(home: Path, source: Source) -> None:
    source.add(FIRST)
    with Workspace.open(home) as ws:
        ws.datastores.add("src", source.url)
        first = ws.data.ingest(name="orders", store="src", query=QUERY, incremental_column="id").version
        assert (first.version, first.rows) == (1, FIRST)


def _scratch_entries(home: Path) -> list[Path]:
    tmp = home / "artifacts" / "tmp"
    return list(tmp.iterdir()) if tmp.exists() else []


def _part_written(home: Path) -> bool:
    return any((entry / "part-00000.parquet").exists() for entry in _scratch_entries(home) if entry.is_dir())


def _after_the_kill(home: Path, source: Source, committed: int) -> int:
    """What every kill must leave: the database session gone, no scratch after the next open, and the asset at
    whole versions only (``committed`` rows, or the killed ingest's whole version if it got that far).
    Returns the rows the asset now holds."""
    killed = time.monotonic()
    wait_until(lambda: source.sessions() == 0, timeout=15, what="the killed ingest's database session to end")
    print(f"the database session ended {time.monotonic() - killed:.2f} s after the kill")
    with Workspace.open(home) as ws:
        assert tree_bytes(home / "artifacts" / "tmp") == 0, "opening the workspace reclaimed the dead scratch"
        versions = ws.data.versions("orders")
        for version in versions:
            assert (
                ws.data.query(f'SELECT count(*) AS n FROM "orders:{version.version}"').records()[0]["n"] == version.rows
            ), "a version holds every row it records: none is half-written"
        rows = versions[0].rows if versions else 0
        assert rows in (committed, source.n), f"{rows} rows: neither before ({committed}) nor after the kill"
    return rows


def _second_ingest(home: Path, source: Source, log: Path) -> subprocess.Popen[bytes]:
    """A first whole ingest, MORE rows added at the source, then the ingest to be killed, started."""
    _first_ingest(home, source)
    source.add(MORE)
    return start_cli(*_ingest_args(home), log=log)


def _assert_exactly_once(home: Path, source: Source) -> None:
    """The next ingest catches up: the asset holds each source row once, ids 1..n."""
    resumed = cli_json(*_ingest_args(home))
    assert isinstance(resumed, dict)
    with Workspace.open(home) as ws:
        counts = ws.data.query(
            "SELECT count(*) AS n, count(DISTINCT id) AS ids, min(id) AS lo, max(id) AS hi FROM orders"
        ).records()[0]
        assert counts == {"n": source.n, "ids": source.n, "lo": 1, "hi": source.n}, (counts, resumed)
        assert tree_bytes(home / "artifacts" / "tmp") == 0


@pytest.mark.postgres
def test_a_postgres_ingest_killed_while_reading_commits_nothing_and_the_next_reads_the_rest(
    tmp_path: Path, postgres_source: Source
) -> None:
    home = tmp_path / "ws"
    ingest = _second_ingest(home, postgres_source, tmp_path / "log")
    wait_until(
        lambda: postgres_source.sessions() > 0 and _scratch_entries(home),
        timeout=60,
        interval=0.01,
        what="the ingest to query the source",
    )
    time.sleep(0.3)  # into the read: rows are streaming from the server
    assert ingest.poll() is None, "the kill lands mid-ingest"
    sigkill(ingest)
    assert _scratch_entries(home), "the killed ingest left its scratch folder (swept below)"
    assert _after_the_kill(home, postgres_source, FIRST) == FIRST
    with Workspace.open(home) as ws:
        assert [v.version for v in ws.data.versions("orders")] == [1]
    _assert_exactly_once(home, postgres_source)


def test_a_sqlite_ingest_killed_while_writing_its_part_leaves_a_whole_version_or_none(
    tmp_path: Path, sqlite_source: Source
) -> None:
    home = tmp_path / "ws"
    ingest = _second_ingest(home, sqlite_source, tmp_path / "log")
    wait_until(lambda: _part_written(home), timeout=60, interval=0.002, what="the ingest to write its Parquet part")
    if ingest.poll() is None:
        sigkill(ingest)
    _after_the_kill(home, sqlite_source, FIRST)
    _assert_exactly_once(home, sqlite_source)


@pytest.mark.postgres
@long_only
def test_postgres_ingests_killed_at_random_moments_lose_and_duplicate_nothing(
    tmp_path: Path, postgres_source: Source
) -> None:
    """Rows arrive between kills; each killed ingest lands at a random moment (connecting, reading, writing,
    committing, after the end). Whatever was committed, the next ingest completes the asset exactly once."""
    kills = 6
    rng = random.Random(15)
    home = tmp_path / "ws"
    _first_ingest(home, postgres_source)
    committed = FIRST
    for _ in range(kills):
        postgres_source.add(rng.randint(MORE // 4, MORE))
        ingest = start_cli(*_ingest_args(home), log=tmp_path / "log")
        time.sleep(rng.uniform(0.5, 6.0))
        if ingest.poll() is None:
            sigkill(ingest)
        committed = _after_the_kill(home, postgres_source, committed)
    _assert_exactly_once(home, postgres_source)
    print(f"{kills} ingests killed; {postgres_source.n:,} rows ingested exactly once")
