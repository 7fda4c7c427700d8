"""Post-reconstruction filters in 2-D and 3-D: Butterworth and Gaussian.

Both act on the trailing 2 or 3 spatial dimensions of ``[B, C, *spatial]``. Their responses are 1
at zero frequency, so they preserve the total except what spreads past the image edge; the image is
zero-padded so that nothing wraps round.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from spectdl.errors import InputError


def _spatial_dims(x: torch.Tensor, spatial_dims: int | None) -> int:
    if not isinstance(x, torch.Tensor):
        raise InputError(f"x: expected a torch.Tensor, found {type(x).__name__}")
    sd = x.dim() - 2 if spatial_dims is None else int(spatial_dims)
    if sd not in (2, 3) or x.dim() != sd + 2:
        raise InputError(f"x: shape {tuple(x.shape)}; expected [B, C, H, W] or [B, C, X, Y, Z]")
    if not torch.isfinite(x).all():
        raise InputError("x: contains NaN or infinite values")
    return sd


def butterworth_filter(x: torch.Tensor, cutoff: float, order: int = 5, spatial_dims: int | None = None) -> torch.Tensor:
    """Low-pass Butterworth filter ``H(f) = 1 / sqrt(1 + (f / f_c)^{2n})``.

    Args:
        x: ``[B, C, *spatial]`` image.
        cutoff: ``f_c`` as a fraction of the Nyquist frequency (0.5 cycles/voxel), so
            ``cutoff = 0.5`` is 0.25 cycles/voxel. To convert a cutoff given in cycles/cm with
            voxels of ``s`` mm: ``cutoff = cycles_per_cm · s / 10 / 0.5``.
        order: ``n``, the steepness (the convention of most vendor software: power ``2n`` on
            the amplitude, as here).
        spatial_dims: 2 or 3; inferred from ``x`` by default.

    ``f`` is the radial spatial frequency ``sqrt(Σ f_i²)`` in cycles/voxel over the spatial axes.
    """
    sd = _spatial_dims(x, spatial_dims)
    if not 0 < cutoff:
        raise InputError(f"cutoff: expected a positive fraction of Nyquist, found {cutoff}")
    if int(order) < 1:
        raise InputError(f"order: expected an integer >= 1, found {order}")
    sizes = [2 * n for n in x.shape[-sd:]]
    axes = tuple(range(-sd, 0))
    f2 = torch.zeros((), dtype=x.dtype, device=x.device)
    for i, n in enumerate(sizes):
        freq = torch.fft.rfftfreq(n, device=x.device) if i == sd - 1 else torch.fft.fftfreq(n, device=x.device)
        shape = [1] * sd
        shape[i] = -1
        f2 = f2 + freq.to(x.dtype).reshape(shape) ** 2
    fc = 0.5 * float(cutoff)
    resp = 1.0 / torch.sqrt(1.0 + (f2.sqrt() / fc) ** (2 * int(order)))
    spec = torch.fft.rfftn(x, s=sizes, dim=axes) * resp
    out = torch.fft.irfftn(spec, s=sizes, dim=axes)
    return out[(...,) + tuple(slice(0, n) for n in x.shape[-sd:])]


def gaussian_kernel_1d(sigma_vox: float, truncate: float = 4.0, dtype=torch.float64, device=None) -> torch.Tensor:
    """Sampled, normalised Gaussian over ``±int(truncate·σ + 0.5)`` voxels (scipy.ndimage's rule)."""
    radius = int(truncate * sigma_vox + 0.5)
    t = torch.arange(-radius, radius + 1, dtype=dtype, device=device)
    k = torch.exp(-0.5 * (t / sigma_vox) ** 2)
    return k / k.sum()


def gaussian_filter(
    x: torch.Tensor, fwhm_mm: float, voxel_size_mm, spatial_dims: int | None = None, truncate: float = 4.0
) -> torch.Tensor:
    """Separable Gaussian smoothing with ``σ = FWHM / (2·sqrt(2·ln 2))`` per axis, zero outside.

    ``voxel_size_mm`` is one value or one per spatial axis. Equal to
    ``scipy.ndimage.gaussian_filter(x, σ / voxel_size, mode="constant", truncate=truncate)``.
    """
    sd = _spatial_dims(x, spatial_dims)
    if not fwhm_mm >= 0:
        raise InputError(f"fwhm_mm: expected >= 0, found {fwhm_mm}")
    sizes = list(voxel_size_mm) if hasattr(voxel_size_mm, "__len__") else [float(voxel_size_mm)] * sd
    if len(sizes) != sd or any(not s > 0 for s in sizes):
        raise InputError(f"voxel_size_mm: expected {sd} positive values, found {voxel_size_mm!r}")
    if fwhm_mm == 0:
        return x.clone()
    sigma_mm = fwhm_mm / (2.0 * math.sqrt(2.0 * math.log(2.0)))
    out = x
    b, c = x.shape[:2]
    for axis in range(sd):
        k = gaussian_kernel_1d(sigma_mm / sizes[axis], truncate, x.dtype, x.device)
        moved = out.movedim(2 + axis, -1)
        shape = moved.shape
        flat = moved.reshape(-1, 1, shape[-1])
        conv = F.conv1d(flat, k.view(1, 1, -1), padding=k.numel() // 2)
        out = conv.reshape(shape).movedim(-1, 2 + axis)
    return out
