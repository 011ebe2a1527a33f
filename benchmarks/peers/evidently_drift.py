"""The peer of ``conveyor drift``: Evidently's DataDriftPreset over the same two Parquet files.

``python evidently_drift.py REFERENCE.parquet CURRENT.parquet``; prints one JSON line with the seconds taken
(reading the files included, as on Conveyor's side), the peak RSS and the number of metrics computed.
"""

from __future__ import annotations

import json
import resource
import sys
import time

import pandas as pd
from evidently import DataDefinition, Dataset, Report
from evidently.presets import DataDriftPreset

started = time.perf_counter()
reference = pd.read_parquet(sys.argv[1])
current = pd.read_parquet(sys.argv[2])
numeric = [c for c in reference.columns if pd.api.types.is_numeric_dtype(reference[c])]
categorical = [c for c in reference.columns if c not in numeric]
definition = DataDefinition(numerical_columns=numeric, categorical_columns=categorical)
snapshot = Report([DataDriftPreset()]).run(
    Dataset.from_pandas(current, data_definition=definition),
    Dataset.from_pandas(reference, data_definition=definition),
)
result = snapshot.dict()
seconds = time.perf_counter() - started
print(
    json.dumps(
        {
            "seconds": seconds,
            "peak_rss_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
            "metrics": len(result.get("metrics", [])),
        }
    )
)
