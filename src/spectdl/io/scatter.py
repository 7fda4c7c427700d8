"""Triple-energy-window (TEW) scatter estimate (Ogawa et al., IEEE Trans Med Imaging 10:408, 1991).

The scatter in the photopeak window is the trapezoid under the counts per keV of the two narrow
windows on either side of it:

    S = (C_l / w_l + C_u / w_u) · w_p / 2

with counts ``C`` and widths ``w`` (keV) of the lower (l), upper (u) and peak (p) windows. ``S`` is
the additive term of OSEM (``spectdl.recon.osem(..., additive=S)``). The narrow windows are noisy,
so the estimate is often smoothed; the optional Gaussian acts within each view (radial, axial) and
keeps the total counts of the view except what spreads past its edges (replicate padding keeps even
that).
"""

from __future__ import annotations

import math
from typing import Sequence

import torch
import torch.nn.functional as F

from spectdl.errors import InputError


def _gaussian_kernel(sigma_px: float, dtype, device, truncate: float = 4.0) -> torch.Tensor:
    radius = int(truncate * sigma_px + 0.5)
    t = torch.arange(-radius, radius + 1, dtype=torch.float64, device=device)
    k = torch.exp(-0.5 * (t / sigma_px) ** 2)
    return (k / k.sum()).to(dtype)


def smooth_views(y: torch.Tensor, sigma_px: float | Sequence[float]) -> torch.Tensor:
    """Gaussian blur of every view along its last two axes (radial, axial), replicate padding.

    The kernel is sampled at integer offsets up to ``int(4σ + 0.5)`` and normalised (as
    ``scipy.ndimage.gaussian_filter`` with ``mode="nearest"``).

    Args:
        y: ``[..., n_radial, n_axial]``.
        sigma_px: standard deviation in pixels, one value or ``(radial, axial)``.
    """
    if isinstance(sigma_px, (tuple, list)):
        s = tuple(float(v) for v in sigma_px)
    else:
        s = (float(sigma_px),) * 2
    if len(s) != 2 or not all(math.isfinite(v) and v >= 0 for v in s):
        raise InputError(f"sigma_px: expected one or two finite values >= 0, found {sigma_px!r}")
    if y.dim() < 2:
        raise InputError(f"y: shape {tuple(y.shape)}; expected [..., n_radial, n_axial]")
    lead = y.shape[:-2]
    out = y.reshape(-1, 1, *y.shape[-2:])
    for axis, sig in ((0, s[0]), (1, s[1])):
        if sig == 0:
            continue
        k = _gaussian_kernel(sig, out.dtype, out.device)
        r = (k.numel() - 1) // 2
        if axis == 0:
            out = F.conv2d(F.pad(out, (0, 0, r, r), mode="replicate"), k.view(1, 1, -1, 1))
        else:
            out = F.conv2d(F.pad(out, (r, r, 0, 0), mode="replicate"), k.view(1, 1, 1, -1))
    return out.reshape(*lead, *y.shape[-2:])


def tew_scatter(
    peak: torch.Tensor,
    lower: torch.Tensor,
    upper: torch.Tensor,
    widths_kev: Sequence[float],
    *,
    smooth_sigma_px: float | Sequence[float] | None = None,
    clip_to_peak: bool = False,
) -> torch.Tensor:
    """TEW scatter estimate in the photopeak window, ``S = (C_l/w_l + C_u/w_u)·w_p/2``.

    Args:
        peak: photopeak counts ``[..., n_radial, n_axial]`` (used for the shape check and
            ``clip_to_peak``).
        lower, upper: counts of the adjacent lower and upper windows, same shape.
        widths_kev: ``(w_peak, w_lower, w_upper)``, window widths in keV, in the order of the
            count arguments.
        smooth_sigma_px: optional Gaussian smoothing (pixels) of the estimate within each view.
        clip_to_peak: cap ``S`` at the measured photopeak counts (a common safeguard in cold regions).

    Returns:
        ``S``, same shape, device and dtype as ``peak`` (float), ``≥ 0``.
    """
    for name, t in (("peak", peak), ("lower", lower), ("upper", upper)):
        if not isinstance(t, torch.Tensor):
            raise InputError(f"{name}: expected a torch.Tensor, found {type(t).__name__}")
        if tuple(t.shape) != tuple(peak.shape):
            raise InputError(f"{name}: shape {tuple(t.shape)} differs from peak {tuple(peak.shape)}; "
                             "expected equal")
        if not torch.isfinite(t).all() or bool((t < 0).any()):
            raise InputError(f"{name}: counts must be finite and >= 0")
    try:
        w = [float(v) for v in widths_kev]
    except TypeError as exc:
        raise InputError(
            f"widths_kev: expected (w_peak, w_lower, w_upper) in keV, found {widths_kev!r}"
        ) from exc
    if len(w) != 3 or not all(math.isfinite(v) and v > 0 for v in w):
        raise InputError(f"widths_kev: expected three positive widths (w_peak, w_lower, w_upper), found "
                         f"{widths_kev!r}")
    w_p, w_l, w_u = w
    dtype = peak.dtype if peak.is_floating_point() else torch.float32
    s = (lower.to(dtype) / w_l + upper.to(dtype) / w_u) * (w_p / 2.0)
    if smooth_sigma_px is not None:
        s = smooth_views(s, smooth_sigma_px)
    if clip_to_peak:
        s = torch.minimum(s, peak.to(dtype))
    return s.clamp_min(0.0)
