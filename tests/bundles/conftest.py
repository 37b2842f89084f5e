"""A local S3-compatible server (moto's) for the bundle store's tests, on 127.0.0.1."""

from __future__ import annotations

import importlib.util
import uuid
from collections.abc import Iterator
from typing import Any

import pytest

from tests.conftest import IN_CI
from tests.faults.servers import free_port

CREDENTIALS = {
    "AWS_ACCESS_KEY_ID": "tastemaker-test",
    "AWS_SECRET_ACCESS_KEY": "tastemaker-test",
    "AWS_DEFAULT_REGION": "us-east-1",
}


@pytest.fixture(scope="session")
def s3_endpoint() -> Iterator[str]:
    """The URL of an S3-compatible server started for this test session."""
    if importlib.util.find_spec("moto") is None or importlib.util.find_spec("boto3") is None:
        reason = "boto3 and moto[server] are not installed: pip install -e '.[test]'"
        if IN_CI:
            pytest.fail(reason)
        pytest.skip(reason)
    from moto.server import ThreadedMotoServer

    port = free_port()
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    yield f"http://127.0.0.1:{port}"
    server.stop()


@pytest.fixture
def bucket(s3_endpoint: str, monkeypatch: pytest.MonkeyPatch) -> tuple[str, Any]:
    """A fresh bucket on the test server, and a client of it (credentials set for boto3)."""
    import boto3

    for name, value in CREDENTIALS.items():
        monkeypatch.setenv(name, value)
    client = boto3.client("s3", endpoint_url=s3_endpoint)
    name = f"bundles-{uuid.uuid4().hex[:10]}"
    client.create_bucket(Bucket=name)
    return name, client
