"""The peer of Conveyor's CSV ingestion: ``pandas.read_csv`` then ``DataFrame.to_parquet``.

``python pandas_ingest.py CSV OUT.parquet``; prints one JSON line with the rows and the seconds taken.
"""

from __future__ import annotations

import json
import sys
import time

import pandas as pd

started = time.perf_counter()
frame = pd.read_csv(sys.argv[1])
frame.to_parquet(sys.argv[2])
print(json.dumps({"rows": len(frame), "seconds": time.perf_counter() - started}))
