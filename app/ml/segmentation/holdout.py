"""How well the predicted value forecasts orders: a calibration/holdout split in time.

The last ``horizon_days`` of the data are held out. :class:`CustomerValue` is fitted on the
events before that cutoff, with the cutoff as the data's clock, through the same
:func:`aggregate_events` and :func:`value_inputs` as training and serving; each customer who
had purchased before the cutoff then has a predicted number of orders in the holdout, compared
with the orders they actually placed there. Reported: mean absolute error overall and by
calibration repeat orders (0, 1, 2-3, 4-7, 8+), beside a naive forecast (the customer's repeat
orders so far per day of age, times the horizon) on the same customers.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from numpy.typing import ArrayLike, NDArray

from app.ml.interactions import SECONDS_PER_DAY
from app.ml.segmentation.features import aggregate_events
from app.ml.segmentation.value import HORIZON_DAYS, CustomerValue, value_inputs

__all__ = ["FREQUENCY_BUCKETS", "value_holdout"]

#: Buckets of calibration repeat orders: (name, lowest, highest) inclusive.
FREQUENCY_BUCKETS: tuple[tuple[str, float, float], ...] = (
    ("0", 0, 0),
    ("1", 1, 1),
    ("2-3", 2, 3),
    ("4-7", 4, 7),
    ("8+", 8, np.inf),
)


def value_holdout(
    *,
    user_ids: ArrayLike,
    event_types: ArrayLike,
    values: ArrayLike,
    occurred_at: ArrayLike,
    order_ids: ArrayLike | None = None,
    horizon_days: float = HORIZON_DAYS,
) -> dict[str, Any]:
    """Fit on the events before the last ``horizon_days``, score the orders placed in them.

    Parameters
    ----------
    user_ids, event_types, values, occurred_at, order_ids : array-like, shape (n_events,)
        As for :func:`aggregate_events`.

    Returns
    -------
    dict
        ``measured`` (False with a ``reason`` when the calibration data cannot support a fit),
        ``cutoff`` (epoch seconds), ``customers``, ``mae``, ``baseline_mae``, the mean
        predicted and actual orders, and the same figures per frequency bucket.
    """
    users = np.asarray(user_ids).astype(str)
    t = np.asarray(occurred_at, dtype=np.float64)
    end = float(t.max(initial=0.0))
    cutoff = end - horizon_days * SECONDS_PER_DAY
    before = t < cutoff
    columns = {
        "item_ids": np.zeros(users.shape[0], dtype=np.int64),  # items play no part here
        "event_types": np.asarray(event_types),
        "values": np.asarray(values, dtype=np.float64),
        "occurred_at": t,
        "order_ids": None if order_ids is None else np.asarray(order_ids),
    }

    def part(mask: NDArray[np.bool_]) -> dict[str, Any]:
        return {k: None if v is None else v[mask] for k, v in columns.items()}

    calibration, _ = aggregate_events(user_ids=users[before], **part(before), now=cutoff)
    inputs = value_inputs(calibration)
    model = CustomerValue(horizon_days=horizon_days).fit(inputs)
    report: dict[str, Any] = {"cutoff": cutoff, "horizon_days": horizon_days}
    if model.unpublished_ is not None:
        return {**report, "measured": False, "reason": model.unpublished_}
    after = ~before
    holdout, _ = aggregate_events(
        user_ids=users[after], **part(after), users=calibration.user_ids, now=end
    )
    b = inputs.bought
    predicted = model.predict(inputs).expected_orders[b]
    actual = holdout.orders[b]
    naive = inputs.x[b] / np.maximum(inputs.T[b], 1.0) * horizon_days
    buckets = {
        name: _errors(predicted[sel], actual[sel], naive[sel])
        for name, lo, hi in FREQUENCY_BUCKETS
        if (sel := (inputs.x[b] >= lo) & (inputs.x[b] <= hi)).any()
    }
    return {
        **report,
        "measured": True,
        **_errors(predicted, actual, naive),
        "by_frequency": buckets,
    }


def _errors(
    predicted: NDArray[np.float64], actual: NDArray[np.float64], naive: NDArray[np.float64]
) -> dict[str, Any]:
    """MAE of the model and the naive forecast, and the mean predicted and actual orders."""
    return {
        "customers": int(predicted.shape[0]),
        "mae": float(np.mean(np.abs(predicted - actual))),
        "baseline_mae": float(np.mean(np.abs(naive - actual))),
        "mean_predicted": float(np.mean(predicted)),
        "mean_actual": float(np.mean(actual)),
    }
