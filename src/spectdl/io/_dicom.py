"""Small DICOM helpers shared by the readers and writers: safe reading, checked tag access, geometry.

pydicom is an optional dependency (the ``dicom`` extra), so it is imported when first needed.
Every failure becomes an :class:`~spectdl.errors.InputError` that names the file and the tag.

Checked accessors
-----------------
pydicom decodes a value only when it is first read, so a corrupt byte surfaces far from
:func:`read_dataset`, as whatever its decoder raises (``NotImplementedError`` for an unknown VR,
``BytesLengthException`` for a value of the wrong length, ``ValueError`` for text in a DS, ...).
The readers therefore never touch ``ds.<keyword>`` directly, but go through one family:

* :func:`element` — the decoded value or ``None`` (absent or empty); any decoding failure is an
  ``InputError`` naming the file and the tag;
* :func:`get` — one value, required unless ``default=`` is given, converted by ``cast`` (``float``
  or ``int``: finite, integral for ``int``; ``str``: text) and checked against ``bounds``, a
  :class:`Range` whose text goes into the message;
* :func:`vector` (and :func:`floats` for a value already fetched) — a multi-valued numeric tag,
  each value checked the same way, optionally of a fixed length;
* :func:`sequence` — the items of a sequence tag, at least ``min_items`` of them;
* :func:`text`, :func:`texts` — text and multi-valued text, ``""``/``[]`` when absent.

Messages read ``"<file>: tag <Keyword (gggg,eeee)> [in <where>] is <value>; expected <what>"``,
e.g. ``"proj.dcm: tag StartAngle (0054,0200) in RotationInformationSequence item 1 is inf;
expected a finite number, -360 ≤ value ≤ 360 deg"``. The module's ranges (``PIXEL_SPACING_MM``,
``RADIUS_MM``, ...) are generous but physical: a value outside is a corrupt file, never a scanner.
"""

from __future__ import annotations

import copy
import datetime as _dt
import math
import warnings
from dataclasses import dataclass
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
    return keyword if tag is None else f"{keyword} {_tag_hex(tag)}"


def _tag_hex(tag) -> str:
    return f"({int(tag) >> 16:04X},{int(tag) & 0xFFFF:04X})"


_WARNED: dict = {}  # warning registry of read_dataset: pydicom's warnings shown once, as by default


def read_dataset(path: str | Path, *, stop_before_pixels: bool = False, what: str = "DICOM file"):
    """Read one DICOM file; a missing, empty, foreign, truncated or corrupt file raises :class:`InputError`.

    pydicom reads a cut-off file without complaint when the cut falls inside a value (the value is
    just shorter) or inside an element header (reading stops), so both are checked here: a
    top-level value shorter than its declared length, or bytes left over after the last complete
    element, is a truncated file.
    """
    pd = pydicom()
    p = Path(path)
    if not p.is_file():
        raise InputError(f"{what} {p}: not found (expected an existing file)")
    size = p.stat().st_size
    if size == 0:
        raise InputError(f"{what} {p}: the file is empty (0 bytes); expected a DICOM file")
    try:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            ds = pd.dcmread(str(p), stop_before_pixels=stop_before_pixels)
    except pd.errors.InvalidDicomError as exc:
        raise InputError(f"{what} {p}: not a DICOM file (no 'DICM' preamble): {exc}") from exc
    except Exception as exc:  # EOFError, struct.error, ValueError ... from a cut-off stream
        raise InputError(
            f"{what} {p}: truncated or corrupt DICOM file ({type(exc).__name__}: {exc})"
        ) from exc
    for w in caught:
        text = str(w.message)
        if "end of file" in text.lower():  # pydicom's EOFError, downgraded to a warning
            raise InputError(f"{what} {p}: truncated DICOM file ({text})")
    for w in caught:  # the others (invalid values, ...) go on to the caller's filters, once each
        warnings.warn_explicit(w.message, w.category, w.filename, w.lineno, registry=_WARNED)
    _check_complete(ds, p, size, what, stop_before_pixels)
    return ds


def _check_complete(ds, p: Path, size: int, what: str, stopped: bool) -> None:
    from pydicom.dataelem import RawDataElement

    end = None
    for tag in ds.keys():
        elem = ds.get_item(tag, keep_deferred=True)
        if not isinstance(elem, RawDataElement):
            end = None  # already decoded by pydicom (e.g. Specific Character Set): position unknown
            continue
        if elem.length == 0xFFFFFFFF:
            end = None
            continue
        got = 0 if elem.value is None else len(elem.value)
        if elem.value is not None and got < elem.length:
            raise InputError(
                f"{what} {p}: truncated DICOM file: tag {_tag_text(tag)} declares {elem.length} bytes but "
                f"the file holds {got}"
            )
        end = elem.value_tell + elem.length
    meta = getattr(ds, "file_meta", None)
    deflated = meta is not None and str(meta.get("TransferSyntaxUID", "")) == "1.2.840.10008.1.2.1.99"
    # (a deflated data set is read from a decompressed copy, so its positions are not file offsets)
    if not stopped and not deflated and end is not None and end < size:
        raise InputError(
            f"{what} {p}: truncated or corrupt DICOM file: {size - end} bytes after the last complete "
            f"element (at byte {end} of {size}) could not be read"
        )


def _tag_text(tag) -> str:
    from pydicom.datadict import keyword_for_tag

    kw = keyword_for_tag(tag)
    return f"{kw} {_tag_hex(tag)}" if kw else _tag_hex(tag)


# ---------------------------------------------------------------------- checked accessors
@dataclass(frozen=True)
class Range:
    """The physical range a tag's value must lie in; ``str()`` is how error messages state it."""

    lo: float | None = None
    hi: float | None = None
    unit: str = ""
    lo_open: bool = False
    hi_open: bool = False
    nonzero: bool = False

    def __contains__(self, x: float) -> bool:
        if self.nonzero and x == 0:
            return False
        if self.lo is not None and (x <= self.lo if self.lo_open else x < self.lo):
            return False
        if self.hi is not None and (x >= self.hi if self.hi_open else x > self.hi):
            return False
        return True

    def __str__(self) -> str:
        parts = []
        if self.lo is not None:
            parts.append(f"{self.lo:g} {'<' if self.lo_open else '≤'} ")
        parts.append("value")
        if self.hi is not None:
            parts.append(f" {'<' if self.hi_open else '≤'} {self.hi:g}")
        text = "".join(parts) + (f" {self.unit}" if self.unit else "")
        return f"a nonzero value, {text}" if self.nonzero else text


# Generous but physical ranges: a value outside is a corrupt or foreign file, never a scanner.
PIXEL_SPACING_MM = Range(0.0, 50.0, "mm", lo_open=True)
SLICE_SPACING_MM = Range(0.0, 1000.0, "mm", lo_open=True)
POSITION_MM = Range(-1e5, 1e5, "mm")  # 100 m: any patient position on any gantry
RADIUS_MM = Range(0.0, 2000.0, "mm", lo_open=True)
COR_OFFSET_MM = Range(-1000.0, 1000.0, "mm")
ANGLE_DEG = Range(-360.0, 360.0, "deg")
ANGULAR_STEP_DEG = Range(-360.0, 360.0, "deg", nonzero=True)
TILT_DEG = Range(-90.0, 90.0, "deg")
ENERGY_KEV = Range(0.0, 2000.0, "keV")
FRAME_DURATION_MS = Range(0.0, 1e8, "ms", lo_open=True)  # up to about 28 h per view
KVP_KV = Range(0.0, 1000.0, "kV", lo_open=True)
RESCALE_SLOPE = Range(-1e6, 1e6, nonzero=True)
RESCALE_INTERCEPT = Range(-1e6, 1e6)
N_FRAMES = Range(1, 1_000_000)
N_PIXELS = Range(1, 65535)  # Rows and Columns are US
COUNT = Range(0, 1_000_000)


def _where(where: str) -> str:
    where = where.strip()
    if where.startswith("in "):
        where = where[3:]
    return f" in {where}" if where else ""


def _show(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 80 else text[:77] + "..."


def _fail(path, keyword: str, where: str, value: Any, expected: str) -> InputError:
    return InputError(f"{path}: tag {tag_name(keyword)}{_where(where)} is {_show(value)}; "
                      f"expected {expected}")


def _undecodable(path, keyword: str, where: str, exc: Exception) -> InputError:
    return InputError(f"{path}: tag {tag_name(keyword)}{_where(where)} cannot be decoded "
                      f"({type(exc).__name__}: {str(exc)[:120]}); expected a valid {_vr(keyword)} value "
                      f"(the file is corrupt)")


def _absent(path, keyword: str, where: str, default: Any, expected: str):
    """What a checked accessor returns for an absent or empty tag: ``default``, or without one an
    InputError saying what was ``expected``."""
    if default is not ...:
        return default
    raise InputError(f"{path}: tag {tag_name(keyword)}{_where(where)} is missing or empty; expected {expected}")


def element(ds, keyword: str, path, *, where: str = ""):
    """The decoded value of ``ds.<keyword>``, or ``None`` when the tag is absent or empty.

    pydicom decodes a value only when it is first read, so a corrupt byte anywhere in the header
    surfaces here (as ``NotImplementedError``, ``BytesLengthException``, ``struct.error``, ...);
    every such failure becomes an :class:`InputError` naming the file and the tag.
    """
    try:
        if keyword not in ds:
            return None
        value = ds[keyword].value
    except Exception as exc:  # whatever pydicom's decoder raises on corrupt bytes
        raise _undecodable(path, keyword, where, exc) from exc
    if value is None:
        return None
    if isinstance(value, (str, bytes)) and len(value) == 0:
        return None
    try:
        if not isinstance(value, (str, bytes)) and hasattr(value, "__len__") and len(value) == 0:
            return None
    except Exception:  # pragma: no cover - a value type without a usable len()
        pass
    return value


def _vr(keyword: str) -> str:
    from pydicom.datadict import dictionary_VR, tag_for_keyword

    try:
        return dictionary_VR(tag_for_keyword(keyword))
    except Exception:  # an unknown keyword
        return "DICOM"


def _is_multi(value) -> bool:
    return not isinstance(value, (str, bytes)) and hasattr(value, "__iter__")


def _number(v, cast, bounds: Range | None, path, keyword: str, where: str, shown=None):
    """One value converted by ``cast`` (``float`` or ``int``), finite and within ``bounds``."""
    shown = v if shown is None else shown
    kind = "an integer" if cast is int else "a number"
    what = kind if bounds is None else f"{kind}, {bounds}"
    if isinstance(v, (bytes, bytearray)) or isinstance(v, bool) or _is_multi(v):
        raise _fail(path, keyword, where, shown, what)
    try:
        x = float(v)
    except (TypeError, ValueError, OverflowError) as exc:
        raise _fail(path, keyword, where, shown, what) from exc
    if not math.isfinite(x):
        finite = "a finite number" + ("" if bounds is None else f", {bounds}")
        raise _fail(path, keyword, where, shown, finite)
    if cast is int:
        if x != int(x):
            raise _fail(path, keyword, where, shown, what)
        x = int(x)
        if isinstance(v, int) or (isinstance(v, str) and v.strip().lstrip("+-").isdigit()):
            x = int(v)  # exact beyond 2**53
    if bounds is not None and x not in bounds:
        raise _fail(path, keyword, where, shown, what)
    return x


def get(ds, keyword: str, path, *, where: str = "", default: Any = ..., cast=None,
        bounds: Range | None = None):
    """``ds.<keyword>`` checked: decoded safely (:func:`element`), then optionally converted.

    Args:
        ds: a dataset or a sequence item.
        keyword: the DICOM keyword, e.g. ``"StartAngle"``.
        path: the file, for messages.
        where: the sequence item, e.g. ``"RotationInformationSequence item 1"``.
        default: returned when the tag is absent or empty; without it that raises.
        cast: ``float`` or ``int`` (one finite number, integral for ``int``), ``str`` (text), or
            ``None`` (the value as pydicom decodes it).
        bounds: the physical :class:`Range` the number must lie in (stated in the message).

    Raises:
        InputError: ``"<file>: tag <Keyword (gggg,eeee)> [in <where>] is <value>; expected <what>"``.
    """
    value = element(ds, keyword, path, where=where)
    if value is None:
        return _absent(path, keyword, where, default, "a value")
    if cast is None:
        return value
    if cast is str:
        return text_of(value)
    if cast not in (float, int):
        raise TypeError(f"cast must be float, int, str or None, not {cast!r}")  # a spectdl bug
    return _number(value, cast, bounds, path, keyword, where)


def text_of(value) -> str:
    """A decoded value as plain text (several values joined by ``\\``, as DICOM writes them)."""
    if _is_multi(value):
        return "\\".join(str(v) for v in value)
    if isinstance(value, bytes):
        return value.decode("latin-1", errors="replace")
    return str(value)


def text(ds, keyword: str, path, *, where: str = "", default: str = "") -> str:
    """``ds.<keyword>`` as stripped text, ``default`` when absent or empty (never raises on a missing
    tag; a corrupt one raises :class:`InputError`)."""
    value = element(ds, keyword, path, where=where)
    return default if value is None else text_of(value).strip()


def texts(ds, keyword: str, path, *, where: str = "") -> list[str]:
    """A multi-valued text tag (e.g. Image Type) as a list of stripped strings; ``[]`` when absent."""
    value = element(ds, keyword, path, where=where)
    if value is None:
        return []
    seq = list(value) if _is_multi(value) else [value]
    return [text_of(v).strip() for v in seq]


def vector(ds, keyword: str, path, *, n: int | None = None, where: str = "", default: Any = ...,
           cast=float, bounds: Range | None = None) -> list:
    """A multi-valued DS/IS/US/FD tag as a list of ``cast`` numbers, each finite and within ``bounds``,
    optionally exactly ``n`` of them."""
    value = element(ds, keyword, path, where=where)
    if value is None:
        return _absent(path, keyword, where, default, "values" if n is None else f"{n} values")
    return _numbers(value, n, path, keyword, where, cast, bounds)


def _numbers(value, n, path, keyword, where, cast, bounds) -> list:
    seq = list(value) if _is_multi(value) else [value]
    if n is not None and len(seq) != n:
        raise _fail(path, keyword, where, value, f"{n} values, found {len(seq)}")
    return [_number(v, cast, bounds, path, keyword, where, shown=value) for v in seq]


def floats(value, n: int | None, path, keyword: str, where: str = "",
           bounds: Range | None = None) -> list[float]:
    """An already fetched multi-valued DS/IS/FD value as finite floats, optionally of fixed length ``n``."""
    if value is None:
        return _absent(path, keyword, where, ..., "numbers")
    return _numbers(value, n, path, keyword, where, float, bounds)


def sequence(ds, keyword: str, path, *, where: str = "", default: Any = ..., min_items: int = 1) -> list:
    """The items of a sequence tag, at least ``min_items`` of them (an empty sequence is an error
    unless ``default`` is given)."""
    from pydicom.dataset import Dataset

    value = element(ds, keyword, path, where=where)
    if value is None:
        return _absent(path, keyword, where, default, f"a sequence of at least {min_items} item(s)")
    try:
        items = list(value) if _is_multi(value) else [value]
    except Exception as exc:  # an item that cannot be parsed
        raise _undecodable(path, keyword, where, exc) from exc
    if not all(isinstance(it, Dataset) for it in items):
        raise _fail(path, keyword, where, value, "a sequence of items")
    if len(items) < min_items:
        raise InputError(f"{path}: tag {tag_name(keyword)}{_where(where)} has {len(items)} items; "
                         f"expected at least {min_items}")
    return items


def pixel_array(ds, path) -> np.ndarray:
    """The decoded pixel data; a short or undecodable pixel stream raises :class:`InputError`."""
    if element(ds, "PixelData", path) is None:
        raise InputError(f"{path}: tag {tag_name('PixelData')} is missing; expected image data")
    try:
        return np.asarray(ds.pixel_array)
    except Exception as exc:  # wrong length, missing decoder, bad compressed stream
        raise InputError(f"{path}: pixel data cannot be decoded ({type(exc).__name__}: {exc}); the file is "
                         f"truncated, corrupt or needs a decoder plugin") from exc


def identity(ds, path="<dataset>") -> dict[str, Any]:
    """The patient/study identity tags present in ``ds`` as plain Python values (no pydicom objects)."""
    out: dict[str, Any] = {}
    for kw in IDENTITY_KEYWORDS:
        try:
            v = ds.data_element(kw).value if kw in ds else None
        except Exception as exc:  # lazily decoded, so a corrupt byte surfaces here
            raise _undecodable(path, kw, "", exc) from exc
        if v is None:
            continue
        if hasattr(v, "original_string") or type(v).__name__ in ("PersonName",):
            v = str(v)
        elif _is_multi(v):
            v = [str(x) for x in v]
        elif isinstance(v, bool):
            pass
        elif isinstance(v, int):
            v = int(v)
        elif isinstance(v, float):
            v = float(v)
        else:
            v = text_of(v)
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
