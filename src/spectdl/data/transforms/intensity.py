"""Intensity normalisation with recorded factors (so a prediction can be scaled back).

* :class:`NormalizeMean`: divide each image by its mean (the bone SPECT recipe), or every key by
  the mean of one reference key (keeps their ratio).
* :class:`MatchCounts`: count-level consistency for planar pairs, scale the input so that its total
  counts equal the target's: ``input · Σ target / Σ input``.
* :class:`Scale`: multiply by known factors, e.g. the speed factor of a faster scan
  (``Scale({"input": 2.0})`` for a scan at twice the speed). Also what the other two draw.
"""

from __future__ import annotations

import math
from typing import Mapping, Sequence

import torch

from spectdl.data.transforms.base import Deterministic, Transform, keys_arg, selected
from spectdl.errors import InputError


class Scale(Deterministic):
    """Multiply ``sample[key]`` by ``factors[key]``: one number, or one per channel."""

    name = "scale"

    def __init__(self, factors: Mapping[str, float | Sequence[float]]):
        if not isinstance(factors, Mapping):
            raise InputError(f"Scale: factors must map keys to numbers, found {factors!r}")
        self.factors: dict[str, float | list[float]] = {}
        for k, v in factors.items():
            vals = [float(x) for x in v] if isinstance(v, (list, tuple)) else [float(v)]
            if not all(math.isfinite(x) for x in vals):
                raise InputError(f"Scale: factors[{k!r}] must be finite, found {v!r}")
            self.factors[str(k)] = vals if isinstance(v, (list, tuple)) else vals[0]

    def apply(self, sample):
        out = dict(sample)
        for k in selected(sample, list(self.factors), "Scale"):
            t, f = sample[k], self.factors[k]
            if isinstance(f, list):
                if len(f) != t.shape[0]:
                    raise InputError(f"Scale: {len(f)} factors for key {k!r} with {t.shape[0]} channels")
                f = torch.tensor(f, dtype=t.dtype, device=t.device).reshape((-1,) + (1,) * (t.dim() - 1))
            out[k] = t * f
        return out

    def inverse(self) -> "Scale":
        """The scaling that undoes this one (apply it to a network output to restore units)."""
        inv = {k: ([1.0 / x for x in v] if isinstance(v, list) else 1.0 / v) for k, v in self.factors.items()}
        return Scale(inv)

    def _args(self):
        return {"factors": dict(self.factors)}


def _mean(t: torch.Tensor, per_channel: bool) -> list[float] | float:
    t64 = t.detach().to(torch.float64)
    return t64.reshape(t.shape[0], -1).mean(1).tolist() if per_channel else float(t64.mean())


class NormalizeMean(Transform):
    """Divide by the mean: ``x / mean(x)``.

    Args:
        keys: keys to scale (default input and target).
        reference: ``None``: each key by its own mean; a key name: every key by that key's mean.
        per_channel: one mean per channel (e.g. an input that stacks counts and a μ map).
    """

    def __init__(self, keys: Sequence[str] = ("input", "target"), reference: str | None = None,
                 per_channel: bool = True):
        self.keys = keys_arg(keys)
        self.reference = reference
        self.per_channel = bool(per_channel)

    def draw(self, sample, generator=None) -> Scale:
        ks = selected(sample, self.keys, "NormalizeMean")
        factors = {}
        ref_mean = None if self.reference is None else _mean(sample[selected(sample, [self.reference], "NormalizeMean")[0]], False)
        for k in ks:
            m = ref_mean if ref_mean is not None else _mean(sample[k], self.per_channel)
            values = m if isinstance(m, list) else [m]
            if any(not v > 0 for v in values):
                who = self.reference if ref_mean is not None else k
                raise InputError(f"NormalizeMean: the mean of {who!r} is {m}; expected > 0 (an empty image cannot be normalised)")
            factors[k] = [1.0 / v for v in values] if isinstance(m, list) else 1.0 / m
        return Scale(factors)


class MatchCounts(Transform):
    """Scale ``key`` so that its total counts equal those of ``reference``: ``x · Σ ref / Σ x``."""

    def __init__(self, key: str = "input", reference: str = "target"):
        self.key, self.reference = key, reference

    def draw(self, sample, generator=None) -> Scale:
        k, r = selected(sample, [self.key, self.reference], "MatchCounts")
        total = float(sample[k].detach().to(torch.float64).sum())
        ref = float(sample[r].detach().to(torch.float64).sum())
        if not total > 0:
            raise InputError(f"MatchCounts: {k!r} sums to {total}; expected > 0 counts")
        return Scale({k: ref / total})
