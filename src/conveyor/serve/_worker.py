"""The serving process of one deployment: ``python -m conveyor.serve --deployment-id ID``.

It opens the workspace named by the environment, loads the deployment's model version (verifying its
hash), makes one warm-up prediction, binds its socket, announces ``{"port": N}`` as one JSON line on
stdout, and serves until SIGTERM (uvicorn drains in-flight requests before exiting).
"""

from __future__ import annotations

import argparse
import json
import socket
import sys

import sqlalchemy as sa

from conveyor.serve._app import ServedModel, create_endpoint_app, records_to_frame

__all__ = ["main"]


def load_deployment(deployment_id: str) -> ServedModel:
    """Open the workspace from the environment and load the deployment's model (hash verified)."""
    from conveyor.store._schema import DeploymentRow, EndpointRow
    from conveyor.workspace import Workspace

    with Workspace.open() as ws:
        with ws.store.read() as session:
            found = session.execute(
                sa.select(DeploymentRow.model_version_id, DeploymentRow.name, EndpointRow.name)
                .join(EndpointRow, EndpointRow.id == DeploymentRow.endpoint_id)
                .where(DeploymentRow.id == deployment_id)
            ).first()
        if found is None:
            raise SystemExit(f"no deployment {deployment_id} in {ws.settings.home}")
        version_id, deployment, endpoint = found
        version = ws.models.get_by_id(version_id)
        model = ws.models.load(version)
    served = ServedModel(endpoint, deployment, version.ref, model, version.signature)
    _warm_up(served)
    return served


def _warm_up(served: ServedModel) -> None:
    """Score one synthetic row so the first real request pays no lazy-initialisation cost."""
    inputs = served.signature.get("inputs", [])
    if not inputs:
        return
    example = {c["name"]: _example_value(c["type"]) for c in inputs}
    served.model.predict(records_to_frame([example], served.signature))


def _example_value(kind: str) -> object:
    return {
        "integer": 0,
        "long": 0,
        "float": 0.0,
        "double": 0.0,
        "boolean": False,
        "datetime": "2000-01-01",
    }.get(kind, "")


def main(argv: list[str] | None = None) -> None:
    import uvicorn

    parser = argparse.ArgumentParser(prog="python -m conveyor.serve")
    parser.add_argument("--deployment-id", required=True)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=0)
    args = parser.parse_args(argv)

    served = load_deployment(args.deployment_id)
    app = create_endpoint_app(served)
    sock = socket.socket(socket.AF_INET6 if ":" in args.host else socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind((args.host, args.port))
    sock.listen(2048)
    sys.stdout.write(json.dumps({"port": sock.getsockname()[1], "model": served.model_ref}) + "\n")
    sys.stdout.flush()
    config = uvicorn.Config(app, log_level="warning", access_log=False, lifespan="off", timeout_graceful_shutdown=10)
    uvicorn.Server(config).run(sockets=[sock])
