"""Pixel-wise losses: L1 (mean absolute error), L2 (mean squared error) and intensity BCE."""

from __future__ import annotations

import torch

from spectdl.errors import InputError
from spectdl.losses._base import Loss, check_pair, first_given, masked_mean, optional_mask, resolve_data_range


class L1Loss(Loss):
    """Mean absolute error ``ℓ = mean |pred − target|`` over every element of ``[B, C, *spatial]``.

    Args:
        mask_key: a context keyword holding a mask ``M`` (see :mod:`spectdl.losses._base`); then
            ``ℓ = Σ |pred − target|·M / Σ M`` over the batch, in the images' units.
    """

    def __init__(self, mask_key: str | None = None) -> None:
        super().__init__()
        self.mask_key = mask_key

    def _loss(self, pred, target, **context):
        check_pair(pred, target, min_dim=2)
        mask = optional_mask(context, self.mask_key, target, "L1Loss")
        return masked_mean((pred - target).abs(), mask), {}


class L2Loss(Loss):
    """Mean squared error ``ℓ = mean (pred − target)²`` over every element of ``[B, C, *spatial]``."""

    def _loss(self, pred, target, **context):
        check_pair(pred, target, min_dim=2)
        return (pred - target).square().mean(), {}


class IntensityBCELoss(Loss):
    """Binary cross-entropy between intensities read as probabilities.

    ``p = clamp(pred / L, ε, 1 − ε)``, ``q = clamp(target / L, 0, 1)``, and
    ``ℓ = mean[−q·log p − (1 − q)·log(1 − p)]``. Its minimum over ``pred`` is at ``pred = target``
    but is not 0 there (it equals the mean binary entropy of ``q``). The clamp stops the gradient
    where ``pred`` lies outside ``[0, L]``.

    Args:
        data_range: ``L``, the intensity that maps to 1; ``None`` takes ``max − min`` of the target
            batch (see :func:`spectdl.losses._base.batch_data_range`), which suits non-negative
            images. A context keyword ``data_range=`` overrides it for one call.
        eps: the clamp that keeps ``log`` finite.
    """

    def __init__(self, data_range: float | None = None, eps: float = 1e-6) -> None:
        super().__init__()
        if not 0 < eps < 0.5:
            raise InputError(f"eps: expected a value in (0, 0.5), found {eps}")
        self.data_range = None if data_range is None else resolve_data_range(data_range, torch.zeros(()))
        self.eps = float(eps)

    def _loss(self, pred, target, **context):
        check_pair(pred, target, min_dim=2)
        dr = resolve_data_range(first_given(context.get("data_range"), self.data_range), target)
        p = (pred / dr).clamp(self.eps, 1.0 - self.eps)
        q = (target / dr).clamp(0.0, 1.0)
        # binary_cross_entropy would refuse autocast-fp16; the explicit form works in any dtype.
        loss = -(q * torch.log(p) + (1.0 - q) * torch.log1p(-p))
        return loss.mean(), {}
