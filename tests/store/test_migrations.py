"""Alembic builds exactly the schema the models declare, on SQLite and PostgreSQL."""

from __future__ import annotations

import pytest
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from sqlalchemy import create_engine, text

from app.main import SchemaOutOfDate, check_schema
from app.migrate import current_revision, head_revision, upgrade
from app.models import Base


def test_upgrade_head_matches_the_models(database_url):
    engine = create_engine(database_url)
    with engine.connect() as conn:
        context = MigrationContext.configure(conn, opts={"compare_type": True})
        assert compare_metadata(context, Base.metadata) == []
    assert current_revision(engine) == head_revision()
    engine.dispose()


def test_serving_refuses_an_unmigrated_database(tmp_path):
    engine = create_engine(f"sqlite:///{tmp_path / 'empty.db'}")
    with pytest.raises(SchemaOutOfDate, match="tastemaker migrate"):
        check_schema(engine)


def test_an_unreachable_database_does_not_block_start_up():
    engine = create_engine("postgresql+psycopg://nobody@127.0.0.1:1/none")
    check_schema(engine)  # logs and lets the service start degraded


def _identities(url: str) -> list[str]:
    engine = create_engine(url)
    with engine.connect() as conn:
        rows = conn.execute(text("SELECT store_id FROM store_identity")).scalars().all()
    engine.dispose()
    return list(rows)


def test_migrating_gives_each_store_one_identity_that_stays(tmp_path):
    first, second = f"sqlite:///{tmp_path / 'a.db'}", f"sqlite:///{tmp_path / 'b.db'}"
    upgrade(first)
    upgrade(second)
    (identity,) = _identities(first)
    assert len(identity) == 32 and int(identity, 16) >= 0
    assert _identities(second) != [identity]
    upgrade(first)  # `tastemaker migrate` again: the same store, the same identity
    assert _identities(first) == [identity]
