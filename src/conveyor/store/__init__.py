"""Persistence: the metadata database (SQLAlchemy + Alembic) and the content-addressed artifact store."""

from conveyor.store._artifacts import ArtifactStore, Blob
from conveyor.store._metadata import MetadataStore, mask_url

__all__ = ["ArtifactStore", "Blob", "MetadataStore", "mask_url"]
