"""Write a volume as a new DICOM series derived from a reference series.

What is written
---------------
One classic single-frame image per axial slice, so that standard viewers (3D Slicer, Horos,
Weasis, SimpleITK/GDCM) open it and fuse it with the CT:

* CT reference (or ``modality="CT"``): CT Image Storage, Rescale Type HU.
* NM / PT reference (SPECT reconstructions): PET Image Storage with Modality PT, as PyTomography
  and 3D Slicer's SPECT module write SPECT reconstructions, since per-slice PT images carry a
  rescale for float data and are handled by every fusion/SUV tool; ``Units`` says what the values
  are (``CNTS`` by default, ``BQML`` for calibrated images).

New Series and SOP Instance UIDs; patient and study identity and the Frame of Reference copied from
the reference (never its private tags); Image Type ``DERIVED\\PRIMARY`` for PT (the PET Image IOD
requires PRIMARY) and ``DERIVED\\SECONDARY\\AXIAL`` for CT; Derivation Description
and Series Description set to ``description``. Float voxels are stored as 16-bit integers with a
per-slice Rescale Slope and zero intercept, chosen from the slice's largest magnitude, so nothing
is clipped and the round-trip error is at most slope/2.

Every Decimal String is written with at most 16 characters. Series Date/Time come from the
reference (else its study date/time, else the time of writing); type-2 attributes the reference
lacks are written empty. From an NM/PT reference, the Radiopharmaceutical Information (radionuclide,
total dose, start time, half life), Patient's Weight, Acquisition Date/Time and a top-level Actual
Frame Duration are carried over, so that SUV can be computed by other software.

Writes are atomic (temporary file, then rename). An existing output file is replaced only with
``overwrite=True``; a folder holding the reference's own files is never written to.

De-identification (``deidentify=True``)
---------------------------------------
Replaced: Patient's Name → ``ANONYMOUS``, Patient ID → ``ANON``, Study Instance UID and Frame of
Reference UID → new UIDs derived deterministically from the originals (so several de-identified
series of one study still share a study and a frame of reference).
Removed (written empty where the IOD makes them type 2, PS3.15 action Z): Patient's Birth Date, Other Patient IDs, Other Patient Names, Patient Comments, Accession
Number, Study ID, Study Description, Referring Physician's Name, Institution Name and Address,
Station Name, Operators' Name, Performing Physician's Name, Name of Physician(s) Reading Study,
Device Serial Number, every Study/Acquisition Date and Time, and the radiopharmaceutical start and
stop date-times. Series Date/Time (type 1 for PT) are set to the time of writing.
Kept (DICOM PS3.15 "Retain Patient Characteristics" option): Patient's Sex, Age, Weight, Size.
Added: Patient Identity Removed = YES and a De-identification Method naming this list.
"""

from __future__ import annotations

import datetime as _dt
from pathlib import Path
from typing import Any

import numpy as np

from spectdl.errors import InputError
from spectdl.io import _dicom as dcm
from spectdl.io.atomic import atomic_write
from spectdl.io.volume import Volume, check_affine, volume_array

CT_IMAGE_STORAGE = "1.2.840.10008.5.1.4.1.1.2"
PET_IMAGE_STORAGE = "1.2.840.10008.5.1.4.1.1.128"

DEIDENTIFY_REPLACE = {"PatientName": "ANONYMOUS", "PatientID": "ANON"}
DEIDENTIFY_NEW_UIDS = ("StudyInstanceUID", "FrameOfReferenceUID")
DEIDENTIFY_REMOVE = (
    "PatientBirthDate", "OtherPatientIDs", "OtherPatientNames", "PatientComments", "AccessionNumber",
    "StudyID", "StudyDescription", "ReferringPhysicianName", "InstitutionName", "InstitutionAddress",
    "StationName", "OperatorsName", "PerformingPhysicianName", "NameOfPhysiciansReadingStudy",
    "DeviceSerialNumber", "StudyDate", "StudyTime", "SeriesDate", "SeriesTime", "AcquisitionDate",
    "AcquisitionTime",
)
DEIDENTIFY_METHOD = "spectdl basic de-identification (spectdl.io.export)"
_UID_SALT = "spectdl-deidentify-v1"


def _reference_info(reference) -> tuple[dict[str, Any], str | None, np.ndarray | None, tuple | None, list]:
    """(identity, modality, affine, shape, source files) of a reference path, Volume or Acquisition."""
    from spectdl.io.projections import Acquisition

    if isinstance(reference, Acquisition):
        shape = reference.grid().shape
        return dict(reference.identity), "NM", reference.affine, shape, [Path(reference.source)]
    if isinstance(reference, Volume):
        files = [Path(p) for p in reference.source]
        return dict(reference.identity), reference.modality, reference.affine, reference.shape, files
    if isinstance(reference, (str, Path)):
        p = Path(reference)
        if p.is_dir():
            files = sorted(q for q in p.iterdir() if q.is_file() and not q.name.startswith("."))
            pd = dcm.pydicom()
            for q in files:
                try:
                    ds = pd.dcmread(str(q), stop_before_pixels=True)
                except Exception:
                    continue
                return dcm.identity(ds), str(ds.get("Modality", "") or ""), None, None, files
            raise InputError(f"reference: folder {p} holds no DICOM file")
        ds = dcm.read_dataset(p, stop_before_pixels=True, what="reference file")
        return dcm.identity(ds), str(ds.get("Modality", "") or ""), None, None, [p]
    raise InputError(f"reference: expected a DICOM file or folder, a Volume or an Acquisition, found "
                     f"{type(reference).__name__}")


def _scale_slice(s: np.ndarray) -> tuple[np.ndarray, str, bool]:
    """Integer pixels, the slope as written (DS text; intercept 0) and signedness, without clipping.

    The slope is chosen from the largest magnitude so the extreme value maps to the largest code;
    the stored values are rounded with the slope exactly as written, so a reader's
    ``stored · slope`` is within slope/2 of the input.
    """
    lo, hi = float(s.min()), float(s.max())
    signed = lo < 0
    top = 32767.0 if signed else 65535.0
    peak = max(abs(lo), abs(hi))
    slope_text = f"{peak / top:.9e}" if peak > 0 else "1"
    slope = float(slope_text)
    # the 10-digit text can be a hair below the exact slope: keep the extreme code in range
    q = np.clip(np.rint(s / slope), -top - 1 if signed else 0.0, top)
    return (q.astype(np.int16) if signed else q.astype(np.uint16)), slope_text, signed


# type 2 attributes (present, possibly empty) of the Patient, General Study, General Series and
# Frame of Reference modules that the reference may lack
_TYPE2_EMPTY = ("PatientBirthDate", "PatientSex", "StudyDate", "StudyTime", "ReferringPhysicianName",
                "StudyID", "AccessionNumber", "PositionReferenceIndicator")


def _source_dataset(files):
    """The header of the first readable reference file, or None."""
    pd = dcm.pydicom()
    for f in files:
        try:
            return pd.dcmread(str(f), stop_before_pixels=True)
        except Exception:
            continue
    return None


def _frame_duration_ms(src) -> int | None:
    """Actual Frame Duration (ms) of a PT/NM source that has one at the top level, or None.

    The per-view duration of an NM TOMO rotation is not a frame duration of the reconstruction,
    so it is not carried over (the attribute is then written empty, as type 2 allows).
    """
    v = src.get("ActualFrameDuration") if src is not None else None
    try:
        return int(v) if v not in (None, "") else None
    except (TypeError, ValueError):
        return None


def _deid_uid(uid: str) -> str:
    from pydicom.uid import generate_uid

    return generate_uid(entropy_srcs=[_UID_SALT, str(uid)])


def write_dicom_series(
    volume,
    reference,
    description: str,
    out_dir: str | Path,
    *,
    affine=None,
    overwrite: bool = False,
    deidentify: bool = False,
    modality: str | None = None,
    units: str | None = None,
    series_number: int = 901,
) -> list[Path]:
    """Write ``volume`` as a new DICOM series in ``out_dir`` derived from ``reference`` (module docstring).

    Args:
        volume: ``[X, Y, Z]`` or ``[1, 1, X, Y, Z]`` tensor/array, or a :class:`Volume`.
        reference: the series it derives from: a DICOM file or folder, a :class:`Volume` from a
            reader, or an :class:`~spectdl.io.Acquisition` (a reconstruction on ``acq.grid()``).
        description: Series Description and Derivation Description.
        out_dir: folder to write ``IM_0001.dcm``, ... into (created if needed).
        affine: voxel → LPS of ``volume``; by default the Volume's own, or the reference's when the
            shapes match (e.g. a reconstruction on ``acq.grid()``).
        overwrite: replace existing ``IM_*.dcm`` files.
        deidentify: apply the documented de-identification.
        modality: ``"CT"`` or ``"PT"``; by default CT for a CT reference, PT otherwise.
        units: PT Units (0054,1001), e.g. ``"CNTS"`` (default) or ``"BQML"``; ignored for CT (HU).
        series_number: Series Number of the new series.

    Returns:
        The files written, in slice order.
    """
    pd = dcm.pydicom()
    from pydicom.dataset import Dataset, FileMetaDataset
    from pydicom.uid import ExplicitVRLittleEndian, PYDICOM_IMPLEMENTATION_UID, generate_uid

    ident, ref_modality, ref_affine, ref_shape, ref_files = _reference_info(reference)
    vol_affine = None
    if isinstance(volume, Volume):
        vol_affine = volume.affine
        units = units or volume.units
        volume = volume.data
    arr = volume_array(volume, "volume")
    if not np.isfinite(arr).all():
        raise InputError("volume: contains NaN or infinite values; expected finite voxels")
    if affine is None:
        affine = vol_affine
    if affine is None:
        if ref_affine is None or tuple(ref_shape) != arr.shape:
            raise InputError(
                f"affine: not given and the reference has "
                f"{'no geometry' if ref_affine is None else f'shape {ref_shape}'} "
                f"for a volume of shape {arr.shape}; pass affine="
            )
        affine = ref_affine
    A = check_affine(affine)
    sp = np.linalg.norm(A[:3, :3], axis=0)
    axes = A[:3, :3] / sp
    if np.abs(axes.T @ axes - np.eye(3)).max() > 1e-4:
        raise InputError("affine: the voxel axes are not orthogonal; expected a rotation times voxel sizes")
    mod = (modality or ("CT" if ref_modality == "CT" else "PT")).upper()
    if mod not in ("CT", "PT"):
        raise InputError(f"modality: {modality!r}; expected 'CT' or 'PT'")
    if not isinstance(description, str) or not description.strip():
        raise InputError(f"description: expected a non-empty string, found {description!r}")

    out_dir = Path(out_dir)
    protected = {Path(p).resolve() for p in ref_files}
    if out_dir.exists() and any(p.parent == out_dir.resolve() for p in protected):
        raise InputError(f"out_dir: {out_dir} holds the reference series; refusing to write into an input "
                         "folder")
    n_slices = arr.shape[2]
    targets = [out_dir / f"IM_{k + 1:04d}.dcm" for k in range(n_slices)]
    if not overwrite:
        existing = [t for t in targets if t.exists()]
        if existing:
            raise InputError(f"{existing[0]}: already exists ({len(existing)} of {n_slices} outputs); pass "
                             "overwrite=True")

    if deidentify:
        ident = {k: v for k, v in ident.items() if k not in DEIDENTIFY_REMOVE}
        ident.update(DEIDENTIFY_REPLACE)
        for k in DEIDENTIFY_NEW_UIDS:
            if k in ident:
                ident[k] = _deid_uid(ident[k])
    ident.setdefault("PatientName", "")
    ident.setdefault("PatientID", "")
    ident.setdefault("StudyInstanceUID", generate_uid())
    ident.setdefault("FrameOfReferenceUID", generate_uid())
    series_uid = generate_uid()
    now = _dt.datetime.now()
    sop_class = CT_IMAGE_STORAGE if mod == "CT" else PET_IMAGE_STORAGE
    normal = axes[:, 2]

    src = _source_dataset(ref_files)
    src_get = (lambda kw: str(src.get(kw, "") or "")) if src is not None else (lambda kw: "")
    if deidentify:
        series_date, series_time = now.strftime("%Y%m%d"), now.strftime("%H%M%S")
        acq_date = acq_time = ""
    else:
        series_date = src_get("SeriesDate") or ident.get("StudyDate") or now.strftime("%Y%m%d")
        series_time = src_get("SeriesTime") or ident.get("StudyTime") or now.strftime("%H%M%S")
        acq_date, acq_time = src_get("AcquisitionDate"), src_get("AcquisitionTime")
    frame_ms = _frame_duration_ms(src)
    radiopharm = dcm.radiopharmaceutical_items(src) if src is not None else []
    if deidentify:
        for item in radiopharm:
            for kw in ("RadiopharmaceuticalStartDateTime", "RadiopharmaceuticalStopDateTime"):
                if kw in item:
                    delattr(item, kw)
    ident["SeriesDate"], ident["SeriesTime"] = series_date, series_time
    for kw in _TYPE2_EMPTY:
        ident.setdefault(kw, "")
    for kw in ("PatientWeight", "PatientSize"):
        if isinstance(ident.get(kw), (int, float)) and not isinstance(ident.get(kw), bool):
            ident[kw] = dcm.ds_text(ident[kw])

    def _ds(v):
        return dcm.ds_text(v)

    written = []
    for k in range(n_slices):
        ds = Dataset()
        for kw, v in ident.items():
            if kw in ("Manufacturer", "ManufacturerModelName"):
                continue
            setattr(ds, kw, v)
        ds.Laterality = ""
        ds.SOPClassUID = sop_class
        ds.SOPInstanceUID = generate_uid()
        ds.Modality = mod
        # PT (C.8.9.4.1.1): value 2 shall be PRIMARY; CT (C.8.2.1.1.1): value 3 AXIAL
        ds.ImageType = ["DERIVED", "SECONDARY", "AXIAL"] if mod == "CT" else ["DERIVED", "PRIMARY"]
        ds.DerivationDescription = description[:1024]
        ds.SeriesDescription = description[:64]
        ds.SeriesInstanceUID = series_uid
        ds.SeriesNumber = int(series_number)
        ds.InstanceNumber = k + 1
        ds.Manufacturer = "spectdl"
        ds.ContentDate = "" if deidentify else now.strftime("%Y%m%d")
        ds.ContentTime = "" if deidentify else now.strftime("%H%M%S")
        if deidentify:
            ds.PatientIdentityRemoved = "YES"
            ds.DeidentificationMethod = DEIDENTIFY_METHOD
        # every DS as at most 16 characters (PS3.5 6.2), as precise as that allows
        ds.ImagePositionPatient = [_ds(v) for v in (A[:3, 3] + A[:3, 2] * k)]
        ds.ImageOrientationPatient = [_ds(v) for v in np.r_[axes[:, 0], axes[:, 1]]]
        ds.PixelSpacing = [_ds(sp[1]), _ds(sp[0])]  # between rows (along Y), between columns (along X)
        ds.SliceThickness = _ds(sp[2])
        ds.SpacingBetweenSlices = _ds(sp[2])
        ds.SliceLocation = _ds((A[:3, 3] + A[:3, 2] * k) @ normal)
        pix, slope, signed = _scale_slice(arr[:, :, k].T.astype(np.float64))
        ds.Rows, ds.Columns = pix.shape
        ds.SamplesPerPixel = 1
        ds.PhotometricInterpretation = "MONOCHROME2"
        ds.BitsAllocated = 16
        ds.BitsStored = 16
        ds.HighBit = 15
        ds.PixelRepresentation = 1 if signed else 0
        ds.RescaleSlope = slope
        ds.RescaleIntercept = "0"
        if mod == "CT":
            ds.RescaleType = "HU"
            ds.KVP = ""
            ds.AcquisitionNumber = ""
            if "PatientPosition" not in ds:  # type 2C, required for CT
                ds.PatientPosition = ""
        else:
            ds.Units = (units or "CNTS").upper()
            ds.CountsSource = "EMISSION"
            ds.SeriesType = ["STATIC", "IMAGE"]
            ds.CorrectedImage = []
            ds.DecayCorrection = "NONE"
            ds.NumberOfSlices = n_slices
            ds.ImageIndex = k + 1
            ds.FrameReferenceTime = "0"
            ds.CollimatorType = ""  # type 2; the PT enumerated values (NONE, RING) do not fit SPECT
            ds.RadiopharmaceuticalInformationSequence = [dcm.copy.deepcopy(it) for it in radiopharm]
            ds.PatientOrientationCodeSequence = []
            ds.PatientGantryRelationshipCodeSequence = []
            ds.AcquisitionDate = acq_date
            ds.AcquisitionTime = acq_time
            ds.ActualFrameDuration = frame_ms if frame_ms is not None else ""
        ds.PixelData = pix.tobytes()
        ds["PixelData"].VR = "OW"

        meta = FileMetaDataset()
        meta.MediaStorageSOPClassUID = ds.SOPClassUID
        meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
        meta.TransferSyntaxUID = ExplicitVRLittleEndian
        meta.ImplementationClassUID = PYDICOM_IMPLEMENTATION_UID
        ds.file_meta = meta

        def _save(tmp, ds=ds):
            pd.dcmwrite(str(tmp), ds, enforce_file_format=True)

        written.append(atomic_write(targets[k], _save, overwrite=overwrite, protected=tuple(protected)))

    if overwrite:  # a longer earlier series would leave stale slices behind
        k = n_slices + 1
        while (out_dir / f"IM_{k:04d}.dcm").exists():
            (out_dir / f"IM_{k:04d}.dcm").unlink()
            k += 1
    return written
