"""The customer map: a sample of customers, assigned as GET /segment assigns them, placed on
the principal plane of the features their segments are computed from."""

from __future__ import annotations

import time
from typing import Any

import numpy as np
from fastapi.concurrency import run_in_threadpool

from app.ml.segmentation import Algorithm, CustomerSegmentation
from app.ml.segmentation.projection import principal_plane
from app.segments import repository
from app.segments.schemas import MapOut, MapQuery
from app.segments.service import active_segmentation, aggregate_rows
from app.training.registry import LoadedBundle
from app.training.serving import Serving


async def customer_map(serving: Serving, q: MapQuery) -> MapOut:
    """The answer of GET /segments/map, computed off the event loop."""
    bundle, seg = active_segmentation(serving.registry)
    algorithm = q.algorithm or serving.settings.segment_algorithm
    deleted = serving.registry.deleted_users
    everyone = [user_id for user_id in bundle.member_ids if user_id not in deleted]
    sample = everyone
    if len(everyone) > q.limit:
        # Seeded by the version: the same model always shows the same customers.
        rng = np.random.default_rng(bundle.version)
        sample = [everyone[i] for i in np.sort(rng.choice(len(everyone), q.limit, replace=False))]

    def read() -> list[Any]:
        with serving.factory() as session:
            return repository.users_events(session, sample)

    rows = await run_in_threadpool(read)
    return await run_in_threadpool(_place, bundle, seg, algorithm, len(everyone), sample, rows)


def _place(
    bundle: LoadedBundle,
    seg: CustomerSegmentation,
    algorithm: Algorithm,
    customers: int,
    sample: list[str],
    rows: list[Any],
) -> MapOut:
    """Assign the sample from its events and project the purchasers' features to 2-D."""
    owners = [r[0] for r in rows]
    aggregates = aggregate_rows(seg, sample, owners, [r[1:] for r in rows], time.time())
    assigned = seg.assign(aggregates, algorithm=algorithm).to_dicts()
    buyers, features = seg.features(aggregates)
    xy, explained = principal_plane(features)
    grid = [[0] * 5 for _ in range(5)]
    points = []
    for (x, y), i in zip(xy.tolist(), buyers.tolist(), strict=True):
        a = assigned[i]
        r, f, m = a["rfm"]["r"], a["rfm"]["f"], a["rfm"]["m"]
        grid[r - 1][(f + m + 1) // 2 - 1] += 1
        points.append(
            {
                "user_id": a["user_id"],
                "x": round(x, 4),
                "y": round(y, 4),
                "segment_id": a["segment_id"],
                "recency_days": a["recency_days"],
                "frequency": a["frequency"],
                "monetary": a["monetary"],
                **a["rfm"],
            }
        )
    labels = {p["segment_id"]: p["label"] for p in seg.profiles(algorithm)}
    counts: dict[int, int] = {}
    for a in assigned:
        counts[a["segment_id"]] = counts.get(a["segment_id"], 0) + 1
        labels.setdefault(a["segment_id"], a["label"])
    return MapOut.model_validate(
        {
            "model_version": bundle.version,
            "algorithm": algorithm,
            "customers": customers,
            "sampled": len(sample),
            "no_purchase": len(sample) - len(buyers),
            "explained_variance": [round(float(v), 4) for v in explained],
            "segments": [
                {"segment_id": s, "label": labels[s], "count": c} for s, c in sorted(counts.items())
            ],
            "rfm_grid": grid,
            "points": points,
        }
    )
