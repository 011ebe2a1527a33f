from __future__ import annotations

from typing import Any

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


def deployment_spec(
    name: str, version: int, signature: dict[str, Any], traffic: int = 0, *, strict: bool = False, **batching: Any
) -> Any:
    """A deployment of model ``churn:VERSION`` as the serving processes see it (no workspace needed)."""
    from conveyor.serve._spec import Batching, DeploymentSpec

    return DeploymentSpec(
        name=name,
        model=f"churn:{version}",
        model_name="churn",
        model_version=version,
        model_version_id=f"id-{version}",
        format="joblib",
        digest="-",
        trusted_types=[],
        signature=signature,
        traffic=traffic,
        batching=Batching(**batching),
        strict=strict,
    )
