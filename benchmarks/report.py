"""Ratios, target checks and markdown tables from a result dict; the README section."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

RESULTS_DIR = Path(__file__).resolve().parent / "results"
README = Path(__file__).resolve().parents[1] / "README.md"
START, END = "<!-- benchmarks:start -->", "<!-- benchmarks:end -->"
GIB = 1024**3

ENDPOINT_LABELS = {
    "baseline": "baseline (bare FastAPI, pre-serialised bytes)",
    "recommend_cached": "GET /recommend, cached",
    "recommend_uncached": "GET /recommend, uncached",
    "segment": "GET /segment",
    "similar": "GET /items/{id}/similar",
    "events": "POST /events (500 a batch)",
}
RATIO_TARGETS = {"recommend_cached": 0.8, "recommend_uncached": 0.5, "segment": 0.5}
P99_TARGET_MS = 10.0
INGEST_TARGET = 20_000.0
INGEST_RATIO_TARGET = 0.5


def add_ratios(serving: dict[str, Any]) -> None:
    """Give every service row its ratio to the baseline (or bulk insert) of the same run."""
    rows = serving["rows"]
    baselines = {(r["workers"], r["connections"]): r for r in rows if r["backend"] == "baseline"}
    bulk = {(b["backend"], b["workers_run"]): b for b in serving["ingest_baseline"]}
    for row in rows:
        base = baselines.get((row["workers"], row["connections"]))
        if base and row["backend"] != "baseline":
            row["rps_ratio"] = round(row["rps"] / base["rps"], 3) if base["rps"] else None
            if base["server_cpu_us_per_req"]:
                row["cpu_ratio"] = round(
                    row["server_cpu_us_per_req"] / base["server_cpu_us_per_req"], 2
                )
        if row["endpoint"] == "events":
            ref = bulk.get((row["backend"], row["workers"]))
            if ref and ref["events_per_s"]:
                row["bulk_events_per_s"] = ref["events_per_s"]
                row["ingest_ratio"] = round(row["events_per_s"] / ref["events_per_s"], 3)


#: Request metrics and access lines may cost at most 5% of server CPU per cached request.
METRICS_SHARE_TARGET = 0.05  # of the CPU of a cached /recommend


def check_targets(result: dict[str, Any]) -> list[dict[str, Any]]:
    """Every target of the brief with the measured value and whether it is met."""
    out: list[dict[str, Any]] = []
    rows = result.get("serving", {}).get("rows", [])
    baselines = {(r["workers"], r["connections"]): r for r in rows if r["backend"] == "baseline"}
    for row in rows:
        backend, workers, conns = row["backend"], row["workers"], row["connections"]
        where = f"{backend}, {workers} worker(s), {conns} conns"
        goal = RATIO_TARGETS.get(row["endpoint"])
        if goal is not None and row.get("rps_ratio") is not None:
            out.append(
                _target(
                    f"{row['endpoint']} req/s ÷ baseline",
                    where,
                    row["rps_ratio"],
                    f"≥ {goal}",
                    row["rps_ratio"] >= goal,
                )
            )
        if workers == 2 and conns == 64 and row["endpoint"] not in ("events", "baseline"):
            base = baselines.get((workers, conns))
            if base:
                where += f" (baseline p99 {base['p99_ms']:.1f} ms)"
            out.append(
                _target(
                    f"{row['endpoint']} p99 (ms)",
                    where,
                    row["p99_ms"],
                    f"≤ {P99_TARGET_MS}",
                    row["p99_ms"] <= P99_TARGET_MS,
                )
            )
        if row["endpoint"] == "events" and workers == 2:
            out.append(
                _target(
                    "ingestion events/s",
                    where,
                    row["events_per_s"],
                    f"≥ {INGEST_TARGET:,.0f}",
                    row["events_per_s"] >= INGEST_TARGET,
                )
            )
            if row.get("ingest_ratio") is not None:
                out.append(
                    _target(
                        "ingestion ÷ plain bulk insert",
                        where,
                        row["ingest_ratio"],
                        f"≥ {INGEST_RATIO_TARGET}",
                        row["ingest_ratio"] >= INGEST_RATIO_TARGET,
                    )
                )
    layers = result.get("serving", {}).get("overhead")
    if layers:
        share = layers["metrics"]["share"]
        out.append(
            _target(
                "metrics' share of the CPU of a cached /recommend",
                f"sqlite, in process ({layers['us_per_request']['default']:.0f} µs a request)",
                share,
                f"≤ {METRICS_SHARE_TARGET}",
                share <= METRICS_SHARE_TARGET,
            )
        )
    for variant, section in result.get("training", {}).items():
        for g in section.get("growth", []):
            where = f"{variant} fit, {g['from_events']:,} → {g['to_events']:,} events"
            out.append(
                _target(
                    "fit time growth per doubling",
                    where,
                    g["time_ratio_per_doubling"],
                    f"≤ {g['target']}",
                    g["met"],
                )
            )
        peak = section.get("largest_peak_rss_bytes")
        if peak:
            events = section["largest_events"]
            ok = peak <= section["peak_rss_target_bytes"]
            note = "" if events >= 4_000_000 else " (target is at 4M events)"
            out.append(
                _target(
                    "peak RSS of the fit (GiB)",
                    f"{variant} fit, {events:,} events{note}",
                    round(peak / GIB, 2),
                    "≤ 4 at 4M events",
                    ok,
                )
            )
    return out


def _target(name: str, where: str, value: float, goal: str, met: bool) -> dict[str, Any]:
    """One target line."""
    return {"target": name, "where": where, "value": value, "goal": goal, "met": bool(met)}


def _fmt(value: Any, digits: int = 1) -> str:
    """A number for a table cell ('–' when missing)."""
    if value is None:
        return "–"
    if isinstance(value, float):
        return f"{value:,.{digits}f}"
    if isinstance(value, int):
        return f"{value:,}"
    return str(value)


def _table(header: list[str], rows: list[list[Any]]) -> str:
    """A markdown table."""
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(str(c) for c in r) + " |" for r in rows]
    return "\n".join(lines)


def overhead_paragraph(layers: dict[str, Any]) -> str:
    """What each per-request layer costs a cached ``/recommend`` (benchmarks/overhead.py)."""
    us = layers["us_per_request"]

    def part(name: str, key: str) -> str:
        cost = layers[key]
        return f"{name} {cost['us']:.1f} µs ({cost['share']:.1%})"

    return (
        "**Per-request layers** of a cached `/recommend`, in one process through the app's ASGI "
        f"interface (`benchmarks/overhead.py`: variants taking turns request by request, "
        f"{layers['rounds']} rounds of {layers['requests_per_round']:,} requests each, median "
        "CPU per request): "
        f"{us['default']:.1f} µs as shipped; "
        + "; ".join(
            (
                part("request metrics", "metrics"),
                part("access lines", "access_log"),
                f"FastAPI's routing instead of the fast lane +{-layers['fast_lane']['us']:.1f} µs",
            )
        )
        + ". Shares are of the in-process CPU, without uvicorn's HTTP work."
    )


def serving_table(serving: dict[str, Any], backend: str) -> str:
    """Throughput, latency and CPU of one backend beside the baseline."""
    order = list(ENDPOINT_LABELS)
    rows = [r for r in serving["rows"] if r["backend"] in (backend, "baseline")]
    rows.sort(key=lambda r: (r["workers"], order.index(r["endpoint"]), r["connections"]))
    body = []
    for r in rows:
        throughput = _fmt(r["rps"], 0)
        if r["endpoint"] == "events":
            throughput = f"{_fmt(r['rps'], 1)} ({_fmt(r['events_per_s'], 0)} events/s)"
        body.append(
            [
                ENDPOINT_LABELS[r["endpoint"]],
                r["workers"],
                r["connections"],
                throughput,
                _fmt(r.get("rps_ratio"), 2) if r["endpoint"] != "baseline" else "1",
                _fmt(r["p50_ms"], 2),
                _fmt(r["p90_ms"], 2),
                _fmt(r["p99_ms"], 2),
                _fmt(r["server_cpu_us_per_req"], 0),
                _fmt(r.get("cpu_ratio"), 2) if r["endpoint"] != "baseline" else "1",
                _fmt(r["store_cpu_us_per_req"], 0) if backend == "postgres" else "–",
                f"{r['other_cpu_share']:.0%}",
                r["errors"],
            ]
        )
    header = ["endpoint", "workers", "conns", "req/s", "× baseline", "p50 ms", "p90 ms", "p99 ms",
              "server CPU µs/req", "× baseline", "PG+Redis CPU µs/req", "CPU used by others", "errors"]  # fmt: skip
    return _table(header, body)


def ingestion_table(serving: dict[str, Any]) -> str:
    """POST /events against a plain bulk insert of the same rows."""
    body = []
    for r in serving["rows"]:
        if r["endpoint"] == "events":
            body.append([r["backend"], r["workers"], r["connections"], _fmt(r["events_per_s"], 0),
                         _fmt(r.get("bulk_events_per_s"), 0), _fmt(r.get("ingest_ratio"), 2),
                         _fmt(r["p99_ms"], 0)])  # fmt: skip
    header = [
        "store",
        "workers",
        "conns",
        "POST /events events/s",
        "plain bulk insert events/s",
        "ratio",
        "p99 ms",
    ]
    return _table(header, body)


def training_table(training: dict[str, Any]) -> str:
    """Fit time per phase, peak RSS and bundle size for each size and variant."""
    body = []
    for variant, section in training.items():
        growth = {g["to_events"]: g["time_ratio_per_doubling"] for g in section.get("growth", [])}
        for r in section["sizes"]:
            if "fit_s" not in r:
                body.append([variant, _fmt(r["events"]), _fmt(r.get("users")), _fmt(r.get("items")),
                             r.get("skipped") or r.get("error"), "", "", "", "", "", ""])  # fmt: skip
                continue
            phases = r["recommender_phases_s"]
            top = sorted(((v, k) for k, v in phases.items() if k != "total"), reverse=True)[:3]
            body.append(
                [
                    variant,
                    _fmt(r["events"]),
                    _fmt(r["users"]),
                    _fmt(r["items"]),
                    _fmt(r["fit_s"], 1),
                    _fmt(r["phases_s"].get("segmentation_s"), 1),
                    _fmt(r["phases_s"].get("recommender_s"), 1),
                    ", ".join(f"{k} {v:.1f}" for v, k in top),
                    _fmt(growth.get(r["events"]), 2),
                    _fmt(r["peak_rss_bytes"] / GIB, 2),
                    _fmt(r["bundle_bytes"] / 2**20, 0),
                ]
            )
    header = ["fit", "events", "users", "items", "fit s", "segmentation s", "recommender s",
              "slowest recommender phases (s)", "time × per doubling", "peak RSS GiB", "bundle MiB"]  # fmt: skip
    return _table(header, body)


def memory_table(result: dict[str, Any]) -> str:
    """Start-up time and per-worker memory while serving, beside the bare FastAPI worker."""
    serving = result.get("serving", {})
    entries = list(serving.get("memory", [])) + list(result.get("memory_large", []))
    ready = {
        (s["backend"], s["workers"], s["bundle"]): s["ready_s"] for s in serving.get("startup", [])
    }
    bare = {m["workers"]: m["after_load"]["workers"] for m in entries if m["backend"] == "baseline"}
    body = []
    for m in entries:
        w = m["after_load"]["workers"]
        ref = bare.get(m["workers"]) or next(iter(bare.values()), [])
        ref_rss = sum(x["Rss"] for x in ref) / len(ref) if ref else None
        mean_rss = sum(x["Rss"] for x in w) / len(w) if w else None
        start = m.get("after_start") or {}
        body.append(
            [
                m["bundle"],
                m["backend"],
                m["workers"],
                _fmt(m.get("ready_s", ready.get((m["backend"], m["workers"], m["bundle"]))), 2),
                " / ".join(_fmt(x["Rss"], 0) for x in w),
                _fmt(mean_rss / ref_rss, 1) if mean_rss and ref_rss else "–",
                " / ".join(_fmt(x["Pss"], 0) for x in w),
                " / ".join(_fmt(x["Shared_Clean"] + x["Shared_Dirty"], 0) for x in w),
                " / ".join(_fmt(x["Private_Clean"] + x["Private_Dirty"], 0) for x in w),
                _fmt(m["after_load"]["total_pss_mib"], 0),
                " / ".join(_fmt(x["Rss"], 0) for x in start.get("workers", [])) or "–",
            ]
        )
    header = ["bundle", "store", "workers", "ready s", "Rss MiB per worker", "× bare FastAPI",
              "Pss MiB", "Shared MiB", "Private MiB", "total Pss MiB", "Rss at start MiB"]  # fmt: skip
    return _table(header, body)


def targets_table(targets: list[dict[str, Any]]) -> str:
    """Every target, measured value and verdict."""
    body = [
        [
            t["target"],
            t["where"],
            _fmt(t["value"], 2),
            t["goal"],
            "met" if t["met"] else "**missed**",
        ]
        for t in targets
    ]
    return _table(["target", "where", "measured", "goal", ""], body)


def render(result: dict[str, Any]) -> str:
    """The whole markdown report of one run."""
    meta = result["meta"]
    parts = [
        "`python -m benchmarks run` (12 to 20 minutes on a 2-core machine; `--quick` about 3) writes "
        "`benchmarks/results/<time>.json`; `python -m benchmarks readme` rewrites this section "
        "from the newest one; `python -m benchmarks profile ENDPOINT` records a worker with "
        "py-spy under load. The first run, and the first after a change to the schema or the ML "
        "code, also imports and trains Online Retail (1 to 4 minutes; kept as PostgreSQL "
        "template databases `tastemaker_bench_*` and under `benchmarks/results/cache/`).",
        f"Run `{meta['run_id']}` ({meta['mode']}), commit `{meta['commit']}`{' + local changes' if meta.get('dirty') else ''}, "
        f"{meta['cpus']} CPUs, wrk on the same machine over loopback; load average before the run "
        f"{meta['load_before']:.2f}, busiest share of CPU taken by other processes during a measurement "
        f"{meta.get('max_other_cpu_share', 0):.0%}. Every figure sits beside a baseline measured in the same run.",
    ]
    serving = result.get("serving")
    if serving:
        parts.append(
            f"**Serving** on Online Retail ({serving['users']:,} users, {serving['items']:,} items): "
            f"{result['plan']['duration_s']:.0f} s per measurement after a {result['plan']['warmup_s']:.0f} s warm-up. "
            f"The baseline is a bare FastAPI route answering {serving['payload_bytes']:,} pre-serialised bytes "
            "(the mean size of a real `/recommend` answer) with the service's uvicorn settings. "
            "*Cached*: users repeat, answers come from the cache; *uncached*: every request has a new cache key "
            "(a nonce in `exclude`), so the answer is scored from the bundle (the user's history stays cached)."
        )
        degraded = serving.get("degraded_cache", [])
        if degraded:
            counts = ", ".join(
                f"{d['backend']} {d['workers']}w: {d['breaker_openings']}" for d in degraded
            )
            parts.append(
                "`POST /events` runs at fewer connections than the GETs: a 500-event batch costs "
                "about a thousand GETs, and 64 of them in flight would only queue past any timeout. "
                f"Times the service's Redis circuit breaker opened (a Redis call over its timeout) "
                f"during each server's run: {counts}."
            )
        parts.append("PostgreSQL + Redis:\n\n" + serving_table(serving, "postgres"))
        parts.append(
            "SQLite + in-process cache (the embedded default):\n\n"
            + serving_table(serving, "sqlite")
        )
        layers = serving.get("overhead")
        if layers:
            parts.append(overhead_paragraph(layers))
        parts.append(
            "**Ingestion** against a plain SQLAlchemy Core bulk insert of the same rows (500 per transaction, one connection) into the same store:\n\n"
            + ingestion_table(serving)
        )
    if result.get("training"):
        parts.append(
            "**Training scaling** on `generate_shop` data, each fit in its own process (peak RSS = VmHWM). "
            "*pipeline* is `fit_bundle` as `tastemaker train` runs it (segmentation, blend tuning on a validation split, "
            "evaluation on the holdout, serving fit, write); *serving* is the same call with evaluation and tuning off "
            "(what a deployment could fit on every retrain).\n\n"
            + training_table(result["training"])
        )
    if serving or result.get("memory_large"):
        parts.append(
            "**Memory while serving** (`/proc/<pid>/smaps_rollup` after the load; bundles are mmapped, so their pages are shared between workers):\n\n"
            + memory_table(result)
        )
    if result.get("targets"):
        parts.append("**Targets**:\n\n" + targets_table(result["targets"]))
    for name, error in result.get("errors", {}).items():
        parts.append(f"**{name} failed**: `{error}`")
    return "\n\n".join(parts) + "\n"


def latest_result() -> Path:
    """The newest result file."""
    files = sorted(RESULTS_DIR.glob("*.json"))
    if not files:
        raise SystemExit(
            "no result file in benchmarks/results/: run `python -m benchmarks run` first"
        )
    return files[-1]


def update_readme(result_file: Path | None = None) -> Path:
    """Rewrite the README's benchmarks section (between the markers) from a result file."""
    path = result_file or latest_result()
    result = json.loads(path.read_text())
    section = f"{START}\n{render(result)}{END}"
    text = README.read_text()
    if START in text and END in text:
        text = re.sub(
            re.escape(START) + r".*?" + re.escape(END), lambda _m: section, text, flags=re.S
        )
    else:
        text = text.rstrip("\n") + "\n\n## Benchmarks\n\n" + section + "\n"
    README.write_text(text)
    return path
