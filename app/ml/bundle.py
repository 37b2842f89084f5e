"""Save and load model components without pickle: .npy arrays, JSON meta, sha256 checksums.

A component is a directory::

    meta.json        {"format": 1, "arrays": {name: layout}, "meta": <caller's JSON meta>}
    <name>.npy       one per dense array
    <name>.data.npy, <name>.indices.npy, <name>.indptr.npy   one triple per CSR matrix
    checksums.json   {file name: sha256} of every other file, verified on read

Arrays load with ``np.load(mmap_mode="r", allow_pickle=False)``: worker processes share the
pages and a tampered file cannot execute code. Any missing file, changed byte or malformed
JSON raises :class:`BundleError`.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
from scipy import sparse

FORMAT_VERSION = 1
META_FILE = "meta.json"
CHECKSUMS_FILE = "checksums.json"
MANIFEST_FILE = "manifest.json"
_NAME = re.compile(r"^[A-Za-z0-9_\-]+$")
_CHUNK = 1 << 20


class BundleError(Exception):
    """A model bundle or component is missing, corrupted or malformed."""


def sha256_file(path: Path) -> str:
    """Return the hex sha256 of a file's bytes."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        while chunk := handle.read(_CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


def _write_json(path: Path, data: Any) -> None:
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(data, indent=1, sort_keys=True, allow_nan=False), encoding="utf-8")
    os.replace(tmp, path)


def _read_json(path: Path, what: str) -> Any:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise BundleError(f"{what} is missing: {path}") from None
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise BundleError(f"{what} is not valid JSON: {path} ({exc})") from None


def _save_npy(path: Path, array: np.ndarray) -> None:
    array = np.asarray(array)
    if array.dtype.hasobject:
        raise BundleError(f"{path.name}: object arrays cannot be stored without pickle")
    with open(path, "wb") as handle:
        np.save(handle, np.ascontiguousarray(array), allow_pickle=False)


def write_component(
    directory: str | Path,
    arrays: Mapping[str, np.ndarray | sparse.spmatrix],
    meta: Mapping[str, Any],
) -> None:
    """Write arrays (dense or CSR) and JSON-able meta into ``directory`` with checksums.

    Parameters
    ----------
    directory : created if missing; files of the same names are overwritten.
    arrays : name -> ndarray or scipy sparse matrix (stored as CSR: data, indices, indptr).
        Names use letters, digits, ``_`` and ``-``.
    meta : JSON-able mapping (no NaN).
    """
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    layout: dict[str, dict] = {}
    files: list[str] = []
    for name, value in arrays.items():
        if not _NAME.match(name):
            raise BundleError(f"invalid array name {name!r}")
        if sparse.issparse(value):
            csr = sparse.csr_matrix(value)
            parts = {"data": csr.data, "indices": csr.indices, "indptr": csr.indptr}
            for part, array in parts.items():
                _save_npy(directory / f"{name}.{part}.npy", array)
                files.append(f"{name}.{part}.npy")
            layout[name] = {"kind": "csr", "shape": [int(s) for s in csr.shape]}
        else:
            _save_npy(directory / f"{name}.npy", value)
            files.append(f"{name}.npy")
            layout[name] = {"kind": "dense"}
    try:
        _write_json(
            directory / META_FILE, {"format": FORMAT_VERSION, "arrays": layout, "meta": meta}
        )
    except (TypeError, ValueError) as exc:
        raise BundleError(f"component meta is not JSON-able: {exc}") from None
    files.append(META_FILE)
    _write_json(directory / CHECKSUMS_FILE, {f: sha256_file(directory / f) for f in files})


def _verify(directory: Path) -> dict[str, str]:
    checksums = _read_json(directory / CHECKSUMS_FILE, "component checksums")
    if not isinstance(checksums, dict) or META_FILE not in checksums:
        raise BundleError(f"bad checksums file in {directory}")
    for name, expected in checksums.items():
        path = directory / name
        if not isinstance(name, str) or "/" in name or "\\" in name or name.startswith("."):
            raise BundleError(f"bad file name {name!r} in {directory / CHECKSUMS_FILE}")
        if not path.is_file():
            raise BundleError(f"component file is missing: {path}")
        if sha256_file(path) != expected:
            raise BundleError(f"checksum mismatch (corrupted or modified file): {path}")
    return checksums


def _load_npy(path: Path, mmap: bool, checksums: Mapping[str, str]) -> np.ndarray:
    if path.name not in checksums:
        raise BundleError(f"{path} is not covered by the component checksums")
    try:
        array = np.load(path, mmap_mode="r" if mmap else None, allow_pickle=False)
    except FileNotFoundError:
        raise BundleError(f"component file is missing: {path}") from None
    except ValueError as exc:  # e.g. an object (pickled) array: refused, never executed
        raise BundleError(f"cannot load {path}: {exc}") from None
    # A plain ndarray view of the mapping: same shared pages, without np.memmap's
    # Python-level __getitem__ on every request.
    return array.view(np.ndarray) if isinstance(array, np.memmap) else array


def read_component(
    directory: str | Path, mmap: bool = True, *, verify: bool = True
) -> tuple[dict[str, Any], dict]:
    """Read a component written by :func:`write_component`, verifying every checksum.

    Parameters
    ----------
    directory : the component directory
    mmap : memory-map the arrays read-only (default) instead of reading them into memory
    verify : check the sha256 of every file first (default)

    Returns
    -------
    (arrays, meta) : name -> ndarray (dense) or csr_matrix (sparse), and the caller's meta

    Raises
    ------
    BundleError
        Missing file, checksum mismatch or malformed JSON.
    """
    directory = Path(directory)
    if not directory.is_dir():
        raise BundleError(f"component directory is missing: {directory}")
    if verify:
        checksums = _verify(directory)
    else:
        checksums = _read_json(directory / CHECKSUMS_FILE, "component checksums")
    doc = _read_json(directory / META_FILE, "component meta")
    if not isinstance(doc, dict) or doc.get("format") != FORMAT_VERSION:
        raise BundleError(f"unsupported component format in {directory / META_FILE}")
    layout = doc.get("arrays")
    if not isinstance(layout, dict):
        raise BundleError(f"bad array layout in {directory / META_FILE}")
    arrays: dict[str, Any] = {}
    for name, spec in layout.items():
        kind = spec.get("kind") if isinstance(spec, dict) else None
        if kind == "dense":
            arrays[name] = _load_npy(directory / f"{name}.npy", mmap, checksums)
        elif kind == "csr":
            data, indices, indptr = (
                _load_npy(directory / f"{name}.{part}.npy", mmap, checksums)
                for part in ("data", "indices", "indptr")
            )
            try:
                arrays[name] = sparse.csr_matrix(
                    (data, indices, indptr), shape=tuple(spec["shape"]), copy=False
                )
            except (KeyError, TypeError, ValueError) as exc:
                raise BundleError(f"bad sparse array {name!r} in {directory}: {exc}") from None
        else:
            raise BundleError(f"unknown array kind {kind!r} for {name!r} in {directory}")
    meta = doc.get("meta")
    if not isinstance(meta, dict):
        raise BundleError(f"component meta must be a JSON object in {directory}")
    return arrays, meta


def write_manifest(directory: str | Path, manifest: Mapping[str, Any]) -> None:
    """Write ``manifest.json`` (atomically) with a sha256 of its own canonical content."""
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    body = dict(manifest)
    body.pop("sha256", None)
    try:
        canonical = json.dumps(body, sort_keys=True, allow_nan=False)
    except (TypeError, ValueError) as exc:
        raise BundleError(f"manifest is not JSON-able: {exc}") from None
    body["sha256"] = hashlib.sha256(canonical.encode("utf-8")).hexdigest()
    _write_json(directory / MANIFEST_FILE, body)


def read_manifest(directory: str | Path) -> dict:
    """Read ``manifest.json`` and verify its checksum; raise :class:`BundleError` if bad."""
    path = Path(directory) / MANIFEST_FILE
    body = _read_json(path, "bundle manifest")
    if not isinstance(body, dict) or not isinstance(body.get("sha256"), str):
        raise BundleError(f"bad manifest (no checksum): {path}")
    expected = body.pop("sha256")
    canonical = json.dumps(body, sort_keys=True, allow_nan=False)
    if hashlib.sha256(canonical.encode("utf-8")).hexdigest() != expected:
        raise BundleError(f"manifest checksum mismatch (corrupted or modified): {path}")
    return body
