"""A deterministic synthetic customer-churn data set with a realistic link between features and churn."""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import pandas as pd

__all__ = ["TARGET", "make_churn_frame"]

TARGET = "churned"
ID_COLUMN = "customer_id"
_REFERENCE_DATE = "2025-01-01"


def make_churn_frame(rows: int = 20_000, seed: int = 7, drift: float = 0.0) -> pd.DataFrame:
    """Customers of a subscription service and whether they churned (about one in five do).

    Numeric, categorical, boolean and date columns, some values missing; churn rises with month-to-month
    contracts, support calls, days since last login and price, and falls with tenure, satisfaction and
    autopay. The same ``rows``, ``seed`` and ``drift`` always give the same frame.

    ``drift`` (0–1) moves the world the way a price rise would: charges go up, a competitor makes customers
    far more sensitive to price and less to their tenure, so a model trained at ``drift=0`` misjudges who leaves.
    """
    import numpy as np
    import pandas as pd

    rng = np.random.default_rng(seed)
    reference = pd.Timestamp(_REFERENCE_DATE)
    signup_days = rng.integers(0, 6 * 365, size=rows)
    signup = reference - pd.to_timedelta(signup_days, unit="D")
    tenure = (signup_days // 30).astype("int64")

    plan = rng.choice(["basic", "standard", "premium"], size=rows, p=[0.5, 0.35, 0.15])
    contract = rng.choice(["month-to-month", "one-year", "two-year"], size=rows, p=[0.55, 0.28, 0.17])
    payment = rng.choice(["card", "bank_transfer", "paypal", "invoice"], size=rows, p=[0.4, 0.25, 0.2, 0.15])
    region = rng.choice(["north", "south", "east", "west", "central"], size=rows)
    base_price = pd.Series(plan).map({"basic": 19.0, "standard": 39.0, "premium": 69.0}).to_numpy()
    monthly = np.round(base_price * (1 + 0.35 * drift) + rng.normal(0, 6, size=rows).clip(-12, 25), 2)
    total = np.round(monthly * np.maximum(tenure, 1) * rng.normal(1.0, 0.03, size=rows), 2)
    support_calls = rng.poisson(1.2, size=rows) + (pd.Series(plan).eq("basic").to_numpy() * rng.poisson(0.6, size=rows))
    session_minutes = np.round(rng.gamma(2.0, 9.0, size=rows), 1)
    last_login = np.minimum(rng.exponential(9.0, size=rows).astype("int64"), 180)
    devices = rng.integers(1, 6, size=rows)
    autopay = rng.random(rows) < np.where(payment == "invoice", 0.1, 0.6)
    satisfaction = np.clip(np.round(rng.normal(3.6, 1.0, size=rows) - 0.35 * (support_calls - 1.2)), 1, 5)

    signal = (
        1.25 * (contract == "month-to-month")
        - 0.55 * (contract == "two-year")
        - 0.035 * np.minimum(tenure, 60)
        + 0.33 * support_calls
        - 0.45 * (satisfaction - 3.5)
        + 0.045 * last_login
        - 0.55 * autopay
        + 0.018 * (monthly - 40)
        - 0.25 * (plan == "premium")
        + 0.2 * (region == "south")
        - 0.012 * session_minutes
        + drift * (0.09 * (monthly - 45) + 0.03 * np.minimum(tenure, 60) - 1.0 * (contract == "month-to-month"))
    )
    logit = -2.0 + 1.6 * signal + rng.normal(0, 0.35, size=rows)
    churned = rng.random(rows) < 1.0 / (1.0 + np.exp(-logit))

    frame = pd.DataFrame(
        {
            ID_COLUMN: [f"C{i:06d}" for i in range(1, rows + 1)],
            "signup_date": signup.strftime("%Y-%m-%d"),
            "tenure_months": tenure,
            "plan": plan,
            "contract": contract,
            "payment_method": payment,
            "region": region,
            "monthly_charges": monthly,
            "total_charges": total,
            "support_calls_90d": support_calls.astype("int64"),
            "avg_session_minutes": session_minutes,
            "days_since_last_login": last_login,
            "devices": devices.astype("int64"),
            "has_autopay": autopay,
            "satisfaction_score": satisfaction,
            TARGET: churned,
        }
    )
    # Missing values where real systems lose them: billing gaps, untracked sessions, unanswered surveys.
    frame.loc[rng.random(rows) < 0.02, "total_charges"] = np.nan
    frame.loc[rng.random(rows) < 0.05, "avg_session_minutes"] = np.nan
    frame.loc[rng.random(rows) < 0.08, "satisfaction_score"] = np.nan
    frame.loc[rng.random(rows) < 0.01, "payment_method"] = None
    return frame
