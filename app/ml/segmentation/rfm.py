"""RFM: recency, frequency and monetary scores by stored quintile edges, and the RFM groups.

R, F and M scores are 1..5 by quintile edges learnt at fit time and stored, so live scoring
uses the training population's edges. A value scores ``1 + (number of edges strictly below
it)`` (F and M) and R is ``5 - (number of edges strictly below the recency in days)``, so ties
(many customers with one order) get the same, lowest consistent score. Customers without a
purchase score 0 and get the group "No purchase yet".

The group comes from R and ``FM = ceil((F + M) / 2)``:

=====  ====================  ====================  ====================  ===============  ===============
R      FM = 1                FM = 2                FM = 3                FM = 4           FM = 5
=====  ====================  ====================  ====================  ===============  ===============
5      New                   Potential loyalists   Potential loyalists   Champions        Champions
4      Promising             Potential loyalists   Potential loyalists   Loyal            Champions
3      Need attention        Need attention        Need attention        Loyal            Loyal
2      Hibernating           Hibernating           At risk               At risk          Can't lose them
1      Lost                  Lost                  At risk               At risk          Can't lose them
=====  ====================  ====================  ====================  ===============  ===============
"""

from __future__ import annotations

import numpy as np
from numpy.typing import ArrayLike, NDArray

__all__ = [
    "NO_PURCHASE_GROUP",
    "RFM_GROUPS",
    "rfm_edges",
    "rfm_group",
    "rfm_group_index",
    "rfm_group_names",
    "rfm_scores",
]

NO_PURCHASE_GROUP = "No purchase yet"

RFM_GROUPS: tuple[str, ...] = (
    "Champions",
    "Loyal",
    "Potential loyalists",
    "New",
    "Promising",
    "Need attention",
    "At risk",
    "Can't lose them",
    "Hibernating",
    "Lost",
)
_G = {name: i for i, name in enumerate(RFM_GROUPS)}
# Rows R = 1..5, columns FM = 1..5: the table in the module docstring.
# fmt: off
_RFM_TABLE = np.array([
    [_G["Lost"], _G["Lost"], _G["At risk"], _G["At risk"], _G["Can't lose them"]],
    [_G["Hibernating"], _G["Hibernating"], _G["At risk"], _G["At risk"], _G["Can't lose them"]],
    [_G["Need attention"], _G["Need attention"], _G["Need attention"], _G["Loyal"], _G["Loyal"]],
    [_G["Promising"], _G["Potential loyalists"], _G["Potential loyalists"], _G["Loyal"],
     _G["Champions"]],
    [_G["New"], _G["Potential loyalists"], _G["Potential loyalists"], _G["Champions"],
     _G["Champions"]],
], dtype=np.int8)
# fmt: on


def rfm_edges(
    recency_days: ArrayLike, frequency: ArrayLike, monetary: ArrayLike
) -> NDArray[np.float64]:
    """Quintile edges of recency, frequency and monetary over purchasers.

    Parameters
    ----------
    recency_days, frequency, monetary : array-like of shape (n,)
        NaN recency marks a customer without purchase (ignored).

    Returns
    -------
    ndarray of shape (3, 4)
        Rows recency, frequency, monetary; the 20/40/60/80% quantiles.
    """
    rec = np.asarray(recency_days, dtype=np.float64)
    ok = np.isfinite(rec)
    if not ok.any():
        raise ValueError("RFM edges need at least one customer with a purchase")
    q = [0.2, 0.4, 0.6, 0.8]
    return np.vstack(
        [
            np.quantile(rec[ok], q),
            np.quantile(np.asarray(frequency, dtype=np.float64)[ok], q),
            np.quantile(np.asarray(monetary, dtype=np.float64)[ok], q),
        ]
    )


def rfm_scores(
    recency_days: ArrayLike,
    frequency: ArrayLike,
    monetary: ArrayLike,
    edges: NDArray[np.float64],
) -> tuple[NDArray[np.int8], NDArray[np.int8], NDArray[np.int8]]:
    """Score recency, frequency and monetary 1..5 against stored quintile ``edges``.

    Parameters
    ----------
    recency_days, frequency, monetary : array-like of shape (n,)
        Recency NaN means no purchase: all three scores are 0.
    edges : ndarray of shape (3, 4)
        From :func:`rfm_edges`.

    Returns
    -------
    r, f, m : ndarray of shape (n,), int8
    """
    rec = np.atleast_1d(np.asarray(recency_days, dtype=np.float64))
    freq = np.atleast_1d(np.asarray(frequency, dtype=np.float64))
    mon = np.atleast_1d(np.asarray(monetary, dtype=np.float64))
    bought = np.isfinite(rec)
    # side="left" counts edges strictly below the value: ties take the lowest consistent score.
    r = 5 - np.searchsorted(edges[0], np.nan_to_num(rec), side="left")
    f = 1 + np.searchsorted(edges[1], freq, side="left")
    m = 1 + np.searchsorted(edges[2], mon, side="left")
    return tuple(np.where(bought, s, 0).astype(np.int8) for s in (r, f, m))  # type: ignore[return-value]


def rfm_group_index(r: ArrayLike, f: ArrayLike, m: ArrayLike) -> NDArray[np.int8]:
    """Index into ``RFM_GROUPS`` for each (r, f, m); -1 where a score is 0 (no purchase)."""
    r = np.asarray(r, dtype=np.int64)
    f = np.asarray(f, dtype=np.int64)
    m = np.asarray(m, dtype=np.int64)
    fm = (f + m + 1) // 2
    valid = (r >= 1) & (f >= 1) & (m >= 1)
    out = _RFM_TABLE[np.clip(r, 1, 5) - 1, np.clip(fm, 1, 5) - 1]
    return np.where(valid, out, -1).astype(np.int8)


def rfm_group(r: int, f: int, m: int) -> str:
    """Name of the RFM group of one customer's scores (see the table in the module docstring)."""
    if not all(1 <= s <= 5 for s in (r, f, m)):
        if r == f == m == 0:
            return NO_PURCHASE_GROUP
        raise ValueError(f"RFM scores must be 1..5 (or all 0), got {(r, f, m)}")
    return RFM_GROUPS[int(rfm_group_index(r, f, m))]


def rfm_group_names(idx: NDArray[np.int8]) -> NDArray[np.str_]:
    """Group names of :func:`rfm_group_index` output; ``NO_PURCHASE_GROUP`` where it is -1."""
    names = np.asarray((*RFM_GROUPS, NO_PURCHASE_GROUP))
    return names[np.where(idx < 0, len(RFM_GROUPS), idx)]
