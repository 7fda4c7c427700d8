"""Polar maps of the left ventricle: circumferential maximum-count profiles on the 17 AHA segments.

Frame and LV coordinates are those of :mod:`spectdl.cardiac.orientation` (``u`` along the long axis,
``φ`` from anterior 0° through lateral 90°, inferior 180°, septal 270°; ``t`` = 0 at the base
plane, 1 at the cavity's apical end). The segments are :mod:`spectdl.phantoms.aha`'s, so a segment
of the analysis is the same wall as a segment of the phantom's defects.

Sampling (:func:`polar_map`)
----------------------------
* **Short-axis rings.** ``n_slices`` short-axis planes at ``t_k = (k + ½)/K`` between the base and
  the cavity's apical end (so each of the basal, mid and apical thirds gets ``K/3`` planes), and
  ``n_angles`` rays per plane at ``φ_j = j·360°/J``. Along each ray from the axis out to ``R_k``
  (the myocardium's largest distance from the axis within that plane's slab, plus one voxel), the
  image is sampled trilinearly every quarter of the smallest voxel and the **maximum** is kept: the
  classical maximum-count circumferential profile. The sample belongs to segment
  ``aha.segment_of(t_k, φ_j)`` (1..16).
* **Apex** (segment 17). Rays start on the axis inside the tip of the cavity, at
  ``u = cavity_end − (apex − cavity_end)``, and run through the apical cap to one voxel past the
  epicardial apex, along the axis and on cones of 15° and 30° about it (``n_angles // 4`` rays
  each); each ray's maximum is one apex sample.
* **Normalisation.** Every sample is expressed in per cent of the largest sample of the map (the
  usual normalisation to the hottest myocardium), so maps of different count levels compare.

A segment's value is the mean of its samples. These are open re-implementations of the steps of
clinical software (e.g. Cedars-Sinai QPS); they are not QPS and give no numbers QPS would.

:func:`segment_labels` assigns each myocardium voxel its segment from its own ``(t, φ)``, so the 17
segments partition the myocardium (every voxel in exactly one; voxels beyond the base plane get 0).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch

from spectdl.cardiac._common import as_mask, as_volume, check_positive_int, mask_points, sample, voxel_sizes
from spectdl.cardiac.orientation import LVGeometry, check_lv
from spectdl.errors import InputError
from spectdl.phantoms.aha import N_SEGMENTS, segment_of

__all__ = ["APEX_CONES_DEG", "PolarMap", "polar_map", "segment_labels"]

#: Polar angles (degrees from the long axis) of the apex rays.
APEX_CONES_DEG = (0.0, 15.0, 30.0)


@dataclass(frozen=True, eq=False)
class PolarMap:
    """A polar map (module docstring).

    Attributes:
        rings: ``[K, J]`` ring samples, per cent of the map's maximum (rows ``t_k`` base → apex,
            columns ``φ_j``).
        apex: ``[A]`` apex samples, per cent of the map's maximum.
        t: ``[K]`` normalised long-axis positions of the rings.
        phi_deg: ``[J]`` angles of the rays.
        ring_segments: ``[K, J]`` AHA segment (1..16) of each ring sample.
        radius_mm: ``[K, J]`` distance from the axis of each ring sample's maximum (about mid-wall).
        peak: the largest sample, in the image's units (the 100 % of the map).
    """

    rings: np.ndarray
    apex: np.ndarray
    t: np.ndarray
    phi_deg: np.ndarray
    ring_segments: np.ndarray
    radius_mm: np.ndarray
    peak: float

    @property
    def layout(self) -> tuple[int, int, int]:
        """``(K, J, A)``: rings, rays per ring and apex samples."""
        return (*self.rings.shape, self.apex.size)

    def values(self) -> np.ndarray:
        """All samples, ``[K·J + A]``: the rings (row-major) then the apex."""
        return np.concatenate([self.rings.reshape(-1), self.apex])

    def sample_segments(self) -> np.ndarray:
        """The AHA segment of each entry of :meth:`values`."""
        return np.concatenate([self.ring_segments.reshape(-1), np.full(self.apex.size, N_SEGMENTS)])

    def sample_weights(self) -> np.ndarray:
        """Area weights of :meth:`values`: each of the 17 segments weighs 1/17 in all, shared
        equally by its samples (the AHA segments are designed to hold similar myocardial mass)."""
        seg = self.sample_segments()
        counts = np.bincount(seg, minlength=N_SEGMENTS + 1).astype(np.float64)
        return 1.0 / (N_SEGMENTS * counts[seg])

    def segments(self) -> np.ndarray:
        """``[17]`` segment values (per cent of the maximum): the mean of each segment's samples."""
        seg, v = self.sample_segments(), self.values()
        sums = np.bincount(seg, weights=v, minlength=N_SEGMENTS + 1)
        counts = np.bincount(seg, minlength=N_SEGMENTS + 1)
        return sums[1:] / counts[1:]


def _slab_radii(lv: LVGeometry, vs: np.ndarray, u_planes: np.ndarray, shape) -> np.ndarray:
    """``R_k``: the myocardium's largest distance from the axis within each plane's slab, plus one
    voxel (50 mm where no mask is known)."""
    if lv.mask is None or tuple(lv.mask.shape) != tuple(shape) or not lv.mask.any():
        return np.full(u_planes.size, 50.0)
    u, a, l = lv.coords(mask_points(lv.mask, vs))
    rho = np.sqrt(a * a + l * l)
    half = 0.5 * max(float(np.diff(u_planes).min()) if u_planes.size > 1 else 0.0, float(vs.max()))
    out = np.empty(u_planes.size)
    for k, uk in enumerate(u_planes):
        near = np.abs(u - uk) <= half
        out[k] = (rho[near].max() if near.any() else rho.max()) + float(vs.max())
    return out


def polar_map(image, voxel_size_mm, lv: LVGeometry, *, n_slices: int = 12, n_angles: int = 36) -> PolarMap:
    """The maximum-count polar map of ``image`` about ``lv`` (method in the module docstring).

    Args:
        image: ``[X, Y, Z]`` counts (torch or numpy; finite, non-negative), frame of
            :mod:`spectdl.cardiac.orientation`.
        voxel_size_mm: one size or three (mm), or the image's 3-D ``VoxelGrid``.
        lv: the LV geometry (:func:`~spectdl.cardiac.orientation.estimate_lv_axis`, or the phantom's
            :func:`~spectdl.cardiac.orientation.lv_geometry_from_phantom`).
        n_slices: short-axis rings ``K`` (a multiple of 3, so the thirds get equal rings).
        n_angles: rays per ring ``J`` (a multiple of 12, so each 60° and 90° sector gets whole rays).
    """
    img = as_volume(image, "image")
    vs = voxel_sizes(voxel_size_mm, img.shape)
    lv = check_lv(lv)
    K = check_positive_int("n_slices", n_slices, 3)
    J = check_positive_int("n_angles", n_angles, 12)
    if K % 3 or J % 12:
        raise InputError(f"n_slices, n_angles: expected multiples of 3 and 12, found {n_slices} and {n_angles}")
    step = 0.25 * float(vs.min())
    t = (np.arange(K) + 0.5) / K
    phi = np.arange(J) * 360.0 / J
    u_k = lv.u_of(t)
    R = _slab_radii(lv, vs, u_k, img.shape)
    n_r = int(math.ceil(R.max() / step)) + 1
    rho = np.arange(n_r) * step
    ph = np.deg2rad(phi)
    # [K, J, n_r] sample points; rays past R_k are masked out below.
    pts = lv.point(u_k[:, None, None], rho[None, None, :] * np.cos(ph)[None, :, None],
                   rho[None, None, :] * np.sin(ph)[None, :, None])
    vals = sample(img, vs, pts)
    vals = np.where(rho[None, None, :] <= R[:, None, None], vals, -np.inf)
    arg = vals.argmax(-1)
    rings = np.take_along_axis(vals, arg[..., None], -1)[..., 0]
    radius = rho[arg]

    reach = lv.apex_mm - lv.cavity_end_mm
    u0 = lv.cavity_end_mm - reach
    length = 2 * reach + float(vs.max())
    s = np.arange(int(math.ceil(length / step)) + 1) * step
    dirs = []
    for cone in APEX_CONES_DEG:
        n = 1 if cone == 0 else max(J // 4, 1)
        th = math.radians(cone)
        for k in range(n):
            p = 2 * math.pi * k / n
            dirs.append((math.cos(th), math.sin(th) * math.cos(p), math.sin(th) * math.sin(p)))
    d = np.asarray(dirs)
    apts = lv.point(u0 + s[None, :] * d[:, None, 0], s[None, :] * d[:, None, 1], s[None, :] * d[:, None, 2])
    apex = sample(img, vs, apts).max(-1)

    peak = float(max(rings.max(), apex.max()))
    if not peak > 0:
        raise InputError("image: no counts on the myocardium's rays; check the LV geometry (lv)")
    seg = segment_of(torch.as_tensor(t)[:, None], torch.as_tensor(phi)[None, :]).numpy()
    return PolarMap(100.0 * rings / peak, 100.0 * apex / peak, t, phi, seg, radius, peak)


def segment_labels(mask, voxel_size_mm, lv: LVGeometry) -> torch.Tensor:
    """The AHA segment (1..17) of every voxel of ``mask`` (the myocardium) from its own ``(t, φ)``;
    0 outside the mask and beyond the base plane. ``[X, Y, Z]`` int64."""
    m = as_mask(mask, tuple(getattr(mask, "shape", ())), "mask")
    vs = voxel_sizes(voxel_size_mm, m.shape)
    lv = check_lv(lv)
    u, a, l = lv.coords(mask_points(m, vs))
    seg = segment_of(torch.as_tensor(lv.t_of(u)), torch.rad2deg(torch.atan2(torch.as_tensor(l), torch.as_tensor(a))))
    out = torch.zeros(m.shape, dtype=torch.int64)
    out[torch.as_tensor(m)] = seg
    return out
