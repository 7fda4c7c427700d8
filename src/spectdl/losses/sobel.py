"""Sobel-gradient L1 loss: edges of the prediction should match edges of the target.

The Sobel operator along axis ``a`` is the central difference ``[−1, 0, 1]`` along ``a`` times the
smoothing ``[1, 2, 1]`` along every other spatial axis (the same separable definition as
``scipy.ndimage.sobel``). Image borders are extended by repeating the edge voxel, which for a
one-voxel margin is scipy's default ``mode="reflect"``, so :func:`sobel_gradients` equals
``scipy.ndimage.sobel(x, axis=a)`` for every spatial axis.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from spectdl.losses._base import Loss, check_pair, spatial_dims_of


def _sobel_kernels(sd: int, dtype, device) -> torch.Tensor:
    """``[sd, 1, 3, …, 3]``: kernel ``a`` differentiates along spatial axis ``a``, smooths the rest."""
    diff = torch.tensor([-1.0, 0.0, 1.0], dtype=dtype, device=device)
    smooth = torch.tensor([1.0, 2.0, 1.0], dtype=dtype, device=device)
    kernels = []
    for axis in range(sd):
        k = torch.ones((1,) * sd, dtype=dtype, device=device)
        for i in range(sd):
            shape = [1] * sd
            shape[i] = 3
            k = k * (diff if i == axis else smooth).reshape(shape)
        kernels.append(k)
    return torch.stack(kernels).unsqueeze(1)


def sobel_gradients(x: torch.Tensor, spatial_dims: int | None = None) -> torch.Tensor:
    """Sobel responses of ``x [B, C, *spatial]`` along each spatial axis: ``[B, C, D, *spatial]``.

    ``D = spatial_dims`` (2 or 3); entry ``[:, :, a]`` is the derivative along spatial axis ``a``
    (``x``, ``y``, then ``z``), unnormalised (a unit ramp gives 8 in 2-D and 32 in 3-D), each
    channel on its own.
    """
    sd = spatial_dims_of(x, spatial_dims, "x")
    b, c = x.shape[:2]
    spatial = x.shape[2:]
    flat = x.reshape(b * c, 1, *spatial)
    padded = F.pad(flat, (1, 1) * sd, mode="replicate")
    conv = F.conv2d if sd == 2 else F.conv3d
    out = conv(padded, _sobel_kernels(sd, x.dtype, x.device))
    return out.reshape(b, c, sd, *spatial)


class SobelLoss(Loss):
    """``ℓ = (1/D) Σ_a mean |S_a(pred) − S_a(target)|`` over the ``D`` spatial axes.

    In 3-D the three Sobel directions (x, y, z) are the three planes' edges; in 2-D, x and y.
    ``S_a`` is :func:`sobel_gradients`, so the loss is in units of intensity (times the Sobel gain
    of 8 or 32 per voxel of ramp). ``spatial_dims`` is inferred from the input when ``None``.
    """

    def __init__(self, spatial_dims: int | None = None) -> None:
        super().__init__()
        self.spatial_dims = spatial_dims

    def _loss(self, pred, target, **context):
        check_pair(pred, target)
        sd = spatial_dims_of(pred, self.spatial_dims)
        diff = sobel_gradients(pred, sd) - sobel_gradients(target, sd)
        return diff.abs().mean(), {}
