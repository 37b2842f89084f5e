"""Segments: live assignment from the store with the active bundle, profiles, exports."""

from __future__ import annotations

import bisect
import csv
import io
import time
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any, cast

import numpy as np
import orjson
from fastapi.concurrency import run_in_threadpool
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.orm import Session

from app.config import Settings
from app.errors import ModelNotReady, NotFound, ServiceUnavailable
from app.events import user_record
from app.ml.segmentation import Algorithm, CustomerSegmentation, aggregate_events
from app.ml.segmentation.profiles import group_totals
from app.segments import repository
from app.segments.schemas import MembersOut, MembersQuery, SegmentsOut
from app.subscriptions.service import Assigned, Published
from app.training import repository as training_repository
from app.training.registry import LoadedBundle, ModelRegistry
from app.training.serving import Serving


def active_segmentation(registry: ModelRegistry) -> tuple[LoadedBundle, CustomerSegmentation]:
    """The active bundle and its segmentation, which it must hold (every answer starts here)."""
    bundle = registry.current
    if bundle is None:
        raise ModelNotReady("no trained segmentation yet: POST /retrain, then ask again")
    if bundle.segmentation is None:
        raise ModelNotReady(
            f"no segmentation in model version {bundle.version}: {bundle.segmentation_skipped}"
        )
    return bundle, bundle.segmentation


def aggregate_rows(
    seg: CustomerSegmentation,
    users: list[str],
    owners: Sequence[str],
    rows: Sequence[Any],
    wall: float,
) -> Any:
    """The segmentation's aggregates of ``users`` from the store's event rows.

    ``rows`` are (item id, type, value, order id, occurred at, item categories), as
    :func:`repository.user_events` reads them, and ``owners[i]`` is the customer of ``rows[i]``;
    the clock is the data's clock of training at ``wall``. The one reading of those rows, for
    ``/segment`` and for the customer map.
    """
    aggregates, _ = aggregate_events(
        user_ids=np.array(owners, dtype=object),
        item_ids=np.array([r[0] for r in rows], dtype=object),
        event_types=np.array([r[1] for r in rows], dtype=object),
        values=np.array([np.nan if r[2] is None else r[2] for r in rows], dtype=np.float64),
        occurred_at=np.array([r[4].timestamp() for r in rows], dtype=np.float64),
        order_ids=np.array([r[3] or "" for r in rows], dtype=object),
        item_categories={item_id: list(cats or []) for item_id, *_, cats in rows},
        users=users,
        now=seg.data_time(wall),
    )
    return aggregates


def _assign(
    bundle: LoadedBundle,
    seg: CustomerSegmentation,
    user_id: str,
    rows: list[Any],
    algorithm: Algorithm,
) -> dict[str, Any]:
    """One customer's segment and RFM from their events, on the data's clock of training."""
    wall = time.time()
    aggregates = aggregate_rows(seg, [user_id], [user_id] * len(rows), rows, wall)
    a = seg.assign(aggregates, algorithm=algorithm).to_dicts()[0]
    return {
        "user_id": user_id,
        "segment": {"id": a["segment_id"], "label": a["label"], "algorithm": a["algorithm"]},
        "rfm": {
            "recency_days": a["recency_days"],
            "frequency": a["frequency"],
            "monetary": a["monetary"],
            **a["rfm"],
        },
        "outlier": a["outlier"],
        "predicted_value": a["predicted_value"],
        "churn_risk": a["churn_risk"],
        "model_version": bundle.version,
        "computed_at": datetime.fromtimestamp(wall, UTC).isoformat(),
        "degraded": False,
    }


async def segment(user_id: str, serving: Serving) -> bytes:
    """The JSON answer of GET /segment/{user_id}, from the user's live behaviour."""
    registry, cache, settings = serving.registry, serving.cache, serving.settings
    bundle, seg = active_segmentation(registry)
    field = user_record.segment_field(bundle.version, settings.segment_algorithm)
    cached = await user_record.cached(cache, user_id, field)
    if cached is not None:
        return cached
    # Claimed before the store is read, so an answer from events dropped meanwhile is not cached.
    version, _ = await user_record.claim(cache, user_id, None, settings.cache_ttl_seconds)

    def read() -> list[Any] | None:
        with serving.factory() as session:
            if not repository.user_exists(session, user_id):
                return None
            return list(repository.user_events(session, user_id))

    try:
        rows = await run_in_threadpool(read)
    except SQLAlchemyError:
        return _from_training(bundle, seg, registry, user_id)
    if rows is None:
        raise NotFound(f"user {user_id!r} does not exist")
    body = orjson.dumps(_assign(bundle, seg, user_id, rows, settings.segment_algorithm))
    await user_record.store(cache, user_id, version, {field: body})
    return body


def _from_training(
    bundle: LoadedBundle, seg: CustomerSegmentation, registry: ModelRegistry, user_id: str
) -> bytes:
    """The segment assigned at training time, for when the store cannot be read."""
    segment_id = bundle.user_segment.get(user_id)
    if segment_id is None or user_id in registry.deleted_users:
        raise ServiceUnavailable(
            "the store is unavailable and this customer's segment is not cached; retry later"
        )
    # The manifest's name of the membership algorithm: profiles() refuses any other.
    profiles_ = seg.profiles(cast(Algorithm, bundle.member_algorithm))
    labels = {p["segment_id"]: p["label"] for p in profiles_}
    return orjson.dumps(
        {
            "user_id": user_id,
            "segment": {
                "id": segment_id,
                "label": labels.get(segment_id, str(segment_id)),
                "algorithm": bundle.member_algorithm,
            },
            "rfm": None,
            "outlier": False,
            "predicted_value": None,
            "churn_risk": None,
            "model_version": bundle.version,
            "computed_at": bundle.manifest.get("created_at"),
            "degraded": True,
        }
    )


def profiles(serving: Serving) -> SegmentsOut:
    """Profiles, sizes and quality figures of the active segmentation."""
    bundle, seg = active_segmentation(serving.registry)
    algorithm = serving.settings.segment_algorithm
    other: Algorithm = "dbscan" if algorithm == "kmeans" else "kmeans"
    segments = seg.profiles(algorithm)
    return SegmentsOut.model_validate(
        {
            "model_version": bundle.version,
            "algorithm": algorithm,
            "quality": seg.quality_,
            "segments": segments,
            "other_algorithm": {"algorithm": other, "segments": seg.profiles(other)},
            "groups": group_totals(segments),
        }
    )


def _everyone_in(registry: ModelRegistry, segment_id: int) -> tuple[LoadedBundle, list[str]]:
    """The active bundle and a segment's members in user-id order, erased ones included."""
    bundle, seg = active_segmentation(registry)
    known = {int(p["segment_id"]) for p in seg.profiles()} | set(
        np.unique(bundle.member_segments).tolist()
    )
    if segment_id not in known:
        raise NotFound(f"segment {segment_id} does not exist in model version {bundle.version}")
    return bundle, bundle.members_of(segment_id)


def members_of(serving: Serving, segment_id: int) -> list[str]:
    """Every member of a segment (as assigned at the last retrain), in user-id order."""
    _, everyone = _everyone_in(serving.registry, segment_id)
    deleted = serving.registry.deleted_users
    return [user_id for user_id in everyone if user_id not in deleted]


#: Members a filtered page examines at most: a rare group in a large segment is answered in
#: short pages, each with a cursor, rather than by one request that reads the whole segment.
FILTER_SCAN = 1000


async def answer_of(serving: Serving, user_id: str) -> dict[str, Any] | None:
    """The customer's GET /segment answer as a dict (None: erased meanwhile)."""
    try:
        return dict(orjson.loads(await segment(user_id, serving)))
    except NotFound:
        return None


def matches(answer: dict[str, Any], wanted: dict[str, str]) -> bool:
    """Whether a GET /segment answer has the wanted ``rfm_group`` and ``churn_risk``.

    A degraded answer (the store down) has neither, so it matches no filter.
    """
    has = {"rfm_group": (answer.get("rfm") or {}).get("group"), "churn_risk": answer["churn_risk"]}
    return all(has[name] == value for name, value in wanted.items())


async def members(serving: Serving, segment_id: int, q: MembersQuery) -> MembersOut:
    """One page of a segment's members in user-id order; the cursor is the last id examined.

    With ``q.rfm_group`` or ``q.churn_risk``, a member is on the page when their GET /segment
    answer says so, and at most :data:`FILTER_SCAN` members are examined per page.
    """
    registry, wanted = serving.registry, q.wanted()
    bundle, everyone = _everyone_in(registry, segment_id)
    start = bisect.bisect_right(everyone, q.cursor) if q.cursor else 0
    page: list[str] = []
    position = start
    while position < len(everyone) and len(page) < q.limit:
        if wanted and position - start >= FILTER_SCAN:
            break
        user_id = everyone[position]
        position += 1
        if user_id in registry.deleted_users:
            continue
        if wanted:
            answer = await answer_of(serving, user_id)
            if answer is None or not matches(answer, wanted):
                continue
        page.append(user_id)
    next_cursor = everyone[position - 1] if start < position < len(everyone) else None
    return MembersOut(
        segment_id=segment_id, model_version=bundle.version, users=page, next_cursor=next_cursor
    )


def members_csv(page: MembersOut) -> str:
    """A page of members as CSV for email and ad tools."""
    out = io.StringIO()
    writer = csv.writer(out)
    writer.writerow(["user_id", "segment_id", "model_version"])
    for user_id in page.users:
        writer.writerow([user_id, page.segment_id, page.model_version])
    return out.getvalue()


def live_states(
    registry: ModelRegistry, settings: Settings, session: Session, user_ids: list[str]
) -> tuple[int, dict[str, Assigned]] | None:
    """Customers' segment, RFM group and churn risk as GET /segment assigns them now, for
    outbound webhooks. None while this worker does not serve the active version yet (ask
    again later); nobody when there is nothing to assign with (the first retrain publishes
    everyone) or the active version has no segmentation."""
    active = training_repository.active_version(session)
    if active is None:
        return 0, {}
    bundle = registry.current
    if bundle is None or bundle.version != active.version:
        return None
    if bundle.segmentation is None:
        return bundle.version, {}
    assigned: dict[str, Assigned] = {}
    for user_id in user_ids:
        if not repository.user_exists(session, user_id):
            continue  # erased meanwhile
        rows = list(repository.user_events(session, user_id))
        a = _assign(bundle, bundle.segmentation, user_id, rows, settings.segment_algorithm)
        state = Published(
            segment_id=a["segment"]["id"],
            segment_label=a["segment"]["label"],
            rfm_group=a["rfm"]["group"] or None,
            churn_risk=a["churn_risk"],
        )
        p_alive = a["predicted_value"]["p_alive"]
        assigned[user_id] = (state, None if p_alive is None else round(p_alive, 6))
    return bundle.version, assigned
