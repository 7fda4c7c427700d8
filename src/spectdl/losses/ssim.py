"""SSIM losses: ``1 − SSIM`` in 2-D or 3-D, and the three-plane (axial, coronal, sagittal) variant.

SSIM itself comes from :func:`spectdl.metrics.functional.ssim` (differentiable, matching
``skimage.metrics.structural_similarity``); keyword arguments such as the window settings pass
through to it unchanged.

Data range: SSIM's constants ``C1 = (K1·L)²`` and ``C2 = (K2·L)²`` need the intensity span ``L``.
Give it as ``data_range`` when the images have a known scale (e.g. normalised to [0, 1]); with
``None`` each call takes ``max − min`` of the target batch, detached (see
:func:`spectdl.losses._base.batch_data_range`). A ``data_range=`` context keyword overrides both for
one call; composite losses use it to share one range between terms.
"""

from __future__ import annotations

from typing import Any

import torch

from spectdl.losses._base import Loss, check_pair, first_given, resolve_data_range, spatial_dims_of
from spectdl.metrics.functional import ssim as _ssim


def _to_slices(x: torch.Tensor, axis: int) -> torch.Tensor:
    """``[B, C, X, Y, Z]`` → ``[B·N, C, P, Q]``, the 2-D slices perpendicular to spatial ``axis``."""
    b, c = x.shape[:2]
    moved = x.movedim(2 + axis, 1)
    return moved.reshape(b * moved.shape[1], c, *moved.shape[3:])


#: The planes of the three-plane SSIM, keyed by name, each with the spatial axis held fixed.
PLANES = {"axial": 2, "coronal": 1, "sagittal": 0}


def three_plane_ssim(pred: torch.Tensor, target: torch.Tensor, data_range, **ssim_kwargs: Any):
    """Mean of the axial, coronal and sagittal SSIM of ``[B, C, X, Y, Z]`` volumes.

    ``SSIM_3p = (SSIM_axial + SSIM_coronal + SSIM_sagittal) / 3``, where each term is the mean 2-D
    SSIM over every slice of that orientation (axial: fixed z, the (x, y) planes; coronal: fixed y;
    sagittal: fixed x) and over the batch. Returns ``(SSIM_3p, {plane: SSIM_plane})``, scalars.
    """
    per_plane = {}
    for name, axis in PLANES.items():
        per_plane[name] = _ssim(
            _to_slices(pred, axis), _to_slices(target, axis), data_range=data_range, reduction="mean", **ssim_kwargs
        )
    return sum(per_plane.values()) / 3.0, per_plane


class SSIMLoss(Loss):
    """``ℓ = 1 − SSIM(pred, target)``, the SSIM averaged over the batch, in 2-D or 3-D.

    Args:
        spatial_dims: 2 or 3; ``None`` infers it from the input (4-D → 2-D SSIM, 5-D → 3-D SSIM).
        data_range: ``L`` (see the module docstring); ``None`` takes it from the target batch.
        **ssim_kwargs: passed to :func:`spectdl.metrics.functional.ssim` (window settings).
    """

    def __init__(self, spatial_dims: int | None = None, data_range: float | None = None, **ssim_kwargs: Any):
        super().__init__()
        self.spatial_dims = spatial_dims
        self.data_range = None if data_range is None else resolve_data_range(data_range, torch.zeros(()))
        self.ssim_kwargs = ssim_kwargs

    def _loss(self, pred, target, **context):
        check_pair(pred, target)
        spatial_dims_of(pred, self.spatial_dims)
        dr = resolve_data_range(first_given(context.get("data_range"), self.data_range), target)
        value = _ssim(pred, target, data_range=dr, reduction="mean", **self.ssim_kwargs)
        return 1.0 - value, {}


class ThreePlaneSSIMLoss(Loss):
    """``ℓ = 1 − SSIM_3p(pred, target)`` on ``[B, C, X, Y, Z]`` volumes (see :func:`three_plane_ssim`).

    Components: ``"axial"``, ``"coronal"`` and ``"sagittal"``, each ``1 − SSIM_plane``.
    """

    def __init__(self, data_range: float | None = None, **ssim_kwargs: Any):
        super().__init__()
        self.data_range = None if data_range is None else resolve_data_range(data_range, torch.zeros(()))
        self.ssim_kwargs = ssim_kwargs

    def _loss(self, pred, target, **context):
        check_pair(pred, target)
        spatial_dims_of(pred, 3)
        dr = resolve_data_range(first_given(context.get("data_range"), self.data_range), target)
        value, per_plane = three_plane_ssim(pred, target, dr, **self.ssim_kwargs)
        return 1.0 - value, {name: 1.0 - v for name, v in per_plane.items()}
