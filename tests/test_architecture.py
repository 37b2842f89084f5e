"""The layout holds: import contracts (pyproject's [tool.importlinter]) and types on app/ml.

Both tools run as the developer would run them, from the repository root; a broken contract
or a type error fails the suite with the tool's own report.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def _run(*command: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(command, cwd=ROOT, capture_output=True, text=True, timeout=600)


def test_import_contracts_are_kept() -> None:
    tool = shutil.which("lint-imports", path=str(Path(sys.executable).parent))
    if tool is None:
        pytest.fail("lint-imports is missing: pip install -e '.[test]'")
    result = _run(tool)
    assert result.returncode == 0, result.stdout + result.stderr


def test_the_ml_core_type_checks() -> None:
    result = _run(sys.executable, "-m", "mypy")
    assert result.returncode == 0, result.stdout + result.stderr
