"""Deleting asks first when a person is at a terminal (a real pseudo-terminal here), and never in a script."""

from __future__ import annotations

import os
import pty
import subprocess
import sys
import time
from pathlib import Path

from conveyor import Workspace


def _at_a_terminal(args: list[str], answer: bytes) -> tuple[int, str]:
    """Run ``conveyor ARGS`` with a pseudo-terminal for stdin/stdout/stderr, type ``answer``; exit code and output."""
    leader, follower = pty.openpty()
    process = subprocess.Popen(
        [sys.executable, "-m", "conveyor", *args],
        stdin=follower,
        stdout=follower,
        stderr=follower,
        env={**os.environ, "COLUMNS": "120"},
        close_fds=True,
    )
    os.close(follower)
    seen = b""
    deadline = time.monotonic() + 60
    answered = False
    while process.poll() is None and time.monotonic() < deadline:
        try:
            chunk = os.read(leader, 4096)
        except OSError:
            break
        seen += chunk
        if not answered and b"[y/N]" in seen:
            os.write(leader, answer + b"\n")
            answered = True
    process.wait(30)
    os.close(leader)
    return process.returncode, seen.decode(errors="replace")


def test_delete_asks_on_a_terminal_and_goes_ahead_in_a_script(tmp_path: Path, cli) -> None:  # type: ignore[no-untyped-def]
    home = str(tmp_path / "ws")
    with Workspace.open(home) as ws:
        ws.endpoints.create("e")
    code, output = _at_a_terminal(["--home", home, "endpoints", "delete", "e"], b"n")
    assert code == 1 and "Delete endpoint e and its deployments? [y/N]" in output and "Nothing was deleted" in output
    with Workspace.open(home) as ws:
        assert [e.name for e in ws.endpoints.list()] == ["e"]
    code, output = _at_a_terminal(["--home", home, "endpoints", "delete", "e"], b"y")
    assert code == 0 and "deleted e" in output
    with Workspace.open(home) as ws:
        ws.endpoints.create("f")
    assert cli("--home", home, "endpoints", "delete", "f").code == 0  # no terminal: no question
    missing = cli("--home", home, "endpoints", "delete", "nope", "--yes")
    assert missing.code != 0 and "nope" in missing.err
