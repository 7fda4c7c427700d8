"""Sobel-gradient L1 loss: edges of the prediction should match edges of the target.

The Sobel operator along axis ``a`` is the central difference ``[−1, 0, 1]`` along ``a`` times the
smoothing ``[1, 2, 1]`` along every other spatial axis (the same separable definition as
``scipy.ndimage.sobel``). Image borders are extended by repeating the edge voxel, which for a
one-voxel margin is scipy's default ``mode="reflect"``, so :func:`sobel_gradients` equals
``scipy.ndimage.sobel(x, axis=a)`` for every spatial axis.

Two losses: :class:`SobelLoss`, the 3-D (or 2-D) operator along every axis of the volume (a unit
ramp gives 32 per voxel in 3-D, 8 in 2-D), and :class:`ThreePlaneSobelLoss`, the 2-D operator in
every axial, coronal and sagittal slice (gain 8), as the three-plane SSIM treats the volume.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from spectdl.losses._base import Loss, check_pair, masked_mean, optional_mask, spatial_dims_of
from spectdl.losses.ssim import PLANES, _to_slices


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


def _sobel_l1(pred: torch.Tensor, target: torch.Tensor, mask: torch.Tensor | None, sd: int) -> torch.Tensor:
    """``mean |S(pred·M) − S(target·M)|`` over the axes and the voxels of ``M`` (every voxel without it)."""
    if mask is not None:
        pred, target = pred * mask, target * mask
        mask = mask.unsqueeze(2)  # [B, C, 1, *spatial]: one weight for every Sobel direction
    return masked_mean((sobel_gradients(pred, sd) - sobel_gradients(target, sd)).abs(), mask)


class SobelLoss(Loss):
    """``ℓ = (1/D) Σ_a mean |S_a(pred) − S_a(target)|`` over the ``D`` spatial axes.

    In 3-D the Sobel directions are x, y and z, each smoothed over the other two axes; in 2-D, x
    and y. ``S_a`` is :func:`sobel_gradients`, so the loss is in units of intensity times the Sobel
    gain of 8 (2-D) or 32 (3-D) per voxel of ramp. ``spatial_dims`` is inferred from the input when
    ``None``. With ``mask_key`` (see :mod:`spectdl.losses._base`) the gradients are those of
    ``pred·M`` and ``target·M`` and the mean runs over the voxels of ``M``.
    """

    def __init__(self, spatial_dims: int | None = None, mask_key: str | None = None) -> None:
        super().__init__()
        self.spatial_dims = spatial_dims
        self.mask_key = mask_key

    def _loss(self, pred, target, **context):
        check_pair(pred, target)
        sd = spatial_dims_of(pred, self.spatial_dims)
        mask = optional_mask(context, self.mask_key, target, "SobelLoss")
        return _sobel_l1(pred, target, mask, sd), {}


class ThreePlaneSobelLoss(Loss):
    """The 2-D Sobel loss in the three planes of ``[B, C, X, Y, Z]`` volumes:

    ``ℓ = (1/3) Σ_P (1/2) Σ_{a ∈ P} mean |S²_a(pred) − S²_a(target)|``

    over the planes ``P`` of :data:`spectdl.losses.ssim.PLANES` (axial: the (x, y) slices at each z;
    coronal: (x, z) at each y; sagittal: (y, z) at each x), ``S²_a`` the 2-D Sobel operator along
    the slice's axis ``a`` (``[−1, 0, 1]`` along ``a``, ``[1, 2, 1]`` along the other in-plane axis,
    nothing across slices; :func:`sobel_gradients` of each slice, equal to ``scipy.ndimage.sobel``
    of it). Units: intensity times the 2-D gain, 8 per voxel of ramp (a unit ramp along x gives
    ``|S²_x| = 8`` inside the axial and coronal slices and 0 in the sagittal ones).

    Components: ``"axial"``, ``"coronal"`` and ``"sagittal"``, each plane's term. With ``mask_key``
    each plane uses ``pred·M`` and ``target·M`` and averages over the voxels of ``M``.
    """

    def __init__(self, mask_key: str | None = None) -> None:
        super().__init__()
        self.mask_key = mask_key

    def _loss(self, pred, target, **context):
        check_pair(pred, target)
        spatial_dims_of(pred, 3)
        mask = optional_mask(context, self.mask_key, target, "ThreePlaneSobelLoss")
        per_plane = {}
        for name, axis in PLANES.items():
            m = None if mask is None else _to_slices(mask, axis)
            per_plane[name] = _sobel_l1(_to_slices(pred, axis), _to_slices(target, axis), m, 2)
        return sum(per_plane.values()) / 3.0, per_plane
