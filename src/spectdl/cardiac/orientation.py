"""The left ventricle's long axis, and reorientation to short-axis and long-axis slices.

Frame and conventions (those of :mod:`spectdl.phantoms.cardiac`): +x is the patient's left, +y
anterior, +z superior; voxel centres are at ``(i − (n − 1)/2)·s`` mm along each axis (grids centred
on 0). The long axis ``d`` is a unit vector pointing base → apex (left, anterior, inferior); the LV
frame completes it exactly as the phantom builds it:

* ``e_ant = ŷ − (ŷ·d) d`` normalised (anterior, perpendicular to the axis),
* ``e_lat = x̂ − (x̂·d) d − (x̂·e_ant) e_ant`` normalised (lateral).

A point ``p`` has LV coordinates ``u = (p − c)·d`` (mm along the axis from the centre ``c``),
``a = (p − c)·e_ant``, ``l = (p − c)·e_lat`` and ``φ = atan2(l, a)`` (degrees, 0° anterior, 90°
lateral, 180° inferior, 270° septal). The normalised long-axis position of :mod:`spectdl.phantoms.aha`
is ``t = (u − u_base)/(u_cavity_end − u_base)``: 0 at the base plane, 1 at the apical end of the
cavity (the endocardial apex), ``> 1`` in the apical cap up to the epicardial apex ``u_apex``.

Axis estimation (:func:`estimate_lv_axis`)
------------------------------------------
1. Myocardium. Candidates are the hot spots of the image: the maximum of every connected
   component (:func:`scipy.ndimage.label`, faces connected) of the voxels at or above 80 %, 75 %,
   … 20 % of the image maximum that hold at least 2 ml (smaller ones are noise), taken from
   the hottest down, skipping those inside a hotter candidate's region, at most 12. Each candidate's region is the component of the voxels at or
   above ``threshold`` (default 50 %) of *its own* peak that holds the peak; it must hold between
   ``volume_ml[0]`` and ``volume_ml[1]`` ml. A region larger than that has merged with a
   neighbour (a hot liver or gut beside the inferior wall): it is cut at the first higher level
   (5 % steps) that parts them and regrown by two voxels within the wanted level. Of the
   candidates, the LV is the one whose region's centroid lies nearest to the centre of the field
   of view (cardiac acquisitions centre the heart; liver and gut lie below it, and both are
   larger than any LV). At SPECT resolution (voxels of 6 mm and more) the blurred cavity often
   fills above 50 %, so the region is the LV's wall and cavity together; the fit below needs
   only its outline.
2. Axis and centre: an ellipsoid ``(p − c)ᵀ M (p − c) = 1`` is fitted to the myocardium's voxel
   centres by algebraic least squares (the smallest right singular vector of the design matrix
   ``[x², y², z², 2xy, 2xz, 2yz, 2x, 2y, 2z, 1]``); for a thick shell this is about its mid-wall
   surface, and it is not biased by the open base or by a missing (defect) wall the way moments
   are. ``c`` is the centre; the long axis is the eigenvector of ``M`` with the smallest eigenvalue
   (the longest semi-axis). If the fit is not an ellipsoid, the second-moment axis whose
   eigenvalue is furthest from the other two is used. The sign is chosen so that ``d·(1, 1, −1) >
   0`` (the apex points left, anterior and inferior).
3. Base and apex: ``u_base`` is the 0.5th percentile of ``u`` over the myocardium. The count profile
   along the axis, from the median ``u`` of the myocardium apically, peaks in the apical cap; where
   it crosses the level halfway between the peak and its minimum on either side are the cavity's
   apical end and the epicardial apex. Blur fills the tip of the cavity from the curved wall
   round it, so the cavity end comes out short of the true one (on the phantoms, by about 2 mm at
   7 mm FWHM and 7 mm at 12 mm FWHM; the epicardial apex within about 1 mm).

These are open re-implementations of the steps of clinical software (e.g. Cedars-Sinai QPS/QGS);
they are not QPS and give no numbers QPS would.

Reorientation (:func:`reorient`): trilinear resampling (:func:`scipy.ndimage.map_coordinates`,
zero outside the image) on planes of the LV frame; the layouts are given there.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch
from scipy import ndimage

from spectdl.cardiac._common import (
    as_mask,
    as_volume,
    check_positive,
    check_positive_int,
    floats,
    mask_points,
    sample,
    voxel_sizes,
)
from spectdl.errors import InputError

__all__ = ["LVGeometry", "axis_error_deg", "estimate_lv_axis", "lv_geometry_from_phantom", "lv_frame", "reorient"]

#: The anatomical prior on the apex direction (left, anterior, inferior), unnormalised.
APEX_PRIOR = (1.0, 1.0, -1.0)


def _vec3(name: str, v) -> np.ndarray:
    return floats(name, v, (3,), "3 finite numbers")


def lv_frame(axis) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``(d, e_ant, e_lat)`` for a long axis ``axis [3]`` (normalised here), built as the phantom does
    (module docstring). ``InputError`` if the axis is zero or (nearly) parallel to y or to x."""
    d = _vec3("axis", axis)
    n = float(np.linalg.norm(d))
    if n == 0:
        raise InputError("axis: expected a non-zero vector, found (0, 0, 0)")
    d = d / n
    y, x = np.array([0.0, 1.0, 0.0]), np.array([1.0, 0.0, 0.0])
    e_ant = y - (y @ d) * d
    if np.linalg.norm(e_ant) < 1e-6:
        raise InputError(f"axis: {d.tolist()} is parallel to y; the anterior direction is undefined")
    e_ant /= np.linalg.norm(e_ant)
    e_lat = x - (x @ d) * d
    e_lat -= (e_lat @ e_ant) * e_ant
    if np.linalg.norm(e_lat) < 1e-6:
        raise InputError(f"axis: {d.tolist()} leaves no lateral direction (x lies in the axis-anterior plane)")
    e_lat /= np.linalg.norm(e_lat)
    return d, e_ant, e_lat


@dataclass(frozen=True, eq=False)
class LVGeometry:
    """The left ventricle's position and frame in an image (mm, the image's frame; module docstring).

    Attributes:
        centre_mm: ``(x, y, z)`` of a point on the long axis, the origin of ``u`` (for
            :func:`estimate_lv_axis` the fitted ellipsoid's centre, comparable with the phantom's
            ``info["lv_centre_mm"]``).
        axis: unit long axis, base → apex.
        e_ant, e_lat: unit anterior and lateral directions (orthonormal with ``axis``).
        base_mm: ``u`` of the base plane (``t = 0``), mm from the centre along the axis.
        cavity_end_mm: ``u`` of the apical end of the cavity (``t = 1``).
        apex_mm: ``u`` of the epicardial apex (end of the apical cap).
        mask: the myocardium used (bool numpy ``[X, Y, Z]``), or ``None``.
        threshold: the fraction of the LV's maximum that gave ``mask`` (``None`` if not thresholded).
    """

    centre_mm: tuple[float, float, float]
    axis: tuple[float, float, float]
    e_ant: tuple[float, float, float]
    e_lat: tuple[float, float, float]
    base_mm: float
    cavity_end_mm: float
    apex_mm: float
    mask: np.ndarray | None = None
    threshold: float | None = None

    def __post_init__(self) -> None:
        vecs = {k: _vec3(k, getattr(self, k)) for k in ("centre_mm", "axis", "e_ant", "e_lat")}
        d, a, l = vecs["axis"], vecs["e_ant"], vecs["e_lat"]
        gram = np.stack([d, a, l]) @ np.stack([d, a, l]).T
        if not np.allclose(gram, np.eye(3), atol=1e-6):
            raise InputError("LVGeometry: axis, e_ant and e_lat must be orthonormal (use LVGeometry.from_axis)")
        for k, v in vecs.items():
            object.__setattr__(self, k, tuple(float(x) for x in v))
        for k in ("base_mm", "cavity_end_mm", "apex_mm"):
            v = float(getattr(self, k))
            if not math.isfinite(v):
                raise InputError(f"LVGeometry.{k}: expected a finite position in mm, found {v}")
            object.__setattr__(self, k, v)
        if not self.base_mm < self.cavity_end_mm <= self.apex_mm:
            raise InputError(
                "LVGeometry: expected base_mm < cavity_end_mm <= apex_mm along the axis, found "
                f"{self.base_mm:.2f}, {self.cavity_end_mm:.2f}, {self.apex_mm:.2f}"
            )
        if self.mask is not None:
            m = self.mask.detach().cpu().numpy() if isinstance(self.mask, torch.Tensor) else np.asarray(self.mask)
            object.__setattr__(self, "mask", m.astype(bool))

    @classmethod
    def from_axis(cls, centre_mm, axis, base_mm: float, cavity_end_mm: float, apex_mm: float,
                  mask=None, threshold: float | None = None) -> "LVGeometry":
        """Build the frame from a centre and a long axis (normalised here; ``e_ant``, ``e_lat`` as
        the phantom builds them)."""
        d, e_ant, e_lat = lv_frame(axis)
        return cls(_vec3("centre_mm", centre_mm), d, e_ant, e_lat, base_mm, cavity_end_mm, apex_mm, mask, threshold)

    @property
    def length_mm(self) -> float:
        """Base plane to the cavity's apical end, mm (the unit of ``t``)."""
        return self.cavity_end_mm - self.base_mm

    def t_of(self, u_mm):
        """Normalised long-axis position ``t`` (:mod:`spectdl.phantoms.aha`) of ``u`` (mm)."""
        return (u_mm - self.base_mm) / self.length_mm

    def u_of(self, t):
        """Inverse of :meth:`t_of`: mm along the axis from the centre."""
        return self.base_mm + t * self.length_mm

    def coords(self, points_mm) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """``(u, a, l)`` (mm) of ``points_mm [..., 3]`` in the LV frame."""
        p = np.asarray(points_mm, dtype=np.float64) - np.asarray(self.centre_mm)
        return p @ np.asarray(self.axis), p @ np.asarray(self.e_ant), p @ np.asarray(self.e_lat)

    def point(self, u, a=0.0, l=0.0) -> np.ndarray:
        """Image positions (mm, ``[..., 3]``) of LV coordinates ``(u, a, l)`` (broadcast)."""
        u, a, l = np.broadcast_arrays(np.asarray(u, float), np.asarray(a, float), np.asarray(l, float))
        return (np.asarray(self.centre_mm) + u[..., None] * np.asarray(self.axis)
                + a[..., None] * np.asarray(self.e_ant) + l[..., None] * np.asarray(self.e_lat))


def lv_geometry_from_phantom(phantom, index: int = 0) -> LVGeometry:
    """The true :class:`LVGeometry` of sample ``index`` of a :func:`spectdl.phantoms.cardiac` phantom:
    centre ``info["lv_centre_mm"]``, axis ``info["lv_axis"]``, base ``−L/2``, cavity end ``L`` and
    apex ``L + w`` (``L = lv_long_mm``, ``w = lv_wall_mm``), mask = the myocardium label."""
    info = getattr(phantom, "info", None)
    if not isinstance(info, dict) or "lv_axis" not in info:
        raise InputError("phantom: expected a spectdl.phantoms.cardiac phantom (info['lv_axis'] missing)")
    b = int(index)
    if not 0 <= b < phantom.batch_size:
        raise InputError(f"index: expected 0 <= index < {phantom.batch_size}, found {index}")
    L, w = float(info["lv_long_mm"][b]), float(info["lv_wall_mm"][b])
    mask = None
    if phantom.labels is not None and "myocardium" in phantom.label_names:
        mask = (phantom.labels[b, 0] == phantom.label_names["myocardium"]).cpu().numpy()
    return LVGeometry.from_axis(info["lv_centre_mm"][b], info["lv_axis"][b], -0.5 * L, L, L + w, mask)


def axis_error_deg(a, b) -> float:
    """Angle (degrees, in [0, 180]) between two axis vectors ``a`` and ``b`` (any length, not zero)."""
    va, vb = _vec3("a", a), _vec3("b", b)
    na, nb = np.linalg.norm(va), np.linalg.norm(vb)
    if na == 0 or nb == 0:
        raise InputError("axis_error_deg: both vectors must be non-zero")
    c = float(np.clip(va @ vb / (na * nb), -1.0, 1.0))
    return math.degrees(math.acos(c))


# --------------------------------------------------------------------------------------------------
# Axis estimation


_MIN_SPOT_ML = 2.0
_MAX_CANDIDATES = 12


def _component_at(img: np.ndarray, seed: tuple[int, ...], level: float) -> np.ndarray:
    lab, _ = ndimage.label(img >= level)
    return lab == lab[seed]


def _find_myocardium(img: np.ndarray, vs: np.ndarray, threshold: float, volume_ml: tuple[float, float]):
    voxel_ml = float(np.prod(vs)) / 1000.0
    top = float(img.max())
    peaks: dict[tuple[int, ...], float] = {}
    flat = img.ravel()
    hot = np.flatnonzero(flat >= 0.2 * top)
    hot = hot[np.argsort(-flat[hot], kind="stable")]  # hottest first: a component's first voxel is its maximum
    for frac in np.arange(0.80, 0.20 - 1e-9, -0.05):
        lab, n = ndimage.label(img >= frac * top)
        hot_lab = lab.ravel()[hot]
        ids, first = np.unique(hot_lab, return_index=True)
        sizes = np.bincount(hot_lab, minlength=n + 1) * voxel_ml
        for k, i in zip(ids, first):
            if k and sizes[k] >= _MIN_SPOT_ML:  # noise spots are not organs
                pos = np.unravel_index(hot[i], img.shape)
                peaks.setdefault(tuple(int(x) for x in pos), float(flat[hot[i]]))
    centre = (np.asarray(img.shape, dtype=np.float64) - 1) / 2.0
    best = None
    seen = np.zeros(img.shape, dtype=bool)
    tried = 0
    for pos, peak in sorted(peaks.items(), key=lambda kv: -kv[1]):
        if seen[pos]:  # inside a hotter candidate's region: the same organ
            continue
        tried += 1
        if tried > _MAX_CANDIDATES:
            break
        level = threshold
        comp = _component_at(img, pos, level * peak)
        if comp.sum() * voxel_ml > volume_ml[1]:
            # Merged with a neighbour (a hot liver or gut): the component at the first level that
            # parts them, regrown by two voxels within the wanted level.
            wanted = comp
            while comp.sum() * voxel_ml > volume_ml[1] and level < 0.95:
                level += 0.05
                comp = _component_at(img, pos, level * peak)
            comp = ndimage.binary_dilation(comp, iterations=2, mask=wanted)
            if comp.sum() * voxel_ml > volume_ml[1]:
                continue
        seen |= comp
        if comp.sum() * voxel_ml < volume_ml[0]:
            continue
        dist = float(np.linalg.norm((np.asarray(ndimage.center_of_mass(comp)) - centre) * vs))
        if best is None or dist < best[0]:
            best = (dist, comp)
    if best is None:
        raise InputError(
            f"image: no LV myocardium found: no connected component of {volume_ml[0]:g}–{volume_ml[1]:g} ml at "
            f"{threshold:.0%} of its own maximum (pass mask= to give the myocardium)"
        )
    return best[1], float(threshold)


def _moment_axis(pts: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    c = pts.mean(0)
    lam, vec = np.linalg.eigh(np.cov((pts - c).T))
    k = 2 if lam[2] - lam[1] > lam[1] - lam[0] else 0
    return c, vec[:, k]


def _fit_ellipsoid(pts: np.ndarray):
    """``(centre, long axis, semi-axes sorted descending)`` of the algebraic LSQ ellipsoid, or None."""
    c0 = pts.mean(0)
    s = float(np.sqrt(((pts - c0) ** 2).sum(1).mean())) or 1.0
    q = (pts - c0) / s
    x, y, z = q.T
    D = np.stack([x * x, y * y, z * z, 2 * x * y, 2 * x * z, 2 * y * z, 2 * x, 2 * y, 2 * z, np.ones_like(x)], 1)
    _, _, vt = np.linalg.svd(D, full_matrices=False)
    p = vt[-1]
    A = np.array([[p[0], p[3], p[4]], [p[3], p[1], p[5]], [p[4], p[5], p[2]]])
    b = p[6:9]
    try:
        x0 = -np.linalg.solve(A, b)
    except np.linalg.LinAlgError:
        return None
    k = float(x0 @ A @ x0 - p[9])
    if k == 0:
        return None
    lam, vec = np.linalg.eigh(A / k)
    if not (lam > 0).all():
        return None
    order = np.argsort(lam)
    semi = s / np.sqrt(lam[order])
    return c0 + s * x0, vec[:, order[0]], semi


def _axis_profile_edges(img, vs, centre, d, u_start, u_stop, step):
    """Edges (inner, outer) of the apical cap on the count profile along the axis: where the profile
    crosses the level halfway between its peak and its minimum on that side."""
    u = np.arange(u_start, u_stop + step, step)
    prof = sample(img, vs, centre[None] + u[:, None] * d[None])
    k = int(np.argmax(prof))
    peak = float(prof[k])
    outer = u[-1]
    if k < u.size - 1:
        level = 0.5 * (peak + float(prof[k:].min()))
        above = np.nonzero(prof[k:] < level)[0]
        if above.size:
            i = k + int(above[0])
            outer = u[i - 1] + (prof[i - 1] - level) / (prof[i - 1] - prof[i]) * step
    inner = None
    if k > 0:
        level = 0.5 * (peak + float(prof[:k].min()))
        below = np.nonzero(prof[:k] < level)[0]
        if below.size:
            i = int(below[-1])
            inner = u[i] + (level - prof[i]) / (prof[i + 1] - prof[i]) * step
    if inner is None:  # no cavity on the axis: mirror the outer half-width about the peak
        inner = 2 * u[k] - outer
    return float(inner), float(outer)


def estimate_lv_axis(image, voxel_size_mm, *, mask=None, threshold: float = 0.5,
                     volume_ml: tuple[float, float] = (20.0, 600.0)) -> LVGeometry:
    """Find the LV myocardium and its long axis, centre, base and apex (method in the module docstring).

    Args:
        image: ``[X, Y, Z]`` counts (torch or numpy, any real dtype; finite, non-negative), in the
            frame of the module docstring (+x left, +y anterior, +z superior).
        voxel_size_mm: one size or ``(sx, sy, sz)`` in mm, or the image's 3-D ``VoxelGrid``.
        mask: the myocardium (bool ``[X, Y, Z]``) if known; then no threshold is applied.
        threshold: the myocardium's fraction of the LV's own maximum (0 < threshold < 0.8).
        volume_ml: accepted range of the myocardium's volume, ml.

    Returns:
        :class:`LVGeometry` (mm, image frame) holding the myocardium mask it used.
    """
    img = as_volume(image, "image")
    vs = voxel_sizes(voxel_size_mm, img.shape)
    if isinstance(threshold, bool) or not (isinstance(threshold, (int, float)) and 0 < threshold < 0.8):
        raise InputError(f"threshold: expected a fraction of the LV's maximum in (0, 0.8), found {threshold!r}")
    lo, hi = (check_positive("volume_ml[0]", volume_ml[0]), check_positive("volume_ml[1]", volume_ml[1]))
    if lo >= hi:
        raise InputError(f"volume_ml: expected (low, high) with low < high, found {volume_ml!r}")
    if mask is None:
        myo, frac = _find_myocardium(img, vs, float(threshold), (lo, hi))
    else:
        myo, frac = as_mask(mask, img.shape, "mask"), None
    pts = mask_points(myo, vs)
    if pts.shape[0] < 10:
        raise InputError(f"mask: the myocardium has only {pts.shape[0]} voxels; expected at least 10")
    fit = _fit_ellipsoid(pts)
    if fit is None:
        centre, d = _moment_axis(pts)
    else:
        centre, d, _ = fit
    prior = np.asarray(APEX_PRIOR)
    d = d / np.linalg.norm(d)
    if d @ prior < 0:
        d = -d
    d, e_ant, e_lat = lv_frame(d)
    u = (pts - centre) @ d
    base = float(np.percentile(u, 0.5))
    step = 0.25 * float(vs.min())
    inner, outer = _axis_profile_edges(img, vs, centre, d, float(np.median(u)), float(u.max()) + 3 * vs.max(), step)
    cavity_end = min(max(inner, base + step), outer)
    if not base < cavity_end:
        raise InputError("image: could not place the base and the apex of the LV along the fitted axis")
    return LVGeometry(centre, d, e_ant, e_lat, base, cavity_end, max(outer, cavity_end), myo, frac)


# --------------------------------------------------------------------------------------------------
# Reorientation


def check_lv(lv) -> LVGeometry:
    if not isinstance(lv, LVGeometry):
        raise InputError(f"lv: expected an LVGeometry (from estimate_lv_axis), found {type(lv).__name__}")
    return lv


def reorient(image, voxel_size_mm, lv: LVGeometry, *, spacing_mm: float | None = None,
             size: int | tuple[int, int] | None = None) -> dict:
    """Resample ``image`` into short-axis, vertical and horizontal long-axis volumes (trilinear).

    The samples lie on a box of the LV frame with spacing ``spacing_mm`` (default the smallest
    voxel size): ``n_u`` points along the axis centred on the middle of ``[base_mm, apex_mm]``,
    and ``n_r`` points along ``e_ant`` and along ``e_lat`` centred on the axis. ``size`` is
    ``(n_u, n_r)`` or one number for both; by default ``n_u`` covers base to apex and ``n_r`` the
    myocardium's largest distance from the axis (``lv.mask``; else 50 mm), each with two spacings
    to spare.

    Returns a dict of torch tensors (the image's float dtype, float64 for numpy input):

    * ``"sa"`` ``[n_u, n_r, n_r]``: short-axis slices from base to apex; within a slice rows run
      anterior → inferior (``−e_ant``) and columns septal → lateral (``+e_lat``).
    * ``"vla"`` ``[n_r, n_r, n_u]``: vertical long-axis slices (planes of the axis and ``e_ant``)
      from septal to lateral; rows anterior → inferior, columns base → apex.
    * ``"hla"`` ``[n_r, n_u, n_r]``: horizontal long-axis slices (planes of the axis and ``e_lat``)
      from inferior to anterior; rows apex → base, columns septal → lateral.
    * ``"u_mm" [n_u]``, ``"ant_mm" [n_r]``, ``"lat_mm" [n_r]``: the LV coordinates of the samples
      (``u`` increasing; ``ant`` decreasing, as the rows; ``lat`` increasing), and ``"spacing_mm"``.
    """
    img = as_volume(image, "image")
    vs = voxel_sizes(voxel_size_mm, img.shape)
    lv = check_lv(lv)
    h = float(vs.min()) if spacing_mm is None else check_positive("spacing_mm", spacing_mm)
    if size is None:
        n_u = int(math.ceil((lv.apex_mm - lv.base_mm) / h)) + 5
        if lv.mask is not None and lv.mask.shape == img.shape and lv.mask.any():
            _, a, l = lv.coords(mask_points(lv.mask, vs))
            rho = float(np.sqrt(a * a + l * l).max())
        else:
            rho = 50.0
        n_r = 2 * int(math.ceil(rho / h)) + 5
    elif isinstance(size, (tuple, list)):
        if len(size) != 2:
            raise InputError(f"size: expected one integer or (n_u, n_r), found {size!r}")
        n_u, n_r = check_positive_int("size[0]", size[0], 2), check_positive_int("size[1]", size[1], 2)
    else:
        n_u = n_r = check_positive_int("size", size, 2)
    mid = 0.5 * (lv.base_mm + lv.apex_mm)
    u = mid + (np.arange(n_u) - (n_u - 1) / 2.0) * h
    lat = (np.arange(n_r) - (n_r - 1) / 2.0) * h
    ant = -lat  # rows run anterior -> inferior
    sa = sample(img, vs, lv.point(u[:, None, None], ant[None, :, None], lat[None, None, :]))
    vla = sample(img, vs, lv.point(u[None, None, :], ant[None, :, None], lat[:, None, None]))
    hla = sample(img, vs, lv.point(u[::-1][None, :, None], lat[:, None, None], lat[None, None, :]))
    dtype = image.dtype if isinstance(image, torch.Tensor) and image.is_floating_point() else torch.float64
    device = image.device if isinstance(image, torch.Tensor) else None

    def out(x):
        return torch.as_tensor(np.ascontiguousarray(x)).to(device=device, dtype=dtype)

    return {"sa": out(sa), "vla": out(vla), "hla": out(hla), "u_mm": torch.as_tensor(u),
            "ant_mm": torch.as_tensor(ant.copy()), "lat_mm": torch.as_tensor(lat), "spacing_mm": h}
