"""The lineage graph: one generic edge table, written by the service that creates an entity, in the same
transaction, and walked both ways by queries.

Kinds and relations used so far (read an edge as "from <relation> to")::

    data_version  read_by          run             a run trained on that data version
    run           produced         model_version   a run's output registered as a model version
    model_version served_by        deployment      a deployment serves that model version
    model_version scored           data_version    batch scoring wrote that version with the model
    deployment    collected        data_version    requests a deployment scored, sampled into the lake
    data_version  derived          data_version    appends, SQL results, quarantine, scored outputs
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING, Literal

import sqlalchemy as sa
from sqlalchemy.orm import Session

from conveyor.store._schema import LineageEdgeRow, utcnow

if TYPE_CHECKING:
    from conveyor.store import MetadataStore

__all__ = ["Edge", "Lineage", "add_edge"]

Direction = Literal["upstream", "downstream"]


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
