"""Pixel-wise error metrics: RMSE, NRMSE, MAE and the MAE within the uptake region.

All are per image over the whole image or the voxels of a mask:

* ``RMSE = sqrt(mean((pred − target)²))``
* ``NRMSE = RMSE / d`` with ``d`` from the reference: ``"euclidean"`` ``sqrt(mean(target²))``,
  ``"min-max"`` ``max(target) − min(target)``, ``"mean"`` ``mean(target)`` (scikit-image's three
  normalisations, in the same order of arguments as here: ``normalized_root_mse(target, pred)``)
* ``MAE = mean(|pred − target|)``
* uptake MAE (SPECTnet, eq. 3): the MAE over the voxels where the reference activity is > 0
  (``target > threshold``), or over a given mask.

Statistics are computed in float64 (squares of huge float32 values would overflow); results are
float64 for float64 images and float32 otherwise.
"""

from __future__ import annotations

import torch

from spectdl.errors import InputError
from spectdl.metrics.functional._checks import (
    check_mask,
    check_pair64,
    check_reduction,
    masked_max,
    masked_mean,
    masked_min,
    reduce,
    result_dtype,
)

__all__ = ["mae", "nrmse", "rmse", "uptake_mae"]

NORMALISATIONS = ("euclidean", "min-max", "mean")


def _mse_update(pred, target, mask) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor | None]:
    pred, target, _ = check_pair64(pred, target)
    m = None if mask is None else check_mask(mask, pred)
    return masked_mean((pred - target) ** 2, m), target, m


def rmse(pred, target, mask=None, reduction: str = "mean") -> torch.Tensor:
    """Root-mean-square error per image (``[B]`` before ``reduction``), in the images' units."""
    check_reduction(reduction)
    mse, _, _ = _mse_update(pred, target, mask)
    return reduce(torch.sqrt(mse), reduction).to(result_dtype(pred, target))


def _nrmse_denominator(target: torch.Tensor, mask, normalization: str) -> torch.Tensor:
    if normalization == "euclidean":
        return torch.sqrt(masked_mean(target * target, mask))
    if normalization == "min-max":
        return masked_max(target, mask) - masked_min(target, mask)
    if normalization == "mean":
        return masked_mean(target, mask)
    raise InputError(f"normalization: expected one of {NORMALISATIONS}, found {normalization!r}")


def nrmse(pred, target, normalization: str = "euclidean", mask=None, reduction: str = "mean") -> torch.Tensor:
    """RMSE divided by a property of the reference (unitless); see the module docstring.

    Raises:
        InputError: when the denominator is 0 for an image (e.g. a flat reference with "min-max").
    """
    check_reduction(reduction)
    if normalization not in NORMALISATIONS:
        raise InputError(f"normalization: expected one of {NORMALISATIONS}, found {normalization!r}")
    mse, target, m = _mse_update(pred, target, mask)
    denom = _nrmse_denominator(target, m, normalization)
    if bool((denom == 0).any()):
        raise InputError(
            f"target: the {normalization!r} normalisation is 0 for batch item(s) "
            f"{[i for i, d in enumerate(denom.tolist()) if d == 0]}; expected a non-zero denominator"
        )
    return reduce(torch.sqrt(mse) / denom, reduction).to(result_dtype(pred, target))


def mae(pred, target, mask=None, reduction: str = "mean") -> torch.Tensor:
    """Mean absolute error per image, in the images' units."""
    check_reduction(reduction)
    out_dtype = result_dtype(pred, target)
    pred, target, _ = check_pair64(pred, target)
    m = None if mask is None else check_mask(mask, pred)
    return reduce(masked_mean((pred - target).abs(), m), reduction).to(out_dtype)


def uptake_mae(pred, target, mask=None, threshold: float = 0.0, reduction: str = "mean") -> torch.Tensor:
    """MAE over the uptake region: voxels with ``target > threshold`` (SPECTnet eq. 3), or ``mask``.

    Raises:
        InputError: when an image has no voxel in the region.
    """
    check_reduction(reduction)
    out_dtype = result_dtype(pred, target)
    pred, target, _ = check_pair64(pred, target)
    if mask is None:
        region = target > threshold
        if bool((region.reshape(region.shape[0], -1).sum(1) == 0).any()):
            raise InputError(
                f"target: no voxel exceeds threshold={threshold} in at least one image; the uptake "
                "region is empty (expected >= 1 voxel, or pass a mask)"
            )
        mask = region
    return reduce(masked_mean((pred - target).abs(), check_mask(mask, pred)), reduction).to(out_dtype)
