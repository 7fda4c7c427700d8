"""Small DICOM helpers shared by the readers and writers: safe reading, tag look-up, geometry.

pydicom is an optional dependency (the ``dicom`` extra), so it is imported when first needed.
Every failure becomes an :class:`~spectdl.errors.InputError` that names the file and the tag.
"""

from __future__ import annotations

import copy
import datetime as _dt
from pathlib import Path
from typing import Any

import numpy as np

from spectdl.errors import InputError, require

# Patient and study identity copied from a reference into derived series (and nothing else:
# private tags and acquisition details never leak into outputs).
IDENTITY_KEYWORDS = (
    "PatientName",
    "PatientID",
    "PatientBirthDate",
    "PatientSex",
    "PatientAge",
    "PatientWeight",
    "PatientSize",
    "OtherPatientIDs",
    "OtherPatientNames",
    "PatientComments",
    "StudyInstanceUID",
    "StudyID",
    "StudyDate",
    "StudyTime",
    "StudyDescription",
    "AccessionNumber",
    "ReferringPhysicianName",
    "InstitutionName",
    "InstitutionAddress",
    "StationName",
    "OperatorsName",
    "PerformingPhysicianName",
    "NameOfPhysiciansReadingStudy",
    "DeviceSerialNumber",
    "FrameOfReferenceUID",
    "PositionReferenceIndicator",
    "PatientPosition",
    "Manufacturer",
    "ManufacturerModelName",
    "SeriesDate",
    "SeriesTime",
    "AcquisitionDate",
    "AcquisitionTime",
)


def pydicom():
    return require("pydicom", "dicom")


def tag_name(keyword: str) -> str:
    """``"StartAngle (0054,0200)"``: the keyword with its tag, as error messages show it."""
    from pydicom.datadict import tag_for_keyword

    tag = tag_for_keyword(keyword)
    if tag is None:
        return keyword
    return f"{keyword} ({tag >> 16:04X},{tag & 0xFFFF:04X})"


def read_dataset(path: str | Path, *, stop_before_pixels: bool = False, what: str = "DICOM file"):
    """Read one DICOM file; a missing, foreign, truncated or corrupt file raises :class:`InputError`."""
    pd = pydicom()
    p = Path(path)
    if not p.is_file():
        raise InputError(f"{what} {p}: not found (expected an existing file)")
    try:
        ds = pd.dcmread(str(p), stop_before_pixels=stop_before_pixels)
    except pd.errors.InvalidDicomError as exc:
        raise InputError(f"{what} {p}: not a DICOM file (no 'DICM' preamble): {exc}") from exc
    except Exception as exc:  # EOFError, struct.error, ValueError ... from a cut-off stream
        raise InputError(
            f"{what} {p}: truncated or corrupt DICOM file ({type(exc).__name__}: {exc})"
        ) from exc
    return ds


def get(ds, keyword: str, path, *, where: str = "", default: Any = ..., cast=None):
    """``ds.<keyword>``, or ``default``; without a default a missing or empty tag raises InputError."""
    value = getattr(ds, keyword, None) if keyword in ds else None
    if value is None or (isinstance(value, (str, bytes, list, tuple)) and len(value) == 0):
        if default is not ...:
            return default
        loc = f" in {where}" if where else ""
        raise InputError(f"{path}: tag {tag_name(keyword)}{loc} is missing or empty; expected a value")
    if cast is not None:
        try:
            return cast(value)
        except (TypeError, ValueError) as exc:
            loc = f" in {where}" if where else ""
            raise InputError(f"{path}: tag {tag_name(keyword)}{loc} has value {value!r}; expected "
                             f"{cast.__name__}") from exc
    return value


def floats(value, n: int | None, path, keyword: str, where: str = "") -> list[float]:
    """A multi-valued DS/IS/FD tag as a list of floats, optionally of fixed length ``n``."""
    seq = [value] if isinstance(value, (str, bytes)) or not hasattr(value, "__iter__") else list(value)
    try:
        out = [float(v) for v in seq]
    except (TypeError, ValueError) as exc:
        raise InputError(
            f"{path}: tag {tag_name(keyword)} {where}has value {value!r}; expected numbers"
        ) from exc
    if n is not None and len(out) != n:
        raise InputError(f"{path}: tag {tag_name(keyword)} {where}has {len(out)} values; expected {n}")
    if not all(np.isfinite(out)):
        raise InputError(f"{path}: tag {tag_name(keyword)} {where}has non-finite values {out}")
    return out


def pixel_array(ds, path) -> np.ndarray:
    """The decoded pixel data; a short or undecodable pixel stream raises :class:`InputError`."""
    if "PixelData" not in ds:
        raise InputError(f"{path}: tag {tag_name('PixelData')} is missing; expected image data")
    try:
        return np.asarray(ds.pixel_array)
    except Exception as exc:  # wrong length, missing decoder, bad compressed stream
        raise InputError(f"{path}: pixel data cannot be decoded ({type(exc).__name__}: {exc}); the file is "
                         f"truncated, corrupt or needs a decoder plugin") from exc


def identity(ds) -> dict[str, Any]:
    """The patient/study identity tags present in ``ds`` as plain Python values (no pydicom objects)."""
    out: dict[str, Any] = {}
    for kw in IDENTITY_KEYWORDS:
        if kw in ds:
            v = ds.data_element(kw).value
            if v is None:
                continue
            if hasattr(v, "original_string") or type(v).__name__ in ("PersonName",):
                v = str(v)
            elif isinstance(v, (list, tuple)) or type(v).__name__ == "MultiValue":
                v = [str(x) for x in v]
            elif isinstance(v, bool):
                pass
            elif isinstance(v, int):
                v = int(v)
            elif isinstance(v, float):
                v = float(v)
            else:
                v = str(v)
            out[kw] = v
    return out


def orientation(iop, path, where: str = "") -> tuple[np.ndarray, np.ndarray]:
    """Unit row and column direction cosines from Image Orientation (Patient), checked orthonormal."""
    v = floats(iop, 6, path, "ImageOrientationPatient", where)
    r, c = np.array(v[:3]), np.array(v[3:])
    nr, nc = np.linalg.norm(r), np.linalg.norm(c)
    if not (0.9 < nr < 1.1 and 0.9 < nc < 1.1) or abs(float(r @ c)) > 1e-2:
        raise InputError(
            f"{path}: tag {tag_name('ImageOrientationPatient')} {where}is {v}; expected two orthogonal unit "
            "vectors"
        )
    return r / nr, c / nc


def affine_from_axes(origin, axes: list[np.ndarray], spacings: list[float]) -> np.ndarray:
    """4×4 affine ``voxel index (i, j, k) → LPS mm`` with column ``a`` = ``spacings[a]·axes[a]``."""
    A = np.eye(4)
    for a in range(3):
        A[:3, a] = np.asarray(axes[a], dtype=np.float64) * float(spacings[a])
    A[:3, 3] = np.asarray(origin, dtype=np.float64)
    return A


def parse_datetime(date: str | None, time: str | None) -> _dt.datetime | None:
    """DICOM DA + TM (``YYYYMMDD``, ``HHMMSS.FFFFFF``) to a naive datetime; ``None`` when incomplete."""
    if not date or not time:
        return None
    return parse_dt(str(date).strip() + str(time).strip())


def parse_dt(value: str | None) -> _dt.datetime | None:
    """DICOM DT (``YYYYMMDDHHMMSS.FFFFFF&ZZXX``) to a naive datetime (the offset is dropped)."""
    if not value:
        return None
    s = str(value).strip()
    for sep in ("+", "-"):
        if sep in s[8:]:
            s = s[: 8 + s[8:].index(sep)]
    frac = 0.0
    if "." in s:
        s, f = s.split(".", 1)
        frac = float("0." + f) if f.isdigit() else 0.0
    s = s.replace(":", "")
    fmts = {14: "%Y%m%d%H%M%S", 12: "%Y%m%d%H%M", 10: "%Y%m%d%H", 8: "%Y%m%d"}
    if len(s) not in fmts:
        return None
    try:
        out = _dt.datetime.strptime(s, fmts[len(s)])
    except ValueError:
        return None
    return out + _dt.timedelta(seconds=frac)


def ds_text(x: float) -> str:
    """``x`` as Decimal String text of at most 16 characters, as precise as that allows.

    Uses :func:`pydicom.valuerep.format_number_as_ds` when the installed pydicom has it; otherwise the
    shortest of ``%.{p}g`` (p = 16 … 1) that fits. A negative zero is written ``0``.
    """
    x = float(x)
    if not np.isfinite(x):
        raise ValueError(f"DS value must be finite, found {x!r}")
    if x == 0:
        return "0"
    try:
        from pydicom.valuerep import format_number_as_ds
    except ImportError:  # older pydicom
        format_number_as_ds = None
    if format_number_as_ds is not None:
        text = format_number_as_ds(x)
        if len(text) <= 16:
            return text
    for p in range(16, 0, -1):
        text = f"{x:.{p}g}"
        if len(text) <= 16:
            return text
    raise ValueError(f"cannot write {x!r} as a 16-character DS")  # pragma: no cover


# Radiopharmaceutical item attributes carried from a source NM/PT series (PS3.3 C.8.9.2, C.8.4.10)
RADIOPHARMACEUTICAL_KEYWORDS = (
    "Radiopharmaceutical",
    "RadiopharmaceuticalCodeSequence",
    "RadionuclideCodeSequence",
    "RadiopharmaceuticalRoute",
    "AdministrationRouteCodeSequence",
    "RadiopharmaceuticalVolume",
    "RadiopharmaceuticalStartTime",
    "RadiopharmaceuticalStartDateTime",
    "RadiopharmaceuticalStopTime",
    "RadiopharmaceuticalStopDateTime",
    "RadionuclideTotalDose",
    "RadionuclideHalfLife",
    "RadionuclidePositronFraction",
    "RadiopharmaceuticalSpecificActivity",
)


def radiopharmaceutical_items(ds) -> list:
    """Copies of the Radiopharmaceutical Information items of ``ds`` limited to the keywords above."""
    from pydicom.dataset import Dataset

    out = []
    for item in ds.get("RadiopharmaceuticalInformationSequence") or []:
        new = Dataset()
        for kw in RADIOPHARMACEUTICAL_KEYWORDS:
            if kw in item:
                new[kw] = copy.deepcopy(item[kw])
        out.append(new)
    return out
