"""Preprocessing of real (or real-like) pairs of planar whole-body scans, before training.

A fast scan and the standard scan of one patient are separate acquisitions: the bladder fills in
between, the count levels differ by more than the speed factor (decay, washout), and the patient
moves. The reference method of the fast whole-body study (Qi et al., EJNMMI Research 2024) treats
these three in turn, and so does this module:

* :func:`bladder_mask`: the bladder, as the pixels of a region (the pelvis) at or above a fraction
  of that region's maximum, the connected component holding the maximum, dilated by a margin;
* :func:`count_normalise`: the fast scan scaled so that its total counts outside an excluded mask
  (the bladder) equal the standard scan's;
* :func:`register_patch`: a training patch of the fast scan registered to the standard scan's
  patch (translation, rigid or affine; SimpleITK, correlation metric, gradient descent).
"""

from __future__ import annotations

from typing import Literal

import numpy as np
import torch
from scipy import ndimage

from spectdl.errors import InputError

__all__ = ["bladder_mask", "count_normalise", "register_patch", "totals_outside"]


def _array2d(name: str, x) -> np.ndarray:
    a = x.detach().cpu().double().numpy() if isinstance(x, torch.Tensor) else np.asarray(x, dtype=np.float64)
    if a.ndim != 2:
        raise InputError(f"{name}: expected a 2-D image [rows, columns], found shape {a.shape}")
    if not np.isfinite(a).all():
        raise InputError(f"{name}: contains NaN or infinite values")
    return a


def bladder_mask(image, region, *, threshold: float = 0.5, dilate_px: int = 2) -> torch.Tensor:
    """``[rows, columns]`` bool: the bladder within ``region`` (bool mask of the same shape, e.g. a
    box over the pelvis): pixels ≥ ``threshold`` × the region's maximum, the component holding the
    maximum, dilated by ``dilate_px`` pixels (a square) to take in the bladder's blurred edge."""
    img = _array2d("image", image)
    reg = np.asarray(region.cpu() if isinstance(region, torch.Tensor) else region, dtype=bool)
    if reg.shape != img.shape:
        raise InputError(f"region: shape {reg.shape} does not match the image's {img.shape}")
    if not reg.any():
        raise InputError("region: the region is empty; expected a mask over the pelvis")
    if not (isinstance(threshold, (int, float)) and 0 < threshold < 1):
        raise InputError(f"threshold: expected a fraction of the region's maximum in (0, 1), found {threshold!r}")
    if isinstance(dilate_px, bool) or int(dilate_px) != dilate_px or dilate_px < 0:
        raise InputError(f"dilate_px: expected an integer >= 0, found {dilate_px!r}")
    inside = np.where(reg, img, -np.inf)
    peak = np.unravel_index(int(np.argmax(inside)), img.shape)
    if not img[peak] > 0:
        raise InputError("image: no counts in the region; no bladder to find")
    lab, _ = ndimage.label(reg & (img >= threshold * img[peak]))
    mask = lab == lab[peak]
    if dilate_px:
        mask = ndimage.binary_dilation(mask, structure=np.ones((3, 3), bool), iterations=int(dilate_px))
    return torch.as_tensor(mask)


def totals_outside(fast: torch.Tensor, reference: torch.Tensor, exclude: torch.Tensor | None = None
                   ) -> tuple[float, float]:
    """``(Σ fast, Σ reference)`` (float64) over the pixels outside ``exclude`` (``None``: all)."""
    if exclude is None:
        return float(fast.detach().double().sum()), float(reference.detach().double().sum())
    keep = ~exclude.to(torch.bool).expand_as(fast)
    return float(fast.detach().double()[keep].sum()), float(reference.detach().double()[keep].sum())


def count_normalise(fast: torch.Tensor, reference: torch.Tensor, exclude: torch.Tensor | None = None
                    ) -> tuple[torch.Tensor, float]:
    """``(fast × s, s)`` with ``s = Σ reference / Σ fast`` over the pixels outside ``exclude``
    (the bladder; ``None``: every pixel): the count-level consistency normalisation."""
    for name, t in (("fast", fast), ("reference", reference)):
        if not isinstance(t, torch.Tensor):
            raise InputError(f"{name}: expected a torch.Tensor, found {type(t).__name__}")
    if fast.shape != reference.shape:
        raise InputError(f"fast: shape {tuple(fast.shape)} does not match the reference's {tuple(reference.shape)}")
    total, ref = totals_outside(fast, reference, exclude)
    if not total > 0:
        raise InputError("fast: no counts outside the excluded region; cannot normalise")
    s = ref / total
    return fast * s, s


def register_patch(moving, fixed, *, transform: Literal["translation", "rigid", "affine"] = "rigid",
                   iterations: int = 200) -> tuple[torch.Tensor, dict[str, object]]:
    """``moving`` (the fast scan's patch) registered to ``fixed`` (the standard scan's patch),
    both ``[rows, columns]``: the resampled patch (bilinear, zero outside) and the transform.

    SimpleITK: correlation metric (the two scans differ in count level), regular-step gradient
    descent with scales from physical shifts, the transform initialised at the patches' geometric
    centres. The record holds ``transform``, ``parameters`` (SimpleITK's order) and ``shift_px``,
    the translation as ``(row, column)``: ``moving(p + shift) ≈ fixed(p)``."""
    import SimpleITK as sitk

    fix = _array2d("fixed", fixed)
    mov = _array2d("moving", moving)
    if fix.shape != mov.shape:
        raise InputError(f"moving: shape {mov.shape} does not match fixed {fix.shape}")
    kinds = {"translation": lambda: sitk.TranslationTransform(2), "rigid": lambda: sitk.Euler2DTransform(),
             "affine": lambda: sitk.AffineTransform(2)}
    if transform not in kinds:
        raise InputError(f"transform: {transform!r}; expected one of {sorted(kinds)}")
    f_img = sitk.GetImageFromArray(fix.astype(np.float32))
    m_img = sitk.GetImageFromArray(mov.astype(np.float32))
    init = kinds[transform]()
    if transform != "translation":
        init = sitk.CenteredTransformInitializer(f_img, m_img, init, sitk.CenteredTransformInitializerFilter.GEOMETRY)
    reg = sitk.ImageRegistrationMethod()
    reg.SetMetricAsCorrelation()
    reg.SetInterpolator(sitk.sitkLinear)
    reg.SetOptimizerAsRegularStepGradientDescent(learningRate=1.0, minStep=1e-5, numberOfIterations=int(iterations),
                                                 relaxationFactor=0.7, gradientMagnitudeTolerance=1e-10)
    reg.SetOptimizerScalesFromPhysicalShift()
    reg.SetInitialTransform(init, inPlace=False)
    found = reg.Execute(f_img, m_img)
    out = sitk.GetArrayFromImage(sitk.Resample(m_img, f_img, found, sitk.sitkLinear, 0.0))
    params = tuple(float(v) for v in found.GetParameters())
    # The translation is the last two parameters for every kind (x = column, y = row).
    shift = (params[-1], params[-2])
    # The found map as an affine in (row, column) pixel coordinates, for a replayable resampling:
    # moving(M·p + o) ≈ fixed(p), from where it sends the origin and the two unit vectors.
    pts = [found.TransformPoint((0.0, 0.0)), found.TransformPoint((1.0, 0.0)), found.TransformPoint((0.0, 1.0))]
    o = np.array([pts[0][1], pts[0][0]])
    col_dir = np.array([pts[1][1], pts[1][0]]) - o  # image of a unit step along x (a column)
    row_dir = np.array([pts[2][1], pts[2][0]]) - o  # image of a unit step along y (a row)
    matrix = np.stack([row_dir, col_dir], 1)
    return (torch.as_tensor(out.astype(np.float64)),
            {"transform": transform, "parameters": params, "shift_px": shift,
             "matrix_rc": matrix.tolist(), "offset_rc": o.tolist(), "metric": float(reg.GetMetricValue())})
