"""Peak signal-to-noise ratio in the conventions of the SPECT deep-learning papers.

``PSNR = 10·log10(peak² / MSE) = 20·log10(peak / RMSE)``, per image, in dB, with
``MSE = mean((pred − target)²)`` over the image (or the voxels of ``mask``). The peak is

* ``data_range`` when it is given (the generic convention of scikit-image);
* otherwise the maximum of the reference, ``peak="reference"`` (e.g. the bone SPECT study);
* or the maximum of the prediction, ``peak="prediction"`` (e.g. the myocardial perfusion study).

Maxima are taken per image, over ``mask`` when one is given. Identical images give ``+inf``.
Statistics are computed in float64 (no overflow for huge counts, no float16 rounding); the result
is float64 for float64 images and float32 otherwise.
"""

from __future__ import annotations

import torch

from spectdl.errors import InputError
from spectdl.metrics.functional._checks import (
    batch_values,
    check_mask,
    check_pair64,
    check_reduction,
    masked_max,
    masked_mean,
    reduce,
    result_dtype,
)

__all__ = ["psnr"]

PEAKS = ("reference", "prediction")


def _psnr_update(pred, target, data_range, peak, mask) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-image mean squared error and peak, both ``[B]`` float64 (see ``check_pair64``)."""
    pred, target, _ = check_pair64(pred, target)
    m = None if mask is None else check_mask(mask, pred)
    mse = masked_mean((pred - target) ** 2, m)
    if data_range is not None:
        return mse, batch_values("data_range", data_range, pred)
    if peak not in PEAKS:
        raise InputError(f"peak: expected one of {PEAKS}, found {peak!r}")
    peak_value = masked_max(target if peak == "reference" else pred, m)
    if bool((peak_value <= 0).any()):
        which = "target" if peak == "reference" else "pred"
        raise InputError(
            f"{which}: the peak (maximum of the {peak}) is {peak_value.tolist()}; expected > 0 "
            "for a PSNR (or pass data_range)"
        )
    return mse, peak_value


def _psnr_compute(mse: torch.Tensor, peak: torch.Tensor) -> torch.Tensor:
    return 10.0 * torch.log10(peak**2 / mse)


def psnr(
    pred: torch.Tensor,
    target: torch.Tensor,
    data_range=None,
    peak: str = "reference",
    mask: torch.Tensor | None = None,
    reduction: str = "mean",
) -> torch.Tensor:
    """PSNR in dB; see the module docstring for the peak conventions.

    Args:
        pred, target: ``[B, C, *spatial]`` (2-D or 3-D), same shape.
        data_range: explicit peak, a number or ``[B]``; when given, ``peak`` is ignored.
        peak: ``"reference"`` (max of ``target``) or ``"prediction"`` (max of ``pred``).
        mask: optional region of interest (``[*spatial]``, ``[B, 1, *spatial]`` or image shape).
        reduction: ``"mean"``, ``"sum"`` or ``"none"`` (per-image ``[B]``).

    Returns:
        Computed in float64; returned as float64 for float64 images, float32 otherwise
        (float16/bfloat16/float32/integer images).
    """
    check_reduction(reduction)
    out_dtype = result_dtype(pred, target)
    values = _psnr_compute(*_psnr_update(pred, target, data_range, peak, mask))
    return reduce(values, reduction).to(out_dtype)

