"""Small helpers every study runner shares: run folders and atomic writes."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

from spectdl.errors import InputError
from spectdl.io._atomic import atomic_write


def new_run_dir(root: Path, seed: int) -> Path:
    """``root/<YYYYmmdd-HHMMSS>-seed<seed>[-k]``, created empty; never reuses an existing folder."""
    stamp = time.strftime("%Y%m%d-%H%M%S")
    base = Path(root) / f"{stamp}-seed{seed}"
    path, k = base, 1
    while path.exists():
        k += 1
        path = base.with_name(f"{base.name}-{k}")
    try:
        path.mkdir(parents=True)
    except OSError as exc:
        raise InputError(f"out_dir: cannot create {path}: {exc.strerror}") from exc
    return path


def atomic_write_bytes(path: Path, data: bytes) -> None:
    """Write ``data`` to a temporary file beside ``path``, then rename: readers never see half a file."""
    atomic_write(path, lambda tmp: Path(tmp).write_bytes(data), overwrite=True)


def atomic_write_text(path: Path, text: str) -> None:
    atomic_write_bytes(path, text.encode("utf-8"))


def write_json(path: Path, obj: Any) -> None:
    atomic_write_text(path, json.dumps(obj, indent=2, default=str) + "\n")
