"""Persistence: the metadata database (SQLAlchemy + Alembic) and the content-addressed artifact store."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from conveyor import _lazy

if TYPE_CHECKING:
    from conveyor.store._artifacts import ArtifactStore, Blob
    from conveyor.store._metadata import MetadataStore, mask_url

__all__ = ["ArtifactStore", "Blob", "MetadataStore", "mask_url"]

_HOME = {
    "ArtifactStore": "_artifacts",
    "Blob": "_artifacts",
    "MetadataStore": "_metadata",
    "mask_url": "_metadata",
}


def __getattr__(name: str) -> Any:
    return _lazy.load(__name__, _HOME, name)


def __dir__() -> list[str]:
    return sorted(__all__)
