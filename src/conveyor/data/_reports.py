"""Profiles and diffs of stored versions: the service side of ``conveyor data profile`` and ``conveyor data diff``.

A version's profile is the one stored with it at ingestion; versions without one (made before profiles existed)
are profiled from their Parquet files on demand, each file verified against its digest on the way.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

from conveyor.data._assets import DataVersion
from conveyor.data._profile import compute_profile, diff_profiles, shared_histograms

if TYPE_CHECKING:
    from conveyor.data._assets import DataAssets
    from conveyor.refs import Ref

__all__ = ["diff_versions", "profile_of", "version_files"]


@contextlib.contextmanager
def version_files(data: DataAssets, version: DataVersion) -> Iterator[list[Path]]:
    """Verified local paths of a version's Parquet files (temporary copies, when the store is remote)."""
    with contextlib.ExitStack() as stack:
        yield [stack.enter_context(data._ws.artifacts.local_file(f["digest"])) for f in version.files]


def profile_of(data: DataAssets, ref: str | Ref | DataVersion) -> tuple[DataVersion, dict[str, Any]]:
    """The version ``ref`` names and its profile: the stored one, else computed from its files (not stored).

    Raises:
        NotFound: no such asset or version.
    """
    version = ref if isinstance(ref, DataVersion) else data.get(ref)
    if version.profile is not None:
        return version, dict(version.profile)
    with version_files(data, version) as paths:
        return version, compute_profile(paths)


def diff_versions(
    data: DataAssets, ref_a: str | Ref | DataVersion, ref_b: str | Ref | DataVersion, *, distributions: bool = True
) -> dict[str, Any]:
    """What changed from version ``ref_a`` to ``ref_b`` (see :func:`conveyor.data.diff_profiles`).

    ``distributions``: also compare the numeric columns' distributions (PSI, JS distance) on shared histogram
    edges, which reads those columns of both versions once; otherwise only when the stored histograms happen to
    share their edges.

    Raises:
        NotFound: no such asset or version.
    """
    version_a = ref_a if isinstance(ref_a, DataVersion) else data.get(ref_a)
    version_b = ref_b if isinstance(ref_b, DataVersion) else data.get(ref_b)
    if not distributions and version_a.profile is not None and version_b.profile is not None:
        return diff_profiles(version_a.ref, version_a.profile, version_b.ref, version_b.profile)
    with version_files(data, version_a) as paths_a, version_files(data, version_b) as paths_b:
        profile_a = version_a.profile if version_a.profile is not None else compute_profile(paths_a)
        profile_b = version_b.profile if version_b.profile is not None else compute_profile(paths_b)
        histograms = shared_histograms(paths_a, profile_a, paths_b, profile_b) if distributions else None
    return diff_profiles(version_a.ref, profile_a, version_b.ref, profile_b, histograms=histograms)
