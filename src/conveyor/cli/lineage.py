"""``conveyor lineage``: what a data version, model version, run, endpoint or pipeline run came from and led to."""

from __future__ import annotations

from typing import TYPE_CHECKING, Annotated

import typer

from conveyor.cli._output import JsonFlag, Output
from conveyor.cli._state import open_workspace
from conveyor.errors import BadInput
from conveyor.governance._lineage_forms import DEFAULT_DEPTH, MAX_DEPTH, REF_FORMS

if TYPE_CHECKING:
    from rich.console import Console
    from rich.tree import Tree

    from conveyor.governance import LineageGraph, LineageNode

app = typer.Typer(no_args_is_help=True)


@app.command("show")
def show(
    ctx: typer.Context,
    ref: Annotated[str, typer.Argument(help=f"What to trace: {REF_FORMS}.")],
    up: Annotated[bool, typer.Option("--up", help="Only what it came from.")] = False,
    down: Annotated[bool, typer.Option("--down", help="Only what came of it.")] = False,
    depth: Annotated[
        int, typer.Option("--depth", help=f"At most this many links away (1 to {MAX_DEPTH}).")
    ] = DEFAULT_DEPTH,
    dot: Annotated[bool, typer.Option("--dot", help="Print Graphviz DOT (e.g. | dot -Tsvg > lineage.svg).")] = False,
    json_output: JsonFlag = False,
) -> None:
    """Walk the lineage graph from REF: data versions, runs, model versions, deployments, pipeline steps."""
    if up and down:
        raise BadInput("Give --up or --down, not both (without either, both directions are shown).")
    if dot and json_output:
        raise BadInput("Give --json or --dot, not both.")
    out = Output(json_output)
    graph = open_workspace(ctx).lineage.show(ref, direction="up" if up else "down" if down else "both", depth=depth)
    if dot:
        typer.echo(graph.to_dot(), nl=False)
        return
    out.emit(graph, lambda console: _show_tree(console, graph))


def _line(node: LineageNode, relation: str | None = None, arrow: str = "") -> str:
    from rich.markup import escape

    from conveyor.governance._lineage import KIND_WORDS

    kind = KIND_WORDS.get(node.kind, node.kind)
    text = f"{kind} [bold]{escape(node.label)}[/]"
    if node.ref is not None and node.ref.split(":", 1)[1] != node.label:
        text += f"  [dim]{escape(node.ref)}[/]"
    if not node.exists:
        text = f"[red]{text}[/]"
    return text if relation is None else f"[cyan]{arrow}{relation}[/] {text}"


def _show_tree(console: Console, graph: LineageGraph) -> None:
    from rich.tree import Tree

    nodes = {n.key: n for n in graph.nodes}
    parents: dict[str, list[tuple[str, str]]] = {}
    children: dict[str, list[tuple[str, str]]] = {}
    for edge in graph.edges:
        children.setdefault(edge.source, []).append((edge.relation, edge.target))
        parents.setdefault(edge.target, []).append((edge.relation, edge.source))
    root = Tree(_line(graph.root))
    if not graph.edges:
        root.add("[dim]no lineage recorded: nothing it was made from, and nothing made from it[/]")
    for side, links, arrow in (("upstream", parents, "← "), ("downstream", children, "→ ")):
        if graph.direction != "both" and side != {"up": "upstream", "down": "downstream"}[graph.direction]:
            continue
        branch = root.add(f"[bold]{'came from' if side == 'upstream' else 'led to'}[/]")
        shown: set[str] = set()
        _grow(branch, graph.root.key, side, links, nodes, shown, arrow)
        if not branch.children:
            branch.add("[dim]nothing[/]")
    console.print(root)
    if graph.truncated:
        console.print(f"[yellow]More lies beyond {graph.depth} links; raise --depth (at most {MAX_DEPTH}).[/]")


def _grow(
    branch: Tree,
    key: str,
    side: str,
    links: dict[str, list[tuple[str, str]]],
    nodes: dict[str, LineageNode],
    shown: set[str],
    arrow: str,
) -> None:
    shown.add(key)
    for relation, other in links.get(key, []):
        node = nodes[other]
        # a group's members (an endpoint's deployments, a pipeline run's steps) lead both ways
        if node.side not in (side, "root") and not (node.side == "root" and nodes[key].side == "root"):
            continue
        if other in shown:
            branch.add(_line(node, relation, arrow) + "  [dim](shown above)[/]")
            continue
        _grow(branch.add(_line(node, relation, arrow)), other, side, links, nodes, shown, arrow)
