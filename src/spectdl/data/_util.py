"""Small helpers shared by the data modules: seed mixing, single-threaded sections, strict YAML, JSON."""

from __future__ import annotations

import contextlib
import json
import re
from pathlib import Path
from typing import Any, Iterator

import numpy as np
import torch

from spectdl.errors import ConfigError, require

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


# YAML 1.1 demands a dot in floats, so PyYAML reads `1e5` as a string; accept YAML 1.2's form.
_FLOAT_12 = re.compile(r"^[-+]?(?:[0-9][0-9_]*(?:\.[0-9_]*)?|\.[0-9_]+)[eE][-+]?[0-9]+$")


def _strict_loader():
    yaml = require("yaml", "train")

    class StrictLoader(yaml.SafeLoader):
        """SafeLoader that reads ``1e5`` as a float and rejects a key given twice."""

    StrictLoader.add_implicit_resolver("tag:yaml.org,2002:float", _FLOAT_12, list("-+0123456789."))

    def construct_mapping(loader, node, deep=False):
        lines: dict[Any, int] = {}
        for key_node, _ in node.value:
            key = loader.construct_object(key_node, deep=True)
            if key in lines:
                raise yaml.constructor.ConstructorError(
                    None, None, f"key {key!r} given twice (first on line {lines[key] + 1})", key_node.start_mark
                )
            lines[key] = key_node.start_mark.line
        return yaml.SafeLoader.construct_mapping(loader, node, deep=deep)

    StrictLoader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, construct_mapping)
    return StrictLoader


def read_yaml(path: str | Path, error=ConfigError) -> Any:
    """The YAML document in ``path``; ``error`` (ConfigError by default) names the file and line."""
    yaml = require("yaml", "train")
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise error(f"{path}: cannot read the file ({exc.strerror or exc})") from None
    except UnicodeDecodeError as exc:
        raise error(f"{path}: not a UTF-8 text file ({exc.reason} at byte {exc.start})") from None
    try:
        return yaml.load(text, Loader=_strict_loader())  # noqa: S506 - a SafeLoader subclass
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"{path}:{mark.line + 1}:{mark.column + 1}" if mark is not None else str(path)
        raise error(f"{where}: invalid YAML: {getattr(exc, 'problem', None) or exc}") from None


def json_bytes(obj: Any) -> bytes:
    """Canonical JSON (sorted keys, fixed separators): equal objects give equal bytes."""
    return (json.dumps(obj, sort_keys=True, indent=1, ensure_ascii=True, allow_nan=False) + "\n").encode("ascii")


def atomic_write_bytes(path: Path, data: bytes) -> None:
    """Write ``data`` to a temporary file beside ``path`` and rename it over ``path``."""
    from spectdl.io._atomic import atomic_write

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
