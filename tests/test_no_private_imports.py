"""No spectdl module reaches into another package's private parts.

A private module (``spectdl.data._util``) or name (``spectdl.io.atomic._umask``) may change without
notice, so it may be used only inside its own top-level package (``spectdl.data.*`` for
``spectdl.data._util``). What two packages share is public in the lower one. The check parses every
module under ``src/spectdl`` with :mod:`ast` (nothing is imported), so it also sees imports inside
functions and ``importlib.import_module("...")`` calls with a literal name.
"""

from __future__ import annotations

import ast
from pathlib import Path

import spectdl

ROOT = Path(spectdl.__file__).resolve().parent


def _private(part: str) -> bool:
    return part.startswith("_") and not (part.startswith("__") and part.endswith("__"))


def _module_name(path: Path, root: Path) -> str:
    parts = list(path.relative_to(root.parent).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _imports(source: str, module: str, is_package: bool) -> list[tuple[int, str]]:
    """``(line, dotted name)`` of everything ``source`` imports: ``X`` for ``import X``, ``X.y`` for
    ``from X import y`` (relative imports resolved against ``module``), and literal names given to
    ``importlib.import_module``."""
    package = module if is_package else module.rpartition(".")[0]
    out: list[tuple[int, str]] = []
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            out += [(node.lineno, alias.name) for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")
                base = base[: len(base) - (node.level - 1)]
                where = ".".join(base + ([node.module] if node.module else []))
            else:
                where = node.module or ""
            out += [(node.lineno, f"{where}.{alias.name}") for alias in node.names if alias.name != "*"]
            if any(alias.name == "*" for alias in node.names):
                out.append((node.lineno, where))
        elif isinstance(node, ast.Call) and node.args and isinstance(node.args[0], ast.Constant) \
                and isinstance(node.args[0].value, str):
            f = node.func
            name = f.attr if isinstance(f, ast.Attribute) else f.id if isinstance(f, ast.Name) else ""
            if name == "import_module":
                out.append((node.lineno, node.args[0].value))
    return out


def offenders_in(source: str, module: str, is_package: bool = False) -> list[tuple[int, str]]:
    """The imports of ``module`` that name a private part of another top-level spectdl package."""
    own = module.split(".")[1] if module.count(".") else None
    found = []
    for line, name in _imports(source, module, is_package):
        parts = name.split(".")
        if parts[0] != "spectdl" or len(parts) < 2 or parts[1] == own:
            continue
        if any(_private(p) for p in parts[1:]):
            found.append((line, name))
    return sorted(found)


def test_no_module_imports_a_private_part_of_another_package():
    files = sorted(ROOT.rglob("*.py"))
    assert len(files) > 50 and (ROOT / "data" / "seeding.py") in files  # the walk really sees the package
    found = []
    for f in files:
        module = _module_name(f, ROOT)
        for line, name in offenders_in(f.read_text(encoding="utf-8"), module, f.name == "__init__.py"):
            found.append(f"{f.relative_to(ROOT.parent)}:{line}: {name}")
    assert not found, (
        "private modules or names imported from another spectdl package (make them public in their "
        "lowest natural home):\n" + "\n".join(found)
    )


def test_the_checker_finds_what_it_should_and_nothing_else():
    source = "\n".join([
        "from spectdl.data._util import json_bytes",        # 1: private module of another package
        "from spectdl.io.atomic import _umask",             # 2: private name of another package
        "import spectdl.stats._data",                       # 3
        "from spectdl.stats import _data",                  # 4
        "from spectdl.report._x import y",                  # 5: its own package: allowed
        "from ._y import z",                                # 6: relative, own package: allowed
        "from ..data._util import single_thread",           # 7: relative into another package
        "from spectdl import __version__",                  # 8: dunder: allowed
        "from spectdl.io.atomic import atomic_write",       # 9: public: allowed
        "import numpy._core",                               # 10: not spectdl
        "def f():\n    from spectdl.data._dataset import SeededDataset",      # 12: inside a function
        "importlib.import_module('spectdl.models._common')",                  # 13
        "from spectdl import _private_top",                                   # 14: a private top-level module
    ])
    found = offenders_in(source, "spectdl.report.figures")
    assert found == [
        (1, "spectdl.data._util.json_bytes"),
        (2, "spectdl.io.atomic._umask"),
        (3, "spectdl.stats._data"),
        (4, "spectdl.stats._data"),
        (7, "spectdl.data._util.single_thread"),
        (12, "spectdl.data._dataset.SeededDataset"),
        (13, "spectdl.models._common"),
        (14, "spectdl._private_top"),
    ]
    # A package's __init__ resolves "." to itself; a top-level module's own package is its name.
    assert offenders_in("from ._base import Loss", "spectdl.losses", is_package=True) == []
    assert offenders_in("from spectdl.cli_helpers import _x", "spectdl.cli") == [(1, "spectdl.cli_helpers._x")]
