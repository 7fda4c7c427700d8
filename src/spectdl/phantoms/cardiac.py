"""A 3-D torso with a beating-heart-free left ventricle, for myocardial perfusion and blood-pool SPECT.

Frame: +x is the patient's left, +y anterior, +z superior (head); the torso's axis is the grid's z
axis. All shapes are analytic (ellipsoids and an elliptic cylinder), voxelised by their voxel
centres (``supersample=1``, so every voxel holds exactly one region's values and the label map is
exact) or by ``supersample³`` sub-voxel samples (partial volume; the label is the majority region).

Regions (label value)
---------------------
* 0 outside, 1 background (soft tissue of the torso, an elliptic cylinder over the whole grid z)
* 2 myocardium: the left ventricle is a truncated ellipsoidal shell. With ``u`` the coordinate
  along the long axis from the ellipsoid centre towards the apex and ``ρ`` the distance from that
  axis, the cavity (3, LV blood pool) is ``(u/L)² + (ρ/r)² ≤ 1`` and the wall adds a thickness
  ``w`` to both semi-axes; both are cut by the base plane ``u = −L/2``. ``L``, ``r``, ``w``, the
  long-axis direction (pointing left, anterior and inferior) and the centre vary with the seed.
* 4 RV blood pool: an ellipsoid against the septum (on the LV's right-anterior side), minus the LV.
* 5 liver, 6 lungs: ellipsoids (liver in the right upper abdomen, one lung each side), clipped to
  the torso. Priority where shapes overlap: myocardium > LV blood > RV blood > liver > lungs.

Attenuation (cm⁻¹ at ``energy_kev``): lung (ICRU-44, 0.30 g/cm³) in the lungs, water elsewhere in
the torso, 0 outside. Bone is not modelled.

Tracer presets (relative activity concentration; representative values, not a fit to one study):

=============  =====  =========  =========  =====  =====  ==========
preset         myo    LV blood   RV blood   liver  lungs  background
=============  =====  =========  =========  =====  =====  ==========
``"mpi"``      1.0    0.10       0.10       0.60   0.04   0.08
``"rbc"``      IMBV   1.0        1.0        0.35   0.15   0.05
=============  =====  =========  =========  =====  =====  ==========

``"mpi"`` is a Tc-99m sestamibi/tetrofosmin perfusion scan; ``"rbc"`` is a Tc-99m labelled red
blood cell (blood-pool) scan, where the myocardium holds only its intramyocardial blood volume:
myocardium / blood pool = IMBV, drawn per sample from ``imbv`` (default U(0.10, 0.25)).

Perfusion defect (any preset): the myocardium within the angular sector
``|φ − defect_angle| ≤ π·defect_extent`` about the long axis, over its whole length, has its
uptake multiplied by ``1 − defect_severity``. ``φ`` is measured about the long axis from the
anterior wall (0°) towards the lateral wall (90°), inferior (180°) and septum (270°). Because the
truncated shell is symmetric about its axis, the sector holds the fraction ``defect_extent`` of
the myocardial volume (up to voxelisation; the voxelised fraction is in ``info``), and the mean
myocardial uptake drops by ``defect_extent · defect_severity``.
"""

from __future__ import annotations

import itertools
import math

import torch

from spectdl.errors import GeometryError, InputError
from spectdl.geometry import VoxelGrid
from spectdl.materials import mu_per_cm
from spectdl.phantoms._shapes import raw_draws
from spectdl.phantoms.base import (
    Phantom,
    check_batch_size,
    check_dtype,
    check_grid,
    check_number,
    check_range,
    grid_coords,
    sample_seeds,
)

LABELS = {
    "outside": 0,
    "background": 1,
    "myocardium": 2,
    "lv_blood": 3,
    "rv_blood": 4,
    "liver": 5,
    "lungs": 6,
}

PRESETS: dict[str, dict[str, float]] = {
    "mpi": {"myocardium": 1.0, "lv_blood": 0.10, "rv_blood": 0.10, "liver": 0.60, "lungs": 0.04,
            "background": 0.08},
    "rbc": {"myocardium": float("nan"), "lv_blood": 1.0, "rv_blood": 1.0, "liver": 0.35, "lungs": 0.15,
            "background": 0.05},
}

# Sampling ranges (mm, degrees). The raw draw layout below depends on the order of this table.
_RANGES = {
    "torso_a": (150.0, 175.0),  # lateral semi-axis
    "torso_b": (100.0, 120.0),  # antero-posterior semi-axis
    "lv_x": (20.0, 40.0),
    "lv_y": (15.0, 35.0),
    "lv_z": (0.0, 20.0),
    "lv_long": (40.0, 55.0),  # L, cavity semi-axis along the long axis
    "lv_short": (18.0, 27.0),  # r, cavity short-axis radius
    "lv_wall": (8.0, 13.0),  # w
    "azimuth": (35.0, 60.0),  # from +y (anterior) towards +x (left)
    "elevation": (15.0, 40.0),  # below the transverse plane
    "rv_width": (12.0, 20.0),
    "liver_scale": (0.9, 1.1),
    "lung_scale": (0.9, 1.1),
    "organ_dx": (-10.0, 10.0),
    "organ_dz": (-10.0, 10.0),
    "imbv": (0.0, 1.0),  # mapped onto the imbv argument's range
    "defect_angle": (0.0, 360.0),
}
_TORSO_MAX = (_RANGES["torso_a"][1], _RANGES["torso_b"][1])
_HEART_REACH_Z = 100.0


def cardiac(
    grid: VoxelGrid | None = None,
    batch_size: int = 1,
    *,
    tracer: str = "mpi",
    imbv: float | tuple[float, float] = (0.10, 0.25),
    uptake: dict[str, float] | None = None,
    defect_extent: float = 0.0,
    defect_severity: float = 0.5,
    defect_angle_deg: float | None = None,
    supersample: int = 1,
    seed: int | None = None,
    generator: torch.Generator | None = None,
    energy_kev: float = 140.0,
    device: torch.device | str | None = None,
    dtype: torch.dtype = torch.float32,
) -> Phantom:
    """A batch of random cardiac torso phantoms.

    Args:
        grid: 3-D grid, default ``VoxelGrid((64, 64, 64), 6.0)``; its x and y fields of view must
            hold the largest torso (350 × 240 mm) and its z field of view ±100 mm around the
            centre (the heart), else ``GeometryError``.
        batch_size: number of phantoms ``B``.
        tracer: ``"mpi"`` or ``"rbc"`` (table in the module docstring).
        imbv: for ``"rbc"``: myocardium / blood-pool concentration ratio, fixed or a range sampled
            uniformly per sample (recorded in ``info["imbv"]``).
        uptake: overrides of the preset's concentrations, by region name.
        defect_extent: fraction of the myocardium in the defect, in [0, 1] (0: no defect).
        defect_severity: fractional uptake reduction in the defect, in [0, 1].
        defect_angle_deg: centre of the defect about the long axis (0 anterior, 90 lateral,
            180 inferior, 270 septal); ``None`` draws it per sample.
        supersample: sub-samples per voxel edge (1 = voxel centres, exact labels).
        seed, generator: see :mod:`spectdl.phantoms.base`.
        energy_kev: photon energy of the attenuation map.

    Returns:
        :class:`Phantom` ``[B, 1, nx, ny, nz]``. ``info`` holds ``seeds``, ``uptake`` (region ->
        ``[B]`` concentrations), ``imbv [B]``, the sampled geometry (``lv_centre_mm [B, 3]``,
        ``lv_axis [B, 3]`` unit vector base -> apex, ``lv_long_mm``, ``lv_short_mm``,
        ``lv_wall_mm``, ...), ``defect_angle_deg [B]``, ``defect_mask`` (bool
        ``[B, 1, nx, ny, nz]``, voxel centres) and ``defect_fraction [B]`` (voxelised fraction of
        the myocardium in the defect).
    """
    grid = check_grid(VoxelGrid((64, 64, 64), 6.0) if grid is None else grid, 3)
    batch_size = check_batch_size(batch_size)
    dtype = check_dtype(dtype)
    if tracer not in PRESETS:
        raise InputError(f"tracer: unknown preset {tracer!r}; expected one of {sorted(PRESETS)}")
    imbv_lo, imbv_hi = check_range("imbv", imbv, 0, 1)
    extent = check_number("defect_extent", defect_extent, 0, 1)
    severity = check_number("defect_severity", defect_severity, 0, 1)
    if defect_angle_deg is not None:
        defect_angle_deg = check_number("defect_angle_deg", defect_angle_deg)
    if isinstance(supersample, bool) or int(supersample) != supersample or not (1 <= supersample <= 8):
        raise InputError(f"supersample: expected an integer in [1, 8], found {supersample!r}")
    supersample = int(supersample)
    overrides = dict(uptake or {})
    for name, value in overrides.items():
        if name not in PRESETS[tracer]:
            raise InputError(f"uptake: unknown region {name!r}; expected some of {sorted(PRESETS[tracer])}")
        check_number(f"uptake[{name!r}]", value, 0)
    half = [e / 2.0 for e in grid.extent_mm]
    for axis, need in ((0, _TORSO_MAX[0] + 5.0), (1, _TORSO_MAX[1] + 5.0), (2, _HEART_REACH_Z)):
        if half[axis] < need:
            raise GeometryError(
                f"grid: the cardiac torso needs a field of view of at least {2 * need:.0f} mm along "
                f"{'xyz'[axis]}; found {grid.extent_mm[axis]:.1f} mm (shape {grid.shape})"
            )
    mu_water = mu_per_cm("water", energy_kev)
    mu_lung = mu_per_cm("lung", energy_kev)

    seeds = sample_seeds(batch_size, seed, generator)
    u, _ = raw_draws(seeds, len(_RANGES), 0)
    p = {k: lo + (hi - lo) * u[:, i] for i, (k, (lo, hi)) in enumerate(_RANGES.items())}
    p["imbv"] = imbv_lo + (imbv_hi - imbv_lo) * u[:, list(_RANGES).index("imbv")]
    if defect_angle_deg is not None:
        p["defect_angle"] = torch.full((batch_size,), defect_angle_deg, dtype=torch.float64)

    conc = {k: torch.full((batch_size,), v, dtype=torch.float64) for k, v in PRESETS[tracer].items()}
    if tracer == "rbc":
        conc["myocardium"] = p["imbv"] * conc["lv_blood"]
    for name, value in overrides.items():
        conc[name] = torch.full((batch_size,), float(value), dtype=torch.float64)

    geo = _geometry(p)
    dev = torch.device(device) if device is not None else torch.device("cpu")
    # Tables indexed by label value (0 outside, then LABELS' order).
    names = ("background", "myocardium", "lv_blood", "rv_blood", "liver", "lungs")
    act_tab = torch.stack([torch.zeros(batch_size, dtype=torch.float64)] + [conc[n] for n in names], 1)
    mu_tab = torch.tensor([0.0] + [mu_water] * 5 + [mu_lung], dtype=torch.float64)
    act_tab = act_tab.to(device=dev, dtype=dtype)
    mu_tab = mu_tab.to(device=dev, dtype=dtype)
    geo_d = {k: v.to(device=dev, dtype=dtype) for k, v in geo.items()}
    keep = 1.0 - severity

    axes = grid_coords(grid, dev, dtype)
    n_sub = supersample**3
    activity = torch.zeros(batch_size, *grid.shape, device=dev, dtype=dtype)
    mu = torch.zeros_like(activity)
    counts = torch.zeros(batch_size, len(LABELS), *grid.shape, device=dev, dtype=torch.int16)
    offsets = [((k + 0.5) / supersample - 0.5) for k in range(supersample)]
    for ox, oy, oz in itertools.product(offsets, repeat=3):
        pts = [axes[0] + ox * grid.voxel_size_mm[0], axes[1] + oy * grid.voxel_size_mm[1],
               axes[2] + oz * grid.voxel_size_mm[2]]
        lab, in_defect = _label_points(pts, geo_d, extent)
        a = torch.gather(act_tab, 1, lab.reshape(batch_size, -1)).reshape(lab.shape)
        a = torch.where(in_defect & (lab == LABELS["myocardium"]), a * keep, a)
        activity += a
        mu += mu_tab[lab]
        counts.scatter_add_(1, lab[:, None], torch.ones_like(lab[:, None], dtype=torch.int16))
    activity /= n_sub
    mu /= n_sub
    labels = counts.argmax(1)

    centre_pts = axes
    lab_c, defect_c = _label_points(centre_pts, geo_d, extent)
    defect_mask = defect_c & (lab_c == LABELS["myocardium"])
    myo_count = (lab_c == LABELS["myocardium"]).reshape(batch_size, -1).sum(1).clamp_min(1)
    defect_fraction = defect_mask.reshape(batch_size, -1).sum(1).double() / myo_count.double()

    info = {
        "seeds": seeds,
        "tracer": tracer,
        "uptake": conc,
        "imbv": conc["myocardium"] / conc["lv_blood"],
        "torso_semi_axes_mm": torch.stack([p["torso_a"], p["torso_b"]], 1),
        "lv_centre_mm": geo["lv_centre"],
        "lv_axis": geo["d"],
        "lv_long_mm": p["lv_long"],
        "lv_short_mm": p["lv_short"],
        "lv_wall_mm": p["lv_wall"],
        "lv_azimuth_deg": p["azimuth"],
        "lv_elevation_deg": p["elevation"],
        "defect_extent": extent,
        "defect_severity": severity,
        "defect_angle_deg": p["defect_angle"],
        "defect_mask": defect_mask[:, None],
        "defect_fraction": defect_fraction.cpu(),
        "energy_kev": float(energy_kev),
    }
    return Phantom(activity[:, None], mu[:, None], grid, labels[:, None], dict(LABELS), info)


def _unit(v: torch.Tensor) -> torch.Tensor:
    return v / v.norm(dim=-1, keepdim=True)


def _geometry(p: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Centres, frames and semi-axes of every shape (float64, ``[B, ...]``)."""
    B = p["torso_a"].shape[0]
    az, el = torch.deg2rad(p["azimuth"]), torch.deg2rad(p["elevation"])
    d = torch.stack([torch.cos(el) * torch.sin(az), torch.cos(el) * torch.cos(az), -torch.sin(el)], 1)
    y_hat = torch.tensor([0.0, 1.0, 0.0], dtype=torch.float64).expand(B, 3)
    x_hat = torch.tensor([1.0, 0.0, 0.0], dtype=torch.float64).expand(B, 3)
    e_ant = _unit(y_hat - (y_hat * d).sum(1, keepdim=True) * d)
    e_lat = x_hat - (x_hat * d).sum(1, keepdim=True) * d
    e_lat = _unit(e_lat - (e_lat * e_ant).sum(1, keepdim=True) * e_ant)
    c = torch.stack([p["lv_x"], p["lv_y"], p["lv_z"]], 1)
    L, r, w = p["lv_long"], p["lv_short"], p["lv_wall"]
    r_out = r + w
    # RV: against the septum (−e_lat side), slightly towards the base and anterior.
    rv_c = c - e_lat * (r_out + 0.35 * p["rv_width"])[:, None] - d * (0.15 * L)[:, None] + e_ant * 8.0
    rv_axes = torch.stack([0.85 * (L + w), p["rv_width"] + 0.5 * r_out, r_out + 8.0], 1)
    ls, vs = p["liver_scale"], p["lung_scale"]
    liver_c = torch.stack([-55.0 + p["organ_dx"], torch.full_like(ls, 5.0), -95.0 + p["organ_dz"]], 1)
    liver_axes = torch.stack([110.0 * ls, 85.0 * ls, 75.0 * ls], 1)
    lung_axes = torch.stack([60.0 * vs, 75.0 * vs, 130.0 * vs], 1)
    lung_z = 60.0 + p["organ_dz"]
    lung_l = torch.stack([85.0 + 0.5 * p["organ_dx"], torch.full_like(vs, -10.0), lung_z], 1)
    lung_r = torch.stack([-85.0 + 0.5 * p["organ_dx"], torch.full_like(vs, -10.0), lung_z], 1)
    return {
        "torso": torch.stack([p["torso_a"], p["torso_b"]], 1),
        "lv_centre": c, "d": d, "e_ant": e_ant, "e_lat": e_lat,
        "lv_in": torch.stack([L, r], 1), "lv_out": torch.stack([L + w, r_out], 1), "base": -0.5 * L,
        "rv_centre": rv_c, "rv_axes": rv_axes,
        "liver_centre": liver_c, "liver_axes": liver_axes,
        "lung_l": lung_l, "lung_r": lung_r, "lung_axes": lung_axes,
        "defect_angle": torch.deg2rad(p["defect_angle"]),
    }


def _label_points(axes: list[torch.Tensor], g: dict[str, torch.Tensor], extent: float):
    """Labels ``[B, nx, ny, nz]`` (int64) and the defect sector mask at the points ``axes``."""
    B = g["torso"].shape[0]
    shape = (B, axes[0].numel(), axes[1].numel(), axes[2].numel())
    X = axes[0][None, :, None, None]
    Y = axes[1][None, None, :, None]
    Z = axes[2][None, None, None, :]

    def col(t, i):
        return t[:, i, None, None, None]

    def ellipsoid(centre, semi):
        return (((X - col(centre, 0)) / col(semi, 0)) ** 2 + ((Y - col(centre, 1)) / col(semi, 1)) ** 2
                + ((Z - col(centre, 2)) / col(semi, 2)) ** 2) <= 1.0

    torso = ((X / col(g["torso"], 0)) ** 2 + (Y / col(g["torso"], 1)) ** 2 <= 1.0).expand(shape)
    labels = torso.to(torch.int64)  # background = 1
    lungs = ellipsoid(g["lung_l"], g["lung_axes"]) | ellipsoid(g["lung_r"], g["lung_axes"])
    labels = torch.where(torso & lungs, LABELS["lungs"], labels)
    labels = torch.where(torso & ellipsoid(g["liver_centre"], g["liver_axes"]), LABELS["liver"], labels)

    def frame(centre, e):
        return ((X - col(centre, 0)) * col(e, 0) + (Y - col(centre, 1)) * col(e, 1)
                + (Z - col(centre, 2)) * col(e, 2))

    rv_u = frame(g["rv_centre"], g["d"])
    rv_l = frame(g["rv_centre"], g["e_lat"])
    rv_a = frame(g["rv_centre"], g["e_ant"])
    ax = g["rv_axes"]
    rv = (rv_u / col(ax, 0)) ** 2 + (rv_l / col(ax, 1)) ** 2 + (rv_a / col(ax, 2)) ** 2 <= 1.0
    labels = torch.where(rv, LABELS["rv_blood"], labels)

    lu = frame(g["lv_centre"], g["d"])
    la = frame(g["lv_centre"], g["e_ant"])
    ll = frame(g["lv_centre"], g["e_lat"])
    rho2 = la * la + ll * ll
    above_base = lu >= g["base"][:, None, None, None]
    cavity = above_base & ((lu / col(g["lv_in"], 0)) ** 2 + rho2 / col(g["lv_in"], 1) ** 2 <= 1.0)
    shell = above_base & ((lu / col(g["lv_out"], 0)) ** 2 + rho2 / col(g["lv_out"], 1) ** 2 <= 1.0)
    labels = torch.where(shell, LABELS["myocardium"], labels)
    labels = torch.where(cavity, LABELS["lv_blood"], labels)

    if extent > 0:
        phi = torch.atan2(ll, la)
        diff = torch.remainder(phi - g["defect_angle"][:, None, None, None] + math.pi, 2 * math.pi) - math.pi
        in_defect = diff.abs() <= math.pi * extent
    else:
        in_defect = torch.zeros(shape, dtype=torch.bool, device=labels.device)
    return labels, in_defect.expand(shape)
