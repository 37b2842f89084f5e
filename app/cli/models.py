"""Commands about models: train, evaluate, segments, models list|activate."""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Annotated

import typer
from rich.console import Console
from rich.table import Table

from app.cli.common import console, refuse, settings_or_exit
from app.config import Settings
from app.db import make_engine, make_sessionmaker

if TYPE_CHECKING:
    from app.ml.segmentation import SegmentProfile

models_cli = typer.Typer(help="List model versions and choose the active one.")


def train_and_report(settings: Settings) -> dict:
    import time

    from app.training.runner import train_now

    started = time.monotonic()

    def phase(message: str) -> None:
        # A line per phase, with the time since the start: readable in a log as on a terminal.
        console.print(f"[dim]{time.monotonic() - started:6.1f}s[/dim] training: {message}")

    result = train_now(settings, progress=phase)
    timings = ", ".join(f"{k} {v:.1f}s" for k, v in result["timings"].items())
    console.print(f"Model version {result['version']}: {result['status']} ({timings})")
    console.print(f"Segmentation: {result['segmentation']}")
    return result


def train(
    engine: Annotated[
        str | None,
        typer.Option(
            "--engine",
            help="local (this process) or spark (TASTEMAKER_SPARK_MASTER); "
            "default TASTEMAKER_TRAIN_ENGINE",
        ),
    ] = None,
) -> None:
    """Fit every model on the store's events, write bundle vN+1, activate it if it passes."""
    settings = settings_or_exit()
    if engine is not None:
        if engine not in ("local", "spark"):
            refuse(f"--engine must be local or spark, not {engine!r}", 2)
        settings = settings.model_copy(update={"train_engine": engine})
    try:
        train_and_report(settings)
    except (RuntimeError, ValueError) as exc:
        console.print(f"[red]{exc}[/red]")
        raise typer.Exit(1) from exc


def evaluate(
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON instead of a table")] = False,
) -> None:
    """Evaluate every model and the served placements on a time split of the store's events.

    Each test user's history ends at their cutoff; the served figures come from the code that
    answers GET /recommend. Targets: the items new to the user after the cutoff (explore) and
    the user's first basket after it, repeats included (next basket).
    """
    from app.ml.evaluation import METRICS
    from app.ml.recommender import train_recommender
    from app.training.pipeline import load_training_data, recommender_config

    settings = settings_or_exit()
    factory = make_sessionmaker(make_engine(settings.resolved_database_url))
    with factory() as session, console.status("Loading events…"):
        data = load_training_data(session)
    if len(data.user_ids) == 0:
        console.print("[red]The store holds no events: import some first.[/red]")
        raise typer.Exit(1)
    with console.status("Evaluating…") as status:
        trained = train_recommender(
            data.event_log,
            data.catalog,
            recommender_config(settings),
            progress=lambda message: status.update(f"Evaluating: {message}"),
        )
    report = trained.metrics
    if as_json:
        typer.echo(json.dumps(report, indent=2))
        return
    k = report["protocol"]["k"]
    titles = {
        "models": f"Explore target (items new to the user) @{k}",
        "next_basket": f"Next-basket target (the first basket after the cutoff) @{k}",
    }
    for target, title in titles.items():
        table = Table(title=title)
        table.add_column("model" if target == "models" else "placement")
        for metric in METRICS:
            table.add_column(metric, justify="right")
        for name, values in report[target].items():
            table.add_row(name, *(f"{values[m]:.4f}" for m in METRICS))
        Console().print(table)
    Console().print(f"protocol: {json.dumps(report['protocol'])}")


def segments() -> None:
    """Print the active model's segment profiles for both algorithms."""
    from app.ml.bundle import BundleError
    from app.training import repository
    from app.training.bundle_store import bundle_store
    from app.training.registry import load_bundle, store_origin

    settings = settings_or_exit()
    factory = make_sessionmaker(make_engine(settings.resolved_database_url))
    with factory.begin() as session:
        active = repository.active_version(session)
        origin = store_origin(session, active.version) if active is not None else None
    if active is None:
        console.print("[red]No trained model yet: run `tastemaker train` first.[/red]")
        raise typer.Exit(1)
    try:
        bundle = load_bundle(
            active.version, active.path, origin=origin, store=bundle_store(settings)
        )
    except BundleError as exc:
        console.print(f"[red]Model version {active.version} cannot be loaded: {exc}[/red]")
        raise typer.Exit(1) from exc
    seg = bundle.segmentation
    if seg is None:
        console.print(
            f"[red]No segmentation in model version {active.version}: "
            f"{bundle.segmentation_skipped}[/red]"
        )
        raise typer.Exit(1)
    Console().print(f"Model version {active.version}; quality: {json.dumps(seg.quality_)}")
    for algorithm in ("kmeans", "dbscan"):
        table = Table(title=f"Segments ({algorithm})")
        for column in (
            "id",
            "label",
            "size",
            "share",
            "recency (d)",
            "orders",
            "spend",
            "top categories",
        ):
            table.add_column(column)
        for p in seg.profiles(algorithm):
            table.add_row(*_profile_row(p))
        Console().print(table)


def _profile_row(p: SegmentProfile) -> list[str]:
    def fmt(value: object) -> str:
        return f"{value:.1f}" if isinstance(value, float) else str(value)

    def median(name: str) -> str:
        stats = p.get(name) or {}
        return fmt(stats.get("median")) if isinstance(stats, dict) else fmt(stats)

    top = p.get("top_categories") or []
    names = [c["category"] if isinstance(c, dict) else str(c) for c in top[:3]]
    return [
        str(p.get("segment_id")),
        str(p.get("label")),
        str(p.get("size")),
        f"{p.get('share', 0):.1%}",
        median("recency_days"),
        median("frequency"),
        median("monetary"),
        ", ".join(names),
    ]


@models_cli.command("list")
def models_list() -> None:
    """Every model version, newest first: created, active, served NDCG beside popularity."""
    from app.training import service

    settings = settings_or_exit()
    factory = make_sessionmaker(make_engine(settings.resolved_database_url))
    with factory() as session:
        versions = service.list_versions(session)
        table = Table(title="Model versions")
        for column in ("version", "created", "active", "NDCG@k served", "popularity", "note"):
            table.add_column(column)
        for v in versions:
            models = (v.metrics or {}).get("recommender", {}).get("models", {})
            table.add_row(
                str(v.version),
                v.created_at.strftime("%Y-%m-%d %H:%M"),
                "yes" if v.is_active else "",
                _metric(models, "served"),
                _metric(models, "popularity"),
                v.note or "",
            )
    Console().print(table)


def _metric(models: dict, name: str) -> str:
    value = models.get(name, {}).get("ndcg")
    return "" if value is None else f"{value:.4f}"


@models_cli.command("activate")
def models_activate(
    version: Annotated[int, typer.Argument(help="The version to serve (roll back or forward)")],
) -> None:
    """Make a version active once its bundle loads; every worker swaps to it within seconds."""
    import asyncio

    from app.db import pop_after_commit
    from app.errors import AppError
    from app.training import service

    settings = settings_or_exit()
    factory = make_sessionmaker(make_engine(settings.resolved_database_url))
    with factory() as session:
        try:
            with session.begin():
                service.activate_version(session, settings, version)
        except AppError as exc:
            refuse(exc.detail, 1)
        loop = asyncio.new_event_loop()
        for callback in pop_after_commit(session):
            loop.run_until_complete(callback())
        loop.close()
    console.print(f"Model version {version} is active.")
