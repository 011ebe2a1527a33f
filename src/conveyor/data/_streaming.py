"""Streaming ingestion: JSON messages from MQTT or NATS JetStream into a data asset, one appended version per
micro-batch, at least once on the wire and exactly once in the lake.

The pieces::

    broker ──► StreamSource ──► _Intake (its own thread)          ──► StreamIngester.run (main thread)
               (I/O thread,      poll, append to the spool, fsync,      parse, route, commit versions
                a deque)         then acknowledge to the broker          (each with its checkpoint)

**Delivery.** A message is acknowledged to the broker only once it is in the *spool*, an append-only,
checksummed, fsynced log on local disk (``<home>/streams/<asset>-<digest>/``); the lake commits micro-batches
from there. So the broker never holds more unacknowledged messages than ``max_in_flight`` (MQTT 5 Receive
Maximum; JetStream ``max_ack_pending``), whatever ``flush_rows`` and ``flush_seconds`` are, and a crash at any
moment loses nothing: what was not in the spool comes again from the broker, what was is replayed from the
spool when the ingester starts again. Why a spool and not "commit to the lake every ``max_in_flight``
messages": by Little's law a bound of 500 messages at 32,000 msg/s leaves 15 ms from arrival to
acknowledgement, less than one lake commit takes; an fsync takes about half a millisecond.

Each message taken gets an *ordinal* (1, 2, 3, ... for this asset and source, kept across runs in the spool).
Each commit saves, in the same transaction as the version (``commit_table(checkpoint=...)``), the highest
ordinal it covers, the highest NATS stream sequence, and the ordinal through which every batch is fully
committed; a restart replays the spool after that point and drops what an asset's checkpoint already covers.
Redeliveries are recognised before the spool:

- NATS JetStream: a message at or below the highest stream sequence spooled is one we have. On start (and
  after a reconnect) the durable pull consumer is re-anchored right after it unless the broker agrees.
- MQTT (QoS 1, persistent session): messages have no stable id, so the spool keeps the xxh3-64 keys of
  ``topic + payload`` of the last 65,535 messages (the largest Receive Maximum). A redelivered message (DUP
  flag set) whose key is among them is dropped. Limit: two byte-identical messages on the same topic are
  indistinguishable; if one was spooled and the other is redelivered within the window, the second is
  dropped. Give messages an id or a timestamp (telemetry nearly always has one) to rule this out.

**Dead letters.** A message that is not JSON, not an object, has a field the schema does not know, or a
value of the wrong type goes to the asset ``<name>_deadletter`` (columns ``payload``, ``reason``, ``topic``,
``received_at``, ``offset``: the NATS stream sequence, or for MQTT the message's ordinal) with a reason that
names the field and the expected type. Dead letters are committed *before* the batch's rows, each asset with
its own checkpoint, so a crash between the two commits replays the batch and drops the dead letters already
stored. Routing must then be the same on the second pass, so before the asset exists the inferred schema
rides in the dead-letter checkpoint.

**Gaps.** MQTT has no sequence numbers; with ``sequence_field`` the ingester checks a monotonic integer field
of the messages, per topic, and records each gap (the values missing) in the version's source notes and in
the stats.

**Schema.** Taken from the asset when it exists, else inferred from the first batch (order of first
appearance; ints and floats together make a double; a column that is null throughout the first batch
becomes a string), then enforced: a missing field is null, an unknown field or a wrong type is a dead
letter. Nested objects are checked by Arrow, which ignores unknown keys inside them.

**Speed.** The hot path is per-message Python, so it is kept to the minimum: the I/O thread only frames
packets and appends tuples to a deque (no locks), the intake writes a group of messages with a few C-level
calls (arrays of positions, times and lengths, then the payloads) and one fsync, the main thread parses with
orjson and builds Arrow columns in one call per column, type checks run over ``set(map(type, column))``. For
MQTT, paho's public receive path costs ~25 µs a message (one ``select`` per packet, three ``recv`` calls, a
v5 ``Properties`` object per message); :class:`_FastMqttClient` overrides three of paho's private hooks
(buffered reads, all buffered packets per wake-up, a direct PUBLISH decoder) and falls back to the public
API when they are missing. For NATS, ``fetch()`` creates two asyncio tasks per message; the source instead
subscribes an inbox with a callback and sends JetStream pull requests itself, acknowledging with
``AckPolicy.ALL`` (one ``+ACK`` per spooled group).

**Broker limits worth knowing.** Mosquitto keeps at most ``max_queued_messages`` (default 1000) for a
persistent session, the unacknowledged in-flight messages included: while we are down, what arrives beyond
``1000 - in flight`` is dropped. With the default bound (500, and usually far fewer really out: the intake
acknowledges every 50 ms) a restart has roughly ``(1000 - in flight) / rate`` seconds before the broker drops
anything: about 1.8 s at 500 msg/s. Raise ``max_queued_messages`` (or set 0) when publishers are faster or
restarts slower. JetStream keeps what its stream's limits keep.
"""

from __future__ import annotations

import base64
import contextlib
import math
import os
import struct
import threading
import time
from array import array
from collections import deque
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from itertools import repeat
from operator import itemgetter
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final, NamedTuple, Protocol, cast

import orjson
import xxhash

from conveyor.errors import (
    BadInput,
    Conflict,
    ConveyorError,
    NotFound,
    StoreError,
    StoreUnavailable,
    Unauthorized,
    ValidationFailed,
)

if TYPE_CHECKING:
    import asyncio

    import pyarrow as pa

    from conveyor.workspace import Workspace

__all__ = [
    "DEADLETTER_SUFFIX",
    "DEFAULT_MAX_IN_FLIGHT",
    "DEFAULT_NATS_MAX_IN_FLIGHT",
    "StreamIngester",
    "StreamMessage",
    "StreamSource",
    "StreamStats",
    "StreamURL",
    "open_stream_source",
    "parse_stream_url",
    "spool_folder",
]

DEADLETTER_SUFFIX: Final = "_deadletter"
SCHEMES: Final = ("mqtt", "mqtts", "nats")
_DEFAULT_PORTS: Final = {"mqtt": 1883, "mqtts": 8883, "nats": 4222}
_INSTALL_HINT: Final = "pip install 'conveyor-ml[stream]'"
#: The most messages the broker may have out to us unacknowledged (MQTT 5 Receive Maximum, JetStream
#: ``max_ack_pending``) by default: half of Mosquitto's default 1,000-message limit for a session, so a crash
#: leaves the broker room for what arrives while the ingester restarts.
DEFAULT_MAX_IN_FLIGHT: Final = 500
#: JetStream's default: the stream keeps every message until it is acknowledged, whatever the count, so the bound
#: protects nothing there and only limits the redeliveries after a crash; 500 cost NATS 18 % of its throughput
#: (a pull waits for acknowledgements), 2,000 cost 4 %.
DEFAULT_NATS_MAX_IN_FLIGHT: Final = 2_000
#: The protocol's largest Receive Maximum; also how many recent message keys the MQTT intake remembers.
MAX_IN_FLIGHT_LIMIT: Final = 65_535
#: How long a persistent MQTT session (its subscription and queued messages) outlives a disconnect.
MQTT_SESSION_EXPIRY_SECONDS: Final = 7 * 24 * 3600
_NATS_PULL_BATCH: Final = 5_000
_NATS_PULL_EXPIRES: Final = 2.0
_NATS_ACK_WAIT: Final = 30.0
_CONNECT_TIMEOUT: Final = 10.0
_POLL_SLICE: Final = 0.05
_PROGRESS_EVERY: Final = 0.5
#: The intake appends to the spool (and acknowledges) when it holds half of ``max_in_flight`` or its oldest
#: message is this old.
_SPOOL_EVERY: Final = 0.05
_SPOOL_SEGMENT_BYTES: Final = 16 << 20
_MAX_GAPS_KEPT: Final = 100
_MAX_GAP_NOTES: Final = 20


# -- URLs ------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class StreamURL:
    """A parsed ``mqtt://``, ``mqtts://`` or ``nats://`` source URL.

    ``target`` is the MQTT topic filter (``sensors/#``) or the NATS subject (``sensors.>``), taken verbatim
    (a ``#`` is not a URL fragment here).
    """

    scheme: str
    host: str
    port: int
    target: str
    username: str | None = None
    password: str | None = None

    @property
    def display(self) -> str:
        """The URL without its password (used in messages and as the checkpoint's source key)."""
        user = f"{self.username}@" if self.username else ""
        return f"{self.scheme}://{user}{self.host}:{self.port}/{self.target}"


def parse_stream_url(url: str) -> StreamURL:
    """Parse ``mqtt://[user[:password]@]host[:port]/topic/filter/#`` or ``nats://host[:port]/subject``.

    Raises:
        BadInput: unknown scheme, no host, a bad port, or no topic / subject.
    """
    from urllib.parse import unquote

    scheme, sep, rest = url.partition("://")
    scheme = scheme.lower()
    if not sep or scheme not in SCHEMES:
        raise BadInput(
            f"{url!r} is not a stream source: use mqtt://HOST[:PORT]/TOPIC/FILTER (mqtts:// for TLS) or "
            "nats://HOST[:PORT]/SUBJECT, for example mqtt://127.0.0.1:1883/sensors/# or "
            "nats://127.0.0.1:4222/sensors.>.",
            url=url,
        )
    netloc, _, target = rest.partition("/")
    username = password = None
    if "@" in netloc:
        creds, _, netloc = netloc.rpartition("@")
        user, _, secret = creds.partition(":")
        username, password = unquote(user) or None, unquote(secret) if secret else None
    host, _, port_text = netloc.rpartition(":") if ":" in netloc else (netloc, "", "")
    if not host:
        raise BadInput(f"{_mask(url)!r} names no broker host; write {scheme}://HOST:PORT/{target or '...'}.", url=url)
    try:
        port = int(port_text) if port_text else _DEFAULT_PORTS[scheme]
        if not 0 < port < 65536:
            raise ValueError
    except ValueError:
        raise BadInput(f"{port_text!r} in {_mask(url)!r} is not a port; use a number from 1 to 65535.") from None
    if not target:
        what = "an MQTT topic filter (sensors/#)" if scheme != "nats" else "a NATS subject (sensors.>)"
        raise BadInput(f"{_mask(url)!r} has no {what} after the host; add it as the URL's path.", url=url)
    return StreamURL(scheme, host, port, target, username, password)


def _mask(url: str) -> str:
    scheme, sep, rest = url.partition("://")
    netloc, slash, path = rest.partition("/")
    if "@" in netloc and ":" in netloc.rpartition("@")[0]:
        user = netloc.rpartition("@")[0].partition(":")[0]
        netloc = f"{user}:***@{netloc.rpartition('@')[2]}"
    return f"{scheme}{sep}{netloc}{slash}{path}"


# -- the source contract ---------------------------------------------------------------------------------


class StreamMessage(NamedTuple):
    """One message as a source hands it over.

    ``position`` is the NATS stream sequence (0 for MQTT, which has none); ``handle`` is what the source
    needs to acknowledge it (None for a message replayed from the spool); ``redelivered`` is the broker's own
    flag (MQTT DUP, JetStream delivery count > 1).
    """

    payload: bytes
    topic: str
    position: int
    redelivered: bool
    handle: Any
    received_at: float


class Reset:
    """Returned by :meth:`StreamSource.poll` after the connection was lost: every message polled but not yet
    acknowledged will come again, so the caller drops those and calls :meth:`StreamSource.rewind`."""


RESET: Final = Reset()


class StreamSource(Protocol):
    """A broker subscription: connect, hand over messages, acknowledge up to a point, close.

    Implementations read on their own thread and must not block :meth:`poll` for longer than its timeout.
    """

    url: StreamURL
    #: Most messages the broker may have out to us unacknowledged (MQTT Receive Maximum, max_ack_pending).
    max_in_flight: int
    #: Redeliveries the source itself recognised and dropped (never handed over).
    dropped: int

    def open(self, after: int) -> None:
        """Connect and subscribe; a source with positions (NATS) resumes right after position ``after``.

        Raises:
            StoreUnavailable: the broker cannot be reached.
            BadInput: the broker refuses the subscription (the message says why and what to do).
        """
        ...

    def poll(self, max_messages: int, timeout: float) -> list[StreamMessage] | Reset:
        """Up to ``max_messages`` messages, waiting at most ``timeout`` seconds for the first one."""
        ...

    def ack(self, messages: Sequence[StreamMessage]) -> None:
        """Acknowledge ``messages`` (all of one poll group, in the order polled), once they are spooled."""
        ...

    def rewind(self, after: int) -> None:
        """After a :class:`Reset`: resume right after position ``after`` (the highest one spooled)."""
        ...

    def close(self) -> None:
        """Send pending acknowledgements and disconnect (the session / consumer stays on the broker)."""
        ...


def open_stream_source(
    url: str | StreamURL,
    *,
    name: str,
    max_in_flight: int | None = None,
    notify: Callable[[str], None] | None = None,
) -> StreamSource:
    """The source for ``url``, named after the asset (MQTT client id, NATS durable consumer); ``max_in_flight``
    defaults to :data:`DEFAULT_MAX_IN_FLIGHT` for MQTT and :data:`DEFAULT_NATS_MAX_IN_FLIGHT` for NATS.

    Raises:
        BadInput: bad URL, a bad ``max_in_flight``, or the ``stream`` extra is not installed.
    """
    parsed = url if isinstance(url, StreamURL) else parse_stream_url(url)
    check_max_in_flight(max_in_flight)
    if max_in_flight is None:
        max_in_flight = DEFAULT_NATS_MAX_IN_FLIGHT if parsed.scheme == "nats" else DEFAULT_MAX_IN_FLIGHT
    say = notify or (lambda _message: None)
    if parsed.scheme == "nats":
        return _NatsSource(parsed, name=name, max_in_flight=max_in_flight, notify=say)
    return _MqttSource(parsed, name=name, max_in_flight=max_in_flight, notify=say)


def check_max_in_flight(value: int | None) -> None:
    """Raises BadInput unless ``value`` is None (the source's default) or a whole number from 1 to 65,535 (MQTT's
    largest Receive Maximum)."""
    if value is None:
        return
    if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= MAX_IN_FLIGHT_LIMIT:
        raise BadInput(
            f"--max-in-flight must be a whole number from 1 to {MAX_IN_FLIGHT_LIMIT:,}, not {value!r}. Keep it "
            "well under what the broker keeps for a session while the ingester is down (Mosquitto: "
            f"max_queued_messages, 1,000 by default); the default is {DEFAULT_MAX_IN_FLIGHT} for MQTT, "
            f"{DEFAULT_NATS_MAX_IN_FLIGHT:,} for NATS.",
            max_in_flight=value,
        )


def _require(module: str, package: str) -> Any:
    import importlib

    try:
        return importlib.import_module(module)
    except ImportError as exc:
        raise BadInput(
            f"Streaming from this broker needs {package}, which is not installed. Install it with: {_INSTALL_HINT}.",
            package=package,
        ) from exc


_TOPIC_SEEDS: dict[str, int] = {}


def _mqtt_key(message: StreamMessage) -> int:
    """xxh3-64 of the payload, seeded by the topic: how an MQTT redelivery is recognised."""
    seed = _TOPIC_SEEDS.get(message.topic)
    if seed is None:
        seed = _TOPIC_SEEDS[message.topic] = xxhash.xxh3_64_intdigest(message.topic.encode())
    return xxhash.xxh3_64_intdigest(message.payload, seed=seed)


# -- MQTT ------------------------------------------------------------------------------------------------


def _mqtt_client_class(mqtt: Any) -> Any:
    """A paho ``Client`` subclass with a fast receive path (see the module docstring), built lazily."""
    from paho.mqtt.enums import MQTTErrorCode

    base = mqtt.Client
    hooks = ("_sock_recv", "_sock_close", "_handle_publish", "loop_read", "_packet_queue")
    if not all(hasattr(base, hook) for hook in hooks):
        return base  # a paho without these hooks: the public (slower) path

    class _FastMqttClient(base):  # type: ignore[misc, valid-type]
        """paho with buffered socket reads and a direct PUBLISH decoder that hands messages to ``sink``."""

        sink: Callable[[bytes, bytes, int, bool], None] | None = None
        _rbuf: bytes = b""
        _rpos: int = 0

        def _sock_recv(self, bufsize: int) -> bytes:
            # paho reads one byte, then the length bytes one at a time, then the body: serve those from one
            # large recv instead of three system calls per message.
            if self._rpos >= len(self._rbuf):
                data: bytes = super()._sock_recv(262_144)
                if len(data) <= bufsize:
                    return data
                self._rbuf, self._rpos = data, 0
            start = self._rpos
            self._rpos = min(start + bufsize, len(self._rbuf))
            return self._rbuf[start : self._rpos]

        def loop_read(self, max_packets: int = 1) -> Any:
            # paho handles one packet per select(); the rest of our buffer would wait for the next one.
            rc = super().loop_read(max_packets)
            while rc == MQTTErrorCode.MQTT_ERR_SUCCESS and self._rpos < len(self._rbuf) and self._sock is not None:
                rc = super().loop_read(max_packets)
            return rc

        def _sock_close(self) -> None:
            self._rbuf, self._rpos = b"", 0
            super()._sock_close()

        def ack_many(self, mids: Sequence[int]) -> None:
            """PUBACK (success, MQTT 5's short form) for every packet id in ``mids``, as one write: paho's
            ``ack`` queues a packet and wakes its thread once per message."""
            if mids:
                blob = struct.pack(f">{len(mids)}I", *[0x40020000 | mid for mid in mids])
                self._packet_queue(0x40, blob, 0, 0)

        def _handle_publish(self) -> Any:
            command = self._in_packet["command"]
            qos = (command >> 1) & 3
            sink = self.sink
            if qos == 2 or sink is None:  # QoS 2: never granted, we subscribe at QoS 1
                return super()._handle_publish()
            packet = self._in_packet["packet"]
            end = 2 + ((packet[0] << 8) | packet[1])
            topic = bytes(packet[2:end])
            mid = 0
            if qos:
                mid = (packet[end] << 8) | packet[end + 1]
                end += 2
            # MQTT 5 properties: a variable-length byte count, then the properties (none we need).
            shift, length = 0, 0
            while True:
                byte = packet[end]
                end += 1
                length |= (byte & 0x7F) << shift
                shift += 7
                if not byte & 0x80:
                    break
            sink(topic, bytes(packet[end + length :]), mid, bool(command & 0x08))
            return MQTTErrorCode.MQTT_ERR_SUCCESS

    return _FastMqttClient


def mqtt_client_id(name: str, url: StreamURL) -> str:
    """The fixed MQTT client id of asset ``name`` reading ``url`` (its persistent session on the broker)."""
    digest = xxhash.xxh3_64_hexdigest(f"{name}\0{url.host}:{url.port}\0{url.target}".encode())
    return f"conveyor-{digest[:12]}"


class _MqttSource:
    """MQTT 5, QoS 1, a persistent session (clean start off, a session expiry, a fixed client id) and manual
    acknowledgements. paho's network loop runs on its own thread and reconnects with backoff; a lost
    connection hands the intake a :class:`Reset` (the broker resends what we did not acknowledge).

    The CONNECT's Receive Maximum is ``max_in_flight``: the broker never has more than that many QoS 1
    messages out to us unacknowledged, so they are all it has to keep for the session if we die."""

    def __init__(self, url: StreamURL, *, name: str, max_in_flight: int, notify: Callable[[str], None]) -> None:
        self.url = url
        self.client_id = mqtt_client_id(name, url)
        self.max_in_flight = max_in_flight
        self.dropped = 0
        self._notify = notify
        self._queue: deque[StreamMessage | Reset] = deque()
        self._wake = threading.Event()
        self._lock = threading.Lock()  # guards _epoch against acks racing a reconnect (per batch, not message)
        self._epoch = 0
        self._topics: dict[bytes, str] = {}
        self._client: Any = None
        self._connected = threading.Event()
        self._subscribed = threading.Event()
        self._failure: ConveyorError | None = None
        self._connections = 0
        self._gone = threading.Event()  # set by on_disconnect: close() waits for it

    # paho callbacks (its thread)

    def _sink(self, topic: bytes, payload: bytes, mid: int, dup: bool) -> None:
        name = self._topics.get(topic)
        if name is None:
            name = self._topics[topic] = topic.decode("utf-8", errors="replace")
        self._queue.append(StreamMessage(payload, name, 0, dup, (self._epoch << 16) | mid, time.time()))
        if not self._wake.is_set():
            self._wake.set()

    def _on_message(self, _client: Any, _userdata: Any, message: Any) -> None:
        self._sink(message.topic.encode(), message.payload, message.mid if message.qos else 0, bool(message.dup))

    def _on_connect(self, client: Any, _userdata: Any, _flags: Any, reason: Any, _properties: Any) -> None:
        if reason.is_failure:
            text = str(reason)
            kind = Unauthorized if "authori" in text.lower() or "password" in text.lower() else StoreUnavailable
            self._failure = kind(
                f"The MQTT broker at {self.url.host}:{self.url.port} refused the connection: {text}. "
                "Check the user and password in the URL and the broker's ACLs.",
                url=self.url.display,
            )
            self._connected.set()
            self._subscribed.set()
            return
        from paho.mqtt.subscribeoptions import SubscribeOptions

        self._connections += 1
        if self._connections > 1:
            self._notify(f"Reconnected to the MQTT broker at {self.url.host}:{self.url.port}.")
        # Retained messages only when the subscription is new, not on every reconnect of the session.
        client.subscribe(self.url.target, options=SubscribeOptions(qos=1, retainHandling=1))
        self._connected.set()

    def _on_subscribe(self, _client: Any, _userdata: Any, _mid: int, reasons: Any, _properties: Any) -> None:
        failed = [r for r in reasons if r.is_failure]
        if failed:
            self._failure = BadInput(
                f"The MQTT broker refused the subscription to {self.url.target!r}: {failed[0]}. "
                "Check the topic filter and the broker's ACLs.",
                topic=self.url.target,
            )
        self._subscribed.set()

    def _on_disconnect(self, _client: Any, _userdata: Any, _flags: Any, reason: Any, _properties: Any) -> None:
        self._gone.set()
        with self._lock:
            self._epoch += 1
        self._queue.append(RESET)
        self._wake.set()
        if self._closing:
            return
        self._notify(
            f"Lost the connection to the MQTT broker at {self.url.host}:{self.url.port} ({reason}); "
            "reconnecting with backoff. Messages not yet in the spool will be delivered again."
        )

    _closing = False

    # the contract

    def open(self, after: int) -> None:
        mqtt = _require("paho.mqtt.client", "paho-mqtt")
        from paho.mqtt.enums import CallbackAPIVersion
        from paho.mqtt.packettypes import PacketTypes
        from paho.mqtt.properties import Properties

        cls = _mqtt_client_class(mqtt)
        client = cls(
            CallbackAPIVersion.VERSION2,
            client_id=self.client_id,
            protocol=mqtt.MQTTv5,
            manual_ack=True,
            reconnect_on_failure=True,
        )
        if getattr(client, "_in_packet", None) is not None and hasattr(cls, "sink"):
            client.sink = self._sink
        else:
            client.on_message = self._on_message
        client.on_connect = self._on_connect
        client.on_subscribe = self._on_subscribe
        client.on_disconnect = self._on_disconnect
        # A first retry after 0.25 s (paho takes floats): a broker restart or a dropped connection costs the
        # offline session little of its queue limit.
        client.reconnect_delay_set(min_delay=cast(int, 0.25), max_delay=30)
        if self.url.username:
            client.username_pw_set(self.url.username, self.url.password)
        if self.url.scheme == "mqtts":
            client.tls_set()
        properties = Properties(PacketTypes.CONNECT)  # type: ignore[no-untyped-call]
        properties.SessionExpiryInterval = MQTT_SESSION_EXPIRY_SECONDS
        properties.ReceiveMaximum = self.max_in_flight
        try:
            client.connect(self.url.host, self.url.port, keepalive=30, clean_start=False, properties=properties)
        except OSError as exc:
            raise StoreUnavailable(
                f"Cannot reach the MQTT broker at {self.url.host}:{self.url.port} ({exc.strerror or exc}). "
                "Check that it runs and listens there, or fix the URL.",
                url=self.url.display,
            ) from exc
        self._client = client
        client.loop_start()
        if not (self._connected.wait(_CONNECT_TIMEOUT) and self._subscribed.wait(_CONNECT_TIMEOUT)):
            self.close()
            raise StoreUnavailable(
                f"The MQTT broker at {self.url.host}:{self.url.port} did not answer the connection and "
                f"subscription within {_CONNECT_TIMEOUT:.0f} s; check that it is an MQTT 5 broker.",
                url=self.url.display,
            )
        if self._failure is not None:
            self.close()
            raise self._failure

    def poll(self, max_messages: int, timeout: float) -> list[StreamMessage] | Reset:
        return _drain(self._queue, self._wake, max_messages, timeout)

    def ack(self, messages: Sequence[StreamMessage]) -> None:
        client = self._client
        with self._lock:
            epoch = self._epoch
            # Only packets of this connection: after a reconnect the broker resends them under new ids.
            mids = [h & 0xFFFF for h in map(_HANDLE, messages) if h is not None and h & 0xFFFF and h >> 16 == epoch]
            if hasattr(client, "ack_many"):
                client.ack_many(mids)
            else:
                for mid in mids:
                    client.ack(mid, 1)

    def rewind(self, after: int) -> None:
        """Nothing to do: the broker's session resends every unacknowledged message on reconnection."""

    def close(self) -> None:
        client, self._client = self._client, None
        if client is None:
            return
        self._closing = True
        with contextlib.suppress(Exception):
            connected = client.is_connected()
            self._gone.clear()
            client.disconnect()  # after the queued acknowledgements; the session stays (expiry set at connect)
            if connected:
                # paho's thread writes them and the DISCONNECT, then calls on_disconnect; stopping it sooner
                # can close the socket with the last acknowledgements unsent (they would come back as
                # redeliveries, recognised).
                self._gone.wait(5)
        client.loop_stop()


def _drain(
    queue: deque[StreamMessage | Reset], wake: threading.Event, max_messages: int, timeout: float
) -> list[StreamMessage] | Reset:
    """Take up to ``max_messages`` from a deque filled by an I/O thread, waiting up to ``timeout`` for one."""
    if not queue:
        deadline = time.monotonic() + timeout
        while not queue:
            left = deadline - time.monotonic()
            if left <= 0:
                return []
            wake.clear()
            if not queue:
                wake.wait(min(left, _POLL_SLICE))
    if queue[0] is RESET:
        queue.popleft()
        return RESET
    out: list[StreamMessage] = []
    popleft = queue.popleft
    for _ in range(min(max_messages, len(queue))):
        item = popleft()
        if item is RESET:
            queue.appendleft(item)  # handed over by the next poll, after this batch is dealt with
            break
        out.append(item)  # type: ignore[arg-type]
    return out


# -- NATS JetStream --------------------------------------------------------------------------------------


def _aio() -> Any:
    """asyncio, imported when NATS needs it (it adds ~0.15 s to starting an MQTT ingester otherwise)."""
    import asyncio

    return asyncio


def nats_durable_name(name: str, url: StreamURL) -> str:
    """The durable consumer of asset ``name`` reading ``url``'s subject."""
    digest = xxhash.xxh3_64_hexdigest(url.target.encode())[:8]
    return f"conveyor-{name.replace('.', '_')}-{digest}"


class _NatsSource:
    """A JetStream durable pull consumer (``AckPolicy.ALL``) on the stream that captures the subject.

    An asyncio loop runs on its own thread; an inbox subscription's callback appends messages to a deque and
    sends the next pull request when the previous one is done (``batch`` delivered, or a 404/408 status), so
    there is always one request in flight. The consumer's ``max_ack_pending`` is ``max_in_flight``: the
    server stops delivering while that many messages wait for their acknowledgement (sent once they are in
    the spool).
    """

    def __init__(self, url: StreamURL, *, name: str, max_in_flight: int, notify: Callable[[str], None]) -> None:
        self.url = url
        self.durable = nats_durable_name(name, url)
        self.max_in_flight = max_in_flight
        self.dropped = 0
        self._notify = notify
        self._batch = max(1, min(max_in_flight, _NATS_PULL_BATCH))
        self._max_ack_pending = max_in_flight
        self._ack_wait = _NATS_ACK_WAIT
        self._queue: deque[StreamMessage | Reset] = deque()
        self._wake = threading.Event()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._nc: Any = None
        self._js: Any = None
        self._stream = ""
        self._sub: Any = None
        self._high = 0  # highest stream sequence handed over since the consumer was (re)positioned
        self._paused = True
        self._outstanding = 0
        self._last_activity = 0.0
        self._watchdog: asyncio.Task[None] | None = None
        self._failure: ConveyorError | None = None
        self._generation = 0

    # loop-thread helpers

    def _run(self, coro: Any, timeout: float = _CONNECT_TIMEOUT * 3) -> Any:
        assert self._loop is not None
        return _aio().run_coroutine_threadsafe(coro, self._loop).result(timeout)

    async def _connect(self) -> None:
        nats = _require("nats", "nats-py")
        import socket

        try:  # fail fast: nats-py retries an unreachable first server for ever when reconnects are unbounded
            with socket.create_connection((self.url.host, self.url.port), timeout=3):
                pass
        except OSError as exc:
            raise StoreUnavailable(
                f"Cannot reach the NATS server at {self.url.host}:{self.url.port} ({exc.strerror or exc}). "
                "Check that it runs with JetStream enabled (nats-server -js), or fix the URL.",
                url=self.url.display,
            ) from exc
        user = f"{self.url.username}:{self.url.password or ''}@" if self.url.username else ""
        try:
            self._nc = await _aio().wait_for(
                nats.connect(
                    servers=[f"nats://{user}{self.url.host}:{self.url.port}"],
                    name="conveyor-stream",
                    connect_timeout=3,
                    allow_reconnect=True,
                    max_reconnect_attempts=-1,
                    reconnect_time_wait=1,
                    pending_size=256 * 1024 * 1024,
                    disconnected_cb=self._on_disconnected,
                    reconnected_cb=self._on_reconnected,
                    error_cb=self._on_error,
                ),
                _CONNECT_TIMEOUT,
            )
        except (TimeoutError, OSError, nats.errors.Error) as exc:
            raise StoreUnavailable(
                f"Could not connect to the NATS server at {self.url.host}:{self.url.port}: {exc or type(exc)}.",
                url=self.url.display,
            ) from exc
        self._js = self._nc.jetstream()
        try:
            self._stream = await self._js.find_stream_name_by_subject(self.url.target)
        except nats.js.errors.NotFoundError:
            raise BadInput(
                f"No JetStream stream captures the subject {self.url.target!r} on {self.url.host}:{self.url.port}. "
                f"Create one first, for example: nats stream add SENSORS --subjects '{self.url.target}' "
                "--storage file --defaults.",
                subject=self.url.target,
            ) from None
        except nats.errors.NoRespondersError:
            raise BadInput(
                f"The NATS server at {self.url.host}:{self.url.port} has no JetStream; start it with -js.",
                url=self.url.display,
            ) from None

    async def _position(self, after: int) -> None:
        """Point the durable consumer right after stream sequence ``after`` (recreating it if it disagrees)."""
        from nats.js.api import AckPolicy, ConsumerConfig, DeliverPolicy
        from nats.js.errors import NotFoundError

        try:
            info = await self._js.consumer_info(self._stream, self.durable)
        except NotFoundError:
            info = None
        config = info.config if info is not None else None
        in_sync = (
            info is not None
            and config is not None
            and config.filter_subject == self.url.target
            and config.ack_policy == AckPolicy.ALL
            and info.num_ack_pending == 0
            and info.delivered is not None
            and (info.delivered.stream_seq or 0) == after
            and config.max_ack_pending == self._max_ack_pending
        )
        if in_sync:
            self._high = after
            return
        if info is not None:
            await self._js.delete_consumer(self._stream, self.durable)
        start = after + 1
        stream = await self._js.stream_info(self._stream)
        first = stream.state.first_seq
        if after and first > start:
            self._notify(
                f"Stream {self._stream} no longer holds sequences {start}-{first - 1} (its limits removed them) "
                "before they were ingested; resuming at its first message."
            )
        await self._js.add_consumer(
            self._stream,
            ConsumerConfig(
                durable_name=self.durable,
                ack_policy=AckPolicy.ALL,
                filter_subject=self.url.target,
                max_ack_pending=self._max_ack_pending,
                ack_wait=self._ack_wait,
                max_waiting=16,
                deliver_policy=DeliverPolicy.BY_START_SEQUENCE if after else DeliverPolicy.ALL,
                opt_start_seq=start if after else None,
            ),
        )
        self._high = after

    async def _subscribe(self) -> None:
        if self._sub is not None:
            with contextlib.suppress(Exception):
                await self._sub.unsubscribe()
        self._generation += 1
        generation = self._generation

        async def on_msg(msg: Any) -> None:
            if generation == self._generation:  # deliveries to an earlier inbox are stale
                await self._on_msg(msg)

        self._sub = await self._nc.subscribe(
            self._nc.new_inbox(),
            cb=on_msg,
            pending_msgs_limit=4 * self._max_ack_pending,
            pending_bytes_limit=1 << 30,
        )
        self._paused = False
        await self._pull()

    async def _pull(self) -> None:
        if self._paused or self._sub is None or not self._nc.is_connected:
            return
        request = {"batch": self._batch, "expires": int(_NATS_PULL_EXPIRES * 1e9)}
        self._outstanding = self._batch
        self._last_activity = time.monotonic()
        await self._nc.publish(
            f"$JS.API.CONSUMER.MSG.NEXT.{self._stream}.{self.durable}", orjson.dumps(request), reply=self._sub.subject
        )

    async def _on_msg(self, msg: Any) -> None:
        if self._paused:
            return
        self._last_activity = time.monotonic()
        headers = msg.headers
        if headers and "Status" in headers:
            status = headers.get("Status")
            if status in ("404", "408"):  # no messages / request expired: ask again
                await self._pull()
            elif status == "409":
                description = headers.get("Description", "")
                if "deleted" in description.lower():
                    self._failure = StoreUnavailable(
                        f"The JetStream consumer {self.durable} on stream {self._stream} was deleted while "
                        "ingesting; restart the ingestion (it resumes from its checkpoint)."
                    )
                    self._queue.append(RESET)
                    self._wake.set()
                else:  # e.g. too many waiting requests: ask again, without spinning
                    await _aio().sleep(0.05)
                    await self._pull()
            return
        tokens = msg.reply.split(".")
        # $JS.ACK.<stream>.<consumer>.<delivered>.<sseq>.<cseq>.<ts>.<pending>, or with domain and account
        # hash in front of the stream (12 tokens) on newer servers.
        offset = 2 if len(tokens) == 9 else 4
        delivered, sseq = int(tokens[offset + 2]), int(tokens[offset + 3])
        self._outstanding -= 1
        if sseq <= self._high:
            self.dropped += 1  # a redelivery (ack wait ran out) of one we hold or committed
        else:
            self._high = sseq
            self._queue.append(StreamMessage(msg.data, msg.subject, sseq, delivered > 1, msg.reply, time.time()))
            if not self._wake.is_set():
                self._wake.set()
        if self._outstanding <= 0:
            await self._pull()

    async def _watch(self) -> None:
        """Re-send the pull request if neither messages nor its expiry status came (a lost request)."""
        while True:
            await _aio().sleep(1.0)
            if not self._paused and time.monotonic() - self._last_activity > _NATS_PULL_EXPIRES + 3:
                await self._pull()

    async def _on_disconnected(self) -> None:
        if self._paused:
            return
        self._paused = True
        self._queue.append(RESET)
        self._wake.set()
        self._notify(
            f"Lost the connection to the NATS server at {self.url.host}:{self.url.port}; reconnecting with "
            "backoff. Messages not yet in the spool will be delivered again."
        )

    async def _on_reconnected(self) -> None:
        self._notify(f"Reconnected to the NATS server at {self.url.host}:{self.url.port}.")

    async def _on_error(self, exc: Exception) -> None:
        if not self._paused:
            self._notify(f"NATS: {type(exc).__name__}: {exc}")

    async def _open(self, after: int) -> None:
        await self._connect()
        await self._position(after)
        await self._subscribe()
        self._watchdog = _aio().get_running_loop().create_task(self._watch())

    async def _rewind(self, after: int) -> None:
        self._paused = True
        self._queue.clear()
        await self._position(after)
        await self._subscribe()

    async def _ack(self, reply: str) -> None:
        with contextlib.suppress(Exception):  # disconnected: the message comes again and is recognised
            await self._nc.publish(reply, b"+ACK")

    async def _close(self) -> None:
        self._paused = True
        if self._watchdog is not None:
            self._watchdog.cancel()
        if self._nc is not None:
            with contextlib.suppress(Exception):
                await self._nc.flush(timeout=5)
            with contextlib.suppress(Exception):
                await self._nc.close()

    # the contract

    def open(self, after: int) -> None:
        _require("nats", "nats-py")
        self._loop = _aio().new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, name="conveyor-nats", daemon=True)
        self._thread.start()
        try:
            self._run(self._open(after))
        except BaseException:
            self.close()
            raise

    def poll(self, max_messages: int, timeout: float) -> list[StreamMessage] | Reset:
        if self._failure is not None:
            raise self._failure
        got = _drain(self._queue, self._wake, max_messages, timeout)
        if self._failure is not None:  # it came while we waited
            raise self._failure
        return got

    def ack(self, messages: Sequence[StreamMessage]) -> None:
        if messages and messages[-1].handle is not None and self._loop is not None:
            # AckPolicy.ALL: acknowledging the group's last (highest) sequence acknowledges all before it. Not
            # waited for: the loop may be busy with deliveries for milliseconds, and a lost acknowledgement
            # only means a redelivery, which is recognised. Acks run in order, before close()'s flush.
            _aio().run_coroutine_threadsafe(self._ack(messages[-1].handle), self._loop)

    def rewind(self, after: int) -> None:
        """One attempt; the ingester retries :class:`StoreUnavailable` with backoff.

        Raises:
            StoreUnavailable: NATS cannot be reached or did not answer.
            BadInput: the stream is gone.
        """
        from nats.js.errors import NotFoundError

        if self._failure is not None:
            raise self._failure
        try:
            self._run(self._rewind(after))
        except NotFoundError:
            raise BadInput(
                f"The JetStream stream {self._stream} that captured {self.url.target!r} no longer exists; recreate "
                "it and restart the ingestion (it resumes after its checkpoint).",
                stream=self._stream,
            ) from None
        except ConveyorError:
            raise
        except Exception as exc:
            raise StoreUnavailable(
                f"NATS at {self.url.host}:{self.url.port} could not re-position the consumer "
                f"({type(exc).__name__}: {exc}).",
                url=self.url.display,
            ) from exc

    def close(self) -> None:
        loop, self._loop = self._loop, None
        if loop is None:
            return
        with contextlib.suppress(Exception):
            _aio().run_coroutine_threadsafe(self._close(), loop).result(10)
        loop.call_soon_threadsafe(loop.stop)
        if self._thread is not None:
            self._thread.join(10)
        with contextlib.suppress(Exception):
            loop.close()


# -- schema: inference and enforcement -------------------------------------------------------------------

_NONE = type(None)
_PAYLOAD = itemgetter(0)  # StreamMessage.payload


def _kind(value: Any) -> str:
    return {
        bool: "a boolean",
        int: "an integer",
        float: "a number",
        str: "a string",
        dict: "an object",
        list: "an array",
    }.get(type(value), type(value).__name__)


def _shown(value: Any) -> str:
    text = orjson.dumps(value).decode() if not isinstance(value, bytes) else repr(value)
    return text if len(text) <= 40 else text[:37] + "..."


def _no_null_types(arrow_type: pa.DataType) -> pa.DataType:
    """Arrow infers ``null`` for values that are all null; such a column (or child) is stored as string."""
    import pyarrow as pa

    if pa.types.is_null(arrow_type):
        return pa.string()
    if pa.types.is_list(arrow_type) or pa.types.is_large_list(arrow_type):
        return pa.list_(_no_null_types(arrow_type.value_type))
    if pa.types.is_struct(arrow_type):
        return pa.struct([pa.field(f.name, _no_null_types(f.type)) for f in arrow_type])
    return arrow_type


def _infer_column(values: list[Any]) -> pa.DataType:
    import pyarrow as pa

    present = [v for v in values if v is not None]
    if not present:
        return pa.string()
    kinds = set(map(type, present))
    if kinds in ({int, float}, {float}):
        return pa.float64()
    first = type(present[0])
    simple = {bool: pa.bool_(), int: pa.int64(), str: pa.string()}
    if first in simple:
        return simple[first]
    same = [v for v in present if type(v) is first]
    try:
        inferred = pa.infer_type(same)
    except (pa.ArrowInvalid, pa.ArrowTypeError):
        inferred = pa.infer_type(same[:1])
    return _no_null_types(inferred)


def infer_schema(records: Iterable[dict[str, Any]]) -> pa.Schema:
    """An Arrow schema for JSON objects: columns in order of first appearance, one type each."""
    import pyarrow as pa

    rows = list(records)
    order: dict[str, None] = {}
    for row in rows:
        order.update(dict.fromkeys(row))
    return pa.schema([pa.field(c, _infer_column([r.get(c) for r in rows])) for c in order])


def _accepted(arrow_type: pa.DataType) -> frozenset[type] | None:
    """The Python types (from orjson) a column of ``arrow_type`` takes; None: let Arrow decide."""
    import pyarrow as pa

    t = pa.types
    table: list[tuple[Callable[[Any], bool], frozenset[type]]] = [
        (t.is_boolean, frozenset({bool})),
        (t.is_integer, frozenset({int})),
        (t.is_floating, frozenset({float, int})),
        (t.is_string, frozenset({str})),
        (t.is_large_string, frozenset({str})),
        (t.is_string_view, frozenset({str})),
        (t.is_struct, frozenset({dict})),
        (t.is_list, frozenset({list})),
        (t.is_large_list, frozenset({list})),
    ]
    return next((accepts for test, accepts in table if test(arrow_type)), None)


class _Shape:
    """One schema, enforced on parsed messages: splits a batch into an Arrow table and dead letters."""

    def __init__(self, schema: pa.Schema, asset: str) -> None:
        self.schema = schema
        self.asset = asset
        self.names: list[str] = list(schema.names)
        self.name_set = frozenset(self.names)
        self.accepts = [_accepted(f.type) for f in schema]

    def split(
        self, messages: Sequence[StreamMessage], records: Sequence[dict[str, Any]]
    ) -> tuple[pa.Table | None, list[StreamMessage], list[tuple[StreamMessage, str]]]:
        """``records`` are the parsed objects of ``messages``; returns (table, its messages, dead letters)."""
        import pyarrow as pa

        name_set = self.name_set
        bad: list[tuple[StreamMessage, str]] = []
        keep_msgs: list[StreamMessage] = list(messages)
        keep: list[dict[str, Any]] = list(records)
        if not set().union(*records) <= name_set:  # some record has an unknown field: find which
            keep_msgs, keep = self._known_fields(messages, records, bad)
        while keep:
            columns = [list(map(dict.get, keep, repeat(n, len(keep)))) for n in self.names]
            wrong = self._kind_errors(columns)
            arrays: list[pa.Array] = []
            if not wrong:
                arrays, wrong = self._arrays(columns)
            if not wrong:
                return pa.Table.from_arrays(arrays, schema=self.schema), keep_msgs, bad
            bad.extend((keep_msgs[i], reason) for i, reason in sorted(wrong.items()))
            keep_msgs = [m for i, m in enumerate(keep_msgs) if i not in wrong]
            keep = [r for i, r in enumerate(keep) if i not in wrong]
        return None, [], bad

    def _known_fields(
        self,
        messages: Sequence[StreamMessage],
        records: Sequence[dict[str, Any]],
        bad: list[tuple[StreamMessage, str]],
    ) -> tuple[list[StreamMessage], list[dict[str, Any]]]:
        """The records with no unknown field; the others go to ``bad`` with the fields named."""
        name_set = self.name_set
        keep_msgs: list[StreamMessage] = []
        keep: list[dict[str, Any]] = []
        for m, r in zip(messages, records, strict=True):
            if r.keys() <= name_set:
                keep_msgs.append(m)
                keep.append(r)
            else:
                unknown = sorted(set(r) - name_set)
                fields = f"field{'s' if len(unknown) > 1 else ''} {', '.join(map(repr, unknown))}"
                bad.append((m, f"unknown {fields}: {self.asset!r} has {', '.join(self.names)}"))
        return keep_msgs, keep

    def _kind_errors(self, columns: list[list[Any]]) -> dict[int, str]:
        """Rows whose values have the wrong JSON kind for their column (one C-level pass per column)."""
        wrong: dict[int, str] = {}
        for name, f, values, accepts in zip(self.names, self.schema, columns, self.accepts, strict=True):
            if accepts is None:
                continue
            kinds = set(map(type, values))
            kinds.discard(_NONE)
            if kinds <= accepts:
                continue
            for i, v in enumerate(values):
                if v is not None and type(v) not in accepts and i not in wrong:
                    wrong[i] = f"field {name!r} is {_kind(v)} ({_shown(v)}) where {self.asset!r} has {f.type}"
        return wrong

    def _arrays(self, columns: list[list[Any]]) -> tuple[list[pa.Array], dict[int, str]]:
        """The Arrow columns, or the rows Arrow refuses (out of range, nested mismatch, exotic types)."""
        import pyarrow as pa

        refused = (pa.ArrowInvalid, pa.ArrowTypeError, OverflowError)
        arrays: list[pa.Array] = []
        for name, f, values in zip(self.names, self.schema, columns, strict=True):
            try:
                arrays.append(pa.array(values, type=f.type))
                continue
            except refused as whole:
                failure = str(whole).split("\n")[0]
            wrong: dict[int, str] = {}
            for i, v in enumerate(values):
                try:
                    pa.array([v], type=f.type)
                except refused as exc:
                    detail = str(exc).split("\n")[0]
                    wrong[i] = f"field {name!r} ({_shown(v)}) does not fit {f.type}: {detail}"
            if not wrong:  # only the values together fail: no row can be singled out
                wrong = dict.fromkeys(range(len(values)), f"field {name!r} does not fit {f.type}: {failure}")
            return [], wrong
        return arrays, {}


def _parse(messages: Sequence[StreamMessage]) -> tuple[list[StreamMessage], list[dict[str, Any]], list[Any]]:
    """orjson over every payload: (messages that are objects, the objects, dead letters)."""
    loads = orjson.loads
    try:  # the common case, at C speed: every payload parses and is an object
        values = list(map(loads, map(_PAYLOAD, messages)))
    except orjson.JSONDecodeError:
        pass
    else:
        if set(map(type, values)) == {dict}:
            return list(messages), values, []
    good_msgs: list[StreamMessage] = []
    records: list[dict[str, Any]] = []
    bad: list[tuple[StreamMessage, str]] = []
    for m in messages:
        try:
            value = loads(m.payload)
        except orjson.JSONDecodeError as exc:
            bad.append((m, f"not valid JSON: {exc}"))
            continue
        if type(value) is dict:
            good_msgs.append(m)
            records.append(value)
        else:
            bad.append((m, f"{_kind(value)} where a JSON object is expected"))
    return good_msgs, records, bad


def _schema_to_text(schema: pa.Schema) -> str:
    return base64.b64encode(schema.serialize().to_pybytes()).decode("ascii")


def _schema_from_text(text: str) -> pa.Schema:
    import pyarrow as pa

    return pa.ipc.read_schema(pa.py_buffer(base64.b64decode(text)))


# -- the ingester ----------------------------------------------------------------------------------------


# -- the spool -------------------------------------------------------------------------------------------

_TOPIC = itemgetter(1)  # StreamMessage.topic
_HANDLE = itemgetter(4)  # StreamMessage.handle
_POSITION = itemgetter(2)  # StreamMessage.position
_REDELIVERED = itemgetter(3)  # StreamMessage.redelivered
_RECEIVED = itemgetter(5)  # StreamMessage.received_at
#: A group of messages in a spool segment: magic, message count, first ordinal, body bytes, xxh3-64 of the body.
_GROUP: Final = struct.Struct("<4sIQIQ")
_GROUP_MAGIC: Final = b"CVS1"
_fdatasync: Final = getattr(os, "fdatasync", os.fsync)


def spool_folder(home: str | os.PathLike[str], name: str, url: str | StreamURL) -> Path:
    """The spool of asset ``name`` reading ``url``, under a workspace's home folder."""
    parsed = url if isinstance(url, StreamURL) else parse_stream_url(url)
    digest = xxhash.xxh3_64_hexdigest(parsed.display.encode())[:12]
    return Path(home) / "streams" / f"{name}-{digest}"


def _encode_group(messages: Sequence[StreamMessage]) -> bytes:
    """One group's body: its topics, then positions, arrival times, DUP flags, topic indexes and payload
    lengths as arrays, then the payloads (a handful of C-level calls however many messages)."""
    topics: dict[str, int] = {}
    setdefault = topics.setdefault
    index = array("I", [setdefault(t, len(topics)) for t in map(_TOPIC, messages)])
    payloads = list(map(_PAYLOAD, messages))
    table = "\0".join(topics).encode()
    return b"".join(
        [
            struct.pack("<II", len(topics), len(table)),
            table,
            array("q", map(_POSITION, messages)).tobytes(),
            array("d", map(_RECEIVED, messages)).tobytes(),
            bytes(map(_REDELIVERED, messages)),
            index.tobytes(),
            array("I", map(len, payloads)).tobytes(),
            *payloads,
        ]
    )


def _decode_group(body: bytes, count: int) -> list[StreamMessage]:
    n_topics, table_bytes = struct.unpack_from("<II", body)
    at = 8
    topics = body[at : at + table_bytes].decode().split("\0") if n_topics else []
    at += table_bytes

    def column(code: str, size: int) -> array[Any]:
        nonlocal at
        values = array(code)
        values.frombytes(body[at : at + size * count])
        at += size * count
        return values

    positions, received = column("q", 8), column("d", 8)
    flags = body[at : at + count]
    at += count
    index, lengths = column("I", 4), column("I", 4)
    out: list[StreamMessage] = []
    for i in range(count):
        end = at + lengths[i]
        out.append(StreamMessage(body[at:end], topics[index[i]], positions[i], bool(flags[i]), None, received[i]))
        at = end
    if at != len(body):
        raise ValueError("group body length does not match its messages")
    return out


class _Spool:
    """The messages taken, in order, on local disk: segment files ``<first ordinal>.spool`` of checksummed
    groups, each written whole and fsynced before its messages are acknowledged to the broker.

    One writer at a time holds an exclusive lock on ``lock`` (released by the kernel when the process dies,
    SIGKILL included). A group cut short by a crash (never acknowledged) is cut off when the spool is
    opened. A segment is deleted once every message in it is committed and 65,535 newer ones are spooled:
    the newest ones stay, so an MQTT redelivery of any of them is recognised after a restart.
    """

    def __init__(self, folder: Path, *, keyed: bool) -> None:
        self.folder = folder
        self.keyed = keyed  # MQTT: remember message keys to recognise DUP redeliveries
        self.last_ordinal = 0
        self.max_position = 0
        self.opened_ordinal = 0
        self.dropped = 0
        self.torn_bytes = 0
        self.recovered: list[tuple[int, list[StreamMessage]]] = []
        # The newest messages (MQTT): their keys are computed only when a redelivery has to be checked.
        self._recent: deque[StreamMessage] = deque(maxlen=MAX_IN_FLIGHT_LIMIT)
        self._index: set[int] | None = None
        self._segments: list[int] = []  # first ordinal of each segment, oldest first
        self._fd = -1
        self._lock_fd = -1
        self._size = 0

    def _path(self, first: int) -> Path:
        return self.folder / f"{first:020d}.spool"

    # opening

    @property
    def is_open(self) -> bool:
        return self._lock_fd >= 0

    def open(self, *, create: bool) -> None:
        """Lock the spool and read what it holds; without ``create``, only a spool that exists.

        Raises:
            Conflict: another ingester holds the lock.
            StoreError: the folder cannot be written, or a segment other than the last is corrupted.
        """
        import fcntl

        if self.is_open or (not create and not self.folder.is_dir()):
            return
        try:
            self.folder.mkdir(parents=True, exist_ok=True)
            lock_fd = os.open(self.folder / "lock", os.O_RDWR | os.O_CREAT, 0o600)
        except OSError as exc:
            raise StoreError(
                f"Cannot create the stream spool in {self.folder}: {exc.strerror or exc}. Choose a folder you "
                "can write with --spool-dir.",
                spool=str(self.folder),
            ) from exc
        try:
            fcntl.flock(lock_fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            holder = os.pread(lock_fd, 32, 0).decode(errors="replace").strip() or "unknown"
            os.close(lock_fd)
            raise Conflict(
                f"Another `conveyor data stream` (PID {holder}) is ingesting this asset from this source: its "
                f"spool {self.folder} is locked. Stop that one first, or ingest under another --name.",
                spool=str(self.folder),
            ) from None
        os.ftruncate(lock_fd, 0)
        os.pwrite(lock_fd, f"{os.getpid()}\n".encode(), 0)
        self._lock_fd = lock_fd
        try:
            self._read()
        except BaseException:
            self.close()
            raise
        self.opened_ordinal = self.last_ordinal

    def _read(self) -> None:
        firsts = sorted(int(p.name.split(".")[0]) for p in self.folder.glob("*.spool") if p.name[:-6].isdigit())
        for n, first in enumerate(firsts):
            self.last_ordinal = max(self.last_ordinal, first - 1)
            path = self._path(first)
            data = path.read_bytes()
            good = self._scan(data)
            if good < len(data):
                if n != len(firsts) - 1:
                    raise StoreError(
                        f"The stream spool segment {path} is corrupted at byte {good:,} and is not the last one, so "
                        "it was not cut short by a crash. Move the folder away to start a fresh spool (messages "
                        "it held that were not committed are then lost).",
                        spool=str(self.folder),
                    )
                with path.open("r+b") as handle:  # the tail of a write a crash cut short: never acknowledged
                    handle.truncate(good)
                    os.fsync(handle.fileno())
                self.torn_bytes = len(data) - good
        self._segments = firsts
        if self.keyed:
            for _first, messages in self.recovered:
                self._recent.extend(messages)
        if firsts:
            self._open_segment(firsts[-1])

    def _scan(self, data: bytes) -> int:
        """Read the groups of one segment into ``recovered``; returns the length of its valid prefix."""
        at = 0
        while at + _GROUP.size <= len(data):
            magic, count, first, length, checksum = _GROUP.unpack_from(data, at)
            body = data[at + _GROUP.size : at + _GROUP.size + length]
            if magic != _GROUP_MAGIC or len(body) != length or xxhash.xxh3_64_intdigest(body) != checksum:
                return at
            try:
                messages = _decode_group(body, count)
            except (ValueError, IndexError, UnicodeDecodeError, struct.error):
                return at
            self.recovered.append((first, messages))
            self.last_ordinal = first + count - 1
            self.max_position = max(self.max_position, *(m.position for m in messages), 0)
            at += _GROUP.size + length
        return at

    def _open_segment(self, first: int) -> None:
        if self._fd >= 0:
            os.close(self._fd)
        path = self._path(first)
        created = not path.exists()
        self._fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
        self._size = os.fstat(self._fd).st_size
        if created:
            self._sync_folder()
            if first not in self._segments:
                self._segments.append(first)

    def _sync_folder(self) -> None:
        fd = os.open(self.folder, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)

    # writing (the intake's thread only)

    def append(self, messages: Sequence[StreamMessage]) -> tuple[int, list[StreamMessage]]:
        """Write ``messages`` as one group and fsync; returns (first ordinal, the messages kept).

        MQTT redeliveries of messages already spooled are dropped (counted in ``dropped``).

        Raises:
            StoreError: the spool cannot be written (disk full, ...).
        """
        kept = list(messages)
        if self.keyed:
            if any(map(_REDELIVERED, kept)):
                if self._index is None:
                    self._index = set(map(_mqtt_key, self._recent))
                index = self._index
                fresh = [not (m.redelivered and _mqtt_key(m) in index) for m in kept]
                if not all(fresh):
                    self.dropped += fresh.count(False)
                    kept = [m for m, f in zip(kept, fresh, strict=True) if f]
            if kept:
                self._recent.extend(kept)
                self._index = None
        first = self.last_ordinal + 1
        if not kept:
            return first, kept
        if self._fd < 0:
            self._open_segment(first)
        body = _encode_group(kept)
        data = _GROUP.pack(_GROUP_MAGIC, len(kept), first, len(body), xxhash.xxh3_64_intdigest(body)) + body
        try:
            view = memoryview(data)
            while view:
                view = view[os.write(self._fd, view) :]
            _fdatasync(self._fd)
        except OSError as exc:
            raise StoreError(
                f"Cannot write to the stream spool in {self.folder}: {exc.strerror or exc}. Nothing that was not "
                "written is acknowledged; free space (or fix the folder) and start the ingester again.",
                spool=str(self.folder),
            ) from exc
        self._size += len(data)
        self.last_ordinal += len(kept)
        self.max_position = max(self.max_position, kept[-1].position, kept[0].position)
        if self._size >= _SPOOL_SEGMENT_BYTES:
            self._open_segment(self.last_ordinal + 1)
        return first, kept

    def release(self, complete: int) -> None:
        """Delete the segments whose messages are all committed (through ordinal ``complete``), keeping the
        newest 65,535 messages."""
        while len(self._segments) > 1:
            last = self._segments[1] - 1
            if last > complete or self.last_ordinal - last < MAX_IN_FLIGHT_LIMIT:
                break
            self._path(self._segments.pop(0)).unlink(missing_ok=True)

    def close(self) -> None:
        for fd in (self._fd, self._lock_fd):
            if fd >= 0:
                with contextlib.suppress(OSError):
                    os.close(fd)
        self._fd = self._lock_fd = -1


# -- the intake ------------------------------------------------------------------------------------------


class _Intake:
    """Takes messages from the source on its own thread: appends each group to the spool (fsync), then
    acknowledges it to the broker, then hands it to the ingester, in order. It keeps reading while the
    ingester commits, so the broker never waits on a lake commit; it pauses when the ingester is
    ``handoff_limit`` messages behind (the broker then holds what comes, up to its limits)."""

    def __init__(
        self,
        source: StreamSource,
        spool: _Spool,
        *,
        max_messages: int | None,
        handoff_limit: int,
        notes: deque[str],
    ) -> None:
        self.source = source
        self.spool = spool
        self.max_messages = max_messages
        self.taken = 0
        self.connected = False
        self.failure: BaseException | None = None
        self.finished = threading.Event()
        self._half = max(1, source.max_in_flight // 2)
        self._handoff: deque[tuple[int, list[StreamMessage], float]] = deque()
        self._handoff_size = 0
        self._limit = handoff_limit
        self._cond = threading.Condition()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._complete = 0
        self._released = 0
        self._notes = notes

    def connect(self, after: int) -> None:
        self.source.open(after)
        self.connected = True

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name="conveyor-stream-intake", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        """Spool and acknowledge what was polled, then stop taking messages."""
        self._stop.set()
        with self._cond:
            self._cond.notify_all()

    def join(self) -> None:
        if self._thread is not None:
            self._thread.join()
        else:
            self.finished.set()

    def committed(self, ordinal: int) -> None:
        """Every message through ``ordinal`` is in the lake: its spool segments may go."""
        self._complete = max(self._complete, ordinal)

    @property
    def drained(self) -> bool:
        return self.finished.is_set() and not self._handoff

    def take(self, limit: int, timeout: float) -> tuple[int, list[StreamMessage], float] | None:
        """Up to ``limit`` spooled messages of one group: (first ordinal, messages, monotonic arrival time)."""
        with self._cond:
            if not self._handoff:
                if self.finished.is_set():
                    return None
                self._cond.wait(timeout)
                if not self._handoff:
                    return None
            first, messages, at = self._handoff[0]
            if len(messages) <= limit:
                self._handoff.popleft()
            else:
                self._handoff[0] = (first + limit, messages[limit:], at)
                messages = messages[:limit]
            self._handoff_size -= len(messages)
            self._cond.notify_all()
            return first, messages, at

    # the thread

    def _run(self) -> None:
        pending: list[StreamMessage] = []
        pending_at = 0.0
        limit = self.max_messages
        try:
            while not self._stop.is_set() and (limit is None or self.taken < limit):
                if not pending and not self._housekeep():
                    continue
                want = self._half - len(pending)
                if limit is not None:
                    want = min(want, limit - self.taken)
                timeout = 0.25 if not pending else max(0.0, pending_at + _SPOOL_EVERY - time.monotonic())
                got = self.source.poll(max(want, 1), timeout)
                if isinstance(got, Reset):
                    self.taken -= len(pending)  # they come again
                    pending = []
                    if not self._rewind():
                        break
                    continue
                if got:
                    if not pending:
                        pending_at = time.monotonic()
                    pending.extend(got)
                    self.taken += len(got)
                if self._due(pending, pending_at):
                    self._spool(pending, pending_at)
                    pending = []
            if pending:
                self._spool(pending, pending_at)
        except BaseException as exc:  # noqa: BLE001 - handed to the ingester's thread, which raises it
            self.failure = exc
        finally:
            with self._cond:
                self.finished.set()
                self._cond.notify_all()

    def _housekeep(self) -> bool:
        """Between groups: delete committed spool segments; False (after a short wait) while the ingester is
        ``handoff_limit`` messages behind."""
        if self._complete > self._released:
            self._released = self._complete
            self.spool.release(self._released)
        if self._handoff_size < self._limit:
            return True
        with self._cond:
            self._cond.wait_for(lambda: self._handoff_size < self._limit or self._stop.is_set(), 0.25)
        return False

    def _due(self, pending: list[StreamMessage], pending_at: float) -> bool:
        """Whether the polled messages go to the spool now (half the window, 50 ms old, or the last ones)."""
        return bool(pending) and (
            len(pending) >= self._half
            or time.monotonic() - pending_at >= _SPOOL_EVERY
            or (self.max_messages is not None and self.taken >= self.max_messages)
        )

    def _spool(self, pending: list[StreamMessage], arrived: float) -> None:
        first, kept = self.spool.append(pending)
        self.source.ack(pending)  # redeliveries dropped included: the broker must stop resending them
        if kept:
            with self._cond:
                self._handoff.append((first, kept, arrived))
                self._handoff_size += len(kept)
                self._cond.notify_all()

    def _rewind(self) -> bool:
        """Re-position the source after a lost connection, retrying with backoff; False when stopped meanwhile."""
        delay = 0.5
        while not self._stop.is_set():
            try:
                self.source.rewind(self.spool.max_position)
                return True
            except StoreUnavailable as exc:
                self._notes.append(f"{exc.message} Retrying in {delay:.1f} s.")
            if self._stop.wait(delay):
                break
            delay = min(delay * 2, 30.0)
        return False


# -- gaps in a user's sequence field ---------------------------------------------------------------------

#: Topics whose last value is remembered (the most recently seen ones); a topic beyond starts afresh.
_SEQUENCE_TOPICS: Final = 10_000


class _SequenceCheck:
    """Checks that an integer field grows by one per message on each topic; records the gaps.

    Its state (the last value per topic, and the ordinal through which it has looked) rides in both assets'
    checkpoints, so a restart goes on from the last commit without reporting a gap twice.
    """

    def __init__(self, name: str, states: Iterable[dict[str, Any] | None]) -> None:
        self.field = name
        self.through = 0
        self.last: dict[str, int] = {}
        for state in states:
            if state and state.get("field") == name and int(state.get("through", 0)) > self.through:
                self.through = int(state["through"])
                self.last = {str(k): int(v) for k, v in state.get("last", {}).items()}
        self.gaps = 0
        self.missing = 0
        self.out_of_order = 0
        self.without_value = 0
        self.kept: list[dict[str, Any]] = []

    def check(
        self, messages: Sequence[StreamMessage], records: Sequence[dict[str, Any]], ordinals: Sequence[int]
    ) -> list[dict[str, Any]]:
        """The gaps among ``records`` (parsed ``messages``, in order, with their ordinals) not yet looked at."""
        found: list[dict[str, Any]] = []
        last, name = self.last, self.field
        for m, record, ordinal in zip(messages, records, ordinals, strict=True):
            if ordinal <= self.through:
                continue  # a replay of what was checked before the last commit
            value = record.get(name)
            if type(value) is not int:
                self.without_value += 1
                continue
            previous = last.pop(m.topic, None)
            last[m.topic] = value
            if previous is None:
                if len(last) > _SEQUENCE_TOPICS:
                    del last[next(iter(last))]
                continue
            if value > previous + 1:
                missing = value - previous - 1
                gap = {"topic": m.topic, "after": previous, "next": value, "missing": missing}
                found.append(gap)
                self.gaps += 1
                self.missing += missing
                if len(self.kept) < _MAX_GAPS_KEPT:
                    self.kept.append(gap)
            elif value <= previous:
                self.out_of_order += 1
        return found

    def state(self, through: int) -> dict[str, Any]:
        return {"field": self.field, "through": through, "last": dict(self.last)}

    def summary(self) -> dict[str, Any]:
        return {
            "field": self.field,
            "gaps": self.gaps,
            "missing": self.missing,
            "out_of_order": self.out_of_order,
            "without_value": self.without_value,
            "first_gaps": list(self.kept),
        }


def _gap_text(name: str, gap: dict[str, Any]) -> str:
    missing = gap["missing"]
    return (
        f"gap in {name!r} on {gap['topic']}: {gap['after']} then {gap['next']} "
        f"({missing:,} value{'s' if missing != 1 else ''} missing)"
    )


# -- the ingester ----------------------------------------------------------------------------------------


@dataclass
class StreamStats:
    """What a run did. ``messages`` counts messages taken from the broker (redeliveries dropped excluded);
    ``replayed`` those an earlier run had spooled and acknowledged but not committed; ``seconds`` the run's
    time, connecting included, opening the workspace not (the CLI's intake is already taking messages then)."""

    source: str
    name: str
    messages: int = 0
    rows: int = 0
    dead_lettered: int = 0
    duplicates: int = 0
    versions: int = 0
    deadletter_versions: int = 0
    replayed: int = 0
    max_in_flight: int = DEFAULT_MAX_IN_FLIGHT
    seconds: float = 0.0
    stopped_by: str = ""
    last_version: str | None = None
    sequence: dict[str, Any] | None = None
    notes: list[str] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        out = {
            "name": self.name,
            "source": self.source,
            "messages": self.messages,
            "rows": self.rows,
            "dead_lettered": self.dead_lettered,
            "duplicates": self.duplicates,
            "versions": self.versions,
            "deadletter_versions": self.deadletter_versions,
            "replayed": self.replayed,
            "max_in_flight": self.max_in_flight,
            "seconds": round(self.seconds, 3),
            "messages_per_second": round(self.messages / self.seconds, 1) if self.seconds > 0 else 0.0,
            "stopped_by": self.stopped_by,
            "last_version": self.last_version,
        }
        if self.sequence is not None:
            out["sequence"] = self.sequence
        return out


@dataclass
class _Mark:
    """What one asset's checkpoint says is committed: messages through ``ordinal`` (and NATS sequences
    through ``seq``); ``complete``: every batch through that ordinal is in both assets."""

    ordinal: int = 0
    seq: int = 0
    complete: int = 0
    legacy_keys: frozenset[int] = frozenset()  # checkpoints written before the spool (MQTT)

    @classmethod
    def of(cls, state: dict[str, Any] | None) -> _Mark:
        if not state:
            return cls()
        keys: frozenset[int] = frozenset()
        if "ordinal" not in state and state.get("keys"):
            packed = array("Q")
            packed.frombytes(base64.b64decode(state["keys"]))
            keys = frozenset(packed)
        return cls(int(state.get("ordinal", 0)), int(state.get("seq", 0)), int(state.get("complete", 0)), keys)

    def covers(self, message: StreamMessage, ordinal: int) -> bool:
        if ordinal <= self.ordinal or 0 < message.position <= self.seq:
            return True
        return bool(self.legacy_keys) and message.redelivered and _mqtt_key(message) in self.legacy_keys


class StreamIngester:
    """Ingest JSON messages from ``source`` into asset ``name`` in micro-batches (see the module docstring).

    ``flush_rows`` / ``flush_seconds``: a version is committed when the batch has that many messages, or
    when its first message is that old. ``max_in_flight``: the most messages the broker may have out to us
    unacknowledged (1 to 65,535). ``sequence_field``: an integer field that grows by one per message on each
    topic; gaps are recorded. ``spool_dir``: where the spool lives (default ``<home>/streams/...``).
    ``workspace`` may be a function that opens it: the intake then starts (and the broker's session
    resumes) before the workspace is opened, which shortens a restart; ``spool_dir`` is then required.
    :meth:`stop` (from a signal handler or another thread) ends :meth:`run` after committing what is spooled.

    Raises (from :meth:`run`):
        BadInput: a bad URL, a missing extra, a refused subscription.
        StoreUnavailable: the broker cannot be reached at start.
        Conflict: another ingester holds the spool.
        ValidationFailed: the dead-letter asset exists with other columns.
    """

    def __init__(
        self,
        workspace: Workspace | Callable[[], Workspace],
        source: str | StreamSource,
        *,
        name: str,
        flush_rows: int = 10_000,
        flush_seconds: float = 5.0,
        max_in_flight: int | None = None,
        sequence_field: str | None = None,
        spool_dir: str | os.PathLike[str] | None = None,
        notify: Callable[[str], None] | None = None,
        on_progress: Callable[[StreamStats], None] | None = None,
    ) -> None:
        from conveyor.refs import validate_name

        validate_name(name, "data asset")
        validate_name(name + DEADLETTER_SUFFIX, "data asset")
        if isinstance(flush_rows, bool) or not isinstance(flush_rows, int) or flush_rows < 1:
            raise BadInput(f"--flush-rows must be a whole number of at least 1, not {flush_rows!r}.")
        if not (flush_seconds > 0 and math.isfinite(flush_seconds)):
            raise BadInput(f"--flush-seconds must be a positive number, not {flush_seconds}.")
        check_max_in_flight(max_in_flight)
        if sequence_field is not None and not sequence_field.strip():
            raise BadInput("--sequence-field needs the name of an integer field of the messages, e.g. seq.")
        self._notes: deque[str] = deque()
        self._notify_user = notify
        if isinstance(source, str):
            source = open_stream_source(source, name=name, max_in_flight=max_in_flight, notify=self._notes.append)
        self.source = source
        self.source_key = source.url.display
        self.name = name
        self.deadletter_name = name + DEADLETTER_SUFFIX
        self.flush_rows = flush_rows
        self.flush_seconds = flush_seconds
        self.sequence_field = sequence_field
        if callable(workspace):
            if spool_dir is None:
                raise TypeError("spool_dir is required when the workspace is opened later")
            self._ws_factory: Callable[[], Workspace] | None = workspace
        else:
            self._ws = workspace
            self._ws_factory = None
            spool_dir = spool_dir or spool_folder(workspace.settings.home, name, source.url)
        self.spool_dir = Path(spool_dir)
        self._on_progress = on_progress
        self._stop = threading.Event()
        self._stop_reason = ""
        self.stats = StreamStats(source=self.source_key, name=name, max_in_flight=source.max_in_flight)

    def stop(self, reason: str = "signal") -> None:
        """Ask :meth:`run` to commit what is spooled and return (safe from signal handlers and other threads)."""
        self._stop_reason = self._stop_reason or reason
        self._stop.set()

    def run(self, *, max_messages: int | None = None, max_seconds: float | None = None) -> StreamStats:
        """Ingest until stopped, ``max_messages`` taken, or ``max_seconds`` passed; returns the stats."""
        _check_limits(max_messages, max_seconds)
        self._started = time.monotonic()
        nats = self.source.url.scheme == "nats"
        spool = _Spool(self.spool_dir, keyed=not nats)
        spool.open(create=self._ws_factory is None)  # else not before the workspace is known to exist
        intake = self._intake = _Intake(
            self.source,
            spool,
            max_messages=max_messages,
            handoff_limit=max(2 * self.flush_rows, 4 * self.source.max_in_flight, 10_000),
            notes=self._notes,
        )
        try:
            # A spool knows where to resume (everything committed was spooled first): reconnect before the
            # workspace opens. Not a NATS spool that holds no position yet: the checkpoint may know one.
            early = spool.is_open and (spool.max_position > 0 or not nats)
            if early:
                intake.connect(spool.max_position)
                intake.start()
            if self._ws_factory is not None:
                opening = time.monotonic()
                self._ws = self._ws_factory()
                self._opening = time.monotonic() - opening
            spool.open(create=True)
            if spool.torn_bytes:
                self._notes.append(
                    f"Cut off {spool.torn_bytes:,} bytes at the end of the spool {spool.folder}: a write that a "
                    "crash interrupted, never acknowledged, so the broker delivers those messages again."
                )
            self._load_state()
            self._settle_spool(spool, early)
            self._replay(spool)
            if not early:
                intake.connect(spool.max_position)
                intake.start()
            self._consume(intake, max_messages, max_seconds)
        finally:
            intake.stop()
            intake.join()
            with contextlib.suppress(Exception):
                self.source.close()
            spool.close()
            self._update_stats()
            self._emit_notes()
        if intake.failure is not None:
            raise intake.failure
        return self.stats

    def _consume(self, intake: _Intake, max_messages: int | None, max_seconds: float | None) -> None:
        buffer: list[StreamMessage] = []
        first = 0
        first_at = last_progress = 0.0
        stopping = False
        while True:
            self._emit_notes()
            if not stopping and self._should_stop(max_seconds):
                stopping = True
                intake.stop()
            now = time.monotonic()
            timeout = 0.25
            if buffer:
                timeout = min(timeout, max(0.0, first_at + self.flush_seconds - now))
            if max_seconds is not None and not stopping:
                timeout = min(timeout, max(0.0, self._started + max_seconds - now))
            got = intake.take(self.flush_rows - len(buffer), timeout)
            if got is not None:
                start, messages, arrived = got
                if not buffer:
                    first, first_at = start, arrived
                buffer.extend(messages)
            elif intake.drained:
                break
            if buffer and (len(buffer) >= self.flush_rows or time.monotonic() - first_at >= self.flush_seconds):
                self._flush(buffer, first)
                buffer = []
            if self._on_progress is not None and time.monotonic() - last_progress >= _PROGRESS_EVERY:
                last_progress = time.monotonic()
                self._on_progress(self._update_stats())
        if buffer:
            self._flush(buffer, first)
        if not self.stats.stopped_by and intake.failure is None:
            self.stats.stopped_by = "max-messages" if max_messages is not None else "source"

    def _should_stop(self, max_seconds: float | None) -> bool:
        if self._stop.is_set():
            self.stats.stopped_by = self._stop_reason
        elif max_seconds is not None and time.monotonic() - self._started >= max_seconds:
            self.stats.stopped_by = "max-seconds"
        return bool(self.stats.stopped_by)

    def _update_stats(self) -> StreamStats:
        self.stats.seconds = time.monotonic() - self._started - self._opening
        intake = getattr(self, "_intake", None)
        if intake is not None:
            self.stats.messages = intake.taken
            self.stats.duplicates = self._dropped + self.source.dropped + intake.spool.dropped
        if self._sequence is not None:
            self.stats.sequence = self._sequence.summary()
        return self.stats

    # -- internals ---------------------------------------------------------------------------------------

    _dropped = 0
    _gap_notes = 0
    _opening = 0.0  # seconds spent opening the workspace (a factory's), left out of the stats' seconds
    _sequence: _SequenceCheck | None = None

    def _emit_notes(self) -> None:
        while self._notes:
            note = self._notes.popleft()
            self.stats.notes.append(note)
            if self._notify_user is not None:
                self._notify_user(note)

    def _load_state(self) -> None:
        data = self._ws.data
        rows_state = data.checkpoint(self.name, self.source_key)
        dead_state = data.checkpoint(self.deadletter_name, self.source_key)
        self._rows, self._dead = _Mark.of(rows_state), _Mark.of(dead_state)
        self._complete = max(self._rows.complete, self._dead.complete)
        self._seq = max(self._rows.seq, self._dead.seq)
        self._spooled_before = any(s and "ordinal" in s for s in (rows_state, dead_state))
        if self.sequence_field is not None:
            self._sequence = _SequenceCheck(
                self.sequence_field, [(s or {}).get("sequence") for s in (rows_state, dead_state)]
            )
        schema = self._asset_schema(self.name)
        if schema is None and dead_state and dead_state.get("schema"):
            schema = _schema_from_text(dead_state["schema"])
        self._shape = _Shape(schema, self.name) if schema is not None else None
        self._rows_exist = self._asset_exists(self.name)
        dead_schema = self._asset_schema(self.deadletter_name)
        self._dead_offsets = True
        if dead_schema is not None:
            have = {f.name for f in dead_schema}
            expected = set(_deadletter_schema().names)
            if have == expected - {"offset"}:
                self._dead_offsets = False  # made before dead letters carried their offset: keep its columns
            elif have != expected:
                raise ValidationFailed(
                    f"{self.deadletter_name!r} exists with columns {', '.join(sorted(have))}; dead letters need "
                    f"{', '.join(_deadletter_schema().names)}. Rename that asset, or ingest under another --name.",
                    asset=self.deadletter_name,
                )

    def _settle_spool(self, spool: _Spool, early: bool) -> None:
        """Line the spool's numbering up with the checkpoints (a new spool continues after them)."""
        floor = max(self._rows.ordinal, self._dead.ordinal)
        if early and floor > spool.opened_ordinal:
            raise StoreError(
                f"The spool {spool.folder} ends at message {spool.opened_ordinal:,} but {self.name!r} has committed "
                f"through message {floor:,} from {self.source_key}: the spool is older than the lake (restored "
                "from a backup?). Move that folder away and start again.",
                spool=str(spool.folder),
            )
        if not early:
            if self._spooled_before and spool.opened_ordinal == 0:
                self._notes.append(
                    f"No spool at {spool.folder}, though {self.name!r} was streamed from {self.source_key} with "
                    "one before: messages an earlier run had acknowledged but not committed, if any, are lost. "
                    "Keep the spool on persistent storage (--spool-dir)."
                )
            spool.last_ordinal = max(spool.last_ordinal, floor)
            spool.max_position = max(spool.max_position, self._rows.seq)

    def _replay(self, spool: _Spool) -> None:
        """Commit what an earlier run spooled (and acknowledged) but had not committed."""
        recovered, spool.recovered = spool.recovered, []
        complete = self._complete
        messages: list[StreamMessage] = []
        first = 0
        for start, group in recovered:
            if start + len(group) - 1 <= complete:
                continue
            skip = max(0, complete + 1 - start)
            if not messages:
                first = start + skip
            messages.extend(group[skip:])
        if not messages:
            self._intake.committed(complete)
            return
        self.stats.replayed = len(messages)
        self._notes.append(
            f"Committing {len(messages):,} messages from the spool that an earlier run had taken (and "
            "acknowledged to the broker) but not committed."
        )
        self._emit_notes()
        for at in range(0, len(messages), self.flush_rows):
            self._flush(messages[at : at + self.flush_rows], first + at)

    def _asset_exists(self, name: str) -> bool:
        try:
            self._ws.data.get(name)
        except NotFound:
            return False
        return True

    def _asset_schema(self, name: str) -> pa.Schema | None:
        import pyarrow as pa
        import pyarrow.parquet as pq

        try:
            version = self._ws.data.get(name)
        except NotFound:
            return None
        with self._ws.artifacts.local_file(version.files[0]["digest"]) as path:
            schema = pq.read_schema(path)
        return pa.schema([pa.field(f.name, f.type) for f in schema])

    def _flush(self, batch: list[StreamMessage], first: int) -> None:
        """Commit ``batch`` (spooled messages with ordinals ``first``, ``first + 1``, ...): dead letters, then rows."""
        last = first + len(batch) - 1
        ordinals = _Ordinals(batch, first)
        objects_msgs, records, bad = _parse(batch)
        gaps: list[dict[str, Any]] = []
        if self._sequence is not None:
            gaps = self._sequence.check(objects_msgs, records, ordinals.of_all(objects_msgs))
        if self._shape is None and records:
            self._shape = _Shape(infer_schema(records), self.name)
        table: pa.Table | None = None
        good: list[StreamMessage] = []
        if self._shape is not None and records:
            table, good, wrong = self._shape.split(objects_msgs, records)
            bad.extend(wrong)
        positions = [m.position for m in batch if m.position]
        table, bad = self._drop_replays(table, good, bad, first, min(positions, default=0), ordinals)
        rows_follow = table is not None and table.num_rows > 0
        seq = max(self._seq, *positions) if positions else self._seq
        source: dict[str, Any] = {"kind": "stream", "url": self.source_key, "messages": len(batch)}
        source["offsets"] = [first, last]
        if positions:
            source["positions"] = [min(positions), max(positions)]
        if gaps:
            self._record_gaps(gaps, source)
        common: dict[str, Any] = {"seq": seq}
        if self._sequence is not None:
            common["sequence"] = self._sequence.state(last)
        if bad:  # dead letters first: see "Dead letters" in the module docstring
            state = {"ordinal": last, "complete": self._complete if rows_follow else last, **common}
            self._commit_dead(bad, source, state, ordinals)
            self._dead = _Mark(last, seq, state["complete"])
        if table is not None and rows_follow:
            self._commit_rows(table, source, {"ordinal": last, "complete": last, **common})
            self._rows = _Mark(last, seq, last)
        self._seq = seq
        self._complete = last
        self._intake.committed(last)

    def _drop_replays(
        self,
        table: pa.Table | None,
        good: list[StreamMessage],
        bad: list[tuple[StreamMessage, str]],
        first: int,
        low: int,
        ordinals: _Ordinals,
    ) -> tuple[pa.Table | None, list[tuple[StreamMessage, str]]]:
        """Drop what an asset's checkpoint already covers (each asset by its own checkpoint)."""
        import pyarrow as pa

        rows, dead = self._rows, self._dead
        if good and (first <= rows.ordinal or 0 < low <= rows.seq or rows.legacy_keys):
            keep = [not rows.covers(m, ordinals.of(m)) for m in good]
            if not all(keep):
                self._dropped += keep.count(False)
                table = table.filter(pa.array(keep)) if table is not None else None
        if bad and (first <= dead.ordinal or 0 < low <= dead.seq or dead.legacy_keys):
            fresh = [(m, r) for m, r in bad if not dead.covers(m, ordinals.of(m))]
            self._dropped += len(bad) - len(fresh)
            bad = fresh
        return table, bad

    def _record_gaps(self, gaps: list[dict[str, Any]], source: dict[str, Any]) -> None:
        """Into the version's source notes, and (the first few of a run) the notes printed."""
        notes = [_gap_text(self.sequence_field or "", g) for g in gaps[:_MAX_GAP_NOTES]]
        if len(gaps) > _MAX_GAP_NOTES:
            notes.append(f"... and {len(gaps) - _MAX_GAP_NOTES:,} more gaps")
        source["notes"] = notes
        source["sequence_gaps"] = gaps[:_MAX_GAPS_KEPT]
        for text in notes[: max(0, _MAX_GAP_NOTES - self._gap_notes)]:
            self._notes.append(f"{self.name}: {text}")
        if self._gap_notes < _MAX_GAP_NOTES <= self._gap_notes + len(notes):
            self._notes.append("Further gaps are in the versions' source notes and the --json summary.")
        self._gap_notes += len(notes)

    def _commit_dead(
        self,
        bad: list[tuple[StreamMessage, str]],
        source: dict[str, Any],
        state: dict[str, Any],
        ordinals: _Ordinals,
    ) -> None:
        from conveyor.data._assets import Checkpoint

        if not self._rows_exist and self._shape is not None:
            state["schema"] = _schema_to_text(self._shape.schema)
        offsets = [m.position or ordinals.of(m) for m, _ in bad] if self._dead_offsets else None
        self._ws.data.commit_table(
            _deadletter_table(bad, offsets),
            name=self.deadletter_name,
            source=source,
            mode="append",
            description=f"Messages from {self.source_key} that could not be ingested into {self.name!r}.",
            checkpoint=Checkpoint(self.source_key, state),
        )
        self.stats.dead_lettered += len(bad)
        self.stats.deadletter_versions += 1

    def _commit_rows(self, table: pa.Table, source: dict[str, Any], state: dict[str, Any]) -> None:
        from conveyor.data._assets import Checkpoint

        version, _ = self._ws.data.commit_table(
            table,
            name=self.name,
            source=source,
            mode="append",
            description=f"Streamed from {self.source_key}.",
            checkpoint=Checkpoint(self.source_key, state),
        )
        self._rows_exist = True
        self.stats.rows += table.num_rows
        self.stats.versions += 1
        self.stats.last_version = version.ref


class _Ordinals:
    """The ordinals of a batch's messages (``first`` + index), looked up by identity when needed."""

    def __init__(self, batch: Sequence[StreamMessage], first: int) -> None:
        self._batch = batch
        self._first = first
        self._index: dict[int, int] | None = None

    def of(self, message: StreamMessage) -> int:
        if self._index is None:
            self._index = {id(m): i for i, m in enumerate(self._batch)}
        return self._first + self._index[id(message)]

    def of_all(self, messages: Sequence[StreamMessage]) -> list[int]:
        if len(messages) == len(self._batch):  # the common case: every message parsed
            return list(range(self._first, self._first + len(messages)))
        return [self.of(m) for m in messages]


def _check_limits(max_messages: int | None, max_seconds: float | None) -> None:
    if max_messages is not None and max_messages < 0:
        raise BadInput(f"--max-messages must be 0 or more, not {max_messages}.")
    if max_seconds is not None and max_seconds < 0:
        raise BadInput(f"--max-seconds must be 0 or more, not {max_seconds}.")


def _deadletter_schema() -> pa.Schema:
    import pyarrow as pa

    return pa.schema(
        [
            pa.field("payload", pa.string()),
            pa.field("reason", pa.string()),
            pa.field("topic", pa.string()),
            pa.field("received_at", pa.timestamp("us", tz="UTC")),
            pa.field("offset", pa.int64()),
        ]
    )


def _deadletter_table(bad: Sequence[tuple[StreamMessage, str]], offsets: Sequence[int] | None) -> pa.Table:
    """Dead letters with their reason, topic, arrival time and (unless the asset predates it) offset."""
    import pyarrow as pa

    schema = _deadletter_schema()
    columns = [
        pa.array([m.payload.decode("utf-8", errors="backslashreplace") for m, _ in bad], pa.string()),
        pa.array([reason for _, reason in bad], pa.string()),
        pa.array([m.topic for m, _ in bad], pa.string()),
        pa.array([int(m.received_at * 1_000_000) for m, _ in bad], pa.timestamp("us", tz="UTC")),
    ]
    if offsets is None:
        return pa.Table.from_arrays(columns, schema=pa.schema(list(schema)[:4]))
    return pa.Table.from_arrays([*columns, pa.array(offsets, pa.int64())], schema=schema)
