"""Samples of volumes held in memory (images a study computed after simulation, e.g. PVC targets)."""

from __future__ import annotations

from typing import Any, Callable, Mapping, Sequence

import torch

from spectdl.data._dataset import SeededDataset
from spectdl.data.transforms.base import Transform
from spectdl.errors import InputError


class VolumeDataset(SeededDataset):
    """Dict samples of in-memory volumes ``{case: {key: tensor [C, *spatial]}}``.

    ``"input"`` stacks the keys ``input`` along the channel axis, ``"target"`` the keys ``target``;
    every key of ``extras`` is added as it is (e.g. ``"organ_labels"``), and ``"case_id"``. The
    random ``transform`` draws from the generator of ``(seed, epoch, index)``
    (:class:`~spectdl.data._dataset.SeededDataset`); with ``repeats`` each case appears that many
    times per epoch, each repeat with its own draw.
    """

    def __init__(self, volumes: Mapping[str, Mapping[str, torch.Tensor]], *, input: Sequence[str],
                 target: Sequence[str], extras: Sequence[str] = (), transform: Transform | Callable | None = None,
                 seed: int = 0, repeats: int = 1, dtype: torch.dtype = torch.float32, record_params: bool = False):
        super().__init__(transform, seed, record_params)
        if not volumes:
            raise InputError("volumes: no cases; expected at least one {case: {key: tensor}}")
        if isinstance(repeats, bool) or not isinstance(repeats, int) or repeats < 1:
            raise InputError(f"repeats: expected a positive integer, found {repeats!r}")
        self.ids = list(volumes)
        self.input, self.target, self.extras = list(input), list(target), list(extras)
        if not self.input or not self.target:
            raise InputError("input, target: expected at least one key each")
        for c in self.ids:
            missing = [k for k in (*self.input, *self.target, *self.extras) if k not in volumes[c]]
            if missing:
                raise InputError(f"case {c}: no {missing}; available {sorted(volumes[c])}")
        self.volumes, self.repeats, self.dtype = volumes, repeats, dtype

    def __len__(self) -> int:
        return len(self.ids) * self.repeats

    def __getitem__(self, i: int) -> dict[str, Any]:
        n = len(self)
        if isinstance(i, bool) or not isinstance(i, int) or not -n <= i < n:
            raise InputError(f"index: expected an integer in [0, {n}), found {i!r}")
        i %= n
        v = self.volumes[self.ids[i % len(self.ids)]]
        sample: dict[str, Any] = {
            "input": torch.cat([v[k].to(self.dtype) for k in self.input], 0),
            "target": torch.cat([v[k].to(self.dtype) for k in self.target], 0),
            **{k: v[k] for k in self.extras},
            "case_id": self.ids[i % len(self.ids)],
        }
        return self._transform(sample, i)
