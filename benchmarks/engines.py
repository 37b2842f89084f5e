"""The fit time of both training engines on synthetic shops (``python -m benchmarks engines``).

Each fit runs in its own subprocess (``python -m benchmarks.training ... --engine E``), so
that each engine starts cold: the Spark engine's JVM start is reported apart
(``engine_start_s``), its fit time is the driver's wall time, and its peak RSS is the Python
driver's only (the JVM and the Python workers are other processes).
"""

from __future__ import annotations

import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from benchmarks import report

#: events, users, items: the training benchmark's 1M and 4M shops.
SIZES = {1_000_000: (50_000, 25_000), 4_000_000: (200_000, 100_000)}


def fit(events: int, engine: str, variant: str, master: str, timeout_s: float) -> dict[str, Any]:
    """One fit in a subprocess; its JSON figures, or the error."""
    users, items = SIZES[events]
    with tempfile.TemporaryDirectory(prefix="tm-engines-") as out:
        command = [
            *(sys.executable, "-m", "benchmarks.training"),
            *("--events", str(events), "--users", str(users), "--items", str(items)),
            *("--out", str(Path(out) / "bundle"), "--variant", variant),
            *("--engine", engine, "--spark-master", master),
        ]
        started = time.monotonic()
        try:
            done = subprocess.run(command, capture_output=True, text=True, timeout=timeout_s)
        except subprocess.TimeoutExpired:
            return {"events": events, "engine": engine, "error": f"over {timeout_s:.0f}s"}
        if done.returncode != 0:
            return {"events": events, "engine": engine, "error": done.stderr[-2000:]}
        figures = json.loads(done.stdout.strip().splitlines()[-1])
        figures["wall_s"] = round(time.monotonic() - started, 2)
        return figures


def run_engines(
    sizes: list[int], engines: list[str], variant: str, master: str, timeout_s: float
) -> Path:
    """Fit every size with every engine; write and print the results."""
    rows = []
    for events in sizes:
        for engine in engines:
            print(f"fitting {events:,} events with the {engine} engine…", file=sys.stderr)
            rows.append(fit(events, engine, variant, master, timeout_s))
            print(json.dumps(rows[-1]), file=sys.stderr)
    report.RESULTS_DIR.mkdir(parents=True, exist_ok=True)
    stamp = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime())
    path = report.RESULTS_DIR / f"engines-{stamp}.json"
    path.write_text(json.dumps({"variant": variant, "master": master, "fits": rows}, indent=1))
    print("| events | engine | fit s | engine start s | served NDCG@10 | driver peak RSS |")
    print("|---|---|---|---|---|---|")
    for row in rows:
        if "error" in row:
            print(f"| {row['events']:,} | {row['engine']} | failed: {row['error'][:60]} | | | |")
            continue
        ndcg = row["served_ndcg"] if row["served_ndcg"] is not None else "–"
        print(
            f"| {row['events']:,} | {row['engine']} | {row['fit_s']:.1f} | "
            f"{row['engine_start_s']:.1f} | {ndcg} | {row['peak_rss_bytes'] / 2**30:.2f} GiB |"
        )
    return path
