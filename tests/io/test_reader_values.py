"""Every malformed or absurd value in a DICOM or Interfile file is a named InputError (issue 15, item 3).

Each case writes a small synthetic file (tests/io/conftest.py), breaks one value, and asserts that the
error names the file and the tag (keyword and hex) or key. Cases that used to be read silently wrong
assert the error, or the documented behaviour.
"""

import math

import numpy as np
import pytest
import torch

from spectdl.errors import InputError
from spectdl.io import ct_to_mu, read_ct_series, read_interfile_projections, read_projections
from spectdl.io.ct import break_point_hu, mu_to_ct_hu
from spectdl.io.interfile import parse_number, read_interfile

INF = math.inf
NAN = math.nan
ROT = "RotationInformationSequence[0]"
DET = "DetectorInformationSequence[0]"
EW = "EnergyWindowInformationSequence[0]"
RANGE = f"{EW}.EnergyWindowRangeSequence[0]"


def _raises(call, path, pattern):
    with pytest.raises(InputError, match=pattern) as info:
        call()
    assert str(path) in str(info.value), info.value
    return str(info.value)


# ====================================================================== projections: values that crashed
ROT_ITEM = "in RotationInformationSequence item 1"
DET_ITEM = "in DetectorInformationSequence item 1"
NOT_A_NUMBER = {
    "NumberOfEnergyWindows": (
        "NumberOfEnergyWindows", r"NumberOfEnergyWindows \(0054,0011\) is 'abc'; expected an integer"),
    "NumberOfFramesInRotation": (
        f"{ROT}.NumberOfFramesInRotation",
        rf"NumberOfFramesInRotation \(0054,0053\) {ROT_ITEM} is 'abc'; expected an integer"),
    "NumberOfDetectors": (
        "NumberOfDetectors", r"NumberOfDetectors \(0054,0021\) is 'abc'; expected an integer"),
    "GantryDetectorTilt": (
        f"{DET}.GantryDetectorTilt",
        rf"GantryDetectorTilt \(0018,1120\) {DET_ITEM} is 'abc'; expected a number"),
    "CenterOfRotationOffset": (
        f"{DET}.CenterOfRotationOffset", r"CenterOfRotationOffset \(0018,1145\) .*'abc'; expected a number"),
    "ActualFrameDuration": (
        f"{ROT}.ActualFrameDuration", r"ActualFrameDuration \(0018,1242\) .*'abc'; expected a number"),
    "rotation StartAngle": (
        f"{ROT}.StartAngle", rf"StartAngle \(0054,0200\) {ROT_ITEM} is 'abc'; expected a number"),
}


@pytest.mark.parametrize("case", list(NOT_A_NUMBER))
def test_text_in_a_numeric_tag_is_named(nm_file, edit_dicom, case):
    dotted, pattern = NOT_A_NUMBER[case]
    path = edit_dicom(nm_file(), {dotted: ("LO", "abc")})
    _raises(lambda: read_projections(path), path, pattern)


def test_text_in_a_detector_start_angle_is_named(nm_file, edit_dicom):
    path = nm_file(detectors=((0.0, 1.0), (180.0, 1.0)), n_views=20)
    edit_dicom(path, {"DetectorInformationSequence[1].StartAngle": ("LO", "abc")})
    _raises(lambda: read_projections(path), path,
            r"StartAngle \(0054,0200\) in DetectorInformationSequence item 2 is 'abc'; expected a number")


@pytest.mark.parametrize("value", [("LO", ["1", "x"] * 120), ("FD", [1.0, NAN] * 120)], ids=["text", "nan"])
def test_frame_vector_with_non_numbers_or_nan(nm_file, edit_dicom, value):
    path = edit_dicom(nm_file(), {"EnergyWindowVector": value})
    _raises(lambda: read_projections(path), path, r"EnergyWindowVector \(0054,0010\) is .*; expected "
                                                  r"(an integer|a finite number)")


@pytest.mark.parametrize("value", [INF, -INF])
def test_infinite_start_angle(nm_file, edit_dicom, value):
    path = edit_dicom(nm_file(), {f"{ROT}.StartAngle": ("FD", value)})
    _raises(lambda: read_projections(path), path,
            rf"StartAngle \(0054,0200\) {ROT_ITEM} is -?inf; "
            r"expected a finite number, -360 ≤ value ≤ 360 deg")


def test_empty_energy_window_range_sequence(nm_file, edit_dicom):
    from pydicom.sequence import Sequence

    path = edit_dicom(nm_file(), {f"{EW}.EnergyWindowRangeSequence": Sequence([])})
    _raises(lambda: read_projections(path), path,
            r"EnergyWindowRangeSequence \(0054,0013\) in EnergyWindowInformationSequence item 1 is "
            r"missing or empty; expected a sequence of at least 1 item")


@pytest.mark.parametrize("cut", [400, 900, 1400, 2000, -1])
def test_truncated_projection_file(tmp_path, nm_file, cut):
    good = nm_file()
    data = good.read_bytes()
    path = tmp_path / "cut.dcm"
    path.write_bytes(data[:cut])
    _raises(lambda: read_projections(path), path, r"truncated|missing")


def test_truncated_value_of_odd_length_is_named(nm_file, io_builders):
    # the US value NumberOfEnergyWindows now claims to be FD: 2 bytes where 8 are needed
    # (pydicom's BytesLengthException, raised only when the value is read)
    path = io_builders.patch_vr(nm_file(), "NumberOfEnergyWindows", "FD")
    _raises(lambda: read_projections(path), path,
            r"NumberOfEnergyWindows \(0054,0011\) cannot be decoded \(BytesLengthException")


def test_byte_flip_in_a_vr_surfaces_as_a_named_error(nm_file, io_builders):
    # an unknown VR: pydicom reads the file and raises NotImplementedError when the value is decoded
    path = io_builders.patch_vr(nm_file(), "StartAngle", "QQ")
    _raises(lambda: read_projections(path), path,
            r"StartAngle \(0054,0200\) in RotationInformationSequence item 1 cannot be decoded "
            r"\(NotImplementedError")


# ====================================================================== projections: values read wrong before
def test_zero_angular_step(nm_file, edit_dicom):
    path = edit_dicom(nm_file(), {f"{ROT}.AngularStep": 0})
    _raises(lambda: read_projections(path), path,
            r"AngularStep \(0018,1144\) .* is '0\.0'; "
            r"expected a number, a nonzero value, -360 ≤ value ≤ 360 deg")


@pytest.mark.parametrize("value", [0, -25000, ("FD", NAN)], ids=["zero", "negative", "nan"])
def test_bad_frame_duration(nm_file, edit_dicom, value):
    path = edit_dicom(nm_file(), {f"{ROT}.ActualFrameDuration": value})
    _raises(lambda: read_projections(path), path,
            rf"ActualFrameDuration \(0018,1242\) {ROT_ITEM} is .*; "
            r"expected a (finite )?number, 0 < value ≤ 1e\+08 ms")


@pytest.mark.parametrize("which,value", [("EnergyWindowLowerLimit", -1.0), ("EnergyWindowUpperLimit", INF),
                                         ("EnergyWindowLowerLimit", -INF), ("EnergyWindowUpperLimit", 1e9)])
def test_bad_energy_window_limits(nm_file, edit_dicom, which, value):
    path = edit_dicom(nm_file(), {f"{RANGE}.{which}": ("FD", value)})
    msg = _raises(lambda: read_projections(path), path,
                  rf"{which} \(0054,001[45]\) in EnergyWindowInformationSequence item 1, "
                  r"EnergyWindowRangeSequence item 1 is .*; "
                  r"expected a (finite )?number, 0 ≤ value ≤ 2000 keV")
    assert "keV" in msg


def test_upper_limit_below_lower_limit(nm_file, edit_dicom):
    path = edit_dicom(nm_file(), {f"{RANGE}.EnergyWindowUpperLimit": 100.0})
    _raises(lambda: read_projections(path), path,
            r"EnergyWindowUpperLimit \(0054,0015\) .* is 100\.0 keV; "
            r"expected more than EnergyWindowLowerLimit")


def test_nan_tilt_is_not_untilted(nm_file, edit_dicom, io_builders):
    path = edit_dicom(nm_file(), {f"{DET}.GantryDetectorTilt": ("FD", NAN)})
    _raises(lambda: read_projections(path), path,
            rf"GantryDetectorTilt \(0018,1120\) {DET_ITEM} is nan; expected a finite number")
    # a missing tilt is still an untilted detector (documented)
    path = edit_dicom(nm_file("untilted.dcm"), {f"{DET}.GantryDetectorTilt": io_builders.DELETE})
    assert read_projections(path).shape == (40, 24, 12)


ABSURD = {
    "pixel spacing 1e9": ("PixelSpacing", [1e9, 4.0], r"PixelSpacing \(0028,0030\) is .*; expected a number, "
                                                      r"0 < value ≤ 50 mm"),
    "pixel spacing negative": ("PixelSpacing", [-4.0, 4.0],
                               r"PixelSpacing \(0028,0030\) .*0 < value ≤ 50 mm"),
    "radius 1e300": (f"{ROT}.RadialPosition", ("FD", 1e300),
                     rf"RadialPosition \(0018,1142\) {ROT_ITEM} is 1e\+300; expected a number, "
                     r"0 < value ≤ 2000 mm"),
    "radius 0": (f"{ROT}.RadialPosition", 0.0, r"RadialPosition \(0018,1142\) .*0 < value ≤ 2000 mm"),
    "position 1e9": (f"{DET}.ImagePositionPatient", [1e9, 0.0, 0.0],
                     rf"ImagePositionPatient \(0020,0032\) {DET_ITEM} is .*; "
                     r"expected a number, -100000 ≤ value ≤ 100000 mm"),
    "centre of rotation 1e300": (f"{DET}.CenterOfRotationOffset", ("FD", 1e300),
                                 r"CenterOfRotationOffset \(0018,1145\) .*-1000 ≤ value ≤ 1000 mm"),
    "start angle 1e9": (f"{ROT}.StartAngle", 1e9, r"StartAngle \(0054,0200\) .*-360 ≤ value ≤ 360 deg"),
    "step 1e9": (f"{ROT}.AngularStep", 1e9, r"AngularStep \(0018,1144\) .*-360 ≤ value ≤ 360 deg"),
}


@pytest.mark.parametrize("case", list(ABSURD))
def test_absurd_geometry_is_refused_with_its_range(nm_file, edit_dicom, case):
    dotted, value, pattern = ABSURD[case]
    path = edit_dicom(nm_file(), {dotted: value})
    _raises(lambda: read_projections(path), path, pattern)


def test_radius_override_is_checked(nm_file):
    path = nm_file(drop=("RadialPosition",))
    with pytest.raises(InputError, match=r"radius_mm: nan; expected 0 < value ≤ 2000 mm"):
        read_projections(path, radius_mm=NAN)
    with pytest.raises(InputError, match=r"radius_mm: '230'"):
        read_projections(path, radius_mm="230")


def test_good_file_still_reads_after_the_checks(nm_file):
    acq = read_projections(nm_file())
    assert acq.time_per_view_s == 25.0 and acq.orbit.radius_mm[0] == 254.0
    assert acq.meta["center_of_rotation_offset_mm"] == {1: 0.0}


# ====================================================================== CT series
def _hu(shape=(8, 8, 3)):
    return np.random.default_rng(1).integers(-1000, 1500, size=shape).astype(np.float64)


def _slice(folder, k=0):
    return sorted(folder.iterdir())[k]


@pytest.mark.parametrize("kw", ["Rows", "Columns"])
def test_rows_or_columns_missing_in_one_slice(slice_series, edit_dicom, io_builders, kw):
    folder = slice_series("ct", _hu())
    bad = edit_dicom(_slice(folder, 1), {kw: io_builders.DELETE})
    tag = {"Rows": r"Rows \(0028,0010\)", "Columns": r"Columns \(0028,0011\)"}[kw]
    _raises(lambda: read_ct_series(folder), bad, tag + " is missing or empty")


def test_non_numeric_rescale(slice_series, edit_dicom):
    folder = slice_series("ct", _hu())
    bad = edit_dicom(_slice(folder, 2), {"RescaleSlope": ("LO", "abc")})
    _raises(lambda: read_ct_series(folder), bad, r"RescaleSlope \(0028,1053\) is 'abc'; expected a number")


def test_missing_rescale_intercept_is_an_error_not_plus_1024_hu(slice_series, edit_dicom, io_builders):
    folder = slice_series("ct", _hu())  # stored = HU + 1024
    bad = edit_dicom(_slice(folder, 1), {"RescaleIntercept": io_builders.DELETE})
    _raises(lambda: read_ct_series(folder), bad,
            r"RescaleIntercept \(0028,1052\) is missing or empty; expected a number \(type 1")


def test_missing_rescale_slope_is_an_error(slice_series, edit_dicom, io_builders):
    folder = slice_series("ct", _hu())
    bad = edit_dicom(_slice(folder, 0), {"RescaleSlope": io_builders.DELETE})
    _raises(lambda: read_ct_series(folder), bad, r"RescaleSlope \(0028,1053\) is missing")


@pytest.mark.parametrize("kw,value", [("RescaleSlope", 0), ("RescaleSlope", ("FD", NAN)),
                                      ("RescaleSlope", ("FD", INF)), ("RescaleIntercept", ("FD", NAN)),
                                      ("RescaleIntercept", ("FD", -INF)), ("RescaleIntercept", 1e300)])
def test_zero_or_non_finite_rescale(slice_series, edit_dicom, kw, value):
    folder = slice_series("ct", _hu())
    bad = edit_dicom(_slice(folder, 1), {kw: value})
    _raises(lambda: read_ct_series(folder), bad, rf"{kw} \(0028,105[23]\) is .*; expected a (finite )?number")


@pytest.mark.parametrize("cut", [0, 10, 131, 300, 500, 700, 1000, -1])
def test_truncated_or_empty_last_slice_is_an_error(slice_series, cut):
    folder = slice_series("ct", _hu())
    last = _slice(folder, -1)
    last.write_bytes(last.read_bytes()[:cut])
    _raises(lambda: read_ct_series(folder), last, r"truncated|empty|missing")


def test_foreign_files_are_still_skipped(slice_series):
    folder = slice_series("ct", _hu())
    (folder / "notes.txt").write_text("scanned on Tuesday\n")
    assert read_ct_series(folder).shape == (8, 8, 3)


def test_one_slice_with_a_different_pixel_spacing(slice_series, edit_dicom):
    folder = slice_series("ct", _hu())
    bad = edit_dicom(_slice(folder, 2), {"PixelSpacing": [1.5, 2.5]})
    msg = _raises(lambda: read_ct_series(folder), bad, r"PixelSpacing \(0028,0030\) is \[1\.5, 2\.5\] mm but "
                                                       r"s000\.dcm has \[1\.5, 2\.0\]")
    assert "one pixel spacing" in msg


def test_negative_pixel_spacing(slice_series, edit_dicom):
    folder = slice_series("ct", _hu())
    bad = edit_dicom(_slice(folder, 0), {"PixelSpacing": [-1.5, 2.0]})
    _raises(lambda: read_ct_series(folder), bad,
            r"PixelSpacing \(0028,0030\) is .*; expected a number, 0 < value ≤ 50 mm")


def test_mixed_frames_of_reference(slice_series, edit_dicom):
    folder = slice_series("ct", _hu())
    bad = edit_dicom(_slice(folder, 1), {"FrameOfReferenceUID": "1.2.3.4"})
    _raises(lambda: read_ct_series(folder), bad,
            r"FrameOfReferenceUID \(0020,0052\) is '1\.2\.3\.4' but s000\.dcm has '1\.2\.826")


def test_absurd_ct_position(slice_series, edit_dicom):
    folder = slice_series("ct", _hu())
    bad = edit_dicom(_slice(folder, 1), {"ImagePositionPatient": [0.0, 0.0, 1e300]})
    _raises(lambda: read_ct_series(folder), bad,
            r"ImagePositionPatient \(0020,0032\) .*-100000 ≤ value ≤ 100000 mm")


def test_bad_kvp_in_the_header(slice_series, edit_dicom):
    folder = slice_series("ct", _hu(), shuffle=False)
    bad = edit_dicom(_slice(folder, 0), {"KVP": ("LO", "abc")})
    _raises(lambda: read_ct_series(folder), bad, r"KVP \(0018,0060\) is 'abc'; expected a number")


def test_ct_still_reads_exactly(slice_series):
    hu = _hu()
    vol = read_ct_series(slice_series("ct", hu))
    assert torch.equal(vol.data, torch.from_numpy(hu).float()) and vol.meta["kvp"] == 120.0


@pytest.mark.parametrize("kvp", [None, "abc", "120", NAN, -5.0, 1e9, True])
def test_ct_to_mu_refuses_a_bad_kvp(kvp):
    with pytest.raises(InputError, match=r"^kvp: .*; expected"):
        ct_to_mu(torch.zeros(2), 140.0, kvp)
    with pytest.raises(InputError, match=r"^kvp: "):
        mu_to_ct_hu(torch.zeros(2), 140.0, kvp=kvp)


def test_ct_to_mu_refuses_a_bad_energy():
    with pytest.raises(InputError, match=r"^energy_kev: 'abc'"):
        ct_to_mu(torch.zeros(2), "abc", 120)
    with pytest.raises(InputError, match=r"^ct_effective_kev: nan"):
        ct_to_mu(torch.zeros(2), 140.0, 120, ct_effective_kev=NAN)
    assert break_point_hu(np.float32(120.0)) == 47.0  # numpy scalars and DICOM DS values still work


# ====================================================================== Interfile
def _interfile(tmp_path, array_xyz, dtype, extra=(), name="img"):
    raw = np.asarray(array_xyz).transpose(2, 1, 0).astype(dtype)
    (tmp_path / f"{name}.i33").write_bytes(np.ascontiguousarray(raw).tobytes())
    number_format = "float" if np.dtype(dtype).kind == "f" else "unsigned integer"
    lines = ["!INTERFILE :=", f"!name of data file := {name}.i33", "imagedata byte order := LITTLEENDIAN",
             f"!matrix size [1] := {array_xyz.shape[0]}", f"!matrix size [2] := {array_xyz.shape[1]}",
             f"!number of slices := {array_xyz.shape[2]}", f"!number format := {number_format}",
             f"!number of bytes per pixel := {np.dtype(dtype).itemsize}",
             "scaling factor (mm/pixel) [1] := 2", "scaling factor (mm/pixel) [2] := 2",
             "slice thickness (pixels) := 2", *extra, "!END OF INTERFILE :="]
    header = tmp_path / f"{name}.h33"
    header.write_text("\n".join(lines) + "\n")
    return header


def _with(header, key, value):
    lines = [ln for ln in header.read_text().splitlines() if not ln.lstrip("!").startswith(key)]
    lines.insert(1, f"{key} := {value}")
    header.write_text("\n".join(lines) + "\n")
    return header


@pytest.mark.parametrize("value", ["1+999", "-1+999", "1e999", "nan", "NaN", "inf", "-Infinity", "1_0",
                                   "0x10", "2..0"])
def test_interfile_numbers_that_are_not_finite_numbers(tmp_path, value):
    header = _with(_interfile(tmp_path, np.ones((2, 2, 2)), "<u2"), "scaling factor (mm/pixel) [1]", value)
    _raises(lambda: read_interfile(header), header,
            r"key 'scaling factor \(mm/pixel\) \[1\]' has value .*; "
            r"expected a (finite )?number, 0 < value ≤ 50 mm")


def test_fortran_numbers_are_read(tmp_path):
    # Fortran's bare exponent (published phantoms) and its double-precision D exponent: both parsed
    assert parse_number("+2.000000+00", "k", "f") == 2.0
    assert parse_number("+2.500000-01", "k", "f") == 0.25
    assert parse_number("1.0D+03", "k", "f") == 1000.0
    assert parse_number("1.5d-1", "k", "f") == 0.15
    header = _with(_interfile(tmp_path, np.ones((2, 2, 2)), "<u2"), "scaling factor (mm/pixel) [1]",
                   "2.5D+00")
    assert read_interfile(header)[1].voxel_size_mm[0] == 2.5


@pytest.mark.parametrize("bad", [NAN, INF, -INF])
def test_interfile_float_data_with_nan_or_inf(tmp_path, bad):
    a = np.ones((3, 2, 2), np.float32)
    a[1, 0, 1] = bad
    header = _interfile(tmp_path, a, "<f4")
    _raises(lambda: read_interfile(header), header,
            r"img\.i33' holds [01] NaN and [01] infinite value\(s\) out of 12 .*; expected finite values")


def test_float64_data_that_overflows_float32(tmp_path):
    a = np.ones((2, 2, 2))
    a[0, 0, 0] = 1e300
    header = _interfile(tmp_path, a, "<f8")
    _raises(lambda: read_interfile(header), header, r"holds 0 NaN and 1 infinite .*read as float32")
    assert float(read_interfile(header, dtype=torch.float64)[0].max()) == 1e300


def test_load_interfile_refuses_nan_activity(tmp_path):
    from spectdl.phantoms import load_interfile

    a = np.ones((3, 2, 2), np.float32)
    a[0, 0, 0] = NAN  # NaN < 0 is False, so the negativity check alone let it through
    header = _interfile(tmp_path, a, "<f4")
    _raises(lambda: load_interfile(header), header, r"1 NaN")


@pytest.mark.parametrize("slope", ["0", "1e300", "-1e31", "nan"])
def test_interfile_rescale_slope_zero_or_absurd(tmp_path, slope):
    header = _with(_interfile(tmp_path, np.ones((2, 2, 2)), "<u2"), "data rescale slope", slope)
    _raises(lambda: read_interfile(header), header,
            r"key 'data rescale slope' has value .*; "
            r"expected a (finite )?number, a nonzero value, -1e\+30 ≤ value ≤ 1e\+30")


def test_interfile_rescale_that_overflows(tmp_path):
    header = _with(_interfile(tmp_path, np.full((2, 2, 2), 1e10), "<f4"), "data rescale slope", "1e30")
    _raises(lambda: read_interfile(header), header, r"infinite value\(s\).*rescale slope 1e\+30")


def _materials(tmp_path, rows):
    from spectdl.phantoms import load_interfile

    act = _interfile(tmp_path, np.ones((2, 2, 2)), "<u2", name="act")
    att = _interfile(tmp_path, np.ones((2, 2, 2)), "<u2", name="att")
    dat = tmp_path / "Attenuation_Range.dat"
    dat.write_text(f"{len(rows)}\n" + "\n".join(rows) + "\n")
    return dat, lambda: load_interfile(act, att)


@pytest.mark.parametrize("token", ["nan", "inf"])
def test_materials_range_with_nan_or_inf(tmp_path, token):
    dat, load = _materials(tmp_path, ["0 0 Air", f"1 {token} Water"])
    _raises(load, dat, r"row 3")


def test_materials_range_that_is_not_a_number(tmp_path):
    dat, load = _materials(tmp_path, ["0 0 Air", "1 1+999 Water"])
    _raises(load, dat, r"key 'row 3 \(high\)' has value '1\+999'; expected a finite number")


def test_interfile_projection_keys(tmp_path):
    a = np.ones((4, 3, 8), np.float32)
    base = ["number of projections := 8", "extent of rotation := 360", "radius := 250",
            "energy window lower level [1] := 126", "energy window upper level [1] := 154"]
    header = _interfile(tmp_path, a, "<f4", base)
    assert read_interfile_projections(header).orbit.radius_mm == (250.0,) * 8
    for key, value, pattern in [("radius", "{250, nan, 250, 250, 250, 250, 250, 250}",
                                 r"'radius' has value 'nan'"),
                                ("radius", "1e300", r"0 < value ≤ 2000 mm"),
                                ("number of energy windows", "nan", r"'number of energy windows'"),
                                ("extent of rotation", "0", r"0 < value ≤ 720 deg"),
                                ("energy window upper level [1]", "1+999", r"finite number"),
                                ("energy window upper level [1]", "100", r"expected more than"),
                                ("time per projection (sec)", "-1", r"0 < value ≤ 100000 s")]:
        h = _with(_interfile(tmp_path, a, "<f4", base, name="p"), key, value)
        _raises(lambda: read_interfile_projections(h), h, pattern)
