"""Secrets: encrypted at rest with a key outside the database, never shown, refused with a loose key file."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import sqlalchemy as sa
from cryptography.fernet import Fernet

from conveyor import Workspace
from conveyor.errors import BadInput, InvalidConfig, NotFound
from conveyor.store._schema import SecretRow


def test_a_secret_is_stored_encrypted_and_revealed_only_by_name(workspace: Workspace) -> None:
    info = workspace.secrets.set("warehouse-pw", "s3cr3t-value", description="reader")
    assert info.name == "warehouse-pw" and not hasattr(info, "value")
    with workspace.store.read() as session:
        stored = session.scalar(sa.select(SecretRow.ciphertext))
    assert stored and "s3cr3t-value" not in stored
    raw = Path(workspace.settings.home, "conveyor.db").read_bytes()
    assert b"s3cr3t-value" not in raw
    assert workspace.secrets.reveal("warehouse-pw") == "s3cr3t-value"
    workspace.secrets.set("warehouse-pw", "rotated")
    assert workspace.secrets.reveal("warehouse-pw") == "rotated"
    assert [s.name for s in workspace.secrets.list()] == ["warehouse-pw"]
    key = Path(workspace.settings.home, "secret.key")
    assert oct(key.stat().st_mode & 0o777) == "0o600"
    # nothing about the value in the audit log either
    assert "rotated" not in str(workspace.audit.list(limit=10))


def test_missing_and_bad_secrets(workspace: Workspace) -> None:
    with pytest.raises(NotFound, match="conveyor secrets set warehouse"):
        workspace.secrets.reveal("warehouse")
    with pytest.raises(BadInput, match="empty"):
        workspace.secrets.set("x", "")
    with pytest.raises(BadInput, match="64 KiB"):
        workspace.secrets.set("x", "a" * 70_000)
    with pytest.raises(BadInput):
        workspace.secrets.set("../etc", "v")


def test_a_key_file_others_can_read_is_refused(tmp_path: Path) -> None:
    with Workspace.open(tmp_path / "ws") as ws:
        ws.secrets.set("a", "b")
        key = Path(ws.settings.home, "secret.key")
    os.chmod(key, 0o644)
    with Workspace.open(tmp_path / "ws") as ws, pytest.raises(InvalidConfig, match="chmod 600"):
        ws.secrets.reveal("a")


def test_the_wrong_key_says_so(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    with Workspace.open(tmp_path / "ws") as ws:
        ws.secrets.set("a", "b")
    monkeypatch.setenv("CONVEYOR_SECRET_KEY", Fernet.generate_key().decode())
    with Workspace.open(tmp_path / "ws") as ws, pytest.raises(InvalidConfig, match="another key"):
        ws.secrets.reveal("a")
    monkeypatch.setenv("CONVEYOR_SECRET_KEY", "not-a-key")
    with Workspace.open(tmp_path / "ws") as ws, pytest.raises(InvalidConfig, match="not a Fernet key"):
        ws.secrets.reveal("a")


def test_a_shared_key_from_the_environment_works_across_homes(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CONVEYOR_SECRET_KEY", Fernet.generate_key().decode())
    db = f"sqlite:///{tmp_path / 'shared.db'}"
    with Workspace.open(tmp_path / "one", db_url=db) as ws:
        ws.secrets.set("a", "shared")
        assert not Path(ws.settings.home, "secret.key").exists()
    with Workspace.open(tmp_path / "two", db_url=db) as ws:
        assert ws.secrets.reveal("a") == "shared"


def test_seal_and_unseal(workspace: Workspace) -> None:
    sealed = workspace.secrets.seal("endpoint-key")
    assert sealed.startswith("enc:") and "endpoint-key" not in sealed
    assert workspace.secrets.unseal(sealed) == "endpoint-key"
    assert workspace.secrets.unseal("legacy-clear-value") == "legacy-clear-value"


def test_the_cli_reads_the_value_from_stdin_and_never_prints_it(tmp_path: Path) -> None:
    import subprocess
    import sys

    home = str(tmp_path / "ws")
    Workspace.open(home).close()
    env = {**os.environ, "CONVEYOR_HOME": home}
    done = subprocess.run(
        [sys.executable, "-m", "conveyor", "secrets", "set", "pw", "--json"],
        input="hunter2\n",
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    assert "hunter2" not in done.stdout + done.stderr
    listed = subprocess.run(
        [sys.executable, "-m", "conveyor", "secrets", "list"], capture_output=True, text=True, env=env, timeout=120
    )
    assert "pw" in listed.stdout and "hunter2" not in listed.stdout
    with Workspace.open(home) as ws:
        assert ws.secrets.reveal("pw") == "hunter2"


def test_datastores_reference_secrets_by_name(workspace: Workspace) -> None:
    from tests.conftest import PG_HOST, PG_PORT, require_service

    require_service("PostgreSQL", PG_HOST, PG_PORT)
    url = f"postgresql+psycopg://postgres@{PG_HOST}:{PG_PORT}/postgres"
    with pytest.raises(NotFound, match="conveyor secrets set pg-pw"):
        workspace.datastores.add("pg", url, credentials={"password": "secret:pg-pw"})
    workspace.secrets.set("pg-pw", "any (the test server trusts loopback)")
    store = workspace.datastores.add("pg", url, credentials={"password": "secret:pg-pw"})
    assert store.credentials == {"password": "secret:pg-pw"}
    with pytest.raises(BadInput, match="secret:NAME"):
        workspace.datastores.add("pg2", url, credentials={"password": "plain-value"})


def test_endpoint_keys_are_sealed_at_rest(workspace: Workspace) -> None:
    from conveyor.store._schema import EndpointRow

    workspace.endpoints.create("guarded")
    keys = workspace.endpoints.keys("guarded")
    with workspace.store.read() as session:
        row = session.scalars(sa.select(EndpointRow).filter_by(name="guarded")).one()
        stored = (row.primary_key or "", row.secondary_key or "")
    assert all(value.startswith("enc:") for value in stored)
    assert keys["primary"] not in stored[0] and keys["secondary"] not in stored[1]
    raw = Path(workspace.settings.home, "conveyor.db").read_bytes()
    assert keys["primary"].encode() not in raw
    renewed = workspace.endpoints.regenerate_key("guarded", "secondary")
    assert renewed["secondary"] != keys["secondary"] and renewed["primary"] == keys["primary"]
