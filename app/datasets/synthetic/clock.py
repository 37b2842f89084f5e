"""When events happen: a weekly and a daily cycle (evenings and weekends are busiest)."""

from __future__ import annotations

from datetime import UTC, datetime

import numpy as np
from numpy.typing import NDArray

DAY = 86_400.0  # seconds

# Monday .. Sunday and hour-of-day activity (evenings and weekends are busiest).
_WEEKDAY_W = np.array([0.92, 0.95, 0.97, 1.0, 1.04, 1.12, 1.2])
_HOUR_W = np.array(
    [
        0.2,
        0.12,
        0.08,
        0.06,
        0.06,
        0.1,
        0.25,
        0.5,
        0.8,
        0.95,
        1.0,
        1.05,
        1.15,
        1.1,
        1.0,
        0.95,
        0.95,
        1.05,
        1.25,
        1.45,
        1.5,
        1.3,
        0.9,
        0.45,
    ]
)


def sample_times(
    rng: np.random.Generator,
    lo: NDArray[np.float64],
    hi: NDArray[np.float64],
    t0: float,
    span: float,
) -> NDArray[np.float64]:
    """Times in ``[lo, hi]`` (seconds from start) following the weekly and daily cycle."""
    lo = np.clip(lo, 0.0, span - 1.0)
    hi = np.clip(np.maximum(hi, lo), 0.0, span - 1.0)
    day_lo = np.floor(lo / DAY)
    n_days = np.floor(hi / DAY) - day_lo + 1
    weekday0 = datetime.fromtimestamp(t0, tz=UTC).weekday()
    day = np.empty_like(lo)
    todo = np.arange(lo.shape[0])
    accept_p = _WEEKDAY_W / _WEEKDAY_W.max()
    while todo.size:
        d = day_lo[todo] + np.floor(rng.random(todo.size) * n_days[todo])
        ok = rng.random(todo.size) < accept_p[(weekday0 + d.astype(np.int64)) % 7]
        day[todo[ok]] = d[ok]
        todo = todo[~ok]
    hour_cdf = np.cumsum(_HOUR_W) / _HOUR_W.sum()
    hour = np.minimum(np.searchsorted(hour_cdf, rng.random(lo.shape[0]), side="right"), 23)
    t = day * DAY + (hour + rng.random(lo.shape[0])) * 3600.0
    return np.clip(t, lo, hi)
