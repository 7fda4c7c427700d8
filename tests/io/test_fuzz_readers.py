"""Fuzzing the readers (issue 15, item 3): a mutated file is read, or refused with a spectdl error.

Seeds are small synthetic files made here (tests/io/conftest.py builders) and, when ``../shared`` is
present, the real files: their headers unchanged with the pixels cut down to 8×8 (fast), and a few
examples on the untouched files. Mutations:

* DICOM: a tag set to a hostile value (text, NaN, ±inf, huge, negative, empty, another VR), a tag
  deleted or a sequence emptied, then byte flips, overwrites or deletions in the header, and a
  truncation anywhere;
* CT folders: the same on one slice, or a slice emptied, deleted, duplicated, or a foreign file added;
* Interfile: a key set to a hostile number (Fortran forms, NaN, inf, 1+999, …) or deleted, a line
  garbled, the data file flipped, cut or padded.

The property: the reader returns finite data, or raises a :class:`~spectdl.errors.SpectdlError`.
Any other exception (``ValueError``, ``KeyError``, ``OverflowError``, pydicom's own, …) fails.

The suite runs a few hundred examples in all; ``pytest --fuzz-long`` runs 10,000 per reader.
"""

from __future__ import annotations

import io
import math
import re
import shutil
import tempfile
import time
import warnings
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pytest
import torch

from spectdl.errors import SpectdlError
from spectdl.io import read_ct_series, read_interfile_projections, read_projections, read_volume_series

hypothesis = pytest.importorskip("hypothesis")
pydicom = pytest.importorskip("pydicom")
from hypothesis import HealthCheck, Phase, given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402
from hypothesis.configuration import set_hypothesis_home_dir  # noqa: E402

# database=None keeps failing examples out of the repository; hypothesis's other caches go to /tmp too
set_hypothesis_home_dir(Path(tempfile.gettempdir()) / "spectdl-hypothesis")

pytestmark = pytest.mark.slow

SHARED_DATA = Path(__file__).resolve().parents[2].parent / "shared" / "data"
LONG = 10_000
# examples per reader in the normal suite (a few hundred in all, well under a minute on 2 cores)
SUITE = dict(projections=120, ct=80, volumes=60, interfile=80, interfile_projections=40, materials=40, real=3)
# examples per reader on the untouched real files under --fuzz-long (each reads megabytes)
LONG_REAL = dict(projections=300, ct=300, interfile=60)
STATS: dict[str, dict[str, float]] = {}


def _examples(request, name: str) -> int:
    if request.config.getoption("--fuzz-long"):
        return LONG_REAL.get(name.removeprefix("real "), LONG) if name.startswith("real ") else LONG
    return SUITE["real" if name.startswith("real ") else name]


def _settings(n: int, **kwargs):
    return settings(max_examples=n, deadline=None, database=None, derandomize=True, print_blob=True,
                    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow,
                                           HealthCheck.data_too_large, HealthCheck.filter_too_much], **kwargs)


def _quiet(run):
    """Run a hypothesis test with pydicom's warnings about the hostile values silenced."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        run()


def _check(name: str, call, finite) -> None:
    """Run one reader call: a spectdl error or a finite result passes; any other exception fails."""
    s = STATS.setdefault(name, dict(examples=0, read=0, refused=0, seconds=0.0))
    s["examples"] += 1
    t0 = time.perf_counter()
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # pydicom warns about the invalid values on purpose here
            out = call()
    except SpectdlError:
        s["refused"] += 1
        return
    finally:
        s["seconds"] += time.perf_counter() - t0
    s["read"] += 1
    for what, value in finite(out):
        arr = value.detach().cpu().numpy() if isinstance(value, torch.Tensor) else np.asarray(value, float)
        assert np.isfinite(arr).all(), f"{name}: the reader returned non-finite {what}"


@pytest.fixture(scope="module", autouse=True)
def _report():
    yield
    for name, s in sorted(STATS.items()):
        print(f"\nfuzz {name}: {int(s['examples'])} examples, {int(s['read'])} read, {int(s['refused'])} "
              f"refused with a spectdl error, {s['seconds']:.1f} s in the reader")


# ====================================================================== DICOM mutations
_TEXT_VRS = {"AE", "AS", "CS", "DA", "DS", "DT", "IS", "LO", "LT", "PN", "SH", "ST", "TM", "UC", "UI", "UR",
             "UT"}
_INT_VRS = {"US", "SS", "UL", "SL"}
TOKENS = ["", " ", "abc", "nan", "NaN", "inf", "-inf", "+Infinity", "1e9", "1e300", "-1e300", "1e999", "-1",
          "0", "-0", "0.0", "1e-300", "3.5", "65535", "65536", "4294967296", "-2147483649", "1\\2", "1\\nan",
          "\\", "\\\\", "CC", "CW", "CCW", "TOMO", "ORIGINAL\\PRIMARY\\TOMO", "NM", "CT", "1.2.3", "20240101",
          "x" * 70]
NUMBERS = st.one_of(
    st.sampled_from([0.0, -0.0, -1.0, 1.0, 1e9, 1e300, -1e300, math.nan, math.inf, -math.inf, 5e-324, 360.0,
                     361.0, 2000.01, 50.01, 1e8 + 1]),
    st.floats(),
)
VALUES = st.one_of(
    st.tuples(st.just("text"), st.sampled_from(TOKENS)),
    st.tuples(st.just("text"), st.text(st.characters(min_codepoint=32, max_codepoint=126), max_size=20)),
    st.tuples(st.just("FD"), NUMBERS),
    st.tuples(st.just("FD"), st.lists(NUMBERS, max_size=5)),
    st.tuples(st.just("int"), st.sampled_from([0, -1, 1, 2, 3, 65535, 65536, 2**31 - 1, -2**31])),
    st.tuples(st.just("int"), st.integers(-2**31, 2**31 - 1)),
    st.tuples(st.just("delete"), st.none()),
    st.tuples(st.just("empty"), st.none()),
)


# The tags the readers use: half the tag edits aim at these, the rest at any tag of the seed.
READER_KEYWORDS = {
    "Modality", "ImageType", "NumberOfFrames", "Rows", "Columns", "PixelSpacing", "FrameIncrementPointer",
    "EnergyWindowVector", "DetectorVector", "RotationVector", "AngularViewVector",
    "EnergyWindowInformationSequence", "EnergyWindowRangeSequence", "EnergyWindowLowerLimit",
    "EnergyWindowUpperLimit", "EnergyWindowName", "NumberOfEnergyWindows", "DetectorInformationSequence",
    "RotationInformationSequence", "RotationDirection", "StartAngle", "AngularStep",
    "NumberOfFramesInRotation", "ActualFrameDuration", "RadialPosition", "NumberOfDetectors",
    "GantryDetectorTilt",
    "ImageOrientationPatient", "ImagePositionPatient", "CenterOfRotationOffset", "CollimatorGridName",
    "RadiopharmaceuticalInformationSequence", "RadionuclideCodeSequence", "CodeMeaning", "SeriesInstanceUID",
    "FrameOfReferenceUID", "StudyInstanceUID", "RescaleSlope", "RescaleIntercept", "PixelPaddingValue", "KVP",
    "SpacingBetweenSlices", "SliceThickness", "BitsAllocated", "BitsStored", "HighBit", "PixelRepresentation",
    "SamplesPerPixel", "PhotometricInterpretation", "PixelData", "PatientName", "PatientWeight",
    # read_volume_series: the SUV inputs and times
    "RadionuclideTotalDose", "RadionuclideHalfLife", "RadiopharmaceuticalStartTime",
    "RadiopharmaceuticalStartDateTime", "AcquisitionDate", "AcquisitionTime", "SeriesDate", "SeriesTime",
    "Units", "DecayCorrection",
}


@dataclass
class DicomSeed:
    name: str
    data: bytes
    header_len: int  # bytes before the Pixel Data element
    paths: list[str] = field(default_factory=list)
    key_paths: list[str] = field(default_factory=list)  # paths to READER_KEYWORDS


def _paths(ds, prefix="") -> list[str]:
    out = []
    for elem in ds:
        if not elem.keyword or elem.keyword == "PixelData":
            continue
        out.append(prefix + elem.keyword)
        if elem.VR == "SQ":
            for i, item in enumerate(elem.value):
                out.extend(_paths(item, f"{prefix}{elem.keyword}[{i}]."))
    return out


def dicom_seed(name: str, data: bytes) -> DicomSeed:
    ds = pydicom.dcmread(io.BytesIO(data))
    pos = data.rfind(b"\xe0\x7f\x10\x00")
    paths = _paths(ds) + ["PixelData"]
    key_paths = [q for q in paths if q.rsplit(".", 1)[-1] in READER_KEYWORDS]
    return DicomSeed(name, data, pos if pos > 0 else len(data), paths, key_paths or paths)


def _set(ds, dotted: str, op: tuple) -> None:
    from pydicom.dataelem import DataElement
    from pydicom.sequence import Sequence

    parts = dotted.split(".")
    target = ds
    for part in parts[:-1]:
        name, idx = part.rstrip("]").split("[")
        target = target[name].value[int(idx)]
    kw = parts[-1]
    if kw not in target:
        return
    elem = target[kw]
    kind, value = op
    if kind == "delete":
        del target[kw]
    elif kind == "empty":
        target[kw] = DataElement(elem.tag, elem.VR, Sequence([]) if elem.VR == "SQ" else None)
    elif kind == "text":
        target[kw] = DataElement(elem.tag, elem.VR if elem.VR in _TEXT_VRS else "LO", value)
    elif kind == "FD":
        target[kw] = DataElement(elem.tag, "FD", value)
    else:
        target[kw] = DataElement(elem.tag, elem.VR if elem.VR in _INT_VRS else "SL", value)


def _write(ds) -> bytes:
    buf = io.BytesIO()
    pydicom.dcmwrite(buf, ds, enforce_file_format=False)
    return buf.getvalue()


def mutate_dicom(data_strategy, seed: DicomSeed) -> bytes:
    """Draw and apply a few dataset edits, then byte edits, then maybe a truncation."""
    from pydicom.config import disable_value_validation

    draw = data_strategy.draw
    data = seed.data
    n_tags, n_bytes = draw(st.integers(0, 3), label="tag edits"), draw(st.integers(0, 3), label="byte edits")
    truncate = draw(st.integers(0, 5), label="truncate?") == 0
    if not (n_tags or n_bytes or truncate):
        n_tags = 1  # every example changes something
    where = st.one_of(st.sampled_from(seed.key_paths), st.sampled_from(seed.paths))
    edits = [draw(st.tuples(where, VALUES), label="tag edit") for _ in range(n_tags)]
    if edits:
        ds = pydicom.dcmread(io.BytesIO(data))
        with disable_value_validation():
            for dotted, op in edits:
                try:
                    _set(ds, dotted, op)
                    data = _write(ds)
                except Exception:  # a value pydicom cannot write: keep the file without this edit
                    ds = pydicom.dcmread(io.BytesIO(data))
    buf = bytearray(data)
    hdr = max(min(seed.header_len, len(buf)), 1)
    byte_ops = st.one_of(
        st.tuples(st.just("flip"), st.integers(0, hdr - 1), st.integers(1, 255)),
        st.tuples(st.just("write"), st.integers(0, hdr - 1), st.binary(min_size=1, max_size=8)),
        st.tuples(st.just("cut"), st.integers(0, hdr - 1), st.integers(1, 16)),
    )
    for kind, pos, arg in [draw(byte_ops, label="byte edit") for _ in range(n_bytes)]:
        if pos >= len(buf):
            continue
        if kind == "flip":
            buf[pos] ^= arg
        elif kind == "write":
            buf[pos : pos + len(arg)] = arg
        else:
            del buf[pos : pos + arg]
    if truncate:
        buf = buf[: draw(st.integers(0, max(len(buf) - 1, 0)), label="truncate at")]
    return bytes(buf)


# ---------------------------------------------------------------------- seeds
def _acq_finite(acq):
    return [("counts", acq._counts), ("affine", acq.affine), ("radii", acq.orbit.radius_mm),
            ("angles", acq.orbit.angles_deg), ("windows", acq.windows)]


def _interfile_acq_finite(acq):
    # a window whose levels the header lacks is (nan, nan) by design (spectdl.io.interfile_spect)
    return [(what, v) for what, v in _acq_finite(acq) if what != "windows"]


def _vol_finite(vol):
    return [("data", vol.data), ("affine", vol.affine)]


def _real(*parts) -> Path | None:
    p = SHARED_DATA.joinpath(*parts)
    return p if p.exists() else None


@pytest.fixture(scope="module")
def nm_seeds(tmp_path_factory, io_builders):
    folder = tmp_path_factory.mktemp("nm_seeds")
    make = io_builders.make_nm_projections
    seeds = [
        dicom_seed("synthetic", make(
            folder / "a.dcm", n=8, nz=4, n_views=6, step=60.0, dr=8.0, dz=8.0,
            windows=((126.0, 154.0), (100.0, 120.0)), window_scale=(1.0, 0.5)).read_bytes()),
        dicom_seed("synthetic two heads", make(
            folder / "b.dcm", n=8, nz=4, n_views=3, step=60.0, dr=8.0, dz=8.0,
            detectors=((0.0, 1.0), (180.0, -1.0)), direction="CW",
            radii=[[200.0, 210.0, 220.0], [230.0, 240.0, 250.0]], windows=((126.0, 154.0),),
            window_scale=(1.0,)).read_bytes()),
    ]
    real = _real("real", "lu177_spectct", "bed1_projections.dcm")
    if real is not None:  # the real header, pixels cut to 8×8 so that an example reads in milliseconds
        ds = pydicom.dcmread(str(real))
        ds.PixelData = np.ascontiguousarray(ds.pixel_array[:, ::16, ::16]).tobytes()
        ds.Rows, ds.Columns = 8, 8
        seeds.append(dicom_seed("real header", _write(ds)))
    return seeds


def _ct_folder_seed(folder: Path) -> list[bytes]:
    return [p.read_bytes() for p in sorted(folder.iterdir())]


@pytest.fixture(scope="module")
def ct_seeds(tmp_path_factory, io_builders):
    folder = tmp_path_factory.mktemp("ct_seeds")
    hu = np.random.default_rng(0).integers(-1000, 1500, size=(8, 8, 3)).astype(np.float64)
    io_builders.make_slice_series(folder / "a", hu)
    io_builders.make_slice_series(folder / "b", hu[:, :, :2], row_dir=(0, 1, 0), col_dir=(1, 0, 0),
                                  extra={"PixelPaddingValue": -2000})
    seeds = [("synthetic", _ct_folder_seed(folder / "a")),
             ("synthetic padded", _ct_folder_seed(folder / "b"))]
    real = _real("real", "lu177_spectct", "CT")
    if real is not None:
        slices = []
        for p in sorted(real.iterdir())[150:153]:
            ds = pydicom.dcmread(str(p))
            ds.PixelData = np.ascontiguousarray(ds.pixel_array[252:260, 252:260]).tobytes()
            ds.Rows, ds.Columns = 8, 8
            slices.append(_write(ds))
        seeds.append(("real headers", slices))
    return [(name, [dicom_seed(f"{name} {k}", b) for k, b in enumerate(files)]) for name, files in seeds]


@pytest.fixture(scope="session")
def pt_seeds(tmp_path_factory, io_builders):
    """A reconstructed PT series with the SUV tags (weight, dose, half-life, times) that
    read_volume_series decodes, as slice files to mutate like the CT seeds."""
    from pydicom.dataset import Dataset
    from pydicom.sequence import Sequence

    folder = tmp_path_factory.mktemp("pt_seeds") / "pt"
    item = Dataset()
    item.RadionuclideTotalDose, item.RadionuclideHalfLife, item.RadiopharmaceuticalStartTime = 370e6, 6586.2, "100000"
    extra = dict(Units="BQML", DecayCorrection="START", SeriesDate="20240102", SeriesTime="105500",
                 AcquisitionDate="20240102", AcquisitionTime="110000", PatientWeight=70.0,
                 RadiopharmaceuticalInformationSequence=Sequence([item]))
    vol = np.random.default_rng(2).uniform(0, 5000, size=(8, 8, 3))
    io_builders.make_slice_series(folder, vol, modality="PT", slope=0.25, intercept=0.0, signed=False, extra=extra)
    return [("synthetic pt", [dicom_seed(f"pt {k}", p.read_bytes()) for k, p in enumerate(sorted(folder.iterdir()))])]


def mutate_ct(data_strategy, slices: list[DicomSeed], folder: Path) -> None:
    draw = data_strategy.draw
    files = [s.data for s in slices]
    k = draw(st.integers(0, len(files) - 1), label="slice")
    op = draw(st.sampled_from(["mutate", "mutate", "mutate", "empty", "delete", "duplicate", "foreign"]),
              label="slice op")
    if op == "mutate":
        files[k] = mutate_dicom(data_strategy, slices[k])
    elif op == "empty":
        files[k] = b""
    elif op == "delete":
        del files[k]
    elif op == "duplicate":
        files.append(files[k])
    folder.mkdir(parents=True)
    for i, b in enumerate(files):
        (folder / f"s{i:03d}.dcm").write_bytes(b)
    if op == "foreign":
        (folder / "notes.txt").write_bytes(draw(st.binary(max_size=200), label="foreign file"))


# ====================================================================== Interfile mutations
INTERFILE_TOKENS = ["", "abc", "nan", "NaN", "inf", "-inf", "1+999", "-1+999", "1e999", "1.0D+03", "1.0d-2",
                    "+2.000000+00", "+2.500000-01", "-1", "0", "-0", "1e-300", "1e300", "1e31", "3.5", "1_0",
                    "0x10", "{1, 2}", "{nan}", "{}", "1 2 3", "65536", "1000001", "4", "8", "2", "1",
                    "LITTLEENDIAN", "BIGENDIAN", "float", "signed integer", "unsigned integer", "long float",
                    "CW", "CCW", "reconstructed", "acquired", "missing.i33", "/etc/hostname"]
INTERFILE_KEYS = ["matrix size [1]", "matrix size [2]", "matrix size [3]", "number of slices",
                  "number of images", "total number of images", "scaling factor (mm/pixel) [1]",
                  "scaling factor (mm/pixel) [2]", "scaling factor (mm/pixel) [3]",
                  "slice thickness (pixels)",
                  "centre-centre slice separation (pixels)", "number format", "number of bytes per pixel",
                  "imagedata byte order", "name of data file", "data offset in bytes", "data starting block",
                  "data rescale slope", "data rescale offset", "number of projections", "extent of rotation",
                  "start angle", "direction of rotation", "radius", "number of energy windows",
                  "energy window lower level [1]", "energy window upper level [1]",
                  "time per projection (sec)",
                  "process status", "first pixel offset (mm) [1]"]


@dataclass
class InterfileSeed:
    name: str
    files: dict[str, bytes]  # file name -> content
    headers: list[str]  # which files are headers (mutated line-wise)
    data: list[str]  # which files are raw data (mutated byte-wise)
    call: str  # "phantom" (load_interfile(act, att)) or "projections"


def mutate_interfile(data_strategy, seed: InterfileSeed, folder: Path, materials: bool = False) -> None:
    draw = data_strategy.draw
    files = dict(seed.files)
    value = st.one_of(st.sampled_from(INTERFILE_TOKENS),
                      st.text(st.characters(min_codepoint=32, max_codepoint=126), max_size=16))
    header_op = st.one_of(
        st.tuples(st.just("set"), st.sampled_from(INTERFILE_KEYS), value),
        st.tuples(st.just("delete"), st.sampled_from(INTERFILE_KEYS), st.none()),
        st.tuples(st.just("garble"), st.integers(0, 40), st.text(max_size=30)),
    )
    n_header = draw(st.integers(0, 3), label="header edits")
    n_data = draw(st.integers(0, 2), label="data edits")
    if not (n_header or n_data or materials):
        n_header = 1  # every example changes something
    for _ in range(n_header):
        name = draw(st.sampled_from(seed.headers), label="header")
        kind, key, arg = draw(header_op)
        lines = files[name].decode("latin-1").splitlines()
        if kind == "set":
            pattern = re.compile(r"^!?\s*" + re.escape(key).replace(r"\ ", r"\s*") + r"\s*:=", re.I)
            lines = [ln for ln in lines if not pattern.match(ln)]
            lines.insert(1, f"{'!' if draw(st.booleans()) else ''}{key} := {arg}")
        elif kind == "delete":
            pattern = re.compile(r"^!?\s*" + re.escape(key).replace(r"\ ", r"\s*") + r"\s*:=", re.I)
            lines = [ln for ln in lines if not pattern.match(ln)]
        else:
            i = min(key, len(lines))
            lines[i:i + 1] = [arg]
        files[name] = "\n".join(lines).encode("latin-1", errors="replace") + b"\n"
    data_op = st.one_of(
        st.tuples(st.just("flip"), st.integers(0, 10_000_000), st.integers(1, 255)),
        st.tuples(st.just("write"), st.integers(0, 10_000_000), st.sampled_from(
            # float32 NaN, +inf, -inf, and two other patterns
            [b"\x00\x00\xc0\x7f", b"\x00\x00\x80\x7f", b"\x00\x00\x80\xff", b"\xff\xff\xff\xff",
             b"\x7f\x7f"])),
        st.tuples(st.just("cut"), st.integers(0, 10_000_000), st.none()),
        st.tuples(st.just("pad"), st.integers(1, 9), st.none()),
    )
    for _ in range(n_data):
        name = draw(st.sampled_from(seed.data), label="data file")
        kind, pos, arg = draw(data_op)
        buf = bytearray(files[name])
        if kind == "pad":
            buf += b"\x01" * pos
        elif buf:
            pos %= len(buf)
            if kind == "flip":
                buf[pos] ^= arg
            elif kind == "write":
                buf[pos : pos + len(arg)] = arg
            else:
                del buf[pos:]
        files[name] = bytes(buf)
    if materials:
        dat = next(n for n in files if n.endswith(".dat"))
        rows = files[dat].decode("latin-1").splitlines()
        for _ in range(draw(st.integers(1, 3), label="materials edits")):
            r = draw(st.integers(0, len(rows)), label="row")
            token = draw(st.sampled_from(["nan", "inf", "-inf", "1e999", "-1", "0", "1.5", "abc", "", "9"]))
            words = (rows[r] if r < len(rows) else "1 1 Water").split()
            w = draw(st.integers(0, max(len(words), 1)), label="word")
            words[w:w + 1] = [token]
            if r < len(rows):
                rows[r] = " ".join(words)
            else:
                rows.append(" ".join(words))
        files[dat] = ("\n".join(rows) + "\n").encode("latin-1")
    folder.mkdir(parents=True)
    for name, content in files.items():
        (folder / name).write_bytes(content)


def _interfile_header(data_name: str, shape, number_format: str, nbytes: int, extra=()) -> bytes:
    lines = ["!INTERFILE :=", f"!name of data file := {data_name}", "imagedata byte order := LITTLEENDIAN",
             f"!matrix size [1] := {shape[0]}", f"!matrix size [2] := {shape[1]}",
             f"!number of slices := {shape[2]}", f"!number format := {number_format}",
             f"!number of bytes per pixel := {nbytes}", "scaling factor (mm/pixel) [1] := 2",
             "scaling factor (mm/pixel) [2] :=+2.000000+00", "slice thickness (pixels) := 2", *extra,
             "!END OF INTERFILE :="]
    return ("\n".join(lines) + "\n").encode()


def _raw(a: np.ndarray, dtype: str) -> bytes:
    return np.ascontiguousarray(np.asarray(a).transpose(2, 1, 0).astype(dtype)).tobytes()


def _crop_header(text: str, shape) -> str:
    for axis, n in enumerate(shape, start=1):
        text = re.sub(rf"(matrix size \[{axis}\]\s*:=).*", rf"\g<1> {n}", text)
    return re.sub(r"(number of slices\s*:=).*", rf"\g<1> {shape[2]}", text)


@pytest.fixture(scope="module")
def interfile_seeds():
    rng = np.random.default_rng(0)
    act = rng.uniform(0, 10, size=(4, 3, 2)).astype(np.float32)
    att = rng.integers(0, 3, size=(4, 3, 2)).astype(np.uint16)
    seeds = [InterfileSeed(
        "synthetic phantom",
        {"act.h33": _interfile_header("act.i33", act.shape, "float", 4), "act.i33": _raw(act, "<f4"),
         "att.h33": _interfile_header("att.i33", att.shape, "unsigned integer", 2),
         "att.i33": _raw(att, "<u2"),
         "Attenuation_Range.dat": b"3\n0 0 Air\n1 1 Water\n2 2 Bone\n"},
        ["act.h33", "att.h33"], ["act.i33", "att.i33"], "phantom")]
    folder = _real("phantoms", "Brain_Perfusion_phantom")
    if folder is not None:  # the real headers and materials file, the volumes cropped to a few voxels
        files = {}
        for stem, shape, (lo, hi) in (("Brain_Perfusion_Source_120x120x120", (120, 120, 120), (57, 63)),
                                      ("Brain_Perfusion_Attn_72x90x77", (72, 90, 77), (34, 39))):
            vol = np.fromfile(folder / f"{stem}.i33", dtype="<u2").reshape(shape[::-1]).transpose(2, 1, 0)
            crop = vol[lo:hi, lo:hi, lo:hi - 1]
            files[f"{stem}.h33"] = _crop_header((folder / f"{stem}.h33").read_text(), crop.shape).encode()
            files[f"{stem}.i33"] = _raw(crop, "<u2")
        files["Attenuation_Brain_Range.dat"] = (folder / "Attenuation_Brain_Range.dat").read_bytes()
        names = sorted(files)
        seeds.append(InterfileSeed("real headers", files, [n for n in names if n.endswith(".h33")],
                                   [n for n in names if n.endswith(".i33")], "phantom"))
    return seeds


@pytest.fixture(scope="module")
def interfile_projection_seed():
    proj = np.random.default_rng(1).poisson(5.0, size=(6, 4, 8)).astype(np.float32)  # [cols, rows, views]
    extra = ["!number of projections := 4", "!extent of rotation := 360", "process status := acquired",
             "!direction of rotation := CW", "start angle := 180", "Radius := {200, 210, 220, 230}",
             "!number of energy windows := 2", "energy window lower level [1] := 126",
             "energy window upper level [1] := 154", "energy window lower level [2] := 100",
             "energy window upper level [2] := 120", "time per projection (sec) := 20"]
    return InterfileSeed("synthetic projections",
                         {"proj.hs": _interfile_header("proj.s", proj.shape, "float", 4, extra),
                          "proj.s": _raw(proj, "<f4")}, ["proj.hs"], ["proj.s"], "projections")


def _load_phantom(folder: Path, seed: InterfileSeed):
    from spectdl.phantoms import load_interfile

    act, att = sorted(seed.headers, key=lambda n: ("att" in n.lower(), n))
    return load_interfile(folder / act, folder / att)


def _phantom_finite(ph):
    return [("activity", ph.activity), ("mu", ph.mu_per_cm)]


# ====================================================================== the fuzz tests
def test_fuzz_read_projections(request, tmp_path, nm_seeds):
    @_settings(_examples(request, "projections"))
    @given(st.data())
    def run(data):
        seed = data.draw(st.sampled_from(nm_seeds), label="seed")
        path = tmp_path / "fuzz.dcm"
        path.write_bytes(mutate_dicom(data, seed))
        _check("projections", lambda: read_projections(path, radius_mm=250.0), _acq_finite)

    _quiet(run)


def test_fuzz_read_ct_series(request, tmp_path, ct_seeds):
    @_settings(_examples(request, "ct"))
    @given(st.data())
    def run(data):
        name, slices = data.draw(st.sampled_from(ct_seeds), label="seed")
        folder = Path(tempfile.mkdtemp(dir=tmp_path)) / "ct"
        try:
            mutate_ct(data, slices, folder)
            _check("ct", lambda: read_ct_series(folder), _vol_finite)
        finally:
            shutil.rmtree(folder.parent)

    _quiet(run)


def test_fuzz_read_volume_series(request, tmp_path, pt_seeds):
    @_settings(_examples(request, "volumes"))
    @given(st.data())
    def run(data):
        name, slices = data.draw(st.sampled_from(pt_seeds), label="seed")
        folder = Path(tempfile.mkdtemp(dir=tmp_path)) / "pt"
        try:
            mutate_ct(data, slices, folder)
            _check("volumes", lambda: read_volume_series(folder), _vol_finite)
        finally:
            shutil.rmtree(folder.parent)

    _quiet(run)


def test_fuzz_load_interfile(request, tmp_path, interfile_seeds):
    @_settings(_examples(request, "interfile"))
    @given(st.data())
    def run(data):
        seed = data.draw(st.sampled_from(interfile_seeds), label="seed")
        folder = Path(tempfile.mkdtemp(dir=tmp_path)) / "phantom"
        try:
            mutate_interfile(data, seed, folder)
            _check("interfile", lambda: _load_phantom(folder, seed), _phantom_finite)
        finally:
            shutil.rmtree(folder.parent)

    _quiet(run)


def test_fuzz_read_interfile_projections(request, tmp_path, interfile_projection_seed):
    seed = interfile_projection_seed

    @_settings(_examples(request, "interfile_projections"))
    @given(st.data())
    def run(data):
        folder = Path(tempfile.mkdtemp(dir=tmp_path)) / "proj"
        try:
            mutate_interfile(data, seed, folder)
            _check("interfile_projections", lambda: read_interfile_projections(folder / "proj.hs"),
                   _interfile_acq_finite)
        finally:
            shutil.rmtree(folder.parent)

    _quiet(run)


def test_fuzz_load_interfile_materials_file(request, tmp_path, interfile_seeds):
    # no shrinking: the known failure needs no minimal example, and shrinking it costs seconds
    @_settings(_examples(request, "materials"), report_multiple_bugs=False,
               phases=[Phase.explicit, Phase.reuse, Phase.generate])
    @given(st.data())
    def run(data):
        seed = data.draw(st.sampled_from(interfile_seeds), label="seed")
        folder = Path(tempfile.mkdtemp(dir=tmp_path)) / "phantom"
        try:
            mutate_interfile(data, seed, folder, materials=True)
            _check("interfile materials", lambda: _load_phantom(folder, seed), _phantom_finite)
        finally:
            shutil.rmtree(folder.parent)

    _quiet(run)


# ---------------------------------------------------------------------- the untouched real files
@pytest.mark.shared
def test_fuzz_real_projection_file(request, tmp_path, shared_data):
    seed = dicom_seed("real", (shared_data / "real/lu177_spectct/bed1_projections.dcm").read_bytes())

    @_settings(_examples(request, "real projections"))
    @given(st.data())
    def run(data):
        path = tmp_path / "real.dcm"
        path.write_bytes(mutate_dicom(data, seed))
        _check("real projections", lambda: read_projections(path), _acq_finite)

    _quiet(run)


@pytest.mark.shared
def test_fuzz_real_ct_slices(request, tmp_path, shared_data):
    files = sorted((shared_data / "real/lu177_spectct/CT").iterdir())[150:153]
    slices = [dicom_seed(f"real {k}", p.read_bytes()) for k, p in enumerate(files)]

    @_settings(_examples(request, "real ct"))
    @given(st.data())
    def run(data):
        folder = Path(tempfile.mkdtemp(dir=tmp_path)) / "ct"
        try:
            mutate_ct(data, slices, folder)
            _check("real ct", lambda: read_ct_series(folder), _vol_finite)
        finally:
            shutil.rmtree(folder.parent)

    _quiet(run)


@pytest.mark.shared
def test_fuzz_real_interfile_phantom(request, tmp_path, shared_data):
    folder = shared_data / "phantoms/Brain_Perfusion_phantom"
    names = sorted(p.name for p in folder.iterdir())
    seed = InterfileSeed("real", {n: (folder / n).read_bytes() for n in names},
                         [n for n in names if n.endswith(".h33")], [n for n in names if n.endswith(".i33")],
                         "phantom")

    @_settings(_examples(request, "real interfile"))
    @given(st.data())
    def run(data):
        out = Path(tempfile.mkdtemp(dir=tmp_path)) / "phantom"
        try:
            mutate_interfile(data, seed, out)
            _check("real interfile", lambda: _load_phantom(out, seed), _phantom_finite)
        finally:
            shutil.rmtree(out.parent)

    _quiet(run)
