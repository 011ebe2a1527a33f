"""The model registry: models logged into runs, immutable versions with signature, requirements, metrics and
lineage, aliases and tags, verified loading, and exports (MLflow, ONNX)."""

from __future__ import annotations

import builtins
import io
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

import orjson
import sqlalchemy as sa

from conveyor.errors import ArtifactCorrupted, BadInput, Conflict, NotFound, did_you_mean
from conveyor.governance import add_edge, run_inputs
from conveyor.refs import LATEST, Ref, parse_ref, validate_alias, validate_name, validate_version
from conveyor.registry._formats import (
    SerializedModel,
    dump_model,
    load_model,
    model_modules,
    pinned_requirements,
    python_version,
)
from conveyor.store._helpers import lock_or_create, next_version
from conveyor.store._schema import (
    ModelAliasRow,
    ModelRow,
    ModelVersionRow,
    RunArtifactRow,
    RunRow,
    utcnow,
)

if TYPE_CHECKING:
    from collections.abc import Sequence

    import pandas as pd
    from sqlalchemy.orm import Session

    from conveyor.registry._export import ExportedModel, OnnxModel
    from conveyor.workspace import Workspace

__all__ = ["LoggedModel", "ModelCorrupted", "ModelVersion", "RegisteredModel", "Registry"]

#: The file inside a logged model's folder that describes it.
DESCRIPTOR = "conveyor-model.json"
EXAMPLE = "input_example.parquet"
#: Run tags a version registered from the run carries (unless the caller gives its own).
_CARRIED_TAGS = ("refit", "inference")
_EXAMPLE_ROWS = 200
_TAG_KEY_LENGTH = 250
_TAG_VALUE_LENGTH = 5000


class ModelCorrupted(ArtifactCorrupted):
    """A model version's stored file no longer matches the SHA-256 recorded when it was registered."""

    exit_code = 2
    http_status = 409
    code = "model_corrupted"


@dataclass(frozen=True)
class ModelVersion:
    """An immutable registered version of a model.

    ``digest``/``size``/``format`` describe the model file; ``files`` lists every file of the version by name
    (the model file with the types a skops load trusts, an input example, an ONNX conversion once made);
    ``inputs`` are the data versions the run that produced it read.
    """

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
    format: str = "joblib"
    files: dict[str, Any] = field(default_factory=dict)
    tags: dict[str, str] = field(default_factory=dict)
    description: str = ""
    inputs: list[str] = field(default_factory=list)

    @property
    def ref(self) -> str:
        """``name:version``."""
        return f"{self.name}:{self.version}"

    @property
    def model_file(self) -> str:
        """The name of the model file among ``files`` (``model.skops`` or ``model.joblib``)."""
        return f"model.{self.format}"

    @property
    def trusted_types(self) -> list[str]:
        """The non-default types a skops load of this version trusts (empty for joblib)."""
        return list(self.files.get(self.model_file, {}).get("trusted_types", []))


@dataclass(frozen=True)
class RegisteredModel:
    id: str
    name: str
    description: str
    latest_version: int
    versions: int
    aliases: dict[str, int]
    created_at: datetime


@dataclass(frozen=True)
class LoggedModel:
    """A model logged into a run (not yet registered): its files are artifacts of the run under ``path/``."""

    run_id: str
    path: str
    format: str
    digest: str
    size: int
    flavor: str
    signature: dict[str, Any]
    requirements: list[str]
    metrics: dict[str, Any]
    files: dict[str, Any]

    @property
    def uri(self) -> str:
        """``runs:/RUN_ID/PATH``, as MLflow writes it."""
        return f"runs:/{self.run_id}/{self.path}"


class Registry:
    """The model registry, reached as ``ws.models``."""

    def __init__(self, workspace: Workspace) -> None:
        self._ws = workspace

    # -- logging a model into a run --------------------------------------------------------------------

    def log_model(
        self,
        run_id: str,
        model: Any,
        *,
        name: str = "model",
        signature: dict[str, Any] | None = None,
        input_example: pd.DataFrame | None = None,
        metrics: dict[str, Any] | None = None,
    ) -> LoggedModel:
        """Store a fitted model as artifacts of a run, under ``name/``, ready to be registered.

        The folder holds the model file (skops when every type in the model is allowed, else joblib), an
        input example (up to 200 rows of ``input_example``, as Parquet) and ``conveyor-model.json`` with the
        format, signature (inferred from ``input_example`` when not given), trusted types, pinned
        requirements and metrics.

        Raises:
            InvalidReference: ``name`` is not a valid folder name.
            NotFound: no run has that id.
            Conflict: the run failed or was killed.
            BadInput: the input example is not a DataFrame that can be stored.
        """
        validate_name(name, "logged model")
        with self._ws.store.read() as session:
            _check_run(session, run_id, "log a model into")
        serialized = dump_model(model)
        example = _example_bytes(input_example)
        if signature is None and input_example is not None:
            signature = _infer(model, input_example)
        flavor = "sklearn"
        requirements = pinned_requirements(serialized.format, model_modules(model, serialized.trusted_types))
        files = self._store_files(serialized, example)
        descriptor: dict[str, Any] = {
            "conveyor_model": 1,
            "flavor": flavor,
            "format": serialized.format,
            "model_file": serialized.filename,
            "model_class": f"{type(model).__module__}.{type(model).__qualname__}",
            "files": files,
            "signature": signature or {"inputs": [], "outputs": []},
            "requirements": requirements,
            "metrics": dict(metrics or {}),
            "python_version": python_version(),
            "logged_at": utcnow().isoformat(),
        }
        if serialized.reason:
            descriptor["joblib_because"] = serialized.reason
        blob = self._ws.artifacts.put_bytes(orjson.dumps(descriptor, option=orjson.OPT_INDENT_2))
        media = {EXAMPLE: "application/vnd.apache.parquet"}
        with self._ws.store.write() as session:
            _check_run(session, run_id, "log a model into")
            for filename, entry in files.items():
                session.merge(
                    RunArtifactRow(
                        run_id=run_id,
                        path=f"{name}/{filename}",
                        digest=entry["digest"],
                        size=entry["size"],
                        media_type=media.get(filename, "application/octet-stream"),
                    )
                )
            session.merge(
                RunArtifactRow(
                    run_id=run_id,
                    path=f"{name}/{DESCRIPTOR}",
                    digest=blob.digest,
                    size=blob.size,
                    media_type="application/json",
                )
            )
        main = files[serialized.filename]
        return LoggedModel(
            run_id=run_id,
            path=name,
            format=serialized.format,
            digest=main["digest"],
            size=main["size"],
            flavor=flavor,
            signature=descriptor["signature"],
            requirements=requirements,
            metrics=descriptor["metrics"],
            files=files,
        )

    # -- registering -----------------------------------------------------------------------------------

    def register_from_run(
        self,
        run_id: str,
        name: str,
        artifact: str = "model",
        *,
        description: str = "",
        tags: dict[str, Any] | None = None,
    ) -> ModelVersion:
        """Register the model a run logged under ``artifact/`` as the next version of ``name``.

        The version carries the logged signature, requirements and files, the run's metrics (overridden by
        metrics logged with the model), its ``refit`` and ``inference`` tags (AutoML's), and the lineage edge
        run → model version; the data versions the run read are its inputs.

        Raises:
            InvalidReference: ``name`` is not a valid model name.
            NotFound: no such run, or the run logged no model under ``artifact``.
            Conflict: the run failed or was killed.
            ModelCorrupted: the logged files no longer match their hashes.
        """
        validate_name(name, "model")
        clean_tags = _check_tags(tags or {})
        with self._ws.store.read() as session:
            _check_run(session, run_id, "register a model from")
            row = session.get(RunArtifactRow, (run_id, f"{artifact}/{DESCRIPTOR}"))
            if row is None:
                logged = sorted(
                    p.rsplit("/", 1)[0]
                    for p in session.scalars(
                        sa.select(RunArtifactRow.path).where(
                            RunArtifactRow.run_id == run_id, RunArtifactRow.path.like(f"%/{DESCRIPTOR}")
                        )
                    )
                )
                hint = (
                    f" It logged models under: {', '.join(logged)}.{did_you_mean(artifact, logged)}"
                    if logged
                    else " Log one first: run.log_model(model, input_example=X) or ws.models.log_model(run_id, model)."
                )
                raise NotFound(f"Run {run_id} logged no model under {artifact!r}.{hint}", run_id=run_id)
            descriptor_digest = row.digest
        descriptor = orjson.loads(self._verified(descriptor_digest, f"the model logged by run {run_id}"))
        files: dict[str, Any] = dict(descriptor["files"])
        for filename, entry in files.items():
            self._verified(entry["digest"], f"{artifact}/{filename} of run {run_id}")
        logged_by = self._ws.runs.get(run_id)
        metrics = {**logged_by.metrics, **descriptor.get("metrics", {})}
        # How AutoML shipped the model (refit or fold models; ONNX or native learners, and why) stays visible on
        # the version, however it is registered.
        clean_tags = {**_carried(logged_by.tags), **clean_tags}
        main = files[descriptor["model_file"]]
        with self._ws.store.write() as session:
            run = _check_run(session, run_id, "register a model from")
            return self._add_version(
                session,
                name,
                run_id=run.id,
                flavor=descriptor.get("flavor", "sklearn"),
                fmt=descriptor["format"],
                digest=main["digest"],
                size=main["size"],
                files=files,
                signature=descriptor.get("signature") or {"inputs": [], "outputs": []},
                requirements=list(descriptor.get("requirements", [])),
                metrics=metrics,
                description=description,
                tags=clean_tags,
            )

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
        input_example: pd.DataFrame | None = None,
        tags: dict[str, Any] | None = None,
    ) -> ModelVersion:
        """Register a fitted model object as the next version of ``name``.

        The model is stored with skops when every type it holds is allowed, else with joblib; either way it is
        only loaded after the stored bytes are verified against the registered SHA-256.

        Raises:
            InvalidReference: ``name`` is not a valid model name.
            NotFound: ``run_id`` names no run.
            Conflict: the run failed or was killed.
        """
        validate_name(name, "model")
        clean_tags = _check_tags(tags or {})
        if run_id is not None:
            with self._ws.store.read() as session:
                _check_run(session, run_id, "register a model from")
            clean_tags = {**_carried(self._ws.runs.get(run_id).tags), **clean_tags}
        serialized = dump_model(model)
        if signature is None and input_example is not None:
            signature = _infer(model, input_example)
        files = self._store_files(serialized, _example_bytes(input_example))
        main = files[serialized.filename]
        requirements = pinned_requirements(serialized.format, model_modules(model, serialized.trusted_types))
        with self._ws.store.write() as session:
            if run_id is not None:
                _check_run(session, run_id, "register a model from")
            return self._add_version(
                session,
                name,
                run_id=run_id,
                flavor=flavor,
                fmt=serialized.format,
                digest=main["digest"],
                size=main["size"],
                files=files,
                signature=signature or {"inputs": [], "outputs": []},
                requirements=requirements,
                metrics=dict(metrics or {}),
                description=description,
                tags=clean_tags,
            )

    # -- reading ---------------------------------------------------------------------------------------

    def get(self, ref: str | Ref) -> ModelVersion:
        """The version ``ref`` names: ``name`` (latest), ``name:3`` or ``name@alias``.

        Raises:
            NotFound: no such model, version or alias.
        """
        parsed = parse_ref(ref, "model") if isinstance(ref, str) else ref
        with self._ws.store.read() as session:
            return self._get(session, parsed)

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
            return _to_version(session, row, name)

    def versions(self, name: str) -> builtins.list[ModelVersion]:
        """Every version of a model, oldest first.

        Raises:
            NotFound: no model has that name.
        """
        with self._ws.store.read() as session:
            model = self._model_row(session, name)
            rows = session.scalars(
                sa.select(ModelVersionRow).where(ModelVersionRow.model_id == model.id).order_by(ModelVersionRow.version)
            ).all()
            return [_to_version(session, row, model.name) for row in rows]

    def load(self, ref: str | Ref | ModelVersion) -> Any:
        """The fitted model object, after its stored bytes are verified against the registered hash.

        Raises:
            NotFound: no such model, version or alias.
            ModelCorrupted: the stored file no longer matches its hash (it is not loaded).
            Conflict: a skops file holds types that are not trusted.
        """
        version = ref if isinstance(ref, ModelVersion) else self.get(ref)
        data = self.file_bytes(version, version.model_file)
        return load_model(version.format, data, version.trusted_types, what=f"Model {version.ref}")

    def file_bytes(self, version: ModelVersion, filename: str) -> bytes:
        """The verified bytes of one file of a version (``model.skops``, ``model.onnx``, ...).

        Raises:
            NotFound: the version has no such file.
            ModelCorrupted: the stored bytes no longer match the recorded hash.
        """
        if filename == version.model_file:
            digest = version.digest
        elif filename in version.files:
            digest = version.files[filename]["digest"]
        else:
            known = list(dict.fromkeys([version.model_file, *version.files]))
            raise NotFound(
                f"Model {version.ref} has no file {filename!r}.{did_you_mean(filename, known)}",
                ref=version.ref,
            )
        return self._verified(digest, f"{filename} of model {version.ref}")

    def list(self) -> builtins.list[RegisteredModel]:
        """All registered models, by name (three queries, whatever the number of models)."""
        with self._ws.store.read() as session:
            models = session.scalars(sa.select(ModelRow).order_by(ModelRow.name)).all()
            versions = {
                model_id: (latest, count)
                for model_id, latest, count in session.execute(
                    sa.select(ModelVersionRow.model_id, sa.func.max(ModelVersionRow.version), sa.func.count()).group_by(
                        ModelVersionRow.model_id
                    )
                )
            }
            aliases: dict[str, dict[str, int]] = {}
            for model_id, alias, number in session.execute(
                sa.select(ModelAliasRow.model_id, ModelAliasRow.alias, ModelVersionRow.version).join(
                    ModelVersionRow, ModelVersionRow.id == ModelAliasRow.version_id
                )
            ):
                aliases.setdefault(model_id, {})[alias] = number
            result = []
            for model in models:
                latest, count = versions.get(model.id, (0, 0))
                result.append(
                    RegisteredModel(
                        model.id,
                        model.name,
                        model.description,
                        int(latest or 0),
                        int(count),
                        aliases.get(model.id, {}),
                        model.created_at,
                    )
                )
            return result

    # -- aliases and tags ------------------------------------------------------------------------------

    def set_alias(self, name: str, alias: str, version: int) -> ModelVersion:
        """Point ``name@alias`` at a version (moving it if it pointed elsewhere).

        Raises:
            BadInput: ``latest`` is reserved.
            InvalidReference: ``version`` is not a whole number from 1 to ``MAX_VERSION``.
            NotFound: the model or version does not exist.
        """
        validate_alias(alias)
        validate_version(version, name, "model")
        if alias == LATEST:
            raise BadInput("'latest' always means the newest version and cannot be set; choose another alias.")
        with self._ws.store.write() as session:
            model = self._model_row(session, name)
            row = session.scalars(sa.select(ModelVersionRow).filter_by(model_id=model.id, version=version)).first()
            if row is None:
                numbers = session.scalars(sa.select(ModelVersionRow.version).filter_by(model_id=model.id)).all()
                raise NotFound(
                    f"Model {name!r} has no version {version}; cannot point @{alias} at it. "
                    f"Its versions are: {', '.join(map(str, sorted(numbers)))}.",
                    name=name,
                    version=version,
                )
            session.merge(ModelAliasRow(model_id=model.id, alias=alias, version_id=row.id, updated_at=utcnow()))
        return self.get(f"{name}:{version}")

    def delete_alias(self, name: str, alias: str) -> None:
        """Remove ``name@alias`` (the version it pointed at stays).

        Raises:
            NotFound: the model or alias does not exist.
        """
        with self._ws.store.write() as session:
            model = self._model_row(session, name)
            row = session.get(ModelAliasRow, (model.id, alias))
            if row is None:
                raise self._no_alias(session, model, alias)
            session.delete(row)

    def set_tags(self, ref: str | Ref, tags: dict[str, Any]) -> ModelVersion:
        """Set tags (``key → value`` text) on a version; other tags stay.

        Raises:
            BadInput: a key or value is empty or too long.
            NotFound: no such version.
        """
        clean = _check_tags(tags)
        if not clean:
            raise BadInput("No tags given; pass at least one KEY=VALUE.")
        with self._ws.store.write() as session:
            row = self._version_row(session, ref)
            row.tags = {**row.tags, **clean}
        return self.get(ref)

    def delete_tags(self, ref: str | Ref, keys: builtins.list[str]) -> ModelVersion:
        """Remove tags from a version.

        Raises:
            NotFound: no such version, or it has no tag with one of the keys.
        """
        with self._ws.store.write() as session:
            row = self._version_row(session, ref)
            missing = [k for k in keys if k not in row.tags]
            if missing:
                raise NotFound(
                    f"Model {ref} has no tag {missing[0]!r}.{did_you_mean(missing[0], row.tags)}"
                    f" Its tags are: {', '.join(sorted(row.tags)) or 'none'}.",
                    ref=str(ref),
                )
            row.tags = {k: v for k, v in row.tags.items() if k not in keys}
        return self.get(ref)

    # -- exports ---------------------------------------------------------------------------------------

    def export(
        self,
        ref: str | Ref,
        path: str | Path,
        *,
        format: Literal["mlflow", "onnx"] = "mlflow",
        force: bool = False,
        validation: pd.DataFrame | str | None = None,
        code: Sequence[str | Path] = (),
    ) -> ExportedModel:
        """Write a version to a folder: an MLflow model (``python_function`` + ``sklearn`` flavors) or ONNX.

        ``validation`` (rows, or a data reference such as ``churn:2``) is what an ONNX conversion is checked
        on; by default the input example stored with the version. ``code`` (MLflow only): files or package
        folders holding the model's own classes, bundled under ``code/`` (Conveyor's own runtime is bundled
        whenever the model needs it).

        Raises:
            BadInput: unknown format, or no rows to check an ONNX conversion on.
            Conflict: ``path`` is a non-empty folder (pass ``force=True`` to replace it) or a file.
            NotConvertible: the model cannot be converted to ONNX, or the conversion's outputs differ.
        """
        from conveyor.registry._export import export

        return export(self, self.get(ref), Path(path), format=format, force=force, validation=validation, code=code)

    def to_onnx(self, ref: str | Ref, *, validation: pd.DataFrame | str | None = None) -> OnnxModel:
        """Convert a version to ONNX (once; the file is stored with the version as ``model.onnx``).

        Raises:
            NotConvertible: the model cannot be converted, or ONNX Runtime's outputs differ from the
                model's by more than 1e-5.
            BadInput: no rows to check the conversion on.
        """
        from conveyor.registry._export import onnx_for

        return onnx_for(self, self.get(ref), validation)

    def _add_file(self, version: ModelVersion, filename: str, entry: dict[str, Any]) -> ModelVersion:
        """Record a derived file (an ONNX conversion) with an existing version; the model file never changes."""
        with self._ws.store.write() as session:
            row = session.get(ModelVersionRow, version.id)
            if row is None:
                raise NotFound(f"Model version {version.ref} no longer exists.")
            row.files = {**row.files, filename: entry}
        return self.get_by_id(version.id)

    def _read_validation(self, validation: pd.DataFrame | str | None, version: ModelVersion) -> pd.DataFrame:
        import pandas as pd

        if isinstance(validation, pd.DataFrame):
            return validation
        if isinstance(validation, str):
            return self._ws.data.to_pandas(validation)
        if EXAMPLE in version.files:
            return pd.read_parquet(io.BytesIO(self.file_bytes(version, EXAMPLE)))
        raise BadInput(
            f"Model {version.ref} has no stored input example to check an ONNX conversion on. Pass rows: "
            f"'conveyor models export {version.ref} --format onnx --data DATA_REF DIR'.",
            ref=version.ref,
        )

    # -- helpers ---------------------------------------------------------------------------------------

    def _store_files(self, serialized: SerializedModel, example: bytes | None) -> dict[str, Any]:
        blob = self._ws.artifacts.put_bytes(serialized.data)
        files: dict[str, Any] = {serialized.filename: {"digest": blob.digest, "size": blob.size}}
        if serialized.format == "skops":
            files[serialized.filename]["trusted_types"] = serialized.trusted_types
        if example is not None:
            example_blob = self._ws.artifacts.put_bytes(example)
            files[EXAMPLE] = {"digest": example_blob.digest, "size": example_blob.size}
        return files

    def _verified(self, digest: str, what: str) -> bytes:
        try:
            return self._ws.artifacts.get_bytes(digest)
        except ArtifactCorrupted as exc:
            raise ModelCorrupted(
                f"The stored file of {what} is corrupted: its bytes no longer match the SHA-256 {digest} "
                "recorded when it was stored, so Conveyor will not load it. Restore the file from a backup or "
                "register the model again from the run that trained it.",
                digest=digest,
                actual=exc.details.get("actual"),
            ) from exc

    def _add_version(
        self,
        session: Session,
        name: str,
        *,
        run_id: str | None,
        flavor: str,
        fmt: str,
        digest: str,
        size: int,
        files: dict[str, Any],
        signature: dict[str, Any],
        requirements: builtins.list[str],
        metrics: dict[str, Any],
        description: str,
        tags: dict[str, str],
    ) -> ModelVersion:
        parent = lock_or_create(session, ModelRow, name=name, created_by=self._ws.actor, description=description)
        row = ModelVersionRow(
            model_id=parent.id,
            version=next_version(session, ModelVersionRow.version, ModelVersionRow.model_id, parent.id),
            run_id=run_id,
            flavor=flavor,
            digest=digest,
            size=size,
            signature=signature,
            requirements=requirements,
            metrics=metrics,
            format=fmt,
            files=files,
            tags=tags,
            description=description,
            created_by=self._ws.actor,
        )
        session.add(row)
        session.flush()
        if run_id is not None:
            add_edge(session, "run", run_id, "produced", "model_version", row.id)
        return _to_version(session, row, name)

    def _get(self, session: Session, parsed: Ref) -> ModelVersion:
        model = self._model_row(session, parsed.name)
        return _to_version(session, self._find_version(session, model, parsed), model.name)

    def _version_row(self, session: Session, ref: str | Ref) -> ModelVersionRow:
        parsed = parse_ref(ref, "model") if isinstance(ref, str) else ref
        return self._find_version(session, self._model_row(session, parsed.name), parsed)

    def _find_version(self, session: Session, model: ModelRow, parsed: Ref) -> ModelVersionRow:
        query = sa.select(ModelVersionRow).where(ModelVersionRow.model_id == model.id)
        if parsed.version is not None:
            query = query.where(ModelVersionRow.version == parsed.version)
        elif parsed.alias not in (None, LATEST):
            alias = session.get(ModelAliasRow, (model.id, parsed.alias))
            if alias is None:
                raise self._no_alias(session, model, str(parsed.alias))
            query = query.where(ModelVersionRow.id == alias.version_id)
        else:
            query = query.order_by(ModelVersionRow.version.desc()).limit(1)
        row = session.scalars(query).first()
        if row is None:
            numbers = session.scalars(sa.select(ModelVersionRow.version).filter_by(model_id=model.id)).all()
            raise NotFound(
                f"Model {model.name!r} has no version {parsed.version}. "
                f"Its versions are: {', '.join(map(str, sorted(numbers))) or 'none'}.",
                ref=str(parsed),
            )
        return row

    def _no_alias(self, session: Session, model: ModelRow, alias: str) -> NotFound:
        known = session.scalars(sa.select(ModelAliasRow.alias).filter_by(model_id=model.id)).all()
        return NotFound(
            f"Model {model.name!r} has no alias {alias!r}.{did_you_mean(alias, known)}"
            f" Set one with 'conveyor models alias {model.name} {alias} VERSION'.",
            ref=f"{model.name}@{alias}",
        )

    def _model_row(self, session: Session, name: str) -> ModelRow:
        row = session.scalars(sa.select(ModelRow).filter_by(name=name)).first()
        if row is None:
            names = session.scalars(sa.select(ModelRow.name)).all()
            raise NotFound(
                f"No model named {name!r}.{did_you_mean(name, names)} List them with 'conveyor models list'.",
                name=name,
            )
        return row


def _check_run(session: Session, run_id: str, action: str) -> RunRow:
    run = session.get(RunRow, run_id)
    if run is None:
        raise NotFound(
            f"No run with id {run_id!r} to {action}. List runs with 'conveyor runs list'.",
            run_id=run_id,
        )
    if run.status in ("failed", "killed"):
        raise Conflict(
            f"Run {run_id} {run.status}; register models only from runs that finished (or are running). "
            "Fix the cause and train again.",
            run_id=run_id,
            status=run.status,
        )
    return run


def _carried(run_tags: dict[str, str]) -> dict[str, str]:
    """The run tags a version registered from the run carries (how AutoML shipped the model)."""
    return {k: run_tags[k] for k in _CARRIED_TAGS if k in run_tags}


def _check_tags(tags: dict[str, Any]) -> dict[str, str]:
    clean: dict[str, str] = {}
    for key, value in tags.items():
        if not isinstance(key, str) or not key.strip() or len(key) > _TAG_KEY_LENGTH:
            raise BadInput(f"Tag key {key!r} must be 1-{_TAG_KEY_LENGTH} characters of text.", key=str(key))
        text = str(value)
        if len(text) > _TAG_VALUE_LENGTH:
            raise BadInput(f"The value of tag {key!r} is longer than {_TAG_VALUE_LENGTH} characters.", key=key)
        clean[key] = text
    return clean


def _infer(model: Any, example: pd.DataFrame) -> dict[str, Any]:
    from conveyor.registry._signature import infer_signature

    head = example.head(_EXAMPLE_ROWS)
    outputs = model.predict(head) if hasattr(model, "predict") else None
    return infer_signature(head, outputs)


def _example_bytes(example: pd.DataFrame | None) -> bytes | None:
    if example is None:
        return None
    import pandas as pd

    if not isinstance(example, pd.DataFrame):
        raise BadInput(f"input_example must be a pandas DataFrame of model inputs, not {type(example).__name__}.")
    buffer = io.BytesIO()
    try:
        example.head(_EXAMPLE_ROWS).to_parquet(buffer, index=False)
    except (ValueError, TypeError, ImportError) as exc:
        raise BadInput(
            f"The input example cannot be stored as Parquet ({exc}); pass columns of numbers, text, booleans or dates."
        ) from exc
    return buffer.getvalue()


def _to_version(session: Session, row: ModelVersionRow, name: str) -> ModelVersion:
    aliases = session.scalars(sa.select(ModelAliasRow.alias).filter_by(version_id=row.id)).all()
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
        aliases=sorted(aliases),
        format=row.format,
        files=dict(row.files or {}),
        tags=dict(row.tags or {}),
        description=row.description or "",
        inputs=[] if row.run_id is None else run_inputs(session, [row.run_id]).get(row.run_id, []),
    )
