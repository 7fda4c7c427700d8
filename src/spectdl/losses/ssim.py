"""SSIM losses: ``1 − SSIM`` in 2-D or 3-D, and the three-plane (axial, coronal, sagittal) variant.

SSIM itself comes from :func:`spectdl.metrics.functional.ssim` (differentiable, matching
``skimage.metrics.structural_similarity``); keyword arguments such as the window settings pass
through to it unchanged.

Data range: SSIM's constants ``C1 = (K1·L)²`` and ``C2 = (K2·L)²`` need the intensity span ``L``.
Give it as ``data_range`` when the images have a known scale (e.g. normalised to [0, 1]); with
``None`` each call takes ``max − min`` of the target batch, detached (see
:func:`spectdl.losses._base.batch_data_range`). A ``data_range=`` context keyword overrides both for
one call; composite losses use it to share one range between terms.

Masks (``mask_key``, see :mod:`spectdl.losses._base`): the SSIM map is taken of ``pred·M`` and
``target·M`` and averaged over the voxels of ``M`` that survive the border crop, over the whole
batch (:func:`masked_ssim`): a slice of the three-plane SSIM that misses ``M`` then simply counts
for nothing, where a per-slice mean would be 0/0.
"""

from __future__ import annotations

from typing import Any

import torch

from spectdl.errors import InputError
from spectdl.losses._base import (
    Loss,
    check_pair,
    first_given,
    masked_mean,
    optional_mask,
    resolve_data_range,
    spatial_dims_of,
)
from spectdl.metrics.functional import ssim as _ssim
from spectdl.metrics.functional import ssim_map


def _to_slices(x: torch.Tensor, axis: int) -> torch.Tensor:
    """``[B, C, X, Y, Z]`` → ``[B·N, C, P, Q]``, the 2-D slices perpendicular to spatial ``axis``."""
    b, c = x.shape[:2]
    moved = x.movedim(2 + axis, 1)
    return moved.reshape(b * moved.shape[1], c, *moved.shape[3:])


#: The planes of the three-plane SSIM, keyed by name, each with the spatial axis held fixed.
PLANES = {"axial": 2, "coronal": 1, "sagittal": 0}


def masked_ssim(pred: torch.Tensor, target: torch.Tensor, mask: torch.Tensor, data_range,
                **ssim_kwargs: Any) -> torch.Tensor:
    """Mean SSIM over the voxels of ``mask``, pooled over the batch: a scalar.

    ``SSIM_M = Σ S·M / Σ M`` with ``S`` the SSIM map (:func:`spectdl.metrics.functional.ssim_map`)
    of ``pred·M`` and ``target·M``; both sums skip the ``(win_size − 1) // 2``-voxel border that
    :func:`spectdl.metrics.functional.ssim` crops. ``pred``, ``target``: ``[B, C, *spatial]``;
    ``mask``: ``[B, 1 or C, *spatial]``, 0/1 or soft weights. An empty mask gives 0.
    """
    win = int(ssim_kwargs.get("win_size", 11))
    pad = (win - 1) // 2
    if any(n <= 2 * pad for n in pred.shape[2:]):
        raise InputError(f"pred: spatial shape {tuple(pred.shape[2:])} is too small for win_size={win}; "
                         f"expected every spatial size >= {win}")
    s = ssim_map(pred * mask, target * mask, data_range, **ssim_kwargs)
    crop = (slice(None), slice(None)) + tuple(slice(pad, n - pad) for n in s.shape[2:])
    return masked_mean(s[crop], mask.to(s.dtype)[crop])


def three_plane_ssim(pred: torch.Tensor, target: torch.Tensor, data_range, mask: torch.Tensor | None = None,
                     **ssim_kwargs: Any):
    """Mean of the axial, coronal and sagittal SSIM of ``[B, C, X, Y, Z]`` volumes.

    ``SSIM_3p = (SSIM_axial + SSIM_coronal + SSIM_sagittal) / 3``, where each term is the mean 2-D
    SSIM over every slice of that orientation (axial: fixed z, the (x, y) planes; coronal: fixed y;
    sagittal: fixed x) and over the batch; with ``mask`` (``[B, 1 or C, X, Y, Z]``) each term is
    :func:`masked_ssim` of that orientation's slices. Returns ``(SSIM_3p, {plane: SSIM_plane})``, scalars.
    """
    per_plane = {}
    for name, axis in PLANES.items():
        p, t = _to_slices(pred, axis), _to_slices(target, axis)
        if mask is None:
            per_plane[name] = _ssim(p, t, data_range=data_range, reduction="mean", **ssim_kwargs)
        else:
            per_plane[name] = masked_ssim(p, t, _to_slices(mask, axis), data_range, **ssim_kwargs)
    return sum(per_plane.values()) / 3.0, per_plane


class SSIMLoss(Loss):
    """``ℓ = 1 − SSIM(pred, target)``, the SSIM averaged over the batch, in 2-D or 3-D.

    Args:
        spatial_dims: 2 or 3; ``None`` infers it from the input (4-D → 2-D SSIM, 5-D → 3-D SSIM).
        data_range: ``L`` (see the module docstring); ``None`` takes it from the target batch.
        mask_key: a context keyword holding a mask ``M``: then ``ℓ = 1 − SSIM_M`` (:func:`masked_ssim`).
        **ssim_kwargs: passed to :func:`spectdl.metrics.functional.ssim` (window settings).
    """

    def __init__(self, spatial_dims: int | None = None, data_range: float | None = None,
                 mask_key: str | None = None, **ssim_kwargs: Any):
        super().__init__()
        self.spatial_dims = spatial_dims
        self.data_range = None if data_range is None else resolve_data_range(data_range, torch.zeros(()))
        self.mask_key = mask_key
        self.ssim_kwargs = ssim_kwargs

    def _loss(self, pred, target, **context):
        check_pair(pred, target)
        spatial_dims_of(pred, self.spatial_dims)
        dr = resolve_data_range(first_given(context.get("data_range"), self.data_range), target)
        mask = optional_mask(context, self.mask_key, target, "SSIMLoss")
        if mask is None:
            value = _ssim(pred, target, data_range=dr, reduction="mean", **self.ssim_kwargs)
        else:
            value = masked_ssim(pred, target, mask, dr, **self.ssim_kwargs)
        return 1.0 - value, {}


class ThreePlaneSSIMLoss(Loss):
    """``ℓ = 1 − SSIM_3p(pred, target)`` on ``[B, C, X, Y, Z]`` volumes (see :func:`three_plane_ssim`).

    Components: ``"axial"``, ``"coronal"`` and ``"sagittal"``, each ``1 − SSIM_plane``. With
    ``mask_key``, each plane's SSIM is confined to the mask (:func:`masked_ssim`).
    """

    def __init__(self, data_range: float | None = None, mask_key: str | None = None, **ssim_kwargs: Any):
        super().__init__()
        self.data_range = None if data_range is None else resolve_data_range(data_range, torch.zeros(()))
        self.mask_key = mask_key
        self.ssim_kwargs = ssim_kwargs

    def _loss(self, pred, target, **context):
        check_pair(pred, target)
        spatial_dims_of(pred, 3)
        dr = resolve_data_range(first_given(context.get("data_range"), self.data_range), target)
        mask = optional_mask(context, self.mask_key, target, "ThreePlaneSSIMLoss")
        value, per_plane = three_plane_ssim(pred, target, dr, mask, **self.ssim_kwargs)
        return 1.0 - value, {name: 1.0 - v for name, v in per_plane.items()}
