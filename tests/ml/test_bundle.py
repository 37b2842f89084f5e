"""Bundle components: round trip, mmap without pickle, and refusal of damaged files."""

import json
from pathlib import Path

import numpy as np
import pytest
from scipy import sparse

from app.ml.bundle import (
    CHECKSUMS_FILE,
    BundleError,
    read_component,
    read_manifest,
    sha256_file,
    write_component,
    write_manifest,
)


def _write(directory: Path) -> tuple[dict, dict]:
    arrays = {
        "centroids": np.arange(12, dtype=np.float32).reshape(3, 4),
        "labels": np.array([2, 0, 1], dtype=np.int64),
        "empty": np.zeros(0, dtype=np.float32),
        "sim": sparse.csr_matrix(np.array([[0, 1.5], [2.5, 0]], dtype=np.float32)),
    }
    meta = {"model": "KMeans", "params": {"k": 3}, "names": ["a", "b"]}
    write_component(directory, arrays, meta)
    return arrays, meta


def test_round_trip_memory_mapped(tmp_path: Path) -> None:
    arrays, meta = _write(tmp_path / "c")
    loaded, loaded_meta = read_component(tmp_path / "c")
    assert loaded_meta == meta
    centroids = loaded["centroids"]
    assert isinstance(centroids.base, np.memmap)  # memory-mapped, shared between workers
    assert not centroids.flags.writeable
    np.testing.assert_array_equal(loaded["centroids"], arrays["centroids"])
    np.testing.assert_array_equal(loaded["labels"], arrays["labels"])
    assert loaded["empty"].shape == (0,)
    assert sparse.issparse(loaded["sim"])
    np.testing.assert_array_equal(loaded["sim"].toarray(), arrays["sim"].toarray())


def test_round_trip_in_memory(tmp_path: Path) -> None:
    _write(tmp_path / "c")
    loaded, _ = read_component(tmp_path / "c", mmap=False)
    assert loaded["centroids"].base is None or not isinstance(loaded["centroids"].base, np.memmap)
    assert loaded["centroids"].flags.writeable


def test_flipped_byte_is_refused(tmp_path: Path) -> None:
    _write(tmp_path / "c")
    path = tmp_path / "c" / "centroids.npy"
    data = bytearray(path.read_bytes())
    data[-1] ^= 0x01
    path.write_bytes(bytes(data))
    with pytest.raises(BundleError, match="checksum mismatch"):
        read_component(tmp_path / "c")


def test_flipped_byte_in_meta_is_refused(tmp_path: Path) -> None:
    _write(tmp_path / "c")
    path = tmp_path / "c" / "meta.json"
    path.write_text(path.read_text().replace("KMeans", "KMeanz"))
    with pytest.raises(BundleError, match="checksum"):
        read_component(tmp_path / "c")


@pytest.mark.parametrize("name", ["sim.indices.npy", "labels.npy", "meta.json", CHECKSUMS_FILE])
def test_missing_file_is_refused(tmp_path: Path, name: str) -> None:
    _write(tmp_path / "c")
    (tmp_path / "c" / name).unlink()
    with pytest.raises(BundleError, match="missing"):
        read_component(tmp_path / "c")


def test_missing_directory_and_bad_checksums_file(tmp_path: Path) -> None:
    with pytest.raises(BundleError, match="missing"):
        read_component(tmp_path / "nope")
    _write(tmp_path / "c")
    (tmp_path / "c" / CHECKSUMS_FILE).write_text("{not json")
    with pytest.raises(BundleError, match="JSON"):
        read_component(tmp_path / "c")


def test_pickled_arrays_are_never_loaded(tmp_path: Path) -> None:
    with pytest.raises(BundleError, match="pickle"):
        write_component(tmp_path / "w", {"bad": np.array([{"x": 1}], dtype=object)}, {})
    # A tampered component whose checksums were recomputed still cannot unpickle.
    _write(tmp_path / "c")
    bad = tmp_path / "c" / "labels.npy"
    np.save(bad, np.array([{"evil": 1}], dtype=object), allow_pickle=True)
    sums = json.loads((tmp_path / "c" / CHECKSUMS_FILE).read_text())
    sums["labels.npy"] = sha256_file(bad)
    (tmp_path / "c" / CHECKSUMS_FILE).write_text(json.dumps(sums))
    for mmap in (True, False):
        with pytest.raises(BundleError, match="cannot load"):
            read_component(tmp_path / "c", mmap=mmap)


def test_meta_must_be_json(tmp_path: Path) -> None:
    with pytest.raises(BundleError, match="JSON"):
        write_component(tmp_path / "c", {}, {"x": object()})
    with pytest.raises(BundleError, match="invalid array name"):
        write_component(tmp_path / "c", {"../x": np.zeros(1)}, {})


def test_manifest_round_trip_and_tamper(tmp_path: Path) -> None:
    manifest = {"version": 3, "metrics": {"ndcg": 0.12}, "created_at": "2026-01-01T00:00:00Z"}
    write_manifest(tmp_path, manifest)
    assert read_manifest(tmp_path) == manifest
    path = tmp_path / "manifest.json"
    path.write_text(path.read_text().replace("0.12", "0.99"))
    with pytest.raises(BundleError, match="checksum mismatch"):
        read_manifest(tmp_path)
    path.write_text("[1, 2]")
    with pytest.raises(BundleError, match="bad manifest"):
        read_manifest(tmp_path)
    path.unlink()
    with pytest.raises(BundleError, match="missing"):
        read_manifest(tmp_path)
