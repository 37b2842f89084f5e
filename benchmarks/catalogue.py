"""What an uncached answer costs the ML core as the catalogue grows: 3.7k, 100k and 1M items.

For each shop (UCI Online Retail, then synthetic shops of :func:`app.datasets.synthetic.
generate_shop`), one subprocess trains the recommender and writes its bundle plus a sample of
the users' histories (as the service reads them, newest first); a second, fresh subprocess
loads the bundle the way a worker does (:func:`app.ml.recommender.load_recommender`, arrays
memory-mapped) and times :meth:`Recommender.recommend_user` — the function behind an uncached
``GET /recommend`` — on every sampled history, then reports its resident memory.

Every shop is fitted with the same settings (``tune`` and ``evaluate`` off: every model of the
default config in the blend with weight 1, user-kNN included, the worst case of the served
cost); the synthetic shops use smaller neighbourhoods so that the 1M-item fit stays within a few
minutes and a few GB. The ratio to the Online Retail figure is the figure of merit (target: the
1M-item shop at most 2x).

    python -m benchmarks catalogue [--sizes 100000,1000000] [--requests 500]

Writes ``benchmarks/results/catalogue/<timestamp>.json``.
"""

from __future__ import annotations

import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated, Any

import typer

from benchmarks import procs
from benchmarks.quality import DATA
from benchmarks.report import RESULTS_DIR
from benchmarks.training import shop_columns

OUT_DIR = RESULTS_DIR / "catalogue"
TARGET_RATIO = 2.0
HISTORIES_FILE = "histories.json"
#: Distinct items of the histories that compare the shops at one history length.
FIXED_HISTORY_ITEMS = 50
#: Events per item and per user of the synthetic shops (Online Retail: 107 and 90).
EVENTS_PER_ITEM = 5
EVENTS_PER_USER = 20
#: Neighbourhoods of the synthetic shops (the defaults are 200 / 100 neighbours per item).
SYNTHETIC_SETTINGS: dict[str, Any] = {
    "item_knn": {"k": 50, "max_votes": 200},
    "rp3beta": {"k": 50},
    "content": {"k": 20, "max_postings": 50},
}
SERVING_ONLY: dict[str, Any] = {"tune": False, "evaluate": False}


def _status_bytes(field: str) -> int:
    """A ``kB`` field of /proc/self/status (VmRSS, RssAnon, RssFile, VmHWM) in bytes."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1]) * 1024
    return 0


def _memory() -> dict[str, int]:
    return {
        "rss_bytes": _status_bytes("VmRSS"),
        "rss_anon_bytes": _status_bytes("RssAnon"),
        "rss_file_bytes": _status_bytes("RssFile"),
    }


def _shop(kind: str, n_items: int) -> tuple[Any, Any]:
    """The events and catalogue of a shop: Online Retail, or a synthetic one of n_items."""
    if kind == "online-retail":
        from app.datasets.online_retail import read_online_retail, to_event_log

        return to_event_log(read_online_retail(DATA))
    from app.datasets.synthetic import generate_shop
    from app.ml.interactions import EventLog

    n_events = EVENTS_PER_ITEM * n_items
    shop = generate_shop(
        n_users=max(1, n_events // EVENTS_PER_USER), n_items=n_items, n_events=n_events, seed=0
    )
    columns, catalog = shop_columns(shop)
    events = EventLog(**columns)
    return events, catalog


def fit_shop(kind: str, n_items: int, out: Path, users: int, seed: int = 0) -> dict[str, Any]:
    """Train a shop's recommender into ``out`` with the sampled users' histories (in-process)."""
    import numpy as np

    from app.ml.history import histories_of
    from app.ml.recommender import RecommenderConfig, train_recommender

    t0 = time.perf_counter()
    events, catalog = _shop(kind, n_items)
    generate_s = time.perf_counter() - t0
    settings = dict(SERVING_ONLY)
    if kind != "online-retail":
        settings.update(SYNTHETIC_SETTINGS)
    t0 = time.perf_counter()
    trained = train_recommender(
        events,
        catalog,
        RecommenderConfig.from_dict(settings),
        progress=lambda message: print(f"  .. {message}", file=sys.stderr, flush=True),
    )
    fit_s = time.perf_counter() - t0
    rec = trained.recommender
    rec.save(out)
    rng = np.random.default_rng(seed)
    rows = rng.choice(len(rec.user_vocab), size=min(users, len(rec.user_vocab)), replace=False)
    histories = histories_of(events, rec.user_vocab, np.sort(rows).astype(np.int64))
    (out / HISTORIES_FILE).write_text(
        json.dumps(
            [
                {"items": list(h.items), "types": list(h.types), "times": list(h.times)}
                for h in histories
            ]
        )
    )
    return {
        "shop": kind,
        "items": rec.n_items,
        "users": len(rec.user_vocab),
        "events": len(events),
        "generate_s": round(generate_s, 1),
        "fit_s": round(fit_s, 1),
        "fit_peak_rss_bytes": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024,
        "bundle_bytes": procs.dir_bytes(out),
        "blend": {name: w for name, w in rec.blender.weights.items() if w > 0},
        "item_models_nnz": {
            name: int(model.similarity_.nnz)
            for name, model in rec.blender.models.items()
            if getattr(model, "similarity_", None) is not None
        },
    }


def probe_bundle(directory: Path, warmup: int = 50) -> dict[str, Any]:
    """Load a bundle as a worker does and time recommend_user on its histories (in-process)."""

    before = _memory()
    t0 = time.perf_counter()
    from app.ml.history import UserHistory
    from app.ml.recommender import load_recommender

    rec = load_recommender(directory)
    load_s = time.perf_counter() - t0
    raw = json.loads((directory / HISTORIES_FILE).read_text())
    histories = [
        UserHistory(h["items"], h["types"], [None] * len(h["items"]), h["times"]) for h in raw
    ]
    for history in histories[:warmup]:
        rec.recommend_user(history, n=10)
    own = _timed(rec, histories)
    merged = _timed(rec, _merged(histories, FIXED_HISTORY_ITEMS))
    return {
        **own,
        "fixed_history": {"items": FIXED_HISTORY_ITEMS, **merged},
        "load_s": round(load_s, 2),
        "memory_before_load": before,
        "memory_after_answers": _memory(),
    }


def _timed(rec: Any, histories: list[Any]) -> dict[str, Any]:
    """Per-answer milliseconds of recommend_user over ``histories``."""
    import numpy as np

    seconds = []
    for history in histories:
        start = time.perf_counter()
        rec.recommend_user(history, n=10)
        seconds.append(time.perf_counter() - start)
    ms = np.asarray(seconds) * 1e3
    served = [len(rec.served_history(h)[0]) for h in histories]
    return {
        "answers": len(histories),
        "mean_ms": round(float(ms.mean()), 3),
        "p50_ms": round(float(np.percentile(ms, 50)), 3),
        "p99_ms": round(float(np.percentile(ms, 99)), 3),
        "served_history_items_mean": round(float(np.mean(served)), 1),
    }


def _merged(histories: list[Any], size: int) -> list[Any]:
    """Histories of at least ``size`` distinct items, each made of consecutive users' events.

    The shops' own histories differ in length (52 items on Online Retail, under 10 in the
    synthetic shops), and an answer's cost grows with it: these compare the shops at one
    length. Events stay newest first.
    """
    from app.ml.history import UserHistory

    out = []
    items: list[str] = []
    types: list[str] = []
    times: list[float] = []
    for history in histories * 50:
        items += history.items
        types += history.types
        times += history.times
        if len(set(items)) >= size:
            order = sorted(range(len(items)), key=lambda i: -times[i])
            out.append(
                UserHistory(
                    [items[i] for i in order],
                    [types[i] for i in order],
                    [None] * len(order),
                    [times[i] for i in order],
                )
            )
            items, types, times = [], [], []
            if len(out) >= len(histories):
                break
    return out


def _subprocess(args: list[str], timeout: float) -> dict[str, Any]:
    env = {**os.environ, "OPENBLAS_NUM_THREADS": "1"}
    done = subprocess.run(
        [sys.executable, "-m", "benchmarks.catalogue", *args],
        capture_output=True,
        text=True,
        env=env,
        timeout=timeout,
        check=False,
    )
    if done.returncode != 0:
        tail = " | ".join(done.stderr.strip().splitlines()[-3:])
        return {"error": tail}
    result: dict[str, Any] = json.loads(done.stdout.strip().splitlines()[-1])
    return result


def run_catalogue(sizes: list[int], users: int) -> dict[str, Any]:
    """Fit and probe Online Retail and each synthetic size; return the result (and write it)."""
    shops: list[dict[str, Any]] = []
    with tempfile.TemporaryDirectory(prefix="tm-bench-catalogue-") as tmp:
        for kind, n_items in [("online-retail", 0), *(("synthetic", n) for n in sizes)]:
            out = Path(tmp) / f"{kind}-{n_items}"
            print(f"[{time.strftime('%H:%M:%S')}] {kind} {n_items or ''}: fitting", file=sys.stderr)
            row = _subprocess(
                ["fit", kind, "--items", str(n_items), "--out", str(out), "--users", str(users)],
                timeout=1800,
            )
            if "error" not in row:
                print(f"[{time.strftime('%H:%M:%S')}] probing", file=sys.stderr)
                row["serving"] = _subprocess(["probe", str(out)], timeout=900)
            shops.append(row)
    base = shops[0].get("serving", {}).get("mean_ms")
    fixed_base = shops[0].get("serving", {}).get("fixed_history", {}).get("mean_ms")
    for row in shops:
        mean = row.get("serving", {}).get("mean_ms")
        fixed = row.get("serving", {}).get("fixed_history", {}).get("mean_ms")
        row["ratio_to_online_retail"] = round(mean / base, 2) if base and mean else None
        row["fixed_ratio_to_online_retail"] = (
            round(fixed / fixed_base, 2) if fixed_base and fixed else None
        )
    largest = shops[-1]
    ratios = [largest.get("ratio_to_online_retail"), largest.get("fixed_ratio_to_online_retail")]
    result = {
        "meta": {
            "run_id": datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ"),
            "cpus": os.cpu_count(),
            "python": sys.version.split()[0],
            "load_before": procs.load_average(),
            "settings": {"all": SERVING_ONLY, "synthetic": SYNTHETIC_SETTINGS},
        },
        "shops": shops,
        "target": {
            "largest_ratio": ratios[0],
            "largest_fixed_history_ratio": ratios[1],
            "max_ratio": TARGET_RATIO,
            "met": all(r is not None and r <= TARGET_RATIO for r in ratios),
        },
    }
    OUT_DIR.mkdir(parents=True, exist_ok=True)
    path = OUT_DIR / f"{result['meta']['run_id']}.json"
    path.write_text(json.dumps(result, indent=2))
    print(render(result))
    print(f"wrote {path}", file=sys.stderr)
    return result


def render(result: dict[str, Any]) -> str:
    """The result as a markdown table."""
    lines = [
        "| shop | items | events | fit s | mean ms | p50 ms | p99 ms | history items | "
        "ratio | 50-item history: mean ms | ratio | serving RSS MiB (anon + file) |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|",
    ]
    for row in result["shops"]:
        s = row.get("serving", {})
        if "error" in row or "error" in s:
            lines.append(f"| {row.get('shop', '?')} | error: {row.get('error') or s['error']} |")
            continue
        memory = s["memory_after_answers"]
        rss = (
            f"{memory['rss_bytes'] / 2**20:.0f} ({memory['rss_anon_bytes'] / 2**20:.0f}"
            f" + {memory['rss_file_bytes'] / 2**20:.0f})"
        )
        lines.append(
            f"| {row['shop']} | {row['items']:,} | {row['events']:,} | {row['fit_s']} "
            f"| {s['mean_ms']} | {s['p50_ms']} | {s['p99_ms']} "
            f"| {s['served_history_items_mean']} | {row['ratio_to_online_retail']} "
            f"| {s['fixed_history']['mean_ms']} | {row['fixed_ratio_to_online_retail']} | {rss} |"
        )
    target = result["target"]
    lines.append(
        f"\nlargest shop / Online Retail: {target['largest_ratio']} with each shop's own "
        f"histories, {target['largest_fixed_history_ratio']} at 50 history items (target <= "
        f"{target['max_ratio']}: {'met' if target['met'] else 'missed'})"
    )
    return "\n".join(lines)


def catalogue_command(
    sizes: Annotated[str, typer.Option(help="synthetic catalogue sizes")] = "100000,1000000",
    users: Annotated[int, typer.Option(help="sampled users (answers timed) per shop")] = 500,
) -> None:
    """ML-core time per uncached answer at 3.7k, 100k and 1M items, and the serving RSS."""
    run_catalogue([int(s) for s in sizes.split(",") if s.strip()], users)


cli = typer.Typer(add_completion=False)


@cli.command("fit")
def _fit_command(
    kind: str,
    out: Annotated[Path, typer.Option()],
    items: Annotated[int, typer.Option()] = 0,
    users: Annotated[int, typer.Option()] = 500,
) -> None:
    print(json.dumps(fit_shop(kind, items, out, users)))


@cli.command("probe")
def _probe_command(directory: Path) -> None:
    print(json.dumps(probe_bundle(directory)))


if __name__ == "__main__":
    cli()
