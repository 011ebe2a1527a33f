"""The metadata tables (SQLAlchemy 2 declarative models).

Every entity has a stable ULID ``id``, a timezone-aware ``created_at`` and a ``created_by``. Lineage is one
generic edge table written in the same transaction as the entity it describes, so the graph from a data
source to a served prediction is never missing a link.

Changing a table means adding an Alembic revision under ``store/migrations/versions`` and bumping
``SCHEMA_REVISION``; ``tests/store/test_migrations.py`` checks that the models and migrations agree.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from sqlalchemy import (
    JSON,
    BigInteger,
    DateTime,
    Float,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    MetaData,
    String,
    Text,
    TypeDecorator,
    UniqueConstraint,
)
from sqlalchemy.engine import Dialect
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column
from sqlalchemy.types import TypeEngine

#: The Alembic revision these models correspond to (checked against the migration scripts by a test).
SCHEMA_REVISION = "0011"

NAME_LENGTH = 128


def new_id() -> str:
    """A new sortable identifier (ULID, 26 characters, lower case)."""
    from ulid import ULID  # its import reads the package's metadata: only for commands that write

    return str(ULID()).lower()


def utcnow() -> datetime:
    return datetime.now(UTC)


class UTCDateTime(TypeDecorator[datetime]):
    """Stores UTC, always returns timezone-aware UTC datetimes (SQLite keeps no zone of its own)."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError(f"naive datetime {value!r} given to the store; Conveyor stores UTC-aware times")
        value = value.astimezone(UTC)
        return value.replace(tzinfo=None) if dialect.name == "sqlite" else value

    def process_result_value(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


class PostgresJSONB(TypeDecorator[Any]):
    """PostgreSQL's JSONB, its dialect imported only when a PostgreSQL database uses it (the import costs a command
    on SQLite tens of milliseconds)."""

    impl = JSON
    cache_ok = True

    def load_dialect_impl(self, dialect: Dialect) -> TypeEngine[Any]:
        from sqlalchemy.dialects.postgresql import JSONB

        return dialect.type_descriptor(JSONB())


JSONType = JSON().with_variant(PostgresJSONB(), "postgresql")

NAMING = {
    "ix": "ix_%(table_name)s_%(column_0_N_name)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING)
    type_annotation_map = {datetime: UTCDateTime(), dict[str, Any]: JSONType, list[Any]: JSONType}  # noqa: RUF012


class Entity:
    """Columns every first-class entity carries."""

    id: Mapped[str] = mapped_column(String(26), primary_key=True, default=new_id)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    created_by: Mapped[str] = mapped_column(String(NAME_LENGTH), default="")


class DataAssetRow(Entity, Base):
    __tablename__ = "data_assets"
    name: Mapped[str] = mapped_column(String(NAME_LENGTH), unique=True)
    description: Mapped[str] = mapped_column(Text, default="")


class DataVersionRow(Entity, Base):
    """An immutable version of a data asset: a list of Parquet files in the artifact store."""

    __tablename__ = "data_versions"
    __table_args__ = (
        UniqueConstraint("asset_id", "version"),
        Index(None, "asset_id", "content_hash"),
    )
    asset_id: Mapped[str] = mapped_column(ForeignKey("data_assets.id", ondelete="CASCADE"))
    version: Mapped[int] = mapped_column(Integer)
    content_hash: Mapped[str] = mapped_column(String(71))
    rows: Mapped[int] = mapped_column(BigInteger)
    bytes: Mapped[int] = mapped_column(BigInteger)
    schema: Mapped[list[Any]] = mapped_column()
    #: this version's own Parquet parts; an append version's full list is ``extends``' list followed by these.
    files: Mapped[list[Any]] = mapped_column()
    #: the version whose parts come first (append versions), so a long stream of micro-batches stores each
    #: part once instead of copying the whole list into every version.
    extends_id: Mapped[str | None] = mapped_column(ForeignKey("data_versions.id"), default=None)
    source: Mapped[dict[str, Any]] = mapped_column()
    #: ids of the versions this one was made from (the previous version for an append).
    parents: Mapped[list[Any]] = mapped_column(default=list, server_default="[]")
    #: statistics per column, computed at ingestion.
    profile: Mapped[dict[str, Any] | None] = mapped_column(default=None)
    #: what the validation rules found: counts per rule and the quarantine version, if any.
    validation: Mapped[dict[str, Any] | None] = mapped_column(default=None)


class DatastoreRow(Entity, Base):
    """Where data comes from: a folder, a bucket, a database or a web server. ``url`` never holds a secret;
    ``credentials`` says where to find them (environment variables or a named secret)."""

    __tablename__ = "datastores"
    name: Mapped[str] = mapped_column(String(NAME_LENGTH), unique=True)
    kind: Mapped[str] = mapped_column(String(16))
    url: Mapped[str] = mapped_column(String(2048))
    options: Mapped[dict[str, Any]] = mapped_column(default=dict)
    credentials: Mapped[dict[str, Any]] = mapped_column(default=dict)
    description: Mapped[str] = mapped_column(Text, default="")


class IngestCheckpointRow(Base):
    """How far a repeated ingestion has read a source: an incremental watermark, a stream position, the keys
    of the last committed micro-batch. Updated in the same transaction as the version it led to."""

    __tablename__ = "ingest_checkpoints"
    asset_id: Mapped[str] = mapped_column(ForeignKey("data_assets.id", ondelete="CASCADE"), primary_key=True)
    source_key: Mapped[str] = mapped_column(String(255), primary_key=True)
    state: Mapped[dict[str, Any]] = mapped_column()
    version_id: Mapped[str | None] = mapped_column(ForeignKey("data_versions.id"), default=None)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow)


class ExperimentRow(Entity, Base):
    __tablename__ = "experiments"
    name: Mapped[str] = mapped_column(String(NAME_LENGTH), unique=True)


class RunRow(Entity, Base):
    """A tracked run. While it is ``running``, ``process_*`` name the process recording it and ``heartbeat_at``
    is that process's last sign of life, so a reader can mark a run whose process died as ``crashed``."""

    __tablename__ = "runs"
    __table_args__ = (Index(None, "experiment_id", "started_at"), Index(None, "status"), Index(None, "parent_run_id"))
    experiment_id: Mapped[str] = mapped_column(ForeignKey("experiments.id", ondelete="CASCADE"))
    parent_run_id: Mapped[str | None] = mapped_column(ForeignKey("runs.id"), default=None)
    name: Mapped[str] = mapped_column(String(NAME_LENGTH), default="")
    status: Mapped[str] = mapped_column(String(16))
    started_at: Mapped[datetime] = mapped_column(default=utcnow)
    ended_at: Mapped[datetime | None] = mapped_column(default=None)
    error: Mapped[str | None] = mapped_column(Text, default=None)
    process_host: Mapped[str | None] = mapped_column(String(255), default=None)
    process_pid: Mapped[int | None] = mapped_column(Integer, default=None)
    #: ``<machine namespace>:<process start ticks>`` (see ``conveyor._owner``): tells a reused PID apart.
    process_key: Mapped[str | None] = mapped_column(String(64), default=None)
    heartbeat_at: Mapped[datetime | None] = mapped_column(default=None)


class RunParamRow(Base):
    __tablename__ = "run_params"
    run_id: Mapped[str] = mapped_column(ForeignKey("runs.id", ondelete="CASCADE"), primary_key=True)
    key: Mapped[str] = mapped_column(String(250), primary_key=True)
    value: Mapped[str] = mapped_column(Text)


class RunTagRow(Base):
    __tablename__ = "run_tags"
    run_id: Mapped[str] = mapped_column(ForeignKey("runs.id", ondelete="CASCADE"), primary_key=True)
    key: Mapped[str] = mapped_column(String(250), primary_key=True)
    value: Mapped[str] = mapped_column(Text)


class RunMetricChunkRow(Base):
    """A metric's history, in chunks: each row holds the values of one key of one run that one writer batch
    brought (``count`` points packed as little-endian int64 steps, float64 values, int64 epoch microseconds;
    see ``conveyor.tracking._chunks``). A batch of 100,000 values is a handful of rows, not 100,000."""

    __tablename__ = "run_metric_chunks"
    __table_args__ = (Index(None, "run_id", "key", "id"),)
    id: Mapped[int] = mapped_column(BigInteger().with_variant(Integer, "sqlite"), primary_key=True, autoincrement=True)
    run_id: Mapped[str] = mapped_column(ForeignKey("runs.id", ondelete="CASCADE"))
    key: Mapped[str] = mapped_column(String(250))
    count: Mapped[int] = mapped_column(Integer)
    min_step: Mapped[int] = mapped_column(BigInteger)
    max_step: Mapped[int] = mapped_column(BigInteger)
    data: Mapped[bytes] = mapped_column(LargeBinary)


class RunLatestMetricRow(Base):
    """Each metric's latest value per run (highest step, then newest), kept by the tracking writer so that
    search can filter and sort on ``metrics.KEY`` through the ``(key, value)`` index."""

    __tablename__ = "run_latest_metrics"
    __table_args__ = (Index(None, "key", "value", "run_id"),)
    run_id: Mapped[str] = mapped_column(ForeignKey("runs.id", ondelete="CASCADE"), primary_key=True)
    key: Mapped[str] = mapped_column(String(250), primary_key=True)
    value: Mapped[float] = mapped_column(Float)
    step: Mapped[int] = mapped_column(BigInteger, default=0)
    timestamp: Mapped[datetime] = mapped_column(default=utcnow)


class RunArtifactRow(Base):
    __tablename__ = "run_artifacts"
    run_id: Mapped[str] = mapped_column(ForeignKey("runs.id", ondelete="CASCADE"), primary_key=True)
    path: Mapped[str] = mapped_column(String(512), primary_key=True)
    digest: Mapped[str] = mapped_column(String(71))
    size: Mapped[int] = mapped_column(BigInteger)
    media_type: Mapped[str] = mapped_column(String(128), default="application/octet-stream")


class ModelRow(Entity, Base):
    __tablename__ = "models"
    name: Mapped[str] = mapped_column(String(NAME_LENGTH), unique=True)
    description: Mapped[str] = mapped_column(Text, default="")


class ModelVersionRow(Entity, Base):
    __tablename__ = "model_versions"
    __table_args__ = (UniqueConstraint("model_id", "version"),)
    model_id: Mapped[str] = mapped_column(ForeignKey("models.id", ondelete="CASCADE"))
    version: Mapped[int] = mapped_column(Integer)
    run_id: Mapped[str | None] = mapped_column(ForeignKey("runs.id"), default=None)
    flavor: Mapped[str] = mapped_column(String(32))
    digest: Mapped[str] = mapped_column(String(71))
    size: Mapped[int] = mapped_column(BigInteger)
    signature: Mapped[dict[str, Any]] = mapped_column()
    requirements: Mapped[list[Any]] = mapped_column()
    metrics: Mapped[dict[str, Any]] = mapped_column()
    #: how the model file at ``digest`` is serialised: "skops" (safe, preferred) or "joblib" (pickle;
    #: loaded only after its hash is verified)
    format: Mapped[str] = mapped_column(String(16), default="joblib", server_default="joblib")
    #: further files of the version by name, e.g. ``{"model.onnx": {"digest": ..., "size": ...}}``
    files: Mapped[dict[str, Any]] = mapped_column(default=dict, server_default="{}")
    tags: Mapped[dict[str, Any]] = mapped_column(default=dict, server_default="{}")
    description: Mapped[str] = mapped_column(Text, default="", server_default="")


class ModelAliasRow(Base):
    __tablename__ = "model_aliases"
    model_id: Mapped[str] = mapped_column(ForeignKey("models.id", ondelete="CASCADE"), primary_key=True)
    alias: Mapped[str] = mapped_column(String(NAME_LENGTH), primary_key=True)
    version_id: Mapped[str] = mapped_column(ForeignKey("model_versions.id", ondelete="CASCADE"))
    updated_at: Mapped[datetime] = mapped_column(default=utcnow)


class EndpointRow(Entity, Base):
    """An online endpoint: its serving settings, keys and traffic, and the runtime state of its supervisor.

    ``revision`` counts changes of what is served (deployments, traffic, mirror, keys); running workers
    apply a new revision in place and report it. ``pid``/``url`` are the supervisor's while it runs.
    """

    __tablename__ = "endpoints"
    name: Mapped[str] = mapped_column(String(NAME_LENGTH), unique=True)
    description: Mapped[str] = mapped_column(Text, default="")
    auth: Mapped[str] = mapped_column(String(16), default="key")
    #: the keys, encrypted with the workspace's secret key (``enc:`` + Fernet token); never stored in clear.
    primary_key: Mapped[str | None] = mapped_column(String(512), default=None)
    secondary_key: Mapped[str | None] = mapped_column(String(512), default=None)
    settings: Mapped[dict[str, Any]] = mapped_column(default=dict)
    revision: Mapped[int] = mapped_column(Integer, default=1)
    status: Mapped[str] = mapped_column(String(16), default="stopped")
    url: Mapped[str | None] = mapped_column(String(512), default=None)
    pid: Mapped[int | None] = mapped_column(Integer, default=None)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow)


class DeploymentRow(Entity, Base):
    """A model version served behind an endpoint with a share of its traffic (and of mirrored traffic).

    ``settings`` holds the batching knobs; ``url``/``pid`` are unused since deployments share the endpoint's
    worker processes (kept so older workspaces migrate without loss).
    """

    __tablename__ = "deployments"
    __table_args__ = (UniqueConstraint("endpoint_id", "name"),)
    endpoint_id: Mapped[str] = mapped_column(ForeignKey("endpoints.id", ondelete="CASCADE"))
    name: Mapped[str] = mapped_column(String(NAME_LENGTH))
    model_version_id: Mapped[str] = mapped_column(ForeignKey("model_versions.id"))
    traffic: Mapped[int] = mapped_column(Integer, default=100)
    mirror: Mapped[int] = mapped_column(Integer, default=0)
    settings: Mapped[dict[str, Any]] = mapped_column(default=dict)
    status: Mapped[str] = mapped_column(String(16))
    url: Mapped[str | None] = mapped_column(String(512), default=None)
    pid: Mapped[int | None] = mapped_column(Integer, default=None)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow)


class PipelineRow(Entity, Base):
    """A registered pipeline: its definition (a YAML spec, or a Python ``module:attribute`` reference)."""

    __tablename__ = "pipelines"
    name: Mapped[str] = mapped_column(String(NAME_LENGTH), unique=True)
    kind: Mapped[str] = mapped_column(String(16))
    definition: Mapped[dict[str, Any]] = mapped_column()
    description: Mapped[str] = mapped_column(Text, default="")
    updated_at: Mapped[datetime] = mapped_column(default=utcnow)


class PipelineRunRow(Entity, Base):
    __tablename__ = "pipeline_runs"
    __table_args__ = (Index(None, "pipeline_name", "started_at"), Index(None, "status"))
    pipeline_name: Mapped[str] = mapped_column(String(NAME_LENGTH))
    status: Mapped[str] = mapped_column(String(16))
    params: Mapped[dict[str, Any]] = mapped_column()
    #: the graph as it ran: steps, their calls and dependencies (so a run can be resumed exactly).
    graph: Mapped[dict[str, Any]] = mapped_column()
    executor: Mapped[str] = mapped_column(String(255))
    trigger: Mapped[dict[str, Any]] = mapped_column(default=dict)
    #: the process driving the run while it is "running" (so resume can tell a live run from a dead one).
    runner_host: Mapped[str | None] = mapped_column(String(255), default=None)
    runner_pid: Mapped[int | None] = mapped_column(Integer, default=None)
    #: ``<machine namespace>:<process start ticks>`` of the runner (a reused PID is not mistaken for it).
    runner_key: Mapped[str | None] = mapped_column(String(64), default=None)
    #: the runner's last sign of life (what decides for a runner on another machine).
    heartbeat_at: Mapped[datetime | None] = mapped_column(default=None)
    started_at: Mapped[datetime] = mapped_column(default=utcnow)
    ended_at: Mapped[datetime | None] = mapped_column(default=None)
    error: Mapped[str | None] = mapped_column(Text, default=None)


class StepRunRow(Base):
    __tablename__ = "step_runs"
    __table_args__ = (
        UniqueConstraint("pipeline_run_id", "step"),
        Index(None, "cache_key", "status"),
    )
    id: Mapped[str] = mapped_column(String(26), primary_key=True, default=new_id)
    pipeline_run_id: Mapped[str] = mapped_column(ForeignKey("pipeline_runs.id", ondelete="CASCADE"))
    step: Mapped[str] = mapped_column(String(NAME_LENGTH))
    status: Mapped[str] = mapped_column(String(16))
    cache_key: Mapped[str | None] = mapped_column(String(71), default=None)
    cached: Mapped[bool] = mapped_column(default=False)
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    inputs: Mapped[dict[str, Any]] = mapped_column(default=dict)
    outputs: Mapped[dict[str, Any]] = mapped_column(default=dict)
    logs_digest: Mapped[str | None] = mapped_column(String(71), default=None)
    error: Mapped[str | None] = mapped_column(Text, default=None)
    started_at: Mapped[datetime | None] = mapped_column(default=None)
    ended_at: Mapped[datetime | None] = mapped_column(default=None)


class ScheduleRow(Entity, Base):
    """When a pipeline runs by itself: on a cron expression, or when an asset gets a new version."""

    __tablename__ = "schedules"
    pipeline_name: Mapped[str] = mapped_column(String(NAME_LENGTH))
    kind: Mapped[str] = mapped_column(String(16))
    cron: Mapped[str | None] = mapped_column(String(255), default=None)
    timezone: Mapped[str] = mapped_column(String(64), default="UTC")
    asset: Mapped[str | None] = mapped_column(String(NAME_LENGTH), default=None)
    params: Mapped[dict[str, Any]] = mapped_column(default=dict)
    last_fired_at: Mapped[datetime | None] = mapped_column(default=None)
    last_seen_version_id: Mapped[str | None] = mapped_column(String(26), default=None)
    enabled: Mapped[bool] = mapped_column(default=True)


class LineageEdgeRow(Base):
    """One edge of the lineage graph, e.g. (data_version X) -read_by-> (run Y)."""

    __tablename__ = "lineage_edges"
    __table_args__ = (
        Index(None, "from_kind", "from_id"),
        Index(None, "to_kind", "to_id"),
        UniqueConstraint("from_kind", "from_id", "relation", "to_kind", "to_id"),
    )
    id: Mapped[int] = mapped_column(BigInteger().with_variant(Integer, "sqlite"), primary_key=True, autoincrement=True)
    from_kind: Mapped[str] = mapped_column(String(32))
    from_id: Mapped[str] = mapped_column(String(26))
    relation: Mapped[str] = mapped_column(String(32))
    to_kind: Mapped[str] = mapped_column(String(32))
    to_id: Mapped[str] = mapped_column(String(26))
    at: Mapped[datetime] = mapped_column(default=utcnow)


class UserRow(Entity, Base):
    """A person or service that calls the REST API with a token; ``role`` decides what it may do."""

    __tablename__ = "users"
    name: Mapped[str] = mapped_column(String(NAME_LENGTH), unique=True)
    role: Mapped[str] = mapped_column(String(32))
    disabled_at: Mapped[datetime | None] = mapped_column(default=None)
    password_hash: Mapped[str | None] = mapped_column(String(255), default=None)  # scrypt, for the studio's login
    password_set_at: Mapped[datetime | None] = mapped_column(default=None)


class TokenRow(Entity, Base):
    """An API token: only its SHA-256 is stored (tokens are 256-bit random, so no salt or slow hash is
    needed); ``prefix`` is the first characters, shown in lists so a person can tell tokens apart."""

    __tablename__ = "tokens"
    user_id: Mapped[str] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"), index=True)
    name: Mapped[str] = mapped_column(String(NAME_LENGTH), default="")
    prefix: Mapped[str] = mapped_column(String(16))
    hash: Mapped[str] = mapped_column(String(64), unique=True)
    expires_at: Mapped[datetime | None] = mapped_column(default=None)
    revoked_at: Mapped[datetime | None] = mapped_column(default=None)
    last_used_at: Mapped[datetime | None] = mapped_column(default=None)


class AuditEventRow(Base):
    """One entry of the tamper-evident audit log: ``hash`` is SHA-256 over the previous entry's hash and
    this entry's fields, so editing, inserting or deleting an entry breaks the chain from there on.

    ``at`` (ISO 8601 UTC text) and ``targets`` (canonical JSON text) are stored exactly as they were hashed,
    so verifying re-hashes the raw columns on every backend without parsing them.
    """

    __tablename__ = "audit_events"
    seq: Mapped[int] = mapped_column(
        BigInteger().with_variant(Integer, "sqlite"), primary_key=True, autoincrement=False
    )
    at: Mapped[str] = mapped_column(String(32))
    actor: Mapped[str] = mapped_column(String(NAME_LENGTH))
    role: Mapped[str] = mapped_column(String(32))
    source: Mapped[str] = mapped_column(String(255))
    action: Mapped[str] = mapped_column(String(512))
    targets: Mapped[str] = mapped_column(Text)
    prev_hash: Mapped[str] = mapped_column(String(64))
    hash: Mapped[str] = mapped_column(String(64))


class SecretRow(Entity, Base):
    """A named secret, encrypted with the workspace's key (Fernet); the key never enters the database."""

    __tablename__ = "secrets"
    name: Mapped[str] = mapped_column(String(NAME_LENGTH), unique=True)
    ciphertext: Mapped[str] = mapped_column(Text)
    description: Mapped[str] = mapped_column(Text, default="")
    updated_at: Mapped[datetime] = mapped_column(default=utcnow)


class MonitorRow(Entity, Base):
    """A monitor of an endpoint: which signals it computes over which window of collected requests, against
    which reference, when it runs, whom it alerts and what it does on an alert."""

    __tablename__ = "monitors"
    name: Mapped[str] = mapped_column(String(NAME_LENGTH), unique=True)
    endpoint: Mapped[str] = mapped_column(String(NAME_LENGTH))
    #: a data version reference; ``None``: the reference profile of the model the endpoint serves.
    reference: Mapped[str | None] = mapped_column(String(255), default=None)
    signals: Mapped[list[Any]] = mapped_column()
    window_seconds: Mapped[int] = mapped_column(Integer)
    schedule: Mapped[str | None] = mapped_column(String(255), default=None)
    timezone: Mapped[str] = mapped_column(String(64), default="UTC")
    #: ``[{"kind": "log" | "webhook" | "email", "target": ...}]``
    alerts: Mapped[list[Any]] = mapped_column(default=list)
    #: ``{"kind": "retrain", "pipeline": NAME}`` or ``None``.
    action: Mapped[dict[str, Any] | None] = mapped_column(default=None)
    thresholds: Mapped[dict[str, Any]] = mapped_column(default=dict)
    enabled: Mapped[bool] = mapped_column(default=True)
    last_run_at: Mapped[datetime | None] = mapped_column(default=None)
    last_status: Mapped[str | None] = mapped_column(String(16), default=None)


class MonitorResultRow(Base):
    """One run of a monitor over one window: the time series ``conveyor monitor history`` shows."""

    __tablename__ = "monitor_results"
    __table_args__ = (Index(None, "monitor_id", "at"),)
    id: Mapped[str] = mapped_column(String(26), primary_key=True, default=new_id)
    monitor_id: Mapped[str] = mapped_column(ForeignKey("monitors.id", ondelete="CASCADE"))
    at: Mapped[datetime] = mapped_column(default=utcnow)
    window_start: Mapped[datetime] = mapped_column()
    window_end: Mapped[datetime] = mapped_column()
    rows: Mapped[int] = mapped_column(BigInteger, default=0)
    #: ``ok``, ``alert``, ``empty`` (no rows in the window) or ``error``.
    status: Mapped[str] = mapped_column(String(16))
    #: per signal: its summary (share drifted, null shares, metrics) and whether it alerted.
    signals: Mapped[dict[str, Any]] = mapped_column(default=dict)
    message: Mapped[str] = mapped_column(Text, default="")
    seconds: Mapped[float] = mapped_column(Float, default=0.0)
    trigger: Mapped[str] = mapped_column(String(32), default="manual")


class AlertRow(Base):
    """An alert a monitor raised: why, where it was sent, and the action it started."""

    __tablename__ = "alerts"
    __table_args__ = (Index(None, "monitor_id", "at"),)
    id: Mapped[str] = mapped_column(String(26), primary_key=True, default=new_id)
    monitor_id: Mapped[str] = mapped_column(ForeignKey("monitors.id", ondelete="CASCADE"))
    result_id: Mapped[str] = mapped_column(ForeignKey("monitor_results.id", ondelete="CASCADE"))
    at: Mapped[datetime] = mapped_column(default=utcnow)
    message: Mapped[str] = mapped_column(Text)
    signals: Mapped[list[Any]] = mapped_column(default=list)
    #: what the action did: ``{"kind": "retrain", "pipeline": ..., "run_id": ...}`` or ``{"error": ...}``.
    action: Mapped[dict[str, Any] | None] = mapped_column(default=None)


class AlertDeliveryRow(Base):
    """One attempt to deliver an alert on one channel (webhooks are retried: one row per attempt)."""

    __tablename__ = "alert_deliveries"
    id: Mapped[int] = mapped_column(BigInteger().with_variant(Integer, "sqlite"), primary_key=True, autoincrement=True)
    alert_id: Mapped[str] = mapped_column(ForeignKey("alerts.id", ondelete="CASCADE"), index=True)
    channel: Mapped[str] = mapped_column(String(16))
    target: Mapped[str] = mapped_column(String(512))
    attempt: Mapped[int] = mapped_column(Integer, default=1)
    at: Mapped[datetime] = mapped_column(default=utcnow)
    ok: Mapped[bool] = mapped_column(default=False)
    status_code: Mapped[int | None] = mapped_column(Integer, default=None)
    error: Mapped[str | None] = mapped_column(Text, default=None)
