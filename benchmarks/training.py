"""Training scaling: fit the whole bundle on synthetic shops of doubling size.

Each fit runs in its own subprocess (``python -m benchmarks.training --events N ...``, the same
command as ``python -m benchmarks fit-one``) so that
its peak RSS (``VmHWM`` / ``ru_maxrss``) is its own. The subprocess generates the shop with
:func:`app.datasets.synthetic.generate_shop`, builds the same :class:`TrainingData` that
``app.training.pipeline.load_training_data`` builds from the store (object arrays of ids with
one shared ``str`` per distinct id), and calls :func:`app.training.pipeline.fit_bundle`, which
is what ``tastemaker train`` runs after loading: segmentation, then the recommender (validation
fit + blend tuning, evaluation fit + scoring, serving fit), then writing the bundle. The store
round trip (SQL → arrays) is not part of it.
"""

from __future__ import annotations

import itertools
import json
import math
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Annotated, Any, Literal, get_args

import typer

from benchmarks import procs

# Sizes: events, users, items. Users and items grow with the events, up to 100k items.
FULL_SIZES = (
    (1_000_000, 50_000, 25_000),
    (2_000_000, 100_000, 50_000),
    (4_000_000, 200_000, 100_000),
)
QUICK_SIZES = ((100_000, 5_000, 2_500), (200_000, 10_000, 5_000), (400_000, 20_000, 10_000))
Variant = Literal["pipeline", "serving"]
VARIANTS = get_args(Variant)
TIME_GROWTH_TARGET = 2.2  # per doubling of events
PEAK_RSS_TARGET_BYTES = 4 * 1024**3


SYNTHETIC_STORE_ID = "benchmark-synthetic"


def _peak_rss_bytes() -> int:
    """Peak resident set size of this process (``ru_maxrss``, KiB on Linux; VmHWM's figure)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


def shop_columns(shop: Any) -> tuple[dict[str, Any], Any]:
    """A synthetic shop's events as the columns ``load_training_data`` builds (object arrays
    with one str per distinct id; the field names of ``TrainingData`` and ``EventLog``), and
    its catalogue."""
    import numpy as np

    from app.datasets.synthetic import EVENT_TYPES
    from app.ml.interactions import Catalog

    ev = shop.events
    user_table = np.array(ev.user_id_table.tolist(), dtype=object)
    item_table = np.array(ev.item_id_table.tolist(), dtype=object)
    type_table = np.array(EVENT_TYPES, dtype=object)  # ev.type_code indexes it
    columns = {
        "user_ids": user_table[ev.user_index],
        "item_ids": item_table[ev.item_index],
        "types": type_table[ev.type_code],
        "values": np.asarray(ev.value, dtype=np.float64),
        "occurred_at": np.asarray(ev.occurred_at, dtype=np.float64),
        "order_ids": np.array(ev.order_id.tolist(), dtype=object),
    }
    catalog = Catalog(
        item_ids=[item.item_id for item in shop.items],
        titles=[item.title for item in shop.items],
        descriptions=[item.description for item in shop.items],
        categories=[list(item.categories) for item in shop.items],
    )
    return columns, catalog


def fit_once(
    n_events: int,
    n_users: int,
    n_items: int,
    directory: Path,
    variant: str = "pipeline",
    engine: str = "local",
    spark_master: str = "local[2]",
) -> dict[str, Any]:
    """Generate a shop, fit the bundle into `directory`, return timings and sizes (in-process).

    The "serving" variant pins what tuning and evaluation would do (TASTEMAKER_RECOMMENDER):
    the same fit with the held-out evaluation and the blend tuning switched off.
    """
    from app.config import Settings
    from app.datasets.synthetic import generate_shop
    from app.ml.bundle import write_manifest
    from app.training.pipeline import TrainingData, fit_bundle, served_ndcg

    started = time.perf_counter()
    shop = generate_shop(n_users=n_users, n_items=n_items, n_events=n_events, seed=0)
    columns, catalog = shop_columns(shop)
    data = TrainingData(**columns, catalog=catalog, last_event_id=n_events)
    del shop, columns
    generate_s = time.perf_counter() - started
    rss_before_fit = _peak_rss_bytes()

    started = time.perf_counter()
    pinned = {"evaluate": False, "tune": False} if variant == "serving" else {}
    settings = Settings(  # otherwise the defaults
        _env_file=None, recommender=pinned, train_engine=engine, spark_master=spark_master
    )
    engine_s = 0.0
    if engine != "local":  # the engine's start (a JVM for Spark) is timed apart from the fit
        from app.training.engines import training_engine

        started_engine = time.perf_counter()
        fits = training_engine(settings)
        engine_s = time.perf_counter() - started_engine
        started = time.perf_counter()
    else:
        fits = None
    metrics, timings = fit_bundle(data, settings, directory, lambda _message: None, engine=fits)
    fit_s = time.perf_counter() - started
    # A manifest as run_training writes it, so the bundle can be served (memory benchmark).
    write_manifest(
        directory,
        {
            "version": 1,
            "created_at": "synthetic",
            # No store trained it: the memory benchmark gives its store this identity.
            "store_id": SYNTHETIC_STORE_ID,
            "data": {"events": n_events, "last_event_id": n_events},
            "components": ["recommender", "segmentation", "members", "catalog"],
            "metrics": metrics,
        },
    )
    return {
        "events": n_events,
        "users": n_users,
        "items": n_items,
        "engine": engine,
        "generate_s": round(generate_s, 2),
        "engine_start_s": round(engine_s, 2),
        "fit_s": round(fit_s, 2),
        "phases_s": {k: round(v, 2) for k, v in timings.items()},
        "recommender_phases_s": dict(_LAST_RECOMMENDER_TIMINGS),
        "served_ndcg": _rounded(served_ndcg(metrics)),
        "bundle_bytes": procs.dir_bytes(directory),
        "peak_rss_before_fit_bytes": rss_before_fit,
        "peak_rss_bytes": _peak_rss_bytes(),
        "ru_maxrss_bytes": _peak_rss_bytes(),  # the same figure, kept for older result files
    }


def _rounded(value: float | None) -> float | None:
    return None if value is None else round(value, 4)


_LAST_RECOMMENDER_TIMINGS: dict[str, float] = {}


def _instrument() -> None:
    """Keep train_recommender's per-phase timings."""
    from app.ml import recommender
    from app.training import pipeline

    original = recommender.train_recommender

    def wrapped(*args: Any, **kwargs: Any) -> Any:
        trained = original(*args, **kwargs)
        _LAST_RECOMMENDER_TIMINGS.update({k: round(v, 2) for k, v in trained.timings.items()})
        return trained

    pipeline.train_recommender = wrapped


def run_scaling(
    sizes: tuple[tuple[int, int, int], ...],
    variant: str,
    *,
    budget_s: float,
    keep_largest: Path | None = None,
) -> dict[str, Any]:
    """Fit each size in a fresh subprocess; stop when the time budget would be exceeded."""
    env = {**os.environ, "OPENBLAS_NUM_THREADS": os.environ.get("OPENBLAS_NUM_THREADS", "2")}
    rows: list[dict[str, Any]] = []
    started_all = time.perf_counter()
    for n_events, n_users, n_items in sizes:
        left = budget_s - (time.perf_counter() - started_all)
        if rows and "fit_s" in rows[-1] and rows[-1]["wall_s"] * TIME_GROWTH_TARGET > left:
            rows.append(
                {
                    "events": n_events,
                    "users": n_users,
                    "items": n_items,
                    "skipped": f"would not fit the remaining {left:.0f}s of the budget",
                }
            )
            continue
        with tempfile.TemporaryDirectory(prefix="tm-bench-fit-") as tmp:
            out = Path(tmp) / "bundle"
            command = [
                sys.executable, "-m", "benchmarks.training", "--variant", variant,
                "--events", str(n_events), "--users", str(n_users), "--items", str(n_items),
                "--out", str(out),
            ]  # fmt: skip
            t0 = time.perf_counter()
            try:
                done = subprocess.run(
                    command,
                    capture_output=True,
                    text=True,
                    env=env,
                    timeout=max(left, 60),
                    check=False,
                )
            except subprocess.TimeoutExpired:
                rows.append(
                    {
                        "events": n_events,
                        "users": n_users,
                        "items": n_items,
                        "skipped": f"timed out after {max(left, 60):.0f}s",
                    }
                )
                break
            if done.returncode != 0:
                tail = " | ".join(done.stderr.strip().splitlines()[-3:])
                rows.append({"events": n_events, "users": n_users, "items": n_items, "error": tail})
                break
            row = json.loads(done.stdout.strip().splitlines()[-1])
            row["wall_s"] = round(time.perf_counter() - t0, 2)
            rows.append(row)
            if keep_largest:  # sizes grow: it ends up holding the largest bundle fitted
                shutil.rmtree(keep_largest, ignore_errors=True)
                shutil.move(out, keep_largest)
    growth = []
    fitted = [r for r in rows if "fit_s" in r]
    for small, big in itertools.pairwise(fitted):
        ratio = big["fit_s"] / small["fit_s"]
        doublings = math.log2(big["events"] / small["events"])
        per_doubling = ratio ** (1 / doublings) if doublings > 0 else ratio
        growth.append(
            {
                "from_events": small["events"],
                "to_events": big["events"],
                "time_ratio_per_doubling": round(per_doubling, 2),
                "target": TIME_GROWTH_TARGET,
                "met": per_doubling <= TIME_GROWTH_TARGET,
            }
        )
    largest = fitted[-1] if fitted else None
    return {
        "variant": variant,
        "sizes": rows,
        "growth": growth,
        "largest_peak_rss_bytes": largest["peak_rss_bytes"] if largest else None,
        "largest_events": largest["events"] if largest else None,
        "peak_rss_target_bytes": PEAK_RSS_TARGET_BYTES,
        "kept_bundle": str(keep_largest) if keep_largest and largest else None,
    }


def fit_one(
    events: Annotated[int, typer.Option(help="events of the synthetic shop")],
    users: Annotated[int, typer.Option(help="its customers")],
    items: Annotated[int, typer.Option(help="its items")],
    out: Annotated[Path, typer.Option(help="directory the bundle is written to")],
    variant: Variant = "pipeline",
    engine: Annotated[str, typer.Option(help="local or spark")] = "local",
    spark_master: Annotated[str, typer.Option(help="the spark engine's master")] = "local[2]",
) -> None:
    """Fit one synthetic bundle and print its figures as one JSON line (run_scaling's subprocess)."""
    _instrument()
    print(json.dumps(fit_once(events, users, items, out, variant, engine, spark_master)))


if __name__ == "__main__":
    typer.run(fit_one)
