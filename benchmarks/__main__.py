"""`python -m benchmarks run [--quick]` measures; `python -m benchmarks readme` publishes.

``profile ENDPOINT`` records a worker with py-spy under wrk load and prints where it spends time.

``run`` writes ``benchmarks/results/<timestamp>.json`` and prints the markdown tables;
``readme`` rewrites the README section between ``<!-- benchmarks:start -->`` and
``<!-- benchmarks:end -->`` from the newest result file (``run --readme`` does both).

``engines`` fits synthetic shops with the local and the Spark training engine.
``quality``, ``segments-report`` and ``history`` print the Online Retail recommendation
quality, its customer segments and the cost of a long history; ``fit-one`` and
``baseline-server`` are what ``run`` starts as subprocesses (through their modules,
``python -m benchmarks.training`` and ``python -m benchmarks.baseline_app``, so that those
processes import nothing else).
"""

from __future__ import annotations

import contextlib
import dataclasses
import fcntl
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
import traceback
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated, Any, Literal, get_args

import typer

from benchmarks import catalogue, procs, quality, report, segments_report, store, training
from benchmarks.baseline_app import serve_baseline
from benchmarks.serving import Plan, run_serving, serve_bundle_memory
from benchmarks.wrk import ensure_wrk

QUICK = Plan(
    duration_s=3,
    warmup_s=1,
    connections=(64,),
    workers=(2,),
    ingest_baseline_s=4,
    event_connections=(8,),
    events_duration_s=5,
    hot_users=500,
)
FULL = Plan(
    duration_s=8,
    warmup_s=2,
    connections=(32, 64),
    ingest_baseline_s=8,
    event_connections=(4, 16),
    events_duration_s=10,
    hot_users=1000,
)
QUICK_PIPELINE_SIZES = ((50_000, 2_500, 1_250), (100_000, 5_000, 2_500))
FULL_PIPELINE_SIZES = (
    (250_000, 12_500, 6_250),
    (500_000, 25_000, 12_500),
    (1_000_000, 50_000, 25_000),
)
SECTIONS = ("serving", "training", "memory")
Profiled = Literal["recommend_cached", "recommend_uncached", "segment", "similar", "events"]
PROFILED = get_args(Profiled)


def say(message: str) -> None:
    """Progress on stderr (stdout carries the report)."""
    print(f"[{time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


@contextlib.contextmanager
def single_run() -> Iterator[None]:
    """Refuse to run twice at once (both would use the same database and ports)."""
    report.RESULTS_DIR.mkdir(parents=True, exist_ok=True)
    with (report.RESULTS_DIR / ".lock").open("w") as handle:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise SystemExit("another `python -m benchmarks run` is in progress") from None
        yield


def _git(*args: str) -> str:
    """Output of a read-only git command ('' when git is unavailable)."""
    done = subprocess.run(
        ["git", *args], cwd=store.ROOT, capture_output=True, text=True, check=False
    )
    return done.stdout.strip()


def check_services() -> None:
    """Fail with a sentence when PostgreSQL or Redis is not reachable on loopback."""
    try:
        store.postgres_version()
    except Exception as exc:
        raise SystemExit(
            f"PostgreSQL is not reachable at 127.0.0.1:5432 as user postgres: {exc}"
        ) from None
    import redis

    try:
        redis.Redis.from_url(store.REDIS_URL, socket_timeout=2).ping()
    except redis.RedisError as exc:
        raise SystemExit(f"Redis is not reachable at 127.0.0.1:6379: {exc}") from None


def run(
    quick: bool, sections: tuple[str, ...], write_readme: bool, large_bundle: Path | None = None
) -> Path:
    """Run the selected sections and write the result file; return its path."""
    ensure_wrk()
    check_services()
    run_id = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    plan = QUICK if quick else FULL
    started = time.monotonic()
    result: dict[str, Any] = {
        "meta": {
            "run_id": run_id,
            "mode": "quick" if quick else "full",
            "commit": _git("rev-parse", "--short", "HEAD"),
            "dirty": bool(_git("status", "--porcelain", "--", "app", "migrations")),
            "cpus": os.cpu_count(),
            "python": sys.version.split()[0],
            "load_before": procs.load_average(),
        },
        "plan": dataclasses.asdict(plan),
    }
    work = Path(tempfile.mkdtemp(prefix="tm-bench-"))
    big_bundle = work / "largest-bundle"
    errors: dict[str, str] = {}

    def section(name: str, body: Callable[[], None]) -> None:
        """Run one section; a failure is recorded and the other sections still run."""
        if name not in sections:
            return
        try:
            body()
        except Exception as exc:
            errors[name] = "".join(traceback.format_exception_only(exc)).strip()
            say(f"{name} failed: {errors[name]}")

    def serving_section() -> None:
        prepared = store.prepare(say)
        result["prepare"] = {
            "fingerprint": prepared.fingerprint,
            "reused": prepared.reused,
            "seconds": round(prepared.prepare_s, 1),
            "timings": prepared.timings,
        }
        serving = run_serving(prepared, plan, work, run_id, say)
        report.add_ratios(serving)
        result["serving"] = serving

    def training_section() -> None:
        result["training"] = {}
        sizes = training.QUICK_SIZES if quick else training.FULL_SIZES
        say("training scaling: serving fit " + ", ".join(f"{s[0]:,}" for s in sizes))
        result["training"]["serving"] = training.run_scaling(
            sizes, "serving", budget_s=150 if quick else 600, keep_largest=big_bundle
        )
        sizes = QUICK_PIPELINE_SIZES if quick else FULL_PIPELINE_SIZES
        say("training scaling: full pipeline " + ", ".join(f"{s[0]:,}" for s in sizes))
        result["training"]["pipeline"] = training.run_scaling(
            sizes, "pipeline", budget_s=90 if quick else 300
        )

    def memory_section() -> None:
        # A bundle fitted beforehand (the 100k-item one takes longer than a full run), or the
        # largest one the scaling section just fitted.
        bundle = large_bundle or (big_bundle if big_bundle.exists() else None)
        if bundle is not None:
            result["memory_large"] = serve_bundle_memory(
                bundle, work, (1, 2), 2 if quick else 5, say
            )

    try:
        section("serving", serving_section)
        section("training", training_section)
        section("memory", memory_section)
    finally:
        shutil.rmtree(work, ignore_errors=True)
        with contextlib.suppress(Exception):
            store.drop_bench_database()
    if errors:
        result["errors"] = errors
    rows = result.get("serving", {}).get("rows", [])
    result["meta"]["max_other_cpu_share"] = max((r["other_cpu_share"] for r in rows), default=0.0)
    result["meta"]["seconds"] = round(time.monotonic() - started, 1)
    result["targets"] = report.check_targets(result)
    path = report.RESULTS_DIR / f"{run_id}.json"
    path.write_text(json.dumps(result, indent=2))
    print(report.render(result))
    say(f"wrote {path} in {result['meta']['seconds']:.0f}s")
    if write_readme:
        report.update_readme(path)
        say("README.md benchmarks section updated")
    return path


app = typer.Typer(help=__doc__.splitlines()[0], no_args_is_help=True, add_completion=False)


@app.command("run")
def run_command(
    quick: Annotated[bool, typer.Option("--quick", help="short pass (under 5 minutes)")] = False,
    only: Annotated[str, typer.Option(help=f"comma-separated subset of {SECTIONS}")] = ",".join(
        SECTIONS
    ),
    readme: Annotated[
        bool, typer.Option("--readme", help="also rewrite the README section")
    ] = False,
    large_bundle: Annotated[
        Path | None,
        typer.Option(
            help="serve this bundle for the memory figures (made with `python -m benchmarks"
            " fit-one --variant serving --events 4000000 --users 200000 --items 100000"
            " --out DIR`)"
        ),
    ] = None,
) -> None:
    """Measure and write benchmarks/results/<time>.json."""
    sections = tuple(s.strip() for s in only.split(",") if s.strip())
    unknown = set(sections) - set(SECTIONS)
    if unknown:
        raise typer.BadParameter(
            f"unknown sections {sorted(unknown)}; choose from {SECTIONS}", param_hint="--only"
        )
    with single_run():
        run(quick, sections, readme, large_bundle)


@app.command("readme")
def readme_command(
    file: Annotated[Path | None, typer.Argument(help="result file (default: newest)")] = None,
) -> None:
    """Rewrite README's section from a result file."""
    path = report.update_readme(file)
    say(f"README.md benchmarks section written from {path}")


@app.command("profile")
def profile_command(
    endpoint: Profiled,
    workers: int = 1,
    seconds: float = 10,
    backend: Literal["postgres", "sqlite"] = "postgres",
    connections: int = 64,
) -> None:
    """Py-spy one endpoint of the service under load."""
    from benchmarks.profile import run_profile

    with single_run(), tempfile.TemporaryDirectory(prefix="tm-bench-profile-") as tmp:
        ensure_wrk()
        summary = run_profile(endpoint, workers, seconds, backend, Path(tmp), connections)
    print(json.dumps(summary, indent=2))


@app.command("engines")
def engines_command(
    sizes: Annotated[str, typer.Option(help="events per shop: 1000000 and/or 4000000")] = (
        "1000000,4000000"
    ),
    engines: str = "local,spark",
    variant: Annotated[
        str, typer.Option(help="pipeline (tuning + evaluation + serving fit) or serving")
    ] = "pipeline",
    master: Annotated[str, typer.Option(help="the Spark master")] = "local[2]",
    timeout: Annotated[float, typer.Option(help="seconds allowed per fit")] = 3600,
) -> None:
    """Fit time of the local and the Spark training engines on synthetic shops."""
    from benchmarks import engines as engines_benchmark

    engines_benchmark.run_engines(
        [int(s) for s in sizes.split(",")], engines.split(","), variant, master, timeout
    )


@app.command("quality")
def quality_command(
    data: Path = quality.DATA,
    rows: Annotated[int | None, typer.Option(help="only the first N clean rows")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="print the metrics JSON too")] = False,
    overrides: Annotated[
        list[str] | None, typer.Option("--set", help="config override key=value")
    ] = None,
) -> None:
    """Recommendation quality and training time on UCI Online Retail."""
    quality.run_quality(data, rows, as_json, overrides or [])


@app.command("segments-report")
def segments_report_command(
    data: Path = segments_report.DATA,
    k: Annotated[int | None, typer.Option(help="fix k instead of the silhouette")] = None,
    min_samples: Annotated[int, typer.Option(help="DBSCAN min_samples")] = 10,
    seed: int = 0,
    as_json: Annotated[bool, typer.Option("--json", help="also print quality as JSON")] = False,
) -> None:
    """Customer segments of UCI Online Retail: chosen k, profiles, quality and stability."""
    segments_report.run_segments_report(data, k, min_samples, seed, as_json)


@app.command("history")
def history_command(
    requests: Annotated[int, typer.Option(help="timed requests per cell")] = 300,
    backends: str = "sqlite,postgresql",
    shop_events: int = 60_000,
    budgets: Annotated[str, typer.Option(help="history budgets")] = "100,200,500,2000",
) -> None:
    """What a whole history costs an uncached /recommend (50 against 2,000 events)."""
    from benchmarks import history  # imports fastapi's TestClient, which warns

    print(
        history.run_history(
            requests,
            [backend.strip() for backend in backends.split(",")],
            shop_events,
            [int(budget) for budget in budgets.split(",")],
        )
    )


app.command("catalogue")(catalogue.catalogue_command)
app.command("fit-one")(training.fit_one)
app.command("baseline-server")(serve_baseline)

if __name__ == "__main__":
    app(prog_name="python -m benchmarks")
