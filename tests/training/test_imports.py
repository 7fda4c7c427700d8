"""The training modules import in any order, and reach into no other package's private modules."""

from __future__ import annotations

import ast
import itertools
import subprocess
import sys
from pathlib import Path

import pytest

import spectdl.training

MODULES = ("spectdl.training.config", "spectdl.training.checkpoint", "spectdl.training.networks")
TRAINING = Path(spectdl.training.__file__).resolve().parent


def _short(order) -> str:
    return "-".join(m.rsplit(".", 1)[1] for m in order)


@pytest.mark.parametrize("order", list(itertools.permutations(MODULES)), ids=_short)
def test_modules_import_in_any_order_in_a_fresh_interpreter(order):
    # A fresh interpreter: in this one the modules are already imported, which would hide a circle.
    code = "; ".join(f"import {m}" for m in order)
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr


def _imported(path: Path) -> list[tuple[int, str]]:
    """``(line, dotted name)`` of everything ``path`` imports, relative imports resolved, and for
    ``from X import y`` both ``X`` and ``X.y`` (``y`` may be a module or a private name)."""
    package = "spectdl.training"
    out = []
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"), filename=str(path))):
        if isinstance(node, ast.Import):
            out += [(node.lineno, alias.name) for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")[: len(package.split(".")) - (node.level - 1)]
                module = ".".join(base + ([node.module] if node.module else []))
            else:
                module = node.module or ""
            out.append((node.lineno, module))
            out += [(node.lineno, f"{module}.{alias.name}") for alias in node.names]
    return out


def _private_elsewhere(name: str) -> bool:
    """Whether ``name`` is a private part of a spectdl package other than training."""
    parts = name.split(".")
    if parts[0] != "spectdl" or parts[:2] == ["spectdl", "training"]:
        return False
    return any(p.startswith("_") and not (p.startswith("__") and p.endswith("__")) for p in parts[1:])


def test_training_uses_no_private_module_of_another_package():
    files = sorted(TRAINING.rglob("*.py"))
    assert any(f.name == "config.py" for f in files)
    found = [
        f"{f.relative_to(TRAINING.parent)}:{line}: {name}"
        for f in files
        for line, name in _imported(f)
        if name.startswith("spectdl.data._util") or _private_elsewhere(name)
    ]
    assert not found, "training imports private modules of other packages:\n" + "\n".join(found)


def test_the_checker_catches_what_it_should():
    assert _private_elsewhere("spectdl.data._util")
    assert _private_elsewhere("spectdl.data._util.read_yaml")
    assert _private_elsewhere("spectdl.io._dicom")
    assert not _private_elsewhere("spectdl.training._base")
    assert not _private_elsewhere("spectdl.typed_config")
    assert not _private_elsewhere("spectdl.__version__")
