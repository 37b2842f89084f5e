"""The command line as operators run it, in subprocesses: --version, migrate creating a missing
PostgreSQL database, one line instead of a traceback, training phases, models list|activate."""

from __future__ import annotations

import os
import subprocess
import sys
import uuid
from pathlib import Path

import pytest
from sqlalchemy import create_engine, make_url, text

from app.config import Settings
from app.datasets.synthetic import generate_shop
from app.db import make_engine, make_sessionmaker
from app.demo import import_shop

REPO = Path(__file__).resolve().parents[2]
SHOP = generate_shop(n_users=80, n_items=40, n_events=3_000, seed=5)
EMBEDDED = pytest.mark.parametrize("settings", ["embedded"], indirect=True)


def _cli(settings: Settings, *args: str, **extra: str) -> subprocess.CompletedProcess:
    clean = {k: v for k, v in os.environ.items() if not k.startswith("TASTEMAKER_")}
    env = {**clean, **settings.child_environment(), "OPENBLAS_NUM_THREADS": "1", **extra}
    return subprocess.run(
        [sys.executable, "-m", "app.cli", *args],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )


@EMBEDDED
def test_version(settings):
    done = _cli(settings, "--version")
    assert done.returncode == 0 and done.stdout.startswith("tastemaker ")


@pytest.mark.parametrize("settings", ["production"], indirect=True)
def test_migrate_creates_a_missing_postgres_database(settings):
    name = f"tm_cli_{uuid.uuid4().hex[:10]}"
    url = make_url(settings.resolved_database_url).set(database=name)
    target = url.render_as_string(hide_password=False)
    before = _cli(settings, "models", "list", TASTEMAKER_DATABASE_URL=target)
    assert before.returncode == 1
    assert "Traceback" not in before.stderr and len(before.stderr.strip().splitlines()) == 1
    assert "run `tastemaker migrate`" in before.stderr
    try:
        done = _cli(settings, "migrate", TASTEMAKER_DATABASE_URL=target)
        assert done.returncode == 0, done.stderr
        assert "Created the database" in done.stderr
        again = _cli(settings, "migrate", TASTEMAKER_DATABASE_URL=target)
        assert again.returncode == 0 and "Created" not in again.stderr
    finally:
        admin = create_engine(url.set(database="postgres"), isolation_level="AUTOCOMMIT")
        with admin.connect() as conn:
            conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()


@EMBEDDED
def test_an_unreachable_database_is_one_line(settings):
    url = "postgresql+psycopg://postgres@127.0.0.1:9/nowhere"
    done = _cli(settings, "train", TASTEMAKER_DATABASE_URL=url)
    assert done.returncode == 1
    assert "Traceback" not in done.stderr
    assert done.stderr.strip().splitlines() == [done.stderr.strip()]
    assert "cannot use the database" in done.stderr


@EMBEDDED
def test_train_prints_its_phases_and_models_can_be_listed_and_activated(settings):
    import_shop(make_sessionmaker(make_engine(settings.resolved_database_url)), SHOP)
    trained = _cli(settings, "train")
    assert trained.returncode == 0, trained.stderr
    phases = [line for line in trained.stderr.splitlines() if "training: " in line]
    assert len(phases) >= 4, trained.stderr  # segmentation, recommender, evaluation, writing…
    assert "Model version 1" in trained.stderr
    listed = _cli(settings, "models", "list")
    assert listed.returncode == 0, listed.stderr
    row = next(line for line in listed.stdout.splitlines() if line.strip("│ ").startswith("1 "))
    assert "yes" in row
    missing = _cli(settings, "models", "activate", "7")
    assert missing.returncode == 1 and "Traceback" not in missing.stderr
    assert missing.stderr.strip() == "tastemaker: model version 7 does not exist"
    assert _cli(settings, "models", "activate", "1").returncode == 0


@EMBEDDED
def test_import_shows_the_file_read_its_rows_and_rate(settings, tmp_path):
    path = tmp_path / "events.csv"
    lines = ["user_id,item_id,type"] + [f"u{i % 7},i{i % 11},view" for i in range(300)]
    path.write_text("\n".join(lines) + "\n")
    done = _cli(settings, "import", "events", str(path), COLUMNS="200")
    assert done.returncode == 0, done.stderr
    size_kb = f"{path.stat().st_size / 1000:.1f}"
    assert f"{size_kb}/{size_kb} kB" in done.stderr, done.stderr
    assert "300 rows" in done.stderr and "/s)" in done.stderr
    assert "inserted" in done.stdout
