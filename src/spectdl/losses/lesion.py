"""Lesion-attention loss: the base loss plus a heavily weighted copy restricted to the lesions."""

from __future__ import annotations

import torch
from torch import nn

from spectdl.errors import InputError
from spectdl.losses._base import Loss, check_pair, first_given, mask_like, require_context, resolve_data_range
from spectdl.losses.composite import CompositeLoss, _call_term
from spectdl.losses.pixel import L1Loss
from spectdl.losses.ssim import SSIMLoss


class LesionAttentionLoss(Loss):
    """``ℓ = L(pred, target) + β · L(pred·M, target·M)`` with ``L = L1 + α·(1 − SSIM)``.

    ``M`` is the lesion mask from the context keyword ``lesion_mask=`` (``[B, 1, *spatial]``,
    ``[B, C, *spatial]`` or ``[B, *spatial]``, boolean or soft weights in [0, 1]); an all-zero
    mask makes the lesion term 0, so cases without lesions can share a batch with the others.

    Args:
        alpha: ``α``, the SSIM weight inside ``L`` (0.5 by default).
        beta: ``β``, the weight of the lesion term (100 by default).
        data_range: the SSIM data range ``L_I``. ``None`` takes ``max − min`` of the whole target
            batch (before masking), and the same value serves both SSIM evaluations, so the
            masked term keeps the stabilising constants of the full image.
        spatial_dims: 2 or 3; inferred from the input when ``None``.
        base: replaces ``L`` by any loss module (``alpha`` is then unused). It receives the
            context, including ``data_range=``.
        mask_key: the context keyword that holds ``M``.

    Components: ``"base"`` and ``"lesion"`` (unweighted), and the base loss's components as
    ``"base.l1"``, ``"base.ssim"``, ``"lesion.l1"``, ``"lesion.ssim"``.
    """

    def __init__(
        self,
        alpha: float = 0.5,
        beta: float = 100.0,
        data_range: float | None = None,
        spatial_dims: int | None = None,
        base: nn.Module | None = None,
        mask_key: str = "lesion_mask",
    ) -> None:
        super().__init__()
        for name, v in (("alpha", alpha), ("beta", beta)):
            if not (isinstance(v, (int, float)) and v >= 0):
                raise InputError(f"{name}: expected a number >= 0, found {v!r}")
        self.alpha = float(alpha)
        self.beta = float(beta)
        self.data_range = None if data_range is None else resolve_data_range(data_range, torch.zeros(()))
        self.mask_key = mask_key
        if base is None:
            base = CompositeLoss(
                {"l1": (1.0, L1Loss()), "ssim": (self.alpha, SSIMLoss(spatial_dims=spatial_dims))}
            )
        elif not isinstance(base, nn.Module):
            raise InputError(f"base: expected an nn.Module loss or None, found {type(base).__name__}")
        self.base = base

    def _loss(self, pred, target, **context):
        check_pair(pred, target)
        mask = mask_like(require_context(context, self.mask_key, "LesionAttentionLoss"), target, self.mask_key)
        ctx = dict(context)
        ctx["data_range"] = resolve_data_range(first_given(context.get("data_range"), self.data_range), target)
        full, full_sub = _call_term(self.base, pred, target, ctx)
        lesion, lesion_sub = _call_term(self.base, pred * mask, target * mask, ctx)
        components: dict[str, torch.Tensor] = {"base": full, "lesion": lesion}
        components.update({f"base.{k}": v for k, v in full_sub.items()})
        components.update({f"lesion.{k}": v for k, v in lesion_sub.items()})
        return full + self.beta * lesion, components
