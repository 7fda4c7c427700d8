"""The NEMA IEC body phantom (NEMA NU 2 / IEC 61675-1 image-quality phantom), voxelised.

Geometry (interior, water-filled, in mm)
----------------------------------------
* Body: a D-shaped cross-section extruded along z over an interior length of 180 mm. In the
  phantom's own frame, with its origin at the centre of the arc and +y anterior, the interior is
  the half-disc ``x² + y² ≤ 147²`` (y ≥ 0) joined to the slab ``−77 ≤ y < 0`` whose lower corners
  are rounded with radius 77 mm about ``x = ±70`` (so 294 mm wide and 224 mm deep).
* Lung insert: a cylinder of 50 mm diameter along z over the whole interior length, its axis at
  ``y = 35`` mm in that frame. It holds lung (ICRU-44, 0.30 g/cm³) and no activity.
* Spheres: inner diameters 10, 13, 17, 22, 28, 37 mm, centres on a circle of radius 57.2 mm about
  the lung axis, all in one transverse plane 70 mm from the lid (``z = +20`` mm here), 60° apart,
  the 10 mm sphere at 120° (counter-clockwise from +x) and the sizes increasing clockwise.
* Walls (PMMA shell, sphere walls, filling stems) are not modelled: their volume is taken as
  water without activity would be, which they nearly are at 140 keV.

The phantom sits with the lung axis on the grid's rotation axis (x = y = 0) and its interior
centred in z, unless ``jitter_mm`` shifts it (a uniform random shift per axis, per sample).

Partial volume: every voxel holds the fraction of it inside each region, found by sub-voxel
sampling (the body and lung cross-sections on ≈0.5 mm sub-pixels with an exact overlap along z;
each sphere on ≈0.25 mm sub-voxels of its bounding box). Each sphere's total activity therefore
matches ``ratio·background·(4/3)πr³`` to well within 1 % even on 4 mm voxels.

Labels: 0 outside, 1 background, 2 lung, 3–8 the spheres from 10 to 37 mm (each voxel takes the
region that fills most of it).

CT: ``Phantom.ct_hu`` is ``spectdl.io.ct.mu_to_ct_hu(mu_per_cm, energy_kev)`` (water 0 HU, lung about
−700 HU, air −1000 HU).
"""

from __future__ import annotations

import math
from typing import Sequence

import torch

from spectdl.errors import GeometryError, InputError
from spectdl.geometry import VoxelGrid
from spectdl.io.ct import mu_to_ct_hu
from spectdl.materials import mu_per_cm
from spectdl.phantoms._shapes import raw_draws
from spectdl.phantoms.base import (
    Phantom,
    check_batch_size,
    check_dtype,
    check_grid,
    check_number,
    sample_seeds,
)

SPHERE_DIAMETERS_MM = (10.0, 13.0, 17.0, 22.0, 28.0, 37.0)
SPHERE_CIRCLE_RADIUS_MM = 57.2
LUNG_DIAMETER_MM = 50.0
INTERIOR_LENGTH_MM = 180.0
ARC_RADIUS_MM = 147.0
CORNER_RADIUS_MM = 77.0
CORNER_CENTRE_X_MM = 70.0
LUNG_AXIS_Y_MM = 35.0  # in the body's frame (origin at the arc centre)
SPHERE_PLANE_Z_MM = INTERIOR_LENGTH_MM / 2.0 - 70.0

LABELS = {
    "outside": 0,
    "background": 1,
    "lung": 2,
    **{f"sphere_{int(d)}mm": 3 + k for k, d in enumerate(SPHERE_DIAMETERS_MM)},
}


def nema_iec(
    grid: VoxelGrid | None = None,
    batch_size: int = 1,
    *,
    ratio: float | Sequence[float] = 4.0,
    background: float = 1.0,
    lung_activity: float = 0.0,
    jitter_mm: float = 0.0,
    sphere_circle_radius_mm: float = SPHERE_CIRCLE_RADIUS_MM,
    seed: int | None = None,
    generator: torch.Generator | None = None,
    energy_kev: float = 140.0,
    device: torch.device | str | None = None,
    dtype: torch.dtype = torch.float32,
) -> Phantom:
    """The NEMA IEC body phantom on ``grid``.

    Args:
        grid: 3-D grid; default ``VoxelGrid((128, 128, 64), 4.0)``. It must hold the whole interior
            (294 × 224 × 180 mm plus any jitter), else ``GeometryError``.
        batch_size: number of copies ``B`` (identical unless ``jitter_mm > 0``).
        ratio: sphere-to-background activity concentration ratio, one value or one per sphere
            (10 → 37 mm). Default 4:1 as in NEMA NU 2; the bone SPECT study uses 12:1. 0 makes cold
            spheres.
        background: activity concentration of the background water.
        lung_activity: activity concentration in the lung insert (0 in the standard).
        jitter_mm: maximum shift of the whole phantom along each axis; the shift of sample ``b`` is
            uniform in ``[−jitter, jitter]³`` from its seed (the only randomness of this phantom).
        seed, generator: see :mod:`spectdl.phantoms.base`; unused when ``jitter_mm == 0``, except
            that ``info["seeds"]`` is still filled.
        energy_kev: photon energy of the attenuation map.
        sphere_circle_radius_mm: radius of the circle of the sphere centres (NU 2: 57.2 mm); between
            35 and 60 mm, so that the largest sphere clears the lung insert and the wall.

    Returns:
        :class:`Phantom` ``[B, 1, nx, ny, nz]``. ``info``: ``sphere_centres_mm [B, 6, 3]``,
        ``sphere_radii_mm [6]``, ``sphere_ratios [6]``, ``shift_mm [B, 3]``, ``lung_axis_mm [B, 2]``,
        ``seeds``. ``ct_hu``: the CT-like image in HU, same shape as ``activity``.
    """
    grid = check_grid(VoxelGrid((128, 128, 64), 4.0) if grid is None else grid, 3)
    batch_size = check_batch_size(batch_size)
    dtype = check_dtype(dtype)
    ratios = _check_ratio(ratio)
    ring = check_number("sphere_circle_radius_mm", sphere_circle_radius_mm, 35.0, 60.0)
    background = check_number("background", background, 0)
    lung_activity = check_number("lung_activity", lung_activity, 0)
    jitter = check_number("jitter_mm", jitter_mm, 0)
    mu_water = mu_per_cm("water", energy_kev)
    mu_lung = mu_per_cm("lung", energy_kev)

    need = (ARC_RADIUS_MM + jitter, (ARC_RADIUS_MM + CORNER_RADIUS_MM) / 2 + jitter,
            INTERIOR_LENGTH_MM / 2 + jitter)
    for axis, (half, n) in enumerate(zip(need, "xyz")):
        if grid.extent_mm[axis] / 2.0 < half:
            raise GeometryError(
                f"grid: the NEMA IEC body needs a field of view of at least {2 * half:.1f} mm along "
                f"{n}; found {grid.extent_mm[axis]:.1f} mm (shape {grid.shape}, voxel "
                f"{grid.voxel_size_mm} mm)"
            )

    seeds = sample_seeds(batch_size, seed, generator)
    u, _ = raw_draws(seeds, 3, 0)
    shifts = jitter * (2.0 * u - 1.0)  # [B, 3]

    radii = torch.tensor(SPHERE_DIAMETERS_MM, dtype=torch.float64) / 2.0
    angles = torch.deg2rad(120.0 - 60.0 * torch.arange(6, dtype=torch.float64))
    base_centres = torch.stack(
        [
            ring * torch.cos(angles),
            ring * torch.sin(angles),
            torch.full((6,), SPHERE_PLANE_Z_MM, dtype=torch.float64),
        ],
        -1,
    )
    centres = base_centres[None] + shifts[:, None, :]

    dev = torch.device(device) if device is not None else torch.device("cpu")
    activity = torch.empty(batch_size, 1, *grid.shape, dtype=dtype, device=dev)
    mu = torch.empty_like(activity)
    ct_hu = torch.empty_like(activity)
    labels = torch.empty(batch_size, 1, *grid.shape, dtype=torch.int64, device=dev)
    cache: dict[tuple[float, ...], tuple[torch.Tensor, ...]] = {}
    for b in range(batch_size):
        key = tuple(shifts[b].tolist())
        if key not in cache:
            fr = _fractions(grid, shifts[b], centres[b], radii)
            body, lung, spheres = fr
            water_bg = (body - lung - spheres.sum(0)).clamp_min(0.0)
            act = background * water_bg + lung_activity * lung
            for k in range(6):
                act = act + ratios[k] * background * spheres[k]
            att = mu_water * (water_bg + spheres.sum(0)) + mu_lung * lung
            stack = torch.stack([1.0 - body, water_bg, lung, *spheres])
            cache[key] = (act, att, stack.argmax(0))
        act, att, lab = cache[key]
        activity[b, 0] = act.to(device=dev, dtype=dtype)
        mu[b, 0] = att.to(device=dev, dtype=dtype)
        # From μ in the output dtype, so that a water voxel is exactly 0 HU there.
        ct_hu[b, 0] = mu_to_ct_hu(mu[b, 0], energy_kev)
        labels[b, 0] = lab.to(device=dev)

    info = {
        "seeds": seeds,
        "shift_mm": shifts,
        "sphere_centres_mm": centres,
        "sphere_radii_mm": radii,
        "sphere_ratios": torch.tensor(ratios, dtype=torch.float64),
        "lung_axis_mm": shifts[:, :2].clone(),
        "background": background,
        "energy_kev": float(energy_kev),
    }
    return Phantom(activity, mu, grid, labels, dict(LABELS), info, ct_hu=ct_hu)


def _check_ratio(ratio) -> list[float]:
    if isinstance(ratio, (int, float)):
        values = [ratio] * 6
    else:
        try:
            values = list(ratio)
        except TypeError as exc:
            raise InputError(f"ratio: expected a number or 6 numbers, found {ratio!r}") from exc
        if len(values) != 6:
            raise InputError(
                f"ratio: expected one value or 6 (one per sphere), found {len(values)}: {ratio!r}"
            )
    return [check_number("ratio", v, 0) for v in values]


def _subsample_offsets(size_mm: float, step_mm: float, cap: int) -> torch.Tensor:
    """Sub-sample positions inside one voxel of ``size_mm``, relative to its centre."""
    f = max(1, min(cap, math.ceil(size_mm / step_mm)))
    return ((torch.arange(f, dtype=torch.float64) + 0.5) / f - 0.5) * size_mm


def _centres(grid: VoxelGrid, axis: int) -> torch.Tensor:
    n, s = grid.shape[axis], grid.voxel_size_mm[axis]
    return (torch.arange(n, dtype=torch.float64) - (n - 1) / 2.0) * s


def _interval_fraction(centres: torch.Tensor, size: float, lo: float, hi: float) -> torch.Tensor:
    """Exact fraction of each voxel ``[c − s/2, c + s/2]`` inside ``[lo, hi]``."""
    left = torch.clamp(centres - size / 2.0, min=lo)
    right = torch.clamp(centres + size / 2.0, max=hi)
    return (right - left).clamp_min(0.0) / size


def _d_shape(x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """Inside the body's interior cross-section; ``y`` in the body's own frame (arc centre at 0)."""
    top = (y >= 0) & (x * x + y * y <= ARC_RADIUS_MM**2)
    ax = x.abs()
    corner = (ax - CORNER_CENTRE_X_MM).clamp_min(0.0)
    bottom = (y < 0) & (y >= -CORNER_RADIUS_MM) & (corner * corner + y * y <= CORNER_RADIUS_MM**2)
    return top | bottom


def _fractions(grid: VoxelGrid, shift: torch.Tensor, centres: torch.Tensor, radii: torch.Tensor):
    """Volume fractions (float64, CPU) of body, lung ``[nx, ny, nz]`` and spheres ``[6, nx, ny, nz]``."""
    sx, sy, sz = grid.voxel_size_mm
    xc, yc, zc = (_centres(grid, a) for a in range(3))
    dx, dy, dz = (float(v) for v in shift)

    # Cross-sections on sub-pixels of about 0.5 mm; the lung axis sits at (dx, dy).
    ox, oy = _subsample_offsets(sx, 0.5, 8), _subsample_offsets(sy, 0.5, 8)
    px = (xc[:, None] + ox[None, :]).reshape(-1) - dx
    py = (yc[:, None] + oy[None, :]).reshape(-1) - dy
    X, Y = px[:, None], py[None, :]
    body2 = _d_shape(X, Y + LUNG_AXIS_Y_MM)
    lung2 = X * X + Y * Y <= (LUNG_DIAMETER_MM / 2.0) ** 2
    fx, fy = len(ox), len(oy)
    shape2 = (grid.shape[0], fx, grid.shape[1], fy)
    body2 = body2.to(torch.float64).reshape(shape2).mean((1, 3))
    lung2 = lung2.to(torch.float64).reshape(shape2).mean((1, 3))
    fz = _interval_fraction(zc, sz, dz - INTERIOR_LENGTH_MM / 2.0, dz + INTERIOR_LENGTH_MM / 2.0)
    body = body2[:, :, None] * fz[None, None, :]
    lung = lung2[:, :, None] * fz[None, None, :]

    spheres = torch.zeros(6, *grid.shape, dtype=torch.float64)
    offs = [_subsample_offsets(s, 0.25, 16) for s in (sx, sy, sz)]
    axes_c = (xc, yc, zc)
    for k in range(6):
        r = float(radii[k])
        sl, d2 = [], []
        for a in range(3):
            c, s, n = float(centres[k, a]), grid.voxel_size_mm[a], grid.shape[a]
            first = max(0, math.floor((c - r) / s + (n - 1) / 2.0))
            last = min(n - 1, math.ceil((c + r) / s + (n - 1) / 2.0))
            sl.append(slice(first, last + 1))
            pts = (axes_c[a][first : last + 1, None] + offs[a][None, :]).reshape(-1) - c
            d2.append(pts * pts)
        inside = (d2[0][:, None, None] + d2[1][None, :, None] + d2[2][None, None, :]) <= r * r
        n0, n1, n2 = (s.stop - s.start for s in sl)
        frac = inside.to(torch.float64).reshape(n0, len(offs[0]), n1, len(offs[1]), n2, len(offs[2]))
        spheres[k, sl[0], sl[1], sl[2]] = frac.mean((1, 3, 5))
    return body, lung, spheres
