"""``/api/v1/lineage``: walk the lineage graph from a data version, model version, run, endpoint or pipeline run."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query

from conveyor.api._deps import WorkspaceDep
from conveyor.governance import LineageGraph
from conveyor.governance._lineage import DEFAULT_DEPTH, MAX_DEPTH, REF_FORMS

router = APIRouter(tags=["lineage"])


@router.get("/lineage", summary="What a thing came from and what came of it, as nodes and edges")
def lineage(
    ws: WorkspaceDep,
    ref: Annotated[str, Query(description=f"What to trace: {REF_FORMS}.")],
    direction: Annotated[str, Query(description="up (what it came from), down (what came of it) or both.")] = "both",
    depth: Annotated[int, Query(description=f"At most this many links away, 1 to {MAX_DEPTH}.")] = DEFAULT_DEPTH,
) -> LineageGraph:
    """Answers 400 for a malformed reference, direction or depth, 404 for an unknown name, version or id."""
    return ws.lineage.show(ref, direction=direction, depth=depth)
