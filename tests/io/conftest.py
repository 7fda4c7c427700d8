"""Builders of small synthetic DICOM files for the io tests (written with pydicom into tmp_path).

The NM projection builder computes where a point source falls on each detector view straight from
the DICOM definitions (PS3.3 C.8.4.11/12), independently of spectdl's reader:

* detector angle φ: 0 at the patient's back, increasing counter-clockwise seen from the feet, so
  the detector sits along ``u(φ) = (sin φ, cos φ, 0)`` in LPS;
* the detector turns rigidly: the row direction of its image at φ is ``h·(−cos φ, sin φ, 0)``
  (``h = +1`` the image as seen from the detector, ``h = −1`` a mirrored file), the column
  direction is ``c0`` (±z), both as written in Image Orientation (Patient) at the start angle;
* Image Position (Patient) is the first pixel's centre, half a field of view in front of the axis.
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest

pydicom = pytest.importorskip("pydicom")
from pydicom.dataset import Dataset, FileMetaDataset  # noqa: E402
from pydicom.sequence import Sequence  # noqa: E402
from pydicom.uid import ExplicitVRLittleEndian, generate_uid  # noqa: E402

NM_STORAGE = "1.2.840.10008.5.1.4.1.1.20"
CT_STORAGE = "1.2.840.10008.5.1.4.1.1.2"
PT_STORAGE = "1.2.840.10008.5.1.4.1.1.128"
STUDY_UID = "1.2.826.0.1.3680043.8.498.1"
FOR_UID = "1.2.826.0.1.3680043.8.498.2"


def finish(ds: Dataset, sop_class: str, path: Path) -> Path:
    ds.SOPClassUID = sop_class
    ds.SOPInstanceUID = generate_uid()
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = sop_class
    meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds.file_meta = meta
    pydicom.dcmwrite(str(path), ds, enforce_file_format=True)
    return path


def base_identity(ds: Dataset) -> None:
    ds.PatientName = "Test^Patient"
    ds.PatientID = "ID123"
    ds.PatientBirthDate = "19600101"
    ds.PatientSex = "F"
    ds.StudyInstanceUID = STUDY_UID
    ds.FrameOfReferenceUID = FOR_UID
    ds.StudyDate = "20240102"
    ds.StudyTime = "100000"
    ds.InstitutionName = "Hospital"
    ds.ReferringPhysicianName = "Dr^Who"
    ds.AccessionNumber = "ACC1"


def r_dir(phi_deg: float) -> np.ndarray:
    a = math.radians(phi_deg)
    return np.array([-math.cos(a), math.sin(a), 0.0])


def u_dir(phi_deg: float) -> np.ndarray:
    a = math.radians(phi_deg)
    return np.array([math.sin(a), math.cos(a), 0.0])


def point_frame(p, axis, phi, h, c0, n, nz, dr, dz, counts=1000.0):
    """One detector image ``[rows, cols]`` of a point source ``p`` (LPS mm), bilinear sub-pixel split."""
    r_v = h * r_dir(phi)
    ipp = axis - 0.5 * (n - 1) * dr * r_v - 0.5 * (nz - 1) * dz * c0 + 0.5 * (n - 1) * dr * u_dir(phi)
    col = float((p - ipp) @ r_v) / dr
    row = float((p - ipp) @ c0) / dz
    img = np.zeros((nz, n))
    c_lo, r_lo = int(math.floor(col)), int(math.floor(row))
    fc, fr = col - c_lo, row - r_lo
    for dr_i, wr in ((0, 1 - fr), (1, fr)):
        for dc_i, wc in ((0, 1 - fc), (1, fc)):
            rr, cc = r_lo + dr_i, c_lo + dc_i
            if 0 <= rr < nz and 0 <= cc < n:
                img[rr, cc] += counts * wr * wc
    return img


def make_nm_projections(
    path: Path,
    *,
    point=(18.0, -26.0, 9.0),
    axis=(5.0, -7.0, 3.0),
    n=24,
    nz=12,
    dr=4.0,
    dz=4.0,
    n_views=40,
    step=9.0,
    detectors=((180.0, 1.0),),  # (start angle, h) per detector
    direction="CC",
    c0=(0.0, 0.0, -1.0),
    radii=None,
    windows=((187.2, 228.8), (166.89, 186.31), (229.63, 251.16)),
    window_scale=(1.0, 0.25, 0.125),
    modality="NM",
    drop=(),
    vector_length_delta=0,
    radius=254.0,
    frame_duration_ms=25000,
    per_detector_start=True,
) -> Path:
    """Write an NM TOMO file of a point source; returns the path (see module docstring)."""
    p, ax, c0 = np.asarray(point, float), np.asarray(axis, float), np.asarray(c0, float)
    sign = 1.0 if direction == "CC" else -1.0
    frames, ew, dv, rv, av = [], [], [], [], []
    for w, scale in enumerate(window_scale, start=1):
        for d, (start, h) in enumerate(detectors, start=1):
            for v in range(1, n_views + 1):
                phi = start + sign * step * (v - 1)
                frames.append(np.rint(point_frame(p, ax, phi, h, c0, n, nz, dr, dz, 1000.0 * scale)))
                ew.append(w)
                dv.append(d)
                rv.append(1)
                av.append(v)
    pix = np.asarray(frames, dtype=np.uint16)
    ds = Dataset()
    base_identity(ds)
    ds.Modality = modality
    ds.Manufacturer = "Synthetic"
    ds.ImageType = ["ORIGINAL", "PRIMARY", "TOMO", "EMISSION"]
    ds.SeriesInstanceUID = generate_uid()
    ds.NumberOfFrames = len(frames)
    ds.Rows, ds.Columns = nz, n
    ds.PixelSpacing = [dz, dr]
    ds.SamplesPerPixel = 1
    ds.PhotometricInterpretation = "MONOCHROME2"
    ds.BitsAllocated = ds.BitsStored = 16
    ds.HighBit = 15
    ds.PixelRepresentation = 0
    ds.FrameIncrementPointer = [0x00540010, 0x00540020, 0x00540050, 0x00540090]
    k = vector_length_delta
    ds.EnergyWindowVector = (ew + [1] * k) if k >= 0 else ew[:k]
    ds.DetectorVector = dv
    ds.RotationVector = rv
    ds.AngularViewVector = av
    ds.NumberOfEnergyWindows = len(windows)
    ew_seq = []
    for lo, hi in windows:
        item, rng = Dataset(), Dataset()
        rng.EnergyWindowLowerLimit = lo
        rng.EnergyWindowUpperLimit = hi
        item.EnergyWindowRangeSequence = Sequence([rng])
        item.EnergyWindowName = f"W{lo:g}"
        ew_seq.append(item)
    ds.EnergyWindowInformationSequence = Sequence(ew_seq)
    ds.NumberOfDetectors = len(detectors)
    det_seq = []
    for d, (start, h) in enumerate(detectors):
        item = Dataset()
        r0 = h * r_dir(start)
        ipp = ax - 0.5 * (n - 1) * dr * r0 - 0.5 * (nz - 1) * dz * c0 + 0.5 * (n - 1) * dr * u_dir(start)
        item.ImagePositionPatient = [float(v) for v in ipp]
        item.ImageOrientationPatient = [float(v) for v in np.r_[r0, c0]]
        item.CollimatorGridName = "MEGP"
        item.CollimatorType = "PARA"
        item.GantryDetectorTilt = 0
        if per_detector_start and len(detectors) > 1:
            item.StartAngle = start
        if radii is not None:
            item.RadialPosition = [float(r) for r in radii[d]]
        det_seq.append(item)
    ds.DetectorInformationSequence = Sequence(det_seq)
    ds.NumberOfRotations = 1
    rot = Dataset()
    rot.StartAngle = detectors[0][0]
    rot.AngularStep = step
    rot.RotationDirection = direction
    rot.ScanArc = step * n_views
    rot.NumberOfFramesInRotation = n_views
    rot.ActualFrameDuration = frame_duration_ms
    if radii is None:
        rot.RadialPosition = radius
    ds.RotationInformationSequence = Sequence([rot])
    ds.PixelData = pix.tobytes()
    for kw in drop:
        if kw in ds:
            delattr(ds, kw)
        rot, det = ds.get("RotationInformationSequence") or [], ds.get("DetectorInformationSequence") or []
        items = [*rot, *det]
        for item in items:
            if kw in item:
                delattr(item, kw)
    return finish(ds, NM_STORAGE, path)


def make_slice_series(
    folder: Path,
    volume_xyz: np.ndarray,
    *,
    origin=(-20.0, -15.0, -30.0),
    spacing=(2.0, 1.5, 3.0),  # along X (columns), Y (rows), Z (slices)
    row_dir=(1.0, 0.0, 0.0),
    col_dir=(0.0, 1.0, 0.0),
    modality="CT",
    slope=1.0,
    intercept=-1024.0,
    signed=True,
    extra=None,
    shuffle=True,
    for_uid=FOR_UID,
) -> list[Path]:
    """One file per slice; stored = (value − intercept)/slope; slices written in shuffled order."""
    folder.mkdir(parents=True, exist_ok=True)
    r, c = np.asarray(row_dir, float), np.asarray(col_dir, float)
    normal = np.cross(r, c)
    series = generate_uid()
    nz = volume_xyz.shape[2]
    order = np.random.default_rng(0).permutation(nz) if shuffle else np.arange(nz)
    paths = []
    for k in order:
        ds = Dataset()
        base_identity(ds)
        ds.FrameOfReferenceUID = for_uid
        ds.Modality = modality
        ds.SeriesInstanceUID = series
        ds.InstanceNumber = int(k) + 1
        ds.ImageType = ["ORIGINAL", "PRIMARY", "AXIAL"]
        ipp = np.asarray(origin) + k * spacing[2] * normal
        ds.ImagePositionPatient = [float(v) for v in ipp]
        ds.ImageOrientationPatient = [float(v) for v in np.r_[r, c]]
        ds.PixelSpacing = [spacing[1], spacing[0]]
        ds.SliceThickness = spacing[2]
        stored = np.rint((volume_xyz[:, :, k].T - intercept) / slope)
        ds.Rows, ds.Columns = stored.shape
        ds.SamplesPerPixel = 1
        ds.PhotometricInterpretation = "MONOCHROME2"
        ds.BitsAllocated = ds.BitsStored = 16
        ds.HighBit = 15
        ds.PixelRepresentation = 1 if signed else 0
        ds.RescaleSlope = slope
        ds.RescaleIntercept = intercept
        if modality == "CT":
            ds.KVP = 120
        for kw, v in (extra or {}).items():
            setattr(ds, kw, v)
        ds.PixelData = stored.astype(np.int16 if signed else np.uint16).tobytes()
        paths.append(finish(ds, CT_STORAGE if modality == "CT" else PT_STORAGE, folder / f"s{k:03d}.dcm"))
    return paths


@pytest.fixture
def nm_file(tmp_path):
    """Factory: ``nm_file(name, **kwargs)`` writes a synthetic NM TOMO file into tmp_path."""

    def make(name="proj.dcm", **kwargs):
        return make_nm_projections(tmp_path / name, **kwargs)

    return make


@pytest.fixture
def slice_series(tmp_path):
    """Factory: ``slice_series(name, volume_xyz, **kwargs)`` writes a one-file-per-slice series folder."""

    def make(name, volume_xyz, **kwargs):
        folder = tmp_path / name
        make_slice_series(folder, np.asarray(volume_xyz, dtype=np.float64), **kwargs)
        return folder

    return make


@pytest.fixture
def write_dataset(tmp_path):
    """Factory: ``write_dataset(ds, sop_class_uid, name)`` adds file meta and writes ``ds`` to tmp_path."""

    def make(ds, sop_class, name):
        return finish(ds, sop_class, tmp_path / name)

    return make


# ---------------------------------------------------------------------- editing files for bad-value tests
DELETE = object()


def _target(ds, dotted: str):
    """The dataset holding the last part of ``"Seq[0].Item[1].Keyword"`` and that keyword."""
    parts = dotted.split(".")
    for part in parts[:-1]:
        name, idx = part.rstrip("]").split("[")
        ds = ds[name].value[int(idx)]
    return ds, parts[-1]


def set_tag(ds, dotted: str, value) -> None:
    """Set (or delete, with ``DELETE``) ``dotted`` in ``ds``; ``(VR, value)`` forces the VR, so that a
    value the tag's own VR cannot hold (text in a US tag, NaN as FD) can be written."""
    from pydicom.datadict import tag_for_keyword
    from pydicom.dataelem import DataElement

    target, kw = _target(ds, dotted)
    if value is DELETE:
        if kw in target:
            del target[kw]
    elif isinstance(value, tuple) and len(value) == 2 and isinstance(value[0], str) and len(value[0]) == 2:
        target[kw] = DataElement(tag_for_keyword(kw), value[0], value[1])
    else:
        setattr(target, kw, value)


def edit_file(path: Path, changes: dict, out: Path | None = None) -> Path:
    """Apply ``{dotted: value}`` (see :func:`set_tag`) to a DICOM file, without pydicom's value checks."""
    from pydicom.config import disable_value_validation

    ds = pydicom.dcmread(str(path))
    out = path if out is None else out
    with disable_value_validation():
        for dotted, value in changes.items():
            set_tag(ds, dotted, value)
        ds.save_as(str(out))
    return out


def patch_vr(path: Path, keyword: str, vr: str, occurrence: int = 0) -> Path:
    """Overwrite the VR bytes of one element in an explicit-VR little-endian file, as a bit flip would:
    pydicom reads the file, and fails only when the value is decoded."""
    import struct

    from pydicom.datadict import tag_for_keyword

    tag = tag_for_keyword(keyword)
    data = bytearray(path.read_bytes())
    key = struct.pack("<HH", tag >> 16, tag & 0xFFFF)
    pos = -1
    for _ in range(occurrence + 1):
        pos = data.index(key, pos + 1)
    data[pos + 4 : pos + 6] = vr.encode()
    path.write_bytes(bytes(data))
    return path


@pytest.fixture
def edit_dicom():
    """``edit_dicom(path, {"RotationInformationSequence[0].StartAngle": ("FD", inf)})``: see edit_file."""
    return edit_file


@pytest.fixture(scope="session")
def io_builders():
    """The builders and editors of this conftest, for tests that make their own seed files."""
    from types import SimpleNamespace

    return SimpleNamespace(make_nm_projections=make_nm_projections, make_slice_series=make_slice_series,
                           set_tag=set_tag, edit_file=edit_file, patch_vr=patch_vr, DELETE=DELETE)
