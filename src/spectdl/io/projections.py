"""Raw SPECT projections (NM Image Storage, TOMO) in spectdl's one projection convention.

From DICOM to spectdl
---------------------
DICOM (PS3.3 C.8.4.12) measures the detector angle ``φ`` from the patient's back (posterior),
increasing counter-clockwise *as seen from the patient's feet*, i.e. from posterior towards the
patient's left. Its ``Rotation Direction`` is ``CC`` (φ increases) or ``CW`` (φ decreases).

spectdl's reconstruction grid is aligned with the patient axes: voxel axis x → patient left
(+x of LPS), y → posterior (+y), z → head (+z). Its angle ``θ`` is measured from +y (posterior)
counter-clockwise in the (x, y) plane, i.e. as seen from the head (:mod:`spectdl.geometry`). The
same physical position is therefore

    θ = −φ  (mod 360),

so a DICOM ``CC`` acquisition is a spectdl ``"cw"`` orbit. The DICOM values are kept in
:attr:`Acquisition.dicom_angles_deg` and :attr:`Acquisition.rotation_direction`.

Image orientation. The Detector Information Sequence gives Image Orientation (Patient) of the
detector image at the start angle ``φ₀``: a row direction ``r̂₀`` (the direction of increasing
column index) and a column direction ``ĉ₀`` (increasing row index). The detector is a rigid body
turning about the z axis, so at angle φ its row direction is ``h·r(φ)`` with
``r(φ) = (−cos φ, sin φ, 0)`` (the image seen from the detector, patient's right on the left in
an anterior view) and ``h = sign(r̂₀·r(φ₀)) = ±1``; ``h = −1`` is a mirrored (flipped) file.
spectdl's radial axis at θ = −φ is ``(cos θ, sin θ) = −r(φ)``, so the columns are reversed when
``h = +1``; the rows are reversed when ``ĉ₀`` points to the feet, so that axial pixel k is
z-slice k with z increasing towards the head. Tilted detectors are rejected.

Position. The rotation axis is taken to project onto the central detector column (Center of
Rotation Offset is assumed applied by the vendor and is kept in :attr:`Acquisition.meta`). The
Image Position (Patient) of the Detector Information Sequence is the centre of the first pixel,
half a field of view in front of the axis (GE's convention, also PyTomography's), so the centre
of the reconstruction grid, on the axis, is

    C = IPP + ½(n_c−1)·Δr·r̂₀ + ½(n_r−1)·Δz·ĉ₀ − ½(n_c−1)·Δr·û(φ₀),   û(φ) = (sin φ, cos φ, 0)

(û points from the axis to the detector). For the GE Discovery 670 file of the shared data this
puts the axis 0.8 mm from GE's own axis-aligned reading (a fifth of a voxel, from the 0.16° start
angle). Without Image Position the grid is centred on the patient origin (documented fallback).

Checked values
--------------
Every tag is read through the checked accessors of :mod:`spectdl.io._dicom`: a value that cannot
be decoded, is not a number, is NaN or ±inf, or lies outside its physical range is an
:class:`~spectdl.errors.InputError` that names the file, the tag (keyword and hex), the sequence
item and the range. The ranges: Pixel Spacing 0 < value ≤ 50 mm; Radial Position 0 < value ≤ 2000
mm; Image Position within ±10⁵ mm; Center of Rotation Offset within ±1000 mm; Start Angle within
±360 deg; Angular Step nonzero (a zero step put every view at one angle) within ±360 deg; Gantry
Detector Tilt within ±90 deg (and then 0; a missing tilt is untilted, a NaN one an error); energy
window limits 0 … 2000 keV with upper > lower; Actual Frame Duration 0 < value ≤ 10⁸ ms;
Number of Frames 1 … 10⁶, Rows and Columns 1 … 65535. An empty Energy Window Range Sequence, and
a truncated file (a value shorter than its declared length, or bytes left after the last complete
element), are errors too.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np
import torch

from spectdl.errors import InputError
from spectdl.geometry import Orbit, VoxelGrid
from spectdl.io import _dicom as dcm

NM_IMAGE_STORAGE = "1.2.840.10008.5.1.4.1.1.20"

# Frame Increment Pointer targets of an NM multi-frame image, by keyword.
_VECTORS = {
    (0x0054, 0x0010): "EnergyWindowVector",
    (0x0054, 0x0020): "DetectorVector",
    (0x0054, 0x0030): "PhaseVector",
    (0x0054, 0x0050): "RotationVector",
    (0x0054, 0x0060): "RRIntervalVector",
    (0x0054, 0x0070): "TimeSlotVector",
    (0x0054, 0x0080): "SliceVector",
    (0x0054, 0x0090): "AngularViewVector",
    (0x0054, 0x0100): "TimeSliceVector",
}
_GATED = ("RRIntervalVector", "TimeSlotVector", "PhaseVector", "TimeSliceVector")


@dataclass(frozen=True)
class Acquisition:
    """SPECT projections of every energy window with the geometry a reconstruction needs.

    Attributes:
        windows: ``(low_kev, high_kev)`` of each energy window, in file order.
        window_names: Energy Window Name of each window (may be empty strings).
        orbit: spectdl :class:`Orbit` (θ = −φ_DICOM, see module docstring), one entry per view.
        pixel_size_mm: radial detector pixel size = transaxial voxel size of :meth:`grid`.
        axial_pixel_size_mm: axial pixel size = slice thickness of :meth:`grid`.
        time_per_view_s: acquisition time of each view (``None`` when not recorded).
        radionuclide: code meaning of the radionuclide, when present.
        affine: 4×4, voxel index of :meth:`grid` → LPS mm.
        frame_of_reference_uid, study_instance_uid: to match the CT.
        dicom_angles_deg: the DICOM detector angle φ of each view.
        rotation_direction: DICOM ``"CC"`` or ``"CW"``.
        collimator: Collimator/grid Name of the first detector (e.g. ``"MEGP"``), or ``None``.
        source: the file read.
        identity: patient/study tags (plain values) for derived DICOM series.
        meta: further details (manufacturer, flips applied, centre of rotation offset).
    """

    _counts: torch.Tensor  # [n_windows, n_angles, n_radial, n_axial]
    windows: list[tuple[float, float]]
    window_names: list[str]
    orbit: Orbit
    pixel_size_mm: float
    axial_pixel_size_mm: float
    time_per_view_s: float | None
    radionuclide: str | None
    affine: np.ndarray
    frame_of_reference_uid: str | None
    study_instance_uid: str | None
    dicom_angles_deg: tuple[float, ...] = ()
    rotation_direction: str = "CC"
    collimator: str | None = None
    source: str = ""
    identity: dict[str, Any] = field(default_factory=dict)
    meta: dict[str, Any] = field(default_factory=dict)

    # ------------------------------------------------------------------ data
    @property
    def n_windows(self) -> int:
        return len(self.windows)

    @property
    def shape(self) -> tuple[int, int, int]:
        """``(n_angles, n_radial, n_axial)`` of every window."""
        return tuple(self._counts.shape[1:])

    def counts(self, i: int) -> torch.Tensor:
        """Projections of window ``i`` (0-based, file order): ``[n_angles, n_radial, n_axial]`` float32."""
        return self._counts[self._window(i)]

    def total_counts(self, i: int) -> float:
        return float(self.counts(i).sum())

    def window_index(self, energy_kev: float) -> int:
        """The window containing ``energy_kev`` (the narrowest one if several do)."""
        e = float(energy_kev)
        hits = [k for k, (lo, hi) in enumerate(self.windows) if lo <= e <= hi]
        if not hits:
            raise InputError(f"energy_kev: {e} keV lies in none of the windows {self.windows}")
        return min(hits, key=lambda k: self.windows[k][1] - self.windows[k][0])

    def _window(self, i: int, name: str = "i") -> int:
        if not isinstance(i, (int, np.integer)) or not 0 <= int(i) < self.n_windows:
            raise InputError(f"{name}: window index {i!r} out of range; expected 0..{self.n_windows - 1} "
                             f"({self.windows})")
        return int(i)

    def window_width_kev(self, i: int) -> float:
        """Total width of window ``i`` in keV (the sum of its ranges when it has several)."""
        ranges = self.meta.get("window_ranges")
        if ranges:
            return float(sum(hi - lo for lo, hi in ranges[self._window(i)]))
        lo, hi = self.windows[self._window(i)]
        return hi - lo

    def tew_windows(self, peak: int, max_gap_kev: float = 5.0) -> tuple[int, int]:
        """Indices ``(lower, upper)`` of the windows adjacent to window ``peak`` (for TEW scatter).

        The lower window is the one whose upper edge is closest below the peak's lower edge, the upper
        window the one whose lower edge is closest above the peak's upper edge, each within
        ``max_gap_kev``.
        """
        peak = self._window(peak, "peak")
        lo, hi = self.windows[peak]
        others = [(k, w) for k, w in enumerate(self.windows) if k != peak]
        below = [(lo - w[1], k) for k, w in others if -1e-6 <= lo - w[1] <= max_gap_kev]
        above = [(w[0] - hi, k) for k, w in others if -1e-6 <= w[0] - hi <= max_gap_kev]
        if not below or not above:
            raise InputError(
                f"peak: window {peak} {self.windows[peak]} keV has no adjacent "
                f"{'lower' if not below else 'upper'} window within {max_gap_kev} keV among {self.windows}"
            )
        return min(below)[1], min(above)[1]

    # ------------------------------------------------------------------ geometry
    def grid(self) -> VoxelGrid:
        """The reconstruction grid ``(n_radial, n_radial, n_axial)`` at the detector pixel size."""
        _, nr, nz = self.shape
        return VoxelGrid((nr, nr, nz), (self.pixel_size_mm, self.pixel_size_mm, self.axial_pixel_size_mm))

    def crop_axial(self, start: int, stop: int) -> "Acquisition":
        """Keep axial pixels ``start:stop`` (a shorter grid; the affine moves with it)."""
        nz = self.shape[2]
        if not (0 <= int(start) < int(stop) <= nz):
            raise InputError(f"start, stop: ({start}, {stop}) is not a non-empty range within 0..{nz}")
        A = self.affine.copy()
        A[:3, 3] = A[:3, 3] + A[:3, 2] * int(start)
        return replace(self, _counts=self._counts[..., int(start) : int(stop)], affine=A)

    def rebin(self, factor: int) -> "Acquisition":
        """Sum ``factor × factor`` blocks of (radial, axial) pixels: a coarser grid, same centre.

        Both detector sizes must be divisible by ``factor`` (crop axially first if needed).
        """
        f = int(factor)
        if f < 1 or f != factor:
            raise InputError(f"factor: expected a positive integer, found {factor!r}")
        if f == 1:
            return self
        w, v, nr, nz = self._counts.shape
        if nr % f or nz % f:
            raise InputError(f"factor: {f} does not divide the detector size ({nr}, {nz}); crop_axial first")
        counts = self._counts.reshape(w, v, nr // f, f, nz // f, f).sum((3, 5))
        A = self.affine.copy()
        A[:3, 3] = A[:3, 3] + (f - 1) / 2.0 * A[:3, :3].sum(1)
        A[:3, :3] = A[:3, :3] * f
        return replace(self, _counts=counts, affine=A, pixel_size_mm=self.pixel_size_mm * f,
                       axial_pixel_size_mm=self.axial_pixel_size_mm * f)

    def axial_extent(self, window: int, threshold: float = 0.0) -> tuple[int, int]:
        """``(start, stop)`` of the axial pixels whose summed counts in ``window`` exceed ``threshold``."""
        prof = self.counts(window).sum((0, 1))
        idx = torch.nonzero(prof > threshold).flatten()
        if idx.numel() == 0:
            raise InputError(f"window {window}: no axial pixel has more than {threshold} counts")
        return int(idx[0]), int(idx[-1]) + 1

    def __repr__(self) -> str:
        return (
            f"Acquisition({Path(self.source).name!r}, {self.n_windows} windows {self.windows}, "
            f"shape {self.shape}, pixel {self.pixel_size_mm:g}×{self.axial_pixel_size_mm:g} mm, "
            f"{self.rotation_direction} from {self.dicom_angles_deg[0] if self.dicom_angles_deg else '?'} "
            "deg)"
        )


# ---------------------------------------------------------------------- reader
def read_projections(
    path: str | Path, *, radius_mm: float | None = None, ignore_orientation: bool = False
) -> Acquisition:
    """Read raw SPECT projections (NM Image Storage, Image Type ``…\\TOMO``) into an :class:`Acquisition`.

    Supports several energy windows, one or more detectors, several rotations (same direction), CW
    and CC rotation, any start angle and step, and per-view radial positions. See the module
    docstring for the orientation and position conventions.

    Args:
        path: the DICOM file.
        radius_mm: radius of rotation (mm) to use when the file records no Radial Position.
        ignore_orientation: take every detector image in the default orientation (seen from the
            detector, head at the top) whatever its Image Orientation (Patient) says; for files
            whose orientation tags do not follow the start angle.

    Returns:
        The :class:`Acquisition`; ``acq.counts(i)`` is ``[n_angles, n_radial, n_axial]``.

    Raises:
        InputError: the file is missing, not DICOM, truncated, not NM TOMO, lacks a tag the
            geometry needs, holds a malformed, non-finite or out-of-range value (module docstring,
            "Checked values"), or its frame vectors do not match the frames. ``radius_mm`` outside
            0 < value ≤ 2000 mm is refused too.
    """
    path = Path(path)
    if radius_mm is not None:
        number = isinstance(radius_mm, (int, float)) and not isinstance(radius_mm, bool)
        r = float(radius_mm) if number else None
        if r is None or not math.isfinite(r) or r not in dcm.RADIUS_MM:
            raise InputError(f"radius_mm: {radius_mm!r}; expected {dcm.RADIUS_MM}")
        radius_mm = r
    ds = dcm.read_dataset(path, what="projection file")
    modality = dcm.text(ds, "Modality", path)
    if modality != "NM":
        raise InputError(
            f"{path}: {dcm.tag_name('Modality')} is {modality!r}; expected 'NM' (raw SPECT projections)"
        )
    image_type = [v.upper() for v in dcm.texts(ds, "ImageType", path)]
    kind = image_type[2] if len(image_type) > 2 else ""
    if kind != "TOMO" and not (kind == "" and "RotationInformationSequence" in ds):
        hint = {"RECON TOMO": "use read_volume_series for reconstructed volumes",
                "GATED TOMO": "gated TOMO is not supported; sum the gates first",
                "WHOLE BODY": "use read_planar for planar scans",
                "STATIC": "use read_planar for planar scans"}
        raise InputError(
            f"{path}: {dcm.tag_name('ImageType')} value 3 is {kind!r}; expected 'TOMO'"
            + (f" ({hint[kind]})" if kind in hint else "")
        )
    n_frames = dcm.get(ds, "NumberOfFrames", path, cast=int, bounds=dcm.N_FRAMES)
    rows = dcm.get(ds, "Rows", path, cast=int, bounds=dcm.N_PIXELS)
    cols = dcm.get(ds, "Columns", path, cast=int, bounds=dcm.N_PIXELS)
    # adjacent-row spacing (axial), adjacent-column spacing (radial)
    dz, dr = dcm.vector(ds, "PixelSpacing", path, n=2, bounds=dcm.PIXEL_SPACING_MM)

    vectors = _frame_vectors(ds, path, n_frames)
    for kw in _GATED:
        if kw in vectors and len(set(vectors[kw].tolist())) > 1:
            raise InputError(f"{path}: {dcm.tag_name(kw)} has several values; gated projections are not "
                             "supported")

    # Energy windows
    windows, names, ranges = [], [], []
    for k, item in enumerate(dcm.sequence(ds, "EnergyWindowInformationSequence", path)):
        where = f"EnergyWindowInformationSequence item {k + 1}"
        rr = []
        for j, r in enumerate(dcm.sequence(item, "EnergyWindowRangeSequence", path, where=where)):
            at = f"{where}, EnergyWindowRangeSequence item {j + 1}"
            lo = dcm.get(r, "EnergyWindowLowerLimit", path, where=at, cast=float, bounds=dcm.ENERGY_KEV)
            hi = dcm.get(r, "EnergyWindowUpperLimit", path, where=at, cast=float, bounds=dcm.ENERGY_KEV)
            if not hi > lo:
                raise InputError(f"{path}: tag {dcm.tag_name('EnergyWindowUpperLimit')} in {at} is {hi} keV; "
                                 f"expected more than {dcm.tag_name('EnergyWindowLowerLimit')} {lo} keV")
            rr.append((lo, hi))
        windows.append(rr[0])
        ranges.append(rr)
        names.append(dcm.text(item, "EnergyWindowName", path, where=where))
    n_win = len(windows)
    n_win_tag = dcm.get(ds, "NumberOfEnergyWindows", path, cast=int, default=None, bounds=dcm.COUNT)
    if n_win_tag is not None and n_win_tag != n_win:
        raise InputError(
            f"{path}: {dcm.tag_name('NumberOfEnergyWindows')} is {n_win_tag} but the "
            f"{dcm.tag_name('EnergyWindowInformationSequence')} has {n_win} items; expected equal"
        )

    det_seq = dcm.sequence(ds, "DetectorInformationSequence", path)
    rot_seq = dcm.sequence(ds, "RotationInformationSequence", path)
    ones = np.ones(n_frames, dtype=np.int64)
    ew = vectors.get("EnergyWindowVector", ones)
    dv = vectors.get("DetectorVector", ones)
    rv = vectors.get("RotationVector", ones)
    checks = (("EnergyWindowVector", ew, n_win), ("DetectorVector", dv, len(det_seq)),
              ("RotationVector", rv, len(rot_seq)))
    for kw, vec, n in checks:
        bad = sorted({int(v) for v in vec if not 1 <= int(v) <= n})
        if bad:
            raise InputError(f"{path}: {dcm.tag_name(kw)} holds {bad[:5]}; expected values 1..{n} (the "
                             "sequence items)")

    # Rotations: start angle, step, direction, views per rotation
    rot_info = []
    for k, item in enumerate(rot_seq):
        where = f"RotationInformationSequence item {k + 1}"
        direction = dcm.get(item, "RotationDirection", path, where=where, cast=str).strip().upper()
        if direction in ("CCW",):
            direction = "CC"
        if direction not in ("CC", "CW"):
            raise InputError(f"{path}: {dcm.tag_name('RotationDirection')} in {where} is {direction!r}; "
                             "expected 'CC' or 'CW'")
        rot_info.append(dict(
            start=dcm.get(item, "StartAngle", path, where=where, cast=float, bounds=dcm.ANGLE_DEG),
            # a zero step would put every view at one angle
            step=dcm.get(item, "AngularStep", path, where=where, cast=float, bounds=dcm.ANGULAR_STEP_DEG),
            direction=direction,
            n_views=dcm.get(item, "NumberOfFramesInRotation", path, where=where, cast=int, default=None,
                            bounds=dcm.COUNT),
            duration_ms=dcm.get(item, "ActualFrameDuration", path, where=where, cast=float, default=None,
                                bounds=dcm.FRAME_DURATION_MS),
            radial=dcm.vector(item, "RadialPosition", path, where=where, default=None, bounds=dcm.RADIUS_MM),
            where=where,
        ))
    directions = {r["direction"] for r in rot_info}
    if len(directions) != 1:
        raise InputError(f"{path}: rotations go both ways ({sorted(directions)}); expected one direction")
    direction = directions.pop()

    # Views: one per (detector, rotation, angular view); each window must hold each view once.
    av = vectors.get("AngularViewVector")
    if av is None:
        av = np.zeros(n_frames, dtype=int)
        for key in {(int(a), int(b), int(c)) for a, b, c in zip(ew, dv, rv)}:
            sel = np.nonzero((ew == key[0]) & (dv == key[1]) & (rv == key[2]))[0]
            av[sel] = np.arange(1, len(sel) + 1)
    keys_by_window = []
    for w in range(1, n_win + 1):
        sel = np.nonzero(ew == w)[0]
        keys = [(int(dv[f]), int(rv[f]), int(av[f])) for f in sel]
        if len(set(keys)) != len(keys):
            raise InputError(f"{path}: energy window {w} has {len(keys) - len(set(keys))} repeated "
                             "(detector, rotation, view) frames; "
                             f"expected each view once")
        keys_by_window.append(dict(zip(keys, sel.tolist())))
    view_keys = sorted(keys_by_window[0])
    for w, kd in enumerate(keys_by_window[1:], start=2):
        if sorted(kd) != view_keys:
            raise InputError(f"{path}: energy window {w} has {len(kd)} views but window 1 has "
                             f"{len(view_keys)}; "
                             f"expected the same views in every window ({n_frames} frames in all)")
    for r_idx, r in enumerate(rot_info, start=1):
        if r["n_views"] is None:
            continue
        for d in sorted({k[0] for k in view_keys}):
            got = sum(1 for k in view_keys if k[0] == d and k[1] == r_idx)
            if got != r["n_views"]:
                raise InputError(
                    f"{path}: detector {d}, rotation {r_idx} has {got} frames per window but "
                    f"{dcm.tag_name('NumberOfFramesInRotation')} is {r['n_views']}; expected equal"
                )

    # Detector orientation, start angle and radii
    n_det_tag = dcm.get(ds, "NumberOfDetectors", path, cast=int, default=None, bounds=dcm.COUNT)
    if n_det_tag is not None and n_det_tag != len(det_seq):
        raise InputError(f"{path}: {dcm.tag_name('NumberOfDetectors')} is {n_det_tag} but the "
                         f"{dcm.tag_name('DetectorInformationSequence')} has {len(det_seq)} items; expected "
                         "equal")
    det_info = {}
    for d in sorted({k[0] for k in view_keys}):
        item = det_seq[d - 1]
        where = f"DetectorInformationSequence item {d}"
        # A missing tilt is an untilted detector; a NaN one is a corrupt file (the accessor refuses it).
        tilt = dcm.get(item, "GantryDetectorTilt", path, where=where, cast=float, default=0.0,
                       bounds=dcm.TILT_DEG)
        if abs(tilt) > 1e-3:
            raise InputError(f"{path}: {dcm.tag_name('GantryDetectorTilt')} in {where} is {tilt} deg; "
                             "expected 0 (untilted)")
        start_det = dcm.get(item, "StartAngle", path, where=where, cast=float, default=None,
                            bounds=dcm.ANGLE_DEG)
        if start_det is None and len(det_seq) > 1 and len(rot_info) == 1:
            raise InputError(f"{path}: {dcm.tag_name('StartAngle')} is missing in {where}; expected the "
                             "start angle of "
                             f"each detector of a {len(det_seq)}-detector acquisition")
        det_info[d] = dict(
            start=start_det,
            iop=dcm.vector(item, "ImageOrientationPatient", path, n=6, where=where, default=None),
            ipp=dcm.vector(item, "ImagePositionPatient", path, n=3, where=where, default=None,
                           bounds=dcm.POSITION_MM),
            radial=dcm.vector(item, "RadialPosition", path, where=where, default=None, bounds=dcm.RADIUS_MM),
            cor=dcm.get(item, "CenterOfRotationOffset", path, where=where, cast=float, default=0.0,
                        bounds=dcm.COR_OFFSET_MM),
            collimator=dcm.text(item, "CollimatorGridName", path, where=where) or None,
            where=where,
        )

    phi, radius = {}, {}
    for key in view_keys:
        d, r_idx, v = key
        rot, det = rot_info[r_idx - 1], det_info[d]
        start = det["start"] if det["start"] is not None and len(rot_info) == 1 else rot["start"]
        sign = 1.0 if rot["direction"] == "CC" else -1.0
        phi[key] = start + sign * rot["step"] * (v - 1)
        radius[key] = _radius(det["radial"], rot["radial"], v, radius_mm, path, det["where"], rot["where"])

    # Orientation of each detector at its start angle → flips
    flips = {}
    start_phi = {}
    for d, det in det_info.items():
        start_phi[d] = phi[min(k for k in view_keys if k[0] == d)]  # first rotation, first view
        flips[d] = (True, True) if ignore_orientation else _detector_flips(det, start_phi[d], path)

    # spectdl order: by angle travelled from the first view, in the direction of motion
    theta = {k: (-phi[k]) % 360.0 for k in view_keys}
    first = min(view_keys, key=lambda k: (k[1], k[0], k[2]))
    s_dir = -1.0 if direction == "CC" else 1.0  # spectdl sense: CC (φ up) is θ down
    order = sorted(view_keys, key=lambda k: (((theta[k] - theta[first]) * s_dir) % 360.0, k))
    orbit = Orbit(tuple(theta[k] for k in order), tuple(radius[k] for k in order),
                  "cw" if direction == "CC" else "ccw")

    pixels = dcm.pixel_array(ds, path)
    if pixels.ndim == 2:
        pixels = pixels[None]
    if pixels.shape != (n_frames, rows, cols):
        raise InputError(f"{path}: pixel data has shape {pixels.shape}; expected (NumberOfFrames, Rows, "
                         "Columns) = "
                         f"{(n_frames, rows, cols)}")
    counts = np.empty((n_win, len(order), cols, rows), dtype=np.float32)
    for w, kd in enumerate(keys_by_window):
        for j, key in enumerate(order):
            img = pixels[kd[key]].astype(np.float32)  # [row, col]
            rev_cols, rev_rows = flips[key[0]]
            if rev_cols:
                img = img[:, ::-1]
            if rev_rows:
                img = img[::-1, :]
            counts[w, j] = img.T  # → [radial, axial]

    first_det = det_info[first[0]]
    if ignore_orientation:
        first_det = dict(first_det, iop=None)
    centre = _axis_centre(first_det, start_phi[first[0]], rows, cols, dr, dz, path)
    affine = np.diag([dr, dr, dz, 1.0])
    affine[:3, 3] = centre - np.array([(cols - 1) / 2 * dr, (cols - 1) / 2 * dr, (rows - 1) / 2 * dz])

    durations = {r["duration_ms"] for r in rot_info if r["duration_ms"] is not None}
    time_per_view = durations.pop() / 1000.0 if len(durations) == 1 else None
    return Acquisition(
        _counts=torch.from_numpy(counts),
        windows=windows,
        window_names=names,
        orbit=orbit,
        pixel_size_mm=dr,
        axial_pixel_size_mm=dz,
        time_per_view_s=time_per_view,
        radionuclide=_radionuclide(ds, path),
        affine=affine,
        frame_of_reference_uid=dcm.text(ds, "FrameOfReferenceUID", path) or None,
        study_instance_uid=dcm.text(ds, "StudyInstanceUID", path) or None,
        dicom_angles_deg=tuple(phi[k] for k in order),
        rotation_direction=direction,
        collimator=first_det["collimator"],
        source=str(path),
        identity=dcm.identity(ds, path),
        meta=dict(
            manufacturer=dcm.text(ds, "Manufacturer", path),
            model=dcm.text(ds, "ManufacturerModelName", path),
            window_ranges=ranges,
            flips={d: dict(reverse_columns=bool(f[0]), reverse_rows=bool(f[1])) for d, f in flips.items()},
            center_of_rotation_offset_mm={d: det["cor"] for d, det in det_info.items()},
            view_keys=order,
            axis_centre_mm=centre.tolist(),
            series_instance_uid=dcm.text(ds, "SeriesInstanceUID", path),
        ),
    )


def _frame_vectors(ds, path, n_frames: int) -> dict[str, np.ndarray]:
    """The vectors the Frame Increment Pointer names, each checked to hold one value per frame."""
    if dcm.element(ds, "FrameIncrementPointer", path) is None:
        raise InputError(f"{path}: {dcm.tag_name('FrameIncrementPointer')} is missing; expected the frame "
                         "layout")
    pointers = dcm.vector(ds, "FrameIncrementPointer", path, cast=int, bounds=dcm.Range(0, 0xFFFFFFFF))
    out: dict[str, np.ndarray] = {}
    for tag in pointers:
        key = (tag >> 16, tag & 0xFFFF)
        kw = _VECTORS.get(key)
        if kw is None:
            continue  # e.g. Frame Time: not a layout vector
        if dcm.element(ds, kw, path) is None:
            raise InputError(f"{path}: {dcm.tag_name('FrameIncrementPointer')} names {dcm.tag_name(kw)}, "
                             "which is missing")
        # US values; the range 1..n of the sequence they index is checked by the caller
        vec = np.asarray(dcm.vector(ds, kw, path, cast=int, bounds=dcm.Range(0, 65535)), dtype=np.int64)
        if vec.size != n_frames:
            raise InputError(
                f"{path}: {dcm.tag_name(kw)} has {vec.size} values but {dcm.tag_name('NumberOfFrames')} is "
                f"{n_frames}; expected one value per frame"
            )
        out[kw] = vec
    return out


def _radius(det_radial, rot_radial, view: int, override, path, det_where, rot_where) -> float:
    """The radius of ``view`` (1-based): the detector's Radial Position, else the rotation's, else
    ``override``. Values were checked against :data:`~spectdl.io._dicom.RADIUS_MM` when read."""
    for vals, where in ((det_radial, det_where), (rot_radial, rot_where)):
        if not vals:
            continue
        if len(vals) == 1:
            return vals[0]
        if view > len(vals):
            raise InputError(f"{path}: {dcm.tag_name('RadialPosition')} in {where} has {len(vals)} values; "
                             f"expected one per view (view {view} needs one)")
        return vals[view - 1]
    if override is not None:
        return float(override)
    raise InputError(f"{path}: {dcm.tag_name('RadialPosition')} is missing in {det_where} and {rot_where}; "
                     f"pass radius_mm= to read_projections")


def _detector_flips(det: dict, phi0: float, path) -> tuple[bool, bool]:
    """(reverse columns, reverse rows) that bring this detector's images to spectdl's convention."""
    rad = math.radians(phi0)
    r_phys = np.array([-math.cos(rad), math.sin(rad), 0.0])
    if det["iop"] is None:
        return True, True  # default: image seen from the detector, head at the top
    r0, c0 = dcm.orientation(det["iop"], path, f"in {det['where']} ")
    if abs(r0[2]) > 0.02 or abs(abs(c0[2]) - 1.0) > 0.02:
        raise InputError(
            f"{path}: {dcm.tag_name('ImageOrientationPatient')} in {det['where']} is "
            f"{np.round(np.r_[r0, c0], 4).tolist()}; expected rows in the transverse plane and columns "
            "along z "
            f"(an untilted detector)"
        )
    dot = float(r0 @ r_phys)
    if abs(dot) < 0.5:
        raise InputError(
            f"{path}: {dcm.tag_name('ImageOrientationPatient')} in {det['where']} has row direction "
            f"{np.round(r0, 4).tolist()}, which is not parallel to the detector face at the start angle "
            f"{phi0} deg (expected ±{np.round(r_phys, 4).tolist()}); pass ignore_orientation=True to use "
            f"the default orientation"
        )
    return dot > 0, c0[2] < 0


def _axis_centre(det: dict, phi0: float, rows: int, cols: int, dr: float, dz: float, path) -> np.ndarray:
    if det["ipp"] is None:
        return np.zeros(3)
    ipp = np.array(det["ipp"], dtype=np.float64)
    if det["iop"] is None:
        rad = math.radians(phi0)
        r0, c0 = np.array([-math.cos(rad), math.sin(rad), 0.0]), np.array([0.0, 0.0, -1.0])
    else:
        r0, c0 = dcm.orientation(det["iop"], path, f"in {det['where']} ")
    rad = math.radians(phi0)
    u = np.array([math.sin(rad), math.cos(rad), 0.0])
    return ipp + 0.5 * (cols - 1) * dr * r0 + 0.5 * (rows - 1) * dz * c0 - 0.5 * (cols - 1) * dr * u


def _radionuclide(ds, path) -> str | None:
    seq = dcm.sequence(ds, "RadiopharmaceuticalInformationSequence", path, default=[])
    for k, item in enumerate(seq):
        where = f"RadiopharmaceuticalInformationSequence item {k + 1}"
        for c in dcm.sequence(item, "RadionuclideCodeSequence", path, where=where, default=[]):
            meaning = dcm.text(c, "CodeMeaning", path, where=f"{where}, RadionuclideCodeSequence")
            if meaning:
                return meaning
        name = dcm.text(item, "Radiopharmaceutical", path, where=where)
        if name:
            return name
    return None
