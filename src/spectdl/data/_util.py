"""Small helpers shared by the data modules: seed mixing, single-threaded sections, JSON, volume statistics.

The strict YAML reader of every spectdl config is :func:`spectdl.typed_config.read_yaml`.
"""

from __future__ import annotations

import contextlib
import json
from pathlib import Path
from typing import Any, Iterator

import numpy as np
import torch

_SEED_BITS = 61


def mix_seed(*values: int) -> int:
    """A seed in ``[0, 2**61)`` from several integers, well mixed (``numpy.random.SeedSequence``).

    Nearby inputs (sample 7 and sample 8, seed 0 and seed 1) give unrelated seeds, so two datasets
    made with neighbouring seeds do not share samples.
    """
    state = np.random.SeedSequence([int(v) for v in values]).generate_state(1, dtype=np.uint64)[0]
    return int(state >> np.uint64(64 - _SEED_BITS))


def generator_for(seed: int, device: torch.device | str = "cpu") -> torch.Generator:
    """A ``torch.Generator`` on ``device`` seeded with ``seed``."""
    return torch.Generator(device=device).manual_seed(int(seed))


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
    """Write ``data`` to a temporary file beside ``path`` and rename it over ``path``."""
    from spectdl.io.atomic import atomic_write

    atomic_write(path, lambda tmp: Path(tmp).write_bytes(data), overwrite=True)


VOLUME_STATISTICS = ("none", "mean", "mean_positive", "max")


def volume_statistic(x: torch.Tensor, how: str | float) -> float:
    """The divisor of an intensity normalisation, from a whole volume: ``"none"`` (1), ``"mean"``,
    ``"mean_positive"`` (mean of the voxels > 0; 0 when there are none), ``"max"``, or a number."""
    if not isinstance(how, str):
        return float(how)
    v = x.detach().to(torch.float64)
    if how == "none":
        return 1.0
    if how == "mean":
        return float(v.mean())
    if how == "max":
        return float(v.max())
    if how == "mean_positive":
        positive = v[v > 0]
        return float(positive.mean()) if positive.numel() else 0.0
    from spectdl.errors import InputError

    raise InputError(f"normalize: expected one of {VOLUME_STATISTICS} or a number, found {how!r}")
