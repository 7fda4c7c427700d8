"""Random 2-D head phantoms for training reconstruction networks (the SPECTnet recipe).

Each sample is an ellipse of background activity 1 (random centre, semi-axes and orientation)
with a 2–4 mm bone ring at its edge for the skull, and 1 to several hot regions inside the brain.
A hot region is a star-shaped blob whose radius is a random Fourier series,

    r(φ) = r₀ · (1 + Σ_{k=1..H} α_k cos(k φ − φ_k)),  α_k ~ U(0, roughness / k),  φ_k ~ U(0, 2π),

so it is not an ellipse, and its activity is drawn from N(hot_mean, hot_sd) clipped to
``hot_range`` (default: centre 6, clipped to [3, 9]). Outside the head the activity is 0.

Regions below background (cold lesions). ``hot_range`` may reach down to 0: a region whose drawn
activity ``v`` is below 1 is *cold* and replaces the background by ``v``. Every region adds the
contrast ``δ_k = (v_k − 1)·c_k`` (``c_k`` its pixel coverage) to the background 1, and where regions
overlap the one with the largest ``|δ_k|`` sets the pixel:

    activity = c_brain · (1 + δ*),   δ* = δ_k with k = argmax_k |δ_k|   (δ* = 0 outside every region)

so hot regions among themselves take the larger value (as always), cold ones the lower value, and
where a hot and a cold region overlap the stronger contrast wins. Values above 9 (any
``hot_range`` upper end) are allowed too, for out-of-distribution uptake.

Concave heads (``head_dents``). The training heads are convex ellipses; with ``head_dents`` above 0,
that many discs are bitten out of the ellipse edge. Dent ``j`` is a disc of radius
``R_j`` whose centre lies on the outward normal of the ellipse at the parametric angle ``t_j``
(point ``(a cos t, b sin t)`` in the head's frame), ``R_j − depth_j`` outside the edge, so it cuts
``depth_j`` into the head there. With signed distances (negative inside),

    d_head  = max(d_ellipse, max_j (R_j − |p − c_j|)),
    d_brain = max(d_ellipse_shrunk, max_j (R_j + skull − |p − c_j|))   (the head eroded by the skull),

so the bone ring keeps its thickness along the dent (erosion distributes over the intersection)
and μ and the blobs (clipped by the brain coverage) follow the new outline. A blob under a dent is
cut off with the brain; it may vanish altogether. The dent draws come after all the other draws of
a sample, so with the same seed a dented head is the undented one with bites taken out.

Attenuation (cm⁻¹ at ``energy_kev``): water inside the head, bone in the skull ring, 0 outside.
Edges are anti-aliased by default: a pixel's value is weighted by the fraction of it inside each
shape (linear ramp of the signed distance over one pixel).

Labels (each pixel by its centre): 0 outside, 1 brain background, 2 skull, 3 hot regions
(activity ≥ 1), 4 cold regions (activity < 1). Where a hot and a cold region both cover a pixel
the label is the one whose contrast sets the pixel's value.
"""

from __future__ import annotations

import math

import torch

from spectdl.errors import GeometryError, InputError
from spectdl.geometry import VoxelGrid
from spectdl.materials import mu_per_cm
from spectdl.phantoms._shapes import edge_coverage, raw_draws, raw_draws_with_extra
from spectdl.phantoms.base import (
    Phantom,
    check_batch_size,
    check_dtype,
    check_grid,
    check_number,
    check_range,
    grid_coords,
    sample_generator,
    sample_seeds,
)

LABELS = {"outside": 0, "background": 1, "skull": 2, "hot": 3, "cold": 4}

_HARMONICS = 4
_N_HEAD = 7  # semi-axis a, semi-axis b, offset radius, offset angle, orientation, skull, count
_N_DENT = 3  # per dent: parametric angle on the ellipse, radius, depth (after one draw for the count)
_MAX_DENTS = 16


def brain2d(
    grid: VoxelGrid | None = None,
    batch_size: int = 1,
    *,
    seed: int | None = None,
    generator: torch.Generator | None = None,
    n_regions: tuple[int, int] | int = (1, 5),
    head_semi_axes_mm: tuple[tuple[float, float], tuple[float, float]] = ((70.0, 95.0), (55.0, 75.0)),
    max_offset_mm: float = 15.0,
    skull_thickness_mm: tuple[float, float] = (2.0, 4.0),
    skull_activity: float = 1.0,
    region_radius_mm: tuple[float, float] = (5.0, 20.0),
    roughness: float = 0.4,
    hot_mean: float = 6.0,
    hot_sd: float = 1.5,
    hot_range: tuple[float, float] = (3.0, 9.0),
    head_dents: tuple[int, int] | int = 0,
    dent_radius_mm: tuple[float, float] = (20.0, 30.0),
    dent_depth_mm: tuple[float, float] = (10.0, 20.0),
    energy_kev: float = 140.0,
    antialias: bool = True,
    device: torch.device | str | None = None,
    dtype: torch.dtype = torch.float32,
) -> Phantom:
    """A batch of random 2-D head phantoms.

    Args:
        grid: 2-D grid, default ``VoxelGrid((128, 128), 2.0)`` (256 mm field of view).
        batch_size: number of phantoms ``B``.
        seed, generator: randomness (see :mod:`spectdl.phantoms.base`); the per-sample seeds are
            in ``info["seeds"]``.
        n_regions: number of hot regions, drawn uniformly from ``[low, high]`` (or fixed).
        head_semi_axes_mm: ranges of the major and minor semi-axes of the head ellipse.
        max_offset_mm: the head centre is uniform in a disc of this radius around the grid centre.
        skull_thickness_mm: range of the bone ring thickness.
        skull_activity: activity of the skull ring (1 = part of the elliptical background).
        region_radius_mm: range of the mean blob radius ``r₀``.
        roughness: amplitude scale of the Fourier radius, in [0, 0.45] so that r(φ) > 0 (0 gives circles).
        hot_mean, hot_sd, hot_range: Gaussian of the region activity and its clipping interval
            (``hot_range`` within [0, ∞)); a region drawn below 1 is a cold region (label 4).
        head_dents: number of discs bitten out of the head outline, uniform in ``[low, high]``
            (or fixed; at most 16); 0 (default) keeps the convex ellipse and today's samples.
        dent_radius_mm: range of the dent disc radius ``R``.
        dent_depth_mm: range of how deep a dent cuts into the head along the edge normal, in
            ``(0, R_min]`` (at most a half disc, so a dent is a notch, never a hole) and less than
            the smallest semi-axis minus the thickest skull (two opposite dents cannot cut the
            brain in two). Both are checked only when ``head_dents`` allows dents.
        energy_kev: photon energy of the attenuation map.
        antialias: weight edge pixels by their covered fraction (``False``: pixel centres only).

    Returns:
        :class:`Phantom` with ``activity``, ``mu_per_cm`` and ``labels`` of shape ``[B, 1, nx, ny]``;
        ``info`` holds ``seeds`` and the sampled parameters (``head_centre_mm [B, 2]``,
        ``head_semi_axes_mm [B, 2]``, ``head_angle_deg [B]``, ``skull_thickness_mm [B]``,
        ``n_regions [B]``, ``region_centre_mm [B, N, 2]``, ``region_radius_mm [B, N]``,
        ``region_harmonics [B, N, H, 2]`` (amplitude, phase), ``region_activity [B, N]`` (0 for
        unused slots: mask with ``n_regions``; a used slot below 1 is a cold region)). With
        ``head_dents`` above 0 it also holds ``n_dents [B]``, ``dent_centre_mm [B, D, 2]``,
        ``dent_radius_mm [B, D]``, ``dent_depth_mm [B, D]`` and ``dent_angle_deg [B, D]`` (the
        parametric angle ``t`` in the head's frame), 0 for unused slots; without dents these keys
        are absent, so the default output and its ``info`` are those of the convex-only version.
    """
    grid = check_grid(VoxelGrid((128, 128), 2.0) if grid is None else grid, 2)
    batch_size = check_batch_size(batch_size)
    dtype = check_dtype(dtype)
    n_lo, n_hi = check_range("n_regions", n_regions, 0, 64)
    if n_lo != int(n_lo) or n_hi != int(n_hi):
        raise InputError(f"n_regions: expected integers, found {n_regions!r}")
    try:
        (a_lo, a_hi), (b_lo, b_hi) = head_semi_axes_mm
    except (TypeError, ValueError) as exc:
        raise InputError(
            "head_semi_axes_mm: expected ((major_lo, major_hi), (minor_lo, minor_hi)), "
            f"found {head_semi_axes_mm!r}"
        ) from exc
    a_lo, a_hi = check_range("head_semi_axes_mm[0]", (a_lo, a_hi), 0)
    b_lo, b_hi = check_range("head_semi_axes_mm[1]", (b_lo, b_hi), 0)
    offset = check_number("max_offset_mm", max_offset_mm, 0)
    t_lo, t_hi = check_range("skull_thickness_mm", skull_thickness_mm, 0)
    if t_hi >= min(a_lo, b_lo):
        raise InputError(
            f"skull_thickness_mm: {skull_thickness_mm!r} must be thinner than the smallest "
            f"semi-axis {min(a_lo, b_lo)}"
        )
    skull_act = check_number("skull_activity", skull_activity, 0)
    r_lo, r_hi = check_range("region_radius_mm", region_radius_mm, 0)
    if r_lo <= 0:
        raise InputError(f"region_radius_mm: expected values > 0, found {region_radius_mm!r}")
    rough = check_number("roughness", roughness, 0, 0.45)
    hot_mean = check_number("hot_mean", hot_mean, 0)
    hot_sd = check_number("hot_sd", hot_sd, 0)
    h_lo, h_hi = check_range("hot_range", hot_range, 0)
    d_lo, d_hi = check_range("head_dents", head_dents, 0, _MAX_DENTS)
    if d_lo != int(d_lo) or d_hi != int(d_hi):
        raise InputError(f"head_dents: expected integers, found {head_dents!r}")
    dr_lo, dr_hi = check_range("dent_radius_mm", dent_radius_mm, 0)
    if dr_lo <= 0:
        raise InputError(f"dent_radius_mm: expected values > 0, found {dent_radius_mm!r}")
    dd_lo, dd_hi = check_range("dent_depth_mm", dent_depth_mm, 0)
    if dd_lo <= 0:
        raise InputError(f"dent_depth_mm: expected values > 0, found {dent_depth_mm!r}")
    if d_hi > 0:  # the dent geometry only has to fit the head when there are dents
        if dd_hi > dr_lo:
            raise InputError(
                f"dent_depth_mm: {dent_depth_mm!r} must not exceed the smallest dent radius {dr_lo} "
                "(a deeper disc would leave an overhang)"
            )
        if dd_hi >= min(a_lo, b_lo) - t_hi:
            raise InputError(
                f"dent_depth_mm: {dent_depth_mm!r} must be shallower than the smallest semi-axis "
                f"minus the thickest skull, {min(a_lo, b_lo) - t_hi}"
            )
    mu_water = mu_per_cm("water", energy_kev)
    mu_bone = mu_per_cm("bone", energy_kev)

    reach = max(a_hi, b_hi) + offset
    half = [e / 2.0 for e in grid.extent_mm]
    if reach > min(half):
        raise GeometryError(
            f"grid: a head reaching {reach:.1f} mm from the centre does not fit a field of view of "
            f"{grid.extent_mm} mm; expected a half-width of at least {reach:.1f} mm"
        )

    seeds = sample_seeds(batch_size, seed, generator)
    n_max = max(int(n_hi), 1)
    n_uniform = _N_HEAD + n_max * (3 + 2 * _HARMONICS)
    n_dents = int(d_hi)
    if n_dents == 0:
        u, z = raw_draws(seeds, n_uniform, n_max)
    else:
        u, z, w = raw_draws_with_extra(seeds, n_uniform, n_max, 1 + _N_DENT * n_dents)

    # --- parameters (float64, CPU), one row per sample --------------------------------------
    big = a_lo + (a_hi - a_lo) * u[:, 0]
    small = b_lo + (b_hi - b_lo) * u[:, 1]
    r_off = offset * torch.sqrt(u[:, 2])
    ang_off = 2 * math.pi * u[:, 3]
    centre = torch.stack([r_off * torch.cos(ang_off), r_off * torch.sin(ang_off)], -1)
    theta = math.pi * u[:, 4]
    skull = t_lo + (t_hi - t_lo) * u[:, 5]
    count = (n_lo + torch.floor(u[:, 6] * (n_hi - n_lo + 1))).clamp(max=n_hi).long()

    per = u[:, _N_HEAD:].reshape(batch_size, n_max, 3 + 2 * _HARMONICS)
    r0 = r_lo + (r_hi - r_lo) * per[..., 2]
    k = torch.arange(1, _HARMONICS + 1, dtype=torch.float64)
    amp = per[..., 3 : 3 + _HARMONICS] * rough / k
    phase = 2 * math.pi * per[..., 3 + _HARMONICS :]
    # Blob centres: uniform in the brain ellipse shrunk by r0, then into the head's frame.
    a_in, b_in = (big - skull)[:, None], (small - skull)[:, None]
    rr = torch.sqrt(per[..., 0])
    pa = 2 * math.pi * per[..., 1]
    lu = rr * torch.cos(pa) * (a_in - r0).clamp_min(0)
    lv = rr * torch.sin(pa) * (b_in - r0).clamp_min(0)
    ct, st = torch.cos(theta)[:, None], torch.sin(theta)[:, None]
    rc = torch.stack([centre[:, :1] + lu * ct - lv * st, centre[:, 1:] + lu * st + lv * ct], -1)
    active = torch.arange(n_max)[None, :] < count[:, None]
    value = (hot_mean + hot_sd * z).clamp(h_lo, h_hi) * active

    info = {
        "seeds": seeds,
        "head_centre_mm": centre,
        "head_semi_axes_mm": torch.stack([big, small], -1),
        "head_angle_deg": torch.rad2deg(theta),
        "skull_thickness_mm": skull,
        "n_regions": count,
        "region_centre_mm": rc,
        "region_radius_mm": r0,
        "region_harmonics": torch.stack([amp, phase], -1),
        "region_activity": value,
        "energy_kev": float(energy_kev),
    }
    if n_dents:
        dent = _dent_params(w, (d_lo, d_hi), (dr_lo, dr_hi), (dd_lo, dd_hi), big, small, centre, theta)
        info.update(
            n_dents=dent["count"],
            dent_centre_mm=dent["centre"],
            dent_radius_mm=dent["radius"],
            dent_depth_mm=dent["depth"],
            dent_angle_deg=torch.rad2deg(dent["angle"]),
        )

    # --- render on the device, vectorised over the batch -------------------------------------
    dev = torch.device(device) if device is not None else torch.device("cpu")
    pixel = sum(grid.voxel_size_mm) / 2.0
    x, y = grid_coords(grid, dev, dtype)

    def per_sample(t: torch.Tensor) -> torch.Tensor:
        return t.to(device=dev, dtype=dtype)[:, None, None]

    c, s = per_sample(torch.cos(theta)), per_sample(torch.sin(theta))
    dx = x[None, :, None] - per_sample(centre[:, 0])
    dy = y[None, None, :] - per_sample(centre[:, 1])
    lu2, lv2 = dx * c + dy * s, dy * c - dx * s
    lu2, lv2 = lu2 * lu2, lv2 * lv2
    r = torch.sqrt(lu2 + lv2)

    def coverage(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        # Signed distance to the ellipse along the ray from its centre, r − R(φ) = r·(1 − 1/ρ) with
        # ρ² = (u/a)² + (v/b)²: exact for circles, within a few per cent of the normal distance near
        # the edge of these mildly eccentric ellipses, which is all the edge ramp needs.
        rho2 = lu2 * per_sample(1.0 / (a * a)) + lv2 * per_sample(1.0 / (b * b))
        d = torch.where(rho2 > 1e-12, r - r * torch.rsqrt(rho2.clamp_min(1e-12)), -per_sample(b))
        return edge_coverage(d, pixel, antialias)

    cov_head = coverage(big, small)
    cov_brain = torch.minimum(coverage(big - skull, small - skull), cov_head)
    if n_dents:
        # Intersections are minima of coverages (coverage is decreasing in the signed distance, so
        # min(cov(d1), cov(d2)) = cov(max(d1, d2))). The brain is the head eroded by the skull: the
        # outside of each disc dilated by the skull thickness.
        gap = _dent_distance(x, y, dent["centre"], dent["radius"], dent["active"], dev, dtype)  # |p−c|−R
        cov_head = torch.minimum(cov_head, edge_coverage(-gap, pixel, antialias).amin(1))
        thick = per_sample(skull)[:, None]
        cov_brain = torch.minimum(cov_brain, edge_coverage(thick - gap, pixel, antialias).amin(1))
        cov_brain = torch.minimum(cov_brain, cov_head)
    ring = cov_head - cov_brain

    excess, hot_cov, deficit, cold_cov = _render_blobs(
        grid, rc, r0, amp, phase, value, active, dev, dtype, pixel, antialias
    )
    if deficit is None:
        activity = cov_brain * (1.0 + excess) + skull_act * ring
    else:
        # The region with the strongest contrast |v − 1|·coverage sets the pixel (module docstring).
        hot_wins = excess >= deficit
        activity = cov_brain * (1.0 + torch.where(hot_wins, excess, -deficit)) + skull_act * ring
    mu = mu_water * cov_head + (mu_bone - mu_water) * ring

    brain = cov_brain >= 0.5
    in_hot = hot_cov >= 0.5
    region = torch.where(in_hot, LABELS["hot"], LABELS["background"])
    if deficit is not None:
        in_cold = cold_cov >= 0.5
        region = torch.where(in_cold & ~(in_hot & hot_wins), LABELS["cold"], region)
    labels = torch.where(
        brain,
        region,
        torch.where(cov_head >= 0.5, LABELS["skull"], LABELS["outside"]),
    )

    return Phantom(
        activity=activity[:, None],
        mu_per_cm=mu[:, None],
        grid=grid,
        labels=labels[:, None],
        label_names=dict(LABELS),
        info=info,
    )


def _dent_params(w, counts, radius, depth, big, small, centre, theta):
    """Dent discs from the extra draws ``w [B, 1 + 3 D]`` (count, then angle, radius, depth per slot).

    The disc centre sits on the outward normal of the ellipse at the parametric angle ``t``, at
    ``R − depth`` beyond the edge point ``(a cos t, b sin t)`` (head frame), then rotated by the
    head's orientation and shifted to its centre. Unused slots are zero and ``active`` False.
    """
    B = w.shape[0]
    d_max = (w.shape[1] - 1) // _N_DENT
    lo, hi = counts
    count = (lo + torch.floor(w[:, 0] * (hi - lo + 1))).clamp(max=hi).long()
    per = w[:, 1:].reshape(B, d_max, _N_DENT)
    active = torch.arange(d_max)[None, :] < count[:, None]
    t = 2 * math.pi * per[..., 0]
    r = radius[0] + (radius[1] - radius[0]) * per[..., 1]
    h = depth[0] + (depth[1] - depth[0]) * per[..., 2]
    a, b = big[:, None], small[:, None]
    ex, ey = a * torch.cos(t), b * torch.sin(t)  # edge point, head frame
    nx, ny = torch.cos(t) / a, torch.sin(t) / b  # outward normal ∝ ∇((u/a)² + (v/b)²)
    norm = torch.sqrt(nx * nx + ny * ny)
    lu, lv = ex + (r - h) * nx / norm, ey + (r - h) * ny / norm
    ct, st = torch.cos(theta)[:, None], torch.sin(theta)[:, None]
    c = torch.stack([centre[:, :1] + lu * ct - lv * st, centre[:, 1:] + lu * st + lv * ct], -1)
    on = active.to(torch.float64)
    return {
        "count": count,
        "active": active,
        "angle": t * on,
        "radius": r * on,
        "depth": h * on,
        "centre": c * on[..., None],
    }


def _dent_distance(x, y, centre, radius, active, dev, dtype):
    """``|p − c_j| − R_j`` for every dent ``j`` and pixel: ``[B, D, nx, ny]`` (mm; negative inside
    the disc). Unused slots read +∞-like distances, so that the outside of their disc is everything."""
    cx = centre[..., 0].to(device=dev, dtype=dtype)[:, :, None, None]
    cy = centre[..., 1].to(device=dev, dtype=dtype)[:, :, None, None]
    dx = x[None, None, :, None] - cx
    dy = y[None, None, None, :] - cy
    gap = torch.sqrt(dx * dx + dy * dy) - radius.to(device=dev, dtype=dtype)[:, :, None, None]
    far = torch.finfo(dtype).max / 4
    return torch.where(active.to(dev)[:, :, None, None], gap, torch.full_like(gap, far))


def _render_blobs(grid, centre, r0, amp, phase, value, active, dev, dtype, pixel, antialias):
    """Per pixel: the hot excess ``max_k (v_k − 1)·c_k`` and hot coverage ``max_k c_k`` over the
    regions with ``v_k ≥ 1``, and the cold deficit ``max_k (1 − v_k)·c_k`` and cold coverage over
    those with ``v_k < 1`` (both ``None`` when no region is cold).

    Each active blob is evaluated on a small square patch around its centre and scattered into the
    image with ``amax``: the blobs cover a few per cent of the image, so this is ~10× cheaper than
    evaluating every blob on every pixel.
    """
    B = r0.shape[0]
    nx, ny = grid.shape
    size = B * (nx * ny + 1)  # one spare slot per sample takes the patch pixels off the image
    excess = torch.zeros(size, device=dev, dtype=dtype)
    hot = torch.zeros(size, device=dev, dtype=dtype)
    deficit = cold = None
    b_idx, n_idx = torch.nonzero(active, as_tuple=True)
    if b_idx.numel() > 0:
        sx, sy = grid.voxel_size_mm
        c = centre[b_idx, n_idx]  # [K, 2]
        rad, a, ph = r0[b_idx, n_idx], amp[b_idx, n_idx], phase[b_idx, n_idx]
        reach = float((rad * (1 + a.sum(-1))).max()) + pixel
        px, py = math.ceil(reach / sx), math.ceil(reach / sy)
        x0, y0 = -(nx - 1) / 2.0 * sx, -(ny - 1) / 2.0 * sy
        ic = torch.round((c[:, 0] - x0) / sx).long()
        jc = torch.round((c[:, 1] - y0) / sy).long()
        ii = ic[:, None, None] + torch.arange(-px, px + 1)[None, :, None]  # [K, Pi, 1]
        jj = jc[:, None, None] + torch.arange(-py, py + 1)[None, None, :]  # [K, 1, Pj]
        on_image = (ii >= 0) & (ii < nx) & (jj >= 0) & (jj < ny)
        flat = torch.where(on_image, ii * ny + jj, nx * ny) + (b_idx * (nx * ny + 1))[:, None, None]

        def blob(t: torch.Tensor) -> torch.Tensor:
            return t.to(device=dev, dtype=dtype)[:, None, None]

        u = (torch.arange(-px, px + 1, device=dev, dtype=dtype) * sx)[None, :, None] \
            + blob(ic * sx + x0 - c[:, 0])
        v = (torch.arange(-py, py + 1, device=dev, dtype=dtype) * sy)[None, None, :] \
            + blob(jc * sy + y0 - c[:, 1])
        r = torch.sqrt(u * u + v * v)
        inv = 1.0 / r.clamp_min(1e-12)
        c1, s1 = u * inv, v * inv  # cos φ, sin φ (0 at the centre, where r(φ) = r0 then)
        ck, sk = c1, s1
        # α_k cos(kφ − φ_k) = (α_k cos φ_k) cos kφ + (α_k sin φ_k) sin kφ
        ca, sa = a * torch.cos(ph), a * torch.sin(ph)
        radius = 1.0 + blob(ca[:, 0]) * ck + blob(sa[:, 0]) * sk
        for k in range(1, a.shape[-1]):
            ck, sk = ck * c1 - sk * s1, sk * c1 + ck * s1
            radius = radius + blob(ca[:, k]) * ck + blob(sa[:, k]) * sk
        cov = edge_coverage(r - radius * blob(rad), pixel, antialias)
        cov = torch.broadcast_to(cov, flat.shape)
        flat = flat.to(dev).reshape(-1)
        v = value[b_idx, n_idx]
        # A cold region's (v − 1)·c is ≤ 0 and never beats the zero the excess starts from.
        excess.scatter_reduce_(0, flat, (cov * blob(v - 1.0)).reshape(-1), "amax")
        is_cold = v < 1.0
        if bool(is_cold.any()):
            warm = blob((~is_cold).to(torch.float64))  # × 1.0 keeps hot coverages bit for bit
            hot.scatter_reduce_(0, flat, (cov * warm).reshape(-1), "amax")
            deficit = torch.zeros(size, device=dev, dtype=dtype)
            cold = torch.zeros(size, device=dev, dtype=dtype)
            deficit.scatter_reduce_(0, flat, (cov * blob((1.0 - v) * is_cold)).reshape(-1), "amax")
            cold.scatter_reduce_(0, flat, (cov * blob(is_cold.to(torch.float64))).reshape(-1), "amax")
        else:
            hot.scatter_reduce_(0, flat, cov.reshape(-1), "amax")

    def image(t):
        return None if t is None else t.reshape(B, nx * ny + 1)[:, :-1].reshape(B, nx, ny)

    return image(excess), image(hot), image(deficit), image(cold)
