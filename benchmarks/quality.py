"""Recommendation quality and training time on UCI Online Retail.

Reads ``../shared/data/online-retail/online-retail-all.csv.xz`` through the project's reader,
trains everything with :func:`app.ml.recommender.train_recommender` and prints the evaluation
tables (models fitted on each customer's events before their time cutoff, the served placements
scored through the serving path on the explore and next-basket targets) and the fit times.

    OPENBLAS_NUM_THREADS=2 python -m benchmarks quality [--json] [--rows N] [--set key=value]

``--set aggregation='"binary"'`` pins a recommender setting, ``--set item_knn.k=50`` one
model's (the previous release's flat ``item_knn_k=50`` is read too).
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path
from typing import Any

from app.datasets.online_retail import read_online_retail, to_event_log
from app.ml.recommender import RecommenderConfig, train_recommender

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT.parent / "shared" / "data" / "online-retail" / "online-retail-all.csv.xz"


def _parse_value(raw: str) -> object:
    try:
        return json.loads(raw)
    except json.JSONDecodeError:
        return raw


def _overrides(items: list[str]) -> dict[str, Any]:
    """``key=value`` settings as a config mapping; a dotted key sets a model's parameter."""
    out: dict[str, Any] = {}
    for item in items:
        key, raw = item.split("=", 1)
        section, dot, field = key.partition(".")
        if dot:
            out.setdefault(section, {})[field] = _parse_value(raw)
        else:
            out[key] = _parse_value(raw)
    return out


def run_quality(data: Path, rows: int | None, as_json: bool, overrides: list[str]) -> None:
    """Train on the first `rows` clean rows of `data` (all when None) and print the tables.

    `overrides` are ``key=value`` recommender settings (values parsed as JSON when they can be);
    `as_json` also prints the metrics as JSON.
    """
    if not data.exists():
        sys.exit(f"Online Retail file not found at {data} (see ../shared/data/README.md)")

    t0 = time.perf_counter()
    reader = read_online_retail(data)
    kept = []
    for row in reader:
        kept.append(row)
        if rows is not None and len(kept) >= rows:
            break
    events, catalog = to_event_log(kept)
    read_s = time.perf_counter() - t0
    print(f"read {reader.kept} rows in {read_s:.1f}s; dropped {dict(reader.dropped)}")
    print(f"{len(events)} events, {len(set(events.user_ids))} users, {len(catalog)} items")

    config = RecommenderConfig.from_dict(_overrides(overrides))
    t0 = time.perf_counter()
    trained = train_recommender(events, catalog, config, progress=lambda m: print(f"  .. {m}"))
    train_s = time.perf_counter() - t0

    metrics = trained.metrics
    names = ("precision", "recall", "f1", "ndcg", "map", "hit_rate", "coverage")
    print(f"\nprotocol: {json.dumps(metrics['protocol'])}")
    targets = {"models": "explore target (items new to the user)", "next_basket": "next basket"}
    for target, title in targets.items():
        width = max(len(m) for m in metrics[target]) + 2
        print(f"\n{title}\n{'model':<{width}}" + "".join(f"{n:>10}" for n in names))
        for model, values in metrics[target].items():
            print(f"{model:<{width}}" + "".join(f"{values[n]:>10.4f}" for n in names))
    print(f"\nblend weights: {json.dumps(metrics['blend']['weights'])}")
    blend = {key: value for key, value in metrics["blend"].items() if key != "weights"}
    print(f"tuning: {json.dumps(blend)}")
    print("\nfit times (s):")
    for phase, seconds in trained.timings.items():
        print(f"  {phase:<28}{seconds:8.2f}")
    print(f"train_recommender total: {train_s:.1f}s")
    if as_json:
        print(json.dumps(metrics, indent=1))
