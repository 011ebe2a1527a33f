"""Who owns a thing: the identity of a process (its host, PID and start time), and whether that process is gone.

Tracked runs, pipeline runs and scratch folders record the process that owns them, so a reader can tell a
live owner from a dead one after a SIGKILL or a power cut, when the owner had no chance to say it ended:

- on the **same machine** the PID is the evidence: the owner is gone when no process has that PID, or when
  the process that has it started at another time (a reused PID), or is a zombie. Wall-clock time plays no
  part, so a clock that jumps backwards cannot make a live owner look dead.
- a process on **another machine** (or in another PID namespace: a container) cannot be checked that way;
  its heartbeat's age decides, measured on one clock (see ``conveyor.store._heartbeat``).

"The same machine" means the same host name, boot and PID namespace, folded into a short ``namespace``
digest; a process's ``key`` is ``<namespace>:<start ticks>``, e.g. ``3f9c0a51be:1234567`` (the start time in
clock ticks since boot from ``/proc/<pid>/stat``; empty where there is no ``/proc``: then only the PID counts).
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import re
import socket
from collections.abc import Collection
from dataclasses import dataclass
from pathlib import Path

__all__ = ["Owner", "Verdict", "judge", "left_by_a_gone_process", "owner_of_name", "this_process"]

_PROC = Path("/proc")
#: ``<prefix>-<namespace>-<pid>-<ticks>-<random>``: a scratch folder or temporary file named after its owner.
_NAMED = re.compile(r"^(?P<prefix>[a-z]+)-(?P<ns>[0-9a-f]{10})-(?P<pid>\d{1,10})-(?P<ticks>\d{1,20})-[A-Za-z0-9_]+$")


@dataclass(frozen=True)
class Owner:
    """A process: ``host`` (its host name, for people), ``pid``, and ``key`` (``namespace:start ticks``)."""

    host: str
    pid: int
    key: str

    @property
    def namespace(self) -> str:
        return self.key.partition(":")[0]

    @property
    def ticks(self) -> str:
        return self.key.partition(":")[2]

    def tag(self) -> str:
        """``<namespace>-<pid>-<ticks>``: the owner in a file name (ticks ``0`` when unknown)."""
        return f"{self.namespace}-{self.pid}-{self.ticks or 0}"


@dataclass(frozen=True)
class Verdict:
    """What the PID says about an owner: ``gone`` (with why), or alive; ``local`` is False when the owner runs
    elsewhere, where this machine cannot check its PID (its heartbeat must decide)."""

    local: bool
    gone: bool
    why: str = ""


_CACHED: tuple[int, Owner] | None = None


def this_process() -> Owner:
    """The identity of the calling process (computed once per process, again after a fork)."""
    global _CACHED  # noqa: PLW0603 - a per-process cache
    pid = os.getpid()
    if _CACHED is None or _CACHED[0] != pid:
        _CACHED = (pid, Owner(socket.gethostname(), pid, f"{_namespace()}:{_start_ticks(pid) or ''}"))
    return _CACHED[1]


def judge(host: str | None, pid: int | None, key: str | None) -> Verdict:
    """Whether the process recorded as ``host``/``pid``/``key`` is gone, as far as this machine can tell.

    A process recorded on this machine (same namespace) is gone when its PID is free, held by a zombie, or
    held by a process that started at another time. Anything else is not ``local``.
    """
    me = this_process()
    if pid is None or not host:
        return Verdict(local=False, gone=False)
    recorded_ns, _, recorded_ticks = (key or "").partition(":")
    same_machine = recorded_ns == me.namespace if recorded_ns else host == me.host
    if not same_machine:
        return Verdict(local=False, gone=False)
    if pid == me.pid and (not recorded_ticks or recorded_ticks == me.ticks):
        return Verdict(local=True, gone=False)
    why = _gone_because(pid, recorded_ticks)
    return Verdict(local=True, gone=bool(why), why=why)


def _gone_because(pid: int, recorded_ticks: str) -> str:
    """Why process ``pid`` of this machine, started at ``recorded_ticks``, is gone; ``""`` while it runs."""
    state, ticks = _stat(pid)
    if state is None:
        return "it no longer runs"
    if state in ("Z", "X"):
        return "it has exited (a zombie waiting for its parent)"
    if recorded_ticks and ticks and ticks != recorded_ticks:
        return f"it no longer runs (PID {pid} now belongs to another process)"
    return ""


def owner_of_name(name: str) -> tuple[str, Owner] | None:
    """``(prefix, owner)`` of a file or folder named by :meth:`Owner.tag` (``scratch-<tag>-<random>``), or ``None``
    for a name Conveyor did not make that way."""
    match = _NAMED.match(name)
    if match is None:
        return None
    ticks = match["ticks"]
    key = f"{match['ns']}:{'' if ticks == '0' else ticks}"
    return match["prefix"], Owner("", int(match["pid"]), key)


def left_by_a_gone_process(name: str, prefixes: Collection[str]) -> bool:
    """Whether ``name`` is a file or folder named after its owner (:meth:`Owner.tag`, one of ``prefixes``) by a
    process of this machine that is gone: what sweeps may remove. False for any other name, and for an owner that
    lives or runs on another machine."""
    named = owner_of_name(name)
    if named is None or named[0] not in prefixes:
        return False
    me, owner = this_process(), named[1]
    return owner.namespace == me.namespace and judge(me.host, owner.pid, owner.key).gone


def _namespace() -> str:
    """A digest of what makes PIDs comparable: host name, boot, PID namespace."""
    boot = ""
    with contextlib.suppress(OSError):
        boot = (_PROC / "sys/kernel/random/boot_id").read_text().strip()
    pidns = ""
    with contextlib.suppress(OSError):
        pidns = str((_PROC / "self/ns/pid").readlink())
    material = f"{socket.gethostname()}|{boot}|{pidns}".encode()
    return hashlib.sha256(material).hexdigest()[:10]


def _stat(pid: int) -> tuple[str | None, str]:
    """``(state, start ticks)`` of process ``pid`` (``(None, "")`` when there is no such process), read from
    ``/proc``; where ``/proc`` says nothing (none, or another user's process hidden by ``hidepid``), whether a
    signal could reach it (state ``?``, start unknown)."""
    if not _has_proc():
        return _signal_state(pid), ""
    try:
        text = (_PROC / str(pid) / "stat").read_text()
    except OSError:
        return _signal_state(pid), ""
    # the command name (field 2) is in parentheses and may hold spaces or parentheses: split after the last ')'
    fields = text[text.rfind(")") + 2 :].split()
    if len(fields) < 20:
        return _signal_state(pid), ""
    # after the name: state is field 3 and starttime field 22 of proc(5), i.e. indices 0 and 19 here
    return fields[0], fields[19]


def _signal_state(pid: int) -> str | None:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return None
    except PermissionError:
        return "?"
    return "?"


_PROC_PRESENT: bool | None = None


def _has_proc() -> bool:
    global _PROC_PRESENT  # noqa: PLW0603 - checked once per process
    if _PROC_PRESENT is None:
        _PROC_PRESENT = (_PROC / "self" / "stat").exists()
    return _PROC_PRESENT


def _start_ticks(pid: int) -> str:
    return _stat(pid)[1] if _has_proc() else ""
