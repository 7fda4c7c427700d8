"""What the two datasets share: per-sample generators and applying a transform."""

from __future__ import annotations

import json
from typing import Any, Callable

import torch

from spectdl.data.seeding import generator_for, mix_seed
from spectdl.data.transforms.base import Transform
from spectdl.errors import InputError


class SeededDataset(torch.utils.data.Dataset):
    """A map-style dataset whose random transform draws from a generator per ``(seed, epoch, index)``.

    The draw of sample ``i`` depends only on the seed, the epoch and ``i``: not on the order in
    which samples are read, nor on the number of DataLoader workers. Call :meth:`set_epoch` at the
    start of every epoch to get fresh augmentations (otherwise every epoch repeats epoch 0's).
    """

    def __init__(self, transform: Transform | Callable | None, seed: int, record_params: bool):
        if transform is not None and not callable(transform):
            raise InputError(f"transform: expected a spectdl transform or a callable, found {type(transform).__name__}")
        if isinstance(seed, bool) or not isinstance(seed, int) or seed < 0:
            raise InputError(f"seed: expected an integer >= 0, found {seed!r}")
        self.transform = transform
        self.seed = seed
        self.record_params = bool(record_params)
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        """Draw the augmentations of epoch ``epoch`` from now on."""
        if isinstance(epoch, bool) or not isinstance(epoch, int) or epoch < 0:
            raise InputError(f"epoch: expected an integer >= 0, found {epoch!r}")
        self.epoch = epoch

    def generator(self, index: int) -> torch.Generator:
        """The generator of sample ``index`` in the current epoch."""
        return generator_for(mix_seed(self.seed, self.epoch, index))

    def _transform(self, sample: dict[str, Any], index: int, transform=None) -> dict[str, Any]:
        """Apply ``transform`` (default: the dataset's) with the generator of ``index``."""
        transform = self.transform if transform is None else transform
        if transform is None:
            return sample
        if isinstance(transform, Transform):
            out, spec = transform(sample, self.generator(index))
            if self.record_params:
                # A JSON string: collates into a list of strings, and replay() accepts it.
                out["transform_params"] = json.dumps(spec, sort_keys=True)
            return out
        return transform(sample)
