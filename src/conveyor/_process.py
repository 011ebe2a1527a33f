"""Checking on and stopping the processes Conveyor starts (pipeline runners, endpoint supervisors)."""

from __future__ import annotations

import contextlib
import os
import signal
import time

__all__ = ["alive", "terminate"]


def alive(pid: int) -> bool:
    """Whether process ``pid`` runs; a finished child of this process is reaped (a zombie is not alive)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    with contextlib.suppress(ChildProcessError, OSError):
        finished, _ = os.waitpid(pid, os.WNOHANG)
        if finished == pid:
            return False
    return True


def terminate(pid: int, timeout: float) -> None:
    """SIGTERM (the process drains its work), then SIGKILL of its process group after ``timeout``."""
    if not alive(pid):
        return
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if not alive(pid):
            return
        time.sleep(0.05)
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pid, signal.SIGKILL)
