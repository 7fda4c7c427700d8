"""What every spectdl loss shares: the calling convention, input checks and the SSIM data range.

Calling convention
------------------
Every loss is an ``nn.Module`` called as ``loss(pred, target, **context)`` and returns a scalar
tensor on the device and dtype of ``pred``. ``context`` carries what some losses need beyond the
two images (``lesion_mask=``, ``masks=``, ``fake_logits=``, ``real_logits=``, ``data_range=``);
losses ignore the keys they do not use, so one context dict can feed a whole composite.

Loss masks: the pixel, SSIM, Sobel and IMBV losses take ``mask_key`` (default ``None``: the whole
image). With it, the context must hold that mask ``M`` (``[B, 1, *spatial]``, ``[B, C, *spatial]``
or ``[B, *spatial]``, e.g. a field of view that was rotated with the volume), and each term is
confined to it: it sees ``pred·M`` and ``target·M`` only and averages over the voxels of ``M``, so
the prediction outside ``M`` changes neither the loss nor its gradient.

``return_components=True`` returns ``(total, components)`` instead of ``total``: ``components``
maps names to the (undetached) terms. After every call ``loss.last_components`` holds the same
values detached, for logging. Composite losses name nested terms with dots
(``"lesion_attention.lesion"``).

Inputs are not scanned for NaN here: that check costs a device synchronisation on every training
step, and a NaN input gives a NaN loss, which training already reports.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from spectdl.errors import InputError


class Loss(nn.Module):
    """Base class: subclasses implement ``_loss(pred, target, **context) -> (total, components)``."""

    def __init__(self) -> None:
        super().__init__()
        self.last_components: dict[str, torch.Tensor] = {}

    def _loss(self, pred, target, **context: Any) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        raise NotImplementedError

    def forward(self, pred, target, *, return_components: bool = False, **context: Any):
        total, components = self._loss(pred, target, **context)
        self.last_components = {k: v.detach() for k, v in components.items()}
        if return_components:
            return total, components
        return total


def check_pair(pred, target, name_pred: str = "pred", name_target: str = "target", min_dim: int = 3) -> None:
    """Both are floating tensors of one shape ``[B, C, *spatial]`` with at least ``min_dim`` axes."""
    for name, t in ((name_pred, pred), (name_target, target)):
        if not isinstance(t, torch.Tensor):
            raise InputError(f"{name}: expected a torch.Tensor, found {type(t).__name__}")
        if not t.is_floating_point():
            raise InputError(f"{name}: expected a floating-point tensor, found dtype {t.dtype}")
        if t.dim() < min_dim:
            raise InputError(f"{name}: shape {tuple(t.shape)}; expected [B, C, *spatial] ({min_dim}+ axes)")
    if pred.shape != target.shape:
        raise InputError(
            f"{name_pred} and {name_target}: shapes {tuple(pred.shape)} and {tuple(target.shape)}; "
            "expected equal shapes"
        )


def spatial_dims_of(x: torch.Tensor, spatial_dims: int | None, name: str = "pred") -> int:
    """2 or 3, from ``spatial_dims`` when given, else from ``x.dim() - 2``; checks they agree."""
    sd = x.dim() - 2 if spatial_dims is None else int(spatial_dims)
    if sd not in (2, 3) or x.dim() != sd + 2:
        raise InputError(
            f"{name}: shape {tuple(x.shape)} with spatial_dims={spatial_dims}; "
            "expected [B, C, H, W] (2-D) or [B, C, X, Y, Z] (3-D)"
        )
    return sd


def batch_data_range(target: torch.Tensor) -> torch.Tensor:
    """``max(target) − min(target)`` over the whole batch, detached; 1 where the batch is constant.

    This is the data range the SSIM-based losses use when none is given. It is taken from the
    target, never from the prediction, so the network cannot lower its loss by changing the
    stabilising constants ``C1 = (0.01·L)², C2 = (0.03·L)²``; and it is detached because it is a
    normalising constant, not something to differentiate through. A constant target (range 0)
    would make ``C1 = C2 = 0`` and SSIM 0/0, so 1 is used instead.
    """
    t = target.detach()
    dr = t.max() - t.min()
    return torch.where(dr > 0, dr, torch.ones_like(dr))


def resolve_data_range(data_range, target: torch.Tensor, name: str = "data_range") -> torch.Tensor | float:
    """An explicit positive ``data_range`` as given, or :func:`batch_data_range` of ``target``."""
    if data_range is None:
        return batch_data_range(target)
    if isinstance(data_range, torch.Tensor):
        if data_range.numel() != 1:
            raise InputError(f"{name}: expected a scalar, found a tensor of shape {tuple(data_range.shape)}")
        return data_range.detach()
    try:
        value = float(data_range)
    except (TypeError, ValueError):
        raise InputError(f"{name}: expected a positive number or None, found {data_range!r}") from None
    if not value > 0:
        raise InputError(f"{name}: expected a positive number (the intensity span) or None, found {data_range!r}")
    return value


def mask_like(mask, target: torch.Tensor, name: str) -> torch.Tensor:
    """A mask broadcastable to ``target``, as ``target``'s dtype and device.

    Accepts ``[B, C, *spatial]``, ``[B, 1, *spatial]`` or ``[B, *spatial]`` (a channel axis is added),
    boolean or float (soft masks are used as weights).
    """
    if not isinstance(mask, torch.Tensor):
        raise InputError(f"{name}: expected a torch.Tensor mask, found {type(mask).__name__}")
    m = mask
    if m.dim() == target.dim() - 1:
        m = m.unsqueeze(1)
    ok = m.dim() == target.dim() and m.shape[0] == target.shape[0] and m.shape[1] in (1, target.shape[1])
    ok = ok and tuple(m.shape[2:]) == tuple(target.shape[2:])
    if not ok:
        raise InputError(
            f"{name}: shape {tuple(mask.shape)}; expected {tuple(target.shape)}, "
            f"[{target.shape[0]}, 1, *{tuple(target.shape[2:])}] or [{target.shape[0]}, *{tuple(target.shape[2:])}]"
        )
    return m.to(dtype=target.dtype, device=target.device)


def optional_mask(context: dict, key: str | None, target: torch.Tensor, owner: str) -> torch.Tensor | None:
    """The loss mask ``context[key]`` (:func:`mask_like` of ``target``), or ``None`` when ``key`` is ``None``.

    A loss built with a ``mask_key`` needs that keyword on every call: falling back to the whole
    image when it is missing would silently score voxels the study meant to leave out.
    """
    if key is None:
        return None
    return mask_like(require_context(context, key, owner), target, key)


def masked_mean(values: torch.Tensor, mask: torch.Tensor | None) -> torch.Tensor:
    """``Σ v·M / Σ M`` over every element of ``values`` (``M`` broadcast to its shape); the plain mean
    without a mask. An empty mask gives 0: nothing is scored, and no device sync checks for it."""
    if mask is None:
        return values.mean()
    m = torch.broadcast_to(mask.to(values.dtype), values.shape)
    n = m.sum()
    return (values * m).sum() / torch.where(n > 0, n, torch.ones_like(n))


def require_context(context: dict, key: str, owner: str):
    """``context[key]``, or an InputError saying which loss needs it."""
    if key not in context or context[key] is None:
        raise InputError(f"{owner} needs the context keyword {key}=... (found keys: {sorted(context)})")
    return context[key]


def first_given(*values):
    """The first of ``values`` that is not ``None`` (a per-call context value before a default)."""
    for v in values:
        if v is not None:
            return v
    return None
