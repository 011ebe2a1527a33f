"""``/api/v1/endpoints``: online endpoints, their deployments, traffic, mirror, keys and logs."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from fastapi import APIRouter, Query, Response
from pydantic import BaseModel, Field

from conveyor.api._deps import WorkspaceDep
from conveyor.serve import Endpoint
from conveyor.serve._endpoints import MAX_IDLE_TIMEOUT_S, MAX_RATE_LIMIT

router = APIRouter(prefix="/endpoints", tags=["endpoints"])


class EndpointCreate(BaseModel):
    name: str
    auth: Literal["key", "none"] = "key"
    host: str = "127.0.0.1"
    port: int = Field(0, ge=0, le=65535)
    workers: int = Field(
        0,
        ge=0,
        le=100_000,
        description="worker processes (0: one per CPU); at most the workspace's max_workers, which the service "
        "checks (400 above it)",
    )
    idle_timeout: float = Field(0.0, ge=0, le=MAX_IDLE_TIMEOUT_S, allow_inf_nan=False)
    max_body_mb: float = Field(10.0, gt=0, le=1024, allow_inf_nan=False)
    rate_limit: float = Field(0.0, ge=0, le=MAX_RATE_LIMIT, allow_inf_nan=False)
    collect: float = Field(0.0, ge=0, le=1, allow_inf_nan=False)
    description: str = ""


class DeploymentCreate(BaseModel):
    model: str = Field(description="NAME, NAME:VERSION or NAME@ALIAS")
    deployment: str = "default"
    traffic: int | None = Field(None, ge=0, le=100)
    max_batch_size: int = Field(64, ge=1, le=100_000)
    max_latency_ms: float = Field(0.0, ge=0, le=10_000, allow_inf_nan=False)
    max_queue: int = Field(512, ge=1, le=1_000_000)
    engine: Literal["auto", "onnx", "native"] = "auto"
    strict: bool = Field(False, description="Refuse (422) request fields the model does not take; else ignore them")


class Shares(BaseModel):
    shares: dict[str, Annotated[int, Field(ge=0, le=100)]] = Field(
        description="deployment name → percentage 0–100", max_length=1000
    )


@router.get("", summary="List endpoints")
def list_endpoints(ws: WorkspaceDep) -> list[Endpoint]:
    return ws.endpoints.list()


@router.post("", summary="Create an endpoint (with keys unless auth is none)", status_code=201)
def create_endpoint(body: EndpointCreate, ws: WorkspaceDep) -> Endpoint:
    return ws.endpoints.create(body.name, **body.model_dump(exclude={"name"}))


@router.get("/{name}", summary="One endpoint with its deployments, traffic and routes")
def get_endpoint(name: str, ws: WorkspaceDep) -> Endpoint:
    return ws.endpoints.get(name)


@router.delete("/{name}", summary="Stop and delete an endpoint", status_code=204)
def delete_endpoint(name: str, ws: WorkspaceDep) -> Response:
    ws.endpoints.delete(name)
    return Response(status_code=204)


@router.post("/{name}/deployments", summary="Deploy a model version (creates the endpoint if new)")
def deploy(name: str, body: DeploymentCreate, ws: WorkspaceDep) -> Endpoint:
    ws.endpoints.deploy(name, **body.model_dump())
    return ws.endpoints.get(name)


@router.delete("/{name}/deployments/{deployment}", summary="Delete a deployment that takes no traffic")
def delete_deployment(name: str, deployment: str, ws: WorkspaceDep) -> Response:
    ws.endpoints.delete(name, deployment=deployment)
    return Response(status_code=204)


@router.put("/{name}/traffic", summary="Split live traffic (percentages summing to 100)")
def set_traffic(name: str, body: Shares, ws: WorkspaceDep) -> Endpoint:
    return ws.endpoints.set_traffic(name, body.shares)


@router.put("/{name}/mirror", summary="Mirror shares of live traffic to deployments without live traffic")
def set_mirror(name: str, body: Shares, ws: WorkspaceDep) -> Endpoint:
    return ws.endpoints.set_mirror(name, body.shares)


@router.post("/{name}/rollback", summary="Undo the last change of models or traffic")
def rollback(name: str, ws: WorkspaceDep) -> Endpoint:
    return ws.endpoints.rollback(name)


@router.post("/{name}/stop", summary="Stop the endpoint's processes (in-flight requests finish)")
def stop(name: str, ws: WorkspaceDep) -> Endpoint:
    return ws.endpoints.stop(name)


@router.post("/{name}/start", summary="Start a stopped endpoint")
def start(name: str, ws: WorkspaceDep) -> Endpoint:
    return ws.endpoints.start(name)


@router.get("/{name}/keys", summary="The endpoint's primary and secondary keys")
def keys(name: str, ws: WorkspaceDep) -> dict[str, str]:
    return ws.endpoints.keys(name)


@router.post("/{name}/keys/{which}", summary="Regenerate the primary or secondary key")
def regenerate_key(name: str, which: Literal["primary", "secondary"], ws: WorkspaceDep) -> dict[str, str]:
    return ws.endpoints.regenerate_key(name, which)


@router.get("/{name}/logs", summary="The last access-log records (JSON)")
def logs(
    name: str,
    ws: WorkspaceDep,
    deployment: str | None = None,
    tail: int = Query(50, ge=1, le=10_000),
) -> list[dict[str, Any]]:
    return ws.endpoints.logs(name, deployment=deployment, tail=tail)
