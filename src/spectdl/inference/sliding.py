"""Apply a network to a whole volume: slice by slice (2-D networks) or by overlapping windows (3-D).

Both functions take one volume ``[C, *spatial]`` (no batch axis), cut it into pieces the network
can take, run the pieces in batches of ``batch_size`` and put the outputs back together. The
network must keep the spatial size (``[B, C, *s] -> [B, C_out, *s]``); the number of output
channels ``C_out`` is read from its first output.

Sliding window (after MONAI's ``sliding_window_inference``; written anew)
-------------------------------------------------------------------------
Along every axis of length ``S`` the window of length ``r`` starts at ``0, t, 2t, ...`` with the
stride ``t = max(1, floor(r · (1 − overlap)))``; the last start is moved back to ``S − r`` so
the windows end at the volume's edge. An axis shorter than its window is padded symmetrically
with ``pad_value`` up to ``r`` and cropped again afterwards. The outputs ``f_k`` of the windows are
blended voxel by voxel as a weighted mean

    y(v) = Σ_k w(v − o_k) f_k(v) / Σ_k w(v − o_k),

where ``o_k`` is the window's origin and ``w`` the blending weight inside a window: ``1``
(``blend="constant"``) or a separable Gaussian ``w(d) = Π_i exp(−(d_i − (r_i − 1)/2)² / (2 σ_i²))``
with ``σ_i = sigma_scale · r_i`` (``blend="gaussian"``), so that voxels near a window's border, where
the network sees less context, count less. The Gaussian is floored at 1e-30 so that a voxel
seen only by window edges still gets a finite mean.

The sums are accumulated in float64 (float32 on devices without float64, such as Apple MPS) and
cast back to the network's output dtype: a network whose output at a voxel does not depend on
the window (a pointwise network) therefore gives exactly its whole-volume output.
"""

from __future__ import annotations

import itertools
import math
from typing import Iterator, Sequence, Union

import torch
import torch.nn.functional as F
from torch import nn

from spectdl.errors import InputError

__all__ = ["blend_weights", "predict_slices", "predict_sliding_window", "window_starts"]

BLENDS = ("gaussian", "constant")
_WEIGHT_FLOOR = 1e-30

DeviceLike = Union[str, torch.device, None]


# --------------------------------------------------------------------------------------------------
# Checks


def _check_volume(volume, ndim: int, name: str = "volume") -> None:
    if not isinstance(volume, torch.Tensor):
        raise InputError(f"{name}: expected a torch.Tensor, found {type(volume).__name__}")
    if volume.dim() != ndim:
        layout = "[C, X, Y, Z]" if ndim == 4 else f"[C, {ndim - 1} spatial axes]"
        raise InputError(f"{name}: shape {tuple(volume.shape)}; expected {layout} ({ndim} axes, no batch axis)")
    if any(s == 0 for s in volume.shape):
        raise InputError(f"{name}: shape {tuple(volume.shape)} has an empty axis; expected sizes >= 1")


def _check_batch_size(batch_size) -> int:
    if not isinstance(batch_size, int) or isinstance(batch_size, bool) or batch_size < 1:
        raise InputError(f"batch_size: expected a positive integer, found {batch_size!r}")
    return batch_size


def _roi(roi_size, n_spatial: int) -> tuple[int, ...]:
    sizes = (roi_size,) * n_spatial if isinstance(roi_size, int) else tuple(roi_size)
    ok = len(sizes) == n_spatial and all(
        isinstance(r, int) and not isinstance(r, bool) and r >= 1 for r in sizes
    )
    if not ok:
        raise InputError(f"roi_size: {roi_size!r}; expected {n_spatial} positive integers (one per spatial axis)")
    return sizes


def _run(model: nn.Module, batch: torch.Tensor, where: str) -> torch.Tensor:
    out = model(batch)
    if not isinstance(out, torch.Tensor):
        raise InputError(
            f"model: returned a {type(out).__name__}; expected one tensor [B, C_out, *spatial] "
            "(put the network in eval mode, or wrap it to return its main output)"
        )
    if out.dim() != batch.dim() or out.shape[0] != batch.shape[0] or out.shape[2:] != batch.shape[2:]:
        raise InputError(
            f"model: {where} of shape {tuple(batch.shape)} gave an output of shape {tuple(out.shape)}; "
            f"expected [{batch.shape[0]}, C_out, {', '.join(str(s) for s in batch.shape[2:])}] (same spatial size)"
        )
    return out


def _accumulator_dtype(device: torch.device) -> torch.dtype:
    # MPS has no float64; elsewhere float64 keeps the blended mean of equal outputs exact.
    return torch.float32 if device.type == "mps" else torch.float64


# --------------------------------------------------------------------------------------------------
# Slice-wise


def predict_slices(
    model: nn.Module,
    volume: torch.Tensor,
    batch_size: int = 8,
    axis: int = 2,
    *,
    device: DeviceLike = None,
) -> torch.Tensor:
    """Apply a 2-D network to every slice of a volume.

    Args:
        model: a 2-D network ``[B, C, a, b] -> [B, C_out, a, b]`` (put it in eval mode first).
        volume: ``[C, X, Y, Z]``.
        batch_size: slices per forward pass.
        axis: the spatial axis the slices are taken across: 0 (x), 1 (y) or 2 (z, axial slices,
            the default); negative values count from the end.
        device: where the network runs; default the volume's device. Slices are moved there batch
            by batch and the output is gathered on the volume's device, so a large volume can stay
            in host memory while the network runs on a GPU.

    Returns:
        ``[C_out, X, Y, Z]`` on the volume's device, in the network's output dtype.
    """
    _check_volume(volume, 4)
    batch_size = _check_batch_size(batch_size)
    if not isinstance(axis, int) or isinstance(axis, bool) or not -3 <= axis <= 2:
        raise InputError(f"axis: {axis!r}; expected 0, 1 or 2 (x, y or z) or a negative index -3..-1")
    axis %= 3
    run_on = volume.device if device is None else torch.device(device)
    slices = volume.movedim(1 + axis, 0)  # [N, C, a, b]
    outs = []
    with torch.no_grad():
        for i in range(0, slices.shape[0], batch_size):
            batch = slices[i : i + batch_size].to(run_on)
            where = f"slices {i}..{i + batch.shape[0] - 1} along axis {axis}"
            outs.append(_run(model, batch, where).to(volume.device))
    return torch.cat(outs, 0).movedim(0, 1 + axis)


# --------------------------------------------------------------------------------------------------
# Sliding window


def window_starts(size: int, roi: int, overlap: float) -> list[int]:
    """Start indices of windows of length ``roi`` covering ``[0, size)`` (``size >= roi``).

    Stride ``max(1, floor(roi · (1 − overlap)))``; the last window ends exactly at ``size``.
    """
    if size < roi:
        raise InputError(f"size: {size} is smaller than the window {roi}; expected size >= roi (pad first)")
    stride = max(1, int(math.floor(roi * (1.0 - overlap))))
    n = math.ceil((size - roi) / stride) + 1
    return [min(k * stride, size - roi) for k in range(n)]


def blend_weights(
    roi_size: Sequence[int],
    blend: str = "gaussian",
    *,
    sigma_scale: float = 0.125,
    dtype: torch.dtype = torch.float64,
    device: DeviceLike = None,
) -> torch.Tensor:
    """The blending weight of one window, ``[*roi_size]``, largest value 1 (module docstring).

    ``blend="constant"``: all ones. ``blend="gaussian"``: the separable Gaussian centred on the
    window with ``σ_i = sigma_scale · roi_size[i]`` voxels, floored at 1e-30.
    """
    roi = _roi(tuple(roi_size), len(tuple(roi_size)))
    if blend not in BLENDS:
        raise InputError(f"blend: {blend!r}; expected one of {BLENDS}")
    if blend == "constant":
        return torch.ones(roi, dtype=dtype, device=device)
    if not (isinstance(sigma_scale, (int, float)) and math.isfinite(sigma_scale) and sigma_scale > 0):
        raise InputError(f"sigma_scale: {sigma_scale!r}; expected a positive number (σ as a fraction of the window)")
    w = torch.ones((), dtype=torch.float64, device=device)
    for i, r in enumerate(roi):
        d = torch.arange(r, dtype=torch.float64, device=device) - (r - 1) / 2.0
        g = torch.exp(-0.5 * (d / (sigma_scale * r)) ** 2)
        w = w.unsqueeze(-1) * g.reshape((1,) * i + (r,))
    return (w / w.max()).clamp_min(_WEIGHT_FLOOR).to(dtype)


def _batches(items: list, size: int) -> Iterator[list]:
    for i in range(0, len(items), size):
        yield items[i : i + size]


def predict_sliding_window(
    model: nn.Module,
    volume: torch.Tensor,
    roi_size: Union[int, Sequence[int]],
    overlap: float = 0.5,
    batch_size: int = 8,
    blend: str = "gaussian",
    *,
    sigma_scale: float = 0.125,
    pad_value: float = 0.0,
    device: DeviceLike = None,
) -> torch.Tensor:
    """Apply a network to overlapping windows of a volume and blend the outputs (module docstring).

    Args:
        model: a network ``[B, C, *roi_size] -> [B, C_out, *roi_size]`` (put it in eval mode first).
        volume: ``[C, X, Y, Z]`` (or ``[C, X, Y]`` with a 2-D ``roi_size``).
        roi_size: window size in voxels per spatial axis (an int means the same on every axis).
        overlap: fraction of a window shared with the next one, in ``[0, 1)``.
        batch_size: windows per forward pass.
        blend: ``"gaussian"`` or ``"constant"``.
        sigma_scale: Gaussian σ as a fraction of the window size.
        pad_value: value of the padding of axes shorter than the window.
        device: where the network runs; default the volume's device (windows are moved there
            batch by batch, outputs blended on the volume's device).

    Returns:
        ``[C_out, *spatial]`` on the volume's device, in the network's output dtype.
    """
    if not isinstance(volume, torch.Tensor):
        raise InputError(f"volume: expected a torch.Tensor, found {type(volume).__name__}")
    n_spatial = volume.dim() - 1
    if n_spatial < 1:
        raise InputError(f"volume: shape {tuple(volume.shape)}; expected [C, X, Y, Z]")
    _check_volume(volume, n_spatial + 1)
    roi = _roi(roi_size, n_spatial)
    if not (isinstance(overlap, (int, float)) and not isinstance(overlap, bool) and 0.0 <= overlap < 1.0):
        raise InputError(f"overlap: {overlap!r}; expected a fraction in [0, 1)")
    batch_size = _check_batch_size(batch_size)
    if blend not in BLENDS:
        raise InputError(f"blend: {blend!r}; expected one of {BLENDS}")
    run_on = volume.device if device is None else torch.device(device)

    shape = tuple(volume.shape[1:])
    before = [max(r - s, 0) // 2 for s, r in zip(shape, roi)]
    after = [max(r - s, 0) - b for s, r, b in zip(shape, roi, before)]
    if any(before) or any(after):
        pads = [p for b, a in zip(reversed(before), reversed(after)) for p in (b, a)]
        volume = F.pad(volume, pads, mode="constant", value=float(pad_value))
    padded = tuple(volume.shape[1:])

    acc_dtype = _accumulator_dtype(volume.device)
    weight = blend_weights(roi, blend, sigma_scale=sigma_scale, dtype=acc_dtype, device=volume.device)
    starts = list(itertools.product(*(window_starts(s, r, overlap) for s, r in zip(padded, roi))))
    total = None
    norm = torch.zeros(padded, dtype=acc_dtype, device=volume.device)
    out_dtype = None
    with torch.no_grad():
        for group in _batches(starts, batch_size):
            boxes = [tuple(slice(o, o + r) for o, r in zip(origin, roi)) for origin in group]
            batch = torch.stack([volume[(slice(None),) + box] for box in boxes]).to(run_on)
            pred = _run(model, batch, f"a batch of windows {roi}").to(volume.device)
            if total is None:
                out_dtype = pred.dtype
                total = torch.zeros((pred.shape[1],) + padded, dtype=acc_dtype, device=volume.device)
            for k, box in enumerate(boxes):
                total[(slice(None),) + box] += weight * pred[k].to(acc_dtype)
                norm[box] += weight
    result = (total / norm).to(out_dtype)
    crop = tuple(slice(b, b + s) for b, s in zip(before, shape))
    return result[(slice(None),) + crop]
