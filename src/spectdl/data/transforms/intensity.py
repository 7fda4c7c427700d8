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
from typing import Any, Mapping, Sequence

import torch

from spectdl.data.transforms.base import Deterministic, Transform, keys_arg, selected
from spectdl.errors import InputError


def _per_channel(t: torch.Tensor, value: float | list[float], key: str, owner: str, what: str):
    """``value`` as a number, or as ``[C, 1, ...]`` to broadcast one number per channel of ``t``."""
    if not isinstance(value, list):
        return value
    if len(value) != t.shape[0]:
        raise InputError(f"{owner}: {len(value)} {what} for key {key!r} with {t.shape[0]} channels")
    return torch.tensor(value, dtype=t.dtype, device=t.device).reshape((-1,) + (1,) * (t.dim() - 1))


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
            out[k] = sample[k] * _per_channel(sample[k], self.factors[k], k, "Scale", "factors")
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
    """Scale ``key`` so that its total counts equal those of ``reference``: ``x · Σ ref / Σ x``.

    ``exclude``: the key of a mask (e.g. the bladder, :func:`spectdl.data.planar_pairs.bladder_mask`)
    whose pixels both sums leave out: the bladder fills between two scans, so counting it would
    bias the scale (the count-level consistency normalisation of real fast/standard pairs)."""

    def __init__(self, key: str = "input", reference: str = "target", exclude: str | None = None):
        self.key, self.reference, self.exclude = key, reference, exclude

    def draw(self, sample, generator=None) -> Scale:
        from spectdl.data.planar_pairs import totals_outside

        k, r = selected(sample, [self.key, self.reference], "MatchCounts")
        mask = None if self.exclude is None else sample[selected(sample, [self.exclude], "MatchCounts")[0]]
        total, ref = totals_outside(sample[k], sample[r], mask)
        if not total > 0:
            raise InputError(f"MatchCounts: {k!r} sums to {total}; expected > 0 counts")
        return Scale({k: ref / total})


class Shift(Deterministic):
    """Add ``offsets[key]`` (one number, or one per channel): ``x + o``. With :class:`Scale` it
    expresses an affine intensity map, e.g. CT in HU to ``(HU + 1000) / 1000``."""

    name = "shift"

    def __init__(self, offsets: Mapping[str, float | Sequence[float]]):
        self.scale = Scale(offsets)  # same argument checks; the numbers are added, not multiplied
        self.offsets = self.scale.factors

    def apply(self, sample):
        out = dict(sample)
        for k in selected(sample, list(self.offsets), "Shift"):
            out[k] = sample[k] + _per_channel(sample[k], self.offsets[k], k, "Shift", "offsets")
        return out

    def _args(self):
        return {"offsets": dict(self.offsets)}


class NormalizeChannels(Transform):
    """The training side of :class:`spectdl.data.normalization.Normalization`.

    ``input`` becomes ``(x_c + o_c) / s_c`` with the checkpoint's per-channel offsets and divisors,
    exactly as inference will scale it; ``target`` is divided by its own statistic
    (``target_statistic``, e.g. ``"mean"``: the bone SPECT recipe) or, with
    ``target_statistic=None``, by ``s_o · output_scale`` (``s_o`` the divisor of input channel
    ``normalization.output``, 1 without one), so that the network learns in the units inference restores.
    """

    def __init__(self, normalization, key: str = "input", target: str | None = "target",
                 target_statistic: str | None = "mean"):
        from spectdl.data.normalization import Normalization

        if isinstance(normalization, Mapping) or isinstance(normalization, str):
            normalization = Normalization.from_meta({"normalization": normalization}, where="NormalizeChannels")
        if not isinstance(normalization, Normalization):
            raise InputError(f"NormalizeChannels: normalization is {normalization!r}; expected a Normalization or its mapping")
        self.normalization, self.key, self.target = normalization, key, target
        self.target_statistic = target_statistic

    def draw(self, sample, generator=None):
        from spectdl.data.normalization import volume_statistic
        from spectdl.data.transforms.base import Compose

        k = selected(sample, [self.key], "NormalizeChannels")[0]
        n = sample[k].shape[0]
        scales = self.normalization.scales(sample[k])
        offsets = [float(self.normalization.offsets[c]) if c < len(self.normalization.offsets) else 0.0
                   for c in range(n)]
        factors: dict[str, Any] = {k: [1.0 / s for s in scales]}
        if self.target is not None and self.target in sample:
            if self.target_statistic is None:
                out = self.normalization.output
                if out is None and self.normalization.output_scale == 1.0:
                    raise InputError("NormalizeChannels: target_statistic=None needs normalization.output or "
                                     "normalization.output_scale")
                t = (1.0 if out is None else scales[out]) * self.normalization.output_scale
            else:
                t = volume_statistic(sample[self.target], self.target_statistic)
                if not (math.isfinite(t) and t > 0):
                    raise InputError(f"NormalizeChannels: the {self.target_statistic} of {self.target!r} is {t}; expected > 0")
            factors[self.target] = 1.0 / t
        steps: list = [Shift({k: offsets})] if any(offsets) else []
        return Compose([*steps, Scale(factors)])


class MaskFromLabels(Deterministic):
    """``sample[key] = (sample[source] ∈ labels)`` as a float 0/1 mask ``[1, *spatial]``, e.g. the
    lesion mask of the lesion-attention loss from a phantom's label map."""

    name = "mask_from_labels"

    def __init__(self, labels: Sequence[int], source: str = "labels", key: str = "lesion_mask"):
        if isinstance(labels, (int, float)):
            labels = [labels]
        self.labels = [int(v) for v in labels]
        if not self.labels:
            raise InputError("MaskFromLabels: labels is empty; expected at least one label value")
        self.source, self.key = source, key

    def apply(self, sample):
        src = selected(sample, [self.source], "MaskFromLabels")[0]
        lab = sample[src]
        values = torch.tensor(self.labels, device=lab.device, dtype=lab.dtype)
        out = dict(sample)
        out[self.key] = torch.isin(lab, values).any(0, keepdim=True).to(torch.float32)
        return out

    def _args(self):
        return {"labels": list(self.labels), "source": self.source, "key": self.key}


class OrganMasks(Deterministic):
    """``sample[key] = {name: (sample[source] ∈ labels) as float 0/1 [1, *spatial]}`` for each
    ``regions`` entry, e.g. ``{"myocardium": [2], "blood_pool": [3]}`` for the IMBV loss's
    ``masks=`` context (a dict of tensors collates into a dict of batches)."""

    name = "organ_masks"

    def __init__(self, regions: Mapping[str, Sequence[int]], source: str = "organ_labels", key: str = "masks"):
        if not isinstance(regions, Mapping) or not regions:
            raise InputError(f"OrganMasks: regions is {regions!r}; expected {{name: [label, ...]}}")
        self.regions = {str(k): [int(v)] if isinstance(v, (int, float)) else [int(x) for x in v]
                        for k, v in regions.items()}
        empty = [k for k, v in self.regions.items() if not v]
        if empty:
            raise InputError(f"OrganMasks: regions {empty} have no label values")
        self.source, self.key = source, key

    def apply(self, sample):
        lab = sample[selected(sample, [self.source], "OrganMasks")[0]]
        out = dict(sample)
        out[self.key] = {name: torch.isin(lab, torch.tensor(v, device=lab.device, dtype=lab.dtype)).any(0, keepdim=True)
                         .to(torch.float32) for name, v in self.regions.items()}
        return out

    def _args(self):
        return {"regions": {k: list(v) for k, v in self.regions.items()}, "source": self.source, "key": self.key}
