"""The lineage graph: one generic edge table, written by the service that creates an entity, in the same
transaction, and walked both ways by queries.

Kinds and relations used so far (read an edge as "from <relation> to")::

    data_version  read_by          run             a run trained on that data version
    run           produced         model_version   a run's output registered as a model version
    model_version served_by        deployment      a deployment serves that model version
    model_version scored           data_version    batch scoring wrote that version with the model
    deployment    collected        data_version    requests a deployment scored, sampled into the lake
    data_version  derived          data_version    appends, SQL results, quarantine, scored outputs
    data_version  read_by          step_run        a pipeline step read that data version
    step_run      produced         data_version    a pipeline step's table output (or model_version)

Two more links come from the tables themselves rather than the edge table, so a walk can pass through them:
``pipeline_run ran step_run`` (``step_runs.pipeline_run_id``) and ``endpoint has deployment``
(``deployments.endpoint_id``).

:meth:`Lineage.show` is the query users reach (``conveyor lineage show REF``, ``GET /api/v1/lineage``): it
parses one reference grammar (:func:`parse_lineage_ref`), walks up, down or both to a bounded depth, level by
level (a few queries per level, whatever its width), and labels every node in bulk (one query per kind).
"""

from __future__ import annotations

import re
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING, Any, Literal

import sqlalchemy as sa
from sqlalchemy.orm import Session

from conveyor.errors import BadInput, InvalidReference, NotFound, did_you_mean
from conveyor.governance._lineage_forms import DEFAULT_DEPTH, MAX_DEPTH, REF_FORMS
from conveyor.refs import LATEST, parse_ref, validate_name
from conveyor.store._schema import (
    AlertRow,
    DataAssetRow,
    DataVersionRow,
    DeploymentRow,
    EndpointRow,
    ExperimentRow,
    LineageEdgeRow,
    ModelAliasRow,
    ModelRow,
    ModelVersionRow,
    MonitorRow,
    PipelineRunRow,
    RunRow,
    StepRunRow,
    utcnow,
)

if TYPE_CHECKING:
    from conveyor.store import MetadataStore

__all__ = [
    "DEFAULT_DEPTH",
    "KIND_WORDS",
    "MAX_DEPTH",
    "MAX_NODES",
    "REF_FORMS",
    "Edge",
    "Lineage",
    "LineageEdge",
    "LineageGraph",
    "LineageNode",
    "LineageRef",
    "add_edge",
    "parse_lineage_ref",
]

Direction = Literal["upstream", "downstream"]

#: the most nodes one answer holds (a data version read by thousands of runs is cut here, ``truncated`` set)
MAX_NODES = 5000


@dataclass(frozen=True)
class Edge:
    from_kind: str
    from_id: str
    relation: str
    to_kind: str
    to_id: str
    at: datetime


def add_edge(session: Session, from_kind: str, from_id: str, relation: str, to_kind: str, to_id: str) -> None:
    """Record an edge inside the caller's transaction (a no-op if the same edge exists)."""
    exists = session.execute(
        sa.select(LineageEdgeRow.id).filter_by(
            from_kind=from_kind, from_id=from_id, relation=relation, to_kind=to_kind, to_id=to_id
        )
    ).first()
    if exists is None:
        session.add(
            LineageEdgeRow(
                from_kind=from_kind,
                from_id=from_id,
                relation=relation,
                to_kind=to_kind,
                to_id=to_id,
                at=utcnow(),
            )
        )


def run_inputs(session: Session, run_ids: list[str]) -> dict[str, list[str]]:
    """Per run: the data versions it read (``name:3``), from the ``read_by`` edges, in name/version order."""
    from conveyor.store._schema import DataAssetRow, DataVersionRow

    inputs: dict[str, list[str]] = {}
    if not run_ids:
        return inputs
    for run_id, name, version in session.execute(
        sa.select(LineageEdgeRow.to_id, DataAssetRow.name, DataVersionRow.version)
        .join(DataVersionRow, DataVersionRow.id == LineageEdgeRow.from_id)
        .join(DataAssetRow, DataAssetRow.id == DataVersionRow.asset_id)
        .where(
            LineageEdgeRow.from_kind == "data_version",
            LineageEdgeRow.relation == "read_by",
            LineageEdgeRow.to_kind == "run",
            LineageEdgeRow.to_id.in_(run_ids),
        )
        .order_by(DataAssetRow.name, DataVersionRow.version)
    ):
        inputs.setdefault(run_id, []).append(f"{name}:{version}")
    return inputs


class Lineage:
    """Queries over the lineage graph."""

    def __init__(self, store: MetadataStore) -> None:
        self._store = store

    def edges(self, kind: str, id_: str, direction: Direction = "downstream", depth: int = 10) -> list[Edge]:
        """Edges reachable from ``(kind, id_)``: downstream follows edges forwards, upstream backwards."""
        seen: set[tuple[str, str]] = {(kind, id_)}
        frontier: deque[tuple[str, str, int]] = deque([(kind, id_, 0)])
        found: list[Edge] = []
        with self._store.read() as session:
            while frontier:
                k, i, d = frontier.popleft()
                if d >= depth:
                    continue
                if direction == "downstream":
                    query = sa.select(LineageEdgeRow).filter_by(from_kind=k, from_id=i)
                else:
                    query = sa.select(LineageEdgeRow).filter_by(to_kind=k, to_id=i)
                for row in session.scalars(query.order_by(LineageEdgeRow.id)):
                    edge = Edge(row.from_kind, row.from_id, row.relation, row.to_kind, row.to_id, row.at)
                    found.append(edge)
                    nxt = (row.to_kind, row.to_id) if direction == "downstream" else (row.from_kind, row.from_id)
                    if nxt not in seen:
                        seen.add(nxt)
                        frontier.append((*nxt, d + 1))
        return found

    def show(self, ref: str, *, direction: str = "both", depth: int = DEFAULT_DEPTH) -> LineageGraph:
        """The lineage around what ``ref`` names (see :data:`REF_FORMS`): what it came from (``up``), what came
        of it (``down``), or ``both``, up to ``depth`` links away.

        A group (``endpoint:NAME``, ``pipeline-run:ID``) starts from all its members (deployments, step runs)
        at once. A walk stops at ``depth`` links, or at :data:`MAX_NODES` nodes; ``truncated`` says whether
        more lay beyond.

        Raises:
            InvalidReference: ``ref`` does not parse (an unknown kind gets a suggestion).
            BadInput: ``direction`` is not up, down or both; ``depth`` is not 1 to :data:`MAX_DEPTH`.
            NotFound: nothing has that name, version, alias or id (with "did you mean" for near names).
        """
        sides = _check_direction(direction)
        _check_depth(depth)
        parsed = parse_lineage_ref(ref)
        with self._store.read() as session:
            root, members = _resolve(session, parsed)
            return _walk(session, parsed, root, members, sides, depth)


# -- lineage queries: the reference grammar ----------------------------------------------------------

_KINDS = {
    "data": "data_version",
    "model": "model_version",
    "run": "run",
    "endpoint": "endpoint",
    "deployment": "deployment",
    "pipeline-run": "pipeline_run",
    "step-run": "step_run",
    "monitor": "monitor",
    "alert": "alert",
}
_PREFIX = {kind: prefix for prefix, kind in _KINDS.items()}
_ID = re.compile(r"[0-9A-Za-z]{1,64}")
_DIRECTIONS = {"up": ("upstream",), "down": ("downstream",), "both": ("upstream", "downstream")}


@dataclass(frozen=True)
class LineageRef:
    """A parsed lineage reference: ``kind`` is ``data``, ``model``, ``run``, ``endpoint``, ``deployment``,
    ``pipeline-run`` or ``step-run``; ``name``/``version``/``alias`` for data and models (neither version nor
    alias: the latest), ``name`` (and ``deployment``) for endpoints, ``id`` for runs."""

    kind: str
    name: str | None = None
    version: int | None = None
    alias: str | None = None
    deployment: str | None = None
    id: str | None = None

    def __str__(self) -> str:
        if self.id is not None:
            return f"{self.kind}:{self.id}"
        if self.deployment is not None:
            return f"{self.kind}:{self.name}/{self.deployment}"
        if self.version is not None:
            return f"{self.kind}:{self.name}:{self.version}"
        if self.alias is not None:
            return f"{self.kind}:{self.name}@{self.alias}"
        return f"{self.kind}:{self.name}"


def parse_lineage_ref(text: str) -> LineageRef:
    """Parse a lineage reference: ``KIND:WHAT`` (see :data:`REF_FORMS`), or a bare data reference.

    Raises:
        InvalidReference: an unknown kind (with a suggestion), or a malformed name, version, alias or id.
    """
    if not isinstance(text, str) or not text.strip():
        raise InvalidReference(f"Give what to trace, as one of: {REF_FORMS}.")
    raw = text.strip()
    prefix, sep, rest = raw.partition(":")
    if not sep or (prefix not in _KINDS and (rest.isdigit() or rest == LATEST)):
        prefix, rest = "data", raw  # churn, churn@latest, churn:3
    elif prefix not in _KINDS:
        raise InvalidReference(
            f"{text!r}: unknown kind {prefix!r}.{did_you_mean(prefix, _KINDS)} Use one of: {REF_FORMS}.",
            ref=text,
        )
    if not rest:
        raise InvalidReference(f"{text!r}: say which {prefix} after the ':'. Use one of: {REF_FORMS}.", ref=text)
    if prefix in ("data", "model"):
        parsed = parse_ref(rest, "data asset" if prefix == "data" else "model")
        return LineageRef(prefix, name=parsed.name, version=parsed.version, alias=parsed.alias)
    if prefix in ("endpoint", "monitor"):
        return LineageRef(prefix, name=validate_name(rest, prefix))
    if prefix == "deployment":
        endpoint, slash, deployment = rest.partition("/")
        if not slash:
            raise InvalidReference(
                f"{text!r}: a deployment is named with its endpoint, as deployment:ENDPOINT/NAME "
                f"(e.g. deployment:{rest}/blue); endpoint:{rest} traces all of an endpoint's deployments.",
                ref=text,
            )
        return LineageRef(
            prefix, name=validate_name(endpoint, "endpoint"), deployment=validate_name(deployment, "deployment")
        )
    if not _ID.fullmatch(rest):
        raise InvalidReference(
            f"{text!r}: {rest!r} is not an id (ids are letters and digits, like 01J9Z3K4V6W8X0Y2Z4A6B8C0D2).",
            ref=text,
        )
    return LineageRef(prefix, id=rest)


# -- lineage queries: the answer -----------------------------------------------------------------------


@dataclass(frozen=True)
class LineageNode:
    """One thing in the graph.

    Attributes:
        key: ``kind:id``, what edges refer to.
        kind: ``data_version``, ``model_version``, ``run``, ``deployment``, ``endpoint``, ``step_run`` or
            ``pipeline_run``.
        id: its id.
        ref: how to name it to ``lineage show`` (None if it was deleted).
        label: a name for people: ``churn:3``, ``churn:2 @champion``, ``churn/blue``, ``automl/brave-fox`` ...
        exists: False when the edge outlived the thing (a deleted endpoint's deployment).
        side: ``root`` (the reference, or a member of the group it names), ``upstream`` or ``downstream``.
        distance: links from the root.
    """

    key: str
    kind: str
    id: str
    ref: str | None
    label: str
    exists: bool
    side: str
    distance: int


@dataclass(frozen=True)
class LineageEdge:
    """``source --relation--> target`` (node keys): data flows from source to target."""

    source: str
    relation: str
    target: str
    at: datetime | None


@dataclass(frozen=True)
class LineageGraph:
    """The answer of :meth:`Lineage.show`: the root node, every node (root first), every edge."""

    root: LineageNode
    nodes: list[LineageNode]
    edges: list[LineageEdge]
    direction: str
    depth: int
    truncated: bool

    def to_dot(self) -> str:
        """The graph in Graphviz's DOT language (``dot -Tsvg``), the root drawn bold."""
        shapes = {"data_version": "cylinder", "model_version": "component", "deployment": "box3d"}
        lines = ["digraph lineage {", "  rankdir=LR;", '  node [shape=box, style=rounded, fontname="Helvetica"];']
        for node in self.nodes:
            text = f"{KIND_WORDS.get(node.kind, node.kind)}\\n{_dot_escape(node.label)}"
            attributes = [f'label="{text}"', f"shape={shapes.get(node.kind, 'box')}"]
            if node.key == self.root.key:
                attributes.append("penwidth=2.5")
            if not node.exists:
                attributes.append('style="rounded,dashed"')
            lines.append(f'  "{node.key}" [{", ".join(attributes)}];')
        for edge in self.edges:
            lines.append(f'  "{edge.source}" -> "{edge.target}" [label="{_dot_escape(edge.relation)}"];')
        lines.append("}")
        return "\n".join(lines) + "\n"


#: the word people read for each node kind (in DOT labels and the CLI's tree)
KIND_WORDS = {
    "data_version": "data",
    "model_version": "model",
    "run": "run",
    "deployment": "deployment",
    "endpoint": "endpoint",
    "step_run": "step",
    "pipeline_run": "pipeline run",
}


def _dot_escape(text: str) -> str:
    return text.replace("\\", "\\\\").replace('"', '\\"')


def _check_direction(direction: str) -> tuple[str, ...]:
    sides = _DIRECTIONS.get(direction)
    if sides is None:
        raise BadInput(
            f"Direction {direction!r} is not one of up, down, both.{did_you_mean(str(direction), _DIRECTIONS)}",
            direction=direction,
        )
    return sides


def _check_depth(depth: int) -> None:
    if isinstance(depth, bool) or not isinstance(depth, int) or not 1 <= depth <= MAX_DEPTH:
        raise BadInput(
            f"Depth {depth!r} is out of range: give a whole number of links from 1 to {MAX_DEPTH} "
            f"(default {DEFAULT_DEPTH}).",
            depth=depth,
        )


# -- lineage queries: resolving the reference ------------------------------------------------------------

Key = tuple[str, str]  # (kind, id)


def _resolve(session: Session, ref: LineageRef) -> tuple[Key, list[Key]]:
    """The root ``(kind, id)`` and, for a group, its members."""
    if ref.kind == "data":
        return ("data_version", _data_version(session, ref)), []
    if ref.kind == "model":
        return ("model_version", _model_version(session, ref)), []
    if ref.kind == "endpoint":
        endpoint = _endpoint(session, str(ref.name))
        deployments = session.scalars(
            sa.select(DeploymentRow.id).filter_by(endpoint_id=endpoint).order_by(DeploymentRow.created_at)
        ).all()
        return ("endpoint", endpoint), [("deployment", d) for d in deployments]
    if ref.kind == "deployment":
        endpoint = _endpoint(session, str(ref.name))
        found = session.scalars(
            sa.select(DeploymentRow.id).filter_by(endpoint_id=endpoint, name=ref.deployment)
        ).first()
        if found is None:
            names = session.scalars(sa.select(DeploymentRow.name).filter_by(endpoint_id=endpoint)).all()
            raise NotFound(
                f"Endpoint {ref.name!r} has no deployment {ref.deployment!r}.{did_you_mean(str(ref.deployment), names)}"
                f" Its deployments: {', '.join(sorted(names)) or 'none'}.",
                ref=str(ref),
            )
        return ("deployment", found), []
    if ref.kind == "monitor":
        monitor = session.scalars(sa.select(MonitorRow.id).filter_by(name=ref.name)).first()
        if monitor is None:
            names = session.scalars(sa.select(MonitorRow.name)).all()
            raise NotFound(
                f"No monitor named {ref.name!r}.{did_you_mean(str(ref.name), names)} List them with "
                "'conveyor monitor list'.",
                ref=str(ref),
            )
        return ("monitor", monitor), []
    table, kind, hint = {
        "run": (RunRow, "run", "conveyor runs list"),
        "pipeline-run": (PipelineRunRow, "pipeline_run", "conveyor pipeline runs"),
        "step-run": (StepRunRow, "step_run", "conveyor pipeline show RUN --json"),
        "alert": (AlertRow, "alert", "conveyor monitor alerts MONITOR"),
    }[ref.kind]
    if session.get(table, ref.id) is None:
        raise NotFound(f"No {ref.kind} with id {ref.id!r}. Find ids with '{hint}'.", ref=str(ref))
    members: list[Key] = []
    if kind == "pipeline_run":
        steps = session.scalars(
            sa.select(StepRunRow.id).filter_by(pipeline_run_id=ref.id).order_by(StepRunRow.started_at, StepRunRow.id)
        ).all()
        members = [("step_run", s) for s in steps]
    return (kind, str(ref.id)), members


def _data_version(session: Session, ref: LineageRef) -> str:
    asset = session.scalars(sa.select(DataAssetRow.id).filter_by(name=ref.name)).first()
    if asset is None:
        names = session.scalars(sa.select(DataAssetRow.name)).all()
        raise NotFound(
            f"No data asset named {ref.name!r}.{did_you_mean(str(ref.name), names)} "
            "List them with 'conveyor data list'.",
            ref=str(ref),
        )
    if ref.alias not in (None, LATEST):
        raise NotFound(
            f"Data assets have no alias {ref.alias!r}; use 'data:{ref.name}@latest' or 'data:{ref.name}:N'.",
            ref=str(ref),
        )
    query = sa.select(DataVersionRow.id).filter_by(asset_id=asset)
    if ref.version is not None:
        query = query.filter_by(version=ref.version)
    found = session.scalars(query.order_by(DataVersionRow.version.desc()).limit(1)).first()
    if found is None:
        latest = session.scalar(sa.select(sa.func.max(DataVersionRow.version)).filter_by(asset_id=asset))
        raise NotFound(
            f"Data asset {ref.name!r} has no version {ref.version}; its versions are 1 to {latest or 0}.",
            ref=str(ref),
        )
    return found


def _model_version(session: Session, ref: LineageRef) -> str:
    model = session.scalars(sa.select(ModelRow.id).filter_by(name=ref.name)).first()
    if model is None:
        names = session.scalars(sa.select(ModelRow.name)).all()
        raise NotFound(
            f"No model named {ref.name!r}.{did_you_mean(str(ref.name), names)} List them with 'conveyor models list'.",
            ref=str(ref),
        )
    if ref.alias not in (None, LATEST):
        found = session.scalars(sa.select(ModelAliasRow.version_id).filter_by(model_id=model, alias=ref.alias)).first()
        if found is None:
            aliases = session.scalars(sa.select(ModelAliasRow.alias).filter_by(model_id=model)).all()
            raise NotFound(
                f"Model {ref.name!r} has no alias {ref.alias!r}.{did_you_mean(str(ref.alias), aliases)} "
                f"Its aliases: {', '.join(sorted(aliases)) or 'none'}.",
                ref=str(ref),
            )
        return found
    query = sa.select(ModelVersionRow.id).filter_by(model_id=model)
    if ref.version is not None:
        query = query.filter_by(version=ref.version)
    version = session.scalars(query.order_by(ModelVersionRow.version.desc()).limit(1)).first()
    if version is None:
        latest = session.scalar(sa.select(sa.func.max(ModelVersionRow.version)).filter_by(model_id=model))
        raise NotFound(
            f"Model {ref.name!r} has no version {ref.version}; its versions are 1 to {latest or 0}.", ref=str(ref)
        )
    return version


def _endpoint(session: Session, name: str) -> str:
    found = session.scalars(sa.select(EndpointRow.id).filter_by(name=name)).first()
    if found is None:
        names = session.scalars(sa.select(EndpointRow.name)).all()
        raise NotFound(
            f"No endpoint named {name!r}.{did_you_mean(name, names)} List them with 'conveyor endpoints list'.",
            ref=f"endpoint:{name}",
        )
    return found


# -- lineage queries: the walk -----------------------------------------------------------------------------

EdgeKey = tuple[str, str, str, str, str]  # from_kind, from_id, relation, to_kind, to_id
_CHUNK = 500


def _walk(
    session: Session, ref: LineageRef, root: Key, members: list[Key], sides: tuple[str, ...], depth: int
) -> LineageGraph:
    placed: dict[Key, tuple[str, int]] = {root: ("root", 0)}
    for member in members:
        placed[member] = ("root", 0)
    edges: dict[EdgeKey, datetime | None] = {}
    truncated = False
    for side in sides:
        frontier = [root, *members]
        seen = set(frontier)
        for distance in range(1, depth + 2):
            if not frontier:
                break
            found = [(e, at) for e, at in _adjacent(session, frontier, side) if e not in edges]
            if distance > depth or len(placed) >= MAX_NODES:
                truncated = truncated or bool(found)
                break
            frontier = []
            for edge, at in found:
                nxt = (edge[3], edge[4]) if side == "downstream" else (edge[0], edge[1])
                if nxt not in seen and len(placed) >= MAX_NODES:
                    truncated = True
                    continue
                edges[edge] = at
                if nxt not in seen:
                    seen.add(nxt)
                    placed.setdefault(nxt, (side, distance))
                    frontier.append(nxt)
    labels = _labels(session, placed)
    nodes = [
        LineageNode(
            key=f"{kind}:{id_}",
            kind=kind,
            id=id_,
            ref=labels[(kind, id_)][1],
            label=labels[(kind, id_)][0],
            exists=labels[(kind, id_)][2],
            side=side,
            distance=distance,
        )
        for (kind, id_), (side, distance) in placed.items()
    ]
    links = [LineageEdge(f"{fk}:{fi}", relation, f"{tk}:{ti}", at) for (fk, fi, relation, tk, ti), at in edges.items()]
    direction = "both" if len(sides) == 2 else ("up" if sides[0] == "upstream" else "down")
    return LineageGraph(nodes[0], nodes, links, direction, depth, truncated)


def _chunks(ids: list[str]) -> Iterator[list[str]]:
    for start in range(0, len(ids), _CHUNK):
        yield ids[start : start + _CHUNK]


def _adjacent(session: Session, frontier: list[Key], side: str) -> list[tuple[EdgeKey, datetime | None]]:
    """The edges one link away from ``frontier`` (towards ``side``): a query per kind present, plus the links
    the step-run and deployment tables hold."""
    by_kind: dict[str, list[str]] = {}
    for kind, id_ in frontier:
        by_kind.setdefault(kind, []).append(id_)
    found: list[tuple[EdgeKey, datetime | None]] = []
    down = side == "downstream"
    for kind, ids in by_kind.items():
        for chunk in _chunks(ids):
            if down:
                where = sa.and_(LineageEdgeRow.from_kind == kind, LineageEdgeRow.from_id.in_(chunk))
            else:
                where = sa.and_(LineageEdgeRow.to_kind == kind, LineageEdgeRow.to_id.in_(chunk))
            for row in session.scalars(sa.select(LineageEdgeRow).where(where).order_by(LineageEdgeRow.id)):
                found.append(((row.from_kind, row.from_id, row.relation, row.to_kind, row.to_id), row.at))
            found.extend(_table_links(session, kind, chunk, down))
    return found


def _table_links(session: Session, kind: str, ids: list[str], down: bool) -> list[tuple[EdgeKey, datetime | None]]:
    """``pipeline_run ran step_run`` and ``endpoint has deployment``, from the tables that hold them."""
    links: list[tuple[EdgeKey, datetime | None]] = []
    if (kind, down) in (("pipeline_run", True), ("step_run", False)):
        column = StepRunRow.pipeline_run_id if down else StepRunRow.id
        query = sa.select(StepRunRow.pipeline_run_id, StepRunRow.id, StepRunRow.started_at).where(column.in_(ids))
        for run_id, step_id, at in session.execute(query.order_by(StepRunRow.started_at, StepRunRow.id)):
            links.append((("pipeline_run", run_id, "ran", "step_run", step_id), at))
    if (kind, down) in (("endpoint", True), ("deployment", False)):
        column = DeploymentRow.endpoint_id if down else DeploymentRow.id
        query = sa.select(DeploymentRow.endpoint_id, DeploymentRow.id, DeploymentRow.created_at).where(column.in_(ids))
        for endpoint_id, deployment_id, at in session.execute(query.order_by(DeploymentRow.created_at)):
            links.append((("endpoint", endpoint_id, "has", "deployment", deployment_id), at))
    return links


def _labels(session: Session, nodes: Iterable[Key]) -> dict[Key, tuple[str, str | None, bool]]:
    """``(label, ref, exists)`` of every node: one query per kind (two for model versions, with aliases)."""
    by_kind: dict[str, list[str]] = {}
    for kind, id_ in nodes:
        by_kind.setdefault(kind, []).append(id_)
    known: dict[Key, tuple[str, str | None, bool]] = {}
    for kind, all_ids in by_kind.items():
        for ids in _chunks(all_ids):
            for id_, label, ref in _describe(session, kind, ids):
                known[(kind, id_)] = (label, ref, True)
    for kind, ids in by_kind.items():
        for id_ in ids:
            known.setdefault((kind, id_), (f"{id_} (deleted)", None, False))
    return known


def _describe(session: Session, kind: str, ids: list[str]) -> list[tuple[str, str, str]]:
    """``(id, label, ref)`` of the nodes of one kind that still exist."""
    if kind == "model_version":
        return _describe_models(session, ids)
    if kind not in _DESCRIBE:
        return []
    query, shape = _DESCRIBE[kind]
    return [shape(*row) for row in session.execute(query(ids))]


def _describe_models(session: Session, ids: list[str]) -> list[tuple[str, str, str]]:
    aliases: dict[str, list[str]] = {}
    for version_id, alias in session.execute(
        sa.select(ModelAliasRow.version_id, ModelAliasRow.alias)
        .where(ModelAliasRow.version_id.in_(ids))
        .order_by(ModelAliasRow.alias)
    ):
        aliases.setdefault(version_id, []).append(f"@{alias}")
    rows = session.execute(
        sa.select(ModelVersionRow.id, ModelRow.name, ModelVersionRow.version)
        .join(ModelRow, ModelRow.id == ModelVersionRow.model_id)
        .where(ModelVersionRow.id.in_(ids))
    )
    return [(i, " ".join([f"{name}:{v}", *aliases.get(i, [])]), f"model:{name}:{v}") for i, name, v in rows]


_DESCRIBE: dict[str, tuple[Callable[[list[str]], Any], Callable[..., tuple[str, str, str]]]] = {
    "data_version": (
        lambda ids: (
            sa.select(DataVersionRow.id, DataAssetRow.name, DataVersionRow.version)
            .join(DataAssetRow, DataAssetRow.id == DataVersionRow.asset_id)
            .where(DataVersionRow.id.in_(ids))
        ),
        lambda i, name, v: (i, f"{name}:{v}", f"data:{name}:{v}"),
    ),
    "run": (
        lambda ids: (
            sa.select(RunRow.id, RunRow.name, ExperimentRow.name)
            .join(ExperimentRow, ExperimentRow.id == RunRow.experiment_id)
            .where(RunRow.id.in_(ids))
        ),
        lambda i, name, experiment: (i, f"{experiment}/{name or i}", f"run:{i}"),
    ),
    "deployment": (
        lambda ids: (
            sa.select(DeploymentRow.id, EndpointRow.name, DeploymentRow.name)
            .join(EndpointRow, EndpointRow.id == DeploymentRow.endpoint_id)
            .where(DeploymentRow.id.in_(ids))
        ),
        lambda i, endpoint, name: (i, f"{endpoint}/{name}", f"deployment:{endpoint}/{name}"),
    ),
    "endpoint": (
        lambda ids: sa.select(EndpointRow.id, EndpointRow.name).where(EndpointRow.id.in_(ids)),
        lambda i, name: (i, name, f"endpoint:{name}"),
    ),
    "step_run": (
        lambda ids: (
            sa.select(StepRunRow.id, PipelineRunRow.pipeline_name, StepRunRow.step)
            .join(PipelineRunRow, PipelineRunRow.id == StepRunRow.pipeline_run_id)
            .where(StepRunRow.id.in_(ids))
        ),
        lambda i, pipeline, step: (i, f"{pipeline}.{step}", f"step-run:{i}"),
    ),
    "pipeline_run": (
        lambda ids: sa.select(PipelineRunRow.id, PipelineRunRow.pipeline_name, PipelineRunRow.status).where(
            PipelineRunRow.id.in_(ids)
        ),
        lambda i, pipeline, status: (i, f"{pipeline} ({status})", f"pipeline-run:{i}"),
    ),
    "monitor": (
        lambda ids: sa.select(MonitorRow.id, MonitorRow.name).where(MonitorRow.id.in_(ids)),
        lambda i, name: (i, f"monitor {name}", f"monitor:{name}"),
    ),
    "alert": (
        lambda ids: sa.select(AlertRow.id, AlertRow.signals).where(AlertRow.id.in_(ids)),
        lambda i, signals: (i, f"alert ({', '.join(signals)})", f"alert:{i}"),
    ),
}
