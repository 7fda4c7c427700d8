"""CT series to a HU volume, HU to attenuation at an emission energy, and resampling onto a SPECT grid.

HU → μ (``ct_to_mu``)
--------------------
The bilinear model of Kinahan et al. (Med Phys 25:2046, 1998), as used for SPECT by Brown et al.
(Appl Radiat Isot 66:1206, 2008):

* below the break point ``BP`` a voxel is a mix of air and water:
  ``μ(E) = μ_w(E) · (1 + HU/1000)``;
* above it a mix of water and cortical bone, a line through ``(BP, μ(BP))`` and
  ``(HU_b, μ_b(E))``, where ``HU_b = 1000·(μ_b(E_CT)/μ_w(E_CT) − 1)`` is the CT number of cortical
  bone at the effective CT energy ``E_CT``.

``μ_w`` and ``μ_b`` (ICRU-44 cortical bone, 1.92 g/cm³) come from :mod:`spectdl.materials` (NIST
XCOM). The break point depends on the tube voltage as published by Carney et al. (Med Phys 33:976,
2006, Table 1: 50, 52, 43, 47, 37, 30 HU at 80, 100, 110, 120, 130, 140 kVp; linear in between,
clamped outside). The effective CT energy is taken as 70 keV at 120 kVp and proportional to kVp
(a typical value for filtered clinical beams; it only sets the bone slope). Pass
``ct_effective_kev`` to use a measured value. μ is clipped at 0 below −1000 HU.

μ → HU (``mu_to_ct_hu``)
-----------------------
The exact inverse of the same two lines, for CT-like images of digital phantoms. The break point
in μ is ``μ(BP) = μ_w(E)·(1 + BP/1000)``:

* ``μ ≤ μ(BP)``: ``HU = 1000·(μ/μ_w(E) − 1)`` (water 0 HU, air −1000 HU);
* ``μ > μ(BP)``: ``HU = BP + (μ − μ(BP))·(HU_b − BP)/(μ_b(E) − μ(BP))`` (cortical bone ``HU_b``);

then clamped to the 12-bit CT range [−1000, 3071] HU.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from spectdl.errors import InputError, require
from spectdl.geometry import VoxelGrid
from spectdl.io import _dicom as dcm
from spectdl.io.volume import Volume, check_affine, spacing_from_affine
from spectdl.materials import mu_per_cm

# Carney et al. 2006, Table 1: break point (HU) by kVp.
_BREAK_POINT_HU = ((80.0, 50.0), (100.0, 52.0), (110.0, 43.0), (120.0, 47.0), (130.0, 37.0), (140.0, 30.0))
_E_CT_AT_120_KVP = 70.0


def _real(value, name: str, bounds: "dcm.Range", what: str) -> float:
    """``value`` as a float within ``bounds``; ``None``, text, booleans and NaN are refused by name."""
    if value is None or isinstance(value, (str, bytes, bool)):
        raise InputError(f"{name}: {value!r}; expected {what}, {bounds}")
    try:
        x = float(value)
    except (TypeError, ValueError, OverflowError):
        raise InputError(f"{name}: {value!r}; expected {what}, {bounds}") from None
    if not np.isfinite(x) or x not in bounds:
        raise InputError(f"{name}: {value!r}; expected {what}, {bounds}")
    return x


def _kvp(kvp) -> float:
    """The tube voltage in kV. ``None`` is refused here: callers that can fill it from the CT's KVP
    (0018,0060), as :func:`ct_attenuation_map` does, do so before."""
    if kvp is None:
        raise InputError(f"kvp: None; expected the CT tube voltage in kV ({dcm.KVP_KV}), as the CT's "
                         f"{dcm.tag_name('KVP')} gives it")
    return _real(kvp, "kvp", dcm.KVP_KV, "a positive tube voltage in kV")


_ENERGY_KEV = dcm.Range(0.0, 2000.0, "keV", lo_open=True)


def break_point_hu(kvp: float) -> float:
    """Break point of the bilinear HU→μ model at tube voltage ``kvp`` (kV; Carney et al. 2006)."""
    k = _kvp(kvp)
    xs, ys = zip(*_BREAK_POINT_HU)
    return float(np.interp(k, xs, ys))


def ct_effective_energy_kev(kvp: float) -> float:
    """Effective CT energy (keV) assumed for ``kvp`` (kV): 70 keV × kVp/120 (see module docstring)."""
    return _E_CT_AT_120_KVP * _kvp(kvp) / 120.0


def ct_to_mu(hu, energy_kev: float, kvp: float, *, ct_effective_kev: float | None = None) -> torch.Tensor:
    """Linear attenuation (cm⁻¹) at ``energy_kev`` from CT numbers ``hu`` (bilinear model, see above).

    Args:
        hu: tensor (or array) of Hounsfield units, any shape; the result keeps its device and dtype
            (float32 for integer input).
        energy_kev: emission photon energy (e.g. 208 for Lu-177, 140.5 for Tc-99m).
        kvp: CT tube voltage in kV (tag KVP (0018,0060)); required (``None`` raises).
        ct_effective_kev: effective CT energy; 70 keV × kVp/120 by default.

    Returns:
        μ in cm⁻¹, ``≥ 0``, same shape as ``hu``.

    Raises:
        InputError: ``hu`` holds NaN or infinite values (the count is named); ``kvp`` is ``None``,
            text, NaN or outside 0 < kVp ≤ 1000 kV; ``energy_kev`` or ``ct_effective_kev`` is not a
            positive number of keV.
    """
    h = hu if isinstance(hu, torch.Tensor) else torch.as_tensor(np.asarray(hu))
    if not h.is_floating_point():
        h = h.to(torch.float32)
    n_nan = int(torch.isnan(h).sum())
    n_inf = int(torch.isinf(h).sum())
    if n_nan or n_inf:
        raise InputError(
            f"hu: contains {n_nan} NaN and {n_inf} infinite value(s) out of {h.numel()}; expected finite "
            "Hounsfield units (fill missing voxels, e.g. with -1000 HU for air, before converting)"
        )
    mu_w, bp, mu_bp, slope_bone = _bilinear(energy_kev, kvp, ct_effective_kev)
    soft = mu_w * (1.0 + h / 1000.0)
    bone = mu_bp + (h - bp) * slope_bone
    return torch.where(h <= bp, soft, bone).clamp_min(0.0)


def _bilinear(energy_kev: float, kvp: float,
              ct_effective_kev: float | None) -> tuple[float, float, float, float]:
    """``(μ_w, BP, μ(BP), slope above BP in cm⁻¹/HU)`` of the bilinear model (module docstring)."""
    e = _real(energy_kev, "energy_kev", _ENERGY_KEV, "a photon energy in keV")
    e_ct = (ct_effective_energy_kev(kvp) if ct_effective_kev is None
            else _real(ct_effective_kev, "ct_effective_kev", _ENERGY_KEV, "an effective CT energy in keV"))
    mu_w, mu_b = mu_per_cm("water", e), mu_per_cm("bone", e)
    hu_bone = 1000.0 * (mu_per_cm("bone", e_ct) / mu_per_cm("water", e_ct) - 1.0)
    bp = break_point_hu(kvp)
    if not hu_bone > bp:
        raise InputError(f"ct_effective_kev: {e_ct} keV gives bone at {hu_bone:.0f} HU, below the break "
                         f"point {bp} HU")
    mu_bp = mu_w * (1.0 + bp / 1000.0)
    slope_bone = (mu_b - mu_bp) / (hu_bone - bp)
    return mu_w, bp, mu_bp, slope_bone


CT_HU_RANGE = (-1000.0, 3071.0)


def mu_to_ct_hu(mu_per_cm, energy_kev: float, *, kvp: float = 120.0,
                ct_effective_kev: float | None = None) -> torch.Tensor:
    """CT numbers (HU) whose :func:`ct_to_mu` at ``energy_kev`` is ``mu_per_cm``: the model's inverse.

    With ``μ_w`` water at ``energy_kev``, ``BP`` the break point at ``kvp`` and
    ``μ(BP) = μ_w·(1 + BP/1000)``::

        HU = 1000·(μ/μ_w − 1)                 for μ ≤ μ(BP)   (air–water line)
        HU = BP + (μ − μ(BP)) / slope_bone    for μ > μ(BP)   (water–bone line of ct_to_mu)

    clamped to [−1000, 3071] HU. So ``ct_to_mu(mu_to_ct_hu(μ, E), E, kvp) == μ`` (to rounding) for
    ``0 ≤ μ ≤ μ(3071 HU)``; water gives 0 HU and μ = 0 (air) −1000 HU exactly. Negative μ and
    ``+inf`` end up at the clamps.

    Args:
        mu_per_cm: linear attenuation coefficients (cm⁻¹) at ``energy_kev``, tensor or array of any
            shape; the result keeps its shape, device and floating dtype (float32 for integers).
        energy_kev: photon energy the μ values belong to (e.g. 140 for Tc-99m).
        kvp: tube voltage of the CT being imitated (sets the break point and the bone slope).
        ct_effective_kev: effective CT energy, as in :func:`ct_to_mu`.

    Raises:
        InputError: ``mu_per_cm`` holds NaN, or the model's parameters are invalid.
    """
    m = mu_per_cm if isinstance(mu_per_cm, torch.Tensor) else torch.as_tensor(np.asarray(mu_per_cm))
    if not m.is_floating_point():
        m = m.to(torch.float32)
    if bool(torch.isnan(m).any()):
        raise InputError(f"mu_per_cm: holds {int(torch.isnan(m).sum())} NaN values; expected finite "
                         "attenuation coefficients (cm⁻¹)")
    mu_w, bp, mu_bp, slope_bone = _bilinear(energy_kev, kvp, ct_effective_kev)
    if not slope_bone > 0:
        raise InputError(f"energy_kev: at {energy_kev} keV bone attenuates no more than the break "
                         "point, so μ cannot be mapped back to HU")
    # μ_w as a tensor of m's dtype, so that μ = μ_w (rounded to that dtype) gives exactly 0 HU.
    w = torch.tensor(mu_w, dtype=m.dtype, device=m.device)
    soft = (m / w - 1.0) * 1000.0
    bone = bp + (m - mu_bp) / slope_bone
    return torch.where(m <= mu_bp, soft, bone).clamp(*CT_HU_RANGE)


# ---------------------------------------------------------------------- CT series
def _list_files(folder: Path) -> list[Path]:
    return sorted(p for p in folder.iterdir() if p.is_file() and not p.name.startswith("."))


def select_series(groups: dict, series_instance_uid: str | None, folder: Path, what: str) -> list:
    """The ``(path, header)`` items of one series of ``groups`` (from :func:`read_series_headers`):
    the one named by ``series_instance_uid``, or the only one; several without a choice is an error."""
    if series_instance_uid is not None:
        if series_instance_uid not in groups:
            raise InputError(f"series_instance_uid: {series_instance_uid!r} is not in {folder}; found "
                             f"{sorted(groups)}")
        return groups[series_instance_uid]
    if len(groups) > 1:
        raise InputError(f"{what} {folder}: holds {len(groups)} series {sorted(groups)}; pass series_instance_uid=")
    return next(iter(groups.values()))


_DICOMDIR = "1.2.840.10008.1.3.10"  # Media Storage Directory Storage: an index, not an image


def read_series_headers(folder: str | Path, what: str = "series folder"):
    """Headers (no pixels) of every DICOM file in ``folder``, grouped by Series Instance UID.

    Files without the ``DICM`` preamble (notes, scripts) and a DICOMDIR are skipped. A file that
    looks like a cut-off DICOM file is an error, so that a truncated last slice is never dropped
    without a word: an empty file, a file shorter than the 132-byte preamble holding only zeros,
    a DICOM file whose values or elements are cut off, and a DICOM file without Series Instance
    UID (a type 1 tag of every image).
    """
    folder = Path(folder)
    if not folder.is_dir():
        raise InputError(f"{what} {folder}: not a folder (expected a folder of DICOM files)")
    groups: dict[str, list] = {}
    skipped = []
    for p in _list_files(folder):
        with open(p, "rb") as fh:
            head = fh.read(132)
        # shorter than preamble + "DICM" and nothing but a zero preamble: a DICOM file cut short
        if not head or (len(head) < 132 and not head[:128].strip(b"\x00") and b"DICM".startswith(head[128:])):
            raise InputError(f"{p}: empty or truncated DICOM file ({len(head)} bytes, no 'DICM' preamble); "
                             f"expected a complete slice of the series or no file")
        if head[128:132] != b"DICM":
            skipped.append(p.name)
            continue
        ds = dcm.read_dataset(p, stop_before_pixels=True, what="DICOM file")
        sop = dcm.text(getattr(ds, "file_meta", None) or ds, "MediaStorageSOPClassUID", p)
        if sop == _DICOMDIR:
            skipped.append(p.name)
            continue
        uid = dcm.text(ds, "SeriesInstanceUID", p)
        if not uid:
            raise InputError(f"{p}: tag {dcm.tag_name('SeriesInstanceUID')} is missing or empty; expected "
                             f"the series of this DICOM file (truncated or not an image?)")
        groups.setdefault(uid, []).append((p, ds))
    if not groups:
        raise InputError(f"{what} {folder}: holds no DICOM images (skipped {len(skipped)} other files)")
    return groups


def _rows_cols(ds, p) -> tuple[int, int]:
    return (dcm.get(ds, "Rows", p, cast=int, bounds=dcm.N_PIXELS),
            dcm.get(ds, "Columns", p, cast=int, bounds=dcm.N_PIXELS))


def slice_stack_geometry(items, path_for_errors) -> tuple[list, np.ndarray, float]:
    """Sort single-slice headers along the slice normal; return (sorted items, affine, slice spacing).

    The affine maps ``(i, j, k)`` = (column, row, slice) to LPS mm. Every slice must share the first
    one's orientation, image size, Pixel Spacing (within 10⁻⁴ mm) and Frame of Reference UID. Pixel
    spacings lie in 0 < value ≤ 50 mm, the slice spacing in 0 < value ≤ 1000 mm, positions within
    ±10⁵ mm. A single slice takes its spacing from Spacing Between Slices, else Slice Thickness,
    else 1 mm.
    """
    ref_path, ref = items[0]
    r0, c0 = dcm.orientation(dcm.get(ref, "ImageOrientationPatient", ref_path), ref_path)
    normal = np.cross(r0, c0)
    sp = dcm.vector(ref, "PixelSpacing", ref_path, n=2, bounds=dcm.PIXEL_SPACING_MM)
    rows, cols = _rows_cols(ref, ref_path)
    ref_for = dcm.text(ref, "FrameOfReferenceUID", ref_path)
    pos = []
    for p, ds in items:
        r, c = dcm.orientation(dcm.get(ds, "ImageOrientationPatient", p), p)
        if not (np.allclose(r, r0, atol=1e-4) and np.allclose(c, c0, atol=1e-4)):
            raise InputError(f"{p}: {dcm.tag_name('ImageOrientationPatient')} differs from {ref_path.name}; "
                             f"expected one orientation for the whole series")
        size = _rows_cols(ds, p)
        if size != (rows, cols):
            raise InputError(f"{p}: image size {size[0]}×{size[1]}; expected {rows}×{cols} as "
                             f"{ref_path.name}")
        sp_k = dcm.vector(ds, "PixelSpacing", p, n=2, bounds=dcm.PIXEL_SPACING_MM)
        if not np.allclose(sp_k, sp, rtol=0.0, atol=1e-4):
            raise InputError(f"{p}: tag {dcm.tag_name('PixelSpacing')} is {sp_k} mm but {ref_path.name} has "
                             f"{sp}; expected one pixel spacing for the whole series")
        for_k = dcm.text(ds, "FrameOfReferenceUID", p)
        if for_k != ref_for:
            raise InputError(f"{p}: tag {dcm.tag_name('FrameOfReferenceUID')} is {for_k!r} but "
                             f"{ref_path.name} has {ref_for!r}; expected one frame of reference for the "
                             f"whole series")
        pos.append(np.array(dcm.vector(ds, "ImagePositionPatient", p, n=3, bounds=dcm.POSITION_MM)))
    along = np.array([float(q @ normal) for q in pos])
    order = np.argsort(along, kind="stable")
    along = along[order]
    if len(items) > 1:
        steps = np.diff(along)
        if np.any(steps < 1e-3):
            raise InputError(f"{path_for_errors}: two slices share the position "
                             f"{along[np.argmin(steps)]:.3f} mm "
                             f"along the slice normal; expected one image per position")
        step = float(np.median(steps))
        if np.max(np.abs(steps - step)) > 0.1 * step:
            raise InputError(f"{path_for_errors}: slice spacing varies from {steps.min():.3f} to "
                             f"{steps.max():.3f} mm; "
                             f"expected a uniform stack")
        if step not in dcm.SLICE_SPACING_MM:
            raise InputError(f"{path_for_errors}: the slices are {step:g} mm apart; expected "
                             f"{dcm.SLICE_SPACING_MM}")
    else:
        # A negative Spacing Between Slices (seen in the wild) still means slices along the normal.
        signed = dcm.Range(-dcm.SLICE_SPACING_MM.hi, dcm.SLICE_SPACING_MM.hi, "mm")
        step = (dcm.get(ref, "SpacingBetweenSlices", ref_path, cast=float, default=0.0, bounds=signed)
                or dcm.get(ref, "SliceThickness", ref_path, cast=float, default=0.0, bounds=signed)
                or 1.0)
        step = abs(step)
    items = [items[i] for i in order]
    origin = pos[order[0]]
    affine = dcm.affine_from_axes(origin, [r0, c0, normal], [sp[1], sp[0], step])
    return items, affine, step


def _rescale(ds, p) -> tuple[float, float]:
    """(slope, intercept) of one CT slice. Both are type 1 in the CT Image module (PS3.3 C.8.2.1):
    a slice without them is refused rather than read with intercept 0, which put a −1024 HU series
    1024 HU too high."""
    out = []
    for kw, bounds in (("RescaleSlope", dcm.RESCALE_SLOPE), ("RescaleIntercept", dcm.RESCALE_INTERCEPT)):
        value = dcm.get(ds, kw, p, cast=float, default=None, bounds=bounds)
        if value is None:
            raise InputError(f"{p}: tag {dcm.tag_name(kw)} is missing or empty; expected a number (type 1 in "
                             f"a CT slice: without it the stored values are not Hounsfield units)")
        out.append(value)
    return out[0], out[1]


def read_ct_series(folder: str | Path, *, series_instance_uid: str | None = None) -> Volume:
    """Read a CT series (one file per slice) into a HU :class:`Volume` ``[X, Y, Z]`` with its affine.

    Slices are ordered along the normal ``row × column`` of Image Orientation (Patient); padding
    (Pixel Padding Value) becomes −1000 HU (air). ``volume.meta["kvp"]`` holds the tube voltage in
    kV (``None`` when the header has no KVP).

    HU = stored × Rescale Slope + Rescale Intercept, both required in every slice (a missing one,
    a slope of 0, or a NaN/infinite value raises; see :func:`_rescale`). Every file of the series
    must be a complete slice: a truncated or empty file raises instead of being left out.

    Args:
        folder: folder of the series' files (files that are not DICOM are skipped).
        series_instance_uid: which series, when the folder holds several.

    Raises:
        InputError: naming the file and the tag for a missing, malformed or inconsistent value
            (rescale, image size, pixel spacing, frame of reference, positions).
    """
    folder = Path(folder)
    items = select_series(read_series_headers(folder, "CT folder"), series_instance_uid, folder, "CT folder")
    rescale = {}  # every slice's, checked before any pixel is read
    for p, ds in items:
        mod = dcm.text(ds, "Modality", p)
        if mod != "CT":
            raise InputError(f"{p}: {dcm.tag_name('Modality')} is {mod!r}; expected 'CT'")
        rescale[p] = _rescale(ds, p)
    items, affine, _ = slice_stack_geometry(items, folder)
    slices = []
    for p, _hdr in items:
        ds = dcm.read_dataset(p, what="CT slice")
        rows, cols = _rows_cols(ds, p)
        arr = dcm.pixel_array(ds, p)
        if arr.shape != (rows, cols):
            raise InputError(f"{p}: pixel data has shape {arr.shape}; expected one slice of (Rows, "
                             f"Columns) = {(rows, cols)}")
        arr = arr.astype(np.float32)
        pad = dcm.get(ds, "PixelPaddingValue", p, cast=float, default=None)
        slope, inter = rescale[p]
        hu = arr * slope + inter
        if pad is not None:
            hu[arr == pad] = -1000.0
        slices.append(hu.T)  # [row, col] → [x=col, y=row]
    data = torch.from_numpy(np.stack(slices, axis=-1))
    ref_path, ref = items[0]
    kvp = dcm.get(ref, "KVP", ref_path, cast=float, default=None, bounds=dcm.KVP_KV)
    return Volume(
        data=data,
        affine=affine,
        modality="CT",
        units="HU",
        frame_of_reference_uid=dcm.text(ref, "FrameOfReferenceUID", ref_path) or None,
        study_instance_uid=dcm.text(ref, "StudyInstanceUID", ref_path) or None,
        series_instance_uid=dcm.text(ref, "SeriesInstanceUID", ref_path) or None,
        source=tuple(str(p) for p, _ in items),
        identity=dcm.identity(ref, ref_path),
        meta=dict(kvp=kvp, folder=str(folder)),
    )


# ---------------------------------------------------------------------- resampling
def _sitk_image(volume: np.ndarray, affine: np.ndarray):
    sitk = require("SimpleITK", "dicom")
    img = sitk.GetImageFromArray(np.ascontiguousarray(volume.transpose(2, 1, 0)))  # numpy [z, y, x]
    spacing = np.linalg.norm(affine[:3, :3], axis=0)
    direction = affine[:3, :3] / spacing
    img.SetSpacing(tuple(float(s) for s in spacing))
    img.SetDirection(tuple(float(v) for v in direction.flatten()))  # row-major, column a = axis a
    img.SetOrigin(tuple(float(v) for v in affine[:3, 3]))
    return img


def resample_to_grid(
    volume,
    affine,
    target_grid: VoxelGrid,
    target_affine,
    *,
    fill_value: float = 0.0,
    antialias: bool = True,
) -> torch.Tensor:
    """Resample ``volume`` onto ``target_grid`` placed by ``target_affine`` (SimpleITK, linear).

    Both affines map voxel indices to the same patient frame (DICOM LPS mm); the caller checks
    that the frames of reference match (:func:`ct_attenuation_map` does). Points outside the
    source get ``fill_value`` (0: air for a μ map).

    Args:
        volume: ``[X, Y, Z]`` tensor or array (or a :class:`Volume`, then ``affine`` may be ``None``).
        affine: 4×4 voxel → LPS of ``volume``.
        target_grid: the 3-D grid to fill.
        target_affine: 4×4 voxel → LPS of the target grid.
        fill_value: value outside the source.
        antialias: before downsampling, blur the source with a Gaussian of
            ``σ = sqrt(max(t² − s², 0)) / 2.355`` per axis (source spacing ``s``, target spacing
            ``t``) so that linear interpolation averages instead of aliasing.

    Returns:
        ``[X, Y, Z]`` float32 tensor (on the source's device).
    """
    sitk = require("SimpleITK", "dicom")
    if isinstance(volume, Volume):
        affine = volume.affine if affine is None else affine
        volume = volume.data
    device = volume.device if isinstance(volume, torch.Tensor) else torch.device("cpu")
    arr = volume.detach().cpu().numpy() if isinstance(volume, torch.Tensor) else np.asarray(volume)
    if arr.ndim != 3:
        raise InputError(f"volume: shape {arr.shape}; expected 3-D [X, Y, Z]")
    if not isinstance(target_grid, VoxelGrid) or target_grid.ndim != 3:
        raise InputError(f"target_grid: expected a 3-D VoxelGrid, found {target_grid!r}")
    A = check_affine(affine, "affine")
    T = check_affine(target_affine, "target_affine")
    t_sp = np.asarray(spacing_from_affine(T))
    if not np.allclose(t_sp, target_grid.voxel_size_mm, rtol=1e-4):
        raise InputError(f"target_affine: voxel sizes {t_sp.round(4).tolist()} differ from target_grid "
                         f"{list(target_grid.voxel_size_mm)}; expected equal")
    src = _sitk_image(arr.astype(np.float32), A)
    if antialias:
        s_sp = np.asarray(spacing_from_affine(A))
        s_dir = A[:3, :3] / s_sp
        t_dir = T[:3, :3] / t_sp
        # target spacing seen along each source axis: the largest projection of a target step
        t_along = np.abs(s_dir.T @ (t_dir * t_sp)).max(axis=1)
        sigma = np.sqrt(np.clip(t_along**2 - s_sp**2, 0.0, None)) / 2.3548
        if np.any(sigma > 0.05 * s_sp):
            src = sitk.SmoothingRecursiveGaussian(src, [float(max(v, 1e-3)) for v in sigma])
    ref = _sitk_image(np.zeros(target_grid.shape, dtype=np.float32), T)
    out = sitk.Resample(src, ref, sitk.Transform(), sitk.sitkLinear, float(fill_value), sitk.sitkFloat32)
    res = sitk.GetArrayFromImage(out).transpose(2, 1, 0)
    return torch.from_numpy(np.ascontiguousarray(res)).to(device)


def ct_attenuation_map(
    ct: Volume,
    target_grid: VoxelGrid,
    target_affine,
    energy_kev: float,
    *,
    target_frame_of_reference_uid: str | None = None,
    kvp: float | None = None,
    ct_effective_kev: float | None = None,
    target_name: str = "target",
) -> torch.Tensor:
    """μ map (cm⁻¹) at ``energy_kev`` on a SPECT grid, from a CT volume in HU.

    The CT is cropped to the target's axial extent, converted with :func:`ct_to_mu` at its own
    resolution, then resampled with :func:`resample_to_grid` (μ = 0 outside the CT).

    Args:
        ct: HU volume from :func:`read_ct_series`.
        target_grid, target_affine: the SPECT grid (``acq.grid()``, ``acq.affine``).
        energy_kev: emission energy.
        target_frame_of_reference_uid: the SPECT's Frame of Reference UID; when both are known
            they must be equal.
        kvp: tube voltage when the CT header lacks KVP (0018,0060).
        target_name: how to name the target in error messages (e.g. the projection file).

    Returns:
        ``[1, 1, *target_grid.shape]`` float32 μ map.
    """
    if ct.units != "HU":
        raise InputError(f"ct: units {ct.units!r}; expected a CT volume in 'HU' (read_ct_series)")
    ct_for, t_for = ct.frame_of_reference_uid, target_frame_of_reference_uid
    if ct_for and t_for and ct_for != t_for:
        where = ct.meta.get("folder") or (ct.source[0] if ct.source else "CT")
        raise InputError(
            f"{where}: {dcm.tag_name('FrameOfReferenceUID')} is {ct_for} but {target_name} has {t_for}; "
            f"expected the same frame of reference (register the CT first)"
        )
    kv = ct.meta.get("kvp") if kvp is None else kvp
    if kv is None:
        raise InputError(f"ct: {dcm.tag_name('KVP')} is missing from the CT; pass kvp=")
    T = check_affine(target_affine, "target_affine")
    # keep only the CT slices that reach the target (plus a margin for the blur)
    last = [n - 1 for n in target_grid.shape]
    corners = np.array([[i, j, k] for i in (0, last[0]) for j in (0, last[1]) for k in (0, last[2])], float)
    pts = corners @ T[:3, :3].T + T[:3, 3]
    ijk = (pts - ct.affine[:3, 3]) @ np.linalg.inv(ct.affine[:3, :3]).T
    margin = 4
    k0 = max(int(np.floor(ijk[:, 2].min())) - margin, 0)
    k1 = min(int(np.ceil(ijk[:, 2].max())) + margin + 1, ct.shape[2])
    if k1 <= k0:
        raise InputError(f"ct: the CT does not overlap the {target_name} grid along its slice axis")
    A = ct.affine.copy()
    A[:3, 3] = A[:3, 3] + A[:3, 2] * k0
    # Convert at full resolution (the model is not linear), then average f×f in-plane blocks, which
    # is part of the anti-alias blur anyway and makes the resampling cheap.
    sp = np.asarray(ct.spacing_mm)
    f = max(int(min(target_grid.voxel_size_mm[:2]) // max(sp[0], sp[1])), 1)
    chunks = []
    for z0 in range(k0, k1, 16):
        mu = ct_to_mu(ct.data[..., z0 : min(z0 + 16, k1)], energy_kev, kv, ct_effective_kev=ct_effective_kev)
        if f > 1:
            mu = F.avg_pool2d(mu.permute(2, 0, 1)[:, None], f, f, ceil_mode=True)[:, 0].permute(1, 2, 0)
        chunks.append(mu)
    mu = torch.cat(chunks, -1)
    if f > 1:
        A[:3, 3] = A[:3, 3] + (f - 1) / 2.0 * (A[:3, 0] + A[:3, 1])
        A[:3, :2] = A[:3, :2] * f
    out = resample_to_grid(mu, A, target_grid, T, fill_value=0.0)
    return out.clamp_min(0.0)[None, None]
