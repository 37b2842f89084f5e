"""Segment profiles (sizes, R/F/M in real units, tastes) and their human-readable labels.

Labels
------
Each segment gets a human-readable label from its profile compared with the purchasers'
distribution (see ``_base_label``): "High-value loyal", "Lapsed bargain hunters",
"One-time buyers", ... Duplicate labels are told apart by top category, then by spend level.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import scipy.sparse as sp
from numpy.typing import NDArray

from app.ml.segmentation.clustering import NO_PURCHASE_SEGMENT, OUTLIER_SEGMENT
from app.ml.segmentation.features import CustomerAggregates, ItemCounts
from app.ml.segmentation.rfm import RFM_GROUPS

__all__ = ["NO_PURCHASE_LABEL", "OUTLIER_LABEL", "json_float", "segment_profiles"]

NO_PURCHASE_LABEL = "No purchase yet"
OUTLIER_LABEL = "Outliers (unusual behaviour)"


def json_float(x: float | np.floating) -> float | None:
    """``x`` as a float, None where JSON has no number for it (NaN, infinity)."""
    value = float(x)
    return None if math.isnan(value) or math.isinf(value) else value


def _stats(x: NDArray[np.float64]) -> dict[str, float | None]:
    if x.size == 0:
        return {"mean": None, "median": None}
    return {"mean": json_float(np.mean(x)), "median": json_float(np.median(x))}


def segment_profiles(
    labels: NDArray[np.int64],
    base: dict[str, NDArray[Any]],
    agg: CustomerAggregates,
    group_idx: NDArray[np.int8],
    top_items: ItemCounts | None,
    n_top: int = 5,
) -> list[dict[str, Any]]:
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
        prof: dict[str, Any] = {
            "segment_id": int(sid),
            "label": "",
            "reserved": sid < 0,
            "size": int(rows.shape[0]),
            "share": rows.shape[0] / n,
        }
        for name in (
            "recency_days",
            "frequency",
            "monetary",
            "avg_order_value",
            "tenure_days",
            "lines_per_order",
            "line_value",
        ):
            defined = sid != NO_PURCHASE_SEGMENT or name == "tenure_days"
            prof[name] = _stats(base[name][rows] if defined else np.zeros(0))
        prof["single_order_share"] = (
            float(np.mean(base["frequency"][rows] <= 1)) if sid != NO_PURCHASE_SEGMENT else None
        )
        prof["views_per_customer"] = float(np.mean(agg.views[rows]))
        groups = group_idx[rows]
        counts = np.bincount(groups[groups >= 0], minlength=len(RFM_GROUPS))
        prof["rfm_groups"] = {
            RFM_GROUPS[g]: float(counts[g] / rows.shape[0])
            for g in np.argsort(-counts, kind="stable")[:3]
            if counts[g] > 0
        }
        prof.update(_tastes(rows, agg.categories, cat_counts, top_items, n_top))
        profiles.append(prof)
    _label_profiles(profiles, pop)
    return profiles


def _tastes(
    rows: NDArray[np.int64],
    categories: list[str],
    cat_counts: sp.csr_matrix,
    top_items: ItemCounts | None,
    n_top: int,
) -> dict[str, list[dict[str, Any]]]:
    """The ``n_top`` categories (by share) and items (by count, if given) of customers ``rows``."""
    cat_sum = np.asarray(cat_counts[rows].sum(axis=0)).ravel()
    total = cat_sum.sum()
    tastes = {
        "top_categories": [
            {"category": categories[j], "share": float(cat_sum[j] / total)}
            for j in np.argsort(-cat_sum, kind="stable")[:n_top]
            if cat_sum[j] > 0
        ]
    }
    if top_items is not None:
        item_sum = np.asarray(top_items.matrix[rows].sum(axis=0)).ravel()
        tastes["top_items"] = [
            {"item_id": top_items.item_ids[j], "count": float(item_sum[j])}
            for j in np.argsort(-item_sum, kind="stable")[:n_top]
            if item_sum[j] > 0
        ]
    return tastes


def _base_label(p: dict[str, Any], q: dict[str, NDArray[np.float64]]) -> str:
    """A label from a profile's medians against the purchasers' quantiles ``q``.

    ``q[name]`` holds the 20/25/40/50/75 % quantiles of a feature over purchasers.
    """
    rec = p["recency_days"]["median"]
    freq = p["frequency"]["median"]
    mon = p["monetary"]["median"]
    ten = p["tenure_days"]["median"]
    line = p["line_value"]["median"]
    recent = rec <= q["recency_days"][2]
    # Twice the typical gap and in the older half: a quantile edge alone flips on a hair.
    lapsed = rec >= max(2.0 * q["recency_days"][3], q["recency_days"][3] + 30.0)
    one_time = p["single_order_share"] >= 0.6
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


def _label_profiles(profiles: list[dict[str, Any]], pop: dict[str, NDArray[np.float64]]) -> None:
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
    by_label: dict[str, list[dict[str, Any]]] = {}
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
