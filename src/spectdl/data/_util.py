"""Small helpers of the simulation modules: single-threaded sections, canonical JSON, atomic bytes.

Seed mixing is public in :mod:`spectdl.data.seeding`, the volume statistics of normalisation in
:mod:`spectdl.data.normalization`, atomic writes and file hashes in :mod:`spectdl.io.atomic`. The
strict YAML reader of every spectdl config is :func:`spectdl.typed_config.read_yaml`.
"""

from __future__ import annotations

import contextlib
import json
from pathlib import Path
from typing import Any, Iterator

import torch

from spectdl.io.atomic import atomic_write


@contextlib.contextmanager
def single_thread() -> Iterator[None]:
    """Run the block with one intra-op thread, then restore the previous count.

    Multithreaded reductions split sums differently for different thread counts, so the last bits
    of a result depend on it; one thread everywhere makes shards identical whatever the number of
    worker processes.
    """
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(before)


def json_bytes(obj: Any) -> bytes:
    """Canonical JSON (sorted keys, fixed separators): equal objects give equal bytes."""
    return (json.dumps(obj, sort_keys=True, indent=1, ensure_ascii=True, allow_nan=False) + "\n").encode("ascii")


def atomic_write_bytes(path: Path, data: bytes) -> None:
    """Replace ``path`` by ``data`` through :func:`spectdl.io.atomic.atomic_write` (the one writer)."""
    atomic_write(path, lambda tmp: Path(tmp).write_bytes(data), overwrite=True)
