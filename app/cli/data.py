"""Commands that fill the store: migrate, import, demo."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.table import Table

from app.cli.common import (
    FileProgress,
    console,
    prepare_store,
    progress_bar,
    refuse,
    settings_or_exit,
    where,
)
from app.cli.models import train_and_report
from app.cli.serving import serve_with
from app.config import Settings
from app.db import make_engine, make_sessionmaker

import_cli = typer.Typer(help="Load data files into the store.")


def migrate() -> None:
    """Bring the database schema to the latest revision (creating a missing PostgreSQL database)."""
    from app.migrate import DatabaseMissing, ensure_database, upgrade

    settings = settings_or_exit()
    prepare_store(settings)
    try:
        if ensure_database(settings.resolved_database_url):
            console.print("Created the database.")
    except DatabaseMissing as exc:
        refuse(str(exc), 1)
    upgrade(settings.resolved_database_url)
    console.print("Database schema is up to date.")


@import_cli.command("online-retail")
def import_online_retail(
    path: Annotated[Path, typer.Argument(exists=True, dir_okay=False, help="CSV or .csv.xz")],
) -> None:
    """Import the UCI Online Retail file: purchases, items, customers (the POST /events rules)."""
    from app.importers import import_online_retail as run_import

    settings = settings_or_exit()
    with FileProgress("Importing Online Retail", path) as progress:
        summary = run_import(settings, path, progress)
    print_summary(summary.as_dict())


@import_cli.command("events")
def import_events(
    path: Annotated[Path, typer.Argument(exists=True, dir_okay=False, help="CSV or JSON lines")],
    map_: Annotated[
        list[str],
        typer.Option(
            "--map",
            help="field=column pairs, e.g. --map user_id=customer --map occurred_at=ts",
        ),
    ] = [],  # noqa: B006 - typer needs a literal default
) -> None:
    """Import a generic events file (the POST /events rules); columns default to the field names."""
    from app.importers import import_events_file

    settings = settings_or_exit()
    fields = ("event_id", "user_id", "item_id", "type", "value", "order_id", "occurred_at")
    mapping = {f: f for f in fields}
    for pair in map_:
        target, _, source = pair.partition("=")
        if target not in fields or not source:
            console.print(
                f"[red]--map {pair!r}: expected FIELD=COLUMN with FIELD in {fields}[/red]"
            )
            raise typer.Exit(2)
        mapping[target] = source
    with FileProgress("Importing events", path) as progress:
        summary = import_events_file(settings, path, mapping, progress)
    print_summary(summary.as_dict())


def print_summary(summary: dict) -> None:
    table = Table(title="Import summary")
    table.add_column("what")
    table.add_column("rows", justify="right")
    table.add_row("read", str(summary["read"]))
    table.add_row("inserted", str(summary["inserted"]))
    table.add_row("already stored (skipped)", str(summary["already_stored"]))
    for reason, count in sorted(summary["dropped"].items()):
        table.add_row(f"dropped: {reason}", str(count))
    Console().print(table)


def demo(
    seed: Annotated[int, typer.Option(help="Random seed of the synthetic shop")] = 0,
    users: Annotated[int, typer.Option(help="Customers to generate")] = 2000,
    items: Annotated[int, typer.Option(help="Items to generate")] = 500,
    events: Annotated[int, typer.Option(help="Events to generate")] = 100_000,
    serve_after: Annotated[
        bool, typer.Option("--serve/--no-serve", help="Serve afterwards")
    ] = True,
) -> None:
    """Generate a synthetic shop, import it, train, and serve on 127.0.0.1:8000."""
    from app.demo import load_demo
    from app.migrate import upgrade

    settings = demo_settings(settings_or_exit())
    prepare_store(settings)
    console.print(f"demo 1/3: the schema of {where(settings)}")
    upgrade(settings.resolved_database_url)
    factory = make_sessionmaker(make_engine(settings.resolved_database_url))
    console.print(
        f"demo 2/3: a synthetic shop ({users:,} customers, {items:,} items, {events:,} events)"
    )
    with progress_bar("Loading demo shop") as progress:
        task = progress.add_task("events", total=events)
        summary = load_demo(
            factory,
            seed=seed,
            n_users=users,
            n_items=items,
            n_events=events,
            progress=lambda n: progress.advance(task, n),
        )
    print_summary(summary.as_dict())
    console.print(f"demo 3/3: training, models in {settings.model_dir}")
    train_and_report(settings)
    if serve_after:
        # The workers serve these settings (the demo's model directory included), and a retrain
        # started from the demo's API inherits them.
        serve_with(settings)


def demo_settings(settings: Settings) -> Settings:
    """The demo's settings: models in `<data_dir>/demo-models` unless TASTEMAKER_MODEL_DIR is set."""
    if "model_dir" in settings.model_fields_set:
        return settings
    return settings.model_copy(update={"model_dir": settings.data_dir / "demo-models"})
