"""Repeat planar scans as a real second acquisition makes them: decay, kinetics, motion, own noise.

A fast whole-body scan that is resampled from the standard scan (binomial thinning,
:func:`spectdl.noise.thin`) shares its noise, its patient position and its moment in time. A
real fast scan, taken minutes before or after, differs in all three. :func:`repeat_scan` makes such
an acquisition from the noise-free expected counts of the standard scan:

1. **Decay and kinetics** (:class:`ScanKinetics`) at the scan's time ``t`` (minutes, relative to
   the standard scan, negative for a scan taken before it): every region decays with Tc-99m's
   half-life; soft tissue also washes out, ``exp(−k·t)`` with ``k`` per hour; the bladder fills,
   ``1 + r·t`` (clipped at 0). Each pixel follows the region of its label (planar images: the
   label is the region seen at that pixel; overlapping regions in depth are not separated).
2. **Duration**: the expected counts are divided by the speed factor (a 2x scan counts half).
3. **Motion** (:func:`random_motion`): a displacement field made of a rigid shift and rotation of
   the whole body plus a smooth non-rigid part (limbs and head moving a little), bounded by the
   given limits and recorded; applied to the expected counts by bilinear resampling
   (:func:`warp`).
4. **Noise**: independent Poisson counts of the result.

Randomness comes only from the ``torch.Generator`` passed in.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Mapping

import numpy as np
import torch
from scipy import ndimage

from spectdl.errors import InputError
from spectdl.noise.poisson import _check_expected, poisson

__all__ = ["TC99M_HALF_LIFE_MIN", "Motion", "ScanKinetics", "decay_factor", "random_motion", "repeat_scan", "warp"]

#: Tc-99m half-life, minutes (6.0067 h; NNDC).
TC99M_HALF_LIFE_MIN = 360.4


def _finite(name: str, v, low: float | None = None) -> float:
    if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v):
        raise InputError(f"{name}: expected a finite number, found {v!r}")
    if low is not None and v < low:
        raise InputError(f"{name}: expected >= {low:g}, found {v!r}")
    return float(v)


def decay_factor(minutes: float, half_life_min: float = TC99M_HALF_LIFE_MIN) -> float:
    """``2^(−t / T½)``: the activity left after ``minutes`` (before the reference for ``t < 0``)."""
    t = _finite("minutes", minutes)
    h = _finite("half_life_min", half_life_min)
    if h <= 0:
        raise InputError(f"half_life_min: expected > 0, found {half_life_min!r}")
    return 2.0 ** (-t / h)


@dataclass(frozen=True)
class ScanKinetics:
    """Relative activity of each region ``t`` minutes after the reference scan.

    ``factor(region, t) = decay(t) × {exp(−washout·t/60) for soft tissue; max(0, 1 + filling·t/60)
    for the bladder; 1 otherwise}``. Defaults: 10 % per hour soft-tissue washout and bladder
    activity rising 50 % per hour (bone agents 2–4 h after injection: soft tissue still clearing,
    urine collecting); set both to 0 for decay alone.

    Attributes:
        soft_tissue_washout_per_h: ``k`` of the exponential washout of soft tissue, per hour.
        bladder_filling_per_h: ``r`` of the linear rise of bladder activity, per hour.
        half_life_min: the isotope's half-life, minutes.
        soft_tissue, bladder: the label names of those regions.
    """

    soft_tissue_washout_per_h: float = 0.10
    bladder_filling_per_h: float = 0.50
    half_life_min: float = TC99M_HALF_LIFE_MIN
    soft_tissue: str = "soft_tissue"
    bladder: str = "bladder"

    def __post_init__(self) -> None:
        _finite("soft_tissue_washout_per_h", self.soft_tissue_washout_per_h, 0.0)
        _finite("bladder_filling_per_h", self.bladder_filling_per_h)
        if _finite("half_life_min", self.half_life_min) <= 0:
            raise InputError(f"half_life_min: expected > 0, found {self.half_life_min!r}")

    def factor(self, region: str, minutes: float) -> float:
        """The activity of ``region`` at ``minutes`` relative to the reference scan."""
        t = _finite("minutes", minutes)
        f = decay_factor(t, self.half_life_min)
        if region == self.soft_tissue:
            f *= math.exp(-self.soft_tissue_washout_per_h * t / 60.0)
        elif region == self.bladder:
            f *= max(0.0, 1.0 + self.bladder_filling_per_h * t / 60.0)
        return f

    def apply(self, expected: torch.Tensor, labels: torch.Tensor, label_names: Mapping[str, int],
              minutes: float) -> torch.Tensor:
        """``expected`` with each pixel scaled by the factor of its label's region (same shape)."""
        _check_expected("expected", expected)
        if labels.shape != expected.shape:
            raise InputError(f"labels: shape {tuple(labels.shape)} does not match expected {tuple(expected.shape)}")
        table = torch.ones(int(max(label_names.values())) + 1, dtype=expected.dtype, device=expected.device)
        for name, value in label_names.items():
            table[int(value)] = self.factor(name, minutes)
        return expected * table[labels.long()]


@dataclass(frozen=True)
class Motion:
    """A displacement field and what made it (mm and degrees, the image's row/column frame).

    Attributes:
        field_px: ``[2, H, W]`` float64: for each output pixel, the (row, column) offset in pixels
            of the point it samples (output(p) = input(p + field(p))).
        shift_mm: the rigid shift (row, column).
        rotation_deg: the rigid rotation about the image centre.
        nonrigid_mm: the largest magnitude of the non-rigid part.
        max_displacement_mm: the largest magnitude of the whole field.
    """

    field_px: np.ndarray
    shift_mm: tuple[float, float]
    rotation_deg: float
    nonrigid_mm: float
    max_displacement_mm: float

    def record(self) -> dict[str, float]:
        """The scalars, for a manifest or ``metrics.csv``."""
        return {"shift_row_mm": self.shift_mm[0], "shift_col_mm": self.shift_mm[1], "rotation_deg": self.rotation_deg,
                "nonrigid_mm": self.nonrigid_mm, "max_displacement_mm": self.max_displacement_mm}


def random_motion(shape: tuple[int, int], pixel_mm: float, generator: torch.Generator, *, max_shift_mm: float = 5.0,
                  max_rotation_deg: float = 1.0, max_nonrigid_mm: float = 6.0, smoothness_mm: float = 60.0) -> Motion:
    """A random bounded displacement: a rigid shift uniform in ``±max_shift_mm`` per axis, a
    rotation uniform in ``±max_rotation_deg`` about the image centre, and a non-rigid part (white
    noise smoothed by a Gaussian of ``smoothness_mm``, scaled to a largest magnitude uniform in
    ``[0, max_nonrigid_mm]``). Every magnitude is bounded by
    ``√2·max_shift_mm + max_rotation·r_max + max_nonrigid_mm`` (``r_max`` the half-diagonal)."""
    if len(shape) != 2 or min(shape) < 2:
        raise InputError(f"shape: expected (rows, columns) of at least 2 each, found {shape!r}")
    px = _finite("pixel_mm", pixel_mm)
    if px <= 0:
        raise InputError(f"pixel_mm: expected > 0, found {pixel_mm!r}")
    limits = [_finite(n, v, 0.0) for n, v in (("max_shift_mm", max_shift_mm), ("max_rotation_deg", max_rotation_deg),
                                              ("max_nonrigid_mm", max_nonrigid_mm))]
    smooth = _finite("smoothness_mm", smoothness_mm, 0.0)
    u = torch.rand(5, generator=generator, dtype=torch.float64).numpy()
    shift = ((2 * u[0] - 1) * limits[0], (2 * u[1] - 1) * limits[0])
    rot = (2 * u[2] - 1) * limits[1]
    rows, cols = (np.arange(n, dtype=np.float64) - (n - 1) / 2.0 for n in shape)
    R, C = np.meshgrid(rows, cols, indexing="ij")
    a = math.radians(rot)
    field = np.stack([R * math.cos(a) - C * math.sin(a) - R, R * math.sin(a) + C * math.cos(a) - C])
    field += np.asarray(shift)[:, None, None] / px
    noise = torch.randn((2, *shape), generator=generator, dtype=torch.float64).numpy()
    nonrigid = np.stack([ndimage.gaussian_filter(n, smooth / px, mode="nearest") for n in noise]) if smooth else noise
    top = float(np.sqrt((nonrigid**2).sum(0)).max())
    amplitude = u[3] * limits[2]
    if top > 0:
        nonrigid *= amplitude / px / top
    field += nonrigid
    mag = float(np.sqrt((field**2).sum(0)).max()) * px
    return Motion(field, (float(shift[0]), float(shift[1])), float(rot), float(amplitude), mag)


def warp(image: torch.Tensor, field_px: np.ndarray) -> torch.Tensor:
    """``image [..., H, W]`` resampled at ``p + field(p)`` (bilinear, zero outside), same dtype.

    Bilinear resampling keeps totals only approximately (to the interpolation's smoothing), so
    apply it to expected counts, before the Poisson draw."""
    if not isinstance(image, torch.Tensor) or image.dim() < 2:
        raise InputError("image: expected a tensor [..., H, W]")
    h, w = image.shape[-2:]
    if field_px.shape != (2, h, w):
        raise InputError(f"field_px: shape {field_px.shape} does not match the image's (2, {h}, {w})")
    grid = np.mgrid[0:h, 0:w].astype(np.float64) + field_px
    flat = image.detach().cpu().double().reshape(-1, h, w).numpy()
    out = np.stack([ndimage.map_coordinates(f, grid, order=1, mode="constant", cval=0.0) for f in flat])
    return torch.as_tensor(out).reshape(image.shape).to(device=image.device, dtype=image.dtype)


def repeat_scan(expected: torch.Tensor, labels: torch.Tensor, label_names: Mapping[str, int], *, speed: float,
                minutes: float, generator: torch.Generator, kinetics: ScanKinetics | None = None,
                motion: Motion | None = None) -> torch.Tensor:
    """An independent planar acquisition ``speed`` times shorter, ``minutes`` after the reference
    scan whose noise-free expected counts are ``expected [..., H, W]`` (module docstring):
    ``Poisson(warp(kinetics(expected, t) / speed, motion))``. ``labels`` (same shape) name each
    pixel's region. Returns float counts (integers) of ``expected``'s shape."""
    s = _finite("speed", speed)
    if s < 1:
        raise InputError(f"speed: expected a factor >= 1 (a faster scan), found {speed!r}")
    lam = (kinetics or ScanKinetics()).apply(expected, labels, label_names, minutes) / s
    if motion is not None:
        lam = warp(lam, motion.field_px).clamp_min(0)
    return poisson(lam, generator)
