"""Metric history chunks: the points of one metric of one run, packed into one row per writer batch.

Layout of ``run_metric_chunks.data`` (format 1): one byte ``0x01``, then ``count`` little-endian int64
steps, ``count`` float64 values and ``count`` int64 timestamps in microseconds since the Unix epoch (UTC).
Only the standard library's ``array`` is used, so reading and writing cost microseconds per chunk.
"""

from __future__ import annotations

import sys
from array import array
from collections.abc import Iterable, Sequence
from datetime import UTC, datetime, timedelta

__all__ = ["decode", "encode", "from_micros", "points", "to_micros"]

_FORMAT = 1
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


def to_micros(when: datetime) -> int:
    """Microseconds since the epoch (exact: no float rounding)."""
    delta = when - _EPOCH
    return (delta.days * 86_400 + delta.seconds) * 1_000_000 + delta.microseconds


def from_micros(micros: int) -> datetime:
    return _EPOCH + timedelta(microseconds=micros)


def encode(steps: Sequence[int], values: Sequence[float], micros: Sequence[int]) -> bytes:
    """Pack parallel sequences of steps, values and timestamps (microseconds) into a chunk."""
    parts: list[array[int] | array[float]] = [array("q", steps), array("d", values), array("q", micros)]
    if sys.byteorder == "big":  # pragma: no cover - the stored format is little-endian everywhere
        for part in parts:
            part.byteswap()
    return bytes([_FORMAT]) + b"".join(part.tobytes() for part in parts)


def decode(data: bytes, count: int) -> tuple[array[int], array[float], array[int]]:
    """Unpack a chunk into (steps, values, timestamps in microseconds).

    Raises:
        ValueError: the chunk is not in a format this version reads, or its length does not match ``count``.
    """
    if not data or data[0] != _FORMAT or len(data) != 1 + 24 * count:
        raise ValueError(f"metric chunk of {len(data)} bytes is not format {_FORMAT} with {count} points")
    size = 8 * count
    steps, values, micros = array("q"), array("d"), array("q")
    steps.frombytes(data[1 : 1 + size])
    values.frombytes(data[1 + size : 1 + 2 * size])
    micros.frombytes(data[1 + 2 * size :])
    if sys.byteorder == "big":  # pragma: no cover
        for part in (steps, values, micros):
            part.byteswap()
    return steps, values, micros


def points(chunks: Iterable[tuple[bytes, int]]) -> list[tuple[int, int, int, float]]:
    """Every point of a metric's chunks (given in write order) as ``(step, micros, sequence, value)``,
    sorted by step, then time, then the order they were logged."""
    result: list[tuple[int, int, int, float]] = []
    sequence = 0
    for data, count in chunks:
        steps, values, micros = decode(data, count)
        for i in range(count):
            result.append((steps[i], micros[i], sequence, values[i]))
            sequence += 1
    result.sort()
    return result
