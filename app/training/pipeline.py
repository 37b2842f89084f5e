"""One training run: read the store, fit every model, write bundle vN+1, gate and activate."""

from __future__ import annotations

import platform
import shutil
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import scipy
import sklearn
from sqlalchemy.orm import Session, sessionmaker

from app.catalog import repository as catalog_repository
from app.config import Settings
from app.events import repository as events_repository
from app.ml.bundle import BundleError, read_manifest, write_component, write_manifest
from app.ml.interactions import Catalog, EventLog
from app.ml.recommender import RecommenderConfig, train_recommender
from app.ml.segmentation import (
    CustomerSegmentation,
    NotEnoughData,
    SegmentAssignment,
    aggregate_events,
)
from app.ml.segmentation.holdout import value_holdout
from app.subscriptions import service as subscriptions_service
from app.training import repository
from app.training.bundle_store import bundle_store, write_checksums
from app.training.engines import Engine, training_engine
from app.training.models import ModelVersion

Progress = Callable[[str], None]


@dataclass(frozen=True)
class TrainingData:
    """Every event as parallel arrays, plus the catalogue."""

    user_ids: np.ndarray
    item_ids: np.ndarray
    types: np.ndarray
    values: np.ndarray
    occurred_at: np.ndarray
    order_ids: np.ndarray
    catalog: Catalog
    last_event_id: int

    @property
    def event_log(self) -> EventLog:
        """The recommender's view of the events."""
        return EventLog(
            user_ids=self.user_ids,
            item_ids=self.item_ids,
            types=self.types,
            values=self.values,
            occurred_at=self.occurred_at,
            order_ids=self.order_ids,
        )


def _encoded(values: list[str]) -> np.ndarray:
    # Repeated ids share one str object each, so millions of events cost pointers, not strings.
    table: dict[str, str] = {}
    return np.array([table.setdefault(v, v) for v in values], dtype=object)


def load_training_data(session: Session) -> TrainingData:
    """Stream the event table in id order and read the catalogue."""
    users: list[str] = []
    items: list[str] = []
    types: list[str] = []
    values: list[float] = []
    times: list[float] = []
    orders: list[str] = []
    last_id = 0
    for batch in events_repository.stream_events(session):
        for event_id, user_id, item_id, type_, value, order_id, occurred_at in batch:
            users.append(user_id)
            items.append(item_id)
            types.append(type_)
            values.append(np.nan if value is None else value)
            orders.append(order_id or "")
            times.append(occurred_at.timestamp())
            last_id = event_id
    rows = catalog_repository.all_items(session)
    not_recommendable = set(catalog_repository.unavailable_ids(session))
    catalog = Catalog(
        item_ids=[r.id for r in rows],
        titles=[r.title or "" for r in rows],
        descriptions=[r.description or "" for r in rows],
        categories=[list(r.categories or []) for r in rows],
        available=np.array([r.id not in not_recommendable for r in rows], dtype=bool),
    )
    return TrainingData(
        user_ids=_encoded(users),
        item_ids=_encoded(items),
        types=_encoded(types),
        values=np.asarray(values, dtype=np.float64),
        occurred_at=np.asarray(times, dtype=np.float64),
        order_ids=_encoded(orders),
        catalog=catalog,
        last_event_id=last_id,
    )


@dataclass(frozen=True)
class BuiltBundle:
    """A bundle written to disk, not yet registered."""

    version: int
    path: Path
    metrics: dict[str, Any]
    timings: dict[str, float]
    #: Every customer's segment, RFM group and churn risk at training (outbound webhooks).
    assignment: SegmentAssignment | None = None
    #: Where replicas find it (model_version.path): the directory, or its object-store URL.
    location: str | None = None


def recommender_config(settings: Settings) -> RecommenderConfig:
    """The recommender's hyper-parameters: the settings' weights and budget, and what is pinned."""
    return RecommenderConfig.from_dict(
        {
            **settings.recommender,
            "event_weights": dict(settings.event_weights),
            "history_length": settings.history_length,
        }
    )


def served_ndcg(metrics: dict[str, Any] | None) -> float | None:
    """The served blend's NDCG@10 from an evaluation report."""
    try:
        return float(metrics["recommender"]["models"]["served"]["ndcg"])  # type: ignore[index]
    except (KeyError, TypeError, ValueError):
        return None


def same_protocol(a: dict[str, Any] | None, b: dict[str, Any] | None) -> bool:
    """Whether two evaluation reports were measured with the same protocol (comparable)."""

    def split(metrics: dict[str, Any] | None) -> Any:
        try:
            return metrics["recommender"]["protocol"]["split"]  # type: ignore[index]
        except (KeyError, TypeError):
            return None

    return split(a) is not None and split(a) == split(b)


def fit_bundle(
    data: TrainingData,
    settings: Settings,
    directory: Path,
    progress: Progress,
    assigned: list[SegmentAssignment] | None = None,
    engine: Engine | None = None,
) -> tuple[dict[str, Any], dict[str, float]]:
    """Fit segmentation and recommender on `data` with `engine` (default the settings') and
    write them under `directory`; the customers' assignment is appended to `assigned`."""
    timings: dict[str, float] = {}
    engine = engine or training_engine(settings)
    started = time.perf_counter()
    segmentation, assignment, skipped = _fit_segmentation(data, settings, progress, engine)
    user_segments: dict[str, int] | None = None
    if assignment is not None:
        user_segments = dict(zip(assignment.user_ids, assignment.segment_id.tolist(), strict=True))
        if assigned is not None:
            assigned.append(assignment)
    timings["segmentation_s"] = time.perf_counter() - started

    started = time.perf_counter()
    progress(f"recommender: fitting on {len(data.user_ids)} events")
    trained = train_recommender(
        data.event_log,
        data.catalog,
        recommender_config(settings),
        user_segments=user_segments,
        progress=progress,
        fitter=engine.fitter,
    )
    timings["recommender_s"] = time.perf_counter() - started

    started = time.perf_counter()
    trained.save(directory)  # writes directory/recommender/
    if segmentation is not None and assignment is not None:
        segmentation_metrics = _write_segmentation(directory, settings, segmentation, assignment)
        segmentation_metrics["predicted_value"] = _predicted_value_metrics(
            data, segmentation, progress
        )
    else:
        segmentation_metrics = {"algorithm": settings.segment_algorithm, "skipped": skipped}
    write_component(
        directory / "catalog",
        {},
        {"item_ids": data.catalog.item_ids, "categories": data.catalog.categories},
    )
    timings["write_s"] = time.perf_counter() - started
    metrics = {
        "recommender": trained.metrics,
        "segmentation": segmentation_metrics,
        "engine": engine.name,
    }
    return metrics, timings


def _fit_segmentation(
    data: TrainingData, settings: Settings, progress: Progress, engine: Engine
) -> tuple[CustomerSegmentation | None, SegmentAssignment | None, str | None]:
    """Fit the customer segmentation and assign every customer; or why it was skipped.

    Returns
    -------
    segmentation, assignment
        The fitted model and its assignment, both None when skipped.
    skipped
        Why there is no segmentation (too little data), else None.
    """
    item_categories = dict(zip(data.catalog.item_ids, data.catalog.categories, strict=True))
    progress("segmentation: aggregating customers")
    aggregates, item_counts = (engine.aggregate or aggregate_events)(
        user_ids=data.user_ids,
        item_ids=data.item_ids,
        event_types=data.types,
        values=data.values,
        occurred_at=data.occurred_at,
        order_ids=data.order_ids,
        item_categories=item_categories,
    )
    progress(f"segmentation: fitting {len(aggregates)} customers")
    try:
        segmentation = CustomerSegmentation(algorithm=settings.segment_algorithm).fit(
            aggregates, top_items=item_counts, kmeans=engine.kmeans
        )
    except NotEnoughData as exc:
        # A shop without enough purchases (ratings only, say) still gets its recommender.
        progress(f"segmentation skipped: {exc}")
        return None, None, str(exc)
    return segmentation, segmentation.assign(aggregates), None


def _write_segmentation(
    directory: Path,
    settings: Settings,
    segmentation: CustomerSegmentation,
    assignment: SegmentAssignment,
) -> dict[str, Any]:
    """Write the segmentation and its members under `directory`; its metrics."""
    arrays, meta = segmentation.to_state()
    write_component(directory / "segmentation", arrays, meta)
    write_component(
        directory / "members",
        {"segment_id": assignment.segment_id.astype(np.int64)},
        {"user_ids": list(assignment.user_ids), "algorithm": assignment.algorithm},
    )
    return {
        "algorithm": settings.segment_algorithm,
        "reference_time": segmentation.reference_time_,
        "quality": segmentation.quality_,
        "profiles": {
            algorithm: segmentation.profiles(algorithm) for algorithm in ("kmeans", "dbscan")
        },
    }


def _predicted_value_metrics(
    data: TrainingData, segmentation: CustomerSegmentation, progress: Progress
) -> dict[str, Any]:
    """The fitted value model's parameters and gate, and its error on a time holdout."""
    progress(f"predicted value: measuring on the last {segmentation.value_.horizon_days:g} days")
    holdout = value_holdout(
        user_ids=data.user_ids,
        event_types=data.types,
        values=data.values,
        occurred_at=data.occurred_at,
        order_ids=data.order_ids,
        horizon_days=segmentation.value_.horizon_days,
    )
    return {**segmentation.value_.report(), "holdout": holdout}


class BundleDirectoryTaken(RuntimeError):
    """The version directory a trainer would write holds a bundle it may not replace."""


def _clear_leftover(final: Path, store_id: str) -> None:
    """Remove `final` if this store's dead trainer left it; refuse to touch another store's."""
    if not final.exists():
        return
    try:
        owner = read_manifest(final).get("store_id")
    except BundleError:
        owner = None
    if owner != store_id:
        raise BundleDirectoryTaken(
            f"{final} already holds a bundle of {f'store {owner}' if owner else 'an unknown store'}"
            f" (this store is {store_id}); it is left as it is: give each store its own "
            "TASTEMAKER_MODEL_DIR, or remove the directory if nothing serves it"
        )
    # The number is past every version this store registered, so its own bundle there was left
    # by a trainer that died before registering it: nothing serves it, and it must not block us.
    shutil.rmtree(final, ignore_errors=True)


def build_bundle(
    settings: Settings, factory: sessionmaker[Session], progress: Progress | None = None
) -> BuiltBundle:
    """Train a new version from the store and write its bundle directory (not yet registered)."""
    say = progress or (lambda _message: None)
    started = time.perf_counter()
    settings.model_dir.mkdir(parents=True, exist_ok=True)
    with factory.begin() as session:
        say("loading events and catalogue")
        store_id = repository.store_identity(session)
        data = load_training_data(session)
        version = repository.next_version(session)
    if len(data.user_ids) == 0:
        raise ValueError("the store holds no events yet: import or post events, then retrain")
    load_s = time.perf_counter() - started

    final = (settings.model_dir / f"v{version}").resolve()
    # Named after the store too: two stores sharing a model directory never write into one.
    partial = final.with_name(f"{final.name}.{store_id}.partial")
    shutil.rmtree(partial, ignore_errors=True)
    _clear_leftover(final, store_id)
    assigned: list[SegmentAssignment] = []
    metrics, timings = fit_bundle(data, settings, partial, say, assigned)
    metrics["data"] = {"events": len(data.user_ids), "last_event_id": data.last_event_id}
    timings = {"load_s": load_s, **timings}
    components = ["recommender", "catalog"]
    if "skipped" not in metrics["segmentation"]:
        components += ["segmentation", "members"]
    write_manifest(
        partial,
        {
            "version": version,
            "store_id": store_id,
            "created_at": datetime.now(UTC).isoformat(),
            "data": metrics["data"],
            "libraries": {
                "python": platform.python_version(),
                "numpy": np.__version__,
                "scipy": scipy.__version__,
                "scikit-learn": sklearn.__version__,
            },
            "components": components,
            "metrics": metrics,
        },
    )
    write_checksums(partial)  # a replica that fetches it uses it once every file matches
    try:
        partial.rename(final)  # a bundle directory appears complete or not at all
    except OSError:  # another store's trainer took the name meanwhile: never replace its bundle
        shutil.rmtree(partial, ignore_errors=True)
        raise BundleDirectoryTaken(
            f"{final} appeared while this store ({store_id}) was training: another store's "
            "trainer writes there; give each store its own TASTEMAKER_MODEL_DIR"
        ) from None
    published = time.perf_counter()
    location = bundle_store(settings).publish(version, final, store_id)
    timings["publish_s"] = time.perf_counter() - published
    timings["total_s"] = time.perf_counter() - started
    assignment = assigned[0] if assigned else None
    return BuiltBundle(version, final, metrics, timings, assignment, location)


def register(session: Session, settings: Settings, built: BuiltBundle) -> tuple[bool, str | None]:
    """Record a built version; activate it unless it fails the quality gate."""
    current = repository.active_version(session)
    row = ModelVersion(
        version=built.version,
        path=built.location or str(built.path),
        metrics=built.metrics,
        is_active=False,
    )
    session.add(row)
    session.flush()
    new, old = served_ndcg(built.metrics), served_ndcg(current.metrics if current else None)
    comparable = current is not None and same_protocol(built.metrics, current.metrics)
    if current is not None and comparable and new is not None and old is not None:
        floor = old * (1 - settings.quality_gate_tolerance)
        if new < floor:
            row.note = (
                f"quality gate: served NDCG@10 {new:.4f} is below {floor:.4f} "
                f"(active v{current.version} has {old:.4f})"
            )
            return False, row.note
    repository.activate(session, row)
    # Changes of customers' segments for webhook subscribers, with the activation or not at all.
    subscriptions_service.publish_retrain(session, built.version, built.assignment)
    return True, None
