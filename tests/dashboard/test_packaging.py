"""The dashboard's page, scripts, styles and charting library ship inside the wheel (package
data), so an installed service serves them offline."""

from __future__ import annotations

import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
DASHBOARD = REPO / "app" / "dashboard"


def test_every_dashboard_file_is_in_the_wheel(tmp_path):
    assets = {
        path.relative_to(REPO).as_posix()
        for path in DASHBOARD.rglob("*")
        if path.is_file() and "__pycache__" not in path.parts
    }
    assert {"app/dashboard/templates/dashboard.html", "app/dashboard/static/js/main.js"} <= assets
    # Built from a copy: a build in the work tree would leave build/ and egg-info behind.
    source = tmp_path / "source"
    source.mkdir()
    for name in ("pyproject.toml", "README.md"):
        shutil.copy(REPO / name, source / name)
    shutil.copytree(REPO / "app", source / "app", ignore=shutil.ignore_patterns("__pycache__"))
    out = tmp_path / "dist"
    built = subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "-q", "-w", str(out), "."],
        cwd=source,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert built.returncode == 0, built.stdout + built.stderr
    (wheel,) = out.glob("*.whl")
    missing = assets - set(zipfile.ZipFile(wheel).namelist())
    assert not missing, missing
