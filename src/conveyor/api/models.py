"""``/api/v1/models``: the model registry (versions registered from runs, aliases, tags)."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Response
from pydantic import BaseModel, Field

from conveyor.api._deps import WorkspaceDep
from conveyor.registry import ModelVersion, RegisteredModel

router = APIRouter(prefix="/models", tags=["models"])


class RegisterRequest(BaseModel):
    run_id: str = Field(description="The run that logged the model.")
    artifact: str = Field(default="model", description="The folder the run logged the model under.")
    description: str = ""
    tags: dict[str, str] = {}


class AliasRequest(BaseModel):
    version: int = Field(ge=1, description="The version number the alias points at.")


class ProfileRequest(BaseModel):
    data: str | None = Field(
        default=None,
        max_length=200,
        description="A data version (`name`, `name:3`, `name@latest`) to profile; default: the data the training "
        "run read. Never a path.",
    )


class TagsRequest(BaseModel):
    tags: dict[str, Any] = Field(description="Tags to set; other tags stay.")


@router.get("", summary="List registered models")
def list_models(ws: WorkspaceDep) -> list[RegisteredModel]:
    return ws.models.list()


@router.post("/{name}/versions", summary="Register the model a run logged as the next version", status_code=201)
def register_version(name: str, body: RegisterRequest, ws: WorkspaceDep) -> ModelVersion:
    return ws.models.register_from_run(body.run_id, name, body.artifact, description=body.description, tags=body.tags)


@router.get("/{name}/versions", summary="Every version of a model, oldest first")
def list_versions(name: str, ws: WorkspaceDep) -> list[ModelVersion]:
    return ws.models.versions(name)


@router.put("/{name}/aliases/{alias}", summary="Point `name@alias` at a version")
def set_alias(name: str, alias: str, body: AliasRequest, ws: WorkspaceDep) -> ModelVersion:
    return ws.models.set_alias(name, alias, body.version)


@router.delete("/{name}/aliases/{alias}", summary="Remove an alias", status_code=204)
def delete_alias(name: str, alias: str, ws: WorkspaceDep) -> Response:
    ws.models.delete_alias(name, alias)
    return Response(status_code=204)


@router.patch("/{ref}/tags", summary="Set tags on a version (`name:3` or `name@alias`)")
def set_tags(ref: str, body: TagsRequest, ws: WorkspaceDep) -> ModelVersion:
    return ws.models.set_tags(ref, body.tags)


@router.delete("/{ref}/tags/{key}", summary="Remove a tag from a version")
def delete_tag(ref: str, key: str, ws: WorkspaceDep) -> ModelVersion:
    return ws.models.delete_tags(ref, [key])


@router.get("/{ref}/card", summary="A version's model card (computed once: POST computes it)")
def get_card(ref: str, ws: WorkspaceDep) -> dict[str, Any]:
    from conveyor.errors import NotFound
    from conveyor.governance._cards import CARD_FILE

    version = ws.models.get(ref)
    if CARD_FILE not in version.files:
        raise NotFound(f"Model {version.ref} has no card yet: POST /api/v1/models/{version.ref}/card computes it.")
    return ws.cards.get(version.ref).to_dict()


class CardRequest(BaseModel):
    """Compute (again) a version's card, optionally with sensitive columns for fairness and its owner and use."""

    sensitive: list[str] | None = Field(default=None, max_length=20)
    owner: str | None = Field(default=None, max_length=200)
    intended_use: str | None = Field(default=None, max_length=2_000)
    sample: int = Field(default=2_000, ge=50, le=200_000)


@router.post("/{ref}/card", summary="Compute and store a version's model card (explanations, fairness)")
def compute_card(ref: str, ws: WorkspaceDep, body: CardRequest | None = None) -> dict[str, Any]:
    body = body or CardRequest()
    if body.owner is not None or body.intended_use is not None:
        ws.cards.describe(ref, owner=body.owner, intended_use=body.intended_use)
    return ws.cards.get(ref, sensitive=body.sensitive, refresh=True, sample=body.sample).to_dict()


@router.get("/{ref}/profile", summary="A version's stored reference profile (what drift compares new data with)")
def get_profile(ref: str, ws: WorkspaceDep) -> dict[str, Any]:
    return ws.monitors.reference(ref, compute=False).summary()


@router.post(
    "/{ref}/profile", summary="Compute and store a version's reference profile (training data and predictions)"
)
def compute_profile(ref: str, ws: WorkspaceDep, body: ProfileRequest | None = None) -> dict[str, Any]:
    # A data version, resolved here: nothing a caller sends is read as a path on this machine.
    data = ws.data.get(body.data) if body is not None and body.data else None
    return ws.monitors.reference(ref, data, refresh=True).summary()


@router.get("/{ref}", summary="A model version: `name`, `name:3` or `name@alias`")
def get_model(ref: str, ws: WorkspaceDep) -> ModelVersion:
    return ws.models.get(ref)
