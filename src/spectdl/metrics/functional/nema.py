"""NEMA IEC body phantom analysis: per-sphere SUV, contrast recovery and background variability.

Following NEMA NU 2 (image quality section), for hot sphere ``j`` of diameter ``D_j``:

* ``C_H,j`` is the mean in the sphere's volume of interest, ``C_B,j`` the mean of the means of
  ``K`` background ROIs of the same size as the sphere;
* contrast recovery ``CRC_j = (C_H,j / C_B,j − 1) / (a_H / a_B − 1)``, with ``a_H / a_B`` the true
  sphere-to-background activity ratio (1 = full recovery);
* background variability ``N_j = SD_j / C_B,j`` with ``SD_j`` the sample SD (K − 1) of the ``K``
  background ROI means (a fraction; ×100 for the percent NEMA reports).

Volumes of interest here are 3-D balls (discs on a 2-D grid): every voxel whose centre lies
within the radius of the given centre. Coordinates are mm in the grid frame of
:class:`spectdl.geometry.VoxelGrid`: voxel ``i`` of ``n`` has its centre at ``(i − (n − 1)/2)·s``.
NU 2 itself draws 2-D circular ROIs on the central slice; pass a 2-D slice and grid for that.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Sequence

import torch

from spectdl.errors import InputError
from spectdl.geometry import VoxelGrid
from spectdl.metrics.functional.roi import suv as _suv

__all__ = [
    "SphereMetrics",
    "background_roi_centres",
    "background_variability",
    "contrast_recovery",
    "nema_sphere_metrics",
    "sphere_mask",
]


@dataclass(frozen=True)
class SphereMetrics:
    """One row of the per-sphere table (plain floats; ``None`` where an input was not given).

    ``suv_mean``/``suv_max`` are in g/ml when the image was converted from Bq/ml (dose and
    weight given), otherwise in the image's own units (an image already in SUV).
    """

    index: int
    centre_mm: tuple[float, ...]
    diameter_mm: float
    n_voxels: int
    suv_mean: float
    suv_max: float
    background_mean: float | None
    background_sd: float | None
    background_variability: float | None
    n_background_rois: int
    contrast_recovery: float | None


def _check_grid(grid) -> VoxelGrid:
    if not isinstance(grid, VoxelGrid):
        raise InputError(f"grid: expected a spectdl.geometry.VoxelGrid, found {type(grid).__name__}")
    return grid


def _check_point(name: str, point, grid: VoxelGrid) -> tuple[float, ...]:
    try:
        p = tuple(float(v) for v in point)
    except TypeError as exc:
        raise InputError(f"{name}: expected {grid.ndim} coordinates in mm, found {point!r}") from exc
    if len(p) != grid.ndim or not all(math.isfinite(v) for v in p):
        raise InputError(f"{name}: expected {grid.ndim} finite coordinates in mm, found {point!r}")
    return p


def sphere_mask(grid: VoxelGrid, centre_mm: Sequence[float], radius_mm: float, device=None) -> torch.Tensor:
    """Boolean ``grid.shape`` mask of the voxels whose centres lie within ``radius_mm`` of ``centre_mm``."""
    grid = _check_grid(grid)
    centre = _check_point("centre_mm", centre_mm, grid)
    r = float(radius_mm)
    if not (r > 0 and math.isfinite(r)):
        raise InputError(f"radius_mm: expected a finite radius > 0, found {radius_mm!r}")
    d2 = torch.zeros(grid.shape, dtype=torch.float64, device=device)
    for axis in range(grid.ndim):
        coords = torch.tensor(grid.centres_mm(axis), dtype=torch.float64, device=device) - centre[axis]
        shape = [1] * grid.ndim
        shape[axis] = -1
        d2 = d2 + coords.reshape(shape) ** 2
    return d2 <= r * r


def contrast_recovery(sphere_mean, background_mean, activity_ratio):
    """Hot-sphere contrast recovery ``(C_H/C_B − 1) / (a_H/a_B − 1)`` (NEMA NU 2); floats or tensors."""
    ratio = float(activity_ratio)
    if not math.isfinite(ratio) or ratio == 1.0:
        raise InputError("activity_ratio: expected a finite sphere/background ratio != 1, found "
                         f"{activity_ratio!r}")
    if (torch.as_tensor(background_mean) == 0).any():
        raise InputError("background_mean: is 0; expected a non-zero background concentration")
    return (sphere_mean / background_mean - 1.0) / (ratio - 1.0)


def background_variability(roi_means) -> tuple[float, float, float]:
    """``(C_B, SD, SD / C_B)`` of ``K >= 2`` background ROI means (sample SD, K − 1)."""
    means = torch.as_tensor(roi_means, dtype=torch.float64).reshape(-1)
    if means.numel() < 2:
        raise InputError(f"roi_means: expected at least 2 background ROI means, found {means.numel()}")
    cb = float(means.mean())
    if cb == 0:
        raise InputError("roi_means: the background mean is 0; expected a non-zero background concentration")
    sd = float(means.std(unbiased=True))
    return cb, sd, sd / cb


def background_roi_centres(
    grid: VoxelGrid, background_mask, radius_mm: float, max_rois: int | None = None
) -> list[tuple[float, ...]]:
    """Centres (mm) of non-overlapping balls of ``radius_mm`` that lie wholly inside ``background_mask``.

    Candidates sit on a lattice of pitch ``2·radius`` (rounded up to whole voxels) centred on the
    grid; a candidate is kept when its distance to the nearest voxel outside the mask (or the
    grid) exceeds the radius. With ``max_rois``, that many are taken evenly along the list.
    """
    import numpy as np
    from scipy import ndimage

    grid = _check_grid(grid)
    mask = torch.as_tensor(background_mask).detach().cpu().numpy() != 0
    if mask.shape != grid.shape:
        raise InputError(f"background_mask: shape {mask.shape} differs from grid.shape {grid.shape}")
    # The padding makes the grid's edge count as outside, so a ROI never leaves the image.
    dist = ndimage.distance_transform_edt(np.pad(mask, 1), sampling=grid.voxel_size_mm)
    dist = dist[(slice(1, -1),) * grid.ndim]
    axes = []
    for n, s in zip(grid.shape, grid.voxel_size_mm):
        step = max(1, math.ceil(2.0 * radius_mm / s))
        start = ((n - 1) // 2) % step
        axes.append(np.arange(start, n, step))
    idx = np.stack(np.meshgrid(*axes, indexing="ij"), -1).reshape(-1, grid.ndim)
    keep = idx[dist[tuple(idx.T)] > radius_mm]
    if max_rois is not None and len(keep) > max_rois:
        keep = keep[np.linspace(0, len(keep) - 1, int(max_rois)).round().astype(int)]
    return [
        tuple((int(i) - (n - 1) / 2.0) * s for i, n, s in zip(row, grid.shape, grid.voxel_size_mm))
        for row in keep
    ]


def _as_volume(image, grid: VoxelGrid) -> torch.Tensor:
    if not isinstance(image, torch.Tensor):
        raise InputError(f"image: expected a torch.Tensor, found {type(image).__name__}")
    vol = image
    while vol.dim() > grid.ndim and vol.shape[0] == 1:
        vol = vol[0]
    if tuple(vol.shape) != grid.shape:
        raise InputError(
            f"image: shape {tuple(image.shape)} does not match grid.shape {grid.shape}; expected "
            f"{grid.shape} or [1, 1, *{grid.shape}]"
        )
    if not vol.is_floating_point():
        vol = vol.to(torch.float64)
    if not bool(torch.isfinite(vol).all()):
        raise InputError("image: contains NaN or infinite values; expected finite values")
    return vol


def nema_sphere_metrics(
    image: torch.Tensor,
    grid: VoxelGrid,
    centres_mm: Sequence[Sequence[float]],
    radii_mm: Sequence[float],
    *,
    activity_ratio: float | None = None,
    background_centres_mm: Sequence[Sequence[float]] | None = None,
    background_mask: torch.Tensor | None = None,
    max_background_rois: int | None = None,
    injected_dose_bq: float | None = None,
    weight_kg: float | None = None,
) -> list[SphereMetrics]:
    """SUVmean, SUVmax, CRC and background variability for every sphere of a NEMA IEC phantom.

    Args:
        image: one volume, ``grid.shape`` or ``[1, 1, *grid.shape]``.
        grid: the image's :class:`~spectdl.geometry.VoxelGrid`.
        centres_mm, radii_mm: the spheres (mm, grid frame; radii = inner diameters / 2).
        activity_ratio: true sphere-to-background ratio ``a_H / a_B``; needed for the CRC.
        background_centres_mm: centres of the background ROIs; for sphere ``j`` a ball of the
            sphere's radius is placed at each. Or give
        background_mask: the background region (``grid.shape``, spheres and their surroundings
            excluded); ROIs of each sphere's size are placed with :func:`background_roi_centres`.
        max_background_rois: cap on the number of automatically placed ROIs.
        injected_dose_bq, weight_kg: when both are given the image is in Bq/ml and is converted
            with :func:`spectdl.metrics.functional.suv`; otherwise it is taken as SUV already.

    Returns:
        One :class:`SphereMetrics` per sphere, in the order given; ``dataclasses.asdict`` turns
        each into a table row. Background fields are ``None`` without background ROIs, and
        ``contrast_recovery`` also without ``activity_ratio``.
    """
    grid = _check_grid(grid)
    vol = _as_volume(image, grid)
    if (injected_dose_bq is None) != (weight_kg is None):
        raise InputError(
            f"injected_dose_bq, weight_kg: give both (image in Bq/ml) or neither (image in SUV); "
            f"found injected_dose_bq={injected_dose_bq!r}, weight_kg={weight_kg!r}"
        )
    if injected_dose_bq is not None:
        vol = _suv(vol, injected_dose_bq, weight_kg)
    centres = [_check_point(f"centres_mm[{j}]", c, grid) for j, c in enumerate(centres_mm)]
    radii = [float(r) for r in radii_mm]
    if len(radii) != len(centres) or not centres:
        raise InputError(f"radii_mm: expected one radius per sphere ({len(centres)}), found {len(radii)}")
    if background_centres_mm is not None and background_mask is not None:
        raise InputError("background_centres_mm, background_mask: give one of them, not both")
    fixed_bg = None
    if background_centres_mm is not None:
        fixed_bg = [
            _check_point(f"background_centres_mm[{k}]", c, grid) for k, c in enumerate(background_centres_mm)
        ]

    rows = []
    for j, (centre, radius) in enumerate(zip(centres, radii)):
        m = sphere_mask(grid, centre, radius, vol.device)
        n = int(m.sum())
        if n == 0:
            raise InputError(
                f"centres_mm[{j}]: the sphere of radius {radius} mm at {centre} mm contains no voxel centre; "
                "expected a sphere inside the grid and larger than a voxel"
            )
        sphere_mean, sphere_max = float(vol[m].mean()), float(vol[m].max())
        bg_mean = bg_sd = bg_var = crc = None
        n_bg = 0
        if fixed_bg is not None or background_mask is not None:
            bg_centres = fixed_bg if fixed_bg is not None else background_roi_centres(
                grid, background_mask, radius, max_background_rois)
            if len(bg_centres) < 2:
                raise InputError(
                    f"background_mask: only {len(bg_centres)} background ROI(s) of radius {radius} mm "
                    f"fit for sphere {j}; "
                    "expected at least 2"
                )
            means = []
            for k, c in enumerate(bg_centres):
                roi = sphere_mask(grid, c, radius, vol.device)
                if not bool(roi.any()):
                    raise InputError(
                        f"background_centres_mm[{k}]: the ROI of radius {radius} mm at {c} mm is empty; "
                        "expected a ROI inside the grid"
                    )
                means.append(float(vol[roi].mean()))
            bg_mean, bg_sd, bg_var = background_variability(means)
            n_bg = len(means)
            if activity_ratio is not None:
                crc = float(contrast_recovery(sphere_mean, bg_mean, activity_ratio))
        rows.append(SphereMetrics(
            index=j, centre_mm=centre, diameter_mm=2.0 * radius, n_voxels=n, suv_mean=sphere_mean,
            suv_max=sphere_max, background_mean=bg_mean, background_sd=bg_sd,
            background_variability=bg_var, n_background_rois=n_bg, contrast_recovery=crc,
        ))
    return rows
