"""Customer segments of UCI Online Retail: chosen k, profile tables, quality and stability.

Reads ``../shared/data/online-retail/online-retail-all.csv.xz`` with the project's streaming
reader (stdlib csv + lzma; it drops rows without CustomerID, cancellations, non-positive
quantities or prices, non-product codes such as POST or BANK CHARGES, and duplicated rows),
turns the purchase lines into per-customer aggregates (orders = distinct invoices, monetary =
sum of quantity x unit price), fits :class:`app.ml.segmentation.CustomerSegmentation` and
prints K-means and DBSCAN profiles, the quality figures, the seed-stability ARI, the fit time
and the latency of a live single-customer assignment.

The file has no categories, so each item gets one from its description by keyword: the first
bucket of ``CATEGORY_KEYWORDS`` that shares a word with the description, else "Other".

    OPENBLAS_NUM_THREADS=2 python -m benchmarks segments-report [--k K] [--json]
"""

from __future__ import annotations

import json
import re
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

from app.datasets.online_retail import read_online_retail
from app.ml.segmentation import (
    CustomerAggregates,
    CustomerSegmentation,
    ItemCounts,
    aggregate_events,
)

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT.parent / "shared" / "data" / "online-retail" / "online-retail-all.csv.xz"

# First match wins, so the specific buckets (seasonal, lighting) come before the generic ones.
# fmt: off
_KEYWORDS = (
    ("Christmas & seasonal", "CHRISTMAS XMAS EASTER ADVENT SNOWFLAKE REINDEER SANTA WREATH "
     "HALLOWEEN SNOW NATIVITY BAUBLE"),
    ("Candles & lighting", "CANDLE CANDLES T-LIGHT T-LIGHTS TEALIGHT LANTERN LIGHT LIGHTS LAMP "
     "NIGHTLIGHT INCENSE BURNER LAMPSHADE CANDLEHOLDER"),
    ("Jewellery & accessories", "NECKLACE EARRINGS BRACELET RING CHARM BEAD BEADS DIAMANTE HAIR "
     "BROOCH JEWELLED PURSE UMBRELLA BANGLE"),
    ("Bags", "BAG BAGS SHOPPER TOTE BACKPACK WASHBAG HANDBAG LUGGAGE"),
    ("Party & gifts", "PARTY BUNTING BALLOON BALLOONS BIRTHDAY GARLAND CONFETTI GIFT NAPKINS "
     "RIBBON RIBBONS REEL TAG TAGS"),
    ("Stationery & cards", "CARD CARDS PAPER NOTEBOOK NOTEBOOKS PEN PENS PENCIL PENCILS WRAP "
     "STICKERS STICKER TAPE ENVELOPE CALENDAR BOOK ERASER CRAYONS"),
    ("Kitchen & dining", "MUG MUGS CUP CUPS SAUCER PLATE PLATES BOWL BOWLS CAKE TEA TEAPOT JAR "
     "BOTTLE LUNCH CUTLERY SPOON KITCHEN PANTRY BAKING APRON TRAY DISH COFFEE TIN TINS JAM "
     "CHOPSTICKS GLASSES BEAKER PAN JUG FOOD FRIDGE MILK"),
    ("Toys & games", "TOY TOYS GAME GAMES DOLL DOLLY JIGSAW PUZZLE SPACEBOY PLAYING SKITTLES "
     "DOMINOES CHILDRENS KIDS"),
    ("Garden", "GARDEN PLANT PLANTER POT POTS WATERING BIRD BIRDHOUSE FEEDER"),
    ("Textiles & bath", "TOWEL BLANKET CUSHION THROW BATHROOM SOAP TISSUES SPONGE HOT-WATER "
     "WARMER"),
    ("Home decor", "FRAME SIGN CLOCK MIRROR DECORATION ORNAMENT HANGING WALL DOORMAT CABINET "
     "DRAWER KNOB HOOK HOOKS VASE PLAQUE ART TILE HEART HEARTS DOORSTOP CURTAIN MAGNETS FLOWER "
     "FLOWERS ARTIFICIAL LETTERS"),
    ("Storage", "BOX BOXES BASKET STORAGE CASE CASES HOLDER HANGER CRATE RACK BIN"),
)
# fmt: on
CATEGORY_KEYWORDS: dict[str, frozenset[str]] = {
    name: frozenset(words.split()) for name, words in _KEYWORDS
}


def category_of(description: str) -> str:
    """The keyword bucket of an item description, "Other" when none matches."""
    words = set(re.split(r"[\s,/.]+", description.upper()))
    for name, keys in CATEGORY_KEYWORDS.items():
        if words & keys:
            return name
    return "Other"


def load(path: Path) -> tuple[CustomerAggregates, ItemCounts, dict[str, Any]]:
    """Read the file and build the per-customer aggregates and item counts."""
    reader = read_online_retail(path)
    users, items, values, times, invoices = [], [], [], [], []
    descriptions: dict[str, str] = {}
    for row in reader:
        users.append(row.user_id)
        items.append(row.item_id)
        values.append(row.value)
        times.append(row.occurred_at.timestamp())
        invoices.append(row.invoice)
        if not descriptions.get(row.item_id):
            descriptions[row.item_id] = row.description
    t = np.asarray(times)
    item_categories = {item: [category_of(d)] for item, d in descriptions.items()}
    agg, item_counts = aggregate_events(
        user_ids=np.asarray(users),
        item_ids=np.asarray(items),
        event_types=np.full(len(users), "purchase"),
        values=np.asarray(values),
        occurred_at=t,
        order_ids=np.asarray(invoices),
        item_categories=item_categories,
        now=float(t.max()) + 86_400.0,  # the day after the last invoice, as RFM studies do
    )
    summary = {
        "rows": reader.kept,
        "dropped": dict(reader.dropped),
        "customers": len(agg),
        "items": len(descriptions),
        "invoices": len(set(invoices)),
        "category_sizes": {
            c: sum(1 for v in item_categories.values() if v[0] == c)
            for c in [*CATEGORY_KEYWORDS, "Other"]
        },
    }
    return agg, item_counts, summary


def _num(x: float | None, fmt: str = ".1f") -> str:
    return "-" if x is None else format(x, fmt)


def profile_table(profiles: list[dict[str, Any]]) -> str:
    """Profiles as a fixed-width text table."""
    head = (
        f"{'id':>3}  {'label':<36} {'size':>5} {'share':>6} {'rec med':>7} {'rec avg':>7} "
        f"{'F med':>5} {'F avg':>6} {'M med':>8} {'M avg':>8} {'AOV med':>7}  "
        f"top RFM group      top categories / items"
    )
    lines = [head, "-" * len(head)]
    for p in profiles:
        rfm = next(iter(p["rfm_groups"]), "-")
        cats = ", ".join(f"{c['category']} {c['share']:.0%}" for c in p["top_categories"][:2])
        items = ", ".join(i["item_id"] for i in p.get("top_items", [])[:3])
        lines.append(
            f"{p['segment_id']:>3}  {p['label'][:36]:<36} {p['size']:>5} {p['share']:>6.1%} "
            f"{_num(p['recency_days']['median'], '.0f'):>7} "
            f"{_num(p['recency_days']['mean'], '.0f'):>7} "
            f"{_num(p['frequency']['median'], '.0f'):>5} {_num(p['frequency']['mean']):>6} "
            f"{_num(p['monetary']['median'], '.0f'):>8} {_num(p['monetary']['mean'], '.0f'):>8} "
            f"{_num(p['avg_order_value']['median'], '.0f'):>7}  {rfm:<18} {cats}; {items}"
        )
    return "\n".join(lines)


def run_segments_report(
    data: Path, k: int | None, min_samples: int, seed: int, as_json: bool
) -> None:
    """Segment the customers of `data` and print profiles, quality, stability and latency.

    `k` fixes the number of K-means clusters (None: chosen by silhouette), `min_samples` is
    DBSCAN's, `seed` the K-means seed (stability compares it with `seed + 1`); `as_json` also
    prints the quality figures as JSON.
    """
    if not data.exists():
        sys.exit(f"Online Retail file not found at {data} (see ../shared/data/README.md)")

    t0 = time.perf_counter()
    agg, item_counts, summary = load(data)
    load_s = time.perf_counter() - t0
    print(
        f"read {summary['rows']} clean purchase lines in {load_s:.1f}s; "
        f"dropped {summary['dropped']}"
    )
    print(
        f"{summary['customers']} customers, {summary['items']} items, "
        f"{summary['invoices']} invoices"
    )
    print(
        "categories (items): " + ", ".join(f"{k} {v}" for k, v in summary["category_sizes"].items())
    )

    model = CustomerSegmentation(k=k, dbscan_min_samples=min_samples, random_state=seed)
    t0 = time.perf_counter()
    model.fit(agg, top_items=item_counts)
    fit_s = time.perf_counter() - t0
    q = model.quality_
    km, db = q["kmeans"], q["dbscan"]

    print(f"\nfit {fit_s:.1f}s (k selection, two K-means fits for stability, DBSCAN, profiles)")
    if km["silhouette_by_k"]:
        print(
            "silhouette by k: "
            + ", ".join(f"k={k} {v:.3f}" for k, v in km["silhouette_by_k"].items())
        )
    print(f"chosen k = {model.k_} ({km['k_selection']})")
    print(f"\nK-means profiles (k={model.k_})")
    print(profile_table(model.profiles("kmeans")))
    print(
        f"\nK-means quality: silhouette {_num(km['silhouette'], '.3f')}, "
        f"Davies-Bouldin {_num(km['davies_bouldin'], '.3f')}, "
        f"Calinski-Harabasz {_num(km['calinski_harabasz'], '.0f')}, "
        f"stability ARI (seed {seed} vs {seed + 1}) {km['stability_ari']:.3f}"
    )
    print(
        f"\nDBSCAN profiles (eps {db['eps']:.3f} from the k-distance knee, "
        f"min_samples {db['min_samples']}, {db['n_clusters']} clusters, "
        f"{db['outlier_share']:.1%} outliers)"
    )
    print(profile_table(model.profiles("dbscan")))
    print(
        f"\nDBSCAN quality (non-outliers): silhouette {_num(db['silhouette'], '.3f')}, "
        f"Davies-Bouldin {_num(db['davies_bouldin'], '.3f')}, "
        f"Calinski-Harabasz {_num(db['calinski_harabasz'], '.0f')}"
    )

    assignment = model.assign(agg)
    groups, counts = np.unique(assignment.rfm_group, return_counts=True)
    order = np.argsort(-counts)
    print("\nRFM groups: " + ", ".join(f"{groups[i]} {counts[i]}" for i in order))

    one = agg.take([0])
    model.assign(one)
    runs = 2000
    t0 = time.perf_counter()
    for _ in range(runs):
        model.assign(one)
    live_us = (time.perf_counter() - t0) / runs * 1e6
    t0 = time.perf_counter()
    model.assign(agg)
    bulk_s = time.perf_counter() - t0
    print(f"live assign of one customer: {live_us:.0f} us; all {len(agg)}: {bulk_s * 1e3:.0f} ms")
    if as_json:
        print(json.dumps(q, indent=2))
