"""A 3-D bone-scan torso (Tc-99m MDP/HDP): lower thorax to proximal femora, with bone lesions.

Frame and units
---------------
Spatial order (x, y, z): +x is the patient's left, +y anterior, +z superior (head); all sizes in mm,
``z = 0`` at the grid's centre, voxel ``i`` of ``n`` centred at ``(i − (n − 1)/2)·size``. The body
axis is the grid's z axis.

The craniocaudal layout is compact: the lower thorax (lung bases, ribs 12 to 9, the lower
sternum), the lumbar spine, the pelvis and the hips fit ``z ∈ [−118, +118]`` (a 24 cm SPECT field of
view). Axial distances between landmarks are therefore about 0.65–0.8 of adult ones (vertebral pitch
24 mm lumbar and 21 mm thoracic instead of about 37 and 27 mm), while the cross-sectional sizes are
adult. The grid must hold that range and the largest body (|x| ≤ 200, |y| ≤ 127), else
``GeometryError``; on taller grids the spine, ribs, sternum, lungs and femoral shafts continue and the
body keeps its end cross-sections (no arms, no separate thighs).

Anatomy (per-sample scales ``w``, ``d`` ∈ U(0.87, 1.13) of the body's width and depth)
----------------------------------------------------------------------------------------
* Body: elliptic cross-sections with half-width ``a(z)·w`` and half-depth ``b(z)·d``, linear between
  the key levels ``(z, a, b)`` = (−130, 170, 100), (−70, 175, 105), (−20, 160, 102), (40, 145, 100),
  (120, 150, 100), held beyond them. The back is the plane ``y_back = −100·d`` (each ellipse is
  centred at ``y = (b(z) − 100)·d``) and the skeleton hangs from it, rigid in y; lateral bone
  positions scale with ``s = 1 + (w − 1)/2``.
* Spine: vertebrae L5 … L1 (centres z = −22 + 24k) and T12 … T1 (z = 97 + 21k) along the curve
  ``x(z) = A₁·sin(πt) + A₂·sin(2πt)``, ``t = (z + 37)/237`` on [0, 1] (scoliosis, A₁ ∈ U(−15, 15),
  A₂ ∈ U(−6, 6) mm), and ``y(z) = y_back + 62 + 8τ + L·sin(πτ)``, ``τ = (z + 37)/134`` on [0, 1]
  (lordosis depth L ∈ U(8, 24) mm, flat above T12). Each vertebra is tilted to the curve's tangent:
  a body (elliptic cylinder, semi-axes 22 × 16 mm, height 18 mm lumbar; 17 × 14, 16 mm thoracic), a
  neural arch (elliptic ring around the canal), transverse processes (ellipsoid, 2 × 40·s mm
  lumbar, 2 × 30·s thoracic) and a spinous process (its tip B + 37 mm behind the body's centre).
* Sacrum: ellipsoid (semi-axes 48·s × 13 × 32.5 mm) from S1 (0, y_back + 60, −40) tilted back to
  (0, y_back + 35, −100).
* Pelvis: the iliac wings are one ellipsoidal shell 10 mm thick, outer semi-axes
  (130·s, 70, 99) about (0, y_back + 110, −10), kept from z = −81 up to the iliac crest (arched:
  z = −10 at |x| = 104·s, about 17 mm lower at the sacro-iliac joints), for y ≤ y_back + 135 and
  |x| ≥ 32·s; acetabula (spherical shells R + 2 … R + 11 over the
  superomedial hemisphere of each femoral head), superior and inferior pubic rami and ischia (round
  bars, radius 8–10 mm) meeting at the symphysis (0, y_back + 150, −99).
* Femora: heads (spheres of radius R ∈ U(21, 25) mm at (±88·s, y_back + 110, −93)), necks and
  shafts (round bars, radius 14 mm) and greater trochanters (ellipsoids).
* Ribs (one per thoracic vertebra, both sides): tubes of elliptic cross-section (8 mm radially ×
  14 mm tall) along the ellipse ``(a(z)·w − 20, b(z)·d − 22)`` about the body centre, from the
  angle φ₀ where |x| = 45·s (a short bar joins the transverse process) to φ₁ = 1.1, 1.5, 2.1, 2.3,
  2.45 rad for ribs 12 … 8 and 2.6 rad above (φ from the back, π at the front), descending by
  60·(φ − φ₀)/(π − φ₀) mm from the head.
* Sternum: elliptic bar 30·s × 12 mm, 28 mm inside the front skin, from z = 100 upwards.
* Kidneys: ellipsoids (semi-axes 26 × 18 × 40 mm, upper poles tilted 15° medially) at
  (±68·s, y_back + 68, z), z = 60 (left) and 48 (right) + U(−6, 6) each.
* Bladder: ellipsoid with semi-axes (1.25, 0.8, 0.95)·k, volume ``V = (4/3)π·0.95·k³`` drawn from
  ``bladder_volume_ml``; its base at z = −93 and its front at y_back + 148, so it grows upwards and
  backwards as it fills.
* Lungs: ellipsoids (semi-axes 46·s × 55 × 130 mm) at (±68·s, y_back + 90, 222): their bases
  (z ≥ 92) in the upper part.

Where regions overlap, later entries win: body < lung < kidney < bladder < bone.

Activity (relative concentration, soft tissue = 1) and attenuation
-----------------------------------------------------------------
===============  =========================  ======================  ====================
label (value)    activity                   material of μ           default (per sample)
===============  =========================  ======================  ====================
outside (0)      0                          air (μ = 0)
soft_tissue (1)  1                          water
bone (2)         ``bone_uptake``            cortical bone, ICRU-44  U(4, 8)
kidney (3)       ``kidney_uptake``          water                   U(2, 4)
bladder (4)      ``bladder_uptake``         water (urine)           U(10, 30)
lung (5)         ``lung_uptake``            lung, 0.30 g/cm³        0.3
lesion (6)       hot ``k``·bone, cold       unchanged (the tissue   k ∈ U(2, 5)
                 bone/``k``                 the lesion lies in)
===============  =========================  ======================  ====================

μ (cm⁻¹) at ``energy_kev`` from :func:`spectdl.materials.mu_per_cm`; ``Phantom.ct_hu`` is
:func:`spectdl.io.ct.mu_to_ct_hu` of it (120 kVp: water 0 HU, lung about −700, bone about +1590,
air −1000).

Lesions
-------
The number per sample is uniform in ``lesions = (low, high)``; each is cold with probability
``cold_lesion_fraction``. A lesion is an axis-aligned ellipsoid (semi-axes within
``lesion_diameter_mm / 2``, each ±25 % about a common radius) centred inside a bone chosen with
weights spine 0.38, pelvis 0.27, ribs 0.17, femora 0.10, sternum 0.08 (a point of a vertebral body
or pedicle, iliac wing, sacrum, acetabular roof, rib, femoral head, neck or trochanter, sternum)
inside the field of view. A hot lesion has ``k × bone_uptake`` over its whole ellipsoid inside the
body ("in or on bone"); a cold one ``bone_uptake / k`` over the bone inside it. Lesions do not change
μ. Later lesions win where two overlap. The anatomy drawn from a seed does not depend on the lesion
arguments (``lesions=0`` gives the same body without lesions); lesion positions are kept 8 mm inside
the grid's axial field of view, so they depend on it.

Rendering and labels
--------------------
Each voxel is split into ``s`` sub-samples per axis, ``s = clamp(ceil(size/2 mm), 1, 4)``; every
sub-sample takes one region by the priority above (and a lesion, if any), and a voxel holds the
fractions of its sub-samples: ``activity = Σ_r f_r·a_r``, ``μ = Σ_r f_r·μ_r``. A voxel's label is the
region with the most sub-samples, or ``lesion`` where the voxel is in ``lesion_mask``; only voxels with
no sub-sample in the body are 0, so every voxel with activity > 0 has a label > 0.
``info["lesion_mask"]`` (bool ``[B, 1, *grid]``) marks the voxels at least half filled by lesions,
plus, for every lesion, the voxel it fills most (so that lesions smaller than a voxel are not lost);
``info["lesion_fraction"]`` is the lesion fraction of each voxel.
"""

from __future__ import annotations

import math
from typing import Callable

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
    check_range,
    sample_seeds,
)

LABELS = {"outside": 0, "soft_tissue": 1, "bone": 2, "kidney": 3, "bladder": 4, "lung": 5, "lesion": 6}
_TISSUES = ("soft_tissue", "bone", "kidney", "bladder", "lung")  # sub-sample codes = label values 1..5
_SOFT, _BONE, _KIDNEY, _BLADDER, _LUNG = (LABELS[t] for t in _TISSUES)

LESION_SITES = ("spine", "pelvis", "rib", "femur", "sternum")
_SITE_WEIGHTS = (0.38, 0.27, 0.17, 0.10, 0.08)

# Body key levels (z, half-width a, half-depth b), mm, before the per-sample scales.
_BODY_LEVELS = ((-130.0, 170.0, 100.0), (-70.0, 175.0, 105.0), (-20.0, 160.0, 102.0),
                (40.0, 145.0, 100.0), (120.0, 150.0, 100.0))
_BACK_MM = 100.0
_SCALE = (0.87, 1.13)
# Half fields of view the grid must hold: the widest body (175·1.13 mm) and the deepest
# (back at −113, front at −113 + 2·105·1.13 = 124.3 mm) with a 2 mm margin, and the hips to the kidneys.
_NEED_HALF_MM = (200.0, 127.0, 118.0)

_Z_FH = -93.0  # femoral head centres
_Z_CREST = -10.0  # iliac crest
_Z_S1 = -37.0  # top of the sacrum, start of the spine curve
_Z_T12 = 97.0
_Z_CURVE_TOP = 200.0
_Z_LUNG_BASE = 92.0
_Z_XIPHOID = 100.0
_RIB_DROP_MM = 60.0
_RIB_END = {12: 1.1, 11: 1.5, 10: 2.1, 9: 2.3, 8: 2.45}

# (name, z centre, body semi-axes (lateral, AP), body half-height, transverse process reach, lumbar)
_VERTEBRAE = tuple(
    [(f"L{5 - k}", -22.0 + 24.0 * k, (22.0, 16.0), 9.0, 40.0) for k in range(5)]
    + [(f"T{12 - k}", _Z_T12 + 21.0 * k, (17.0, 14.0), 8.0, 30.0) for k in range(12)]
)

# Uniform draws per sample, in this order (the layout of the raw draws).
_GLOBAL = ("width", "depth", "lateral_1", "lateral_2", "lordosis", "bone", "kidney", "bladder",
           "bladder_volume", "kidney_dz_left", "kidney_dz_right", "femoral_head", "n_lesions")
_PER_LESION = ("site", "which", "part", "u1", "u2", "u3", "size", "semi_x", "semi_y", "semi_z",
               "contrast", "cold")

Mask = Callable[[torch.Tensor, torch.Tensor, torch.Tensor], torch.Tensor]
Shape = tuple[tuple[float, float, float], tuple[float, float, float], Mask]  # box lo, box hi (mm), mask


def bone_torso(
    grid: VoxelGrid | None = None,
    batch_size: int = 1,
    *,
    lesions: int | tuple[int, int] = (0, 6),
    cold_lesion_fraction: float = 0.2,
    lesion_contrast: float | tuple[float, float] = (2.0, 5.0),
    lesion_diameter_mm: float | tuple[float, float] = (6.0, 20.0),
    bone_uptake: float | tuple[float, float] = (4.0, 8.0),
    kidney_uptake: float | tuple[float, float] = (2.0, 4.0),
    bladder_uptake: float | tuple[float, float] = (10.0, 30.0),
    lung_uptake: float = 0.3,
    bladder_volume_ml: float | tuple[float, float] = (50.0, 450.0),
    seed: int | None = None,
    generator: torch.Generator | None = None,
    energy_kev: float = 140.0,
    device: torch.device | str | None = None,
    dtype: torch.dtype = torch.float32,
) -> Phantom:
    """A batch of random bone-scan torso phantoms (see the module docstring for the anatomy).

    Args:
        grid: 3-D grid, default ``VoxelGrid((128, 128, 64), 4.0)`` (512 × 512 × 256 mm). It must span
            at least 400 × 254 × 236 mm (x, y, z) about its centre, else ``GeometryError``.
        batch_size: number of phantoms ``B``.
        lesions: number of lesions per sample, uniform in ``[low, high]`` (integers ≥ 0, or one).
        cold_lesion_fraction: probability that a lesion is cold, in [0, 1].
        lesion_contrast: range of ``k`` (≥ 1): hot lesions hold ``k ×`` the bone concentration,
            cold ones ``1/k ×``.
        lesion_diameter_mm: range of the lesions' diameters (each axis), mm.
        bone_uptake, kidney_uptake, bladder_uptake: ranges (or values) of those concentrations
            relative to soft tissue, drawn per sample.
        lung_uptake: lung concentration relative to soft tissue.
        bladder_volume_ml: range of the bladder's volume (its filling), mL.
        seed, generator: see :mod:`spectdl.phantoms.base`.
        energy_kev: photon energy of ``mu_per_cm`` (and of the HU conversion).
        device, dtype: of the returned tensors (the shapes are evaluated in float32 on ``device``).

    Returns:
        :class:`Phantom` with ``activity``, ``mu_per_cm`` (cm⁻¹), ``ct_hu`` (HU) ``[B, 1, nx, ny, nz]``
        in ``dtype``, ``labels`` (int64, table in the module docstring) and ``info``: ``seeds``;
        ``lesion_mask`` (bool) and ``lesion_fraction`` ``[B, 1, nx, ny, nz]``; per lesion, padded to
        ``L = lesions[1]`` (NaN, ``False`` or −1 past ``n_lesions [B]``): ``lesion_centre_mm
        [B, L, 3]``, ``lesion_semi_axes_mm [B, L, 3]``, ``lesion_contrast [B, L]`` (lesion / bone
        concentration: ``k`` or ``1/k``), ``lesion_activity [B, L]``, ``lesion_hot [B, L]`` (bool),
        ``lesion_site [B, L]`` (index into ``lesion_site_names``); the sampled anatomy:
        ``width_scale``, ``depth_scale``, ``spine_lateral_mm [B, 2]`` (A₁, A₂), ``lordosis_mm``,
        ``vertebra_names``, ``vertebra_centres_mm [B, V, 3]``, ``kidney_centres_mm [B, 2, 3]``
        (left, right), ``bladder_volume_ml``, ``bladder_centre_mm [B, 3]``,
        ``bladder_semi_axes_mm [B, 3]``, ``femoral_head_centres_mm [B, 2, 3]``,
        ``femoral_head_radius_mm``; the concentrations ``uptake`` (region → ``[B]``) and
        ``energy_kev``, ``ct_kvp``.
    """
    grid = check_grid(VoxelGrid((128, 128, 64), 4.0) if grid is None else grid, 3)
    batch_size = check_batch_size(batch_size)
    dtype = check_dtype(dtype)
    n_lo, n_hi = check_range("lesions", lesions, 0, 64)
    if n_lo != int(n_lo) or n_hi != int(n_hi):
        raise InputError(f"lesions: expected integers, found {lesions!r}")
    n_lo, n_hi = int(n_lo), int(n_hi)
    cold_fraction = check_number("cold_lesion_fraction", cold_lesion_fraction, 0, 1)
    k_lo, k_hi = check_range("lesion_contrast", lesion_contrast, 1.0)
    d_lo, d_hi = check_range("lesion_diameter_mm", lesion_diameter_mm, 0)
    if d_lo <= 0:
        raise InputError(f"lesion_diameter_mm: expected diameters > 0, found {lesion_diameter_mm!r}")
    ranges = {
        "bone": check_range("bone_uptake", bone_uptake, 0),
        "kidney": check_range("kidney_uptake", kidney_uptake, 0),
        "bladder": check_range("bladder_uptake", bladder_uptake, 0),
    }
    lung_c = check_number("lung_uptake", lung_uptake, 0)
    v_lo, v_hi = check_range("bladder_volume_ml", bladder_volume_ml, 1.0, 1500.0)
    mu_tab = [0.0, mu_per_cm("water", energy_kev), mu_per_cm("bone", energy_kev),
              mu_per_cm("water", energy_kev), mu_per_cm("water", energy_kev), mu_per_cm("lung", energy_kev)]
    for axis in range(3):
        if grid.extent_mm[axis] / 2.0 < _NEED_HALF_MM[axis]:
            raise GeometryError(
                f"grid: the bone torso needs a field of view of at least {2 * _NEED_HALF_MM[axis]:.0f} mm "
                f"along {'xyz'[axis]} (centred); found {grid.extent_mm[axis]:.1f} mm (shape {grid.shape}, "
                f"voxel {grid.voxel_size_mm} mm)"
            )

    seeds = sample_seeds(batch_size, seed, generator)
    u, _ = raw_draws(seeds, len(_GLOBAL) + n_hi * len(_PER_LESION), 0)
    g = {k: u[:, i] for i, k in enumerate(_GLOBAL)}
    lesion_raw = u[:, len(_GLOBAL):].reshape(batch_size, n_hi, len(_PER_LESION))

    def span(lo_hi, t):
        return lo_hi[0] + (lo_hi[1] - lo_hi[0]) * t

    p = {
        "width": span(_SCALE, g["width"]),
        "depth": span(_SCALE, g["depth"]),
        "lateral_1": span((-15.0, 15.0), g["lateral_1"]),
        "lateral_2": span((-6.0, 6.0), g["lateral_2"]),
        "lordosis": span((8.0, 24.0), g["lordosis"]),
        "bone": span(ranges["bone"], g["bone"]),
        "kidney": span(ranges["kidney"], g["kidney"]),
        "bladder": span(ranges["bladder"], g["bladder"]),
        "bladder_volume": span((v_lo, v_hi), g["bladder_volume"]),
        "kidney_dz_left": span((-6.0, 6.0), g["kidney_dz_left"]),
        "kidney_dz_right": span((-6.0, 6.0), g["kidney_dz_right"]),
        "femoral_head": span((21.0, 25.0), g["femoral_head"]),
    }
    count = (n_lo + torch.floor(g["n_lesions"] * (n_hi - n_lo + 1))).clamp(max=n_hi).long()

    dev = torch.device(device) if device is not None else torch.device("cpu")
    canvas = _Canvas(grid, dev)
    z_half = grid.extent_mm[2] / 2.0
    outputs, per_lesion, anatomy = [], [], []
    for b in range(batch_size):
        pb = {k: float(v[b]) for k, v in p.items()}
        anat = _Anatomy(pb, -z_half, z_half)
        act_tab = [0.0, 1.0, pb["bone"], pb["kidney"], pb["bladder"], lung_c]
        les = _place_lesions(anat, lesion_raw[b], int(count[b]), (k_lo, k_hi), (d_lo, d_hi), cold_fraction,
                             -z_half + 8.0, z_half - 8.0)
        outputs.append(canvas.render(anat, les, act_tab, mu_tab, dtype))
        per_lesion.append(les)
        anatomy.append(anat)

    activity, mu, labels, lesion_mask, lesion_fraction = (torch.stack(t)[:, None] for t in zip(*outputs))
    ct_hu = mu_to_ct_hu(mu, energy_kev)

    f64 = torch.float64

    def lesion_field(key, pad, dtype=f64, width=None):
        """``[B, L]`` (or ``[B, L, width]``) of one lesion property, padded with ``pad``."""
        rows = [[les[j][key] if j < len(les) else pad for j in range(n_hi)] for les in per_lesion]
        return torch.tensor(rows, dtype=dtype).reshape(batch_size, n_hi, *(() if width is None else (width,)))

    nan, nan3 = float("nan"), [float("nan")] * 3
    info = {
        "seeds": seeds,
        "lesion_mask": lesion_mask,
        "lesion_fraction": lesion_fraction,
        "n_lesions": count,
        "lesion_centre_mm": lesion_field("centre", nan3, width=3),
        "lesion_semi_axes_mm": lesion_field("semi", nan3, width=3),
        "lesion_contrast": lesion_field("contrast", nan),
        "lesion_activity": lesion_field("activity", nan),
        "lesion_hot": lesion_field("hot", False, torch.bool),
        "lesion_site": lesion_field("site", -1, torch.int64),
        "lesion_site_names": LESION_SITES,
        "width_scale": p["width"],
        "depth_scale": p["depth"],
        "spine_lateral_mm": torch.stack([p["lateral_1"], p["lateral_2"]], 1),
        "lordosis_mm": p["lordosis"],
        "vertebra_names": tuple(v[0] for v in anatomy[0].vertebrae),
        "vertebra_centres_mm": torch.tensor([[v[1] for v in a.vertebrae] for a in anatomy], dtype=f64),
        "kidney_centres_mm": torch.tensor([a.kidney_centres for a in anatomy], dtype=f64),
        "bladder_volume_ml": p["bladder_volume"],
        "bladder_centre_mm": torch.tensor([a.bladder_centre for a in anatomy], dtype=f64),
        "bladder_semi_axes_mm": torch.tensor([a.bladder_semi for a in anatomy], dtype=f64),
        "femoral_head_centres_mm": torch.tensor([a.femoral_heads for a in anatomy], dtype=f64),
        "femoral_head_radius_mm": p["femoral_head"],
        "uptake": {"soft_tissue": torch.ones(batch_size, dtype=f64), "bone": p["bone"],
                   "kidney": p["kidney"], "bladder": p["bladder"],
                   "lung": torch.full((batch_size,), lung_c, dtype=f64)},
        "energy_kev": float(energy_kev),
        "ct_kvp": 120.0,
    }
    return Phantom(activity, mu, grid, labels, dict(LABELS), info, ct_hu=ct_hu)


# ---------------------------------------------------------------------------------------------
# Anatomy of one sample (plain floats, mm)


def _level(z: float) -> tuple[float, float]:
    """Base half-width and half-depth of the body at ``z`` (linear between the key levels)."""
    zs = [lv[0] for lv in _BODY_LEVELS]
    if z <= zs[0]:
        return _BODY_LEVELS[0][1], _BODY_LEVELS[0][2]
    for (z0, a0, b0), (z1, a1, b1) in zip(_BODY_LEVELS[:-1], _BODY_LEVELS[1:]):
        if z <= z1:
            t = (z - z0) / (z1 - z0)
            return a0 + t * (a1 - a0), b0 + t * (b1 - b0)
    return _BODY_LEVELS[-1][1], _BODY_LEVELS[-1][2]


def _levels_t(z: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """:func:`_level` for a 1-D tensor of z."""
    zp = torch.tensor([lv[0] for lv in _BODY_LEVELS], dtype=z.dtype, device=z.device)
    out = []
    for col in (1, 2):
        fp = torch.tensor([lv[col] for lv in _BODY_LEVELS], dtype=z.dtype, device=z.device)
        idx = torch.searchsorted(zp, z.contiguous()).clamp(1, len(zp) - 1)
        t = ((z - zp[idx - 1]) / (zp[idx] - zp[idx - 1])).clamp(0.0, 1.0)
        out.append(fp[idx - 1] + t * (fp[idx] - fp[idx - 1]))
    return out[0], out[1]


def _unit(v):
    n = math.sqrt(sum(c * c for c in v))
    return [c / n for c in v]


def _cross(a, b):
    return [a[1] * b[2] - a[2] * b[1], a[2] * b[0] - a[0] * b[2], a[0] * b[1] - a[1] * b[0]]


def _add(c, *terms):
    """``c + Σ s·v`` for ``(s, v)`` pairs."""
    out = list(c)
    for s, v in terms:
        out = [o + s * x for o, x in zip(out, v)]
    return out


class _Anatomy:
    """Every solid of one sample, by tissue, and the landmarks lesions are placed on."""

    def __init__(self, p: dict[str, float], z_lo: float, z_hi: float):
        self.p = p
        w, d = p["width"], p["depth"]
        s = 1.0 + 0.5 * (w - 1.0)
        self.w, self.d, self.s = w, d, s
        self.y_back = -_BACK_MM * d
        yb = self.y_back
        self.z_range = (z_lo, z_hi)
        bone: list[Shape] = []
        self.ribs = []  # (side, a, b, y centre, z of the head, φ₀, φ₁)

        # Spine
        self.vertebrae = []  # (name, centre, frame, (A, B), h)
        for name, zc, (A, B), h, reach in _VERTEBRAE:
            if zc - 40.0 > z_hi or zc + 40.0 < z_lo:
                continue
            c = self.spine_point(zc)
            frame = self.spine_frame(zc)
            e1, e2, _ = frame
            self.vertebrae.append((name, c, frame, (A, B), h))
            bone.append(_elliptic_cylinder(c, frame, A, B, h))
            arch = _add(c, (-(B + 8.0), e2))
            outer, hole = ((17.0, 13.0), (10.0, 7.0)) if name[0] == "L" else ((14.0, 11.0), (8.0, 6.0))
            bone.append(_elliptic_cylinder(arch, frame, *outer, 0.9 * h, hole=hole, u2_max=6.0))
            bone.append(_ellipsoid(arch, (reach * s, 6.0, 5.0), frame))
            bone.append(_ellipsoid(_add(c, (-(B + 27.0), e2)), (4.0, 10.0, 0.8 * h), frame))
            if name[0] == "T":
                self._ribs(bone, int(name[1:]), c, e1, e2, B, reach)

        # Sacrum
        top, apex = [0.0, yb + 60.0, -40.0], [0.0, yb + 35.0, -100.0]
        e3 = _unit([t - a for t, a in zip(top, apex)])
        e1 = [1.0, 0.0, 0.0]
        self.sacrum = ([(t + a) / 2 for t, a in zip(top, apex)], (e1, _cross(e3, e1), e3))
        bone.append(_ellipsoid(self.sacrum[0], (48.0 * s, 13.0, 32.5), self.sacrum[1]))

        # Iliac wings, acetabula, pubis, ischia, femora
        self.bowl = (0.0, yb + 110.0, _Z_CREST, 130.0 * s, 70.0, 99.0)
        bone.append(_bowl(self.bowl, 10.0, _Z_FH + 12.0, yb + 135.0, 32.0 * s))
        R = p["femoral_head"]
        self.R = R
        self.femoral_heads, self.femur = [], []
        for side in (1.0, -1.0):  # left, right
            H = [side * 88.0 * s, yb + 110.0, _Z_FH]
            N = [side * 118.0 * s, yb + 105.0, _Z_FH - 19.0]
            T = [side * 126.0 * s, yb + 100.0, _Z_FH - 15.0]
            n = _unit([-side * 0.55, 0.0, 0.83])
            self.femoral_heads.append(H)
            self.femur.append((H, N, T, n))
            bone.append(_ellipsoid(H, (R, R, R)))
            bone.append(_cup(H, R + 2.0, R + 11.0, n))
            bone.append(_capsule(H, N, 14.0))
            bone.append(_ellipsoid(T, (13.0, 18.0, 20.0)))
            bone.append(_capsule(N, [side * 110.0 * s, yb + 112.0, _Z_FH - 330.0], 14.0))
            symphysis = [side * 9.0, yb + 150.0, _Z_FH - 6.0]
            bone.append(_capsule([side * 68.0 * s, yb + 128.0, _Z_FH - 7.0], symphysis, 9.0))
            ischial = [side * 50.0 * s, yb + 95.0, _Z_FH - 20.0]
            bone.append(_capsule([side * 9.0, yb + 150.0, _Z_FH - 10.0], ischial, 8.0))
            bone.append(_capsule(ischial, [side * 80.0 * s, yb + 100.0, _Z_FH - 2.0], 10.0))

        # Sternum, 28 mm inside the front skin of the thorax
        _, b_th = _level(120.0)
        self.sternum_y = yb + 2.0 * b_th * d - 28.0
        sternum = [0.0, self.sternum_y, _Z_XIPHOID + 150.0]
        bone.append(_elliptic_cylinder(sternum, _IDENTITY, 15.0 * s, 6.0, 150.0))
        self.bone = bone

        # Organs
        self.kidney_centres, kidneys = [], []
        for side, z0, dz in ((1.0, 60.0, p["kidney_dz_left"]), (-1.0, 48.0, p["kidney_dz_right"])):
            c = [side * 68.0 * s, yb + 68.0, z0 + dz]
            sn, cs = math.sin(math.radians(15.0)), math.cos(math.radians(15.0))
            frame = ([cs, 0.0, side * sn], [0.0, 1.0, 0.0], [-side * sn, 0.0, cs])
            self.kidney_centres.append(c)
            kidneys.append(_ellipsoid(c, (26.0, 18.0, 40.0), frame))
        self.kidneys = kidneys
        k = (p["bladder_volume"] * 1000.0 / (4.0 / 3.0 * math.pi * 0.95)) ** (1.0 / 3.0)
        self.bladder_semi = [1.25 * k, 0.8 * k, 0.95 * k]
        self.bladder_centre = [0.0, yb + 148.0 - 0.8 * k, _Z_FH + 0.95 * k]
        self.bladders = [_ellipsoid(self.bladder_centre, self.bladder_semi)]
        self.lungs = [_ellipsoid([side * 68.0 * s, yb + 90.0, _Z_LUNG_BASE + 130.0], (46.0 * s, 55.0, 130.0))
                      for side in (1.0, -1.0)]

    # Spine curve: x(z), y(z) and the vertebra frames along it.
    def spine_point(self, z: float) -> list[float]:
        t = min(max((z - _Z_S1) / (_Z_CURVE_TOP - _Z_S1), 0.0), 1.0)
        x = self.p["lateral_1"] * math.sin(math.pi * t) + self.p["lateral_2"] * math.sin(2 * math.pi * t)
        tau = min(max((z - _Z_S1) / (_Z_T12 - _Z_S1), 0.0), 1.0)
        y = self.y_back + 62.0 + 8.0 * tau + self.p["lordosis"] * math.sin(math.pi * tau)
        return [x, y, z]

    def spine_frame(self, z: float):
        """(lateral e1, anterior e2, tangent e3): e3 along the curve, e2 as close to +y as allows."""
        a, b = self.spine_point(z + 4.0), self.spine_point(z - 4.0)
        e3 = _unit([a[0] - b[0], a[1] - b[1], 8.0])
        e2 = _unit([-e3[1] * e3[0], 1.0 - e3[1] * e3[1], -e3[1] * e3[2]])
        return (_cross(e2, e3), e2, e3)

    def _ribs(self, bone: list[Shape], n: int, c, e1, e2, B: float, reach: float) -> None:
        z_head = c[2]
        a0, b0 = _level(z_head)
        a_r, b_r = a0 * self.w - 20.0, b0 * self.d - 22.0
        y_c = (b0 - _BACK_MM) * self.d
        phi0 = math.asin(min(45.0 * self.s / a_r, 0.9))
        phi1 = _RIB_END.get(n, 2.6)
        z_end = z_head - _RIB_DROP_MM * (phi1 - phi0) / (math.pi - phi0)
        if z_end - 10.0 > self.z_range[1] or z_head + 10.0 < self.z_range[0]:
            return
        for side in (1.0, -1.0):
            rib = (side, a_r, b_r, y_c, z_head, phi0, phi1)
            self.ribs.append(rib)
            bone.append(_rib(rib, 4.0, 7.0))
            tip = _add(c, (side * 0.75 * reach * self.s, e1), (-(B + 8.0), e2))
            bone.append(_capsule(tip, self.rib_point(rib, phi0), 5.0))

    @staticmethod
    def rib_point(rib, phi: float) -> list[float]:
        side, a_r, b_r, y_c, z_head, phi0, _ = rib
        return [side * a_r * math.sin(phi), y_c - b_r * math.cos(phi),
                z_head - _RIB_DROP_MM * (phi - phi0) / (math.pi - phi0)]

    # Lesion sites
    def lesion_centre(self, site: int, which: float, part: float, u: tuple[float, float, float],
                      z_lo: float, z_hi: float) -> tuple[int, list[float]]:
        """A point inside the bone of ``site`` (falls back to the spine when none is in view)."""
        side = 1.0 if which < 0.5 else -1.0
        if LESION_SITES[site] == "rib":
            cands = []
            for rib in self.ribs:
                _, _, _, _, z_head, phi0, phi1 = rib
                # φ where the rib's centre line is inside [z_lo, z_hi] (z falls linearly with φ)
                lo = max(phi0, phi0 + (z_head - z_hi) * (math.pi - phi0) / _RIB_DROP_MM)
                hi = min(phi1, phi0 + (z_head - z_lo) * (math.pi - phi0) / _RIB_DROP_MM)
                if hi > lo:
                    cands.append((rib, lo, hi))
            if cands:
                rib, lo, hi = cands[min(int(which * len(cands)), len(cands) - 1)]
                return site, self.rib_point(rib, lo + u[0] * (hi - lo))
            site = 0
        if LESION_SITES[site] == "sternum":
            lo, hi = max(_Z_XIPHOID + 6.0, z_lo), min(z_hi, _Z_XIPHOID + 294.0)
            if hi > lo:
                return site, [0.0, self.sternum_y, lo + u[0] * (hi - lo)]
            site = 0
        if LESION_SITES[site] == "pelvis":
            if part < 0.55:
                _, yc, zc, A, Bp, C = self.bowl
                # below the crest's lowest point over the wing (about −27 mm at |x| = 40)
                z = _Z_FH + 22.0 + u[0] * (_Z_CREST - 25.0 - _Z_FH - 22.0)
                f = math.sqrt(max(1.0 - ((z - zc) / (C - 5.0)) ** 2, 0.0))
                psi = 0.45 + 1.45 * u[1]
                y = min(yc - (Bp - 5.0) * f * math.cos(psi), self.y_back + 130.0)
                return site, [side * (A - 5.0) * f * math.sin(psi), y, z]
            if part < 0.8:
                c, (e1, _, e3) = self.sacrum
                return site, _add(c, (0.6 * 48.0 * self.s * (2 * u[0] - 1), e1),
                                  (0.6 * 32.5 * (2 * u[1] - 1), e3))
            H, _, _, n = self.femur[0 if side > 0 else 1]
            return site, _add(H, (self.R + 6.5, n))
        if LESION_SITES[site] == "femur":
            H, N, T, _ = self.femur[0 if side > 0 else 1]
            if part < 0.55:
                return site, [h + 0.5 * self.R * (2 * v - 1) for h, v in zip(H, u)]
            if part < 0.8:
                return site, [(h + m) / 2 for h, m in zip(H, N)]
            return site, list(T)
        # spine: a vertebral body or a pedicle of a vertebra in view
        cands = [v for v in self.vertebrae if z_lo <= v[1][2] <= z_hi] or self.vertebrae
        _, c, (e1, e2, e3), (A, B), h = cands[min(int(which * len(cands)), len(cands) - 1)]
        if part < 0.7:
            return 0, _add(c, (0.6 * A * (2 * u[0] - 1), e1), (0.6 * B * (2 * u[1] - 1), e2),
                           (0.6 * h * (2 * u[2] - 1), e3))
        return 0, _add(c, (11.0 if u[0] > 0.5 else -11.0, e1), (-(B + 5.0), e2),
                       (0.5 * h * (2 * u[2] - 1), e3))


def _place_lesions(anat: _Anatomy, raw: torch.Tensor, count: int, contrast, diameter, cold_fraction: float,
                   z_lo: float, z_hi: float) -> list[dict]:
    cum = [sum(_SITE_WEIGHTS[: i + 1]) for i in range(len(_SITE_WEIGHTS))]
    out = []
    for j in range(count):
        r = dict(zip(_PER_LESION, raw[j].tolist()))
        site = next((i for i, c in enumerate(cum) if r["site"] < c), len(cum) - 1)
        site, centre = anat.lesion_centre(site, r["which"], r["part"], (r["u1"], r["u2"], r["u3"]),
                                          z_lo, z_hi)
        radius = (diameter[0] + (diameter[1] - diameter[0]) * r["size"]) / 2.0
        semi = [min(max(radius * (1.0 + 0.25 * (2 * r[k] - 1)), diameter[0] / 2.0), diameter[1] / 2.0)
                for k in ("semi_x", "semi_y", "semi_z")]
        k = contrast[0] + (contrast[1] - contrast[0]) * r["contrast"]
        hot = not (r["cold"] < cold_fraction)
        ratio = k if hot else 1.0 / k
        out.append({"centre": centre, "semi": semi, "contrast": ratio, "activity": ratio * anat.p["bone"],
                    "hot": hot, "site": site})
    return out


# ---------------------------------------------------------------------------------------------
# Solids: (box lo, box hi, inside(X, Y, Z)) with X [n,1,1], Y [1,m,1], Z [1,1,k] in mm

_IDENTITY = ([1.0, 0.0, 0.0], [0.0, 1.0, 0.0], [0.0, 0.0, 1.0])


def _local(X, Y, Z, c, e):
    return (X - c[0]) * e[0] + (Y - c[1]) * e[1] + (Z - c[2]) * e[2]


def _frame_box(c, frame, half_local):
    """Axis-aligned box around the oriented box ``±half_local`` along ``frame``."""
    half = [sum(abs(frame[j][i]) * half_local[j] for j in range(3)) for i in range(3)]
    return tuple(ci - hi for ci, hi in zip(c, half)), tuple(ci + hi for ci, hi in zip(c, half))


def _ellipsoid(c, semi, frame=None) -> Shape:
    if frame is None:
        def inside(X, Y, Z):
            q = ((X - c[0]) / semi[0]) ** 2 + ((Y - c[1]) / semi[1]) ** 2 + ((Z - c[2]) / semi[2]) ** 2
            return q <= 1.0

        return tuple(ci - s for ci, s in zip(c, semi)), tuple(ci + s for ci, s in zip(c, semi)), inside

    def inside(X, Y, Z):
        q = 0.0
        for e, s in zip(frame, semi):
            q = q + (_local(X, Y, Z, c, e) / s) ** 2
        return q <= 1.0

    return (*_frame_box(c, frame, semi), inside)


def _elliptic_cylinder(c, frame, A, B, h, hole=None, u2_max=None) -> Shape:
    """``(u₁/A)² + (u₂/B)² ≤ 1``, ``|u₃| ≤ h`` in ``frame``; minus the elliptic ``hole``; ``u₂ ≤ u2_max``."""
    e1, e2, e3 = frame

    def inside(X, Y, Z):
        u1, u2 = _local(X, Y, Z, c, e1), _local(X, Y, Z, c, e2)
        m = ((u1 / A) ** 2 + (u2 / B) ** 2 <= 1.0) & (_local(X, Y, Z, c, e3).abs() <= h)
        if hole is not None:
            m &= (u1 / hole[0]) ** 2 + (u2 / hole[1]) ** 2 > 1.0
        if u2_max is not None:
            m &= u2 <= u2_max
        return m

    return (*_frame_box(c, frame, (A, B, h)), inside)


def _capsule(p0, p1, r) -> Shape:
    d = [b - a for a, b in zip(p0, p1)]
    dd = sum(x * x for x in d)

    def inside(X, Y, Z):
        vx, vy, vz = X - p0[0], Y - p0[1], Z - p0[2]
        t = ((vx * d[0] + vy * d[1] + vz * d[2]) / dd).clamp(0.0, 1.0)
        return (vx - t * d[0]) ** 2 + (vy - t * d[1]) ** 2 + (vz - t * d[2]) ** 2 <= r * r

    lo = tuple(min(a, b) - r for a, b in zip(p0, p1))
    hi = tuple(max(a, b) + r for a, b in zip(p0, p1))
    return lo, hi, inside


def _bowl(bowl, thickness, z_lo, y_max, x_min) -> Shape:
    """Ellipsoidal shell (outer semi-axes A, B, C about (xc, yc, zc)) cut to ``z_lo ≤ z ≤ crest(x)``,
    ``y ≤ y_max``, ``|x| ≥ x_min``, with the crest ``zc − 14·((|x − xc| − 0.8A)/(0.45A))²`` arched as
    seen from the front (highest at 0.8A, about 17 mm lower at the sacro-iliac joints).
    """
    xc, yc, zc, A, B, C = bowl
    Ai, Bi, Ci = A - thickness, B - thickness, C - thickness

    def inside(X, Y, Z):
        x2, y2, z2 = (X - xc) ** 2, (Y - yc) ** 2, (Z - zc) ** 2
        outer = x2 / A**2 + y2 / B**2 + z2 / C**2 <= 1.0
        inner = x2 / Ai**2 + y2 / Bi**2 + z2 / Ci**2 < 1.0
        ax = (X - xc).abs()
        crest = zc - 14.0 * ((ax - 0.8 * A) / (0.45 * A)) ** 2
        return outer & ~inner & (Z >= z_lo) & (Z <= crest) & (Y <= y_max) & (ax >= x_min)

    return (xc - A, yc - B, z_lo), (xc + A, min(yc + B, y_max), zc), inside


def _cup(c, r_in, r_out, n) -> Shape:
    """Spherical shell ``r_in ≤ |p − c| ≤ r_out`` on the hemisphere facing ``n``."""
    def inside(X, Y, Z):
        dx, dy, dz = X - c[0], Y - c[1], Z - c[2]
        r2 = dx * dx + dy * dy + dz * dz
        return (r2 >= r_in * r_in) & (r2 <= r_out * r_out) & (dx * n[0] + dy * n[1] + dz * n[2] >= 0.0)

    return tuple(ci - r_out for ci in c), tuple(ci + r_out for ci in c), inside


def _rib(rib, t_r: float, t_z: float) -> Shape:
    """Tube of semi-axes ``t_r`` (in plane) × ``t_z`` (vertical) along a descending elliptic arc.

    The in-plane distance to the ellipse ``q = 1`` (``q² = (x/a)² + (y/b)²``) is taken to first order,
    ``(q − 1)·q/|(x/a², y/b²)|``, which is accurate to well under a millimetre for a tube this thin on
    a ribcage this large; the arc's height at a point is that of the elliptic angle through it.
    """
    side, a_r, b_r, y_c, z_head, phi0, phi1 = rib
    slope = _RIB_DROP_MM / (math.pi - phi0)

    def inside(X, Y, Z):
        xs, yy = side * X, Y - y_c
        q = torch.sqrt((xs / a_r) ** 2 + (yy / b_r) ** 2)
        g = torch.sqrt((xs / a_r**2) ** 2 + (yy / b_r**2) ** 2).clamp_min(1e-9)
        d_r = (q - 1.0) * q / g
        phi = torch.atan2(xs / a_r, -yy / b_r)
        zp = z_head - slope * (phi - phi0)
        on_arc = (phi >= phi0) & (phi <= phi1)
        return on_arc & ((d_r / t_r) ** 2 + ((Z - zp) / t_z) ** 2 <= 1.0)

    sins = [math.sin(phi0), math.sin(phi1), 1.0 if phi0 <= math.pi / 2 <= phi1 else math.sin(phi1)]
    x0, x1 = a_r * min(sins) - t_r - 2.0, a_r * max(sins) + t_r + 2.0
    if side < 0:
        x0, x1 = -x1, -x0
    y0, y1 = y_c - b_r * math.cos(phi0) - t_r - 2.0, y_c - b_r * math.cos(phi1) + t_r + 2.0
    z0 = z_head - slope * (phi1 - phi0) - t_z - 2.0
    return (x0, y0, z0), (x1, y1, z_head + t_z + 2.0), inside


# ---------------------------------------------------------------------------------------------
# Rendering


class _Canvas:
    """The sub-sample grid of one voxel grid; renders one sample at a time."""

    def __init__(self, grid: VoxelGrid, device: torch.device):
        self.grid = grid
        self.device = device
        self.sub = tuple(min(max(math.ceil(v / 2.0 - 1e-9), 1), 4) for v in grid.voxel_size_mm)
        self.n_sub = math.prod(self.sub)
        self.axes = []  # sub-sample coordinates (mm, float32) per axis
        for n, size, s in zip(grid.shape, grid.voxel_size_mm, self.sub):
            k = torch.arange(n * s, device=device, dtype=torch.float64)
            self.axes.append(((k + 0.5) * (size / s) - n * size / 2.0).to(torch.float32))

    def _sub_slices(self, lo, hi) -> tuple[slice, ...] | None:
        out = []
        for a in range(3):
            n, size, s = self.grid.shape[a], self.grid.voxel_size_mm[a], self.sub[a]
            step, half = size / s, n * size / 2.0
            k0 = max(math.ceil((lo[a] + half) / step - 0.5), 0)
            k1 = min(math.floor((hi[a] + half) / step - 0.5), n * s - 1)
            if k1 < k0:
                return None
            out.append(slice(k0, k1 + 1))
        return tuple(out)

    def _voxel_slices(self, lo, hi) -> tuple[tuple[slice, ...], tuple[slice, ...]] | None:
        """Whole voxels covering ``[lo, hi]``: (voxel slices, sub-sample slices)."""
        vox, sub = [], []
        for a in range(3):
            n, size, s = self.grid.shape[a], self.grid.voxel_size_mm[a], self.sub[a]
            i0 = max(math.floor((lo[a] + n * size / 2.0) / size), 0)
            i1 = min(math.floor((hi[a] + n * size / 2.0) / size), n - 1)
            if i1 < i0:
                return None
            vox.append(slice(i0, i1 + 1))
            sub.append(slice(i0 * s, (i1 + 1) * s))
        return tuple(vox), tuple(sub)

    def _coords(self, sl):
        x, y, z = (ax[s] for ax, s in zip(self.axes, sl))
        return x[:, None, None], y[None, :, None], z[None, None, :]

    def _per_voxel_sum(self, t: torch.Tensor, dtype: torch.dtype | None = None) -> torch.Tensor:
        """Sum over each voxel's sub-samples (one axis at a time: about 3x faster than all at once)."""
        (a, b, c), (sx, sy, sz) = (n // s for n, s in zip(t.shape, self.sub)), self.sub
        return t.reshape(a, sx, b, sy, c, sz).sum(5, dtype=dtype).sum(3, dtype=dtype).sum(1, dtype=dtype)

    def render(self, anat: _Anatomy, lesions: list[dict], act_tab, mu_tab, dtype):
        """``(activity, μ, labels, lesion_mask, lesion_fraction)``, each ``[nx, ny, nz]``."""
        X, Y, Z = self.axes
        a_z, b_z = _levels_t(Z)
        y_c = (b_z - _BACK_MM) * anat.d  # keeps the back at y_back whatever the depth b(z)
        body = ((X[:, None, None] / (a_z * anat.w)) ** 2
                + ((Y[None, :, None] - y_c) / (b_z * anat.d)) ** 2 <= 1.0)
        code = body.to(torch.uint8)  # soft tissue = 1, outside = 0
        del body
        for value, shapes in ((_LUNG, anat.lungs), (_KIDNEY, anat.kidneys), (_BLADDER, anat.bladders),
                              (_BONE, anat.bone)):
            for lo, hi, inside in shapes:
                sl = self._sub_slices(lo, hi)
                if sl is None:
                    continue
                view = code[sl]
                view.masked_fill_(inside(*self._coords(sl)) & (view != 0), value)

        # uint8 counts: at most 4³ = 64 sub-samples per voxel
        counts = [self._per_voxel_sum((code == c).to(torch.uint8), torch.uint8)
                  for c in range(1, len(_TISSUES) + 1)]
        activity = torch.zeros(counts[0].shape, dtype=dtype, device=self.device)
        mu = torch.zeros_like(activity)
        labels = torch.zeros(activity.shape, dtype=torch.int64, device=self.device)
        best = torch.zeros_like(counts[0])
        for c, n in enumerate(counts, start=1):
            f = n.to(dtype) / self.n_sub
            activity += f * act_tab[c]
            mu += f * mu_tab[c]
            # the region with the most sub-samples (the first on ties); 0 only where none is inside
            more = n > best
            labels.masked_fill_(more, c)
            best = torch.where(more, n, best)

        lesion_fraction = torch.zeros_like(activity)
        lesion_mask = torch.zeros(activity.shape, dtype=torch.bool, device=self.device)
        if lesions:
            lid = torch.zeros_like(code)
            boxes = []
            for j, les in enumerate(lesions):
                c, semi = les["centre"], les["semi"]
                box = self._voxel_slices([ci - r for ci, r in zip(c, semi)],
                                         [ci + r for ci, r in zip(c, semi)])
                boxes.append(box)
                if box is None:
                    continue
                inside = _ellipsoid(c, semi)[2](*self._coords(box[1]))
                here = code[box[1]]
                # hot: everything inside the body; cold: only the bone it removes uptake from
                keep = (here != 0) if les["hot"] else (here == _BONE)
                lid[box[1]].masked_fill_(inside & keep, j + 1)
            a_sub = torch.tensor(act_tab, dtype=dtype, device=self.device)
            for j, (les, box) in enumerate(zip(lesions, boxes)):
                if box is None:
                    continue
                vox, sub = box
                m = lid[sub] == j + 1
                n_in = self._per_voxel_sum(m.to(torch.uint8), torch.uint8)
                if not bool(n_in.any()):
                    continue
                delta = (les["activity"] - a_sub[code[sub].long()]) * m
                activity[vox] += self._per_voxel_sum(delta) / self.n_sub
                lesion_fraction[vox] += n_in.to(dtype) / self.n_sub
                # the voxel this lesion fills most, so that a sub-voxel lesion still shows in the mask
                flat, (_, ny, nz) = int(n_in.reshape(-1).argmax()), n_in.shape
                lesion_mask[vox][flat // (ny * nz), (flat // nz) % ny, flat % nz] = True
            lesion_mask |= lesion_fraction >= 0.5
            labels[lesion_mask] = LABELS["lesion"]
        return activity.clamp_min(0.0), mu, labels, lesion_mask, lesion_fraction
