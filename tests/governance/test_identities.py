"""Users, roles and tokens in the service layer, and their commands."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

import pytest
import sqlalchemy as sa

from conveyor import Workspace
from conveyor.errors import BadInput, Conflict, NotFound, Unauthorized
from conveyor.governance import parse_duration
from conveyor.store._schema import TokenRow


def test_tokens_are_stored_as_hashes_and_identify_their_user(workspace: Workspace) -> None:
    workspace.identities.add_user("ana", "data-scientist")
    issued = workspace.identities.create_token("ana", name="laptop")
    assert issued.secret.startswith("cvy_") and len(issued.secret) == 47
    with workspace.store.read() as session:
        stored = session.scalars(sa.select(TokenRow)).one()
        assert issued.secret not in (stored.hash, stored.prefix) and stored.prefix == issued.secret[:12]
    caller = workspace.identities.authenticate(issued.secret)
    assert (caller.name, caller.role) == ("ana", "data-scientist")
    assert workspace.identities.tokens("ana")[0].last_used_at is not None


def test_users_and_roles_refuse_bad_input(workspace: Workspace) -> None:
    workspace.identities.add_user("ana", "reader")
    with pytest.raises(Conflict, match="exists"):
        workspace.identities.add_user("ana", "admin")
    with pytest.raises(BadInput, match="Did you mean 'operator'"):
        workspace.identities.add_user("bo", "operater")
    with pytest.raises(NotFound, match="Did you mean 'ana'"):
        workspace.identities.create_token("anna")
    with pytest.raises(BadInput):
        workspace.identities.add_user("../root", "admin")
    workspace.identities.disable("ana")
    with pytest.raises(Conflict, match="disabled"):
        workspace.identities.create_token("ana")


def test_a_role_change_applies_to_existing_tokens(workspace: Workspace) -> None:
    workspace.identities.add_user("op", "reader")
    secret = workspace.identities.create_token("op").secret
    assert workspace.identities.authenticate(secret).role == "reader"
    workspace.identities.set_role("op", "operator")
    assert workspace.identities.authenticate(secret).role == "operator"


def test_another_process_revoking_takes_effect_within_the_cache_window(tmp_path: Path) -> None:
    from conveyor.governance._identities import CACHE_SECONDS
    from tests.conftest import wait_until

    server_side = Workspace.open(tmp_path / "ws")
    cli_side = Workspace.open(tmp_path / "ws")
    server_side.identities.add_user("eve", "reader")
    issued = server_side.identities.create_token("eve")
    server_side.identities.authenticate(issued.secret)
    cli_side.identities.revoke(issued.token.id)

    def refused() -> bool:
        try:
            server_side.identities.authenticate(issued.secret)
        except Unauthorized:
            return True
        return False

    wait_until(refused, timeout=CACHE_SECONDS + 5, what="the revoked token to be refused")
    server_side.close()
    cli_side.close()


def test_bootstrap_makes_the_first_admin_once(workspace: Workspace) -> None:
    first = workspace.identities.bootstrap()
    assert first is not None and workspace.identities.authenticate(first.secret).role == "admin"
    assert workspace.identities.bootstrap() is None


@pytest.mark.parametrize(
    ("text", "expected"),
    [("30d", timedelta(days=30)), ("12h", timedelta(hours=12)), ("2w", timedelta(weeks=2)), ("never", None)],
)
def test_durations(text: str, expected: timedelta | None) -> None:
    assert parse_duration(text) == expected


@pytest.mark.parametrize("text", ["soon", "-1d", "10y", "1.5d", ""])
def test_bad_durations(text: str) -> None:
    with pytest.raises(BadInput, match="30d"):
        parse_duration(text)


def test_the_commands(tmp_path: Path, cli, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    home = str(tmp_path / "ws")
    made = cli("--home", home, "init", "--json")
    assert made.code == 0
    admin_token = made.json["admin"]["token"]
    assert admin_token.startswith("cvy_")
    again = cli("--home", home, "init", "--json")
    assert "admin" not in again.json  # the first token is shown once
    added = cli("--home", home, "users", "add", "ana", "--role", "operator", "--token", "--json")
    assert added.code == 0 and added.json["user"]["role"] == "operator" and added.json["token"].startswith("cvy_")
    bad = cli("--home", home, "users", "add", "bo", "--role", "boss")
    assert bad.code == 2 and "Unknown role 'boss'" in bad.err
    tokens = cli("--home", home, "tokens", "list", "--json").json["tokens"]
    assert len(tokens) == 2 and all(admin_token not in str(t) for t in tokens)
    created = cli("--home", home, "tokens", "create", "--user", "ana", "--expires", "12h", "--json")
    assert created.code == 0
    revoked = cli("--home", home, "tokens", "revoke", created.json["token"]["prefix"], "--json")
    assert revoked.code == 0 and revoked.json["token"]["status"] == "revoked"
    assert cli("--home", home, "tokens", "revoke", "nope").code == 2
    disabled = cli("--home", home, "users", "disable", "ana", "--json")
    assert disabled.json["user"]["disabled"] is True
    listed = cli("--home", home, "users", "list")
    assert "disabled" in listed.out and "ana" in listed.out
    # A password for the studio, read from standard input; too short is bad input; --clear removes it.
    import io

    monkeypatch.setattr("sys.stdin", io.StringIO("too short\n"))
    short = cli("--home", home, "users", "password", "ana", "--password-stdin")
    assert short.code == 2 and "at least 10 characters" in short.err
    monkeypatch.setattr("sys.stdin", io.StringIO("a phrase long enough\n"))
    set_ = cli("--home", home, "users", "password", "ana", "--password-stdin", "--json")
    assert set_.code == 0 and set_.json["user"]["has_password"] is True
    assert "a phrase long enough" not in set_.out
    monkeypatch.setattr("sys.stdin", io.StringIO(""))
    assert cli("--home", home, "users", "password", "nobody").code == 2  # a typo is told before any prompt
    cleared = cli("--home", home, "users", "password", "ana", "--clear", "--json")
    assert cleared.json["user"]["has_password"] is False


def test_tokens_create_on_a_workspace_without_users_makes_you_its_first_admin(tmp_path: Path, cli) -> None:  # type: ignore[no-untyped-def]
    home = tmp_path / "ws"
    Workspace.open(home).close()  # made by the SDK (or quickstart --no-serve): no users yet
    made = cli("--home", str(home), "tokens", "create", "--json")
    assert made.code == 0, made.err
    with Workspace.open(home) as ws:
        (user,) = ws.identities.users()
        assert user.role == "admin" and made.json["token"]["user"] == user.name
        assert ws.identities.authenticate(made.json["secret"]).name == user.name
    again = cli("--home", str(home), "tokens", "create", "--json")
    assert again.code == 0 and again.json["token"]["user"] == user.name  # no second admin
