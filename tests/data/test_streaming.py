"""Streaming ingestion from MQTT and NATS JetStream: micro-batches as appended versions, dead letters with a
reason, and no message lost or duplicated across a crash (SIGKILL) and restart.

Needs Mosquitto on 127.0.0.1:1883 and NATS with JetStream on 127.0.0.1:4222 (skipped on a machine without
them, failed under CI). Every test uses its own topic / subject / stream and removes what it created.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import orjson
import pytest

from conveyor.data import StreamIngester
from conveyor.data._streaming import mqtt_client_id, parse_stream_url
from conveyor.errors import BadInput, NotFound
from tests.conftest import require_service, wait_until

MQTT_HOST, MQTT_PORT = "127.0.0.1", 1883
NATS_HOST, NATS_PORT = "127.0.0.1", 4222


def _reading(i: int) -> bytes:
    return orjson.dumps({"id": i, "device": f"d{i % 7}", "temp": 20.0 + (i % 50) / 10, "ok": i % 3 == 0})


# -- brokers ----------------------------------------------------------------------------------------------


@pytest.fixture
def mqtt_topic() -> Iterator[str]:
    """A unique topic prefix; the persistent sessions made under it are removed afterwards."""
    require_service("Mosquitto", MQTT_HOST, MQTT_PORT)
    prefix = f"conveyor-test/{uuid.uuid4().hex[:10]}"
    yield prefix


def mqtt_url(prefix: str) -> str:
    return f"mqtt://{MQTT_HOST}:{MQTT_PORT}/{prefix}/#"


def forget_mqtt_session(name: str, url: str) -> None:
    """End the persistent session an ingester left on the broker (clean start, expiry 0)."""
    import paho.mqtt.client as mqtt
    from paho.mqtt.enums import CallbackAPIVersion

    client = mqtt.Client(
        CallbackAPIVersion.VERSION2, client_id=mqtt_client_id(name, parse_stream_url(url)), protocol=mqtt.MQTTv5
    )
    client.connect(MQTT_HOST, MQTT_PORT, clean_start=True)
    client.loop_start()
    client.disconnect()
    client.loop_stop()


def mqtt_publish(topic: str, payloads: list[bytes], *, per_second: float | None = None) -> None:
    """Publish at QoS 1 and wait until the broker acknowledged every message."""
    import paho.mqtt.client as mqtt
    from paho.mqtt.enums import CallbackAPIVersion

    client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=f"pub-{uuid.uuid4().hex[:8]}", protocol=mqtt.MQTTv5)
    client.max_inflight_messages_set(200)
    client.connect(MQTT_HOST, MQTT_PORT)
    client.loop_start()
    started = time.monotonic()
    infos = []
    for n, payload in enumerate(payloads):
        infos.append(client.publish(topic, payload, qos=1))
        if per_second is not None:
            ahead = started + (n + 1) / per_second - time.monotonic()
            if ahead > 0:
                time.sleep(ahead)
    for info in infos:
        info.wait_for_publish(timeout=30)
        assert info.is_published()
    client.disconnect()
    client.loop_stop()


def mqtt_subscribe_once(name: str, url: str, home: Path | None = None, ws: Any = None) -> None:
    """Create the ingester's persistent session (connect, subscribe, leave) so published messages wait for it."""
    if ws is not None:
        StreamIngester(ws, url, name=name).run(max_seconds=0)
        return
    done = run_cli(home, "data", "stream", url, "--name", name, "--max-seconds", "0", "--json")
    assert done.returncode == 0, done.stderr


class NatsStream:
    """A JetStream stream of its own (file storage) capturing ``<subject_prefix>.>``."""

    def __init__(self) -> None:
        token = uuid.uuid4().hex[:10]
        self.name = f"CONVEYOR_TEST_{token}"
        self.prefix = f"conveyortest.{token}"

    def url(self) -> str:
        return f"nats://{NATS_HOST}:{NATS_PORT}/{self.prefix}.>"

    async def _call(self, action: str, payloads: list[bytes] | None = None, subject: str = "") -> Any:
        import nats
        from nats.js.api import StreamConfig

        nc = await nats.connect(f"nats://{NATS_HOST}:{NATS_PORT}")
        js = nc.jetstream()
        try:
            if action == "create":
                await js.add_stream(StreamConfig(name=self.name, subjects=[f"{self.prefix}.>"]))
            elif action == "delete":
                from nats.js.errors import NotFoundError

                with contextlib.suppress(NotFoundError):  # a test may have deleted it already
                    await js.delete_stream(self.name)
            elif action == "publish":
                for payload in payloads or []:
                    await js.publish(subject or f"{self.prefix}.readings", payload)
            elif action == "consumers":
                return await js.consumers_info(self.name)
            return None
        finally:
            await nc.close()

    def create(self) -> None:
        asyncio.run(self._call("create"))

    def delete(self) -> None:
        asyncio.run(self._call("delete"))

    def publish(self, payloads: list[bytes], subject: str = "") -> None:
        asyncio.run(self._call("publish", payloads, subject))

    def consumers(self) -> list[Any]:
        result: list[Any] = asyncio.run(self._call("consumers"))
        return result


@pytest.fixture
def nats_stream() -> Iterator[NatsStream]:
    require_service("NATS", NATS_HOST, NATS_PORT)
    stream = NatsStream()
    stream.create()
    try:
        yield stream
    finally:
        stream.delete()


# -- the command in its own process ------------------------------------------------------------------------


def conveyor_command(home: Path | None, *args: str) -> list[str]:
    return [sys.executable, "-m", "conveyor", "--home", str(home), *args]


def make_workspace(home: Path) -> Path:
    """A workspace at ``home`` (the command opens an existing one; only ``init`` creates)."""
    from conveyor import Workspace

    Workspace.open(home).close()
    return home


def run_cli(home: Path | None, *args: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    if home is not None:
        make_workspace(home)
    return subprocess.run(conveyor_command(home, *args), capture_output=True, text=True, timeout=timeout, check=False)


def start_cli(home: Path, *args: str) -> subprocess.Popen[str]:
    make_workspace(home)
    return subprocess.Popen(
        conveyor_command(home, *args), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=os.environ.copy()
    )


def asset_ids(home: Path, name: str) -> list[int]:
    from conveyor import Workspace

    ws = Workspace.open(home)
    try:
        return [int(i) for i in ws.data.read_table(name).column("id").to_pylist()]
    except NotFound:  # not there yet
        return []
    finally:
        ws.close()


# -- URLs and errors (no broker needed) --------------------------------------------------------------------


def test_source_urls_keep_wildcards_and_refuse_what_is_not_a_broker() -> None:
    url = parse_stream_url("mqtt://ann:secret@127.0.0.1:1883/sensors/+/temp/#")
    assert (url.scheme, url.host, url.port, url.target) == ("mqtt", "127.0.0.1", 1883, "sensors/+/temp/#")
    assert url.password == "secret" and "secret" not in url.display
    assert parse_stream_url("nats://localhost/sensors.>").port == 4222
    for bad, hint in [
        ("kafka://127.0.0.1:9092/t", "mqtt://"),
        ("mqtt://127.0.0.1:1883", "topic filter"),
        ("nats://:4222/x", "host"),
        ("mqtt://127.0.0.1:99999/t", "port"),
    ]:
        with pytest.raises(BadInput, match=hint):
            parse_stream_url(bad)


def test_cli_exit_code_2_for_a_bad_scheme_and_an_unreachable_broker(cli, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    home = str(make_workspace(tmp_path / "ws"))
    result = cli("--home", home, "data", "stream", "kafka://127.0.0.1/x", "--name", "t")
    assert result.code == 2 and "mqtt://" in result.err
    result = cli("--home", home, "data", "stream", "mqtt://127.0.0.1:1/x/#", "--name", "t", "--json")
    assert result.code == 2 and "Cannot reach the MQTT broker" in result.err
    assert result.json["error"]["code"] == "store_unavailable"
    result = cli("--home", home, "data", "stream", "nats://127.0.0.1:1/x.>", "--name", "t")
    assert result.code == 2 and "Cannot reach the NATS server" in result.err


def test_a_missing_extra_names_the_install_command(workspace, monkeypatch: pytest.MonkeyPatch) -> None:  # type: ignore[no-untyped-def]
    monkeypatch.setitem(sys.modules, "nats", None)  # import nats -> ImportError
    ingester = StreamIngester(workspace, "nats://127.0.0.1:4222/x.>", name="t")
    with pytest.raises(BadInput, match=r"pip install 'conveyor-ml\[stream\]'"):
        ingester.run(max_seconds=0)


# -- end to end --------------------------------------------------------------------------------------------


def test_mqtt_micro_batches_become_appended_versions(workspace, mqtt_topic: str) -> None:  # type: ignore[no-untyped-def]
    url = mqtt_url(mqtt_topic)
    try:
        mqtt_subscribe_once("telemetry", url, ws=workspace)  # the session exists: messages now wait for us
        mqtt_publish(f"{mqtt_topic}/room1", [_reading(i) for i in range(800)])
        stats = StreamIngester(workspace, url, name="telemetry", flush_rows=200, flush_seconds=30).run(
            max_messages=800, max_seconds=30
        )
    finally:
        forget_mqtt_session("telemetry", url)
    assert (stats.messages, stats.rows, stats.versions, stats.dead_lettered) == (800, 800, 4, 0)
    assert stats.stopped_by == "max-messages"
    versions = workspace.data.versions("telemetry")
    assert [v.rows for v in versions] == [200, 400, 600, 800]
    assert versions[-1].source["kind"] == "stream" and versions[-1].source["url"] == url
    table = workspace.data.read_table("telemetry")
    assert sorted(table.column("id").to_pylist()) == list(range(800))
    assert {c["name"]: c["type"] for c in versions[-1].schema} == {
        "id": "int64",
        "device": "string",
        "temp": "double",
        "ok": "bool",
    }


def test_nats_ingests_then_resumes_after_its_checkpoint(workspace, nats_stream: NatsStream) -> None:  # type: ignore[no-untyped-def]
    nats_stream.publish([_reading(i) for i in range(3000)])
    first = StreamIngester(workspace, nats_stream.url(), name="telemetry", flush_rows=1000).run(
        max_messages=3000, max_seconds=30
    )
    assert (first.rows, first.versions) == (3000, 3)
    nats_stream.publish([_reading(i) for i in range(3000, 3500)])
    second = StreamIngester(workspace, nats_stream.url(), name="telemetry", flush_rows=1000, flush_seconds=0.2).run(
        max_messages=500, max_seconds=30
    )
    assert (second.messages, second.rows, second.versions) == (500, 500, 1)
    ids = workspace.data.read_table("telemetry").column("id").to_pylist()
    assert sorted(ids) == list(range(3500))
    assert workspace.data.checkpoint("telemetry", nats_stream.url())["seq"] == 3500


def test_schema_is_inferred_from_the_first_batch_then_enforced(workspace, nats_stream: NatsStream) -> None:  # type: ignore[no-untyped-def]
    first_batch = [{"id": 1, "name": "a", "temp": 20}, {"id": 2, "name": "b", "temp": 21.5, "tags": None}]
    later = [
        b"{not json",
        b"[1, 2]",
        orjson.dumps({"id": 3, "name": "c", "temp": 22.0, "colour": "red"}),  # unknown field
        orjson.dumps({"id": 4, "name": "d", "temp": "hot"}),  # wrong type
        orjson.dumps({"id": True, "name": "e", "temp": 1.0}),  # a boolean is not an integer
        orjson.dumps({"id": 6, "name": "f", "temp": 7}),  # an integer fits a double
        orjson.dumps({"id": 7, "temp": 8.5}),  # a missing field is null
        orjson.dumps({"id": 8, "name": "h", "temp": 1.0, "tags": "x"}),  # a null-only column became a string
    ]
    nats_stream.publish([orjson.dumps(r) for r in first_batch])
    nats_stream.publish(later, subject=f"{nats_stream.prefix}.other")
    stats = StreamIngester(workspace, nats_stream.url(), name="readings", flush_rows=2, flush_seconds=30).run(
        max_messages=10, max_seconds=30
    )
    assert (stats.rows, stats.dead_lettered) == (5, 5)
    schema = {c["name"]: c["type"] for c in workspace.data.get("readings").schema}
    assert schema == {"id": "int64", "name": "string", "temp": "double", "tags": "string"}
    rows = {r["id"]: r for r in workspace.data.read_table("readings").to_pylist()}
    assert sorted(rows) == [1, 2, 6, 7, 8]
    assert rows[6]["temp"] == 7.0 and rows[7]["name"] is None and rows[8]["tags"] == "x"
    dead = workspace.data.read_table("readings_deadletter").to_pylist()
    reasons = {d["payload"]: d["reason"] for d in dead}
    assert "not valid JSON" in reasons["{not json"]
    assert "an array where a JSON object is expected" in reasons["[1, 2]"]
    assert "unknown field 'colour'" in next(r for p, r in reasons.items() if "colour" in p)
    assert "field 'temp' is a string" in next(r for p, r in reasons.items() if "hot" in p)
    assert "field 'id' is a boolean" in next(r for p, r in reasons.items() if "true" in p)
    assert {d["topic"] for d in dead} == {f"{nats_stream.prefix}.other"}
    assert all(d["received_at"] is not None for d in dead)
    # Each dead letter says where it was in the stream: its JetStream sequence (the first batch took 1 and 2).
    assert {d["payload"]: d["offset"] for d in dead}["{not json"] == 3
    assert sorted(d["offset"] for d in dead) == [3, 4, 5, 6, 7]


def test_a_spooled_message_whose_ack_never_reached_the_broker_is_not_ingested_twice(workspace, mqtt_topic: str) -> None:  # type: ignore[no-untyped-def]
    url = mqtt_url(mqtt_topic)
    try:
        mqtt_subscribe_once("telemetry", url, ws=workspace)
        mqtt_publish(f"{mqtt_topic}/a", [_reading(i) for i in range(300)] + [b"not json"])
        deaf = StreamIngester(workspace, url, name="telemetry", flush_rows=301, flush_seconds=30)
        deaf.source.ack = lambda _messages: None  # type: ignore[method-assign]  # spooled, committed, never acked
        first = deaf.run(max_messages=301, max_seconds=30)
        assert (first.rows, first.dead_lettered) == (300, 1)
        # The broker redelivers all 301 (flagged DUP); the spool's keys recognise every one.
        again = StreamIngester(workspace, url, name="telemetry", flush_rows=1000, flush_seconds=0.3)
        stats = again.run(max_messages=301, max_seconds=30)
    finally:
        forget_mqtt_session("telemetry", url)
    assert (stats.messages, stats.duplicates, stats.rows, stats.dead_lettered) == (301, 301, 0, 0)
    assert workspace.data.get("telemetry").rows == 300
    dead = workspace.data.read_table("telemetry_deadletter").to_pylist()
    # MQTT has no stream sequence: the offset is the message's place in what the ingester took (1-based).
    assert [(d["payload"], d["topic"], d["offset"]) for d in dead] == [("not json", f"{mqtt_topic}/a", 301)]


class _Crash(Exception):
    pass


def test_what_was_spooled_but_not_committed_is_replayed_by_the_next_run(workspace, mqtt_topic: str) -> None:  # type: ignore[no-untyped-def]
    url = mqtt_url(mqtt_topic)
    try:
        mqtt_subscribe_once("telemetry", url, ws=workspace)
        mqtt_publish(f"{mqtt_topic}/a", [_reading(i) for i in range(300)] + [b"not json"])
        crashing = StreamIngester(workspace, url, name="telemetry", flush_rows=301, flush_seconds=30)

        def crash(*_args: Any) -> None:
            raise _Crash  # the dead letter is committed, then the process "dies" before the rows' commit

        crashing._commit_rows = crash  # type: ignore[method-assign]
        with pytest.raises(_Crash):
            crashing.run(max_messages=301, max_seconds=30)
        assert workspace.data.get("telemetry_deadletter").rows == 1
        with pytest.raises(NotFound):
            workspace.data.get("telemetry")
        # Spooled and acknowledged: the broker has nothing more; the next run commits them from the spool.
        stats = StreamIngester(workspace, url, name="telemetry", flush_rows=1000, flush_seconds=0.3).run(max_seconds=1)
    finally:
        forget_mqtt_session("telemetry", url)
    assert (stats.messages, stats.replayed, stats.rows, stats.dead_lettered, stats.duplicates) == (0, 301, 300, 0, 1)
    assert any("from the spool" in n for n in stats.notes)
    assert sorted(workspace.data.read_table("telemetry").column("id").to_pylist()) == list(range(300))
    assert workspace.data.get("telemetry_deadletter").rows == 1


def test_the_broker_never_has_more_than_max_in_flight_unacknowledged(workspace, mqtt_topic: str) -> None:  # type: ignore[no-untyped-def]
    url = mqtt_url(mqtt_topic)
    try:
        mqtt_subscribe_once("telemetry", url, ws=workspace)
        mqtt_publish(f"{mqtt_topic}/a", [_reading(i) for i in range(200)])
        deaf = StreamIngester(workspace, url, name="telemetry", max_in_flight=50, flush_seconds=0.2)
        deaf.source.ack = lambda _messages: None  # type: ignore[method-assign]
        held = deaf.run(max_seconds=2)  # MQTT 5 Receive Maximum 50: the broker stops at 50 unacknowledged
        assert (held.messages, held.rows, held.max_in_flight) == (50, 50, 50)
        rest = StreamIngester(workspace, url, name="telemetry", max_in_flight=50, flush_seconds=0.2).run(
            max_messages=200, max_seconds=30
        )
    finally:
        forget_mqtt_session("telemetry", url)
    # The 50 come again (redeliveries, dropped) with the 150 never sent.
    assert (rest.messages, rest.duplicates, rest.rows) == (200, 50, 150)
    assert sorted(workspace.data.read_table("telemetry").column("id").to_pylist()) == list(range(200))


def test_the_nats_consumer_is_bounded_by_max_in_flight(workspace, nats_stream: NatsStream) -> None:  # type: ignore[no-untyped-def]
    nats_stream.publish([_reading(i) for i in range(100)])
    stats = StreamIngester(workspace, nats_stream.url(), name="telemetry", max_in_flight=40, flush_seconds=0.2).run(
        max_messages=100, max_seconds=30
    )
    assert (stats.rows, stats.max_in_flight) == (100, 40)
    assert [c.config.max_ack_pending for c in nats_stream.consumers()] == [40]


@pytest.mark.parametrize("bad", ["0", "-5", "65536", "many"])
def test_max_in_flight_outside_1_to_65535_exits_2(cli, tmp_path: Path, bad: str) -> None:  # type: ignore[no-untyped-def]
    result = cli(
        "--home", str(tmp_path / "ws"), "data", "stream", "mqtt://127.0.0.1:1/x/#", "-n", "t", "--max-in-flight", bad
    )
    assert result.code == 2
    assert "--max-in-flight" in result.err and ("65,535" in result.err or "integer" in result.err)


def test_sequence_gaps_are_recorded_in_notes_and_stats(tmp_path: Path, nats_stream: NatsStream) -> None:
    home = tmp_path / "ws"
    kept = [i for i in range(100) if i not in (10, 11, 12, 50)]
    nats_stream.publish([orjson.dumps({"seq": i, "v": 1.0}) for i in kept], subject=f"{nats_stream.prefix}.a")
    nats_stream.publish([orjson.dumps({"seq": i, "v": 2.0}) for i in range(40)], subject=f"{nats_stream.prefix}.b")
    nats_stream.publish([b"not json"], subject=f"{nats_stream.prefix}.b")
    args = ("data", "stream", nats_stream.url(), "-n", "t", "--sequence-field", "seq", "--flush-rows", "50")
    done = run_cli(home, *args, "--max-messages", str(len(kept) + 41), "--json")
    assert done.returncode == 0, done.stderr
    summary = orjson.loads(done.stdout)
    seq = summary["sequence"]
    assert (seq["field"], seq["gaps"], seq["missing"], seq["out_of_order"], seq["without_value"]) == ("seq", 2, 4, 0, 0)
    a = f"{nats_stream.prefix}.a"
    assert seq["first_gaps"] == [
        {"topic": a, "after": 9, "next": 13, "missing": 3},
        {"topic": a, "after": 49, "next": 51, "missing": 1},
    ]
    assert "gap in 'seq' on " + a + ": 9 then 13 (3 values missing)" in done.stderr
    from conveyor import Workspace

    with Workspace.open(home) as ws:
        notes = [n for v in ws.data.versions("t") for n in v.source.get("notes", [])]
        gaps = [g for v in ws.data.versions("t") for g in v.source.get("sequence_gaps", [])]
    assert notes == [
        f"gap in 'seq' on {a}: 9 then 13 (3 values missing)",
        f"gap in 'seq' on {a}: 49 then 51 (1 value missing)",
    ]
    assert gaps == seq["first_gaps"]
    # Resuming goes on from the checkpoint's last values: 99 then 100 on .a is no gap, 39 then 45 on .b is one.
    nats_stream.publish([orjson.dumps({"seq": 100, "v": 1.0})], subject=f"{nats_stream.prefix}.a")
    nats_stream.publish([orjson.dumps({"seq": 45, "v": 1.0})], subject=f"{nats_stream.prefix}.b")
    again = run_cli(home, *args, "--max-messages", "2", "--json")
    assert again.returncode == 0, again.stderr
    assert orjson.loads(again.stdout)["sequence"]["first_gaps"] == [
        {"topic": f"{nats_stream.prefix}.b", "after": 39, "next": 45, "missing": 5}
    ]


def test_a_second_ingester_on_the_same_spool_is_refused(workspace, nats_stream: NatsStream) -> None:  # type: ignore[no-untyped-def]
    from conveyor.errors import Conflict

    first = StreamIngester(workspace, nats_stream.url(), name="t", flush_seconds=0.2)
    runner = threading.Thread(target=first.run, kwargs={"max_seconds": 30})
    runner.start()
    try:
        wait_until(lambda: (first.spool_dir / "lock").exists(), timeout=10, what="the first ingester's spool")
        time.sleep(0.3)
        with pytest.raises(Conflict, match="is locked"):
            StreamIngester(workspace, nats_stream.url(), name="t").run(max_seconds=0)
    finally:
        first.stop("test")
        runner.join(30)


def test_a_torn_write_at_the_end_of_the_spool_is_cut_off(workspace, nats_stream: NatsStream) -> None:  # type: ignore[no-untyped-def]
    nats_stream.publish([_reading(i) for i in range(20)])
    ingester = StreamIngester(workspace, nats_stream.url(), name="t", flush_seconds=0.2)
    assert ingester.run(max_messages=20, max_seconds=30).rows == 20
    segment = max(ingester.spool_dir.glob("*.spool"))
    with segment.open("ab") as f:
        f.write(b"CVS1\x05\x00")  # a group header cut short by a crash
    nats_stream.publish([_reading(i) for i in range(20, 30)])
    again = StreamIngester(workspace, nats_stream.url(), name="t", flush_seconds=0.2)
    stats = again.run(max_messages=10, max_seconds=30)
    assert (stats.rows, stats.replayed, stats.duplicates) == (10, 0, 0)
    assert any("Cut off 6 bytes" in n for n in stats.notes)
    assert sorted(workspace.data.read_table("t").column("id").to_pylist()) == list(range(30))


@pytest.mark.parametrize("broker", ["mqtt", "nats"])
def test_sigkill_mid_stream_then_restart_loses_and_duplicates_nothing(
    broker: str, tmp_path: Path, request: pytest.FixtureRequest
) -> None:
    home = tmp_path / "ws"
    total = 1500
    if broker == "mqtt":
        prefix = request.getfixturevalue("mqtt_topic")
        url = mqtt_url(prefix)
        mqtt_subscribe_once("telemetry", url, home=home)
        rate = 250.0  # Mosquitto's default keeps 1000 messages for an offline session: stay well under it

        def publish() -> None:
            mqtt_publish(f"{prefix}/room", [_reading(i) for i in range(total)], per_second=rate)

        cleanup = lambda: forget_mqtt_session("telemetry", url)  # noqa: E731
    else:
        stream: NatsStream = request.getfixturevalue("nats_stream")
        url = stream.url()
        rate = 600.0

        def publish() -> None:
            batch = 50
            for start in range(0, total, batch):
                stream.publish([_reading(i) for i in range(start, start + batch)])
                time.sleep(batch / rate)

        cleanup = lambda: None  # noqa: E731
    args = ("data", "stream", url, "--name", "telemetry", "--flush-rows", "40", "--flush-seconds", "0.1", "--json")
    publisher = threading.Thread(target=publish)
    processes: list[subprocess.Popen[str]] = []
    try:
        first = start_cli(home, *args)
        processes.append(first)
        publisher.start()
        wait_until(lambda: len(asset_ids(home, "telemetry")) >= 100, timeout=30, what="the first commits")
        first.kill()  # SIGKILL: no flush, no acknowledgement of what is buffered
        first.wait(10)
        assert first.returncode == -signal.SIGKILL
        before = asset_ids(home, "telemetry")
        assert 0 < len(before) < total, "the kill must land mid-stream"
        second = start_cli(home, *args)
        processes.append(second)
        publisher.join(60)
        wait_until(lambda: len(asset_ids(home, "telemetry")) >= total, timeout=60, what="every message")
        second.send_signal(signal.SIGTERM)
        out, err = second.communicate(timeout=30)
    finally:
        for p in processes:
            if p.poll() is None:
                p.kill()
        publisher.join(60)
        cleanup()
    assert second.returncode == 0, err
    ids = asset_ids(home, "telemetry")
    assert len(ids) == total, f"{len(ids) - len(set(ids))} duplicates, {total - len(set(ids))} lost"
    assert sorted(ids) == list(range(total))
    assert orjson.loads(out.strip().splitlines()[-1])["stopped_by"] == "SIGTERM"


def test_sigterm_commits_what_is_spooled_and_exits_0(tmp_path: Path, nats_stream: NatsStream) -> None:
    home = tmp_path / "ws"
    nats_stream.publish([_reading(i) for i in range(300)])
    args = ("data", "stream", nats_stream.url(), "--name", "telemetry", "--flush-rows", "100000")
    process = start_cli(home, *args, "--flush-seconds", "600", "--json")
    try:
        # In the spool, so acknowledged to the broker, and held, uncommitted, until the signal.
        wait_until(
            lambda: any(c.ack_floor.stream_seq == 300 and c.num_ack_pending == 0 for c in nats_stream.consumers()),
            timeout=30,
            what="the spool's acknowledgements",
        )
        assert asset_ids(home, "telemetry") == []
        process.send_signal(signal.SIGTERM)
        out, err = process.communicate(timeout=30)
    finally:
        if process.poll() is None:
            process.kill()
    assert process.returncode == 0, err
    summary = orjson.loads(out)
    assert (summary["messages"], summary["rows"], summary["versions"]) == (300, 300, 1)
    assert sorted(asset_ids(home, "telemetry")) == list(range(300))


def test_nats_without_a_stream_for_the_subject_says_how_to_create_one(cli, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    require_service("NATS", NATS_HOST, NATS_PORT)
    subject = f"conveyortest.nostream.{uuid.uuid4().hex[:8]}"
    result = cli(
        "--home",
        str(make_workspace(tmp_path / "ws")),
        "data",
        "stream",
        f"nats://{NATS_HOST}:{NATS_PORT}/{subject}",
        "-n",
        "t",
    )
    assert result.code == 2
    assert "No JetStream stream captures the subject" in result.err and "nats stream add" in result.err


def test_a_deleted_stream_ends_the_ingester_with_a_clear_error(tmp_path: Path, nats_stream: NatsStream) -> None:
    home = tmp_path / "ws"
    nats_stream.publish([_reading(i) for i in range(100)])
    process = start_cli(home, "data", "stream", nats_stream.url(), "--name", "t", "--flush-rows", "50", "--json")
    try:
        wait_until(lambda: len(asset_ids(home, "t")) == 100, timeout=30, what="the first commits")
        nats_stream.delete()
        out, err = process.communicate(timeout=30)  # it must not hang waiting for a stream that is gone
    finally:
        if process.poll() is None:
            process.kill()
    assert process.returncode == 2, err
    assert "deleted" in err or "no longer exists" in err
    assert orjson.loads(out)["error"]["code"] in ("store_unavailable", "bad_input")


def test_the_public_paho_path_ingests_and_acknowledges(  # type: ignore[no-untyped-def]
    workspace, mqtt_topic: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    from conveyor.data import _streaming

    monkeypatch.setattr(_streaming, "_mqtt_client_class", lambda mqtt: mqtt.Client)  # a paho without our hooks
    url = mqtt_url(mqtt_topic)
    try:
        mqtt_subscribe_once("telemetry", url, ws=workspace)
        mqtt_publish(f"{mqtt_topic}/a", [_reading(i) for i in range(300)])
        first = StreamIngester(workspace, url, name="telemetry", flush_seconds=0.2).run(
            max_messages=300, max_seconds=30
        )
        mqtt_publish(f"{mqtt_topic}/a", [_reading(i) for i in range(300, 310)])
        second = StreamIngester(workspace, url, name="telemetry", flush_seconds=0.2).run(max_seconds=3)
    finally:
        forget_mqtt_session("telemetry", url)
    assert (first.rows, second.rows) == (300, 10)
    assert sorted(workspace.data.read_table("telemetry").column("id").to_pylist()) == list(range(310))
    # Acknowledged as spooled: without acknowledgements all 300 would come again. On this path some of the last
    # ones can miss the broker at close (seen: up to 58); they come again and are recognised.
    assert second.duplicates < 300


# -- the spool (no broker) -------------------------------------------------------------------------------


def _message(i: int, *, topic: str = "t/a", dup: bool = False, position: int = 0) -> Any:
    from conveyor.data._streaming import StreamMessage

    return StreamMessage(_reading(i), topic, position, dup, None, 1_700_000_000.0 + i)


def test_the_spool_keeps_messages_across_a_reopen_and_cuts_a_torn_tail(tmp_path: Path) -> None:
    from conveyor.data._streaming import _Spool

    spool = _Spool(tmp_path / "s", keyed=True)
    spool.open(create=True)
    first, kept = spool.append([_message(0), _message(1, topic="t/b"), _message(2)])
    assert (first, len(kept), spool.last_ordinal) == (1, 3, 3)
    assert spool.append([_message(3)])[0] == 4
    spool.close()
    segment = next((tmp_path / "s").glob("*.spool"))
    with segment.open("ab") as f:
        f.write(b"CVS1\x09\x00\x00")  # a header cut short
    again = _Spool(tmp_path / "s", keyed=True)
    again.open(create=False)
    assert again.torn_bytes == 7 and again.last_ordinal == 4
    got = [(start, [(m.payload, m.topic, m.received_at, m.handle) for m in ms]) for start, ms in again.recovered]
    assert got == [
        (
            1,
            [
                (_reading(0), "t/a", 1_700_000_000.0, None),
                (_reading(1), "t/b", 1_700_000_001.0, None),
                (_reading(2), "t/a", 1_700_000_002.0, None),
            ],
        ),
        (4, [(_reading(3), "t/a", 1_700_000_003.0, None)]),
    ]
    # A redelivery (DUP) of a spooled message is dropped; a new one, or a DUP of one never spooled, is kept.
    first, kept = again.append([_message(2, dup=True), _message(9, dup=True), _message(5)])
    assert (first, [m.payload for m in kept], again.dropped) == (5, [_reading(9), _reading(5)], 1)
    again.close()
    assert segment.stat().st_size > 0 and (tmp_path / "s" / "lock").exists()


def test_a_second_spool_on_the_same_folder_is_refused(tmp_path: Path) -> None:
    from conveyor.data._streaming import _Spool
    from conveyor.errors import Conflict

    first = _Spool(tmp_path / "s", keyed=False)
    first.open(create=True)
    try:
        with pytest.raises(Conflict, match=f"PID {os.getpid()}"):
            _Spool(tmp_path / "s", keyed=False).open(create=True)
    finally:
        first.close()
    second = _Spool(tmp_path / "s", keyed=False)
    second.open(create=True)  # the lock went with the first
    second.close()


def test_spool_segments_go_once_committed_keeping_the_newest_65535(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from conveyor.data import _streaming

    monkeypatch.setattr(_streaming, "_SPOOL_SEGMENT_BYTES", 50_000)  # small segments
    spool = _streaming._Spool(tmp_path / "s", keyed=False)
    spool.open(create=True)
    for start in range(0, 90_000, 1_000):
        spool.append([_message(i, position=i + 1) for i in range(start, start + 1_000)])
    segments = sorted((tmp_path / "s").glob("*.spool"))
    assert len(segments) > 10
    spool.release(10_000)  # only what is committed may go ...
    assert min(int(p.name.split(".")[0]) for p in (tmp_path / "s").glob("*.spool")) <= 10_001
    spool.release(90_000)  # ... and the newest 65,535 messages stay
    left = sorted(int(p.name.split(".")[0]) for p in (tmp_path / "s").glob("*.spool"))
    assert left[0] <= 90_000 - 65_535 + 1 < left[1]
    spool.close()
    reopened = _streaming._Spool(tmp_path / "s", keyed=False)
    reopened.open(create=False)
    assert (reopened.last_ordinal, reopened.max_position) == (90_000, 90_000)
    reopened.close()
