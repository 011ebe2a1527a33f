from __future__ import annotations

import pandas as pd
import pytest

from conveyor.quickstart import TARGET, make_churn_frame
from conveyor.registry import infer_signature
from conveyor.train import train_tabular


@pytest.fixture(scope="session")
def churn_training():  # type: ignore[no-untyped-def]
    frame = make_churn_frame(3000, seed=3)
    # As the lake returns it: dates as dates, not the CSV's text.
    frame["signup_date"] = pd.to_datetime(frame["signup_date"]).dt.date
    result = train_tabular(frame, TARGET, exclude=["customer_id"], seed=0, max_iter=30)
    signature = infer_signature(result.example, result.model.predict(result.example))
    records = frame.drop(columns=[TARGET, "customer_id"]).head(4)
    return result, signature, records
