"""Data: assets and immutable versions in the workspace lake, ingestion from files.

Reached as ``ws.data``. Later: datastores, SQL and streaming sources, validation, profiles, SQL over assets.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from conveyor import _lazy

if TYPE_CHECKING:
    from conveyor.data._assets import Checkpoint, DataAsset, DataAssets, DataVersion, IngestResult
    from conveyor.data._formats import FORMATS
    from conveyor.data._profile import compute_profile, diff_profiles, render_profile_html
    from conveyor.data._reports import diff_versions, profile_of
    from conveyor.data._stores import Datastore, Datastores
    from conveyor.data._streaming import StreamIngester, StreamMessage, StreamSource, StreamStats
    from conveyor.data._trust import privileged_datastore_reason
    from conveyor.data._validation import RuleOutcome, Rules, apply_rules, load_rules, parse_rules

__all__ = [
    "FORMATS",
    "Checkpoint",
    "DataAsset",
    "DataAssets",
    "DataVersion",
    "Datastore",
    "Datastores",
    "IngestResult",
    "RuleOutcome",
    "Rules",
    "StreamIngester",
    "StreamMessage",
    "StreamSource",
    "StreamStats",
    "apply_rules",
    "compute_profile",
    "diff_profiles",
    "diff_versions",
    "load_rules",
    "parse_rules",
    "privileged_datastore_reason",
    "profile_of",
    "render_profile_html",
]

_HOME = {
    "Checkpoint": "_assets",
    "DataAsset": "_assets",
    "DataAssets": "_assets",
    "DataVersion": "_assets",
    "IngestResult": "_assets",
    "FORMATS": "_formats",
    "compute_profile": "_profile",
    "diff_profiles": "_profile",
    "render_profile_html": "_profile",
    "diff_versions": "_reports",
    "profile_of": "_reports",
    "Datastore": "_stores",
    "Datastores": "_stores",
    "StreamIngester": "_streaming",
    "StreamMessage": "_streaming",
    "StreamSource": "_streaming",
    "StreamStats": "_streaming",
    "privileged_datastore_reason": "_trust",
    "RuleOutcome": "_validation",
    "Rules": "_validation",
    "apply_rules": "_validation",
    "load_rules": "_validation",
    "parse_rules": "_validation",
}


def __getattr__(name: str) -> Any:
    return _lazy.load(__name__, _HOME, name)


def __dir__() -> list[str]:
    return sorted(__all__)
