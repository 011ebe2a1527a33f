"""Data assets and their immutable, content-hashed versions stored as Parquet in the workspace lake."""

from __future__ import annotations

import builtins
import contextlib
import hashlib
import shutil
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

import sqlalchemy as sa

from conveyor.data._formats import (
    PARQUET_COMPRESSION,
    Format,
    check_file,
    describe_schema,
    detect_format,
    fingerprint,
    needs_full_inference,
    scan_source,
    sink_parquet,
    write_table,
)
from conveyor.errors import BadInput, NotFound, ValidationFailed, did_you_mean
from conveyor.governance import add_edge
from conveyor.refs import LATEST, Ref, parse_ref, validate_name
from conveyor.store._helpers import lock_or_create, next_version
from conveyor.store._schema import DataAssetRow, DataVersionRow, IngestCheckpointRow, utcnow

if TYPE_CHECKING:
    import pandas as pd
    import pyarrow as pa
    from sqlalchemy.orm import Session

    from conveyor.data._query import QueryResult
    from conveyor.data._validation import Rules
    from conveyor.workspace import Workspace

__all__ = ["Checkpoint", "DataAsset", "DataAssets", "DataVersion", "IngestResult"]


@dataclass(frozen=True)
class DataVersion:
    """One immutable version of a data asset: a list of Parquet files in the artifact store."""

    id: str
    name: str
    version: int
    content_hash: str
    rows: int
    bytes: int
    schema: list[dict[str, Any]]
    files: list[dict[str, Any]]
    source: dict[str, Any]
    parents: list[str]
    created_at: datetime
    created_by: str
    profile: dict[str, Any] | None = None
    validation: dict[str, Any] | None = None

    @property
    def ref(self) -> str:
        """``name:version``."""
        return f"{self.name}:{self.version}"

    @property
    def columns(self) -> list[str]:
        return [c["name"] for c in self.schema]


@dataclass(frozen=True)
class DataAsset:
    """A named data asset and a summary of its versions."""

    id: str
    name: str
    description: str
    latest_version: int
    versions: int
    created_at: datetime
    created_by: str


@dataclass(frozen=True)
class Checkpoint:
    """How far a repeated ingestion has read a source (a watermark, a stream position, the keys of the last
    micro-batch). It is stored in the same transaction as the version it led to, so a restart resumes exactly
    after what was committed."""

    source_key: str
    state: dict[str, Any]


@dataclass(frozen=True)
class IngestResult:
    """What an ingestion did: the version, and whether it is new (``False``: the content was there)."""

    version: DataVersion
    created: bool
    seconds: float = 0.0
    notes: list[str] = field(default_factory=list)


Mode = Literal["new", "append"]
BAD_LINES = ("error", "skip", "quarantine")
_BAD_LINE_TEXT = 10_000  # characters of a malformed line kept in the quarantine


def _split_bad_lines(path: Path, clean: Path) -> list[dict[str, Any]]:
    """Copy a CSV to ``clean`` without its lines whose number of fields differs from the header's; the left-out
    lines (1-based line number where the record starts, its text, the reason). Streams the file once."""
    import csv

    separator = "\t" if path.suffix.lower() == ".tsv" else ","
    bad: list[dict[str, Any]] = []
    with path.open(newline="", encoding="utf-8", errors="strict") as source, clean.open("w", newline="") as out:
        reader = csv.reader(source, delimiter=separator)
        writer = csv.writer(out, delimiter=separator, lineterminator="\n")
        expected: int | None = None
        start = 1
        for row in reader:
            if expected is None:
                expected = len(row)
                writer.writerow(row)
            elif row and len(row) != expected:
                text = separator.join(row)
                bad.append(
                    {
                        "line": start,
                        "text": text[:_BAD_LINE_TEXT],
                        "reason": f"{len(row)} fields where the header has {expected}",
                    }
                )
            elif row:
                writer.writerow(row)
            start = reader.line_num + 1
    return bad


class DataAssets:
    """The data service, reached as ``ws.data``."""

    def __init__(self, workspace: Workspace) -> None:
        self._ws = workspace

    # -- ingestion -----------------------------------------------------------------------------------

    def ingest(
        self,
        source: str | Path | None = None,
        *,
        name: str,
        format: str | None = None,
        description: str = "",
        store: str | None = None,
        query: str | None = None,
        incremental_column: str | None = None,
        rules: str | Path | Rules | None = None,
        fail_on_invalid: bool = False,
        profile: bool = True,
        bad_lines: str = "error",
    ) -> IngestResult:
        """Ingest a file (CSV, JSON, JSON lines or Parquet), or the result of a SQL query, as a new version of
        asset ``name``.

        ``source`` is a local path, an fsspec URL (``s3://…``, ``https://…``), or with ``store`` a path inside
        that datastore. With ``query`` (and a SQL ``store``) the query's rows are ingested; adding
        ``incremental_column`` reads only rows past the last run's maximum of that column and appends them.
        A file whose bytes are those the latest version came from is not read again: that version is
        returned with ``created`` false.

        With ``rules`` (a YAML file or :class:`Rules`), rows that break a column rule are left out of the
        version and stored as a version of ``<name>_quarantine`` with the rule and reason per row; the summary
        is kept with the version. ``fail_on_invalid`` makes any failure an error that commits nothing.

        ``bad_lines`` (CSV): ``error`` (default) refuses a file with a malformed line (a wrong number of fields),
        naming it; ``skip`` leaves such lines out; ``quarantine`` leaves them out and stores them, with their line
        numbers and text, as a version of ``<name>_quarantine``. Either way the version's notes and
        ``source["bad_lines"]`` say how many and which. Clean files cost nothing extra (the lines are looked at
        only when the fast read fails).

        Raises:
            InvalidReference: ``name`` is not a valid asset name.
            NotFound: the file or datastore does not exist.
            BadInput: unknown format, empty file, a folder, a failing query, or conflicting arguments.
            ValidationFailed: the file does not parse; the message names the line.
            StoreUnavailable: the datastore cannot be reached.
            InvalidSpec: the rules file is broken (the message names the line).
        """
        started = time.perf_counter()
        validate_name(name, "data asset")
        if bad_lines not in BAD_LINES:
            raise BadInput(f"--bad-lines must be one of {', '.join(BAD_LINES)}; got {bad_lines!r}.")
        loaded_rules = _load_rules(rules)
        if query is not None or incremental_column is not None:
            if store is None or query is None:
                raise BadInput("--query and --incremental-column need a SQL datastore: pass --store NAME --query SQL.")
            if source is not None:
                raise BadInput("Give either a file or --query, not both.")
            if loaded_rules is not None:
                raise BadInput("--rules applies to file ingestion for now; validate query results after ingesting.")
            version, created, notes = self._ingest_query(name, store, query, incremental_column, description)
            return IngestResult(version, created, time.perf_counter() - started, notes)
        if source is None:
            raise BadInput("Nothing to ingest: give a file path (or --store NAME --query SQL).")
        with self._fetched(str(source), store) as (path, origin):
            fmt = detect_format(path, format)
            check_file(path)
            print_ = fingerprint(path, fmt)
            if loaded_rules is not None:
                print_ += ":rules-" + _rules_digest(loaded_rules)
            if bad_lines != "error":
                print_ += f":bad-lines-{bad_lines}"
            latest = self._latest_if_fingerprint(name, print_)
            if latest is not None:
                return IngestResult(latest, created=False, seconds=time.perf_counter() - started)
            return self._ingest_parts(
                path, fmt, {**origin, "format": fmt, "fingerprint": print_}, name=name, description=description,
                rules=loaded_rules, fail_on_invalid=fail_on_invalid, profile=profile, bad_lines=bad_lines,
                started=started,
            )  # fmt: skip

    def _ingest_parts(
        self,
        path: Path,
        fmt: Format,
        source_info: dict[str, Any],
        *,
        name: str,
        description: str,
        rules: Rules | None,
        fail_on_invalid: bool,
        profile: bool,
        bad_lines: str,
        started: float,
    ) -> IngestResult:
        """Read a local file into scratch Parquet and commit it (validated with ``rules`` when given)."""
        scratch = self._ws.artifacts.scratch_dir()
        try:
            part = scratch / "part-00000.parquet"
            bad = self._sink_file(path, fmt, part, bad_lines, scratch)
            if bad:
                lines = [b["line"] for b in bad[:100]]
                source_info["bad_lines"] = {"policy": bad_lines, "count": len(bad), "lines": lines}
            if _parquet_rows(part) == 0:
                raise BadInput(f"{str(path)!r} has no rows (a header at most); there is nothing to ingest.")
            if rules is None:
                version, created = self._commit_parts(
                    [part], name=name, source=source_info, description=description, profile=profile
                )
                result = IngestResult(version, created=created, seconds=time.perf_counter() - started)
            else:
                result = self._commit_validated(
                    part, rules, fail_on_invalid, name=name, source=source_info, description=description,
                    started=started, profile=profile,
                )  # fmt: skip
            return self._report_bad_lines(result, bad, bad_lines, name) if bad else result
        finally:
            shutil.rmtree(scratch, ignore_errors=True)

    def _commit_validated(
        self,
        part: Path,
        rules: Rules,
        fail_on_invalid: bool,
        *,
        name: str,
        source: dict[str, Any],
        description: str,
        started: float,
        profile: bool,
    ) -> IngestResult:
        """Split a part into valid rows (the version) and quarantined rows (a version of ``<name>_quarantine``)."""
        import polars as pl

        from conveyor.data._validation import apply_rules

        outcome = apply_rules(pl.scan_parquet(part), rules)
        if fail_on_invalid:
            outcome.raise_if_failed()
        summary = dict(outcome.summary)
        quarantined = outcome.quarantined.height
        if summary.get("rows_valid", 0) == 0:
            raise ValidationFailed(
                f"Every row broke a rule, so there is nothing to ingest into {name!r}: {outcome.message()}"
            )
        valid = part.with_name("valid.parquet")
        outcome.valid.sink_parquet(valid, compression=PARQUET_COMPRESSION, statistics=True)
        version, created = self._commit_parts(
            [valid], name=name, source=source, description=description, validation=summary, profile=profile
        )
        notes = [outcome.message()] if not outcome.ok else []
        if created and quarantined:
            kept, _ = self.commit_table(
                outcome.quarantined.to_arrow(),
                name=f"{name}_quarantine",
                source={"kind": "quarantine", "of": version.ref, "rules": rules.source},
                description=f"Rows of {name} that broke its validation rules",
                parents=[version.id],
            )
            summary["quarantine"] = kept.ref
            with self._ws.store.write() as session:
                row = session.get(DataVersionRow, version.id)
                if row is not None:
                    row.validation = summary
            version = self.get(version.ref)
            notes.append(f"{quarantined:,} rows quarantined in {kept.ref}")
        return IngestResult(version, created, time.perf_counter() - started, notes)

    @contextlib.contextmanager
    def _fetched(self, source: str, store: str | None) -> Iterator[tuple[Path, dict[str, Any]]]:
        """A local path for ``source`` (downloaded first from a remote datastore or URL) and its description."""
        if store is None and "://" not in source:
            path = Path(source).expanduser().absolute()
            yield path, {"kind": "file", "path": str(path)}
            return
        from conveyor.data._stores import Datastore, store_kind, unreachable

        if store is not None:
            datastore = self._ws.datastores.get(store)
            fs, remote = self._ws.datastores.locate(datastore, source)  # confined to the store's root
            origin: dict[str, Any] = {"kind": "datastore", "store": store, "path": source}
        else:
            from fsspec.core import url_to_fs

            datastore = Datastore("", "(url)", store_kind(source), source, {}, {}, "", utcnow(), "")
            fs, remote = url_to_fs(source)
            origin = {"kind": "url", "url": source}
        if datastore.kind == "local":
            path = Path(remote)
            yield path, {**origin, "resolved": str(path)}
            return
        scratch = self._ws.artifacts.scratch_dir()
        try:
            local = scratch / Path(urlsplit_path(remote)).name
            try:
                fs.get_file(remote, str(local))
            except FileNotFoundError as exc:
                raise NotFound(f"No file {source!r} in {datastore.name} ({datastore.url}).", path=source) from exc
            except OSError as exc:
                raise unreachable(datastore, exc) from exc
            yield local, origin
        finally:
            shutil.rmtree(scratch, ignore_errors=True)

    def _ingest_query(
        self, name: str, store: str, query: str, column: str | None, description: str
    ) -> tuple[DataVersion, bool, builtins.list[str]]:
        import xxhash

        from conveyor.data._sql import decode_watermark, read_query
        from conveyor.data._stores import unreachable

        datastore = self._ws.datastores.get(store)
        engine = self._ws.datastores.sql_engine(datastore)
        source_key = f"sql:{store}:{xxhash.xxh3_64_hexdigest(query.strip().encode())}:{column}"
        state = self.checkpoint(name, source_key) if column else None
        after = decode_watermark(state["watermark"]) if state and state.get("watermark") else None
        scratch = self._ws.artifacts.scratch_dir()
        try:
            part = scratch / "part-00000.parquet"
            try:
                read = read_query(engine, query, part, watermark_column=column, after=after)
            except sa.exc.OperationalError as exc:
                raise unreachable(datastore, exc) from exc
            if read.rows == 0:
                existing = self._latest(name)
                if existing is None:
                    raise BadInput(f"The query returned no rows; there is nothing to ingest into {name!r}.")
                past = f" past {column} = {state['watermark']['value']}" if state else ""
                return existing, False, [f"no new rows{past}; {existing.ref} is unchanged"]
            source_info: dict[str, Any] = {"kind": "sql", "store": store, "query": query}
            checkpoint = None
            if column is not None:
                source_info |= {"incremental_column": column, "watermark": read.watermark}
                checkpoint = Checkpoint(source_key, {"watermark": read.watermark})
            version, created = self._commit_parts(
                [part],
                name=name,
                source=source_info,
                description=description,
                mode="append" if column else "new",
                checkpoint=checkpoint,
            )
            notes = [f"{read.rows:,} rows read"]
            if column is not None and read.watermark is not None:
                notes.append(f"watermark {column} = {read.watermark['value']}")
            return version, created, notes
        finally:
            engine.dispose()
            shutil.rmtree(scratch, ignore_errors=True)

    def _latest(self, name: str) -> DataVersion | None:
        try:
            return self.get(name)
        except NotFound:
            return None

    def commit_table(
        self,
        table: pa.Table,
        *,
        name: str,
        source: dict[str, Any],
        description: str = "",
        mode: Mode = "new",
        parents: Sequence[str] = (),
        checkpoint: Checkpoint | None = None,
        edges: Sequence[tuple[str, str, str]] = (),
    ) -> tuple[DataVersion, bool]:
        """Store an Arrow table as the next version of ``name``.

        ``mode="new"``: the version holds exactly this table (and when it equals the latest version, that one
        is returned with ``False``). ``mode="append"``: the version extends the latest version with this
        table's part: nothing is rewritten, and each part is recorded once however long the chain grows.
        ``checkpoint`` is saved in the same transaction, and so are ``edges``, lineage edges
        ``(from_kind, from_id, relation)`` into the version.

        Raises:
            InvalidReference: ``name`` is not a valid asset name.
            ValidationFailed: appended rows do not have the asset's columns and types.
        """
        validate_name(name, "data asset")
        scratch = self._ws.artifacts.scratch_dir()
        try:
            part = scratch / "part-00000.parquet"
            write_table(table, part)
            return self._commit_parts(
                [part],
                name=name,
                source=source,
                description=description,
                mode=mode,
                parents=parents,
                checkpoint=checkpoint,
                edges=edges,
            )
        finally:
            shutil.rmtree(scratch, ignore_errors=True)

    def checkpoint(self, name: str, source_key: str) -> dict[str, Any] | None:
        """The state last saved for ``source_key`` of asset ``name`` (``None`` when it never ran)."""
        with self._ws.store.read() as session:
            row = session.execute(
                sa.select(IngestCheckpointRow.state)
                .join(DataAssetRow, DataAssetRow.id == IngestCheckpointRow.asset_id)
                .where(DataAssetRow.name == name, IngestCheckpointRow.source_key == source_key)
            ).first()
            return None if row is None else dict(row[0])

    def _sink_file(
        self, path: Path, fmt: Format, dest: Path, bad_lines: str = "error", scratch: Path | None = None
    ) -> list[dict[str, Any]]:
        """Write the file as Parquet at ``dest``; with ``bad_lines`` other than ``error`` (CSV), a file that does
        not parse is read again without its malformed lines, which are returned (line number, text, reason)."""
        try:
            self._sink_whole(path, fmt, dest)
        except ValidationFailed:
            if bad_lines == "error" or fmt != "csv" or scratch is None:
                raise
            clean = scratch / "clean.csv"
            bad = _split_bad_lines(path, clean)
            if not bad:
                raise
            self._sink_whole(clean, fmt, dest)
            return bad
        return []

    def _report_bad_lines(
        self, result: IngestResult, bad: list[dict[str, Any]], policy: str, name: str
    ) -> IngestResult:
        shown = ", ".join(str(b["line"]) for b in bad[:10]) + (", …" if len(bad) > 10 else "")
        note = f"{len(bad):,} malformed line(s) left out (line {shown})"
        if policy == "quarantine":  # also when the good rows were there already (kept once: content-addressed)
            import pyarrow as pa

            table = pa.table(
                {
                    "line": pa.array([b["line"] for b in bad], pa.int64()),
                    "text": pa.array([b["text"] for b in bad], pa.string()),
                    "reason": pa.array([b["reason"] for b in bad], pa.string()),
                }
            )
            kept, _ = self.commit_table(
                table,
                name=f"{name}_quarantine",
                source={"kind": "quarantine", "of": result.version.ref, "bad_lines": len(bad)},
                description=f"Malformed lines of {name}'s source (line number, text, reason)",
                parents=[result.version.id],
            )
            note += f"; stored in {kept.ref}"
        return IngestResult(result.version, result.created, result.seconds, [*result.notes, note])

    def _sink_whole(self, path: Path, fmt: Format, dest: Path) -> None:
        import polars as pl

        try:
            try:
                sink_parquet(scan_source(path, fmt), dest, path=path, fmt=fmt)
            except pl.exceptions.InvalidOperationError:
                sink_parquet(scan_source(path, fmt, fast_dates=False), dest, path=path, fmt=fmt)
        except ValidationFailed as exc:
            if not needs_full_inference(exc.__cause__ or exc):
                raise
            # A column's type was guessed from its first rows and a later row disagrees: read it all.
            sink_parquet(scan_source(path, fmt, infer_rows=None, fast_dates=False), dest, path=path, fmt=fmt)
        except ValueError as exc:
            raise ValidationFailed(f"{str(path)!r} could not be read as {fmt}: {exc}.", path=str(path)) from exc

    def _latest_if_fingerprint(self, name: str, print_: str) -> DataVersion | None:
        with self._ws.store.read() as session:
            row = session.scalars(
                sa.select(DataVersionRow)
                .join(DataAssetRow, DataAssetRow.id == DataVersionRow.asset_id)
                .where(DataAssetRow.name == name)
                .order_by(DataVersionRow.version.desc())
                .limit(1)
            ).first()
            if row is not None and row.source.get("fingerprint") == print_:
                return _to_version(row, name, session)
        return None

    def _commit_parts(
        self,
        parts: builtins.list[Path],
        *,
        name: str,
        source: dict[str, Any],
        description: str = "",
        mode: Mode = "new",
        parents: Sequence[str] = (),
        checkpoint: Checkpoint | None = None,
        validation: dict[str, Any] | None = None,
        profile: bool = True,
        edges: Sequence[tuple[str, str, str]] = (),
    ) -> tuple[DataVersion, bool]:
        """Move local Parquet parts into the store and record the version (the one place versions are made).

        A new (non-append) version is profiled here, from the local parts, before they move into the store;
        an append version is profiled on demand (``data profile``), so micro-batches stay cheap.
        """
        import pyarrow.parquet as pq

        metas = [pq.read_metadata(p) for p in parts]
        schema = describe_schema(pq.read_schema(parts[0]))
        for part in parts[1:]:
            if describe_schema(pq.read_schema(part)) != schema:
                raise ValidationFailed(f"Parts of one version must share a schema; {part.name} differs.")
        stats = None
        if profile and mode == "new":
            from conveyor.data._profile import compute_profile

            stats = compute_profile(parts)
        blobs = [self._ws.artifacts.adopt_file(p) for p in parts]
        new_files = [
            {"digest": b.digest, "rows": m.num_rows, "bytes": b.size} for b, m in zip(blobs, metas, strict=True)
        ]
        return self._record_version(
            new_files,
            schema,
            name=name,
            source=source,
            description=description,
            mode=mode,
            parents=parents,
            checkpoint=checkpoint,
            validation=validation,
            stats=stats,
            edges=edges,
        )

    def commit_stored(
        self,
        files: builtins.list[dict[str, Any]],
        *,
        name: str,
        source: dict[str, Any],
        parents: Sequence[str] = (),
        description: str = "",
        profile: bool = True,
        edges: Sequence[tuple[str, str, str]] = (),
    ) -> DataVersion:
        """Make a version of Parquet parts already in the artifact store (``[{"digest", "rows", "bytes"}]``),
        as pipeline steps leave them: their blobs are written by the worker, the version only after success.
        Returns the latest version instead when its content is the same. ``edges`` are lineage edges
        ``(from_kind, from_id, relation)`` into the version, written in the same transaction.
        """
        import pyarrow.parquet as pq

        with contextlib.ExitStack() as stack:
            paths = [stack.enter_context(self._ws.artifacts.local_file(f["digest"])) for f in files]
            schema = describe_schema(pq.read_schema(paths[0]))
            stats = None
            if profile:
                from conveyor.data._profile import compute_profile

                stats = compute_profile(paths)
        version, _ = self._record_version(
            files,
            schema,
            name=name,
            source=source,
            description=description,
            parents=parents,
            stats=stats,
            edges=edges,
        )
        return version

    def _record_version(
        self,
        new_files: builtins.list[dict[str, Any]],
        schema: builtins.list[dict[str, Any]],
        *,
        name: str,
        source: dict[str, Any],
        description: str = "",
        mode: Mode = "new",
        parents: Sequence[str] = (),
        checkpoint: Checkpoint | None = None,
        validation: dict[str, Any] | None = None,
        stats: dict[str, Any] | None = None,
        edges: Sequence[tuple[str, str, str]] = (),
    ) -> tuple[DataVersion, bool]:
        """Record a version of stored parts: the one place version rows are made.

        ``edges`` (``from_kind, from_id, relation``) point at the version, new or the unchanged latest.
        """
        validate_name(name, "data asset")
        with self._ws.store.write() as session:
            asset = lock_or_create(session, DataAssetRow, name=name, created_by=self._ws.actor, description=description)
            latest = session.scalars(
                sa.select(DataVersionRow)
                .where(DataVersionRow.asset_id == asset.id)
                .order_by(DataVersionRow.version.desc())
                .limit(1)
            ).first()
            version_parents = list(parents)
            extends: DataVersionRow | None = None
            rows = sum(int(f["rows"]) for f in new_files)
            size = sum(int(f["bytes"]) for f in new_files)
            content_hash = _content_hash(new_files)
            if mode == "append" and latest is not None:
                _check_append_schema(name, latest.schema, schema)
                extends = latest
                version_parents = [latest.id, *version_parents]
                rows, size = rows + latest.rows, size + latest.bytes
                content_hash = _content_hash(new_files, extends=latest.content_hash)
            if mode == "new" and latest is not None and latest.content_hash == content_hash:
                if checkpoint is not None:
                    _save_checkpoint(session, asset.id, checkpoint, latest.id)
                for from_kind, from_id, relation in edges:
                    add_edge(session, from_kind, from_id, relation, "data_version", latest.id)
                return _to_version(latest, name, session), False
            row = DataVersionRow(
                asset_id=asset.id,
                version=next_version(session, DataVersionRow.version, DataVersionRow.asset_id, asset.id),
                content_hash=content_hash,
                rows=rows,
                bytes=size,
                schema=schema,
                files=new_files,
                extends_id=None if extends is None else extends.id,
                source=source,
                parents=version_parents,
                validation=validation,
                profile=stats,
                created_by=self._ws.actor,
            )
            session.add(row)
            session.flush()
            for parent in version_parents:
                add_edge(session, "data_version", parent, "derived", "data_version", row.id)
            for from_kind, from_id, relation in edges:
                add_edge(session, from_kind, from_id, relation, "data_version", row.id)
            if checkpoint is not None:
                _save_checkpoint(session, asset.id, checkpoint, row.id)
            return _to_version(row, name, session), True

    # -- reading -------------------------------------------------------------------------------------

    def get(self, ref: str | Ref) -> DataVersion:
        """The version ``ref`` names: ``name`` or ``name@latest`` (latest), or ``name:3``.

        Raises:
            NotFound: no such asset or version (with "did you mean" for near names).
        """
        parsed = parse_ref(ref, "data asset") if isinstance(ref, str) else ref
        if parsed.alias not in (None, LATEST):
            raise NotFound(
                f"Data assets have no alias {parsed.alias!r}; use '{parsed.name}@latest' or '{parsed.name}:N'."
            )
        with self._ws.store.read() as session:
            asset = session.scalars(sa.select(DataAssetRow).filter_by(name=parsed.name)).first()
            if asset is None:
                names = session.scalars(sa.select(DataAssetRow.name)).all()
                raise NotFound(
                    f"No data asset named {parsed.name!r}.{did_you_mean(parsed.name, names)}"
                    " List them with 'conveyor data list'.",
                    name=parsed.name,
                )
            query = sa.select(DataVersionRow).where(DataVersionRow.asset_id == asset.id)
            if parsed.version is not None:
                query = query.where(DataVersionRow.version == parsed.version)
            else:
                query = query.order_by(DataVersionRow.version.desc()).limit(1)
            row = session.scalars(query).first()
            if row is None:
                latest = session.scalar(
                    sa.select(sa.func.max(DataVersionRow.version)).where(DataVersionRow.asset_id == asset.id)
                )
                raise NotFound(
                    f"Data asset {parsed.name!r} has no version {parsed.version}; its latest is "
                    f"{parsed.name}:{latest}.",
                    ref=str(parsed),
                )
            return _to_version(row, asset.name, session)

    def list(self) -> builtins.list[DataAsset]:
        """All data assets, by name."""
        with self._ws.store.read() as session:
            stats = (
                sa.select(
                    DataVersionRow.asset_id,
                    sa.func.max(DataVersionRow.version).label("latest"),
                    sa.func.count().label("n"),
                )
                .group_by(DataVersionRow.asset_id)
                .subquery()
            )
            rows = session.execute(
                sa.select(DataAssetRow, stats.c.latest, stats.c.n)
                .join(stats, stats.c.asset_id == DataAssetRow.id)
                .order_by(DataAssetRow.name)
            ).all()
            return [
                DataAsset(a.id, a.name, a.description, int(latest), int(n), a.created_at, a.created_by)
                for a, latest, n in rows
            ]

    def versions(self, name: str) -> builtins.list[DataVersion]:
        """Every version of asset ``name``, oldest first."""
        first = self.get(name)
        with self._ws.store.read() as session:
            rows = session.scalars(
                sa.select(DataVersionRow)
                .join(DataAssetRow, DataAssetRow.id == DataVersionRow.asset_id)
                .where(DataAssetRow.name == first.name)
                .order_by(DataVersionRow.version)
            ).all()
            by_id = {r.id: r for r in rows}
            return [_to_version(r, first.name, session, known=by_id) for r in rows]

    def read_table(self, ref: str | Ref | DataVersion) -> pa.Table:
        """The version's rows as an Arrow table (each file verified against its digest)."""
        import pyarrow as pa
        import pyarrow.parquet as pq

        version = ref if isinstance(ref, DataVersion) else self.get(ref)
        tables = []
        for f in version.files:
            with self._ws.artifacts.local_file(f["digest"]) as path:
                tables.append(pq.read_table(path))
        return pa.concat_tables(tables) if len(tables) > 1 else tables[0]

    def export(self, ref: str | Ref | DataVersion, dest: str | Path, *, format: str | None = None) -> Path:
        """Write a version to a local file as Parquet, CSV or JSON lines (atomically: the file appears whole).

        Raises:
            BadInput: unknown format, or ``dest`` is a folder.
        """
        import polars as pl

        version = ref if isinstance(ref, DataVersion) else self.get(ref)
        target = Path(dest).expanduser().absolute()
        if target.is_dir():
            raise BadInput(
                f"{str(target)!r} is a folder; give a file name such as {target / (version.name + '.parquet')}."
            )
        fmt = detect_format(target, format)
        if fmt == "json":
            raise BadInput("Export writes parquet, csv or jsonl (JSON lines); use --format jsonl for JSON.")
        target.parent.mkdir(parents=True, exist_ok=True)
        tmp = target.with_name(f".{target.name}.{version.id}.tmp")
        try:
            with contextlib.ExitStack() as stack:
                paths = [stack.enter_context(self._ws.artifacts.local_file(f["digest"])) for f in version.files]
                frame = pl.scan_parquet(paths)
                if fmt == "parquet":
                    frame.sink_parquet(tmp, compression="zstd")
                elif fmt == "csv":
                    frame.sink_csv(tmp)
                else:
                    frame.sink_ndjson(tmp)
            tmp.replace(target)
        finally:
            tmp.unlink(missing_ok=True)
        return target

    def query(self, sql: str, *, limit: int | None = None) -> QueryResult:
        """Run DuckDB SQL over the assets: each asset is a table of its latest version, ``"name:3"`` a version.

        Raises:
            BadInput: the SQL does not parse or fails.
            NotFound: it names an unknown asset or version.
        """
        from conveyor.data._query import run_query

        return run_query(self, sql, limit=limit)

    def save_query(self, sql: str, *, name: str, description: str = "") -> IngestResult:
        """Run a query and store its rows as a new version of ``name``; its parents are the versions it read,
        and the query is recorded in the version's source.

        Raises:
            BadInput / NotFound: as for :meth:`query`; also when the query returns no columns.
        """
        started = time.perf_counter()
        validate_name(name, "data asset")
        result = self.query(sql)
        if result.table.num_columns == 0:
            raise BadInput("The query returned no columns; there is nothing to save.")
        version, created = self.commit_table(
            result.table,
            name=name,
            source={"kind": "sql-query", "query": sql, "inputs": [v.ref for v in result.inputs]},
            description=description,
            parents=[v.id for v in result.inputs],
        )
        return IngestResult(version, created, time.perf_counter() - started)

    def to_pandas(self, ref: str | Ref | DataVersion) -> pd.DataFrame:
        """The version's rows as a pandas DataFrame."""
        frame: pd.DataFrame = self.read_table(ref).to_pandas()
        return frame


def _load_rules(rules: str | Path | Rules | None) -> Rules | None:
    if rules is None:
        return None
    from conveyor.data._validation import Rules, load_rules

    return rules if isinstance(rules, Rules) else load_rules(Path(rules))


def _rules_digest(rules: Rules) -> str:
    import orjson
    import xxhash

    return xxhash.xxh3_64_hexdigest(orjson.dumps(rules.to_dict(), option=orjson.OPT_SORT_KEYS, default=str))


def urlsplit_path(remote: str) -> str:
    """The path part of a remote location (for naming the downloaded copy)."""
    from urllib.parse import urlsplit

    return urlsplit(remote).path if "://" in remote else remote


def _parquet_rows(path: Path) -> int:
    import pyarrow.parquet as pq

    return int(pq.read_metadata(path).num_rows)


def _check_append_schema(name: str, existing: list[dict[str, Any]], new: list[dict[str, Any]]) -> None:
    before = {c["name"]: c["type"] for c in existing}
    after = {c["name"]: c["type"] for c in new}
    if before == after:
        return
    missing = sorted(set(before) - set(after))
    extra = sorted(set(after) - set(before))
    changed = sorted(c for c in set(before) & set(after) if before[c] != after[c])
    problems = []
    if missing:
        problems.append(f"missing {', '.join(missing)}")
    if extra:
        problems.append(f"new {', '.join(extra)}")
    if changed:
        problems.append(", ".join(f"{c} is {after[c]} not {before[c]}" for c in changed))
    raise ValidationFailed(
        f"Rows appended to {name!r} must have its columns and types: {'; '.join(problems)}. "
        "Ingest them as a new asset, or as a new (non-append) version.",
        asset=name,
    )


def _save_checkpoint(session: Session, asset_id: str, checkpoint: Checkpoint, version_id: str) -> None:
    row = session.get(IngestCheckpointRow, (asset_id, checkpoint.source_key))
    if row is None:
        session.add(
            IngestCheckpointRow(
                asset_id=asset_id, source_key=checkpoint.source_key, state=checkpoint.state, version_id=version_id
            )
        )
    else:
        row.state, row.version_id, row.updated_at = checkpoint.state, version_id, utcnow()


def _content_hash(files: list[dict[str, Any]], *, extends: str | None = None) -> str:
    """SHA-256 over the parts' digests; an append version chains its parent's hash in front of its own parts."""
    joined = "\n".join(f["digest"] for f in files)
    if extends is not None:
        joined = f"extends {extends}\n{joined}"
    return "sha256:" + hashlib.sha256(joined.encode()).hexdigest()


def _all_files(
    row: DataVersionRow, session: Session, known: dict[str, DataVersionRow] | None = None
) -> list[dict[str, Any]]:
    """A version's full list of parts: those of the versions it extends (oldest first), then its own."""
    if row.extends_id is None:
        return list(row.files)
    if known is not None and row.extends_id in known:
        chain = [row]
        while chain[-1].extends_id is not None and chain[-1].extends_id in known:
            chain.append(known[chain[-1].extends_id])
        if chain[-1].extends_id is None:
            return [f for r in reversed(chain) for f in r.files]
    step = sa.select(DataVersionRow.id, DataVersionRow.extends_id, DataVersionRow.files, sa.literal(0).label("depth"))
    ancestors = step.where(DataVersionRow.id == row.id).cte("ancestors", recursive=True)
    parent = sa.orm.aliased(DataVersionRow)
    ancestors = ancestors.union_all(
        sa.select(parent.id, parent.extends_id, parent.files, ancestors.c.depth + 1).where(
            parent.id == ancestors.c.extends_id
        )
    )
    chain_files = session.execute(sa.select(ancestors.c.files).order_by(ancestors.c.depth.desc())).scalars()
    return [f for files in chain_files for f in files]


def _to_version(
    row: DataVersionRow, name: str, session: Session, known: dict[str, DataVersionRow] | None = None
) -> DataVersion:
    return DataVersion(
        id=row.id,
        name=name,
        version=row.version,
        content_hash=row.content_hash,
        rows=row.rows,
        bytes=row.bytes,
        schema=list(row.schema),
        files=_all_files(row, session, known),
        source=dict(row.source),
        parents=list(row.parents or []),
        created_at=row.created_at,
        created_by=row.created_by,
        profile=None if row.profile is None else dict(row.profile),
        validation=None if row.validation is None else dict(row.validation),
    )
