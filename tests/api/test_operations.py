"""Operating it: /metrics counted after real requests, JSON access lines with request ids."""

from __future__ import annotations

import logging
import time
import uuid

import orjson
import pytest
from fastapi.testclient import TestClient
from prometheus_client.parser import text_string_to_metric_families

from app import logs
from app.datasets.synthetic import generate_shop
from app.db import make_engine, make_sessionmaker
from app.demo import import_shop
from app.main import create_app
from app.security.keys import hash_key
from tests.conftest import override, wait_for_version

READ_KEY, WRITE_KEY, ADMIN_KEY = "tm_read_ops_1", "tm_write_ops_2", "tm_admin_ops_3"
KEYS = [
    {"name": "web", "sha256": hash_key(READ_KEY), "scopes": ["read"]},
    {"name": "ingest", "sha256": hash_key(WRITE_KEY), "scopes": ["write"]},
    {"name": "ops", "sha256": hash_key(ADMIN_KEY), "scopes": ["admin"]},
]
SHOP = generate_shop(n_users=60, n_items=40, n_events=2_000, seed=11)


def _auth(key: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"}


@pytest.fixture
def ops(settings):
    app = create_app(override(settings, api_keys=KEYS, log_format="json"))
    with TestClient(app) as client:
        yield client


def _scrape(client: TestClient) -> dict[tuple[str, tuple], float]:
    response = client.get("/metrics", headers=_auth(ADMIN_KEY))
    assert response.status_code == 200, response.text
    assert response.headers["content-type"].startswith("text/plain")
    samples = {}
    for family in text_string_to_metric_families(response.text):
        for sample in family.samples:
            samples[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    return samples


def _delta(after: dict, before: dict, name: str, **labels: str) -> float:
    key = (name, tuple(sorted(labels.items())))
    return after.get(key, 0.0) - before.get(key, 0.0)


def test_metrics_need_the_admin_scope(ops):
    assert ops.get("/metrics").status_code == 401
    assert ops.get("/metrics", headers=_auth(READ_KEY)).status_code == 403


def test_metrics_count_requests_events_and_answers(ops):
    before = _scrape(ops)
    event = {"user_id": "m1", "item_id": "i1", "type": "view", "event_id": "ops-e1"}
    assert (
        ops.post("/events", json={"events": [event]}, headers=_auth(WRITE_KEY)).status_code == 200
    )
    again = ops.post("/events", json={"events": [event]}, headers=_auth(WRITE_KEY)).json()
    assert again["duplicates"] == 1
    clash = {**event, "item_id": "i2"}
    assert ops.post("/events", json={"events": [clash]}, headers=_auth(WRITE_KEY)).status_code
    for _ in range(3):
        assert ops.get("/recommend/m1", headers=_auth(READ_KEY)).status_code == 200
    assert ops.get("/recommend/m1", headers=_auth("tm_wrong")).status_code == 401
    after = _scrape(ops)

    requests = "tastemaker_http_requests_total"
    route = "/recommend/{user_id}"
    assert _delta(after, before, requests, method="GET", route=route, status="200") == 3
    assert _delta(after, before, requests, method="GET", route=route, status="401") == 1
    assert _delta(after, before, requests, method="POST", route="/events", status="200") >= 2
    latency = "tastemaker_http_request_duration_seconds_count"
    assert _delta(after, before, latency, method="GET", route=route) == 4
    events = "tastemaker_events_total"
    assert _delta(after, before, events, outcome="accepted") == 1
    assert _delta(after, before, events, outcome="duplicate") == 1
    assert _delta(after, before, events, outcome="conflicting") == 1
    answers = "tastemaker_recommendations_total"
    assert _delta(after, before, answers, source="fallback", placement="explore") == 3
    assert _delta(after, before, "tastemaker_auth_failures_total") == 1
    lookups = "tastemaker_cache_lookups_total"
    # The event dropped m1's record: the first answer is computed, the next two come cached.
    assert _delta(after, before, lookups, tier="local", result="hit") == 2
    assert _delta(after, before, lookups, tier="local", result="miss") >= 1


def test_rate_limit_rejections_are_counted(settings):
    # A key of its own: a limit kept in Redis outlives the test.
    reader = "tm_read_" + uuid.uuid4().hex
    keys = [*KEYS, {"name": reader[:20], "sha256": hash_key(reader), "scopes": ["read"]}]
    limited = override(settings, api_keys=keys, rate_limits={"read": "2/minute"})
    with TestClient(create_app(limited)) as client:
        before = _scrape(client)
        codes = [client.get("/recommend/r1", headers=_auth(reader)).status_code for _ in range(3)]
        after = _scrape(client)
    assert codes == [200, 200, 429]
    assert _delta(after, before, "tastemaker_rate_limited_total", kind="read") == 1


def test_a_retrain_shows_in_the_model_and_training_metrics(ops, settings):
    import_shop(make_sessionmaker(make_engine(settings.resolved_database_url)), SHOP)
    before = _scrape(ops)
    accepted = ops.post("/retrain", headers=_auth(ADMIN_KEY)).json()
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        run = ops.get(accepted["status_url"], headers=_auth(ADMIN_KEY)).json()
        if run["status"] in ("succeeded", "failed"):
            break
        time.sleep(0.3)
    assert run["status"] == "succeeded", run
    wait_for_version(_Authed(ops), 1)
    after = _scrape(ops)
    assert after[("tastemaker_model_version", ())] == 1
    assert _delta(after, before, "tastemaker_model_swaps_total") >= 1
    assert after[("tastemaker_training_runs", (("status", "succeeded"),))] == 1
    assert after[("tastemaker_training_run_seconds_count", (("status", "succeeded"),))] == 1
    assert after[("tastemaker_training_run_seconds_sum", (("status", "succeeded"),))] > 0


class _Authed:
    """The client, with the admin key on every GET (for wait_for_version)."""

    def __init__(self, client: TestClient) -> None:
        self.client = client

    def get(self, url: str, **kwargs):
        return self.client.get(url, headers=_auth(ADMIN_KEY), **kwargs)


def _json_lines(text: str) -> list[dict]:
    lines = []
    for line in text.splitlines():
        if line.startswith("{"):
            lines.append(orjson.loads(line))
    return lines


def test_one_json_access_line_per_request_with_its_id_and_key_name(ops, capfd):
    capfd.readouterr()
    response = ops.get(
        "/recommend/someone", headers={**_auth(READ_KEY), "X-Request-ID": "req-42.a:b"}
    )
    assert response.headers["x-request-id"] == "req-42.a:b"
    odd = ops.get("/recommend/someone", headers={**_auth(READ_KEY), "X-Request-ID": "a b!"})
    generated = odd.headers["x-request-id"]
    assert generated != "a b!" and len(generated) == 16
    secret = "tm_never_logged_0123"
    assert ops.get("/recommend/someone", headers=_auth(secret)).status_code == 401
    logs.flush()  # workers write access lines once a second (app/logs.py)
    err = capfd.readouterr().err
    assert secret not in err
    lines = _json_lines(err)
    access = [line for line in lines if line["logger"] == "tastemaker.access"]
    assert [line["request_id"] for line in access[:2]] == ["req-42.a:b", generated]
    first = access[0]
    assert first["route"] == "/recommend/{user_id}" and first["status"] == 200
    assert first["key"] == "web" and first["method"] == "GET"
    assert isinstance(first["duration_ms"], float) and first["level"] == "info"
    assert access[2]["status"] == 401 and access[2]["key"] is None
    failed = [line for line in lines if line["message"] == "authentication failed"]
    assert len(failed) == 1 and failed[0]["reason"] == "the API key is not valid"
    assert failed[0]["level"] == "warning"


def test_uvicorn_writes_no_access_line_of_its_own(ops):
    # Ours is the one access line per request; uvicorn writes one whenever its access logger
    # (or a parent it propagates to) has a handler.
    import logging

    uvicorn_access = logging.getLogger("uvicorn.access")
    assert not uvicorn_access.propagate
    # pytest's own capture handlers aside (it attaches them to loggers under test).
    assert all(type(h).__name__ == "LogCaptureHandler" for h in uvicorn_access.handlers)


def test_batched_request_counts_come_out_as_direct_observations():
    """metrics.flush() adds to prometheus-client's histogram what observe() would have."""
    from prometheus_client import CollectorRegistry, Histogram

    from app import metrics

    route = f"/probe/{uuid.uuid4().hex[:8]}"
    answers = [(200, d) for d in (0.0001, 0.0005, 0.0007, 0.003, 0.003, 0.04, 2.0, 9.0)]
    answers.append((503, 0.2))
    for status, seconds in answers:
        metrics.observe_request("GET", route, status, seconds)

    def latency(family_source) -> dict[tuple[str, str | None], float]:
        [family] = family_source.collect()
        return {
            (s.name.rsplit("_", 1)[-1], s.labels.get("le")): s.value
            for s in family.samples
            if s.labels.get("route", route) == route and not s.name.endswith("_created")
        }

    assert latency(metrics.LATENCY) == {}  # counted, not yet added
    metrics.flush()
    reference = Histogram(
        "probe", "", ["method", "route"], buckets=metrics._LATENCY_BUCKETS,
        registry=CollectorRegistry(),
    )  # fmt: skip
    for _, seconds in answers:
        reference.labels("GET", route).observe(seconds)
    assert latency(metrics.LATENCY) == pytest.approx(latency(reference))
    requests = {
        s.labels["status"]: s.value
        for s in next(iter(metrics.REQUESTS.collect())).samples
        if s.labels["route"] == route and s.name.endswith("_total")
    }
    assert requests == {"200": 8, "503": 1}


def test_kept_log_lines_are_written_in_order_within_a_second(ops, capfd):
    capfd.readouterr()
    for number in range(3):
        ops.get("/recommend/someone", headers={**_auth(READ_KEY), "X-Request-ID": f"kept-{number}"})
    logging.getLogger("tastemaker.test").warning("a warning writes what is kept before it")
    ops.get("/recommend/someone", headers={**_auth(READ_KEY), "X-Request-ID": "kept-3"})
    ours = ("tastemaker.access", "tastemaker.test")

    def written() -> list[str | None]:
        lines = _json_lines(capfd.readouterr().err)
        return [line.get("request_id") for line in lines if line["logger"] in ours]

    assert written() == ["kept-0", "kept-1", "kept-2", None]
    time.sleep(1.5)  # the app's flush, once a second
    assert written() == ["kept-3"]


@pytest.mark.parametrize("log_format", ["json", "console"])
def test_an_access_line_written_straight_to_the_handler_is_the_line_logging_writes(
    log_format, capfd
):
    # Under pytest the root logger also holds the capture handlers, so requests take logging's
    # own path; here the worker's handler is alone, as in a served worker.
    root = logging.getLogger()
    saved, level = root.handlers[:], root.level
    fields = {"request_id": "r-1", "route": "/recommend/{user_id}", "status": 200, "key": None}
    try:
        logs.configure(log_format, "INFO", buffered=True)
        root.handlers[:] = [h for h in root.handlers if getattr(h, "_tastemaker", False)]
        capfd.readouterr()
        logs.access("GET /recommend/{user_id} 200", fields)
        assert logs._only_sink() is not None  # the direct path was taken
        logging.getLogger(logs.ACCESS).info(
            "GET /recommend/{user_id} 200", extra={"fields": fields}
        )
        root.addHandler(logging.NullHandler())  # another place to write: logging's path again
        assert logs._only_sink() is None
        logs.access("GET /recommend/{user_id} 200", fields)
        logs.flush()
        direct, logged, other = capfd.readouterr().err.splitlines()
    finally:
        root.handlers[:] = saved
        root.setLevel(level)
    if log_format == "json":
        direct, logged, other = (orjson.loads(line) for line in (direct, logged, other))
        assert direct.pop("ts") and logged.pop("ts") and other.pop("ts")
        assert direct == {"level": "info", "logger": "tastemaker.access", **fields} | {
            "message": "GET /recommend/{user_id} 200"
        }
    else:  # the date and the time are the first two words
        direct, logged, other = (line.split(" ", 2)[2] for line in (direct, logged, other))
        assert direct.startswith(
            "INFO    tastemaker.access GET /recommend/{user_id} 200 request_id=r-1"
        )
    assert direct == logged == other
