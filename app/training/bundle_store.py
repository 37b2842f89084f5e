"""Where replicas find bundles: the model directory, or S3-compatible object storage.

Every component of a bundle carries the sha256 of its files, verified whenever it is read
(:mod:`app.ml.bundle`). For a bundle that travels, a trainer also writes ``bundle.sha256.json``
(the sha256 of every file of the bundle, the manifest and the component checksums included)
and publishes it: the local store leaves it where it is, the S3 store uploads it (that
listing last) and records ``s3://bucket/prefix/STORE/vN#sha256=DIGEST`` in the SQL store,
DIGEST being the listing's own sha256. A replica fetches a version into its own model
directory (its cache) and uses it only once every file matches: the digest vouches for the
listing, the listing for the files, so a half-uploaded, corrupted or replaced bundle is
refused, never served.
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path
from typing import Any, Protocol
from urllib.parse import urlsplit

from app.config import Settings
from app.ml.bundle import BundleError, sha256_file

CHECKSUMS = "bundle.sha256.json"
_sha256 = sha256_file


def _files(directory: Path) -> list[Path]:
    listing = directory / CHECKSUMS
    return sorted(p for p in directory.rglob("*") if p.is_file() and p != listing)


def write_checksums(directory: Path) -> str:
    """Write ``checksums.json`` (sha256 of every file of the bundle); return its own sha256."""
    sums = {p.relative_to(directory).as_posix(): _sha256(p) for p in _files(directory)}
    target = directory / CHECKSUMS
    target.write_text(json.dumps({"sha256": sums}, indent=1, sort_keys=True))
    return _sha256(target)


def verify_checksums(directory: Path, digest: str | None = None) -> None:
    """Raise BundleError unless every file of ``directory`` matches its checksum.

    With ``digest``, ``checksums.json`` itself must have that sha256. A bundle without
    checksums (written before they existed) passes only without a digest.
    """
    listing = directory / CHECKSUMS
    if not listing.exists():
        if digest is not None:
            raise BundleError(f"{directory} has no checksums ({CHECKSUMS})")
        return
    if digest is not None and _sha256(listing) != digest:
        raise BundleError(f"{directory}/{CHECKSUMS} does not match the digest the store recorded")
    try:
        expected: dict[str, str] = json.loads(listing.read_text())["sha256"]
    except (ValueError, KeyError, TypeError) as exc:
        raise BundleError(f"{directory}/{CHECKSUMS} is unreadable: {exc}") from None
    present = {p.relative_to(directory).as_posix() for p in _files(directory)}
    if present != set(expected):
        raise BundleError(
            f"{directory}: files differ from its checksums "
            f"(missing {sorted(set(expected) - present)}, extra {sorted(present - set(expected))})"
        )
    for name, value in expected.items():
        if _sha256(directory / name) != value:
            raise BundleError(f"{directory}/{name} does not match its sha256 checksum")


class BundleStore(Protocol):
    """Publishes a trainer's bundle directory and fetches a version for a replica."""

    def publish(self, version: int, directory: Path, store_id: str) -> str:
        """Make the bundle in ``directory`` available to replicas; its location."""
        ...

    def fetch(self, version: int, location: str) -> Path:
        """A local, verified copy of the bundle at ``location``; BundleError when it is bad."""
        ...


class LocalBundleStore:
    """Bundles stay in the model directory the trainer wrote (one host, or a shared volume)."""

    def publish(self, version: int, directory: Path, store_id: str) -> str:
        """The directory itself."""
        return str(directory)

    def fetch(self, version: int, location: str) -> Path:
        """The directory (its components verify their checksums as they are read)."""
        return Path(location)


class S3BundleStore:
    """Bundles in an S3-compatible bucket (AWS S3, MinIO, ...), cached in ``cache_dir``."""

    def __init__(self, url: str, cache_dir: Path, client: Any) -> None:
        parts = urlsplit(url)
        if parts.scheme != "s3" or not parts.netloc:
            raise ValueError(f"a bundle store URL looks like s3://bucket/prefix, not {url!r}")
        self.bucket = parts.netloc
        self.prefix = parts.path.strip("/")
        self.cache_dir = cache_dir
        self.client = client  # a boto3 S3 client

    def _key(self, *parts: str) -> str:
        return "/".join(p for p in (self.prefix, *parts) if p)

    def publish(self, version: int, directory: Path, store_id: str) -> str:
        """Upload every file, ``checksums.json`` last; the location with its digest."""
        listing = directory / CHECKSUMS
        if not listing.exists():
            raise BundleError(f"{directory} has no {CHECKSUMS}: write_checksums first")
        base = self._key(store_id, f"v{version}")
        for path in _files(directory):
            key = f"{base}/{path.relative_to(directory).as_posix()}"
            self.client.upload_file(str(path), self.bucket, key)
        self.client.upload_file(str(listing), self.bucket, f"{base}/{CHECKSUMS}")
        return f"s3://{self.bucket}/{base}#sha256={_sha256(listing)}"

    def fetch(self, version: int, location: str) -> Path:
        """Download the bundle once into the cache, verify it, and return its directory."""
        parts = urlsplit(location)
        if parts.scheme != "s3":  # a bundle of this host's model directory (the pointer)
            return LocalBundleStore().fetch(version, location)
        digest = parts.fragment.removeprefix("sha256=") if parts.fragment else ""
        if not digest:
            raise BundleError(f"version {version}: {location!r} is no s3://…#sha256= location")
        target = self.cache_dir / "bundle-cache" / f"v{version}-{digest[:16]}"
        if target.exists():
            return target  # verified before the rename that made it appear
        base = parts.path.strip("/")
        partial = target.with_name(f"{target.name}.{os.getpid()}.partial")
        shutil.rmtree(partial, ignore_errors=True)
        try:
            self._download(parts.netloc, base, partial)
            verify_checksums(partial, digest)
        except BundleError:
            shutil.rmtree(partial, ignore_errors=True)
            raise
        except Exception as exc:  # botocore's errors: the object store is down or denies us
            shutil.rmtree(partial, ignore_errors=True)
            raise BundleError(f"version {version}: cannot fetch {location}: {exc}") from None
        try:
            partial.rename(target)
        except OSError:  # another worker of this host cached it meanwhile
            shutil.rmtree(partial, ignore_errors=True)
        return target

    def _download(self, bucket: str, base: str, into: Path) -> None:
        paginator = self.client.get_paginator("list_objects_v2")
        found = False
        for page in paginator.paginate(Bucket=bucket, Prefix=f"{base}/"):
            for item in page.get("Contents", []):
                name = item["Key"][len(base) + 1 :]
                if not name or ".." in Path(name).parts:
                    continue
                found = True
                local = into / name
                local.parent.mkdir(parents=True, exist_ok=True)
                self.client.download_file(bucket, item["Key"], str(local))
        if not found:
            raise BundleError(f"s3://{bucket}/{base} holds no bundle")


def bundle_store(settings: Settings) -> BundleStore:
    """The store ``settings.bundle_store_url`` names (the model directory when unset)."""
    if not settings.bundle_store_url:
        return LocalBundleStore()
    try:
        import boto3
    except ImportError as exc:
        raise RuntimeError(
            "an s3:// bundle store needs boto3: pip install 'tastemaker[s3]'"
        ) from exc
    client = boto3.client("s3", endpoint_url=settings.s3_endpoint_url or None)
    return S3BundleStore(settings.bundle_store_url, settings.model_dir, client)
