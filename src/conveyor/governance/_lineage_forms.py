"""What a lineage question may ask, in a module that imports nothing: the CLI's help texts and defaults are built
when ``conveyor`` starts, before any command needs the graph (and SQLAlchemy with it)."""

from __future__ import annotations

__all__ = ["DEFAULT_DEPTH", "MAX_DEPTH", "REF_FORMS"]

DEFAULT_DEPTH = 10
MAX_DEPTH = 50

#: The reference forms, as help texts and errors show them.
REF_FORMS = (
    "data:NAME:N, data:NAME@latest, model:NAME:N, model:NAME@ALIAS, run:ID, endpoint:NAME, "
    "deployment:ENDPOINT/NAME, pipeline-run:ID, step-run:ID, monitor:NAME, alert:ID (a bare NAME:N or NAME@latest "
    "is a data version)"
)
