"""The audit log: every write from every face appended in its transaction, a chain that names tampering."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

import pyarrow as pa
import pytest
import sqlalchemy as sa
from hypothesis import given, settings
from hypothesis import strategies as st

from conveyor import Workspace
from conveyor.governance import acting_as, local_principal
from conveyor.governance._audit import GENESIS, entry_hash
from conveyor.store._schema import AuditEventRow, UserRow


def _some_changes(ws: Workspace, n: int) -> None:
    for i in range(n):
        ws.data.commit_table(pa.table({"i": [i]}), name="audited", source={"kind": "test"})


def test_each_write_unit_is_one_entry_with_its_rows(any_workspace: Workspace) -> None:
    ws = any_workspace
    version, _ = ws.data.commit_table(pa.table({"x": [1, 2]}), name="facts", source={"kind": "test"})
    entry = ws.audit.list(limit=1)[0]
    assert entry.seq == 1
    assert entry.role == "admin" and entry.source.startswith("sdk@")
    assert ["data_versions", "insert", version.id] in entry.targets
    assert all(t[0] not in ("lineage_edges", "audit_events") for t in entry.targets)
    with acting_as(local_principal("cli", action="conveyor data ingest")):
        ws.data.commit_table(pa.table({"x": [3]}), name="facts", source={"kind": "test"})
    assert ws.audit.list(limit=1)[0].action == "conveyor data ingest"
    # a unit that changes nothing, or only bookkeeping, appends nothing
    with ws.store.write():
        pass
    with ws.runs.start("exp") as run:
        before = ws.audit.verify().entries
        for step in range(100):
            run.log_metric("loss", 1.0 / (step + 1), step=step)
    ws.runs.close()
    after = ws.audit.list(limit=5)
    assert all("run_metric_chunks" not in str(e.targets) for e in after)
    assert ws.audit.verify().entries - before <= 2  # the run's end, not 100 metric writes


def test_a_failed_write_leaves_no_entry(workspace: Workspace) -> None:
    _some_changes(workspace, 2)
    with pytest.raises(RuntimeError), workspace.store.write() as session:
        session.add(UserRow(name="ghost", role="reader"))
        session.flush()  # the change is tracked (it would be an entry) before the unit fails
        raise RuntimeError("boom")
    assert workspace.audit.verify().entries == 2
    assert workspace.identities.users() == []


def _tamper(ws: Workspace, statement: str) -> None:
    with ws.store.engine.begin() as conn:
        conn.execute(sa.text(statement))


def test_verify_names_the_first_edited_deleted_or_inserted_entry(any_workspace: Workspace) -> None:
    ws = any_workspace
    _some_changes(ws, 6)
    result = ws.audit.verify()
    assert result.ok and result.entries == 6 and result.head_seq == 6 and result.problem is None

    _tamper(ws, "UPDATE audit_events SET actor = 'mallory' WHERE seq = 3")
    result = ws.audit.verify()
    assert not result.ok and result.first_bad == 3 and "entry 3 was edited" in (result.problem or "")
    assert result.entries == 2
    _tamper(ws, f"UPDATE audit_events SET actor = '{ws.actor}' WHERE seq = 3")
    assert ws.audit.verify().ok

    # a forger who recomputes the edited entry's hash still breaks the next link
    with ws.store.read() as session:
        row = session.scalars(sa.select(AuditEventRow).where(AuditEventRow.seq == 4)).one()
        forged = entry_hash(row.prev_hash, 4, row.at, "mallory", row.role, row.source, row.action, row.targets)
    _tamper(ws, f"UPDATE audit_events SET actor = 'mallory', hash = '{forged}' WHERE seq = 4")
    result = ws.audit.verify()
    assert result.first_bad == 5 and "does not link to entry 4" in (result.problem or "")

    _tamper(ws, "DELETE FROM audit_events WHERE seq = 2")
    result = ws.audit.verify()
    assert result.first_bad == 3 and "entry 2 is missing" in (result.problem or "")


def test_deleting_a_range_and_inserting_are_named(workspace: Workspace) -> None:
    _some_changes(workspace, 6)
    _tamper(workspace, "DELETE FROM audit_events WHERE seq IN (2, 3)")
    result = workspace.audit.verify()
    assert result.first_bad == 4 and "entries 2–3 are missing" in (result.problem or "")


def test_an_inserted_entry_breaks_the_chain(workspace: Workspace) -> None:
    _some_changes(workspace, 3)
    _tamper(workspace, "UPDATE audit_events SET seq = seq + 1 WHERE seq = 3")
    _tamper(workspace, "UPDATE audit_events SET seq = seq + 1 WHERE seq = 2")
    with workspace.store.read() as session:
        first = session.scalars(sa.select(AuditEventRow).where(AuditEventRow.seq == 1)).one()
        at, prev = first.at, first.hash
    digest = entry_hash(prev, 2, at, "mallory", "admin", "sdk", "insert nothing", "[]")
    row = {"at": at, "actor": "mallory", "role": "admin", "source": "sdk", "action": "insert nothing"}
    with workspace.store.engine.begin() as conn:
        conn.execute(sa.insert(AuditEventRow.__table__).values(seq=2, targets="[]", prev_hash=prev, hash=digest, **row))
    result = workspace.audit.verify()
    assert result.first_bad == 3 and "does not link to entry 2" in (result.problem or "")


WRITER = textwrap.dedent(
    """
    import sys
    import pyarrow as pa
    from conveyor import Workspace
    ws = Workspace.open(sys.argv[1], db_url=sys.argv[2])
    for i in range(int(sys.argv[3])):
        ws.data.commit_table(pa.table({"w": [sys.argv[4]], "i": [i]}), name="shared", source={"kind": "t"})
        ws.identities.add_user(f"u-{sys.argv[4]}-{i}", "reader")
    ws.close()
    """
)


def test_concurrent_writers_keep_one_unbroken_chain(tmp_path: Path, db_url: str) -> None:
    home = tmp_path / "ws"
    Workspace.open(home, db_url=db_url).close()
    script = tmp_path / "writer.py"
    script.write_text(WRITER)
    processes = [
        subprocess.Popen([sys.executable, str(script), str(home), db_url, "15", str(w)], stderr=subprocess.PIPE)
        for w in range(3)
    ]
    for p in processes:
        _, err = p.communicate(timeout=300)
        assert p.returncode == 0, err.decode()
    with Workspace.open(home, db_url=db_url) as ws:
        result = ws.audit.verify()
        assert result.ok, result.problem
        assert result.entries == 3 * 15 * 2


@settings(max_examples=30, deadline=None)
@given(
    actor=st.text(max_size=20),
    action=st.text(max_size=40),
    targets=st.lists(st.tuples(st.text(max_size=8), st.sampled_from(["insert", "update"]), st.text(max_size=8))),
)
def test_the_entry_hash_covers_every_field(actor: str, action: str, targets: list[tuple[str, str, str]]) -> None:
    import orjson

    at = "2026-01-02T03:04:05.678901Z"
    text = orjson.dumps([list(t) for t in targets]).decode()
    base = entry_hash(GENESIS, 7, at, actor, "admin", "sdk", action, text)
    assert base == entry_hash(GENESIS, 7, at, actor, "admin", "sdk", action, text)
    assert base != entry_hash(GENESIS, 8, at, actor, "admin", "sdk", action, text)
    assert base != entry_hash("1" * 64, 7, at, actor, "admin", "sdk", action, text)
    assert base != entry_hash(GENESIS, 7, at.replace("05", "06"), actor, "admin", "sdk", action, text)
    assert base != entry_hash(GENESIS, 7, at, actor + "x", "admin", "sdk", action, text)
    assert base != entry_hash(GENESIS, 7, at, actor, "reader", "sdk", action, text)
    assert base != entry_hash(GENESIS, 7, at, actor, "admin", "sdk", action + "x", text)
    assert base != entry_hash(GENESIS, 7, at, actor, "admin", "sdk", action, text + " ")


def test_the_cli_records_the_os_user_and_the_command(tmp_path: Path, cli) -> None:  # type: ignore[no-untyped-def]
    home = str(tmp_path / "ws")
    assert cli("--home", home, "init").code == 0
    assert cli("--home", home, "users", "add", "ana", "--role", "operator").code == 0
    listed = cli("--home", home, "audit", "list", "--json").json["events"]
    assert listed[0]["action"] == "conveyor users add"
    assert listed[0]["source"].startswith("cli@")
    verified = cli("--home", home, "audit", "verify", "--json")
    assert verified.code == 0 and verified.json["verification"]["ok"] is True
    with Workspace.open(home) as ws:
        _tamper(ws, "UPDATE audit_events SET role = 'reader' WHERE seq = 1")
    broken = cli("--home", home, "audit", "verify")
    assert broken.code == 1 and "entry 1 was edited" in broken.out
