"""``/api/v1/models``: the model registry."""

from __future__ import annotations

from fastapi import APIRouter

from conveyor.api._deps import WorkspaceDep
from conveyor.registry import ModelVersion, RegisteredModel

router = APIRouter(prefix="/models", tags=["models"])


@router.get("", summary="List registered models")
def list_models(ws: WorkspaceDep) -> list[RegisteredModel]:
    return ws.models.list()


@router.get("/{ref}", summary="A model version: `name`, `name:3` or `name@alias`")
def get_model(ref: str, ws: WorkspaceDep) -> ModelVersion:
    return ws.models.get(ref)
