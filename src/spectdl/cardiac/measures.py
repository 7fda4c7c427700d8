"""LV cavity volume, myocardial volume and wall thickness from a myocardium segmentation.

On ``n_slices`` short-axis planes from the base to the cavity's apical end (``t_k = (k + ½)/K``,
frame of :mod:`spectdl.cardiac.orientation`) and ``n_angles`` rays per plane, the mask is sampled
(nearest voxel) every quarter of the smallest voxel; on each ray the endocardial radius ``r_in`` is
the first masked sample and the epicardial radius ``r_out`` the last. Then

* wall thickness of a ray ``= r_out − r_in + h`` (``h`` the sampling step: a wall seen at ``n``
  samples spans about ``n·h``); the reported thickness is the median over the rays of the mid
  third (``1/3 ≤ t < 2/3``), where the wall is cut at right angles;
* cavity volume ``V = Σ_k Δu · ½ Σ_j r_in,kj² Δφ`` (polar area per plane, ``Δu`` the plane
  spacing), ml; rays that miss the mask (a defect below the segmentation threshold) take the median
  endocardial radius of their plane;
* myocardial volume = masked voxels × voxel volume, ml.

With a thresholded image the mask is only as good as the threshold: blur thickens the wall and
shrinks the cavity, so image-based figures are relative (between methods), not absolute. On the
phantom's own label map they follow the analytic shapes (tests).
"""

from __future__ import annotations

import math

import numpy as np
from scipy import ndimage

from spectdl.cardiac._common import as_mask, check_positive_int, voxel_sizes
from spectdl.cardiac.orientation import LVGeometry, check_lv
from spectdl.errors import InputError

__all__ = ["lv_measures"]


def lv_measures(lv: LVGeometry, voxel_size_mm, *, mask=None, n_slices: int = 24,
                n_angles: int = 72) -> dict[str, float]:
    """``cavity_volume_ml``, ``myocardial_volume_ml`` and ``wall_thickness_mm`` (module docstring).

    Args:
        lv: LV geometry; its ``mask`` is the segmentation unless ``mask`` is given.
        voxel_size_mm: one size or three (mm), or the image's 3-D ``VoxelGrid``.
        mask: the myocardium (bool ``[X, Y, Z]``), default ``lv.mask``.
        n_slices, n_angles: short-axis planes and rays per plane.
    """
    lv = check_lv(lv)
    if mask is None:
        if lv.mask is None:
            raise InputError("mask: no segmentation: pass mask= or an LVGeometry that holds one")
        mask = lv.mask
    shape = tuple(getattr(mask, "shape", ()))
    m = as_mask(mask, shape, "mask")
    vs = voxel_sizes(voxel_size_mm, shape)
    K = check_positive_int("n_slices", n_slices, 3)
    J = check_positive_int("n_angles", n_angles, 4)
    h = 0.25 * float(vs.min())
    t = (np.arange(K) + 0.5) / K
    u = lv.u_of(t)
    phi = np.arange(J) * 2 * math.pi / J
    reach = float(np.linalg.norm(np.asarray(shape) * vs))
    rho = np.arange(int(math.ceil(0.5 * reach / h))) * h
    pts = lv.point(u[:, None, None], rho * np.cos(phi)[:, None], rho * np.sin(phi)[:, None])
    idx = pts / vs + (np.asarray(shape, dtype=np.float64) - 1) / 2.0
    hit = ndimage.map_coordinates(m.astype(np.float32), idx.reshape(-1, 3).T, order=0, mode="constant",
                                  cval=0.0).reshape(pts.shape[:-1]) > 0.5
    any_hit = hit.any(-1)
    first = np.where(any_hit, hit.argmax(-1), 0)
    last = np.where(any_hit, rho.size - 1 - hit[..., ::-1].argmax(-1), 0)
    r_in = np.where(any_hit, rho[first], np.nan)
    thick = np.where(any_hit, rho[last] - rho[first] + h, np.nan)
    mid = (t >= 1 / 3) & (t < 2 / 3)
    for k in range(K):
        if not any_hit[k].any():
            raise InputError(f"mask: the short-axis plane at t = {t[k]:.2f} holds no myocardium; check the LV geometry")
        r_in[k] = np.where(np.isnan(r_in[k]), np.nanmedian(r_in[k]), r_in[k])
    du = lv.length_mm / K
    volume_mm3 = float((0.5 * (r_in**2).sum(1) * (2 * math.pi / J) * du).sum())
    return {"cavity_volume_ml": volume_mm3 / 1000.0,
            "myocardial_volume_ml": float(m.sum()) * float(np.prod(vs)) / 1000.0,
            "wall_thickness_mm": float(np.nanmedian(thick[mid]))}
