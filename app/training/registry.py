"""The model registry of one worker: load the active bundle, notice new versions, hot-swap.

Requests read `registry.current` once and keep that reference, so a swap never changes a
bundle under a request in flight; the swap itself is one attribute assignment.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import logging
import os
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path
from typing import Any

import numpy as np
from fastapi.concurrency import run_in_threadpool
from numpy.typing import NDArray
from sqlalchemy import func, select
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.orm import Session, sessionmaker

from app.cache import Cache
from app.catalog import repository as catalog_repository
from app.catalog.models import Item
from app.config import Settings
from app.customers import repository as customers_repository
from app.db import utcnow
from app.events import history
from app.events.models import Event
from app.ml.bundle import BundleError, read_component, read_manifest
from app.ml.recommender import Recommender, load_recommender
from app.ml.segmentation import CustomerSegmentation
from app.training import repository

log = logging.getLogger(__name__)
FALLBACK_SIZE = 200


@dataclass(eq=False)
class LoadedBundle:
    """One model version, memory-mapped and ready to answer."""

    version: int
    path: Path
    manifest: dict[str, Any]
    recommender: Recommender
    segmentation: CustomerSegmentation
    member_ids: list[str]
    member_segments: NDArray[np.int64]
    member_algorithm: str
    category_items: dict[str, NDArray[np.int64]]
    user_segment: dict[str, int] = field(init=False)
    _members: dict[int, list[str]] = field(init=False, default_factory=dict)

    def __post_init__(self) -> None:
        self.user_segment = dict(zip(self.member_ids, self.member_segments.tolist(), strict=True))

    def members_of(self, segment_id: int) -> list[str]:
        """User ids assigned to a segment at training time, sorted (computed once)."""
        members = self._members.get(segment_id)
        if members is None:
            picked = np.flatnonzero(self.member_segments == segment_id).tolist()
            members = self._members[segment_id] = sorted(self.member_ids[i] for i in picked)
        return members


ACTIVE_POINTER = "ACTIVE"


def write_active_pointer(model_dir: Path, version: int) -> None:
    """Record the active version on disk, for workers that start while the store is down."""
    model_dir.mkdir(parents=True, exist_ok=True)
    temporary = model_dir / f".{ACTIVE_POINTER}.{os.getpid()}"
    temporary.write_text(f"{version}\n")
    os.replace(temporary, model_dir / ACTIVE_POINTER)


def read_active_pointer(model_dir: Path) -> int | None:
    """The version last activated, as recorded on disk, or None."""
    try:
        return int((model_dir / ACTIVE_POINTER).read_text().strip())
    except (OSError, ValueError):
        return None


def load_bundle(version: int, path: str | Path) -> LoadedBundle:
    """Load and verify a bundle directory; raise BundleError when anything is wrong."""
    path = Path(path)
    manifest = read_manifest(path)
    if manifest.get("version") != version:
        raise BundleError(f"{path} holds version {manifest.get('version')}, not {version}")
    recommender = load_recommender(path)
    arrays, meta = read_component(path / "segmentation")
    try:
        segmentation = CustomerSegmentation.from_state(arrays, meta)
    except (KeyError, TypeError, ValueError) as exc:
        raise BundleError(f"inconsistent segmentation in {path}: {exc!r}") from None
    members, members_meta = read_component(path / "members")
    _, catalog_meta = read_component(path / "catalog")
    by_category: dict[str, list[int]] = {}
    for item_id, categories in zip(
        catalog_meta["item_ids"], catalog_meta["categories"], strict=True
    ):
        index = recommender.item_index(item_id)
        if index is not None:
            for category in categories:
                by_category.setdefault(category, []).append(index)
    return LoadedBundle(
        version=version,
        path=path,
        manifest=manifest,
        recommender=recommender,
        segmentation=segmentation,
        member_ids=list(members_meta["user_ids"]),
        member_segments=np.asarray(members["segment_id"], dtype=np.int64),
        member_algorithm=str(members_meta.get("algorithm", "kmeans")),
        category_items={c: np.asarray(v, dtype=np.int64) for c, v in by_category.items()},
    )


class ModelRegistry:
    """Holds this worker's active bundle and the catalogue facts requests filter with."""

    def __init__(
        self, settings: Settings, factory: sessionmaker[Session], *, cache: Cache | None = None
    ) -> None:
        self.settings = settings
        self.factory = factory
        self.current: LoadedBundle | None = None
        self.unavailable: frozenset[str] = frozenset()
        self.available_mask: NDArray[np.bool_] | None = None
        self.fallback_items: list[tuple[str, float, list[str]]] = []
        self.state = "none_yet"
        self.error: str | None = None
        # Users erased (by any worker: read from the store's erasure records at every poll).
        self.deleted_users: set[str] = set()
        self.cache = cache
        self._erasures: set[int] = set()
        self._last_erasure = 0
        self._bad_versions: set[int] = set()
        self._task: asyncio.Task | None = None

    # ---------------------------------------------------------------- lifecycle

    async def start(self) -> None:
        """Load the active version (or the newest good one), then poll for changes."""
        await self.refresh()
        self._task = asyncio.create_task(self._poll())

    async def stop(self) -> None:
        """Stop polling."""
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task

    async def _poll(self) -> None:
        while True:
            await asyncio.sleep(self.settings.model_poll_seconds)
            try:
                await self.refresh()
            except Exception:  # polling must never die; the next round retries
                log.exception("model registry refresh failed")

    async def refresh(self) -> None:
        """Swap to the store's active version if it changed; refresh availability."""
        await self.sync_erasures()
        try:
            wanted, unavailable = await run_in_threadpool(self._read_store)
        except SQLAlchemyError as exc:
            log.warning("store unreachable while polling models: %s", exc)
            if self.current is None and self.state == "none_yet":
                await run_in_threadpool(self._load_active_on_disk)
            return
        self.unavailable = frozenset(unavailable)
        if wanted and (self.current is None or self.current.version != wanted[0][0]):
            await run_in_threadpool(self._load_first_good, wanted)
        if self.current is None:
            self.fallback_items = await run_in_threadpool(self._store_popularity)
            if self.state != "failed":
                self.state = "none_yet" if not wanted else "fallback"
        self._rebuild_mask()

    # ---------------------------------------------------------------- loading

    def _read_store(self) -> tuple[list[tuple[int, str]], list[str]]:
        with self.factory() as session:
            active = repository.active_version(session)
            others = [v for v in repository.versions(session) if not v.is_active]
            wanted = [(v.version, v.path) for v in ([active] if active else []) + others]
            return wanted, catalog_repository.unavailable_ids(session)

    def _load_first_good(self, candidates: list[tuple[int, str]]) -> None:
        errors: list[str] = []
        for version, path in candidates:
            if self.current is not None and self.current.version == version:
                return  # the running version is the best good one left
            if version in self._bad_versions:
                continue  # verified bad once; a corrupt bundle is not re-read every poll
            try:
                bundle = load_bundle(version, path)
            except (BundleError, OSError, KeyError, ValueError) as exc:
                log.error("model version %s at %s cannot be loaded: %s", version, path, exc)
                errors.append(f"version {version}: {exc}")
                self._bad_versions.add(version)
                continue
            self._swap(bundle)
            self.error = "; ".join(errors) or None
            return
        self.error = "; ".join(errors) or self.error
        if self.current is None:
            self.state = "failed"

    def _load_active_on_disk(self) -> None:
        # The store is down: serve the version last activated, as recorded beside the bundles
        # (never merely the newest directory, which may be rolled back or unregistered).
        version = read_active_pointer(self.settings.model_dir)
        if version is not None:
            self._load_first_good([(version, str(self.settings.model_dir / f"v{version}"))])

    def _swap(self, bundle: LoadedBundle) -> None:
        # Users erased since this worker started may still be in a bundle trained before the
        # erasure reached the store: drop them from the new bundle's look-ups too.
        if self.deleted_users:
            bundle.recommender.forget_users(sorted(self.deleted_users))
        self.current = bundle  # one reference assignment: requests in flight keep the old one
        gc.freeze()  # the bundle's objects are long-lived: out of the cyclic GC's full scans
        self.state = "loaded"
        self._rebuild_mask()
        log.info("serving model version %s", bundle.version)

    def _rebuild_mask(self) -> None:
        bundle = self.current
        if bundle is None:
            self.available_mask = None
            return
        mask = np.array(bundle.recommender.available, dtype=bool, copy=True)
        for item_id in self.unavailable:
            index = bundle.recommender.item_index(item_id)
            if index is not None:
                mask[index] = False
        self.available_mask = mask

    def _store_popularity(self) -> list[tuple[str, float, list[str]]]:
        try:
            with self.factory() as session:
                counts = (
                    select(Event.item_id, func.count().label("n"))
                    .group_by(Event.item_id)
                    .order_by(func.count().desc(), Event.item_id)
                    .limit(FALLBACK_SIZE)
                    .subquery()
                )
                rows = session.execute(
                    select(counts.c.item_id, counts.c.n, Item.categories)
                    .join(Item, Item.id == counts.c.item_id)
                    .where(Item.is_available.is_(True))
                    .order_by(counts.c.n.desc(), counts.c.item_id)
                ).all()
        except SQLAlchemyError:
            return self.fallback_items
        return [(item_id, float(n), list(categories or [])) for item_id, n, categories in rows]

    # ---------------------------------------------------------------- facts for requests

    def mark_unavailable(self, item_id: str) -> None:
        """Apply an item retirement in this worker at once (others see it at the next poll)."""
        self.unavailable = self.unavailable | {item_id}
        self._rebuild_mask()

    def forget_user(self, user_id: str) -> None:
        """Drop an erased user from the active bundle's look-ups in this worker at once; the
        other workers read the erasure from the store at their next poll."""
        self._forget([user_id])

    def _forget(self, user_ids: list[str]) -> None:
        self.deleted_users.update(user_ids)
        if self.current is not None:
            self.current.recommender.forget_users(user_ids)

    async def sync_erasures(self) -> None:
        """Apply the erasures any worker recorded in the store since the last poll: drop the
        users from the bundle's look-ups and from this worker's cache."""
        try:
            erased = await run_in_threadpool(self._read_erasures)
        except SQLAlchemyError:
            return  # the store is down: refresh() says so; the next poll catches up
        new = [(row_id, user_id) for row_id, user_id in erased if row_id not in self._erasures]
        if not new:
            return
        self._erasures.update(row_id for row_id, _ in new)
        self._last_erasure = max(self._erasures)
        user_ids = [user_id for _, user_id in new]
        self._forget(user_ids)
        if self.cache is not None and self._task is not None:
            # The worker that erased dropped them from the shared cache; this one's in-process
            # tier may still hold their entries (in the embedded shape, its only tier). Before
            # polling starts this worker has cached nothing yet.
            await history.bump_versions(self.cache, user_ids, self.settings.cache_ttl_seconds)

    def _read_erasures(self) -> list[tuple[int, str]]:
        # Re-reading the last minute's erasures catches one whose transaction committed after
        # a later one's (ids are handed out at insert).
        since = utcnow() - timedelta(seconds=60)
        with self.factory() as session:
            return customers_repository.erasures_since(session, self._last_erasure, since)

    def describe(self) -> dict[str, Any]:
        """What /ready says about the model."""
        bundle = self.current
        body: dict[str, Any] = {
            "state": self.state,
            "version": bundle.version if bundle else None,
        }
        if bundle is None and self.state != "none_yet":
            body["serving"] = "popularity computed from the store"
        if self.error:
            body["error"] = self.error
        return body
