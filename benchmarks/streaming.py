"""Streaming ingestion: MQTT QoS 1 and NATS JetStream messages per second into the lake, and zero loss across
a SIGKILL and restart while messages keep coming.

No peer: the figure is against the targets (MQTT ≥ 20,000 msg/s, NATS ≥ 50,000 msg/s). Each throughput run
starts `conveyor data stream ... --max-messages N` in its own process, then a publisher in another process
(`mosquitto_pub -l` for MQTT, a nats-py script for NATS); the rate is N over the seconds the command reports
(from its start, connection included, to the last commit). Everything stays on 127.0.0.1.

MQTT runs against a Mosquitto of its own on a free port, configured as a durable buffer should be
(`max_queued_messages 0`): with Mosquitto's default (1000 queued messages per client), a publisher faster than
the ingester loses messages in the broker. When no `mosquitto` binary is found it falls back to
127.0.0.1:1883 and paces the publisher. The ingester runs with its defaults, so at most `--max-in-flight`
(500) messages are out unacknowledged: the throughput is the one with the bound.

A second restart measurement is issue 15's case: a Mosquitto with its *default* limits, 20,000 QoS 1 messages
at 500 msg/s, the ingester SIGKILLed once and restarted at once (before the spool: 504 lost).

Run as a script, this module is the NATS publisher: ``python -m benchmarks.streaming nats-publish HOST PORT
SUBJECT FIRST COUNT RATE`` (RATE 0: as fast as possible).
"""

from __future__ import annotations

import asyncio
import contextlib
import getpass
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from benchmarks._harness import Context, Result, Side

MQTT_TARGET = 20_000.0
NATS_TARGET = 50_000.0
MQTT_MESSAGES = 200_000
NATS_MESSAGES = 500_000
RESTART_MESSAGES = 100_000
RESTART_RATE = 20_000.0
DEFAULT_LIMITS_MESSAGES = 20_000
DEFAULT_LIMITS_RATE = 500.0
NATS_PORT = 4222


def _line(i: int) -> bytes:
    return b'{"id":%d,"device":"d%d","temp":%.1f,"ok":%s}' % (
        i,
        i % 50,
        20.0 + (i % 100) / 10,
        b"true" if i % 3 else b"false",
    )


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _wait_port(port: int, timeout: float = 10) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                return
        except OSError:
            time.sleep(0.05)
    raise RuntimeError(f"nothing listens on 127.0.0.1:{port}")


@contextmanager
def _mosquitto(work: Path, *, default_limits: bool = False) -> Iterator[tuple[int, bool]]:
    """(port, own): a Mosquitto of our own with an unbounded queue (or its default limits), or the system one
    on 1883."""
    binary = shutil.which("mosquitto") or ("/usr/sbin/mosquitto" if Path("/usr/sbin/mosquitto").exists() else None)
    if binary is None:
        yield 1883, False
        return
    port = _free_port()
    conf = work / ("mosquitto-default.conf" if default_limits else "mosquitto.conf")
    limits = "" if default_limits else "max_queued_messages 0\nmax_inflight_messages 0\n"
    conf.write_text(
        f"listener {port} 127.0.0.1\nallow_anonymous true\npersistence false\n{limits}"
        f"user {getpass.getuser()}\nlog_dest none\n"
    )
    process = subprocess.Popen([binary, "-c", str(conf)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        _wait_port(port)
        yield port, True
    finally:
        process.terminate()
        process.wait(10)


def _conveyor(ctx: Context, home: Path, *args: str) -> list[str]:
    return [str(ctx.conveyor_bin()), "--home", str(home), "data", "stream", *args]


def _init(home: Path) -> Path:
    """A workspace at ``home`` (commands other than init open an existing one)."""
    from conveyor import Workspace

    Workspace.open(home).close()
    return home


def _run_json(command: list[str], timeout: float = 600) -> dict[str, Any]:
    done = subprocess.run(command, capture_output=True, text=True, timeout=timeout, check=False)
    if done.returncode != 0:
        raise RuntimeError(f"{' '.join(command)} failed ({done.returncode}):\n{done.stderr[-3000:]}")
    result: dict[str, Any] = json.loads(done.stdout.strip().splitlines()[-1])
    return result


def _ids(home: Path, name: str) -> list[int]:
    from conveyor import Workspace
    from conveyor.errors import NotFound

    ws = Workspace.open(home)
    try:
        return [int(i) for i in ws.data.read_table(name).column("id").to_pylist()]
    except NotFound:
        return []
    finally:
        ws.close()


def _rows(home: Path, name: str) -> int:
    from conveyor import Workspace
    from conveyor.errors import NotFound

    ws = Workspace.open(home)
    try:
        return ws.data.get(name).rows
    except NotFound:
        return 0
    finally:
        ws.close()


def _wait(condition: Any, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise RuntimeError(f"timed out waiting for {what}")
        time.sleep(0.1)


# -- publishers (separate processes) -------------------------------------------------------------------------


def _mqtt_publisher(port: int, topic: str, first: int, count: int, rate: float) -> subprocess.Popen[bytes]:
    """A separate process publishing ``count`` messages at QoS 1 (paced to ``rate`` msg/s when rate > 0)."""
    command = [sys.executable, "-m", "benchmarks.streaming", "mqtt-publish", str(port), topic]
    return subprocess.Popen([*command, str(first), str(count), str(rate)], cwd=Path(__file__).resolve().parent.parent)


def _varint(n: int) -> bytes:
    out = bytearray()
    while True:
        n, byte = n >> 7, n & 0x7F
        out.append(byte | (0x80 if n else 0))
        if not n:
            return bytes(out)


def _mqtt_publish(port: int, topic: str, first: int, count: int, rate: float) -> None:
    """A minimal pipelined MQTT 5 QoS 1 publisher: paho publishes ~7,000 msg/s here and `mosquitto_pub -l`
    stops reading its input early, so neither can feed the ingester fast enough. Every PUBLISH is acknowledged
    by the broker before this returns."""
    sock = socket.create_connection(("127.0.0.1", port))
    client_id = f"bench-pub-{uuid.uuid4().hex[:8]}".encode()
    body = b"\x00\x04MQTT\x05\x02\x00\x3c\x00" + len(client_id).to_bytes(2, "big") + client_id
    sock.sendall(b"\x10" + _varint(len(body)) + body)
    buffer = b""

    def packets() -> Iterator[tuple[int, bytes]]:
        nonlocal buffer
        while True:
            data = sock.recv(1 << 20)
            if not data:
                raise RuntimeError("the broker closed the publisher's connection")
            buffer += data
            while len(buffer) >= 2:
                length, shift, pos = 0, 0, 1
                while True:
                    if pos >= len(buffer):
                        break
                    byte = buffer[pos]
                    length |= (byte & 0x7F) << shift
                    shift += 7
                    pos += 1
                    if not byte & 0x80:
                        break
                if pos + length > len(buffer) or (buffer[pos - 1] & 0x80):
                    break
                yield buffer[0], buffer[pos : pos + length]
                buffer = buffer[pos + length :]
            yield 0, b""  # nothing more in hand

    reader = packets()
    kind, connack = next(reader)
    while kind == 0:
        kind, connack = next(reader)
    if kind != 0x20 or connack[1] != 0:
        raise RuntimeError(f"CONNACK refused: {connack!r}")
    receive_max = 65_535
    props, i = connack[3:], 0
    while i < len(props):
        if props[i] == 0x21:
            receive_max = int.from_bytes(props[i + 1 : i + 3], "big")
        i += {0x11: 5, 0x21: 3, 0x22: 3, 0x24: 2, 0x25: 2, 0x27: 5, 0x28: 2, 0x29: 2, 0x2A: 2}.get(props[i], 1)
    window = max(1, min(receive_max, 20_000))
    topic_bytes = len(topic.encode()).to_bytes(2, "big") + topic.encode()
    sent = acked = 0
    started = time.monotonic()
    while acked < count:
        if sent < count and sent - acked < window:
            n = min(1_000, count - sent, window - (sent - acked))
            chunk = []
            for k in range(sent, sent + n):
                mid = k % 65_535 + 1
                payload = _line(first + k)
                variable = topic_bytes + mid.to_bytes(2, "big") + b"\x00"
                chunk.append(b"\x32" + _varint(len(variable) + len(payload)) + variable + payload)
            sock.sendall(b"".join(chunk))
            sent += n
            if rate > 0:
                ahead = started + sent / rate - time.monotonic()
                if ahead > 0:
                    time.sleep(ahead)
            if sent - acked < window and sent < count:
                continue
        kind, _ = next(reader)
        while kind:
            if kind & 0xF0 == 0x40:
                acked += 1
            kind, _ = next(reader)
    sock.sendall(b"\xe0\x00")
    sock.close()


def _nats_publisher(subject: str, first: int, count: int, rate: float) -> subprocess.Popen[bytes]:
    command = [sys.executable, "-m", "benchmarks.streaming", "nats-publish", "127.0.0.1", str(NATS_PORT)]
    return subprocess.Popen(
        [*command, subject, str(first), str(count), str(rate)], cwd=Path(__file__).resolve().parent.parent
    )


async def _nats_publish(host: str, port: int, subject: str, first: int, count: int, rate: float) -> None:
    """Pipelined JetStream publishes (at most 20,000 unacknowledged), each acknowledged by the server. Core
    publishes at full speed overrun the stream's ingest queue (some are dropped) and nats-py's
    ``publish_async`` manages ~30,000 msg/s here, too slow to feed the ingester."""
    import nats

    nc = await nats.connect(f"nats://{host}:{port}", pending_size=64 * 1024 * 1024)
    inbox = nc.new_inbox()
    acked = failed = 0
    progress = asyncio.Event()

    async def on_ack(msg: Any) -> None:
        nonlocal acked, failed
        acked += 1
        if b'"error"' in msg.data or (msg.headers and msg.headers.get("Status")):
            failed += 1
        progress.set()

    await nc.subscribe(inbox, cb=on_ack, pending_msgs_limit=1_000_000)
    started = time.monotonic()
    for n, i in enumerate(range(first, first + count)):
        await nc.publish(subject, _line(i), reply=inbox)
        while n - acked >= 20_000:
            progress.clear()
            await asyncio.wait_for(progress.wait(), 30)
        if rate > 0 and n % 1000 == 0:
            ahead = started + n / rate - time.monotonic()
            if ahead > 0:
                await asyncio.sleep(ahead)
    deadline = time.monotonic() + 120
    while acked < count and time.monotonic() < deadline:
        progress.clear()
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(progress.wait(), 5)
    await nc.close()
    if failed or acked < count:
        raise RuntimeError(f"{count - acked + failed} of {count} JetStream publishes were not acknowledged")


async def _nats_admin(action: str, stream: str, subject: str = "") -> int:
    import nats
    from nats.js.api import StreamConfig

    nc = await nats.connect(f"nats://127.0.0.1:{NATS_PORT}")
    js = nc.jetstream()
    try:
        if action == "create":
            await js.add_stream(StreamConfig(name=stream, subjects=[subject]))
        elif action == "delete":
            await js.delete_stream(stream)
        elif action == "count":
            return int((await js.stream_info(stream)).state.messages)
        return 0
    finally:
        await nc.close()


# -- the measurements ------------------------------------------------------------------------------------


def _throughput(ctx: Context, home: Path, url: str, name: str, count: int, publish: Any) -> tuple[float, int]:
    """(msg/s into the lake, rows in the asset); the ingester runs first, then the publisher."""
    started = time.monotonic()
    ingester = subprocess.Popen(
        _conveyor(ctx, home, url, "--name", name, "--max-messages", str(count), "--json"),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    publisher = publish()
    out, err = ingester.communicate(timeout=600)
    publisher.wait(120)
    if ingester.returncode != 0:
        raise RuntimeError(f"the ingester failed ({ingester.returncode}):\n{err[-3000:]}")
    stats = json.loads(out.strip().splitlines()[-1])
    _WALL_RATES.append(count / (time.monotonic() - started))
    return stats["messages"] / stats["seconds"], _rows(home, name)


#: messages / the ingester process's whole life (start-up, workspace, connection, last commit, exit), per run
_WALL_RATES: list[float] = []


def _restart(
    ctx: Context,
    home: Path,
    url: str,
    name: str,
    count: int,
    publish: Any,
    flush: tuple[str, ...] = ("--flush-rows", "5000", "--flush-seconds", "0.5"),
) -> dict[str, Any]:
    """SIGKILL the ingester mid-stream while the publisher goes on, restart it, count what arrived."""
    args = (url, "--name", name, *flush, "--json")
    first = subprocess.Popen(_conveyor(ctx, home, *args), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    publisher = publish()
    _wait(lambda: _rows(home, name) >= count // 5, 120, "the first commits")
    first.kill()
    first.wait(30)
    at_kill = _rows(home, name)
    second = subprocess.Popen(_conveyor(ctx, home, *args), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    publisher.wait(300)
    _wait(lambda: _rows(home, name) >= count, 300, "every message after the restart")
    time.sleep(1.0)  # anything extra (a duplicate) would be committed by now
    second.send_signal(signal.SIGTERM)
    out, err = second.communicate(timeout=60)
    if second.returncode != 0:
        raise RuntimeError(f"the restarted ingester failed ({second.returncode}):\n{err[-3000:]}")
    ids = _ids(home, name)
    unique = set(ids)
    return {
        "published": count,
        "rows when killed": at_kill,
        "rows after restart": len(ids),
        "lost": count - len(unique & set(range(count))),
        "duplicated": len(ids) - len(unique),
        "redeliveries dropped by the restarted ingester": json.loads(out.strip().splitlines()[-1])["duplicates"],
    }


def run(ctx: Context) -> Result:
    from conveyor import __version__

    notes: list[str] = []
    mqtt_rates: list[float] = []
    nats_rates: list[float] = []
    with _mosquitto(ctx.work) as (port, own):
        rate = 0.0 if own else MQTT_TARGET * 1.25
        if not own:
            notes.append("No mosquitto binary: used 127.0.0.1:1883 and paced the publisher at 25,000 msg/s.")
        for i in range(ctx.repeat):
            home, prefix = ctx.work / f"mqtt-{i}", f"bench/{uuid.uuid4().hex[:8]}"
            url = f"mqtt://127.0.0.1:{port}/{prefix}/#"
            _run_json(_conveyor(ctx, _init(home), url, "--name", "readings", "--max-seconds", "0", "--json"))
            tput, rows = _throughput(
                ctx,
                home,
                url,
                "readings",
                MQTT_MESSAGES,
                lambda prefix=prefix: _mqtt_publisher(port, f"{prefix}/a", 0, MQTT_MESSAGES, rate),
            )
            if rows != MQTT_MESSAGES:
                raise RuntimeError(f"MQTT: {rows} rows in the lake for {MQTT_MESSAGES} messages published")
            mqtt_rates.append(tput)
        home, prefix = ctx.work / "mqtt-restart", f"bench/{uuid.uuid4().hex[:8]}"
        url = f"mqtt://127.0.0.1:{port}/{prefix}/#"
        _run_json(_conveyor(ctx, _init(home), url, "--name", "readings", "--max-seconds", "0", "--json"))
        mqtt_restart = _restart(
            ctx,
            home,
            url,
            "readings",
            RESTART_MESSAGES,
            lambda: _mqtt_publisher(port, f"{prefix}/a", 0, RESTART_MESSAGES, RESTART_RATE),
        )
    mqtt_rates_wall = _WALL_RATES[:]
    default_limits: dict[str, Any] | None = None
    with _mosquitto(ctx.work, default_limits=True) as (port, own):
        if own:  # issue 15's case: Mosquitto's default limits, 500 msg/s, one SIGKILL, the ingester's defaults
            home, prefix = ctx.work / "mqtt-default-limits", f"bench/{uuid.uuid4().hex[:8]}"
            url = f"mqtt://127.0.0.1:{port}/{prefix}/#"
            _run_json(_conveyor(ctx, _init(home), url, "--name", "readings", "--max-seconds", "0", "--json"))
            default_limits = _restart(
                ctx,
                home,
                url,
                "readings",
                DEFAULT_LIMITS_MESSAGES,
                lambda: _mqtt_publisher(port, f"{prefix}/a", 0, DEFAULT_LIMITS_MESSAGES, DEFAULT_LIMITS_RATE),
                flush=(),
            )

    token = uuid.uuid4().hex[:8]
    for i in range(ctx.repeat):
        stream, subject = f"BENCH_{token}_{i}", f"bench.{token}.{i}"
        asyncio.run(_nats_admin("create", stream, f"{subject}.>"))
        try:
            url = f"nats://127.0.0.1:{NATS_PORT}/{subject}.>"
            tput, rows = _throughput(
                ctx,
                _init(ctx.work / f"nats-{i}"),
                url,
                "readings",
                NATS_MESSAGES,
                lambda subject=subject: _nats_publisher(f"{subject}.a", 0, NATS_MESSAGES, 0),
            )
            stored = asyncio.run(_nats_admin("count", stream))
        finally:
            asyncio.run(_nats_admin("delete", stream))
        if rows != NATS_MESSAGES or stored != NATS_MESSAGES:
            raise RuntimeError(f"NATS: {stored} stored and {rows} rows in the lake for {NATS_MESSAGES} published")
        nats_rates.append(tput)
    restart_stream, restart_subject = f"BENCH_{token}_R", f"benchr.{token}"
    asyncio.run(_nats_admin("create", restart_stream, f"{restart_subject}.>"))
    try:
        nats_restart = _restart(
            ctx,
            _init(ctx.work / "nats-restart"),
            f"nats://127.0.0.1:{NATS_PORT}/{restart_subject}.>",
            "readings",
            RESTART_MESSAGES,
            lambda: _nats_publisher(f"{restart_subject}.a", 0, RESTART_MESSAGES, RESTART_RATE),
        )
    finally:
        asyncio.run(_nats_admin("delete", restart_stream))

    nats_rates_wall = _WALL_RATES[len(mqtt_rates_wall) :]
    restarts = [mqtt_restart, nats_restart, *([default_limits] if default_limits else [])]
    zero_loss = all(r["lost"] == 0 and r["duplicated"] == 0 for r in restarts)
    mqtt_median = sorted(mqtt_rates)[len(mqtt_rates) // 2]
    nats_median = sorted(nats_rates)[len(nats_rates) // 2]
    conveyor = Side(
        "Conveyor (MQTT QoS 1)",
        mqtt_rates,
        "msg/s",
        {
            "version": __version__,
            "NATS JetStream msg/s": ", ".join(f"{r:,.0f}" for r in nats_rates),
            "MQTT msg/s over the ingester process's whole life": ", ".join(f"{r:,.0f}" for r in mqtt_rates_wall),
            "NATS msg/s over the ingester process's whole life": ", ".join(f"{r:,.0f}" for r in nats_rates_wall),
            "MQTT restart": json.dumps(mqtt_restart),
            "MQTT restart, Mosquitto's default limits, 500 msg/s": json.dumps(default_limits)
            if default_limits
            else "not run (no mosquitto binary)",
            "NATS restart": json.dumps(nats_restart),
            "broker": f"Mosquitto {'of its own (max_queued_messages 0)' if own else 'on 1883'}; "
            f"nats-server on {NATS_PORT} (file storage)",
        },
    )
    return Result(
        name="streaming",
        title="Streaming ingestion into the lake (MQTT QoS 1; NATS JetStream in the details)",
        conveyor=conveyor,
        peer=None,
        better="higher",
        target=f"MQTT ≥ {MQTT_TARGET:,.0f} msg/s, NATS ≥ {NATS_TARGET:,.0f} msg/s, no loss across a restart",
        met=mqtt_median >= MQTT_TARGET and nats_median >= NATS_TARGET and zero_loss,
        notes=[
            f"{MQTT_MESSAGES:,} MQTT and {NATS_MESSAGES:,} NATS messages per run (small JSON objects, 4 fields), "
            "default --flush-rows 10000 and --max-in-flight 500; rate = messages / seconds reported by "
            "`conveyor data stream` (its run, connection included, opening the workspace not: the intake already "
            "takes messages then); the rate over the process's whole life is in the details. Publisher, broker "
            "and ingester share the machine's cores.",
            f"NATS median {nats_median:,.0f} msg/s; MQTT median {mqtt_median:,.0f} msg/s.",
            f"Restart: {RESTART_MESSAGES:,} messages published at {RESTART_RATE:,.0f} msg/s; the ingester is "
            "SIGKILLed after a fifth is committed and restarted at once; lost and duplicated are counted by id. "
            f"The same with Mosquitto's default limits: {DEFAULT_LIMITS_MESSAGES:,} messages at "
            f"{DEFAULT_LIMITS_RATE:,.0f} msg/s, the ingester's default flush (issue 15: 504 lost before the spool).",
            *notes,
        ],
    )


if __name__ == "__main__" and len(sys.argv) > 1 and sys.argv[1] == "nats-publish":
    _host, _port, _subject, _first, _count, _rate = sys.argv[2:8]
    asyncio.run(_nats_publish(_host, int(_port), _subject, int(_first), int(_count), float(_rate)))
    sys.stdout.flush()
    os._exit(0)
if __name__ == "__main__" and len(sys.argv) > 1 and sys.argv[1] == "mqtt-publish":
    _port, _topic, _first, _count, _rate = sys.argv[2:7]
    _mqtt_publish(int(_port), _topic, int(_first), int(_count), float(_rate))
