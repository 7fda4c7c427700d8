"""Structural similarity (SSIM) in 2-D and 3-D, differentiable, matching scikit-image.

For images ``x`` (prediction) and ``y`` (reference) the local statistics are Gaussian-weighted
(or uniform) window averages ``μx, μy, σx², σy², σxy`` (population covariances, as in Wang et al.
2004), and

``SSIM = (2 μx μy + C1)(2 σxy + C2) / ((μx² + μy² + C1)(σx² + σy² + C2))``,
``C1 = (k1·L)²``, ``C2 = (k2·L)²``, ``L`` the data range.

The windows follow ``scipy.ndimage`` exactly, so the result equals
``skimage.metrics.structural_similarity(x, y, data_range=L, gaussian_weights=True, sigma=σ,
use_sample_covariance=False)``: the Gaussian has radius ``int(3.5·σ + 0.5)`` (11 taps at σ = 1.5),
borders are filled by symmetric reflection (scipy's ``mode="reflect"``), and the map is cropped
by ``(win_size − 1) // 2`` voxels on every side before it is averaged.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from spectdl.errors import InputError
from spectdl.metrics.functional._checks import (
    batch_values,
    check_mask,
    check_pair64,
    check_positive,
    check_reduction,
    reduce,
    result_dtype,
)

__all__ = ["ssim", "ssim_map"]

# skimage's choice: a Gaussian truncated at 3.5 sigma gives the 11-tap window of Wang et al. 2004.
_TRUNCATE = 3.5


def _window_1d(gaussian_sigma: float | None, win_size: int, dtype, device) -> torch.Tensor:
    if gaussian_sigma is None:
        return torch.full((win_size,), 1.0 / win_size, dtype=dtype, device=device)
    radius = int(_TRUNCATE * gaussian_sigma + 0.5)
    x = torch.arange(-radius, radius + 1, dtype=dtype, device=device)
    w = torch.exp(-0.5 * (x / gaussian_sigma) ** 2)
    return w / w.sum()


def _reflect_index(n: int, radius: int, device) -> torch.Tensor:
    # scipy "reflect" repeats the edge voxel (d c b a | a b c d), any pad width: period 2n.
    i = torch.arange(-radius, n + radius, device=device) % (2 * n)
    return torch.where(i >= n, 2 * n - 1 - i, i)


def _filter(x: torch.Tensor, window: torch.Tensor) -> torch.Tensor:
    """Separable filtering of ``x [N, 1, *spatial]`` along every spatial axis, same-size output.

    Each axis is a weighted sum of shifted views of the reflect-padded input: for an 11-tap window on
    one channel this is an order of magnitude faster on the CPU than ``conv2d``/``conv3d``, forward
    and backward, which matters because the SSIM losses call it on every training step.
    """
    nd = x.dim() - 2
    taps = window.numel()
    radius = (taps - 1) // 2
    for axis in range(nd):
        dim = 2 + axis
        n = x.shape[dim]
        padded = x.index_select(dim, _reflect_index(n, radius, x.device))
        out = padded.narrow(dim, 0, n) * window[0]
        for k in range(1, taps):
            out = out + padded.narrow(dim, k, n) * window[k]
        x = out
    return x


def _check_options(gaussian_sigma, win_size, k1, k2) -> None:
    if gaussian_sigma is not None:
        check_positive("gaussian_sigma", gaussian_sigma)
    if not isinstance(win_size, int) or win_size < 1 or win_size % 2 == 0:
        raise InputError(f"win_size: expected an odd positive int, found {win_size!r}")
    for name, k in (("k1", k1), ("k2", k2)):
        check_positive(name, k)


def _ssim_map(pred, target, data_range, gaussian_sigma, win_size, k1, k2) -> torch.Tensor:
    b, c = pred.shape[:2]
    spatial = tuple(pred.shape[2:])
    window = _window_1d(gaussian_sigma, win_size, pred.dtype, pred.device)
    # Filter the five moment images in one batched pass.
    stack = torch.stack([pred, target, pred * pred, target * target, pred * target], dim=0)
    moments = _filter(stack.reshape((5 * b * c, 1) + spatial), window).reshape((5, b, c) + spatial)
    mu_x, mu_y, e_xx, e_yy, e_xy = moments
    var_x = e_xx - mu_x * mu_x
    var_y = e_yy - mu_y * mu_y
    cov_xy = e_xy - mu_x * mu_y
    r = batch_values("data_range", data_range, pred).reshape((b,) + (1,) * (pred.dim() - 1))
    c1 = (k1 * r) ** 2
    c2 = (k2 * r) ** 2
    num = (2 * mu_x * mu_y + c1) * (2 * cov_xy + c2)
    den = (mu_x * mu_x + mu_y * mu_y + c1) * (var_x + var_y + c2)
    return num / den


def ssim_map(
    pred: torch.Tensor,
    target: torch.Tensor,
    data_range,
    *,
    gaussian_sigma: float | None = 1.5,
    win_size: int = 11,
    k1: float = 0.01,
    k2: float = 0.03,
) -> torch.Tensor:
    """The local SSIM map, same shape as the inputs (skimage's ``full=True`` image).

    Args:
        pred, target: ``[B, C, H, W]`` or ``[B, C, X, Y, Z]``, same shape.
        data_range: ``L`` in the constants, a number or one value per image ``[B]`` (e.g. the
            reference's max − min). Never inferred: images need not lie in [0, 1].
        gaussian_sigma: σ of the Gaussian window in voxels; ``None`` for a uniform
            ``win_size``-wide window.
        win_size: odd; the uniform window width, and the border cropped by :func:`ssim`.
        k1, k2: stabilising constants.

    Returns:
        ``[B, C, *spatial]``, differentiable with respect to both inputs; computed in float64,
        returned as float64 for float64 images and float32 otherwise.
    """
    pred, target, out_dtype = check_pair64(pred, target)
    _check_options(gaussian_sigma, win_size, k1, k2)
    return _ssim_map(pred, target, data_range, gaussian_sigma, win_size, k1, k2).to(out_dtype)


def _crop(x: torch.Tensor, pad: int) -> torch.Tensor:
    if pad == 0:
        return x
    index = (slice(None), slice(None)) + (slice(pad, -pad),) * (x.dim() - 2)
    return x[index]


def _ssim_per_image(pred, target, data_range, mask, gaussian_sigma, win_size, k1, k2) -> torch.Tensor:
    """Per-image mean SSIM ``[B]``, computed and returned in float64."""
    pred, target, _ = check_pair64(pred, target)
    _check_options(gaussian_sigma, win_size, k1, k2)
    pad = (win_size - 1) // 2
    if any(s <= 2 * pad for s in pred.shape[2:]):
        raise InputError(
            f"pred: spatial shape {tuple(pred.shape[2:])} is too small for win_size={win_size}; "
            f"expected every spatial size >= {win_size}"
        )
    s = _crop(_ssim_map(pred, target, data_range, gaussian_sigma, win_size, k1, k2), pad)
    if mask is None:
        return s.reshape(s.shape[0], -1).mean(1)
    m = _crop(check_mask(mask, pred), pad)
    counts = m.reshape(m.shape[0], -1).sum(1)
    if bool((counts == 0).any()):
        raise InputError(
            f"mask: no voxel of the region lies inside the {pad}-voxel border crop for batch item(s) "
            f"{[i for i, n in enumerate(counts.tolist()) if n == 0]}; expected >= 1 voxel"
        )
    m = m.to(s.dtype)
    return (s * m).reshape(s.shape[0], -1).sum(1) / counts.to(s.dtype)


def ssim(
    pred: torch.Tensor,
    target: torch.Tensor,
    data_range,
    *,
    mask: torch.Tensor | None = None,
    gaussian_sigma: float | None = 1.5,
    win_size: int = 11,
    k1: float = 0.01,
    k2: float = 0.03,
    reduction: str = "mean",
) -> torch.Tensor:
    """Mean SSIM per image, 2-D or 3-D, differentiable; see the module docstring for the equation.

    The SSIM map (:func:`ssim_map`) is cropped by ``(win_size − 1) // 2`` voxels on each side
    (as skimage does) and averaged over channels and voxels, or over the voxels of ``mask`` that
    survive the crop.

    Args:
        pred, target: ``[B, C, H, W]`` or ``[B, C, X, Y, Z]``; every spatial size >= ``win_size``.
        data_range: a number or ``[B]`` values; see :func:`ssim_map`.
        mask: optional region of interest, ``[*spatial]``, ``[B, 1, *spatial]`` or the image shape.
        reduction: ``"mean"`` (scalar over the batch), ``"sum"`` or ``"none"`` (``[B]``).

    Returns:
        A scalar, or ``[B]`` for ``reduction="none"``; 1 for identical images. Computed in
        float64 (huge values, float16 input); float64 for float64 images, float32 otherwise.
    """
    check_reduction(reduction)
    out_dtype = result_dtype(pred, target)
    values = _ssim_per_image(pred, target, data_range, mask, gaussian_sigma, win_size, k1, k2)
    return reduce(values, reduction).to(out_dtype)

