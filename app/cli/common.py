"""What every command shares: the console, settings, one-line refusals, progress bars."""

from __future__ import annotations

from pathlib import Path
from typing import NoReturn

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

from app.config import Settings, get_settings

console = Console(stderr=True)


def settings_or_exit() -> Settings:
    """The settings from the environment, or a one-line refusal (exit 2)."""
    try:
        return get_settings()
    except ValueError as exc:
        console.print(f"[red]Invalid settings:[/red] {exc}")
        raise typer.Exit(2) from exc


def prepare_store(settings: Settings) -> None:
    if settings.resolved_database_url.startswith("sqlite"):
        settings.data_dir.mkdir(parents=True, exist_ok=True)


def progress_bar(description: str, total: int | None = None) -> Progress:
    return Progress(
        TextColumn(f"[bold]{description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        console=console,
        transient=False,
    )


class FileProgress:
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

    def __enter__(self) -> FileProgress:
        self.progress.start()
        return self

    def __exit__(self, *_exc: object) -> None:
        self.progress.stop()

    def __call__(self, rows: int, bytes_read: int) -> None:
        self.rows += rows
        elapsed = self.progress.tasks[0].elapsed or 0.0
        per_s = self.rows / elapsed if elapsed > 0 else 0.0
        self.progress.update(self.task, completed=bytes_read, rows=self.rows, per_s=per_s)


def refuse(message: str, code: int) -> NoReturn:
    """Print one line (never wrapped, no traceback) and exit with `code`."""
    typer.echo(f"tastemaker: {message}", err=True)
    raise typer.Exit(code)


def where(settings: Settings) -> str:
    """The store, for people: the SQLite file, or the URL without its password."""
    from sqlalchemy import make_url

    url = make_url(settings.resolved_database_url)
    if url.get_backend_name() == "sqlite":
        return str(url.database)
    return url.render_as_string(hide_password=True)
