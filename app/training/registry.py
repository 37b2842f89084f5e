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
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path
from typing import Any

import numpy as np
from fastapi.concurrency import run_in_threadpool
from numpy.typing import NDArray
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.orm import Session, sessionmaker

from app import metrics
from app.cache import Cache
from app.catalog import repository as catalog_repository
from app.config import Settings
from app.customers import repository as customers_repository
from app.db import utcnow
from app.events import repository as events_repository
from app.events import user_record
from app.ml.bundle import BundleError, read_component, read_manifest
from app.ml.recommender import Recommender, load_recommender
from app.ml.segmentation import CustomerSegmentation
from app.training import repository
from app.training.bundle_store import BundleStore, LocalBundleStore, bundle_store

log = logging.getLogger(__name__)
FALLBACK_SIZE = 200


@dataclass(eq=False)
class LoadedBundle:
    """One model version, memory-mapped and ready to answer."""

    version: int
    path: Path
    manifest: dict[str, Any]
    recommender: Recommender
    segmentation: CustomerSegmentation | None  # None when training skipped it (see below)
    member_ids: list[str]
    member_segments: NDArray[np.int64]
    member_algorithm: str
    category_items: dict[str, NDArray[np.int64]]
    segmentation_skipped: str | None = None  # why this version has no segmentation
    origin_note: str | None = None  # a warning about where the bundle comes from
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


class ForeignBundle(BundleError):
    """A bundle that was not trained from this store (or cannot be shown to have been)."""


@dataclass(frozen=True)
class StoreOrigin:
    """What a bundle must match to be served from a store."""

    store_id: str
    recorded_data: dict[str, Any] | None  # the data fingerprint the store registered, if any


def store_origin(session: Session, version: int) -> StoreOrigin:
    """The store's identity and what it recorded for `version` (the caller commits)."""
    row = repository.get_version(session, version)
    recorded = (row.metrics or {}).get("data") if row is not None else None
    return StoreOrigin(repository.store_identity(session), recorded)


def check_origin(manifest: dict[str, Any], path: Path, origin: StoreOrigin) -> str | None:
    """Raise ForeignBundle unless the bundle was trained from `origin`'s store.

    A bundle written before stores had identities records none: it is accepted, with the
    returned warning, only when its data fingerprint (events, last event id) is the one this
    store recorded when it registered the version, i.e. no other store's trainer replaced it.
    """
    theirs = manifest.get("store_id")
    if theirs == origin.store_id:
        return None
    if theirs is not None:
        raise ForeignBundle(
            f"bundle {path} was trained from store {theirs}, not from this store "
            f"{origin.store_id}: refused (give each store its own TASTEMAKER_MODEL_DIR)"
        )
    if origin.recorded_data is not None and manifest.get("data") == origin.recorded_data:
        return (
            f"bundle {path} records no store (trained before store identities); accepted because "
            "its data fingerprint is the one this store registered: retrain to stamp it"
        )
    raise ForeignBundle(
        f"bundle {path} records no store (trained before store identities) and its data "
        f"{manifest.get('data')} is not what this store {origin.store_id} registered "
        f"({origin.recorded_data}): refused"
    )


def load_bundle(
    version: int,
    path: str | Path,
    *,
    origin: StoreOrigin | None,
    store: BundleStore | None = None,
) -> LoadedBundle:
    """Fetch (from `store`, default the local directory), verify and load a bundle; raise
    BundleError when anything is wrong.

    With an `origin`, a bundle of another store raises ForeignBundle; None skips that check
    (only for a caller that cannot read the store, which must check again once it can).
    """
    path = (store or LocalBundleStore()).fetch(version, str(path))
    manifest = read_manifest(path)
    if manifest.get("version") != version:
        raise BundleError(f"{path} holds version {manifest.get('version')}, not {version}")
    note = check_origin(manifest, path, origin) if origin is not None else None
    recommender = load_recommender(path)
    segmentation: CustomerSegmentation | None = None
    member_ids: list[str] = []
    member_segments = np.zeros(0, dtype=np.int64)
    member_algorithm = "kmeans"
    skipped: str | None = None
    if "segmentation" in manifest.get("components", ["segmentation"]):
        arrays, meta = read_component(path / "segmentation")
        try:
            segmentation = CustomerSegmentation.from_state(arrays, meta)
        except (KeyError, TypeError, ValueError) as exc:
            raise BundleError(f"inconsistent segmentation in {path}: {exc!r}") from None
        members, members_meta = read_component(path / "members")
        member_ids = list(members_meta["user_ids"])
        member_segments = np.asarray(members["segment_id"], dtype=np.int64)
        member_algorithm = str(members_meta.get("algorithm", "kmeans"))
    else:
        seg_metrics = (manifest.get("metrics") or {}).get("segmentation") or {}
        skipped = str(seg_metrics.get("skipped") or "training did not fit one")
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
        member_ids=member_ids,
        member_segments=member_segments,
        member_algorithm=member_algorithm,
        category_items={c: np.asarray(v, dtype=np.int64) for c, v in by_category.items()},
        segmentation_skipped=skipped,
        origin_note=note,
    )


class ModelRegistry:
    """Holds this worker's active bundle and the catalogue facts requests filter with."""

    def __init__(
        self, settings: Settings, factory: sessionmaker[Session], *, cache: Cache | None = None
    ) -> None:
        self.settings = settings
        self.factory = factory
        self.bundles = bundle_store(settings)
        self.current: LoadedBundle | None = None
        self.unavailable: frozenset[str] = frozenset()
        # Retirements this worker applied that a store read may not have seen yet: a poll whose
        # read began before a retirement committed must not bring the item back.
        self._retired_here: set[str] = set()
        # The active bundle and which of its items may be recommended now, swapped together.
        self._availability: tuple[LoadedBundle, NDArray[np.bool_]] | None = None
        self.fallback_items: list[tuple[str, float, list[str]]] = []
        self.state = "none_yet"
        self.error: str | None = None
        # Users erased (by any worker: read from the store's erasure records at every poll).
        self.deleted_users: set[str] = set()
        self.store_id: str | None = None
        self._bad_versions: dict[int, str] = {}
        # The bundle in use was loaded while the store was unreachable, so its origin is unchecked.
        self._unverified = False
        self.cache = cache
        self._erasures: set[int] = set()
        self._last_erasure = 0
        self._task: asyncio.Task | None = None
        # Set by the app when its cache is in-process: invalidates users an importer changed.
        self.on_ingest: Callable[[list[str]], Awaitable[None]] | None = None
        self.ingest_epoch: int | None = None

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
        seen_by_read = set(self._retired_here)
        try:
            wanted, unavailable = await run_in_threadpool(self._read_store)
        except SQLAlchemyError as exc:
            log.warning("store unreachable while polling models: %s", exc)
            if self.current is None and self.state == "none_yet":
                await run_in_threadpool(self._load_active_on_disk)
            return
        # Retired before the read began: committed, so the read saw them; later ones stay.
        self._retired_here -= seen_by_read
        self.unavailable = frozenset(unavailable) | self._retired_here
        await self._apply_ingest_changes()
        if self._unverified or (
            wanted and (self.current is None or self.current.version != wanted[0][0])
        ):
            await run_in_threadpool(self._load_first_good, wanted)
        if self.current is None:
            self.fallback_items = await run_in_threadpool(self._store_popularity)
            if self.state != "failed":
                self.state = "none_yet" if not wanted else "fallback"
        self._rebuild_mask()

    async def _apply_ingest_changes(self) -> None:
        # Importers cannot reach this worker's in-process cache; they log the users they wrote
        # to in the store, and each poll invalidates those users' cached answers here.
        if self.on_ingest is None:
            return
        try:
            epoch, user_ids = await run_in_threadpool(self._read_ingest_changes)
        except SQLAlchemyError:
            return  # read again at the next poll, from the same epoch
        if user_ids:
            await self.on_ingest(user_ids)
        self.ingest_epoch = epoch

    def _read_ingest_changes(self) -> tuple[int, list[str]]:
        with self.factory() as session:
            return events_repository.ingest_changes_since(session, self.ingest_epoch)

    # ---------------------------------------------------------------- loading

    def _read_store(self) -> tuple[list[tuple[int, str]], list[str]]:
        with self.factory() as session:
            active = repository.active_version(session)
            others = [v for v in repository.versions(session) if not v.is_active]
            wanted = [(v.version, v.path) for v in ([active] if active else []) + others]
            return wanted, catalog_repository.unavailable_ids(session)

    def _origins(self, candidates: list[tuple[int, str]]) -> dict[int, StoreOrigin] | None:
        """What each candidate must match to be served here; None when the store is down."""
        versions = [version for version, _ in candidates]
        if self.current is not None:
            versions.append(self.current.version)
        try:
            with self.factory.begin() as session:
                origins = {version: store_origin(session, version) for version in versions}
        except SQLAlchemyError as exc:
            log.warning("store unreachable: bundle origins cannot be checked yet: %s", exc)
            return None
        if origins:
            self.store_id = next(iter(origins.values())).store_id
        return origins

    def _load_first_good(self, candidates: list[tuple[int, str]]) -> None:
        origins = self._origins(candidates)
        errors: list[str] = []
        if self.current is not None and self._unverified and origins is not None:
            # Loaded while the store was down (from the pointer beside the bundles, which
            # another store sharing the directory may have written): check it now.
            current = self.current
            try:
                current.origin_note = check_origin(
                    current.manifest, current.path, origins[current.version]
                )
            except ForeignBundle as exc:
                self._refuse(current.version, str(exc), errors)
                self.current = None
            self._unverified = False
        for version, path in candidates:
            if self.current is not None and self.current.version == version:
                break  # the running version is the best good one left
            if version in self._bad_versions:
                # verified bad once; a corrupt or foreign bundle is not re-read every poll
                errors.append(f"version {version}: {self._bad_versions[version]}")
                continue
            try:
                bundle = load_bundle(
                    version,
                    path,
                    origin=None if origins is None else origins[version],
                    store=self.bundles,
                )
            except (BundleError, OSError, KeyError, ValueError) as exc:
                self._refuse(version, f"{exc}", errors, path)
                continue
            self._swap(bundle)
            self._unverified = origins is None
            if bundle.origin_note:
                log.warning("model version %s: %s", version, bundle.origin_note)
            break
        self.error = "; ".join(errors) or None
        if self.current is None:
            self.state = "failed" if errors else self.state

    def _refuse(
        self, version: int, reason: str, errors: list[str], path: str | None = None
    ) -> None:
        log.error(
            "model version %s%s cannot be served: %s",
            version,
            f" at {path}" if path else "",
            reason,
        )
        self._bad_versions[version] = reason
        errors.append(f"version {version}: {reason}")

    def _load_active_on_disk(self) -> None:
        # The store is down: serve the version last activated, as recorded beside the bundles
        # (never merely the newest directory, which may be rolled back or unregistered). Its
        # origin is checked once the store answers again (see _load_first_good).
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
        metrics.MODEL_VERSION.set(bundle.version)
        metrics.MODEL_SWAPS.inc()
        log.info("serving model version %s", bundle.version)

    def _rebuild_mask(self) -> None:
        bundle = self.current
        self._availability = None if bundle is None else (bundle, self._available_in(bundle))

    def _available_in(self, bundle: LoadedBundle) -> NDArray[np.bool_]:
        mask = np.array(bundle.recommender.available, dtype=bool, copy=True)
        for item_id in self.unavailable:
            index = bundle.recommender.item_index(item_id)
            if index is not None:
                mask[index] = False
        return mask

    def _store_popularity(self) -> list[tuple[str, float, list[str]]]:
        try:
            with self.factory() as session:
                return events_repository.popular_items(session, FALLBACK_SIZE)
        except SQLAlchemyError:
            return self.fallback_items

    # ---------------------------------------------------------------- facts for requests

    def available_in(self, bundle: LoadedBundle) -> NDArray[np.bool_]:
        """Which items of ``bundle`` may be recommended now: its training-time availability
        minus the items retired since (a request keeps the bundle it started with, even when
        a swap replaces it meanwhile)."""
        built = self._availability
        if built is not None and built[0] is bundle:
            return built[1]
        return self._available_in(bundle)

    def mark_unavailable(self, item_id: str) -> None:
        """Apply an item retirement in this worker at once (others see it at the next poll)."""
        self._retired_here.add(item_id)
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
            await user_record.bump_versions(self.cache, user_ids, self.settings.cache_ttl_seconds)

    def _read_erasures(self) -> list[tuple[int, str]]:
        # Re-reading the last minute's erasures catches one whose transaction committed after
        # a later one's (ids are handed out at insert).
        since = utcnow() - timedelta(seconds=60)
        with self.factory() as session:
            return customers_repository.erasures_since(session, self._last_erasure, since)

    def describe(self) -> dict[str, Any]:
        """What /ready says about the model (and why a version is not served)."""
        bundle = self.current
        body: dict[str, Any] = {
            "state": self.state,
            "version": bundle.version if bundle else None,
            "store_id": self.store_id,
        }
        if bundle is None and self.state != "none_yet":
            body["serving"] = "popularity computed from the store"
        if bundle is not None and self._unverified:
            body["origin"] = "not checked yet: the store has been unreachable since it was loaded"
        elif bundle is not None and bundle.origin_note:
            body["origin"] = bundle.origin_note
        if bundle is not None and bundle.segmentation_skipped:
            body["segmentation"] = f"skipped: {bundle.segmentation_skipped}"
        if self.error:
            body["error"] = self.error
        return body
