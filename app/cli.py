"""The `tastemaker` command: serve, demo, migrate, import, train, evaluate, segments."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, NoReturn

import typer
from rich.console import Console
from rich.progress import (
    BarColumn,
    DownloadColumn,
    MofNCompleteColumn,
    Progress,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
    TransferSpeedColumn,
)
from rich.table import Table

from app.config import Settings, get_settings
from app.db import make_engine, make_sessionmaker

if TYPE_CHECKING:
    from app.ml.segmentation import SegmentProfile

cli = typer.Typer(help="Tastemaker: recommendations and customer segments for online shops.")
import_cli = typer.Typer(help="Load data files into the store.")
cli.add_typer(import_cli, name="import")
keys_cli = typer.Typer(help="Manage API keys stored in the database.")
cli.add_typer(keys_cli, name="keys")
console = Console(stderr=True)


def _settings() -> Settings:
    try:
        return get_settings()
    except ValueError as exc:
        console.print(f"[red]Invalid settings:[/red] {exc}")
        raise typer.Exit(2) from exc


def _prepare_store(settings: Settings) -> None:
    if settings.resolved_database_url.startswith("sqlite"):
        settings.data_dir.mkdir(parents=True, exist_ok=True)


def _progress(description: str, total: int | None = None) -> Progress:
    return Progress(
        TextColumn(f"[bold]{description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        console=console,
        transient=False,
    )


def _version(value: bool) -> None:
    if value:
        from importlib.metadata import version

        typer.echo(f"tastemaker {version('tastemaker')}")
        raise typer.Exit()


@cli.callback()
def _root(
    version: Annotated[
        bool,
        typer.Option(
            "--version", callback=_version, is_eager=True, help="Print the version and exit"
        ),
    ] = False,
) -> None:
    """Tastemaker: recommendations and customer segments for online shops."""


class _FileProgress:
    """A file import's progress: bytes read of the file's size, rows so far, rate and ETA."""

    def __init__(self, description: str, path: Path) -> None:
        self.progress = Progress(
            TextColumn(f"[bold]{description}"),
            BarColumn(),
            DownloadColumn(),
            TransferSpeedColumn(),
            TextColumn("{task.fields[rows]:,} rows ({task.fields[per_s]:,.0f}/s)"),
            TimeElapsedColumn(),
            TextColumn("ETA"),
            TimeRemainingColumn(),
            console=console,
        )
        self.task = self.progress.add_task("file", total=path.stat().st_size, rows=0, per_s=0)
        self.rows = 0

    def __enter__(self) -> _FileProgress:
        self.progress.start()
        return self

    def __exit__(self, *_exc: object) -> None:
        self.progress.stop()

    def __call__(self, rows: int, bytes_read: int) -> None:
        self.rows += rows
        elapsed = self.progress.tasks[0].elapsed or 0.0
        per_s = self.rows / elapsed if elapsed > 0 else 0.0
        self.progress.update(self.task, completed=bytes_read, rows=self.rows, per_s=per_s)


@cli.command()
def migrate() -> None:
    """Bring the database schema to the latest revision (creating a missing PostgreSQL database)."""
    from app.migrate import DatabaseMissing, ensure_database, upgrade

    settings = _settings()
    _prepare_store(settings)
    try:
        if ensure_database(settings.resolved_database_url):
            console.print("Created the database.")
    except DatabaseMissing as exc:
        _refuse(str(exc), 1)
    upgrade(settings.resolved_database_url)
    console.print("Database schema is up to date.")


@cli.command()
def serve(
    host: Annotated[str | None, typer.Option(help="Interface to bind (default: settings)")] = None,
    port: Annotated[int | None, typer.Option(help="Port (default: settings)")] = None,
    workers: Annotated[int | None, typer.Option(help="Worker processes")] = None,
) -> None:
    """Start the HTTP service (refuses an out-of-date schema, and no keys on a public interface)."""
    from pydantic import ValidationError

    settings = _settings()
    overrides = {"host": host, "port": port, "workers": workers}
    # One settings object, validated, with the flags in it: the workers serve exactly this.
    try:
        settings = Settings.model_validate(
            {**settings.model_dump(), **{k: v for k, v in overrides.items() if v is not None}}
        )
    except ValidationError as exc:
        problems = "; ".join(f"--{e['loc'][0]}: {e['msg']}" for e in exc.errors())
        _refuse(f"invalid option: {problems}", 2)
    _serve(settings)


def _serve(settings: Settings) -> None:
    """Serve with exactly `settings` in every worker, after the schema and key checks."""
    from app.main import SchemaOutOfDate, check_schema
    from app.security.keys import AnonymousOnPublicInterface, check_before_serving
    from app.server import serve as run_server

    _prepare_store(settings)
    engine = make_engine(settings.resolved_database_url)
    try:
        check_schema(engine)
    except SchemaOutOfDate as exc:
        _refuse(str(exc), 1)
    finally:
        engine.dispose()
    try:
        check_before_serving(settings)  # before anything is printed or bound
        console.print(f"Serving on http://{settings.host}:{settings.port} (docs at /docs)")
        run_server(settings)
    except AnonymousOnPublicInterface as exc:
        _refuse(str(exc), 1)


def _refuse(message: str, code: int) -> NoReturn:
    """Print one line (never wrapped, no traceback) and exit with `code`."""
    typer.echo(f"tastemaker: {message}", err=True)
    raise typer.Exit(code)


@import_cli.command("online-retail")
def import_online_retail(
    path: Annotated[Path, typer.Argument(exists=True, dir_okay=False, help="CSV or .csv.xz")],
) -> None:
    """Import the UCI Online Retail file: purchases, items, customers (the POST /events rules)."""
    from app.importers import import_online_retail as run_import

    settings = _settings()
    with _FileProgress("Importing Online Retail", path) as progress:
        summary = run_import(settings, path, progress)
    _print_summary(summary.as_dict())


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

    settings = _settings()
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
    with _FileProgress("Importing events", path) as progress:
        summary = import_events_file(settings, path, mapping, progress)
    _print_summary(summary.as_dict())


def _print_summary(summary: dict) -> None:
    table = Table(title="Import summary")
    table.add_column("what")
    table.add_column("rows", justify="right")
    table.add_row("read", str(summary["read"]))
    table.add_row("inserted", str(summary["inserted"]))
    table.add_row("already stored (skipped)", str(summary["already_stored"]))
    for reason, count in sorted(summary["dropped"].items()):
        table.add_row(f"dropped: {reason}", str(count))
    Console().print(table)


@cli.command()
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

    settings = demo_settings(_settings())
    _prepare_store(settings)
    console.print(f"demo 1/3: the schema of {_where(settings)}")
    upgrade(settings.resolved_database_url)
    factory = make_sessionmaker(make_engine(settings.resolved_database_url))
    console.print(
        f"demo 2/3: a synthetic shop ({users:,} customers, {items:,} items, {events:,} events)"
    )
    with _progress("Loading demo shop") as progress:
        task = progress.add_task("events", total=events)
        summary = load_demo(
            factory,
            seed=seed,
            n_users=users,
            n_items=items,
            n_events=events,
            progress=lambda n: progress.advance(task, n),
        )
    _print_summary(summary.as_dict())
    console.print(f"demo 3/3: training, models in {settings.model_dir}")
    _train_and_report(settings)
    if serve_after:
        # The workers serve these settings (the demo's model directory included), and a retrain
        # started from the demo's API inherits them.
        _serve(settings)


def _where(settings: Settings) -> str:
    """The store, for people: the SQLite file, or the URL without its password."""
    from sqlalchemy import make_url

    url = make_url(settings.resolved_database_url)
    if url.get_backend_name() == "sqlite":
        return str(url.database)
    return url.render_as_string(hide_password=True)


def demo_settings(settings: Settings) -> Settings:
    """The demo's settings: models in `<data_dir>/demo-models` unless TASTEMAKER_MODEL_DIR is set."""
    if "model_dir" in settings.model_fields_set:
        return settings
    return settings.model_copy(update={"model_dir": settings.data_dir / "demo-models"})


def _train_and_report(settings: Settings) -> dict:
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


@cli.command()
def train() -> None:
    """Fit every model on the store's events, write bundle vN+1, activate it if it passes."""
    settings = _settings()
    try:
        _train_and_report(settings)
    except (RuntimeError, ValueError) as exc:
        console.print(f"[red]{exc}[/red]")
        raise typer.Exit(1) from exc


@cli.command()
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

    settings = _settings()
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


@cli.command()
def segments() -> None:
    """Print the active model's segment profiles for both algorithms."""
    from app.ml.bundle import BundleError
    from app.training import repository
    from app.training.registry import load_bundle, store_origin

    settings = _settings()
    factory = make_sessionmaker(make_engine(settings.resolved_database_url))
    with factory.begin() as session:
        active = repository.active_version(session)
        origin = store_origin(session, active.version) if active is not None else None
    if active is None:
        console.print("[red]No trained model yet: run `tastemaker train` first.[/red]")
        raise typer.Exit(1)
    try:
        bundle = load_bundle(active.version, active.path, origin=origin)
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


@keys_cli.command("create")
def keys_create(
    name: Annotated[str, typer.Argument(help="A name for the key (who uses it)")],
    scope: Annotated[
        list[str], typer.Option("--scope", help="read, write or admin (repeatable)")
    ] = ["read"],  # noqa: B006 - typer needs a literal default
) -> None:
    """Create a key; it is printed once and stored only as its hash."""
    from app.security import repository
    from app.security.keys import SCOPES, generate_key, hash_key
    from app.security.models import ApiKey

    bad = [s for s in scope if s not in SCOPES]
    if bad or not 1 <= len(name) <= 64:
        console.print(f"[red]scopes must be among {SCOPES} and the name 1-64 characters[/red]")
        raise typer.Exit(2)
    settings = _settings()
    factory = make_sessionmaker(make_engine(settings.resolved_database_url))
    key = generate_key()
    with factory.begin() as session:
        if repository.active_by_name(session, name) is not None:
            console.print(
                f"[red]an active key is named {name!r}; revoke it or pick another name[/red]"
            )
            raise typer.Exit(1)
        repository.add(
            session, ApiKey(name=name, prefix=key[:8], key_hash=hash_key(key), scopes=sorted(scope))
        )
    console.print(f"Key {name!r} with scopes {sorted(scope)} (shown once, store it now):")
    typer.echo(key)


@keys_cli.command("list")
def keys_list() -> None:
    """List keys (names, prefixes, scopes; never the keys)."""
    from app.security import repository

    settings = _settings()
    factory = make_sessionmaker(make_engine(settings.resolved_database_url))
    table = Table(title="API keys")
    for column in ("name", "prefix", "scopes", "created", "revoked"):
        table.add_column(column)
    with factory() as session:
        for key in repository.all_keys(session):
            revoked = key.revoked_at.isoformat() if key.revoked_at else ""
            table.add_row(
                key.name,
                key.prefix + "…",
                ",".join(key.scopes),
                key.created_at.isoformat(),
                revoked,
            )
    for setting in settings.api_keys:
        table.add_row(setting.name, "(settings)", ",".join(setting.scopes), "", "")
    Console().print(table)


@keys_cli.command("revoke")
def keys_revoke(name: Annotated[str, typer.Argument(help="The key's name")]) -> None:
    """Revoke a stored key; every worker stops accepting it within seconds."""
    from app.security import repository

    settings = _settings()
    factory = make_sessionmaker(make_engine(settings.resolved_database_url))
    with factory.begin() as session:
        key = repository.active_by_name(session, name)
        if key is None:
            console.print(f"[red]no active key named {name!r}[/red]")
            raise typer.Exit(1)
        repository.revoke(session, key)
    console.print(f"Key {name!r} revoked.")


models_cli = typer.Typer(help="List model versions and choose the active one.")
cli.add_typer(models_cli, name="models")


@models_cli.command("list")
def models_list() -> None:
    """Every model version, newest first: created, active, served NDCG beside popularity."""
    from app.training import service

    settings = _settings()
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

    settings = _settings()
    factory = make_sessionmaker(make_engine(settings.resolved_database_url))
    with factory() as session:
        try:
            with session.begin():
                service.activate_version(session, settings, version)
        except AppError as exc:
            _refuse(exc.detail, 1)
        loop = asyncio.new_event_loop()
        for callback in pop_after_commit(session):
            loop.run_until_complete(callback())
        loop.close()
    console.print(f"Model version {version} is active.")


def main() -> None:
    """Entry point of the console script: expected errors are one line, never a traceback."""
    from sqlalchemy.exc import SQLAlchemyError

    try:
        cli()
    except SQLAlchemyError as exc:
        typer.echo(f"tastemaker: {_database_problem(exc)}", err=True)
        sys.exit(1)


def _database_problem(exc: Exception) -> str:
    """One line on what went wrong with the database, and what to do."""
    from sqlalchemy.exc import OperationalError, ProgrammingError

    detail = str(getattr(exc, "orig", exc)).strip().splitlines()[0]
    if isinstance(exc, OperationalError | ProgrammingError) and (
        "no such table" in detail or ("relation" in detail and "does not exist" in detail)
    ):
        return f"the database has no schema yet ({detail}): run `tastemaker migrate`"
    if isinstance(exc, OperationalError) and (
        "unable to open database file" in detail
        or ("database" in detail and "does not exist" in detail)
    ):
        return f"the database is not there yet ({detail}): run `tastemaker migrate` to create it"
    if isinstance(exc, OperationalError):
        return f"cannot use the database ({detail}): check TASTEMAKER_DATABASE_URL"
    return f"database error: {detail}"


if __name__ == "__main__":  # pragma: no cover
    main()
