"""Intensity normalisation of a network's input and output, as recorded in its checkpoint.

A network trained on scaled images (e.g. every input divided by its mean, the target by the same
number) must see its input scaled the same way at inference, and its output scaled back:

    x̃_c = (x_c + o_c) / s_c    for every input channel c,
    y   = ỹ · s_o · k          (o = the channel named by ``output``, s_o = 1 when it is null;
                                k = ``output_scale``, default 1),
    y   = max(y, output_min)   when ``output_min`` is set.

Each ``s_c`` comes from the whole volume (never from a window or a slice, which would make the
result depend on how the volume was cut).

Checkpoint metadata (``meta["normalization"]``, all keys optional)::

    normalization:
      inputs: [mean_positive, 0.15]   # per input channel: a statistic or a fixed divisor
      output: 0                       # multiply the output by the divisor of input channel 0
      output_min: 0.0                 # clamp the output from below (activity is never negative)
      output_scale: 1.0               # a fixed factor of the output (targets are divided by it in training)
      offsets: [0, 1000]              # per input channel, added before dividing (CT: (HU + 1000) / 1000)

The offsets let a CT channel in Hounsfield units enter as a density-like image (air 0, water 1,
bone about 2) with ``offsets: [0, 1000]`` and ``inputs: [mean_positive, 1000]``; a statistic is
taken of the shifted channel. Statistics: ``"none"`` (1), ``"mean"`` (mean of all voxels), ``"mean_positive"`` (mean of the
voxels > 0), ``"max"`` (largest voxel); a number is used as it is. Channels beyond the list are
not scaled. A string instead of the mapping is short for ``{inputs: [that], output: 0}``.
A checkpoint without the key is taken as not normalised (every ``s_c = 1``).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Mapping, Optional, Union

import torch

from spectdl.errors import InputError

__all__ = ["STATISTICS", "Normalization", "volume_statistic"]

STATISTICS = ("none", "mean", "mean_positive", "max")

Divisor = Union[str, float]


def _is_number(value) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def volume_statistic(x: torch.Tensor, how: Divisor) -> float:
    """The divisor of an intensity normalisation, from a whole volume: ``"none"`` (1), ``"mean"``,
    ``"mean_positive"`` (mean of the voxels > 0; 0 when there are none), ``"max"``, or a number.

    The one definition for training data (:class:`spectdl.data.ManifestDataset`, the
    ``NormalizeChannels`` transform) and inference, so that both divide by the same number; float64
    so that the sum over a large volume does not lose digits.
    """
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
    raise InputError(f"normalize: expected one of {STATISTICS} or a number, found {how!r}")


def _offset(offsets: tuple[float, ...], c: int) -> float:
    return float(offsets[c]) if c < len(offsets) else 0.0


@dataclass(frozen=True)
class Normalization:
    """Per-channel input divisors and the output's rescaling (module docstring).

    Attributes:
        inputs: one entry per input channel (missing trailing channels are not scaled): a name in
            :data:`STATISTICS` or a positive number.
        output: index of the input channel whose divisor multiplies the output, or ``None``.
        output_min: lower bound of the output, or ``None``.
        offsets: one number per input channel added before dividing (missing channels: 0).
        output_scale: a fixed positive factor of the output (e.g. 10 so that a network with a sigmoid
            decoder learns activities up to 9 as values below 1).
    """

    inputs: tuple[Divisor, ...] = ()
    output: Optional[int] = None
    output_min: Optional[float] = None
    offsets: tuple[float, ...] = ()
    output_scale: float = 1.0

    def __post_init__(self) -> None:
        for c, how in enumerate(self.inputs):
            if not (how in STATISTICS if isinstance(how, str) else _is_number(how) and how > 0):
                raise InputError(
                    f"normalization.inputs[{c}]: {how!r}; expected one of {STATISTICS} or a positive number"
                )
        if self.output is not None and (isinstance(self.output, bool) or not isinstance(self.output, int)
                                        or self.output < 0):
            raise InputError(f"normalization.output: {self.output!r}; expected an input channel index >= 0 or null")
        if not (_is_number(self.output_scale) and self.output_scale > 0):
            raise InputError(f"normalization.output_scale: {self.output_scale!r}; expected a positive number")
        if self.output_min is not None and not _is_number(self.output_min):
            raise InputError(f"normalization.output_min: {self.output_min!r}; expected a finite number or null")
        for c, o in enumerate(self.offsets):
            if not _is_number(o):
                raise InputError(f"normalization.offsets[{c}]: {o!r}; expected a finite number")
        if self.output is not None and _offset(self.offsets, self.output) != 0:
            raise InputError(
                f"normalization.output: channel {self.output} has offset {_offset(self.offsets, self.output)}; "
                "expected the output to be rescaled by a channel without an offset"
            )

    @classmethod
    def from_meta(cls, meta: Mapping[str, Any], where: str = "checkpoint") -> "Normalization":
        """The normalisation a checkpoint's metadata records (identity when it records none)."""
        spec = meta.get("normalization") if isinstance(meta, Mapping) else None
        if spec is None:
            return cls()
        if isinstance(spec, str):
            spec = {"inputs": [spec], "output": 0}
        if not isinstance(spec, Mapping):
            raise InputError(f"{where}: normalization is a {type(spec).__name__}; expected a mapping or a statistic name")
        unknown = sorted(set(spec) - {"inputs", "output", "output_min", "offsets", "output_scale"})
        if unknown:
            raise InputError(
                f"{where}: normalization has unknown keys {unknown}; expected inputs, output, output_min, offsets, "
                "output_scale"
            )
        inputs = spec.get("inputs", [])
        if isinstance(inputs, (str, int, float)):
            inputs = [inputs]
        offsets = spec.get("offsets") or []
        if not isinstance(offsets, (list, tuple)):
            raise InputError(f"{where}: normalization.offsets is {offsets!r}; expected a list of numbers")
        try:
            return cls(tuple(inputs), spec.get("output"), spec.get("output_min"), tuple(offsets),
                       spec.get("output_scale", 1.0))
        except InputError as exc:
            raise InputError(f"{where}: {exc}") from None

    def to_meta(self) -> dict[str, Any]:
        """The mapping to store under ``meta["normalization"]``."""
        meta: dict[str, Any] = {"inputs": list(self.inputs), "output": self.output, "output_min": self.output_min}
        if any(o != 0 for o in self.offsets):
            meta["offsets"] = [float(o) for o in self.offsets]
        if self.output_scale != 1.0:
            meta["output_scale"] = float(self.output_scale)
        return meta

    def scales(self, volume: torch.Tensor) -> list[float]:
        """The divisors ``s_c`` of a volume ``[C, *spatial]`` (one per channel).

        Raises InputError when a statistic is zero or not finite (an empty or all-zero channel).
        """
        if not isinstance(volume, torch.Tensor) or volume.dim() < 2:
            found = tuple(volume.shape) if isinstance(volume, torch.Tensor) else type(volume).__name__
            raise InputError(f"volume: {found}; expected a tensor [C, *spatial]")
        n = volume.shape[0]
        if len(self.inputs) > n:
            raise InputError(f"volume: {n} channels; the normalization describes {len(self.inputs)} input channels")
        if self.output is not None and self.output >= n:
            raise InputError(f"normalization.output: channel {self.output}; the volume has only {n} channels")
        out = []
        for c in range(n):
            how = self.inputs[c] if c < len(self.inputs) else "none"
            o = _offset(self.offsets, c)
            s = volume_statistic(volume[c] + o if o else volume[c], how)
            if not math.isfinite(s) or s <= 0:
                raise InputError(
                    f"volume channel {c}: its {how} is {s!r}; expected a positive number to divide by "
                    "(is the channel empty or all zero?)"
                )
            out.append(s)
        return out

    def apply(self, volume: torch.Tensor) -> tuple[torch.Tensor, list[float]]:
        """``(x̃ [C, *spatial], scales)``: the network's input and the divisors used."""
        scales = self.scales(volume)
        shape = (-1,) + (1,) * (volume.dim() - 1)
        if any(o != 0 for o in self.offsets):
            o = torch.tensor([_offset(self.offsets, c) for c in range(volume.shape[0])], dtype=volume.dtype,
                             device=volume.device)
            volume = volume + o.reshape(shape)
        if all(s == 1.0 for s in scales):
            return volume, scales
        s = torch.tensor(scales, dtype=volume.dtype, device=volume.device)
        return volume / s.reshape(shape), scales

    def restore(self, output: torch.Tensor, scales: list[float]) -> torch.Tensor:
        """The network's output ``ỹ [C_out, *spatial]`` in the input's units (module docstring)."""
        if self.output is not None:
            output = output * scales[self.output]
        if self.output_scale != 1.0:
            output = output * self.output_scale
        if self.output_min is not None:
            output = output.clamp_min(self.output_min)
        return output
