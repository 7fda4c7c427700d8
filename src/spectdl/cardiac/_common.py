"""Checks and coordinate helpers shared by the modules of :mod:`spectdl.cardiac`.

Voxel centres follow :func:`spectdl.phantoms.base.grid_coords`: along an axis of ``n`` voxels of
``s`` mm the centre of voxel ``i`` is at ``(i − (n − 1)/2)·s`` mm, so the grid is centred on 0.
"""

from __future__ import annotations

import math

import numpy as np
import torch
from scipy import ndimage

from spectdl.errors import InputError
from spectdl.geometry import VoxelGrid


def as_volume(image, name: str = "image") -> np.ndarray:
    """``image`` (torch tensor or numpy array ``[X, Y, Z]``, real, finite, non-negative) as float64 numpy."""
    if isinstance(image, torch.Tensor):
        if image.is_complex() or image.dtype == torch.bool:
            raise InputError(f"{name}: expected a real-valued tensor, found dtype {image.dtype}")
        arr = image.detach().to("cpu", torch.float64).numpy()
    elif isinstance(image, np.ndarray):
        if image.dtype == bool or not (np.issubdtype(image.dtype, np.floating)
                                       or np.issubdtype(image.dtype, np.integer)):
            raise InputError(f"{name}: expected a real-valued array, found dtype {image.dtype}")
        arr = np.asarray(image, dtype=np.float64)
    else:
        raise InputError(f"{name}: expected a torch.Tensor or numpy array [X, Y, Z], found {type(image).__name__}")
    if arr.ndim != 3:
        raise InputError(
            f"{name}: expected a 3-D volume [X, Y, Z], found shape {tuple(arr.shape)} "
            "(for a [B, C, X, Y, Z] batch pass one volume, e.g. image[b, 0])"
        )
    if min(arr.shape) < 2:
        raise InputError(f"{name}: expected at least 2 voxels along every axis, found shape {tuple(arr.shape)}")
    if not np.isfinite(arr).all():
        raise InputError(f"{name}: contains NaN or infinite values")
    lo = float(arr.min())
    if lo < 0:
        raise InputError(
            f"{name}: expected non-negative counts, found a minimum of {lo:.4g} "
            "(clamp reconstructed images at 0 first, e.g. image.clamp(min=0))"
        )
    if float(arr.max()) <= 0:
        raise InputError(f"{name}: the volume is empty (all zero); no myocardium can be found")
    return arr


def floats(name: str, value, sizes: tuple[int, ...], what: str) -> np.ndarray:
    """``value`` (numbers, a tensor or an array) as finite float64 ``[n]`` with ``n`` in ``sizes``."""
    if isinstance(value, torch.Tensor):
        value = value.detach().cpu().numpy()
    try:
        a = np.asarray(value, dtype=np.float64).reshape(-1)
    except (TypeError, ValueError) as exc:
        raise InputError(f"{name}: expected {what}, found {value!r}") from exc
    if a.size not in sizes or not np.isfinite(a).all():
        raise InputError(f"{name}: expected {what}, found {value!r}")
    return a


def voxel_sizes(voxel_size_mm, shape: tuple[int, ...] | None = None, name: str = "voxel_size_mm") -> np.ndarray:
    """One size or three sizes (mm, positive, finite), or a 3-D :class:`VoxelGrid`, as float64 ``[3]``."""
    if isinstance(voxel_size_mm, VoxelGrid):
        if voxel_size_mm.ndim != 3:
            raise InputError(f"{name}: expected a 3-D VoxelGrid, found shape {voxel_size_mm.shape}")
        if shape is not None and tuple(voxel_size_mm.shape) != tuple(shape):
            raise InputError(f"{name}: grid shape {voxel_size_mm.shape} does not match the image's {tuple(shape)}")
        voxel_size_mm = voxel_size_mm.voxel_size_mm
    if isinstance(voxel_size_mm, bool):
        raise InputError(f"{name}: expected one or three positive sizes in mm, found {voxel_size_mm!r}")
    v = floats(name, voxel_size_mm, (1, 3), "one or three positive sizes in mm")
    if not (v > 0).all():
        raise InputError(f"{name}: expected positive finite sizes in mm, found {voxel_size_mm!r}")
    return np.broadcast_to(v, (3,)).astype(np.float64)


def as_mask(mask, shape: tuple[int, ...], name: str = "mask") -> np.ndarray:
    """A boolean ``[X, Y, Z]`` mask of ``shape`` with at least one voxel set."""
    if isinstance(mask, torch.Tensor):
        mask = mask.detach().cpu().numpy()
    if not isinstance(mask, np.ndarray):
        raise InputError(f"{name}: expected a boolean tensor or array [X, Y, Z], found {type(mask).__name__}")
    if tuple(mask.shape) != tuple(shape):
        raise InputError(f"{name}: shape {tuple(mask.shape)} does not match the image's {tuple(shape)}")
    if mask.dtype != bool:
        if not np.isin(mask, (0, 1)).all():
            raise InputError(f"{name}: expected a boolean mask (or 0/1 values), found other values")
        mask = mask.astype(bool)
    if not mask.any():
        raise InputError(f"{name}: the myocardium mask is empty")
    return mask


def check_positive_int(name: str, value, low: int = 1) -> int:
    if isinstance(value, bool) or int(value) != value or int(value) < low:
        raise InputError(f"{name}: expected an integer >= {low}, found {value!r}")
    return int(value)


def check_positive(name: str, value) -> float:
    if isinstance(value, bool):
        raise InputError(f"{name}: expected a positive number, found {value!r}")
    try:
        v = float(value)
    except (TypeError, ValueError) as exc:
        raise InputError(f"{name}: expected a positive number, found {value!r}") from exc
    if not (math.isfinite(v) and v > 0):
        raise InputError(f"{name}: expected a positive finite number, found {value!r}")
    return v


def voxel_centres(shape: tuple[int, ...], vs: np.ndarray) -> list[np.ndarray]:
    """Voxel-centre coordinates (mm) along each axis, centred on 0."""
    return [(np.arange(n, dtype=np.float64) - (n - 1) / 2.0) * s for n, s in zip(shape, vs)]


def mask_points(mask: np.ndarray, vs: np.ndarray) -> np.ndarray:
    """Positions (mm) ``[N, 3]`` of the voxels set in ``mask``."""
    idx = np.argwhere(mask).astype(np.float64)
    return (idx - (np.asarray(mask.shape, dtype=np.float64) - 1) / 2.0) * vs


def sample(volume: np.ndarray, vs: np.ndarray, points_mm: np.ndarray) -> np.ndarray:
    """Trilinear interpolation of ``volume`` at ``points_mm [..., 3]`` (zero outside the grid)."""
    pts = np.asarray(points_mm, dtype=np.float64)
    idx = pts / vs + (np.asarray(volume.shape, dtype=np.float64) - 1) / 2.0
    flat = idx.reshape(-1, 3).T
    out = ndimage.map_coordinates(volume, flat, order=1, mode="constant", cval=0.0, prefilter=False)
    return out.reshape(pts.shape[:-1])
