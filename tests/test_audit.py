"""Static audit of the code: no pickle on a load path, SQL only through bound parameters."""

from __future__ import annotations

import ast
from pathlib import Path

APP = Path(__file__).resolve().parents[1] / "app"
SOURCES = sorted(APP.rglob("*.py"))


def _calls(tree: ast.AST):
    for node in ast.walk(tree):
        if isinstance(node, ast.Call):
            yield node


def _name(func: ast.expr) -> str:
    if isinstance(func, ast.Attribute):
        return func.attr
    return func.id if isinstance(func, ast.Name) else ""


def test_no_pickle_anywhere():
    offenders = []
    for path in SOURCES:
        tree = ast.parse(path.read_text(), str(path))
        for node in ast.walk(tree):
            if isinstance(node, ast.Import | ast.ImportFrom):
                names = [a.name for a in node.names] + [getattr(node, "module", "") or ""]
                if any(
                    n.split(".")[0] in {"pickle", "joblib", "dill", "cloudpickle"} for n in names
                ):
                    offenders.append(f"{path}:{node.lineno} imports a pickle library")
        for call in _calls(tree):
            for keyword in call.keywords:
                if keyword.arg == "allow_pickle" and not (
                    isinstance(keyword.value, ast.Constant) and keyword.value.value is False
                ):
                    offenders.append(f"{path}:{call.lineno} allow_pickle is not False")
            owner = getattr(call.func, "value", None)
            is_np_load = _name(call.func) == "load" and getattr(owner, "id", None) == "np"
            if is_np_load and not any(k.arg == "allow_pickle" for k in call.keywords):
                offenders.append(f"{path}:{call.lineno} np.load without allow_pickle=False")
    assert offenders == []


def test_sql_text_is_never_built_from_strings():
    offenders = []
    for path in SOURCES:
        tree = ast.parse(path.read_text(), str(path))
        for call in _calls(tree):
            builds_sql = _name(call.func) in {"text", "exec_driver_sql"} and call.args
            if builds_sql and not isinstance(call.args[0], ast.Constant):
                offenders.append(f"{path}:{call.lineno} builds SQL text from a non-literal")
    assert offenders == []


def test_only_the_settings_module_reads_the_environment():
    offenders = []
    for path in SOURCES:
        source = path.read_text()
        if "os.environ.get" in source or "os.getenv" in source:
            offenders.append(str(path))
    assert offenders == []
