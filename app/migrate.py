"""Run Alembic migrations and check that a database is at head."""

from __future__ import annotations

from pathlib import Path

import psycopg
from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from psycopg import sql as psycopg_sql
from sqlalchemy import Engine, create_engine, make_url
from sqlalchemy.exc import DBAPIError, OperationalError
from sqlalchemy.orm import Session

from app.training.repository import store_identity

MIGRATIONS_DIR = Path(__file__).resolve().parent.parent / "migrations"


def alembic_config(url: str) -> Config:
    """An Alembic config pointing at our migrations and the given database."""
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS_DIR))
    config.attributes["url"] = url
    return config


class DatabaseMissing(RuntimeError):
    """The database named by the URL does not exist and could not be created."""


def ensure_database(url: str) -> bool:
    """Create the PostgreSQL database `url` names when it does not exist; True if created.

    The server's maintenance database (``postgres``) is asked, as the same user; without the
    right to create databases, :class:`DatabaseMissing` says what to run instead.
    """
    parsed = make_url(url)
    if parsed.get_backend_name() != "postgresql" or not parsed.database:
        return False
    engine = create_engine(url)
    try:
        with engine.connect():
            return False
    except OperationalError as exc:
        if "does not exist" not in str(exc.orig):
            raise
    finally:
        engine.dispose()
    name = parsed.database
    admin = create_engine(parsed.set(database="postgres"), isolation_level="AUTOCOMMIT")
    try:
        with admin.connect() as conn:
            # An identifier cannot be a bound parameter: psycopg composes it, quoted.
            statement = psycopg_sql.SQL("CREATE DATABASE {}").format(psycopg_sql.Identifier(name))
            conn.connection.dbapi_connection.cursor().execute(statement)  # type: ignore[union-attr]
    except (DBAPIError, psycopg.Error) as exc:
        raise DatabaseMissing(
            f"database {name!r} does not exist and could not be created ({_first_line(exc)}); "
            f"create it (createdb {name}) and run `tastemaker migrate` again"
        ) from exc
    finally:
        admin.dispose()
    return True


def _first_line(exc: Exception) -> str:
    return str(getattr(exc, "orig", exc)).strip().splitlines()[0]


def upgrade(url: str) -> None:
    """Bring the database at `url` to the latest revision and give the store its identity."""
    command.upgrade(alembic_config(url), "head")
    engine = create_engine(url)
    try:
        with Session(engine) as session, session.begin():
            store_identity(session)
    finally:
        engine.dispose()


def head_revision() -> str | None:
    """The newest revision the code knows."""
    return ScriptDirectory.from_config(alembic_config("sqlite://")).get_current_head()


def current_revision(engine: Engine) -> str | None:
    """The revision the database is at (None when never migrated)."""
    with engine.connect() as conn:
        return MigrationContext.configure(conn).get_current_revision()


def is_up_to_date(engine: Engine) -> bool:
    """Whether the database schema is at the code's head revision."""
    return current_revision(engine) == head_revision()
