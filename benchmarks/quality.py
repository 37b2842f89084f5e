"""Recommendation quality and training time on UCI Online Retail.

Reads ``../shared/data/online-retail/online-retail-all.csv.xz`` through the project's reader,
trains everything with :func:`app.ml.recommender.train_recommender` and prints the evaluation
tables (models fitted on each customer's events before their time cutoff, the served placements
scored through the serving path on the explore and next-basket targets) and the fit times.

    OPENBLAS_NUM_THREADS=2 python benchmarks/quality.py [--json] [--rows N] [--set key=value]
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from app.datasets.online_retail import read_online_retail, to_event_log  # noqa: E402
from app.ml.recommender import RecommenderConfig, train_recommender  # noqa: E402

DATA = ROOT.parent / "shared" / "data" / "online-retail" / "online-retail-all.csv.xz"


def _parse_value(raw: str) -> object:
    try:
        return json.loads(raw)
    except json.JSONDecodeError:
        return raw


def main() -> None:
    """Run the benchmark and print the table."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=DATA)
    parser.add_argument("--rows", type=int, default=None, help="only the first N clean rows")
    parser.add_argument("--json", action="store_true", help="print the metrics JSON too")
    parser.add_argument("--set", action="append", default=[], help="config override key=value")
    args = parser.parse_args()
    if not args.data.exists():
        sys.exit(f"Online Retail file not found at {args.data} (see ../shared/data/README.md)")

    t0 = time.perf_counter()
    reader = read_online_retail(args.data)
    rows = []
    for row in reader:
        rows.append(row)
        if args.rows is not None and len(rows) >= args.rows:
            break
    events, catalog = to_event_log(rows)
    read_s = time.perf_counter() - t0
    print(f"read {reader.kept} rows in {read_s:.1f}s; dropped {dict(reader.dropped)}")
    print(f"{len(events)} events, {len(set(events.user_ids))} users, {len(catalog)} items")

    overrides = dict(item.split("=", 1) for item in args.set)
    config = RecommenderConfig.from_dict({k: _parse_value(v) for k, v in overrides.items()})
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
    if args.json:
        print(json.dumps(metrics, indent=1))


if __name__ == "__main__":
    main()
