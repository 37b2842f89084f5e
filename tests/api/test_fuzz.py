"""Schemathesis against the app's own OpenAPI schema, on the embedded defaults.

Every operation but POST /retrain (it would start a real trainer process per example) is fuzzed
with valid and invalid inputs, 25 examples each, on a seeded and trained synthetic shop; half the
time path ids are swapped for ids the shop really has, so handlers run past their 404s. Two
properties per answer: it is not a 5xx, and it conforms to the schema the app publishes.

The operations are listed at collection time from `create_app(...).openapi()` (building the app
does no I/O; its lifespan does), one pytest item per operation; the fixture then loads the
served schema with `schemathesis.openapi.from_asgi("/openapi.json", app)` and the first test
checks both are the same document. (schemathesis's own `parametrize()` gives every operation
the same node id under this pytest, and its lazy `from_fixture` loader fails on
`Function._nodeid`; hence the plain `pytest.mark.parametrize` over `as_strategy()`.)
"""

from __future__ import annotations

import shutil
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import schemathesis
from fastapi import FastAPI
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from schemathesis import GenerationMode
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import response_schema_conformance

from app.config import DEFAULT_EVENT_WEIGHTS, Settings
from app.datasets.synthetic import generate_shop
from app.db import make_engine, make_sessionmaker
from app.demo import import_shop
from app.main import create_app
from app.training.runner import train_now

MAX_EXAMPLES = 25
SHOP = generate_shop(n_users=60, n_items=40, n_events=2_000, seed=11)
KNOWN: dict[str, list[Any]] = {
    "user_id": sorted(u.user_id for u in SHOP.users)[:20],
    "item_id": sorted(i.item_id for i in SHOP.items)[:20],
    "segment_id": list(range(-1, 8)),
    "run_id": [1],
    "version": [1],
    "export_id": [1],
}
# POST /retrain would start a trainer process for every example.
NOT_FUZZED = {"POST /retrain"}

OPENAPI = create_app(Settings(database_url="sqlite://")).openapi()
schema = schemathesis.openapi.from_dict(OPENAPI)
LABELS = [
    label
    for label in (
        f"{result.ok().method.upper()} {result.ok().path}" for result in schema.get_all_operations()
    )
    if label not in NOT_FUZZED
]


@schema.hook
def flatmap_path_parameters(_context: Any, path_parameters: dict[str, Any] | None) -> Any:
    """Half the time, replace generated ids by ids the seeded shop really has."""
    real = {name: KNOWN[name] for name in path_parameters or {} if name in KNOWN}
    if not real:
        return st.just(path_parameters)
    swapped = st.fixed_dictionaries(
        {name: st.sampled_from(values) for name, values in real.items()}
    ).map(lambda ids: {**(path_parameters or {}), **ids})
    return st.one_of(st.just(path_parameters), swapped)


@schema.hook
def flatmap_body(context: Any, body: Any) -> Any:
    """Half the time, give generated events a configured type, so that some batches are stored."""
    events = body.get("events") if isinstance(body, dict) else None
    if (
        context.operation is None
        or context.operation.path != "/events"
        or not isinstance(events, list)
        or not all(isinstance(event, dict) for event in events)
    ):
        return st.just(body)
    types = st.lists(
        st.sampled_from(list(DEFAULT_EVENT_WEIGHTS)), min_size=len(events), max_size=len(events)
    )
    typed = types.map(
        lambda chosen: {
            **body,
            "events": [{**e, "type": t} for e, t in zip(events, chosen, strict=True)],
        }
    )
    return st.one_of(st.just(body), typed)


@pytest.fixture(scope="module")
def served(
    tmp_path_factory: pytest.TempPathFactory, sqlite_template: Path
) -> Iterator[tuple[FastAPI, dict[str, Any]]]:
    """The app on SQLite + in-process cache, seeded, at model version 1; and its served schema."""
    from schemathesis.python import asgi

    root = tmp_path_factory.mktemp("fuzz")
    shutil.copy(sqlite_template, root / "tastemaker.db")
    app_settings = Settings(
        database_url=f"sqlite:///{root / 'tastemaker.db'}",
        redis_url=None,
        data_dir=root,
        model_dir=root / "models",
        # The limiter's 429s would keep the fuzzer from the handlers.
        rate_limits={"read": "100000/second", "write": "100000/second", "admin": "100000/second"},
        webhook_secret="fuzz-secret",  # enables POST /webhooks/events
    )
    import_shop(make_sessionmaker(make_engine(app_settings.resolved_database_url)), SHOP)
    train_now(app_settings)
    app = create_app(app_settings)
    # Starts the app's lifespan (kept for every case) and reads /openapi.json from it.
    loaded = schemathesis.openapi.from_asgi("/openapi.json", app)
    assert app.state.registry.current is not None and app.state.registry.current.version == 1
    try:
        yield app, loaded.raw_schema
    finally:
        asgi.shutdown_lifespans()


def test_the_fuzzed_schema_is_the_served_one(served: tuple[FastAPI, dict[str, Any]]) -> None:
    assert served[1] == OPENAPI


@pytest.mark.parametrize("label", LABELS)
def test_no_server_error_and_every_answer_matches_the_schema(
    label: str, served: tuple[FastAPI, dict[str, Any]]
) -> None:
    app = served[0]
    operation = schema.find_operation_by_label(label)
    assert operation is not None
    statuses: Counter[int] = Counter()
    cases = st.one_of(
        operation.as_strategy(GenerationMode.POSITIVE),
        operation.as_strategy(GenerationMode.NEGATIVE),
    )

    @given(case=cases)
    @settings(
        max_examples=MAX_EXAMPLES,
        deadline=None,
        suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much],
    )
    def fuzz(case: Any) -> None:
        response = case.call(app=app)
        statuses[response.status_code] += 1
        case.validate_response(response, checks=[not_a_server_error, response_schema_conformance])

    fuzz()
    print(f"{label}: {sum(statuses.values())} answers, statuses {dict(sorted(statuses.items()))}")
