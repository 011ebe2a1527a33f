"""``conveyor export``: an endpoint as files that run it elsewhere (a Docker build context, Kubernetes manifests)."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer
from rich.console import Console

from conveyor.cli._output import JsonFlag, Output
from conveyor.cli._state import open_workspace

if TYPE_CHECKING:
    from conveyor.serve._targets import DeployTarget, ExportedEndpoint

app = typer.Typer(no_args_is_help=True)

NameArg = Annotated[str, typer.Argument(metavar="NAME", help="The endpoint to export.")]
ForceOpt = Annotated[bool, typer.Option("--force", help="Replace DIR if it is not empty.")]


def _out_option(default_suffix: str) -> object:
    return typer.Option(
        "--out", "-o", metavar="DIR", help=f"Folder to write (must be new or empty); default: ./NAME-{default_suffix}."
    )


@app.command("docker")
def docker(
    ctx: typer.Context,
    name: NameArg,
    out: Annotated[str | None, _out_option("docker")] = None,
    image: Annotated[
        str | None, typer.Option("--image", help="Image name the README uses; default conveyor-endpoint-NAME:REVISION.")
    ] = None,
    force: ForceOpt = False,
    json_output: JsonFlag = False,
) -> None:
    """Write a Docker build context that serves the endpoint: Dockerfile, pinned requirements, model files."""
    from conveyor.serve._targets import DockerTarget

    _export(ctx, name, DockerTarget(image=image), out or f"{name}-docker", force, json_output)


@app.command("k8s")
def k8s(
    ctx: typer.Context,
    name: NameArg,
    out: Annotated[str | None, _out_option("k8s")] = None,
    image: Annotated[
        str | None,
        typer.Option("--image", help="Image the Deployment runs (pushed to your registry); default the local name."),
    ] = None,
    replicas: Annotated[int, typer.Option("--replicas", min=1, help="Fewest pods (autoscaler minimum).")] = 2,
    max_replicas: Annotated[int, typer.Option("--max-replicas", min=1, help="Most pods (autoscaler maximum).")] = 10,
    cpu_target: Annotated[
        int, typer.Option("--cpu-target", min=1, max=100, help="Average CPU utilisation (%) the autoscaler keeps.")
    ] = 70,
    force: ForceOpt = False,
    json_output: JsonFlag = False,
) -> None:
    """Write the Docker build context plus Kubernetes manifests (Deployment, Service, autoscaler, ...)."""
    from conveyor.serve._targets import KubernetesTarget

    target = KubernetesTarget(image=image, replicas=replicas, max_replicas=max_replicas, cpu_target=cpu_target)
    _export(ctx, name, target, out or f"{name}-k8s", force, json_output)


def _export(ctx: typer.Context, name: str, target: DeployTarget, out: str, force: bool, json_output: bool) -> None:
    from conveyor.serve._targets import export_endpoint

    output = Output(json_output)
    if not json_output:
        output.note(f"Exporting endpoint {name!r} for {target.name} (building Conveyor's wheel may take a while)…")
    result = export_endpoint(open_workspace(ctx), name, target, Path(out), force=force)
    payload = {
        "target": result.target,
        "endpoint": result.endpoint,
        "revision": result.revision,
        "path": result.path,
        "image": result.image,
        "files": result.files,
        "packages": result.packages,
        "packages_mb": result.packages_mb,
    }
    output.emit(payload, lambda console: _human(console, result))


def _human(console: Console, result: ExportedEndpoint) -> None:
    from conveyor.serve._targets import k8s_name

    console.print(f"[green]✓[/] endpoint {result.endpoint} (revision {result.revision}) → {result.path}")
    for file in result.files:
        console.print(f"  {file}")
    if result.packages:
        console.print(
            f"The image installs {result.packages} packages, {result.packages_mb:,.0f} MB installed (what serving "
            "these models needs), on top of the python:slim base image."
        )
    console.print("Next:")
    console.print(f"  docker build -t {result.image} {result.path}")
    if result.target == "k8s":
        console.print(f"  docker push {result.image}   (after tagging it for your registry; see README.md)")
        secret = f"{k8s_name(result.endpoint)}-keys"
        console.print(f'  kubectl create secret generic {secret} --from-literal=keys="$PRIMARY,$SECONDARY"')
        console.print(f"  kubectl apply -f {Path(result.path) / 'k8s'}")
    else:
        console.print(f'  docker run --rm -p 8080:8080 -e CONVEYOR_ENDPOINT_KEYS="$PRIMARY,$SECONDARY" {result.image}')
