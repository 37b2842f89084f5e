"""Helpers of the fault tests: the synthetic shop, settings, seeding, latency figures."""

from __future__ import annotations

import time
import uuid
from pathlib import Path

import numpy as np

from app.config import Settings
from app.datasets.synthetic import SyntheticShop, generate_shop
from app.db import make_engine, make_sessionmaker
from app.demo import import_shop
from app.training.runner import train_now

SHOP = generate_shop(n_users=300, n_items=120, n_events=12_000, seed=3)
# Nobody is rate limited here: a limiter's 429 would hide what a fault does to the answers.
NO_LIMITS = {"read": "1000000/second", "write": "1000000/second", "admin": "1000000/second"}


def make_settings(tmp_path: Path, database_url: str, redis_url: str | None, **over) -> Settings:
    """Settings of one fault test: its store, its cache, its model directory, no rate limits."""
    values = {
        "database_url": database_url,
        "redis_url": redis_url,
        "data_dir": tmp_path / "data",
        "model_dir": tmp_path / "models",
        "cache_prefix": f"tmfault:{uuid.uuid4().hex[:8]}:",
        "model_poll_seconds": 0.2,
        "rate_limits": NO_LIMITS,
        **over,
    }
    return Settings(**values)


def seed_and_train(settings: Settings, shop: SyntheticShop = SHOP) -> None:
    """Import the synthetic shop into the store and train model version 1 in this process."""
    import_shop(make_sessionmaker(make_engine(settings.resolved_database_url)), shop)
    result = train_now(settings)
    assert result["version"] == 1, result


def buyers(shop: SyntheticShop = SHOP, count: int = 20) -> list[str]:
    """Users with the most purchases (personalised answers), in a fixed order."""
    purchases: dict[str, int] = {}
    for user_id, type_ in zip(shop.events.user_id, shop.events.type, strict=True):
        if type_ == "purchase":
            purchases[str(user_id)] = purchases.get(str(user_id), 0) + 1
    return sorted(purchases, key=lambda u: (-purchases[u], u))[:count]


def percentile(values: list[float], q: float) -> float:
    """The q-th percentile (0 for no values)."""
    return float(np.percentile(values, q)) if values else 0.0


def latency_line(label: str, seconds: list[float]) -> str:
    """'label: n answers, p50/p99/max in ms' for printing."""
    ms = [s * 1000 for s in seconds]
    return (
        f"{label}: {len(ms)} answers, p50 {percentile(ms, 50):.1f} ms, "
        f"p99 {percentile(ms, 99):.1f} ms, max {max(ms, default=0):.1f} ms"
    )


def wait_for(predicate, timeout: float, what: str, interval: float = 0.05) -> float:
    """Poll until `predicate()` is true; return the seconds it took, or fail saying `what`."""
    started = time.monotonic()
    while time.monotonic() - started < timeout:
        if predicate():
            return time.monotonic() - started
        time.sleep(interval)
    raise AssertionError(f"{what} did not happen within {timeout}s")
