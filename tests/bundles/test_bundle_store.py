"""Checksums and the S3 bundle store: what a replica fetches is what the trainer wrote."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from app.ml.bundle import BundleError
from app.training.bundle_store import (
    CHECKSUMS,
    LocalBundleStore,
    S3BundleStore,
    verify_checksums,
    write_checksums,
)


def _bundle(directory: Path) -> Path:
    (directory / "recommender").mkdir(parents=True)
    (directory / "manifest.json").write_text(json.dumps({"version": 3}))
    np.save(directory / "recommender" / "weights.npy", np.arange(100, dtype=np.float32))
    write_checksums(directory)
    return directory


def test_checksums_pass_then_catch_a_flipped_byte_a_missing_and_an_extra_file(tmp_path):
    bundle = _bundle(tmp_path / "v3")
    assert LocalBundleStore().fetch(3, str(bundle)) == bundle
    verify_checksums(bundle)
    target = bundle / "recommender" / "weights.npy"
    original = target.read_bytes()
    target.write_bytes(original[:-1] + bytes([original[-1] ^ 1]))
    with pytest.raises(BundleError, match=r"weights\.npy does not match"):
        verify_checksums(bundle)
    target.unlink()
    with pytest.raises(BundleError, match="missing"):
        verify_checksums(bundle)
    target.write_bytes(original)
    (bundle / "stray.npy").write_bytes(b"x")
    with pytest.raises(BundleError, match="extra"):
        verify_checksums(bundle)


def test_a_bundle_without_checksums_passes_only_without_a_digest(tmp_path):
    bundle = _bundle(tmp_path / "v3")
    (bundle / CHECKSUMS).unlink()
    verify_checksums(bundle)  # written before checksums existed
    with pytest.raises(BundleError, match="no checksums"):
        verify_checksums(bundle, "0" * 64)


def test_s3_round_trip_into_a_cache(tmp_path, bucket: tuple[str, Any]):
    name, client = bucket
    bundle = _bundle(tmp_path / "trainer" / "v3")
    trainer = S3BundleStore(f"s3://{name}/shop", tmp_path / "trainer", client)
    location = trainer.publish(3, bundle, "store1")
    assert location.startswith(f"s3://{name}/shop/store1/v3#sha256=")
    replica = S3BundleStore(f"s3://{name}/shop", tmp_path / "replica", client)
    fetched = replica.fetch(3, location)
    assert fetched.is_relative_to(tmp_path / "replica")
    for path in bundle.rglob("*"):
        if path.is_file():
            assert (fetched / path.relative_to(bundle)).read_bytes() == path.read_bytes()
    assert replica.fetch(3, location) == fetched  # cached: no second download


def test_s3_refuses_a_tampered_object_and_replaced_checksums(tmp_path, bucket: tuple[str, Any]):
    name, client = bucket
    bundle = _bundle(tmp_path / "trainer" / "v3")
    store = S3BundleStore(f"s3://{name}/shop", tmp_path / "trainer", client)
    location = store.publish(3, bundle, "store1")
    key = "shop/store1/v3/recommender/weights.npy"
    client.put_object(Bucket=name, Key=key, Body=b"not the trained weights")
    replica = S3BundleStore(f"s3://{name}/shop", tmp_path / "replica", client)
    with pytest.raises(BundleError, match=r"weights\.npy does not match"):
        replica.fetch(3, location)
    # Rewriting the checksums to match the new object does not help: the SQL store's digest
    # vouches for the checksums themselves.
    (bundle / "recommender" / "weights.npy").write_bytes(b"not the trained weights")
    write_checksums(bundle)
    client.upload_file(str(bundle / CHECKSUMS), name, f"shop/store1/v3/{CHECKSUMS}")
    with pytest.raises(BundleError, match="digest"):
        replica.fetch(3, location)
    assert not list((tmp_path / "replica" / "bundle-cache").iterdir())  # nothing half-kept


def test_s3_refuses_a_location_without_digest_or_bundle(tmp_path, bucket: tuple[str, Any]):
    name, client = bucket
    replica = S3BundleStore(f"s3://{name}/shop", tmp_path / "replica", client)
    with pytest.raises(BundleError, match="no s3"):
        replica.fetch(1, f"s3://{name}/shop/store1/v1")
    with pytest.raises(BundleError, match="holds no bundle"):
        replica.fetch(1, f"s3://{name}/shop/store1/v1#sha256={'0' * 64}")
