"""The model registry: models, immutable versions with signature and requirements, and aliases."""

from __future__ import annotations

import builtins
import io
from dataclasses import dataclass, field
from datetime import datetime
from importlib import metadata
from typing import TYPE_CHECKING, Any

import sqlalchemy as sa

from conveyor.errors import BadInput, Conflict, NotFound, did_you_mean
from conveyor.governance import add_edge
from conveyor.refs import LATEST, Ref, parse_ref, validate_alias, validate_name
from conveyor.store._helpers import lock_or_create, next_version
from conveyor.store._schema import ModelAliasRow, ModelRow, ModelVersionRow, RunRow, utcnow

if TYPE_CHECKING:
    from sqlalchemy.orm import Session

    from conveyor.workspace import Workspace

__all__ = ["ModelVersion", "RegisteredModel", "Registry"]

#: Packages whose versions are pinned in a model version's requirements, when installed.
_PINNED = ("conveyor-ml", "scikit-learn", "numpy", "pandas", "scipy", "joblib")


@dataclass(frozen=True)
class ModelVersion:
    """An immutable registered version of a model."""

    id: str
    name: str
    version: int
    flavor: str
    digest: str
    size: int
    signature: dict[str, Any]
    requirements: list[str]
    metrics: dict[str, Any]
    run_id: str | None
    created_at: datetime
    created_by: str
    aliases: list[str] = field(default_factory=list)

    @property
    def ref(self) -> str:
        """``name:version``."""
        return f"{self.name}:{self.version}"


@dataclass(frozen=True)
class RegisteredModel:
    id: str
    name: str
    description: str
    latest_version: int
    versions: int
    aliases: dict[str, int]
    created_at: datetime


class Registry:
    """The model registry, reached as ``ws.models``."""

    def __init__(self, workspace: Workspace) -> None:
        self._ws = workspace

    def register(
        self,
        name: str,
        model: Any,
        *,
        run_id: str | None = None,
        signature: dict[str, Any] | None = None,
        metrics: dict[str, Any] | None = None,
        flavor: str = "sklearn",
        description: str = "",
    ) -> ModelVersion:
        """Register a fitted model as the next version of ``name``.

        The model is serialised with joblib and stored by its SHA-256; it is only ever loaded after the
        stored bytes are verified against that hash.

        Raises:
            InvalidReference: ``name`` is not a valid model name.
            NotFound: ``run_id`` names no run.
            Conflict: the run failed or was killed.
        """
        import joblib

        validate_name(name, "model")
        buffer = io.BytesIO()
        joblib.dump(model, buffer)
        blob = self._ws.artifacts.put_bytes(buffer.getvalue())
        with self._ws.store.write() as session:
            if run_id is not None:
                run = session.get(RunRow, run_id)
                if run is None:
                    raise NotFound(f"No run with id {run_id!r} to register a model from.", run_id=run_id)
                if run.status in ("failed", "killed"):
                    raise Conflict(
                        f"Run {run_id} {run.status}; register models only from runs that finished.",
                        run_id=run_id,
                    )
            parent = lock_or_create(session, ModelRow, name=name, created_by=self._ws.actor, description=description)
            row = ModelVersionRow(
                model_id=parent.id,
                version=next_version(session, ModelVersionRow.version, ModelVersionRow.model_id, parent.id),
                run_id=run_id,
                flavor=flavor,
                digest=blob.digest,
                size=blob.size,
                signature=signature or {"inputs": [], "outputs": []},
                requirements=_requirements(),
                metrics=metrics or {},
                created_by=self._ws.actor,
            )
            session.add(row)
            session.flush()
            if run_id is not None:
                add_edge(session, "run", run_id, "produced", "model_version", row.id)
            return _to_version(row, name, [])

    def get(self, ref: str | Ref) -> ModelVersion:
        """The version ``ref`` names: ``name`` (latest), ``name:3`` or ``name@alias``.

        Raises:
            NotFound: no such model, version or alias.
        """
        parsed = parse_ref(ref, "model") if isinstance(ref, str) else ref
        with self._ws.store.read() as session:
            model = self._model_row(session, parsed.name)
            query = sa.select(ModelVersionRow).where(ModelVersionRow.model_id == model.id)
            if parsed.version is not None:
                query = query.where(ModelVersionRow.version == parsed.version)
            elif parsed.alias not in (None, LATEST):
                alias = session.get(ModelAliasRow, (model.id, parsed.alias))
                if alias is None:
                    known = session.scalars(sa.select(ModelAliasRow.alias).filter_by(model_id=model.id)).all()
                    raise NotFound(
                        f"Model {parsed.name!r} has no alias {parsed.alias!r}.{did_you_mean(str(parsed.alias), known)}"
                        f" Set one with 'conveyor models alias {parsed.name} {parsed.alias} VERSION'.",
                        ref=str(parsed),
                    )
                query = query.where(ModelVersionRow.id == alias.version_id)
            else:
                query = query.order_by(ModelVersionRow.version.desc()).limit(1)
            row = session.scalars(query).first()
            if row is None:
                raise NotFound(f"Model {parsed.name!r} has no version {parsed.version}.", ref=str(parsed))
            aliases = session.scalars(sa.select(ModelAliasRow.alias).filter_by(version_id=row.id)).all()
            return _to_version(row, model.name, sorted(aliases))

    def get_by_id(self, version_id: str) -> ModelVersion:
        """The version with this id.

        Raises:
            NotFound: no model version has that id.
        """
        with self._ws.store.read() as session:
            found = session.execute(
                sa.select(ModelVersionRow, ModelRow.name)
                .join(ModelRow, ModelRow.id == ModelVersionRow.model_id)
                .where(ModelVersionRow.id == version_id)
            ).first()
            if found is None:
                raise NotFound(f"No model version with id {version_id!r}.", id=version_id)
            row, name = found
            aliases = session.scalars(sa.select(ModelAliasRow.alias).filter_by(version_id=row.id)).all()
            return _to_version(row, name, sorted(aliases))

    def load(self, ref: str | Ref | ModelVersion) -> Any:
        """The fitted model object, after its stored bytes are verified against the registered hash."""
        import joblib

        version = ref if isinstance(ref, ModelVersion) else self.get(ref)
        data = self._ws.artifacts.get_bytes(version.digest)
        return joblib.load(io.BytesIO(data))

    def set_alias(self, name: str, alias: str, version: int) -> ModelVersion:
        """Point ``name@alias`` at a version (moving it if it pointed elsewhere).

        Raises:
            BadInput: ``latest`` is reserved.
            NotFound: the model or version does not exist.
        """
        validate_alias(alias)
        if alias == LATEST:
            raise BadInput("'latest' always means the newest version and cannot be set; choose another alias.")
        with self._ws.store.write() as session:
            model = self._model_row(session, name)
            row = session.scalars(sa.select(ModelVersionRow).filter_by(model_id=model.id, version=version)).first()
            if row is None:
                raise NotFound(f"Model {name!r} has no version {version}; cannot point @{alias} at it.")
            session.merge(ModelAliasRow(model_id=model.id, alias=alias, version_id=row.id, updated_at=utcnow()))
        return self.get(f"{name}:{version}")

    def list(self) -> builtins.list[RegisteredModel]:
        """All registered models, by name."""
        with self._ws.store.read() as session:
            result = []
            for model in session.scalars(sa.select(ModelRow).order_by(ModelRow.name)):
                latest, count = session.execute(
                    sa.select(sa.func.max(ModelVersionRow.version), sa.func.count()).where(
                        ModelVersionRow.model_id == model.id
                    )
                ).one()
                aliases = {
                    alias: number
                    for alias, number in session.execute(
                        sa.select(ModelAliasRow.alias, ModelVersionRow.version)
                        .join(ModelVersionRow, ModelVersionRow.id == ModelAliasRow.version_id)
                        .where(ModelAliasRow.model_id == model.id)
                    )
                }
                result.append(
                    RegisteredModel(
                        model.id,
                        model.name,
                        model.description,
                        int(latest or 0),
                        int(count),
                        aliases,
                        model.created_at,
                    )
                )
            return result

    def _model_row(self, session: Session, name: str) -> ModelRow:
        row = session.scalars(sa.select(ModelRow).filter_by(name=name)).first()
        if row is None:
            names = session.scalars(sa.select(ModelRow.name)).all()
            raise NotFound(
                f"No model named {name!r}.{did_you_mean(name, names)} List them with 'conveyor models list'.",
                name=name,
            )
        return row


def _requirements() -> list[str]:
    pins = []
    for package in _PINNED:
        try:
            pins.append(f"{package}=={metadata.version(package)}")
        except metadata.PackageNotFoundError:
            continue
    return pins


def _to_version(row: ModelVersionRow, name: str, aliases: list[str]) -> ModelVersion:
    return ModelVersion(
        id=row.id,
        name=name,
        version=row.version,
        flavor=row.flavor,
        digest=row.digest,
        size=row.size,
        signature=dict(row.signature),
        requirements=list(row.requirements),
        metrics=dict(row.metrics),
        run_id=row.run_id,
        created_at=row.created_at,
        created_by=row.created_by,
        aliases=list(aliases),
    )
