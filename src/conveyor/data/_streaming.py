"""Streaming ingestion: JSON messages from MQTT or NATS JetStream into a data asset, one appended version per
micro-batch, at least once on the wire and exactly once in the lake.

The pieces::

    broker ──► StreamSource (an I/O thread fills a deque) ──► StreamIngester.run (main thread)
                                                              parse, route, commit, then acknowledge

**Delivery.** A batch is acknowledged to the broker only after its rows are committed, so a crash loses
nothing: what was not acknowledged is delivered again. Duplicates can then only come from a batch that was
committed but whose acknowledgement did not reach the broker. Each commit saves, in the same transaction as
the version (``commit_table(checkpoint=...)``), what is needed to recognise such a redelivery:

- NATS JetStream: the last committed *stream sequence*. On start (and after a reconnect) the durable pull
  consumer is re-anchored at that sequence + 1 unless the broker already agrees with the checkpoint, so
  delivery resumes exactly after the commit, in order; within a run, a message at or below the highest
  sequence already seen is a redelivery and is dropped.
- MQTT (QoS 1, persistent session): messages have no stable id, so the checkpoint keeps the xxh3-64 keys of
  ``topic + payload`` of the last ``receive_maximum`` committed messages. The broker never has more than
  ``receive_maximum`` unacknowledged messages out to us, so every committed-but-unacknowledged message is in
  that window. A redelivered message (DUP flag set) whose key is in the window is dropped.
  Limit: two byte-identical messages on the same topic are indistinguishable; if one was committed and the
  other is redelivered (uncommitted) within the window, the second is dropped. Give messages an id or a
  timestamp (telemetry nearly always has one) to rule this out.

**Dead letters.** A message that is not JSON, not an object, has a field the schema does not know, or a
value of the wrong type goes to the asset ``<name>_deadletter`` (columns ``payload``, ``reason``, ``topic``,
``received_at``) with a reason that names the field and the expected type. Dead letters are committed
*before* the batch's rows, each asset with its own checkpoint, so a crash between the two commits resumes
from the rows' checkpoint and drops the dead letters already stored. Routing must then be the same on the
second delivery, so before the asset exists the inferred schema rides in the dead-letter checkpoint.

**Schema.** Taken from the asset when it exists, else inferred from the first batch (order of first
appearance; ints and floats together make a double; a column that is null throughout the first batch
becomes a string), then enforced: a missing field is null, an unknown field or a wrong type is a dead
letter. Nested objects are checked by Arrow, which ignores unknown keys inside them.

**Speed.** The hot path is per-message Python, so it is kept to the minimum: the I/O thread only frames
packets and appends tuples to a deque (no locks), the main thread parses with orjson and builds Arrow
columns in one call per column, type checks run over ``set(map(type, column))``. For MQTT, paho's public
receive path costs ~25 µs a message (one ``select`` per packet, three ``recv`` calls, a v5 ``Properties``
object per message); :class:`_FastMqttClient` overrides three of paho's private hooks (buffered reads, all
buffered packets per wake-up, a direct PUBLISH decoder) and falls back to the public API when they are
missing. For NATS, ``fetch()`` creates two asyncio tasks per message; the source instead subscribes an
inbox with a callback and sends JetStream pull requests itself, acknowledging with ``AckPolicy.ALL`` (one
``+ACK`` per batch).

**Broker limits worth knowing.** Mosquitto keeps at most ``max_queued_messages`` (default 1000, in-flight
messages included) for an *offline* persistent session and drops the rest; for an online one it keeps
``receive_maximum`` + that. Run Mosquitto with ``max_queued_messages 0`` (or a large value) when publishers
keep going while the ingester restarts. JetStream keeps what its stream's limits keep.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import math
import threading
import time
from array import array
from collections import deque
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from itertools import repeat
from operator import itemgetter
from typing import TYPE_CHECKING, Any, Final, NamedTuple, Protocol

import orjson
import xxhash

from conveyor.data._assets import Checkpoint
from conveyor.errors import BadInput, ConveyorError, NotFound, StoreUnavailable, Unauthorized, ValidationFailed

if TYPE_CHECKING:
    import pyarrow as pa

    from conveyor.workspace import Workspace

__all__ = [
    "DEADLETTER_SUFFIX",
    "Ledger",
    "StreamIngester",
    "StreamMessage",
    "StreamSource",
    "StreamStats",
    "StreamURL",
    "open_stream_source",
    "parse_stream_url",
]

DEADLETTER_SUFFIX: Final = "_deadletter"
SCHEMES: Final = ("mqtt", "mqtts", "nats")
_DEFAULT_PORTS: Final = {"mqtt": 1883, "mqtts": 8883, "nats": 4222}
_INSTALL_HINT: Final = "pip install 'conveyor-ml[stream]'"
#: The most QoS 1 messages an MQTT 5 broker may have out to us unacknowledged (the protocol's maximum): the
#: broker's buffer for us is this plus its queue, so the larger, the longer a commit may pause reading.
MQTT_RECEIVE_MAXIMUM: Final = 65_535
#: How long a persistent MQTT session (its subscription and queued messages) outlives a disconnect.
MQTT_SESSION_EXPIRY_SECONDS: Final = 7 * 24 * 3600
_NATS_PULL_BATCH: Final = 5_000
_NATS_PULL_EXPIRES: Final = 2.0
_CONNECT_TIMEOUT: Final = 10.0
_POLL_SLICE: Final = 0.05
_PROGRESS_EVERY: Final = 0.5


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
    needs to acknowledge it; ``redelivered`` is the broker's own flag (MQTT DUP, JetStream delivery count > 1).
    """

    payload: bytes
    topic: str
    position: int
    redelivered: bool
    handle: Any
    received_at: float


class Reset:
    """Returned by :meth:`StreamSource.poll` after the connection was lost: every message polled since the
    last commit will come again, so the caller discards its buffer and calls :meth:`StreamSource.rewind`."""


RESET: Final = Reset()


class Ledger(Protocol):
    """What one asset's checkpoint says about which messages are already committed."""

    def seen(self, message: StreamMessage) -> bool:
        """Whether ``message`` is a redelivery of one already committed to this asset."""
        ...

    def advance(self, batch: Sequence[StreamMessage], committed: Sequence[StreamMessage]) -> dict[str, Any]:
        """Record that ``committed`` (part of ``batch``) is being committed; returns the checkpoint state."""
        ...


class StreamSource(Protocol):
    """A broker subscription: connect, hand over batches of messages, acknowledge up to a point, close.

    Implementations read on their own thread and must not block :meth:`poll` for longer than its timeout.
    """

    url: StreamURL
    #: Most messages the broker lets us hold unacknowledged (a micro-batch must fit in half), or None.
    max_unacked: int | None
    #: Redeliveries the source itself recognised and dropped (never handed over).
    dropped: int

    def open(self, committed: dict[str, Any] | None, deadletters: dict[str, Any] | None) -> None:
        """Connect and position the subscription after what the two checkpoints say is committed.

        Raises:
            StoreUnavailable: the broker cannot be reached.
            BadInput: the broker refuses the subscription (the message says why and what to do).
        """
        ...

    def poll(self, max_messages: int, timeout: float) -> list[StreamMessage] | Reset:
        """Up to ``max_messages`` messages, waiting at most ``timeout`` seconds for the first one."""
        ...

    def ack(self, messages: Sequence[StreamMessage]) -> None:
        """Acknowledge ``messages`` (all of one batch, in the order polled), after they were committed."""
        ...

    def rewind(self, committed: dict[str, Any] | None, deadletters: dict[str, Any] | None) -> None:
        """After a :class:`Reset`: resume right after what is committed."""
        ...

    def ledger(self, state: dict[str, Any] | None) -> Ledger:
        """The redelivery check for an asset whose checkpoint holds ``state``."""
        ...

    def close(self) -> None:
        """Send pending acknowledgements and disconnect (the session / consumer stays on the broker)."""
        ...


def open_stream_source(
    url: str | StreamURL,
    *,
    name: str,
    flush_rows: int,
    flush_seconds: float,
    notify: Callable[[str], None] | None = None,
) -> StreamSource:
    """The source for ``url``, named after the asset (MQTT client id, NATS durable consumer).

    Raises:
        BadInput: bad URL, or the ``stream`` extra is not installed.
    """
    parsed = url if isinstance(url, StreamURL) else parse_stream_url(url)
    say = notify or (lambda _message: None)
    if parsed.scheme == "nats":
        return _NatsSource(parsed, name=name, flush_rows=flush_rows, flush_seconds=flush_seconds, notify=say)
    return _MqttSource(parsed, name=name, notify=say)


def _require(module: str, package: str) -> Any:
    import importlib

    try:
        return importlib.import_module(module)
    except ImportError as exc:
        raise BadInput(
            f"Streaming from this broker needs {package}, which is not installed. Install it with: {_INSTALL_HINT}.",
            package=package,
        ) from exc


# -- ledgers (how a redelivery is recognised) ------------------------------------------------------------


class _SequenceLedger:
    """NATS: everything at or below the checkpoint's stream sequence is committed."""

    def __init__(self, state: dict[str, Any] | None) -> None:
        self.seq = int(state.get("seq", 0)) if state else 0

    def seen(self, message: StreamMessage) -> bool:
        return message.position <= self.seq

    def advance(self, batch: Sequence[StreamMessage], committed: Sequence[StreamMessage]) -> dict[str, Any]:
        # The whole batch's range: routing is deterministic, so whatever of it belongs here is in `committed`.
        self.seq = max(self.seq, *(m.position for m in batch))
        return {"seq": self.seq}


_TOPIC_SEEDS: dict[str, int] = {}


def _mqtt_key(message: StreamMessage) -> int:
    seed = _TOPIC_SEEDS.get(message.topic)
    if seed is None:
        seed = _TOPIC_SEEDS[message.topic] = xxhash.xxh3_64_intdigest(message.topic.encode())
    return xxhash.xxh3_64_intdigest(message.payload, seed=seed)


class _KeyLedger:
    """MQTT: the keys of the last ``window`` committed messages; only DUP-flagged messages are checked."""

    def __init__(self, state: dict[str, Any] | None, window: int) -> None:
        keys = array("Q")
        if state and state.get("keys"):
            keys.frombytes(base64.b64decode(state["keys"]))
        self.keys: deque[int] = deque(keys[-window:], maxlen=window)
        self.index = set(self.keys)

    def seen(self, message: StreamMessage) -> bool:
        return message.redelivered and _mqtt_key(message) in self.index

    def advance(self, batch: Sequence[StreamMessage], committed: Sequence[StreamMessage]) -> dict[str, Any]:
        self.keys.extend(_mqtt_key(m) for m in committed)
        self.index = set(self.keys)
        packed = array("Q", self.keys).tobytes()
        return {"keys": base64.b64encode(packed).decode("ascii"), "window": self.keys.maxlen}


# -- MQTT ------------------------------------------------------------------------------------------------


def _mqtt_client_class(mqtt: Any) -> Any:
    """A paho ``Client`` subclass with a fast receive path (see the module docstring), built lazily."""
    from paho.mqtt.enums import MQTTErrorCode

    base = mqtt.Client
    if not all(hasattr(base, hook) for hook in ("_sock_recv", "_sock_close", "_handle_publish", "loop_read")):
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
    connection hands the ingester a :class:`Reset` (the broker resends what we did not acknowledge)."""

    def __init__(self, url: StreamURL, *, name: str, notify: Callable[[str], None]) -> None:
        self.url = url
        self.client_id = mqtt_client_id(name, url)
        self.max_unacked: int | None = MQTT_RECEIVE_MAXIMUM
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
        with self._lock:
            self._epoch += 1
        self._queue.append(RESET)
        self._wake.set()
        if self._closing:
            return
        self._notify(
            f"Lost the connection to the MQTT broker at {self.url.host}:{self.url.port} ({reason}); "
            "reconnecting with backoff. Uncommitted messages will be delivered again."
        )

    _closing = False

    # the contract

    def open(self, committed: dict[str, Any] | None, deadletters: dict[str, Any] | None) -> None:
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
        client.reconnect_delay_set(min_delay=1, max_delay=30)
        if self.url.username:
            client.username_pw_set(self.url.username, self.url.password)
        if self.url.scheme == "mqtts":
            client.tls_set()
        properties = Properties(PacketTypes.CONNECT)  # type: ignore[no-untyped-call]
        properties.SessionExpiryInterval = MQTT_SESSION_EXPIRY_SECONDS
        properties.ReceiveMaximum = MQTT_RECEIVE_MAXIMUM
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
            for m in messages:
                handle = m.handle
                # Only packets of this connection: after a reconnect the broker resends them under new ids.
                if handle & 0xFFFF and handle >> 16 == epoch:
                    client.ack(handle & 0xFFFF, 1)

    def rewind(self, committed: dict[str, Any] | None, deadletters: dict[str, Any] | None) -> None:
        """Nothing to do: the broker's session resends every unacknowledged message on reconnection."""

    def ledger(self, state: dict[str, Any] | None) -> Ledger:
        return _KeyLedger(state, MQTT_RECEIVE_MAXIMUM)

    def close(self) -> None:
        client, self._client = self._client, None
        if client is None:
            return
        self._closing = True
        with contextlib.suppress(Exception):
            client.disconnect()  # after the queued acknowledgements; the session stays (expiry set at connect)
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


def nats_durable_name(name: str, url: StreamURL) -> str:
    """The durable consumer of asset ``name`` reading ``url``'s subject."""
    digest = xxhash.xxh3_64_hexdigest(url.target.encode())[:8]
    return f"conveyor-{name.replace('.', '_')}-{digest}"


class _NatsSource:
    """A JetStream durable pull consumer (``AckPolicy.ALL``) on the stream that captures the subject.

    An asyncio loop runs on its own thread; an inbox subscription's callback appends messages to a deque and
    sends the next pull request when the previous one is done (``batch`` delivered, or a 404/408 status), so
    there is always one request in flight. The consumer's ``max_ack_pending`` (two micro-batches) is the
    back-pressure: the server stops delivering while two batches wait for their commit.
    """

    def __init__(
        self,
        url: StreamURL,
        *,
        name: str,
        flush_rows: int,
        flush_seconds: float,
        notify: Callable[[str], None],
    ) -> None:
        self.url = url
        self.durable = nats_durable_name(name, url)
        self.max_unacked: int | None = None
        self.dropped = 0
        self._notify = notify
        self._batch = max(1, min(flush_rows, _NATS_PULL_BATCH))
        self._max_ack_pending = max(2 * flush_rows + self._batch, 1_000)
        self._ack_wait = max(30.0, 3 * flush_seconds + 30.0)
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
        return asyncio.run_coroutine_threadsafe(coro, self._loop).result(timeout)

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
            self._nc = await asyncio.wait_for(
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

    async def _position(self, committed: dict[str, Any] | None, deadletters: dict[str, Any] | None) -> None:
        """Point the durable consumer right after the rows' checkpoint (recreating it if it disagrees)."""
        from nats.js.api import AckPolicy, ConsumerConfig, DeliverPolicy
        from nats.js.errors import NotFoundError

        rows_seq = int(committed["seq"]) if committed else 0
        both_seq = max(rows_seq, int(deadletters["seq"]) if deadletters else 0)
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
            and (info.delivered.stream_seq or 0) == both_seq
            and config.max_ack_pending == self._max_ack_pending
        )
        if in_sync:
            self._high = both_seq
            return
        if info is not None:
            await self._js.delete_consumer(self._stream, self.durable)
        start = rows_seq + 1
        stream = await self._js.stream_info(self._stream)
        first = stream.state.first_seq
        if rows_seq and first > start:
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
                deliver_policy=DeliverPolicy.BY_START_SEQUENCE if rows_seq else DeliverPolicy.ALL,
                opt_start_seq=start if rows_seq else None,
            ),
        )
        self._high = rows_seq

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
                    await asyncio.sleep(0.05)
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
            await asyncio.sleep(1.0)
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
            "backoff. Uncommitted messages will be delivered again."
        )

    async def _on_reconnected(self) -> None:
        self._notify(f"Reconnected to the NATS server at {self.url.host}:{self.url.port}.")

    async def _on_error(self, exc: Exception) -> None:
        if not self._paused:
            self._notify(f"NATS: {type(exc).__name__}: {exc}")

    async def _open(self, committed: dict[str, Any] | None, deadletters: dict[str, Any] | None) -> None:
        await self._connect()
        await self._position(committed, deadletters)
        await self._subscribe()
        self._watchdog = asyncio.get_running_loop().create_task(self._watch())

    async def _rewind(self, committed: dict[str, Any] | None, deadletters: dict[str, Any] | None) -> None:
        self._paused = True
        self._queue.clear()
        await self._position(committed, deadletters)
        await self._subscribe()

    async def _ack(self, reply: str) -> None:
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

    def open(self, committed: dict[str, Any] | None, deadletters: dict[str, Any] | None) -> None:
        _require("nats", "nats-py")
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, name="conveyor-nats", daemon=True)
        self._thread.start()
        try:
            self._run(self._open(committed, deadletters))
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
        if messages:
            # AckPolicy.ALL: acknowledging the batch's last (highest) sequence acknowledges all before it.
            self._run(self._ack(messages[-1].handle))

    def rewind(self, committed: dict[str, Any] | None, deadletters: dict[str, Any] | None) -> None:
        """One attempt; the ingester retries :class:`StoreUnavailable` with backoff.

        Raises:
            StoreUnavailable: NATS cannot be reached or did not answer.
            BadInput: the stream is gone.
        """
        from nats.js.errors import NotFoundError

        if self._failure is not None:
            raise self._failure
        try:
            self._run(self._rewind(committed, deadletters))
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

    def ledger(self, state: dict[str, Any] | None) -> Ledger:
        return _SequenceLedger(state)

    def close(self) -> None:
        loop, self._loop = self._loop, None
        if loop is None:
            return
        with contextlib.suppress(Exception):
            asyncio.run_coroutine_threadsafe(self._close(), loop).result(10)
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


@dataclass
class StreamStats:
    """What a run did. ``messages`` counts messages taken from the broker (redeliveries dropped excluded)."""

    source: str
    name: str
    messages: int = 0
    rows: int = 0
    dead_lettered: int = 0
    duplicates: int = 0
    versions: int = 0
    deadletter_versions: int = 0
    seconds: float = 0.0
    stopped_by: str = ""
    last_version: str | None = None
    notes: list[str] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "source": self.source,
            "messages": self.messages,
            "rows": self.rows,
            "dead_lettered": self.dead_lettered,
            "duplicates": self.duplicates,
            "versions": self.versions,
            "deadletter_versions": self.deadletter_versions,
            "seconds": round(self.seconds, 3),
            "messages_per_second": round(self.messages / self.seconds, 1) if self.seconds > 0 else 0.0,
            "stopped_by": self.stopped_by,
            "last_version": self.last_version,
        }


class StreamIngester:
    """Ingest JSON messages from ``source`` into asset ``name`` in micro-batches (see the module docstring).

    ``flush_rows`` / ``flush_seconds``: a batch is committed when it has that many messages, or when its
    first message is that old. :meth:`stop` (from a signal handler or another thread) ends :meth:`run` after
    committing what is buffered.

    Raises (from :meth:`run`):
        BadInput: a bad URL, a missing extra, a refused subscription.
        StoreUnavailable: the broker cannot be reached at start.
        ValidationFailed: the dead-letter asset exists with other columns.
    """

    def __init__(
        self,
        workspace: Workspace,
        source: str | StreamSource,
        *,
        name: str,
        flush_rows: int = 10_000,
        flush_seconds: float = 5.0,
        notify: Callable[[str], None] | None = None,
        on_progress: Callable[[StreamStats], None] | None = None,
    ) -> None:
        from conveyor.refs import validate_name

        validate_name(name, "data asset")
        validate_name(name + DEADLETTER_SUFFIX, "data asset")
        if flush_rows < 1:
            raise BadInput(f"--flush-rows must be at least 1, not {flush_rows}.", flush_rows=flush_rows)
        if not (flush_seconds > 0 and math.isfinite(flush_seconds)):
            raise BadInput(f"--flush-seconds must be a positive number, not {flush_seconds}.")
        self._ws = workspace
        self.name = name
        self.deadletter_name = name + DEADLETTER_SUFFIX
        self._notes: deque[str] = deque()
        self._notify_user = notify
        if isinstance(source, str):
            source = open_stream_source(
                source, name=name, flush_rows=flush_rows, flush_seconds=flush_seconds, notify=self._notes.append
            )
        self.source = source
        self.source_key = source.url.display
        self.flush_rows = flush_rows
        if source.max_unacked is not None and flush_rows > source.max_unacked // 2:
            self.flush_rows = source.max_unacked // 2
            self._notes.append(
                f"--flush-rows {flush_rows} is more than the broker lets us hold unacknowledged for two batches; "
                f"using {self.flush_rows}."
            )
        self.flush_seconds = flush_seconds
        self._on_progress = on_progress
        self._stop = threading.Event()
        self._stop_reason = ""
        self.stats = StreamStats(source=self.source_key, name=name)

    def stop(self, reason: str = "signal") -> None:
        """Ask :meth:`run` to commit what it holds and return (safe from signal handlers and other threads)."""
        self._stop_reason = self._stop_reason or reason
        self._stop.set()

    def run(self, *, max_messages: int | None = None, max_seconds: float | None = None) -> StreamStats:
        """Ingest until stopped, ``max_messages`` taken, or ``max_seconds`` passed; returns the stats."""
        _check_limits(max_messages, max_seconds)
        self._started = time.monotonic()
        self._load_state()
        self.source.open(self._rows_state, self._dead_state)
        buffer: list[StreamMessage] = []
        first_at = last_progress = 0.0
        try:
            while not self._should_stop(max_messages, max_seconds):
                now = time.monotonic()
                want = self.flush_rows - len(buffer)
                if max_messages is not None:
                    want = min(want, max_messages - self.stats.messages)
                timeout = 0.25
                if buffer:
                    timeout = min(timeout, max(0.0, first_at + self.flush_seconds - now))
                if max_seconds is not None:
                    timeout = min(timeout, max(0.0, self._started + max_seconds - now))
                got = self.source.poll(max(want, 1), timeout)
                if isinstance(got, Reset):
                    buffer = []  # the broker delivers them again
                    if not self._rewind():
                        break
                    continue
                if got:
                    first_at = first_at if buffer else time.monotonic()
                    buffer.extend(got)
                    self.stats.messages += len(got)
                if buffer and (len(buffer) >= self.flush_rows or time.monotonic() - first_at >= self.flush_seconds):
                    self._flush(buffer)
                    buffer = []
                if self._on_progress is not None and time.monotonic() - last_progress >= _PROGRESS_EVERY:
                    last_progress = time.monotonic()
                    self._on_progress(self._update_stats())
            if buffer:
                self._flush(buffer)
        finally:
            self.source.close()
            self._update_stats()
            self._emit_notes()
        return self.stats

    def _rewind(self) -> bool:
        """Re-position the source after a lost connection, retrying with backoff; False when stopped meanwhile."""
        delay = 0.5
        while True:
            self._emit_notes()
            try:
                self.source.rewind(self._rows_state, self._dead_state)
                return True
            except StoreUnavailable as exc:
                self._notes.append(f"{exc.message} Retrying in {delay:.1f} s.")
            if self._stop.wait(delay):
                self.stats.stopped_by = self._stop_reason
                return False
            delay = min(delay * 2, 30.0)

    def _should_stop(self, max_messages: int | None, max_seconds: float | None) -> bool:
        self._emit_notes()
        if self._stop.is_set():
            self.stats.stopped_by = self._stop_reason
        elif max_messages is not None and self.stats.messages >= max_messages:
            self.stats.stopped_by = "max-messages"
        elif max_seconds is not None and time.monotonic() - self._started >= max_seconds:
            self.stats.stopped_by = "max-seconds"
        return bool(self.stats.stopped_by)

    def _update_stats(self) -> StreamStats:
        self.stats.seconds = time.monotonic() - self._started
        self.stats.duplicates = self._dropped + self.source.dropped
        return self.stats

    # -- internals ---------------------------------------------------------------------------------------

    _dropped = 0

    def _emit_notes(self) -> None:
        while self._notes:
            note = self._notes.popleft()
            self.stats.notes.append(note)
            if self._notify_user is not None:
                self._notify_user(note)

    def _load_state(self) -> None:
        data = self._ws.data
        self._rows_state = data.checkpoint(self.name, self.source_key)
        self._dead_state = data.checkpoint(self.deadletter_name, self.source_key)
        self._rows_ledger = self.source.ledger(self._rows_state)
        self._dead_ledger = self.source.ledger(self._dead_state)
        schema = self._asset_schema(self.name)
        if schema is None and self._dead_state and self._dead_state.get("schema"):
            schema = _schema_from_text(self._dead_state["schema"])
        self._shape = _Shape(schema, self.name) if schema is not None else None
        self._rows_exist = self._asset_exists(self.name)
        dead_schema = self._asset_schema(self.deadletter_name)
        if dead_schema is not None:
            expected = _deadletter_schema()
            have = {f.name for f in dead_schema}
            if have != set(expected.names):
                raise ValidationFailed(
                    f"{self.deadletter_name!r} exists with columns {', '.join(sorted(have))}; dead letters need "
                    f"{', '.join(expected.names)}. Rename that asset, or ingest under another --name.",
                    asset=self.deadletter_name,
                )

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

    def _flush(self, batch: list[StreamMessage]) -> None:
        import pyarrow as pa

        objects_msgs, records, bad = _parse(batch)
        if self._shape is None and records:
            self._shape = _Shape(infer_schema(records), self.name)
        table: pa.Table | None = None
        good: list[StreamMessage] = []
        if self._shape is not None and records:
            table, good, wrong = self._shape.split(objects_msgs, records)
            bad.extend(wrong)
        # Redeliveries of what an earlier run committed (each asset by its own checkpoint).
        if any(self._rows_ledger.seen(m) for m in good):
            keep = [not self._rows_ledger.seen(m) for m in good]
            self._dropped += keep.count(False)
            good = [m for m, k in zip(good, keep, strict=True) if k]
            table = table.filter(pa.array(keep)) if table is not None else None
        if bad:
            fresh = [(m, r) for m, r in bad if not self._dead_ledger.seen(m)]
            self._dropped += len(bad) - len(fresh)
            bad = fresh
        source = {"kind": "stream", "url": self.source_key, "messages": len(batch)}
        positions = [m.position for m in batch if m.position]
        if positions:
            source["positions"] = [min(positions), max(positions)]
        if bad:  # dead letters first: see "Dead letters" in the module docstring
            state = self._dead_ledger.advance(batch, [m for m, _ in bad])
            if not self._rows_exist and self._shape is not None:
                state["schema"] = _schema_to_text(self._shape.schema)
            version, _ = self._ws.data.commit_table(
                _deadletter_table(bad),
                name=self.deadletter_name,
                source=source,
                mode="append",
                description=f"Messages from {self.source_key} that could not be ingested into {self.name!r}.",
                checkpoint=Checkpoint(self.source_key, state),
            )
            self._dead_state = state
            self.stats.dead_lettered += len(bad)
            self.stats.deadletter_versions += 1
        if table is not None and table.num_rows:
            state = self._rows_ledger.advance(batch, good)
            version, _ = self._ws.data.commit_table(
                table,
                name=self.name,
                source=source,
                mode="append",
                description=f"Streamed from {self.source_key}.",
                checkpoint=Checkpoint(self.source_key, state),
            )
            self._rows_state = state
            self._rows_exist = True
            self.stats.rows += table.num_rows
            self.stats.versions += 1
            self.stats.last_version = version.ref
        self.source.ack(batch)


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
        ]
    )


def _deadletter_table(bad: Sequence[tuple[StreamMessage, str]]) -> pa.Table:
    import pyarrow as pa

    return pa.Table.from_arrays(
        [
            pa.array([m.payload.decode("utf-8", errors="backslashreplace") for m, _ in bad], pa.string()),
            pa.array([reason for _, reason in bad], pa.string()),
            pa.array([m.topic for m, _ in bad], pa.string()),
            pa.array([int(m.received_at * 1_000_000) for m, _ in bad], pa.timestamp("us", tz="UTC")),
        ],
        schema=_deadletter_schema(),
    )
