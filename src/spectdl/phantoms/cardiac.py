"""A 3-D torso with a beating-heart-free left ventricle, for myocardial perfusion and blood-pool SPECT.

Frame: +x is the patient's left, +y anterior, +z superior (head); the torso's axis is the grid's z
axis. All shapes are analytic (ellipsoids and an elliptic cylinder), voxelised by their voxel
centres (``supersample=1``, so every voxel holds exactly one region's values and the label map is
exact) or by ``supersample³`` sub-voxel samples (partial volume; the label is the majority region).

Regions (label value)
---------------------
* 0 outside, 1 background (soft tissue of the torso, an elliptic cylinder over the whole grid z;
  its two semi-axes are multiplied by the per-sample ``body_scale``, the organs stay put)
* 2 myocardium: the left ventricle is a truncated ellipsoidal shell. With ``u`` the coordinate
  along the long axis from the ellipsoid centre towards the apex and ``ρ`` the distance from that
  axis, the cavity (3, LV blood pool) is ``(u/L)² + (ρ/r)² ≤ 1`` and the wall adds a thickness
  ``w`` to both semi-axes; both are cut by the base plane ``u = −L/2``. ``L``, ``r``, ``w``, the
  long-axis direction (pointing left, anterior and inferior) and the centre vary with the seed.
* 4 RV blood pool: an ellipsoid against the septum (on the LV's right-anterior side), minus the LV.
* 5 liver, 6 lungs: ellipsoids (liver in the right upper abdomen, one lung each side), clipped to
  the torso.
* 7 gut (only with ``gut=True``): two bowel loops (ellipsoids, semi-axes 45 × 35 × 25 mm and
  35 × 30 × 22 mm) in the left upper abdomen, below the heart and behind its inferior wall, left of
  the liver: the first centred at x ∈ [25, 55], y ∈ [−30, 10], z ∈ [−120, −85] mm (drawn per
  sample), the second 30 mm further left, 10 mm posterior and 20 mm lower; clipped to the torso.
* 8 breasts (in a sample with probability ``breast_probability``): two ellipsoids on the anterior
  chest wall at the heart's height, centred at x = ±(60–80) mm, y = (torso antero-posterior
  semi-axis) − 10 mm, z = 0–20 mm, semi-axes 55 × (45–65, the anterior extent) × 55 mm; they add
  soft tissue outside the torso (and take the torso's background where they overlap it).

Priority where shapes overlap: myocardium > LV blood > RV blood > liver > gut > lungs >
background; the breasts take only background and outside. ``LABELS`` always lists all nine
values, also when the gut or breasts are absent.

Attenuation (cm⁻¹ at ``energy_kev``): lung (ICRU-44, 0.30 g/cm³) in the lungs, water elsewhere in
the body (gut and breasts included), 0 outside. Bone is not modelled.

Tracer presets (relative activity concentration; representative values, not a fit to one study):

=============  =====  =========  =========  =====  =====  ==========  =====
preset         myo    LV blood   RV blood   liver  lungs  background  gut
=============  =====  =========  =========  =====  =====  ==========  =====
``"mpi"``      1.0    0.10       0.10       0.60   0.04   0.08        0.50
``"rbc"``      IMBV   1.0        1.0        0.35   0.15   0.05        0.10
=============  =====  =========  =========  =====  =====  ==========  =====

The breasts hold the background's concentration. ``"mpi"`` is a Tc-99m sestamibi/tetrofosmin
perfusion scan; ``"rbc"`` is a Tc-99m labelled red blood cell (blood-pool) scan, where the
myocardium holds only its intramyocardial blood volume: myocardium / blood pool = IMBV, drawn per
sample from ``imbv`` (default U(0.10, 0.25)). ``uptake`` fixes a region's concentration;
``uptake_ranges`` draws it per sample, uniformly in ``[lo, hi]`` (for ``"rbc"`` the myocardium
follows IMBV × the drawn LV blood concentration unless the myocardium has a range of its own).

Sector defect (any preset): the myocardium within the angular sector
``|φ − defect_angle| ≤ π·defect_extent`` about the long axis, over its whole length, has its
uptake multiplied by ``1 − defect_severity``. ``φ`` is measured about the long axis from the
anterior wall (0°) towards the lateral wall (90°), inferior (180°) and septum (270°). Because the
truncated shell is symmetric about its axis, the sector holds the fraction ``defect_extent`` of
the myocardial volume (up to voxelisation; the voxelised fraction is in ``info``), and the mean
myocardial uptake drops by ``defect_extent · defect_severity``.

Cardiac phase, heart-centred grids, contrast CT
-----------------------------------------------
``phase="es"`` gives the end-systolic heart of the same seed: the cavity's semi-axes (and its base
plane) scale by ``(1 − EF)^(1/3)``, so its volume is exactly ``1 − EF`` times the end-diastolic one,
and the wall thickens to the ``w'`` that keeps the myocardial volume (outer spheroid minus cavity
beyond the base, in closed form) equal to the end-diastolic one; the RV, placed from the LV's size,
follows it. ``EF`` is drawn per sample from ``ejection_fraction`` in both phases.
``centre_on_heart=True`` shifts the body so that the LV centre is the grid centre (a dedicated
cardiac camera's heart-centred field of view); with ``truncate=True`` the grid may be smaller than
the torso (the body is cut), and a truncated grid equals the centre of a larger heart-centred one
voxel for voxel when both share the voxel lattice. ``contrast_ct=True`` adds ``ct_hu``, a
contrast-enhanced CT-like image (:data:`CONTRAST_CT_HU`).

Coronary-territory defects (``risk_groups``)
--------------------------------------------
The AHA 17-segment model of :mod:`spectdl.phantoms.aha` is laid on the LV with the normalised
long-axis position

    ``t = (u + L/2) / (1.5 L)``,

so the base plane ``u = −L/2`` is ``t = 0``, the apical end of the cavity ``u = L`` is ``t = 1``
and the myocardium beyond it (up to the epicardial apex ``u = L + w``) is the apical cap
``t > 1`` (segment 17); ``φ = atan2(l, a)`` with ``a``, ``l`` the coordinates along the anterior
and lateral directions of the LV frame. These are the conventions of
:func:`spectdl.cardiac.orientation.lv_geometry_from_phantom` (base ``−L/2``, cavity end ``L``, apex
``L + w``). Each sample draws its group uniformly from ``risk_groups``, then (all from its seed)
the number of territories (uniformly over the group's range), which territories (without replacement from LAD, LCx, RCA) and, per
affected territory, an extent and a severity:

================  ===========  ==============  ==============
group             territories  severity        extent
================  ===========  ==============  ==============
``healthy``       0            –               –
``low``           1            U(0.25, 0.40)   U(0.3, 0.5)
``intermediate``  1–2          U(0.40, 0.60)   U(0.4, 0.7)
``high``          1–2          U(0.55, 0.75)   U(0.6, 1.0)
================  ===========  ==============  ==============

(``RISK_GROUPS`` holds this table.) The ranges aim the groups' summed stress scores at the clinical
bands (low 4–8, intermediate 9–13, high > 13; :mod:`spectdl.cardiac.scores`): a 60° sector over the
whole LV (about a sixth of it) at half uptake scores about 8 on blurred phantoms, a quarter at
70 % about 19. A territory's defect is its myocardium (by the AHA segment of
each point, :data:`spectdl.phantoms.aha.TERRITORIES`) with ``t ≥ 1 − extent``: it starts at the
apex and reaches towards the base, the whole territory at extent 1. Segment 17 (the apical cap)
belongs to the LAD, so only LAD defects hold the cap. The uptake there is multiplied by
``1 − severity``; a sector defect, if also asked for, multiplies on top.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Mapping, Sequence

import torch

from spectdl.errors import GeometryError, InputError
from spectdl.geometry import VoxelGrid
from spectdl.materials import mu_per_cm
from spectdl.phantoms import aha
from spectdl.phantoms._shapes import raw_draws_with_extra
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
    "gut": 7,
    "breasts": 8,
}

PRESETS: dict[str, dict[str, float]] = {
    "mpi": {"myocardium": 1.0, "lv_blood": 0.10, "rv_blood": 0.10, "liver": 0.60, "lungs": 0.04,
            "background": 0.08, "gut": 0.50},
    "rbc": {"myocardium": float("nan"), "lv_blood": 1.0, "rv_blood": 1.0, "liver": 0.35, "lungs": 0.15,
            "background": 0.05, "gut": 0.10},
}

#: Coronary-territory defects per risk group (module docstring): ``territories`` is the inclusive
#: range of the number of territories affected, ``severity`` (fractional uptake reduction) and
#: ``extent`` (``t_start = 1 − extent``) the ranges each affected territory draws from uniformly.
RISK_GROUPS: dict[str, dict[str, tuple]] = {
    "healthy": {"territories": (0, 0), "severity": (0.0, 0.0), "extent": (0.0, 0.0)},
    "low": {"territories": (1, 1), "severity": (0.25, 0.40), "extent": (0.3, 0.5)},
    "intermediate": {"territories": (1, 2), "severity": (0.40, 0.60), "extent": (0.4, 0.7)},
    "high": {"territories": (1, 2), "severity": (0.55, 0.75), "extent": (0.6, 1.0)},
}

#: Territory order of the ``[B, 3]`` territory entries of ``info``.
TERRITORY_ORDER = tuple(aha.TERRITORIES)  # ("LAD", "LCx", "RCA")

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

# Regions whose concentration uptake_ranges may draw, in the order of their raw draws.
_UPTAKE_ORDER = ("background", "myocardium", "lv_blood", "rv_blood", "liver", "lungs", "gut")
# The second block of raw U(0, 1) draws (raw_draws_with_extra), drawn for every sample whatever
# the options, so that turning one option on changes no other parameter. Append only.
_EXTRA = (
    ("risk_group", "n_territories")
    + tuple(f"order_{t}" for t in TERRITORY_ORDER)
    + tuple(f"severity_{t}" for t in TERRITORY_ORDER)
    + tuple(f"extent_{t}" for t in TERRITORY_ORDER)
    + ("gut_x", "gut_y", "gut_z", "body_scale", "breasts", "breast_x", "breast_extent", "breast_z")
    + tuple(f"uptake_{r}" for r in _UPTAKE_ORDER)
    + ("ejection_fraction",)
)
_GUT_RANGES = {"gut_x": (25.0, 55.0), "gut_y": (-30.0, 10.0), "gut_z": (-120.0, -85.0)}
_GUT_AXES = ((45.0, 35.0, 25.0), (35.0, 30.0, 22.0))
_GUT_SECOND_OFFSET = (30.0, -10.0, -20.0)
_BREAST_RANGES = {"breast_x": (60.0, 80.0), "breast_extent": (45.0, 65.0), "breast_z": (0.0, 20.0)}
_BREAST_SEMI = 55.0  # lateral and cranio-caudal semi-axes
_BREAST_INSET = 10.0  # centre this far behind the torso's anterior surface
_BODY_SCALE_LIMITS = (0.5, 2.0)


def cardiac(
    grid: VoxelGrid | None = None,
    batch_size: int = 1,
    *,
    tracer: str = "mpi",
    imbv: float | tuple[float, float] = (0.10, 0.25),
    uptake: dict[str, float] | None = None,
    uptake_ranges: Mapping[str, tuple[float, float]] | None = None,
    defect_extent: float = 0.0,
    defect_severity: float = 0.5,
    defect_angle_deg: float | None = None,
    risk_groups: Sequence[str] | None = None,
    gut: bool = False,
    body_scale: float | tuple[float, float] = 1.0,
    breast_probability: float = 0.0,
    phase: str = "ed",
    ejection_fraction: float | tuple[float, float] = (0.5, 0.7),
    centre_on_heart: bool = False,
    truncate: bool = False,
    contrast_ct: bool = False,
    supersample: int = 1,
    seed: int | None = None,
    generator: torch.Generator | None = None,
    energy_kev: float = 140.0,
    device: torch.device | str | None = None,
    dtype: torch.dtype = torch.float32,
) -> Phantom:
    """A batch of random cardiac torso phantoms.

    With the defaults of the options added later (``uptake_ranges``, ``risk_groups``, ``gut``,
    ``body_scale``, ``breast_probability``) the samples are bit for bit those of earlier versions.

    Args:
        grid: 3-D grid, default ``VoxelGrid((64, 64, 64), 6.0)``; its x and y fields of view must
            hold the largest torso (350 × 240 mm, times the largest ``body_scale``; along y plus
            the breasts' largest anterior extent, 2 × 65 mm, when ``breast_probability > 0``) with
            5 mm to spare on each side, and its z field of view ±100 mm around the centre (the
            heart), else ``GeometryError``.
        batch_size: number of phantoms ``B``.
        tracer: ``"mpi"`` or ``"rbc"`` (table in the module docstring).
        imbv: for ``"rbc"``: myocardium / blood-pool concentration ratio, fixed or a range sampled
            uniformly per sample (recorded in ``info["imbv"]``).
        uptake: overrides of the preset's concentrations, by region name.
        uptake_ranges: region name -> ``(lo, hi)``: the region's concentration is drawn per sample
            uniformly in ``[lo, hi]`` (relative to the myocardium's 1.0 for ``"mpi"``), instead of
            the preset's. A region may not be in both ``uptake`` and ``uptake_ranges``.
        defect_extent: fraction of the myocardium in the sector defect, in [0, 1] (0: none).
        defect_severity: fractional uptake reduction in the sector defect, in [0, 1].
        defect_angle_deg: centre of the sector defect about the long axis (0 anterior, 90 lateral,
            180 inferior, 270 septal); ``None`` draws it per sample.
        risk_groups: names from :data:`RISK_GROUPS`; each sample draws one uniformly (a name
            given twice is drawn twice as often) and gets its coronary-territory defects (module
            docstring). ``None``: no territorial defects (every sample ``"healthy"``).
        gut: add the bowel loops (label 7).
        body_scale: factor on the torso's two semi-axes, fixed or a ``(lo, hi)`` range sampled
            uniformly per sample, within [0.5, 2]; the organs keep their places and sizes.
        breast_probability: probability, in [0, 1], that a sample has breasts (label 8).
        phase: ``"ed"`` (end-diastole, the sampled LV) or ``"es"`` (end-systole: the cavity's
            semi-axes times ``(1 − EF)^(1/3)``, so its volume is ``(1 − EF)`` times the ED one, and
            the wall thickened so that the myocardium keeps its ED volume; module docstring).
        ejection_fraction: ``EF``, fixed or a range drawn per sample (recorded in both phases, so
            that an ED and an ES phantom of one seed are one heart).
        centre_on_heart: put the LV centre at the grid centre (a heart-centred acquisition, as a
            dedicated cardiac camera makes): the whole body is shifted by ``−lv_centre``;
            ``info["lv_centre_mm"]`` is then 0 and the FOV check allows for the shift.
        truncate: skip the check that the torso fits the grid across (x, y): the body is cut by
            the grid. Projections of a truncated phantom miss the activity outside it; simulate a
            larger grid and crop for that.
        contrast_ct: also make a contrast-enhanced CT-like image in HU (``ct_hu``; blood pools
            bright, :data:`CONTRAST_CT_HU`), averaged over the sub-samples like μ.
        supersample: sub-samples per voxel edge (1 = voxel centres, exact labels).
        seed, generator: see :mod:`spectdl.phantoms.base`.
        energy_kev: photon energy of the attenuation map.

    Returns:
        :class:`Phantom` ``[B, 1, nx, ny, nz]``. ``info`` holds ``seeds``, ``uptake`` (region ->
        ``[B]`` concentrations, ``gut`` included), ``imbv [B]``, the sampled geometry
        (``torso_semi_axes_mm [B, 2]`` (scaled), ``body_scale [B]``, ``lv_centre_mm [B, 3]``,
        ``lv_axis [B, 3]`` unit vector base -> apex, ``lv_long_mm``, ``lv_short_mm``,
        ``lv_wall_mm``, ...), ``breasts`` (bool ``[B]``), ``defect_angle_deg [B]``,
        ``defect_mask`` (bool ``[B, 1, nx, ny, nz]``, voxel centres in the sector or a
        territorial defect) and ``defect_fraction [B]`` (voxelised fraction of the myocardium in
        ``defect_mask``); and for the territorial defects ``risk_group`` (list of ``B`` names),
        ``risk_group_index`` (int64 ``[B]``, the group's position in :data:`RISK_GROUPS`, so that
        a tensor-only record keeps it),
        ``territory_defect`` (bool ``[B, 3]``, order :data:`TERRITORY_ORDER` = LAD, LCx, RCA),
        ``territory_severity`` and ``territory_extent`` (float64 ``[B, 3]``, 0 where none),
        ``segment_map`` (int8 ``[B, 1, nx, ny, nz]``: the AHA segment 1..17 of every myocardium
        voxel centre, 0 elsewhere), ``segment_defect_fraction`` (float64 ``[B, 17]``: fraction
        of each segment's voxels in a territorial defect) and ``segment_severity`` (float64
        ``[B, 17]``: mean fractional uptake reduction over each segment's voxels, sector and
        territorial defects together; 0 for a healthy or empty segment).
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
    ranges = _check_uptake_ranges(uptake_ranges, tracer, overrides)
    groups = _check_risk_groups(risk_groups)
    if not isinstance(gut, bool):
        raise InputError(f"gut: expected true or false, found {gut!r}")
    scale_lo, scale_hi = check_range("body_scale", body_scale, *_BODY_SCALE_LIMITS)
    breast_p = check_number("breast_probability", breast_probability, 0, 1)
    if phase not in ("ed", "es"):
        raise InputError(f"phase: expected 'ed' (end-diastole) or 'es' (end-systole), found {phase!r}")
    ef_lo, ef_hi = check_range("ejection_fraction", ejection_fraction, 0.05, 0.9)
    for name, flag in (("centre_on_heart", centre_on_heart), ("truncate", truncate), ("contrast_ct", contrast_ct)):
        if not isinstance(flag, bool):
            raise InputError(f"{name}: expected true or false, found {flag!r}")
    half = [e / 2.0 for e in grid.extent_mm]
    breast_reach = _BREAST_RANGES["breast_extent"][1] if breast_p > 0 else 0.0
    shift = (_RANGES["lv_x"][1], _RANGES["lv_y"][1]) if centre_on_heart else (0.0, 0.0)
    needs = (_TORSO_MAX[0] * scale_hi + shift[0] + 5.0, _TORSO_MAX[1] * scale_hi + breast_reach + shift[1] + 5.0,
             _HEART_REACH_Z)
    for axis, need in enumerate(needs):
        if truncate and axis < 2:
            continue
        if half[axis] < need:
            raise GeometryError(
                f"grid: the cardiac torso needs a field of view of at least {2 * need:.0f} mm along "
                f"{'xyz'[axis]}; found {grid.extent_mm[axis]:.1f} mm (shape {grid.shape})"
            )
    mu_water = mu_per_cm("water", energy_kev)
    mu_lung = mu_per_cm("lung", energy_kev)

    seeds = sample_seeds(batch_size, seed, generator)
    u, _, v = raw_draws_with_extra(seeds, len(_RANGES), 0, len(_EXTRA))
    p = {k: lo + (hi - lo) * u[:, i] for i, (k, (lo, hi)) in enumerate(_RANGES.items())}
    p["imbv"] = imbv_lo + (imbv_hi - imbv_lo) * u[:, list(_RANGES).index("imbv")]
    if defect_angle_deg is not None:
        p["defect_angle"] = torch.full((batch_size,), defect_angle_deg, dtype=torch.float64)
    extra = {k: v[:, i] for i, k in enumerate(_EXTRA)}
    scale = scale_lo + (scale_hi - scale_lo) * extra["body_scale"]
    p["torso_a"] = p["torso_a"] * scale
    p["torso_b"] = p["torso_b"] * scale

    conc = {k: torch.full((batch_size,), v, dtype=torch.float64) for k, v in PRESETS[tracer].items()}
    for name, (lo, hi) in ranges.items():
        conc[name] = lo + (hi - lo) * extra[f"uptake_{name}"]
    if tracer == "rbc" and "myocardium" not in ranges:
        conc["myocardium"] = p["imbv"] * conc["lv_blood"]
    for name, value in overrides.items():
        conc[name] = torch.full((batch_size,), float(value), dtype=torch.float64)

    ef = ef_lo + (ef_hi - ef_lo) * extra["ejection_fraction"]
    if phase == "es":
        p["lv_long"], p["lv_short"], p["lv_wall"] = _end_systole(p["lv_long"], p["lv_short"], p["lv_wall"], ef)
    group_names, terr_on, terr_sev, terr_ext = _territories(groups, extra, batch_size)
    breasts_on = extra["breasts"] < breast_p
    geo = _geometry(p)
    geo.update(_extra_geometry(p, extra))
    dev = torch.device(device) if device is not None else torch.device("cpu")
    # Tables indexed by label value (0 outside, then LABELS' order; the breasts hold background).
    names = ("background", "myocardium", "lv_blood", "rv_blood", "liver", "lungs", "gut", "background")
    act_tab = torch.stack([torch.zeros(batch_size, dtype=torch.float64)] + [conc[n] for n in names], 1)
    mu_tab = torch.tensor([0.0] + [mu_water] * 5 + [mu_lung, mu_water, mu_water], dtype=torch.float64)
    act_tab = act_tab.to(device=dev, dtype=dtype)
    mu_tab = mu_tab.to(device=dev, dtype=dtype)
    geo_d = {k: v.to(device=dev, dtype=dtype) for k, v in geo.items()}
    keep = 1.0 - severity
    territorial = bool(terr_on.any())
    # Per-sample tables indexed by territory (LAD, LCx, RCA, none): defect start t and kept uptake.
    t_start = torch.where(terr_on, 1.0 - terr_ext, torch.full_like(terr_ext, math.inf))
    t_start = torch.cat([t_start, torch.full((batch_size, 1), math.inf, dtype=torch.float64)], 1)
    terr_keep = torch.cat([1.0 - terr_sev, torch.ones(batch_size, 1, dtype=torch.float64)], 1)
    terr_keep_d = terr_keep.to(device=dev, dtype=dtype)
    offset = torch.stack([p["lv_x"], p["lv_y"], p["lv_z"]], 1) if centre_on_heart else None
    opts = {
        "offset": None if offset is None else offset.to(device=dev, dtype=dtype),
        "gut": gut,
        "breasts": breasts_on.to(dev) if bool(breasts_on.any()) else None,
        "t_start": t_start.to(device=dev, dtype=dtype),
    }

    axes = grid_coords(grid, dev, dtype)
    n_sub = supersample**3
    activity = torch.zeros(batch_size, *grid.shape, device=dev, dtype=dtype)
    mu = torch.zeros_like(activity)
    hu_tab = torch.tensor([CONTRAST_CT_HU[n] for n in LABELS], device=dev, dtype=dtype) if contrast_ct else None
    ct = torch.zeros_like(activity) if contrast_ct else None
    # Majority label over the sub-samples (one sample per voxel: its label).
    counts = (torch.zeros(batch_size, len(LABELS), *grid.shape, device=dev, dtype=torch.int16)
              if n_sub > 1 else None)
    offsets = [((k + 0.5) / supersample - 0.5) for k in range(supersample)]
    for ox, oy, oz in itertools.product(offsets, repeat=3):
        pts = [axes[0] + ox * grid.voxel_size_mm[0], axes[1] + oy * grid.voxel_size_mm[1],
               axes[2] + oz * grid.voxel_size_mm[2]]
        lab, in_defect, _, terr = _label_points(pts, geo_d, extent, opts, territorial)
        a = torch.gather(act_tab, 1, lab.reshape(batch_size, -1)).reshape(lab.shape)
        a = torch.where(in_defect & (lab == LABELS["myocardium"]), a * keep, a)
        if territorial:
            a = a * torch.gather(terr_keep_d, 1, terr.reshape(batch_size, -1)).reshape(lab.shape)
        activity += a
        mu += mu_tab[lab]
        if ct is not None:
            ct += hu_tab[lab]
        if counts is not None:
            counts.scatter_add_(1, lab[:, None], torch.ones_like(lab[:, None], dtype=torch.int16))
    activity /= n_sub
    mu /= n_sub
    if ct is not None:
        ct /= n_sub
    labels = counts.argmax(1) if counts is not None else lab

    centre_pts = axes
    lab_c, defect_c, seg_c, terr_c = _label_points(centre_pts, geo_d, extent, opts, True)
    myo_c = lab_c == LABELS["myocardium"]
    in_terr_c = terr_c < len(TERRITORY_ORDER)
    mult_c = torch.gather(terr_keep.to(dev), 1, terr_c.reshape(batch_size, -1)).reshape(terr_c.shape)
    defect_mask = (defect_c | in_terr_c) & myo_c
    myo_count = myo_c.reshape(batch_size, -1).sum(1).clamp_min(1)
    defect_fraction = defect_mask.reshape(batch_size, -1).sum(1).double() / myo_count.double()
    # Per-segment statistics over the myocardium voxel centres (segment 0: not myocardium).
    sector_c = torch.where(defect_c & myo_c, keep, 1.0).to(torch.float64)
    reduction = torch.where(myo_c, 1.0 - sector_c * mult_c, 0.0)
    flat_seg = seg_c.reshape(batch_size, -1)
    bins = aha.N_SEGMENTS + 1

    def per_segment(values: torch.Tensor) -> torch.Tensor:
        out = torch.zeros(batch_size, bins, dtype=torch.float64, device=dev)
        return out.scatter_add_(1, flat_seg, values.reshape(batch_size, -1).double())[:, 1:].cpu()

    seg_count = per_segment(torch.ones_like(flat_seg, dtype=torch.float64))
    denom = seg_count.clamp_min(1.0)
    segment_defect_fraction = per_segment(in_terr_c & myo_c) / denom
    segment_severity = per_segment(reduction) / denom

    info = {
        "seeds": seeds,
        "tracer": tracer,
        "uptake": conc,
        "imbv": conc["myocardium"] / conc["lv_blood"],
        "torso_semi_axes_mm": torch.stack([p["torso_a"], p["torso_b"]], 1),
        "body_scale": scale,
        "lv_centre_mm": geo["lv_centre"] - (0.0 if offset is None else offset),
        "lv_axis": geo["d"],
        "lv_long_mm": p["lv_long"],
        "lv_short_mm": p["lv_short"],
        "lv_wall_mm": p["lv_wall"],
        "phase": phase,
        "ejection_fraction": ef,
        "centred_on_heart": bool(centre_on_heart),
        "lv_azimuth_deg": p["azimuth"],
        "lv_elevation_deg": p["elevation"],
        "breasts": breasts_on,
        "defect_extent": extent,
        "defect_severity": severity,
        "defect_angle_deg": p["defect_angle"],
        "defect_mask": defect_mask[:, None],
        "defect_fraction": defect_fraction.cpu(),
        "risk_group": group_names,
        "risk_group_index": torch.tensor([list(RISK_GROUPS).index(n) for n in group_names],
                                         dtype=torch.int64),
        "territory_defect": terr_on,
        "territory_severity": terr_sev,
        "territory_extent": terr_ext,
        "segment_map": seg_c.to(torch.int8)[:, None],
        "segment_defect_fraction": segment_defect_fraction,
        "segment_severity": segment_severity,
        "energy_kev": float(energy_kev),
    }
    return Phantom(activity[:, None], mu[:, None], grid, labels[:, None], dict(LABELS), info,
                   ct_hu=None if ct is None else ct[:, None])


def _check_uptake_ranges(uptake_ranges, tracer: str, overrides: dict) -> dict[str, tuple[float, float]]:
    if uptake_ranges is None:
        return {}
    if not isinstance(uptake_ranges, Mapping):
        raise InputError(f"uptake_ranges: expected a mapping region -> (low, high), found {uptake_ranges!r}")
    out = {}
    for name, value in uptake_ranges.items():
        if name not in PRESETS[tracer]:
            raise InputError(
                f"uptake_ranges: unknown region {name!r}; expected some of {sorted(PRESETS[tracer])}")
        if name in overrides:
            raise InputError(f"uptake_ranges: region {name!r} is also in uptake; give it in one of them")
        out[name] = check_range(f"uptake_ranges[{name!r}]", value, 0)
    return out


def _check_risk_groups(risk_groups) -> list[str] | None:
    if risk_groups is None:
        return None
    if isinstance(risk_groups, str) or not isinstance(risk_groups, Sequence):
        raise InputError(
            f"risk_groups: expected a list of group names from {list(RISK_GROUPS)}, found {risk_groups!r}")
    groups = list(risk_groups)
    if not groups:
        raise InputError(f"risk_groups: expected at least one group from {list(RISK_GROUPS)}, found []")
    for name in groups:
        if not isinstance(name, str) or name not in RISK_GROUPS:
            raise InputError(f"risk_groups: unknown group {name!r}; expected some of {list(RISK_GROUPS)}")
    return groups


def _pick(u: torch.Tensor, n: int) -> int:
    """An integer in [0, n) from a U(0, 1) draw."""
    return min(int(float(u) * n), n - 1)


def _territories(groups: list[str] | None, extra: dict[str, torch.Tensor], B: int):
    """Risk group names and the ``[B, 3]`` territory tables (on, severity, extent) from the raw draws."""
    on = torch.zeros(B, 3, dtype=torch.bool)
    sev = torch.zeros(B, 3, dtype=torch.float64)
    ext = torch.zeros(B, 3, dtype=torch.float64)
    if groups is None:
        return ["healthy"] * B, on, sev, ext
    names = []
    order_u = torch.stack([extra[f"order_{t}"] for t in TERRITORY_ORDER], 1)
    for b in range(B):
        name = groups[_pick(extra["risk_group"][b], len(groups))]
        names.append(name)
        spec = RISK_GROUPS[name]
        n_lo, n_hi = spec["territories"]
        n = n_lo + _pick(extra["n_territories"][b], n_hi - n_lo + 1)
        # The n territories with the smallest order draws: n of 3 without replacement.
        for k in torch.argsort(order_u[b], stable=True)[:n].tolist():
            t = TERRITORY_ORDER[k]
            (s_lo, s_hi), (e_lo, e_hi) = spec["severity"], spec["extent"]
            on[b, k] = True
            sev[b, k] = s_lo + (s_hi - s_lo) * extra[f"severity_{t}"][b]
            ext[b, k] = e_lo + (e_hi - e_lo) * extra[f"extent_{t}"][b]
    return names, on, sev, ext


def _extra_geometry(p: dict[str, torch.Tensor], extra: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Gut loops and breasts (float64, ``[B, ...]``), from the second block of raw draws."""
    B = p["torso_a"].shape[0]

    def draw(table, key):
        lo, hi = table[key]
        return lo + (hi - lo) * extra[key]

    gut1 = torch.stack([draw(_GUT_RANGES, k) for k in ("gut_x", "gut_y", "gut_z")], 1)
    gut2 = gut1 + torch.tensor(_GUT_SECOND_OFFSET, dtype=torch.float64)
    bx, bz = draw(_BREAST_RANGES, "breast_x"), draw(_BREAST_RANGES, "breast_z")
    by = p["torso_b"] - _BREAST_INSET
    semi = torch.full((B,), _BREAST_SEMI, dtype=torch.float64)
    return {
        "gut1_centre": gut1, "gut1_axes": torch.tensor(_GUT_AXES[0], dtype=torch.float64).expand(B, 3),
        "gut2_centre": gut2, "gut2_axes": torch.tensor(_GUT_AXES[1], dtype=torch.float64).expand(B, 3),
        "breast_l": torch.stack([bx, by, bz], 1), "breast_r": torch.stack([-bx, by, bz], 1),
        "breast_axes": torch.stack([semi, draw(_BREAST_RANGES, "breast_extent"), semi], 1),
    }


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


# Territory index (TERRITORY_ORDER; 3 = none) of each AHA segment 0..17 (0: not myocardium).
_SEGMENT_TERRITORY = tuple(
    [len(TERRITORY_ORDER)]
    + [TERRITORY_ORDER.index(aha.territory_of_segment()[s]) for s in range(1, aha.N_SEGMENTS + 1)]
)


#: HU of each region in the contrast-enhanced CT-like image (``contrast_ct=True``): iodinated blood
#: pools bright, enhanced myocardium and liver, air-filled lungs; representative values.
CONTRAST_CT_HU = {"outside": -1000.0, "background": 40.0, "myocardium": 110.0, "lv_blood": 350.0,
                  "rv_blood": 350.0, "liver": 90.0, "lungs": -750.0, "gut": 30.0, "breasts": 0.0}


def _truncated_volume(a: torch.Tensor, b: torch.Tensor, base: torch.Tensor) -> torch.Tensor:
    """Volume of the spheroid ``(u/a)² + (ρ/b)² ≤ 1`` beyond the plane ``u = base`` (``|base| < a``):
    ``π b² [(a − base) − (a³ − base³)/(3a²)]``."""
    return math.pi * b * b * ((a - base) - (a**3 - base**3) / (3 * a * a))


def _end_systole(L: torch.Tensor, r: torch.Tensor, w: torch.Tensor, ef: torch.Tensor):
    """ES semi-axes and wall: the cavity scaled by ``(1 − EF)^(1/3)`` and the wall ``w'`` found
    (bisection) so that the myocardial volume, outer minus cavity beyond the base ``u = −L/2``,
    equals the ED one."""
    def myo(L_, r_, w_):
        base = -0.5 * L_
        return _truncated_volume(L_ + w_, r_ + w_, base) - _truncated_volume(L_, r_, base)

    target = myo(L, r, w)
    s = (1.0 - ef) ** (1.0 / 3.0)
    L2, r2 = L * s, r * s
    lo, hi = w.clone(), 4.0 * w
    for _ in range(60):
        mid = 0.5 * (lo + hi)
        small = myo(L2, r2, mid) < target
        lo, hi = torch.where(small, mid, lo), torch.where(small, hi, mid)
    return L2, r2, 0.5 * (lo + hi)


def _label_points(axes: list[torch.Tensor], g: dict[str, torch.Tensor], extent: float,
                  opts: dict | None = None, want_aha: bool = False):
    """At the points ``axes``: labels ``[B, nx, ny, nz]`` (int64), the sector defect mask, and
    (with ``want_aha``, else ``None``) the AHA segment of the myocardium points (int64, 0 elsewhere)
    and the index of the territorial defect they lie in (int64, 3 = none)."""
    opts = opts or {}
    B = g["torso"].shape[0]
    shape = (B, axes[0].numel(), axes[1].numel(), axes[2].numel())
    X = axes[0][None, :, None, None]
    Y = axes[1][None, None, :, None]
    Z = axes[2][None, None, None, :]
    if opts.get("offset") is not None:  # a heart-centred grid: evaluate the body at p + lv_centre
        off = opts["offset"]
        X, Y, Z = (X + off[:, 0, None, None, None], Y + off[:, 1, None, None, None], Z + off[:, 2, None, None, None])

    def col(t, i):
        return t[:, i, None, None, None]

    def ellipsoid(centre, semi):
        return (((X - col(centre, 0)) / col(semi, 0)) ** 2 + ((Y - col(centre, 1)) / col(semi, 1)) ** 2
                + ((Z - col(centre, 2)) / col(semi, 2)) ** 2) <= 1.0

    torso = ((X / col(g["torso"], 0)) ** 2 + (Y / col(g["torso"], 1)) ** 2 <= 1.0).expand(shape)
    labels = torso.to(torch.int64)  # background = 1
    lungs = ellipsoid(g["lung_l"], g["lung_axes"]) | ellipsoid(g["lung_r"], g["lung_axes"])
    labels = torch.where(torso & lungs, LABELS["lungs"], labels)
    if opts.get("gut"):
        gut = ellipsoid(g["gut1_centre"], g["gut1_axes"]) | ellipsoid(g["gut2_centre"], g["gut2_axes"])
        labels = torch.where(torso & gut, LABELS["gut"], labels)
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

    breasts = opts.get("breasts")
    if breasts is not None:
        br = ellipsoid(g["breast_l"], g["breast_axes"]) | ellipsoid(g["breast_r"], g["breast_axes"])
        br = br & breasts[:, None, None, None] & (labels <= LABELS["background"])
        labels = torch.where(br, LABELS["breasts"], labels)

    if extent > 0:
        phi = torch.atan2(ll, la)
        diff = torch.remainder(phi - g["defect_angle"][:, None, None, None] + math.pi, 2 * math.pi) - math.pi
        in_defect = diff.abs() <= math.pi * extent
    else:
        in_defect = torch.zeros(shape, dtype=torch.bool, device=labels.device)
    if not want_aha:
        return labels, in_defect.expand(shape), None, None

    # AHA coordinates (module docstring): t = (u + L/2) / (1.5 L), φ = atan2(l, a).
    L = col(g["lv_in"], 0)
    t = (lu + 0.5 * L) / (1.5 * L)
    seg = aha.segment_of(t, torch.rad2deg(torch.atan2(ll, la)))
    seg = torch.where(labels == LABELS["myocardium"], seg, 0).expand(shape)
    table = torch.tensor(_SEGMENT_TERRITORY, dtype=torch.int64, device=labels.device)
    terr = table[seg]
    if "t_start" in opts:
        start = torch.gather(opts["t_start"], 1, terr.reshape(B, -1)).reshape(shape)
        terr = torch.where(t >= start, terr, len(TERRITORY_ORDER))
    else:
        terr = torch.full_like(terr, len(TERRITORY_ORDER))
    return labels, in_defect.expand(shape), seg, terr
