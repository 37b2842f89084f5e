"""Shared fixtures of the recommender-core tests: tiny matrices and Online Retail slices."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from scipy import sparse

from app.ml.history import UserHistory
from app.ml.interactions import Catalog, EventLog

ONLINE_RETAIL = (
    Path(__file__).resolve().parents[3]
    / "shared"
    / "data"
    / "online-retail"
    / "online-retail-all.csv.xz"
)


def online_retail_path() -> Path:
    """Return the Online Retail file, failing the test with a clear message when absent."""
    if not ONLINE_RETAIL.exists():
        pytest.fail(
            f"Online Retail data not found at {ONLINE_RETAIL}; tests read it from "
            "../shared/data/online-retail/ (see ../shared/data/README.md)"
        )
    return ONLINE_RETAIL


@pytest.fixture(scope="session")
def online_retail_slice() -> tuple[EventLog, Catalog]:
    """The first 60,000 clean purchase rows of Online Retail as an event log and catalogue."""
    from app.datasets.online_retail import read_online_retail, to_event_log

    rows = []
    for row in read_online_retail(online_retail_path()):
        rows.append(row)
        if len(rows) >= 60_000:
            break
    return to_event_log(rows)


@pytest.fixture
def tiny_matrix() -> sparse.csr_matrix:
    """A 5 users x 6 items implicit matrix with graded values."""
    dense = np.array(
        [
            [1, 2, 0, 0, 1, 0],
            [0, 1, 3, 0, 0, 1],
            [2, 0, 1, 1, 0, 0],
            [0, 0, 0, 2, 1, 1],
            [1, 1, 0, 0, 2, 0],
        ],
        dtype=np.float32,
    )
    return sparse.csr_matrix(dense)


def clustered_events(n_users: int = 120, seed: int = 0) -> tuple[EventLog, Catalog]:
    """Synthetic shop with 3 taste clusters of 8 items, plus 2 catalogue items never bought."""
    rng = np.random.default_rng(seed)
    clusters = [[f"c{c}i{i}" for i in range(8)] for c in range(3)]
    users, items, times = [], [], []
    for u in range(n_users):
        cluster = clusters[u % 3]
        chosen = rng.choice(len(cluster), size=int(rng.integers(3, 7)), replace=False)
        for j, idx in enumerate(chosen):
            users.append(f"u{u}")
            items.append(cluster[idx])
            times.append(1_600_000_000.0 + u * 1000 + j * 10)
    events = EventLog.from_lists(users, items, "purchase", None, times)
    colours = ["red", "green", "blue"]
    ids = [i for c in clusters for i in c] + ["new_a", "new_b"]
    titles = [f"{colours[int(i[1])]} gadget {i}" for i in ids[:-2]] + [
        "red gadget deluxe",
        "unrelated teapot",
    ]
    catalog = Catalog(
        item_ids=ids,
        titles=titles,
        descriptions=[""] * len(ids),
        categories=[[f"cat{i[1]}"] if i.startswith("c") else [] for i in ids[:-2]] + [["cat0"], []],
        available=np.ones(len(ids), dtype=bool),
    )
    return events, catalog


def as_history(
    items: list[str], types: list[str] | None = None, times: list[float] | None = None
) -> UserHistory:
    """A served history of these items, newest first (views at one instant by default)."""
    return UserHistory(
        items,
        types or ["view"] * len(items),
        [None] * len(items),
        times or [0.0] * len(items),
    )
