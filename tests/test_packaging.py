"""Dockerfile and docker-compose.yml agree with the code (no Docker engine runs here)."""

from __future__ import annotations

import re
import tomllib
from pathlib import Path

import yaml

from app.cli import cli
from app.config import Settings

ROOT = Path(__file__).resolve().parents[1]


def _compose() -> dict:
    return yaml.safe_load((ROOT / "docker-compose.yml").read_text())


def test_compose_api_sets_only_real_settings():
    env = _compose()["services"]["api"]["environment"]
    fields = {f"TASTEMAKER_{name.upper()}" for name in Settings.model_fields}
    assert set(env) <= fields, set(env) - fields
    # Values the operator supplies at `docker compose up` time are interpolations.
    given = {k: v for k, v in env.items() if not str(v).startswith("${")}
    settings = Settings(**{k.removeprefix("TASTEMAKER_").lower(): v for k, v in given.items()})
    assert settings.redis_url and settings.database_url.startswith("postgresql+psycopg://")


def test_ports_agree():
    compose = _compose()["services"]["api"]
    env_port = compose["environment"]["TASTEMAKER_PORT"]
    assert compose["ports"] == [f"{env_port}:{env_port}"]
    dockerfile = (ROOT / "Dockerfile").read_text()
    assert f"EXPOSE {env_port}" in dockerfile
    assert f"127.0.0.1:{env_port}/health" in dockerfile


def test_api_waits_for_healthy_dependencies():
    compose = _compose()["services"]
    for name, condition in compose["api"]["depends_on"].items():
        assert condition == {"condition": "service_healthy"}
        assert "healthcheck" in compose[name]


def test_dockerfile_command_exists_and_runs_as_non_root():
    dockerfile = (ROOT / "Dockerfile").read_text()
    assert re.search(r"^USER (?!root)\w+", dockerfile, re.M)
    commands = {c.name or c.callback.__name__ for c in cli.registered_commands}
    command_line = next(line for line in dockerfile.splitlines() if line.startswith("CMD"))
    for sub in re.findall(r"tastemaker (\w+)", command_line):
        assert sub in commands, sub
    scripts = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["scripts"]
    assert scripts["tastemaker"] == "app.cli:main"


def test_readme_lists_every_setting():
    readme = (ROOT / "README.md").read_text()
    for name in Settings.model_fields:
        assert f"`TASTEMAKER_{name.upper()}`" in readme, name


def test_lock_file_pins_every_runtime_dependency():
    import re as _re

    lock = (ROOT / "requirements.lock").read_text().lower().replace("_", "-")
    pinned = {line.split("==")[0] for line in lock.splitlines() if "==" in line}
    declared = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["dependencies"]
    for requirement in declared:
        name = _re.split(r"[\[<>=!~ ]", requirement, maxsplit=1)[0].lower().replace("_", "-")
        assert name in pinned, f"{name} is not pinned in requirements.lock"
