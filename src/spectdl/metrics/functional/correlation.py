"""Pearson correlation coefficient with its two-sided p-value (as ``scipy.stats.pearsonr``).

``r = Σ(x − x̄)(y − ȳ) / sqrt(Σ(x − x̄)² · Σ(y − ȳ)²)`` over ``n`` pairs. Under the null hypothesis
of independent normal samples, ``r`` follows a Beta(n/2 − 1, n/2 − 1) law on [−1, 1], so the
two-sided p-value is ``p = 2·I_{(1−|r|)/2}(n/2 − 1, n/2 − 1)`` (regularised incomplete beta;
equal to the t-test on ``t = r·sqrt((n − 2)/(1 − r²))`` with n − 2 degrees of freedom).

The statistics are kept as ``(n, x̄, ȳ, Σ(x − x̄)², Σ(y − ȳ)², Σ(x − x̄)(y − ȳ))`` and merged with
the pairwise update of Chan et al. (1979), so that a dataset-level ``r`` from batches equals the
``r`` of the concatenated data without the cancellation of raw sums.
"""

from __future__ import annotations

from typing import NamedTuple

import torch

from spectdl.errors import InputError
from spectdl.metrics.functional._checks import check_mask, check_pair

__all__ = ["PearsonResult", "pearson"]


class PearsonResult(NamedTuple):
    """``r`` and the two-sided ``p_value``; scalars, or ``[B]`` for images."""

    r: torch.Tensor
    p_value: torch.Tensor


def _check_vectors(x, y) -> tuple[torch.Tensor, torch.Tensor]:
    for name, v in (("pred", x), ("target", y)):
        if not isinstance(v, torch.Tensor):
            raise InputError(f"{name}: expected a torch.Tensor, found {type(v).__name__}")
    if x.shape != y.shape:
        raise InputError(f"pred: shape {tuple(x.shape)} differs from target shape {tuple(y.shape)}; "
                         "expected identical shapes")
    dtype = torch.promote_types(x.dtype, y.dtype)
    if not dtype.is_floating_point:
        dtype = torch.float64
    x, y = x.to(dtype), y.to(dtype)
    for name, v in (("pred", x), ("target", y)):
        if not bool(torch.isfinite(v).all()):
            raise InputError(f"{name}: contains NaN or infinite values; expected finite values")
    return x, y


def _pearson_update(pred, target, mask=None) -> tuple[torch.Tensor, ...]:
    """Per-sample statistics ``(n, mean_x, mean_y, m2x, m2y, cxy)``, each ``[B]``.

    ``pred``/``target`` are 1-D ``[N]`` (one sample of N pairs, ``B = 1``) or images
    ``[B, C, *spatial]`` (one sample per image, over the voxels of ``mask``).
    """
    if isinstance(pred, torch.Tensor) and pred.dim() == 1:
        if mask is not None:
            raise InputError("mask: only images [B, C, *spatial] take a mask; found 1-D inputs")
        x, y = _check_vectors(pred, target)
        x, y = x[None], y[None]
        w = torch.ones_like(x)
    else:
        x, y = check_pair(pred, target)
        w = (torch.ones_like(x) if mask is None else check_mask(mask, x).to(x.dtype))
        x, y, w = (t.reshape(t.shape[0], -1) for t in (x, y, w))
    n = w.sum(1)
    mx = (w * x).sum(1) / n
    my = (w * y).sum(1) / n
    dx = (x - mx[:, None]) * w
    dy = (y - my[:, None]) * w
    return n, mx, my, (dx * dx).sum(1), (dy * dy).sum(1), (dx * dy).sum(1)


def _pearson_merge(a: tuple[torch.Tensor, ...], b: tuple[torch.Tensor, ...]) -> tuple[torch.Tensor, ...]:
    na, mxa, mya, sxa, sya, ca = a
    nb, mxb, myb, sxb, syb, cb = b
    n = na + nb
    dx = mxb - mxa
    dy = myb - mya
    f = na * nb / n
    mean_x, mean_y = mxa + dx * nb / n, mya + dy * nb / n
    return n, mean_x, mean_y, sxa + sxb + dx * dx * f, sya + syb + dy * dy * f, ca + cb + dx * dy * f


def _pearson_compute(stats: tuple[torch.Tensor, ...]) -> PearsonResult:
    from scipy import special

    n, _, _, sxx, syy, sxy = stats
    if bool((n < 2).any()):
        raise InputError(f"pred: a correlation needs at least 2 pairs, found {n.min().item():.0f}")
    if bool(((sxx == 0) | (syy == 0)).any()):
        raise InputError("pred: an input is constant, so the correlation coefficient is undefined; expected "
                         "varying values")
    r = (sxy / torch.sqrt(sxx * syy)).clamp(-1.0, 1.0)
    a = (n / 2.0 - 1.0).detach().cpu().double().numpy()
    z = ((1.0 - r.abs()) / 2.0).detach().cpu().double().numpy()
    p = 2.0 * special.betainc(a.clip(min=1e-300), a.clip(min=1e-300), z)
    p_value = torch.as_tensor(p, dtype=r.dtype, device=r.device)
    # With two pairs r is ±1 by construction and carries no evidence.
    p_value = torch.where(n <= 2, torch.ones_like(p_value), p_value).clamp(0.0, 1.0)
    return PearsonResult(r, p_value)


def pearson(pred: torch.Tensor, target: torch.Tensor, mask: torch.Tensor | None = None) -> PearsonResult:
    """Pearson ``r`` and two-sided p-value, as ``scipy.stats.pearsonr(pred, target)``.

    Args:
        pred, target: 1-D ``[N]`` paired values (e.g. a per-patient quantity; result scalars) or
            images ``[B, C, *spatial]`` (voxel-wise correlation per image; results ``[B]``).
        mask: for images, the voxels to correlate.

    ``r`` is differentiable; the p-value is computed with scipy and carries no gradient.

    Raises:
        InputError: mismatched shapes, non-finite values, fewer than 2 pairs, or a constant input.
    """
    scalar = isinstance(pred, torch.Tensor) and pred.dim() == 1
    result = _pearson_compute(_pearson_update(pred, target, mask))
    if scalar:
        return PearsonResult(result.r[0], result.p_value[0])
    return result
