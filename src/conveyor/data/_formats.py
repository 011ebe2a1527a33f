"""Reading source files (CSV, JSON, JSON lines, Parquet) and writing the lake's Parquet files.

Polars does the reading and writing: on the benchmark machine it turns CSV into Parquet two to three times
faster than pandas or pyarrow, streaming, on every core. When a file does not parse, Python's own csv
module re-reads it to say exactly where (line, column, expected and found field counts, bad bytes), so the
fast path pays nothing for good error messages.
"""

from __future__ import annotations

import csv
import io
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final, Literal

from conveyor.errors import BadInput, NotFound, ValidationFailed, did_you_mean

if TYPE_CHECKING:
    import polars as pl
    import pyarrow as pa

__all__ = [
    "FORMATS",
    "PARQUET_COMPRESSION",
    "Format",
    "detect_format",
    "fingerprint",
    "scan_source",
    "sink_parquet",
    "write_table",
]

Format = Literal["csv", "json", "jsonl", "parquet"]
FORMATS: tuple[Format, ...] = ("csv", "json", "jsonl", "parquet")
_SUFFIXES: dict[str, Format] = {
    ".csv": "csv",
    ".tsv": "csv",
    ".json": "json",
    ".jsonl": "jsonl",
    ".ndjson": "jsonl",
    ".parquet": "parquet",
    ".pq": "parquet",
}
#: The lake's compression. LZ4 writes fastest here (zstd: files ~20% smaller, ingestion ~20% slower); the
#: same table always gives the same bytes, so content hashes repeat.
PARQUET_COMPRESSION: Final = "lz4"
_INFER_ROWS = 10_000
#: Rows read to find date and time columns (Polars' per-value date guessing is slow: ~60 µs a row).
_DATE_SAMPLE_ROWS = 1_000
_CHUNK = 1 << 22


def detect_format(path: Path, given: str | None) -> Format:
    """The format named by ``given``, or else the one the file's suffix implies.

    Raises:
        BadInput: the format is unknown, or not given and not implied by the suffix.
    """
    if given is not None:
        fmt = given.lower().lstrip(".")
        if fmt not in FORMATS:
            raise BadInput(
                f"Unknown format {given!r}; use one of {', '.join(FORMATS)}.{did_you_mean(fmt, FORMATS)}",
                format=given,
            )
        return fmt
    fmt_from_suffix = _SUFFIXES.get(path.suffix.lower())
    if fmt_from_suffix is None:
        raise BadInput(
            f"Cannot tell the format of {str(path)!r} from its suffix {path.suffix or '(none)'!r}; "
            f"pass --format with one of {', '.join(FORMATS)}.",
            path=str(path),
        )
    return fmt_from_suffix


def check_file(path: Path) -> None:
    """Raises ``NotFound`` / ``BadInput`` for a missing file, a folder or an empty file."""
    if not path.exists():
        raise NotFound(f"No such file: {str(path)!r}. Check the path.", path=str(path))
    if path.is_dir():
        raise BadInput(f"{str(path)!r} is a folder; give a file.", path=str(path))
    if path.stat().st_size == 0:
        raise BadInput(f"{str(path)!r} is empty; there is nothing to ingest.", path=str(path))


def fingerprint(path: Path, fmt: str) -> str:
    """A fast fingerprint of a source file's bytes (xxh3-128), to spot a re-ingestion of unchanged content."""
    import xxhash

    hasher = xxhash.xxh3_128()
    hasher.update(fmt.encode() + b"\0")
    with path.open("rb") as fh:
        while chunk := fh.read(_CHUNK):
            hasher.update(chunk)
    return "xxh3:" + hasher.hexdigest()


def scan_source(
    path: Path, fmt: Format, *, infer_rows: int | None = _INFER_ROWS, fast_dates: bool = True
) -> pl.LazyFrame:
    """A lazy frame over a local file (nothing is read until it is collected or sunk).

    CSV dates and times: with ``fast_dates``, the columns that hold them are found on the first rows and
    converted with the format their first value shows (Polars then parses millions of values in a fraction of
    the time its per-value guessing takes); a later value in another format makes the conversion fail, and
    the caller reads again with ``fast_dates=False``, keeping such columns as text (nothing is lost).
    """
    import polars as pl

    if fmt == "csv":
        separator = "\t" if path.suffix.lower() == ".tsv" else ","
        frame = pl.scan_csv(path, separator=separator, infer_schema_length=infer_rows)
        if not fast_dates:
            return frame
        try:
            head = _head_lines(path, _DATE_SAMPLE_ROWS)
            sample = pl.read_csv(io.BytesIO(head), separator=separator, infer_schema_length=None, try_parse_dates=True)
        except pl.exceptions.PolarsError:
            return frame  # mixed date formats, or a broken file (the full read says where)
        conversions = [
            pl.col(name).str.to_date() if dtype == pl.Date else pl.col(name).str.to_datetime(time_unit="us")
            for name, dtype in sample.schema.items()
            if dtype == pl.Date or isinstance(dtype, pl.Datetime)
        ]
        return frame.with_columns(conversions) if conversions else frame
    if fmt == "parquet":
        return pl.scan_parquet(path)
    if fmt == "jsonl":
        return pl.scan_ndjson(path, infer_schema_length=infer_rows)
    import orjson

    records = orjson.loads(path.read_bytes())
    if isinstance(records, dict):
        records = [records]
    if not isinstance(records, list) or not all(isinstance(r, dict) for r in records):
        raise ValueError("a .json file must hold an object or a list of objects (one per row)")
    return pl.DataFrame(records, infer_schema_length=None).lazy()


def _head_lines(path: Path, lines: int, limit: int = 16 << 20) -> bytes:
    """The header and up to ``lines`` rows of a text file (at most ``limit`` bytes), cut at a line end."""
    with path.open("rb") as fh:
        head = fh.read(limit)
    end, count = 0, -1
    while count < lines:
        found = head.find(b"\n", end)
        if found < 0:
            return head if len(head) < limit else head[:end]
        end, count = found + 1, count + 1
    return head[:end]


def sink_parquet(frame: pl.LazyFrame, dest: Path, *, path: Path, fmt: Format) -> None:
    """Stream ``frame`` (read from ``path``) into a Parquet file, explaining any parse error.

    Raises:
        ValidationFailed: the source does not parse; the message names the line and what was wrong.
    """
    import polars as pl

    try:
        frame.sink_parquet(dest, compression=PARQUET_COMPRESSION, statistics=True)
    except pl.exceptions.InvalidOperationError:
        raise  # a fast date conversion met another format: the caller reads again, guessing per value
    except (pl.exceptions.ComputeError, pl.exceptions.SchemaError, pl.exceptions.ShapeError, ValueError) as exc:
        raise _explain(path, fmt, exc) from exc


def write_table(table: pa.Table, dest: Path) -> None:
    """Write an Arrow table as the lake's Parquet."""
    import polars as pl

    frame = pl.from_arrow(table)
    assert isinstance(frame, pl.DataFrame)
    frame.write_parquet(dest, compression=PARQUET_COMPRESSION, statistics=True)


def needs_full_inference(exc: BaseException) -> bool:
    """Whether a parse error came from types guessed on the first rows (a full-file inference fixes it)."""
    text = str(exc)
    return "could not parse" in text and "as dtype" in text and "unterminated" not in text.lower()


def _explain(path: Path, fmt: Format, exc: BaseException) -> ValidationFailed:
    reason = str(exc).strip().splitlines()[0]
    where = _locate_problem(path) if fmt == "csv" else None
    message = f"{str(path)!r} could not be read as {fmt}: {where or reason}. Fix the file, or pass the right --format."
    return ValidationFailed(message, path=str(path), format=fmt, reason=reason)


def _locate_problem(path: Path) -> str | None:
    """Re-read a CSV with Python's csv module to find the first bad line (only on the error path)."""
    raw = path.read_bytes()
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = raw[: exc.start].count(b"\n") + 1
        column = exc.start - (raw.rfind(b"\n", 0, exc.start) + 1) + 1
        return (
            f"line {line}, column {column}: byte {raw[exc.start : exc.start + 1]!r} is not UTF-8 "
            "(re-save the file as UTF-8)"
        )
    separator = "\t" if path.suffix.lower() == ".tsv" else ","
    reader = csv.reader(io.StringIO(text, newline=""), delimiter=separator, strict=True)
    expected: int | None = None
    try:
        for row in reader:
            if expected is None:
                expected = len(row)
            elif row and len(row) != expected:
                return f"line {reader.line_num} has {len(row)} fields where the header has {expected}"
    except csv.Error as exc:
        if "unexpected end of data" in str(exc):
            return f"a quoted field opened on line {_unclosed_quote_line(text)} is never closed"
        return f"line {reader.line_num}: {exc} (check the quoting)"
    if text.count('"') % 2:
        return "a quoted field is never closed (an odd number of '\"' characters)"
    return None


def _unclosed_quote_line(text: str) -> int:
    inside, opened = False, 1
    for number, line in enumerate(text.splitlines(), start=1):
        for char in line:
            if char == '"':
                inside = not inside
                if inside:
                    opened = number
    return opened


def describe_schema(schema: Any) -> list[dict[str, Any]]:
    """The lake's schema description: ``[{"name", "type", "nullable"}]`` from an Arrow schema, with Arrow's
    layout variants folded together (``large_string`` and ``string_view`` are both ``string``)."""
    return [{"name": f.name, "type": logical_type(f.type), "nullable": f.nullable} for f in schema]


def logical_type(arrow_type: Any) -> str:
    """An Arrow type's name without its physical layout: string, binary and list variants fold together."""
    text = str(arrow_type)
    for physical, logical in (
        ("large_string", "string"),
        ("string_view", "string"),
        ("large_binary", "binary"),
        ("binary_view", "binary"),
        ("large_list", "list"),
        ("list_view", "list"),
    ):
        text = text.replace(physical, logical)
    return text
