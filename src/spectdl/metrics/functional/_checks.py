"""Input checks and small reductions shared by every metric.

Every metric validates its input here so that the messages read the same everywhere: the
argument at fault, the value found and the value expected.
"""

from __future__ import annotations

import torch

from spectdl.errors import InputError

REDUCTIONS = ("mean", "sum", "none")


def check_image(name: str, x, *, spatial_dims: tuple[int, ...] = (2, 3)) -> torch.Tensor:
    """``x`` must be a finite floating tensor ``[B, C, *spatial]`` with 2 or 3 spatial dims."""
    if not isinstance(x, torch.Tensor):
        raise InputError(f"{name}: expected a torch.Tensor [B, C, *spatial], found {type(x).__name__}")
    if x.dim() - 2 not in spatial_dims:
        expected = " or ".join(f"{d + 2}-D" for d in spatial_dims)
        raise InputError(
            f"{name}: expected a {expected} tensor [B, C, *spatial], found shape {tuple(x.shape)}"
        )
    if x.numel() == 0:
        raise InputError(f"{name}: is empty (shape {tuple(x.shape)}); expected at least one voxel")
    if not x.is_floating_point():
        x = x.to(torch.float32)
    if not bool(torch.isfinite(x).all()):
        n_bad = int((~torch.isfinite(x)).sum())
        raise InputError(f"{name}: contains {n_bad} NaN or infinite value(s); expected finite values")
    return x


def check_pair(pred, target, *, spatial_dims: tuple[int, ...] = (2, 3)) -> tuple[torch.Tensor, torch.Tensor]:
    """Check both images and that their shapes agree; promote both to a common floating dtype."""
    pred = check_image("pred", pred, spatial_dims=spatial_dims)
    target = check_image("target", target, spatial_dims=spatial_dims)
    if pred.shape != target.shape:
        raise InputError(
            f"pred: shape {tuple(pred.shape)} differs from target shape {tuple(target.shape)}; "
            "expected identical shapes"
        )
    dtype = torch.promote_types(pred.dtype, target.dtype)
    return pred.to(dtype), target.to(dtype)


def check_pair64(pred, target, *, spatial_dims: tuple[int, ...] = (2, 3)):
    """:func:`check_pair`, then both images in float64 for the statistics, and the result dtype.

    Squares and products of float32 images overflow above ~1e19 (and the SSIM constants' products
    above ~1e10), and float16 loses the 30 dB of a PSNR, so the error metrics, PSNR and SSIM compute
    in float64 and return ``promote(input dtype, float32)``: float32 for float16/bfloat16/float32
    (and integer) images, float64 for float64 images. Gradients flow through the casts.
    """
    pred, target = check_pair(pred, target, spatial_dims=spatial_dims)
    out_dtype = torch.promote_types(pred.dtype, torch.float32)
    return pred.to(torch.float64), target.to(torch.float64), out_dtype


def result_dtype(*images) -> torch.dtype:
    """``promote(float32, dtypes of the floating images)``: what PSNR, SSIM and the errors return."""
    out = torch.float32
    for t in images:
        if isinstance(t, torch.Tensor) and t.is_floating_point():
            out = torch.promote_types(out, t.dtype)
    return out


def check_mask(mask, like: torch.Tensor, name: str = "mask") -> torch.Tensor:
    """Broadcast a region-of-interest mask to ``like``'s shape as a bool tensor.

    Accepted shapes: ``like.shape``, ``[B, 1, *spatial]``, ``[1, 1, *spatial]`` or ``[*spatial]``.
    Non-zero values are inside the region. Every image of the batch must keep at least one voxel.
    """
    if not isinstance(mask, torch.Tensor):
        raise InputError(f"{name}: expected a torch.Tensor, found {type(mask).__name__}")
    if (mask.is_floating_point() or mask.is_complex()) and not bool(torch.isfinite(mask).all()):
        n_bad = int((~torch.isfinite(mask)).sum())
        raise InputError(
            f"{name}: contains {n_bad} NaN or infinite value(s); expected a finite 0/1 (or bool) region mask"
        )
    spatial = tuple(like.shape[2:])
    if tuple(mask.shape) == spatial:
        mask = mask.reshape((1, 1) + spatial)
    if mask.dim() != like.dim():
        raise InputError(
            f"{name}: shape {tuple(mask.shape)} does not fit image shape {tuple(like.shape)}; expected "
            f"{tuple(like.shape)}, [B, 1, *spatial] or the spatial shape {spatial}"
        )
    try:
        mask = torch.broadcast_to(mask.to(device=like.device) != 0, like.shape)
    except RuntimeError as exc:
        raise InputError(
            f"{name}: shape {tuple(mask.shape)} cannot be broadcast to image shape {tuple(like.shape)}"
        ) from exc
    counts = mask.reshape(mask.shape[0], -1).sum(1)
    if bool((counts == 0).any()):
        empty = [i for i, c in enumerate(counts.tolist()) if c == 0]
        raise InputError(f"{name}: the region of interest is empty for batch item(s) {empty}; expected >= 1 "
                         "voxel")
    return mask


def masked_mean(x: torch.Tensor, mask: torch.Tensor | None) -> torch.Tensor:
    """Mean of ``x [B, ...]`` per batch item over the voxels where ``mask`` is True → ``[B]``."""
    flat = x.reshape(x.shape[0], -1)
    if mask is None:
        return flat.mean(1)
    m = mask.reshape(mask.shape[0], -1).to(x.dtype)
    return (flat * m).sum(1) / m.sum(1)


def masked_max(x: torch.Tensor, mask: torch.Tensor | None) -> torch.Tensor:
    """Maximum of ``x [B, ...]`` per batch item over the masked voxels → ``[B]``."""
    flat = x.reshape(x.shape[0], -1)
    if mask is not None:
        flat = flat.masked_fill(~mask.reshape(mask.shape[0], -1), float("-inf"))
    return flat.amax(1)


def masked_min(x: torch.Tensor, mask: torch.Tensor | None) -> torch.Tensor:
    """Minimum of ``x [B, ...]`` per batch item over the masked voxels → ``[B]``."""
    return -masked_max(-x, mask)


def check_reduction(reduction: str) -> str:
    if reduction not in REDUCTIONS:
        raise InputError(f"reduction: expected one of {REDUCTIONS}, found {reduction!r}")
    return reduction


def reduce(values: torch.Tensor, reduction: str) -> torch.Tensor:
    """Apply ``"mean"``, ``"sum"`` or ``"none"`` over the batch axis of per-image ``values [B]``."""
    check_reduction(reduction)
    if reduction == "mean":
        return values.mean()
    if reduction == "sum":
        return values.sum()
    return values


def check_positive(name: str, value) -> float:
    try:
        v = float(value)
    except (TypeError, ValueError) as exc:
        raise InputError(f"{name}: expected a positive number, found {value!r}") from exc
    if not (v > 0 and v != float("inf")):
        raise InputError(f"{name}: expected a finite number > 0, found {value!r}")
    return v


def batch_values(name: str, value, like: torch.Tensor, *, positive: bool = True) -> torch.Tensor:
    """A scalar or a per-image ``[B]`` value as a ``[B]`` tensor on ``like``'s device and dtype."""
    b = like.shape[0]
    try:
        t = torch.as_tensor(value, dtype=like.dtype, device=like.device)
    except (TypeError, ValueError, RuntimeError) as exc:
        raise InputError(f"{name}: expected a number or a [B] tensor, found {value!r}") from exc
    if t.dim() == 0:
        t = t.expand(b)
    t = t.reshape(-1)
    if t.numel() != b:
        raise InputError(f"{name}: expected a scalar or {b} values (one per image), found {t.numel()}")
    if not bool(torch.isfinite(t).all()) or (positive and bool((t <= 0).any())):
        raise InputError(f"{name}: expected finite values{' > 0' if positive else ''}, found {t.tolist()}")
    return t
