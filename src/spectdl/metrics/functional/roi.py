"""Region-of-interest quantities: ROI statistics, SUV, maximum lesion count and IMBV.

* ROI statistics per image: mean, max and standard deviation of the voxels in a mask.
* SUV (body-weight standardised uptake value):
  ``SUV = C / (A / W)``, with ``C`` the activity concentration in Bq/ml, ``A`` the injected
  activity in Bq (decay-corrected to the scan time) and ``W`` the body weight in g. Its unit is
  g/ml; with a tissue density of 1 g/ml it reads as a plain ratio (1 = uniform distribution).
* Maximum lesion count (planar scans): the highest pixel count inside a lesion mask, and the
  relative error ``(max_pred − max_target) / max_target`` of a prediction.
* IMBV (myocardium-to-blood-pool ratio): ``mean(image in myocardium) / mean(image in the
  left-ventricular blood pool)``, differentiable.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from spectdl.errors import InputError
from spectdl.metrics.functional._checks import (
    check_image,
    check_mask,
    check_pair,
    check_positive,
    check_reduction,
    masked_max,
    masked_mean,
    reduce,
)

__all__ = ["RoiStats", "imbv", "max_lesion_count", "max_lesion_count_error", "roi_stats", "suv"]


@dataclass(frozen=True)
class RoiStats:
    """Per-image statistics of an ROI, each ``[B]``, in the image's units (``n_voxels``: count)."""

    mean: torch.Tensor
    max: torch.Tensor
    sd: torch.Tensor
    n_voxels: torch.Tensor


def roi_stats(image: torch.Tensor, mask: torch.Tensor, ddof: int = 1) -> RoiStats:
    """Mean, max and SD of ``image [B, C, *spatial]`` over ``mask`` (all channels pooled).

    ``sd = sqrt(Σ(v − mean)² / (n − ddof))``; ``ddof=1`` (default) is the sample SD, ``0`` the
    population SD.

    Raises:
        InputError: empty mask, or an ROI of ``n <= ddof`` voxels.
    """
    image = check_image("image", image)
    m = check_mask(mask, image)
    n = m.reshape(m.shape[0], -1).sum(1)
    if bool((n <= ddof).any()):
        raise InputError(f"mask: an ROI has {int(n.min())} voxel(s); expected more than ddof={ddof}")
    mean = masked_mean(image, m)
    centred = (image.reshape(image.shape[0], -1) - mean[:, None]) * m.reshape(m.shape[0], -1)
    sd = torch.sqrt((centred**2).sum(1) / (n - ddof).to(image.dtype))
    return RoiStats(mean=mean, max=masked_max(image, m), sd=sd, n_voxels=n)


def suv(
    activity_bq_per_ml,
    injected_dose_bq,
    weight_kg,
    *,
    elapsed_s: float | None = None,
    half_life_s: float | None = None,
):
    """Body-weight SUV in g/ml: ``activity_bq_per_ml · weight_g / dose_bq``.

    Args:
        activity_bq_per_ml: concentration image or value (tensor or number).
        injected_dose_bq: injected activity; decay-corrected to the scan time, or give
            ``elapsed_s`` (injection to scan) and ``half_life_s`` to correct it here as
            ``A · 2^(−elapsed/half_life)``.
        weight_kg: patient weight.

    Returns:
        Same type and shape as ``activity_bq_per_ml``.
    """
    dose = check_positive("injected_dose_bq", injected_dose_bq)
    weight_g = check_positive("weight_kg", weight_kg) * 1000.0
    if (elapsed_s is None) != (half_life_s is None):
        raise InputError(
            "elapsed_s, half_life_s: give both or neither; "
            f"found elapsed_s={elapsed_s!r}, half_life_s={half_life_s!r}"
        )
    if half_life_s is not None:
        elapsed = float(elapsed_s)
        if not elapsed >= 0:
            raise InputError(f"elapsed_s: expected a time >= 0, found {elapsed_s!r}")
        dose = dose * 2.0 ** (-elapsed / check_positive("half_life_s", half_life_s))
    if isinstance(activity_bq_per_ml, torch.Tensor) and not bool(torch.isfinite(activity_bq_per_ml).all()):
        raise InputError("activity_bq_per_ml: contains NaN or infinite values; expected finite values")
    return activity_bq_per_ml * (weight_g / dose)


def max_lesion_count(image: torch.Tensor, lesion_mask: torch.Tensor) -> torch.Tensor:
    """Highest pixel (voxel) value inside ``lesion_mask`` per image, ``[B]`` (counts for planar scans)."""
    image = check_image("image", image)
    return masked_max(image, check_mask(lesion_mask, image, "lesion_mask"))


def max_lesion_count_error(
    pred: torch.Tensor, target: torch.Tensor, lesion_mask: torch.Tensor, reduction: str = "none"
) -> torch.Tensor:
    """Signed relative error of the maximum lesion count, ``(max_pred − max_target) / max_target``.

    Raises:
        InputError: when the reference maximum is 0 in an image.
    """
    check_reduction(reduction)
    pred, target = check_pair(pred, target)
    m = check_mask(lesion_mask, pred, "lesion_mask")
    ref = masked_max(target, m)
    if bool((ref == 0).any()):
        raise InputError(
            f"target: the maximum lesion count is 0 for batch item(s) "
            f"{[i for i, v in enumerate(ref.tolist()) if v == 0]}; expected a non-zero reference"
        )
    return reduce((masked_max(pred, m) - ref) / ref, reduction)


def imbv(image: torch.Tensor, myocardium_mask: torch.Tensor, blood_pool_mask: torch.Tensor) -> torch.Tensor:
    """``mean(myocardium) / mean(LV blood pool)`` per image, ``[B]``, differentiable.

    Raises:
        InputError: an empty mask, or a blood-pool mean of 0 (the ratio is undefined).
    """
    image = check_image("image", image)
    num = masked_mean(image, check_mask(myocardium_mask, image, "myocardium_mask"))
    den = masked_mean(image, check_mask(blood_pool_mask, image, "blood_pool_mask"))
    if bool((den == 0).any()):
        raise InputError(
            f"blood_pool_mask: the mean blood-pool value is 0 for batch item(s) "
            f"{[i for i, v in enumerate(den.tolist()) if v == 0]}; expected a non-zero denominator for IMBV"
        )
    return num / den
