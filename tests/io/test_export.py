"""write_dicom_series: identity, UIDs, rescale error, geometry via SimpleITK, atomicity, de-identification."""

import hashlib

import numpy as np
import pydicom
import pytest
import torch

from spectdl.errors import InputError
from spectdl.io import read_ct_series, read_projections, read_volume_series, write_dicom_series

sitk = pytest.importorskip("SimpleITK")


def _digest(folder):
    return {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(folder.iterdir())}


def _read_all(folder):
    return [pydicom.dcmread(str(p)) for p in sorted(folder.glob("IM_*.dcm"))]


def test_derived_pt_series_from_projections(tmp_path, nm_file):
    acq = read_projections(nm_file())
    gen = torch.Generator().manual_seed(0)
    vol = torch.rand(acq.grid().shape, generator=gen, dtype=torch.float64) * 1234.5
    files = write_dicom_series(vol, acq, "OSEM 4i10s", tmp_path / "out")
    assert len(files) == acq.grid().shape[2]
    dss = _read_all(tmp_path / "out")
    src = pydicom.dcmread(acq.source, stop_before_pixels=True)
    assert {d.SeriesInstanceUID for d in dss} != {src.SeriesInstanceUID}
    assert len({d.SeriesInstanceUID for d in dss}) == 1
    assert len({d.SOPInstanceUID for d in dss}) == len(dss)
    for d in dss:
        assert d.StudyInstanceUID == src.StudyInstanceUID
        assert d.FrameOfReferenceUID == src.FrameOfReferenceUID
        assert d.PatientID == "ID123" and str(d.PatientName) == "Test^Patient"
        assert list(d.ImageType) == ["DERIVED", "PRIMARY"]  # PET Image IOD: value 2 PRIMARY
        assert d.DerivationDescription == "OSEM 4i10s"
        assert d.Modality == "PT" and d.Units == "CNTS"
        assert float(d.RescaleIntercept) == 0.0
    # float data round trip: error at most half a rescale step in every slice
    for k, d in enumerate(sorted(dss, key=lambda d: d.InstanceNumber)):
        slope = float(d.RescaleSlope)
        back = d.pixel_array.astype(np.float64).T * slope
        err = np.abs(back - vol[:, :, k].numpy()).max()
        assert err <= slope / 2 * (1 + 1e-6)
    # a standard reader (GDCM through SimpleITK) puts the voxels where acq.affine says
    reader = sitk.ImageSeriesReader()
    reader.SetFileNames(reader.GetGDCMSeriesFileNames(str(tmp_path / "out")))
    img = reader.Execute()
    assert np.allclose(img.GetOrigin(), acq.affine[:3, 3], atol=1e-4)
    assert np.allclose(img.GetSpacing(), np.diag(acq.affine)[:3], atol=1e-4)
    assert np.allclose(sitk.GetArrayFromImage(img).transpose(2, 1, 0), vol.numpy(), atol=0.02)


def test_signed_ct_series_from_ct_reference_and_our_own_reader(tmp_path, slice_series):
    hu = np.random.default_rng(0).uniform(-1000, 2000, size=(6, 5, 4))
    folder = slice_series("ct", hu)
    ct = read_ct_series(folder)
    before = _digest(folder)
    enhanced = ct.data * 0.5 - 10.25
    write_dicom_series(enhanced, ct, "denoised", tmp_path / "out")
    assert _digest(folder) == before  # the input is untouched
    back = read_ct_series(tmp_path / "out")
    assert np.allclose(back.affine, ct.affine)
    slopes = [float(d.RescaleSlope) for d in _read_all(tmp_path / "out")]
    assert (back.data - enhanced).abs().max() <= max(slopes) / 2 * (1 + 1e-6)
    assert _read_all(tmp_path / "out")[0].Modality == "CT"


def test_pt_reference_and_calibrated_units(tmp_path, slice_series):
    vol = np.random.default_rng(2).uniform(0, 100, size=(4, 4, 3))
    folder = slice_series("pt", vol, modality="PT", intercept=0.0, signed=False, extra={"Units": "BQML"})
    ref = read_volume_series(folder)
    write_dicom_series(ref, ref, "copy", tmp_path / "out")
    back = read_volume_series(tmp_path / "out")
    assert back.units == "BQML"
    assert torch.allclose(back.data, ref.data, atol=float(ref.data.max()) / 65535)


def test_existing_output_and_input_folders_are_protected(tmp_path, nm_file, slice_series):
    acq = read_projections(nm_file())
    vol = torch.ones(acq.grid().shape)
    write_dicom_series(vol, acq, "first", tmp_path / "out")
    first = _digest(tmp_path / "out")
    with pytest.raises(InputError, match="already exists"):
        write_dicom_series(vol * 2, acq, "second", tmp_path / "out")
    assert _digest(tmp_path / "out") == first
    write_dicom_series(vol * 2, acq, "second", tmp_path / "out", overwrite=True)
    assert _digest(tmp_path / "out") != first
    assert not [p for p in (tmp_path / "out").iterdir() if not p.name.startswith("IM_")]  # no temp files
    folder = slice_series("ct", np.zeros((3, 3, 2)))
    ct = read_ct_series(folder)
    with pytest.raises(InputError, match="holds the reference series"):
        write_dicom_series(ct.data, ct, "x", folder, overwrite=True)


def test_deidentification(tmp_path, nm_file):
    acq = read_projections(nm_file())
    vol = torch.ones(acq.grid().shape)
    write_dicom_series(vol, acq, "anon", tmp_path / "a", deidentify=True)
    write_dicom_series(vol, acq, "anon", tmp_path / "b", deidentify=True)
    a, b = _read_all(tmp_path / "a")[0], _read_all(tmp_path / "b")[0]
    assert str(a.PatientName) == "ANONYMOUS" and a.PatientID == "ANON"
    assert a.PatientIdentityRemoved == "YES"
    removed = ("PatientBirthDate", "InstitutionName", "ReferringPhysicianName", "AccessionNumber",
               "StudyDate")
    for kw in removed:  # gone, or empty where the IOD makes it type 2 (PS3.15 action Z)
        assert not a.get(kw, ""), kw
    assert a.PatientSex == "F"  # patient characteristics kept
    assert a.StudyInstanceUID != acq.study_instance_uid
    assert a.StudyInstanceUID == b.StudyInstanceUID  # the same replacement every time
    assert a.FrameOfReferenceUID == b.FrameOfReferenceUID != acq.frame_of_reference_uid


def test_bad_arguments(tmp_path, nm_file):
    acq = read_projections(nm_file())
    with pytest.raises(InputError, match="pass affine="):
        write_dicom_series(torch.ones(3, 3, 3), acq, "x", tmp_path / "o")
    with pytest.raises(InputError, match="NaN"):
        write_dicom_series(torch.full(acq.grid().shape, float("nan")), acq, "x", tmp_path / "o")
    with pytest.raises(InputError, match="description"):
        write_dicom_series(torch.ones(acq.grid().shape), acq, "", tmp_path / "o")


# --- standard conformance (dciodvfy) ------------------------------------------------------------

import shutil  # noqa: E402
import subprocess  # noqa: E402

from pydicom.dataset import Dataset  # noqa: E402
from pydicom.sequence import Sequence  # noqa: E402

_DS_KEYWORDS = ("ImagePositionPatient", "ImageOrientationPatient", "PixelSpacing", "SliceThickness",
                "SpacingBetweenSlices", "SliceLocation", "RescaleSlope", "RescaleIntercept",
                "PatientWeight", "FrameReferenceTime")


def _odd_affine():
    """A rotated grid with awkward voxel sizes and origin, so the exact floats need > 16 characters."""
    t = np.deg2rad(17.3)
    rot = np.array([[np.cos(t), -np.sin(t), 0.0], [np.sin(t), np.cos(t), 0.0], [0.0, 0.0, 1.0]])
    A = np.eye(4)
    A[:3, :3] = rot * np.array([4.7952378123, 4.7952378123, 3.3333333333333])
    A[:3, 3] = [-277.35218808634085, -190.123456789012345, -0.1234567890123456]
    return A


def _pt_reference(slice_series):
    rp = Dataset()
    rp.Radiopharmaceutical = "Tc-99m MDP"
    nuclide = Dataset()
    nuclide.CodeValue, nuclide.CodingSchemeDesignator, nuclide.CodeMeaning = "C163A", "SRT", "^99m^Technetium"
    rp.RadionuclideCodeSequence = Sequence([nuclide])
    rp.RadiopharmaceuticalStartTime = "091500"
    rp.RadionuclideTotalDose = 740000000.0
    rp.RadionuclideHalfLife = 21624.12
    extra = {"PatientWeight": 72.5, "SeriesDate": "20240102", "SeriesTime": "101500",
             "AcquisitionDate": "20240102", "AcquisitionTime": "101600", "ActualFrameDuration": 1800000,
             "RadiopharmaceuticalInformationSequence": Sequence([rp]), "Units": "BQML"}
    return slice_series("pt", np.zeros((6, 5, 4)), modality="PT", slope=1.0, intercept=0.0, extra=extra)


def _write_odd(tmp_path, reference, name="out", **kw):
    vol = np.random.default_rng(3).uniform(0, 500, size=(7, 6, 5))
    A = _odd_affine()
    write_dicom_series(vol, reference, "spectdl test", tmp_path / name, affine=A, **kw)
    return vol, A, tmp_path / name


def _all_ds_values(ds):
    for elem in ds.iterall():
        if elem.VR == "DS" and elem.value not in (None, ""):
            values = elem.value if elem.VM > 1 else [elem.value]
            for v in values:
                yield elem.keyword, v


def test_ds_values_fit_16_characters_and_keep_the_geometry(tmp_path, slice_series):
    vol, A, out = _write_odd(tmp_path, _pt_reference(slice_series))
    dss = sorted(_read_all(out), key=lambda d: d.InstanceNumber)
    for k, d in enumerate(dss):
        raw = pydicom.dcmread(str(out / f"IM_{k + 1:04d}.dcm"), stop_before_pixels=True)
        for kw, v in _all_ds_values(raw):
            text = getattr(v, "original_string", None) or str(v)
            assert len(text) <= 16, (kw, text)
        sp = np.linalg.norm(A[:3, :3], axis=0)
        ipp = A[:3, 3] + A[:3, 2] * k
        assert np.allclose([float(x) for x in d.ImagePositionPatient], ipp, atol=1e-4)
        assert np.allclose([float(x) for x in d.ImageOrientationPatient],
                           np.r_[A[:3, 0] / sp[0], A[:3, 1] / sp[1]], atol=1e-9)
        assert np.allclose([float(x) for x in d.PixelSpacing], [sp[1], sp[0]], atol=1e-4)
        assert abs(float(d.SliceThickness) - sp[2]) < 1e-4
        assert abs(float(d.SliceLocation) - ipp @ (A[:3, 2] / sp[2])) < 1e-4


def test_type1_type2_and_suv_attributes(tmp_path, slice_series):
    _, _, out = _write_odd(tmp_path, _pt_reference(slice_series))
    for d in _read_all(out):
        assert list(d.ImageType) == ["DERIVED", "PRIMARY"]
        assert d.SeriesDate == "20240102" and d.SeriesTime == "101500"
        assert d.AcquisitionDate == "20240102" and d.AcquisitionTime == "101600"
        for kw in ("Laterality", "CollimatorType", "PatientOrientationCodeSequence",
                   "PatientGantryRelationshipCodeSequence", "ActualFrameDuration", "StudyID",
                   "PositionReferenceIndicator", "PatientBirthDate", "PatientSex"):
            assert kw in d, kw
        assert int(d.ActualFrameDuration) == 1800000
        assert float(d.PatientWeight) == 72.5
        (rp,) = d.RadiopharmaceuticalInformationSequence
        assert rp.RadiopharmaceuticalStartTime == "091500"
        assert float(rp.RadionuclideTotalDose) == 740000000.0
        assert float(rp.RadionuclideHalfLife) == pytest.approx(21624.12)
        assert rp.RadionuclideCodeSequence[0].CodeValue == "C163A"


def test_series_date_time_filled_without_source_values_and_when_deidentified(tmp_path, nm_file):
    acq = read_projections(nm_file())  # the synthetic NM file has no Series Date/Time
    vol = np.ones(acq.grid().shape)
    write_dicom_series(vol, acq, "x", tmp_path / "a")
    write_dicom_series(vol, acq, "x", tmp_path / "b", deidentify=True)
    for name in ("a", "b"):
        for d in _read_all(tmp_path / name):
            assert len(d.SeriesDate) == 8 and len(d.SeriesTime) >= 6
            assert "Laterality" in d and "ActualFrameDuration" in d
    assert _read_all(tmp_path / "b")[0].get("StudyDate", "") == ""


def _dciodvfy_errors(path):
    res = subprocess.run([shutil.which("dciodvfy"), str(path)], capture_output=True, text=True, timeout=60)
    return [ln for ln in (res.stdout + res.stderr).splitlines() if ln.startswith("Error")]


@pytest.mark.skipif(shutil.which("dciodvfy") is None,
                    reason="dciodvfy (Debian package dicom3tools) is not installed")
@pytest.mark.parametrize("source", ["pt", "nm", "nm-deidentified", "ct"])
def test_dciodvfy_reports_no_errors(tmp_path, slice_series, nm_file, source):
    if source == "pt":
        ref = _pt_reference(slice_series)
        kw = {}
    elif source == "ct":
        ref = slice_series("ct", np.zeros((6, 5, 4)))
        kw = {}
    else:
        ref = read_projections(nm_file())
        kw = {"deidentify": source == "nm-deidentified"}
    _, _, out = _write_odd(tmp_path, ref, **kw)
    for f in (out / "IM_0001.dcm", out / "IM_0005.dcm"):
        assert _dciodvfy_errors(f) == []


def test_simpleitk_round_trip_of_a_rotated_series(tmp_path, slice_series):
    vol, A, out = _write_odd(tmp_path, _pt_reference(slice_series))
    reader = sitk.ImageSeriesReader()
    reader.SetFileNames(reader.GetGDCMSeriesFileNames(str(out)))
    img = reader.Execute()
    sp = np.linalg.norm(A[:3, :3], axis=0)
    assert np.allclose(img.GetOrigin(), A[:3, 3], atol=1e-4)
    assert np.allclose(img.GetSpacing(), sp, atol=1e-4)
    assert np.allclose(np.asarray(img.GetDirection()).reshape(3, 3), A[:3, :3] / sp, atol=1e-4)
    back = sitk.GetArrayFromImage(img).transpose(2, 1, 0).astype(np.float64)
    assert back.shape == vol.shape
    assert np.allclose(back, vol, atol=500 / 65535 * 0.5 * 1.01 + 1e-4)
