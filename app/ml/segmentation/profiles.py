"""Segment profiles (sizes, R/F/M in real units, tastes) and their human-readable labels.

Labels
------
Each segment gets a human-readable label from its profile compared with the purchasers'
distribution (see ``_base_label``): "High-value loyal", "Lapsed bargain hunters",
"One-time buyers", ... Duplicate labels are told apart by top category, then by spend level.
"""

from __future__ import annotations

import math
from typing import Any, Literal, TypedDict

import numpy as np
import scipy.sparse as sp
from numpy.typing import NDArray

from app.ml.segmentation.clustering import NO_PURCHASE_SEGMENT, OUTLIER_SEGMENT
from app.ml.segmentation.features import CustomerAggregates, ItemCounts
from app.ml.segmentation.rfm import RFM_GROUPS
from app.ml.segmentation.value import CHURN_RISKS, ValuePrediction

__all__ = [
    "NO_PURCHASE_LABEL",
    "OUTLIER_LABEL",
    "CategoryShare",
    "ItemCount",
    "PredictedValueStats",
    "SegmentProfile",
    "Spread",
    "Stats",
    "group_totals",
    "json_float",
    "segment_profiles",
]

NO_PURCHASE_LABEL = "No purchase yet"
OUTLIER_LABEL = "Outliers (unusual behaviour)"


class Stats(TypedDict):
    """Mean and median of one feature over a segment; None where undefined (no purchase)."""

    mean: float | None
    median: float | None


class CategoryShare(TypedDict):
    """A category and its share of a segment's purchases."""

    category: str
    share: float


class ItemCount(TypedDict):
    """An item and how often a segment bought it."""

    item_id: str
    count: float


class Spread(TypedDict):
    """Mean and 10/50/90th percentiles of one predicted figure over a segment's customers."""

    mean: float
    p10: float
    median: float
    p90: float


class PredictedValueStats(TypedDict):
    """A segment's predicted value: how many customers have it, and its spread over them.

    A figure is None where the model did not publish it (see the model's ``reason``).
    """

    customers: int
    horizon_days: float
    p_alive: Spread | None
    expected_orders: Spread | None
    expected_spend: Spread | None


class _ProfileFigures(TypedDict):
    """The fields every profile has (``SegmentProfile`` adds the optional ``top_items``)."""

    segment_id: int
    label: str
    reserved: bool
    size: int
    share: float
    recency_days: Stats
    frequency: Stats
    monetary: Stats
    avg_order_value: Stats
    tenure_days: Stats
    lines_per_order: Stats
    line_value: Stats
    single_order_share: float | None
    views_per_customer: float
    rfm_groups: dict[str, float]
    top_categories: list[CategoryShare]


# A base with total=False rather than NotRequired: under postponed annotations the runtime
# __required_keys__ (which pydantic and the schema tests read) misses NotRequired.
class SegmentProfile(_ProfileFigures, total=False):
    """One segment described in real units: the JSON-able value saved in the state.

    ``reserved`` marks the segments below zero (no purchase yet, outliers); R/F/M and order
    figures are ``Stats`` in days, orders and money; ``rfm_groups`` maps the (at most three)
    commonest RFM groups to their share; ``top_items`` is absent when fitted without item counts.
    ``rfm_group_counts`` counts every RFM group's customers; ``churn_risk`` counts the
    high/medium/low churn-risk groups; ``predicted_value`` spreads P(alive), expected orders and
    spend (None in a segment without predictions). The three are absent from profiles saved
    before they existed.
    """

    top_items: list[ItemCount]
    rfm_group_counts: dict[str, int]
    churn_risk: dict[str, int]
    predicted_value: PredictedValueStats | None


_StatsName = Literal["recency_days", "frequency", "monetary", "tenure_days", "line_value"]


def json_float(x: float | np.floating) -> float | None:
    """``x`` as a float, None where JSON has no number for it (NaN, infinity)."""
    value = float(x)
    return None if math.isnan(value) or math.isinf(value) else value


def _stats(x: NDArray[np.float64]) -> Stats:
    if x.size == 0:
        return {"mean": None, "median": None}
    return {"mean": json_float(np.mean(x)), "median": json_float(np.median(x))}


def segment_profiles(
    labels: NDArray[np.int64],
    base: dict[str, NDArray[Any]],
    agg: CustomerAggregates,
    group_idx: NDArray[np.int8],
    top_items: ItemCounts | None,
    value: ValuePrediction,
    n_top: int = 5,
) -> list[SegmentProfile]:
    """Profiles (sizes, R/F/M in real units, tastes) and unique labels of every segment."""
    n = labels.shape[0]
    bought = base["bought"]
    pop = {
        name: base[name][bought]
        for name in ("recency_days", "frequency", "monetary", "tenure_days", "line_value")
    }
    cat_counts = sp.csr_matrix(agg.category_counts, dtype=np.float64)
    seg_ids = sorted(np.unique(labels).tolist(), key=lambda s: (s < 0, s))
    profiles = []
    for sid in seg_ids:
        rows = np.flatnonzero(labels == sid)
        prof = _profile(int(sid), rows, n, base, agg, group_idx)
        prof["top_categories"] = _top_categories(rows, agg.categories, cat_counts, n_top)
        _add_dimensions(prof, rows, group_idx, value)
        if top_items is not None:
            prof["top_items"] = _top_items(rows, top_items, n_top)
        profiles.append(prof)
    _label_profiles(profiles, pop)
    return profiles


def _profile(
    sid: int,
    rows: NDArray[np.int64],
    n: int,
    base: dict[str, NDArray[Any]],
    agg: CustomerAggregates,
    group_idx: NDArray[np.int8],
) -> SegmentProfile:
    """The profile of segment ``sid`` (customers ``rows`` of ``n``); label and tastes empty."""
    bought = sid != NO_PURCHASE_SEGMENT

    def stats(name: str) -> Stats:
        # A customer without a purchase has a tenure but no R/F/M or order figures.
        defined = bought or name == "tenure_days"
        return _stats(base[name][rows] if defined else np.zeros(0))

    groups = group_idx[rows]
    counts = np.bincount(groups[groups >= 0], minlength=len(RFM_GROUPS))
    return {
        "segment_id": sid,
        "label": "",
        "reserved": sid < 0,
        "size": int(rows.shape[0]),
        "share": rows.shape[0] / n,
        "recency_days": stats("recency_days"),
        "frequency": stats("frequency"),
        "monetary": stats("monetary"),
        "avg_order_value": stats("avg_order_value"),
        "tenure_days": stats("tenure_days"),
        "lines_per_order": stats("lines_per_order"),
        "line_value": stats("line_value"),
        "single_order_share": float(np.mean(base["frequency"][rows] <= 1)) if bought else None,
        "views_per_customer": float(np.mean(agg.views[rows])),
        "rfm_groups": {
            RFM_GROUPS[g]: float(counts[g] / rows.shape[0])
            for g in np.argsort(-counts, kind="stable")[:3]
            if counts[g] > 0
        },
        "top_categories": [],
    }


def group_totals(profiles: list[SegmentProfile]) -> dict[str, dict[str, int]] | None:
    """Customers in every RFM group and churn-risk group over ``profiles``; None if unknown.

    None for profiles saved before the counts existed.
    """
    if not profiles or any("rfm_group_counts" not in p for p in profiles):
        return None
    return {
        "rfm_groups": {g: sum(p["rfm_group_counts"][g] for p in profiles) for g in RFM_GROUPS},
        "churn_risk": {r: sum(p["churn_risk"][r] for p in profiles) for r in CHURN_RISKS},
    }


def _spread(x: NDArray[np.float64]) -> Spread | None:
    """Mean and percentiles of the finite values of ``x``; None when there are none."""
    x = x[np.isfinite(x)]
    if x.size == 0:
        return None
    p10, median, p90 = np.percentile(x, [10, 50, 90]).tolist()
    return {"mean": float(np.mean(x)), "p10": p10, "median": median, "p90": p90}


def _add_dimensions(
    prof: SegmentProfile,
    rows: NDArray[np.int64],
    group_idx: NDArray[np.int8],
    value: ValuePrediction,
) -> None:
    """Set the segment's RFM group and churn-risk counts and its predicted value, in place."""
    groups = group_idx[rows]
    counts = np.bincount(groups[groups >= 0], minlength=len(RFM_GROUPS))
    prof["rfm_group_counts"] = {name: int(c) for name, c in zip(RFM_GROUPS, counts, strict=True)}
    risks = value.churn_risk[rows]
    prof["churn_risk"] = {risk: int(np.sum(risks == risk)) for risk in CHURN_RISKS}
    published = np.isfinite(value.p_alive[rows])
    prof["predicted_value"] = (
        {
            "customers": int(published.sum()),
            "horizon_days": value.horizon_days,
            "p_alive": _spread(value.p_alive[rows]),
            "expected_orders": _spread(value.expected_orders[rows]),
            "expected_spend": _spread(value.expected_spend[rows]),
        }
        if published.any()
        else None
    )


def _top_categories(
    rows: NDArray[np.int64], categories: list[str], cat_counts: sp.csr_matrix, n_top: int
) -> list[CategoryShare]:
    """The ``n_top`` categories of customers ``rows`` by their share of purchases."""
    cat_sum = np.asarray(cat_counts[rows].sum(axis=0)).ravel()
    total = cat_sum.sum()
    return [
        {"category": categories[j], "share": float(cat_sum[j] / total)}
        for j in np.argsort(-cat_sum, kind="stable")[:n_top]
        if cat_sum[j] > 0
    ]


def _top_items(rows: NDArray[np.int64], top_items: ItemCounts, n_top: int) -> list[ItemCount]:
    """The ``n_top`` items customers ``rows`` bought most, with their counts."""
    item_sum = np.asarray(top_items.matrix[rows].sum(axis=0)).ravel()
    return [
        {"item_id": top_items.item_ids[j], "count": float(item_sum[j])}
        for j in np.argsort(-item_sum, kind="stable")[:n_top]
        if item_sum[j] > 0
    ]


def _median(p: SegmentProfile, name: _StatsName) -> float:
    """The median of feature ``name`` in a purchasers' segment, where it is always defined."""
    median = p[name]["median"]
    if median is None:
        raise ValueError(f"segment {p['segment_id']} has no median {name}")
    return median


def _base_label(p: SegmentProfile, q: dict[str, NDArray[np.float64]]) -> str:
    """A label from a profile's medians against the purchasers' quantiles ``q``.

    ``q[name]`` holds the 20/25/40/50/75 % quantiles of a feature over purchasers.
    """
    rec, freq, mon, ten, line = (
        _median(p, name)
        for name in ("recency_days", "frequency", "monetary", "tenure_days", "line_value")
    )
    recent = rec <= q["recency_days"][2]
    # Twice the typical gap and in the older half: a quantile edge alone flips on a hair.
    lapsed = rec >= max(2.0 * q["recency_days"][3], q["recency_days"][3] + 30.0)
    one_time = (p["single_order_share"] or 0.0) >= 0.6
    high_value = mon >= q["monetary"][4]
    frequent = freq >= max(q["frequency"][4], 2)
    cheap = line <= q["line_value"][1]
    premium = line >= q["line_value"][4]
    if ten <= q["tenure_days"][0] and recent and not frequent:
        return "New customers"
    if one_time:
        return (
            "Lapsed one-time buyers"
            if lapsed
            else "Recent one-time buyers"
            if recent
            else "One-time buyers"
        )
    if high_value and frequent and not lapsed:
        return "High-value loyal"
    if high_value and lapsed:
        return "Lapsed high-value customers"
    if lapsed:
        return "Lapsed bargain hunters" if cheap else "Lapsed customers"
    if cheap and (frequent or recent):
        return "Bargain hunters"
    if frequent:
        return "Loyal regulars"
    if high_value:
        return "Big spenders"
    if premium:
        return "Premium occasional buyers"
    return "Active occasional buyers" if recent else "Occasional buyers"


def _label_profiles(profiles: list[SegmentProfile], pop: dict[str, NDArray[np.float64]]) -> None:
    """Set a unique human-readable ``label`` on every profile, in place."""
    q = {
        name: np.quantile(v, [0.2, 0.25, 0.4, 0.5, 0.75]) if v.size else np.zeros(5)
        for name, v in pop.items()
    }
    n_buyers = sum(p["size"] for p in profiles if p["segment_id"] != NO_PURCHASE_SEGMENT)
    for p in profiles:
        if p["segment_id"] == NO_PURCHASE_SEGMENT:
            p["label"] = NO_PURCHASE_LABEL
        elif p["segment_id"] == OUTLIER_SEGMENT:
            p["label"] = OUTLIER_LABEL
        elif p["size"] >= 0.5 * n_buyers:
            # A segment holding most buyers (DBSCAN's one dense blob) is not a niche: say so.
            p["label"] = "Mainstream customers"
        else:
            p["label"] = _base_label(p, q)
    by_label: dict[str, list[SegmentProfile]] = {}
    for p in profiles:
        by_label.setdefault(p["label"], []).append(p)
    for label, dups in by_label.items():
        if len(dups) < 2:
            continue
        tops = [p["top_categories"][0]["category"] if p["top_categories"] else "" for p in dups]
        if all(tops) and len(set(tops)) == len(tops):
            for p, top in zip(dups, tops, strict=True):
                p["label"] = f"{label} ({top})"
            continue
        ranked = sorted(dups, key=lambda p: -(p["monetary"]["median"] or 0.0))
        tiers = (
            ["higher spend", "lower spend"]
            if len(ranked) == 2
            else ["top spend", *(f"spend tier {i}" for i in range(2, len(ranked))), "low spend"]
        )
        for p, tier in zip(ranked, tiers, strict=True):
            p["label"] = f"{label} ({tier})"
    seen: dict[str, int] = {}
    for p in profiles:
        count = seen.get(p["label"], 0) + 1
        seen[p["label"]] = count
        if count > 1:
            p["label"] = f"{p['label']} #{count}"
