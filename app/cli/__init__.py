"""The `tastemaker` command: serve, demo, migrate, import, train, evaluate, segments, models, keys.

Each group of commands lives in its own module; this one assembles them and turns expected
errors into one line.
"""

from __future__ import annotations

import sys
from typing import Annotated

import typer

from app.cli import data, keys, models, serving

cli = typer.Typer(help="Tastemaker: recommendations and customer segments for online shops.")
cli.add_typer(data.import_cli, name="import")
cli.add_typer(keys.keys_cli, name="keys")
cli.add_typer(models.models_cli, name="models")
for command in (
    serving.serve,
    data.demo,
    data.migrate,
    models.train,
    models.evaluate,
    models.segments,
):
    cli.command()(command)


def _version(value: bool) -> None:
    if value:
        from importlib.metadata import version

        typer.echo(f"tastemaker {version('tastemaker')}")
        raise typer.Exit()


def _root(
    version: Annotated[
        bool,
        typer.Option(
            "--version", callback=_version, is_eager=True, help="Print the version and exit"
        ),
    ] = False,
) -> None:
    """Tastemaker: recommendations and customer segments for online shops."""


cli.callback()(_root)


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
