"""What a serving worker records: Prometheus metrics, JSON access logs, and sampled requests for monitoring.

Metrics use prometheus-client's multiprocess mode: each worker writes its values to files in a folder the
supervisor creates (``PROMETHEUS_MULTIPROC_DIR``), and ``/metrics`` on any worker sums every worker's.

The collector keeps a sample of scored rows (inputs, outputs, request id, time) in memory and a background
thread appends them to the lake as data asset ``<endpoint>_requests`` every few seconds (one version per
flush): scoring never waits on the lake, and monitoring reads the asset like any other data.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import random
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import IO, Any

import numpy as np
import orjson

from conveyor.serve._runtime import Scored
from conveyor.serve._spec import DeploymentSpec

__all__ = ["AccessLog", "Collector", "Metrics", "metrics_dir_env"]

_LATENCY_BUCKETS = (0.0005, 0.001, 0.002, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)
_BATCH_BUCKETS = (1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024, 4096)


def metrics_dir_env(folder: Path) -> None:
    """Point prometheus-client at ``folder`` for multiprocess metrics (before it is first imported)."""
    folder.mkdir(parents=True, exist_ok=True)
    os.environ["PROMETHEUS_MULTIPROC_DIR"] = str(folder)


class Metrics:
    """The endpoint's Prometheus metrics, labelled by deployment."""

    def __init__(self, endpoint: str) -> None:
        from prometheus_client import Counter, Gauge, Histogram

        self.endpoint = endpoint
        labels = ["endpoint", "deployment"]
        self._requests = Counter(
            "conveyor_endpoint_requests", "Scoring requests by outcome.", [*labels, "protocol", "status"]
        )
        self._latency = Histogram(
            "conveyor_endpoint_request_seconds",
            "Time from the request's arrival to its answer.",
            labels,
            buckets=_LATENCY_BUCKETS,
        )
        self._batch = Histogram(
            "conveyor_endpoint_batch_rows",
            "Rows scored per model call (micro-batching).",
            labels,
            buckets=_BATCH_BUCKETS,
        )
        self._queue = Gauge(
            "conveyor_endpoint_queue_depth",
            "Requests waiting for the model, summed over workers.",
            labels,
            multiprocess_mode="livesum",
        )
        self._load = Gauge(
            "conveyor_endpoint_model_load_seconds",
            "Seconds the worker took to load the deployment's model (the slowest worker).",
            labels,
            multiprocess_mode="livemax",
        )
        self._mirrored = Counter(
            "conveyor_endpoint_mirrored", "Requests mirrored to a shadow deployment.", [*labels, "outcome"]
        )
        self._children: dict[tuple[str, str, int], tuple[Any, Any]] = {}

    def request(self, deployment: str, protocol: str, status: int, seconds: float) -> None:
        key = (deployment, protocol, status)
        children = self._children.get(key)
        if children is None:
            children = (
                self._requests.labels(self.endpoint, deployment, protocol, str(status)),
                self._latency.labels(self.endpoint, deployment),
            )
            self._children[key] = children
        children[0].inc()
        children[1].observe(seconds)

    def batch_observer(self, deployment: str) -> Callable[[int, int], None]:
        batch = self._batch.labels(self.endpoint, deployment)
        queue = self._queue.labels(self.endpoint, deployment)

        def observe(rows: int, depth: int) -> None:
            batch.observe(rows)
            queue.set(depth)

        return observe

    def model_loaded(self, deployment: str, seconds: float) -> None:
        self._load.labels(self.endpoint, deployment).set(seconds)

    def mirrored(self, deployment: str, outcome: str) -> None:
        self._mirrored.labels(self.endpoint, deployment, outcome).inc()

    def render(self) -> bytes:
        from prometheus_client import CollectorRegistry, generate_latest, multiprocess

        registry = CollectorRegistry()
        multiprocess.MultiProcessCollector(registry)  # type: ignore[no-untyped-call]
        return generate_latest(registry)


class AccessLog:
    """Structured access log lines (one JSON object each), buffered and flushed about once a second."""

    def __init__(self, stream: IO[bytes], endpoint: str) -> None:
        self._stream = stream
        self._endpoint = endpoint
        self._lines: list[bytes] = []

    def __call__(self, record: dict[str, Any]) -> None:
        record["endpoint"] = self._endpoint
        if not self._lines:
            # A quiet endpoint's lines still reach the file within a second.
            with contextlib.suppress(RuntimeError):
                asyncio.get_running_loop().call_later(1.0, self.flush)
        self._lines.append(orjson.dumps(record) + b"\n")
        if len(self._lines) >= 4096:
            self.flush()

    def flush(self) -> None:
        if self._lines:
            data = b"".join(self._lines)
            self._lines.clear()
            # One write per flush: O_APPEND keeps workers' lines whole in the shared file.
            with contextlib.suppress(OSError):
                self._stream.write(data)
                self._stream.flush()


class Collector:
    """Samples scored rows and appends them to the lake in the background.

    ``sample`` is the fraction of requests kept (0–1). ``commit`` stores a batch of rows (a dict of column
    lists) as a new appended version, with the ids of the deployments that scored them (for lineage); it runs
    on the collector's own thread.
    """

    def __init__(
        self,
        endpoint: str,
        sample: float,
        commit: Callable[[dict[str, list[Any]], list[str]], None],
        *,
        flush_seconds: float = 5.0,
        max_rows: int = 50_000,
    ) -> None:
        self.endpoint = endpoint
        self.sample = sample
        self._commit = commit
        self._flush_seconds = flush_seconds
        self._max_rows = max_rows
        self._rows: list[dict[str, Any]] = []
        self._deployments: dict[str, None] = {}
        self._lock = threading.Lock()
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._rng = random.Random()  # noqa: S311 - sampling, not a secret
        self.dropped = 0
        self.stored = 0
        self._thread = threading.Thread(target=self._loop, name="conveyor-collector", daemon=True)
        self._thread.start()

    def takes(self) -> bool:
        """Whether to keep the next request (drawn before it is scored, so a kept request can be scored with
        its probabilities)."""
        return self.sample >= 1.0 or self._rng.random() < self.sample

    def offer(self, deployment: DeploymentSpec, columns: dict[str, Any], rows: int, scored: Scored, rid: str) -> None:
        """Keep a request's rows: each with the request id and its index in the request (``row``; feedback joins
        on both), the time, the deployment, the model, the prediction and, for a binary classifier, ``score``:
        the probability of its second class (the positive one, as scikit-learn orders them)."""
        ts = time.time()
        predictions = scored.predictions
        probabilities = scored.probabilities
        positive = (
            np.asarray(probabilities)[:, 1]
            if probabilities is not None and np.ndim(probabilities) == 2 and np.shape(probabilities)[1] == 2
            else None
        )
        kept = []
        for i in range(rows):
            row: dict[str, Any] = {
                "request_id": rid,
                "row": i,
                "ts": ts,
                "deployment": deployment.name,
                "model": deployment.model,
                "prediction": _plain(predictions[i]),
            }
            if positive is not None:
                row["score"] = float(positive[i])
            for name, values in columns.items():
                row[name] = _plain(values[i])
            kept.append(row)
        with self._lock:
            if len(self._rows) + len(kept) > self._max_rows:
                self.dropped += len(kept)
                return
            self._rows.extend(kept)
            if deployment.id:
                self._deployments[deployment.id] = None

    def _loop(self) -> None:
        while not self._stop.is_set():
            self._wake.wait(self._flush_seconds)
            self._wake.clear()
            self.flush()

    def flush(self) -> None:
        with self._lock:
            rows, self._rows = self._rows, []
            deployments, self._deployments = list(self._deployments), {}
        if not rows:
            return
        names = list(dict.fromkeys(k for row in rows for k in row))
        table = {name: [row.get(name) for row in rows] for name in names}
        try:
            self._commit(table, deployments)
            self.stored += len(rows)
        except Exception as exc:  # noqa: BLE001 - the lake refusing a batch must never stop scoring
            self.dropped += len(rows)
            sys.stderr.write(
                orjson.dumps({"event": "collector_failed", "endpoint": self.endpoint, "error": str(exc)}).decode()
                + "\n"
            )

    def close(self) -> None:
        self._stop.set()
        self._wake.set()
        self._thread.join(timeout=30)
        self.flush()


def _plain(value: Any) -> Any:
    if isinstance(value, np.generic):
        return value.item()
    return value
