"""Governance costs: what authentication adds to a control-plane request, what the audit log adds to a
mutating call, and how long verifying a million audit entries takes.

Each is measured side by side with the same thing without it, in the same run: a server with tokens and one
with ``--no-auth`` on the same workspace; the same writes with the audit hook and without it.
"""

from __future__ import annotations

import os
import shutil
import socket
import statistics
import subprocess
import sys
import time
from pathlib import Path

from benchmarks._harness import ROOT, Context, Result, Side

REQUESTS = 3_000
WRITES = 500
AUDIT_ENTRIES = 1_000_000


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _serve(ctx: Context, home: Path, *, auth: bool) -> tuple[subprocess.Popen[bytes], str]:
    port = _free_port()
    command = [str(ctx.conveyor_bin()), "--home", str(home), "server", "--port", str(port), "--no-scheduler"]
    if not auth:
        command.append("--no-auth")
    process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, cwd=ROOT)
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 60
    import httpx

    while time.monotonic() < deadline:
        try:
            if httpx.get(f"{url}/api/v1/health", timeout=1).status_code == 200:
                return process, url
        except httpx.HTTPError:
            time.sleep(0.1)
    process.kill()
    raise RuntimeError("the server did not start")


def _latencies(url: str, token: str | None) -> list[float]:
    import httpx

    headers = {"Authorization": f"Bearer {token}"} if token else {}
    samples = []
    with httpx.Client(base_url=url, headers=headers) as client:
        for _ in range(200):  # warm the connection, the token cache and the route
            client.get("/api/v1/me")
        for _ in range(REQUESTS):
            started = time.perf_counter()
            response = client.get("/api/v1/me")
            samples.append(time.perf_counter() - started)
            if response.status_code != 200:
                raise RuntimeError(response.text)
    return samples


def run_auth(ctx: Context) -> Result:
    from conveyor import Workspace

    home = ctx.work / "ws"
    with Workspace.open(home) as ws:
        issued = ws.identities.bootstrap()
        assert issued is not None
    with_auth, without = [], []
    for _ in range(ctx.repeat):
        for auth, into in ((True, with_auth), (False, without)):
            process, url = _serve(ctx, home, auth=auth)
            try:
                into.append(statistics.median(_latencies(url, issued.secret if auth else None)) * 1000)
            finally:
                process.terminate()
                process.wait(30)
    conveyor = Side("token checked", with_auth, "ms")
    peer = Side("--no-auth", without, "ms")
    added = statistics.median(with_auth) - statistics.median(without)
    return Result(
        name="governance-auth",
        title="Control plane: median latency of GET /api/v1/me with a token vs --no-auth",
        conveyor=conveyor,
        peer=peer,
        better="lower",
        target="auth adds ≤ 0.2 ms per request",
        met=added <= 0.2,
        notes=[
            f"Auth adds {added:.3f} ms per request (median of {REQUESTS:,} sequential keep-alive requests per "
            "sample, after 200 warm-up requests); a token's check is cached for 2 s."
        ],
    )


def run_audit_append(ctx: Context) -> Result:
    from conveyor import Workspace

    with_audit, without = [], []
    for i in range(ctx.repeat):
        with Workspace.open(ctx.work / f"ws-{i}") as ws:
            ws.identities.add_user("u", "reader")
            hook = ws.store._on_write
            for enabled, into in ((True, with_audit), (False, without)):
                ws.store.on_write(hook if enabled else None)
                started = time.perf_counter()
                for n in range(WRITES):
                    ws.identities.set_role("u", "reader" if n % 2 else "operator")
                into.append((time.perf_counter() - started) / WRITES * 1000)
            ws.store.on_write(hook)
    added = statistics.median(with_audit) - statistics.median(without)
    return Result(
        name="governance-audit-append",
        title="Audit log: a mutating call (change a user's role) with and without the audit append",
        conveyor=Side("with the audit append", with_audit, "ms"),
        peer=Side("without", without, "ms"),
        better="lower",
        target="an audit append adds ≤ 1 ms",
        met=added <= 1.0,
        notes=[f"The append adds {added:.3f} ms per call (SQLite, {WRITES} calls per sample, one transaction each)."],
    )


def _fill(ws_home: Path, entries: int) -> None:
    """Append ``entries`` chained entries in bulk (the same hashes the hook writes, without the services)."""
    from datetime import UTC, datetime, timedelta

    import sqlalchemy as sa

    from conveyor import Workspace
    from conveyor.governance._audit import GENESIS, entry_hash, stamp
    from conveyor.store._schema import AuditEventRow

    with Workspace.open(ws_home) as ws:
        table = AuditEventRow.__table__
        prev, start = GENESIS, datetime(2026, 1, 1, tzinfo=UTC)
        batch = []
        with ws.store.engine.begin() as conn:
            for seq in range(1, entries + 1):
                at = stamp(start + timedelta(milliseconds=seq))
                targets = f'[["data_versions","insert","{seq:026d}"]]'
                action = "POST /api/v1/data/{name}/ingest"
                digest = entry_hash(prev, seq, at, "ana", "data-scientist", "api:10.0.0.7", action, targets)
                batch.append(
                    {
                        "seq": seq,
                        "at": at,
                        "actor": "ana",
                        "role": "data-scientist",
                        "source": "api:10.0.0.7",
                        "action": action,
                        "targets": targets,
                        "prev_hash": prev,
                        "hash": digest,
                    }
                )
                prev = digest
                if len(batch) == 50_000:
                    conn.execute(sa.insert(table), batch)
                    batch = []
            if batch:
                conn.execute(sa.insert(table), batch)


def run_audit_verify(ctx: Context) -> Result:
    from conveyor import Workspace

    home = ctx.work / "ws"
    _fill(home, AUDIT_ENTRIES)
    samples = []
    for _ in range(ctx.repeat):
        with Workspace.open(home) as ws:
            result = ws.audit.verify()
        if not result.ok or result.entries != AUDIT_ENTRIES:
            raise RuntimeError(f"verify failed: {result}")
        samples.append(result.seconds)
    shutil.rmtree(home, ignore_errors=True)
    median = statistics.median(samples)
    return Result(
        name="governance-audit-verify",
        title=f"Audit log: verify the hash chain of {AUDIT_ENTRIES:,} entries (SQLite)",
        conveyor=Side("conveyor audit verify", samples, "s"),
        peer=None,
        better="lower",
        target="≤ 5 s",
        met=median <= 5.0,
        notes=[f"Python {sys.version.split()[0]}, {os.cpu_count()} cores; each entry re-hashed from its fields."],
    )
