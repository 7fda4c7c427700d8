"""Anterior and posterior planar whole-body bone scans (Tc-99m MDP/HDP), computed analytically.

Model
-----
The body is a set of 3-D solids whose projection along the antero-posterior (AP) axis ``y`` is
known in closed form, so no 3-D volume is ever built. Image rows run head to feet (the craniocaudal
coordinate ``z``, in mm from the top edge of the image), columns run across the body (``x``, in mm
from the image's centre column; in the anterior view the patient's right is on the left).

* Body outline (soft tissue): head (ellipsoid), neck, a torso whose elliptical cross-section
  (half-width ``a(z)``, half-depth ``b(z)``) is interpolated between anatomical key levels, arms and
  legs (tapered round limbs) and feet. At every pixel the body spans ``−t(x, z) ≤ y ≤ t(x, z)``,
  ``t`` being the largest half-chord of these solids.
* Skeleton (bone uptake): skull (ellipsoidal shell) and face, 24 vertebrae and the sacrum
  (ellipsoids), 12 pairs of ribs (round bars along posterior and anterior arcs), sternum,
  clavicles, scapulae, iliac wings, pubic and ischial rami, femora, tibiae, humeri, forearms,
  hands and feet (round bars and ellipsoids), with extra uptake at the large joints.
* Kidneys, bladder, and lungs (lower soft-tissue activity in the chest).
* Lesions: spheres of random radius centred on a random point of a random bone, with a
  concentration ``contrast ×`` the bone's.

Every solid adds its excess concentration ``c`` (over what it displaces) along its chord
``[y₀, y₁]``, attenuated by water (μ at ``energy_kev``) between the chord and the body surface
facing the camera:

    anterior  += c · exp(−μ (t − y₁)) · (1 − exp(−μ (y₁ − y₀))) / μ
    posterior += c · exp(−μ (y₀ + t)) · (1 − exp(−μ (y₁ − y₀))) / μ

Attenuation is that of water everywhere (bone and lung densities are ignored), and there is no
collimator blur or scatter: these are the expected images before the camera's resolution and
Poisson noise. Both views are returned in the same pixel frame (``mirror_posterior=True`` flips the
posterior's columns, as a posterior detector displays it).

Labels (by pixel centre, later entries win): 0 outside the body, 1 soft tissue, 2 bone, 3 kidney,
4 bladder, 5 lesion. ``lesion_mask`` marks the projected discs of the lesions.
"""

from __future__ import annotations

import math
from collections.abc import Mapping

import torch

from spectdl.errors import GeometryError, InputError
from spectdl.geometry import VoxelGrid
from spectdl.materials import mu_per_cm
from spectdl.phantoms._shapes import raw_draws_with_extra
from spectdl.phantoms.base import (
    PlanarPhantom,
    check_batch_size,
    check_dtype,
    check_grid,
    check_number,
    check_range,
    sample_seeds,
)

LABELS = {"outside": 0, "soft_tissue": 1, "bone": 2, "kidney": 3, "bladder": 4, "lesion": 5}

_MAX_HEIGHT_MM = 1900.0
_MARGIN_MM = 40.0

# Torso key levels: (fraction of height below the top of the head, half-width mm, half-depth mm).
_TORSO = (
    (0.165, 60.0, 60.0),
    (0.190, 185.0, 100.0),
    (0.280, 175.0, 110.0),
    (0.380, 165.0, 115.0),
    (0.450, 180.0, 112.0),
    (0.520, 165.0, 100.0),
)

# Uniform draws per sample, in this order (the layout of the raw draws).
_GLOBAL = ("height", "top", "width", "depth", "x_offset", "bone", "kidney", "bladder", "bladder_size",
           "kidney_dz", "n_lesions")
_PER_LESION = ("segment", "t", "radius", "contrast")


#: Diagnoses of :func:`wholebody_planar` (``diagnoses=``) and their lesions: count, radius (mm) and
#: lesion-to-bone contrast ranges. Metastases are several, larger and hotter; benign lesions
#: (degenerative change, healed trauma) one or two, small and milder. Representative of bone-scan
#: appearances, not fitted to a study.
DIAGNOSES: dict[str, dict[str, tuple[float, float]]] = {
    "normal": {"n_lesions": (0, 0), "radius_mm": (4.0, 8.0), "contrast": (1.5, 3.0)},
    "benign": {"n_lesions": (1, 2), "radius_mm": (4.0, 8.0), "contrast": (1.5, 3.0)},
    "malignant": {"n_lesions": (2, 8), "radius_mm": (5.0, 14.0), "contrast": (3.0, 6.0)},
}


def _check_diagnoses(diagnoses) -> dict[str, float] | None:
    """Normalised probabilities by diagnosis (every one of :data:`DIAGNOSES`, 0 where not given)."""
    if diagnoses is None:
        return None
    if not isinstance(diagnoses, Mapping) or not diagnoses:
        raise InputError(f"diagnoses: expected a mapping of diagnosis -> probability, found {diagnoses!r}")
    bad = sorted(set(diagnoses) - set(DIAGNOSES))
    if bad:
        raise InputError(f"diagnoses: unknown diagnosis {bad[0]!r}; expected some of {list(DIAGNOSES)}")
    probs = {k: check_number(f"diagnoses[{k!r}]", diagnoses.get(k, 0.0), 0) for k in DIAGNOSES}
    total = sum(probs.values())
    if not total > 0:
        raise InputError("diagnoses: the probabilities sum to 0; expected at least one positive")
    return {k: v / total for k, v in probs.items()}


def wholebody_planar(
    grid: VoxelGrid | None = None,
    batch_size: int = 1,
    *,
    seed: int | None = None,
    generator: torch.Generator | None = None,
    n_lesions: int | tuple[int, int] = (0, 6),
    lesion_radius_mm: tuple[float, float] = (4.0, 12.0),
    lesion_contrast: tuple[float, float] = (2.0, 5.0),
    diagnoses: Mapping[str, float] | None = None,
    height_mm: tuple[float, float] = (1550.0, 1900.0),
    bone_uptake: tuple[float, float] = (8.0, 20.0),
    kidney_uptake: tuple[float, float] = (2.0, 8.0),
    bladder_uptake: tuple[float, float] = (20.0, 100.0),
    soft_tissue_uptake: float = 1.0,
    lung_fraction: float = 0.3,
    total_counts: float | None = None,
    mirror_posterior: bool = False,
    energy_kev: float = 140.0,
    device: torch.device | str | None = None,
    dtype: torch.dtype = torch.float32,
) -> PlanarPhantom:
    """A batch of anterior/posterior whole-body bone-scan phantoms.

    Args:
        grid: 2-D grid ``(rows, columns)``, default ``VoxelGrid((1024, 256), 2.26)`` (a GE
            whole-body matrix). Rows must span at least 1.98 m and columns 0.48 m.
        batch_size: number of phantoms ``B``.
        seed, generator: see :mod:`spectdl.phantoms.base`.
        n_lesions: number of lesions per sample, uniform in ``[low, high]`` (or fixed).
        lesion_radius_mm: range of the lesion sphere radius.
        lesion_contrast: range of the lesion-to-bone concentration ratio.
        diagnoses: probabilities of the diagnoses of :data:`DIAGNOSES` (``normal``, ``benign``,
            ``malignant``; they are normalised), drawn per sample from its seed. Each diagnosis
            has its own lesion count, radius and contrast ranges, which then replace
            ``n_lesions``, ``lesion_radius_mm`` and ``lesion_contrast``. ``None``: no diagnosis
            (the lesions of those three arguments).
        height_mm: range of the patient's height.
        bone_uptake, kidney_uptake, bladder_uptake: ranges of concentrations relative to soft tissue.
        soft_tissue_uptake: soft-tissue concentration (the unit of the others).
        lung_fraction: lung concentration as a fraction of soft tissue (inflated lung is ~30 % tissue).
        total_counts: if given, both views of a sample are scaled by one factor so that the
            anterior view sums to this; otherwise the unit is concentration × mm.
        mirror_posterior: flip the posterior's columns (display convention of a posterior camera).
        energy_kev: photon energy of the water attenuation.

    Returns:
        :class:`PlanarPhantom` with ``anterior``, ``posterior`` ``[B, 1, rows, cols]``, ``labels``,
        ``lesion_mask`` (both in the anterior frame) and ``info`` (``seeds``, ``height_mm``,
        ``head_top_mm``, ``width_scale``, ``depth_scale``, ``x_offset_mm``, uptakes, and per lesion
        ``lesion_centre_mm [B, L, 2]`` as (z from the top, x from the centre column),
        ``lesion_depth_mm [B, L]``, ``lesion_radius_mm``, ``lesion_contrast``, ``n_lesions [B]``;
        with ``diagnoses``: ``diagnosis`` (``B`` names), ``diagnosis_index`` (int64 ``[B]``, the
        position in :data:`DIAGNOSES`) and ``malignant`` (bool ``[B]``)).
    """
    grid = check_grid(VoxelGrid((1024, 256), 2.26) if grid is None else grid, 2)
    batch_size = check_batch_size(batch_size)
    dtype = check_dtype(dtype)
    n_lo, n_hi = check_range("n_lesions", n_lesions, 0, 64)
    if n_lo != int(n_lo) or n_hi != int(n_hi):
        raise InputError(f"n_lesions: expected integers, found {n_lesions!r}")
    r_lo, r_hi = check_range("lesion_radius_mm", lesion_radius_mm, 0)
    if r_lo <= 0:
        raise InputError(f"lesion_radius_mm: expected values > 0, found {lesion_radius_mm!r}")
    k_lo, k_hi = check_range("lesion_contrast", lesion_contrast, 0)
    h_lo, h_hi = check_range("height_mm", height_mm, 1000.0, _MAX_HEIGHT_MM)
    bone = check_range("bone_uptake", bone_uptake, 0)
    kidney = check_range("kidney_uptake", kidney_uptake, 0)
    bladder = check_range("bladder_uptake", bladder_uptake, 0)
    c_soft = check_number("soft_tissue_uptake", soft_tissue_uptake, 0)
    lung_frac = check_number("lung_fraction", lung_fraction, 0, 1)
    if total_counts is not None:
        total_counts = check_number("total_counts", total_counts, 0, low_open=True)
    mu_mm = mu_per_cm("water", energy_kev) / 10.0

    rows_mm, cols_mm = grid.extent_mm
    if rows_mm < h_hi + 2 * _MARGIN_MM or cols_mm < 480.0:
        raise GeometryError(
            f"grid: a whole-body view of a patient up to {h_hi:.0f} mm tall needs at least "
            f"{h_hi + 2 * _MARGIN_MM:.0f} × 480 mm; found {rows_mm:.0f} × {cols_mm:.0f} mm "
            f"(shape {grid.shape}, pixel {grid.voxel_size_mm} mm)"
        )

    classes = _check_diagnoses(diagnoses)
    seeds = sample_seeds(batch_size, seed, generator)
    n_max = int(n_hi) if classes is None else max(int(DIAGNOSES[k]["n_lesions"][1]) for k in DIAGNOSES)
    u, _, extra = raw_draws_with_extra(seeds, len(_GLOBAL) + n_max * len(_PER_LESION), 0, 1)
    g = {k: u[:, i] for i, k in enumerate(_GLOBAL)}
    if classes is None:
        diagnosis = None
        lesion_ranges = (torch.full((batch_size,), float(n_lo)), torch.full((batch_size,), float(n_hi)),
                         (r_lo, r_hi), (k_lo, k_hi))
    else:
        names = list(DIAGNOSES)
        cdf = torch.cumsum(torch.tensor([classes[k] for k in names], dtype=torch.float64), 0)
        diagnosis = torch.searchsorted(cdf, extra[:, 0].contiguous(), right=True).clamp(max=len(names) - 1)
        table = {key: torch.tensor([DIAGNOSES[k][key] for k in names], dtype=torch.float64)[diagnosis]
                 for key in ("n_lesions", "radius_mm", "contrast")}  # [B, 2] each
        lesion_ranges = (table["n_lesions"][:, 0], table["n_lesions"][:, 1],
                         (table["radius_mm"][:, :1], table["radius_mm"][:, 1:]),
                         (table["contrast"][:, :1], table["contrast"][:, 1:]))
    p = {
        "height": h_lo + (h_hi - h_lo) * g["height"],
        "width": 0.9 + 0.2 * g["width"],
        "depth": 0.85 + 0.35 * g["depth"],
        "x_offset": 20.0 * g["x_offset"] - 10.0,
        "bone": bone[0] + (bone[1] - bone[0]) * g["bone"],
        "kidney": kidney[0] + (kidney[1] - kidney[0]) * g["kidney"],
        "bladder": bladder[0] + (bladder[1] - bladder[0]) * g["bladder"],
        "bladder_size": 0.7 + 0.6 * g["bladder_size"],
        "kidney_dz": 0.02 * g["kidney_dz"] - 0.01,
    }
    room = rows_mm - 2 * _MARGIN_MM - p["height"]
    p["top"] = _MARGIN_MM + room * g["top"]
    c_lo, c_hi = lesion_ranges[0], lesion_ranges[1]
    count = torch.minimum(c_lo + torch.floor(g["n_lesions"] * (c_hi - c_lo + 1)), c_hi).long()

    dev = torch.device(device) if device is not None else torch.device("cpu")
    lesion_raw = u[:, len(_GLOBAL):].reshape(batch_size, n_max, len(_PER_LESION))
    # One sample at a time: each solid then covers a tight box of pixels, which is ~10x cheaper
    # than the union of the boxes over a batch of differently sized bodies.
    views, found = [], []
    for b in range(batch_size):
        pb = {k: v[b : b + 1] for k, v in p.items()}
        canvas = _Canvas(grid, mu_mm, dev, dtype)
        body = _Body(canvas, pb)
        body.outline(c_soft, lung_frac)
        segments = body.skeleton()
        body.organs()
        radius, contrast = (tuple(v[b : b + 1] if isinstance(v, torch.Tensor) else v for v in pair)
                            for pair in lesion_ranges[2:])
        found.append(_lesions(canvas, segments, lesion_raw[b : b + 1], count[b : b + 1], radius, contrast,
                              pb["bone"]))
        views.append((canvas.anterior, canvas.posterior, canvas.labels, canvas.lesion_mask))
    ant, post, labels, lesion_mask = (torch.cat(v) for v in zip(*views))
    lesions = {k: torch.cat([f[k] for f in found]) for k in found[0]}

    if total_counts is not None:
        scale = total_counts / ant.reshape(batch_size, -1).sum(1).clamp_min(1e-30)
        ant = ant * scale[:, None, None]
        post = post * scale[:, None, None]
    if mirror_posterior:
        post = post.flip(-1)

    info = {
        "seeds": seeds,
        "height_mm": p["height"],
        "head_top_mm": p["top"],
        "width_scale": p["width"],
        "depth_scale": p["depth"],
        "x_offset_mm": p["x_offset"],
        "bone_uptake": p["bone"],
        "kidney_uptake": p["kidney"],
        "bladder_uptake": p["bladder"],
        "soft_tissue_uptake": c_soft,
        "n_lesions": count,
        **({} if diagnosis is None else {
            "diagnosis": [list(DIAGNOSES)[int(d)] for d in diagnosis],
            "diagnosis_index": diagnosis,
            "malignant": diagnosis == list(DIAGNOSES).index("malignant"),
        }),
        **lesions,
        "energy_kev": float(energy_kev),
        "mirror_posterior": bool(mirror_posterior),
    }
    return PlanarPhantom(
        anterior=ant[:, None],
        posterior=post[:, None],
        grid=grid,
        labels=labels[:, None],
        label_names=dict(LABELS),
        lesion_mask=lesion_mask[:, None],
        info=info,
    )


class _Canvas:
    """One sample's pixel coordinates, body half-thickness and the two accumulating views.

    Parameters are plain floats (or 1-element tensors). Every solid is evaluated only on the
    pixels of its bounding box, which keeps the cost of a solid proportional to its size.
    """

    def __init__(self, grid: VoxelGrid, mu_mm: float, dev, dtype):
        self.dev, self.dtype = dev, dtype
        self.rows, self.cols = grid.shape
        self.sz, self.sx = grid.voxel_size_mm
        self.z = (torch.arange(self.rows, device=dev, dtype=dtype) + 0.5) * self.sz
        self.x = (torch.arange(self.cols, device=dev, dtype=dtype) - (self.cols - 1) / 2.0) * self.sx
        self.mu = mu_mm
        shape = (1, self.rows, self.cols)
        self.half = torch.zeros(shape, device=dev, dtype=dtype)
        self.anterior = torch.zeros(shape, device=dev, dtype=dtype)
        self.posterior = torch.zeros(shape, device=dev, dtype=dtype)
        self.labels = torch.zeros(shape, device=dev, dtype=torch.int64)
        self.lesion_mask = torch.zeros(shape, device=dev, dtype=torch.bool)

    def window(self, z_lo, z_hi, x_lo=None, x_hi=None) -> tuple[slice, slice, slice]:
        """Index ``[:, rows, cols]`` of the pixels whose centres can lie in the box."""
        lo = math.floor(float(z_lo) / self.sz - 0.5) - 1
        hi = math.ceil(float(z_hi) / self.sz - 0.5) + 2
        rows = slice(min(max(lo, 0), self.rows), min(max(hi, 0), self.rows))
        if x_lo is None:
            return (slice(None), rows, slice(None))
        c0 = (self.cols - 1) / 2.0
        lo = math.floor(float(x_lo) / self.sx + c0) - 1
        hi = math.ceil(float(x_hi) / self.sx + c0) + 2
        return (slice(None), rows, slice(min(max(lo, 0), self.cols), min(max(hi, 0), self.cols)))

    def deposit(self, win, half_chord: torch.Tensor, y_centre, conc, label: int | None) -> None:
        """Add concentration ``conc`` over the chords ``y_centre ± half_chord`` of the window."""
        h = half_chord
        if h.numel() == 0:
            return
        t = self.half[win]
        y1 = torch.minimum(h + float(y_centre), t)
        y0 = torch.maximum(float(y_centre) - h, -t)
        length = (y1 - y0).clamp_min(0.0)
        # gain is 0 where the chord misses the body, so no mask is needed for the views.
        gain = torch.expm1(-self.mu * length) * (-float(conc) / self.mu)
        self.anterior[win] += torch.exp(-self.mu * (t - y1)) * gain
        self.posterior[win] += torch.exp(-self.mu * (y0 + t)) * gain
        if label is not None:
            lab = self.labels[win]
            self.labels[win] = torch.where(length > 0, torch.full_like(lab, label), lab)

    # -- solids: each returns (window, half_chord [1, R, C], y_centre) ---------------------------

    def ellipsoid(self, xc, zc, ax, ay, az, yc=0.0, angle_rad=0.0, rows=None):
        """Ellipsoid with semi-axes (ax, ay, az), rotated by ``angle_rad`` in the (x, z) plane."""
        xc, zc, ax, ay, az = (float(v) for v in (xc, zc, ax, ay, az))
        reach = max(ax, az)
        if rows is None:
            rows = self.window(zc - reach, zc + reach, xc - reach, xc + reach)
        X = self.x[None, None, rows[2]] - xc
        Z = self.z[None, rows[1], None] - zc
        ca, sa = math.cos(angle_rad), math.sin(angle_rad)
        U, V = (X * ca + Z * sa) / ax, (Z * ca - X * sa) / az
        q = (1.0 - U * U - V * V).clamp_min(0.0)
        return rows, torch.sqrt(q) * ay, float(yc)

    def bar(self, x0, z0, x1, z1, r0, r1=None, yc=0.0):
        """A round bar from ``(x0, z0)`` to ``(x1, z1)`` (in the coronal plane at depth ``yc``),
        radius tapering from ``r0`` to ``r1``, with rounded ends."""
        r1 = r0 if r1 is None else r1
        x0, z0, x1, z1, r0, r1 = (float(v) for v in (x0, z0, x1, z1, r0, r1))
        reach = max(r0, r1)
        rows = self.window(min(z0, z1) - reach, max(z0, z1) + reach, min(x0, x1) - reach, max(x0, x1) + reach)
        X = self.x[None, None, rows[2]] - x0
        Z = self.z[None, rows[1], None] - z0
        ex, ez = x1 - x0, z1 - z0
        length2 = max(ex * ex + ez * ez, 1e-9)
        s = ((X * ex + Z * ez) / length2).clamp(0.0, 1.0)
        dx = X - s * ex
        dz = Z - s * ez
        radius = r0 + s * (r1 - r0)
        return rows, torch.sqrt((radius * radius - dx * dx - dz * dz).clamp_min(0.0)), float(yc)


class _Body:
    """The anatomy of one batch, laid out from each sample's height, girth and position."""

    def __init__(self, canvas: _Canvas, p: dict[str, torch.Tensor]):
        self.c = canvas
        self.p = {k: float(v) for k, v in p.items()}
        self.H = self.p["height"]
        self.top = self.p["top"]
        self.w = self.p["width"]
        self.d = self.p["depth"]
        self.x0 = self.p["x_offset"]

    def Z(self, frac: float) -> float:
        return self.top + frac * self.H

    def X(self, mm: float) -> float:
        return self.x0 + mm * self.w

    def torso_half_depth(self, frac: float) -> float:
        fr = [k[0] for k in _TORSO]
        f = min(max(frac, fr[0]), fr[-1])
        for (f0, _, b0), (f1, _, b1) in zip(_TORSO, _TORSO[1:]):
            if f0 <= f <= f1:
                return (b0 + (f - f0) / (f1 - f0) * (b1 - b0)) * self.d
        raise AssertionError("unreachable")  # pragma: no cover

    def torso_half_width(self, frac: float) -> float:
        f = min(max(frac, _TORSO[0][0]), _TORSO[-1][0])
        for (f0, a0, _), (f1, a1, _) in zip(_TORSO, _TORSO[1:]):
            if f0 <= f <= f1:
                return (a0 + (f - f0) / (f1 - f0) * (a1 - a0)) * self.w
        raise AssertionError("unreachable")  # pragma: no cover

    # -- body outline ---------------------------------------------------------------------------

    def _grow(self, rows, half_chord) -> None:
        c = self.c
        c.half[rows] = torch.maximum(c.half[rows], half_chord)

    def outline(self, c_soft: float, lung_frac: float) -> None:
        c, H, w, d = self.c, self.H, self.w, self.d
        rows, h, _ = c.ellipsoid(self.X(0.0), self.Z(0.066), 75 * w, 95 * d, 0.066 * H)
        self._grow(rows, h)
        rows, h, _ = c.bar(self.X(0.0), self.Z(0.115), self.X(0.0), self.Z(0.175), 55 * w)
        self._grow(rows, h * float((60.0 / 55.0) * d / w))
        # Torso: elliptical cross-sections interpolated between the key levels.
        z_keys = torch.tensor([self.Z(f) for f, _, _ in _TORSO], device=c.dev, dtype=c.dtype)
        rows = c.window(z_keys[0], z_keys[-1])
        Z = c.z[rows[1]]
        a = _interp(Z, z_keys, torch.tensor([k[1] for k in _TORSO], device=c.dev, dtype=c.dtype)) * w
        bb = _interp(Z, z_keys, torch.tensor([k[2] for k in _TORSO], device=c.dev, dtype=c.dtype)) * d
        a = torch.where((Z >= z_keys[0]) & (Z <= z_keys[-1]), a, 0.0)[None, :, None]
        X = c.x[None, None, :] - self.x0
        q = (1.0 - (X / a.clamp_min(1e-6)) ** 2).clamp_min(0.0)
        self._grow(rows, torch.where(a > 0, bb[None, :, None] * torch.sqrt(q), 0.0))
        # Arms (shoulder -> elbow -> wrist) and hands, on both sides.
        for s in (-1.0, 1.0):
            arm = (((200, 0.19, 48), (212, 0.37, 40)), ((212, 0.37, 40), (218, 0.48, 30)))
            for (xa, fa, ra), (xb, fb, rb) in arm:
                rows, h, _ = c.bar(self.X(s * xa), self.Z(fa), self.X(s * xb), self.Z(fb), ra * w, rb * w)
                self._grow(rows, h)
            rows, h, _ = c.ellipsoid(self.X(s * 219), self.Z(0.525), 32 * w, 18 * d, 0.045 * H)
            self._grow(rows, h)
            # Legs (hip -> knee -> ankle) and feet.
            leg = (((95, 0.50, 85), (88, 0.715, 52)), ((88, 0.715, 55), (82, 0.955, 35)))
            for (xa, fa, ra), (xb, fb, rb) in leg:
                rows, h, _ = c.bar(self.X(s * xa), self.Z(fa), self.X(s * xb), self.Z(fb), ra * w, rb * w)
                self._grow(rows, h)
            rows, h, _ = c.ellipsoid(self.X(s * 82), self.Z(0.978), 45 * w, 60 * d, 0.022 * H)
            self._grow(rows, h)

        # Soft tissue fills the body; the lungs hold less of it.
        t = c.half
        body = t > 0
        gain = -torch.expm1(-2 * c.mu * t) / c.mu
        c.anterior += c_soft * gain
        c.posterior += c_soft * gain
        c.labels[body] = LABELS["soft_tissue"]
        for s in (-1.0, 1.0):
            rows, h, yc = c.ellipsoid(self.X(s * 80), self.Z(0.275), 62 * w, 75 * d, 0.075 * H)
            c.deposit(rows, h, yc, -(1.0 - lung_frac) * c_soft, None)

    # -- skeleton --------------------------------------------------------------------------------

    def skeleton(self) -> torch.Tensor:
        """Deposit the bones; return the bone segments ``[B, S, 5]`` (x0, z0, x1, z1, y) on which
        lesions are placed."""
        c, H, w, d = self.c, self.H, self.w, self.d
        bone = self.p["bone"]
        bone_lbl = LABELS["bone"]
        segs: list[torch.Tensor] = []

        def seg(x0, z0, x1, z1, y):
            segs.append([float(v) for v in (x0, z0, x1, z1, y)])

        def put(solid, conc=1.0):
            rows, h, yc = solid
            c.deposit(rows, h, yc, bone * conc, bone_lbl)

        # Skull (shell) and face.
        zc = self.Z(0.066)
        # In projection every head pixel sees some skull; only the rim, where the line of sight
        # grazes the shell and misses the brain, is labelled bone.
        outer = c.ellipsoid(self.X(0), zc, 72 * w, 92 * d, 0.063 * H)
        inner = c.ellipsoid(self.X(0), zc, 72 * w - 7, 92 * d - 7, 0.063 * H - 7, rows=outer[0])
        skull = 0.6 * bone
        c.deposit(outer[0], outer[1], outer[2], skull, None)
        c.deposit(inner[0], inner[1], inner[2], -skull, None)
        rim = (outer[1] > 0) & (inner[1] <= 0)
        lab = c.labels[outer[0]]
        c.labels[outer[0]] = torch.where(rim, torch.full_like(lab, bone_lbl), lab)
        seg(self.X(-60), zc, self.X(60), zc - 0.03 * H, 0.0)
        put(c.ellipsoid(self.X(0), self.Z(0.098), 32 * w, 25 * d, 0.018 * H, yc=55 * d), 0.35)
        for s in (-1.0, 1.0):
            put(c.bar(self.X(s * 48), self.Z(0.105), self.X(s * 10), self.Z(0.126), 6.0, yc=45 * d), 0.6)

        # Spine: 7 cervical, 12 thoracic, 5 lumbar vertebrae, then the sacrum.
        levels = [(0.120 + (0.175 - 0.120) * (k + 0.5) / 7, 16.0, 0.055 / 7) for k in range(7)]
        levels += [(0.175 + (0.370 - 0.175) * (k + 0.5) / 12, 20.0, 0.195 / 12) for k in range(12)]
        levels += [(0.370 + (0.455 - 0.370) * (k + 0.5) / 5, 26.0, 0.085 / 5) for k in range(5)]
        for f, half_w, dz in levels:
            yc = -0.45 * self.torso_half_depth(f) if f > 0.175 else -20.0 * d
            put(c.ellipsoid(self.X(0), self.Z(f), half_w * w, 18 * d, 0.5 * dz * H, yc=yc))
            seg(self.X(0), self.Z(f - 0.3 * dz), self.X(0), self.Z(f + 0.3 * dz), yc)
        y_sac = -0.55 * self.torso_half_depth(0.47)
        put(c.ellipsoid(self.X(0), self.Z(0.475), 42 * w, 22 * d, 0.03 * H, yc=y_sac))
        seg(self.X(0), self.Z(0.46), self.X(0), self.Z(0.49), y_sac)

        # Ribs: posterior arcs from the spine out and slightly down, anterior arcs back in and down.
        width_frac = (0.40, 0.60, 0.75, 0.85, 0.90, 0.92, 0.92, 0.90, 0.87, 0.82, 0.60, 0.45)
        for k in range(12):
            f = 0.185 + 0.0155 * k
            half_w = self.torso_half_width(f + 0.02) - 12.0 * w
            reach = half_w * width_frac[k]
            zk = self.Z(f)
            drop_p = 0.018 * H
            y_post = -self.torso_half_depth(f) + 22.0 * d
            y_ant = self.torso_half_depth(f + 0.04) - 18.0 * d
            for s in (-1.0, 1.0):
                pts = [(20.0 * w, 0.0), (0.55, 0.35), (1.0, 1.0)]
                x_prev, z_prev = self.X(s * 20.0) * 1.0, zk
                for frac_x, frac_z in pts[1:]:
                    xn = self.x0 + s * reach * frac_x
                    zn = zk + drop_p * frac_z
                    put(c.bar(x_prev, z_prev, xn, zn, 5.5, yc=y_post))
                    seg(x_prev, z_prev, xn, zn, y_post)
                    x_prev, z_prev = xn, zn
                if k >= 10:
                    continue  # floating ribs have no anterior arc
                end_x = (25.0 if k < 7 else 25.0 + 22.0 * (k - 6)) * w
                drop_a = (0.05 + 0.004 * k) * H
                xm = self.x0 + s * (reach * 0.85)
                zm = zk + drop_p + 0.45 * drop_a
                xe = self.x0 + s * end_x
                ze = zk + drop_p + drop_a
                for xa, za, xb, zb in ((x_prev, z_prev, xm, zm), (xm, zm, xe, ze)):
                    put(c.bar(xa, za, xb, zb, 5.0, yc=y_ant), 0.8)
                    seg(xa, za, xb, zb, y_ant)

        # Sternum, clavicles, scapulae.
        y_st = self.torso_half_depth(0.24) - 14.0 * d
        put(c.bar(self.X(0), self.Z(0.19), self.X(0), self.Z(0.30), 13.0, yc=y_st))
        seg(self.X(0), self.Z(0.19), self.X(0), self.Z(0.30), y_st)
        for s in (-1.0, 1.0):
            yc = 0.5 * self.torso_half_depth(0.19)
            put(c.bar(self.X(s * 22), self.Z(0.187), self.X(s * 165), self.Z(0.178), 7.5, yc=yc))
            seg(self.X(s * 22), self.Z(0.187), self.X(s * 165), self.Z(0.178), yc)
            yc = -self.torso_half_depth(0.24) + 28.0 * d
            put(c.ellipsoid(self.X(s * 105), self.Z(0.24), 48 * w, 10 * d, 0.045 * H, yc=yc,
                            angle_rad=s * 0.25), 0.8)
            seg(self.X(s * 90), self.Z(0.21), self.X(s * 115), self.Z(0.27), yc)

        # Pelvis: iliac wings, pubic and ischial rami; hip joints.
        for s in (-1.0, 1.0):
            put(c.ellipsoid(self.X(s * 88), self.Z(0.425), 58 * w, 18 * d, 0.035 * H, yc=-10.0 * d,
                            angle_rad=-s * 0.35))
            seg(self.X(s * 65), self.Z(0.405), self.X(s * 110), self.Z(0.44), -10.0 * d)
            for xa, fa, xb, fb in ((85, 0.475, 14, 0.497), (85, 0.478, 62, 0.512), (62, 0.512, 16, 0.505)):
                put(c.bar(self.X(s * xa), self.Z(fa), self.X(s * xb), self.Z(fb), 9.0, yc=10.0 * d))
                seg(self.X(s * xa), self.Z(fa), self.X(s * xb), self.Z(fb), 10.0 * d)

        # Limbs: humerus, forearm, hand; femur, tibia, foot; joints take up more.
        for s in (-1.0, 1.0):
            limbs = (
                ((195, 0.195), (211, 0.365), 11.0, 0.55),
                ((211, 0.375), (218, 0.475), 11.0, 0.45),
                ((118, 0.485), (92, 0.700), 14.0, 0.55),
                ((90, 0.725), (83, 0.950), 13.0, 0.55),
                ((85, 0.475), (112, 0.487), 14.0, 0.8),  # femoral neck
            )
            for (xa, fa), (xb, fb), radius, conc in limbs:
                put(c.bar(self.X(s * xa), self.Z(fa), self.X(s * xb), self.Z(fb), radius), conc)
                seg(self.X(s * xa), self.Z(fa), self.X(s * xb), self.Z(fb), 0.0)
            joints = (
                ((188, 0.193), (24, 22, 0.015), 0.9),  # humeral head
                ((85, 0.475), (25, 25, 0.015), 0.9),  # femoral head
                ((90, 0.708), (36, 28, 0.014), 0.7),  # knee
                ((83, 0.958), (22, 20, 0.011), 0.6),  # ankle
                ((211, 0.370), (18, 16, 0.010), 0.6),  # elbow
            )
            for (xa, fa), (ax, ay, az), conc in joints:
                put(c.ellipsoid(self.X(s * xa), self.Z(fa), ax * w, ay * d, az * H), conc)
                seg(self.X(s * xa), self.Z(fa) - 0.5 * az * H, self.X(s * xa), self.Z(fa) + 0.5 * az * H, 0.0)
            put(c.ellipsoid(self.X(s * 219), self.Z(0.525), 25 * w, 10 * d, 0.035 * H), 0.5)
            put(c.ellipsoid(self.X(s * 82), self.Z(0.980), 35 * w, 45 * d, 0.013 * H), 0.5)
        return torch.tensor(segs, dtype=torch.float64)[None]

    def organs(self) -> None:
        c, H, w, d = self.c, self.H, self.w, self.d
        for s, dz in ((-1.0, 0.012), (1.0, 0.0)):
            zc = self.top + (0.375 + dz + self.p["kidney_dz"]) * H
            yc = -0.4 * self.torso_half_depth(0.38)
            rows, h, y = c.ellipsoid(self.X(s * 62), zc, 28 * w, 24 * d, 0.032 * H, yc=yc)
            c.deposit(rows, h, y, self.p["kidney"] - 1.0, LABELS["kidney"])
        size = self.p["bladder_size"]
        rows, h, y = c.ellipsoid(self.X(0), self.Z(0.478), 42 * w * size, 35 * d * size, 32 * size,
                                 yc=0.25 * self.torso_half_depth(0.48))
        c.deposit(rows, h, y, self.p["bladder"] - 1.0, LABELS["bladder"])


def _interp(x: torch.Tensor, xp: torch.Tensor, fp: torch.Tensor) -> torch.Tensor:
    """Piecewise-linear interpolation of ``(xp, fp)`` at ``x`` (clamped at the ends)."""
    idx = torch.searchsorted(xp, x).clamp(1, len(xp) - 1)
    x0, x1 = xp[idx - 1], xp[idx]
    f0, f1 = fp[idx - 1], fp[idx]
    t = ((x - x0) / (x1 - x0)).clamp(0.0, 1.0)
    return f0 + t * (f1 - f0)


def _lesions(canvas: _Canvas, segments: torch.Tensor, raw: torch.Tensor, count: torch.Tensor,
             radius: tuple[float, float], contrast: tuple[float, float],
             bone_uptake: torch.Tensor) -> dict[str, torch.Tensor]:
    """Place ``count[b]`` lesions on random bone segments; deposit them and mark their discs."""
    c = canvas
    B, L, _ = raw.shape
    S = segments.shape[1]
    # Each segment is chosen with probability proportional to its length (uniform along bone).
    seg_len = torch.hypot(segments[..., 2] - segments[..., 0], segments[..., 3] - segments[..., 1]) + 1.0
    cdf = torch.cumsum(seg_len, 1) / seg_len.sum(1, keepdim=True)
    idx = torch.searchsorted(cdf.contiguous(), raw[..., 0].contiguous()).clamp(max=S - 1)  # [B, L]
    chosen = torch.gather(segments, 1, idx[..., None].expand(B, L, 5))
    t = raw[..., 1]
    x = chosen[..., 0] + t * (chosen[..., 2] - chosen[..., 0])
    z = chosen[..., 1] + t * (chosen[..., 3] - chosen[..., 1])
    y = chosen[..., 4]
    r = radius[0] + (radius[1] - radius[0]) * raw[..., 2]
    k = contrast[0] + (contrast[1] - contrast[0]) * raw[..., 3]
    active = torch.arange(L)[None, :] < count[:, None]
    for j in range(L):
        on = active[:, j]
        if not bool(on.any()):
            continue
        rows, h, yc = c.ellipsoid(x[:, j], z[:, j], r[:, j], r[:, j], r[:, j], yc=y[:, j])
        # The sphere displaces bone at the bone's concentration (exact where it lies in bone).
        conc = torch.where(on, (k[:, j] - 1.0) * bone_uptake, torch.zeros(B, dtype=torch.float64))
        c.deposit(rows, h, yc, conc, None)
        c.lesion_mask[rows] |= h > 0
    c.labels[c.lesion_mask] = LABELS["lesion"]
    nan = torch.full_like(x, float("nan"))
    return {
        "lesion_centre_mm": torch.stack([torch.where(active, z, nan), torch.where(active, x, nan)], -1),
        "lesion_depth_mm": torch.where(active, y, nan),
        "lesion_radius_mm": torch.where(active, r, nan),
        "lesion_contrast": torch.where(active, k, nan),
        "lesion_segment": torch.where(active, idx, -1),
    }
